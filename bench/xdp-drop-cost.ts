// The drop-cost part of bench/xdp: kernel CPU time per dropped flood packet, for the XDP filter
// (deny-list drop, native and generic) and for one nftables drop rule in `netdev ingress` and in
// `inet raw prerouting`, measured in one run; plus a program that drops everything without reading
// anything (`xdp_bare_drop`): what an XDP drop costs on this interface before any filter logic.
//
// Two flood sources, each mode measured with both in the same run:
//  - frames (the scored metrics, no suffix): the way a NIC delivers packets. xdp/livesend.ts in the
//    attacker namespace runs BPF_PROG_TEST_RUN in live-frames mode with a program that redirects each
//    frame out of the attacker veth; veth's ndo_xdp_xmit puts it on the PoP veth's ring as an
//    xdp_frame, and the PoP's XDP program runs on it with no skb made, as on a NIC's DMA buffer. veth
//    only takes redirected frames when its XDP program is attached, so the nftables modes attach the
//    bare XDP_PASS program: the frame then becomes an skb (veth_xdp_rcv_one: build_skb around the
//    frame's page, the same skb build a NIC driver does) and goes through nftables. Generic XDP only
//    ever sees skbs, so xdp_generic has no frames figure.
//  - skb (suffix _skb): trafgen on the veth peer. Its packets arrive as skbs, and native XDP on veth
//    first copies each one into a page-pool page (skb_pp_cow_data), which a NIC never does.
//
// Accounting. Both senders are pinned to CPU 0 and the veth receive path runs as NET_RX softirq on the
// sending CPU. trafgen: inline in its worker (netif_rx / the veth NAPI) or in ksoftirqd/0. frames:
// the test run executes in the sender's syscall; after each batch (64 frames) it flushes the redirect
// queue (veth_xdp_xmit puts the frames on the PoP's ring and schedules its NAPI) and re-enables bottom
// halves, which runs net_rx_action -> veth_poll in the same thread (or ksoftirqd/0 when deferred).
// So in both cases the sender's own work (building frames, the redirect program, ndo_xdp_xmit;
// trafgen's skb build and queueing) is outside net_rx_action, and the receive work is inside it. The
// cost is that NET_RX time over the packets the rule itself counted as dropped; the time comes from
// perf (softirq-perf.ts: samples of the flood's threads and ksoftirqd/0 whose stack holds
// net_rx_action), or where perf cannot sample from CPU 0's /proc/stat softirq column (tick-sampled
// here, every job's softirq) less an idle window just before. As a check, for frames the log splits
// the sender's CPU samples by the test run's syscall (bpf_prog_test_run_xdp on the stack): NET_RX
// inside and outside it, and the run's CPU per frame. Full runs so far: 0.0-0.1% of the NET_RX time
// outside the run, none in ksoftirqd; per frame the run's CPU is NET_RX (the cost counted: ~60% of
// it for the filter's drop, ~85% for nftables) plus the sender's part (~25-35 ns, not counted); perf
// and /proc/stat agree within their noise. Each flood is bounded in packets and time.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { BenchMetric } from './results.js';
import type { Namespace } from '../testhosts/index.js';
import { withFloodEnv, writeFloodConf, median } from './xdp-flood-env.js';
import { SoftirqPerf, descendants, ksoftirqd } from './softirq-perf.js';
import { detachXdp, pinDirFor } from '../xdp/loader.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ATTACH = join(HERE, 'xdp-flood-attach.js');
const LIVESEND = join(HERE, '..', 'xdp', 'livesend.js');

type DropMode = 'xdp' | 'xdp_generic' | 'xdp_bare_drop' | 'nftables_netdev' | 'nftables_raw';
const DROP_MODES: DropMode[] = ['xdp', 'nftables_netdev', 'xdp_bare_drop', 'nftables_raw', 'xdp_generic'];
type Source = 'frames' | 'skb';
/** The modes each source measures, and the suffix of its metrics. */
const SOURCES: Record<Source, { modes: DropMode[]; suffix: string }> = {
  frames: { modes: DROP_MODES.filter((m) => m !== 'xdp_generic'), suffix: '' },
  skb: { modes: DROP_MODES, suffix: '_skb' },
};
/** Both senders run here (trafgen's `--cpus 1` pins its worker to CPU 0; livesend runs under taskset). */
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

