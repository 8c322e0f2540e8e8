import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { CbrError } from '../dataplane/index.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateKeyPairSync } from 'node:crypto';
import { startDevIssuer, type DevIssuer } from './dev-issuer.js';
import { TokenGate } from './token-gate.js';
import { parseAppKeyFile, loadAppKeyFile } from './introspect.js';
import { authConfig, rejection } from './testing.js';

let dev: DevIssuer;
let dir: string;
let keyFile: string;
const gates: TokenGate[] = [];
before(async () => {
  dev = await startDevIssuer({ projectId: 'proj1' });
  dir = mkdtempSync(join(tmpdir(), 'cbr-auth-'));
  keyFile = join(dir, 'app-key.json');
  writeFileSync(keyFile, JSON.stringify(dev.createAppKey('cbr-pop@proj1')), { mode: 0o600 });
});
after(async () => {
  for (const g of gates) g.keys.stop();
  await dev.close();
  rmSync(dir, { recursive: true, force: true });
});

async function gateFor(introspection: Record<string, unknown>): Promise<TokenGate> {
  const g = new TokenGate({
    config: authConfig({
      issuer: dev.url,
      audience: ['proj1'],
      introspection: { keyFile, ...introspection },
      rateLimit: { perSubject: { rate: 0 }, perSource: { rate: 0 } },
    }),
  });
  gates.push(g);
  await g.keys.start();
  return g;
}

test('introspect-opaque: an active opaque token yields its identity; inactive and unknown ones are refused', async () => {
  const g = await gateFor({ mode: 'introspect-opaque', cacheTtl: '0s' });
  const opaque = dev.mintOpaque({ subject: 'svc-7', roles: ['vpn-user'] });
  const id = await g.authorize(opaque, 'wireguard-register');
  assert.equal(id.subject, 'svc-7');
  assert.deepEqual(id.roles, ['vpn-user']);
  dev.revoke(opaque);
  const e = await rejection(g.authorize(opaque, 'wireguard-register'));
  assert.equal(e.code, 'INVALID_TOKEN');
  assert.match(e.message, /not active/);
  assert.equal((await rejection(g.authorize('made-up-opaque-token', 'wireguard-register'))).code, 'INVALID_TOKEN');
  // Claims from introspection get the same checks as a JWT's.
  assert.equal((await rejection(g.authorize(dev.mintOpaque({ roles: ['vpn-user'], audience: 'someone-else' }), 'wireguard-register'))).code, 'WRONG_AUDIENCE');
  assert.equal((await rejection(g.authorize(dev.mintOpaque({ roles: [] }), 'wireguard-register'))).code, 'MISSING_ROLE');
  // JWTs are still verified locally in this mode (no introspection needed).
  await g.authorize(await dev.mint({ roles: ['vpn-user'] }), 'wireguard-register');
});

test('introspect-always: a revoked JWT is refused; active answers are cached for cacheTtl', async () => {
  const g = await gateFor({ mode: 'introspect-always', cacheTtl: '30s' });
  const jwt = await dev.mint({ roles: ['vpn-user'] });
  await g.authorize(jwt, 'masque-connect-ip');
  dev.revoke(jwt);
  await g.authorize(jwt, 'masque-connect-ip'); // within the positive cache
  const fresh = await gateFor({ mode: 'introspect-always', cacheTtl: '0s' });
  assert.equal((await rejection(fresh.authorize(jwt, 'masque-connect-ip'))).code, 'INVALID_TOKEN');
});

test('client authentication rejected by the issuer: ISSUER_UNAVAILABLE that names the key file', async () => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = join(dir, 'stranger.json');
  writeFileSync(
    stranger,
    JSON.stringify({ type: 'application', keyId: '1', key: privateKey.export({ type: 'pkcs1', format: 'pem' }), appId: '2', clientId: 'unknown@proj1' }),
    { mode: 0o600 },
  );
  const g = new TokenGate({ config: authConfig({ issuer: dev.url, audience: ['proj1'], introspection: { mode: 'introspect-opaque', keyFile: stranger } }) });
  gates.push(g);
  const e = await rejection(g.authorize(dev.mintOpaque({ roles: ['vpn-user'] }), 'masque-connect-ip'));
  assert.equal(e.code, 'ISSUER_UNAVAILABLE');
  assert.match(e.message, /rejected our client authentication.*keyFile/);
  // Right client ID, wrong key: also rejected.
  const wrongKey = join(dir, 'wrong-key.json');
  writeFileSync(
    wrongKey,
    JSON.stringify({ type: 'application', keyId: '1', key: privateKey.export({ type: 'pkcs1', format: 'pem' }), clientId: 'cbr-pop@proj1' }),
    { mode: 0o600 },
  );
  const g2 = new TokenGate({ config: authConfig({ issuer: dev.url, audience: ['proj1'], introspection: { mode: 'introspect-opaque', keyFile: wrongKey } }) });
  gates.push(g2);
  assert.equal((await rejection(g2.authorize(dev.mintOpaque({ roles: ['vpn-user'] }), 'masque-connect-ip'))).code, 'ISSUER_UNAVAILABLE');
});

test('jwt-only refuses opaque tokens; key files are checked field by field', async () => {
  const g = new TokenGate({ config: authConfig({ issuer: dev.url, audience: ['proj1'] }) });
  gates.push(g);
  assert.equal((await rejection(g.authorize(dev.mintOpaque({ roles: ['vpn-user'] }), 'masque-connect-ip'))).code, 'INVALID_TOKEN');
  assert.throws(() => parseAppKeyFile('{', 'f.json'), /f.json: not JSON/);
  assert.throws(() => parseAppKeyFile('{"type":"application","keyId":"1","key":"k"}', 'f.json'), /f.json: clientId: expected a non-empty string/);
  assert.throws(() => loadAppKeyFile(join(dir, 'missing.json'), 'auth.introspection.keyFile'), /auth.introspection.keyFile: cannot read .*ENOENT/);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ type: 'application', keyId: '1', key: 'not a pem', clientId: 'c' }), { mode: 0o600 });
  assert.throws(() => loadAppKeyFile(bad, 'auth.introspection.keyFile'), /key: expected a PEM private key/);
});

test('an application key file that the group or others may read is refused, naming the file and its mode', () => {
  const loose = join(dir, 'loose-key.json');
  writeFileSync(loose, JSON.stringify(dev.createAppKey('cbr-pop@proj1')), { mode: 0o640 });
  chmodSync(loose, 0o640);
  assert.throws(
    () => new TokenGate({ config: authConfig({ issuer: dev.url, audience: ['proj1'], introspection: { mode: 'introspect-opaque', keyFile: loose } }) }),
    (err: unknown) =>
      err instanceof CbrError &&
      err.code === 'FILE_PERMISSIONS' &&
      err.message ===
        `auth.introspection.keyFile: ${loose} holds a secret but has mode 0640 (group or others may access it); chmod 600 ${loose} (and check who may have read it)`,
  );
});
