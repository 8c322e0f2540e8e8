import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync, readFileSync } from 'node:fs';
import { CbrError } from '../../dataplane/index.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePrivateKey, publicKeyFor, loadOrCreatePrivateKey } from './keys.js';

test('public keys match `wg pubkey` for keys from `wg genkey` and from generatePrivateKey()', () => {
  for (let i = 0; i < 5; i++) {
    const fromWg = execFileSync('wg', ['genkey']).toString().trim();
    assert.equal(
      publicKeyFor(fromWg),
      execFileSync('wg', ['pubkey'], { input: `${fromWg}\n` })
        .toString()
        .trim(),
    );
    const ours = generatePrivateKey();
    assert.equal(
      publicKeyFor(ours),
      execFileSync('wg', ['pubkey'], { input: `${ours}\n` })
        .toString()
        .trim(),
    );
  }
});

test('a missing key file is generated with mode 0600 and reported; an existing one is read; a bad one names the field', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-wgkey-'));
  try {
    const path = join(dir, 'sub', 'wg0.key');
    const reported: string[] = [];
    const a = loadOrCreatePrivateKey(path, 'f.privateKeyFile', (p, pub) => reported.push(`${p} ${pub}`));
    assert.equal(reported.length, 1);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    assert.equal(readFileSync(path, 'utf8').trim(), a.privateKey);
    const b = loadOrCreatePrivateKey(path, 'f.privateKeyFile', () => assert.fail('must not generate again'));
    assert.deepEqual(b, a);
    chmodSync(path, 0o644);
    assert.throws(
      () => loadOrCreatePrivateKey(path, 'f.privateKeyFile', () => undefined),
      (err: unknown) =>
        err instanceof CbrError && err.code === 'FILE_PERMISSIONS' && err.message.startsWith(`f.privateKeyFile: ${path} holds a secret but has mode 0644`),
    );
    chmodSync(path, 0o600);
    writeFileSync(path, 'not a key\n');
    assert.throws(
      () => loadOrCreatePrivateKey(path, 'f.privateKeyFile', () => undefined),
      /f\.privateKeyFile: .* does not hold a base64 WireGuard private key/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
