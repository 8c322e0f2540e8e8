// Puts a validated `xdp` config into the (pinned) maps: global knobs, prefix lists, service policy,
// VIPs, backends, the Maglev ring (only changed slots are written) and the server-ID table. Also
// reads the counters back. Everything here is control plane: batch calls, never per packet.
import { readFileSync } from 'node:fs';
import type { XdpConfig } from './config.js';
import type { XdpPipeline } from './loader.js';
import type { BpfMap } from './libbpf.js';
import { parsePrefixList, lpmKey, decodeLpmKey } from './prefix.js';
import { parsePrefix, parseAddress, canonicalIp, formatIp, type ParsedPrefix } from '../dataplane/index.js';
import { buildMaglevTable, diffTables, EMPTY_SLOT, type MaglevBackend } from './maglev.js';
import {
  encodeConfig,
  decodeConfig,
  CFG_FLAGS,
  RL_COARSE_MIN_BURST_NS,
  LIST_EMPTY_FLAG,
  PROTO,
  buildDstTable,
  encodePorts,
  newPre4Bits,
  setPre4Bits,
  encodePre4,
  pre4Range,
  PRE4_ENTRIES,
  PRE4_FIELD,
  DST_F_SERVICE,
  DST_F_VIP,
  vipKey,
  vipValue,
  VIP_F_QUIC,
  encodeBackend,
  decodeBackend,
  MAX_BACKENDS,
  SERVER_IDS,
  u32Key,
  u32Value,
  sumPerCpuCounters,
  ACTIONS,
  REASONS,
  REASON_SLOTS,
  type Action,
  type Reason,
} from './maps.js';
import { errorMessage } from '../dataplane/index.js';

export type ListKind = 'deny' | 'allow';
/**
 * Value stored with each list entry: where it came from (auto: derived from other sections, see
 * always-pass.ts; fleet: the registry's deny list, see fleet.ts). A prefix from several keeps the
 * strongest: config, then api, then fleet.
 */
export const ORIGIN = { config: 1, api: 2, auto: 3, fleet: 4 } as const;

/** Prefixes of one list from config: inline plus files. Errors name the field and file line. */
export function configPrefixes(cfg: XdpConfig, kind: ListKind): ParsedPrefix[] {
  const out: ParsedPrefix[] = [];
  cfg[kind].prefixes.forEach((p, i) => {
    try {
      out.push(parsePrefix(p));
    } catch (err) {
      throw new Error(`xdp.${kind}.prefixes[${i}]: ${errorMessage(err)}`);
    }
  });
  cfg[kind].files.forEach((f, i) => {
    let text: string;
    try {
      text = readFileSync(f, 'utf8');
    } catch (err) {
      throw new Error(`xdp.${kind}.files[${i}]: cannot read ${f}: ${errorMessage(err)}`);
    }
    try {
      for (const p of parsePrefixList(text, f)) out.push(p); // no spread: lists run to millions
    } catch (err) {
      throw new Error(`xdp.${kind}.files[${i}]: ${errorMessage(err)}`);
    }
  });
  return out;
}

export function mapSizesFor(cfg: XdpConfig) {
  return {
    deny4: cfg.deny.maxEntries,
    deny6: cfg.deny.maxEntries,
    allow4: cfg.allow.maxEntries,
    allow6: cfg.allow.maxEntries,
    rateLimitSources: cfg.rateLimit.maxSources,
    ringSize: cfg.lb.ringSize,
  };
}

/** Anything with the pipeline's maps by name: a loaded XdpPipeline, or pinned maps opened by the CLI. */
export interface MapSource {
  map(name: string): BpfMap;
}

/** The *_EMPTY config bits for the list maps that hold nothing right now. */
export function listEmptyFlags(p: MapSource): number {
  let flags = 0;
  for (const [name, bit] of Object.entries(LIST_EMPTY_FLAG)) if (p.map(name).keys(1).length === 0) flags |= bit;
  return flags;
}

/**
 * Sets the list-empty bits of cbr_cfg to what the list maps hold, except that lists named in
 * `filling` are marked non-empty whatever they hold (call with them before writing their entries,
 * so the filter never skips a list that has entries; call again without them afterwards).
 */
export function refreshListFlags(p: MapSource, filling: string[] = []): void {
  const cfgMap = p.map('cbr_cfg');
  const cur = decodeConfig(cfgMap.lookup(u32Key(0))!);
  let empty = listEmptyFlags(p);
  for (const name of filling) empty &= ~(LIST_EMPTY_FLAG[name] ?? 0);
  const allBits = Object.values(LIST_EMPTY_FLAG).reduce((a, b) => a | b, 0);
  const flags = (cur.flags & ~allBits) | empty;
  if (flags !== cur.flags) cfgMap.update(u32Key(0), encodeConfig({ ...cur, flags }));
}

