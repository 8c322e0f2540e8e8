import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { chmodSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { runCli, freePort, CLI_PATH } from '../dataplane/testing.js';
import { EXIT } from '../dataplane/index.js';
import { startDevIssuer, type DevIssuer } from './dev-issuer.js';

let dev: DevIssuer;
let dir: string;
before(async () => {
  dev = await startDevIssuer({ projectId: 'proj1' });
  dir = mkdtempSync(join(tmpdir(), 'cbr-auth-cli-'));
});
after(async () => {
  await dev.close();
  rmSync(dir, { recursive: true, force: true });
});

const verify = (...args: string[]) => ['auth', 'verify', '--issuer', dev.url, '--audience', 'proj1', ...args];

test('cbr auth verify: identity JSON and exit 0; the error code on stderr and its exit status', async () => {
  const token = await dev.mint({ subject: 'op-1', roles: ['vpn-user'] });
  const ok = await runCli(verify('--role', 'vpn-user', '--token', token));
  assert.equal(ok.code, 0, ok.stderr);
  const id = JSON.parse(ok.stdout);
  assert.equal(id.subject, 'op-1');
  assert.deepEqual(id.roles, ['vpn-user']);

  const file = join(dir, 'token');
  writeFileSync(file, `Bearer ${token}\n`, { mode: 0o644 });
  const loose = await runCli(verify('--token-file', file));
  assert.equal(loose.code, EXIT.NO_PERM);
  assert.match(loose.stderr, new RegExp(`--token-file: ${file} holds a secret but has mode 0644 .*chmod 600`));
  chmodSync(file, 0o600);
  assert.equal((await runCli(verify('--token-file', file))).code, 0);
  assert.equal((await runCli(verify('-'), { input: token })).code, 0);

  const cases: Array<[string[], string, number]> = [
    [verify('--role', 'admin', '--token', token), 'MISSING_ROLE', EXIT.NO_PERM],
    [verify('--token', await dev.mint({ expiresIn: -600 })), 'EXPIRED', EXIT.NO_PERM],
    [verify('--token', await dev.mint({ notBefore: 600 })), 'NOT_YET_VALID', EXIT.NO_PERM],
    [['auth', 'verify', '--issuer', dev.url, '--audience', 'other', '--token', token], 'WRONG_AUDIENCE', EXIT.NO_PERM],
    [verify('--token', await dev.mint({ issuer: 'http://elsewhere' })), 'WRONG_ISSUER', EXIT.NO_PERM],
    [verify('--token', 'garbage'), 'INVALID_TOKEN', EXIT.DATA],
    [['auth', 'verify', '--issuer', `http://127.0.0.1:${await freePort()}`, '--audience', 'proj1', '--token', token], 'ISSUER_UNAVAILABLE', EXIT.UNAVAILABLE],
  ];
  for (const [args, codeWanted, exitWanted] of cases) {
    const r = await runCli(args);
    assert.equal(r.code, exitWanted, `${codeWanted}: ${r.stdout}`);
    assert.match(r.stderr, new RegExp(`^cbr: ${codeWanted}: `), r.stderr);
    assert.equal(r.stdout, '');
    assert.ok(!r.stderr.includes(token.split('.')[2]!), 'the token is not echoed');
  }
  // Usage errors are one line too.
  const none = await runCli(verify());
  assert.equal(none.code, EXIT.USAGE);
  assert.match(none.stderr, /exactly one of --token/);
  const noAud = await runCli(['auth', 'verify', '--issuer', dev.url, '--token', token]);
  assert.equal(noAud.code, EXIT.USAGE);
  assert.match(noAud.stderr, /--audience: required/);
});

test('cbr dev-issuer: serves Zitadel endpoints, issues client_credentials tokens, rotates on SIGHUP', async () => {
  const port = await freePort();
  const cfg = join(dir, 'issuer.yaml');
  const keyFile = join(dir, 'introspect-key.json');
  writeFileSync(
    cfg,
    `serviceUsers:\n  - clientId: wg-bot\n    clientSecret: s3cret-s3cret\n    subject: "300000000000000001"\n    roles: [vpn-user, admin]\napps:\n  - clientId: cbr-pop\n    keyFile: ${keyFile}\n`,
  );
  const proc = spawn(process.execPath, [CLI_PATH, 'dev-issuer', '--listen', `127.0.0.1:${port}`, '--project-id', 'proj9', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = createInterface({ input: proc.stdout! })[Symbol.asyncIterator]();
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += d));
  try {
    const first = JSON.parse(((await lines.next()).value as string) ?? '{}');
    const url = `http://127.0.0.1:${port}`;
    assert.equal(first.issuer, url, stderr);
    const disco = (await (await fetch(`${url}/.well-known/openid-configuration`)).json()) as Record<string, string>;
    assert.equal(disco.jwks_uri, `${url}/oauth/v2/keys`);
    assert.equal(disco.introspection_endpoint, `${url}/oauth/v2/introspect`);

    const tok = await runCli(['auth', 'token', '--issuer', url, '--client-id', 'wg-bot', '--client-secret', 's3cret-s3cret', '--project-id', 'proj9']);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim();
    const v = await runCli([
      'auth',
      'verify',
      '--issuer',
      url,
      '--audience',
      'proj9',
      '--role',
      'admin',
      '--token',
      token,
      '--introspect',
      'introspect-always',
      '--key-file',
      keyFile,
    ]);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(JSON.parse(v.stdout).subject, '300000000000000001');
    const bad = await runCli(['auth', 'token', '--issuer', url, '--client-id', 'wg-bot', '--client-secret', 'wrong']);
    assert.equal(bad.code, EXIT.NO_PERM);
    assert.match(bad.stderr, /HTTP 401/);

    proc.kill('SIGHUP');
    const rotated = JSON.parse(((await lines.next()).value as string) ?? '{}');
    assert.equal(rotated.msg, 'signing key rotated');
    assert.notEqual(rotated.kid, first.kid);
    const minted = (await (await fetch(`${url}/admin/mint`, { method: 'POST', body: JSON.stringify({ roles: ['vpn-user'] }) })).json()) as {
      access_token: string;
    };
    const header = JSON.parse(Buffer.from(minted.access_token.split('.')[0]!, 'base64url').toString());
    assert.equal(header.kid, rotated.kid);
    assert.equal((await runCli(['auth', 'verify', '--issuer', url, '--audience', 'proj9', '--token', minted.access_token])).code, 0);
  } finally {
    proc.kill('SIGTERM');
    const [code] = await once(proc, 'exit');
    assert.equal(code, 0, stderr);
  }
  const noProject = await runCli(['dev-issuer', '--listen', '127.0.0.1:0']);
  assert.equal(noProject.code, EXIT.USAGE);
  assert.match(noProject.stderr, /--project-id: required/);
});
