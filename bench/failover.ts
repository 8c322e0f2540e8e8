// bench/failover: how fast anycast traffic leaves a PoP whose health fails.
//
//   client ── router ── PoP A (agent + BIRD, preferred: local-pref 200)
//                   └── PoP B (agent + BIRD)
//
// Both PoPs announce 198.51.100.1/32 and run a UDP echo on that address (on lo) that tags each
// answer with its PoP. The client sends a steady probe stream (1,000 packets/s). Each repetition
// fails PoP A (its echo stops answering and its external health check starts failing at the same
// instant) and measures (a) the time until the router's BIRD no longer has A's route and (b) the
// client's loss window: from the last probe A answered to the first one B answered. A is then
// restored and traffic returns to it before the next repetition.
//
// Baseline, same run, same agent: PoP A's external check set up like ExaBGP's healthcheck defaults
// (interval 5 s, rise 3, fall 3) instead of the fast profile (interval 200 ms, rise 2, fall 2).
//
// `node dist/bench/failover.js` (QUICK=1: 3 + 2 repetitions). The topology is bench/two-pops.ts; the
// echo and probe are the demo-roles helpers started inside the namespaces.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTopology } from '../testhosts/index.js';
import { percentile, writeBenchResult } from './results.js';
import { startAgent, freePort, type AgentProcess } from '../dataplane/testing.js';
import { waitForRoute, type RouterBird } from '../bgp/testing.js';
import { ANYCAST, FAST_CHECK, buildTwoPops, popYamlBase, type CheckTiming, type TwoPopsPop } from './two-pops.js';
import { Probe, startRole, type Role } from './probe.js';

const PORT = 7000;
const now = () => performance.timeOrigin + performance.now();
/** PoP A's external check set up like ExaBGP's healthcheck defaults. */
const BASELINE_CHECK: CheckTiming = { interval: '5s', rise: 3, fall: 3 };

interface Pop extends TwoPopsPop {
  port: number;
  agent?: AgentProcess;
  echo?: Role;
}

function popYaml(p: Pop, check: CheckTiming): string {
  return `admin:
  listen: 127.0.0.1:${p.port}
${popYamlBase(p, check)}`;
}

async function startPop(p: Pop, check: CheckTiming): Promise<void> {
  writeFileSync(p.healthFile, '');
  p.agent = await startAgent(popYaml(p, check), { netns: p.ns.name, env: { CBR_LOG_LEVEL: 'info' } });
  p.echo ??= await startRole(p.ns, ['echo', ANYCAST, String(PORT), p.name]);
}

async function measure(
  label: string,
  rb: RouterBird,
  a: Pop,
  probe: Probe,
  reps: number,
  timeoutMs: number,
  checkIntervalMs: number,
): Promise<{ withdraw: number[]; loss: number[] }> {
  const withdraw: number[] = [];
  const loss: number[] = [];
  const prefix = `${ANYCAST}/32`;
  for (let i = 0; i < reps; i++) {
    // Steady state: A's route is best at the router, B's is there as the alternative, A answers the client.
    const ready = await waitForRoute(rb.control, prefix, (v) => v.from === 'pop_a' && v.protocols.includes('pop_b'), timeoutMs);
    if (!ready.ok) throw new Error(`${label}: PoP A is not preferred at the router: ${JSON.stringify(ready.view)}`);
    if (probe.current !== 'A') await probe.wait((s) => s.to === 'A', timeoutMs, `${label}: traffic on PoP A`);
    // A failure lands at a random point of the health check's cycle (A's recovery is in phase with
    // the check, so a fixed pause would always hit the same point of it).
    await new Promise((r) => setTimeout(r, 300 + Math.random() * checkIntervalMs));
    const nSwitches = probe.switches.length;
    const t0 = now();
    a.echo!.proc.stdin!.write('fail\n');
    rmSync(a.healthFile, { force: true });
    const gone = await waitForRoute(rb.control, prefix, (v) => !v.protocols.includes('pop_a'), timeoutMs, 5);
    if (!gone.ok) throw new Error(`${label}: router kept A's route for ${timeoutMs} ms`);
    const withdrawMs = now() - t0;
    const sw = await probe.wait(
      (s) => probe.switches.indexOf(s) >= nSwitches && s.from === 'A' && s.to === 'B',
      timeoutMs,
      `${label}: traffic moving from PoP A to B`,
    );
    const lossMs = sw.firstToSendMs - sw.lastFromSendMs;
    withdraw.push(withdrawMs);
    loss.push(lossMs);
    process.stderr.write(`${label} ${i + 1}/${reps}: withdraw ${withdrawMs.toFixed(0)} ms, loss window ${lossMs.toFixed(0)} ms (${sw.lost} probes lost)\n`);
    // Restore A and let traffic come back before the next repetition.
    writeFileSync(a.healthFile, '');
    a.echo!.proc.stdin!.write('ok\n');
  }
  const back = await waitForRoute(rb.control, prefix, (v) => v.from === 'pop_a', timeoutMs);
  if (!back.ok) throw new Error(`${label}: A did not come back`);
  return { withdraw, loss };
}

