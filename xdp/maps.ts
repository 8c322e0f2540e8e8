// The TypeScript mirror of xdp/src/cbr_xdp.h: struct layouts (checked against the compiled
// objects' BTF by maps.test.ts), the action/reason enums, and encoders/decoders for map keys and
// values. Pure functions over bytes; no I/O.
import { CbrError, parseAddress, type ParsedPrefix } from '../dataplane/index.js';

export interface FieldLayout {
  offset: number;
  size: number;
}
export interface StructLayout {
  size: number;
  fields: Record<string, FieldLayout>;
}

/**
 * A struct's layout from its fields in declaration order: every shared struct pads explicitly, so
 * each offset is the sum of the sizes before it and the size is the sum of all.
 */
function struct<const N extends string>(...fields: (readonly [name: N, size: number])[]): { size: number; fields: Record<N, FieldLayout> } {
  const out = {} as Record<N, FieldLayout>;
  let offset = 0;
  for (const [name, size] of fields) {
    out[name] = { offset, size };
    offset += size;
  }
  return { size: offset, fields: out };
}

/** Byte offsets and sizes of every shared struct; must equal the C header's (BTF-checked). */
export const LAYOUTS = {
  cbr_config: struct(
    ['flags', 4],
    ['ring_size', 4],
    ['rl_cost_ns', 8],
    ['rl_burst_ns', 8],
    ['gw_mac', 6],
    ['src_mac', 6],
    ['cid_config_id', 1],
    ['pad0', 3],
    ['encap_src4', 4],
    ['encap_src6', 16],
    ['pad1', 4],
    ['rl_new_cost_ns', 8],
    ['rl_new_burst_ns', 8],
  ),
  cbr_counter: struct(['packets', 8], ['bytes', 8]),
  cbr_lpm4: struct(['prefixlen', 4], ['addr', 4]),
  cbr_lpm6: struct(['prefixlen', 4], ['addr', 16]),
  cbr_rl_key: struct(['family', 1], ['pad', 7], ['addr', 8]),
  cbr_rl_state: struct(['tokens_ns', 8], ['last_ns', 8]),
  cbr_dst: struct(['addr', 16], ['family', 1], ['flags', 1], ['pad', 2]),
  cbr_pre4: struct(['deny', 8], ['allow', 8], ['deny_full', 8], ['pad', 8]),
  cbr_ports: struct(['udp', 8192], ['tcp', 8192], ['icmp', 4], ['pad', 4]),
  cbr_parse: struct(['l3_off', 2], ['l4_off', 2], ['family', 1], ['l4_proto', 1], ['reason', 1], ['frag', 1], ['sport', 2], ['dport', 2], ['pad', 4]),
  cbr_vip_key: struct(['addr', 16], ['port', 2], ['proto', 1], ['family', 1]),
  cbr_vip: struct(['flags', 4], ['pad', 4]),
  cbr_backend: struct(['addr', 16], ['family', 1], ['flags', 1], ['pad', 2], ['weight', 4]),
} satisfies Record<string, StructLayout>;

export const ACTIONS = ['pass', 'drop', 'tx', 'aborted'] as const;
export type Action = (typeof ACTIONS)[number];
export const REASONS = [
  'ok',
  'allowlist',
  'denylist',
  'ratelimit',
  'policy',
  'fragment',
  'malformed',
  'truncated',
  'non_ip',
  'lb_hash',
  'lb_cid',
  'lb_no_backend',
  'lb_encap',
  'ratelimit_new',
] as const;
export type Reason = (typeof REASONS)[number];
export const REASON_SLOTS = 16;
export const COUNTERS = 4 * REASON_SLOTS;
export const counterIndex = (action: Action, reason: Reason): number => (ACTIONS.indexOf(action) << 4) | REASONS.indexOf(reason);

