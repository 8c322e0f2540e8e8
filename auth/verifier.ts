// JWT verification: header checks (alg allow-list, kid), the signature with a key from the KeyStore
// (imported and checked against its alg by jose), then the pure claim checks. The signature itself is
// checked with node:crypto's synchronous verify on a KeyObject: jose's WebCrypto path costs an async
// hop per token and measured about 4x slower here (bench/auth: verify_per_s_* vs *_jose). Signature-verified payloads are remembered by the whole
// token (bounded, dropped at exp or when their key leaves the JWKS); claims are re-checked on every use.
import { compactVerify, decodeProtectedHeader, type JWK } from 'jose';
import { verify as cryptoVerify, KeyObject, constants as cryptoConstants } from 'node:crypto';
import { AuthError, type Identity } from './gate.js';
import { checkClaims, parseClaimsJson, type ClaimRules } from './claims.js';
import type { KeyStore } from './jwks.js';

/** Longest token accepted; Zitadel's access tokens are well under this. */
export const MAX_TOKEN_LENGTH = 16 * 1024;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const FORBIDDEN_ALGORITHMS = /^(none|HS\d+)$/i;

export function looksLikeJwt(token: string): boolean {
  return token.length <= MAX_TOKEN_LENGTH && JWT_SHAPE.test(token);
}

type SignatureCheck = (data: Buffer, signature: Buffer, key: KeyObject) => boolean;
const pkcs1 =
  (digest: string): SignatureCheck =>
  (data, sig, key) =>
    cryptoVerify(digest, data, key, sig);
const pss =
  (digest: string): SignatureCheck =>
  (data, sig, key) =>
    cryptoVerify(digest, data, { key, padding: cryptoConstants.RSA_PKCS1_PSS_PADDING, saltLength: cryptoConstants.RSA_PSS_SALTLEN_DIGEST }, sig);
// JWS ECDSA signatures are r||s of fixed length (RFC 7518 §3.4); a wrong length is a wrong signature.
const ecdsa =
  (digest: string, sigLength: number): SignatureCheck =>
  (data, sig, key) =>
    sig.length === sigLength && cryptoVerify(digest, data, { key, dsaEncoding: 'ieee-p1363' }, sig);
/** Algorithms checked with node:crypto; any other allowed algorithm goes through jose's compactVerify. */
const SIGNATURE_CHECKS: Record<string, SignatureCheck> = {
  RS256: pkcs1('sha256'),
  RS384: pkcs1('sha384'),
  RS512: pkcs1('sha512'),
  PS256: pss('sha256'),
  PS384: pss('sha384'),
  PS512: pss('sha512'),
  ES256: ecdsa('sha256', 64),
  ES384: ecdsa('sha384', 96),
  ES512: ecdsa('sha512', 132),
  EdDSA: (data, sig, key) => cryptoVerify(null, data, key, sig),
};

export interface VerifierOptions {
  rules: ClaimRules;
  algorithms: readonly string[];
  keys: KeyStore;
  /** Verified tokens remembered; 0 turns the cache off. */
  tokenCacheMax: number;
  now?: () => number;
  onCache?: (result: 'hit' | 'miss') => void;
}

interface CachedToken {
  claims: Record<string, unknown>;
  kid: string;
  /** The key object that verified it; the entry is void once another key is under the kid. */
  jwk: JWK;
  exp: number;
}

/** JWS header parameters this verifier implements as `crit` extensions (RFC 7515 §4.1.11): none. */
const UNDERSTOOD_CRITICAL: ReadonlySet<string> = new Set();

/**
 * RFC 7515 §4.1.11: `crit` lists header parameters the recipient must understand, else the JWS is
 * invalid. This verifier understands none (not even b64, which jose would accept by default and our
 * node:crypto path does not implement), so any `crit` is refused, as is a malformed one.
 */
function checkCritical(header: Record<string, unknown>): void {
  const crit = header.crit;
  if (crit === undefined) return;
  if (!Array.isArray(crit) || crit.length === 0 || !crit.every((c) => typeof c === 'string' && c.length > 0)) {
    throw new AuthError('INVALID_TOKEN', 'crit header: expected a non-empty array of header parameter names');
  }
  const unknown = crit.filter((c) => !UNDERSTOOD_CRITICAL.has(c as string));
  if (unknown.length > 0) {
    throw new AuthError('INVALID_TOKEN', `crit header names extensions this verifier does not implement: ${unknown.map((c) => JSON.stringify(c)).join(', ')}`);
  }
}

