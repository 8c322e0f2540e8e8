import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { waitFor, type PostgresHost } from '../testhosts/index.js';
import { errorCode } from '../dataplane/index.js';
import type { Change } from './change.js';
import { ChangeFeed, postgresFeedSource } from './feed.js';
import { CHANGE_CHANNEL } from './postgres.js';
import { openSqliteRegistry } from './sqlite.js';
import type { SqlRegistryStore } from './sql-store.js';
import { connectorFor, postgresStore, registration, withPostgres } from './testing.js';

interface Follower {
  feed: ChangeFeed;
  local: SqlRegistryStore;
  source: SqlRegistryStore;
  metrics: Registry;
  seen: Change[];
  close(): Promise<void>;
}

async function follow(h: PostgresHost, path: string, catchUpIntervalMs = 60_000): Promise<Follower> {
  const local = openSqliteRegistry(path);
  await local.migrate();
  const source = postgresStore(h);
  const connector = connectorFor(h);
  const metrics = new Registry();
  const feed = new ChangeFeed(
    postgresFeedSource(source, () => connector.connect(), CHANGE_CHANNEL),
    local,
    { catchUpIntervalMs, metrics, reconnectMinMs: 100, reconnectMaxMs: 500 },
  );
  const seen: Change[] = [];
  feed.on('change', (c) => seen.push(c));
  await feed.start();
  return {
    feed,
    local,
    source,
    metrics,
    seen,
    async close() {
      await feed.stop();
      await local.close();
      await source.close();
    },
  };
}

