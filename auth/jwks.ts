// The issuer's signing keys, managed here rather than by jose's createRemoteJWKSet so that a slow or
// unreachable JWKS endpoint never holds up a token whose key is already cached: lookups that the
// cache answers are synchronous map reads; only an unknown kid waits for a (rate-limited) refetch.
import { importJWK, type JWK } from 'jose';
import { KeyObject } from 'node:crypto';
import { CbrError, errorMessage } from '../dataplane/index.js';
import { AuthError } from './gate.js';
import { insecureUrlProblem } from './config.js';

/** The parts of an OpenID discovery document the gate uses. */
export interface DiscoveryDocument {
  issuer: string;
  jwks_uri: string;
  introspection_endpoint?: string;
  token_endpoint?: string;
}

export interface KeyStoreOptions {
  issuer: string;
  /** JWKS URL; when absent it comes from <issuer>/.well-known/openid-configuration. */
  jwksUri?: string;
  algorithms: readonly string[];
  refreshIntervalMs: number;
  unknownKidRefetchIntervalMs: number;
  maxAgeMs: number;
  fetchTimeoutMs: number;
  /** Largest discovery or JWKS answer read (streamed; a longer one fails the fetch). */
  maxBytes?: number;
  /** Accept http:// discovery and JWKS URLs on hosts other than loopback. */
  allowInsecure?: boolean;
  /** Called after every JWKS fetch attempt (metrics, logs). */
  onFetch?: (result: 'ok' | 'error', detail: { keys: number; error?: string; durationMs: number }) => void;
  now?: () => number;
}

export interface KeyStoreStatus {
  /** True while the cached keys may be used (fetched, and the last success is younger than maxAge). */
  usable: boolean;
  keys: number;
  lastSuccessAt?: number;
  lastAttemptAt?: number;
  lastError?: string;
  jwksUri?: string;
}

/** Default cap on a fetched document (auth.jwks.maxBytes). */
export const MAX_DOCUMENT_BYTES = 1 << 20;
const PUBLIC_MEMBERS: Record<string, readonly string[]> = { RSA: ['kty', 'n', 'e'], EC: ['kty', 'crv', 'x', 'y'], OKP: ['kty', 'crv', 'x'] };

/** The key type (and curve) each allowed algorithm needs. */
function keyFitsAlgorithm(jwk: JWK, alg: string): boolean {
  if (jwk.alg !== undefined && jwk.alg !== alg) return false;
  if (/^(RS|PS)\d{3}$/.test(alg)) return jwk.kty === 'RSA';
  if (alg === 'ES256') return jwk.kty === 'EC' && jwk.crv === 'P-256';
  if (alg === 'ES384') return jwk.kty === 'EC' && jwk.crv === 'P-384';
  if (alg === 'ES512') return jwk.kty === 'EC' && jwk.crv === 'P-521';
  if (alg === 'EdDSA') return jwk.kty === 'OKP' && (jwk.crv === 'Ed25519' || jwk.crv === 'Ed448');
  return false;
}

/**
 * Reads a response body up to `maxBytes`, cancelling the stream as soon as it goes past (so a huge or
 * endless answer costs at most maxBytes of memory and stops at once). Throws ISSUER_UNAVAILABLE.
 */
