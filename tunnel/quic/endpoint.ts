// A QUIC endpoint (server or client) driving quiche's native Connection from our own node:dgram
// socket. Per event-loop turn: every datagram libuv hands us in the poll phase is fed to its
// connection (recv), and the connections that got input or output are flushed once in a
// setImmediate (application events, then send until quiche says Done, then the timer is re-armed).
// That keeps the per-packet work at one native recv and one native send.
import type { RemoteInfo } from 'node:dgram';
import { isIP, isIPv4, isIPv6 } from 'node:net';
import { IPv6 } from 'ip-num';
import quiche from '@matrixai/quic/native/quiche.js';
import type { Config, Connection, Host } from '@matrixai/quic/native/types.js';
import { newServerConnectionId, newClientConnectionId, SERVER_CID_LENGTH } from './cid.js';
import { RetryTokenKey } from './token.js';
import { FleetKeys } from './fleet-key.js';
import { ResetLimiter, statelessResetPacket } from './stateless-reset.js';
import type { TlsMaterial } from './tls.js';
import { verifyIpCertificate } from './verify.js';
import { errorMessage } from '../../dataplane/index.js';
import { openUdpIo, type UdpIo, type UdpIoStats } from './udp-io.js';

export type CongestionControl = 'bbr' | 'cubic' | 'reno';
export const CONGESTION_CONTROLS: readonly CongestionControl[] = ['bbr', 'cubic', 'reno'];

/** CBR_CC wins over the configured value (operators flip it for one run without editing the file). */
export function resolveCongestionControl(configured: CongestionControl | undefined, env = process.env.CBR_CC): CongestionControl {
  if (env !== undefined && env !== '') {
    if (!(CONGESTION_CONTROLS as readonly string[]).includes(env))
      throw new Error(`CBR_CC: expected one of ${CONGESTION_CONTROLS.join(', ')}, got ${JSON.stringify(env)}`);
    return env as CongestionControl;
  }
  return configured ?? 'bbr';
}

export interface TransportOptions {
  congestionControl?: CongestionControl;
  idleTimeoutMs?: number;
  /** Largest UDP payload we send (quiche starts at 1200 until the handshake confirms more). */
  maxUdpPayload?: number;
  initialMaxData?: number;
  initialMaxStreamData?: number;
  initialMaxStreamsBidi?: number;
  initialMaxStreamsUni?: number;
  /** DATAGRAM frame queues (packets) in each direction. */
  datagramQueueLength?: number;
  /** Batched socket I/O through the native addon (default: when built, unless CBR_NATIVE_IO=0). */
  nativeIo?: boolean;
  alpn?: string[];
}

export interface ServerEndpointOptions extends TransportOptions {
  host: string;
  port: number;
  tls: TlsMaterial;
  /** Written into every server connection ID for the XDP LB (see cid.ts). */
  serverId: number;
  /** Stateless retry before any state is created (default true). */
  retry?: boolean;
  maxConnections?: number;
  /** Most connections from one source address (IPv6 grouped by /64); more Initials are dropped. Default 64. */
  maxConnectionsPerSource?: number;
  /** Most handshakes in progress from one source (IPv6 by /64). Default 16. */
  maxHandshakesPerSource?: number;
  /** Keys for reset and retry tokens shared by the fleet (fleet-key.ts); default a random key of this process. */
  fleetKeys?: FleetKeys;
  /** Most stateless resets sent per second (RFC 9000 §10.3.3). Default 1000. */
  statelessResetsPerSecond?: number;
  onConnection: (conn: QuicConnection) => void;
}

export interface ClientEndpointOptions extends TransportOptions {
  host?: string;
  port?: number;
  /** PEM CA bundle to verify the server against; with `insecure` no verification happens. */
  caPem?: string;
  insecure?: boolean;
}

/** What the application does with a connection's events; every handler is optional. */
export interface ConnectionHandler {
  onEstablished?(conn: QuicConnection): void;
  onStreamReadable?(conn: QuicConnection, streamId: number): void;
  /** Called for streams the application marked with wantWritable() once they have capacity again. */
  onStreamWritable?(conn: QuicConnection, streamId: number): void;
  onDatagram?(conn: QuicConnection, data: Buffer): void;
  /**
   * The peer sent STOP_SENDING on a stream we write: it reads no more of it. `code` is its application
   * error code, undefined for a watched stream that quiche already collected (see watchStream).
   */
  onStreamStopped?(conn: QuicConnection, streamId: number, code: number | undefined): void;
  onClosed?(conn: QuicConnection, reason: CloseReason): void;
}

/**
 * One streamRecv: bytes read (and whether that was the end of the stream), 'blocked' (nothing there
 * yet), the peer's RESET_STREAM with its application error code, or 'gone' (the stream is finished
 * and collected, or never existed). Distinct as quiche's own results are.
 */
export type StreamRead = { bytes: number; fin: boolean } | { reset: number } | 'blocked' | 'gone';

