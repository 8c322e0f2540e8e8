// The `tunnel.masque` subsystem: the MASQUE server on the configured listener, its IpGateway,
// TLS from files (re-read on reload) or a self-signed pair in the state directory, Prometheus
// metrics read from the server's plain counters at scrape time (nothing per packet), a health
// check on the listener, GOAWAY on drain.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createSocket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { Counter, Gauge } from 'prom-client';
import type { AgentContext, Subsystem, SubsystemFactory, CbrConfig } from '../../dataplane/index.js';
import { splitHostPort, popName, errorMessage, EgressGuard } from '../../dataplane/index.js';
import { AUTH_SERVICE, type AuthGate } from '../../auth/index.js';
import { loadTlsMaterial, generateSelfSigned, writeTlsMaterial, FleetKeys, type TlsMaterial } from '../quic/index.js';
import { MasqueServer } from './server.js';
import { IpGateway } from './ip-gateway.js';
import { TargetPolicy } from './policy.js';
import { masqueLimits, type MasqueConfig } from './config.js';

async function tlsFor(cfg: MasqueConfig, stateDir: string): Promise<TlsMaterial> {
  const { certFile, keyFile } = cfg.tls;
  if (certFile || keyFile) {
    if (!certFile || !keyFile) throw new Error('tunnel.masque.tls: certFile and keyFile go together');
    return loadTlsMaterial(certFile, keyFile, 'tunnel.masque.tls');
  }
  const cert = join(stateDir, 'masque-selfsigned.crt');
  const key = join(stateDir, 'masque-selfsigned.key');
  if (existsSync(cert) && existsSync(key)) return loadTlsMaterial(cert, key, 'tunnel.masque.tls');
  const m = await generateSelfSigned();
  writeTlsMaterial(m, cert, key);
  return m;
}

/** The fleet's key file, or this process's own key (resets and retry tokens then hold only at this PoP). */
function fleetKeysFor(cfg: MasqueConfig): FleetKeys {
  return cfg.fleetKeyFile ? FleetKeys.fromFile(cfg.fleetKeyFile, 'tunnel.masque.fleetKeyFile') : FleetKeys.local();
}

function udpPolicy(cfg: MasqueConfig): TargetPolicy {
  return new TargetPolicy({
    allowPrefixes: cfg.udp.allowPrefixes,
    allowPorts: cfg.udp.allowPorts,
    allowPrivate: cfg.udp.allowPrivate,
    // read at start and on every reload: a client must not relay to the PoP's own services
    denyAddresses: Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((a) => a.address)),
  });
}

