// Integration in network namespaces with native XDP on veth and a real agent: deny/allow, live list
// changes through the CLI, the rate limit at its configured rate, the load balancer's spread and
// QUIC CID stickiness across source-port changes, and an agent restart that keeps the program
// attached with counters continuing. Every namespace, pin and attachment is removed in finally.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join, dirname } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { withTopology, waitFor, type Namespace } from '../testhosts/index.js';
import { startAgent, runCli, freePort, type AgentProcess } from '../dataplane/testing.js';
import { EXIT } from '../dataplane/index.js';
import { detachXdp, pinDirFor } from './loader.js';
import { encodeCid } from './cid.js';
import { quicShort, quicLong, mountTestBpffs, linkForXdp } from './testing.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const UDPSEND = join(HERE, 'udpsend.js');
const BARE = join(HERE, '..', '..', 'xdp', 'build', 'bare.bpf.o');

async function cli(ns: Namespace, args: string[]): Promise<Record<string, unknown>> {
  const r = await runCli(args, { netns: ns.name, timeoutMs: 20_000 });
  if (r.code !== 0) throw new Error(`cbr ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

type Counters = Array<{ action: string; reason: string; packets: number }>;
function count(c: Counters, action: string, reason: string): number {
  return c.find((r) => r.action === action && r.reason === reason)?.packets ?? 0;
}

async function stats(ns: Namespace, admin: string): Promise<Counters> {
  return (await cli(ns, ['xdp', 'stats', '--admin', admin])).counters as Counters;
}

async function startPopAgent(pop: Namespace, yaml: string, port: number): Promise<AgentProcess> {
  const agent = await startAgent(`admin:\n  listen: 127.0.0.1:${port}\n${yaml}`, { netns: pop.name });
  await waitFor('agent up', async () => {
    const r = await runCli(['xdp', 'status', '--admin', `http://127.0.0.1:${port}`], { netns: pop.name });
    if (r.code === 0) return JSON.parse(r.stdout);
    if (agent.proc.exitCode !== null) throw new Error(`agent exited:\n${agent.logLines.slice(-10).join('\n')}`);
    return undefined;
  });
  return agent;
}

