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
// `node dist/bench/failover.js` (QUICK=1: 3 + 2 repetitions). Roles `echo` and `probe` are this same
// file started inside the namespaces.
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { withTopology, type Namespace, type Topology } from '../testhosts/index.js';
import { writeBenchResult } from './results.js';
import { startAgent, freePort, type AgentProcess } from '../dataplane/testing.js';
import { startRouterBird, waitForRoute, type RouterBird } from '../bgp/testing.js';

const ANYCAST = '198.51.100.1';
const PORT = 7000;
const SELF = fileURLToPath(import.meta.url);
const now = () => performance.timeOrigin + performance.now();

// ---------------- role: echo (inside a PoP namespace) ----------------

function runEcho(tag: string): void {
  const sock = createSocket('udp4');
  let failed = false;
  sock.on('message', (msg, rinfo) => {
    if (failed) return;
    sock.send(Buffer.concat([msg, Buffer.from(tag)]), rinfo.port, rinfo.address);
  });
  sock.bind(PORT, ANYCAST, () => process.stdout.write('ready\n'));
  createInterface({ input: process.stdin }).on('line', (l) => {
    failed = l.trim() === 'fail';
    process.stdout.write(`${failed ? 'failed' : 'ok'}\n`);
  });
  process.stdin.on('end', () => process.exit(0));
}

// ---------------- role: probe (inside the client namespace) ----------------

function runProbe(rate: number): void {
  const sock = createSocket('udp4');
  let seq = 0;
  const t0 = now();
  let lastTag: string | undefined;
  let lastSeq = -1;
  let lastSend = 0;
  sock.on('message', (msg) => {
    if (msg.length < 13) return;
    const s = msg.readUInt32BE(0);
    const sent = msg.readDoubleBE(4);
    const tag = msg.subarray(12).toString();
    if (s <= lastSeq) return; // late or reordered: the switch is decided by sequence order
    if (tag !== lastTag) {
      process.stdout.write(
        `${JSON.stringify({
          from: lastTag ?? 'none',
          to: tag,
          lastFromSeq: lastSeq,
          lastFromSendMs: lastSend,
          firstToSeq: s,
          firstToSendMs: sent,
          lost: s - lastSeq - 1,
        })}\n`,
      );
    }
    lastTag = tag;
    lastSeq = s;
    lastSend = sent;
  });
  const payload = Buffer.alloc(12);
  // Timers tick at ~1 ms at best; send what the rate owes every tick so the average stays exact.
  const timer = setInterval(() => {
    const due = Math.floor(((now() - t0) / 1000) * rate);
    for (; seq < due; seq++) {
      payload.writeUInt32BE(seq, 0);
      payload.writeDoubleBE(now(), 4);
      sock.send(payload, PORT, ANYCAST);
    }
  }, 1);
  process.stdin.resume();
  process.stdin.on('end', () => {
    clearInterval(timer);
    sock.close();
    process.exit(0);
  });
}

// ---------------- the bench ----------------

interface Switch {
  from: string;
  to: string;
  lastFromSendMs: number;
  firstToSendMs: number;
  lost: number;
}

class ProbeReader {
  readonly switches: Switch[] = [];
  private waiters: Array<{ pred: (s: Switch) => boolean; resolve: (s: Switch) => void }> = [];
  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      let s: Switch;
      try {
        s = JSON.parse(l) as Switch;
      } catch {
        return;
      }
      this.switches.push(s);
      for (const w of [...this.waiters])
        if (w.pred(s)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(s);
        }
    });
  }
  get current(): string | undefined {
    return this.switches.at(-1)?.to;
  }
  wait(pred: (s: Switch) => boolean, timeoutMs: number): Promise<Switch> {
    const seen = this.switches.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (s: Switch) => {
          clearTimeout(t);
          resolve(s);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no matching traffic switch within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

interface Pop {
  name: 'A' | 'B';
  ns: Namespace;
  routerAddr: string;
  addr: string;
  as: number;
  healthFile: string;
  port: number;
  agent?: AgentProcess;
  echo?: ChildProcess;
}

function popYaml(p: Pop, profile: 'fast' | 'baseline'): string {
  const check = profile === 'fast' ? { interval: '200ms', rise: 2, fall: 2 } : { interval: '5s', rise: 3, fall: 3 };
  return `admin:
  listen: 127.0.0.1:${p.port}
log:
  level: info
lifecycle:
  shutdownTimeout: 10s
health:
  checks:
    - name: service
      command: [test, -f, ${p.healthFile}]
      interval: ${check.interval}
      timeout: 1s
      rise: ${check.rise}
      fall: ${check.fall}
bgp:
  enabled: true
  routerId: ${p.addr}
  localAs: ${p.as}
  prefixes: [${ANYCAST}/32]
  peers:
    - name: upstream
      address: ${p.routerAddr}
      remoteAs: 65000
  timers: { hold: 3s, keepalive: 1s, connectRetry: 1s, connectDelay: 1s }
  drain: { wait: 1s }
  sessionCheck: { require: any, interval: 500ms, rise: 1, fall: 3 }
`;
}

async function startPop(topo: Topology, p: Pop, profile: 'fast' | 'baseline'): Promise<void> {
  writeFileSync(p.healthFile, '');
  p.agent = await startAgent(popYaml(p, profile), { netns: p.ns.name, env: { CBR_LOG_LEVEL: 'info' } });
  if (!p.echo) {
    const echo = p.ns.spawn([process.execPath, SELF, 'echo', p.name], { stdio: ['pipe', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: echo.stdout! }).once('line', () => resolve());
      echo.once('exit', (c) => reject(new Error(`echo ${p.name} exited ${c}`)));
    });
    p.echo = echo;
  }
  void topo;
}

function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}