function registerMetrics(ctx: AgentContext, get: () => MasqueServer | undefined, gw: () => IpGateway | undefined): void {
  const r = ctx.registry;
  new Gauge({
    name: 'cbr_masque_sessions',
    help: 'open MASQUE sessions by kind',
    labelNames: ['kind'],
    registers: [r],
    collect() {
      const s = get();
      this.set({ kind: 'connect-udp' }, s?.live.udp ?? 0);
      this.set({ kind: 'connect-ip' }, s?.live.ip ?? 0);
    },
  });
  new Gauge({
    name: 'cbr_masque_udp_relay_sockets',
    help: 'connect-udp relay sockets open, by socket path (batch: the native addon; dgram: the node:dgram fallback)',
    labelNames: ['path'],
    registers: [r],
    collect() {
      const io = get()?.relayIo;
      if (io) this.set({ path: io.kind }, io.stats.sockets);
    },
  });
  new Gauge({
    name: 'cbr_masque_connections',
    help: 'open QUIC connections',
    registers: [r],
    collect() {
      this.set(get()?.connectionCount ?? 0);
    },
  });
  // Counters mirror the server's running totals: set the difference at scrape time.
  const mirror = (name: string, help: string, labelNames: string[], read: (s: MasqueServer) => Array<[Record<string, string>, number]>) => {
    const last = new Map<string, number>();
    new Counter({
      name,
      help,
      labelNames,
      registers: [r],
      collect() {
        const s = get();
        if (!s) return;
        for (const [labels, v] of read(s)) {
          const k = JSON.stringify(labels);
          const d = v - (last.get(k) ?? 0);
          if (d > 0) this.inc(labels, d);
          last.set(k, v);
        }
      },
    });
  };
  mirror('cbr_masque_sessions_opened_total', 'MASQUE sessions opened by kind', ['kind'], (s) => [
    [{ kind: 'connect-udp' }, s.counters.sessionsOpened.udp],
    [{ kind: 'connect-ip' }, s.counters.sessionsOpened.ip],
  ]);
  mirror('cbr_masque_sessions_ended_total', 'MASQUE sessions ended by reason', ['reason'], (s) =>
    Object.entries(s.counters.sessionsEnded).map(([k, v]) => [{ reason: k }, v]),
  );
  mirror('cbr_masque_handshakes_total', 'completed QUIC handshakes', [], (s) => [[{}, s.endpoint.stats.handshakes]]);
  mirror('cbr_masque_stateless_resets_total', 'stateless resets sent for packets of connections this PoP does not know, by result', ['result'], (s) => [
    [{ result: 'sent' }, s.endpoint.stats.statelessResets],
    [{ result: 'rate-limited' }, s.endpoint.stats.statelessResetsLimited],
  ]);
  mirror(
    'cbr_masque_reset_tokens_omitted_total',
    'connections accepted without a stateless reset token (the transport parameters left no room: such a client cannot learn of a reset)',
    [],
    (s) => [[{}, s.endpoint.stats.resetTokensOmitted]],
  );
  mirror('cbr_masque_datagrams_total', 'HTTP Datagrams (and DATAGRAM capsules) by direction', ['direction'], (s) => [
    [{ direction: 'in' }, s.counters.datagramsIn],
    [{ direction: 'out' }, s.counters.datagramsOut],
  ]);
  mirror('cbr_masque_bytes_total', 'tunnelled payload bytes by direction', ['direction'], (s) => [
    [{ direction: 'in' }, s.counters.bytesIn],
    [{ direction: 'out' }, s.counters.bytesOut],
  ]);
  mirror('cbr_masque_drops_total', 'dropped packets by reason', ['reason'], (s) => {
    const out: Array<[Record<string, string>, number]> = Object.entries(s.counters.drops).map(([k, v]) => [{ reason: k }, v]);
    for (const [k, v] of Object.entries(s.endpoint.stats.drops)) out.push([{ reason: `quic-${k}` }, v]);
    for (const [k, v] of Object.entries(s.relayIo.drops)) out.push([{ reason: `udp-${k}` }, v]);
    const g = gw();
    if (g) for (const [k, v] of Object.entries(g.drops)) out.push([{ reason: `ip-${k}` }, v]);
    return out;
  });
  mirror('cbr_masque_auth_failures_total', 'CONNECTs refused by the auth gate, by HTTP status', ['status'], (s) =>
    Object.entries(s.counters.authFailures).map(([k, v]) => [{ status: k }, v]),
  );
  mirror('cbr_masque_limit_exceeded_total', 'requests, streams, sessions and connections stopped by a tunnel.masque.limits bound', ['limit'], (s) =>
    Object.entries(s.counters.limits).map(([k, v]) => [{ limit: k }, v]),
  );
  new Gauge({
    name: 'cbr_masque_dns_lookups_in_flight',
    help: 'connect-udp host-name lookups in flight',
    registers: [r],
    collect() {
      this.set(get()?.resolver.inFlight ?? 0);
    },
  });
  mirror('cbr_masque_dns_lookups_total', 'connect-udp host-name lookups by result (busy: refused at the in-flight cap)', ['result'], (s) =>
    Object.entries(s.resolver.results).map(([k, v]) => [{ result: k }, v]),
  );
  new Gauge({
    name: 'cbr_masque_header_bytes',
    help: 'header bytes buffered for incomplete HTTP/3 requests',
    registers: [r],
    collect() {
      this.set(get()?.headerBytes ?? 0);
    },
  });
  mirror('cbr_masque_token_refreshes_total', 'in-band token refreshes accepted', [], (s) => [[{}, s.counters.tokenRefreshes]]);
  // The connect-ip TUN (dataplane/os/tun.ts): offloads, write syscalls against packets, splits.
  new Gauge({
    name: 'cbr_masque_tun_offload',
    help: 'whether the connect-ip TUN runs with the kernel offloads (vnet header: coalesced writes, split reads)',
    registers: [r],
    collect() {
      this.set(gw()?.tun.offload ? 1 : 0);
    },
  });
  const tun = (read: (t: IpGateway['tun']['stats']) => Array<[Record<string, string>, number]>) => () => {
    const g = gw();
    return g ? read(g.tun.stats) : [];
  };
  mirror(
    'cbr_masque_tun_writes_total',
    'write syscalls into the connect-ip TUN (one per packet without offloads)',
    [],
    tun((t) => [[{}, t.txWrites]]),
  );
  mirror(
    'cbr_masque_tun_write_errors_total',
    'packets the kernel refused on the connect-ip TUN',
    [],
    tun((t) => [[{}, t.txErrors]]),
  );
  mirror(
    'cbr_masque_tun_coalesced_packets_total',
    'packets written to the connect-ip TUN inside coalesced GSO super-packets',
    [],
    tun((t) => [[{}, t.txCoalesced]]),
  );
  mirror(
    'cbr_masque_tun_super_packets_total',
    'GSO super-packets on the connect-ip TUN: made on write, split on read',
    ['direction'],
    tun((t) => [
      [{ direction: 'write' }, t.txSuperPackets],
      [{ direction: 'read' }, t.rxSuperPackets],
    ]),
  );
  mirror(
    'cbr_masque_tun_split_packets_total',
    'packets the read super-packets of the connect-ip TUN were split into',
    [],
    tun((t) => [[{}, t.rxSegments]]),
  );
  mirror(
    'cbr_masque_tun_malformed_reads_total',
    'reads from the connect-ip TUN dropped because their vnet header did not describe the packet',
    [],
    tun((t) => [[{}, t.rxMalformed]]),
  );
}

