// The tunnel.wireguard subsystem: brings up one device per configured interface with every live peer
// of the registry's local copy, applies the registry's change feed to them (peers registered,
// renewed, expired or revoked on any PoP), serves the registration API (writes go to the registry's
// primary), records the peers' endpoints in the registry, sweeps expired peers, and exports metrics
// and health checks.
import { existsSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Gauge, Counter } from 'prom-client';
import { EgressGuard, errorMessage, popName, type AgentContext, type Subsystem, type CbrConfig } from '../../dataplane/index.js';
import { AUTH_SERVICE, type AuthGate } from '../../auth/index.js';
import { REGISTRY_SERVICE, readLegacyLeases, type Change, type RegistryService } from '../../registry/index.js';
import type { WireguardConfig, WireguardInterfaceConfig } from './config.js';
import { WireguardDevice } from './device.js';
import { EndpointRecorder } from './endpoints.js';
import { Takeover } from './takeover.js';
import { loadOrCreatePrivateKey } from './keys.js';
import { PeerRegistrar, poolsFor, type RegisteredInterface } from './registrar.js';
import { registerHandler, myPeersHandler, deleteMyPeerHandler, adminRevokeHandler, type ApiDeps, type RegistrationResult } from './api.js';
import type { DeviceState } from './uapi.js';

export interface WireguardSubsystemOptions {
  /** Runs `ip`, `wg` and wireguard-go through this prefix (tests: `ip netns exec <ns>`). */
  commandPrefix?: string[];
}

/** Settings a reload cannot change on a running interface (they would drop every session). */
const RESTART_ONLY_FIELDS = ['implementation', 'listenPort', 'privateKeyFile', 'mtu', 'address'] as const;

export class WireguardSubsystem implements Subsystem {
  private registry?: RegistryService;
  private registrar?: PeerRegistrar;
  private endpoints?: EndpointRecorder;
  private takeover?: Takeover;
  private feedListeners?: { change: (c: Change) => void; resync: () => void };
  private readonly interfaces = new Map<string, RegisteredInterface>();
  /** The egress policy's nftables table per interface (tunnel.egress). */
  private readonly egress = new Map<string, EgressGuard>();
  private cleanups: Array<() => void> = [];
  private sweepTimer?: NodeJS.Timeout;
  private sweeping?: Promise<unknown>;
  private reconcileTimer?: NodeJS.Timeout;
  private reconciling?: Promise<unknown>;
  private reconcileChanges?: Counter;
  private reconcileRuns?: Counter;
  private readonly metricNames: string[] = [];
  private registrations?: Counter;
  private initiations?: Counter;
  private lastStats?: { at: number; states: Map<string, DeviceState | undefined> };
  private statsInFlight?: Promise<Map<string, DeviceState | undefined>>;
  /** Last seen byte counters per interface/peer, to turn device counters (reset on restart) into monotonic totals. */
  private readonly lastBytes = new Map<string, { rx: number; tx: number }>();

  constructor(
    private readonly ctx: AgentContext,
    private readonly opts: WireguardSubsystemOptions = {},
  ) {}

  private get cfg(): WireguardConfig {
    return this.ctx.config.tunnel.wireguard;
  }

  /** The registry this subsystem keeps its peers in (tests read it). */
  get registryService(): RegistryService | undefined {
    return this.registry;
  }

  device(name: string): WireguardDevice | undefined {
    return this.interfaces.get(name)?.device;
  }

  async start(): Promise<void> {
    const dir = join(this.ctx.stateDir, 'wireguard');
    const registry = this.ctx.services.require<RegistryService>(REGISTRY_SERVICE, 'tunnel.wireguard');
    this.registry = registry;
    await this.importLegacyLeases(dir, registry);
    const registrar = new PeerRegistrar(registry, this.interfaces, () => this.cfg, this.ctx.log);
    this.registrar = registrar;
    const swept = await registrar.sweepExpired();
    if (swept) this.ctx.log.info({ removed: swept }, 'removed peers that expired while the agent was down');
    // Before the devices start: their first configuration may already initiate (an agent restart).
    this.initiations = new Counter({
      name: 'cbr_wireguard_initiated_peers_total',
      help: "Peers the device was made to initiate a handshake with: after a wireguard-go (re)start (restart) or for a gone PoP's clients (takeover)",
      labelNames: ['interface', 'reason'],
      registers: [this.ctx.registry],
    });
    this.metricNames.push('cbr_wireguard_initiated_peers_total');
    this.endpoints = new EndpointRecorder(registry, this.interfaces, popName(this.ctx.config), this.ctx.log);
    try {
      for (const [i, ifc] of this.cfg.interfaces.entries()) await this.startInterface(ifc, i, dir);
    } catch (err) {
      await this.stop();
      throw err;
    }
    this.followFeed(registry);
    this.endpoints.start();
    this.takeover = new Takeover(registry, this.interfaces, popName(this.ctx.config), this.ctx.health, this.ctx.log);
    this.takeover.start();
    this.addMetrics();
    this.addRoutes();
    this.scheduleSweep();
    this.scheduleReconcile();
    const restored = (await registry.local.peers()).length;
    this.ctx.log.info({ interfaces: [...this.interfaces.keys()], peers: restored, registry: registry.primary.backend }, 'WireGuard serving');
  }

