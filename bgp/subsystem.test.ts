// Integration: a PoP namespace runs the real agent (which supervises its BIRD), an upstream-router
// namespace runs its own BIRD peering with it over IPv4 and IPv6. Everything is checked in the
// router's table through the control-socket client.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTopology } from '../testhosts/index.js';
import { startAgent, runCli, freePort, type AgentProcess } from '../dataplane/testing.js';
import { startRouterBird, routeFor, waitForRoute } from './testing.js';
import type { BgpStatus } from './subsystem.js';

const V4 = '198.51.100.1/32';
const V6 = '2001:db8:100::/48';
const isGshut = (c: Array<[number, number]>) => c.some(([a, b]) => a === 65535 && b === 0);

function agentYaml(o: { port: number; healthFile: string; drainFile: string; passwordFile: string; extraPeer?: string }): string {
  return `admin:
  listen: 127.0.0.1:${o.port}
lifecycle:
  shutdownTimeout: 15s
health:
  checks:
    - name: svc
      command: [test, -f, ${o.healthFile}]
      interval: 200ms
      timeout: 1s
      rise: 1
      fall: 1
bgp:
  enabled: true
  routerId: 10.0.1.2
  localAs: 65001
  prefixes: [${V4}, ${V6}]
  peers:
    - name: up4
      address: 10.0.1.1
      remoteAs: 65000
      passwordFile: ${o.passwordFile}
    - name: up6
      address: "2001:db8:1::1"
      remoteAs: 65000${o.extraPeer ?? ''}
  timers: { hold: 3s, keepalive: 1s, connectRetry: 1s, connectDelay: 1s }
  drain: { wait: 2s, prepend: 1, file: ${o.drainFile} }
  sessionCheck: { require: any, interval: 500ms, rise: 1, fall: 2 }
  bird: { statusInterval: 500ms }
`;
}

async function bgpStatus(ns: string, port: number): Promise<BgpStatus> {
  const r = await runCli(['bgp', 'status', '--json', '--admin', `http://127.0.0.1:${port}`], { netns: ns });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as BgpStatus;
}