test('netns: deny, allow, live list changes, rate limit at its rate, and a restart that keeps filtering', { timeout: 120_000 }, async () => {
  let pinDir: string | undefined;
  let agent: AgentProcess | undefined;
  const bpffs = await mountTestBpffs();
  try {
    await withTopology(async (t) => {
      const client = await t.namespace('xcli');
      const pop = await t.namespace('xpop');
      const [cEnd, pEnd] = await t.link(client, pop, { aAddr: ['10.77.0.5/24'], bAddr: '10.77.0.1/24' });
      await client.exec(['ip', 'addr', 'add', '10.77.0.66/24', 'dev', cEnd.ifname]);
      await client.exec(['ip', 'addr', 'add', '10.77.0.7/24', 'dev', cEnd.ifname]);
      // XDP_PASS to the peer of a veth with native XDP needs NAPI on the sender side as well
      await client.exec(['ip', 'link', 'set', 'dev', cEnd.ifname, 'xdpdrv', 'obj', BARE, 'sec', 'xdp']);
      pinDir = pinDirFor(bpffs.root, pEnd.ifname);
      const port = await freePort();
      const admin = `http://127.0.0.1:${port}`;
      // one state directory for every agent run, so each finds the control record of the one before
      const stateDir = mkdtempSync(join(tmpdir(), 'cbr-xdpstate-'));
      t.onDestroy(() => rmSync(stateDir, { recursive: true, force: true }));
      const yaml = `agent:\n  stateDir: ${stateDir}\nxdp:\n  enabled: true\n  interface: ${pEnd.ifname}\n  pinRoot: ${bpffs.root}\n  mode: native\n  deny:\n    prefixes: [10.77.0.64/28]\n  allow:\n    prefixes: [10.77.0.7/32]\n  rateLimit:\n    enabled: true\n    packetsPerSecond: 2000\n    burst: 200\n`;
      agent = await startPopAgent(pop, yaml, port);
      const st = await cli(pop, ['xdp', 'status', '--admin', admin]);
      assert.equal(st.attached, true);
      assert.match(await pop.exec(['ip', 'link', 'show', pEnd.ifname]), /xdp/);

      // denied source dropped, allowed passes
      assert.equal(await client.ping('10.77.0.1'), true, 'plain source passes');
      assert.equal(await pingFrom(client, '10.77.0.66', '10.77.0.1'), false, 'denied source is dropped');
      assert.equal(await pingFrom(client, '10.77.0.7', '10.77.0.1'), true, 'allowlisted source passes');
      let c = await stats(pop, admin);
      assert.ok(count(c, 'drop', 'denylist') >= 1, JSON.stringify(c));
      assert.ok(count(c, 'pass', 'allowlist') >= 1, JSON.stringify(c));

      // live: add then remove a deny entry through the CLI (admin API)
      await cli(pop, ['xdp', 'deny', 'add', '10.77.0.5/32', '--admin', admin]);
      assert.equal(await client.ping('10.77.0.1'), false, 'live-denied source is dropped');
      await cli(pop, ['xdp', 'deny', 'del', '10.77.0.5/32', '--admin', admin]);
      assert.equal(await client.ping('10.77.0.1'), true, 'passes again after del');
      const bad = await runCli(['xdp', 'deny', 'add', '10.77.0.300/32', '--admin', admin], { netns: pop.name });
      assert.equal(bad.code, EXIT.DATA);
      assert.match(bad.stderr, /PREFIX/);

      // rate limit: one source floods far above 2000 pps for ~2 s; passes must be burst + rate * time (±10%)
      const before = await stats(pop, admin);
      const sendOut = JSON.parse(await client.exec(['node', UDPSEND, '10.77.0.1', '9', '400000', '2', '1', '', '10.77.0.5'], { timeoutMs: 30_000 }));
      await new Promise((r) => setTimeout(r, 300));
      const after = await stats(pop, admin);
      const passed = count(after, 'pass', 'ok') - count(before, 'pass', 'ok');
      const limited = count(after, 'drop', 'ratelimit') - count(before, 'drop', 'ratelimit');
      const expected = 200 + 2000 * sendOut.seconds;
      assert.ok(limited > 0, `the flood (${sendOut.sent} in ${sendOut.seconds}s) was limited`);
      assert.ok(sendOut.sent / sendOut.seconds > 4000, `sender too slow to test the limit: ${sendOut.sent} in ${sendOut.seconds}s`);
      assert.ok(
        Math.abs(passed - expected) <= expected * 0.1,
        `passed ${passed}, expected ${expected.toFixed(0)} ±10% (sent ${sendOut.sent} in ${sendOut.seconds.toFixed(2)}s, limited ${limited})`,
      );

      // restart: the program stays attached while the agent is down, and counters carry on
      const denied = count(after, 'drop', 'denylist');
      const stopped = await agent.stop('SIGTERM');
      assert.equal(stopped.code, 0);
      agent = undefined;
      assert.match(await pop.exec(['ip', 'link', 'show', pEnd.ifname]), /xdp/, 'still attached with the agent stopped');
      assert.equal(await pingFrom(client, '10.77.0.66', '10.77.0.1'), false, 'still filtering with the agent stopped');
      const directArgs = ['xdp', 'status', '--admin', admin, '--interface', pEnd.ifname, '--pin-root', bpffs.root, '--state-dir', stateDir];
      const direct = await cli(pop, directArgs);
      assert.equal(direct.attached, true);
      assert.equal(direct.agent, 'not reachable');
      assert.equal((direct.control as { state: string }).state, 'stopped', JSON.stringify(direct.control));

      // The agent dies (SIGKILL): the filter keeps running on its last lists, and the status says the
      // control is gone (exit 3, for monitors); the next agent reports how long that lasted.
      agent = await startPopAgent(pop, yaml, port);
      await agent.stop('SIGKILL');
      agent = undefined;
      assert.equal(await pingFrom(client, '10.77.0.66', '10.77.0.1'), false, 'still filtering with the agent dead');
      const orphan = await runCli(directArgs, { netns: pop.name });
      assert.equal(orphan.code, 3, orphan.stderr);
      assert.equal(JSON.parse(orphan.stdout).control.state, 'orphaned');
      agent = await startPopAgent(pop, yaml, port);
      await agent.waitForLog((e) => e.msg === 'xdp program replaced on the pinned link (no gap)');
      const took = await agent.waitForLog((e) => typeof e.msg === 'string' && e.msg.startsWith('the XDP filter ran without its control'));
      assert.equal(took.previous, 'orphaned');
      assert.match(await pop.exec(['curl', '-s', `${admin}/metrics`]), new RegExp(`cbr_xdp_uncontrolled_seconds\\{interface="${pEnd.ifname}"\\} \\d`));
      assert.equal((await cli(pop, ['xdp', 'status', '--admin', admin])).attached, true);
      assert.equal(await pingFrom(client, '10.77.0.66', '10.77.0.1'), false);
      c = await stats(pop, admin);
      assert.ok(count(c, 'drop', 'denylist') > denied, `denylist counter continued: ${denied} -> ${count(c, 'drop', 'denylist')}`);
      await agent.stop('SIGTERM');
      agent = undefined;
      const det = await cli(pop, ['xdp', 'detach', '--interface', pEnd.ifname, '--pin-root', bpffs.root]);
      assert.equal(det.detached, true);
      assert.doesNotMatch(await pop.exec(['ip', 'link', 'show', pEnd.ifname]), /prog\/xdp/);
    });
  } finally {
    await agent?.stop('SIGKILL');
    if (pinDir) detachXdp(pinDir);
    await bpffs.remove();
  }
});