  /**
   * An upgrade from before the registry: the leases of `<stateDir>/wireguard/leases.db` go into the
   * registry with their addresses, once (the file is renamed `leases.db.imported`). Left for the next
   * start when the registry cannot take them now (database away) or the file cannot be read.
   */
  private async importLegacyLeases(dir: string, registry: RegistryService): Promise<void> {
    const path = join(dir, 'leases.db');
    if (!existsSync(path)) return;
    try {
      const peers = readLegacyLeases(path);
      const added = await registry.primary.importPeers(peers);
      for (const suffix of ['', '-wal', '-shm']) if (existsSync(path + suffix)) renameSync(path + suffix, `${path}.imported${suffix}`);
      this.ctx.log.warn({ path, peers: peers.length, imported: added.length }, 'imported the old WireGuard lease file into the registry');
    } catch (err) {
      this.ctx.log.error({ err, path }, 'importing the old WireGuard lease file failed; retrying at the next start');
    }
  }

  /** Applies every change the registry feed brings (from any PoP) to the devices, in order. */
  private followFeed(registry: RegistryService): void {
    const feed = registry.feed;
    if (!feed) return;
    let chain: Promise<unknown> = Promise.resolve();
    const change = (c: Change) => {
      chain = chain.then(() => this.registrar?.applyChange(c)).catch((err) => this.ctx.log.warn({ err, seq: c.seq }, 'applying a registry change failed'));
    };
    // A snapshot replaced the copy: make every device match it.
    const resync = () => {
      chain = chain.then(() => this.reconcileNow());
    };
    feed.on('change', change);
    feed.on('resync', resync);
    this.feedListeners = { change, resync };
  }

  private async startInterface(ifc: WireguardInterfaceConfig, i: number, dir: string): Promise<void> {
    const field = `tunnel.wireguard.interfaces[${i}]`;
    const keyPath = ifc.privateKeyFile ?? join(dir, `${ifc.name}.key`);
    const { privateKey, publicKey } = loadOrCreatePrivateKey(keyPath, `${field}.privateKeyFile`, (path, pub) =>
      this.ctx.log.warn(
        { interface: ifc.name, path, publicKey: pub },
        'no private key file: generated a new WireGuard key pair (clients must use this new public key)',
      ),
    );
    const device = new WireguardDevice(ifc, {
      supervisor: this.ctx.supervisor,
      log: this.ctx.log,
      privateKey,
      field,
      livePeers: () => this.endpoints!.withEndpoints(ifc.name, this.registrar!.livePeers(ifc.name)),
      commandPrefix: this.opts.commandPrefix,
      secretDir: dir,
      onInitiate: (n, reason) => this.initiations?.inc({ interface: ifc.name, reason }, n),
    });
    this.interfaces.set(ifc.name, { config: ifc, device, publicKey, pools: poolsFor(ifc) });
    await device.start();
    // By interface name, so the rules hold across wireguard-go restarts (the link comes and goes).
    const guard = new EgressGuard(ifc.name, this.ctx.config.tunnel.egress, { registry: this.ctx.registry, prefix: this.opts.commandPrefix });
    await guard.apply().catch((err) => {
      throw new Error(`tunnel.egress: cannot install the egress rules for ${ifc.name}: ${errorMessage(err)}`);
    });
    this.egress.set(ifc.name, guard);
    this.cleanups.push(
      this.ctx.health.register({
        name: `wireguard.${ifc.name}`,
        intervalMs: 2_000,
        timeoutMs: 1_500,
        rise: 1,
        fall: 2,
        run: () => device.check(),
      }),
    );
    this.ctx.log.info({ interface: ifc.name, implementation: device.implementation, publicKey, listenPort: ifc.listenPort }, 'WireGuard interface up');
  }

  private apiDeps(): ApiDeps {
    return {
      registrar: this.registrar!,
      gate: () => this.ctx.services.require<AuthGate>(AUTH_SERVICE, 'tunnel.wireguard'),
      onRegistration: (r: RegistrationResult) => this.registrations?.inc({ result: r }),
    };
  }