async function waitAlive(ns: string, port: number, agent: AgentProcess): Promise<void> {
  for (let i = 0; i < 100; i++) {
    const r = await runCli(['bgp', 'status', '--json', '--admin', `http://127.0.0.1:${port}`], { netns: ns, timeoutMs: 5000 });
    if (r.code === 0) return;
    await new Promise((res) => setTimeout(res, 150));
  }
  throw new Error(`agent did not serve /v1/bgp:\n${agent.logLines.slice(-20).join('\n')}`);
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('anycast through a supervised BIRD, checked at a real upstream router', { timeout: 150_000 }, async (t) => {
  await withTopology(async (topo) => {
    const router = await topo.namespace('router');
    const pop = await topo.namespace('pop');
    await topo.link(router, pop, { aAddr: ['10.0.1.1/24', '2001:db8:1::1/64'], bAddr: ['10.0.1.2/24', '2001:db8:1::2/64'] });
    const rb = await startRouterBird(router, {
      routerId: '10.0.1.1',
      as: 65000,
      neighbors: [
        { name: 'pop4', address: '10.0.1.2', as: 65001, password: 'md5-s3cret' },
        { name: 'pop6', address: '2001:db8:1::2', as: 65001 },
      ],
    });
    topo.onDestroy(() => rb.stop());
    const work = mkdtempSync(join(tmpdir(), 'cbr-bgp-it-'));
    topo.onDestroy(() => rmSync(work, { recursive: true, force: true }));
    const healthFile = join(work, 'healthy');
    const drainFile = join(work, 'drain');
    writeFileSync(healthFile, '');
    const passwordFile = join(work, 'up4.password');
    writeFileSync(passwordFile, 'md5-s3cret\n');
    const port = await freePort();
    const yaml = agentYaml({ port, healthFile, drainFile, passwordFile });
    let agent = await startAgent(yaml, { netns: pop.name });
    topo.onDestroy(async () => void (await agent.stop('SIGKILL')));
    await waitAlive(pop.name, port, agent);
    const control = rb.control;

    await t.test('announces IPv4 (TCP-MD5 session) and IPv6 anycast prefixes while healthy', async () => {
      const v4 = await waitForRoute(control, V4, (r) => r.present, 20_000);
      assert.ok(v4.ok, `router never learned ${V4}:\n${agent.logLines.slice(-20).join('\n')}`);
      assert.deepEqual(v4.view.asPath, [65001]);
      assert.equal(isGshut(v4.view.communities), false);
      assert.ok((await waitForRoute(control, V6, (r) => r.present, 10_000)).ok, `router never learned ${V6}`);
      const s = await bgpStatus(pop.name, port);
      assert.equal(s.state, 'announce');
      assert.deepEqual(
        s.sessions.map((x) => [x.peer, x.state]),
        [
          ['up4', 'Established'],
          ['up6', 'Established'],
        ],
      );
      assert.deepEqual(s.prefixes, [
        { prefix: V4, announced: true },
        { prefix: V6, announced: true },
      ]);
      const human = await runCli(['bgp', 'status', '--admin', `http://127.0.0.1:${port}`], { netns: pop.name });
      assert.match(human.stdout, /up4\s+10\.0\.1\.1\s+AS65000\s+Established/);
      const metrics = await pop.exec(['curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
      assert.match(metrics, /cbr_bgp_session_up\{peer="up4"\} 1/);
      assert.match(metrics, /cbr_bgp_prefix_announced\{prefix="198\.51\.100\.1\/32"\} 1/);
      assert.match(metrics, /cbr_bgp_state_transitions_total\{to="announce"\} 1/);
      assert.match(metrics, /cbr_bgp_seconds_since_change \d/);
    });

    await t.test('a health failure withdraws at once; recovery announces again', async () => {
      rmSync(healthFile);
      const gone = await waitForRoute(control, V4, (r) => !r.present, 5_000);
      assert.ok(gone.ok, 'route stayed after the health check failed');
      assert.ok(gone.ms < 3000, `withdrawal took ${gone.ms} ms`);
      assert.ok((await waitForRoute(control, V6, (r) => !r.present, 2_000)).ok);
      writeFileSync(healthFile, '');
      assert.ok((await waitForRoute(control, V4, (r) => r.present, 5_000)).ok, 'route did not come back');
    });

    await t.test('a withdraw whose bird.conf cannot be written falls back to disabling the sessions; the route leaves', async () => {
      // bird.conf is written as bird.conf.tmp and renamed: a directory in that place makes every write fail
      const blocker = join(agent.dir, 'state', 'bgp', 'bird.conf.tmp');
      mkdirSync(blocker);
      try {
        rmSync(healthFile);
        const gone = await waitForRoute(control, V4, (r) => !r.present, 8_000);
        assert.ok(gone.ok, `route stayed although the PoP is unhealthy:\n${agent.logLines.slice(-20).join('\n')}`);
        assert.ok((await waitForRoute(control, V6, (r) => !r.present, 3_000)).ok, 'IPv6 route stayed');
        const metrics = await pop.exec(['curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
        assert.match(metrics, /cbr_bgp_withdraw_failures_total\{stage="write"\} [1-9]/);
        assert.match(metrics, /cbr_bgp_withdraw_fallback\{mode="protocols_disabled"\} 1/);
        const s = await bgpStatus(pop.name, port);
        assert.equal(s.withdrawFallback, 'protocols_disabled');
        assert.match(s.lastError ?? '', /cannot write .*bird\.conf/);
        assert.match(readFileSync(join(agent.dir, 'state', 'bgp', 'bird.conf'), 'utf8'), /State: announce\./); // the file still announces
      } finally {
        rmSync(blocker, { recursive: true, force: true });
      }
      // the next retry writes the withdraw, enables the sessions; health returns and the PoP announces
      writeFileSync(healthFile, '');
      const back = await waitForRoute(control, V4, (r) => r.present && !isGshut(r.communities), 20_000);
      assert.ok(back.ok, `not announced again after the disk recovered:\n${agent.logLines.slice(-20).join('\n')}`);
      const s = await bgpStatus(pop.name, port);
      assert.equal(s.withdrawFallback, 'none');
      assert.equal(s.state, 'announce');
      const metrics = await pop.exec(['curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
      assert.match(metrics, /cbr_bgp_withdraw_fallback\{mode="protocols_disabled"\} 0/);
    });

    await t.test('a hung BIRD (SIGSTOP) that cannot take the withdraw is stopped and started again from the withdraw file', async () => {
      const pidFile = join(agent.dir, 'state', 'bgp', 'bird.pid');
      const hung = Number(readFileSync(pidFile, 'utf8').trim());
      process.kill(hung, 'SIGSTOP');
      try {
        // bgp.sessions fails (no answer on the socket), the withdraw's configure times out, so does
        // `disable`: the fallback stops BIRD, and the next retry starts it from the withdraw file
        await agent.waitForLog((e) => e.msg === 'withdraw fallback: BIRD stopped until bird.conf can be written', 30_000);
        await agent.waitForLog((e) => e.msg === 'bird.conf is writable again; starting BIRD', 10_000);
      } finally {
        if (pidAlive(hung)) process.kill(hung, 'SIGCONT');
      }
      for (let i = 0; i < 60 && pidAlive(hung); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(pidAlive(hung), false, 'the hung BIRD was not stopped');
      const back = await waitForRoute(control, V4, (r) => r.present && !isGshut(r.communities), 30_000);
      assert.ok(back.ok, `not announced again after the restart:\n${agent.logLines.slice(-20).join('\n')}`);
      const s = await bgpStatus(pop.name, port);
      assert.equal(s.withdrawFallback, 'none');
      assert.notEqual(s.bird.pid, undefined);
      const metrics = await pop.exec(['curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
      assert.match(metrics, /cbr_bgp_withdraw_failures_total\{stage="configure"\} [1-9]/);
      assert.match(metrics, /cbr_bgp_withdraw_fallback\{mode="bird_stopped"\} 0/);
    });

    await t.test('cbr bgp drain: 65535:0 and prepend first, then withdrawn; undrain announces again', async () => {
      const t0 = performance.now();
      const r = await runCli(['bgp', 'drain', '--admin', `http://127.0.0.1:${port}`], { netns: pop.name });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /draining: drain; withdrawal after 2s/);
      const tagged = await waitForRoute(control, V4, (x) => x.present && isGshut(x.communities), 3_000);
      assert.ok(tagged.ok, `no GRACEFUL_SHUTDOWN community: ${JSON.stringify(tagged.view)}`);
      assert.deepEqual(tagged.view.asPath, [65001, 65001]);
      const gone = await waitForRoute(control, V4, (x) => !x.present, 6_000);
      assert.ok(gone.ok, 'route stayed after the drain wait');
      const goneAfter = performance.now() - t0;
      assert.ok(goneAfter > 1900, `withdrawn after only ${goneAfter} ms; drain.wait is 2s`);
      assert.equal((await bgpStatus(pop.name, port)).drain.phase, 'withdrawn');
      const u = await runCli(['bgp', 'undrain', '--admin', `http://127.0.0.1:${port}`], { netns: pop.name });
      assert.equal(u.code, 0, u.stderr);
      const back = await waitForRoute(control, V4, (x) => x.present && !isGshut(x.communities), 3_000);
      assert.ok(back.ok, 'not announced again after undrain');
    });

    await t.test('a drain file drains; removing it announces again', async () => {
      writeFileSync(drainFile, '');
      assert.ok((await waitForRoute(control, V4, (x) => x.present && isGshut(x.communities), 3_000)).ok);
      rmSync(drainFile);
      assert.ok((await waitForRoute(control, V4, (x) => x.present && !isGshut(x.communities), 3_000)).ok);
    });

    await t.test('POST /v1/drain (agent-wide drain) drains BGP too; /v1/undrain ends it', async () => {
      await pop.exec(['curl', '-sf', '-X', 'POST', `http://127.0.0.1:${port}/v1/drain`]);
      assert.ok((await waitForRoute(control, V4, (x) => x.present && isGshut(x.communities), 3_000)).ok);
      await pop.exec(['curl', '-sf', '-X', 'POST', `http://127.0.0.1:${port}/v1/undrain`]);
      assert.ok((await waitForRoute(control, V4, (x) => x.present && !isGshut(x.communities), 3_000)).ok);
    });

    await t.test('an invalid config on SIGHUP is refused and the running config stays', async () => {
      // Valid for the schema, refused by `bird -p` (a link-local neighbor needs an interface).
      agent.writeConfig(
        agentYaml({ port, healthFile, drainFile, passwordFile, extraPeer: '\n    - name: ll\n      address: "fe80::1"\n      remoteAs: 65000' }),
      );
      assert.match(readFileSync(agent.configPath, 'utf8'), /fe80::1/);
      agent.proc.kill('SIGHUP');
      const rejected = await agent.waitForLog((e) => e.msg === 'reload rejected; keeping the running config', 10_000);
      assert.match(JSON.stringify(rejected.problems), /BIRD refuses the rendered config/);
      // Invalid for the schema.
      agent.writeConfig(yaml.replace('localAs: 65001', 'localAs: "x"'));
      agent.proc.kill('SIGHUP');
      await agent.waitForLog((e) => e.msg === 'reload rejected: invalid config; keeping the running config', 10_000);
      const s = await bgpStatus(pop.name, port);
      assert.deepEqual(
        s.sessions.map((x) => x.peer),
        ['up4', 'up6'],
      );
      assert.equal(s.state, 'announce');
      const view = await routeFor(control, V4);
      assert.ok(view.present && !isGshut(view.communities));
      agent.writeConfig(yaml);
    });

    await t.test('kill -9 of BIRD: restarted and announcing again within seconds', async () => {
      const pidFile = join(agent.dir, 'state', 'bgp', 'bird.pid');
      const birdPid = Number(readFileSync(pidFile, 'utf8').trim());
      assert.ok(pidAlive(birdPid));
      process.kill(birdPid, 'SIGKILL');
      assert.ok((await waitForRoute(control, V4, (x) => !x.present, 5_000)).ok, 'router kept the route of a dead BIRD');
      const back = await waitForRoute(control, V4, (x) => x.present, 15_000);
      assert.ok(back.ok, `not announced again after BIRD was killed:\n${agent.logLines.slice(-20).join('\n')}`);
      assert.ok(back.ms < 10_000, `took ${back.ms} ms`);
      const s = await bgpStatus(pop.name, port);
      assert.ok(s.bird.restarts >= 1);
      assert.notEqual(s.bird.pid, undefined);
    });

    await t.test('kill -9 of the agent: BIRD dies with it and the router loses the route', async () => {
      const birdPid = Number(readFileSync(join(agent.dir, 'state', 'bgp', 'bird.pid'), 'utf8').trim());
      assert.ok((await waitForRoute(control, V4, (x) => x.present, 5_000)).ok);
      const dir = agent.dir;
      await agent.stop('SIGKILL');
      const gone = await waitForRoute(control, V4, (x) => !x.present, 5_000);
      assert.ok(gone.ok, 'router kept the route after the agent was killed');
      for (let i = 0; i < 40 && pidAlive(birdPid); i++) await new Promise((r) => setTimeout(r, 50));
      assert.equal(pidAlive(birdPid), false, 'BIRD outlived the agent');
      assert.equal(existsSync(dir), false);
    });

    await t.test('SIGTERM drains (65535:0), withdraws, and the agent exits 0', async () => {
      writeFileSync(healthFile, '');
      agent = await startAgent(yaml, { netns: pop.name });
      await waitAlive(pop.name, port, agent);
      assert.ok((await waitForRoute(control, V4, (x) => x.present && !isGshut(x.communities), 20_000)).ok, 'not announced after restart');
      const stopping = agent.stop('SIGTERM', 14_000);
      assert.ok((await waitForRoute(control, V4, (x) => x.present && isGshut(x.communities), 3_000)).ok, 'no GRACEFUL_SHUTDOWN on SIGTERM');
      const gone = await waitForRoute(control, V4, (x) => !x.present, 8_000);
      assert.ok(gone.ok);
      const exit = await stopping;
      assert.equal(exit.code, 0);
    });
  });
});
