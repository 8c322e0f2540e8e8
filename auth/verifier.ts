// JWT verification: header checks (alg allow-list, kid), the signature through jose with a key from
// the KeyStore, then the pure claim checks. Signature-verified payloads are remembered by the whole
// token (bounded, dropped at exp or when their key leaves the JWKS); claims are re-checked on every use.
import { compactVerify, decodeProtectedHeader } from 'jose';
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
  exp: number;
}

export class JwtVerifier {
  private readonly cache = new Map<string, CachedToken>();
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
      if (hit.exp > nowSeconds - this.opts.rules.clockSkewSeconds && this.opts.keys.hasKey(hit.kid)) {
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
    const key = await this.opts.keys.keyFor(header.kid, alg);
    let payload: Uint8Array;
    try {
      ({ payload } = await compactVerify(token, key, { algorithms: [alg] }));
    } catch {
      throw new AuthError('INVALID_TOKEN', 'signature verification failed');
    }
    const claims = parseClaimsJson(payload);
    const identity = checkClaims(claims, this.opts.rules, this.now() / 1000);
    this.remember(token, { claims, kid: header.kid ?? '', exp: identity.expiresAt });
    return identity;
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
