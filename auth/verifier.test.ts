import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey } from 'node:crypto';
import { SignJWT, type JWK } from 'jose';
import { Registry } from 'prom-client';
import { startDevIssuer, type DevIssuer } from './dev-issuer.js';
import { TokenGate } from './token-gate.js';
import { authMetrics } from './metrics.js';
import { parseJwks } from './jwks.js';
import { authConfig, rejection, sleep } from './testing.js';

let dev: DevIssuer;
const gates: TokenGate[] = [];
before(async () => {
  dev = await startDevIssuer({ projectId: 'proj1' });
});
after(async () => {
  for (const g of gates) g.keys.stop();
  await dev.close();
});

async function gateFor(over: Record<string, unknown> = {}, extra: { registry?: Registry; now?: () => number; issuer?: DevIssuer } = {}): Promise<TokenGate> {
  const issuer = extra.issuer ?? dev;
  const g = new TokenGate({
    config: authConfig({ issuer: issuer.url, audience: [issuer.projectId], rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 } }, ...over }),
    ...(extra.registry ? { metrics: authMetrics(extra.registry) } : {}),
    ...(extra.now ? { now: extra.now } : {}),
  });
  gates.push(g);
  await g.keys.start();
  return g;
}

test('good tokens: project-specific role claims (generic ones when trusted), RS256 and ES256', async () => {
  const g = await gateFor();
  const trusting = await gateFor({ trustGenericRoleClaim: true });
  const generic = await dev.mint({ subject: 'u-1', roles: ['vpn-user'], roleClaim: 'generic' });
  assert.equal((await rejection(g.authorize(generic, 'masque-connect-ip'))).code, 'MISSING_ROLE');
  assert.deepEqual((await trusting.authorize(generic, 'masque-connect-ip')).roles, ['vpn-user']);
  for (const roleClaim of ['project', 'both'] as const) {
    const id = await g.authorize(await dev.mint({ subject: 'u-1', roles: ['vpn-user'], roleClaim }), 'masque-connect-ip', '192.0.2.1');
    assert.equal(id.subject, 'u-1');
    assert.deepEqual(id.roles, ['vpn-user']);
    assert.equal(id.org, dev.orgId);
    assert.match(id.clientId ?? '', /@proj1$/);
    assert.ok(id.expiresAt > Date.now() / 1000);
  }
  const es = await g.authorize(await dev.mint({ alg: 'ES256', roles: ['admin'] }), 'admin');
  assert.deepEqual(es.roles, ['admin']);
});

