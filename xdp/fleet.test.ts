// The fleet deny list end to end: two agents (PoPs A and B, each in its own namespace with native XDP
// on its client-facing veth) follow one PostgreSQL (in a third namespace, mutual TLS). `cbr xdp deny
// add --fleet` at A → B's filter drops that source within a second; B restarted while the database
// is down keeps the entry (from its local copy); `deny del --fleet` at B → gone at A. Propagation is
// measured from the change's time in the registry to the prefix showing up in (or leaving) the other
// PoP's pinned LPM map, which the test reads directly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PostgresHost, waitFor, withTopology, type Namespace } from '../testhosts/index.js';
import { freePort, runCli, startAgent, type AgentProcess } from '../dataplane/testing.js';
import { EXIT, parsePrefix } from '../dataplane/index.js';
import { BpfMap } from './libbpf.js';
import { detachXdp, pinDirFor } from './loader.js';
import { decodeLpmKey, lpmKey } from './prefix.js';
import { ORIGIN, syncLists } from './control.js';
import { mountTestBpffs, testConfig, withTestPipeline, linkForXdp } from './testing.js';
import { openSqliteRegistry } from '../registry/index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const BARE = join(HERE, '..', '..', 'xdp', 'build', 'bare.bpf.o');
const DB_ADDR = '10.78.0.1';

interface Pop {
  name: string;
  ns: Namespace;
  ifname: string;
  /** The PoP's address on the client link (the client pings it). */
  address: string;
  admin: string;
  yaml: string;
  pinDir: string;
  stateDir: string;
  agent?: AgentProcess;
}

async function cli(pop: Pop, args: string[]): Promise<{ code: number | null; json: Record<string, unknown>; stderr: string }> {
  const r = await runCli([...args, '--admin', pop.admin], { netns: pop.ns.name, timeoutMs: 20_000 });
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(r.stdout);
  } catch {
    /* not JSON: the caller looks at code and stderr */
  }
  return { code: r.code, json, stderr: r.stderr };
}

async function start(pop: Pop): Promise<void> {
  const agent = await startAgent(pop.yaml, { netns: pop.ns.name });
  pop.agent = agent;
  await waitFor(`agent ${pop.name} up`, async () => {
    if (agent.proc.exitCode !== null) throw new Error(`agent ${pop.name} exited:\n${agent.logLines.slice(-10).join('\n')}`);
    const r = await cli(pop, ['xdp', 'status']);
    return r.code === 0 ? r.json : undefined;
  });
}

/** The origin value of B's deny4 entry covering `addr` (longest match), read from the pinned map. */
function denyOrigin(pop: Pop, addr: string): number | undefined {
  const map = BpfMap.fromPin(join(pop.pinDir, 'cbr_deny4'));
  try {
    return map.lookup(lpmKey(parsePrefix(`${addr}/32`)))?.readUInt32LE(0);
  } finally {
    map.close();
  }
}

/** Polls the pinned map every 2 ms until the entry covering `addr` is (or is not) there; resolves with the time. */
async function waitMap(pop: Pop, addr: string, present: boolean, timeoutMs = 10_000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const now = Date.now();
    if ((denyOrigin(pop, addr) !== undefined) === present) return now;
    if (now > until) throw new Error(`${addr} still ${present ? 'absent from' : 'in'} ${pop.name}'s deny map after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** When the registry recorded the newest change of `kind` for `prefix` (from the PoP's local copy). */
async function changeAt(pop: Pop, kind: 'deny.add' | 'deny.delete', prefix: string): Promise<number> {
  const copy = openSqliteRegistry(join(pop.stateDir, 'registry.db'));
  try {
    const c = (await copy.changesSince(0, 1_000_000)).reverse().find((x) => x.kind === kind && x.prefix === prefix);
    if (!c) throw new Error(`no ${kind} of ${prefix} in ${pop.name}'s registry copy`);
    return c.at;
  } finally {
    await copy.close();
  }
}

