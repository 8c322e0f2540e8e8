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
import { QuicEndpoint, type QuicConnection, type CongestionControl, type TlsMaterial, type CloseReason } from '../quic/index.js';
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
import { H3Connection } from './h3-conn.js';
import { parseUdpPath, parseIpPath, TargetError, type TargetPolicy, UDP_PATH_PREFIX, IP_PATH_PREFIX } from './policy.js';
import { UdpRelay } from './udp-relay.js';
import type { IpGateway, IpLease, IpSessionSink } from './ip-gateway.js';
import { PoolExhaustedError } from '../../dataplane/index.js';
import { prefixToRange, sortRanges } from './ranges.js';
import { AccessLog, type AccessEndReason, type AccessSession } from '../../dataplane/index.js';

export const TOKEN_REFRESH_PATH = '/.well-known/cbr/token-refresh';

export type MasqueKind = 'udp' | 'ip';
export type MasqueDropReason = 'unknown-stream' | 'unknown-context' | 'client-queue' | 'too-big' | 'not-open' | 'gateway';
export type SessionEndReason = 'client' | 'token-expired' | 'connection' | 'server';

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
}

export interface MasqueServerOptions {
  host: string;
  port: number;
  tls: TlsMaterial;
  serverId: number;
  congestionControl?: CongestionControl;
  idleTimeoutMs?: number;
  retry?: boolean;
  maxSessions?: number;
  auth: AuthGate;
  udpPolicy: TargetPolicy;
  dnsTimeoutMs: number;
  /** connect-ip: the PoP gateway and the routes advertised; without it connect-ip answers 501. */
  ip?: { gateway: IpGateway; routes: string[] };
  /** Sent as the `cbr-pop` response header of an accepted CONNECT, so a client can say which PoP it reached. */
  popName?: string;
  log?: { info(o: object, m?: string): void; warn(o: object, m?: string): void; debug(o: object, m?: string): void };
}

interface Session {
  kind: MasqueKind;
  streamId: number;
  conn: ServerConn;
  identity: Identity;
  capsules: CapsuleParser;
  prefix: Buffer;
  expiry?: NodeJS.Timeout;
  relay?: UdpRelay;
  lease?: IpLease;
  sink?: IpSessionSink;
  ipproto?: number;
  ended: boolean;
  /** The access-log record (bytes each way), from the 200 answer on. */
  access?: AccessSession;
}

interface RequestState {
  reader: RequestStreamReader;
  /** 'auth': CONNECT waiting for the gate; data is queued. 'open': a session. 'done': answered. */
  phase: 'headers' | 'auth' | 'open' | 'done';
  /** Raw stream bytes that arrived during 'auth', or capsule bytes already unframed from DATA. */
  queued: Array<{ chunk: Uint8Array; fin: boolean; capsules?: boolean }>;
  session?: Session;
}

class ServerConn {
  readonly h3: H3Connection;
  readonly requests = new Map<number, RequestState>();
  readonly sessions = new Map<number, Session>();
  closed = false;
  closeReason?: CloseReason;

  constructor(
    readonly server: MasqueServer,
    readonly quic: QuicConnection,
  ) {
    this.h3 = new H3Connection(quic, 'server', {
      onRequestStream: (id, chunk, fin) => server.onRequestStream(this, id, chunk, fin),
      onHttpDatagram: (id, ctx, payload) => server.onHttpDatagram(this, id, ctx, payload),
      onClosed: (r) => server.onConnectionClosed(this, r),
      onStreamGone: (id) => server.endStream(this, id, 'server'),
    });
  }

  get peerHost(): string {
    return this.quic.peer.host;
  }
}

function kindOf(k: MasqueKind): SessionKind {
  return k === 'udp' ? 'masque-connect-udp' : 'masque-connect-ip';
}

const MAX_TIMER_MS = 2 ** 31 - 1;
let scratch = Buffer.allocUnsafe(65_536);
const MAX_PENDING_STREAM_BYTES = 1 << 20;

export class MasqueServer {
  readonly counters: MasqueCounters = {
    sessionsOpened: { udp: 0, ip: 0 },
    sessionsEnded: { client: 0, 'token-expired': 0, connection: 0, server: 0 },
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
  };
  readonly live: Record<MasqueKind, number> = { udp: 0, ip: 0 };
  private readonly conns = new Set<ServerConn>();
  private draining = false;
  endpoint!: QuicEndpoint;
  private readonly access?: AccessLog;

