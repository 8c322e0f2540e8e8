// Hardening of the token path (issue 12 item 8; issue 13 item 5: the remembered headers): crit headers, the project-scoped role claim, a
// streamed and capped JWKS, http:// issuers, a key replaced under its kid, failed admin logins.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT, exportJWK, generateKeyPair, type JWK, type JWTHeaderParameters } from 'jose';
import { Registry } from 'prom-client';
import { TokenGate } from './token-gate.js';
import { authConfigSchema } from './config.js';
import { authMetrics } from './metrics.js';
import { projectRolesClaim, ZITADEL_ROLES_CLAIM } from './claims.js';
import { authConfig, rejection } from './testing.js';

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>;

/** A minimal issuer on loopback whose JWKS the test controls (or replaces by a raw handler). */
interface TestIssuer {
  url: string;
  keys: Map<string, KeyPair>;
  /** Replaces the JWKS answer (big or endless bodies); undefined restores the key set. */
  jwksHandler?: (res: ServerResponse) => void;
  /** jwks_uri announced by discovery (default: this server's /keys). */
  jwksUri?: string;
  close(): Promise<void>;
}

const servers: Server[] = [];
const gates: TokenGate[] = [];
after(async () => {
  for (const g of gates) g.keys.stop();
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function startIssuer(): Promise<TestIssuer> {
  const issuer: TestIssuer = { url: '', keys: new Map(), close: async () => undefined };
  const server = createServer((req, res) => {
    void (async () => {
      if (req.url === '/.well-known/openid-configuration') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ issuer: issuer.url, jwks_uri: issuer.jwksUri ?? `${issuer.url}/keys` }));
      } else if (req.url === '/keys') {
        if (issuer.jwksHandler) return issuer.jwksHandler(res);
        const keys: JWK[] = [];
        for (const [kid, kp] of issuer.keys) keys.push({ ...(await exportJWK(kp.publicKey)), kid, alg: 'RS256', use: 'sig' });
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys }));
      } else {
        res.writeHead(404).end();
      }
    })();
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  issuer.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer.close = async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  };
  return issuer;
}

async function gateFor(issuer: TestIssuer, over: Record<string, unknown> = {}, registry?: Registry): Promise<TokenGate> {
  const g = new TokenGate({
    config: authConfig({ issuer: issuer.url, audience: ['proj1'], rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 } }, ...over }),
    ...(registry ? { metrics: authMetrics(registry) } : {}),
  });
  gates.push(g);
  await g.keys.start();
  return g;
}

async function mint(issuer: TestIssuer, kid: string, o: { roles?: Record<string, unknown>; header?: Partial<JWTHeaderParameters>; sub?: string } = {}) {
  const kp = issuer.keys.get(kid);
  assert.ok(kp, `no key ${kid}`);
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT({ sub: o.sub ?? 'u-1', ...(o.roles ?? { [projectRolesClaim('proj1')]: { 'vpn-user': { o: 'd' }, admin: { o: 'd' } } }) })
    .setProtectedHeader({ alg: 'RS256', kid, ...o.header })
    .setIssuer(issuer.url)
    .setAudience('proj1')
    .setIssuedAt(now)
    .setExpirationTime(now + 300)
    .sign(kp.privateKey, { crit: { 'urn:example:ext': true, b64: true } });
}

test('a JWS whose crit header names an extension we do not implement is refused (RFC 7515 §4.1.11)', async () => {
  const iss = await startIssuer();
  iss.keys.set('k1', await generateKeyPair('RS256'));
  const g = await gateFor(iss);
  await g.authorize(await mint(iss, 'k1'), 'masque-connect-ip');
  for (const header of [
    { crit: ['urn:example:ext'], 'urn:example:ext': 1 },
    { crit: ['b64'], b64: true },
  ] as Partial<JWTHeaderParameters>[]) {
    const e = await rejection(g.authorize(await mint(iss, 'k1', { header }), 'masque-connect-ip'));
    assert.equal(e.code, 'INVALID_TOKEN');
    assert.match(e.message, /crit header names extensions this verifier does not implement/);
  }
  // A malformed crit (jose's sign refuses to make one, so it is assembled here with a valid signature).
  const good = await mint(iss, 'k1');
  const [, payload] = good.split('.');
  const header = Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'k1', crit: [] })).toString('base64url');
  const { createSign } = await import('node:crypto');
  const { KeyObject } = await import('node:crypto');
  const sig = createSign('sha256')
    .update(`${header}.${payload}`)
    .sign(KeyObject.from(iss.keys.get('k1')!.privateKey as CryptoKey))
    .toString('base64url');
  assert.match((await rejection(g.authorize(`${header}.${payload}.${sig}`, 'masque-connect-ip'))).message, /crit header: expected a non-empty array/);
});