export class JwtVerifier {
  private readonly cache = new Map<string, CachedToken>();
  private readonly keyObjects = new WeakMap<CryptoKey, KeyObject>();
  private readonly now: () => number;

  constructor(private opts: VerifierOptions) {
    for (const alg of opts.algorithms) {
      if (FORBIDDEN_ALGORITHMS.test(alg)) throw new Error(`algorithm ${alg} is never allowed`);
    }
    this.now = opts.now ?? Date.now;
  }

  /** New claim rules (reload); cached signatures stay valid, claims are checked per use anyway. */
  setRules(rules: ClaimRules): void {
    this.opts = { ...this.opts, rules };
  }

  get keys(): KeyStore {
    return this.opts.keys;
  }

  async verify(token: string): Promise<Identity> {
    const nowSeconds = this.now() / 1000;
    const hit = this.opts.tokenCacheMax > 0 ? this.cache.get(token) : undefined;
    if (hit) {
      if (hit.exp > nowSeconds - this.opts.rules.clockSkewSeconds && this.opts.keys.currentKey(hit.kid) === hit.jwk) {
        this.opts.onCache?.('hit');
        return checkClaims(hit.claims, this.opts.rules, nowSeconds);
      }
      this.cache.delete(token);
    }
    this.opts.onCache?.('miss');
    if (!looksLikeJwt(token)) throw new AuthError('INVALID_TOKEN', 'token is not a compact JWS');
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(token);
    } catch {
      throw new AuthError('INVALID_TOKEN', 'token header is not valid base64url JSON');
    }
    const alg = header.alg;
    if (typeof alg !== 'string' || !this.opts.algorithms.includes(alg) || FORBIDDEN_ALGORITHMS.test(alg)) {
      throw new AuthError('INVALID_TOKEN', `algorithm ${JSON.stringify(alg ?? null)} is not allowed`);
    }
    if (header.kid !== undefined && typeof header.kid !== 'string') throw new AuthError('INVALID_TOKEN', 'kid: expected a string');
    checkCritical(header);
    const { id, jwk, key } = await this.opts.keys.keyFor(header.kid, alg);
    const payload = await this.verifySignature(token, alg, key);
    const claims = parseClaimsJson(payload);
    const identity = checkClaims(claims, this.opts.rules, this.now() / 1000);
    this.remember(token, { claims, kid: id, jwk, exp: identity.expiresAt });
    return identity;
  }

  /** Checks the signature and returns the payload bytes; the key was imported for exactly this alg. */
  private async verifySignature(token: string, alg: string, key: CryptoKey): Promise<Uint8Array> {
    const check = SIGNATURE_CHECKS[alg];
    if (!check) {
      try {
        return (await compactVerify(token, key, { algorithms: [alg], crit: {} })).payload;
      } catch {
        throw new AuthError('INVALID_TOKEN', 'signature verification failed');
      }
    }
    let keyObject = this.keyObjects.get(key);
    if (!keyObject) {
      keyObject = KeyObject.from(key);
      this.keyObjects.set(key, keyObject);
    }
    const firstDot = token.indexOf('.');
    const lastDot = token.lastIndexOf('.');
    let ok = false;
    try {
      ok = check(Buffer.from(token.slice(0, lastDot), 'latin1'), Buffer.from(token.slice(lastDot + 1), 'base64url'), keyObject);
    } catch {
      ok = false; // a key of the wrong type for the algorithm, a malformed DER
    }
    if (!ok) throw new AuthError('INVALID_TOKEN', 'signature verification failed');
    return Buffer.from(token.slice(firstDot + 1, lastDot), 'base64url');
  }

  private remember(token: string, entry: CachedToken): void {
    if (this.opts.tokenCacheMax <= 0) return;
    this.cache.set(token, entry);
    if (this.cache.size > this.opts.tokenCacheMax) {
      // Oldest inserted first out: a bound on memory, not a recency policy.
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
  }

  get cachedTokens(): number {
    return this.cache.size;
  }
}
