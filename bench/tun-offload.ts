// bench/tun-offload: what the TUN offloads (dataplane/os/tun.ts, native/cbr_tun.c) save on connect-ip.
// The MASQUE testbed (client ns ↔ PoP ns running the agent ↔ origin ns) with `cbr connect --mode ip`;
// an iperf3 TCP flow up (client → origin: the client reads TSO super-packets, the PoP coalesces its
// TUN writes) and down (-R), with CBR_TUN_OFFLOAD=0 and with offloads, alternating, each in a fresh
// testbed (the agent and `cbr connect` read the variable at start). Per run: throughput, agent and
// client CPU per tunnelled packet (/proc/<pid>/stat over the flow; packets from
// cbr_masque_datagrams_total), PoP TUN writes per packet written, the load average.
//
// `node dist/bench/tun-offload.js` (QUICK=1: one round of 3 s flows; PERF=1: `perf record` of the
// agent during each upload into /tmp/cbr-tun-offload-<mode>-<round>.data). Writes
// bench/results/tun-offload.json: the medians over the rounds.
import { loadavg } from 'node:os';
import { spawn } from 'node:child_process';
import { withTopology } from '../testhosts/index.js';
import { masqueTestbed, metricValue, processCpuMs, startConnect, stopConnect } from '../tunnel/masque/testing.js';
import { percentile, writeBenchResult, type BenchMetric } from './results.js';

const QUICK = process.env.QUICK === '1';
const ROUNDS = QUICK ? 1 : 3;
const SECONDS = QUICK ? 3 : 5;
/** User + system CPU of a process (all its threads) in µs. */
const cpuUsOf = (pid: number): number => processCpuMs(pid) * 1000;

interface Run {
  gbps: number;
  agentUsPerPacket: number;
  clientUsPerPacket: number;
  tunWritesPerPacket: number;
  load: number;
}

async function measure(offload: boolean, round: number): Promise<Record<'up' | 'down', Run>> {
  process.env.CBR_TUN_OFFLOAD = offload ? '1' : '0';
  return withTopology(async (topo) => {
    const tb = await masqueTestbed(topo, { logLevel: 'info' });
    const c = startConnect(tb, ['--mode', 'ip', '--tun', 'cbrm0', '--token', await tb.mint('bench', { ttlS: 3600 })]);
    try {
      await c.waitFor(/session open: connect-ip/, 30_000);
      await tb.client.ping(tb.originAddr, { count: 2, timeoutS: 2 });
      const out = {} as Record<'up' | 'down', Run>;
      for (const dir of ['up', 'down'] as const) {
        const server = tb.origin.spawn(['iperf3', '-s', '-1', '-B', tb.originAddr]);
        await new Promise((r) => setTimeout(r, 400));
        const perf =
          process.env.PERF === '1' && dir === 'up'
            ? spawn('perf', ['record', '-F', '2000', '-g', '-o', `/tmp/cbr-tun-offload-${offload ? 'on' : 'off'}-${round}.data`, '-p', String(tb.agent.pid)], {
                stdio: 'ignore',
              })
            : undefined;
        const m0 = await tb.metrics();
        const a0 = cpuUsOf(tb.agent.pid);
        const c0 = cpuUsOf(c.child.pid!);
        const iperf = JSON.parse(
          await tb.client.exec(['iperf3', '-c', tb.originAddr, '-t', String(SECONDS), '-J', ...(dir === 'down' ? ['-R'] : [])], {
            timeoutMs: (SECONDS + 30) * 1000,
          }),
        );
        const a1 = cpuUsOf(tb.agent.pid);
        const c1 = cpuUsOf(c.child.pid!);
        if (perf) {
          perf.kill('SIGINT');
          await new Promise((r) => perf.once('exit', r));
        }
        const m1 = await tb.metrics();
        server.kill('SIGKILL');
        const delta = (name: string, labels = '') => (metricValue(m1, name, labels) || 0) - (metricValue(m0, name, labels) || 0);
        const into = delta('cbr_masque_datagrams_total', 'direction="in"');
        const packets = into + delta('cbr_masque_datagrams_total', 'direction="out"');
        out[dir] = {
          gbps: iperf.end.sum_received.bits_per_second / 1e9,
          agentUsPerPacket: (a1 - a0) / packets,
          clientUsPerPacket: (c1 - c0) / packets,
          tunWritesPerPacket: delta('cbr_masque_tun_writes_total') / into,
          load: loadavg()[0]!,
        };
        process.stdout.write(`offload ${offload ? 'on ' : 'off'} ${dir.padEnd(4)} ${JSON.stringify(out[dir])}\n`);
      }
      return out;
    } finally {
      await stopConnect(c.child);
    }
  });
}

const runs: Record<string, Run[]> = {};
for (let round = 0; round < ROUNDS; round++) {
  for (const offload of [false, true]) {
    const r = await measure(offload, round);
    for (const dir of ['up', 'down'] as const) {
      const k = `${dir}_offload_${offload ? 'on' : 'off'}`;
      runs[k] = [...(runs[k] ?? []), r[dir]];
    }
  }
}
const results: Record<string, BenchMetric> = {};
const median = (xs: number[]) => Math.round(percentile(xs, 0.5) * 1000) / 1000;
for (const [k, rs] of Object.entries(runs)) {
  results[`tcp_gbps_${k}`] = { value: median(rs.map((r) => r.gbps)), unit: 'Gbit/s (iperf3 through connect-ip)' };
  results[`agent_us_per_pkt_${k}`] = { value: median(rs.map((r) => r.agentUsPerPacket)), unit: 'µs agent CPU per tunnelled packet' };
  results[`client_us_per_pkt_${k}`] = { value: median(rs.map((r) => r.clientUsPerPacket)), unit: 'µs cbr connect CPU per tunnelled packet' };
  results[`tun_writes_per_pkt_${k}`] = { value: median(rs.map((r) => r.tunWritesPerPacket)), unit: 'PoP TUN write syscalls per packet written' };
}
writeBenchResult('tun-offload', results, {
  quick: QUICK,
  rounds: ROUNDS,
  seconds: SECONDS,
  load1: Object.fromEntries(Object.entries(runs).map(([k, rs]) => [k, rs.map((r) => Math.round(r.load * 100) / 100)])),
  note: 'shared 2-core machine: other helpers ran at the same time (load1 per run above)',
});