/** Health: the listener's socket answers. A version-negotiation probe (unknown QUIC version) gets a reply without creating state. */
async function probeListener(host: string, port: number, signal: AbortSignal): Promise<void> {
  const sock = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  try {
    const probe = Buffer.alloc(1200);
    probe[0] = 0xc0;
    probe.writeUInt32BE(0x1a2a3a4a, 1); // a reserved version: the server must answer with Version Negotiation
    probe[5] = 20;
    probe[26] = 8;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer from the QUIC listener ${host}:${port}`)), 2000);
      signal.addEventListener('abort', () => {
        clearTimeout(timer);
        reject(new Error('health check aborted'));
      });
      sock.once('message', () => {
        clearTimeout(timer);
        resolve();
      });
      sock.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      sock.send(probe, port, host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host);
    });
  } finally {
    sock.close();
  }
}

/** The `tunnel.masque` lifecycle: the MASQUE server, its connect-ip gateway, TLS, metrics and health check. */
export class MasqueSubsystem implements Subsystem {
  private server: MasqueServer | undefined;
  private gateway: IpGateway | undefined;
  /** tunnel.egress on the connect-ip TUN (the same policy WireGuard interfaces get). */
  private egress: EgressGuard | undefined;
  private readonly log: AgentContext['log'];

  constructor(private readonly ctx: AgentContext) {
    this.log = ctx.log.child({ subsystem: 'tunnel.masque' });
  }

  private cfg(): MasqueConfig {
    return this.ctx.config.tunnel.masque as MasqueConfig;
  }

  async start(): Promise<void> {
    const c = this.cfg();
    const auth = this.ctx.services.require<AuthGate>(AUTH_SERVICE, 'tunnel.masque');
    const listen = splitHostPort(c.listen)!;
    const tls = await tlsFor(c, this.ctx.stateDir);
    const fleetKeys = fleetKeysFor(c);
    if (!fleetKeys.shared)
      this.log.warn(
        'tunnel.masque.fleetKeyFile is not set: stateless resets and retry tokens are valid only at this PoP (clients moved here by anycast wait for their idle timeout)',
      );
    if (c.ip.enabled) {
      try {
        this.gateway = await IpGateway.create({
          tunName: c.ip.tun,
          mtu: c.ip.mtu,
          poolV4: c.ip.poolV4,
          poolV6: c.ip.poolV6,
          nat: c.ip.nat,
          allowPrivate: c.ip.allowPrivate,
        });
      } catch (err) {
        throw new Error(`tunnel.masque.ip: cannot set up the connect-ip gateway: ${errorMessage(err)}`);
      }
      const guard = new EgressGuard(c.ip.tun, this.ctx.config.tunnel.egress, { registry: this.ctx.registry });
      try {
        await guard.apply();
      } catch (err) {
        await this.gateway.close();
        throw new Error(`tunnel.egress: cannot install the egress rules for ${c.ip.tun}: ${errorMessage(err)}`);
      }
      this.egress = guard;
    }
    try {
      this.server = await MasqueServer.listen({
        host: listen.host,
        port: listen.port,
        tls,
        serverId: c.serverId,
        congestionControl: c.congestionControl,
        idleTimeoutMs: c.idleTimeout,
        retry: c.retry,
        fleetKeys,
        statelessResetsPerSecond: c.statelessResetsPerSecond,
        maxSessions: c.maxSessions,
        auth,
        udpPolicy: udpPolicy(c),
        dnsTimeoutMs: c.udp.dnsTimeout,
        dnsMaxInFlight: c.udp.maxDnsLookups,
        limits: masqueLimits(c),
        ip: this.gateway ? { gateway: this.gateway, routes: c.ip.routes } : undefined,
        popName: popName(this.ctx.config),
        log: this.log,
      });
    } catch (err) {
      await this.gateway?.close();
      throw new Error(`tunnel.masque.listen: cannot listen on ${c.listen}: ${errorMessage(err)}`);
    }
    registerMetrics(
      this.ctx,
      () => this.server,
      () => this.gateway,
    );
    this.ctx.health.register({
      name: 'masque.listener',
      intervalMs: 5000,
      timeoutMs: 3000,
      rise: 2,
      fall: 3,
      run: (signal) => probeListener(this.server!.address.host, this.server!.address.port, signal),
    });
    // A drain (cbr bgp drain, POST /v1/drain, SIGTERM) moves clients before the route is withdrawn:
    // GOAWAY on every connection; leaving the drain accepts new requests again.
    this.ctx.health.on('draining', this.onHealthChange);
    this.onHealthChange();
    this.log.info(
      { listen: `${this.server.address.host}:${this.server.address.port}`, connectIp: !!this.gateway, fleetKeys: fleetKeys.shared ? fleetKeys.size : 'local' },
      'MASQUE listener up',
    );
  }

  checkReload(next: CbrConfig): void {
    const n = next.tunnel.masque as MasqueConfig;
    const c = this.cfg();
    if (n.listen !== c.listen) throw new Error('tunnel.masque.listen: changing the listener needs a restart');
    if (JSON.stringify(n.ip) !== JSON.stringify(c.ip)) {
      const { routes: _a, ...rest } = n.ip;
      const { routes: _b, ...cur } = c.ip;
      if (JSON.stringify(rest) !== JSON.stringify(cur)) throw new Error('tunnel.masque.ip: only ip.routes can change without a restart');
    }
    if (n.fleetKeyFile) fleetKeysFor(n); // a bad key file is refused before anything changes
    if ((n.tls.certFile && !existsSync(n.tls.certFile)) || (n.tls.keyFile && !existsSync(n.tls.keyFile)))
      throw new Error('tunnel.masque.tls: certificate or key file missing');
  }

  async reload(next: CbrConfig): Promise<void> {
    const n = next.tunnel.masque as MasqueConfig;
    if (!this.server) return;
    this.server.update({
      udpPolicy: udpPolicy(n),
      dnsTimeoutMs: n.udp.dnsTimeout,
      dnsMaxInFlight: n.udp.maxDnsLookups,
      limits: masqueLimits(n),
      ip: this.gateway ? { gateway: this.gateway, routes: n.ip.routes } : undefined,
      auth: this.ctx.services.require<AuthGate>(AUTH_SERVICE, 'tunnel.masque'),
    });
    this.server.setTls(await tlsFor(n, this.ctx.stateDir));
    // A rotation step: the file now holds the new key (first or second); the old one stays until removed.
    if (n.fleetKeyFile) this.server.setFleetKeys(fleetKeysFor(n));
    await this.egress?.apply(next.tunnel.egress);
    this.log.info('MASQUE config and TLS material reloaded');
  }

  async drain(): Promise<void> {
    this.server?.drain();
  }

  private readonly onHealthChange = (): void => {
    if (this.ctx.health.isDraining) this.server?.drain();
    else if (this.server?.isDraining) this.server.undrain();
  };

  async stop(): Promise<void> {
    this.ctx.health.off('draining', this.onHealthChange);
    await this.server?.close();
    await this.egress?.remove();
    this.egress = undefined;
    await this.gateway?.close();
    this.server = undefined;
    this.gateway = undefined;
  }
}

export const masqueSubsystemFactory: SubsystemFactory = {
  name: 'tunnel.masque',
  enabled: (c: CbrConfig) => c.tunnel.masque.enabled,
  create: (ctx: AgentContext): Subsystem => new MasqueSubsystem(ctx),
};