async function readCapped(res: Response, url: string, maxBytes: number): Promise<string> {
  const tooLarge = () => new CbrError('ISSUER_UNAVAILABLE', `${url}: answer larger than ${maxBytes} bytes`);
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes) {
    await res.body?.cancel().catch(() => undefined); // the fetch has failed already; a cancel error adds nothing
    throw tooLarge();
  }
  if (!res.body) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel().catch(() => undefined); // as above
        throw tooLarge();
      }
      chunks.push(value);
    }
  } catch (err) {
    if (err instanceof CbrError) throw err;
    throw new CbrError('ISSUER_UNAVAILABLE', `${url}: reading the answer failed: ${errorMessage(err)}`, { cause: err });
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Fetches a JSON document with a time limit and a size limit (streamed); throws ISSUER_UNAVAILABLE with a short reason. */
export async function fetchJson(url: string, timeoutMs: number, init: RequestInit = {}, maxBytes = MAX_DOCUMENT_BYTES): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs), redirect: 'error' });
  } catch (err) {
    const cause = (err as { cause?: unknown } | null)?.cause;
    throw new CbrError(
      'ISSUER_UNAVAILABLE',
      (err as { name?: unknown } | null)?.name === 'TimeoutError'
        ? `${url}: no answer within ${timeoutMs} ms`
        : `${url}: ${errorMessage(err)}${cause ? ` (${errorMessage(cause)})` : ''}`,
      { cause: err },
    );
  }
  const text = await readCapped(res, url, maxBytes);
  if (!res.ok) throw new HttpStatusError(res.status, `${url}: HTTP ${res.status}`, text.slice(0, 500));
  try {
    return JSON.parse(text);
  } catch {
    throw new CbrError('ISSUER_UNAVAILABLE', `${url}: answer is not JSON`);
  }
}

/** The issuer answered with a non-2xx status (kept with the start of its body for the caller). */
export class HttpStatusError extends CbrError {
  constructor(
    readonly status: number,
    message: string,
    readonly body: string,
  ) {
    super('ISSUER_UNAVAILABLE', message);
  }
}

