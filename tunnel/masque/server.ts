// The MASQUE server: HTTP/3 on a QuicEndpoint, Extended CONNECT for connect-udp (RFC 9298, through
// UdpRelay) and connect-ip (RFC 9484, through IpGateway), every CONNECT gated by a bearer JWT.
//
// Token lifetime: a session ends (its stream gets FIN) when the token that opened it expires, unless
// the client refreshes it in-band first by sending, on the same QUIC connection, an ordinary request
//   POST /.well-known/cbr/token-refresh   with   authorization: Bearer <fresh token>
// The fresh token is authorized for the kind of every session on the connection and must name the
// same subject; then every session of that subject on the connection runs until the new expiry.
// Answer: 204 (cbr-sessions-refreshed: N), or the auth status (401/403/429/503) and nothing changes.
import type { AuthGate, Identity, SessionKind } from '../../auth/index.js';
import { AuthError } from '../../auth/index.js';
import { QuicEndpoint, type QuicConnection, type CongestionControl, type TlsMaterial, type CloseReason, type FleetKeys } from '../quic/index.js';
import {
  H3Error,
  H3ErrorCode,
  RequestStreamReader,
  CapsuleParser,
  encodeResponse,
  encodeJsonResponse,
  encodeDataFrameHeader,
  encodeTypedCapsule,
  encodeDatagramCapsule,
  readContextId,
  getHeader,
  encodeHttpDatagramPrefix,
  type ValidatedRequest,
  type IpAddressRange,
  type Capsule,
} from '../h3/index.js';
import { H3Connection, type H3Events } from './h3-conn.js';
import { parseUdpPath, parseIpPath, TargetError, type TargetPolicy, UDP_PATH_PREFIX, IP_PATH_PREFIX } from './policy.js';
import { UdpRelay } from './udp-relay.js';
import { RelayIo } from './udp-relay-io.js';
import type { IpGateway } from './ip-gateway.js';
import { prefixToRange, sortRanges } from './ranges.js';
import { AccessLog, CbrError, PoolExhaustedError, httpStatusFor, type AccessEndReason } from '../../dataplane/index.js';
import { DEFAULT_MASQUE_LIMITS, type MasqueLimits } from './config.js';
import { TargetResolver } from './dns.js';
import { SessionTable, type MasqueKind, type Session as SessionOf, type SessionEndReason } from './sessions.js';

export type { MasqueKind, SessionEndReason } from './sessions.js';

export const TOKEN_REFRESH_PATH = '/.well-known/cbr/token-refresh';

export type MasqueDropReason = 'unknown-stream' | 'unknown-context' | 'client-queue' | 'too-big' | 'not-open' | 'gateway';
/** Which bound was hit (cbr_masque_limit_exceeded_total{limit}). */
export type MasqueLimitName =
  | 'header-bytes-stream'
  | 'header-bytes-connection'
  | 'header-timeout'
  | 'queued-bytes'
  | 'reply-bytes'
  | 'udp-sessions-per-subject'
  | 'ip-sessions-per-subject'
  | 'address-requests';

export interface MasqueCounters {
  sessionsOpened: Record<MasqueKind, number>;
  sessionsEnded: Record<SessionEndReason, number>;
  datagramsIn: number;
  datagramsOut: number;
  bytesIn: number;
  bytesOut: number;
  capsuleDatagramsIn: number;
  capsuleDatagramsOut: number;
  drops: Record<MasqueDropReason, number>;
  authFailures: Record<string, number>;
  requests: Record<string, number>;
  tokenRefreshes: number;
  limits: Record<MasqueLimitName, number>;
}

export interface MasqueServerOptions {
  host: string;
  port: number;
  tls: TlsMaterial;
  serverId: number;
  congestionControl?: CongestionControl;
  idleTimeoutMs?: number;
  retry?: boolean;
  /** Reset and retry token keys shared by the fleet (tunnel.masque.fleetKeyFile); default this process's own. */
  fleetKeys?: FleetKeys;
  statelessResetsPerSecond?: number;
  maxSessions?: number;
  auth: AuthGate;
  udpPolicy: TargetPolicy;
  dnsTimeoutMs: number;
  /** Most connect-udp DNS lookups in flight (default 64). */
  dnsMaxInFlight?: number;
  /** DNS servers for connect-udp targets (default: the system's). */
  dnsServers?: string[];
  /** Bounds on what one client may hold (DEFAULT_MASQUE_LIMITS for what is not given). */
  limits?: Partial<MasqueLimits>;
  /** connect-ip: the PoP gateway and the routes advertised; without it connect-ip answers 501. */
  ip?: { gateway: IpGateway; routes: string[] };
  /** Sent as the `cbr-pop` response header of an accepted CONNECT, so a client can say which PoP it reached. */
  popName?: string;
  /** connect-udp relay sockets through the native addon (default: when it is built and CBR_NATIVE_IO !== '0'). */
  nativeIo?: boolean;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug(o: object, m?: string): void };
}

