// The registration API and lease logic in-process, against a real wireguard-go in a test network
// namespace. Token verification is the only double here (an AuthGate answering fixed tokens), as
// the brief allows for handler-logic tests; the end-to-end test with the real auth subsystem and
// dev issuer is integration.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Registry } from 'prom-client';
import { withTopology, uniqueName, type Namespace, type Topology } from '../../testhosts/index.js';
import { removeSocketOnDestroy, type JsonBody } from './testing.js';
import { freePort } from '../../dataplane/testing.js';
import {
  AdminServer,
  HealthModel,
  Supervisor,
  ServiceRegistry,
  createLogger,
  type AgentContext,
  type CbrConfig,
  type Subsystem,
} from '../../dataplane/index.js';
import { AuthError, AUTH_SERVICE, type AuthGate, type Identity } from '../../auth/index.js';
import { wireguardConfigSchema } from './config.js';
import { WireguardSubsystem } from './subsystem.js';
import { registryConfigSchema, registrySubsystem } from '../../registry/index.js';
import { egressConfigSchema } from '../config.js';

const EGRESS = egressConfigSchema.parse({});
import { generatePrivateKey, publicKeyFor } from './keys.js';

/** Tokens the double understands: `sub:<subject>[:<seconds to expiry>]` and a few failure cases. */
const testGate: AuthGate = {
  async authorize(token: string): Promise<Identity> {
    if (token === 'norole') throw new AuthError('MISSING_ROLE', 'token lacks the role for wireguard-register');
    if (token === 'limited') throw new AuthError('RATE_LIMITED', 'too many requests', 7);
    if (token === 'down') throw new AuthError('ISSUER_UNAVAILABLE', 'issuer keys unavailable');
    const m = /^sub:([a-z0-9-]+)(?::(\d+))?$/.exec(token);
    if (!m) throw new AuthError('INVALID_TOKEN', 'token signature invalid');
    return { subject: m[1]!, roles: ['wireguard'], expiresAt: Math.floor(Date.now() / 1000) + Number(m[2] ?? 3600) };
  },
};

interface Harness {
  ns: Namespace;
  ifname: string;
  url: string;
  stateDir: string;
  svc: WireguardSubsystem;
  ctx: AgentContext;
  /** The registry (embedded SQLite here), started before WireGuard as the agent does. */
  registry: Subsystem;
  setConfig(raw: Record<string, unknown>): void;
  restart(): Promise<void>;
  close(): Promise<void>;
}

async function harness(
  topo: Topology,
  ns: Namespace,
  extra: Record<string, unknown> = {},
  prepare?: (stateDir: string, ifname: string) => void,
): Promise<Harness> {
  const ifname = uniqueName('w');
  removeSocketOnDestroy(topo, ifname);
  const stateDir = mkdtempSync(join(tmpdir(), 'cbr-wgsvc-'));
  const listenPort = await freePort();
  const raw = (more: Record<string, unknown>) => ({
    enabled: true,
    expiryInterval: '300ms',
    ...extra,
    ...Object.fromEntries(Object.entries(more).filter(([k]) => k !== 'iface')),
    interfaces: [
      {
        name: ifname,
        implementation: 'userspace',
        listenPort,
        address: ['10.88.0.1/22', 'fd00:88::1/64'],
        pools: ['10.88.0.0/22', 'fd00:88::/64'],
        endpoint: '192.0.2.10:51820',
        dns: ['10.88.0.1'],
        ...(more.iface as object),
      },
    ],
  });
  const base = { agent: { name: 'test-pop' }, registry: registryConfigSchema.parse({}) };
  let config = { ...base, tunnel: { egress: EGRESS, wireguard: wireguardConfigSchema.parse(raw({})) } } as unknown as CbrConfig;
  const log = createLogger(process.env.CBR_TEST_LOG ?? 'silent');
  const registry = new Registry();
  const health = new HealthModel(log, registry);
  // 200 concurrent registrations below: more than the listener's default 64 connections.
  const admin = new AdminServer({ listen: `127.0.0.1:${await freePort()}`, registry, health, log, maxConnections: 256 });
  await admin.start();
  const supervisor = new Supervisor(log, registry);
  const services = new ServiceRegistry();
  services.provide(AUTH_SERVICE, testGate);
  const ctx: AgentContext = {
    get config() {
      return config;
    },
    log,
    registry,
    health,
    admin,
    supervisor,
    services,
    stateDir,
  };
  const prefix = ['ip', 'netns', 'exec', ns.name];
  const h: Harness = {
    ns,
    ifname,
    url: `http://${admin.address}`,
    stateDir,
    ctx,
    svc: new WireguardSubsystem(ctx, { commandPrefix: prefix }),
    registry: registrySubsystem.create(ctx),
    setConfig(more) {
      config = { ...base, tunnel: { egress: EGRESS, wireguard: wireguardConfigSchema.parse(raw(more)) } } as unknown as CbrConfig;
    },
    async restart() {
      await h.svc.stop();
      h.svc = new WireguardSubsystem(ctx, { commandPrefix: prefix });
      await h.svc.start();
    },
    async close() {
      await h.svc.stop().catch(() => undefined);
      await h.registry.stop?.().catch(() => undefined);
      health.stop();
      await supervisor.stopAll();
      supervisor.dispose();
      await admin.stop();
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
  prepare?.(stateDir, ifname);
  try {
    await h.registry.start();
    await h.svc.start();
  } catch (err) {
    await h.close();
    throw err;
  }
  return h;
}

async function call(h: Harness, method: string, path: string, opts: { token?: string; body?: unknown; raw?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  const res = await fetch(h.url + path, { method, headers, body: opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body)) });
  const text = await res.text();
  let json: JsonBody;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, json, headers: res.headers };
}