export function writeConfigMap(p: XdpPipeline, cfg: XdpConfig, srcMac: Buffer): void {
  // PRE4 is syncLists' to set (once cbr_pre4 matches the lists); kept as it is here
  let flags = listEmptyFlags(p) | (decodeConfig(p.map('cbr_cfg').lookup(u32Key(0))!).flags & CFG_FLAGS.PRE4);
  if (cfg.lb.vips.length) flags |= CFG_FLAGS.LB;
  if (cfg.fragments === 'drop') flags |= CFG_FLAGS.FRAG_DROP;
  if (cfg.malformed === 'drop') flags |= CFG_FLAGS.MALFORMED_DROP;
  if (cfg.rateLimit.enabled) flags |= CFG_FLAGS.RATELIMIT;
  if (cfg.services.addresses.length) flags |= CFG_FLAGS.POLICY;
  const cost = BigInt(Math.max(1, Math.round(1e9 / cfg.rateLimit.packetsPerSecond)));
  const newCost = BigInt(Math.max(1, Math.round(1e9 / cfg.rateLimit.newSources.packetsPerSecond)));
  const newBurst = newCost * BigInt(cfg.rateLimit.newSources.burst);
  // both buckets run on the one clock the flag picks: the tick clock only when both are deep enough
  if (cost * BigInt(cfg.rateLimit.burst) >= RL_COARSE_MIN_BURST_NS && newBurst >= RL_COARSE_MIN_BURST_NS) flags |= CFG_FLAGS.RL_COARSE;
  const mac = cfg.lb.nextHopMac ? Buffer.from(cfg.lb.nextHopMac.split(':').map((h) => parseInt(h, 16))) : Buffer.alloc(6);
  p.map('cbr_cfg').update(
    u32Key(0),
    encodeConfig({
      flags,
      ringSize: cfg.lb.vips.length ? cfg.lb.ringSize : 0,
      rlCostNs: cost,
      rlBurstNs: cost * BigInt(cfg.rateLimit.burst),
      gwMac: mac,
      srcMac,
      cidConfigId: cfg.lb.cidConfigId,
      encapSrc4: cfg.lb.encapSourceV4 ? parseAddress(cfg.lb.encapSourceV4).addr : Buffer.alloc(4),
      encapSrc6: cfg.lb.encapSourceV6 ? parseAddress(cfg.lb.encapSourceV6).addr : Buffer.alloc(16),
      rlNewCostNs: newCost,
      rlNewBurstNs: newBurst,
    }),
  );
}

export interface SyncCounts {
  added: number;
  removed: number;
  /** Fleet deny entries left out: the map had no room once the PoP's own entries were in. */
  fleetSkipped?: number;
}

/** Makes one LPM map hold exactly `want` (keyed by normalised prefix), with batch calls. */
export function syncLpm(map: BpfMap, want: Map<string, { prefix: ParsedPrefix; origin: number }>): SyncCounts {
  const have = new Map<string, number>();
  for (const { key, value } of map.lookupBatch(65536)) have.set(decodeLpmKey(key).text, value.readUInt32LE());
  const stale: Buffer[] = [];
  for (const text of have.keys()) if (!want.has(text)) stale.push(lpmKey(parsePrefix(text)));
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (const [text, e] of want) {
    if (have.get(text) === e.origin) continue;
    keys.push(lpmKey(e.prefix));
    values.push(u32Value(e.origin));
  }
  if (stale.length) map.deleteBatch(stale);
  if (keys.length) map.updateBatch(keys, values);
  return { added: keys.length, removed: stale.length };
}

export interface ListState {
  /** Prefixes added through the API/CLI (persisted in the state dir by the subsystem). */
  api: Record<ListKind, string[]>;
}

/**
 * Writes the cbr_pre4 entries that differ from `want` (a function of the entry index); returns how
 * many. `have` is the map's current contents, updated in place.
 */
function writePre4(map: BpfMap, have: Buffer[], want: (i: number) => Buffer): number {
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (let i = 0; i < PRE4_ENTRIES; i++) {
    const v = want(i);
    if (!v.equals(have[i]!)) {
      keys.push(u32Key(i));
      values.push(v);
      have[i] = v;
    }
  }
  if (keys.length) map.updateBatch(keys, values);
  return keys.length;
}