type Session = SessionOf<ServerConn>;

interface RequestState {
  reader: RequestStreamReader;
  /** 'auth': CONNECT waiting for the gate; data is queued. 'open': a session. 'done': answered. */
  phase: 'headers' | 'auth' | 'open' | 'done';
  /** Raw stream bytes that arrived during 'auth', or capsule bytes already unframed from DATA. */
  queued: Array<{ chunk: Uint8Array; fin: boolean; capsules?: boolean }>;
  /** Bytes in `queued` (bounded by maxQueuedBytesPerRequest). */
  queuedBytes: number;
  /** Header bytes of this request counted in the connection's headerBytes. */
  held: number;
  /** When the stream's first bytes arrived (for the header deadline). */
  since: number;
  session?: Session;
}

/** One QUIC connection's MASQUE state; its H3Connection's event handler itself (no closure per event kind). */
class ServerConn implements H3Events {
  readonly h3: H3Connection;
  readonly requests = new Map<number, RequestState>();
  readonly sessions = new Map<number, Session>();
  closed = false;
  closeReason?: CloseReason;
  /** Header bytes buffered for incomplete requests on this connection. */
  headerBytes = 0;
  headerTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly server: MasqueServer,
    readonly quic: QuicConnection,
  ) {
    this.h3 = new H3Connection(quic, 'server', this);
  }

  onRequestStream(streamId: number, chunk: Uint8Array, fin: boolean): void {
    this.server.onRequestStream(this, streamId, chunk, fin);
  }

  onHttpDatagram(streamId: number, contextId: number, payload: Buffer): void {
    this.server.onHttpDatagram(this, streamId, contextId, payload);
  }

  onClosed(reason: CloseReason): void {
    this.server.onConnectionClosed(this, reason);
  }

  /** We reset the stream (a stream error). */
  onStreamGone(streamId: number): void {
    this.server.endStream(this, streamId, 'server');
  }

  /** The peer reset or stopped it. */
  onStreamAbandoned(streamId: number): void {
    this.server.endStream(this, streamId, 'reset');
  }

  get peerHost(): string {
    return this.quic.peer.host;
  }
}

function kindOf(k: MasqueKind): SessionKind {
  return k === 'udp' ? 'masque-connect-udp' : 'masque-connect-ip';
}

/** The MASQUE listener's QUIC stream limits (also the bare handshake bench's, to compare like with like). */
export const MASQUE_TRANSPORT = {
  // Many concurrent CONNECTs per connection; small per-stream windows keep idle sessions cheap.
  initialMaxStreamsBidi: 1024,
  initialMaxStreamData: 256 << 10,
  initialMaxData: 8 << 20,
} as const;

let scratch = Buffer.allocUnsafe(65_536);

export class MasqueServer {
  /** Session lifecycle (open, expiry, refresh, end); what an end does to the stream is endStreamOf's. */
  private readonly sessions = new SessionTable<ServerConn>({
    onEnd: (s, why) => this.endStreamOf(s, why),
    log: { info: (o, m) => this.opts.log?.info(o, m) },
  });
  readonly counters: MasqueCounters = {
    sessionsOpened: this.sessions.opened,
    sessionsEnded: this.sessions.ended,
    datagramsIn: 0,
    datagramsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    capsuleDatagramsIn: 0,
    capsuleDatagramsOut: 0,
    drops: { 'unknown-stream': 0, 'unknown-context': 0, 'client-queue': 0, 'too-big': 0, 'not-open': 0, gateway: 0 },
    authFailures: {},
    requests: {},
    tokenRefreshes: 0,
    limits: {
      'header-bytes-stream': 0,
      'header-bytes-connection': 0,
      'header-timeout': 0,
      'queued-bytes': 0,
      'reply-bytes': 0,
      'udp-sessions-per-subject': 0,
      'ip-sessions-per-subject': 0,
      'address-requests': 0,
    },
  };
  readonly live: Record<MasqueKind, number> = this.sessions.live;
  private readonly conns = new Set<ServerConn>();
  private draining = false;
  private limits: MasqueLimits;
  endpoint!: QuicEndpoint;
  private readonly access?: AccessLog;