// The binding reports a quiche error only as its Debug text (`StreamReset(77)`, `StreamStopped(88)`):
// these two carry the peer's code, which is all we read from it.
const STREAM_RESET = /^StreamReset\((\d+)\)$/;
const STREAM_STOPPED = /^StreamStopped\((\d+)\)$/;
function quicheErrorCode(err: unknown, re: RegExp): number | undefined {
  const m = re.exec(err instanceof Error ? err.message : '');
  return m ? Number(m[1]) : undefined;
}

/** How often a connection with an onStreamStopped handler looks for STOP_SENDING on streams it is not writing. */
const STOP_CHECK_MS = 200;

export interface CloseReason {
  /**
   * 'peer' and 'local' carry the CONNECTION_CLOSE code; 'idle' is the idle timeout; 'stateless-reset':
   * the peer answered with a stateless reset (it has no state for this connection: reconnect).
   */
  by: 'peer' | 'local' | 'idle' | 'endpoint' | 'stateless-reset';
  isApp: boolean;
  code: number;
  reason: string;
}

export type DropReason =
  | 'short'
  | 'send-full'
  | 'send-error'
  | 'header'
  | 'unknown-cid'
  | 'not-initial'
  | 'small-initial'
  | 'bad-token'
  | 'full'
  | 'source-connections'
  | 'source-handshakes'
  | 'recv-error'
  | 'accept-error';

/** The key per-source limits count by: the IPv4 address, or the /64 of an IPv6 address. */
export function sourceKey(address: string): string {
  if (!isIPv6(address)) return address;
  if (address.startsWith('::ffff:') && isIPv4(address.slice(7))) return address.slice(7);
  return `${(IPv6.fromString(address).getValue() >> 64n).toString(16)}::/64`;
}

interface SourceCount {
  connections: number;
  handshakes: number;
}

export interface EndpointStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  handshakes: number;
  retriesSent: number;
  versionNegotiations: number;
  /** Stateless resets sent for short-header packets of unknown connections, and those the rate bound suppressed. */
  statelessResets: number;
  statelessResetsLimited: number;
  /** Connections accepted without a reset token because the transport parameters left no room. */
  resetTokensOmitted: number;
  sendErrors: number;
  drops: Record<DropReason, number>;
}

const MAX_UDP = 65_535;
/** CRYPTO_ERROR carrying the TLS alert bad_certificate (RFC 9001 §4.8: 0x100 + 42). */
const TLS_BAD_CERTIFICATE = 0x100 + 42;
const dgramScratch = Buffer.allocUnsafe(MAX_UDP);

function cidKey(cid: Uint8Array): string {
  return Buffer.from(cid.buffer, cid.byteOffset, cid.length).toString('latin1');
}

function applyTransport(c: Config, o: TransportOptions): void {
  c.setApplicationProtos(o.alpn ?? ['h3']);
  c.setMaxIdleTimeout(o.idleTimeoutMs ?? 30_000);
  c.setMaxRecvUdpPayloadSize(MAX_UDP);
  c.setMaxSendUdpPayloadSize(o.maxUdpPayload ?? 1452);
  const data = o.initialMaxData ?? 16 << 20;
  const stream = o.initialMaxStreamData ?? 4 << 20;
  c.setInitialMaxData(data);
  c.setInitialMaxStreamDataBidiLocal(stream);
  c.setInitialMaxStreamDataBidiRemote(stream);
  c.setInitialMaxStreamDataUni(stream);
  c.setInitialMaxStreamsBidi(o.initialMaxStreamsBidi ?? 256);
  c.setInitialMaxStreamsUni(o.initialMaxStreamsUni ?? 16);
  c.setMaxConnectionWindow(Math.max(data, 24 << 20));
  c.setMaxStreamWindow(Math.max(stream, 16 << 20));
  const q = o.datagramQueueLength ?? 1024;
  c.enableDgram(true, q, q);
  c.setCcAlgorithmName(resolveCongestionControl(o.congestionControl));
  c.setDisableActiveMigration(true);
}

const enc = new TextEncoder();

export function buildServerConfig(o: ServerEndpointOptions | (TransportOptions & { tls: TlsMaterial })): Config {
  const c = quiche.Config.withBoringSslCtx(false, false, null, [enc.encode(o.tls.keyPem)], [enc.encode(o.tls.certPem)], null);
  applyTransport(c, o);
  // quiche encodes transport parameters into a fixed 128-byte buffer. With retry's three CIDs (up to
  // 20 bytes each) the 18-byte reset token fits only when these shrink (it was 13 bytes short):
  // quiche leaves out a zero window and a zero ack delay exponent, and values under 16384 take a
  // 2-byte varint (no path carries a 16 KiB datagram; the control streams' window grows as read).
  c.setMaxRecvUdpPayloadSize(16_383);
  c.setAckDelayExponent(0); // the peer's ACK delays in µs, unscaled: a byte or two per ACK frame
  c.setInitialMaxStreamDataBidiLocal(0); // HTTP/3 servers open no bidirectional streams (RFC 9114 §6.1)
  c.setInitialMaxStreamDataUni(Math.min(o.initialMaxStreamData ?? 4 << 20, 16_383));
  // A fleet-wide ticket key: a session from one PoP resumes at any other (else BoringSSL's own key).
  const fleet = 'fleetKeys' in o ? o.fleetKeys : undefined;
  if (fleet?.shared) c.setTicketKey(fleet.ticketKey());
  return c;
}

