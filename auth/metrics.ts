// The auth subsystem's Prometheus metrics. Created once per registry (reloads reuse them).
import { Counter, Histogram, Gauge, type Registry } from 'prom-client';

export interface AuthMetrics {
  verifications: Counter<'result'>;
  verifyDuration: Histogram<'result'>;
  jwksFetches: Counter<'result'>;
  jwksKeys: Gauge;
  tokenCache: Counter<'result'>;
  introspections: Counter<'result'>;
  adminFailures: Counter<'result'>;
}

const byRegistry = new WeakMap<Registry, AuthMetrics>();

export function authMetrics(registry: Registry): AuthMetrics {
  let m = byRegistry.get(registry);
  if (m) return m;
  const registers = [registry];
  m = {
    verifications: new Counter({
      name: 'cbr_auth_verifications_total',
      help: 'Token authorizations by result (ok or the error code)',
      labelNames: ['result'],
      registers,
    }),
    verifyDuration: new Histogram({
      name: 'cbr_auth_verify_duration_seconds',
      help: 'Time to authorize a token (verification, introspection, role and rate checks)',
      labelNames: ['result'],
      buckets: [0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1, 5],
      registers,
    }),
    jwksFetches: new Counter({ name: 'cbr_auth_jwks_fetches_total', help: 'JWKS fetch attempts by result', labelNames: ['result'], registers }),
    jwksKeys: new Gauge({ name: 'cbr_auth_jwks_keys', help: 'Usable signing keys in the cached JWKS', registers }),
    tokenCache: new Counter({ name: 'cbr_auth_token_cache_total', help: 'Verified-token cache lookups by result', labelNames: ['result'], registers }),
    introspections: new Counter({ name: 'cbr_auth_introspections_total', help: 'Introspection lookups by result', labelNames: ['result'], registers }),
    adminFailures: new Counter({
      name: 'cbr_auth_admin_failures_total',
      help: 'Failed admin-API authentications: counted against the source, or refused because the source is over auth.rateLimit.adminFailuresPerSource',
      labelNames: ['result'],
      registers,
    }),
  };
  byRegistry.set(registry, m);
  return m;
}
