// The MASQUE client side: one HTTP/3 connection to a PoP carrying any number of connect-udp /
// connect-ip sessions (one request stream each), ordinary requests (status, token refresh) and
// HTTP Datagrams. Many clients can share one QuicEndpoint (one UDP socket).
import { QuicEndpoint, transportErrorName, isCertificateError, type CloseReason } from '../quic/index.js';
import { CbrError } from '../../dataplane/index.js';
import {
  H3Error,
  RequestStreamReader,
  CapsuleParser,
  encodeExtendedConnect,
  encodeHeadersFrame,
  encodeFieldSection,
  encodeDataFrameHeader,
  encodeTypedCapsule,
  encodeDatagramCapsule,
  readContextId,
  encodeHttpDatagramPrefix,
  h3ErrorName,
  type IpAddressEntry,
  type IpAddressRange,
  type HeaderField,
} from '../h3/index.js';
import { H3Connection } from './h3-conn.js';
import { TOKEN_REFRESH_PATH } from './server.js';

/** The server answered a request or CONNECT with a non-2xx status (code MASQUE_HTTP). */
export class MasqueHttpError extends CbrError {
  constructor(
    readonly status: number,
    readonly body: string,
  ) {
    super('MASQUE_HTTP', `server answered ${status}${body ? `: ${body.slice(0, 200)}` : ''}`);
  }
}

/** The QUIC connection closed before the handshake completed; `reason` says who closed it and why. */
/**
 * A connection that closed before its handshake finished. A refused certificate has the code
 * TLS_CERTIFICATE_REJECTED: it stays refused, so callers (cbr connect) stop instead of retrying.
 */
export class MasqueHandshakeError extends CbrError {
  constructor(
    message: string,
    readonly reason: CloseReason,
  ) {
    super(!reason.isApp && isCertificateError(reason.code) ? 'TLS_CERTIFICATE_REJECTED' : 'UNAVAILABLE', message);
  }
}

export interface MasqueClientOptions {
  host: string;
  port: number;
  /** SNI and the name checked in the certificate (default: host). */
  serverName?: string;
  caPem?: string;
  insecure?: boolean;
  /** Share one UDP socket between many clients (e.g. 1,000 sessions from one process). */
  endpoint?: QuicEndpoint;
  idleTimeoutMs?: number;
  /** A TLS session saved from an earlier connection (tlsSession()), to resume. */
  session?: Uint8Array;
  timeoutMs?: number;
}

export interface HttpAnswer {
  status: number;
  headers: HeaderField[];
  body: Buffer;
}

interface Pending {
  reader: RequestStreamReader;
  resolve(a: HttpAnswer): void;
  reject(e: Error): void;
  answer?: HttpAnswer;
  chunks: Buffer[];
  session?: MasqueSession;
}

let scratch = Buffer.allocUnsafe(65_536);
/** Shared by every client: reads are synchronous and onResponseBytes copies what it keeps. */
const responseBuf = Buffer.allocUnsafe(65_536);

export type SessionEnd = { by: 'server-fin' } | { by: 'reset' } | { by: 'connection'; reason: CloseReason } | { by: 'local' };

/** One connect-udp or connect-ip session: send() payloads, onPayload receives them. */
export class MasqueSession {
  onPayload: (payload: Buffer) => void = () => {};
  onEnd: (why: SessionEnd) => void = () => {};
  /** connect-ip: what the server assigned and advertised (updated as capsules arrive). */
  addresses: IpAddressEntry[] = [];
  routes: IpAddressRange[] = [];
  onIpConfig: () => void = () => {};
  ended = false;
  /** The 2xx answer's header fields (e.g. `cbr-pop`, the PoP's name). */
  responseHeaders: HeaderField[] = [];
  readonly capsules = new CapsuleParser();
  private readonly prefix: Buffer;
  readonly stats = { sent: 0, received: 0, dropped: 0 };

  constructor(
    readonly client: MasqueClient,
    readonly streamId: number,
    readonly kind: 'udp' | 'ip',
  ) {
    this.prefix = Buffer.from(encodeHttpDatagramPrefix(streamId, 0));
  }