/** The PoP's agent config: only xdp (on the client link) and the registry; `more` goes after the xdp section. */
function popYaml(pop: Pop, pinRoot: string, more: string[]): string {
  return [
    'agent:',
    `  stateDir: ${pop.stateDir}`,
    'admin:',
    `  listen: ${pop.admin.slice('http://'.length)}`,
    'auth: { enabled: false }',
    'tunnel:',
    '  masque: { enabled: false }',
    '  wireguard: { enabled: false }',
    'bgp: { enabled: false }',
    'xdp:',
    '  enabled: true',
    `  interface: ${pop.ifname}`,
    `  pinRoot: ${pinRoot}`,
    '  mode: native',
    ...more,
    '',
  ].join('\n');
}

/** When the PoP's agent logged `msg` for `prefix` (last time): it answers the API request right after. */
function answeredAt(pop: Pop, msg: string, prefix: string): number {
  const entries = pop.agent!.logLines.flatMap((l) => {
    try {
      return [JSON.parse(l) as { msg?: string; prefix?: string; time?: string }];
    } catch {
      return [];
    }
  });
  const line = entries.filter((e) => e.msg === msg && e.prefix === prefix).pop();
  if (!line?.time) throw new Error(`${pop.name} logged no "${msg}" for ${prefix}`);
  return Date.parse(line.time);
}

/** Waits until the PoP's registry has migrated the database and follows its feed. */
async function registryReady(pop: Pop): Promise<void> {
  await waitFor(
    `${pop.name}'s registry to follow the database`,
    async () => {
      const r = JSON.parse(await pop.ns.exec(['curl', '-s', `${pop.admin}/v1/registry`])) as { connected?: boolean; migrated?: boolean };
      return r.connected && r.migrated ? true : undefined;
    },
    30_000,
    200,
  );
}