async function devicePeers(h: Harness): Promise<Map<string, string[]>> {
  const s = await h.svc.device(h.ifname)!.get();
  return new Map(s.peers.map((p) => [p.publicKey, p.allowedIps]));
}

const newKey = () => publicKeyFor(generatePrivateKey());

test('registration API against a real wireguard-go', async () => {
  await withTopology(async (topo) => {
    const h = await harness(topo, await topo.namespace('wgpop'), { deviceLimit: 3 });
    try {
      const k1 = newKey();

      // Authentication failures: the right status, the Retry-After, and no peer added.
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { body: { publicKey: k1 } })).status, 401);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'forged', body: { publicKey: k1 } })).status, 401);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'norole', body: { publicKey: k1 } })).status, 403);
      const limited = await call(h, 'POST', '/v1/wireguard/peers', { token: 'limited', body: { publicKey: k1 } });
      assert.equal(limited.status, 429);
      assert.equal(limited.headers.get('retry-after'), '7');
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'down', body: { publicKey: k1 } })).status, 503);
      assert.equal((await h.svc.registryService!.local.peers()).length, 0);
      assert.equal((await devicePeers(h)).size, 0);

      // Malformed bodies: 400 naming the field.
      const bad = async (body: { body?: unknown; raw?: string }, field: RegExp) => {
        const r = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', ...body });
        assert.equal(r.status, 400, JSON.stringify(r.json));
        assert.match(r.json.error, field);
      };
      await bad({ raw: '{not json' }, /^body: invalid JSON/);
      await bad({ body: [k1] }, /^body: expected a JSON object/);
      await bad({ body: {} }, /^publicKey: required/);
      await bad({ body: { publicKey: 'abc' } }, /^publicKey: expected a base64/);
      await bad({ body: { publicKey: 42 } }, /^publicKey: expected a base64/);
      await bad({ body: { publicKey: k1, extra: 1 } }, /^body\.extra: unknown field/);
      await bad({ body: { publicKey: k1, interface: 'nope0' } }, /^interface: no WireGuard interface/);
      assert.equal((await h.svc.registryService!.local.peers()).length, 0);

      // Register: 201 with both addresses, the PoP's key and the wg-quick text; the peer is on the device.
      const r1 = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: k1 } });
      assert.equal(r1.status, 201, JSON.stringify(r1.json));
      assert.equal(r1.json.addresses.ipv4, '10.88.0.2');
      assert.equal(r1.json.addresses.ipv6, 'fd00:88::2');
      assert.equal(r1.json.server.endpoint, '192.0.2.10:51820');
      const devState = await h.svc.device(h.ifname)!.get();
      assert.equal(r1.json.server.publicKey, publicKeyFor(devState.privateKey!));
      assert.match(
        r1.json.wgQuick,
        /\[Interface\]\nAddress = 10\.88\.0\.2\/32, fd00:88::2\/128\nDNS = 10\.88\.0\.1\n\n\[Peer\]\nPublicKey = .{44}\nEndpoint = 192\.0\.2\.10:51820\nAllowedIPs = 0\.0\.0\.0\/0, ::\/0\nPersistentKeepalive = 25\n$/,
      );
      assert.deepEqual((await devicePeers(h)).get(k1), ['10.88.0.2/32', 'fd00:88::2/128']);

      // Idempotent: same subject and key → 200, same addresses, expiry not earlier.
      const r1b = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice:7200', body: { publicKey: k1 } });
      assert.equal(r1b.status, 200);
      assert.deepEqual(r1b.json.addresses, r1.json.addresses);
      assert.ok(Date.parse(r1b.json.expiresAt) > Date.parse(r1.json.expiresAt));
      // Another subject cannot take the key; the PoP's own key is refused.
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:bob', body: { publicKey: k1 } })).status, 409);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:bob', body: { publicKey: r1.json.server.publicKey } })).status, 400);

      // Device limit (3 per subject).
      const [k2, k3, k4] = [newKey(), newKey(), newKey()];
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: k2 } })).status, 201);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: k3 } })).status, 201);
      const over = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: k4 } });
      assert.equal(over.status, 409);
      assert.equal(over.json.code, 'DEVICE_LIMIT');

      // GET /me lists alice's peers only; DELETE of another subject's key is a 404; own key removes it.
      const me = await call(h, 'GET', '/v1/wireguard/peers/me', { token: 'sub:alice' });
      assert.deepEqual(me.json.peers.map((p: { publicKey: string }) => p.publicKey).sort(), [k1, k2, k3].sort());
      assert.equal((await call(h, 'GET', '/v1/wireguard/peers/me', { token: 'sub:bob' })).json.peers.length, 0);
      assert.equal((await call(h, 'DELETE', `/v1/wireguard/peers/${encodeURIComponent(k2)}`, { token: 'sub:bob' })).status, 404);
      assert.equal((await call(h, 'DELETE', `/v1/wireguard/peers/${encodeURIComponent(k2)}`, { token: 'sub:alice' })).status, 200);
      assert.ok(!(await devicePeers(h)).has(k2));
      assert.equal((await call(h, 'DELETE', `/v1/wireguard/peers/${encodeURIComponent(k2)}`)).status, 401);

      // 200 concurrent registrations by different subjects: all succeed, no address handed out twice.
      const keys = Array.from({ length: 200 }, newKey);
      const results = await Promise.all(keys.map((k, i) => call(h, 'POST', '/v1/wireguard/peers', { token: `sub:user${i}`, body: { publicKey: k } })));
      assert.deepEqual([...new Set(results.map((r) => r.status))], [201]);
      const v4 = results.map((r) => r.json.addresses.ipv4 as string);
      const v6 = results.map((r) => r.json.addresses.ipv6 as string);
      assert.equal(new Set([...v4, r1.json.addresses.ipv4]).size, 201);
      assert.equal(new Set([...v6, r1.json.addresses.ipv6]).size, 201);
      const onDevice = await devicePeers(h);
      assert.equal(onDevice.size, 202);
      keys.forEach((k, i) => {
        assert.deepEqual(onDevice.get(k), [`${v4[i]}/32`, `${v6[i]}/128`]);
      });

      // Operator view and revoke (admin routes; loopback without a configured admin token).
      const list = await call(h, 'GET', '/v1/wireguard/admin/peers');
      assert.equal(list.json.peers.length, 202);
      assert.equal((await call(h, 'DELETE', `/v1/wireguard/admin/peers/${encodeURIComponent(keys[0]!)}`)).status, 200);
      assert.ok(!(await devicePeers(h)).has(keys[0]!));
      // The released address is the lowest free one again and is handed out next.
      const reuse = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:erin', body: { publicKey: newKey() } });
      assert.equal(reuse.json.addresses.ipv4, v4[0]);
      assert.equal((await call(h, 'DELETE', `/v1/wireguard/admin/peers/${encodeURIComponent(reuse.json.publicKey)}`)).status, 200);

      // Metrics (device reads are cached for 500 ms within a scrape).
      await new Promise((r) => setTimeout(r, 600));
      const metrics = await h.ctx.registry.metrics();
      assert.match(metrics, /cbr_wireguard_registrations_total\{result="created"\} 204/);
      assert.match(metrics, /cbr_wireguard_registrations_total\{result="unauthorized"\} 2/);
      assert.match(metrics, /cbr_wireguard_registrations_total\{result="bad_request"\} 8/);
      assert.match(metrics, new RegExp(`cbr_wireguard_peers\\{interface="${h.ifname}"\\} 201`));
      const health = await h.ctx.health.runNow(`wireguard.${h.ifname}`);
      assert.equal(health?.lastResult, 'pass', health?.lastError);
    } finally {
      await h.close();
    }
  });
});

