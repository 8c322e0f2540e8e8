// The AuthGate the tunnels and the admin API call: rate limit by source, verify (JWT locally,
// opaque or revocation checks through introspection), rate limit by subject, then the role policy.
import { AuthError, type AuthGate, type Identity, type SessionKind } from './gate.js';
import type { AuthConfig } from './config.js';
import { checkClaims, requireAnyRole, type ClaimRules } from './claims.js';
import { KeyStore } from './jwks.js';
import { JwtVerifier, compactJws } from './verifier.js';
import { Introspector, loadAppKeyFile } from './introspect.js';
import { TokenBuckets, sourceKey } from './ratelimit.js';
import type { AuthMetrics } from './metrics.js';

export interface TokenGateOptions {
  config: AuthConfig;
  metrics?: AuthMetrics;
  /** Errors that are not AuthErrors (bugs) are reported here; the caller still gets INVALID_TOKEN. */
  onInternalError?: (err: unknown) => void;
  onJwksFetch?: (result: 'ok' | 'error', detail: { keys: number; error?: string; durationMs: number }) => void;
  now?: () => number;
}

export function claimRules(config: AuthConfig): ClaimRules {
  if (!config.issuer) throw new Error('auth.issuer: required when auth is enabled');
  return {
    issuer: config.issuer,
    audience: config.audience,
    clockSkewSeconds: config.clockSkew / 1000,
    trustGenericRoleClaim: config.trustGenericRoleClaim,
  };
}

export function keyStoreFor(config: AuthConfig, opts: Pick<TokenGateOptions, 'metrics' | 'onJwksFetch' | 'now'> = {}): KeyStore {
  const { metrics } = opts;
  const store: KeyStore = new KeyStore({
    issuer: claimRules(config).issuer,
    ...(config.jwks.uri ? { jwksUri: config.jwks.uri } : {}),
    algorithms: config.algorithms,
    refreshIntervalMs: config.jwks.refreshInterval,
    unknownKidRefetchIntervalMs: config.jwks.unknownKidRefetchInterval,
    maxAgeMs: config.jwks.maxAge,
    fetchTimeoutMs: config.jwks.fetchTimeout,
    maxBytes: config.jwks.maxBytes,
    allowInsecure: config.allowInsecureIssuer,
    ...(opts.now ? { now: opts.now } : {}),
    onFetch: (result, detail) => {
      metrics?.jwksFetches.inc({ result });
      metrics?.jwksKeys.set(store.status().usable ? detail.keys : 0);
      opts.onJwksFetch?.(result, detail);
    },
  });
  return store;
}

/** The parts of the config that need a new key store when they change. */
export function keyStoreIdentity(c: AuthConfig): string {
  return JSON.stringify([c.issuer, c.jwks, c.algorithms]);
}

export class TokenGate implements AuthGate {
  readonly keys: KeyStore;
  private readonly verifier: JwtVerifier;
  private introspector?: Introspector;
  private config: AuthConfig;
  private readonly bySubject: TokenBuckets;
  private readonly bySource: TokenBuckets;
  /** Failed admin-API authentications per source address. */
  private readonly adminFailures: TokenBuckets;
  private readonly now: () => number;
  /** The labelled counter and histogram children per result, looked up once each. */
  private readonly byResult = new Map<string, { observe: (seconds: number) => void }>();

  constructor(private readonly opts: TokenGateOptions) {
    this.config = opts.config;
    this.now = opts.now ?? Date.now;
    this.keys = keyStoreFor(opts.config, opts);
    this.verifier = new JwtVerifier({
      rules: claimRules(opts.config),
      algorithms: opts.config.algorithms,
      keys: this.keys,
      tokenCacheMax: opts.config.tokenCache.maxEntries,
      now: this.now,
      onCache: (result) => opts.metrics?.tokenCache.inc({ result }),
    });
    const rl = opts.config.rateLimit;
    this.bySubject = new TokenBuckets(rl.perSubject, rl.maxTracked, this.now);
    this.bySource = new TokenBuckets(rl.perSource, rl.maxTracked, this.now);
    this.adminFailures = new TokenBuckets(rl.adminFailuresPerSource, rl.maxTracked, this.now);
    this.introspector = this.makeIntrospector(opts.config);
  }

  private makeIntrospector(config: AuthConfig): Introspector | undefined {
    const ic = config.introspection;
    if (ic.mode === 'jwt-only') return undefined;
    if (!ic.keyFile) throw new Error(`auth.introspection.keyFile: required when introspection.mode is ${ic.mode}`);
    const { file, key } = loadAppKeyFile(ic.keyFile, 'auth.introspection.keyFile');
    const keys = this.keys;
    return new Introspector({
      issuer: claimRules(config).issuer,
      endpoint: async () => {
        if (ic.endpoint) return ic.endpoint;
        const doc = await keys.discoveryDocument();
        if (!doc.introspection_endpoint) throw new Error('the discovery document has no introspection_endpoint; set auth.introspection.endpoint');
        return doc.introspection_endpoint;
      },
      keyFile: file,
      privateKey: key,
      cacheTtlMs: ic.cacheTtl,
      timeoutMs: ic.timeout,
      now: this.now,
      onResult: (result) => this.opts.metrics?.introspections.inc({ result }),
    });
  }

