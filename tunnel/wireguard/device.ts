// One WireGuard interface: wireguard-go run in the foreground under the agent's supervisor (or a
// kernel WireGuard link where the host has one), configured through its UAPI socket, addresses,
// MTU and routes through iproute2. Every (re)start of wireguard-go re-applies the whole state: key,
// port and every live peer, since a restarted wireguard-go starts empty.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { errorMessage, type Logger, type Supervisor, type SupervisedChild } from '../../dataplane/index.js';
import type { WireguardInterfaceConfig } from './config.js';
import { UapiClient, uapiSocketPath } from './uapi-client.js';
import { WgToolControl } from './wg-tool.js';
import { UapiError, type DeviceSet, type DeviceState, type PeerSet } from './uapi.js';

const execFileAsync = promisify(execFile);

/** What configures a device: the UAPI socket (wireguard-go) or `wg` over netlink (kernel). */
export interface WgControl {
  get(): Promise<DeviceState>;
  set(req: DeviceSet): Promise<void>;
}

export interface DevicePeer {
  publicKey: string;
  allowedIps: string[];
  /**
   * Where the peer was last heard from (a restarted device knows no endpoints): a (re)configure sets
   * it and makes the device initiate the handshake, so a client whose session died with the old
   * process hears from the PoP at once instead of waiting out its rekey timer.
   */
  endpoint?: string;
}

/** How long a (re)configured device keeps a 1 s persistent keepalive on the peers it re-initiates. */
export const KICK_KEEPALIVE_MS = 5_000;

export interface DeviceOptions {
  supervisor: Supervisor;
  log: Logger;
  privateKey: string;
  /** Field path of this interface in the config, for error messages. */
  field: string;
  /** The peers that must be on the interface (read from the registry's local copy at each (re)configure). */
  livePeers: () => Promise<DevicePeer[]>;
  /** Runs `ip` and wireguard-go through this prefix (tests: `ip netns exec <ns>`). */
  commandPrefix?: string[];
  /** A directory only the agent may read, for the key `wg` reads from a file on the kernel path. */
  secretDir: string;
  /** Directory of UAPI sockets (default /var/run/wireguard). */
  uapiDir?: string;
  /** Told how many peers the device was made to initiate handshakes with, and why. */
  onInitiate?: (peers: number, reason: 'restart' | 'takeover') => void;
  /** How long start() waits for the interface to be configured. */
  startTimeoutMs?: number;
}

export type Implementation = 'kernel' | 'userspace';

export class WireguardDevice {
  readonly name: string;
  implementation?: Implementation;
  private control?: WgControl;
  private child?: SupervisedChild;
  /** UAPI operations and (re)configuration run one at a time, in order. */
  private queue: Promise<unknown> = Promise.resolve();
  private configured = false;
  private stopped = false;
  private configureWaiters: Array<(err?: Error) => void> = [];
  private readonly kickTimers = new Set<NodeJS.Timeout>();
  configureCount = 0;

  constructor(
    private cfg: WireguardInterfaceConfig,
    private readonly opts: DeviceOptions,
  ) {
    this.name = cfg.name;
  }