test('expiry, wireguard-go kill -9, restart from SQLite, and pool changes on reload', async () => {
  await withTopology(async (topo) => {
    const h = await harness(topo, await topo.namespace('wgpop'));
    try {
      const short = newKey();
      const long = newKey();
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:carol:2', body: { publicKey: short } })).status, 201);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:dave', body: { publicKey: long } })).status, 201);
      assert.ok((await devicePeers(h)).has(short));

      // Expiry: the token lived 2 s; the sweep (every 300 ms) removes the peer from store and device.
      const until = Date.now() + 8_000;
      while ((await devicePeers(h)).has(short) && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
      assert.ok(!(await devicePeers(h)).has(short), 'expired peer still on the device');
      assert.equal(await h.svc.registryService!.local.getPeer(short), undefined);
      assert.ok((await devicePeers(h)).has(long));

      // kill -9 of wireguard-go: the supervisor restarts it and the peer is applied again.
      const dev = h.svc.device(h.ifname)!;
      const before = dev.configureCount;
      const pid = dev.pid!;
      process.kill(pid, 'SIGKILL');
      const until2 = Date.now() + 10_000;
      while ((dev.configureCount === before || !dev.ready) && Date.now() < until2) await new Promise((r) => setTimeout(r, 100));
      assert.ok(dev.configureCount > before, 'not reconfigured after kill -9');
      assert.notEqual(dev.pid, pid);
      assert.deepEqual((await devicePeers(h)).get(long), ['10.88.0.3/32', 'fd00:88::3/128']);
      const link = JSON.parse(await h.ns.exec(['ip', '-j', 'addr', 'show', 'dev', h.ifname]));
      assert.ok(
        link[0].addr_info.some((a: { local: string }) => a.local === '10.88.0.1'),
        'address re-added',
      );

      // Restart of the subsystem: the peer comes back from SQLite.
      await h.restart();
      assert.deepEqual((await devicePeers(h)).get(long), ['10.88.0.3/32', 'fd00:88::3/128']);

      // Reload: a pool change that would orphan the lease is refused naming the field; a superset is fine.
      const next = (pools: string[]) =>
        ({
          tunnel: {
            egress: EGRESS,
            wireguard: wireguardConfigSchema.parse({ enabled: true, interfaces: [{ ...h.ctx.config.tunnel.wireguard.interfaces[0]!, pools }] }),
          },
        }) as unknown as CbrConfig;
      await assert.rejects(
        () => h.svc.checkReload(next(['10.99.0.0/24', 'fd00:88::/64'])),
        /tunnel\.wireguard\.interfaces\[0\]\.pools: the change would orphan 1 leased address/,
      );
      await h.svc.checkReload(next(['10.88.0.0/21', 'fd00:88::/64']));
      const changedPort = {
        tunnel: {
          egress: EGRESS,
          wireguard: wireguardConfigSchema.parse({ enabled: true, interfaces: [{ ...h.ctx.config.tunnel.wireguard.interfaces[0]!, listenPort: 1 }] }),
        },
      } as unknown as CbrConfig;
      await assert.rejects(() => h.svc.checkReload(changedPort), /interfaces\[0\]\.listenPort: cannot change on reload/);
      h.setConfig({ iface: { pools: ['10.88.0.0/21', 'fd00:88::/64'] } });
      await h.svc.reload(h.ctx.config);
      const routes = JSON.parse(await h.ns.exec(['ip', '-j', 'route', 'show', 'dev', h.ifname]));
      assert.ok(
        routes.some((r: { dst: string }) => r.dst === '10.88.0.0/21'),
        JSON.stringify(routes),
      );
      assert.ok(!routes.some((r: { dst: string }) => r.dst === '10.88.0.0/22' && !('protocol' in r && r.protocol === 'kernel')), 'old pool route removed');
    } finally {
      await h.close();
    }
  });
});