async function pingFrom(ns: Namespace, dst: string): Promise<boolean> {
  try {
    await ns.exec(['ping', '-n', '-q', '-c', '1', '-W', '1', dst], { timeoutMs: 5000 });
    return true;
  } catch {
    return false;
  }
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

test('fleet deny list: added at A → dropped at B within a second; kept across a restart during a database outage; removed at B → gone at A', {
  timeout: 240_000,
}, async () => {
  const bpffs = await mountTestBpffs();
  const dirs: string[] = [];
  const pops: Pop[] = [];
  try {
    await withTopology(async (t) => {
      const db = await t.namespace('fdb');
      const client = await t.namespace('fcli');
      await db.exec(['ip', 'addr', 'add', `${DB_ADDR}/32`, 'dev', 'lo']);
      for (const [i, name] of ['A', 'B'].entries()) {
        const ns = await t.namespace(`fpop${name}`);
        await t.link(db, ns, { aAddr: `10.78.${i + 1}.1/30`, bAddr: `10.78.${i + 1}.2/30` });
        await ns.addRoute(`${DB_ADDR}/32`, `10.78.${i + 1}.1`);
        const [cEnd, pEnd] = await t.link(client, ns, { aAddr: `10.77.${i + 1}.2/24`, bAddr: `10.77.${i + 1}.1/24` });
        // XDP_PASS to the peer of a veth with native XDP needs NAPI on the sender side as well
        await client.exec(['ip', 'link', 'set', 'dev', cEnd.ifname, 'xdpdrv', 'obj', BARE, 'sec', 'xdp']);
        const dir = mkdtempSync(join(tmpdir(), `cbr-fleet-${name}-`));
        dirs.push(dir);
        pops.push({
          name,
          ns,
          ifname: pEnd.ifname,
          address: `10.77.${i + 1}.1`,
          admin: `http://127.0.0.1:${await freePort()}`,
          yaml: '',
          pinDir: pinDirFor(bpffs.root, pEnd.ifname),
          stateDir: join(dir, 'state'),
        });
      }
      const [a, b] = pops as [Pop, Pop];
      const h = await PostgresHost.start({ netns: db.name, address: DB_ADDR });
      try {
        const role = h.roles[0]!;
        for (const pop of pops) {
          pop.yaml = popYaml(pop, bpffs.root, [
            'registry:',
            '  postgres:',
            `    url: "${h.url(role)}&target_session_attrs=read-write"`,
            `    passwordFile: ${h.passwordFile(role)}`,
            '    catchUpInterval: 1s',
          ]);
        }
        await Promise.all(pops.map(start));
        assert.equal(await pingFrom(client, b.address), true, 'the client reaches B before any deny');

        await Promise.all(pops.map((pop) => registryReady(pop)));

        // 1. add --fleet at A
        const all = '10.77.0.0/16';
        // B's map is watched while the command runs (the CLI process takes a while to exit)
        const [seenAtB, added] = await Promise.all([waitMap(b, '10.77.1.2', true), cli(a, ['xdp', 'deny', 'add', '--fleet', all, '--comment', 'fleet test'])]);
        assert.equal(added.code, 0, added.stderr);
        assert.deepEqual(added.json, { list: 'deny', prefix: all, fleet: true, added: true });
        const firstMs = seenAtB - (await changeAt(b, 'deny.add', all));
        assert.equal(denyOrigin(b, '10.77.2.2'), ORIGIN.fleet, "B's entry has the fleet origin");
        assert.equal(denyOrigin(a, '10.77.1.2'), ORIGIN.fleet, 'A applied its own entry before answering');
        assert.equal(await pingFrom(client, b.address), false, "B's filter drops the client");
        assert.equal(await pingFrom(client, a.address), false, "A's filter drops the client");
        const listed = await cli(b, ['xdp', 'deny', 'list']);
        assert.equal(listed.code, 0, listed.stderr);
        const fleet = listed.json.fleet as Array<{ prefix: string; comment?: string; addedAt: number }>;
        assert.deepEqual(
          fleet.map((e) => [e.prefix, e.comment]),
          [[all, 'fleet test']],
        );
        const st = (await cli(b, ['xdp', 'status'])).json as { lists: { deny: { fleet: number } }; fleet: { registry: boolean; lastChange: number } };
        assert.equal(st.lists.deny.fleet, 1);
        assert.equal(st.fleet.registry, true);
        assert.ok(st.fleet.lastChange > 0);
        const metrics = await b.ns.exec(['curl', '-s', `${b.admin}/metrics`]);
        assert.match(metrics, /^cbr_xdp_fleet_deny_entries 1$/m);
        assert.match(metrics, new RegExp(`^cbr_xdp_fleet_deny_last_change ${st.fleet.lastChange}$`, 'm'));
        assert.match(metrics, /^cbr_xdp_fleet_deny_updates_total\{op="add"\} 1$/m);

        // 2. propagation, measured: add at A → B's map, delete at A → gone from B's map
        const addMs: number[] = [firstMs];
        const delMs: number[] = [];
        /** B's map change minus the time A answered (A applies before it answers): the feed's own part. */
        const afterA: number[] = [];
        for (let i = 0; i < 5; i++) {
          const p = `10.${90 + i}.0.0/24`;
          const host = `10.${90 + i}.0.9`; // outside 10.77.0.0/16, which stays
          let [seen, r] = await Promise.all([waitMap(b, host, true), cli(a, ['xdp', 'deny', 'add', '--fleet', p])]);
          assert.equal(r.code, 0);
          addMs.push(seen - (await changeAt(b, 'deny.add', p)));
          afterA.push(seen - answeredAt(a, 'fleet deny entry added', p));
          [seen, r] = await Promise.all([waitMap(b, host, false), cli(a, ['xdp', 'deny', 'del', '--fleet', p])]);
          assert.equal(r.code, 0);
          delMs.push(seen - (await changeAt(b, 'deny.delete', p)));
          afterA.push(seen - answeredAt(a, 'fleet deny entry removed', p));
        }

        // 3. B restarted while the database is down keeps the entry, from its local copy
        await h.halt();
        const refused = await cli(b, ['xdp', 'deny', 'add', '--fleet', '10.77.200.0/24']);
        assert.notEqual(refused.code, 0, 'no fleet write without the database');
        assert.match(refused.stderr, /503|unavailable|unreachable/i);
        const stopped = await b.agent!.stop('SIGTERM');
        b.agent = undefined;
        assert.equal(stopped.code, 0);
        await start(b);
        await b.agent!.waitForLog((e) => e.msg === 'xdp program replaced on the pinned link (no gap)');
        assert.equal(denyOrigin(b, '10.77.2.2'), ORIGIN.fleet, 'the fleet entry survived the restart during the outage');
        assert.equal(await pingFrom(client, b.address), false, 'B still drops the client');
        await h.resume();

        // 4. del --fleet at B (once it follows the database again) → gone at A
        // (the 1 s bound is for PoPs that follow the feed: A reconnects on its own backoff)
        await Promise.all([registryReady(b), registryReady(a)]);
        const [goneAtA, removed] = await Promise.all([waitMap(a, '10.77.1.2', false), cli(b, ['xdp', 'deny', 'del', '--fleet', all])]);
        assert.equal(removed.code, 0, removed.stderr);
        delMs.push(goneAtA - (await changeAt(a, 'deny.delete', all)));
        assert.equal(denyOrigin(b, '10.77.2.2'), undefined, 'B removed it before answering');
        assert.equal(await pingFrom(client, a.address), true, 'A lets the client through again');
        assert.equal(await pingFrom(client, b.address), true, 'B lets the client through again');
        const missing = await cli(b, ['xdp', 'deny', 'del', '--fleet', all]);
        assert.equal(missing.code, EXIT.NO_INPUT);
        assert.match(missing.stderr, /not in the fleet deny list/);
        const allowFleet = await cli(a, ['xdp', 'allow', 'add', '--fleet', '10.9.0.0/16']);
        assert.notEqual(allowFleet.code, 0, 'the allow list has no fleet form');

        const summary = {
          add_ms: addMs,
          del_ms: delMs,
          add_p50: pct(addMs, 50),
          add_max: Math.max(...addMs),
          del_p50: pct(delMs, 50),
          del_max: Math.max(...delMs),
          b_after_a_answer_ms: afterA,
        };
        process.stdout.write(`# fleet deny propagation (registry change → other PoP's LPM map): ${JSON.stringify(summary)}\n`);
        for (const ms of [...addMs, ...delMs]) assert.ok(ms <= 1000, `propagated within a second: ${JSON.stringify(summary)}`);
      } finally {
        for (const pop of pops) await pop.agent?.stop('SIGKILL');
        await h.stop();
      }
    });
  } finally {
    for (const pop of pops) detachXdp(pop.pinDir);
    await bpffs.remove();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
});

test('fleet deny list on the embedded registry (one PoP): origins stack, a restart keeps it, bad requests are refused', { timeout: 120_000 }, async () => {
  const bpffs = await mountTestBpffs();
  const dir = mkdtempSync(join(tmpdir(), 'cbr-fleet-one-'));
  let pop: Pop | undefined;
  try {
    await withTopology(async (t) => {
      const client = await t.namespace('f1cli');
      const ns = await t.namespace('f1pop');
      const [, pEnd] = await linkForXdp(t, client, ns, { aAddr: '10.77.1.2/24', bAddr: '10.77.1.1/24' });
      const admin = `http://127.0.0.1:${await freePort()}`;
      const stateDir = join(dir, 'state');
      pop = { name: 'P', ns, ifname: pEnd.ifname, address: '10.77.1.1', admin, pinDir: pinDirFor(bpffs.root, pEnd.ifname), stateDir, yaml: '' };
      pop.yaml = popYaml(pop, bpffs.root, ['  deny:', '    prefixes: [10.77.1.64/26]']);
      const p = pop;
      await start(p);
      assert.equal(await pingFrom(client, p.address), true);
      assert.equal((await cli(p, ['xdp', 'deny', 'add', '--fleet', '10.77.1.2/32'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.2'), ORIGIN.fleet);
      assert.equal(await pingFrom(client, p.address), false, 'the fleet entry drops the client');
      // the PoP's own entry for the same prefix wins while it is there; the fleet's stays after it
      assert.equal((await cli(p, ['xdp', 'deny', 'add', '10.77.1.2/32'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.2'), ORIGIN.api);
      assert.equal((await cli(p, ['xdp', 'deny', 'del', '10.77.1.2/32'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.2'), ORIGIN.fleet, 'still denied by the fleet');
      // a config prefix on the fleet's list keeps its origin, and stays when the fleet drops it
      assert.equal((await cli(p, ['xdp', 'deny', 'add', '--fleet', '10.77.1.64/26'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.65'), ORIGIN.config);
      assert.equal((await cli(p, ['xdp', 'deny', 'del', '--fleet', '10.77.1.64/26'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.65'), ORIGIN.config);

      const stopped = await p.agent!.stop('SIGTERM');
      p.agent = undefined;
      assert.equal(stopped.code, 0);
      await start(p);
      assert.equal(denyOrigin(p, '10.77.1.2'), ORIGIN.fleet, 'kept across a restart');
      const listed = (await cli(p, ['xdp', 'deny', 'list'])).json as { config: string[]; api: string[]; fleet: Array<{ prefix: string }> };
      assert.deepEqual(listed.config, ['10.77.1.64/26']);
      assert.deepEqual(listed.api, []);
      assert.deepEqual(
        listed.fleet.map((e) => e.prefix),
        ['10.77.1.2/32'],
      );

      const post = async (path: string, body: string) =>
        (
          await ns.exec([
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            '-X',
            'POST',
            '-H',
            'content-type: application/json',
            '-d',
            body,
            `${admin}${path}`,
          ])
        ).trim();
      assert.equal(await post('/v1/xdp/deny', '{"prefix":"10.1.0.0/16","fleet":"yes"}'), '400');
      assert.equal(await post('/v1/xdp/allow', '{"prefix":"10.1.0.0/16","fleet":true}'), '400');
      assert.equal(await post('/v1/xdp/deny', '{"prefix":"10.1.0.0/16","comment":"no fleet"}'), '400');
      assert.equal(await post('/v1/xdp/deny', `{"prefix":"10.1.0.0/16","fleet":true,"comment":"${'x'.repeat(257)}"}`), '400');
      assert.equal(await post('/v1/xdp/deny', '{"prefix":"10.1.0.300/16","fleet":true}'), '400');
      const badDel = (
        await ns.exec(['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'DELETE', `${admin}/v1/xdp/deny?prefix=10.1.0.0/16&fleet=1`])
      ).trim();
      assert.equal(badDel, '400');

      assert.equal((await cli(p, ['xdp', 'deny', 'del', '--fleet', '10.77.1.2/32'])).code, 0);
      assert.equal(denyOrigin(p, '10.77.1.2'), undefined);
      assert.equal(await pingFrom(client, p.address), true, 'passes once the fleet entry is gone');
    });
  } finally {
    await pop?.agent?.stop('SIGKILL');
    if (pop) detachXdp(pop.pinDir);
    await bpffs.remove();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('syncLists: the fleet deny entries take the room the PoP leaves; the rest are skipped, not a failed start', async () => {
  const cfg = testConfig({ deny: { maxEntries: 4, prefixes: ['192.0.2.0/24', '198.51.100.0/24'] } });
  await withTestPipeline(cfg, (p) => {
    const fleet = ['192.0.2.0/24', '203.0.113.0/24', '203.0.113.0/25', '10.1.0.0/16', '10.2.0.0/16'].map((t) => parsePrefix(t));
    const r = syncLists(p, cfg, { api: { deny: ['10.9.0.0/16'], allow: [] } }, [], fleet);
    // config 2 + api 1 fill 3 of 4 IPv4 entries; 192.0.2.0/24 is already there (config); one fleet prefix fits
    assert.equal(r.deny.fleetSkipped, 3);
    const origins = new Map(
      p
        .map('cbr_deny4')
        .lookupBatch(64)
        .map((e) => [decodeLpmKey(e.key).text, e.value.readUInt32LE(0)]),
    );
    assert.deepEqual(
      [...origins].sort(),
      [
        ['10.9.0.0/16', ORIGIN.api],
        ['192.0.2.0/24', ORIGIN.config],
        ['198.51.100.0/24', ORIGIN.config],
        ['203.0.113.0/24', ORIGIN.fleet],
      ].sort(),
    );
    // without the fleet's entries they leave again
    assert.equal(syncLists(p, cfg, { api: { deny: ['10.9.0.0/16'], allow: [] } }).deny.removed, 1);
  });
});
