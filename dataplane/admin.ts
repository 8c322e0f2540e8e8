// The admin HTTP listener: GET / (the status page, added by status-page/page.ts), GET /metrics (Prometheus text), GET /healthz (JSON, 200 when up), and the
// JSON API under /v1/ that subsystems add routes to. /v1/ is behind a bearer token from config, or a
// pluggable authorizer (auth/ adds Zitadel's `admin` role); without either it answers loopback only.
import { createServer, type Server, type IncomingMessage, type ServerResponse, type IncomingHttpHeaders } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Registry } from 'prom-client';
import type { HealthModel } from './health.js';
import type { Logger } from './log.js';
import { splitHostPort } from './config/common.js';
import { CbrError, codeForStatus, errorMessage, type ErrorCode } from './errors.js';

/** An error a route answers with: its status and headers; the code defaults to the status's generic one. */
export class HttpError extends CbrError {
  constructor(
    readonly status: number,
    message: string,
    readonly headers: Record<string, string> = {},
    code?: ErrorCode,
  ) {
    super(code ?? codeForStatus(status), message);
  }
}

export interface AdminRequest {
  method: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  remoteAddress: string;
  /** Raw body, at most 1 MiB. */
  body(): Promise<Buffer>;
  /** Body parsed as JSON; a malformed body is a 400 naming the problem. */
  json(): Promise<unknown>;
}

export interface AdminResponse {
  status?: number;
  /** Objects are sent as JSON; strings and buffers as they are. */
  body?: unknown;
  headers?: Record<string, string>;
}

export type RouteHandler = (req: AdminRequest) => Promise<AdminResponse> | AdminResponse;
/**
 * `admin`: the /v1/ admin credential is required. `public`: the handler authenticates by itself
 * (admin listener only). `client`: for VPN clients, the handler authenticates by itself, served on
 * the client HTTPS listener (clientApi) as well as on the admin listener.
 */
export type RouteAccess = 'admin' | 'public' | 'client';
/** Returns true when the request carries a valid admin credential other than the static token. */
export type AdminAuthorizer = (bearer: string, req: AdminRequest) => Promise<boolean>;

interface Route {
  method: string;
  parts: string[];
  handler: RouteHandler;
  access: RouteAccess;
}

const MAX_BODY = 1 << 20;

export interface AdminServerOptions {
  listen: string;
  /** Open connections at once (admin.maxConnections); more are refused by the kernel's accept path. */
  maxConnections?: number;
  apiToken?: string;
  registry: Registry;
  health: HealthModel;
  log: Logger;
}

/** The client-facing HTTPS listener (clientApi): the same route table, `client` routes only. */
export interface ClientListenerOptions {
  listen: string;
  cert: string | Buffer;
  key: string | Buffer;
  maxConnections: number;
}

type Scope = 'admin' | 'client';

export class AdminServer {
  private server?: Server;
  private clientServer?: HttpsServer;
  private readonly routes: Route[] = [];
  private apiTokenDigest?: Buffer;
  private authorizer?: AdminAuthorizer;

  constructor(private readonly opts: AdminServerOptions) {
    this.setApiToken(opts.apiToken);
  }

  setApiToken(token: string | undefined): void {
    this.apiTokenDigest = token ? createHash('sha256').update(token).digest() : undefined;
  }

  setAuthorizer(authorizer: AdminAuthorizer | undefined): void {
    this.authorizer = authorizer;
  }

  /** Adds a route; `:name` segments become params. Returns a function that removes it. */
  route(method: string, pattern: string, handler: RouteHandler, access: RouteAccess = 'admin'): () => void {
    const r: Route = { method: method.toUpperCase(), parts: pattern.split('/').filter(Boolean), handler, access };
    this.routes.push(r);
    return () => {
      const i = this.routes.indexOf(r);
      if (i >= 0) this.routes.splice(i, 1);
    };
  }