export const CFG_FLAGS = {
  FRAG_DROP: 1 << 0,
  MALFORMED_DROP: 1 << 1,
  RATELIMIT: 1 << 2,
  POLICY: 1 << 3,
  DENY4_EMPTY: 1 << 4,
  DENY6_EMPTY: 1 << 5,
  ALLOW4_EMPTY: 1 << 6,
  ALLOW6_EMPTY: 1 << 7,
  LB: 1 << 8,
  PRE4: 1 << 9,
  RL_COARSE: 1 << 10,
} as const;
/** Buckets at least this deep (in ns of credit) run on the tick clock: two ticks at HZ=100, the coarsest Linux tick. */
export const RL_COARSE_MIN_BURST_NS = 20_000_000n;
/** The config flag saying list map `cbr_<kind><family>` is empty. */
export const LIST_EMPTY_FLAG: Record<string, number> = {
  cbr_deny4: CFG_FLAGS.DENY4_EMPTY,
  cbr_deny6: CFG_FLAGS.DENY6_EMPTY,
  cbr_allow4: CFG_FLAGS.ALLOW4_EMPTY,
  cbr_allow6: CFG_FLAGS.ALLOW6_EMPTY,
};
export const DST_SLOTS = 4096;
export const DST_BITS = 12;
export const DST_PROBES = 8;
export const DST_MULT = 0x9e3779b1;
export const DST_F_SERVICE = 1;
export const DST_F_VIP = 2;
export const VIP_F_QUIC = 1;
export const BACKEND_F_UP = 1;
export const MAX_BACKENDS = 4096;
export const SERVER_IDS = 65536;
export const PROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58 } as const;

/** Map names as in the C objects; the loader pins each under <pinDir>/<name>. */
export const FILTER_MAPS = [
  'cbr_cfg',
  'cbr_stats',
  'cbr_scratch',
  'cbr_deny4',
  'cbr_deny6',
  'cbr_allow4',
  'cbr_allow6',
  'cbr_rl',
  'cbr_rl_new',
  'cbr_pre4',
  'cbr_dst',
  'cbr_ports',
  'cbr_progs',
] as const;
export const LB_MAPS = ['cbr_cfg', 'cbr_stats', 'cbr_scratch', 'cbr_vips', 'cbr_ring', 'cbr_backends', 'cbr_server_ids'] as const;

export interface XdpConfigValue {
  flags: number;
  ringSize: number;
  rlCostNs: bigint;
  rlBurstNs: bigint;
  gwMac: Buffer;
  srcMac: Buffer;
  cidConfigId: number;
  encapSrc4: Buffer;
  encapSrc6: Buffer;
  /** The shared bucket for sources not tracked yet (0 for both: every new source is refused). */
  rlNewCostNs: bigint;
  rlNewBurstNs: bigint;
}

export function encodeConfig(v: XdpConfigValue): Buffer {
  const L = LAYOUTS.cbr_config.fields;
  const b = Buffer.alloc(LAYOUTS.cbr_config.size);
  b.writeUInt32LE(v.flags >>> 0, L.flags.offset);
  b.writeUInt32LE(v.ringSize >>> 0, L.ring_size.offset);
  b.writeBigUInt64LE(v.rlCostNs, L.rl_cost_ns.offset);
  b.writeBigUInt64LE(v.rlBurstNs, L.rl_burst_ns.offset);
  v.gwMac.copy(b, L.gw_mac.offset, 0, 6);
  v.srcMac.copy(b, L.src_mac.offset, 0, 6);
  b[L.cid_config_id.offset] = v.cidConfigId;
  v.encapSrc4.copy(b, L.encap_src4.offset, 0, 4);
  v.encapSrc6.copy(b, L.encap_src6.offset, 0, 16);
  b.writeBigUInt64LE(v.rlNewCostNs, L.rl_new_cost_ns.offset);
  b.writeBigUInt64LE(v.rlNewBurstNs, L.rl_new_burst_ns.offset);
  return b;
}

