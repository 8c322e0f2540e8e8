// The flood half of bench/xdp (filled in below).
import type { BenchMetric } from './results.js';
export async function floodBench(_opts: { quick: boolean; say: (m: string) => void }): Promise<Record<string, BenchMetric>> {
  return {};
}
