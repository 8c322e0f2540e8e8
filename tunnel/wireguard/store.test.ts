import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LeaseStore } from './store.js';

const K1 = Buffer.alloc(32, 1).toString('base64');
const K2 = Buffer.alloc(32, 2).toString('base64');

test('leases survive reopening; WAL; addresses are unique per interface; expiry query', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-wgstore-'));
  try {
    const path = join(dir, 'leases.db');
    let s = new LeaseStore(path);
    assert.equal(s.journalMode, 'wal');
    s.transaction(() => s.insert({ publicKey: K1, iface: 'wg0', subject: 'alice', ipv4: '10.0.0.2', ipv6: 'fd00::2', createdAt: 1, expiresAt: 1000 }));
    assert.throws(() => s.insert({ publicKey: K2, iface: 'wg0', subject: 'bob', ipv4: '10.0.0.2', createdAt: 1, expiresAt: 2000 }), /UNIQUE/);
    s.insert({ publicKey: K2, iface: 'wg1', subject: 'bob', ipv4: '10.0.0.2', createdAt: 1, expiresAt: 2000 });
    s.close();
    s = new LeaseStore(path);
    assert.deepEqual(s.get(K1), { publicKey: K1, iface: 'wg0', subject: 'alice', ipv4: '10.0.0.2', ipv6: 'fd00::2', createdAt: 1, expiresAt: 1000 });
    assert.deepEqual([...s.usedAddresses('wg0', 4)], ['10.0.0.2']);
    assert.equal(s.countForSubject('bob'), 1);
    assert.deepEqual(
      s.expired(1500).map((l) => l.publicKey),
      [K1],
    );
    assert.throws(
      () =>
        s.transaction(() => {
          s.remove(K1);
          throw new Error('roll back');
        }),
      /roll back/,
    );
    assert.ok(s.get(K1), 'a throwing transaction rolls back');
    s.extend(K1, 5000);
    assert.equal(s.get(K1)!.expiresAt, 5000);
    assert.ok(s.remove(K1));
    assert.ok(!s.remove(K1));
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
