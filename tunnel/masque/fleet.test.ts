// MASQUE across PoPs: two PoP agents hold the same anycast address, certificate and fleet key; a
// router in front of them sends the client to A, then (a route change: a failover, a drain) to B.
// B knows nothing of the client's QUIC connection and answers its next packet with a stateless
// reset, and `cbr connect` reconnects to B at once instead of waiting out its idle timeout.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { withTopology, uniqueName, type Namespace, type Topology } from '../../testhosts/index.js';
import { startAgent, CLI_PATH, type AgentProcess } from '../../dataplane/testing.js';
import { generateSelfSigned, writeTlsMaterial } from '../quic/index.js';
import { metricValue, mintToken, startConnect, stopConnect, waitForOutput } from './testing.js';

const ANYCAST = '10.63.9.1';
const PROJECT = '281474976710656';
const ISSUER = 'http://10.63.0.1:8088';

interface Fleet {
  client: Namespace;
  router: Namespace;
  pops: [Namespace, Namespace];
  agents: [AgentProcess, AgentProcess];
  caFile: string;
  /** Routes the anycast address to PoP 0 or 1. */
  routeTo(i: 0 | 1): Promise<void>;
  mint(subject: string): Promise<string>;
  metrics(i: 0 | 1): Promise<string>;
}

/** client ── router ──┬── PoP A (anycast on lo); └── PoP B (anycast on lo). keyLines: each PoP's key file. */
async function fleet(topo: Topology, keyLines: [string[], string[]]): Promise<Fleet> {
  const client = await topo.namespace('fcl');
  const router = await topo.namespace('frt');
  const pops: [Namespace, Namespace] = [await topo.namespace('fpa'), await topo.namespace('fpb')];
  await router.sysctl('net.ipv4.ip_forward', '1');
  await topo.link(router, client, { aAddr: '10.63.0.1/24', bAddr: '10.63.0.2/24' });
  await client.exec(['ip', 'route', 'add', 'default', 'via', '10.63.0.1']);
  for (const [i, pop] of pops.entries()) {
    await topo.link(router, pop, { aAddr: `10.63.${i + 1}.1/24`, bAddr: `10.63.${i + 1}.2/24` });
    await pop.exec(['ip', 'link', 'set', 'lo', 'up']);
    await pop.exec(['ip', 'addr', 'add', `${ANYCAST}/32`, 'dev', 'lo']);
    await pop.exec(['ip', 'route', 'add', 'default', 'via', `10.63.${i + 1}.1`]);
  }
  const dir = mkdtempSync(join(tmpdir(), 'cbr-fleet-'));
  topo.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const tls = await generateSelfSigned(['pop.test', ANYCAST]);
  const certFile = join(dir, 'pop.crt');
  const keyFile = join(dir, 'pop.key');
  writeTlsMaterial(tls, certFile, keyFile);
  writeFileSync(
    join(dir, 'issuer.yaml'),
    `tokenLifetime: 600\nserviceUsers:\n  - { clientId: "svc-vpn", clientSecret: "fleet-secret", subject: "svc-vpn", roles: [vpn-user] }\n`,
  );
  const issuer = router.spawn([
    process.execPath,
    CLI_PATH,
    'dev-issuer',
    '--listen',
    '10.63.0.1:8088',
    '--project-id',
    PROJECT,
    '--config',
    join(dir, 'issuer.yaml'),
  ]);
  topo.onDestroy(() => void issuer.kill('SIGKILL'));
  await waitForOutput(issuer, /dev issuer listening/, 15_000);
  const agents: AgentProcess[] = [];
  for (const [i, pop] of pops.entries()) {
    const fleetKeyFile = join(dir, `fleet-${i}.key`);
    writeFileSync(fleetKeyFile, `${keyLines[i]!.join('\n')}\n`);
    chmodSync(fleetKeyFile, 0o600);
    const agent = await startAgent(
      [
        'auth:',
        '  enabled: true',
        `  issuer: ${ISSUER}`,
        '  allowInsecureIssuer: true',
        `  audience: ["${PROJECT}"]`,
        'tunnel:',
        '  egress:',
        '    allow: [10.63.0.0/24]',
        '  masque:',
        '    enabled: true',
        // On the anycast address, so answers leave from it (as they do behind a real anycast route).
        `    listen: ${ANYCAST}:4433`,
        `    serverId: ${i + 1}`,
        `    fleetKeyFile: ${fleetKeyFile}`,
        `    tls: { certFile: ${certFile}, keyFile: ${keyFile} }`,
        '    udp: { allowPrivate: true }',
        `    ip: { enabled: false, tun: ${uniqueName('q')} }`,
        '',
      ].join('\n'),
      { netns: pop.name },
    );
    topo.onDestroy(async () => void (await agent.stop()));
    await agent.waitForLog((e) => e.msg === 'MASQUE listener up', 30_000);
    agents.push(agent);
  }
  return {
    client,
    router,
    pops,
    agents: [agents[0]!, agents[1]!],
    caFile: certFile,
    async routeTo(i) {
      await router.exec(['ip', 'route', 'replace', `${ANYCAST}/32`, 'via', `10.63.${i + 1}.2`]);
    },
    mint: (subject) => mintToken(client, ISSUER, subject),
    metrics: (i) => pops[i].exec(['curl', '-sf', `${agents[i]!.adminUrl}/metrics`]),
  };
}

