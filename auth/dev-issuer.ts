// A development OpenID issuer that mimics Zitadel's endpoints and token shapes, for the demo and for
// tests (here and in other subsystems). Not for production: keys live in memory, clients come from a
// small config, and the /admin/ endpoints (mint, rotate, revoke, faults) have no authentication.
import { createServer, type Server, type IncomingMessage, type ServerResponse } from 'node:http';
import { generateKeyPairSync, randomBytes, randomInt, createPublicKey, timingSafeEqual, createHash, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { SignJWT, jwtVerify, decodeProtectedHeader, type JWK } from 'jose';
import { z } from 'zod';
import { parse as parseYaml } from 'yaml';
import { CbrError, errorMessage, httpStatusFor, splitHostPort, type ErrorCode } from '../dataplane/index.js';
import { ZITADEL_ROLES_CLAIM, ZITADEL_ORG_CLAIM, projectRolesClaim } from './claims.js';
import { parseAppKeyFile, type AppKeyFile } from './introspect.js';

export type RoleClaimShape = 'generic' | 'project' | 'both';

export interface ServiceUser {
  clientId: string;
  clientSecret: string;
  /** The user ID in `sub` (default: a generated numeric ID). */
  subject?: string;
  roles: string[];
  org?: string;
  /** Issue opaque access tokens instead of JWTs (for introspection tests). */
  opaque?: boolean;
}

export interface IntrospectionApp {
  clientId: string;
  appId?: string;
  /** PEM public key of the app's key; or a key file to read (created when missing). */
  publicKey?: string;
  keyFile?: string;
}

export interface DevIssuerOptions {
  /** host:port to listen on (default 127.0.0.1:0, an ephemeral port). */
  listen?: string;
  projectId: string;
  /** The iss value (default http://<listen>). */
  issuer?: string;
  orgId?: string;
  orgDomain?: string;
  /** Access token lifetime in seconds (default 3600). */
  tokenLifetime?: number;
  serviceUsers?: ServiceUser[];
  apps?: IntrospectionApp[];
  /** Previous signing keys kept in the JWKS after a rotation (default 1). */
  retainPreviousKeys?: number;
  /** Role claim written into minted tokens by default (default both). */
  roleClaim?: RoleClaimShape;
}

export interface MintOptions {
  subject?: string;
  roles?: string[];
  /** Seconds from now; negative for an already expired token (default tokenLifetime). */
  expiresIn?: number;
  /** nbf as seconds from now (default: now). */
  notBefore?: number;
  /** iat as seconds from now (default: now). */
  issuedAt?: number;
  audience?: string | string[];
  issuer?: string;
  org?: string;
  clientId?: string;
  roleClaim?: RoleClaimShape;
  alg?: 'RS256' | 'ES256';
  /** Sign with this kid (it must be one of the issuer's keys, published or not). */
  kid?: string;
  claims?: Record<string, unknown>;
}

interface SigningKey {
  kid: string;
  alg: 'RS256' | 'ES256';
  privateKey: KeyObject;
  jwk: JWK;
  published: boolean;
}

export interface JwksFault {
  /** Delay before answering /oauth/v2/keys (ms). */
  delayMs?: number;
  /** Answer /oauth/v2/keys with this HTTP status instead of the key set. */
  status?: number;
}

export interface DevIssuer {
  /** The issuer URL (iss). */
  readonly url: string;
  readonly port: number;
  readonly projectId: string;
  readonly orgId: string;
  /** Signs a Zitadel-shaped access token. */
  mint(opts?: MintOptions): Promise<string>;
  /** An opaque token that only introspection can resolve. */
  mintOpaque(opts?: MintOptions): string;
  /** New current RS256 key (published at once unless publish is false); returns its kid. */
  rotate(opts?: { publish?: boolean; alg?: 'RS256' | 'ES256' }): string;
  /** Publishes a key created with rotate({publish:false}). */
  publish(kid: string): void;
  currentKid(alg?: 'RS256' | 'ES256'): string;
  revoke(token: string): void;
  /** Registers an introspection client and returns its Zitadel-style application key file. */
  createAppKey(clientId?: string): AppKeyFile;
  setJwksFault(fault: JwksFault): void;
  /** Requests /oauth/v2/keys has answered (or started answering). */
  readonly jwksRequests: number;
  close(): Promise<void>;
}

export const devIssuerConfigSchema = z.strictObject({
  issuer: z.url().optional().describe('iss value (default http://<listen>)'),
  projectId: z.string().min(1).optional().describe('Zitadel project ID put in aud and in the project role claim'),
  orgId: z.string().min(1).optional().describe('organisation ID of the service users'),
  orgDomain: z.string().min(1).optional().describe('organisation domain in the role claims'),
  tokenLifetime: z.number().int().min(1).optional().describe('access token lifetime in seconds'),
  roleClaim: z.enum(['generic', 'project', 'both']).optional(),
  serviceUsers: z
    .array(
      z.strictObject({
        clientId: z.string().min(1),
        clientSecret: z.string().min(1),
        subject: z.string().min(1).optional(),
        roles: z.array(z.string().min(1)).default([]),
        org: z.string().min(1).optional(),
        opaque: z.boolean().optional(),
      }),
    )
    .default([]),
  apps: z.array(z.strictObject({ clientId: z.string().min(1), appId: z.string().optional(), keyFile: z.string().min(1) })).default([]),
});

/** Reads a dev-issuer config file (YAML or JSON); errors name the file and the field. */
export function loadDevIssuerConfig(path: string): z.output<typeof devIssuerConfigSchema> {
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`${path}: ${errorMessage(err).split('\n')[0]}`);
  }
  const r = devIssuerConfigSchema.safeParse(raw ?? {});
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new Error(`${path}: ${i.path.join('.') || '(top)'}: ${i.message}`);
  }
  return r.data;
}

