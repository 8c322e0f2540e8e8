// Soak (issue 12): 2,000 honest connect-udp sessions stay open while a second client with a token of
// its own misbehaves from another address for SOAK_SECONDS (45 s here; CBR_SOAK_SECONDS for a longer
// run): forged tokens, CONNECT streams reset as they open, ADDRESS_REQUEST floods on connect-ip
// sessions, partial HEADERS. What must hold: the honest relay rate stays at least half of what it
// was before, the agent's memory comes back near where it started, every honest session is still
// alive at the end, and the agent never fell over.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { withTopology } from '../../testhosts/index.js';
import { masqueTestbed, metricValue, startLoad, udpEcho, LOAD_LIMITS, type Testbed } from './testing.js';

const FLOOD_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'testing-flood.js');
const SOAK_SECONDS = Number(process.env.CBR_SOAK_SECONDS ?? 45);
const SESSIONS = 2000;
const MiB = 1 << 20;
/** Growth of the agent's RSS during the attack, and what may remain after it (the V8 heap does not shrink to where it was). */
const PEAK_GROWTH_BOUND = 250 * MiB;
const SETTLED_GROWTH_BOUND = 120 * MiB;

async function relayKpps(tb: Testbed, token: string): Promise<number> {
  const cfg = { mode: 'pps', host: tb.popAddr, port: tb.port, ca: tb.caFile, token, target: { host: tb.originAddr, port: 7007 }, seconds: 3, size: 200 };
  const { result } = await startLoad(tb, cfg, { timeoutMs: 30_000 });
  return result.kpps ?? 0;
}

test(`soak: ${SESSIONS} honest sessions hold while a client misbehaves for ${SOAK_SECONDS} s`, { timeout: (SOAK_SECONDS + 240) * 1000 }, async () => {
  await withTopology(async (topo) => {
    // Held sessions are idle between measurements: the idle timeout must outlast the soak.
    const tb = await masqueTestbed(topo, { extraMasque: `    idleTimeout: ${SOAK_SECONDS + 300}s\n${LOAD_LIMITS}` });
    udpEcho(tb.origin, 7007);
    // The misbehaving client comes from a second address, so it has its own per-source budget.
    const ifname = /^\d+: (\S+)\s+inet 10\.61\.1\.2\//m.exec(await tb.client.exec(['ip', '-o', '-4', 'addr', 'show']))?.[1];
    assert.ok(ifname, 'the client link');
    await tb.client.addAddress(ifname, '10.61.1.3/24');

    const honestToken = await tb.mint('honest', { ttlS: 1800 });
    const sessionsCfg = {
      mode: 'sessions',
      host: tb.popAddr,
      port: tb.port,
      ca: tb.caFile,
      token: honestToken,
      target: { host: tb.originAddr, port: 7007 },
      count: SESSIONS,
      concurrency: 100,
    };
    const held = await startLoad(tb, sessionsCfg, { timeoutMs: 240_000 });
    assert.equal(held.result.opened, SESSIONS, JSON.stringify(held.result));
    const before = await relayKpps(tb, honestToken);
    assert.ok(before > 0, 'the relay carries traffic before the attack');
    const rss0 = tb.agentRss();

    const attacker = tb.client.spawn([process.execPath, FLOOD_MAIN], {
      env: {
        ...process.env,
        CBR_FLOOD: JSON.stringify({
          mode: 'misbehave',
          host: tb.popAddr,
          port: tb.port,
          ca: tb.caFile,
          bind: '10.61.1.3',
          token: await tb.mint('mallory', { ttlS: 1800 }),
          target: { host: tb.originAddr, port: 7007 },
          seconds: SOAK_SECONDS,
        }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    attacker.stdout!.on('data', (d) => (out += d));
    attacker.stderr!.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((r) => attacker.once('exit', r));
    let peak = rss0;
    const sampler = setInterval(() => (peak = Math.max(peak, tb.agentRss())), 200);
    try {
      // Measure the honest relay while the attack runs (it has been going for a few seconds).
      await new Promise((r) => setTimeout(r, Math.min(5_000, (SOAK_SECONDS * 1000) / 4)));
      const during = await relayKpps(tb, honestToken);
      const timer = setTimeout(() => attacker.kill('SIGKILL'), (SOAK_SECONDS + 60) * 1000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, `the misbehaving client exited ${code}: ${err}`);
      const done = JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as { rounds: number; answers: Record<string, number>; errors: Record<string, number> };
      // It really misbehaved, and was answered as the protocol says.
      assert.ok(done.rounds >= 3, JSON.stringify(done));
      assert.ok((done.answers['bad-token:401'] ?? 0) >= 1, JSON.stringify(done));
      assert.equal(done.answers['bad-token-accepted'], undefined, 'a forged token was accepted');
      assert.ok((done.answers.reset ?? 0) >= 1 && (done.answers['partial-headers'] ?? 0) >= 1, JSON.stringify(done));

      await new Promise((r) => setTimeout(r, 3_000));
      const rss1 = tb.agentRss();
      const after = await relayKpps(tb, honestToken);
      process.stderr.write(
        `soak: relay ${before.toFixed(1)} kpps before, ${during.toFixed(1)} during, ${after.toFixed(1)} after; agent RSS ${(rss0 / MiB).toFixed(0)} MiB → peak ${(peak / MiB).toFixed(0)} → ${(rss1 / MiB).toFixed(0)} MiB; attacker ${JSON.stringify(done)}\n`,
      );
      assert.ok(during >= before * 0.5, `honest relay during the attack ${during.toFixed(1)} kpps, before ${before.toFixed(1)}`);
      assert.ok(peak - rss0 < PEAK_GROWTH_BOUND, `agent RSS grew ${((peak - rss0) / MiB).toFixed(0)} MiB during the attack`);
      assert.ok(rss1 - rss0 < SETTLED_GROWTH_BOUND, `agent RSS ${((rss1 - rss0) / MiB).toFixed(0)} MiB above its start after the attack`);

      // Every honest session is still there, and the agent never fell over.
      // (the last relay measurement's own session may still be closing)
      let live = 0;
      for (const until = Date.now() + 10_000; Date.now() < until; await new Promise((r) => setTimeout(r, 250))) {
        live = metricValue(await tb.metrics(), 'cbr_masque_sessions', 'kind="connect-udp"');
        if (live === SESSIONS) break;
      }
      assert.equal(live, SESSIONS);
      assert.equal(tb.agent.proc.exitCode, null, 'the agent is running');
      held.child.stdin!.write('close\n');
      await new Promise((r) => held.child.once('exit', r));
      assert.match(held.output(), new RegExp(`"alive":${SESSIONS}`));
    } finally {
      clearInterval(sampler);
      if (attacker.exitCode === null) attacker.kill('SIGKILL');
    }
  });
});