/** Sets or clears one cbr_pre4 bitmap over the /24s of an IPv4 prefix (read-modify-write). */
function pre4Update(p: MapSource, prefix: ParsedPrefix, field: keyof typeof PRE4_FIELD, set: boolean): void {
  if (prefix.family !== 4) return;
  const map = p.map('cbr_pre4');
  const { first, count } = pre4Range(prefix);
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  for (let e = first >>> 6; e <= (first + count - 1) >>> 6; e++) {
    const v = map.lookup(u32Key(e))!;
    let mask = 0n;
    for (let b = 0; b < 64; b++) if (e * 64 + b >= first && e * 64 + b < first + count) mask |= 1n << BigInt(b);
    const word = v.readBigUInt64LE(PRE4_FIELD[field]);
    v.writeBigUInt64LE(set ? word | mask : word & ~mask, PRE4_FIELD[field]);
    keys.push(u32Key(e));
    values.push(v);
  }
  map.updateBatch(keys, values);
}

/**
 * Adds one prefix to a live list (the API and the direct CLI path): the list is marked non-empty
 * and its prefilter bits are set before the entry goes in, so the filter never skips it.
 */
export function liveListAdd(p: MapSource, kind: ListKind, prefix: ParsedPrefix, origin: number): void {
  const name = `cbr_${kind}${prefix.family}`;
  refreshListFlags(p, [name]);
  pre4Update(p, prefix, kind, true); // "ask the trie" bits; deny_full bits are left to the next sync
  p.map(name).update(lpmKey(prefix), u32Value(origin));
}

/** Removes one prefix from a live list; false when it was not there. */
export function liveListDelete(p: MapSource, kind: ListKind, prefix: ParsedPrefix): boolean {
  // no /24 may drop by its deny_full bit once the prefix is gone: clear them first (a cleared bit
  // only sends the /24 to the trie); the "ask" bits stay until the next sync
  if (kind === 'deny') pre4Update(p, prefix, 'denyFull', false);
  const removed = p.map(`cbr_${kind}${prefix.family}`).delete(lpmKey(prefix));
  refreshListFlags(p); // the filter skips a list once it is empty
  return removed;
}

/**
 * Syncs both families of both lists from config plus API-added prefixes plus the automatic allow
 * entries (`autoAllow`, see always-pass.ts) plus the fleet's deny list (`fleetDeny`, see fleet.ts),
 * and the IPv4 prefilter. The fleet's entries take the room the PoP's own leave (any PoP can grow
 * the fleet's list; it must not keep this one from starting): the rest are counted as skipped.
 */
export function syncLists(
  p: XdpPipeline,
  cfg: XdpConfig,
  state: ListState,
  autoAllow: ParsedPrefix[] = [],
  fleetDeny: ParsedPrefix[] = [],
): Record<ListKind, SyncCounts> {
  const out = {} as Record<ListKind, SyncCounts>;
  const wants = {} as Record<
    ListKind,
    { want4: Map<string, { prefix: ParsedPrefix; origin: number }>; want6: Map<string, { prefix: ParsedPrefix; origin: number }> }
  >;
  const bits = { deny: newPre4Bits(), allow: newPre4Bits(), denyFull: newPre4Bits() };
  let fleetSkipped = 0;
  for (const kind of ['deny', 'allow'] as const) {
    const want4 = new Map<string, { prefix: ParsedPrefix; origin: number }>();
    const want6 = new Map<string, { prefix: ParsedPrefix; origin: number }>();
    const put = (pp: ParsedPrefix, origin: number) => (pp.family === 4 ? want4 : want6).set(pp.text, { prefix: pp, origin });
    if (kind === 'allow') for (const pp of autoAllow) put(pp, ORIGIN.auto);
    for (const t of state.api[kind]) put(parsePrefix(t), ORIGIN.api);
    for (const pp of configPrefixes(cfg, kind)) put(pp, ORIGIN.config);
    const max = cfg[kind].maxEntries;
    if (want4.size > max || want6.size > max)
      throw new Error(`xdp.${kind}.maxEntries: ${Math.max(want4.size, want6.size)} prefixes do not fit in ${max} entries`);
    if (kind === 'deny') {
      let skipped = 0;
      for (const pp of fleetDeny) {
        const want = pp.family === 4 ? want4 : want6;
        if (want.has(pp.text)) continue;
        if (want.size >= max) skipped++;
        else put(pp, ORIGIN.fleet);
      }
      fleetSkipped = skipped;
    }
    for (const e of want4.values()) {
      setPre4Bits(bits[kind], e.prefix);
      if (kind === 'deny') setPre4Bits(bits.denyFull, e.prefix, true);
    }
    wants[kind] = { want4, want6 };
  }
  // While the tries change, the "ask" bits hold old | new (a superset of both) and the deny_full
  // bits old & new (true of both); exactly the new bits after.
  const preMap = p.map('cbr_pre4');
  const size = preMap.valueSize;
  const have: Buffer[] = Array.from({ length: PRE4_ENTRIES }, () => Buffer.alloc(size));
  for (const { key, value } of preMap.lookupBatch(65536)) have[key.readUInt32LE()] = value;
  const exact = (i: number) => encodePre4(bits, i);
  writePre4(preMap, have, (i) => {
    const a = have[i]!;
    const b = exact(i);
    for (let j = 0; j < PRE4_FIELD.denyFull; j++) b[j] = b[j]! | a[j]!;
    for (let j = PRE4_FIELD.denyFull; j < PRE4_FIELD.denyFull + 8; j++) b[j] = b[j]! & a[j]!;
    return b;
  });
  for (const kind of ['deny', 'allow'] as const) {
    const { want4, want6 } = wants[kind];
    const filling = [want4.size ? `cbr_${kind}4` : '', want6.size ? `cbr_${kind}6` : ''].filter(Boolean);
    refreshListFlags(p, filling); // non-empty before the entries go in
    const a = syncLpm(p.map(`cbr_${kind}4`), want4);
    const b = syncLpm(p.map(`cbr_${kind}6`), want6);
    refreshListFlags(p); // empty once they are gone
    out[kind] = { added: a.added + b.added, removed: a.removed + b.removed, ...(kind === 'deny' && fleetSkipped ? { fleetSkipped } : {}) };
  }
  writePre4(preMap, have, exact);
  const cfgMap = p.map('cbr_cfg');
  const cur = decodeConfig(cfgMap.lookup(u32Key(0))!);
  if (!(cur.flags & CFG_FLAGS.PRE4)) cfgMap.update(u32Key(0), encodeConfig({ ...cur, flags: cur.flags | CFG_FLAGS.PRE4 }));
  return out;
}

