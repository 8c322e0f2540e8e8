import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { errorCode } from '../dataplane/index.js';
import { Registry } from 'prom-client';
import { openPostgresRegistry, PostgresConnector } from './postgres.js';
import { openSqliteRegistry } from './sqlite.js';
import type { SqlRegistryStore } from './sql-store.js';
import { SCHEMA_VERSION } from './schema.js';
import { postgresStore, randomKey, registration, registrationBurst, withPostgres } from './testing.js';

/** The behaviour both backends share. */
async function semantics(store: SqlRegistryStore): Promise<void> {
  assert.equal(await store.migrate(), SCHEMA_VERSION);
  assert.equal(await store.migrate(), SCHEMA_VERSION, 'migrating twice is a no-op');
  const k1 = randomKey();
  const a = await store.register(registration('alice', k1, 1000));
  assert.equal(a.created, true);
  assert.equal(a.peer.ipv4, '10.77.0.2');
  assert.equal(a.seq, 1);
  // A renewal with a later expiry is a change; one with the same expiry is not.
  const renewed = await store.register({ ...registration('alice', k1, 2000), expiresAt: a.peer.expiresAt + 10 });
  assert.deepEqual([renewed.created, renewed.seq, renewed.peer.ipv4], [false, 2, '10.77.0.2']);
  assert.equal((await store.register({ ...registration('alice', k1, 2000), expiresAt: 5 })).seq, 2);
  await assert.rejects(store.register(registration('bob', k1)), (e) => errorCode(e) === 'KEY_IN_USE');
  await assert.rejects(store.register({ ...registration('alice'), deviceLimit: 1 }), (e) => errorCode(e) === 'DEVICE_LIMIT');
  const k2 = randomKey();
  assert.equal((await store.register(registration('bob', k2))).peer.ipv4, '10.77.0.3');
  assert.equal(await store.revoke(k2, 'stolen laptop', 3000), true);
  await assert.rejects(store.register(registration('bob', k2)), (e) => errorCode(e) === 'FORBIDDEN');
  assert.deepEqual(
    (await store.revocations()).map((r) => [r.publicKey, r.subject, r.reason]),
    [[k2, 'bob', 'stolen laptop']],
  );
  // The freed address is leased again.
  assert.equal((await store.register(registration('carol'))).peer.ipv4, '10.77.0.3');
  assert.equal(await store.removePeer(k1, 'deleted', 'mallory'), false, "only the subject's own");
  assert.equal(await store.addDeny('192.0.2.0/24', 10, 'scanner'), true);
  assert.equal(await store.addDeny('192.0.2.0/24', 11), false);
  assert.deepEqual(await store.denyList(), [{ prefix: '192.0.2.0/24', addedAt: 10, comment: 'scanner' }]);
  await store.recordEndpoints([{ publicKey: k1, endpoint: '198.51.100.7:40000', at: 50, pop: 'a' }]);
  await store.recordEndpoints([{ publicKey: k1, endpoint: '198.51.100.7:1', at: 40, pop: 'b' }]); // older news loses
  assert.deepEqual(await store.endpoints('wg0'), [{ publicKey: k1, endpoint: '198.51.100.7:40000', at: 50, pop: 'a' }]);
  // PoP liveness: an upsert per PoP, outside the change log.
  const headBefore = await store.head();
  await store.reportPop({ name: 'pop-b', seenAt: 10, serving: true });
  await store.reportPop({ name: 'pop-a', seenAt: 20, serving: true });
  await store.reportPop({ name: 'pop-b', seenAt: 30, serving: false });
  assert.deepEqual(await store.pops(), [
    { name: 'pop-a', seenAt: 20, serving: true },
    { name: 'pop-b', seenAt: 30, serving: false },
  ]);
  assert.equal(await store.head(), headBefore);
  const short = await store.register({ ...registration('dave'), expiresAt: 100 });
  assert.deepEqual(
    (await store.expire(200)).map((p) => p.publicKey),
    [short.peer.publicKey],
  );
  assert.equal(await store.removeDeny('192.0.2.0/24'), true);
  const changes = await store.changesSince(0, 100);
  assert.deepEqual(
    changes.map((c) => `${c.seq}:${c.kind}`),
    ['1:peer.put', '2:peer.put', '3:peer.put', '4:peer.delete', '5:peer.put', '6:deny.add', '7:peer.put', '8:peer.delete', '9:deny.delete'],
  );
  assert.equal(await store.head(), 9);
  assert.deepEqual(
    (await store.changesSince(7, 1)).map((c) => c.seq),
    [8],
  );
  assert.equal(await store.pruneChanges(3), 6);
  assert.deepEqual(
    (await store.changesSince(0, 100)).map((c) => c.seq),
    [7, 8, 9],
  );
  assert.equal(await store.pruneChanges(3), 0);
  const snap = await store.snapshot();
  assert.equal(snap.seq, 9);
  assert.deepEqual(snap.peers.map((p) => p.subject).sort(), ['alice', 'carol']);
  // Importing peers with their addresses: a taken key, a taken address and a revoked key are skipped.
  const fresh = { publicKey: randomKey(), iface: 'wg0', subject: 'erin', ipv4: '10.77.0.9', createdAt: 1, expiresAt: 10_000_000 };
  const imported = await store.importPeers([
    fresh,
    { ...fresh, publicKey: randomKey(), subject: 'frank' },
    { ...fresh, publicKey: k1, ipv4: '10.77.0.10' },
    { ...fresh, publicKey: k2, ipv4: '10.77.0.11' },
  ]);
  assert.deepEqual(imported, [fresh]);
  assert.deepEqual(await store.getPeer(fresh.publicKey), fresh);
  assert.deepEqual(
    (await store.changesSince(9, 10)).map((c) => `${c.seq}:${c.kind}`),
    ['10:peer.put'],
  );
}