async function pingFrom(ns: Namespace, src: string, dst: string): Promise<boolean> {
  try {
    await ns.exec(['ping', '-n', '-q', '-c', '1', '-W', '1', '-I', src, dst], { timeoutMs: 5000 });
    return true;
  } catch {
    return false;
  }
}

test('netns: the load balancer spreads flows over backends and keeps a QUIC connection on its backend when the source port changes', {
  timeout: 120_000,
}, async () => {
  let pinDir: string | undefined;
  let agent: AgentProcess | undefined;
  const bpffs = await mountTestBpffs();
  try {
    await withTopology(async (t) => {
      const router = await t.namespace('xrtr');
      const pop = await t.namespace('xlb');
      const [rEnd, pEnd] = await linkForXdp(t, router, pop, { aAddr: '10.80.0.1/24', bAddr: '10.80.0.2/24' });
      await router.sysctl('net.ipv4.ip_forward', '1');
      await router.exec(['ip', 'route', 'add', '10.99.0.10/32', 'via', '10.80.0.2']);
      const backends: Array<{ ns: Namespace; ifname: string; addr: string }> = [];
      for (let i = 1; i <= 3; i++) {
        const b = await t.namespace(`xbe${i}`);
        const [, bEnd] = await t.link(router, b, { aAddr: `10.81.${i}.1/24`, bAddr: `10.81.${i}.2/24` });
        await b.exec(['nft', '-f', '-'], {
          input: `table netdev cbrx {\n chain in {\n  type filter hook ingress device "${bEnd.ifname}" priority 0;\n  ip protocol 4 counter\n }\n}\n`,
        });
        backends.push({ ns: b, ifname: bEnd.ifname, addr: `10.81.${i}.2` });
      }
      const routerMac = (await router.exec(['cat', `/sys/class/net/${rEnd.ifname}/address`])).trim();
      pinDir = pinDirFor(bpffs.root, pEnd.ifname);
      const port = await freePort();
      const admin = `http://127.0.0.1:${port}`;
      const yaml = [
        'xdp:',
        '  enabled: true',
        `  interface: ${pEnd.ifname}`,
        `  pinRoot: ${bpffs.root}`,
        '  lb:',
        '    vips: [{ address: 10.99.0.10, port: 443, protocol: udp, quic: true }]',
        '    backends:',
        ...backends.map((b, i) => `      - { address: ${b.addr}, weight: 1, serverId: ${i + 1} }`),
        `    nextHopMac: "${routerMac}"`,
        '    encapSourceV4: 10.80.0.2',
        '',
      ].join('\n');
      agent = await startPopAgent(pop, yaml, port);
      const received = async () =>
        Promise.all(backends.map(async (b) => Number(/packets (\d+)/.exec(await b.ns.exec(['nft', 'list', 'table', 'netdev', 'cbrx']))![1])));

      // 300 flows (one datagram each from its own source port), QUIC long headers: the 5-tuple hash
      const base = await received();
      await router.exec(['node', UDPSEND, '10.99.0.10', '443', '300', '10', '300', quicLong(Buffer.alloc(8, 7)).toString('hex')], { timeoutMs: 30_000 });
      const spread = await waitFor('packets at the backends', async () => {
        const r = await received();
        const d = r.map((x, i) => x - base[i]!);
        return d.reduce((a, b) => a + b, 0) >= 300 ? d : undefined;
      });
      for (const n of spread) assert.ok(n >= 50, `flows spread over the backends: ${spread}`);

      // one QUIC connection (server ID 2) from 40 different source ports: all on backend 2
      const base2 = await received();
      const cid = encodeCid({ configId: 0, serverId: 2 });
      await router.exec(['node', UDPSEND, '10.99.0.10', '443', '40', '10', '40', quicShort(cid).toString('hex')], { timeoutMs: 30_000 });
      const sticky = await waitFor('short headers at backend 2', async () => {
        const r = await received();
        const d = r.map((x, i) => x - base2[i]!);
        return d[1]! >= 40 ? d : undefined;
      });
      assert.deepEqual(sticky, [0, 40, 0], 'every packet of the connection reached backend 2');
      const c = await stats(pop, admin);
      assert.ok(count(c, 'tx', 'lb_cid') >= 40 && count(c, 'tx', 'lb_hash') >= 300, JSON.stringify(c));
      await agent.stop('SIGTERM');
      agent = undefined;
    });
  } finally {
    await agent?.stop('SIGKILL');
    if (pinDir) detachXdp(pinDir);
    await bpffs.remove();
  }
});