/** Small hash maps: make `map` hold exactly these keys (value as given). */
function syncSmall(map: BpfMap, want: Map<string, Buffer>, value: (k: string) => Buffer): void {
  const have = new Set(map.keys().map((k) => k.toString('hex')));
  for (const k of have) if (!want.has(k)) map.delete(Buffer.from(k, 'hex'));
  for (const k of want.keys()) map.update(Buffer.from(k, 'hex'), value(k));
}

/**
 * The destination table (service addresses and VIP addresses, with their flags) and the port policy
 * bitmap. Only the table slots that changed are written; while they are written a packet can see a
 * half-updated table for a moment (an address briefly unknown: not policy-checked, not balanced).
 */
export function syncServices(p: XdpPipeline, cfg: XdpConfig): { slotsChanged: number } {
  const entries = new Map<string, number>();
  const norm = canonicalIp;
  for (const a of cfg.services.addresses) entries.set(norm(a), (entries.get(norm(a)) ?? 0) | DST_F_SERVICE);
  for (const v of cfg.lb.vips) entries.set(norm(v.address), (entries.get(norm(v.address)) ?? 0) | DST_F_VIP);
  let table: Buffer[];
  try {
    table = buildDstTable(entries);
  } catch (err) {
    throw new Error(`xdp.services.addresses: ${errorMessage(err)}`);
  }
  const dst = p.map('cbr_dst');
  const have = new Map<number, Buffer>();
  for (const { key, value } of dst.lookupBatch(table.length)) have.set(key.readUInt32LE(), value);
  const keys: Buffer[] = [];
  const values: Buffer[] = [];
  table.forEach((slot, i) => {
    if (!have.get(i)?.equals(slot)) {
      keys.push(u32Key(i));
      values.push(slot);
    }
  });
  if (keys.length) dst.updateBatch(keys, values);
  const rules = { udp: [] as number[], tcp: [] as number[], icmp: false };
  for (const r of cfg.services.allow) {
    if (r.protocol === 'icmp') rules.icmp = true;
    else rules[r.protocol].push(r.port!);
  }
  p.map('cbr_ports').update(u32Key(0), encodePorts(rules));
  return { slotsChanged: keys.length };
}

export interface LbSyncResult {
  /** Maglev slots written (the incremental update). */
  slotsChanged: number;
  backends: Array<{ address: string; index: number; weight: number; serverId?: number }>;
}

/**
 * Backends keep their index in cbr_backends for as long as they exist (recovered from the map on
 * restart), so a change rewrites only the ring slots whose owner changed.
 */
