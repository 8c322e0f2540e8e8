import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import pg from 'pg';
import { PostgresHost, processRunning } from './postgres.js';
import { withTopology } from './testhosts.js';

function tlsClient(h: PostgresHost, role: string, withCert = true): pg.Client {
  const tls = h.clientTls(role);
  return new pg.Client({
    host: h.address,
    port: h.port,
    database: h.database,
    user: role,
    password: readFileSync(h.passwordFile(role), 'utf8').trim(),
    ssl: {
      ca: readFileSync(tls.caFile),
      rejectUnauthorized: true,
      ...(withCert ? { cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) } : {}),
    },
    connectionTimeoutMillis: 5000,
  });
}

test('PostgreSQL on loopback: verify-full mTLS, LISTEN/NOTIFY round trip, nothing left after stop', async () => {
  const h = await PostgresHost.start({ roles: ['cbr', 'other'] });
  let pid: number | undefined;
  try {
    pid = h.postmasterPid();
    assert.ok(pid, 'postmaster runs');
    const listener = tlsClient(h, 'cbr');
    const notifier = tlsClient(h, 'cbr');
    await listener.connect();
    await notifier.connect();
    try {
      const ssl = await listener.query<{ ssl: boolean; client_dn: string | null }>('SELECT ssl, client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      assert.equal(ssl.rows[0]?.ssl, true);
      assert.equal(ssl.rows[0]?.client_dn, '/CN=cbr');
      await listener.query('LISTEN cbr_test');
      const got = new Promise<string | undefined>((resolve) => listener.once('notification', (n) => resolve(n.payload)));
      const t0 = performance.now();
      await notifier.query("SELECT pg_notify('cbr_test', '42')");
      assert.equal(await got, '42');
      const ms = performance.now() - t0;
      assert.ok(ms < 1000, `notification took ${ms} ms`);
    } finally {
      await listener.end();
      await notifier.end();
    }
    // No client certificate: refused. Another role's certificate: refused (CN must name the role).
    await assert.rejects(tlsClient(h, 'cbr', false).connect(), /certificate/);
    const wrong = new pg.Client({
      host: h.address,
      port: h.port,
      database: h.database,
      user: 'cbr',
      password: h.password('cbr'),
      ssl: { ca: readFileSync(h.caFile), cert: readFileSync(h.clientTls('other').certFile), key: readFileSync(h.clientTls('other').keyFile) },
    });
    await assert.rejects(wrong.connect(), /certificate|authentication/);
  } finally {
    await h.stop();
  }
  assert.equal(existsSync(h.dir), false, 'data directory removed');
  assert.equal(processRunning(pid!), false, 'postmaster gone');
});

test('PostgreSQL inside a namespace survives kill -9 and resume, keeping committed rows', async () => {
  await withTopology(async (t) => {
    const ns = await t.namespace('pg');
    const peer = await t.namespace('cl');
    await t.link(ns, peer, { aAddr: '10.231.0.1/24', bAddr: '10.231.0.2/24' });
    const h = await PostgresHost.start({ netns: ns.name, address: '10.231.0.1' });
    t.onDestroy(() => h.stop());
    assert.match(h.url(), /^postgres:\/\/cbr@10\.231\.0\.1:5432\/cbr\?sslmode=verify-full/);
    await h.psql('CREATE TABLE t (v int)', 'cbr');
    await h.psql('INSERT INTO t VALUES (1)', 'cbr');
    const pid = h.postmasterPid()!;
    await h.kill9();
    assert.equal(h.postmasterPid(), undefined);
    assert.equal(processRunning(pid), false);
    await h.resume();
    assert.equal((await h.psql('SELECT count(*) FROM t', 'cbr')).trim(), '1');
    await h.halt();
    assert.equal(h.postmasterPid(), undefined);
    await h.resume();
    await h.stop();
    assert.equal(existsSync(h.dir), false);
  });
});