  /** Resolves connect-udp host names (replaced on reload; lookups in flight finish on the old one). */
  resolver: TargetResolver;
  /** The sockets of connect-udp sessions (its queue bound is read at start). */
  readonly relayIo: RelayIo;

  private constructor(private opts: MasqueServerOptions) {
    this.limits = { ...DEFAULT_MASQUE_LIMITS, ...opts.limits };
    this.resolver = newResolver(opts);
    this.relayIo = RelayIo.create({ sendQueuePackets: this.limits.udpSendQueuePackets, native: opts.nativeIo });
    if (opts.log) this.access = new AccessLog(opts.log);
  }

  static async listen(opts: MasqueServerOptions): Promise<MasqueServer> {
    const s = new MasqueServer(opts);
    s.endpoint = await QuicEndpoint.listen({
      host: opts.host,
      port: opts.port,
      tls: opts.tls,
      serverId: opts.serverId,
      congestionControl: opts.congestionControl,
      idleTimeoutMs: opts.idleTimeoutMs,
      retry: opts.retry,
      fleetKeys: opts.fleetKeys,
      statelessResetsPerSecond: opts.statelessResetsPerSecond,
      maxConnections: opts.maxSessions,
      maxConnectionsPerSource: s.limits.maxConnectionsPerSource,
      maxHandshakesPerSource: s.limits.maxHandshakesPerSource,
      ...MASQUE_TRANSPORT,
      onConnection: (c) => s.conns.add(new ServerConn(s, c)),
    });
    return s;
  }

  get address(): { host: string; port: number } {
    return this.endpoint.address;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  /** New policies / routes / auth gate on reload; sessions in progress keep theirs. */
  update(next: Partial<Pick<MasqueServerOptions, 'auth' | 'udpPolicy' | 'dnsTimeoutMs' | 'dnsMaxInFlight' | 'dnsServers' | 'ip' | 'limits'>>): void {
    this.opts = { ...this.opts, ...next };
    this.limits = { ...DEFAULT_MASQUE_LIMITS, ...this.opts.limits };
    this.resolver = newResolver(this.opts);
  }

  /** Header bytes buffered for incomplete requests, over every connection. */
  get headerBytes(): number {
    let n = 0;
    for (const c of this.conns) n += c.headerBytes;
    return n;
  }

  private overLimit(which: MasqueLimitName): void {
    this.counters.limits[which]++;
  }

  setTls(tls: TlsMaterial): void {
    this.endpoint.setTls(tls);
  }

  setFleetKeys(keys: FleetKeys): void {
    this.endpoint.setFleetKeys(keys);
  }

  // ------------------------------------------------------------------ request streams

  /** @internal */
  onRequestStream(c: ServerConn, streamId: number, chunk: Uint8Array, fin: boolean): void {
    let st = c.requests.get(streamId);
    if (!st) {
      if (this.draining || c.h3.goawaySent) {
        c.h3.resetStream(streamId, H3ErrorCode.H3_REQUEST_REJECTED);
        return;
      }
      st = {
        reader: new RequestStreamReader({ role: 'server', maxFrameSize: this.limits.maxHeaderBytesPerStream }),
        phase: 'headers',
        queued: [],
        queuedBytes: 0,
        held: 0,
        since: Date.now(),
      };
      c.requests.set(streamId, st);
      this.armHeaderTimer(c);
    }
    if (st.phase === 'auth') {
      this.queue(c, streamId, st, { chunk, fin });
      return;
    }
    this.feed(c, streamId, st, chunk, fin);
  }

  /** Holds bytes that arrive while the token (or DNS) is pending, up to maxQueuedBytesPerRequest. */
  private queue(c: ServerConn, streamId: number, st: RequestState, q: RequestState['queued'][number]): boolean {
    st.queuedBytes += q.chunk.length;
    if (st.queuedBytes > this.limits.maxQueuedBytesPerRequest) {
      this.overLimit('queued-bytes');
      this.dropRequest(c, streamId);
      c.h3.resetStream(streamId, H3ErrorCode.H3_EXCESSIVE_LOAD);
      return false;
    }
    st.queued.push(q);
    return true;
  }

  /** Forgets a request's state (and its share of the connection's header bytes). */
  private dropRequest(c: ServerConn, streamId: number): void {
    const st = c.requests.get(streamId);
    if (!st) return;
    c.headerBytes -= st.held;
    st.held = 0;
    c.requests.delete(streamId);
  }

  /** One timer per connection resets requests that have not completed their headers in time. */
  private armHeaderTimer(c: ServerConn, ms = this.limits.headerTimeoutMs): void {
    if (c.headerTimer) return;
    c.headerTimer = setTimeout(() => this.sweepHeaders(c), ms);
    c.headerTimer.unref();
  }

  private sweepHeaders(c: ServerConn): void {
    c.headerTimer = undefined;
    if (c.closed) return;
    const now = Date.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [id, st] of c.requests) {
      if (st.phase !== 'headers') continue;
      const due = st.since + this.limits.headerTimeoutMs;
      if (due > now) {
        next = Math.min(next, due);
        continue;
      }
      this.overLimit('header-timeout');
      this.dropRequest(c, id);
      c.h3.resetStream(id, H3ErrorCode.H3_REQUEST_INCOMPLETE);
    }
    if (next !== Number.POSITIVE_INFINITY) this.armHeaderTimer(c, next - now);
  }

