// JWT verification: header checks (alg allow-list, kid), the signature with a key from the KeyStore
// (imported and checked against its alg by jose), then the pure claim checks. The signature itself is
// checked with node:crypto's synchronous verify on a KeyObject: jose's WebCrypto path costs an async
// hop per token and measured about 4x slower here (bench/auth: verify_per_s_* vs *_jose). Signature-verified payloads are remembered by the whole
// token (bounded, dropped at exp or when their key leaves the JWKS); claims are re-checked on every use.
// Per token the gate's own work is kept near the signature's (issue 13): one shape check, headers
// checked once per distinct segment, the key answered without an async hop, no Buffers made per token.
import { compactVerify, type JWK } from 'jose';
import { verify as cryptoVerify, type KeyObject, constants as cryptoConstants } from 'node:crypto';
import { AuthError, type Identity } from './gate.js';
import { checkClaims, parseClaimsJson, type ClaimRules } from './claims.js';
import type { KeyStore } from './jwks.js';

/** Longest token accepted; Zitadel's access tokens are well under this. */
export const MAX_TOKEN_LENGTH = 16 * 1024;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;
const FORBIDDEN_ALGORITHMS = /^(none|HS\d+)$/i;

/** A token of compact JWS shape with the offsets of its two dots; only `compactJws` makes one. */
export interface CompactJws {
  readonly token: string;
  readonly firstDot: number;
  readonly lastDot: number;
}

/** The token split at its dots when it has the shape of a compact JWS (checked once per token), else undefined. */
export function compactJws(token: string): CompactJws | undefined {
  if (token.length > MAX_TOKEN_LENGTH || !JWT_SHAPE.test(token)) return undefined;
  const firstDot = token.indexOf('.');
  return { token, firstDot, lastDot: token.indexOf('.', firstDot + 1) };
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

/** The protected-header fields the verifier uses, after its checks. */
interface JwsHeader {
  alg: string;
  kid: string | undefined;
}

/** Distinct checked headers remembered (there is one per signing key and algorithm). */
const HEADER_CACHE_MAX = 64;

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

function checkHeader(segment: string, algorithms: readonly string[]): JwsHeader {
  let header: unknown;
  try {
    // Unpadded base64url never leaves one character over; Buffer would silently drop it.
    if (segment.length % 4 === 1) throw new Error('bad length');
    header = JSON.parse(Buffer.from(segment, 'base64url').toString('utf8'));
  } catch {
    throw new AuthError('INVALID_TOKEN', 'token header is not valid base64url JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw new AuthError('INVALID_TOKEN', 'token header is not valid base64url JSON');
  const { alg, kid } = header as Record<string, unknown>;
  if (typeof alg !== 'string' || !algorithms.includes(alg) || FORBIDDEN_ALGORITHMS.test(alg)) {
    throw new AuthError('INVALID_TOKEN', `algorithm ${JSON.stringify(alg ?? null)} is not allowed`);
  }
  if (kid !== undefined && typeof kid !== 'string') throw new AuthError('INVALID_TOKEN', 'kid: expected a string');
  checkCritical(header as Record<string, unknown>);
  return { alg, kid };
}

/** Checks the signature with node:crypto and returns the payload's JSON text. */
/**
 * Checks the signature with node:crypto and returns the payload's JSON text. The bytes go through
 * `scratch` (2 × MAX_TOKEN_LENGTH; the check is synchronous) rather than new Buffers per token.
 */
function checkSignature(jws: CompactJws, check: SignatureCheck, key: KeyObject, scratch: Buffer): string {
  const { token, firstDot, lastDot } = jws;
  const data = scratch.subarray(0, scratch.write(token, 0, lastDot, 'latin1'));
  const sigEnd = MAX_TOKEN_LENGTH + scratch.write(token.slice(lastDot + 1), MAX_TOKEN_LENGTH, 'base64url');
  let ok = false;
  try {
    ok = check(data, scratch.subarray(MAX_TOKEN_LENGTH, sigEnd), key);
  } catch {
    ok = false; // a key of the wrong type for the algorithm, a malformed DER
  }
  if (!ok) throw new AuthError('INVALID_TOKEN', 'signature verification failed');
  return scratch.toString('utf8', 0, scratch.write(token.slice(firstDot + 1, lastDot), 0, 'base64url'));
}

/** Algorithms without a node:crypto check go through jose (the key was imported for exactly this alg). */
async function joseSignature(token: string, alg: string, key: CryptoKey): Promise<Uint8Array> {
  try {
    return (await compactVerify(token, key, { algorithms: [alg], crit: {} })).payload;
  } catch {
    throw new AuthError('INVALID_TOKEN', 'signature verification failed');
  }
}

export class JwtVerifier {
  private readonly cache = new Map<string, CachedToken>();
  private readonly headers = new Map<string, JwsHeader>();
  private readonly scratch = Buffer.allocUnsafe(2 * MAX_TOKEN_LENGTH);
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

  /** Verifies a token (a string, or one `compactJws` already split) into an identity; throws AuthError. */
  async verify(token: string | CompactJws): Promise<Identity> {
    const text = typeof token === 'string' ? token : token.token;
    const nowSeconds = this.now() / 1000;
    if (this.opts.tokenCacheMax > 0) {
      const hit = this.cache.get(text);
      if (hit) {
        if (hit.exp > nowSeconds - this.opts.rules.clockSkewSeconds && this.opts.keys.currentKey(hit.kid) === hit.jwk) {
          this.opts.onCache?.('hit');
          return checkClaims(hit.claims, this.opts.rules, nowSeconds);
        }
        this.cache.delete(text);
      }
      this.opts.onCache?.('miss');
    }
    const jws = typeof token === 'string' ? compactJws(token) : token;
    if (!jws) throw new AuthError('INVALID_TOKEN', 'token is not a compact JWS');
    const { alg, kid } = this.header(text.slice(0, jws.firstDot));
    const key = this.opts.keys.cachedKeyFor(kid, alg) ?? (await this.opts.keys.keyFor(kid, alg));
    const check = SIGNATURE_CHECKS[alg];
    const payload = check ? checkSignature(jws, check, key.keyObject, this.scratch) : await joseSignature(text, alg, key.key);
    const claims = parseClaimsJson(payload);
    const identity = checkClaims(claims, this.opts.rules, nowSeconds);
    this.remember(text, { claims, kid: key.id, jwk: key.jwk, exp: identity.expiresAt });
    return identity;
  }

  /** The checked header of a header segment; the checks depend on nothing but the segment and the algorithm list. */
  private header(segment: string): JwsHeader {
    const known = this.headers.get(segment);
    if (known) return known;
    const checked = checkHeader(segment, this.opts.algorithms);
    if (this.headers.size >= HEADER_CACHE_MAX) {
      const oldest = this.headers.keys().next().value;
      if (oldest !== undefined) this.headers.delete(oldest);
    }
    this.headers.set(segment, checked);
    return checked;
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