export function buildClientConfig(o: ClientEndpointOptions): Config {
  const c = o.insecure
    ? quiche.Config.withBoringSslCtx(false, false, null, null, null, null)
    : quiche.Config.withBoringSslCtx(true, false, o.caPem !== undefined ? enc.encode(o.caPem) : null, null, null, null);
  if (!o.insecure && o.caPem === undefined) c.loadVerifyLocationsFromDirectory('/etc/ssl/certs');
  applyTransport(c, o);
  return c;
}

export class QuicConnection {
  handler: ConnectionHandler = {};
  /** Free for the application (e.g. its HTTP/3 session). */
  app: unknown;
  /** Set by the endpoint when it leaves the table. */
  closed = false;
  private established = false;
  private writeWaiters: Set<number> | undefined;
  /** STOP_SENDING codes found by streamSend, delivered on the next dispatch (not inside the write). */
  private stopped: Map<number, number | undefined> | undefined;
  /** Streams we keep open for the whole connection (HTTP/3 control and QPACK streams): reported if they go. */
  private watched: Set<number> | undefined;
  private nextStopCheck = 0;
  /** @internal Packets arrived since the last STOP_SENDING check (only they can carry one). */
  stopCheckDue = false;
  /** @internal A deferred STOP_SENDING check for packets that arrived between two checks. */
  stopTimer: NodeJS.Timeout | undefined;
  /** @internal */ timer: NodeJS.Timeout | undefined;
  /** @internal */ deadline = 0;
  /** @internal */ keys: string[] = [];
  /** @internal */ recvInfo: { from: Host; to: Host } | undefined;
  /** @internal The per-source counter this (server) connection is counted in, and its key. */
  source: SourceCount | undefined;
  /** @internal */ sourceKey = '';
  /** @internal A client connection to an IP literal: the certificate is checked here after the handshake (see verify.ts). */
  verifyIp: { ip: string; caPem: string | undefined } | undefined;

  constructor(
    readonly native: Connection,
    readonly endpoint: QuicEndpoint,
    readonly peer: Host,
    readonly local: Host,
    /** Keeps the TLS context this connection was made with alive across reloads. */
    readonly config: Config,
  ) {}

  get isEstablished(): boolean {
    return this.established;
  }

  /** The TLS session to resume with on a later connection (client; null until the server sent a ticket). */
  tlsSession(): Uint8Array | null {
    return this.native.session();
  }

  /** Whether the handshake resumed a TLS session (no certificate exchange). */
  get isResumed(): boolean {
    return this.native.isResumed();
  }

  /** Writes as much as flow control allows now; returns the bytes taken (0 when blocked). */
  streamSend(streamId: number, data: Uint8Array, fin = false): number {
    let n: number | null;
    try {
      n = this.native.streamSend(streamId, data, fin);
    } catch (err) {
      const code = quicheErrorCode(err, STREAM_STOPPED);
      if (code !== undefined) {
        this.noteStopped(streamId, code);
        this.endpoint.markDirty(this);
      }
      // Otherwise the stream is finished or reset in this direction: nothing more can go on it.
      return 0;
    }
    this.endpoint.markDirty(this);
    return n ?? 0;
  }

  /** Reads into buf (see StreamRead). */
  streamRecv(streamId: number, buf: Uint8Array): StreamRead {
    let r: [number, boolean] | null;
    try {
      r = this.native.streamRecv(streamId, buf);
    } catch (err) {
      const code = quicheErrorCode(err, STREAM_RESET);
      return code === undefined ? 'gone' : { reset: code };
    }
    if (r === null) return 'blocked';
    this.endpoint.markDirty(this); // MAX_STREAM_DATA may be due
    return { bytes: r[0], fin: r[1] };
  }

  /** Aborts a stream in one or both directions with an application error code. */
  streamShutdown(streamId: number, code: number, direction: 'read' | 'write' | 'both' = 'both'): void {
    for (const d of direction === 'both' ? (['read', 'write'] as const) : [direction]) {
      try {
        this.native.streamShutdown(streamId, d === 'read' ? quiche.Shutdown.Read : quiche.Shutdown.Write, code);
      } catch {
        /* already closed in that direction */
      }
    }
    this.endpoint.markDirty(this);
  }

  streamCapacity(streamId: number): number {
    try {
      return this.native.streamCapacity(streamId);
    } catch {
      // Finished, reset or stopped (STOP_SENDING is reported by streamSend and the stop check): no room on it.
      return 0;
    }
  }