  send(payload: Uint8Array): boolean {
    if (this.ended) return false;
    const h3 = this.client.h3;
    // quiche copies the datagram into its queue: build it in a shared scratch buffer.
    const need = this.prefix.length + payload.length;
    if (need > scratch.length) scratch = Buffer.allocUnsafe(need);
    this.prefix.copy(scratch, 0);
    scratch.set(payload, this.prefix.length);
    const dg = scratch.subarray(0, need);
    if (h3.peerAcceptsDatagrams && h3.quic.datagramSend(dg)) {
      this.stats.sent++;
      return true;
    }
    if (h3.peerAcceptsDatagrams && dg.length <= h3.quic.datagramMaxSize()) {
      this.stats.dropped++;
      return false;
    }
    const cap = encodeDatagramCapsule(0, payload);
    h3.write(this.streamId, encodeDataFrameHeader(cap.length));
    h3.write(this.streamId, cap);
    this.stats.sent++;
    return true;
  }

  /** @internal */
  onCapsuleBytes(bytes: Uint8Array): void {
    for (const cap of this.capsules.push(bytes)) {
      if (cap.type === 'datagram') {
        const ctx = readContextId(cap.payload);
        if (ctx && ctx.contextId === 0) this.deliver(Buffer.from(cap.payload.buffer, cap.payload.byteOffset + ctx.offset, cap.payload.length - ctx.offset));
      } else if (cap.type === 'address_assign') {
        this.addresses = cap.addresses;
        this.onIpConfig();
      } else if (cap.type === 'route_advertisement') {
        this.routes = cap.ranges;
        this.onIpConfig();
      }
    }
  }

  /** @internal */
  deliver(payload: Buffer): void {
    this.stats.received++;
    this.onPayload(payload);
  }

  /** @internal */
  end(why: SessionEnd): void {
    if (this.ended) return;
    this.ended = true;
    this.client.sessions.delete(this.streamId);
    this.onEnd(why);
  }

  /** Ends the session (FIN on its stream). */
  close(): void {
    if (this.ended) return;
    this.client.h3.write(this.streamId, new Uint8Array(0), true);
    this.end({ by: 'local' });
  }
}

export class MasqueClient {
  readonly h3: H3Connection;
  readonly sessions = new Map<number, MasqueSession>();
  private readonly pending = new Map<number, Pending>();
  private nextStream = 0;
  private ownsEndpoint: boolean;
  closed: CloseReason | undefined;
  onClosed: (r: CloseReason) => void = () => {};
  goaway = false;
  /** The PoP sent GOAWAY: it is draining (its anycast route is about to move); see cbr connect. */
  onGoaway: () => void = () => {};

  private constructor(
    readonly endpoint: QuicEndpoint,
    readonly opts: MasqueClientOptions,
    ownsEndpoint: boolean,
  ) {
    this.ownsEndpoint = ownsEndpoint;
    const quic = endpoint.connect(opts.host, opts.port, opts.serverName ?? opts.host, {}, opts.session);
    this.h3 = new H3Connection(quic, 'client', {
      onRequestStream: () => {},
      onHttpDatagram: (id, ctx, payload) => {
        const s = this.sessions.get(id);
        if (s && ctx === 0) s.deliver(payload);
      },
      onGoaway: () => {
        this.goaway = true;
        this.onGoaway();
      },
      onStreamAbandoned: (id, how, code) => this.onAbandoned(id, how, code),
      onClosed: (r) => this.onConnectionClosed(r),
    });
    // Responses arrive on our own bidirectional streams, which H3Connection leaves to us.
    const base = quic.handler.onStreamReadable!.bind(quic.handler);
    quic.handler.onStreamReadable = (c, id) => ((id & 3) === 0 ? this.onResponseReadable(id) : base(c, id));
  }

  /** The TLS session to resume with next time (null until the server sent a ticket). */
  tlsSession(): Uint8Array | null {
    return this.h3.quic.tlsSession();
  }

