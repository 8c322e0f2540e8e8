// The registration API on the agent's HTTP listener. User routes authenticate with the user's
// Zitadel token through the auth gate (session kind `wireguard-register`); operator routes use the
// admin credential like every other /v1/ route.
import { CbrError, HttpError, httpStatusFor, type AdminRequest, type AdminResponse } from '../../dataplane/index.js';
import { AuthError, type AuthGate, type Identity } from '../../auth/index.js';
import { isBase64Key } from './uapi.js';
import type { PeerRegistrar } from './registrar.js';
import { clientConfig } from './client-config.js';
import type { PeerRecord as Lease } from '../../registry/index.js';

export type RegistrationResult = 'created' | 'renewed' | 'bad_request' | 'unauthorized' | 'forbidden' | 'rate_limited' | 'unavailable' | 'conflict' | 'error';

export interface ApiDeps {
  registrar: PeerRegistrar;
  /** Looked up per request: the auth subsystem may start after routes are added. */
  gate: () => AuthGate;
  onRegistration: (result: RegistrationResult) => void;
}

const BODY_FIELDS = new Set(['publicKey', 'interface']);

/** Validates a registration body; throws a 400 naming the field. */
export function parseRegistrationBody(body: unknown): { publicKey: string; interface?: string } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new HttpError(400, 'body: expected a JSON object like {"publicKey": "<base64>"}');
  const o = body as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!BODY_FIELDS.has(k)) throw new HttpError(400, `body.${k}: unknown field (expected publicKey and optionally interface)`);
  if (o.publicKey === undefined) throw new HttpError(400, 'publicKey: required');
  if (typeof o.publicKey !== 'string' || !isBase64Key(o.publicKey)) {
    throw new HttpError(400, 'publicKey: expected a base64 WireGuard public key (44 characters, as `wg pubkey` prints)');
  }
  if (o.interface !== undefined && (typeof o.interface !== 'string' || o.interface.length === 0))
    throw new HttpError(400, 'interface: expected an interface name');
  return { publicKey: o.publicKey, ...(o.interface !== undefined ? { interface: o.interface as string } : {}) };
}

function bearer(req: AdminRequest): string {
  const h = req.headers.authorization;
  const m = typeof h === 'string' ? /^Bearer\s+(\S+)\s*$/i.exec(h) : null;
  if (!m)
    throw new HttpError(
      401,
      'missing bearer token: send Authorization: Bearer <Zitadel access token>',
      { 'www-authenticate': 'Bearer realm="cbr-wireguard"' },
      'INVALID_TOKEN',
    );
  return m[1]!;
}

async function authenticate(deps: ApiDeps, req: AdminRequest): Promise<Identity> {
  const token = bearer(req);
  let gate: AuthGate;
  try {
    gate = deps.gate();
  } catch {
    throw new HttpError(503, 'token verification is not available (the auth subsystem is not running)', {}, 'ISSUER_UNAVAILABLE');
  }
  try {
    return await gate.authorize(token, 'wireguard-register', req.remoteAddress);
  } catch (err) {
    if (err instanceof AuthError) {
      const headers: Record<string, string> = {};
      if (err.status === 401) headers['www-authenticate'] = `Bearer realm="cbr-wireguard", error="invalid_token"`;
      if (err.status === 429 && err.retryAfterSeconds !== undefined) headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterSeconds)));
      throw new HttpError(err.status, err.message, headers, err.code);
    }
    throw err;
  }
}

function resultFor(status: number): RegistrationResult {
  if (status === 400 || status === 413) return 'bad_request';
  if (status === 401) return 'unauthorized';
  if (status === 403) return 'forbidden';
  if (status === 429) return 'rate_limited';
  if (status === 503) return 'unavailable';
  if (status === 409) return 'conflict';
  return 'error';
}

/** Seconds a client should wait before retrying while the registry database is away. */
export const REGISTRY_RETRY_AFTER_S = 5;

/** Runs a registry operation; its CbrError becomes the HTTP answer (503 with Retry-After while the database is away). */
async function registryCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!(err instanceof CbrError)) throw err;
    const status = httpStatusFor(err);
    throw new HttpError(status, err.message, status === 503 || status === 429 ? { 'retry-after': String(REGISTRY_RETRY_AFTER_S) } : {}, err.code);
  }
}

export function peerView(deps: ApiDeps, lease: Lease) {
  const iface = deps.registrar.iface(lease.iface);
  if (!iface)
    return {
      publicKey: lease.publicKey,
      interface: lease.iface,
      addresses: { ipv4: lease.ipv4, ipv6: lease.ipv6 },
      expiresAt: new Date(lease.expiresAt).toISOString(),
    };
  return clientConfig(lease, iface.config, iface.publicKey);
}

export function registerHandler(deps: ApiDeps) {
  return async (req: AdminRequest): Promise<AdminResponse> => {
    try {
      const identity = await authenticate(deps, req);
      const body = parseRegistrationBody(await req.json());
      const out = await registryCall(() => deps.registrar.register(identity, body.publicKey, body.interface, req.remoteAddress));
      deps.onRegistration(out.created ? 'created' : 'renewed');
      const view = peerView(deps, out.lease);
      const wantsText = /\btext\/plain\b/.test(String(req.headers.accept ?? '')) && !/application\/json/.test(String(req.headers.accept ?? ''));
      if (wantsText && 'wgQuick' in view)
        return { status: out.created ? 201 : 200, body: view.wgQuick, headers: { 'content-type': 'text/plain; charset=utf-8' } };
      return { status: out.created ? 201 : 200, body: view };
    } catch (err) {
      deps.onRegistration(err instanceof HttpError ? resultFor(err.status) : 'error');
      throw err;
    }
  };
}

export function myPeersHandler(deps: ApiDeps) {
  return async (req: AdminRequest): Promise<AdminResponse> => {
    const identity = await authenticate(deps, req);
    const peers = await registryCall(() => deps.registrar.leasesOf(identity.subject));
    return { body: { subject: identity.subject, peers: peers.map((l) => peerView(deps, l)) } };
  };
}

function keyParam(req: AdminRequest): string {
  const key = req.params.publicKey ?? '';
  if (!isBase64Key(key)) throw new HttpError(400, 'publicKey: expected a base64 WireGuard public key in the path (URL-encoded)');
  return key;
}

export function deleteMyPeerHandler(deps: ApiDeps) {
  return async (req: AdminRequest): Promise<AdminResponse> => {
    const identity = await authenticate(deps, req);
    const key = keyParam(req);
    // Another subject's key answers like an unknown one: no hint that it exists.
    if (!(await registryCall(() => deps.registrar.revoke(key, identity.subject)))) throw new HttpError(404, 'publicKey: no such peer registered by you');
    return { body: { removed: key } };
  };
}

export function adminRevokeHandler(deps: ApiDeps) {
  return async (req: AdminRequest): Promise<AdminResponse> => {
    const key = keyParam(req);
    if (!(await registryCall(() => deps.registrar.revoke(key)))) throw new HttpError(404, 'publicKey: no such peer');
    return { body: { removed: key } };
  };
}