  get address(): string | undefined {
    const a = this.server?.address();
    if (!a || typeof a === 'string') return a ?? undefined;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  get clientAddress(): string | undefined {
    const a = this.clientServer?.address();
    if (!a || typeof a === 'string') return a ?? undefined;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  async start(): Promise<void> {
    const server = createServer((req, res) => void this.handle(req, res, 'admin'));
    await listenOn(server, this.opts.listen, 'admin.listen', this.opts.maxConnections ?? 256);
    server.on('error', (err) => this.opts.log.error({ err }, 'admin listener error'));
    this.server = server;
    this.opts.log.info({ listen: this.address }, 'admin HTTP listening');
  }

  /** Starts the client-facing HTTPS listener; throws naming the clientApi field that is wrong. */
  async startClient(o: ClientListenerOptions): Promise<void> {
    let server: HttpsServer;
    try {
      server = createHttpsServer({ cert: o.cert, key: o.key, minVersion: 'TLSv1.2' }, (req, res) => void this.handle(req, res, 'client'));
    } catch (err) {
      throw new Error(`clientApi.certFile: the certificate or key is not usable: ${errorMessage(err)}`);
    }
    await listenOn(server, o.listen, 'clientApi.listen', o.maxConnections);
    server.on('error', (err) => this.opts.log.error({ err }, 'client API listener error'));
    // A handshake that fails (scanners, wrong CA) is the client's problem: count it in the log at debug.
    server.on('tlsClientError', (err) => this.opts.log.debug({ err: errorMessage(err) }, 'client API TLS handshake failed'));
    this.clientServer = server;
    this.opts.log.info({ listen: this.clientAddress }, 'client API HTTPS listening');
  }

  /** New certificate and key for the client listener (SIGHUP); existing connections keep theirs. */
  setClientTls(cert: string | Buffer, key: string | Buffer): void {
    this.clientServer?.setSecureContext({ cert, key, minVersion: 'TLSv1.2' });
  }

  async stop(): Promise<void> {
    for (const server of [this.clientServer, this.server]) {
      if (!server) continue;
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    }
    this.server = undefined;
    this.clientServer = undefined;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, scope: Scope): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin.invalid');
    const method = (req.method ?? 'GET').toUpperCase();
    let bodyPromise: Promise<Buffer> | undefined;
    const readBody = (): Promise<Buffer> =>
      (bodyPromise ??= new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        let size = 0;
        req.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY) {
            reject(new HttpError(413, `body: larger than ${MAX_BODY} bytes`));
            req.destroy();
          } else chunks.push(c);
        });
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
      }));
    const areq: AdminRequest = {
      method,
      path: url.pathname,
      params: {},
      query: url.searchParams,
      headers: req.headers,
      remoteAddress: req.socket.remoteAddress ?? '',
      body: readBody,
      json: async () => {
        const raw = await readBody();
        if (raw.length === 0) throw new HttpError(400, 'body: expected a JSON document, got an empty body');
        try {
          return JSON.parse(raw.toString('utf8'));
        } catch (err) {
          throw new HttpError(400, `body: invalid JSON (${errorMessage(err)})`);
        }
      },
    };
    let out: AdminResponse;
    try {
      out = await this.dispatch(areq, scope);
    } catch (err) {
      if (err instanceof HttpError) {
        out = { status: err.status, body: { error: err.message, code: err.code }, headers: err.headers };
      } else {
        this.opts.log.error({ err, path: url.pathname, method }, 'admin handler failed');
        out = { status: 500, body: { error: 'internal error' } };
      }
    }
    this.send(res, out);
  }

  private async dispatch(req: AdminRequest, scope: Scope): Promise<AdminResponse> {
    if (scope === 'client') return this.dispatchClient(req);
    if (req.path === '/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      return { body: await this.opts.registry.metrics(), headers: { 'content-type': this.opts.registry.contentType } };
    }
    if (req.path === '/healthz' && (req.method === 'GET' || req.method === 'HEAD')) {
      const snap = this.opts.health.snapshot();
      return { status: snap.state === 'up' ? 200 : 503, body: snap };
    }
    const parts = req.path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const r of this.routes) {
      const params = matchRoute(r.parts, parts);
      if (!params) continue;
      pathMatched = true;
      if (r.method !== req.method) continue;
      req.params = params;
      if (r.access === 'admin') await this.authorize(req);
      return r.handler(req);
    }
    if (pathMatched) throw new HttpError(405, `method ${req.method} not allowed on ${req.path}`);
    throw new HttpError(404, `no such endpoint: ${req.path}`);
  }

  /** The client listener knows only `client` routes: anything else is 404, as if it did not exist. */
  private async dispatchClient(req: AdminRequest): Promise<AdminResponse> {
    const parts = req.path.split('/').filter(Boolean);
    let pathMatched = false;
    for (const r of this.routes) {
      if (r.access !== 'client') continue;
      const params = matchRoute(r.parts, parts);
      if (!params) continue;
      pathMatched = true;
      if (r.method !== req.method) continue;
      req.params = params;
      return r.handler(req);
    }
    if (pathMatched) throw new HttpError(405, `method ${req.method} not allowed on ${req.path}`);
    throw new HttpError(404, `no such endpoint: ${req.path}`);
  }

  /** Whether `req` carries what /v1/ asks for (for a public route that shows less without it). */
  async isAuthorized(req: AdminRequest): Promise<boolean> {
    try {
      await this.authorize(req);
      return true;
    } catch (err) {
      if (err instanceof HttpError) return false;
      throw err;
    }
  }

  private async authorize(req: AdminRequest): Promise<void> {
    const header = req.headers.authorization;
    const bearer = typeof header === 'string' && /^Bearer\s+/i.test(header) ? header.replace(/^Bearer\s+/i, '').trim() : undefined;
    if (!this.apiTokenDigest && !this.authorizer) {
      // No credential configured: only the host itself may use the API.
      if (isLoopback(req.remoteAddress)) return;
      throw new HttpError(403, 'the /v1/ API answers only loopback clients when no admin.apiToken is configured');
    }
    if (bearer === undefined) throw new HttpError(401, 'missing bearer token', { 'www-authenticate': 'Bearer realm="cbr-admin"' });
    if (this.apiTokenDigest && timingSafeEqual(createHash('sha256').update(bearer).digest(), this.apiTokenDigest)) return;
    if (this.authorizer && (await this.authorizer(bearer, req))) return;
    throw new HttpError(401, 'invalid bearer token', { 'www-authenticate': 'Bearer realm="cbr-admin", error="invalid_token"' });
  }

  private send(res: ServerResponse, out: AdminResponse): void {
    const headers: Record<string, string> = { ...out.headers };
    let payload: Buffer | string = '';
    if (out.body === undefined) payload = '';
    else if (Buffer.isBuffer(out.body) || typeof out.body === 'string') payload = out.body;
    else {
      payload = `${JSON.stringify(out.body, null, 2)}\n`;
      headers['content-type'] ??= 'application/json';
    }
    headers['content-length'] = String(Buffer.byteLength(payload));
    res.writeHead(out.status ?? 200, headers);
    res.end(res.req.method === 'HEAD' ? undefined : payload);
  }
}