  private addRoutes(): void {
    const deps = this.apiDeps();
    const admin = this.ctx.admin;
    this.cleanups.push(
      admin.route('POST', '/v1/wireguard/peers', registerHandler(deps), 'client'),
      admin.route('GET', '/v1/wireguard/peers/me', myPeersHandler(deps), 'client'),
      admin.route('DELETE', '/v1/wireguard/peers/:publicKey', deleteMyPeerHandler(deps), 'client'),
      admin.route('GET', '/v1/wireguard/admin/peers', async () => ({ body: await this.adminPeerList() }), 'admin'),
      admin.route('DELETE', '/v1/wireguard/admin/peers/:publicKey', adminRevokeHandler(deps), 'admin'),
    );
  }

  private async adminPeerList() {
    const states = await this.deviceStates(0);
    const now = Date.now();
    return {
      interfaces: [...this.interfaces.values()].map((i) => ({
        name: i.config.name,
        publicKey: i.publicKey,
        implementation: i.device.implementation,
        ready: i.device.ready,
        listenPort: i.config.listenPort,
      })),
      peers: (await this.registrar!.all()).map((l) => {
        const p = states.get(l.iface)?.peers.find((x) => x.publicKey === l.publicKey);
        return {
          publicKey: l.publicKey,
          interface: l.iface,
          subject: l.subject,
          ipv4: l.ipv4,
          ipv6: l.ipv6,
          createdAt: new Date(l.createdAt).toISOString(),
          expiresAt: new Date(l.expiresAt).toISOString(),
          onDevice: p !== undefined,
          endpoint: p?.endpoint,
          latestHandshakeAgeSeconds: p && p.lastHandshakeTimeSec > 0 ? Math.max(0, Math.round(now / 1000 - p.lastHandshakeTimeSec)) : undefined,
          rxBytes: p?.rxBytes,
          txBytes: p?.txBytes,
        };
      }),
    };
  }

  /** Device states, shared by the metrics of one scrape (and cached for maxAgeMs). */
  private async deviceStates(maxAgeMs = 500): Promise<Map<string, DeviceState | undefined>> {
    if (this.lastStats && Date.now() - this.lastStats.at <= maxAgeMs) return this.lastStats.states;
    this.statsInFlight ??= (async () => {
      const states = new Map<string, DeviceState | undefined>();
      await Promise.all([...this.interfaces.values()].map(async (i) => states.set(i.config.name, await i.device.get().catch(() => undefined))));
      this.lastStats = { at: Date.now(), states };
      return states;
    })().finally(() => (this.statsInFlight = undefined));
    return this.statsInFlight;
  }

