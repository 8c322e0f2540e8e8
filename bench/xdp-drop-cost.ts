// The drop-cost part of bench/xdp: kernel CPU time per dropped flood packet, for the XDP filter
// (deny-list drop, native and generic) and for one nftables drop rule in `netdev ingress` and in
// `inet raw prerouting`, measured in one run with the same flood source (trafgen in a namespace); plus
// a program that drops everything without reading anything (`xdp_bare_drop`): what an XDP drop costs
// on this interface before any filter logic (on a veth, that includes copying each skb into a page-pool page).
//
// trafgen sends a fixed number of packets on a veth whose peer is the PoP interface (no bridge, so the
// only receive work is the PoP's). trafgen pins its one worker to CPU 0, and the veth receive path runs
// as NET_RX softirq on the sending CPU (netif_rx / the veth NAPI), inline in that worker or in
// ksoftirqd/0. The cost is that softirq time over the packets the rule itself counted as dropped; the
// time comes from perf (softirq-perf.ts: the flood's threads only), or where perf cannot sample from
// CPU 0's /proc/stat softirq column (tick-sampled here, every job's softirq) less an idle window just
// before. The sender's own work (building and queueing the skb) is process time and not counted. Each
// trafgen run is bounded in packets and time.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { BenchMetric } from './results.js';
import type { Namespace } from '../testhosts/index.js';
import { withFloodEnv, writeFloodConf, median } from './xdp-flood-env.js';
import { SoftirqPerf, descendants, ksoftirqd } from './softirq-perf.js';
import { detachXdp, pinDirFor } from '../xdp/loader.js';

const ATTACH = join(dirname(fileURLToPath(import.meta.url)), 'xdp-flood-attach.js');

type DropMode = 'xdp' | 'xdp_generic' | 'xdp_bare_drop' | 'nftables_netdev' | 'nftables_raw';
const DROP_MODES: DropMode[] = ['xdp', 'nftables_netdev', 'xdp_bare_drop', 'nftables_raw', 'xdp_generic'];
/** trafgen's single worker runs here (`--cpus 1` pins it to CPU 0). */
const FLOOD_CPU = 0;
const ATTACKER = '10.70.0.66';

/** The metric each mode's figure is written as. */
const METRIC: Record<DropMode, string> = {
  xdp: 'ns_filter_drop_per_pkt_xdp',
  xdp_generic: 'ns_filter_drop_per_pkt_xdp_generic',
  xdp_bare_drop: 'ns_drop_per_pkt_xdp_bare_drop',
  nftables_netdev: 'ns_drop_per_pkt_nftables_netdev',
  nftables_raw: 'ns_drop_per_pkt_nftables_raw',
};

interface CpuSample {
  softirq: number;
  total: number;
  ns: bigint;
}

/** One CPU's softirq and total jiffies from /proc/stat, with the monotonic time they were read. */
function cpuSample(cpu: number): CpuSample {
  const line = readFileSync('/proc/stat', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`cpu${cpu} `));
  if (!line) throw new Error(`/proc/stat has no cpu${cpu} line`);
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  return { softirq: f[6] ?? 0, total: f.reduce((a, b) => a + b, 0), ns: process.hrtime.bigint() };
}

/** Softirq share of the CPU between two samples (0..1) and the wall time between them in ns. */
function softirqShare(a: CpuSample, b: CpuSample): { share: number; wallNs: number } {
  return { share: (b.softirq - a.softirq) / Math.max(1, b.total - a.total), wallNs: Number(b.ns - a.ns) };
}

function nftRules(mode: DropMode, ifname: string): string {
  return mode === 'nftables_netdev'
    ? `table netdev cbrdrop {\n chain in {\n  type filter hook ingress device "${ifname}" priority -500;\n  ip saddr ${ATTACKER} counter drop\n }\n}\n`
    : `table inet cbrdrop {\n chain pre {\n  type filter hook prerouting priority raw;\n  ip saddr ${ATTACKER} counter drop\n }\n}\n`;
}

const nftFamily = (mode: DropMode) => (mode === 'nftables_netdev' ? 'netdev' : 'inet');

const received = async (ns: Namespace, ifname: string) => Number((await ns.exec(['cat', `/sys/class/net/${ifname}/statistics/rx_packets`])).trim());