test('a corrupt registry.db is moved aside; the PoP runs degraded on an empty registry and WireGuard keeps serving', async () => {
  await withTopology(async (topo) => {
    const garbage = Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(4096, 0xa5)]);
    const h = await harness(topo, await topo.namespace('wgpop'), {}, (stateDir) => {
      writeFileSync(join(stateDir, 'registry.db'), garbage);
    });
    try {
      // start() resolved: the agent keeps running. The file is kept, under a timestamped name.
      const files = readdirSync(h.stateDir);
      const aside = files.find((f) => /^registry\.db\.corrupt-\d{4}-\d\d-\d\dT[\d-]+Z$/.test(f));
      assert.ok(aside, files.join(' '));
      assert.deepEqual(readFileSync(join(h.stateDir, aside)), garbage);
      // The registry's health check is down and names the file; it is not critical (anycast stays).
      const check = await h.ctx.health.runNow('registry.store');
      assert.equal(check?.lastResult, 'fail');
      assert.match(check?.lastError ?? '', /registry\.db was corrupt .*moved to .*registry\.db\.corrupt-.*register again/);
      assert.equal(check?.critical, false);
      assert.equal(h.ctx.health.snapshot().degraded, true);
      // WireGuard serves on the fresh registry.
      const k = newKey();
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: k } })).status, 201);
      assert.ok((await devicePeers(h)).has(k));
    } finally {
      await h.close();
    }
  });
});