  private addMetrics(): void {
    const registers = [this.ctx.registry];
    const svc = this;
    const labelNames = ['interface'];
    const track = <T>(m: T, name: string): T => {
      this.metricNames.push(name);
      return m;
    };
    this.registrations = track(
      new Counter({ name: 'cbr_wireguard_registrations_total', help: 'Peer registration requests by result', labelNames: ['result'], registers }),
      'cbr_wireguard_registrations_total',
    );
    for (const r of ['created', 'renewed', 'bad_request', 'unauthorized', 'forbidden', 'rate_limited', 'unavailable', 'conflict', 'error'])
      this.registrations.inc({ result: r }, 0);
    this.reconcileRuns = track(
      new Counter({
        name: 'cbr_wireguard_reconcile_runs_total',
        help: 'Device/registry reconcile passes by interface and result (ok, error)',
        labelNames: ['interface', 'result'],
        registers,
      }),
      'cbr_wireguard_reconcile_runs_total',
    );
    this.reconcileChanges = track(
      new Counter({
        name: 'cbr_wireguard_reconcile_changes_total',
        help: 'Peers a reconcile pass removed from (no live lease) or added to (missing or wrong allowed IPs) the device',
        labelNames: ['interface', 'action'],
        registers,
      }),
      'cbr_wireguard_reconcile_changes_total',
    );
    for (const name of this.interfaces.keys()) {
      for (const action of ['removed', 'added']) this.reconcileChanges.inc({ interface: name, action }, 0);
    }
    track(
      new Gauge({
        name: 'cbr_wireguard_leases',
        help: "Registered peers (leases) in the registry's local copy",
        labelNames,
        registers,
        async collect() {
          const peers = (await svc.registry?.local.peers()) ?? [];
          for (const name of svc.interfaces.keys()) this.set({ interface: name }, peers.filter((p) => p.iface === name).length);
        },
      }),
      'cbr_wireguard_leases',
    );
    track(
      new Gauge({
        name: 'cbr_wireguard_peers',
        help: 'Peers configured on the device',
        labelNames,
        registers,
        async collect() {
          const states = await svc.deviceStates();
          for (const [name, s] of states) if (s) this.set({ interface: name }, s.peers.length);
        },
      }),
      'cbr_wireguard_peers',
    );
    track(
      new Gauge({
        name: 'cbr_wireguard_latest_handshake_age_seconds',
        help: 'Seconds since the most recent handshake of any peer on the interface',
        labelNames,
        registers,
        async collect() {
          this.reset();
          const now = Date.now() / 1000;
          for (const [name, s] of await svc.deviceStates()) {
            const latest = Math.max(0, ...(s?.peers.map((p) => p.lastHandshakeTimeSec) ?? []));
            if (latest > 0) this.set({ interface: name }, Math.max(0, now - latest));
          }
        },
      }),
      'cbr_wireguard_latest_handshake_age_seconds',
    );
    const perPeer = this.cfg.perPeerMetrics
      ? {
          age: new Gauge({
            name: 'cbr_wireguard_peer_latest_handshake_age_seconds',
            help: "Seconds since the peer's latest handshake",
            labelNames: ['interface', 'peer'],
            registers: [],
          }),
          rx: new Gauge({
            name: 'cbr_wireguard_peer_received_bytes',
            help: 'Bytes received from the peer (device counter; resets with wireguard-go)',
            labelNames: ['interface', 'peer'],
            registers: [],
          }),
          tx: new Gauge({
            name: 'cbr_wireguard_peer_sent_bytes',
            help: 'Bytes sent to the peer (device counter; resets with wireguard-go)',
            labelNames: ['interface', 'peer'],
            registers: [],
          }),
        }
      : undefined;
    // rx is registered before tx (and the per-peer gauges), so its collector updates them all from one device read.
    const tx = new Counter({
      name: 'cbr_wireguard_sent_bytes_total',
      help: 'Bytes sent to peers (kept monotonic across wireguard-go restarts)',
      labelNames,
      registers: [],
    });
    const rx = track(
      new Counter({
        name: 'cbr_wireguard_received_bytes_total',
        help: 'Bytes received from peers (kept monotonic across wireguard-go restarts)',
        labelNames,
        registers,
        async collect() {
          await svc.collectTraffic(this, tx, perPeer);
        },
      }),
      'cbr_wireguard_received_bytes_total',
    );
    for (const m of [tx, ...(perPeer ? [perPeer.age, perPeer.rx, perPeer.tx] : [])]) {
      this.ctx.registry.registerMetric(m);
      this.metricNames.push((m as unknown as { name: string }).name);
    }
    void rx;
  }

  private async collectTraffic(rx: Counter, tx: Counter, perPeer: { age: Gauge; rx: Gauge; tx: Gauge } | undefined): Promise<void> {
    const now = Date.now() / 1000;
    perPeer?.age.reset();
    perPeer?.rx.reset();
    perPeer?.tx.reset();
    for (const [name, s] of await this.deviceStates()) {
      if (!s) continue;
      rx.inc({ interface: name }, 0);
      tx.inc({ interface: name }, 0);
      const seen = new Set<string>();
      for (const p of s.peers) {
        const k = `${name}/${p.publicKey}`;
        seen.add(k);
        const last = this.lastBytes.get(k);
        // A counter lower than last time means the device restarted: count from zero.
        const dRx = last && p.rxBytes >= last.rx ? p.rxBytes - last.rx : p.rxBytes;
        const dTx = last && p.txBytes >= last.tx ? p.txBytes - last.tx : p.txBytes;
        if (dRx > 0) rx.inc({ interface: name }, dRx);
        if (dTx > 0) tx.inc({ interface: name }, dTx);
        this.lastBytes.set(k, { rx: p.rxBytes, tx: p.txBytes });
        if (perPeer) {
          if (p.lastHandshakeTimeSec > 0) perPeer.age.set({ interface: name, peer: p.publicKey }, Math.max(0, now - p.lastHandshakeTimeSec));
          perPeer.rx.set({ interface: name, peer: p.publicKey }, p.rxBytes);
          perPeer.tx.set({ interface: name, peer: p.publicKey }, p.txBytes);
        }
      }
      for (const k of this.lastBytes.keys()) if (k.startsWith(`${name}/`) && !seen.has(k)) this.lastBytes.delete(k);
    }
  }