test('SQLite registry: leases, renewals, limits, revocations, deny list, endpoints, numbered changes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-reg-'));
  const store = openSqliteRegistry(join(dir, 'registry.db'));
  try {
    await semantics(store);
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('PostgreSQL registry (mutual TLS): the same behaviour as SQLite', async () => {
  await withPostgres(async (h) => {
    const store = postgresStore(h);
    try {
      await semantics(store);
    } finally {
      await store.close();
    }
  });
});

test('PostgreSQL: two agents migrating at once, then 200 concurrent registrations through two stores get 200 distinct addresses', async () => {
  await withPostgres(async (h) => {
    const a = postgresStore(h);
    const b = postgresStore(h);
    try {
      assert.deepEqual(await Promise.all([a.migrate(), b.migrate(), a.migrate()]), [SCHEMA_VERSION, SCHEMA_VERSION, SCHEMA_VERSION]);
      assert.equal((await h.psql('SELECT count(*) FROM registry_migrations', h.database)).trim(), String(SCHEMA_VERSION));
      const t0 = performance.now();
      const outcomes = await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).register(registration(`user${i}`))));
      const ms = performance.now() - t0;
      const addrs = new Set(outcomes.map((o) => o.peer.ipv4));
      assert.equal(addrs.size, 200, 'no address handed out twice');
      assert.equal((await a.peers()).length, 200);
      assert.deepEqual(
        outcomes.map((o) => o.seq).sort((x, y) => x - y),
        Array.from({ length: 200 }, (_, i) => i + 1),
        'change numbers 1..200 without gaps',
      );
      // The database's own constraint, not only the code, holds the lease unique.
      await assert.rejects(h.psql(`UPDATE registry_peers SET ipv4 = '10.77.0.2' WHERE ipv4 = '10.77.0.3'`, h.database), /duplicate key/);
      console.log(`# 200 concurrent registrations over two stores: ${ms.toFixed(0)} ms (${((200 / ms) * 1000).toFixed(0)}/s)`);
    } finally {
      await a.close();
      await b.close();
    }
  });
});

test('PostgreSQL: kill -9 during a burst of registrations loses none that was acknowledged', async () => {
  await withPostgres(async (h) => {
    const stores = [postgresStore(h), postgresStore(h)];
    try {
      await stores[0]!.migrate();
      const burst = registrationBurst(stores, 2);
      const { acked, failures } = burst;
      await new Promise((r) => setTimeout(r, 700));
      const before = acked.length;
      await h.kill9();
      await new Promise((r) => setTimeout(r, 500));
      await h.resume();
      await new Promise((r) => setTimeout(r, 700));
      await burst.stop();
      assert.ok(before > 10, `registrations before the kill: ${before}`);
      assert.ok(acked.length > before, 'registrations work again after the restart, without reopening the stores');
      assert.deepEqual(
        [...failures.keys()].filter((c) => c !== 'UNAVAILABLE'),
        [],
        'failures are UNAVAILABLE (503)',
      );
      const inDb = new Set((await stores[1]!.peers()).map((p) => p.publicKey));
      const lost = acked.filter((k) => !inDb.has(k));
      assert.deepEqual(lost, [], 'every acknowledged registration is in the database');
      console.log(
        `# kill -9 burst: ${acked.length} acknowledged (${before} before the kill), ${[...failures.values()].reduce((x, y) => x + y, 0)} refused with 503`,
      );
    } finally {
      for (const s of stores) await s.close();
    }
  });
});

test('PostgreSQL: requests beyond registry.postgres.maxPending are refused at once with LIMIT_EXCEEDED, and counted', async () => {
  await withPostgres(async (h) => {
    const metrics = new Registry();
    const role = h.roles[0]!;
    const connector = new PostgresConnector({ url: h.url(role), passwordFile: h.passwordFile(role), poolSize: 2, maxPending: 5, metrics });
    const store = openPostgresRegistry(connector);
    try {
      await store.migrate();
      const results = await Promise.allSettled(Array.from({ length: 20 }, () => store.getPeer(randomKey())));
      const refused = results.filter((r) => r.status === 'rejected');
      assert.equal(results.length - refused.length, 5, 'the first five are served');
      assert.ok(refused.every((r) => errorCode(r.reason) === 'LIMIT_EXCEEDED'));
      const m = (await metrics.getMetricsAsJSON()).find((x) => x.name === 'cbr_registry_db_rejected_total');
      assert.equal(m?.values[0]?.value, 15);
      assert.equal(await store.getPeer(randomKey()), undefined, 'served again once the others are done');
    } finally {
      await store.close();
    }
  });
});