  /** Re-counts a request's buffered header bytes; false when the connection went over its bound (and was closed). */
  private trackHeaderBytes(c: ServerConn, st: RequestState): boolean {
    const now = st.phase === 'headers' ? st.reader.buffered : 0;
    c.headerBytes += now - st.held;
    st.held = now;
    if (c.headerBytes <= this.limits.maxHeaderBytesPerConnection) return true;
    this.overLimit('header-bytes-connection');
    c.h3.fail(
      new H3Error(
        H3ErrorCode.H3_EXCESSIVE_LOAD,
        'connection',
        `more than ${this.limits.maxHeaderBytesPerConnection} header bytes buffered for incomplete requests`,
      ),
    );
    return false;
  }

  private feed(c: ServerConn, streamId: number, st: RequestState, chunk: Uint8Array, fin: boolean): void {
    try {
      for (const ev of st.reader.push(chunk)) {
        if (ev.type === 'request') this.onRequest(c, streamId, st, ev.request);
        else if (ev.type === 'data' && st.phase === 'open' && st.session) this.onCapsuleBytes(st.session, ev.payload);
        else if (ev.type === 'data' && st.phase === 'auth' && !this.queue(c, streamId, st, { chunk: Buffer.from(ev.payload), fin: false, capsules: true }))
          return;
      }
      if (!this.trackHeaderBytes(c, st)) return;
      if (fin) {
        st.reader.end();
        if (st.session) {
          st.session.capsules.end();
          this.endSession(st.session, 'client', 'fin');
        }
        if (st.phase !== 'auth') this.dropRequest(c, streamId);
        else st.queued.push({ chunk: new Uint8Array(0), fin: true });
      }
    } catch (err) {
      if (!(err instanceof H3Error)) throw err;
      if (err.h3Code === H3ErrorCode.H3_EXCESSIVE_LOAD && st.phase === 'headers') this.overLimit('header-bytes-stream');
      if (st.session) this.endSession(st.session, 'client');
      this.dropRequest(c, streamId);
      c.h3.fail(err, streamId);
    }
  }

  private count(what: string): void {
    this.counters.requests[what] = (this.counters.requests[what] ?? 0) + 1;
  }

  private respond(c: ServerConn, streamId: number, bytes: Uint8Array, fin: boolean): void {
    c.h3.write(streamId, bytes, fin);
  }

  private onRequest(c: ServerConn, streamId: number, st: RequestState, req: ValidatedRequest): void {
    if (req.kind === 'request') {
      st.phase = 'done';
      if (req.method === 'POST' && req.path === TOKEN_REFRESH_PATH) {
        st.phase = 'auth';
        void this.refresh(c, streamId, st, bearer(req.headers));
        return;
      }
      const path = req.path.split('?')[0];
      if (path === '/' && (req.method === 'GET' || req.method === 'HEAD')) {
        this.count('status');
        const body = { service: 'cbr-masque', sessions: { ...this.live }, connections: this.conns.size, draining: this.draining };
        this.respond(c, streamId, req.method === 'HEAD' ? encodeResponse({ status: 200 }) : encodeJsonResponse(200, body), true);
      } else {
        this.count('not-found');
        this.respond(c, streamId, encodeJsonResponse(404, { error: 'not found' }), true);
      }
      return;
    }
    if (req.kind === 'connect') {
      st.phase = 'done';
      this.count('connect-refused');
      this.respond(c, streamId, encodeJsonResponse(501, { error: 'classic CONNECT is not supported; use connect-udp or connect-ip' }), true);
      return;
    }
    let kind: MasqueKind;
    if (req.protocol === 'connect-udp' && req.path.startsWith(UDP_PATH_PREFIX)) kind = 'udp';
    else if (req.protocol === 'connect-ip' && req.path.startsWith(IP_PATH_PREFIX)) kind = 'ip';
    else {
      st.phase = 'done';
      this.count('bad-protocol');
      const status = req.protocol === 'connect-udp' || req.protocol === 'connect-ip' ? 404 : 501;
      this.respond(c, streamId, encodeJsonResponse(status, { error: `no ${req.protocol} endpoint at ${req.path}` }), true);
      return;
    }
    if (!req.capsuleProtocol) {
      st.phase = 'done';
      this.respond(c, streamId, encodeJsonResponse(400, { error: 'capsule-protocol: ?1 is required' }), true);
      return;
    }
    st.phase = 'auth';
    void this.openSession(c, streamId, st, kind, req.path, bearer(req.headers));
  }