  get ready(): boolean {
    return this.configured;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    this.implementation = await this.chooseImplementation();
    const done = new Promise<void>((resolve, reject) => this.configureWaiters.push((err) => (err ? reject(err) : resolve())));
    const timeoutMs = this.opts.startTimeoutMs ?? 15_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`${this.opts.field}: ${this.name} was not configured within ${timeoutMs} ms (see the log for wireguard-go's output)`)),
        timeoutMs,
      );
    });
    if (this.implementation === 'kernel') {
      this.control = new WgToolControl(this.name, this.opts.secretDir, this.opts.commandPrefix);
      void this.reconfigure('kernel link created');
    } else {
      this.control = new UapiClient(uapiSocketPath(this.name, this.opts.uapiDir));
      const prefix = this.opts.commandPrefix ?? [];
      const argv = [...prefix, 'wireguard-go', '-f', this.name];
      this.child = this.opts.supervisor.supervise({
        name: `wireguard-go:${this.name}`,
        command: argv[0]!,
        args: argv.slice(1),
        // wireguard-go refuses to run on a kernel with WireGuard built in unless told to.
        env: { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1', LOG_LEVEL: 'error' },
        // Its stderr carries a banner on every start; real errors are raised to warn below.
        stderrLevel: 'info',
        initialBackoffMs: 200,
        maxBackoffMs: 5_000,
      });
      this.child.on('start', () => void this.reconfigure('wireguard-go started'));
      this.child.on('line', (line) => {
        if (/^ERROR:/.test(line)) this.opts.log.warn({ interface: this.name, line }, 'wireguard-go reported an error');
      });
      this.child.on('exit', () => {
        this.configured = false;
      });
    }
    try {
      await Promise.race([done, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  private async chooseImplementation(): Promise<Implementation> {
    if (this.cfg.implementation === 'userspace') return 'userspace';
    // A leftover link of ours (e.g. from a killed agent with kernel WireGuard) is replaced.
    await this.ip(['link', 'del', 'dev', this.name]).catch(() => undefined);
    try {
      await this.ip(['link', 'add', 'dev', this.name, 'type', 'wireguard']);
      return 'kernel';
    } catch (err) {
      if (this.cfg.implementation === 'kernel')
        throw new Error(
          `${this.opts.field}.implementation: kernel WireGuard is not available on this host (${errorMessage(err).trim()}); use userspace or auto`,
        );
      this.opts.log.info({ interface: this.name }, 'no kernel WireGuard on this host; running wireguard-go');
      return 'userspace';
    }
  }

  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn, fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Applies key, port, every live peer, addresses, MTU, routes; retried by the next restart on failure. */
  private reconfigure(reason: string): Promise<void> {
    return this.enqueue(async () => {
      if (this.stopped) return;
      const t0 = performance.now();
      try {
        await this.waitForControl();
        const peers = await this.opts.livePeers();
        const kicked = peers.filter((p) => p.endpoint !== undefined).map((p) => p.publicKey);
        await this.control!.set({
          privateKey: this.opts.privateKey,
          listenPort: this.cfg.listenPort,
          replacePeers: true,
          peers: peers.map((p) => ({
            publicKey: p.publicKey,
            replaceAllowedIps: true,
            allowedIps: p.allowedIps,
            // A persistent keepalive makes wireguard-go send at once (when the link comes up), which
            // with no session means a handshake initiation to the endpoint; cleared again below.
            ...(p.endpoint !== undefined ? { endpoint: p.endpoint, persistentKeepaliveInterval: 1 } : {}),
          })),
        });
        await this.configureLink();
        this.configured = true;
        this.configureCount++;
        this.scheduleKickEnd(kicked);
        if (kicked.length) this.opts.onInitiate?.(kicked.length, 'restart');
        this.opts.log.info(
          { interface: this.name, reason, peers: peers.length, initiated: kicked.length, ms: Math.round(performance.now() - t0) },
          'interface configured',
        );
        for (const w of this.configureWaiters.splice(0)) w();
      } catch (err) {
        this.configured = false;
        this.opts.log.error({ err, interface: this.name, reason }, 'configuring the interface failed');
        if (this.implementation === 'userspace' && this.child && !this.stopped) {
          // Restarting wireguard-go brings a fresh device and another configure attempt.
          this.child.kill('SIGKILL');
        } else {
          const e = err instanceof Error ? err : new Error(errorMessage(err));
          for (const w of this.configureWaiters.splice(0)) w(e);
        }
      }
    });
  }

  /** Clears the re-initiation keepalives after a while (update_only: a peer removed meanwhile stays removed). */
  private scheduleKickEnd(keys: string[]): void {
    if (keys.length === 0) return;
    const timer = setTimeout(() => {
      this.kickTimers.delete(timer);
      void this.enqueue(async () => {
        if (!this.control || !this.configured || this.stopped) return;
        await this.control.set({ peers: keys.map((publicKey) => ({ publicKey, updateOnly: true, persistentKeepaliveInterval: 0 })) });
      }).catch((err) => this.opts.log.warn({ err, interface: this.name }, 'clearing the re-initiation keepalives failed'));
    }, KICK_KEEPALIVE_MS);
    timer.unref();
    this.kickTimers.add(timer);
  }

  /**
   * Makes the device initiate handshakes with peers it carries at the given endpoints (clients of a
   * PoP that went away, now routed here): endpoint and a 1 s persistent keepalive, cleared later.
   * Peers not on the device are left alone. Throws when the device cannot be reached.
   */
  initiate(peers: Array<{ publicKey: string; endpoint: string }>): Promise<void> {
    if (peers.length === 0) return Promise.resolve();
    return this.setPeers(peers.map((p) => ({ publicKey: p.publicKey, updateOnly: true, endpoint: p.endpoint, persistentKeepaliveInterval: 1 }))).then(() => {
      this.scheduleKickEnd(peers.map((p) => p.publicKey));
      this.opts.onInitiate?.(peers.length, 'takeover');
    });
  }

  /**
   * Initiates again to taken-over peers that still have no handshake since `sinceMs`: the first
   * initiation may have gone out while the client's route still pointed at the PoP that left (its
   * answer went there), and wireguard-go sends no new initiation within its 5 s rekey timeout.
   * Removing and re-adding the peer in one UAPI set starts a fresh handshake at once. Resolves with
   * how many peers it restarted.
   */
  reinitiate(peers: Array<{ publicKey: string; endpoint: string }>, sinceMs: number): Promise<number> {
    if (peers.length === 0) return Promise.resolve(0);
    return this.enqueue(async () => {
      if (!this.control || !this.configured || this.stopped) return [];
      const state = await this.control.get();
      const live = new Map((await this.opts.livePeers()).map((p) => [p.publicKey, p]));
      const stale = peers.filter((p) => {
        const now = state.peers.find((d) => d.publicKey === p.publicKey);
        return now !== undefined && live.has(p.publicKey) && now.lastHandshakeTimeSec * 1000 < sinceMs;
      });
      if (stale.length === 0) return [];
      await this.control.set({
        peers: stale.flatMap((p) => [
          { publicKey: p.publicKey, remove: true },
          {
            publicKey: p.publicKey,
            replaceAllowedIps: true,
            allowedIps: live.get(p.publicKey)!.allowedIps,
            endpoint: p.endpoint,
            persistentKeepaliveInterval: 1,
          },
        ]),
      });
      return stale.map((p) => p.publicKey);
    }).then((keys) => {
      this.scheduleKickEnd(keys);
      if (keys.length) this.opts.onInitiate?.(keys.length, 'takeover');
      return keys.length;
    });
  }

  /** Polls the control channel until it answers (wireguard-go opens its socket just after it starts). */
  private async waitForControl(timeoutMs = 5_000): Promise<void> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.control!.get();
        return;
      } catch (err) {
        if (Date.now() > until || this.stopped) throw err;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  }

  private async configureLink(): Promise<void> {
    const dev = this.name;
    await this.ip(['link', 'set', 'dev', dev, 'mtu', String(this.cfg.mtu)]);
    for (const a of this.cfg.address) await this.ip(['address', 'replace', a, 'dev', dev, ...(a.includes(':') ? ['nodad'] : [])]);
    await this.ip(['link', 'set', 'dev', dev, 'up']);
    for (const r of [...this.cfg.pools, ...this.cfg.routes]) {
      await this.ip([r.includes(':') ? '-6' : '-4', 'route', 'replace', r, 'dev', dev]);
    }
  }

  private async ip(args: string[]): Promise<string> {
    const argv = [...(this.opts.commandPrefix ?? []), 'ip', ...args];
    try {
      const { stdout } = await execFileAsync(argv[0]!, argv.slice(1), { timeout: 10_000 });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`ip ${args.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
    }
  }

  /** Applies changed pools/routes (a reload): routes of prefixes no longer configured go, new ones come. */
  updateRouting(next: WireguardInterfaceConfig, previousPrefixes: string[]): Promise<void> {
    return this.enqueue(async () => {
      const wanted = new Set([...next.pools, ...next.routes]);
      this.cfg = next;
      if (!this.configured) return; // the next (re)configure applies it
      for (const r of previousPrefixes) {
        if (!wanted.has(r)) await this.ip([r.includes(':') ? '-6' : '-4', 'route', 'del', r, 'dev', this.name]).catch(() => undefined);
      }
      await this.configureLink();
    });
  }

  /** Adds or updates one peer on the running device. Throws when the device cannot be reached. */
  addPeer(peer: DevicePeer): Promise<void> {
    return this.setPeers([{ publicKey: peer.publicKey, replaceAllowedIps: true, allowedIps: peer.allowedIps }]);
  }

  removePeer(publicKey: string): Promise<void> {
    return this.setPeers([{ publicKey, remove: true }]);
  }

  private setPeers(peers: PeerSet[]): Promise<void> {
    return this.enqueue(async () => {
      if (!this.control || !this.configured) throw new UapiError(`${this.name} is not configured (wireguard-go restarting?)`);
      await this.control.set({ peers });
    });
  }

  /**
   * Makes the device carry exactly `live()`'s peers: removes the others (a revoke whose UAPI removal
   * failed, a peer added behind our back) and adds or corrects the missing ones. Runs in the device's
   * queue, so no add or remove of a concurrent registration or revoke interleaves with it; `live` is
   * read after the device, so a lease inserted meanwhile counts as live. Throws when the device
   * cannot be reached.
   */
  reconcile(live: () => Promise<DevicePeer[]>): Promise<{ removed: string[]; added: string[] }> {
    return this.enqueue(async () => {
      if (!this.control || !this.configured) throw new UapiError(`${this.name} is not configured (wireguard-go restarting?)`);
      const state = await this.control.get();
      const want = new Map((await live()).map((p) => [p.publicKey, p.allowedIps]));
      const sameIps = (a: string[], b: string[]) => a.length === b.length && [...a].sort().join() === [...b].sort().join();
      const removed = state.peers.filter((p) => !want.has(p.publicKey)).map((p) => p.publicKey);
      const have = new Map(state.peers.map((p) => [p.publicKey, p.allowedIps]));
      const added = [...want].filter(([k, ips]) => !have.has(k) || !sameIps(have.get(k)!, ips)).map(([k]) => k);
      const peers: PeerSet[] = [
        ...removed.map((publicKey) => ({ publicKey, remove: true as const })),
        ...added.map((publicKey) => ({ publicKey, replaceAllowedIps: true, allowedIps: want.get(publicKey)! })),
      ];
      if (peers.length) await this.control.set({ peers });
      return { removed, added };
    });
  }

  /** The device's state (peers with handshakes and byte counts). */
  get(): Promise<DeviceState> {
    if (!this.control) return Promise.reject(new UapiError(`${this.name} has not started`));
    return this.control.get();
  }

  /** Health: the control channel answers and the link is up. */
  async check(): Promise<void> {
    if (!this.configured) throw new Error(`${this.name} is not configured`);
    await this.get();
    const out = await this.ip(['-j', 'link', 'show', 'dev', this.name]);
    const links = JSON.parse(out) as Array<{ flags?: string[] }>;
    if (!links[0]?.flags?.includes('UP')) throw new Error(`${this.name} is not up`);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const t of this.kickTimers) clearTimeout(t);
    this.kickTimers.clear();
    for (const w of this.configureWaiters.splice(0)) w(new Error(`${this.name} stopped`));
    if (this.child) await this.opts.supervisor.stop(`wireguard-go:${this.name}`);
    if (this.implementation === 'kernel') await this.ip(['link', 'del', 'dev', this.name]).catch(() => undefined);
  }
}
