// The harness test CI runs: every scenario's quick version runs and writes well-formed results and
// a summary. It checks shapes, not numbers (the figures of a CI machine say nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { checkResultShape } from './report.js';
import { SCENARIOS } from './scenarios.js';

test('make bench QUICK=1: every scenario runs and writes well-formed results, a summary and charts', { timeout: 30 * 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-bench-harness-'));
  try {
    const child = spawn(process.execPath, [join(import.meta.dirname, 'all.js')], {
      env: { ...process.env, QUICK: '1', CBR_BENCH_RESULTS_DIR: dir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    assert.equal(code, 0, out.slice(-4000));
    for (const s of SCENARIOS) {
      const path = join(dir, `${s}.json`);
      assert.ok(existsSync(path), `${s}.json not written`);
      assert.deepEqual(checkResultShape(JSON.parse(readFileSync(path, 'utf8')), s), []);
    }
    const summary = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
    assert.equal(summary.quick, true);
    assert.ok(Array.isArray(summary.rows) && summary.rows.length > 10);
    for (const s of SCENARIOS) assert.match(summary.status[s], /^ok in /);
    assert.ok(summary.charts.includes('throughput.svg') && summary.charts.includes('xdp-ns-per-packet.svg') && summary.charts.includes('failover.svg'));
    assert.match(out, /scenario\s+metric\s+ours\s+unit\s+baseline/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