test("roles come from the project-scoped claim; the generic claim (another project's client) counts only with trustGenericRoleClaim", async () => {
  const iss = await startIssuer();
  iss.keys.set('k1', await generateKeyPair('RS256'));
  const g = await gateFor(iss);
  // What Zitadel issues to a client of project "other" that asks for our project in aud: its own
  // project's roles in the generic claim, none in urn:zitadel:iam:org:project:proj1:roles.
  const foreign = await mint(iss, 'k1', {
    roles: { [ZITADEL_ROLES_CLAIM]: { 'vpn-user': { o: 'd' } }, [projectRolesClaim('other')]: { 'vpn-user': { o: 'd' } } },
  });
  assert.equal((await rejection(g.authorize(foreign, 'masque-connect-ip'))).code, 'MISSING_ROLE');
  const trusting = await gateFor(iss, { trustGenericRoleClaim: true });
  assert.deepEqual((await trusting.authorize(foreign, 'masque-connect-ip')).roles, ['vpn-user']);
});

test('a token verified with a key that was then replaced under the same kid is not answered from the cache', async () => {
  const iss = await startIssuer();
  iss.keys.set('k1', await generateKeyPair('RS256'));
  const registry = new Registry();
  const g = await gateFor(iss, {}, registry);
  const old = await mint(iss, 'k1');
  await g.authorize(old, 'masque-connect-ip');
  await g.authorize(old, 'masque-connect-ip');
  assert.match(await registry.metrics(), /cbr_auth_token_cache_total\{result="hit"\} 1/);
  iss.keys.set('k1', await generateKeyPair('RS256')); // same kid, new key material
  await g.keys.refresh();
  const e = await rejection(g.authorize(old, 'masque-connect-ip'));
  assert.equal(e.code, 'INVALID_TOKEN');
  assert.match(e.message, /signature verification failed/);
  await g.authorize(await mint(iss, 'k1'), 'masque-connect-ip');
  // An unchanged key keeps its cache entries across refreshes.
  const hits = async () => Number(/cbr_auth_token_cache_total\{result="hit"\} (\d+)/.exec(await registry.metrics())?.[1]);
  const fresh = await mint(iss, 'k1', { sub: 'u-2' });
  await g.authorize(fresh, 'masque-connect-ip');
  await g.keys.refresh();
  const before = await hits();
  await g.authorize(fresh, 'masque-connect-ip');
  assert.equal(await hits(), before + 1);
});

test('the JWKS is streamed with a size cap: an endless or oversized answer fails at once, holding at most the cap', async () => {
  const iss = await startIssuer();
  let sent = 0;
  iss.jwksHandler = (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"keys":[');
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const timer = setInterval(() => {
      if (res.destroyed || sent > 256 * 1024 * 1024) {
        clearInterval(timer);
        res.destroy();
        return;
      }
      res.write(chunk);
      sent += chunk.length;
    }, 1);
    res.on('close', () => clearInterval(timer));
  };
  const t0 = performance.now();
  const g = await gateFor(iss, { jwks: { fetchTimeout: '20s', maxBytes: 256 * 1024 } });
  const ms = performance.now() - t0;
  const st = g.keys.status();
  assert.equal(st.usable, false);
  assert.match(st.lastError ?? '', /answer larger than 262144 bytes/);
  assert.ok(ms < 5000, `gave up after ${Math.round(ms)} ms, not at the cap`);
  assert.ok(sent < 64 * 1024 * 1024, `the server got to send ${sent} bytes`);
  // A declared Content-Length over the cap is refused before the body is read.
  iss.jwksHandler = (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(10 * 1024 * 1024) });
    res.write('{');
  };
  await g.keys.refresh();
  assert.match(g.keys.status().lastError ?? '', /answer larger than 262144 bytes/);
});

test('http:// issuers are refused unless the host is loopback or allowInsecureIssuer is set', async () => {
  const check = (input: Record<string, unknown>) => authConfigSchema.safeParse({ enabled: true, audience: ['p'], ...input });
  const bad = check({ issuer: 'http://auth.example.net' });
  assert.ok(!bad.success);
  assert.deepEqual(bad.error.issues[0]?.path, ['issuer']);
  assert.match(bad.error.issues[0]?.message ?? '', /http:\/\/ is refused .*allowInsecureIssuer/);
  const jwks = check({ issuer: 'https://auth.example.net', jwks: { uri: 'http://10.0.0.1/keys' } });
  assert.ok(!jwks.success && jwks.error.issues[0]?.path.join('.') === 'jwks.uri');
  for (const ok of [
    { issuer: 'https://auth.example.net' },
    { issuer: 'http://127.0.0.1:8080' },
    { issuer: 'http://localhost:8080' },
    { issuer: 'http://[::1]:8080' },
    { issuer: 'http://10.0.0.1:8080', allowInsecureIssuer: true },
  ]) {
    assert.ok(check(ok).success, JSON.stringify(ok));
  }
  // A discovery document on loopback that names an http:// jwks_uri elsewhere is refused too.
  const iss = await startIssuer();
  iss.jwksUri = 'http://192.0.2.1/keys';
  const g = await gateFor(iss);
  assert.match(g.keys.status().lastError ?? '', /jwks_uri http:\/\/192\.0\.2\.1\/keys: http:\/\/ is refused/);
});