export function syncLb(p: XdpPipeline, cfg: XdpConfig): LbSyncResult {
  const vips = new Map<string, Buffer>();
  const quic = new Set<string>();
  for (const v of cfg.lb.vips) {
    const k = vipKey(v.address, v.port, PROTO[v.protocol]).toString('hex');
    vips.set(k, Buffer.from(k, 'hex'));
    if (v.quic) quic.add(k);
  }
  syncSmall(p.map('cbr_vips'), vips, (k) => vipValue(quic.has(k) ? VIP_F_QUIC : 0));

  const bmap = p.map('cbr_backends');
  const current = new Map<string, number>(); // address -> index
  const used = new Set<number>();
  for (const { key, value } of bmap.lookupBatch(MAX_BACKENDS)) {
    const b = decodeBackend(value);
    if (b.family !== 4 && b.family !== 6) continue;
    const idx = key.readUInt32LE();
    current.set(formatIp(b.addr), idx);
    used.add(idx);
  }
  const assigned: LbSyncResult['backends'] = [];
  let nextFree = 0;
  for (const b of cfg.lb.backends) {
    const address = canonicalIp(b.address);
    let idx = current.get(address);
    if (idx === undefined) {
      while (used.has(nextFree)) nextFree++;
      if (nextFree >= MAX_BACKENDS) throw new Error(`xdp.lb.backends: more than ${MAX_BACKENDS} backends`);
      idx = nextFree;
      used.add(idx);
    }
    assigned.push({ address, index: idx, weight: b.weight, serverId: b.serverId });
  }
  // 1. new/changed backends first, so no slot ever points at an empty entry
  const bkeys: Buffer[] = [];
  const bvals: Buffer[] = [];
  for (const b of assigned) {
    bkeys.push(u32Key(b.index));
    bvals.push(encodeBackend({ address: b.address, up: true, weight: b.weight }));
  }
  if (bkeys.length) bmap.updateBatch(bkeys, bvals);
  // 2. the ring: only slots whose owner changed
  const ring = p.map('cbr_ring');
  const size = cfg.lb.ringSize;
  const prev = new Uint32Array(size).fill(EMPTY_SLOT);
  const ringEntries = ring.lookupBatch(65536);
  for (const { key, value } of ringEntries) prev[key.readUInt32LE()] = value.readUInt32LE();
  const table = buildMaglevTable(
    assigned.map<MaglevBackend>((b) => ({ key: b.address, weight: b.weight, index: b.index })),
    size,
  );
  const changed = diffTables(ringEntries.length === size ? prev : undefined, table);
  if (changed.length)
    ring.updateBatch(
      changed.map((i) => u32Key(i)),
      changed.map((i) => u32Value(table[i]!)),
    );
  // 3. server IDs
  const sids = p.map('cbr_server_ids');
  const wantSid = new Map<number, number>();
  for (const b of assigned) if (b.serverId !== undefined) wantSid.set(b.serverId, b.index + 1);
  const sk: Buffer[] = [];
  const sv: Buffer[] = [];
  for (const { key, value } of sids.lookupBatch(SERVER_IDS)) {
    const sid = key.readUInt32LE();
    const want = wantSid.get(sid) ?? 0;
    if (value.readUInt32LE() !== want) {
      sk.push(key);
      sv.push(u32Value(want));
    }
  }
  if (sk.length) sids.updateBatch(sk, sv);
  // 4. backends that left: cleared last, after nothing points at them
  const keep = new Set(assigned.map((b) => b.index));
  const gone = [...used].filter((i) => !keep.has(i));
  if (gone.length)
    bmap.updateBatch(
      gone.map((i) => u32Key(i)),
      gone.map(() => Buffer.alloc(bmap.valueSize)),
    );
  return { slotsChanged: changed.length, backends: assigned };
}

export interface CounterRow {
  action: Action;
  reason: Reason;
  packets: bigint;
  bytes: bigint;
}

/** Every non-empty counter, summed over CPUs. */
export function readCounters(p: { map(name: string): BpfMap }): CounterRow[] {
  const rows: CounterRow[] = [];
  for (const { key, value } of p.map('cbr_stats').lookupBatch(64)) {
    const idx = key.readUInt32LE();
    const action = ACTIONS[idx >> 4];
    const reason = REASONS[idx & (REASON_SLOTS - 1)];
    if (!action || !reason) continue;
    const c = sumPerCpuCounters(value);
    if (c.packets === 0n) continue;
    rows.push({ action, reason, packets: c.packets, bytes: c.bytes });
  }
  return rows;
}

/** Counter rows as JSON numbers (API answers and `cbr xdp stats`). */
export function countersJson(rows: CounterRow[]) {
  return rows.map((r) => ({ action: r.action, reason: r.reason, packets: Number(r.packets), bytes: Number(r.bytes) }));
}