  /**
   * Reports a stream of ours that should live as long as the connection through onStreamStopped once
   * the peer stops it: quiche collects a finished-sending stream on STOP_SENDING, leaving no error to read.
   */
  watchStream(streamId: number): void {
    this.watched ??= new Set();
    this.watched.add(streamId);
  }

  /** Asks for one onStreamWritable call once the stream has room again. */
  wantWritable(streamId: number): void {
    this.writeWaiters ??= new Set();
    this.writeWaiters.add(streamId);
    this.endpoint.markDirty(this);
  }

  /** Queues a DATAGRAM frame; false when it does not fit or the queue is full (the caller counts the drop). */
  datagramSend(data: Uint8Array): boolean {
    try {
      this.native.dgramSend(data);
    } catch {
      // Too big for the path, or the queue is full: the caller counts the drop.
      return false;
    }
    this.endpoint.markDirty(this);
    return true;
  }

  datagramMaxSize(): number {
    try {
      return this.native.dgramMaxWritableLen() ?? 0;
    } catch {
      // Datagrams not negotiated, or the connection is closing: nothing fits.
      return 0;
    }
  }

  close(isApp: boolean, code: number, reason = ''): void {
    try {
      this.native.close(isApp, code, enc.encode(reason));
    } catch {
      /* already closing */
    }
    this.endpoint.markDirty(this);
  }

  /**
   * STOP_SENDING shows only as an error from a write. Streams we write learn it there; the others
   * (a session that only receives) are probed with a zero-length writability check, at most every
   * STOP_CHECK_MS, since quiche lists a stopped stream as writable.
   */
  private deliverStops(): void {
    // Only packets carry STOP_SENDING: after our own writes or timers alone there is nothing to look for.
    if (this.stopCheckDue) this.checkStops();
    if (!this.stopped || this.stopped.size === 0) return;
    const found = this.stopped;
    this.stopped = undefined;
    // Called on the handler: it may be an object whose methods use `this`.
    for (const [id, code] of found) this.handler.onStreamStopped?.(this, id, code);
  }

  private checkStops(): void {
    const now = Date.now();
    if (now < this.nextStopCheck) {
      // Packets arrived since the last check (they may hold a STOP_SENDING): check once more later.
      if (!this.stopTimer) {
        this.stopTimer = setTimeout(() => {
          this.stopTimer = undefined;
          this.endpoint.markDirty(this);
        }, this.nextStopCheck - now);
        this.stopTimer.unref();
      }
      return;
    }
    this.stopCheckDue = false;
    this.nextStopCheck = now + STOP_CHECK_MS;
    for (const id of this.native.writable()) {
      try {
        this.native.streamWritable(id, 0);
      } catch (err) {
        const code = quicheErrorCode(err, STREAM_STOPPED);
        if (code !== undefined) this.noteStopped(id, code);
      }
    }
    if (this.watched) {
      for (const id of this.watched) {
        try {
          this.native.streamWritable(id, 0);
        } catch (err) {
          this.watched.delete(id);
          this.noteStopped(id, quicheErrorCode(err, STREAM_STOPPED));
        }
      }
    }
  }

  private noteStopped(streamId: number, code: number | undefined): void {
    this.stopped ??= new Map();
    this.stopped.set(streamId, code);
  }

  /** @internal Delivers application events after a batch of packets. */
  dispatch(): void {
    if (!this.established && this.native.isEstablished()) {
      if (this.verifyIp) {
        const why = verifyIpCertificate(this.native.peerCertChain() ?? [], this.verifyIp.ip, this.verifyIp.caPem);
        if (why) {
          // verifyIp stays set, so the refused connection never reaches onEstablished while it closes.
          this.close(false, TLS_BAD_CERTIFICATE, why);
          return;
        }
        this.verifyIp = undefined;
      }
      this.established = true;
      this.endpoint.stats.handshakes++;
      if (this.source) this.source.handshakes--;
      this.handler.onEstablished?.(this);
    }
    if (!this.established) return;
    const h = this.handler;
    if (h.onStreamReadable) for (const id of this.native.readable()) h.onStreamReadable(this, id);
    if (this.writeWaiters && this.writeWaiters.size > 0 && h.onStreamWritable) {
      for (const id of this.native.writable()) {
        if (this.writeWaiters.delete(id)) h.onStreamWritable(this, id);
      }
    }
    if (h.onStreamStopped) this.deliverStops();
    if (h.onDatagram) {
      // dgramRecv into one scratch buffer, then a copy from Node's buffer pool: dgramRecvVec hands
      // out a native-backed buffer per datagram (a finalizer each, and major GCs from the external memory).
      for (let i = 0; i < 4096; i++) {
        let n: number | null;
        try {
          n = this.native.dgramRecv(dgramScratch);
        } catch {
          // Only a datagram bigger than the 64 KiB scratch could fail here; quiche has dropped it.
          break;
        }
        if (n === null) break;
        const d = Buffer.allocUnsafe(n);
        dgramScratch.copy(d, 0, 0, n);
        h.onDatagram(this, d);
      }
    }
  }
}