test('failed admin-API authentications are limited per source; successes and other sources are not', async () => {
  const iss = await startIssuer();
  iss.keys.set('k1', await generateKeyPair('RS256'));
  const registry = new Registry();
  const g = await gateFor(iss, { rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 }, adminFailuresPerSource: { rate: 0.5, burst: 3 } } }, registry);
  const admin = await mint(iss, 'k1');
  for (let i = 0; i < 5; i++) await g.authorize(admin, 'admin', '198.51.100.9');
  const noRole = await mint(iss, 'k1', { roles: {} });
  assert.equal((await rejection(g.authorize('garbage', 'admin', '198.51.100.9'))).code, 'INVALID_TOKEN');
  assert.equal((await rejection(g.authorize(noRole, 'admin', '198.51.100.9'))).code, 'MISSING_ROLE');
  assert.equal((await rejection(g.authorize(`${admin}x`, 'admin', '198.51.100.9'))).code, 'INVALID_TOKEN');
  // The source spent its 3 failures: even a good token waits now, with a retry time.
  const limited = await rejection(g.authorize(admin, 'admin', '198.51.100.9'));
  assert.equal(limited.code, 'RATE_LIMITED');
  assert.equal(limited.status, 429);
  assert.equal(limited.retryAfterSeconds, 2);
  await g.authorize(admin, 'admin', '198.51.100.10');
  // An IPv6 /64 is one source.
  for (let i = 0; i < 3; i++) await rejection(g.authorize('garbage', 'admin', `2001:db8:1:2::${i + 1}`));
  assert.equal((await rejection(g.authorize(admin, 'admin', '2001:db8:1:2::99'))).code, 'RATE_LIMITED');
  const text = await registry.metrics();
  assert.match(text, /cbr_auth_admin_failures_total\{result="counted"\} 6/);
  assert.match(text, /cbr_auth_admin_failures_total\{result="limited"\} 2/);
});

test('checked headers are remembered by segment, signatures never: every token is still checked whole', async () => {
  const iss = await startIssuer();
  iss.keys.set('k1', await generateKeyPair('RS256'));
  const g = await gateFor(iss);
  const good = await mint(iss, 'k1');
  const [h, p, s] = good.split('.') as [string, string, string];
  assert.equal((await g.authorize(good, 'masque-connect-ip')).subject, 'u-1');
  // The same (remembered) header over another payload, or with another signature: refused each time.
  const [, otherPayload] = (await mint(iss, 'k1', { sub: 'u-2' })).split('.');
  const flipped = `${s.slice(0, 10)}${s[10] === 'A' ? 'B' : 'A'}${s.slice(11)}`;
  for (let i = 0; i < 2; i++) {
    for (const forged of [`${h}.${otherPayload}.${s}`, `${h}.${p}.${flipped}`]) {
      const e = await rejection(g.authorize(forged, 'masque-connect-ip'));
      assert.equal(e.code, 'INVALID_TOKEN');
      assert.match(e.message, /signature verification failed/);
    }
  }
  const { createSign, KeyObject } = await import('node:crypto');
  const signed = (header: string) =>
    `${header}.${p}.${createSign('sha256')
      .update(`${header}.${p}`)
      .sign(KeyObject.from(iss.keys.get('k1')!.privateKey as CryptoKey))
      .toString('base64url')}`;
  // A refused header (validly signed) is refused again, not remembered.
  const badKid = Buffer.from(JSON.stringify({ alg: 'RS256', kid: 7 })).toString('base64url');
  for (let i = 0; i < 2; i++) assert.match((await rejection(g.authorize(signed(badKid), 'masque-connect-ip'))).message, /kid: expected a string/);
  // One base64url character too many decodes (leniently) to the same JSON; it is not base64url.
  let json = JSON.stringify({ alg: 'RS256', kid: 'k1' });
  while (Buffer.byteLength(json) % 3 !== 0) json += ' ';
  const dangling = `${Buffer.from(json).toString('base64url')}A`;
  const e = await rejection(g.authorize(signed(dangling), 'masque-connect-ip'));
  assert.equal(e.code, 'INVALID_TOKEN');
  assert.match(e.message, /token header is not valid base64url JSON/);
});