  /** Applies a reloaded config that keeps the same key store (policy, limits, audience, introspection). */
  configure(config: AuthConfig): void {
    const introspector = this.makeIntrospector(config);
    this.verifier.setRules(claimRules(config));
    this.bySubject.configure(config.rateLimit.perSubject);
    this.bySource.configure(config.rateLimit.perSource);
    this.adminFailures.configure(config.rateLimit.adminFailuresPerSource);
    this.introspector = introspector;
    this.config = config;
  }

  /** RATE_LIMITED while `key` has used up its failed admin authentications (guessing tokens costs time). */
  private refuseFailingAdminSource(key: string): void {
    const wait = this.adminFailures.wait(key);
    if (wait <= 0) return;
    this.opts.metrics?.adminFailures.inc({ result: 'limited' });
    throw new AuthError('RATE_LIMITED', 'too many failed admin authentications from this source address', Math.max(1, Math.ceil(wait)));
  }

  async authorize(token: string, kind: SessionKind, source?: string): Promise<Identity> {
    const started = performance.now();
    let result = 'ok';
    try {
      const anyOf = this.config.policy[kind];
      if (!anyOf) throw new AuthError('MISSING_ROLE', `unknown session kind ${JSON.stringify(kind)}`);
      // Rate limits guard session setup; the admin API (one check per request) is not a session.
      const limited = kind !== 'admin';
      if (limited && source !== undefined) this.limit(this.bySource, sourceKey(source), 'source address');
      if (!limited && source !== undefined) this.refuseFailingAdminSource(sourceKey(source));
      const identity = await this.identify(token);
      if (limited) this.limit(this.bySubject, identity.subject, 'subject');
      requireAnyRole(identity, anyOf, kind);
      return identity;
    } catch (err) {
      if (err instanceof AuthError) {
        result = err.code;
        if (kind === 'admin' && source !== undefined && err.code !== 'RATE_LIMITED' && err.code !== 'ISSUER_UNAVAILABLE') {
          // A failed admin authentication (bad, expired or foreign token, missing role) costs the source one token.
          this.adminFailures.take(sourceKey(source));
          this.opts.metrics?.adminFailures.inc({ result: 'counted' });
        }
        throw err;
      }
      this.opts.onInternalError?.(err);
      result = 'INVALID_TOKEN';
      throw new AuthError('INVALID_TOKEN', 'token could not be verified');
    } finally {
      this.resultMetrics(result)?.observe((performance.now() - started) / 1000);
    }
  }

  private resultMetrics(result: string): { observe: (seconds: number) => void } | undefined {
    const metrics = this.opts.metrics;
    if (!metrics) return undefined;
    let m = this.byResult.get(result);
    if (!m) {
      const count = metrics.verifications.labels(result);
      const duration = metrics.verifyDuration.labels(result);
      m = {
        observe: (seconds) => {
          count.inc();
          duration.observe(seconds);
        },
      };
      this.byResult.set(result, m);
    }
    return m;
  }

  /** Verification without policy or rate limits (the CLI's `auth verify`, the admin authorizer's first step). */
  async identify(token: string): Promise<Identity> {
    if (typeof token !== 'string' || token.length === 0) throw new AuthError('INVALID_TOKEN', 'no token');
    const mode = this.config.introspection.mode;
    const jws = compactJws(token);
    if (!jws) {
      if (mode === 'jwt-only' || !this.introspector)
        throw new AuthError('INVALID_TOKEN', 'token is not a JWT (opaque tokens need introspection.mode introspect-opaque)');
      const claims = await this.introspector.introspect(token);
      return checkClaims(claims, claimRules(this.config), this.now() / 1000);
    }
    const identity = await this.verifier.verify(jws);
    if (mode === 'introspect-always' && this.introspector) await this.introspector.introspect(token);
    return identity;
  }

  /** Key-store and cache figures for the admin API. */
  status(): Record<string, unknown> {
    return {
      issuer: this.config.issuer,
      audience: this.config.audience,
      introspection: this.config.introspection.mode,
      keys: this.keys.status(),
      cachedTokens: this.verifier.cachedTokens,
    };
  }

  private limit(buckets: TokenBuckets, key: string, what: string): void {
    const wait = buckets.take(key);
    if (wait > 0) throw new AuthError('RATE_LIMITED', `too many session setups from this ${what}`, Math.max(1, Math.ceil(wait)));
  }
}
