// xdp/: the C XDP filter and load balancer and their TypeScript control (libbpf through ffi-rs).
// The subsystem loads both programs, attaches the filter through a pinned link, keeps the maps in
// step with the config (lists, policy, VIPs, backends, Maglev ring) and serves counters, health and
// the /v1/xdp API. Stopping the agent leaves the program attached and pinned; `cbr xdp detach`
// removes it.
import { readFileSync, writeFileSync, renameSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Counter, Gauge } from 'prom-client';
import type { Command } from 'commander';
import {
  HttpError,
  withAdminOptions,
  adminClientFromOptions,
  AdminClientError,
  type SubsystemFactory,
  type CommandRegistrar,
  type AgentContext,
  type Subsystem,
  type CbrConfig,
} from '../dataplane/index.js';
import type { XdpConfig } from './config.js';
import { XdpPipeline, attachXdp, attachStatus, detachXdp, pinDirFor, interfaceMac } from './loader.js';
import {
  writeConfigMap,
  syncLists,
  syncServices,
  syncLb,
  readCounters,
  liveListAdd,
  liveListDelete,
  mapSizesFor,
  configPrefixes,
  ORIGIN,
  type ListKind,
  type ListState,
  type CounterRow,
} from './control.js';
import { parsePrefix, type PrefixError } from '../dataplane/index.js';
import { BpfMap, BpfError, u32KeyBuf } from './libbpf.js';

export { xdpConfigSchema, type XdpConfig } from './config.js';
export { encodeCid, decodeCid, CidError, CID_MIN_LEN, CID_MAX_LEN, CID_UNROUTABLE_CONFIG, type CidFields } from './cid.js';
export { buildMaglevTable, diffTables, isPrime, DEFAULT_RING_SIZE } from './maglev.js';

const STATE_FILE = 'xdp-lists.json';

function loadListState(stateDir: string): ListState {
  const path = join(stateDir, STATE_FILE);
  if (!existsSync(path)) return { api: { deny: [], allow: [] } };
  const raw = JSON.parse(readFileSync(path, 'utf8')) as { api?: Partial<Record<ListKind, string[]>> };
  return { api: { deny: (raw.api?.deny ?? []).map((t) => parsePrefix(t).text), allow: (raw.api?.allow ?? []).map((t) => parsePrefix(t).text) } };
}