type Size = 'smoke' | 'quick' | 'full';
/** Packets per flood, per source: the frames source is several times faster (no skb per packet). */
const FLOOD_PACKETS: Record<Size, Record<Source, number>> = {
  smoke: { frames: 100_000, skb: 50_000 },
  quick: { frames: 2_000_000, skb: 500_000 },
  full: { frames: 10_000_000, skb: 3_000_000 },
};

/** The argv that floods `packets` from the attacker namespace within `timeoutS` seconds. */
function floodArgv(source: Source, f: { packets: number; timeoutS: number; atkIf: string; cfgPath: string; popMac: string; atkMac: string }): string[] {
  const bound = ['timeout', String(f.timeoutS)];
  return source === 'skb'
    ? [...bound, 'trafgen', '--dev', f.atkIf, '--conf', f.cfgPath, '--cpus', '1', '-n', String(f.packets)]
    : [...bound, 'taskset', '-c', String(FLOOD_CPU), process.execPath, LIVESEND, f.atkIf, String(f.packets), f.popMac, f.atkMac, ATTACKER, '10.70.0.1'];
}

/** Attaches what `mode` needs on the PoP interface; returns the pin dir of its XDP program, if any. */
async function setUp(mode: DropMode, source: Source, pop: Namespace, ifname: string, bpffs: string): Promise<string | undefined> {
  const nft = mode.startsWith('nftables');
  if (nft) await pop.exec(['nft', '-f', '-'], { input: nftRules(mode, ifname) });
  // frames reach nftables only through an XDP program (veth drops redirected frames without one)
  if (nft && source === 'skb') return undefined;
  const pinDir = pinDirFor(bpffs, ifname);
  const how = mode === 'xdp' ? 'native' : mode === 'xdp_generic' ? 'generic' : mode === 'xdp_bare_drop' ? 'bare_drop' : 'bare';
  await pop.exec([process.execPath, ATTACH, ifname, pinDir, how], { timeoutMs: 30_000 });
  return pinDir;
}

interface Run {
  ns: number;
  kpps: number;
  share: number;
}