/** A 50/s datagram stream into cbr connect's local port, so the client keeps sending (as a live tunnel does). */
function trickle(ns: Namespace, port: number) {
  const src = `const s=require('dgram').createSocket('udp4');let n=0;setInterval(()=>s.send('probe '+n++,${port},'127.0.0.1'),20);setTimeout(()=>process.exit(0),60000);`;
  return ns.spawn([process.execPath, '-e', src]);
}

/** `cbr connect --mode udp` to the anycast address while it routes to A, with a 50/s stream into it. */
async function connectAtA(f: Fleet, localPort: number) {
  const token = await f.mint('alice');
  await f.routeTo(0);
  const c = startConnect({ client: f.client, popAddr: ANYCAST, port: 4433, caFile: f.caFile }, [
    '--mode',
    'udp',
    '--target',
    '10.63.0.1:9',
    '--listen',
    `127.0.0.1:${localPort}`,
    '--token',
    token,
  ]);
  const load = trickle(f.client, localPort);
  await c.waitFor(/session open: connect-udp/);
  return { c, load };
}

/** ms from t0 until cbr connect's output after `before` shows a new session, or undefined within waitMs. */
async function reopenedAfter(output: () => string, before: number, t0: number, waitMs: number): Promise<number | undefined> {
  for (const deadline = Date.now() + waitMs; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
    if (/session open: connect-udp/.test(output().slice(before))) return Date.now() - t0;
  }
  return undefined;
}

/** Route A → B under load; resolves with ms from the route change to the session open at B, or undefined within waitMs. */
async function failover(f: Fleet, waitMs: number): Promise<{ gapMs: number | undefined; output: string }> {
  const { c, load } = await connectAtA(f, 17100);
  try {
    await new Promise((r) => setTimeout(r, 500)); // established and confirmed at A, datagrams flowing
    const before = c.output().length;
    const t0 = Date.now();
    await f.routeTo(1);
    const gapMs = await reopenedAfter(c.output, before, t0, waitMs);
    return { gapMs, output: c.output() };
  } finally {
    load.kill('SIGKILL');
    await stopConnect(c.child);
  }
}

