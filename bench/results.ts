// Writes bench/results/<scenario>.json in the shape DESIGN.md fixes:
// { scenario, when, machine: { cpus, kernel, loadavg }, results: { <metric>: { value, unit } } }.
// `loadavg` holds the 1/5/15-minute load when the bench process started and when it wrote the
// file, so a figure is always read with the load it was measured under.
import { writeFileSync, mkdirSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchMetric {
  value: number;
  unit: string;
}

/**
 * The repository's bench/results directory (dist/bench/results.js → ../../bench/results), or
 * CBR_BENCH_RESULTS_DIR (the harness test writes there so a test run never replaces committed figures).
 */
export const RESULTS_DIR = process.env.CBR_BENCH_RESULTS_DIR || join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'results');

const LOAD_AT_START = loadavg().map((l) => Math.round(l * 100) / 100);

export function writeBenchResult(scenario: string, results: Record<string, BenchMetric>, extra: Record<string, unknown> = {}, dir = RESULTS_DIR): string {
  for (const [k, m] of Object.entries(results)) {
    if (!Number.isFinite(m.value)) throw new Error(`bench ${scenario}: metric ${k} is not a finite number (${m.value})`);
  }
  const doc = {
    scenario,
    when: new Date().toISOString(),
    machine: { cpus: cpus().length, kernel: release(), loadavg: { start: LOAD_AT_START, end: loadavg().map((l) => Math.round(l * 100) / 100) } },
    results,
    ...extra,
  };
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${scenario}.json`);
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
  return path;
}

/** The nearest-rank percentile (q in 0..1) of `xs`; NaN when empty. */
export function percentile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const i = Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1));
  return s[i]!;
}