/** `smoke`: one short round of every mode, for the test that the bench runs (its figures mean little). */
export async function dropCostBench(opts: {
  quick: boolean;
  say: (m: string) => void;
  sources?: Source[];
  smoke?: boolean;
}): Promise<Record<string, BenchMetric>> {
  const size: Size = opts.smoke ? 'smoke' : opts.quick ? 'quick' : 'full';
  // /proc/stat samples at HZ=250: a few seconds per flood keep its sampling error near 5% (perf needs less)
  const floodTimeoutS = size === 'full' ? 40 : 10;
  const idleMs = { smoke: 100, quick: 700, full: 1500 }[size];
  const reps = { smoke: 1, quick: 2, full: 5 }[size];
  const sources = opts.sources ?? (['frames', 'skb'] as Source[]);
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
    opts.say(`drop cost: softirq time from ${perf ? 'perf record (sender threads + ksoftirqd)' : '/proc/stat (perf cannot sample here)'}`);
    const runs = new Map<string, Run[]>();
    for (let rep = 0; rep < reps; rep++) {
      for (const source of sources) {
        const { modes, suffix } = SOURCES[source];
        const packets = FLOOD_PACKETS[size][source];
        for (let i = 0; i < modes.length; i++) {
          const mode = modes[(i + rep) % modes.length]!;
          const pinDir = await setUp(mode, source, pop, popIf.ifname, bpffs);
          try {
            const r0 = await received(pop, popIf.ifname);
            const c0 = await droppedSoFar(mode, pop, popIf.ifname, pinDir ?? '');
            const i0 = cpuSample(FLOOD_CPU);
            await sleep(idleMs);
            const idle = softirqShare(i0, cpuSample(FLOOD_CPU)).share;
            await perf?.start();
            const f0 = cpuSample(FLOOD_CPU);
            let floodErr = '';
            const flood = attacker.spawn(floodArgv(source, { packets, timeoutS: floodTimeoutS, atkIf: atkIf.ifname, cfgPath, popMac, atkMac }));
            flood.stderr?.on('data', (d) => (floodErr += d));
            // the flood's threads (timeout, trafgen and its pinned worker; or taskset's node), for perf's per-thread count
            const tids = new Set<number>();
            const watch = setInterval(() => {
              if (flood.pid !== undefined) for (const t of descendants(flood.pid)) tids.add(t);
            }, 100);
            const code = await new Promise<number | null>((r) =>
              flood.exitCode !== null || flood.signalCode !== null ? r(flood.exitCode) : flood.once('exit', (c) => r(c)),
            ).finally(() => clearInterval(watch));
            const f1 = cpuSample(FLOOD_CPU);
            await perf?.stop();
            if (code !== 0 && code !== 124) throw new Error(`drop-cost bench: ${source} flood exited with ${code}: ${floodErr.trim()}`);
            const dropped = (await droppedSoFar(mode, pop, popIf.ifname, pinDir ?? '')) - c0;
            const rx = (await received(pop, popIf.ifname)) - r0;
            if (dropped <= 0) throw new Error(`drop-cost bench: ${mode} (${source}) dropped no packets (sender: ${floodErr.trim()})`);
            const { share, wallNs } = softirqShare(f0, f1);
            const nsProcStat = (Math.max(0, share - idle) * wallNs) / dropped;
            const softirqd = ksoftirqd(FLOOD_CPU);
            if (softirqd !== undefined) tids.add(softirqd);
            // no sample at all means perf recorded nothing (the flood always costs some softirq): use /proc/stat then
            const sampled = perf ? await perf.netRxNs(tids).then((x) => (x.samples > 0 ? x : undefined)) : undefined;
            if (perf && !sampled) method = 'perf; /proc/stat where perf recorded nothing';
            const ns = sampled ? sampled.ns / dropped : nsProcStat;
            // the sender's wall time includes its start (node and libbpf for frames): kpps is a lower bound
            const kpps = dropped / (wallNs / 1e6);
            const key = `${mode}${suffix}`;
            runs.set(key, [...(runs.get(key) ?? []), { ns, kpps, share }]);
            // frames: NET_RX should sit inside the test run's syscall (bottom halves re-enabled after each batch)
            const check = sampled
              ? `perf: ${sampled.samples} NET_RX samples of 100 us -> ${ns.toFixed(0)} ns/packet (senders' CPU on cpu${FLOOD_CPU}: ${(sampled.cpuNs / dropped).toFixed(0)} ns/packet, start-up included${source === 'frames' ? `; inside the test run: ${(sampled.runNs / dropped).toFixed(0)} ns/packet, of which NET_RX ${((100 * sampled.netRxInRunNs) / Math.max(1, sampled.runNs)).toFixed(0)}%; NET_RX outside it ${((100 * (sampled.ns - sampled.netRxInRunNs)) / sampled.ns).toFixed(1)}%` : ''}); `
              : '';
            opts.say(
              `drop cost ${source} ${mode} #${rep + 1}: ${dropped} dropped (${rx} received) in ${(wallNs / 1e9).toFixed(2)} s (${kpps.toFixed(0)} kpps); ${check}/proc/stat: cpu${FLOOD_CPU} softirq ${(share * 100).toFixed(1)}% (idle ${(idle * 100).toFixed(1)}%) -> ${nsProcStat.toFixed(0)} ns/packet${code === 124 ? ' (stopped by its time bound)' : ''}`,
            );
          } finally {
            if (mode.startsWith('nftables')) await pop.exec(['nft', 'delete', 'table', nftFamily(mode), 'cbrdrop']);
            if (pinDir) detachXdp(pinDir);
          }
        }
      }
    }
    for (const source of sources) {
      const { modes, suffix } = SOURCES[source];
      for (const mode of modes) {
        const rs = runs.get(`${mode}${suffix}`)!;
        results[`${METRIC[mode]}${suffix}`] = { value: Math.round(median(rs.map((r) => r.ns))), unit: `ns NET_RX softirq CPU/dropped packet (${method})` };
        results[`drop_kpps_${mode}${suffix}`] = { value: Math.round(median(rs.map((r) => r.kpps))), unit: 'kpps (one sending CPU, sender included)' };
        results[`drop_softirq_cpu_${mode}${suffix}`] = {
          value: Math.round(median(rs.map((r) => r.share)) * 1000) / 10,
          unit: `% of cpu${FLOOD_CPU} during the flood`,
        };
      }
      const netdev = results[`ns_drop_per_pkt_nftables_netdev${suffix}`]!.value;
      const raw = results[`ns_drop_per_pkt_nftables_raw${suffix}`]!.value;
      results[`ns_drop_per_pkt_nftables${suffix}`] = {
        value: Math.min(netdev, raw),
        unit: `ns NET_RX softirq CPU/dropped packet (${method}; cheaper nftables hook)`,
      };
      const xdp = results[`ns_filter_drop_per_pkt_xdp${suffix}`]!.value;
      results[`ratio_drop_per_pkt_nftables_over_xdp${suffix}`] = { value: Math.round((Math.min(netdev, raw) / Math.max(1, xdp)) * 100) / 100, unit: 'x' };
    }
  });
  return results;
}