test('an upgrade: the leases of the old wireguard/leases.db are imported into the registry with their addresses, once', async () => {
  await withTopology(async (topo) => {
    const kept = newKey();
    const h = await harness(topo, await topo.namespace('wgpop'), {}, (stateDir, ifname) => {
      // The lease file of the agent before the registry (its schema as that agent created it).
      mkdirSync(join(stateDir, 'wireguard'), { recursive: true });
      const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string) => { exec(sql: string): void; close(): void };
      const db = new Database(join(stateDir, 'wireguard', 'leases.db'));
      db.exec(`CREATE TABLE peers (public_key TEXT PRIMARY KEY, interface TEXT NOT NULL, subject TEXT NOT NULL, ipv4 TEXT, ipv6 TEXT,
        created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL)`);
      db.exec(`INSERT INTO peers VALUES ('${kept}', '${ifname}', 'olga', '10.88.0.7', 'fd00:88::7', 1, ${Date.now() + 3_600_000})`);
      db.close();
    });
    try {
      const peer = await h.svc.registryService!.local.getPeer(kept);
      assert.equal(peer?.ipv4, '10.88.0.7');
      assert.deepEqual((await devicePeers(h)).get(kept), ['10.88.0.7/32', 'fd00:88::7/128']);
      const files = readdirSync(join(h.stateDir, 'wireguard'));
      assert.ok(files.includes('leases.db.imported') && !files.includes('leases.db'), files.join(' '));
      // The next registration does not take the imported address.
      const r = await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:alice', body: { publicKey: newKey() } });
      assert.equal(r.status, 201);
      assert.equal(r.json.addresses.ipv4, '10.88.0.2');
      await h.restart();
      assert.deepEqual((await devicePeers(h)).get(kept), ['10.88.0.7/32', 'fd00:88::7/128']);
    } finally {
      await h.close();
    }
  });
});