  private async authorize(
    token: string | undefined,
    kind: MasqueKind,
    c: ServerConn,
  ): Promise<Identity | { status: number; headers: Record<string, string>; error: string }> {
    if (!token) {
      this.counters.authFailures['401'] = (this.counters.authFailures['401'] ?? 0) + 1;
      return { status: 401, headers: { 'www-authenticate': 'Bearer' }, error: 'missing bearer token' };
    }
    try {
      const id = await this.opts.auth.authorize(token, kindOf(kind), c.peerHost);
      // The gate tolerates clock skew; a session would end at exp anyway, so a token already past it opens nothing.
      if (id.expiresAt * 1000 <= Date.now()) throw new AuthError('EXPIRED', 'token expired');
      return id;
    } catch (err) {
      const status = err instanceof AuthError ? err.status : 503;
      this.counters.authFailures[String(status)] = (this.counters.authFailures[String(status)] ?? 0) + 1;
      const headers: Record<string, string> = {};
      if (status === 401) headers['www-authenticate'] = 'Bearer error="invalid_token"';
      const retry = err instanceof AuthError ? err.retryAfterSeconds : undefined;
      if (retry !== undefined) headers['retry-after'] = String(Math.max(0, Math.ceil(retry)));
      return { status, headers, error: err instanceof AuthError ? err.code : 'authorization unavailable' };
    }
  }

  private async openSession(c: ServerConn, streamId: number, st: RequestState, kind: MasqueKind, path: string, token: string | undefined): Promise<void> {
    let session: Session | undefined;
    let failure: { status: number; headers?: Record<string, string>; error: string; limit?: string; max?: number } | undefined;
    try {
      const id = await this.authorize(token, kind, c);
      if ('status' in id) failure = id;
      else if (c.closed) return;
      else failure = this.subjectAtCap(id.subject, kind);
      if (!failure && !('status' in id)) session = await this.createSession(c, streamId, kind, path, id);
    } catch (err) {
      // masque/pool.ts still throws its own PoolExhaustedError (the shared pool replacing it carries POOL_EXHAUSTED).
      const status = err instanceof PoolExhaustedError ? httpStatusFor(new CbrError('POOL_EXHAUSTED', '')) : httpStatusFor(err);
      failure = { status, error: err instanceof CbrError ? err.message : status === 503 ? 'address pool exhausted' : 'internal error' };
      if (status === 500) this.opts.log?.warn({ err }, 'masque session setup failed');
    }
    // The connection closed, or the request was reset (by the client or a limit) while we waited.
    if (c.closed || c.requests.get(streamId) !== st) {
      if (session) this.endSession(session, 'connection');
      return;
    }
    if (failure) {
      this.count(`refused-${failure.status}`);
      st.phase = 'done';
      this.dropRequest(c, streamId);
      const body = failure.limit ? { error: failure.error, limit: failure.limit, max: failure.max } : { error: failure.error };
      this.respond(c, streamId, encodeJsonResponse(failure.status, body, failure.headers), true);
      // Whatever the client sent after the headers is of no interest now.
      c.quic.streamShutdown(streamId, H3ErrorCode.H3_NO_ERROR, 'read');
      return;
    }
    const s = session!;
    st.session = s;
    st.phase = 'open';
    c.sessions.set(streamId, s);
    this.sessions.open(s);
    this.count(`open-${kind}`);
    s.access = this.access?.start({
      kind: kind === 'udp' ? 'masque-connect-udp' : 'masque-connect-ip',
      subject: s.identity.subject,
      org: s.identity.org,
      client: `${c.quic.peer.host}:${c.quic.peer.port}`,
      ...(s.lease ? { lease: [s.lease.v4, s.lease.v6] } : { target: udpTargetText(path) }),
    });
    this.respond(
      c,
      streamId,
      encodeResponse({ status: 200, headers: { 'capsule-protocol': '?1', ...(this.opts.popName ? { 'cbr-pop': this.opts.popName } : {}) } }),
      false,
    );
    if (kind === 'ip') this.sendIpConfig(s);
    const queued = st.queued;
    st.queued = [];
    st.queuedBytes = 0;
    for (const q of queued) {
      if (c.requests.get(streamId) !== st) break;
      if (!q.capsules) {
        this.feed(c, streamId, st, q.chunk, q.fin);
        continue;
      }
      try {
        this.onCapsuleBytes(s, q.chunk);
      } catch (err) {
        if (!(err instanceof H3Error)) throw err;
        this.endSession(s, 'client');
        this.dropRequest(c, streamId);
        c.h3.fail(err, streamId);
      }
    }
  }