/**
 * Packets the mode has dropped so far: the nftables rule counter, the filter's drop/denylist counter,
 * or for the bare drop program (which counts nothing) the packets its interface received.
 */
async function droppedSoFar(mode: DropMode, pop: Namespace, ifname: string, pinDir: string): Promise<number> {
  if (mode === 'xdp_bare_drop') return received(pop, ifname);
  if (mode.startsWith('nftables')) {
    const out = await pop.exec(['nft', 'list', 'table', nftFamily(mode), 'cbrdrop']);
    const m = /counter packets (\d+)/.exec(out);
    if (!m) throw new Error(`drop-cost bench: no counter in the nftables table: ${out}`);
    return Number(m[1]);
  }
  const stats = JSON.parse(await pop.exec([process.execPath, ATTACH, ifname, pinDir, 'stats'], { timeoutMs: 30_000 })) as Array<{
    action: string;
    reason: string;
    packets: number;
  }>;
  return stats.filter((r) => r.action === 'drop' && r.reason === 'denylist').reduce((a, r) => a + r.packets, 0);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function dropCostBench(opts: { quick: boolean; say: (m: string) => void }): Promise<Record<string, BenchMetric>> {
  // ~0.5-1 Mpps here, and /proc/stat samples at HZ=250: a few seconds per flood keep the sampling error near 5%
  const packets = opts.quick ? 500_000 : 3_000_000;
  const floodTimeoutS = opts.quick ? 10 : 40;
  const idleMs = opts.quick ? 700 : 1500;
  const reps = opts.quick ? 2 : 5;
  const results: Record<string, BenchMetric> = {};
  let method = 'proc_stat';
  await withFloodEnv('bpfdrop', async ({ topo, dir, bpffs }) => {
    const pop = await topo.namespace('dpop');
    const attacker = await topo.namespace('datk');
    const [popIf, atkIf] = await topo.link(pop, attacker, { aAddr: '10.70.0.1/24', bAddr: `${ATTACKER}/24` });
    const popMac = (await pop.exec(['cat', `/sys/class/net/${popIf.ifname}/address`])).trim();
    const atkMac = (await attacker.exec(['cat', `/sys/class/net/${atkIf.ifname}/address`])).trim();
    // to the PoP's MAC (PACKET_HOST, so the IP layer and raw prerouting see it), to a port nobody listens on
    const cfgPath = join(dir, 'drop.trafgen');
    writeFloodConf(cfgPath, { dstMac: popMac, srcMac: atkMac, saddr: ATTACKER, daddr: '10.70.0.1' });
    // perf when it can sample here (the flood's own threads only); else /proc/stat less an idle window
    const perf = await SoftirqPerf.open(FLOOD_CPU, join(dir, 'perf.data'));
    method = perf ? 'perf' : 'proc_stat';
    opts.say(`drop cost: softirq time from ${perf ? 'perf record (trafgen worker + ksoftirqd)' : '/proc/stat (perf cannot sample here)'}`);
    const runs = new Map<DropMode, Array<{ ns: number; kpps: number; share: number; idle: number }>>(DROP_MODES.map((m) => [m, []]));
    for (let rep = 0; rep < reps; rep++) {
      for (let i = 0; i < DROP_MODES.length; i++) {
        const mode = DROP_MODES[(i + rep) % DROP_MODES.length]!;
        let pinDir: string | undefined;
        if (mode.startsWith('nftables')) await pop.exec(['nft', '-f', '-'], { input: nftRules(mode, popIf.ifname) });
        else {
          pinDir = pinDirFor(bpffs, popIf.ifname);
          const how = mode === 'xdp' ? 'native' : mode === 'xdp_generic' ? 'generic' : 'bare_drop';
          await pop.exec([process.execPath, ATTACH, popIf.ifname, pinDir, how], { timeoutMs: 30_000 });
        }
        try {
          const r0 = await received(pop, popIf.ifname);
          const c0 = await droppedSoFar(mode, pop, popIf.ifname, pinDir ?? '');
          const i0 = cpuSample(FLOOD_CPU);
          await sleep(idleMs);
          const idle = softirqShare(i0, cpuSample(FLOOD_CPU)).share;
          await perf?.start();
          const f0 = cpuSample(FLOOD_CPU);
          let floodErr = '';
          const flood = attacker.spawn([
            'timeout',
            String(floodTimeoutS),
            'trafgen',
            '--dev',
            atkIf.ifname,
            '--conf',
            cfgPath,
            '--cpus',
            '1',
            '-n',
            String(packets),
          ]);
          flood.stderr?.on('data', (d) => (floodErr += d));
          // the flood's threads (timeout, trafgen, its pinned worker), for perf's per-thread count
          const tids = new Set<number>();
          const watch = setInterval(() => {
            if (flood.pid !== undefined) for (const t of descendants(flood.pid)) tids.add(t);
          }, 100);
          const code = await new Promise<number | null>((r) =>
            flood.exitCode !== null || flood.signalCode !== null ? r(flood.exitCode) : flood.once('exit', (c) => r(c)),
          ).finally(() => clearInterval(watch));
          const f1 = cpuSample(FLOOD_CPU);
          await perf?.stop();
          if (code !== 0 && code !== 124) throw new Error(`drop-cost bench: trafgen exited with ${code}: ${floodErr.trim()}`);
          const dropped = (await droppedSoFar(mode, pop, popIf.ifname, pinDir ?? '')) - c0;
          const rx = (await received(pop, popIf.ifname)) - r0;
          if (dropped <= 0) throw new Error(`drop-cost bench: ${mode} dropped no packets (trafgen: ${floodErr.trim()})`);
          const { share, wallNs } = softirqShare(f0, f1);
          const nsProcStat = (Math.max(0, share - idle) * wallNs) / dropped;
          const softirqd = ksoftirqd(FLOOD_CPU);
          if (softirqd !== undefined) tids.add(softirqd);
          // no sample at all means perf recorded nothing (the flood always costs some softirq): use /proc/stat then
          const sampled = perf ? await perf.netRxNs(tids).then((x) => (x.samples > 0 ? x : undefined)) : undefined;
          if (perf && !sampled) method = 'perf; /proc/stat where perf recorded nothing';
          const ns = sampled ? sampled.ns / dropped : nsProcStat;
          const kpps = dropped / (wallNs / 1e6);
          runs.get(mode)!.push({ ns, kpps, share, idle });
          opts.say(
            `drop cost ${mode} #${rep + 1}: ${dropped} dropped (${rx} received) in ${(wallNs / 1e9).toFixed(2)} s (${kpps.toFixed(0)} kpps); ${sampled ? `perf: ${sampled.samples} NET_RX samples of 100 us -> ${ns.toFixed(0)} ns/packet; ` : ''}/proc/stat: cpu${FLOOD_CPU} softirq ${(share * 100).toFixed(1)}% (idle ${(idle * 100).toFixed(1)}%) -> ${nsProcStat.toFixed(0)} ns/packet${code === 124 ? ' (trafgen stopped by its time bound)' : ''}`,
          );
        } finally {
          if (mode.startsWith('nftables')) await pop.exec(['nft', 'delete', 'table', nftFamily(mode), 'cbrdrop']);
          if (pinDir) detachXdp(pinDir);
        }
      }
    }
    for (const mode of DROP_MODES) {
      const rs = runs.get(mode)!;
      results[METRIC[mode]] = { value: Math.round(median(rs.map((r) => r.ns))), unit: `ns NET_RX softirq CPU/dropped packet (${method})` };
      results[`drop_kpps_${mode}`] = { value: Math.round(median(rs.map((r) => r.kpps))), unit: 'kpps (one sending CPU, sender included)' };
      results[`drop_softirq_cpu_${mode}`] = { value: Math.round(median(rs.map((r) => r.share)) * 1000) / 10, unit: `% of cpu${FLOOD_CPU} during the flood` };
    }
    const netdev = results.ns_drop_per_pkt_nftables_netdev!.value;
    const raw = results.ns_drop_per_pkt_nftables_raw!.value;
    results.ns_drop_per_pkt_nftables = { value: Math.min(netdev, raw), unit: `ns NET_RX softirq CPU/dropped packet (${method}; cheaper nftables hook)` };
    const xdp = results.ns_filter_drop_per_pkt_xdp!.value;
    results.ratio_drop_per_pkt_nftables_over_xdp = { value: Math.round((Math.min(netdev, raw) / Math.max(1, xdp)) * 100) / 100, unit: 'x' };
  });
  return results;
}
