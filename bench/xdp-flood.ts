// The flood half of bench/xdp: an attacker namespace floods UDP at the PoP with trafgen at full
// speed while a legitimate iperf3 TCP flow runs through the same ingress interface. Legit goodput
// under flood as a fraction of its goodput without flood, with no filter, with an nftables
// netdev-ingress drop rule, and with the XDP filter (deny list), plus machine-wide softirq CPU
// during each flood (all namespaces share this machine's 2 cores, so softirq is not per-PoP).
// Each flood is bounded in time (timeout) and stays inside the bench's namespaces.
import { readFileSync, writeFileSync, mkdtempSync, rmSync, mkdirSync, rmdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname } from 'node:path';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchMetric } from './results.js';
import { Topology, run, type Namespace } from './testhosts.js';

const ATTACH = join(dirname(fileURLToPath(import.meta.url)), 'xdp-flood-attach.js');
import { detachXdp, pinDirFor } from '../xdp/loader.js';

type Mode = 'none' | 'nftables' | 'xdp';

function softirqJiffies(): { softirq: number; total: number } {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  return { softirq: cpu[6]!, total: cpu.reduce((a, b) => a + b, 0) };
}

async function iperf(client: Namespace, server: string, seconds: number): Promise<number> {
  const out = await client.exec(['iperf3', '-c', server, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 15) * 1000 });
  const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
  return j.end.sum_received.bits_per_second / 1e9;
}

export async function floodBench(opts: { quick: boolean; say: (m: string) => void }): Promise<Record<string, BenchMetric>> {
  const seconds = opts.quick ? 2 : 4;
  const results: Record<string, BenchMetric> = {};
  const topo = new Topology();
  const dir = mkdtempSync(join(tmpdir(), 'cbr-flood-'));
  let pinDir: string | undefined;
  // a bpffs of the bench's own outside /sys, which `ip netns exec` remounts
  const bpffs = `/run/cbr-t${process.pid}-bpfbench`;
  mkdirSync(bpffs, { recursive: true });
  await run(['mount', '-t', 'bpf', 'bpf', bpffs]);
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
    writeFileSync(cfgPath, `{\n  eth(da=${popMac}, sa=${atkMac}, type=0x0800),\n  ipv4(saddr=10.70.0.66, daddr=10.70.0.1, proto=17, ttl=64),\n  udp(sport=dinc(1024, 65000), dport=9999),\n  fill(0x41, 18)\n}\n`);
    void cliIf;

    const modes: Mode[] = ['none', 'nftables', 'xdp'];
    for (const mode of modes) {
      if (mode === 'nftables') {
        await pop.exec(['nft', '-f', '-'], { input: `table netdev cbrflood {\n chain in {\n  type filter hook ingress device "${popIf.ifname}" priority -500;\n  ip saddr 10.70.0.66 drop\n }\n}\n` });
      }
      if (mode === 'xdp') {
        // the filter loaded and attached in this (bench) process: the PoP interface lives in another
        // namespace, so attach from a helper run inside it
        pinDir = pinDirFor(bpffs, popIf.ifname);
        await pop.exec([process.execPath, ATTACH, popIf.ifname, pinDir], { timeoutMs: 30_000 });
      }
      const base = await iperf(client, '10.70.0.1', seconds);
      const s0 = softirqJiffies();
      const flood = attacker.spawn(['timeout', String(seconds + 3), 'trafgen', '--dev', atkIf.ifname, '--conf', cfgPath, '--cpus', '1']);
      let floodErr = '';
      flood.stderr?.on('data', (d) => (floodErr += d));
      await new Promise((r) => setTimeout(r, 700));
      const underFlood = await iperf(client, '10.70.0.1', seconds);
      const s1 = softirqJiffies();
      await new Promise<void>((r) => (flood.exitCode !== null ? r() : flood.once('exit', () => r())));
      const ratio = base > 0 ? underFlood / base : 0;
      const softirq = (100 * (s1.softirq - s0.softirq)) / Math.max(1, s1.total - s0.total);
      opts.say(`flood ${mode}: ${base.toFixed(2)} Gbit/s without, ${underFlood.toFixed(2)} Gbit/s with the flood (ratio ${ratio.toFixed(3)}), softirq ${softirq.toFixed(1)}%${floodErr ? `; trafgen: ${floodErr.trim().split('\n').slice(-1)[0]}` : ''}`);
      results[`flood_goodput_ratio_${mode}`] = { value: Math.round(ratio * 1000) / 1000, unit: 'fraction' };
      results[`flood_softirq_cpu_${mode}`] = { value: Math.round(softirq * 10) / 10, unit: '% of machine CPU' };
      results[`flood_goodput_gbps_noflood_${mode}`] = { value: Math.round(base * 100) / 100, unit: 'Gbit/s' };
      if (mode === 'nftables') await pop.exec(['nft', 'delete', 'table', 'netdev', 'cbrflood']);
      if (mode === 'xdp' && pinDir) {
        const stats = JSON.parse(await pop.exec([process.execPath, ATTACH, popIf.ifname, pinDir, 'stats']));
        opts.say(`xdp counters: ${JSON.stringify(stats)}`);
      }
    }
    iperfServer.kill();
  } finally {
    if (pinDir) detachXdp(pinDir);
    await topo.destroy();
    await run(['umount', bpffs]).catch(() => undefined);
    try {
      rmdirSync(bpffs);
    } catch {
      /* already gone */
    }
    rmSync(dir, { recursive: true, force: true });
  }
  return results;
}