  private async createSession(c: ServerConn, streamId: number, kind: MasqueKind, path: string, identity: Identity): Promise<Session> {
    const s = this.sessions.begin(c, streamId, kind, identity, new CapsuleParser(), Buffer.from(encodeHttpDatagramPrefix(streamId, 0)));
    try {
      if (kind === 'udp') {
        const target = parseUdpPath(path);
        s.relay = await UdpRelay.open(target, this.opts.udpPolicy, this.resolver, this.relayIo, (data, offset, length) =>
          this.sendPayload(s, data, offset, length),
        );
        if (c.closed) s.relay.close();
      } else {
        const ip = this.opts.ip;
        if (!ip) throw new TargetError('FORBIDDEN', 'connect-ip is not enabled on this server');
        s.ipproto = parseIpPath(path).ipproto;
        s.sink = { deliver: (pkt) => this.sendPayload(s, pkt) };
        s.lease = ip.gateway.attach(s.sink);
      }
    } catch (err) {
      this.endSession(s, 'server');
      throw err;
    }
    return s;
  }

  /** A 429 naming the limit when the subject already holds its share of sessions of this kind. */
  private subjectAtCap(subject: string, kind: MasqueKind): { status: number; error: string; limit: string; max: number } | undefined {
    const limit = kind === 'udp' ? 'maxUdpSessionsPerSubject' : 'maxIpSessionsPerSubject';
    const max = this.limits[limit];
    if (this.sessions.held(subject, kind) < max) return undefined;
    this.overLimit(kind === 'udp' ? 'udp-sessions-per-subject' : 'ip-sessions-per-subject');
    const what = kind === 'udp' ? 'connect-udp' : 'connect-ip';
    return { status: 429, error: `subject already holds ${max} ${what} sessions (tunnel.masque.limits.${limit})`, limit: `tunnel.masque.limits.${limit}`, max };
  }

  private sendIpConfig(s: Session): void {
    const lease = s.lease!;
    const ranges: IpAddressRange[] = sortRanges((this.opts.ip?.routes ?? []).map(prefixToRange));
    const assign: Capsule = {
      type: 'address_assign',
      addresses: [
        { requestId: 0, version: 4, address: lease.v4, prefixLength: 32 },
        { requestId: 0, version: 6, address: lease.v6, prefixLength: 128 },
      ],
    };
    this.writeCapsule(s, encodeTypedCapsule(assign));
    this.writeCapsule(s, encodeTypedCapsule({ type: 'route_advertisement', ranges }));
  }

  /**
   * A capsule on the session's stream. Replies a client does not read pile up here: past
   * maxReplyBytesPerStream the session ends (reset with H3_EXCESSIVE_LOAD).
   */
  private writeCapsule(s: Session, capsule: Uint8Array): void {
    const c = s.conn;
    if (c.h3.pendingBytes(s.streamId) + capsule.length > this.limits.maxReplyBytesPerStream) {
      this.overLimit('reply-bytes');
      this.endSession(s, 'limit');
      return;
    }
    c.h3.write(s.streamId, encodeDataFrameHeader(capsule.length));
    c.h3.write(s.streamId, capsule);
  }