/** The results file's note on the drop-cost metrics. */
export function dropCostNote(quick: boolean): string {
  return `CPU time per dropped packet, two flood sources into the PoP veth from the attacker namespace (no bridge), both pinned to cpu0, in the same run. frames (the metrics without suffix; the scored goal): xdp/livesend.js runs BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES, batches of 64) with a program that redirects each of ${quick ? '2M' : '10M'} copies of one 60-byte UDP packet out of the attacker veth; veth's ndo_xdp_xmit hands it to the PoP veth as an xdp_frame and the PoP's XDP program runs on it with no skb made, as a NIC driver runs XDP on its DMA buffer. For the nftables modes the PoP veth carries the bare XDP_PASS program (veth only takes redirected frames with an XDP program attached): the frame then becomes an skb (build_skb around its page, the skb build a NIC driver does) and goes through nftables. No xdp_generic figure (generic XDP only sees skbs). skb (suffix _skb): trafgen (1 CPU) sends ${quick ? '500k' : '3M'} of the same packet; they arrive as skbs, and native XDP on veth first copies each into a page-pool page (skb_pp_cow_data), which no NIC does. The veth receive path runs as NET_RX softirq on the sending CPU: for frames, when the test run re-enables bottom halves after each batch, in the same thread; for trafgen inline in its worker; either may be deferred to ksoftirqd/0. Per mode: NET_RX softirq CPU time over the packets the rule itself counted (nftables rule counter, the filter's drop/denylist counter; for xdp_bare_drop, the interface's rx_packets). The softirq time comes from perf record on cpu0 (cpu-clock, one sample per 100 us of CPU, kernel call chains; a sample counts when its thread is the sender's or ksoftirqd/0 and its stack holds net_rx_action), so the sender's own work and other jobs' softirq are left out; where perf cannot sample, from cpu0's /proc/stat softirq column (tick-sampled at HZ=250) less its share in an idle window just before (the unit names which; the progress log gives both, and for frames the test run's wall time per packet with NET_RX's share of it). ${quick ? 2 : 5} repetitions in rotating mode order, medians. Modes: xdp (the filter, native, 10.70.0.66/32 in the deny list: prefilter then LPM trie), xdp_generic (same, generic mode, skb only), xdp_bare_drop (returns XDP_DROP, reads nothing: what an XDP drop costs on this path by itself), nftables_netdev (netdev ingress, priority -500), nftables_raw (inet prerouting, priority raw); each rule is "ip saddr 10.70.0.66 counter drop". ns_drop_per_pkt_nftables is the cheaper of the two nftables hooks. On the frames path an XDP drop returns the page to the test run's page pool through its spin-locked ring (a NIC driver recycles into its own pool's lockless per-NAPI cache); perf puts ~45% of the frames path's XDP drop in that lock and unlock, so the figure overstates a NIC's XDP drop. Anchor: the XDP paper (Hoiland-Jorgensen et al., CoNEXT 2018) measured 24 Mpps dropped on one core with XDP against 4.8 Mpps with iptables raw (a 5x gap). See xdp/README.md, "XDP on a veth".`;
}