test('PoP B answers a packet of PoP A’s connection with a stateless reset and cbr connect reconnects to B at once', async () => {
  const key = randomBytes(32).toString('hex');
  const next = randomBytes(32).toString('hex');
  // B mid-rotation, both steps: the new key added second (B still signs, and issues tickets, with A's
  // key: the TLS session resumes), then promoted first (B verifies A's key only: a full handshake).
  for (const [bKeys, resumed] of [
    [[key, next], true],
    [[next, key], false],
  ] as const) {
    await withTopology(async (topo) => {
      const f = await fleet(topo, [[key], [...bKeys]]);
      const { gapMs, output } = await failover(f, 5000);
      console.log(`stateless reset failover: ${gapMs} ms from the route change to the session open at PoP B (TLS session ${resumed ? 'resumed' : 'new'})`);
      if (gapMs === undefined) {
        const grep = (t: string) =>
          t
            .split('\n')
            .filter((l) => /stateless|quic-unknown|handshakes_total|reset_tokens/.test(l))
            .join('\n');
        console.log(`A:\n${grep(await f.metrics(0))}\nB:\n${grep(await f.metrics(1))}`);
      }
      assert.ok(gapMs !== undefined && gapMs < 1500, `no reconnect to B within 5 s:\n${output}`);
      assert.match(output, /session ended: stateless reset/);
      assert.match(output, /reconnecting at once after a stateless reset/);
      assert.doesNotMatch(output.slice(output.indexOf('stateless reset')), /reconnecting in \d+ ms/);
      assert.match(output, resumed ? /TLS session resumed/ : /TLS session not resumed: full handshake/);
      const m = await f.metrics(1);
      assert.ok(metricValue(m, 'cbr_masque_stateless_resets_total', 'result="sent"') >= 1, m);
      // A counter that never moved has no sample line (NaN here): A sent no reset, omitted no token.
      const a = await f.metrics(0);
      assert.ok(!(metricValue(a, 'cbr_masque_stateless_resets_total', 'result="sent"') > 0), a);
      assert.ok(!(metricValue(a, 'cbr_masque_reset_tokens_omitted_total') > 0), a);
      assert.equal(metricValue(a, 'cbr_masque_handshakes_total'), 1);
    });
  }
});

test('without a shared fleet key B’s reset is not recognised: the client stays on its dead connection', async () => {
  await withTopology(async (topo) => {
    const f = await fleet(topo, [[randomBytes(32).toString('hex')], [randomBytes(32).toString('hex')]]);
    const { gapMs, output } = await failover(f, 3000);
    assert.equal(gapMs, undefined, `reconnected although the keys differ:\n${output}`);
    assert.ok(metricValue(await f.metrics(1), 'cbr_masque_stateless_resets_total', 'result="sent"') >= 1);
  });
});

test('a draining PoP sends GOAWAY: cbr connect moves at once, to where the route now points', async () => {
  const key = randomBytes(32).toString('hex');
  await withTopology(async (topo) => {
    const f = await fleet(topo, [[key], [key]]);
    const { c, load } = await connectAtA(f, 17101);
    try {
      const before = c.output().length;
      // An operator drains A: GOAWAY reaches the client while A is still routed; then BGP's graceful
      // shutdown moves the route to B (here: by hand, once the client has heard the GOAWAY).
      const admin = await mintToken(f.client, ISSUER, 'operator', { roles: ['admin'] });
      const t0 = Date.now();
      await f.pops[0].exec(['curl', '-sf', '-X', 'POST', '-H', `authorization: Bearer ${admin}`, `${f.agents[0].adminUrl}/v1/drain`]);
      await c.waitFor(/the PoP is draining \(GOAWAY\)/, 3000);
      await f.routeTo(1);
      const gapMs = await reopenedAfter(c.output, before, t0, 5000);
      const out = c.output().slice(before);
      console.log(`drain: ${gapMs} ms from the drain to the session open at PoP B`);
      assert.match(out, /the PoP is draining \(GOAWAY\)/);
      assert.ok(gapMs !== undefined && gapMs < 2000, `no reconnect to B within 5 s:\n${out}`);
      assert.ok(metricValue(await f.metrics(1), 'cbr_masque_handshakes_total') >= 1);
    } finally {
      load.kill('SIGKILL');
      await stopConnect(c.child);
    }
  });
});
