// The xdp subsystem's lifecycle: loads both programs, attaches the filter through a pinned link, keeps
// the maps in step with the config (lists, policy, VIPs, backends, Maglev ring) and serves counters,
// health and the /v1/xdp API, and applies the fleet's deny list from the registry (fleet.ts).
// Stopping the agent leaves the program attached and pinned; `cbr xdp detach` removes it.
import { networkInterfaces } from 'node:os';
import { Counter, Gauge } from 'prom-client';
import { errorMessage, type SubsystemFactory, type AgentContext, type Subsystem, type CbrConfig } from '../dataplane/index.js';
import type { XdpConfig } from './config.js';
import { XdpPipeline, attachXdp, attachStatus, pinDirFor, interfaceMac } from './loader.js';
import {
  writeConfigMap,
  syncLists,
  syncServices,
  syncLb,
  readCounters,
  mapSizesFor,
  configPrefixes,
  liveListAdd,
  liveListDelete,
  ORIGIN,
  type ListState,
  type CounterRow,
} from './control.js';
import { LIST_STATE_FILE, emptyListState, loadListState } from './lists.js';
import { registerXdpRoutes } from './routes.js';
import { autoAllowEntries, type AutoAllowEntry } from './always-pass.js';
import { FleetDeny } from './fleet.js';
import { controlRecordPath, describeControl, processExists, readControlRecord, writeControlRecord, type ControlRecord } from './control-record.js';
import { REGISTRY_SERVICE, type RegistryService } from '../registry/index.js';
import type { ParsedPrefix } from '../dataplane/index.js';

export class XdpSubsystem implements Subsystem {
  private pipeline?: XdpPipeline;
  private cfg: XdpConfig;
  private lists: ListState = emptyListState();
  private autoAllow: AutoAllowEntry[] = [];
  private fleet?: FleetDeny;
  private readonly cleanups: Array<() => void> = [];
  private pinDir = '';

