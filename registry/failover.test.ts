import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresHost, waitFor } from '../testhosts/index.js';
import { ChangeFeed, postgresFeedSource } from './feed.js';
import { CHANGE_CHANNEL, openPostgresRegistry } from './postgres.js';
import { openSqliteRegistry } from './sqlite.js';
import { connectorFor, registration, registrationBurst } from './testing.js';

test('fail-over: a multi-host URL with target_session_attrs=read-write skips the standby, follows its promotion, loses no acknowledged registration', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-failover-'));
  const primary = await PostgresHost.start();
  let replica: PostgresHost | undefined;
  try {
    replica = await PostgresHost.startReplica(primary);
    // Synchronous replication: a commit is acknowledged only once the standby has it.
    await primary.psql("ALTER SYSTEM SET synchronous_standby_names = '*'");
    await primary.psql('SELECT pg_reload_conf()');
    await waitFor(
      'the standby to stream synchronously',
      async () => ((await primary.psql('SELECT sync_state FROM pg_stat_replication')).trim() === 'sync' ? true : undefined),
      15_000,
    );
    assert.equal((await replica.psql('SELECT pg_is_in_recovery()')).trim(), 't');
    // The standby is listed first: it must be skipped.
    const tls = new URLSearchParams({
      sslmode: 'verify-full',
      sslrootcert: primary.caFile,
      sslcert: primary.clientTls('cbr').certFile,
      sslkey: primary.clientTls('cbr').keyFile,
      target_session_attrs: 'read-write',
    });
    const url = `postgres://cbr@${replica.address}:${replica.port},${primary.address}:${primary.port}/${primary.database}?${tls}`;
    const connector = connectorFor(primary, { url });
    const store = openPostgresRegistry(connector);
    const followerConnector = connectorFor(primary, { url });
    const followerSource = openPostgresRegistry(followerConnector);
    const local = openSqliteRegistry(join(dir, 'copy.db'));
    await local.migrate();
    const feed = new ChangeFeed(
      postgresFeedSource(followerSource, () => followerConnector.connect(), CHANGE_CHANNEL),
      local,
      {
        catchUpIntervalMs: 1000,
        reconnectMinMs: 100,
        reconnectMaxMs: 500,
      },
    );
    try {
      await store.migrate();
      await store.register(registration('first'));
      assert.equal((await primary.psql('SELECT count(*) FROM registry_peers', primary.database)).trim(), '1', 'written to the primary');
      await feed.start();
      await waitFor('the follower at change 1', async () => (feed.lastApplied === 1 ? true : undefined), 10_000, 20);

      const burst = registrationBurst([store], 3, 50);
      const { acked, failures } = burst;
      await waitFor('registrations under way', async () => (acked.length >= 5 ? true : undefined), 15_000, 10);
      const beforeKill = acked.length;
      const t0 = performance.now();
      await primary.kill9();
      await replica.promote();
      const ackedAtPromotion = acked.length;
      await waitFor('a registration on the promoted standby', async () => (acked.length > ackedAtPromotion ? true : undefined), 20_000, 20);
      const gapMs = performance.now() - t0;
      await burst.stop();
      assert.deepEqual(
        [...failures.keys()].filter((c) => c !== 'UNAVAILABLE'),
        [],
        'failures are UNAVAILABLE (503)',
      );
      const inDb = new Set((await store.peers()).map((p) => p.publicKey));
      assert.deepEqual(
        acked.filter((k) => !inDb.has(k)),
        [],
        'every acknowledged registration is on the promoted standby',
      );
      const head = await store.head();
      assert.equal((await store.changesSince(0, 100_000)).length, head, 'change numbers without gaps');
      // The follower found the new primary by itself and caught up.
      await waitFor('the follower to catch up on the new primary', async () => (feed.connected && feed.lastApplied === head ? true : undefined), 15_000, 20);
      assert.deepEqual(await local.peers(), await store.peers());
      console.log(
        `# fail-over: ${acked.length} acknowledged (${beforeKill} before kill -9), writes back ${gapMs.toFixed(0)} ms after the kill (promotion included)`,
      );
    } finally {
      await feed.stop();
      await local.close();
      await followerSource.close();
      await store.close();
    }
  } finally {
    await replica?.stop();
    await primary.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