async function measure(
  label: string,
  rb: RouterBird,
  a: Pop,
  probe: ProbeReader,
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
    if (probe.current !== 'A') await probe.wait((s) => s.to === 'A', timeoutMs);
    // A failure lands at a random point of the health check's cycle (A's recovery is in phase with
    // the check, so a fixed pause would always hit the same point of it).
    await new Promise((r) => setTimeout(r, 300 + Math.random() * checkIntervalMs));
    const nSwitches = probe.switches.length;
    const t0 = now();
    a.echo!.stdin!.write('fail\n');
    rmSync(a.healthFile, { force: true });
    const gone = await waitForRoute(rb.control, prefix, (v) => !v.protocols.includes('pop_a'), timeoutMs, 5);
    if (!gone.ok) throw new Error(`${label}: router kept A's route for ${timeoutMs} ms`);
    const withdrawMs = now() - t0;
    const sw = await probe.wait((s) => probe.switches.indexOf(s) >= nSwitches && s.from === 'A' && s.to === 'B', timeoutMs);
    const lossMs = sw.firstToSendMs - sw.lastFromSendMs;
    withdraw.push(withdrawMs);
    loss.push(lossMs);
    process.stderr.write(`${label} ${i + 1}/${reps}: withdraw ${withdrawMs.toFixed(0)} ms, loss window ${lossMs.toFixed(0)} ms (${sw.lost} probes lost)\n`);
    // Restore A and let traffic come back before the next repetition.
    writeFileSync(a.healthFile, '');
    a.echo!.stdin!.write('ok\n');
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
      const router = await topo.namespace('router');
      const client = await topo.namespace('client');
      const nsA = await topo.namespace('popa');
      const nsB = await topo.namespace('popb');
      await topo.link(router, nsA, { aAddr: '10.0.1.1/24', bAddr: '10.0.1.2/24' });
      await topo.link(router, nsB, { aAddr: '10.0.2.1/24', bAddr: '10.0.2.2/24' });
      await topo.link(router, client, { aAddr: '10.9.0.1/24', bAddr: '10.9.0.2/24' });
      await router.sysctl('net.ipv4.ip_forward', '1');
      await client.exec(['ip', 'route', 'add', 'default', 'via', '10.9.0.1']);
      const pops: Pop[] = [];
      for (const [name, ns, n] of [
        ['A', nsA, 1],
        ['B', nsB, 2],
      ] as const) {
        await ns.exec(['ip', 'addr', 'add', `${ANYCAST}/32`, 'dev', 'lo']);
        await ns.exec(['ip', 'route', 'add', 'default', 'via', `10.0.${n}.1`]);
        pops.push({
          name,
          ns,
          routerAddr: `10.0.${n}.1`,
          addr: `10.0.${n}.2`,
          as: 65000 + n,
          healthFile: join(work, `healthy-${name}`),
          port: await freePort(),
        });
      }
      const [a, b] = pops as [Pop, Pop];
      const rb = await startRouterBird(router, {
        routerId: '10.9.0.1',
        as: 65000,
        kernel: true,
        neighbors: [
          { name: 'pop_a', address: a.addr, as: a.as, localPref: 200 },
          { name: 'pop_b', address: b.addr, as: b.as, localPref: 100 },
        ],
      });
      topo.onDestroy(() => rb.stop());
      topo.onDestroy(async () => {
        for (const p of pops) await p.agent?.stop('SIGKILL');
      });
      for (const p of pops) await startPop(topo, p, 'fast');
      const probeProc = client.spawn([process.execPath, SELF, 'probe', '1000'], { stdio: ['pipe', 'pipe', 'inherit'] });
      const probe = new ProbeReader(probeProc);

      const fast = await measure('fast', rb, a, probe, reps, 30_000, 200);

      // Baseline: the same agent on PoP A with ExaBGP healthcheck's defaults.
      await a.agent!.stop('SIGKILL');
      await startPop(topo, a, 'baseline');
      const base = await measure('baseline', rb, a, probe, baselineReps, 60_000, 5000);

      probeProc.stdin!.end();
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

const role = process.argv[2];
if (role === 'echo') runEcho(process.argv[3] ?? '?');
else if (role === 'probe') runProbe(Number(process.argv[3] ?? 1000));
else {
  bench().catch((err) => {
    console.error(`failover bench failed: ${(err as Error).message}`);
    process.exit(1);
  });
}