/** Binds `server` to `listen`; errors name `field` and say what to do. */
async function listenOn(server: Server | HttpsServer, listen: string, field: string, maxConnections: number): Promise<void> {
  const hp = splitHostPort(listen);
  if (!hp) throw new Error(`${field}: expected host:port, got ${JSON.stringify(listen)}`);
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.maxConnections = maxConnections;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new Error(`${field}: ${listen} is already in use (is another agent running?)`));
      else if (err.code === 'EADDRNOTAVAIL') reject(new Error(`${field}: ${hp.host} is not an address of this host`));
      else if (err.code === 'EACCES') reject(new Error(`${field}: permission denied for port ${hp.port} (needs CAP_NET_BIND_SERVICE)`));
      else reject(new Error(`${field}: ${err.message}`));
    });
    server.listen(hp.port, hp.host, () => resolve());
  });
}

function matchRoute(pattern: string[], parts: string[]): Record<string, string> | undefined {
  if (pattern.length !== parts.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    if (p.startsWith(':')) {
      try {
        params[p.slice(1)] = decodeURIComponent(parts[i]!);
      } catch {
        return undefined;
      }
    } else if (p !== parts[i]) return undefined;
  }
  return params;
}

export function isLoopback(addr: string): boolean {
  return addr === '::1' || addr.startsWith('127.') || addr.startsWith('::ffff:127.');
}