export function decodeConfig(b: Buffer): XdpConfigValue {
  const L = LAYOUTS.cbr_config.fields;
  return {
    flags: b.readUInt32LE(L.flags.offset),
    ringSize: b.readUInt32LE(L.ring_size.offset),
    rlCostNs: b.readBigUInt64LE(L.rl_cost_ns.offset),
    rlBurstNs: b.readBigUInt64LE(L.rl_burst_ns.offset),
    gwMac: Buffer.from(b.subarray(L.gw_mac.offset, L.gw_mac.offset + 6)),
    srcMac: Buffer.from(b.subarray(L.src_mac.offset, L.src_mac.offset + 6)),
    cidConfigId: b[L.cid_config_id.offset]!,
    encapSrc4: Buffer.from(b.subarray(L.encap_src4.offset, L.encap_src4.offset + 4)),
    encapSrc6: Buffer.from(b.subarray(L.encap_src6.offset, L.encap_src6.offset + 16)),
    rlNewCostNs: b.readBigUInt64LE(L.rl_new_cost_ns.offset),
    rlNewBurstNs: b.readBigUInt64LE(L.rl_new_burst_ns.offset),
  };
}

export interface CounterValue {
  packets: bigint;
  bytes: bigint;
}

/** Sums a per-CPU cbr_stats value (one 16-byte counter per possible CPU). */
export function sumPerCpuCounters(value: Buffer): CounterValue {
  let packets = 0n;
  let bytes = 0n;
  for (let off = 0; off + 16 <= value.length; off += 16) {
    packets += value.readBigUInt64LE(off);
    bytes += value.readBigUInt64LE(off + 8);
  }
  return { packets, bytes };
}

export const u32Key = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
};
export const u32Value = u32Key;

/** cbr_dst's home slot for an address: the same hash as the filter's dst_flags(). */
export function dstHome(family: 4 | 6, addr: Buffer): number {
  const x = family === 4 ? addr.readUInt32LE(0) : addr.readUInt32LE(0) ^ addr.readUInt32LE(4) ^ addr.readUInt32LE(8) ^ addr.readUInt32LE(12);
  return Math.imul(x, DST_MULT) >>> (32 - DST_BITS);
}

export class DstTableError extends CbrError {
  constructor(message: string) {
    super('MAP_FULL', message);
  }
}

/**
 * The open-addressed destination table (cbr_dst): each address with its flags, placed by linear
 * probing from its home slot, at most DST_PROBES slots away. Addresses go in sorted order, so the
 * same set always gives the same table (and a resync writes nothing).
 */
export function buildDstTable(entries: Map<string, number>): Buffer[] {
  const slots: Buffer[] = Array.from({ length: DST_SLOTS }, () => Buffer.alloc(LAYOUTS.cbr_dst.size));
  const L = LAYOUTS.cbr_dst.fields;
  for (const address of [...entries.keys()].sort()) {
    const { family, addr } = parseAddress(address);
    const home = dstHome(family, addr);
    let placed = false;
    for (let i = 0; i < DST_PROBES && !placed; i++) {
      const s = slots[(home + i) & (DST_SLOTS - 1)]!;
      if (s[L.family.offset] !== 0) continue;
      addr.copy(s, L.addr.offset);
      s[L.family.offset] = family;
      s[L.flags.offset] = entries.get(address)!;
      placed = true;
    }
    if (!placed)
      throw new DstTableError(
        `${address}: no free slot within ${DST_PROBES} of its home slot in the ${DST_SLOTS}-slot destination table (too many service and VIP addresses)`,
      );
  }
  return slots;
}

/** cbr_pre4 entries: one per 64 /24s of the IPv4 space. */
export const PRE4_ENTRIES = 1 << 18;

/** One bit per /24 of the IPv4 space (2^24 bits in 32-bit words); the filter's prefilter per list. */
export function newPre4Bits(): Uint32Array {
  return new Uint32Array((1 << 24) / 32);
}

/** The /24s an IPv4 prefix overlaps: [first, first + count). */
export function pre4Range(prefix: ParsedPrefix): { first: number; count: number } {
  return { first: prefix.addr.readUInt32BE(0) >>> 8, count: prefix.length >= 24 ? 1 : 2 ** (24 - prefix.length) };
}

