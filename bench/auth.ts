// Bench: token authorizations per second through the auth gate with a warm JWKS cache, one at a time
// (one core), for RS256 and ES256. Headline figures run the whole gate with the verified-token cache
// off (header, key lookup, signature, claims, roles, rate limits) on every call; the `_cached`
// figures repeat tokens with the cache on (the deployed default). Baselines on the same tokens: a bare
// node:crypto signature check (`_node_crypto`, the floor) and jose's compactVerify alone (`_jose_sig`,
// what the gate used before it checked signatures with node:crypto).
import type { JsonWebKey } from 'node:crypto';
import { compactVerify, importJWK } from 'jose';
import { Registry } from 'prom-client';
import { startDevIssuer } from '../auth/dev-issuer.js';
import { TokenGate } from '../auth/token-gate.js';
import { authMetrics } from '../auth/metrics.js';
import { authConfigSchema } from '../auth/config.js';
import { writeBenchResult, type BenchMetric } from './results.js';
import { bareVerifier, measure, RUN_MS } from './jwt-bare.js';

const QUICK = process.env.QUICK === '1';
const POOL = 256;

const dev = await startDevIssuer({ projectId: 'bench-project' });
const results: Record<string, BenchMetric> = {};
try {
  const jwks = (await (await fetch(`${dev.url}/oauth/v2/keys`)).json()) as { keys: Array<Record<string, string>> };
  const gateFor = (cacheEntries: number) => {
    const g = new TokenGate({
      config: authConfigSchema.parse({
        enabled: true,
        issuer: dev.url,
        audience: ['bench-project'],
        tokenCache: { maxEntries: cacheEntries },
        rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 } },
      }),
      metrics: authMetrics(new Registry()),
    });
    return g;
  };
  const table: string[] = [];
  for (const alg of ['RS256', 'ES256'] as const) {
    const tokens = await Promise.all(Array.from({ length: POOL }, (_, i) => dev.mint({ alg, subject: `user-${i}`, roles: ['vpn-user'] })));
    const lower = alg.toLowerCase();

    const uncached = gateFor(0);
    await uncached.keys.start();
    const full = await measure((i) => uncached.authorize(tokens[i % POOL]!, 'masque-connect-ip', '192.0.2.1'));
    uncached.keys.stop();

    const cachedGate = gateFor(10_000);
    await cachedGate.keys.start();
    const cached = await measure((i) => cachedGate.authorize(tokens[i % POOL]!, 'masque-connect-ip', '192.0.2.1'));
    cachedGate.keys.stop();

    // Baseline: the signature check alone with node:crypto (no parsing, no claims, no async hop).
    const kid = dev.currentKid(alg);
    const jwk = jwks.keys.find((k) => k.kid === kid) as JsonWebKey;
    const raw = await measure(bareVerifier(alg, jwk, tokens));

    const joseKey = await importJWK(jwk as never, alg);
    const joseSig = await measure((i) => compactVerify(tokens[i % POOL]!, joseKey, { algorithms: [alg] }));

    results[`verify_per_s_${lower}`] = { value: Math.round(full.perSecond), unit: 'verifications/s' };
    results[`verify_per_s_${lower}_jose_sig`] = { value: Math.round(joseSig.perSecond), unit: 'verifications/s' };
    results[`verify_per_s_${lower}_cached`] = { value: Math.round(cached.perSecond), unit: 'verifications/s' };
    results[`verify_per_s_${lower}_node_crypto`] = { value: Math.round(raw.perSecond), unit: 'verifications/s' };
    results[alg === 'RS256' ? 'verify_p99_us' : `verify_p99_us_${lower}`] = { value: Math.round(full.p99us), unit: 'us' };
    results[`verify_p99_us_${lower}_cached`] = { value: Math.round(cached.p99us * 10) / 10, unit: 'us' };
    table.push(
      `${alg}  gate, no cache:  ${Math.round(full.perSecond)}/s (p50 ${full.p50us.toFixed(0)} us, p99 ${full.p99us.toFixed(0)} us)`,
      `${alg}  jose sig only:   ${Math.round(joseSig.perSecond)}/s (baseline: the old signature path)`,
      `${alg}  token cache:     ${Math.round(cached.perSecond)}/s (p50 ${cached.p50us.toFixed(1)} us, p99 ${cached.p99us.toFixed(1)} us)`,
      `${alg}  node:crypto sig: ${Math.round(raw.perSecond)}/s (baseline: signature only)`,
    );
  }
  process.stdout.write(`${table.join('\n')}\n`);
  const path = writeBenchResult('auth', results, {
    notes: {
      goal: '>= 20000 verifications/s per algorithm',
      quick: QUICK,
      pool: POOL,
      runMs: RUN_MS,
      headline: 'verify_per_s_* run the whole gate with the token cache off; *_cached reuse verified tokens (default config)',
    },
  });
  process.stdout.write(`wrote ${path}\n`);
} finally {
  await dev.close();
}