  /** Connects and completes the QUIC handshake. */
  static async connect(opts: MasqueClientOptions): Promise<MasqueClient> {
    const own = opts.endpoint === undefined;
    const endpoint =
      opts.endpoint ??
      (await QuicEndpoint.client({ caPem: opts.caPem, insecure: opts.insecure, idleTimeoutMs: opts.idleTimeoutMs }, opts.host.includes(':') ? 'udp6' : 'udp4'));
    const c = new MasqueClient(endpoint, opts, own);
    const timeoutMs = opts.timeoutMs ?? 10_000;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        c.h3.quic.close(false, 0, 'handshake timeout');
        reject(new Error(`QUIC handshake with ${opts.host}:${opts.port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const quic = c.h3.quic;
      const prevEst = quic.handler.onEstablished!.bind(quic.handler);
      quic.handler.onEstablished = (q) => {
        prevEst(q);
        clearTimeout(timer);
        resolve();
      };
      c.onClosed = (r) => {
        clearTimeout(timer);
        reject(new MasqueHandshakeError(`connection to ${opts.host}:${opts.port} failed in the handshake, ${describeClose(r)}`, r));
      };
    }).catch(async (e) => {
      if (own) await endpoint.close();
      throw e;
    });
    c.onClosed = () => {};
    return c;
  }

  private onResponseReadable(id: number): void {
    const buf = responseBuf;
    for (let i = 0; i < 64; i++) {
      const r = this.h3.quic.streamRecv(id, buf);
      if (r === 'blocked' || r === 'gone') return;
      if ('reset' in r) {
        this.h3.onPeerReset(id, r.reset); // → onStreamAbandoned
        return;
      }
      this.onResponseBytes(id, Buffer.from(buf.subarray(0, r.bytes)), r.fin);
      if (r.fin) return;
    }
    this.h3.quic.endpoint.markDirty(this.h3.quic);
  }

  /** The server reset or stopped a request stream: the request fails, its session ends. */
  private onAbandoned(id: number, how: 'reset' | 'stopped', code: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    p.reject(new Error(`the server ${how === 'reset' ? 'reset' : 'stopped reading'} the stream with ${h3ErrorName(code)}`));
    p.session?.end({ by: 'reset' });
  }

  private onResponseBytes(id: number, chunk: Buffer, fin: boolean): void {
    const p = this.pending.get(id);
    if (!p) return;
    try {
      for (const ev of p.reader.push(chunk)) {
        if (ev.type === 'response' && !ev.interim) {
          p.answer = { status: ev.response.status, headers: ev.response.headers, body: Buffer.alloc(0) };
          if (p.session && ev.response.status >= 200 && ev.response.status < 300) p.resolve(p.answer);
        } else if (ev.type === 'data') {
          if (p.session && p.answer && p.answer.status < 300) p.session.onCapsuleBytes(ev.payload);
          else if (p.chunks.reduce((s, c) => s + c.length, 0) < 1 << 20) p.chunks.push(Buffer.from(ev.payload));
        }
      }
      if (fin) {
        p.reader.end();
        this.pending.delete(id);
        if (p.answer) {
          p.answer.body = Buffer.concat(p.chunks);
          p.resolve(p.answer);
        } else p.reject(new Error('the stream ended without a response'));
        p.session?.end({ by: 'server-fin' });
      }
    } catch (err) {
      this.pending.delete(id);
      const e = err instanceof H3Error ? err : new Error(String(err));
      if (err instanceof H3Error) this.h3.fail(err, id);
      p.reject(e);
      p.session?.end({ by: 'reset' });
    }
  }

  private onConnectionClosed(r: CloseReason): void {
    this.closed = r;
    const err = new Error(`connection closed: ${describeClose(r)}`);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const s of [...this.sessions.values()]) s.end({ by: 'connection', reason: r });
    this.onClosed(r);
  }

  private newStream(): number {
    if (this.closed) throw new Error(`connection closed: ${describeClose(this.closed)}`);
    const id = this.nextStream;
    this.nextStream += 4;
    return id;
  }

  private await(id: number, isConnect: boolean, session?: MasqueSession): Promise<HttpAnswer> {
    const timeoutMs = this.opts.timeoutMs ?? 10_000;
    return new Promise<HttpAnswer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.h3.resetStream(id, 0x10c);
        reject(new Error(`no response within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, {
        reader: new RequestStreamReader({ role: 'client', requestIsConnect: isConnect }),
        chunks: [],
        session,
        resolve: (a) => {
          clearTimeout(timer);
          resolve(a);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  /** An ordinary request (GET /, the token refresh); the answer with its whole body. */
  async request(method: string, path: string, headers: Record<string, string> = {}): Promise<HttpAnswer> {
    const id = this.newStream();
    const fields: HeaderField[] = [
      { name: ':method', value: method },
      { name: ':scheme', value: 'https' },
      { name: ':authority', value: this.authority },
      { name: ':path', value: path },
      ...Object.entries(headers).map(([name, value]) => ({ name, value, neverIndex: name === 'authorization' })),
    ];
    const answer = this.await(id, false);
    this.h3.write(id, encodeHeadersFrame(encodeFieldSection(fields)), true);
    return answer;
  }

  private get authority(): string {
    const h = this.opts.serverName ?? this.opts.host;
    return `${h.includes(':') ? `[${h}]` : h}:${this.opts.port}`;
  }

  private async open(kind: 'udp' | 'ip', path: string, token: string | undefined): Promise<MasqueSession> {
    const id = this.newStream();
    const session = new MasqueSession(this, id, kind);
    const answer = this.await(id, true, session);
    this.h3.write(
      id,
      encodeExtendedConnect({
        protocol: kind === 'udp' ? 'connect-udp' : 'connect-ip',
        authority: this.authority,
        path,
        headers: token !== undefined ? { authorization: `Bearer ${token}` } : {},
      }),
    );
    if (kind === 'ip') {
      const req = encodeTypedCapsule({
        type: 'address_request',
        addresses: [
          { requestId: 1, version: 4, address: '0.0.0.0', prefixLength: 32 },
          { requestId: 2, version: 6, address: '::', prefixLength: 128 },
        ],
      });
      this.h3.write(id, encodeDataFrameHeader(req.length));
      this.h3.write(id, req);
    }
    const a = await answer;
    if (a.status < 200 || a.status >= 300) throw new MasqueHttpError(a.status, a.body.toString('utf8'));
    session.responseHeaders = a.headers;
    this.sessions.set(id, session);
    return session;
  }

  /** connect-udp to host:port. Throws MasqueHttpError for a refusal (401, 403, ...). */
  openUdp(target: { host: string; port: number }, token?: string): Promise<MasqueSession> {
    const host = target.host.includes(':') ? `[${target.host}]` : target.host;
    return this.open('udp', `/.well-known/masque/udp/${encodeURIComponent(host)}/${target.port}/`, token);
  }

  /** connect-ip; resolves once the address assignment and routes have arrived (or after waitConfigMs). */
  async openIp(token?: string, waitConfigMs = 3000): Promise<MasqueSession> {
    const s = await this.open('ip', '/.well-known/masque/ip/*/*/', token);
    if (s.addresses.length === 0 || s.routes.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, waitConfigMs);
        s.onIpConfig = () => {
          if (s.addresses.length > 0 && s.routes.length > 0) {
            clearTimeout(timer);
            resolve();
          }
        };
      });
      s.onIpConfig = () => {};
    }
    if (s.addresses.length === 0) throw new Error('connect-ip: the server assigned no address');
    return s;
  }

  /** In-band token refresh for the sessions on this connection (see server.ts). */
  async refreshToken(token: string): Promise<HttpAnswer> {
    return this.request('POST', TOKEN_REFRESH_PATH, { authorization: `Bearer ${token}` });
  }

  async close(): Promise<void> {
    for (const s of [...this.sessions.values()]) s.close();
    if (!this.closed) this.h3.quic.close(true, 0x100, 'client done');
    if (this.ownsEndpoint) await this.endpoint.close({ isApp: true, code: 0x100, graceMs: 50 });
  }
}

/** A close in words: who closed, the error's name, and the reason (what failed, for a certificate). */
export function describeClose(r: CloseReason): string {
  if (r.by === 'idle') return 'idle timeout';
  if (r.by === 'stateless-reset') return 'stateless reset (the server has no such connection: it moved to another PoP or restarted)';
  const code = r.isApp ? h3ErrorName(r.code) : transportErrorName(r.code);
  const who = r.by === 'peer' ? 'closed by the server' : r.by === 'local' ? 'closed by this client' : 'closed';
  let reason = r.reason;
  if (!reason && !r.isApp && isCertificateError(r.code))
    reason = r.by === 'local' ? "the server's certificate was refused (its name, its CA or its dates)" : 'the server refused our certificate';
  return `${who}: ${code}${reason ? ` (${reason})` : ''}`;
}
