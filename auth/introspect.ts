// Token introspection (RFC 7662) the way Zitadel expects it from an API application: the client
// authenticates with private_key_jwt, an RS256 assertion signed with the key from the application's
// key file. Active answers are cached briefly; inactive ones are not, so a revocation shows at once.
import { createPrivateKey, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { errorMessage, readSecretFile } from '../dataplane/index.js';
import { AuthError } from './gate.js';
import { fetchJson, HttpStatusError } from './jwks.js';

/** A Zitadel application key file (downloaded from the console or the management API). */
export interface AppKeyFile {
  type: string;
  keyId: string;
  key: string;
  clientId: string;
  appId?: string;
}

/** Parses and checks an application key file; errors name the file and the field. */
export function parseAppKeyFile(text: string, where: string): AppKeyFile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new Error(`${where}: not JSON`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new Error(`${where}: expected a JSON object`);
  const d = doc as Record<string, unknown>;
  for (const f of ['type', 'keyId', 'key', 'clientId'] as const) {
    if (typeof d[f] !== 'string' || (d[f] as string).length === 0) throw new Error(`${where}: ${f}: expected a non-empty string`);
  }
  if (d.appId !== undefined && typeof d.appId !== 'string') throw new Error(`${where}: appId: expected a string`);
  const out: AppKeyFile = { type: d.type as string, keyId: d.keyId as string, key: d.key as string, clientId: d.clientId as string };
  if (typeof d.appId === 'string') out.appId = d.appId;
  return out;
}

export function loadAppKeyFile(path: string, field: string): { file: AppKeyFile; key: KeyObject } {
  const text = readSecretFile(path, field);
  const file = parseAppKeyFile(text, `${field} (${path})`);
  let key: KeyObject;
  try {
    key = createPrivateKey(file.key);
  } catch {
    throw new Error(`${field} (${path}): key: expected a PEM private key`);
  }
  if (key.asymmetricKeyType !== 'rsa') throw new Error(`${field} (${path}): key: expected an RSA private key`);
  return { file, key };
}

export interface IntrospectorOptions {
  issuer: string;
  /** The introspection URL (resolved lazily, e.g. from discovery). */
  endpoint: () => Promise<string>;
  keyFile: AppKeyFile;
  privateKey: KeyObject;
  cacheTtlMs: number;
  timeoutMs: number;
  maxCached?: number;
  now?: () => number;
  onResult?: (result: 'active' | 'inactive' | 'cached' | 'error') => void;
}

export class Introspector {
  private readonly cache = new Map<string, { claims: Record<string, unknown>; until: number }>();
  private readonly now: () => number;

  constructor(private readonly opts: IntrospectorOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** private_key_jwt client assertion: iss = sub = clientId, aud = the issuer, one minute of life. */
  async clientAssertion(): Promise<string> {
    const nowS = Math.floor(this.now() / 1000);
    return new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: this.opts.keyFile.keyId })
      .setIssuer(this.opts.keyFile.clientId)
      .setSubject(this.opts.keyFile.clientId)
      .setAudience(this.opts.issuer)
      .setIssuedAt(nowS)
      .setExpirationTime(nowS + 60)
      .setJti(randomUUID())
      .sign(this.opts.privateKey);
  }

  /** Returns the claims of an active token; INVALID_TOKEN when inactive, ISSUER_UNAVAILABLE when it cannot ask. */
  async introspect(token: string): Promise<Record<string, unknown>> {
    const now = this.now();
    const hit = this.cache.get(token);
    if (hit && hit.until > now) {
      this.opts.onResult?.('cached');
      return hit.claims;
    }
    if (hit) this.cache.delete(token);
    let answer: unknown;
    try {
      const endpoint = await this.opts.endpoint();
      const body = new URLSearchParams({
        client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
        client_assertion: await this.clientAssertion(),
        token,
      });
      answer = await fetchJson(endpoint, this.opts.timeoutMs, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body,
      });
    } catch (err) {
      this.opts.onResult?.('error');
      if (err instanceof HttpStatusError && (err.status === 401 || err.status === 403 || /invalid_client/.test(err.body))) {
        throw new AuthError(
          'ISSUER_UNAVAILABLE',
          `introspection: the issuer rejected our client authentication (check introspection.keyFile): HTTP ${err.status}`,
        );
      }
      throw new AuthError('ISSUER_UNAVAILABLE', `introspection failed: ${errorMessage(err)}`);
    }
    if (typeof answer !== 'object' || answer === null || Array.isArray(answer) || typeof (answer as { active?: unknown }).active !== 'boolean') {
      this.opts.onResult?.('error');
      throw new AuthError('ISSUER_UNAVAILABLE', 'introspection: answer has no boolean active field');
    }
    const claims = answer as Record<string, unknown>;
    if (claims.active !== true) {
      this.opts.onResult?.('inactive');
      throw new AuthError('INVALID_TOKEN', 'token is not active (revoked, expired or unknown to the issuer)');
    }
    this.opts.onResult?.('active');
    const exp = typeof claims.exp === 'number' ? claims.exp * 1000 : Infinity;
    const until = Math.min(now + this.opts.cacheTtlMs, exp);
    if (this.opts.cacheTtlMs > 0 && until > now) {
      this.cache.set(token, { claims, until });
      if (this.cache.size > (this.opts.maxCached ?? 10000)) {
        const oldest = this.cache.keys().next().value;
        if (oldest !== undefined) this.cache.delete(oldest);
      }
    }
    return claims;
  }
}
