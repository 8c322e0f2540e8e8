// The flood half of bench/xdp: an attacker namespace floods UDP at the PoP with trafgen at full
// speed while a legitimate iperf3 TCP flow runs through the same ingress interface. Legit goodput
// under flood as a fraction of its goodput without flood *in the same mode* (so each ratio compares
// like with like), with no filter, with an nftables netdev-ingress drop rule, and with the XDP filter
// (deny list) in native and generic mode; plus a bare XDP_PASS program in native mode as the
// reference for what native XDP on a veth costs by itself. Machine-wide softirq CPU during each
// phase (all namespaces share this machine's 2 cores, so softirq cannot be split per namespace).
// Every mode runs `reps` times in rotating order; figures are medians. Each iperf3 and trafgen run
// is bounded in time (timeouts) and stays inside the bench's namespaces.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { BenchMetric } from './results.js';
import type { Namespace } from '../testhosts/index.js';
import { withFloodEnv, writeFloodConf, median } from './xdp-flood-env.js';

const ATTACH = join(dirname(fileURLToPath(import.meta.url)), 'xdp-flood-attach.js');
import { detachXdp, pinDirFor } from '../xdp/loader.js';

type Mode = 'none' | 'nftables' | 'xdp' | 'xdp_generic' | 'xdp_bare';
const MODES: Mode[] = ['none', 'nftables', 'xdp', 'xdp_generic', 'xdp_bare'];

function softirqJiffies(): { softirq: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { softirq: cpu[6]!, total: cpu.reduce((a, b) => a + b, 0) };
}

/** Legit goodput in Gbit/s and the sender's TCP retransmissions. */
async function iperf(client: Namespace, server: string, seconds: number): Promise<{ gbps: number; retrans: number }> {
  const out = await client.exec(['iperf3', '-c', server, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 15) * 1000 });
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } } };
  return { gbps: j.end.sum_received.bits_per_second / 1e9, retrans: j.end.sum_sent.retransmits ?? 0 };
}