/** Sets the bits of every /24 the IPv4 prefix overlaps (`full`: only the /24s it covers whole). */
export function setPre4Bits(bits: Uint32Array, prefix: ParsedPrefix, full = false): void {
  if (prefix.family !== 4 || (full && prefix.length > 24)) return;
  const { first, count } = pre4Range(prefix);
  let i = first;
  const end = first + count;
  for (; i < end && i & 31; i++) bits[i >>> 5] = bits[i >>> 5]! | (1 << (i & 31));
  for (; i + 32 <= end; i += 32) bits[i >>> 5] = 0xffffffff;
  for (; i < end; i++) bits[i >>> 5] = bits[i >>> 5]! | (1 << (i & 31));
}

export const PRE4_FIELD = { deny: 0, allow: 8, denyFull: 16 } as const;

/** struct cbr_pre4 for entry `i` from the deny, allow and deny-full bitmaps. */
export function encodePre4(bits: { deny: Uint32Array; allow: Uint32Array; denyFull: Uint32Array }, i: number): Buffer {
  const b = Buffer.alloc(LAYOUTS.cbr_pre4.size);
  for (const k of ['deny', 'allow', 'denyFull'] as const) {
    b.writeUInt32LE(bits[k][2 * i]! >>> 0, PRE4_FIELD[k]);
    b.writeUInt32LE(bits[k][2 * i + 1]! >>> 0, PRE4_FIELD[k] + 4);
  }
  return b;
}

/** struct cbr_ports: the port policy bitmap. */
export function encodePorts(rules: { udp: number[]; tcp: number[]; icmp: boolean }): Buffer {
  const L = LAYOUTS.cbr_ports.fields;
  const b = Buffer.alloc(LAYOUTS.cbr_ports.size);
  // little-endian u64 words: bit p of the bitmap is bit p&7 of byte p>>3
  const set = (base: number, port: number) => (b[base + (port >> 3)] = b[base + (port >> 3)]! | (1 << (port & 7)));
  for (const p of rules.udp) set(L.udp.offset, p);
  for (const p of rules.tcp) set(L.tcp.offset, p);
  if (rules.icmp) b.writeUInt32LE(1, L.icmp.offset);
  return b;
}

export function vipKey(address: string, port: number, proto: number): Buffer {
  const { family, addr } = parseAddress(address);
  const L = LAYOUTS.cbr_vip_key.fields;
  const b = Buffer.alloc(LAYOUTS.cbr_vip_key.size);
  addr.copy(b, L.addr.offset);
  b.writeUInt16BE(port, L.port.offset);
  b[L.proto.offset] = proto;
  b[L.family.offset] = family;
  return b;
}

export function vipValue(flags: number): Buffer {
  const b = Buffer.alloc(LAYOUTS.cbr_vip.size);
  b.writeUInt32LE(flags);
  return b;
}

export interface BackendValue {
  address: string;
  up: boolean;
  weight: number;
}
export function encodeBackend(v: BackendValue): Buffer {
  const { family, addr } = parseAddress(v.address);
  const L = LAYOUTS.cbr_backend.fields;
  const b = Buffer.alloc(LAYOUTS.cbr_backend.size);
  addr.copy(b, L.addr.offset);
  b[L.family.offset] = family;
  b[L.flags.offset] = v.up ? BACKEND_F_UP : 0;
  b.writeUInt32LE(v.weight, L.weight.offset);
  return b;
}
export function decodeBackend(b: Buffer): { family: number; addr: Buffer; up: boolean; weight: number } {
  const L = LAYOUTS.cbr_backend.fields;
  const family = b[L.family.offset]!;
  return {
    family,
    addr: Buffer.from(b.subarray(0, family === 4 ? 4 : 16)),
    up: (b[L.flags.offset]! & BACKEND_F_UP) !== 0,
    weight: b.readUInt32LE(L.weight.offset),
  };
}

/** struct cbr_rl_key for a source: its /32 or /64. */
export function rlKey(address: string): Buffer {
  const { family, addr } = parseAddress(address);
  const b = Buffer.alloc(LAYOUTS.cbr_rl_key.size);
  b[0] = family;
  addr.copy(b, LAYOUTS.cbr_rl_key.fields.addr.offset, 0, 8);
  return b;
}

export type { ParsedPrefix };