  private async refresh(c: ServerConn, streamId: number, st: RequestState, token: string | undefined): Promise<void> {
    const kinds = new Set([...c.sessions.values()].map((s) => s.kind));
    if (kinds.size === 0) kinds.add('udp');
    let identity: Identity | undefined;
    let failure: { status: number; headers?: Record<string, string>; error: string } | undefined;
    for (const k of kinds) {
      const r = await this.authorize(token, k, c);
      if ('status' in r) {
        failure = r;
        break;
      }
      identity = r;
    }
    if (c.closed || c.requests.get(streamId) !== st) return;
    st.phase = 'done';
    this.dropRequest(c, streamId);
    if (failure) {
      this.respond(c, streamId, encodeJsonResponse(failure.status, { error: failure.error }, failure.headers), true);
      return;
    }
    let n = 0;
    for (const s of c.sessions.values()) {
      if (s.identity.subject !== identity!.subject) continue;
      this.sessions.refresh(s, identity!);
      n++;
    }
    this.counters.tokenRefreshes++;
    this.respond(c, streamId, encodeResponse({ status: 204, headers: { 'cbr-sessions-refreshed': String(n) } }), true);
  }

  // ------------------------------------------------------------------ capsules and datagrams

  private onCapsuleBytes(s: Session, bytes: Uint8Array): void {
    for (const cap of s.capsules.push(bytes)) {
      if (s.ended) return; // a limit ended it while replying
      if (cap.type === 'datagram') {
        const ctx = readContextId(cap.payload);
        if (!ctx) continue;
        this.counters.capsuleDatagramsIn++;
        this.onPayload(s, ctx.contextId, Buffer.from(cap.payload.buffer, cap.payload.byteOffset + ctx.offset, cap.payload.length - ctx.offset));
      } else if (cap.type === 'address_request' && s.kind === 'ip' && s.lease) {
        // Each answer costs an encode and a write: a client that floods requests gets a few per
        // second (the lease does not change), the rest are ignored.
        if (!takeAddressRequest(s, this.limits.addressRequestsPerSecond)) {
          this.overLimit('address-requests');
          continue;
        }
        // Whatever was asked, the lease is what there is: one /32 and one /128 per session.
        const addresses = cap.addresses.map((a) =>
          a.version === 4
            ? { requestId: a.requestId, version: 4 as const, address: s.lease!.v4, prefixLength: 32 }
            : { requestId: a.requestId, version: 6 as const, address: s.lease!.v6, prefixLength: 128 },
        );
        this.writeCapsule(s, encodeTypedCapsule({ type: 'address_assign', addresses }));
      }
    }
  }

  /** @internal */
  onHttpDatagram(c: ServerConn, streamId: number, contextId: number, payload: Buffer): void {
    const s = c.sessions.get(streamId);
    if (!s) {
      this.counters.drops[c.requests.has(streamId) ? 'not-open' : 'unknown-stream']++;
      return;
    }
    this.onPayload(s, contextId, payload);
  }

  private onPayload(s: Session, contextId: number, payload: Buffer): void {
    if (contextId !== 0) {
      this.counters.drops['unknown-context']++;
      return;
    }
    this.counters.datagramsIn++;
    this.counters.bytesIn += payload.length;
    if (s.access) s.access.fromClient += payload.length;
    if (s.relay) s.relay.send(payload);
    else if (s.lease && this.opts.ip) {
      if (this.opts.ip.gateway.fromClient(s.lease, s.sink!, payload, s.ipproto) !== undefined) this.counters.drops.gateway++;
    }
  }

  /**
   * One UDP payload / IP packet (`data[offset .. offset + length)`) to the client: a QUIC DATAGRAM,
   * or a DATAGRAM capsule when it cannot go as one.
   */
  private sendPayload(s: Session, data: Uint8Array, offset = 0, length = data.length): boolean {
    if (s.ended) return false;
    const c = s.conn;
    // quiche copies the datagram into its queue: build it in a shared scratch buffer.
    const need = s.prefix.length + length;
    if (need > scratch.length) scratch = Buffer.allocUnsafe(need);
    s.prefix.copy(scratch, 0);
    scratch.set(offset === 0 && length === data.length ? data : data.subarray(offset, offset + length), s.prefix.length);
    const dg = scratch.subarray(0, need);
    if (c.h3.peerAcceptsDatagrams && c.quic.datagramSend(dg)) {
      this.counters.datagramsOut++;
      this.counters.bytesOut += length;
      if (s.access) s.access.toClient += length;
      return true;
    }
    if (c.h3.peerAcceptsDatagrams && dg.length <= c.quic.datagramMaxSize()) {
      this.counters.drops['client-queue']++;
      return false;
    }
    if (c.h3.pendingBytes(s.streamId) > this.limits.maxReplyBytesPerStream) {
      this.counters.drops['client-queue']++;
      return false;
    }
    this.writeCapsule(s, encodeDatagramCapsule(0, dg.subarray(s.prefix.length)));
    this.counters.capsuleDatagramsOut++;
    this.counters.datagramsOut++;
    this.counters.bytesOut += length;
    if (s.access) s.access.toClient += length;
    return true;
  }