test('alg none and HS256 signed with the RSA public key are refused', async () => {
  const g = await gateFor();
  const good = await dev.mint({ roles: ['vpn-user'] });
  const [, payload] = good.split('.');
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  for (const alg of ['none', 'None', 'NONE']) {
    const e = await rejection(g.authorize(`${b64({ alg, kid: dev.currentKid() })}.${payload}.`, 'masque-connect-ip'));
    assert.equal(e.code, 'INVALID_TOKEN');
    assert.equal(e.status, 401);
  }
  const jwks = (await (await fetch(`${dev.url}/oauth/v2/keys`)).json()) as { keys: JWK[] };
  const rsa = jwks.keys.find((k) => k.kid === dev.currentKid())!;
  const pem = createPublicKey({ key: rsa as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
  for (const secret of [pem, JSON.stringify(rsa)]) {
    const forged = await new SignJWT({
      iss: dev.url,
      aud: 'proj1',
      sub: 'evil',
      exp: Math.floor(Date.now() / 1000) + 60,
      'urn:zitadel:iam:org:project:roles': { 'vpn-user': { o: 'd' } },
    })
      .setProtectedHeader({ alg: 'HS256', kid: dev.currentKid() })
      .sign(new TextEncoder().encode(secret));
    assert.equal((await rejection(g.authorize(forged, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  }
  // A tampered payload fails the signature.
  const [h, , s] = good.split('.');
  const tampered = `${h}.${b64({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), sub: 'someone-else' })}.${s}`;
  assert.equal((await rejection(g.authorize(tampered, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  for (const junk of ['', 'a.b', 'not a token', 'x'.repeat(20000), 'eyJhbGciOiJSUzI1NiJ9.e30.']) {
    assert.equal((await rejection(g.authorize(junk, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  }
});

test('JWKS parsing keeps only public signature keys and never an oct key', () => {
  const keys = parseJwks(
    {
      keys: [
        { kty: 'oct', k: 'c2VjcmV0', kid: 'h' },
        { kty: 'RSA', n: 'AQAB', e: 'AQAB', kid: 'r', d: 'private' },
        { kty: 'RSA', n: 'x', e: 'AQAB', kid: 'enc', use: 'enc' },
        { kty: 'EC', crv: 'P-384', x: 'a', y: 'b', kid: 'p384' },
        7,
        null,
      ],
    },
    ['RS256', 'ES256'],
  );
  assert.deepEqual([...keys.keys()], ['r']);
  assert.deepEqual(keys.get('r'), { kty: 'RSA', n: 'AQAB', e: 'AQAB' });
  assert.throws(() => parseJwks({ nokeys: [] }, ['RS256']), /keys array/);
});

test('unknown kid: one refetch per interval, then the rotated-in key verifies', async () => {
  const g = await gateFor({ jwks: { unknownKidRefetchInterval: '400ms' } });
  await sleep(450);
  const hidden = dev.rotate({ publish: false });
  const token = await dev.mint({ kid: hidden, roles: ['vpn-user'] });
  const before = dev.jwksRequests;
  assert.equal((await rejection(g.authorize(token, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  assert.equal(dev.jwksRequests, before + 1, 'the unknown kid triggered one refetch');
  dev.publish(hidden);
  assert.equal((await rejection(g.authorize(token, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  assert.equal(dev.jwksRequests, before + 1, 'no second refetch within the interval');
  await sleep(450);
  assert.equal((await g.authorize(token, 'masque-connect-ip')).roles[0], 'vpn-user');
  assert.equal(dev.jwksRequests, before + 2);
  // The ordinary rotation path: a new current key, a token signed with it, one refetch.
  await sleep(450);
  dev.rotate();
  await g.authorize(await dev.mint({ roles: ['vpn-user'] }), 'masque-connect-ip');
  assert.equal(dev.jwksRequests, before + 3);
});

test('expired, not yet valid, wrong issuer, wrong audience, missing role', async () => {
  const g = await gateFor();
  const cases: Array<[Parameters<DevIssuer['mint']>[0], string, number]> = [
    [{ roles: ['vpn-user'], expiresIn: -120 }, 'EXPIRED', 401],
    [{ roles: ['vpn-user'], notBefore: 600 }, 'NOT_YET_VALID', 401],
    [{ roles: ['vpn-user'], issuedAt: 600 }, 'NOT_YET_VALID', 401],
    [{ roles: ['vpn-user'], issuer: 'http://evil.example' }, 'WRONG_ISSUER', 401],
    [{ roles: ['vpn-user'], audience: ['other-project'] }, 'WRONG_AUDIENCE', 401],
    [{ roles: ['admin'] }, 'MISSING_ROLE', 403],
  ];
  for (const [mint, codeWanted, status] of cases) {
    const e = await rejection(g.authorize(await dev.mint(mint), 'wireguard-register'));
    assert.equal(e.code, codeWanted, JSON.stringify(mint));
    assert.equal(e.status, status);
  }
  // Within the 30 s skew an expired token still passes.
  await g.authorize(await dev.mint({ roles: ['vpn-user'], expiresIn: -10 }), 'wireguard-register');
  // The policy is per kind: a vpn-user token cannot reach admin.
  assert.equal((await rejection(g.authorize(await dev.mint({ roles: ['vpn-user'] }), 'admin'))).code, 'MISSING_ROLE');
});

test('JWKS down: cached keys keep verifying, an unknown kid fails closed with ISSUER_UNAVAILABLE', async () => {
  const down = await startDevIssuer({ projectId: 'proj1' });
  try {
    const g = await gateFor({ jwks: { unknownKidRefetchInterval: '0s' } }, { issuer: down });
    down.setJwksFault({ status: 503 });
    await g.keys.refresh();
    assert.match(g.keys.status().lastError ?? '', /HTTP 503/);
    assert.equal(g.keys.status().usable, true);
    await g.authorize(await down.mint({ roles: ['vpn-user'] }), 'masque-connect-ip');
    const hidden = down.rotate({ publish: false });
    const e = await rejection(g.authorize(await down.mint({ kid: hidden, roles: ['vpn-user'] }), 'masque-connect-ip'));
    assert.equal(e.code, 'ISSUER_UNAVAILABLE');
    assert.equal(e.status, 503);
    // A gate that never fetched its keys refuses everything with ISSUER_UNAVAILABLE.
    const cold = await gateFor({}, { issuer: down });
    assert.equal((await rejection(cold.authorize(await down.mint({ roles: ['vpn-user'] }), 'masque-connect-ip'))).code, 'ISSUER_UNAVAILABLE');
    assert.equal(cold.keys.status().usable, false);
    // A closed port behaves the same.
    const closed = await gateFor({}, { issuer: { ...down, url: 'http://127.0.0.1:1' } as DevIssuer });
    assert.equal((await rejection(closed.authorize(await down.mint({ roles: ['vpn-user'] }), 'masque-connect-ip'))).code, 'ISSUER_UNAVAILABLE');
  } finally {
    await down.close();
  }
});

test('JWKS down past maxAge: cached keys stop verifying', async () => {
  let now = Date.now();
  const down = await startDevIssuer({ projectId: 'proj1' });
  try {
    const g = await gateFor({ jwks: { maxAge: '10m', unknownKidRefetchInterval: '30s' } }, { issuer: down, now: () => now });
    const token = await down.mint({ roles: ['vpn-user'] });
    await g.authorize(token, 'masque-connect-ip');
    down.setJwksFault({ status: 500 });
    now += 9 * 60_000;
    await g.authorize(token, 'masque-connect-ip');
    now += 2 * 60_000;
    assert.equal((await rejection(g.authorize(token, 'masque-connect-ip'))).code, 'ISSUER_UNAVAILABLE', 'cached token dropped with its key');
    assert.equal((await rejection(g.authorize(await down.mint({ roles: ['vpn-user'] }), 'masque-connect-ip'))).code, 'ISSUER_UNAVAILABLE');
    down.setJwksFault({});
    now += 31_000;
    await g.authorize(token, 'masque-connect-ip');
  } finally {
    await down.close();
  }
});

test('JWKS slow: cached keys answer at once while a refresh hangs; an unknown kid waits and fails closed', async () => {
  const slow = await startDevIssuer({ projectId: 'proj1' });
  try {
    const g = await gateFor({ jwks: { fetchTimeout: '800ms', unknownKidRefetchInterval: '0s' } }, { issuer: slow });
    slow.setJwksFault({ delayMs: 3000 });
    const refreshing = g.keys.refresh();
    const t0 = performance.now();
    for (let i = 0; i < 5; i++) await g.authorize(await slow.mint({ roles: ['vpn-user'] }), 'masque-connect-ip');
    assert.ok(performance.now() - t0 < 600, `cached verifications took ${performance.now() - t0} ms`);
    const hidden = slow.rotate({ publish: false });
    const t1 = performance.now();
    const e = await rejection(g.authorize(await slow.mint({ kid: hidden, roles: ['vpn-user'] }), 'masque-connect-ip'));
    assert.equal(e.code, 'ISSUER_UNAVAILABLE');
    assert.ok(performance.now() - t1 < 3000, 'bounded by jwks.fetchTimeout');
    await refreshing;
    assert.match(g.keys.status().lastError ?? '', /no answer within 800 ms/);
  } finally {
    slow.setJwksFault({});
    await slow.close();
  }
});

test('rate limits per source address and per subject answer RATE_LIMITED with a retry time', async () => {
  const g = await gateFor({ rateLimit: { perSource: { rate: 0.5, burst: 2 }, perSubject: { rate: 0.2, burst: 3 } } });
  const token = await dev.mint({ subject: 'busy', roles: ['vpn-user'] });
  await g.authorize(token, 'masque-connect-udp', '198.51.100.1');
  await g.authorize(token, 'masque-connect-udp', '198.51.100.1');
  const e = await rejection(g.authorize(token, 'masque-connect-udp', '198.51.100.1'));
  assert.equal(e.code, 'RATE_LIMITED');
  assert.equal(e.status, 429);
  assert.equal(e.retryAfterSeconds, 2);
  await g.authorize(token, 'masque-connect-udp', '198.51.100.2');
  const s = await rejection(g.authorize(token, 'masque-connect-udp', '198.51.100.3'));
  assert.equal(s.code, 'RATE_LIMITED', 'the subject spent its burst of 3');
  assert.equal(s.retryAfterSeconds, 5);
  await g.authorize(await dev.mint({ subject: 'other', roles: ['vpn-user'] }), 'masque-connect-udp', '198.51.100.4');
  // One IPv6 /64 is one source.
  const v6 = await dev.mint({ subject: 'v6-user', roles: ['vpn-user'] });
  await g.authorize(v6, 'masque-connect-udp', '2001:db8:7:7::1');
  await g.authorize(v6, 'masque-connect-udp', '2001:db8:7:7::2');
  assert.equal((await rejection(g.authorize(v6, 'masque-connect-udp', '2001:db8:7:7:ffff::3'))).code, 'RATE_LIMITED');
  // The admin API checks a token on every request: it is not a session setup and is not limited.
  const admin = await dev.mint({ subject: 'busy', roles: ['admin'] });
  for (let i = 0; i < 10; i++) await g.authorize(admin, 'admin', '198.51.100.1');
});

test('verified-token cache: hits are counted, and a token whose key left the JWKS is refused', async () => {
  const rot = await startDevIssuer({ projectId: 'proj1', retainPreviousKeys: 0 });
  const registry = new Registry();
  try {
    const g = await gateFor({ jwks: { unknownKidRefetchInterval: '0s' } }, { registry, issuer: rot });
    const token = await rot.mint({ roles: ['vpn-user'] });
    for (let i = 0; i < 3; i++) await g.authorize(token, 'masque-connect-ip');
    const text = await registry.metrics();
    assert.match(text, /cbr_auth_token_cache_total\{result="hit"\} 2/);
    assert.match(text, /cbr_auth_verifications_total\{result="ok"\} 3/);
    assert.match(text, /cbr_auth_verify_duration_seconds_count\{result="ok"\} 3/);
    rot.rotate();
    await g.keys.refresh();
    assert.equal((await rejection(g.authorize(token, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
    assert.match(await registry.metrics(), /cbr_auth_verifications_total\{result="INVALID_TOKEN"\} 1/);
    // Claims are re-checked on every cache hit: an expired cached token is refused.
    const short = await rot.mint({ roles: ['vpn-user'], expiresIn: -29 });
    await g.authorize(short, 'masque-connect-ip');
    await sleep(1100);
    assert.equal((await rejection(g.authorize(short, 'masque-connect-ip'))).code, 'EXPIRED');
  } finally {
    await rot.close();
  }
});