/** Fetches and checks <issuer>/.well-known/openid-configuration (its issuer must match exactly). */
export async function discover(issuer: string, timeoutMs: number, maxBytes = MAX_DOCUMENT_BYTES): Promise<DiscoveryDocument> {
  const url = `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  const doc = await fetchJson(url, timeoutMs, {}, maxBytes);
  if (typeof doc !== 'object' || doc === null) throw new CbrError('ISSUER_UNAVAILABLE', `${url}: not a JSON object`);
  const d = doc as Record<string, unknown>;
  if (d.issuer !== issuer) throw new CbrError('ISSUER_UNAVAILABLE', `${url}: issuer is ${JSON.stringify(d.issuer)}, expected ${JSON.stringify(issuer)}`);
  if (typeof d.jwks_uri !== 'string') throw new CbrError('ISSUER_UNAVAILABLE', `${url}: no jwks_uri`);
  const out: DiscoveryDocument = { issuer, jwks_uri: d.jwks_uri };
  if (typeof d.introspection_endpoint === 'string') out.introspection_endpoint = d.introspection_endpoint;
  if (typeof d.token_endpoint === 'string') out.token_endpoint = d.token_endpoint;
  return out;
}

/** Keeps the usable public signature keys of a JWKS document, keyed by kid ('' for a key without one). */
export function parseJwks(doc: unknown, algorithms: readonly string[]): Map<string, JWK> {
  if (typeof doc !== 'object' || doc === null || !Array.isArray((doc as { keys?: unknown }).keys)) {
    throw new CbrError('ISSUER_UNAVAILABLE', 'JWKS: expected an object with a keys array');
  }
  const keys = new Map<string, JWK>();
  for (const raw of (doc as { keys: unknown[] }).keys) {
    if (typeof raw !== 'object' || raw === null) continue;
    const jwk = raw as JWK;
    const members = typeof jwk.kty === 'string' ? PUBLIC_MEMBERS[jwk.kty] : undefined;
    // Symmetric (oct) keys and unknown key types are never used: no HMAC key made of public material.
    if (!members) continue;
    if (jwk.use !== undefined && jwk.use !== 'sig') continue;
    if (jwk.kid !== undefined && typeof jwk.kid !== 'string') continue;
    if (!algorithms.some((alg) => keyFitsAlgorithm(jwk, alg))) continue;
    const pub: JWK = {};
    for (const m of members) {
      const v = (jwk as Record<string, unknown>)[m];
      if (typeof v !== 'string') break;
      (pub as Record<string, unknown>)[m] = v;
    }
    if (Object.keys(pub).length !== members.length) continue;
    if (jwk.alg !== undefined) pub.alg = jwk.alg;
    keys.set(jwk.kid ?? '', pub);
  }
  return keys;
}

/** A usable key imported for one algorithm: the CryptoKey for jose, the KeyObject for node:crypto. */
export interface VerificationKey {
  id: string;
  jwk: JWK;
  key: CryptoKey;
  keyObject: KeyObject;
}

export class KeyStore {
  private keys = new Map<string, JWK>();
  /** Imported keys by kid, then by algorithm. */
  private readonly imported = new Map<string, Map<string, VerificationKey>>();
  private lastSuccessAt?: number;
  private lastAttemptAt?: number;
  private lastError?: string;
  private lastAttemptFailed = false;
  private inflight?: Promise<void>;
  private timer?: NodeJS.Timeout;
  private discovery?: DiscoveryDocument;
  private readonly now: () => number;

  constructor(private readonly opts: KeyStoreOptions) {
    this.now = opts.now ?? Date.now;
  }

  /** Fetches the key set once (failures are recorded, not thrown) and starts the periodic refresh. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), Math.max(1000, this.opts.refreshIntervalMs));
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get discovered(): DiscoveryDocument | undefined {
    return this.discovery;
  }

  /** Discovery document (fetched if not yet known); used by introspection for its endpoint. */
  async discoveryDocument(): Promise<DiscoveryDocument> {
    this.discovery ??= await discover(this.opts.issuer, this.opts.fetchTimeoutMs, this.opts.maxBytes);
    return this.discovery;
  }

  status(): KeyStoreStatus {
    const s: KeyStoreStatus = { usable: this.usable(), keys: this.keys.size };
    if (this.lastSuccessAt !== undefined) s.lastSuccessAt = this.lastSuccessAt;
    if (this.lastAttemptAt !== undefined) s.lastAttemptAt = this.lastAttemptAt;
    if (this.lastError !== undefined) s.lastError = this.lastError;
    const uri = this.opts.jwksUri ?? this.discovery?.jwks_uri;
    if (uri !== undefined) s.jwksUri = uri;
    return s;
  }

  private usable(): boolean {
    return this.lastSuccessAt !== undefined && this.now() - this.lastSuccessAt <= this.opts.maxAgeMs;
  }

  /**
   * The key now under `kid` while the set is usable. The object stays the same across refreshes while
   * the key material does not change, so a cache can compare it by identity: a token verified with a
   * key that was since replaced under the same kid is not answered from the cache.
   */
  currentKey(kid: string): JWK | undefined {
    return this.usable() ? this.keys.get(kid) : undefined;
  }

  /** One fetch at a time; concurrent callers share it. Never throws. */
  refresh(): Promise<void> {
    this.inflight ??= this.fetchKeys().finally(() => (this.inflight = undefined));
    return this.inflight;
  }

  private async fetchKeys(): Promise<void> {
    const started = this.now();
    this.lastAttemptAt = started;
    try {
      const uri = this.opts.jwksUri ?? (await this.discoveryDocument()).jwks_uri;
      const insecure = insecureUrlProblem(uri, this.opts.allowInsecure === true);
      if (insecure) throw new CbrError('ISSUER_UNAVAILABLE', `jwks_uri ${insecure}`);
      const keys = parseJwks(await fetchJson(uri, this.opts.fetchTimeoutMs, {}, this.opts.maxBytes), this.opts.algorithms);
      for (const [kid, jwk] of keys) {
        // Unchanged keys keep their object (see currentKey); changed ones lose their imported CryptoKey.
        const old = this.keys.get(kid);
        if (old && JSON.stringify(old) === JSON.stringify(jwk)) keys.set(kid, old);
      }
      for (const kid of this.imported.keys()) {
        if (keys.get(kid) !== this.keys.get(kid)) this.imported.delete(kid);
      }
      this.keys = keys;
      this.lastSuccessAt = this.now();
      this.lastAttemptFailed = false;
      this.lastError = undefined;
      this.opts.onFetch?.('ok', { keys: keys.size, durationMs: this.now() - started });
    } catch (err) {
      this.lastAttemptFailed = true;
      this.lastError = errorMessage(err);
      this.opts.onFetch?.('error', { keys: this.keys.size, error: this.lastError, durationMs: this.now() - started });
    }
  }

  /**
   * keyFor's answer when it needs no I/O and no import (the usual case, answered without an async
   * hop); undefined when keyFor must be awaited. Throws what keyFor throws for a kid that does not fit.
   */
  cachedKeyFor(kid: string | undefined, alg: string): VerificationKey | undefined {
    if (!this.usable()) return undefined;
    const found = this.lookup(kid, alg);
    this.refreshIfDue();
    return found ? this.imported.get(found.id)?.get(alg) : undefined;
  }

  /**
   * The key for a token's header. Cached keys answer at once (a refresh that is due runs in the
   * background); an unknown kid waits for a refetch, at most one per unknownKidRefetchInterval.
   */
  async keyFor(kid: string | undefined, alg: string): Promise<VerificationKey> {
    if (this.usable()) {
      const found = this.lookup(kid, alg);
      this.refreshIfDue();
      if (found) return this.importKey(found.id, found.jwk, alg);
    }
    const since = this.lastAttemptAt === undefined ? Infinity : this.now() - this.lastAttemptAt;
    if (this.inflight) await this.inflight;
    else if (since >= this.opts.unknownKidRefetchIntervalMs) await this.refresh();
    if (!this.usable()) {
      throw new AuthError('ISSUER_UNAVAILABLE', `signing keys unavailable: ${this.lastError ?? 'not fetched yet'}`);
    }
    const found = this.lookup(kid, alg);
    if (found) return this.importKey(found.id, found.jwk, alg);
    if (this.lastAttemptFailed)
      throw new AuthError('ISSUER_UNAVAILABLE', `unknown key ${kid ?? '(no kid)'} and the issuer's JWKS is unreachable: ${this.lastError}`);
    throw new AuthError(
      'INVALID_TOKEN',
      kid === undefined ? `token has no kid and no single ${alg} key matches` : `unknown signing key ${JSON.stringify(kid)}`,
    );
  }

  private refreshIfDue(): void {
    if (this.lastSuccessAt !== undefined && this.now() - this.lastSuccessAt > this.opts.refreshIntervalMs) void this.refresh();
  }

  private lookup(kid: string | undefined, alg: string): { id: string; jwk: JWK } | undefined {
    if (kid !== undefined) {
      const jwk = this.keys.get(kid);
      if (!jwk) return undefined;
      if (!keyFitsAlgorithm(jwk, alg)) throw new AuthError('INVALID_TOKEN', `key ${JSON.stringify(kid)} does not fit algorithm ${alg}`);
      return { id: kid, jwk };
    }
    // No kid: accepted only when exactly one key can verify this algorithm.
    const candidates = [...this.keys.entries()].filter(([, jwk]) => keyFitsAlgorithm(jwk, alg));
    return candidates.length === 1 ? { id: candidates[0]![0], jwk: candidates[0]![1] } : undefined;
  }

  private async importKey(id: string, jwk: JWK, alg: string): Promise<VerificationKey> {
    const hit = this.imported.get(id)?.get(alg);
    if (hit) return hit;
    let key: CryptoKey;
    try {
      key = (await importJWK(jwk, alg)) as CryptoKey;
    } catch (err) {
      throw new AuthError('INVALID_TOKEN', `key ${JSON.stringify(id)} cannot be used with ${alg}: ${errorMessage(err)}`, undefined, { cause: err });
    }
    // A refresh during the import may have replaced the key under this kid; keep only the current one.
    const entry: VerificationKey = { id, jwk, key, keyObject: KeyObject.from(key) };
    if (this.keys.get(id) === jwk) {
      const byAlg = this.imported.get(id) ?? new Map<string, VerificationKey>();
      byAlg.set(alg, entry);
      this.imported.set(id, byAlg);
    }
    return entry;
  }
}