  /** This agent's control record, from its first heartbeat on. */
  private control?: ControlRecord;
  private controlWriteWarnedAt = 0;
  /** How long the program ran without control before this agent took it over (seconds; 0 when it did not). */
  private uncontrolledSeconds = 0;

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
      throw new Error(`agent.stateDir: ${LIST_STATE_FILE} is unreadable: ${errorMessage(err)}`);
    }
    try {
      interfaceMac(ifname); // the interface must exist before anything is loaded
    } catch {
      throw new Error(`xdp.interface: no interface named ${ifname}`);
    }
    // The registry starts first (agent.ts); the filter reads only its local copy, never the database.
    const fleet = new FleetDeny(this.ctx.services.get<RegistryService>(REGISTRY_SERVICE), {
      log: this.ctx.log,
      metrics: this.ctx.registry,
      apply: (added, removed) => this.applyFleet(added, removed),
    });
    this.fleet = fleet;
    try {
      await fleet.load();
    } catch (err) {
      // The filter comes first: it starts without the fleet's entries and says so.
      this.ctx.log.error({ err: errorMessage(err) }, 'fleet deny list: the local registry copy is unreadable; starting without it');
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
      if (a.reused) this.reportUncontrolledTime(ifname);
      this.heartbeat();
    } catch (err) {
      this.pipeline?.close();
      this.pipeline = undefined;
      await fleet.close();
      this.fleet = undefined;
      throw new Error(`xdp: ${errorMessage(err)}`);
    }
    fleet.follow();
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
          this.heartbeat();
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
    // ctx.config is the config being applied (replaced before reload() is called)
    this.autoAllow = autoAllowEntries(this.ctx.config, networkInterfaces());
    const lists = syncLists(
      p,
      cfg,
      this.lists,
      this.autoAllow.map((e) => e.prefix),
      this.fleet?.prefixes() ?? [],
    );
    if (lists.deny.fleetSkipped) {
      this.fleet?.failed(lists.deny.fleetSkipped);
      this.ctx.log.error(
        { skipped: lists.deny.fleetSkipped, maxEntries: cfg.deny.maxEntries },
        'fleet deny entries left out: the deny map is full (xdp.deny.maxEntries)',
      );
    }
    syncServices(p, cfg);
    const lb = cfg.lb.vips.length ? syncLb(p, cfg) : undefined;
    this.ctx.log.info(
      { lists, autoAllow: this.autoAllow.map((e) => `${e.prefix.text} (${e.from})`), lbSlotsChanged: lb?.slotsChanged, backends: lb?.backends.length },
      'xdp maps in step with config',
    );
  }

  /**
   * Puts fleet deny changes into the live maps. A prefix that is also in the config or the API list
   * keeps that origin (and stays when the fleet drops it). Resolves with how many failed (e.g. a full map).
   */
  private applyFleet(added: ParsedPrefix[], removed: ParsedPrefix[]): number {
    const p = this.pipeline;
    if (!p) return 0;
    const config = new Set(configPrefixes(this.cfg, 'deny').map((c) => c.text));
    const api = new Set(this.lists.api.deny);
    let failed = 0;
    for (const [prefix, add] of [...added.map((x) => [x, true] as const), ...removed.map((x) => [x, false] as const)]) {
      if (config.has(prefix.text) || api.has(prefix.text)) continue;
      try {
        if (add) liveListAdd(p, 'deny', prefix, ORIGIN.fleet);
        else liveListDelete(p, 'deny', prefix);
      } catch (err) {
        failed++;
        this.ctx.log.warn({ prefix: prefix.text, add, err: errorMessage(err) }, 'fleet deny entry not applied to the maps (xdp.deny.maxEntries?)');
      }
    }
    return failed;
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
    const uncontrolledSeconds = () => this.uncontrolledSeconds;
    const uncontrolled = new Gauge({
      name: 'cbr_xdp_uncontrolled_seconds',
      help: 'How long the XDP program had run without its control (the agent) when this agent took it over; 0 when it had not',
      labelNames: ['interface'],
      registers: [],
      collect() {
        this.set({ interface: ifname }, uncontrolledSeconds());
      },
    });
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
    for (const m of [packets, bytes, attached, entries, uncontrolled]) {
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
      fleet: { registry: this.fleet?.available ?? false, lastChange: this.fleet?.lastChange ?? 0 },
      lists: {
        deny: { config: configPrefixes(cfg, 'deny').length, api: this.lists.api.deny.length, fleet: this.fleet?.prefixes().length ?? 0 },
        allow: { config: configPrefixes(cfg, 'allow').length, api: this.lists.api.allow.length, auto: this.autoAllow.length },
      },
    };
  }

  private registerRoutes(): void {
    this.cleanups.push(
      ...registerXdpRoutes(this.ctx.admin, {
        log: this.ctx.log,
        stateDir: this.ctx.stateDir,
        config: () => this.cfg,
        pipeline: () => this.pipeline,
        lists: () => this.lists,
        autoAllow: () => this.autoAllow,
        fleet: () => this.fleet,
        setLists: (next) => {
          this.lists = next;
        },
        status: () => this.status(),
      }),
    );
  }

  /** The program was ours already (a pinned link): say how long it ran without control, if it did. */
  private reportUncontrolledTime(ifname: string): void {
    const before = describeControl(readControlRecord(controlRecordPath(this.ctx.stateDir, ifname)), Date.now(), processExists);
    if (before.state === 'controlled' || before.state === 'unknown') return;
    this.uncontrolledSeconds = before.sinceSeconds ?? 0;
    this.ctx.log.warn(
      { interface: ifname, previous: before.state, pid: before.pid, seconds: before.sinceSeconds },
      `the XDP filter ran without its control: ${before.detail}`,
    );
  }

  /** Rewrites the control record: this agent controls the program now (health check interval). */
  private heartbeat(): void {
    const ifname = this.cfg.interface!;
    this.control ??= { pid: process.pid, interface: ifname, startedAt: Date.now(), heartbeatAt: Date.now() };
    this.writeControl({ ...this.control, heartbeatAt: Date.now() });
  }

  private writeControl(rec: ControlRecord): void {
    try {
      writeControlRecord(controlRecordPath(this.ctx.stateDir, rec.interface), rec);
    } catch (err) {
      // The filter matters more than the record: say so once a minute at most, keep filtering.
      if (Date.now() - this.controlWriteWarnedAt > 60_000) {
        this.controlWriteWarnedAt = Date.now();
        this.ctx.log.warn({ err: errorMessage(err) }, 'cannot write the XDP control record in agent.stateDir');
      }
    }
  }

  async stop(): Promise<void> {
    // The program stays attached and the maps pinned: filtering goes on while the agent is away.
    for (const c of this.cleanups.splice(0).reverse()) c();
    if (this.control) this.writeControl({ ...this.control, heartbeatAt: Date.now(), stoppedAt: Date.now() });
    await this.fleet?.close();
    this.fleet = undefined;
    this.pipeline?.close();
    this.pipeline = undefined;
    this.ctx.log.info({ interface: this.cfg.interface, pinDir: this.pinDir }, 'xdp control stopped; the program stays attached (cbr xdp detach removes it)');
  }
}

export const xdpSubsystem: SubsystemFactory = {
  name: 'xdp',
  enabled: (c) => c.xdp.enabled,
  create: (ctx) => new XdpSubsystem(ctx),
};