export class QuicEndpoint {
  readonly stats: EndpointStats = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    handshakes: 0,
    retriesSent: 0,
    versionNegotiations: 0,
    statelessResets: 0,
    statelessResetsLimited: 0,
    resetTokensOmitted: 0,
    sendErrors: 0,
    drops: {
      short: 0,
      'send-full': 0,
      'send-error': 0,
      header: 0,
      'unknown-cid': 0,
      'not-initial': 0,
      'small-initial': 0,
      'bad-token': 0,
      full: 0,
      'source-connections': 0,
      'source-handshakes': 0,
      'recv-error': 0,
      'accept-error': 0,
    },
  };
  /** Connections and handshakes in progress per source (sourceKey), for the per-source caps. */
  private readonly sources = new Map<string, SourceCount>();
  private io!: UdpIo;
  private readonly table = new Map<string, QuicConnection>();
  private readonly connections = new Set<QuicConnection>();
  private dirty = new Set<QuicConnection>();
  private flushScheduled = false;
  private local: Host = { host: '0.0.0.0', port: 0 };
  private config: Config;
  /** Client: quiche's own name check off, for servers named by an IP literal (verified in verify.ts). */
  private ipConfig: Config | undefined;
  private fleet: FleetKeys;
  private tokens: RetryTokenKey;
  private readonly resetLimiter: ResetLimiter;
  /** Connections whose output waits for the socket to drain (its send queue was full). */
  private held = new Set<QuicConnection>();
  private readonly maxUdpPayload: number;
  private closing = false;

  private constructor(
    private readonly role: 'server' | 'client',
    private readonly opts: ServerEndpointOptions | ClientEndpointOptions,
  ) {
    this.config = role === 'server' ? buildServerConfig(opts as ServerEndpointOptions) : buildClientConfig(opts as ClientEndpointOptions);
    this.maxUdpPayload = opts.maxUdpPayload ?? 1452;
    const server = role === 'server' ? (opts as ServerEndpointOptions) : undefined;
    this.fleet = server?.fleetKeys ?? FleetKeys.local();
    this.tokens = new RetryTokenKey(this.fleet.retryKeys());
    this.resetLimiter = new ResetLimiter(server?.statelessResetsPerSecond ?? 1000);
  }

  static async listen(opts: ServerEndpointOptions): Promise<QuicEndpoint> {
    const ep = new QuicEndpoint('server', opts);
    await ep.bind(opts.host, opts.port);
    return ep;
  }

  static async client(opts: ClientEndpointOptions = {}, family: 'udp4' | 'udp6' = 'udp4'): Promise<QuicEndpoint> {
    const ep = new QuicEndpoint('client', opts);
    await ep.bind(opts.host ?? (family === 'udp6' ? '::' : '0.0.0.0'), opts.port ?? 0);
    return ep;
  }

  private async bind(host: string, port: number): Promise<void> {
    const io = await openUdpIo({ host, port, maxPacket: Math.max(this.maxUdpPayload, 1200), native: this.opts.nativeIo }, (msg, rinfo) =>
      this.onPacket(msg, rinfo),
    );
    io.onWritable = () => {
      // The queue drained: the connections held back build their packets now.
      for (const c of this.held) this.markDirty(c);
      this.held.clear();
    };
    io.onSendError = (packets) => {
      this.stats.sendErrors++;
      this.stats.drops['send-error'] += packets;
    };
    this.io = io;
    this.local = io.local;
  }

  /** Which socket path this endpoint uses ('batch': the native addon; 'dgram': node:dgram) and its call counts. */
  get socketIo(): { kind: 'batch' | 'dgram'; stats: UdpIoStats } {
    return { kind: this.io.kind, stats: this.io.stats };
  }

  get address(): Host {
    return this.local;
  }

  get connectionCount(): number {
    return this.connections.size;
  }

  /** New TLS material (SIGHUP): new connections use it, established ones keep theirs. */
  setTls(tls: TlsMaterial): void {
    if (this.role !== 'server') throw new Error('setTls is for server endpoints');
    const next = buildServerConfig({ ...(this.opts as ServerEndpointOptions), tls });
    (this.opts as ServerEndpointOptions).tls = tls;
    this.config = next;
  }

  /** New fleet keys (a rotation step, on reload): new connections and retry tokens use them at once. */
  setFleetKeys(keys: FleetKeys): void {
    this.fleet = keys;
    this.tokens = new RetryTokenKey(keys.retryKeys());
    const opts = this.opts as ServerEndpointOptions;
    opts.fleetKeys = keys;
    this.config = buildServerConfig(opts); // the ticket key; established connections keep their config
  }

  /** Opens a client connection; `serverName` is the SNI and the name verified in the certificate. */
  connect(host: string, port: number, serverName: string, handler: ConnectionHandler = {}, session?: Uint8Array): QuicConnection {
    if (this.role !== 'client') throw new Error('connect is for client endpoints');
    const scid = newClientConnectionId();
    const peer = { host, port };
    const o = this.opts as ClientEndpointOptions;
    const byIp = isIP(serverName) !== 0 && !o.insecure;
    if (byIp) this.ipConfig ??= buildClientConfig({ ...o, insecure: true });
    const config = (byIp ? this.ipConfig : undefined) ?? this.config;
    // No SNI for an IP literal (RFC 6066 §3).
    const native = quiche.Connection.connect(byIp ? null : serverName, scid, this.local, peer, config);
    if (session) {
      try {
        native.setSession(session); // TLS resumption: a saved session of this server (or its fleet)
      } catch {
        // Not a session BoringSSL can read (another build, corrupt): a full handshake instead.
      }
    }
    const conn = new QuicConnection(native, this, peer, this.local, config);
    if (byIp) conn.verifyIp = { ip: serverName, caPem: o.caPem };
    conn.handler = handler;
    this.register(conn, scid);
    this.markDirty(conn);
    return conn;
  }

  private register(conn: QuicConnection, ...cids: Uint8Array[]): void {
    for (const c of cids) {
      const k = cidKey(c);
      conn.keys.push(k);
      this.table.set(k, conn);
    }
    this.connections.add(conn);
  }

  private drop(reason: DropReason): void {
    this.stats.drops[reason]++;
  }

  private onPacket(msg: Buffer, rinfo: RemoteInfo): void {
    this.stats.packetsIn++;
    this.stats.bytesIn += msg.length;
    if (msg.length < 1 + SERVER_CID_LENGTH) {
      this.drop('short');
      return;
    }
    let conn: QuicConnection | undefined;
    // Short header: the DCID sits at a fixed offset; skip the native header parse on the hot path.
    if ((msg[0]! & 0x80) === 0) {
      conn = this.table.get(msg.toString('latin1', 1, 1 + SERVER_CID_LENGTH));
      if (!conn) {
        if (this.role === 'client' && this.offerStatelessReset(msg, rinfo)) return;
        this.drop('unknown-cid');
        this.statelessReset(msg, rinfo);
        return;
      }
    } else {
      let hdr: ReturnType<typeof quiche.Header.fromSlice>;
      try {
        hdr = quiche.Header.fromSlice(msg, SERVER_CID_LENGTH);
      } catch {
        this.drop('header'); // not a QUIC long header we can read: nothing to answer
        return;
      }
      conn = this.table.get(cidKey(hdr.dcid));
      if (!conn) {
        if (this.role !== 'server' || this.closing) {
          this.drop('unknown-cid');
          return;
        }
        conn = this.accept(msg, rinfo, hdr);
        if (!conn) return;
      }
    }
    // One RecvInfo per connection, rebuilt only when the peer's address changes.
    let ri = conn.recvInfo;
    if (ri === undefined || ri.from.port !== rinfo.port || ri.from.host !== rinfo.address)
      ri = conn.recvInfo = { from: { host: rinfo.address, port: rinfo.port }, to: this.local };
    conn.stopCheckDue = true;
    try {
      conn.native.recv(msg, ri);
    } catch {
      // quiche drops undecryptable/invalid packets itself; a thrown error closes the connection (flushed below).
      this.drop('recv-error');
    }
    this.markDirty(conn);
  }

  private accept(
    msg: Buffer,
    rinfo: RemoteInfo,
    hdr: { ty: number; version: number; dcid: Uint8Array; scid: Uint8Array; token?: Uint8Array },
  ): QuicConnection | undefined {
    const opts = this.opts as ServerEndpointOptions;
    if (hdr.ty !== quiche.Type.Initial) return void this.drop('not-initial');
    // Anti-amplification: a client Initial datagram is padded to at least 1200 bytes (RFC 9000 §14.1).
    if (msg.length < 1200) return void this.drop('small-initial');
    if (!quiche.versionIsSupported(hdr.version)) {
      const out = Buffer.allocUnsafe(1200);
      const n = quiche.negotiateVersion(hdr.scid, hdr.dcid, out);
      this.stats.versionNegotiations++;
      this.sendRaw(out.subarray(0, n), rinfo.port, rinfo.address);
      return undefined;
    }
    if (this.connections.size >= (opts.maxConnections ?? 100_000)) return void this.drop('full');
    let scid: Buffer;
    let odcid: Buffer | null = null;
    if (opts.retry !== false) {
      const token = hdr.token;
      if (!token || token.length === 0) {
        const retryScid = newServerConnectionId(opts.serverId);
        const t = this.tokens.mint(rinfo.address, hdr.dcid, retryScid);
        const out = Buffer.allocUnsafe(1200);
        const n = quiche.retry(hdr.scid, hdr.dcid, retryScid, t, hdr.version, out);
        this.stats.retriesSent++;
        this.sendRaw(out.subarray(0, n), rinfo.port, rinfo.address);
        return undefined;
      }
      const v = this.tokens.validate(token, rinfo.address, hdr.dcid);
      if ('rejected' in v) return void this.drop('bad-token');
      odcid = v.odcid;
      scid = Buffer.from(hdr.dcid);
    } else {
      scid = newServerConnectionId(opts.serverId);
    }
    // Per-source caps, counted only for validated sources (after retry) so a spoofer cannot spend a victim's share.
    const key = sourceKey(rinfo.address);
    const source = this.sources.get(key) ?? { connections: 0, handshakes: 0 };
    if (source.connections >= (opts.maxConnectionsPerSource ?? 64)) return void this.drop('source-connections');
    if (source.handshakes >= (opts.maxHandshakesPerSource ?? 16)) return void this.drop('source-handshakes');
    const peer = { host: rinfo.address, port: rinfo.port };
    let native: Connection;
    try {
      native = this.acceptWithResetToken(scid, odcid, peer);
    } catch {
      // quiche refused the Initial (bad CID lengths, TLS setup): counted, nothing to answer.
      return void this.drop('accept-error');
    }
    const conn = new QuicConnection(native, this, peer, this.local, this.config);
    source.connections++;
    source.handshakes++;
    this.sources.set(key, source);
    conn.source = source;
    conn.sourceKey = key;
    // Without retry the client keeps addressing its own random DCID until our first Initial arrives.
    if (odcid === null) this.register(conn, scid, hdr.dcid);
    else this.register(conn, scid);
    opts.onConnection(conn);
    return conn;
  }

  /**
   * A stateless reset carries random bytes where the DCID would be: a client offers a packet whose
   * DCID names none of its connections to each connection with that server address, whose quiche
   * compares the last 16 bytes with the token that server gave it. True when one of them was reset.
   */
  private offerStatelessReset(msg: Buffer, rinfo: RemoteInfo): boolean {
    let n = 0;
    for (const c of this.connections) {
      if (++n > 64) break; // a client has a few connections; never scan a large table per stray packet
      if (c.peer.port !== rinfo.port || c.peer.host !== rinfo.address) continue;
      try {
        // A copy each: quiche removes header protection in place.
        c.native.recv(Buffer.from(msg), { from: c.peer, to: this.local });
      } catch {
        // Not a packet of this connection either: quiche dropped it.
      }
      if (c.native.isClosed()) {
        this.markDirty(c); // the flush retires it with by: 'stateless-reset'
        return true;
      }
    }
    return false;
  }

  /**
   * quiche copies the config's transport parameters into the connection at accept: setting the token
   * just before gives the connection the one its CID derives to under the fleet key. When the
   * parameters then overflow quiche's 128-byte buffer (BufferTooShort: larger limits configured), the
   * connection is accepted without a token (counted): it works, but cannot learn of a reset.
   */
  private acceptWithResetToken(scid: Buffer, odcid: Buffer | null, peer: Host): Connection {
    this.config.setStatelessResetToken(BigInt(`0x${this.fleet.resetToken(scid).toString('hex')}`));
    try {
      return quiche.Connection.accept(scid, odcid, this.local, peer, this.config);
    } catch {
      // Retried below without the token; a second failure is the caller's accept-error.
    } finally {
      this.config.setStatelessResetToken(null);
    }
    this.stats.resetTokensOmitted++;
    return quiche.Connection.accept(scid, odcid, this.local, peer, this.config);
  }

  /**
   * Answers a short-header packet of a connection this endpoint does not know (another PoP's, or one
   * it forgot) with a stateless reset per fleet key (connections made under an older key during a
   * rotation carry that key's token), bounded in rate and never larger than the trigger.
   */
  private statelessReset(msg: Buffer, rinfo: RemoteInfo): void {
    if (this.role !== 'server' || this.closing) return;
    const dcid = msg.subarray(1, 1 + SERVER_CID_LENGTH);
    for (let i = 0; i < this.fleet.size; i++) {
      const reset = statelessResetPacket(this.fleet.resetToken(dcid, i), msg.length);
      if (!reset) return;
      if (!this.resetLimiter.take()) {
        this.stats.statelessResetsLimited++;
        return;
      }
      this.stats.statelessResets++;
      this.sendRaw(reset, rinfo.port, rinfo.address);
    }
  }

  /** Sends a packet built outside quiche's send (retry, version negotiation) with the next flush. */
  private sendRaw(buf: Buffer, port: number, host: string): void {
    const out = this.io.reserve(buf.length);
    if (!out) return void this.drop('send-full');
    buf.copy(out);
    this.stats.packetsOut++;
    this.stats.bytesOut += buf.length;
    this.io.commit(buf.length, host, port);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushAll);
    }
  }

  /** @internal Schedules one flush of this connection after the current batch of packets. */
  markDirty(conn: QuicConnection): void {
    if (conn.closed) return;
    this.dirty.add(conn);
    this.scheduleFlush();
  }

  private readonly flushAll = (): void => {
    this.flushScheduled = false;
    // Application callbacks may dirty connections again; those wait for the next turn.
    const batch = this.dirty;
    this.dirty = new Set();
    for (const conn of batch) {
      if (conn.closed) continue;
      try {
        conn.dispatch();
      } catch (err) {
        // An application bug on one connection must not take the endpoint down: close that one.
        conn.close(false, quiche.ConnectionErrorCode.InternalError, errorMessage(err).slice(0, 100));
      }
      this.flush(conn);
    }
    this.io.flush();
  };

  private flush(conn: QuicConnection): void {
    const native = conn.native;
    const max = this.maxUdpPayload;
    for (;;) {
      const out = this.io.reserve(max);
      if (!out) {
        // The socket is full: quiche keeps the data; this connection sends again once it drains.
        this.held.add(conn);
        break;
      }
      let r: ReturnType<typeof native.send>;
      try {
        r = native.send(out);
      } catch {
        // quiche closes the connection on a send error; isClosed() below retires it.
        break;
      }
      if (r === null) break;
      const [n, info] = r;
      this.stats.packetsOut++;
      this.stats.bytesOut += n;
      this.io.commit(n, info.to.host, info.to.port);
    }
    if (native.isClosed()) {
      this.retire(conn);
      return;
    }
    this.armTimer(conn);
  }

  private armTimer(conn: QuicConnection): void {
    const t = conn.native.timeout();
    if (t === null) {
      if (conn.timer) clearTimeout(conn.timer);
      conn.timer = undefined;
      return;
    }
    const deadline = Date.now() + t;
    // Re-arming a Node timer per packet costs more than the packet; keep one that fires early enough.
    if (conn.timer && conn.deadline <= deadline && conn.deadline >= deadline - 5) return;
    if (conn.timer) clearTimeout(conn.timer);
    conn.deadline = deadline;
    conn.timer = setTimeout(() => this.onTimer(conn), t);
  }

  private onTimer(conn: QuicConnection): void {
    conn.timer = undefined;
    if (conn.closed) return;
    conn.native.onTimeout();
    if (conn.native.isClosed()) {
      this.retire(conn);
      return;
    }
    this.markDirty(conn);
  }

  private retire(conn: QuicConnection): void {
    if (conn.closed) return;
    conn.closed = true;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = undefined;
    if (conn.stopTimer) clearTimeout(conn.stopTimer);
    conn.stopTimer = undefined;
    for (const k of conn.keys) if (this.table.get(k) === conn) this.table.delete(k);
    this.connections.delete(conn);
    this.dirty.delete(conn);
    this.held.delete(conn);
    const src = conn.source;
    if (src) {
      src.connections--;
      if (!conn.isEstablished) src.handshakes--;
      if (src.connections === 0) this.sources.delete(conn.sourceKey);
      conn.source = undefined;
    }
    const n = conn.native;
    let reason: CloseReason;
    const peer = n.peerError();
    const local = n.localError();
    if (peer) reason = { by: 'peer', isApp: peer.isApp, code: peer.errorCode, reason: Buffer.from(peer.reason).toString('utf8') };
    else if (local) reason = { by: 'local', isApp: local.isApp, code: local.errorCode, reason: Buffer.from(local.reason).toString('utf8') };
    else if (n.isTimedOut()) reason = { by: 'idle', isApp: false, code: 0, reason: 'idle timeout' };
    // quiche closes without an error only on a packet ending with the peer's reset token.
    else if (n.isClosed()) reason = { by: 'stateless-reset', isApp: false, code: 0, reason: 'stateless reset' };
    else reason = { by: 'endpoint', isApp: false, code: 0, reason: 'closed' };
    conn.handler.onClosed?.(conn, reason);
  }

  /** Every live connection (for drain: GOAWAY, counting). */
  *liveConnections(): IterableIterator<QuicConnection> {
    yield* this.connections;
  }

  /**
   * Closes every connection with the given code (application close when isApp), waits up to
   * graceMs for the CONNECTION_CLOSE frames to leave, then closes the socket.
   */
  async close(opts: { isApp?: boolean; code?: number; reason?: string; graceMs?: number } = {}): Promise<void> {
    this.closing = true;
    for (const c of [...this.connections]) c.close(opts.isApp ?? false, opts.code ?? 0, opts.reason ?? 'endpoint closing');
    this.flushAll();
    const until = Date.now() + (opts.graceMs ?? 50);
    while (Date.now() < until && this.dirty.size > 0) await new Promise((r) => setImmediate(r));
    await new Promise((r) => setTimeout(r, Math.min(20, opts.graceMs ?? 50)));
    for (const c of [...this.connections]) this.retire(c);
    await this.io.close();
  }
}