  // ------------------------------------------------------------------ teardown

  /** `detail` says more than `why` for the access log (a FIN rather than a reset); see accessReason. */
  private endSession(s: Session, why: SessionEndReason, detail?: AccessEndReason): void {
    if (detail && !s.ended) s.endDetail = detail;
    this.sessions.end(s, why);
  }

  /** What the stream of an opened session gets when the session ends, and its access-log line. */
  private endStreamOf(s: Session, why: SessionEndReason): void {
    s.access?.end(s.endDetail ?? accessReason(why, s.conn.closeReason));
    const c = s.conn;
    c.sessions.delete(s.streamId);
    if (why === 'limit') {
      this.dropRequest(c, s.streamId);
      if (!c.closed) c.h3.resetStream(s.streamId, H3ErrorCode.H3_EXCESSIVE_LOAD);
    } else if (why === 'token-expired' || why === 'server') {
      this.dropRequest(c, s.streamId);
      if (!c.closed) {
        c.h3.write(s.streamId, new Uint8Array(0), true);
        c.quic.streamShutdown(s.streamId, H3ErrorCode.H3_NO_ERROR, 'read');
      }
    } else if (why === 'client' && !c.closed) {
      c.h3.write(s.streamId, new Uint8Array(0), true);
    }
  }

  /** @internal A stream was reset (our stream error): drop its session. */
  endStream(c: ServerConn, streamId: number, why: SessionEndReason): void {
    const s = c.sessions.get(streamId);
    this.dropRequest(c, streamId);
    if (s) this.endSession(s, why === 'server' ? 'client' : why);
  }

  /** @internal */
  onConnectionClosed(c: ServerConn, reason?: CloseReason): void {
    c.closed = true;
    c.closeReason = reason;
    if (c.headerTimer) clearTimeout(c.headerTimer);
    for (const s of [...c.sessions.values()]) this.endSession(s, 'connection');
    c.requests.clear();
    c.headerBytes = 0;
    this.conns.delete(c);
  }

  /** Drain: GOAWAY on every connection; new requests are refused, sessions in progress go on. */
  drain(): void {
    this.draining = true;
    for (const c of this.conns) c.h3.sendGoaway();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Leaves a drain: new requests are served again (connections that got GOAWAY keep it). */
  undrain(): void {
    this.draining = false;
  }

  async close(): Promise<void> {
    this.drain();
    for (const c of [...this.conns]) for (const s of [...c.sessions.values()]) this.endSession(s, 'server');
    await this.endpoint.close({ isApp: true, code: H3ErrorCode.H3_NO_ERROR, reason: 'server shutting down', graceMs: 100 });
  }
}

function udpTargetText(path: string): string {
  const t = parseUdpPath(path);
  return t.host.includes(':') ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`;
}

/** The access log's end reason for a session ended with `why` (on a connection closed for `closed`). */
/** A token bucket per session (`perSecond` tokens a second, as many at once): true when a request may be answered. */
function takeAddressRequest(s: Session, perSecond: number): boolean {
  const now = performance.now();
  s.addressRequests ??= { tokens: perSecond, at: now };
  const b = s.addressRequests;
  b.tokens = Math.min(perSecond, b.tokens + ((now - b.at) / 1000) * perSecond);
  b.at = now;
  if (b.tokens < 1) return false;
  b.tokens -= 1;
  return true;
}

function accessReason(why: SessionEndReason, closed: CloseReason | undefined): AccessEndReason {
  if (why === 'token-expired') return 'token-expired';
  if (why === 'server') return 'drain';
  if (why === 'connection') return closed?.by === 'idle' ? 'idle' : 'closed';
  return 'reset';
}

function bearer(headers: readonly { name: string; value: string }[]): string | undefined {
  const v = getHeader(headers, 'authorization');
  if (!v) return undefined;
  const m = /^Bearer[ ]+(\S+)$/i.exec(v.trim());
  return m?.[1];
}

function newResolver(o: MasqueServerOptions): TargetResolver {
  return new TargetResolver({ timeoutMs: o.dnsTimeoutMs, maxInFlight: o.dnsMaxInFlight ?? 64, servers: o.dnsServers });
}