/** A Zitadel-looking numeric ID. */
export function zitadelId(): string {
  return `${randomInt(100000000, 999999999)}${randomInt(100000000, 999999999)}`;
}

function newKey(alg: 'RS256' | 'ES256', published: boolean): SigningKey {
  const { privateKey } = alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const kid = zitadelId();
  const jwk = { ...(createPublicKey(privateKey).export({ format: 'jwk' }) as JWK), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, jwk, published };
}

const sha = (s: string) => createHash('sha256').update(s).digest();
const secretEquals = (a: string, b: string) => timingSafeEqual(sha(a), sha(b));

/** An OAuth error answer: the status comes from the code, the body is RFC 6749 §5.2's. */
class HttpFailure extends CbrError {
  constructor(
    code: ErrorCode,
    readonly body: Record<string, unknown>,
    readonly headers: Record<string, string> = {},
  ) {
    super(code, String(body.error ?? code));
  }

  get status(): number {
    return httpStatusFor(this);
  }
}

export async function startDevIssuer(opts: DevIssuerOptions): Promise<DevIssuer> {
  const hp = splitHostPort(opts.listen ?? '127.0.0.1:0');
  if (!hp) throw new Error(`--listen: expected host:port, got ${JSON.stringify(opts.listen)}`);
  const orgId = opts.orgId ?? zitadelId();
  const orgDomain = opts.orgDomain ?? 'dev.localhost';
  const lifetime = opts.tokenLifetime ?? 3600;
  const retain = opts.retainPreviousKeys ?? 1;
  const defaultShape = opts.roleClaim ?? 'both';
  const keys: SigningKey[] = [newKey('RS256', true), newKey('ES256', true)];
  const opaqueTokens = new Map<string, Record<string, unknown>>();
  const revoked = new Set<string>();
  const apps = new Map<string, { clientId: string; appId: string; keyId?: string; publicKey: KeyObject }>();
  const users = new Map<string, ServiceUser & { subject: string }>();
  for (const u of opts.serviceUsers ?? []) users.set(u.clientId, { ...u, subject: u.subject ?? zitadelId() });
  let fault: JwksFault = {};
  let jwksRequests = 0;

  const server: Server = createServer((req, res) => void handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new Error(`--listen ${opts.listen}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`)),
    );
    server.listen(hp.port, hp.host, () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const hostPart = hp.host.includes(':') ? `[${hp.host}]` : hp.host;
  const url = (opts.issuer ?? `http://${hostPart}:${port}`).replace(/\/+$/, '');

  function current(alg: 'RS256' | 'ES256'): SigningKey {
    const k = [...keys].reverse().find((x) => x.alg === alg && x.published);
    if (!k) throw new Error(`no published ${alg} key`);
    return k;
  }

  function rolesClaim(roles: string[], org: string): Record<string, Record<string, string>> {
    return Object.fromEntries(roles.map((r) => [r, { [org]: orgDomain }]));
  }

  function claimsFor(m: MintOptions): Record<string, unknown> {
    const now = Math.floor(Date.now() / 1000);
    const org = m.org ?? orgId;
    const clientId = m.clientId ?? `${zitadelId()}@${opts.projectId}`;
    const shape = m.roleClaim ?? defaultShape;
    const roles = rolesClaim(m.roles ?? [], org);
    const claims: Record<string, unknown> = {
      iss: m.issuer ?? url,
      sub: m.subject ?? zitadelId(),
      aud: m.audience ?? [opts.projectId, clientId],
      exp: now + (m.expiresIn ?? lifetime),
      iat: now + (m.issuedAt ?? 0),
      nbf: now + (m.notBefore ?? 0),
      jti: zitadelId(),
      client_id: clientId,
      [ZITADEL_ORG_CLAIM]: org,
      'urn:zitadel:iam:user:resourceowner:primary_domain': orgDomain,
    };
    if (shape !== 'project') claims[ZITADEL_ROLES_CLAIM] = roles;
    if (shape !== 'generic') claims[projectRolesClaim(opts.projectId)] = roles;
    return { ...claims, ...m.claims };
  }

  async function mint(m: MintOptions = {}): Promise<string> {
    const key = m.kid ? keys.find((k) => k.kid === m.kid) : current(m.alg ?? 'RS256');
    if (!key) throw new Error(`mint: no key with kid ${m.kid}`);
    return new SignJWT(claimsFor(m)).setProtectedHeader({ alg: key.alg, kid: key.kid }).sign(key.privateKey);
  }

  function mintOpaque(m: MintOptions = {}): string {
    const token = randomBytes(32).toString('base64url');
    opaqueTokens.set(token, claimsFor(m));
    return token;
  }

  function rotate(r: { publish?: boolean; alg?: 'RS256' | 'ES256' } = {}): string {
    const alg = r.alg ?? 'RS256';
    const k = newKey(alg, r.publish ?? true);
    keys.push(k);
    // Keep the newest `retain + 1` keys of this algorithm (unpublished ones do not count).
    const sameAlg = keys.filter((x) => x.alg === alg && x.published);
    for (const old of sameAlg.slice(0, Math.max(0, sameAlg.length - (retain + 1)))) keys.splice(keys.indexOf(old), 1);
    return k.kid;
  }

  function createAppKey(clientId = `${zitadelId()}@${opts.projectId}`): AppKeyFile {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const file: AppKeyFile = {
      type: 'application',
      keyId: zitadelId(),
      key: privateKey.export({ type: 'pkcs1', format: 'pem' }) as string,
      appId: zitadelId(),
      clientId,
    };
    apps.set(clientId, { clientId, appId: file.appId!, keyId: file.keyId, publicKey });
    return file;
  }

  for (const a of opts.apps ?? []) {
    if (a.publicKey) apps.set(a.clientId, { clientId: a.clientId, appId: a.appId ?? zitadelId(), publicKey: createPublicKey(a.publicKey) });
    else if (a.keyFile) {
      if (existsSync(a.keyFile)) {
        const f = parseAppKeyFile(readFileSync(a.keyFile, 'utf8'), a.keyFile);
        apps.set(f.clientId, { clientId: f.clientId, appId: f.appId ?? zitadelId(), keyId: f.keyId, publicKey: createPublicKey(f.key) });
      } else {
        writeFileSync(a.keyFile, `${JSON.stringify(createAppKey(a.clientId), null, 2)}\n`, { mode: 0o600 });
      }
    }
  }

  /** Claims of a token this issuer made and still honours, else undefined. */
  async function activeClaims(token: string): Promise<Record<string, unknown> | undefined> {
    if (revoked.has(token)) return undefined;
    let claims = opaqueTokens.get(token);
    if (!claims) {
      try {
        const kid = decodeProtectedHeader(token).kid;
        const key = keys.find((k) => k.kid === kid && k.published);
        if (!key) return undefined;
        claims = (await jwtVerify(token, createPublicKey(key.privateKey), { issuer: url, algorithms: [key.alg] })).payload as Record<string, unknown>;
      } catch {
        return undefined;
      }
    }
    const now = Date.now() / 1000;
    if (typeof claims.exp === 'number' && claims.exp <= now) return undefined;
    if (typeof claims.nbf === 'number' && claims.nbf > now + 5) return undefined;
    return claims;
  }

  /** Client authentication for introspection: private_key_jwt for apps, or basic/post secrets of service users. */
  async function authenticateClient(req: IncomingMessage, form: URLSearchParams): Promise<string> {
    const assertion = form.get('client_assertion');
    if (assertion) {
      if (form.get('client_assertion_type') !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
        throw new HttpFailure('UNAUTHENTICATED', { error: 'invalid_client', error_description: 'unsupported client_assertion_type' });
      }
      let iss: unknown;
      try {
        iss = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')).iss;
      } catch {
        /* handled below */
      }
      const app = typeof iss === 'string' ? apps.get(iss) : undefined;
      if (!app) throw new HttpFailure('UNAUTHENTICATED', { error: 'invalid_client', error_description: 'unknown client' });
      try {
        const { payload } = await jwtVerify(assertion, app.publicKey, {
          issuer: app.clientId,
          subject: app.clientId,
          audience: url,
          algorithms: ['RS256'],
          maxTokenAge: '1h',
        });
        if (payload.exp === undefined) throw new Error('no exp');
      } catch {
        throw new HttpFailure('UNAUTHENTICATED', { error: 'invalid_client', error_description: 'client assertion invalid' });
      }
      return app.clientId;
    }
    const basic = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    let id = form.get('client_id') ?? undefined;
    let secret = form.get('client_secret') ?? undefined;
    if (basic) {
      const pair = Buffer.from(basic[1]!, 'base64').toString('utf8');
      const colon = pair.indexOf(':');
      try {
        id = decodeURIComponent(colon < 0 ? pair : pair.slice(0, colon));
        secret = colon < 0 ? undefined : decodeURIComponent(pair.slice(colon + 1));
      } catch {
        throw new HttpFailure('UNAUTHENTICATED', { error: 'invalid_client', error_description: 'malformed basic credentials' });
      }
    }
    const user = id !== undefined ? users.get(id) : undefined;
    if (!user || secret === undefined || !secretEquals(secret, user.clientSecret)) {
      throw new HttpFailure(
        'UNAUTHENTICATED',
        { error: 'invalid_client', error_description: 'client authentication failed' },
        { 'www-authenticate': 'Basic realm="dev-issuer"' },
      );
    }
    return user.clientId;
  }

  async function route(req: IncomingMessage, path: string, body: Buffer): Promise<{ status?: number; body: unknown }> {
    const method = req.method ?? 'GET';
    const form = () => new URLSearchParams(body.toString('utf8'));
    const json = (): Record<string, unknown> => {
      if (body.length === 0) return {};
      try {
        const v = JSON.parse(body.toString('utf8'));
        if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v;
      } catch {
        /* below */
      }
      throw new HttpFailure('INVALID_ARGUMENT', { error: 'invalid_request', error_description: 'expected a JSON object' });
    };
    if (method === 'GET' && path === '/.well-known/openid-configuration') {
      return {
        body: {
          issuer: url,
          authorization_endpoint: `${url}/oauth/v2/authorize`,
          token_endpoint: `${url}/oauth/v2/token`,
          introspection_endpoint: `${url}/oauth/v2/introspect`,
          revocation_endpoint: `${url}/oauth/v2/revoke`,
          jwks_uri: `${url}/oauth/v2/keys`,
          grant_types_supported: ['client_credentials'],
          token_endpoint_auth_methods_supported: ['client_secret_basic', 'client_secret_post'],
          introspection_endpoint_auth_methods_supported: ['private_key_jwt', 'client_secret_basic'],
          introspection_endpoint_auth_signing_alg_values_supported: ['RS256'],
          id_token_signing_alg_values_supported: ['RS256', 'ES256'],
          scopes_supported: ['openid', 'profile', 'urn:zitadel:iam:org:project:roles'],
          claims_supported: ['sub', 'aud', 'exp', 'iat', 'iss', 'nbf', 'client_id', ZITADEL_ROLES_CLAIM, ZITADEL_ORG_CLAIM],
        },
      };
    }
    if (method === 'GET' && path === '/oauth/v2/keys') {
      jwksRequests++;
      const f = fault;
      if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
      if (f.status) return { status: f.status, body: { error: 'unavailable' } };
      return { body: { keys: keys.filter((k) => k.published).map((k) => k.jwk) } };
    }
    if (method === 'POST' && path === '/oauth/v2/token') {
      const f = form();
      if (f.get('grant_type') !== 'client_credentials') throw new HttpFailure('INVALID_ARGUMENT', { error: 'unsupported_grant_type' });
      const clientId = await authenticateClient(req, f);
      const user = users.get(clientId);
      if (!user) throw new HttpFailure('UNAUTHENTICATED', { error: 'invalid_client' });
      const m: MintOptions = { subject: user.subject, roles: user.roles, clientId: user.clientId, ...(user.org ? { org: user.org } : {}) };
      const accessToken = user.opaque ? mintOpaque(m) : await mint(m);
      return { body: { access_token: accessToken, token_type: 'Bearer', expires_in: lifetime, scope: f.get('scope') ?? 'openid' } };
    }
    if (method === 'POST' && path === '/oauth/v2/introspect') {
      const f = form();
      const clientId = await authenticateClient(req, f);
      const token = f.get('token');
      if (!token) throw new HttpFailure('INVALID_ARGUMENT', { error: 'invalid_request', error_description: 'token is required' });
      const claims = await activeClaims(token);
      if (!claims) return { body: { active: false } };
      return { body: { active: true, token_type: 'Bearer', scope: 'openid urn:zitadel:iam:org:project:roles', introspected_by: clientId, ...claims } };
    }
    if (method === 'POST' && path === '/oauth/v2/revoke') {
      const f = form();
      await authenticateClient(req, f);
      const token = f.get('token');
      if (token) revoked.add(token);
      return { body: {} };
    }
    // Development controls.
    if (method === 'POST' && path === '/admin/rotate') {
      const b = json();
      return { body: { kid: rotate({ publish: b.publish !== false, alg: b.alg === 'ES256' ? 'ES256' : 'RS256' }) } };
    }
    if (method === 'POST' && path === '/admin/mint') {
      const b = json();
      const m: MintOptions = {};
      if (typeof b.subject === 'string') m.subject = b.subject;
      if (Array.isArray(b.roles)) m.roles = b.roles.filter((r): r is string => typeof r === 'string');
      if (typeof b.expiresIn === 'number') m.expiresIn = b.expiresIn;
      if (b.alg === 'ES256' || b.alg === 'RS256') m.alg = b.alg;
      if (typeof b.audience === 'string' || Array.isArray(b.audience)) m.audience = b.audience as string | string[];
      if (b.roleClaim === 'generic' || b.roleClaim === 'project' || b.roleClaim === 'both') m.roleClaim = b.roleClaim;
      return { body: { access_token: b.opaque === true ? mintOpaque(m) : await mint(m), token_type: 'Bearer' } };
    }
    if (method === 'POST' && path === '/admin/revoke') {
      const b = json();
      if (typeof b.token === 'string') revoked.add(b.token);
      return { body: {} };
    }
    if (method === 'POST' && path === '/admin/faults') {
      const b = json();
      fault = {
        ...(typeof b.jwksDelayMs === 'number' ? { delayMs: b.jwksDelayMs } : {}),
        ...(typeof b.jwksStatus === 'number' ? { status: b.jwksStatus } : {}),
      };
      return { body: fault };
    }
    throw new HttpFailure('NOT_FOUND', { error: 'not_found', error_description: `no endpoint ${method} ${path}` });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    let size = 0;
    let status = 200;
    let out: unknown;
    let headers: Record<string, string> = {};
    try {
      for await (const c of req) {
        size += (c as Buffer).length;
        if (size > 1 << 20) throw new HttpFailure('TOO_LARGE', { error: 'invalid_request', error_description: 'body too large' });
        chunks.push(c as Buffer);
      }
      const r = await route(req, new URL(req.url ?? '/', 'http://x').pathname, Buffer.concat(chunks));
      status = r.status ?? 200;
      out = r.body;
    } catch (err) {
      if (err instanceof HttpFailure) {
        status = err.status;
        out = err.body;
        headers = err.headers;
      } else {
        status = 500;
        out = { error: 'server_error', error_description: errorMessage(err) };
      }
    }
    if (res.destroyed) return;
    const payload = JSON.stringify(out);
    res.writeHead(status, {
      'content-type': 'application/json',
      'cache-control': 'no-store',
      'content-length': String(Buffer.byteLength(payload)),
      ...headers,
    });
    res.end(payload);
  }

  return {
    url,
    port,
    projectId: opts.projectId,
    orgId,
    mint,
    mintOpaque,
    rotate,
    publish(kid: string) {
      const k = keys.find((x) => x.kid === kid);
      if (!k) throw new Error(`publish: no key ${kid}`);
      k.published = true;
    },
    currentKid: (alg = 'RS256') => current(alg).kid,
    revoke: (token) => void revoked.add(token),
    createAppKey,
    setJwksFault(f: JwksFault) {
      fault = { ...f };
    },
    get jwksRequests() {
      return jwksRequests;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