test('register/revoke races of one key leave store and device equal; reconcile removes peers without a live lease', async () => {
  await withTopology(async (topo) => {
    const h = await harness(topo, await topo.namespace('wgpop'), { reconcileInterval: '1h' });
    try {
      const consistent = async (keys: string[]) => {
        const onDevice = await devicePeers(h);
        for (const k of keys) {
          const lease = await h.svc.registryService!.local.getPeer(k);
          assert.equal(onDevice.has(k), lease !== undefined, `key ${k}: store ${lease !== undefined}, device ${onDevice.has(k)}`);
          if (lease) assert.deepEqual(onDevice.get(k), [`${lease.ipv4}/32`, `${lease.ipv6}/128`]);
        }
      };
      // The same key registered and revoked (by its owner and by an operator) concurrently, in shuffled
      // orders; a fresh key per round, as an operator's revocation refuses the key from then on (403).
      const keys: string[] = [];
      for (let round = 0; round < 25; round++) {
        const k = newKey();
        keys.push(k);
        const ops = [
          () => call(h, 'POST', '/v1/wireguard/peers', { token: `sub:racer${round}`, body: { publicKey: k } }),
          () => call(h, 'DELETE', `/v1/wireguard/admin/peers/${encodeURIComponent(k)}`),
          () => call(h, 'POST', '/v1/wireguard/peers', { token: `sub:racer${round}`, body: { publicKey: k } }),
          () => call(h, 'DELETE', `/v1/wireguard/peers/${encodeURIComponent(k)}`, { token: `sub:racer${round}` }),
        ];
        const order = ops.map((op, i) => ({ op, at: (i * 7 + round * 3) % 5 })).sort((a, b) => a.at - b.at);
        const statuses = (await Promise.all(order.map((o) => o.op()))).map((x) => x.status);
        for (const st of statuses) assert.ok([200, 201, 403, 404].includes(st), `status ${st}`);
        await consistent(keys);
      }
      const first = await h.svc.reconcileNow();
      assert.deepEqual(first.get(h.ifname), { removed: [], added: [] }, 'nothing to fix after the races');

      // A revoke whose UAPI removal failed (store updated, device not) and a peer added behind the
      // store's back: the periodic reconcile removes both and restores a missing one.
      const gone = newKey();
      const kept = newKey();
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:erin', body: { publicKey: gone } })).status, 201);
      assert.equal((await call(h, 'POST', '/v1/wireguard/peers', { token: 'sub:erin', body: { publicKey: kept } })).status, 201);
      assert.ok(await h.svc.registryService!.local.removePeer(gone, 'deleted'));
      const stray = newKey();
      const dev = h.svc.device(h.ifname)!;
      await dev.addPeer({ publicKey: stray, allowedIps: ['10.88.3.250/32'] });
      await dev.removePeer(kept);
      assert.ok((await devicePeers(h)).has(gone) && (await devicePeers(h)).has(stray) && !(await devicePeers(h)).has(kept));
      h.setConfig({ reconcileInterval: '200ms' });
      await h.svc.reload(h.ctx.config);
      const until = Date.now() + 10_000;
      for (;;) {
        const peers = await devicePeers(h);
        if (!peers.has(gone) && !peers.has(stray) && peers.has(kept)) break;
        assert.ok(Date.now() < until, 'reconcile did not fix the device within 10 s');
        await new Promise((r) => setTimeout(r, 100));
      }
      await consistent([...keys, gone, kept, stray]);
      const metrics = await h.ctx.registry.metrics();
      assert.match(metrics, new RegExp(`cbr_wireguard_reconcile_changes_total\\{interface="${h.ifname}",action="removed"\\} 2`));
      assert.match(metrics, new RegExp(`cbr_wireguard_reconcile_changes_total\\{interface="${h.ifname}",action="added"\\} 1`));
      assert.match(metrics, new RegExp(`cbr_wireguard_reconcile_runs_total\\{interface="${h.ifname}",result="ok"\\} \\d+`));
    } finally {
      await h.close();
    }
  });
});