async function metric(r: Registry, name: string): Promise<number> {
  const m = (await r.getMetricsAsJSON()).find((x) => x.name === name);
  return Number(m?.values[0]?.value);
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-feed-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

interface Scene {
  h: PostgresHost;
  primary: SqlRegistryStore;
  path: string;
  /** The follower; a test may replace it (an agent restart), the scene closes the last one. */
  f: Follower;
}

/** PostgreSQL with `n` registrations and a follower that applied them all. */
async function withFollowerAt(n: number, fn: (s: Scene) => Promise<void>): Promise<void> {
  await withDir((dir) =>
    withPostgres(async (h) => {
      const primary = postgresStore(h);
      await primary.migrate();
      for (let i = 0; i < n; i++) await primary.register(registration(`user${i}`));
      const path = join(dir, 'copy.db');
      const scene: Scene = { h, primary, path, f: await follow(h, path) };
      try {
        await waitFor(`the follower at change ${n}`, async () => (scene.f.feed.lastApplied === n ? true : undefined), 10_000, 20);
        await fn(scene);
      } finally {
        await scene.f.close();
        await primary.close();
      }
    }),
  );
}

test('feed: a follower applies every change within a second, by notification alone', async () => {
  await withDir((dir) =>
    withPostgres(async (h) => {
      const primary = postgresStore(h);
      await primary.migrate();
      const f = await follow(h, join(dir, 'copy.db'));
      try {
        await waitFor('the feed to connect', async () => (f.feed.connected ? true : undefined), 10_000, 20);
        const delays: number[] = [];
        for (let i = 0; i < 60; i++) {
          const t0 = performance.now();
          const out =
            i === 30
              ? { seq: (await primary.revoke((await primary.peers())[0]!.publicKey, 'test', Date.now())) ? await primary.head() : -1 }
              : i === 40
                ? { seq: (await primary.addDeny('198.18.0.0/15', Date.now())) ? await primary.head() : -1 }
                : await primary.register(registration(`user${i}`));
          await waitFor(`change ${out.seq} at the follower`, async () => (f.feed.lastApplied >= out.seq ? true : undefined), 5000, 2);
          delays.push(performance.now() - t0);
        }
        assert.ok(percentile(delays, 100) < 1000, `slowest propagation ${percentile(delays, 100)} ms`);
        assert.deepEqual(
          f.seen.map((c) => c.seq),
          Array.from({ length: 60 }, (_, i) => i + 1),
          'every change once, in order',
        );
        assert.deepEqual(await f.local.peers(), await primary.peers(), 'the local copy equals the database');
        assert.deepEqual(await f.local.changesSince(0, 100), await primary.changesSince(0, 100), 'and so does its change log');
        assert.deepEqual(
          (await f.local.denyList()).map((d) => d.prefix),
          ['198.18.0.0/15'],
        );
        assert.equal(await metric(f.metrics, 'cbr_registry_last_applied_change'), 60);
        assert.equal(await metric(f.metrics, 'cbr_registry_feed_changes_behind'), 0);
        console.log(
          `# propagation (ack at the primary -> applied at the follower): p50 ${percentile(delays, 50).toFixed(1)} ms, p99 ${percentile(delays, 99).toFixed(1)} ms`,
        );
      } finally {
        await f.close();
        await primary.close();
      }
    }),
  );
});

/** Appends a deny-list change the way a writer would, but without NOTIFY (a lost notification). */
async function silentChange(h: PostgresHost, prefix: string): Promise<void> {
  await h.psql(
    `BEGIN; UPDATE registry_counter SET seq = seq + 1 WHERE id = 1;
     INSERT INTO registry_deny (prefix, added_at) VALUES ('${prefix}', 1);
     INSERT INTO registry_changes (seq, at, kind, body) SELECT seq, 1, 'deny.add', '{"prefix":"${prefix}"}' FROM registry_counter;
     COMMIT;`,
    h.database,
  );
}

test('feed: a change whose notification was lost is caught up by number, on the next notification or the periodic read', async () => {
  await withDir((dir) =>
    withPostgres(async (h) => {
      const primary = postgresStore(h);
      await primary.migrate();
      await primary.register(registration('first'));
      const slow = await follow(h, join(dir, 'slow.db'));
      const periodic = await follow(h, join(dir, 'periodic.db'), 300);
      try {
        await waitFor(
          'both followers at change 1',
          async () => (slow.feed.lastApplied === 1 && periodic.feed.lastApplied === 1 ? true : undefined),
          10_000,
          20,
        );
        await silentChange(h, '203.0.113.0/24');
        await new Promise((r) => setTimeout(r, 400));
        assert.equal(slow.feed.lastApplied, 1, 'no notification: the slow follower has not seen it yet');
        // The periodic follower reads the log every 300 ms without any notification.
        await waitFor('the periodic follower to catch up', async () => (periodic.feed.lastApplied === 2 ? true : undefined), 2000, 20);
        // The next notified change (3) makes the slow follower read from 1: it gets 2 and 3, in order.
        const r = await primary.register(registration('second'));
        assert.equal(r.seq, 3);
        await waitFor('the slow follower to catch up', async () => (slow.feed.lastApplied === 3 ? true : undefined), 1000, 5);
        assert.deepEqual(
          slow.seen.map((c) => `${c.seq}:${c.kind}`),
          ['1:peer.put', '2:deny.add', '3:peer.put'],
        );
        assert.deepEqual(
          (await slow.local.denyList()).map((d) => d.prefix),
          ['203.0.113.0/24'],
        );
      } finally {
        await slow.close();
        await periodic.close();
        await primary.close();
      }
    }),
  );
});

test('feed: PostgreSQL stopped -> the local copy serves, also across an agent restart; reconnects and catches up when it returns', async () => {
  await withFollowerAt(5, async (s) => {
    const disconnected = new Promise<void>((resolve) => s.f.feed.once('disconnected', () => resolve()));
    await s.h.halt();
    await disconnected;
    assert.equal(s.f.feed.connected, false);
    assert.equal((await s.f.local.peers()).length, 5, 'the local copy still answers');
    await assert.rejects(s.primary.register(registration('during')), (e) => errorCode(e) === 'UNAVAILABLE');
    assert.equal(await metric(s.f.metrics, 'cbr_registry_feed_reconnects_total'), 1);
    await new Promise((r) => setTimeout(r, 1100));
    assert.ok((await metric(s.f.metrics, 'cbr_registry_feed_lag_seconds')) >= 1, 'lag grows while the database is away');
    // The agent restarts while the database is down: the copy is on disk.
    await s.f.close();
    s.f = await follow(s.h, s.path);
    assert.equal(s.f.feed.lastApplied, 5);
    assert.equal((await s.f.local.peers()).length, 5, 'the copy survives the restart');
    assert.equal(s.f.feed.connected, false);
    await s.h.resume();
    await waitFor('the feed to reconnect', async () => (s.f.feed.connected ? true : undefined), 10_000, 20);
    const r = await s.primary.register(registration('after'));
    assert.equal(r.seq, 6, 'the primary store reselects without being reopened');
    await waitFor('the follower at change 6', async () => (s.f.feed.lastApplied === 6 ? true : undefined), 1000, 5);
    assert.equal((await s.f.local.peers()).length, 6);
    assert.equal(await metric(s.f.metrics, 'cbr_registry_feed_lag_seconds'), 0);
  });
});

test('feed: a follower whose position the log no longer reaches copies a snapshot', async () => {
  await withDir((dir) =>
    withPostgres(async (h) => {
      const primary = postgresStore(h);
      await primary.migrate();
      for (let i = 0; i < 4; i++) await primary.register(registration(`user${i}`));
      await primary.addDeny('192.0.2.0/24', 5);
      await h.psql('DELETE FROM registry_changes WHERE seq <= 3', h.database); // pruned
      const f = await follow(h, join(dir, 'copy.db'));
      try {
        await waitFor('the follower at change 5', async () => (f.feed.lastApplied === 5 ? true : undefined), 10_000, 20);
        assert.deepEqual(await f.local.peers(), await primary.peers());
        assert.deepEqual(
          (await f.local.denyList()).map((d) => d.prefix),
          ['192.0.2.0/24'],
        );
        await primary.register(registration('next'));
        await waitFor('the follower at change 6', async () => (f.feed.lastApplied === 6 ? true : undefined), 1000, 5);
      } finally {
        await f.close();
        await primary.close();
      }
    }),
  );
});

test("feed: a database whose history differs from the copy's (fail-over lost changes, restore) is copied by snapshot", async () => {
  await withFollowerAt(5, async (s) => {
    await s.f.close();
    // The database loses changes 4 and 5 (an asynchronous replica promoted) and takes another 4 and 5.
    await s.h.psql(
      `BEGIN; DELETE FROM registry_changes WHERE seq >= 4; UPDATE registry_counter SET seq = 3 WHERE id = 1;
       DELETE FROM registry_peers WHERE subject IN ('user3', 'user4'); COMMIT;`,
      s.h.database,
    );
    await s.primary.register(registration('other3'));
    await s.primary.register(registration('other4'));
    s.f = await follow(s.h, s.path);
    await waitFor(
      'the copy to equal the database',
      async () => {
        const [ours, theirs] = [await s.f.local.peers(), await s.primary.peers()];
        return JSON.stringify(ours) === JSON.stringify(theirs) ? true : undefined;
      },
      10_000,
      20,
    );
    assert.equal(s.f.feed.lastApplied, 5);
    assert.deepEqual((await s.f.local.peers()).map((p) => p.subject).sort(), ['other3', 'other4', 'user0', 'user1', 'user2']);
    // The same position with the same history: no snapshot, just the next change.
    let resynced = false;
    s.f.feed.on('resync', () => (resynced = true));
    await s.primary.register(registration('next'));
    await waitFor('the follower at change 6', async () => (s.f.feed.lastApplied === 6 ? true : undefined), 1000, 5);
    assert.equal(resynced, false);
  });
});