  private constructor(private opts: MasqueServerOptions) {
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
      maxConnections: opts.maxSessions,
      // Many concurrent CONNECTs per connection; small per-stream windows keep idle sessions cheap.
      initialMaxStreamsBidi: 1024,
      initialMaxStreamData: 256 << 10,
      initialMaxData: 8 << 20,
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
  update(next: Partial<Pick<MasqueServerOptions, 'auth' | 'udpPolicy' | 'dnsTimeoutMs' | 'ip'>>): void {
    this.opts = { ...this.opts, ...next };
  }

  setTls(tls: TlsMaterial): void {
    this.endpoint.setTls(tls);
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
      st = { reader: new RequestStreamReader({ role: 'server' }), phase: 'headers', queued: [] };
      c.requests.set(streamId, st);
    }
    if (st.phase === 'auth') {
      st.queued.push({ chunk, fin });
      return;
    }
    this.feed(c, streamId, st, chunk, fin);
  }

  private feed(c: ServerConn, streamId: number, st: RequestState, chunk: Uint8Array, fin: boolean): void {
    try {
      for (const ev of st.reader.push(chunk)) {
        if (ev.type === 'request') this.onRequest(c, streamId, st, ev.request);
        else if (ev.type === 'data' && st.phase === 'open' && st.session) this.onCapsuleBytes(st.session, ev.payload);
        else if (ev.type === 'data' && st.phase === 'auth') st.queued.push({ chunk: Buffer.from(ev.payload), fin: false, capsules: true });
      }
      if (fin) {
        st.reader.end();
        if (st.session) {
          st.session.capsules.end();
          this.endSession(st.session, 'client', 'fin');
        }
        if (st.phase !== 'auth') c.requests.delete(streamId);
        else st.queued.push({ chunk: new Uint8Array(0), fin: true });
      }
    } catch (err) {
      if (!(err instanceof H3Error)) throw err;
      if (st.session) this.endSession(st.session, 'client');
      c.requests.delete(streamId);
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
    let failure: { status: number; headers?: Record<string, string>; error: string } | undefined;
    try {
      const id = await this.authorize(token, kind, c);
      if ('status' in id) failure = id;
      else if (c.closed) return;
      else session = await this.createSession(c, streamId, kind, path, id);
    } catch (err) {
      if (err instanceof TargetError) failure = { status: err.message.startsWith('cannot resolve') ? 502 : err.status, error: err.message };
      else if (err instanceof PoolExhaustedError) failure = { status: 503, error: 'address pool exhausted' };
      else failure = { status: 500, error: 'internal error' };
      if (failure.status === 500) this.opts.log?.warn({ err }, 'masque session setup failed');
    }
    if (c.closed) {
      if (session) this.endSession(session, 'connection');
      return;
    }
    if (failure) {
      this.count(`refused-${failure.status}`);
      st.phase = 'done';
      c.requests.delete(streamId);
      this.respond(c, streamId, encodeJsonResponse(failure.status, { error: failure.error }, failure.headers), true);
      // Whatever the client sent after the headers is of no interest now.
      c.quic.streamShutdown(streamId, H3ErrorCode.H3_NO_ERROR, 'read');
      return;
    }
    const s = session!;
    st.session = s;
    st.phase = 'open';
    c.sessions.set(streamId, s);
    this.live[kind]++;
    this.counters.sessionsOpened[kind]++;
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
    this.armExpiry(s);
    const queued = st.queued;
    st.queued = [];
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
        c.requests.delete(streamId);
        c.h3.fail(err, streamId);
      }
    }
  }

  private async createSession(c: ServerConn, streamId: number, kind: MasqueKind, path: string, identity: Identity): Promise<Session> {
    const s: Session = {
      kind,
      streamId,
      conn: c,
      identity,
      capsules: new CapsuleParser(),
      prefix: Buffer.from(encodeHttpDatagramPrefix(streamId, 0)),
      ended: false,
    };
    if (kind === 'udp') {
      const target = parseUdpPath(path);
      s.relay = await UdpRelay.open(target, this.opts.udpPolicy, this.opts.dnsTimeoutMs, (payload) => this.sendPayload(s, payload));
      if (c.closed) s.relay.close();
    } else {
      const ip = this.opts.ip;
      if (!ip) throw new TargetError(403, 'connect-ip is not enabled on this server');
      s.ipproto = parseIpPath(path).ipproto;
      s.sink = { deliver: (pkt) => this.sendPayload(s, pkt) };
      s.lease = ip.gateway.attach(s.sink);
    }
    return s;
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

  private writeCapsule(s: Session, capsule: Uint8Array): void {
    s.conn.h3.write(s.streamId, encodeDataFrameHeader(capsule.length));
    s.conn.h3.write(s.streamId, capsule);
  }

  private armExpiry(s: Session): void {
    if (s.expiry) clearTimeout(s.expiry);
    const ms = s.identity.expiresAt * 1000 - Date.now();
    s.expiry = setTimeout(
      () => {
        if (s.identity.expiresAt * 1000 > Date.now() + 5) return this.armExpiry(s);
        this.opts.log?.info({ subject: s.identity.subject, kind: s.kind }, 'masque session ended: token expired');
        this.endSession(s, 'token-expired');
      },
      Math.min(Math.max(ms, 0), MAX_TIMER_MS),
    );
    s.expiry.unref();
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
    if (c.closed) return;
    st.phase = 'done';
    c.requests.delete(streamId);
    if (failure) {
      this.respond(c, streamId, encodeJsonResponse(failure.status, { error: failure.error }, failure.headers), true);
      return;
    }
    let n = 0;
    for (const s of c.sessions.values()) {
      if (s.identity.subject !== identity!.subject) continue;
      s.identity = identity!;
      this.armExpiry(s);
      n++;
    }
    this.counters.tokenRefreshes++;
    this.respond(c, streamId, encodeResponse({ status: 204, headers: { 'cbr-sessions-refreshed': String(n) } }), true);
  }

  // ------------------------------------------------------------------ capsules and datagrams

  private onCapsuleBytes(s: Session, bytes: Uint8Array): void {
    for (const cap of s.capsules.push(bytes)) {
      if (cap.type === 'datagram') {
        const ctx = readContextId(cap.payload);
        if (!ctx) continue;
        this.counters.capsuleDatagramsIn++;
        this.onPayload(s, ctx.contextId, Buffer.from(cap.payload.buffer, cap.payload.byteOffset + ctx.offset, cap.payload.length - ctx.offset));
      } else if (cap.type === 'address_request' && s.kind === 'ip' && s.lease) {
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

  /** One UDP payload / IP packet to the client: a QUIC DATAGRAM, or a DATAGRAM capsule when it cannot go as one. */
  private sendPayload(s: Session, payload: Uint8Array): boolean {
    if (s.ended) return false;
    const c = s.conn;
    // quiche copies the datagram into its queue: build it in a shared scratch buffer.
    const need = s.prefix.length + payload.length;
    if (need > scratch.length) scratch = Buffer.allocUnsafe(need);
    s.prefix.copy(scratch, 0);
    scratch.set(payload, s.prefix.length);
    const dg = scratch.subarray(0, need);
    if (c.h3.peerAcceptsDatagrams && c.quic.datagramSend(dg)) {
      this.counters.datagramsOut++;
      this.counters.bytesOut += payload.length;
      if (s.access) s.access.toClient += payload.length;
      return true;
    }
    if (c.h3.peerAcceptsDatagrams && dg.length <= c.quic.datagramMaxSize()) {
      this.counters.drops['client-queue']++;
      return false;
    }
    if (c.h3.pendingBytes(s.streamId) > MAX_PENDING_STREAM_BYTES) {
      this.counters.drops['client-queue']++;
      return false;
    }
    this.writeCapsule(s, encodeDatagramCapsule(0, payload));
    this.counters.capsuleDatagramsOut++;
    this.counters.datagramsOut++;
    this.counters.bytesOut += payload.length;
    if (s.access) s.access.toClient += payload.length;
    return true;
  }

  // ------------------------------------------------------------------ teardown

  /** `detail` says more than `why` for the access log (a FIN rather than a reset); see accessReason. */
  private endSession(s: Session, why: SessionEndReason, detail?: AccessEndReason): void {
    if (s.ended) return;
    s.ended = true;
    s.access?.end(detail ?? accessReason(why, s.conn.closeReason));
    if (s.expiry) clearTimeout(s.expiry);
    s.relay?.close();
    s.lease?.release();
    this.live[s.kind]--;
    this.counters.sessionsEnded[why]++;
    const c = s.conn;
    c.sessions.delete(s.streamId);
    if (why === 'token-expired' || why === 'server') {
      c.requests.delete(s.streamId);
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
    c.requests.delete(streamId);
    if (s) this.endSession(s, why === 'server' ? 'client' : why);
  }

  /** @internal */
  onConnectionClosed(c: ServerConn, reason?: CloseReason): void {
    c.closed = true;
    c.closeReason = reason;
    for (const s of [...c.sessions.values()]) this.endSession(s, 'connection');
    c.requests.clear();
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
