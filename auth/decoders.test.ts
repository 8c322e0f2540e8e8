// Property tests for every decoder in auth/: random input gets a defined error, never a crash.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseJwks } from './jwks.js';
import { parseAppKeyFile } from './introspect.js';
import { startDevIssuer, type DevIssuer } from './dev-issuer.js';
import { TokenGate } from './token-gate.js';
import { AuthError } from './gate.js';
import { authConfig } from './testing.js';

let dev: DevIssuer;
let gate: TokenGate;
before(async () => {
  dev = await startDevIssuer({ projectId: 'proj1' });
  gate = new TokenGate({ config: authConfig({ issuer: dev.url, audience: ['proj1'], rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 } } }) });
  await gate.keys.start();
});
after(async () => {
  gate.keys.stop();
  await dev.close();
});

const jwkish = fc.record(
  {
    kty: fc.constantFrom('RSA', 'EC', 'OKP', 'oct', 'x'),
    kid: fc.oneof(fc.string(), fc.integer()),
    crv: fc.constantFrom('P-256', 'P-384', 'Ed25519', 'X'),
    n: fc.string(),
    e: fc.string(),
    x: fc.string(),
    y: fc.string(),
    use: fc.constantFrom('sig', 'enc'),
    alg: fc.constantFrom('RS256', 'ES256', 'HS256', 'none'),
  },
  { requiredKeys: [] },
);

test('property: JWKS documents parse to public signature keys or a JWKS error', () => {
  fc.assert(
    fc.property(fc.oneof(fc.jsonValue(), fc.record({ keys: fc.array(fc.oneof(jwkish, fc.jsonValue())) })), (doc) => {
      try {
        for (const jwk of parseJwks(doc, ['RS256', 'ES256']).values()) {
          assert.ok(jwk.kty === 'RSA' || jwk.kty === 'EC');
          assert.equal((jwk as Record<string, unknown>).d, undefined);
        }
      } catch (err) {
        assert.match((err as Error).message, /^JWKS: /);
      }
    }),
    { numRuns: 2000 },
  );
});

test('property: application key files parse or fail with a message naming the file', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify(v) ?? ''),
      ),
      (text) => {
        try {
          parseAppKeyFile(text, 'key.json');
        } catch (err) {
          assert.match((err as Error).message, /^key\.json: /);
        }
      },
    ),
    { numRuns: 1000 },
  );
});

test('property: random tokens through the whole gate give AuthError only', async () => {
  const b64 = fc.string().map((s) => Buffer.from(s).toString('base64url'));
  const headerJson = fc.record(
    { alg: fc.constantFrom('RS256', 'ES256', 'none', 'HS256', 'PS256'), kid: fc.oneof(fc.constant(dev.currentKid()), fc.string(), fc.integer()) },
    { requiredKeys: [] },
  );
  const shaped = fc
    .tuple(
      headerJson.map((h) => Buffer.from(JSON.stringify(h)).toString('base64url')),
      fc.oneof(
        b64,
        fc.jsonValue().map((v) => Buffer.from(JSON.stringify(v) ?? '').toString('base64url')),
      ),
      b64,
    )
    .map(([h, p, s]) => `${h}.${p}.${s}`);
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string(), shaped), async (token) => {
      try {
        await gate.authorize(token, 'masque-connect-ip', '192.0.2.9');
        assert.fail('a random token was accepted');
      } catch (err) {
        assert.ok(err instanceof AuthError, String(err));
        assert.ok(['INVALID_TOKEN', 'ISSUER_UNAVAILABLE'].includes(err.code), err.code);
      }
    }),
    { numRuns: 500 },
  );
});