function saveListState(stateDir: string, s: ListState): void {
  const path = join(stateDir, STATE_FILE);
  writeFileSync(`${path}.tmp`, `${JSON.stringify(s, null, 2)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

function countersJson(rows: CounterRow[]) {
  return rows.map((r) => ({ action: r.action, reason: r.reason, packets: Number(r.packets), bytes: Number(r.bytes) }));
}

class XdpSubsystem implements Subsystem {
  private pipeline?: XdpPipeline;
  private cfg: XdpConfig;
  private lists: ListState = { api: { deny: [], allow: [] } };
  private readonly cleanups: Array<() => void> = [];
  private pinDir = '';

  constructor(private readonly ctx: AgentContext) {
    this.cfg = ctx.config.xdp;
  }

  async start(): Promise<void> {
    const cfg = this.cfg;
    const ifname = cfg.interface!;
    this.pinDir = pinDirFor(cfg.pinRoot, ifname);
    try {
      this.lists = loadListState(this.ctx.stateDir);
    } catch (err) {
      throw new Error(`agent.stateDir: ${STATE_FILE} is unreadable: ${(err as Error).message}`);
    }
    let mac: Buffer;
    try {
      mac = interfaceMac(ifname);
    } catch {
      throw new Error(`xdp.interface: no interface named ${ifname}`);
    }
    try {
      this.pipeline = XdpPipeline.load({
        pinDir: this.pinDir,
        objectDir: cfg.objectDir,
        sizes: mapSizesFor(cfg),
        withLb: cfg.lb.vips.length > 0,
        onRecreate: (map, why) => this.ctx.log.warn({ map, why }, 'pinned map has another shape; recreated (contents re-synced from config)'),
      });
      this.sync(cfg);
      const a = attachXdp(this.pinDir, ifname, this.pipeline.filterFd, cfg.mode);
      this.ctx.log.info(
        { interface: ifname, mode: cfg.mode, pinDir: this.pinDir, reusedLink: a.reused, progId: a.progId, linkId: a.linkId },
        a.reused ? 'xdp program replaced on the pinned link (no gap)' : 'xdp program attached',
      );
    } catch (err) {
      this.pipeline?.close();
      this.pipeline = undefined;
      throw new Error(`xdp: ${(err as Error).message}`);
    }
    this.registerMetrics();
    this.registerRoutes();
    this.cleanups.push(
      this.ctx.health.register({
        name: 'xdp.attached',
        intervalMs: 2000,
        timeoutMs: 1000,
        rise: 1,
        fall: 1,
        run: () => {
          const s = attachStatus(this.pinDir, ifname);
          if (!s.attached)
            throw new Error(
              s.attachedProgId ? `${ifname} runs program ${s.attachedProgId}, not ours (${s.linkProgId})` : `no XDP program attached to ${ifname}`,
            );
        },
      }),
    );
  }

  private sync(cfg: XdpConfig): void {
    const p = this.pipeline!;
    writeConfigMap(p, cfg, interfaceMac(cfg.interface!));
    const lists = syncLists(p, cfg, this.lists);
    syncServices(p, cfg);
    const lb = cfg.lb.vips.length ? syncLb(p, cfg) : undefined;
    this.ctx.log.info({ lists, lbSlotsChanged: lb?.slotsChanged, backends: lb?.backends.length }, 'xdp maps in step with config');
  }

  checkReload(next: CbrConfig): void {
    const a = this.cfg;
    const b = next.xdp;
    for (const [field, x, y] of [
      ['interface', a.interface, b.interface],
      ['mode', a.mode, b.mode],
      ['pinRoot', a.pinRoot, b.pinRoot],
      ['deny.maxEntries', a.deny.maxEntries, b.deny.maxEntries],
      ['allow.maxEntries', a.allow.maxEntries, b.allow.maxEntries],
      ['rateLimit.maxSources', a.rateLimit.maxSources, b.rateLimit.maxSources],
      ['lb.ringSize', a.lb.ringSize, b.lb.ringSize],
    ] as const) {
      if (x !== y) throw new Error(`xdp.${field}: cannot change on reload; restart the agent`);
    }
    if (a.lb.vips.length > 0 !== b.lb.vips.length > 0) throw new Error('xdp.lb.vips: turning the load balancer on or off needs a restart');
    for (const kind of ['deny', 'allow'] as const) configPrefixes(b, kind); // throws naming the field
  }

  async reload(next: CbrConfig): Promise<void> {
    this.cfg = next.xdp;
    this.sync(this.cfg);
  }

  private registerMetrics(): void {
    const reg = this.ctx.registry;
    const pipeline = () => this.pipeline;
    let last: CounterRow[] = [];
    const refresh = () => {
      const p = pipeline();
      if (p) last = readCounters(p);
      return last;
    };
    const packets = new Counter({
      name: 'cbr_xdp_packets_total',
      help: 'Packets by XDP verdict and reason (filter and load balancer; read from the per-CPU map)',
      labelNames: ['action', 'reason'],
      registers: [],
      collect() {
        this.reset();
        for (const r of refresh()) this.inc({ action: r.action, reason: r.reason }, Number(r.packets));
      },
    });
    const bytes = new Counter({
      name: 'cbr_xdp_bytes_total',
      help: 'Bytes by XDP verdict and reason',
      labelNames: ['action', 'reason'],
      registers: [],
      collect() {
        this.reset();
        for (const r of last) this.inc({ action: r.action, reason: r.reason }, Number(r.bytes));
      },
    });
    const ifname = this.cfg.interface!;
    const pinDir = this.pinDir;
    const attached = new Gauge({
      name: 'cbr_xdp_attached',
      help: '1 while our XDP program is attached to the interface',
      labelNames: ['interface'],
      registers: [],
      collect() {
        this.set({ interface: ifname }, attachStatus(pinDir, ifname).attached ? 1 : 0);
      },
    });
    const entries = new Gauge({
      name: 'cbr_xdp_list_entries',
      help: 'Prefixes in the deny/allow lists',
      labelNames: ['list'],
      registers: [],
      collect: () => {
        const p = pipeline();
        if (!p) return;
        for (const kind of ['deny', 'allow'] as const)
          entries.set({ list: kind }, p.map(`cbr_${kind}4`).lookupBatch(65536).length + p.map(`cbr_${kind}6`).lookupBatch(65536).length);
      },
    });
    for (const m of [packets, bytes, attached, entries]) {
      reg.registerMetric(m as unknown as Counter<string>);
      this.cleanups.push(() => reg.removeSingleMetric((m as unknown as { name: string }).name));
    }
  }

  private status() {
    const cfg = this.cfg;
    const s = attachStatus(this.pinDir, cfg.interface!);
    return {
      interface: cfg.interface,
      mode: cfg.mode,
      pinDir: this.pinDir,
      ...s,
      lb: { vips: cfg.lb.vips.length, backends: cfg.lb.backends.length, ringSize: cfg.lb.ringSize },
      lists: {
        deny: { config: configPrefixes(cfg, 'deny').length, api: this.lists.api.deny.length },
        allow: { config: configPrefixes(cfg, 'allow').length, api: this.lists.api.allow.length },
      },
    };
  }

  private registerRoutes(): void {
    const admin = this.ctx.admin;
    this.cleanups.push(admin.route('GET', '/v1/xdp/status', () => ({ body: this.status() })));
    this.cleanups.push(admin.route('GET', '/v1/xdp/stats', () => ({ body: { counters: countersJson(this.pipeline ? readCounters(this.pipeline) : []) } })));
    for (const kind of ['deny', 'allow'] as const) {
      this.cleanups.push(
        admin.route('GET', `/v1/xdp/${kind}`, () => ({ body: { config: configPrefixes(this.cfg, kind).map((p) => p.text), api: this.lists.api[kind] } })),
      );
      this.cleanups.push(
        admin.route('POST', `/v1/xdp/${kind}`, async (req) => {
          const prefix = await prefixFromBody(req.json());
          const p = this.pipeline!;
          const list = this.lists.api[kind];
          if (!list.includes(prefix.text)) {
            const next: ListState = { api: { ...this.lists.api, [kind]: [...list, prefix.text] } };
            saveListState(this.ctx.stateDir, next); // persisted before it is acknowledged
            this.lists = next;
          }
          const inConfig = configPrefixes(this.cfg, kind).some((c) => c.text === prefix.text);
          liveListAdd(p, kind, prefix, inConfig ? ORIGIN.config : ORIGIN.api);
          this.ctx.log.info({ list: kind, prefix: prefix.text }, 'xdp list entry added');
          return { body: { list: kind, prefix: prefix.text, added: true } };
        }),
      );
      this.cleanups.push(
        admin.route('DELETE', `/v1/xdp/${kind}`, (req) => {
          const raw = req.query.get('prefix');
          if (!raw) throw new HttpError(400, 'prefix: expected ?prefix=192.0.2.0/24');
          let prefix;
          try {
            prefix = parsePrefix(raw);
          } catch (err) {
            throw new HttpError(400, `prefix: ${(err as Error).message}`);
          }
          if (configPrefixes(this.cfg, kind).some((c) => c.text === prefix.text))
            throw new HttpError(409, `${prefix.text} comes from the config (xdp.${kind}); remove it there and reload`);
          const list = this.lists.api[kind];
          if (!list.includes(prefix.text)) throw new HttpError(404, `${prefix.text} is not in the ${kind} list`);
          const next: ListState = { api: { ...this.lists.api, [kind]: list.filter((t) => t !== prefix.text) } };
          saveListState(this.ctx.stateDir, next);
          this.lists = next;
          liveListDelete(this.pipeline!, kind, prefix);
          this.ctx.log.info({ list: kind, prefix: prefix.text }, 'xdp list entry removed');
          return { body: { list: kind, prefix: prefix.text, removed: true } };
        }),
      );
    }
  }

  async stop(): Promise<void> {
    // The program stays attached and the maps pinned: filtering goes on while the agent is away.
    for (const c of this.cleanups.splice(0).reverse()) c();
    this.pipeline?.close();
    this.pipeline = undefined;
    this.ctx.log.info({ interface: this.cfg.interface, pinDir: this.pinDir }, 'xdp control stopped; the program stays attached (cbr xdp detach removes it)');
  }
}

async function prefixFromBody(body: Promise<unknown>) {
  const b = (await body) as { prefix?: unknown } | undefined;
  if (!b || typeof b.prefix !== 'string') throw new HttpError(400, 'prefix: expected {"prefix": "192.0.2.0/24"}');
  try {
    return parsePrefix(b.prefix);
  } catch (err) {
    throw new HttpError(400, `prefix: ${(err as Error).message}`);
  }
}

export const xdpSubsystem: SubsystemFactory = {
  name: 'xdp',
  enabled: (c) => c.xdp.enabled,
  create: (ctx) => new XdpSubsystem(ctx),
};

// ---- CLI ----

interface DirectOpts {
  admin?: string;
  config?: string;
  interface?: string;
  pinRoot?: string;
}

/** Pin directory for commands that work on the pinned maps without the agent. */
function directPinDir(opts: DirectOpts): { pinDir: string; ifname: string } {
  if (!opts.interface) throw new Error('--interface: needed to find the pinned maps when the agent is not reachable');
  return { pinDir: pinDirFor(opts.pinRoot ?? '/sys/fs/bpf/cbr', opts.interface), ifname: opts.interface };
}

function withDirectOptions(cmd: Command): Command {
  return withAdminOptions(cmd)
    .option('--interface <ifname>', 'interface whose pinned maps to use when the agent is not running')
    .option('--pin-root <dir>', 'pin root when the agent is not reachable (default /sys/fs/bpf/cbr)');
}

function isUnreachable(err: unknown): boolean {
  return err instanceof AdminClientError && err.status === undefined;
}

function print(obj: unknown): void {
  process.stdout.write(`${JSON.stringify(obj, null, 2)}\n`);
}

function directCounters(pinDir: string): CounterRow[] {
  const stats = BpfMap.fromPin(join(pinDir, 'cbr_stats'));
  try {
    return readCounters({ map: () => stats });
  } finally {
    stats.close();
  }
}

async function listCommand(kind: ListKind, action: 'add' | 'del', prefixText: string, opts: DirectOpts): Promise<void> {
  let prefix;
  try {
    prefix = parsePrefix(prefixText);
  } catch (err) {
    throw new Error(`PREFIX: ${(err as PrefixError).message}`);
  }
  const client = adminClientFromOptions(opts);
  try {
    print(
      action === 'add'
        ? await client.post(`/v1/xdp/${kind}`, { prefix: prefix.text })
        : await client.delete(`/v1/xdp/${kind}?prefix=${encodeURIComponent(prefix.text)}`),
    );
    return;
  } catch (err) {
    if (!isUnreachable(err) || !opts.interface) throw err;
  }
  // Agent not running: write the pinned map directly. The agent's next start re-syncs lists from
  // its config and state file, so this is for emergencies; it says so.
  const { pinDir } = directPinDir(opts);
  const maps = new Map<string, BpfMap>();
  const pinned = { map: (n: string) => maps.get(n) ?? maps.set(n, BpfMap.fromPin(join(pinDir, n))).get(n)! };
  try {
    if (action === 'add') liveListAdd(pinned, kind, prefix, ORIGIN.api);
    else if (!liveListDelete(pinned, kind, prefix)) throw new Error(`${prefix.text} is not in the pinned ${kind} list`);
  } finally {
    for (const m of maps.values()) m.close();
  }
  print({
    list: kind,
    prefix: prefix.text,
    [action === 'add' ? 'added' : 'removed']: true,
    direct: true,
    note: 'agent not reachable: changed the pinned map only; the agent re-syncs lists from its config and state on its next start',
  });
}

export const registerXdpCommands: CommandRegistrar = (program) => {
  const xdp = program.command('xdp').description('the XDP filter and load balancer');
  withDirectOptions(xdp.command('status').description('attachment, program and list sizes (agent API, else the pins)')).action(async (opts: DirectOpts) => {
    try {
      print(await adminClientFromOptions(opts).get('/v1/xdp/status'));
    } catch (err) {
      if (!isUnreachable(err) || !opts.interface) throw err;
      const { pinDir, ifname } = directPinDir(opts);
      print({ interface: ifname, pinDir, agent: 'not reachable', ...attachStatus(pinDir, ifname) });
    }
  });
  withDirectOptions(xdp.command('stats').description('packet counters by action and reason (agent API, else the pinned map)')).action(
    async (opts: DirectOpts) => {
      try {
        print(await adminClientFromOptions(opts).get('/v1/xdp/stats'));
      } catch (err) {
        if (!isUnreachable(err) || !opts.interface) throw err;
        print({ counters: countersJson(directCounters(directPinDir(opts).pinDir)), direct: true });
      }
    },
  );
  for (const kind of ['deny', 'allow'] as const) {
    const list = xdp.command(kind).description(`the ${kind} list (live through the agent; straight to the pinned maps when it is not running)`);
    withDirectOptions(list.command('add <prefix>').description(`add a prefix to the ${kind} list`)).action((prefix: string, opts: DirectOpts) =>
      listCommand(kind, 'add', prefix, opts),
    );
    withDirectOptions(list.command('del <prefix>').description(`remove an API-added prefix from the ${kind} list`)).action((prefix: string, opts: DirectOpts) =>
      listCommand(kind, 'del', prefix, opts),
    );
  }
  xdp
    .command('detach')
    .description('detach the program from the interface and remove its pins (the agent leaves them in place when it stops)')
    .requiredOption('--interface <ifname>', 'interface to detach from')
    .option('--pin-root <dir>', 'pin root (default /sys/fs/bpf/cbr)')
    .action(async (opts: DirectOpts) => {
      const { pinDir, ifname } = directPinDir(opts);
      const removed = detachXdp(pinDir);
      print({ interface: ifname, pinDir, detached: removed });
    });
};

export { BpfError, u32KeyBuf };