async function bench(): Promise<void> {
  const quick = process.env.QUICK === '1';
  const reps = quick ? 3 : 10;
  const baselineReps = quick ? 2 : 10;
  const work = mkdtempSync(join(tmpdir(), 'cbr-failover-'));
  try {
    await withTopology(async (topo) => {
      const net = await buildTwoPops(topo, work);
      const { rb, client } = net;
      const pops: Pop[] = [];
      for (const p of net.pops) pops.push({ ...p, port: await freePort() });
      const [a] = pops as [Pop, Pop];
      topo.onDestroy(async () => {
        for (const p of pops) await p.agent?.stop('SIGKILL');
      });
      for (const p of pops) await startPop(p, FAST_CHECK);
      const probe = await Probe.start(client, ANYCAST, PORT, { rate: 1000, tickMs: 1 });

      const fast = await measure('fast', rb, a, probe, reps, 30_000, 200);

      // Baseline: the same agent on PoP A with ExaBGP healthcheck's defaults.
      await a.agent!.stop('SIGKILL');
      await startPop(a, BASELINE_CHECK);
      const base = await measure('baseline', rb, a, probe, baselineReps, 60_000, 5000);

      probe.stop();
      const ms = (v: number) => ({ value: Math.round(v * 10) / 10, unit: 'ms' });
      const results = {
        withdraw_ms_p50: ms(percentile(fast.withdraw, 0.5)),
        withdraw_ms_p99: ms(percentile(fast.withdraw, 0.99)),
        loss_window_ms_p50: ms(percentile(fast.loss, 0.5)),
        loss_window_ms_p99: ms(percentile(fast.loss, 0.99)),
        baseline_withdraw_ms_p50: ms(percentile(base.withdraw, 0.5)),
        baseline_withdraw_ms_p99: ms(percentile(base.withdraw, 0.99)),
        baseline_loss_window_ms_p50: ms(percentile(base.loss, 0.5)),
        baseline_loss_window_ms_p99: ms(percentile(base.loss, 0.99)),
        repetitions: { value: reps, unit: 'count' },
        baseline_repetitions: { value: baselineReps, unit: 'count' },
      };
      const path = writeBenchResult('failover', results, {
        setup: {
          probeRatePps: 1000,
          fast: 'external command check interval 200ms, rise 2, fall 2; withdraw by configure of a re-rendered export filter',
          baseline: 'same agent, external check interval 5s, rise 3, fall 3 (ExaBGP healthcheck defaults)',
          quick,
          samples: {
            withdraw_ms: fast.withdraw.map((x) => Math.round(x)),
            loss_window_ms: fast.loss.map((x) => Math.round(x)),
            baseline_withdraw_ms: base.withdraw.map((x) => Math.round(x)),
            baseline_loss_window_ms: base.loss.map((x) => Math.round(x)),
          },
        },
      });
      console.log('metric                        value');
      for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(30)}${String(v.value).padStart(10)} ${v.unit}`);
      console.log(`written to ${path}`);
    });
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

bench().catch((err) => {
  console.error(`failover bench failed: ${(err as Error).message}`);
  process.exit(1);
});