export async function floodBench(opts: { quick: boolean; say: (m: string) => void }): Promise<Record<string, BenchMetric>> {
  const seconds = opts.quick ? 2 : 4;
  const results: Record<string, BenchMetric> = {};
  let pinDir: string | undefined;
  await withFloodEnv('bpfbench', async ({ topo, dir, bpffs }) => {
    try {
      const sw = await topo.namespace('fsw');
      const pop = await topo.namespace('fpop');
      const client = await topo.namespace('fcli');
      const attacker = await topo.namespace('fatk');
      const [swPop, popIf] = await topo.link(sw, pop, { bAddr: '10.70.0.1/24' });
      const [swCli, cliIf] = await topo.link(sw, client, { bAddr: '10.70.0.2/24' });
      const [swAtk, atkIf] = await topo.link(sw, attacker, { bAddr: '10.70.0.66/24' });
      await sw.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
      for (const e of [swPop, swCli, swAtk]) await sw.exec(['ip', 'link', 'set', e.ifname, 'master', 'br0']);
      await sw.exec(['ip', 'link', 'set', 'br0', 'up']);
      const popMac = (await pop.exec(['cat', `/sys/class/net/${popIf.ifname}/address`])).trim();
      const atkMac = (await attacker.exec(['cat', `/sys/class/net/${atkIf.ifname}/address`])).trim();
      if (!(await client.ping('10.70.0.1', { count: 3, timeoutS: 2 }))) throw new Error('flood topology: client cannot reach the PoP');
      const iperfServer = pop.spawn(['iperf3', '-s', '-B', '10.70.0.1']);
      await new Promise((r) => setTimeout(r, 500));
      const cfgPath = join(dir, 'flood.trafgen');
      writeFloodConf(cfgPath, { dstMac: popMac, srcMac: atkMac, saddr: '10.70.0.66', daddr: '10.70.0.1' });
      void cliIf;

      const reps = opts.quick ? 2 : 3;
      const runs = new Map<
        Mode,
        Array<{ base: number; flood: number; ratio: number; softirqBase: number; softirqFlood: number; retrans: number; ringDrops: number }>
      >(MODES.map((m) => [m, []]));
      // packets the switch side could not hand to the PoP's veth (with native XDP: its one 256-slot ring full)
      const swDrops = async () => Number((await sw.exec(['cat', `/sys/class/net/${swPop.ifname}/statistics/tx_dropped`])).trim());
      const measureSoftirq = async <T>(fn: () => Promise<T>): Promise<[T, number]> => {
        const s0 = softirqJiffies();
        const out = await fn();
        const s1 = softirqJiffies();
        return [out, (100 * (s1.softirq - s0.softirq)) / Math.max(1, s1.total - s0.total)];
      };
      for (let rep = 0; rep < reps; rep++) {
        for (let i = 0; i < MODES.length; i++) {
          const mode = MODES[(i + rep) % MODES.length]!;
          if (mode === 'nftables') {
            await pop.exec(['nft', '-f', '-'], {
              input: `table netdev cbrflood {\n chain in {\n  type filter hook ingress device "${popIf.ifname}" priority -500;\n  ip saddr 10.70.0.66 drop\n }\n}\n`,
            });
          }
          if (mode.startsWith('xdp')) {
            // loaded and attached by a helper run inside the PoP's namespace (the interface lives there)
            pinDir = pinDirFor(bpffs, popIf.ifname);
            const how = mode === 'xdp_bare' ? 'bare' : mode === 'xdp_generic' ? 'generic' : 'native';
            await pop.exec([process.execPath, ATTACH, popIf.ifname, pinDir, how], { timeoutMs: 30_000 });
          }
          try {
            const [baseRun, softirqBase] = await measureSoftirq(() => iperf(client, '10.70.0.1', seconds));
            const base = baseRun.gbps;
            const flood = attacker.spawn(['timeout', String(seconds + 3), 'trafgen', '--dev', atkIf.ifname, '--conf', cfgPath, '--cpus', '1']);
            let floodErr = '';
            flood.stderr?.on('data', (d) => (floodErr += d));
            try {
              await new Promise((r) => setTimeout(r, 700));
              const d0 = await swDrops();
              const [floodRun, softirqFlood] = await measureSoftirq(() => iperf(client, '10.70.0.1', seconds));
              const ringDrops = (await swDrops()) - d0;
              const underFlood = floodRun.gbps;
              const ratio = base > 0 ? underFlood / base : 0;
              runs.get(mode)!.push({ base, flood: underFlood, ratio, softirqBase, softirqFlood, retrans: floodRun.retrans, ringDrops });
              opts.say(
                `flood ${mode} #${rep + 1}: ${base.toFixed(2)} Gbit/s without, ${underFlood.toFixed(2)} with the flood (ratio ${ratio.toFixed(3)}); softirq ${softirqBase.toFixed(1)}% / ${softirqFlood.toFixed(1)}%; under flood: ${floodRun.retrans} TCP retransmits (${baseRun.retrans} without), ${ringDrops} packets dropped before the PoP${floodErr ? `; trafgen: ${floodErr.trim().split('\n').slice(-1)[0]}` : ''}`,
              );
            } finally {
              await new Promise<void>((r) => (flood.exitCode !== null || flood.signalCode !== null ? r() : flood.once('exit', () => r())));
            }
            if (mode === 'xdp' || mode === 'xdp_generic') {
              const stats = JSON.parse(await pop.exec([process.execPath, ATTACH, popIf.ifname, pinDir!, 'stats'], { timeoutMs: 30_000 })) as Array<{
                action: string;
                reason: string;
                packets: number;
              }>;
              opts.say(`xdp counters: ${stats.map((r) => `${r.action}/${r.reason} ${r.packets}`).join(', ')}`);
            }
          } finally {
            if (mode === 'nftables') await pop.exec(['nft', 'delete', 'table', 'netdev', 'cbrflood']);
            if (pinDir) {
              detachXdp(pinDir);
              pinDir = undefined;
            }
          }
        }
      }
      for (const mode of MODES) {
        const rs = runs.get(mode)!;
        const m = (f: (r: (typeof rs)[number]) => number) => median(rs.map(f));
        results[`flood_goodput_ratio_${mode}`] = { value: Math.round(m((r) => r.ratio) * 1000) / 1000, unit: 'fraction' };
        results[`flood_goodput_gbps_noflood_${mode}`] = { value: Math.round(m((r) => r.base) * 100) / 100, unit: 'Gbit/s' };
        results[`flood_goodput_gbps_flood_${mode}`] = { value: Math.round(m((r) => r.flood) * 100) / 100, unit: 'Gbit/s' };
        results[`flood_softirq_cpu_${mode}`] = { value: Math.round(m((r) => r.softirqFlood) * 10) / 10, unit: '% of machine CPU (2 cores, all namespaces)' };
        results[`flood_tcp_retransmits_${mode}`] = { value: m((r) => r.retrans), unit: 'segments per run' };
        results[`flood_dropped_before_pop_${mode}`] = { value: m((r) => r.ringDrops), unit: 'packets per run' };
        results[`noflood_softirq_cpu_${mode}`] = { value: Math.round(m((r) => r.softirqBase) * 10) / 10, unit: '% of machine CPU (2 cores, all namespaces)' };
      }
      iperfServer.kill();
    } finally {
      if (pinDir) detachXdp(pinDir);
    }
  });
  return results;
}
