// What the two flood parts of bench/xdp share: their namespaces and bpffs, the attacker's trafgen
// packet (the same flood source for both), and the median they report.
import { writeFileSync, mkdtempSync, rmSync, mkdirSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Topology, run } from '../testhosts/index.js';

export interface FloodEnv {
  topo: Topology;
  /** a temp dir for trafgen configs */
  dir: string;
  /** a bpffs of the bench's own outside /sys, which `ip netns exec` remounts */
  bpffs: string;
}

/** Runs fn with a fresh topology, temp dir and bpffs, and removes all three afterwards, also on failure. */
export async function withFloodEnv<T>(tag: string, fn: (env: FloodEnv) => Promise<T>): Promise<T> {
  const topo = new Topology();
  const dir = mkdtempSync(join(tmpdir(), `cbr-${tag}-`));
  const bpffs = `/run/cbr-t${process.pid}-${tag}`;
  try {
    mkdirSync(bpffs, { recursive: true });
    await run(['mount', '-t', 'bpf', 'bpf', bpffs]);
    return await fn({ topo, dir, bpffs });
  } finally {
    await topo.destroy();
    await run(['umount', bpffs]).catch(() => undefined);
    try {
      rmdirSync(bpffs);
    } catch {
      /* already gone, or never made */
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The attacker's trafgen packet: 60-byte UDP from `saddr` to port 9999 of `daddr` (nobody listens), source ports cycling. */
export function writeFloodConf(path: string, f: { dstMac: string; srcMac: string; saddr: string; daddr: string }): void {
  writeFileSync(
    path,
    `{\n  eth(da=${f.dstMac}, sa=${f.srcMac}, type=0x0800),\n  ipv4(saddr=${f.saddr}, daddr=${f.daddr}, proto=17, ttl=64),\n  udp(sport=dinc(1024, 65000), dport=9999),\n  fill(0x41, 18)\n}\n`,
  );
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}