  /** Periodically makes every device match the registry's local copy (see WireguardDevice.reconcile). */
  private scheduleReconcile(): void {
    clearInterval(this.reconcileTimer);
    this.reconcileTimer = setInterval(
      () => {
        this.reconciling ??= this.reconcileNow().finally(() => (this.reconciling = undefined));
      },
      Math.max(100, this.cfg.reconcileInterval),
    );
    this.reconcileTimer.unref();
  }

  /** One reconcile pass over every interface; resolves with the peers removed and added per interface. */
  async reconcileNow(): Promise<Map<string, { removed: string[]; added: string[] }>> {
    const out = new Map<string, { removed: string[]; added: string[] }>();
    for (const [name, i] of this.interfaces) {
      try {
        const r = await i.device.reconcile(() => this.registrar!.livePeers(name));
        out.set(name, r);
        this.reconcileRuns?.inc({ interface: name, result: 'ok' });
        if (r.removed.length) this.reconcileChanges?.inc({ interface: name, action: 'removed' }, r.removed.length);
        if (r.added.length) this.reconcileChanges?.inc({ interface: name, action: 'added' }, r.added.length);
        if (r.removed.length || r.added.length)
          this.ctx.log.warn({ interface: name, removed: r.removed, added: r.added }, "device differed from the registry's local copy; reconciled");
      } catch (err) {
        this.reconcileRuns?.inc({ interface: name, result: 'error' });
        this.ctx.log.warn({ err, interface: name }, "reconciling the device with the registry's local copy failed; retrying next interval");
      }
    }
    return out;
  }

  private scheduleSweep(): void {
    clearInterval(this.sweepTimer);
    this.sweepTimer = setInterval(
      () => {
        if (this.sweeping) return;
        this.sweeping = this.registrar!.sweepExpired()
          .catch((err) => this.ctx.log.error({ err }, 'sweeping expired peers failed'))
          .finally(() => (this.sweeping = undefined));
      },
      Math.max(100, this.cfg.expiryInterval),
    );
    this.sweepTimer.unref();
  }

  async checkReload(next: CbrConfig): Promise<void> {
    const n = next.tunnel.wireguard;
    const problems: string[] = [];
    const cur = this.cfg.interfaces;
    for (const [i, ifc] of n.interfaces.entries()) {
      const old = cur.find((c) => c.name === ifc.name);
      if (!old) {
        problems.push(`tunnel.wireguard.interfaces[${i}].name: adding interface ${ifc.name} needs an agent restart`);
        continue;
      }
      for (const f of RESTART_ONLY_FIELDS) {
        if (!isDeepStrictEqual(old[f], ifc[f])) problems.push(`tunnel.wireguard.interfaces[${i}].${f}: cannot change on reload; restart the agent`);
      }
    }
    for (const old of cur) {
      if (!n.interfaces.some((c) => c.name === old.name) && (await this.registry!.local.peers({ iface: old.name })).length === 0) {
        problems.push(`tunnel.wireguard.interfaces: removing interface ${old.name} needs an agent restart`);
      }
    }
    problems.push(...(await this.registrar!.orphanProblems(n)));
    if (problems.length) throw new Error(problems.join('; '));
  }

  async reload(next: CbrConfig): Promise<void> {
    for (const ifc of next.tunnel.wireguard.interfaces) {
      const reg = this.interfaces.get(ifc.name);
      if (!reg) continue;
      const prev = reg.config;
      reg.config = ifc;
      reg.pools = poolsFor(ifc);
      await reg.device.updateRouting(ifc, [...prev.pools, ...prev.routes]);
    }
    this.scheduleSweep();
    for (const guard of this.egress.values()) await guard.apply(next.tunnel.egress);
    this.scheduleReconcile();
  }

  async stop(): Promise<void> {
    if (this.feedListeners) {
      this.registry?.feed?.off('change', this.feedListeners.change);
      this.registry?.feed?.off('resync', this.feedListeners.resync);
      this.feedListeners = undefined;
    }
    await this.takeover?.stop();
    await this.endpoints?.stop();
    clearInterval(this.sweepTimer);
    clearInterval(this.reconcileTimer);
    await this.sweeping;
    await this.reconciling;
    this.cleanups
      .splice(0)
      .reverse()
      .forEach((c) => {
        c();
      });
    for (const name of this.metricNames.splice(0)) this.ctx.registry.removeSingleMetric(name);
    for (const i of [...this.interfaces.values()].reverse()) {
      await i.device.stop().catch((err) => this.ctx.log.warn({ err, interface: i.config.name }, 'stopping the interface failed'));
    }
    this.interfaces.clear();
    for (const guard of this.egress.values()) await guard.remove();
    this.egress.clear();
    this.registry = undefined;
  }
}
