// `make bench`: runs every scenario one after the other (they share the machine's two cores, so
// never in parallel), then prints the scorecard, writes bench/results/summary.json and the SVG
// charts. QUICK=1 runs the short versions. Exit 1 when a scenario fails to run or writes a malformed
// result (the harness is broken); missed goals are reported, not failures.
import { spawn } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { cpus, release } from 'node:os';
import { readResult, summarize, renderLoads, renderTable, writeCharts, type ResultFile } from './report.js';
import { RESULTS_DIR } from './results.js';
import { SCENARIOS } from './scenarios.js';

const HERE = dirname(fileURLToPath(import.meta.url));

function runScenario(name: string, timeoutMs: number): Promise<{ code: number | null; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const child = spawn(process.execPath, [join(HERE, `${name}.js`)], { stdio: 'inherit', env: process.env });
    const timer = setTimeout(() => {
      process.stderr.write(`bench ${name}: over ${timeoutMs / 1000} s, stopping it\n`);
      child.kill('SIGTERM');
      setTimeout(() => child.kill('SIGKILL'), 5000).unref();
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, ms: performance.now() - t0 });
    });
  });
}

async function main(): Promise<number> {
  const quick = process.env.QUICK === '1';
  // `--report`: no scenario runs; the scorecard is made from the committed results as they are.
  const reportOnly = process.argv.includes('--report');
  const only = process.argv.slice(2).filter((a) => !a.startsWith('--'));
  const selected = reportOnly ? [] : only.length ? SCENARIOS.filter((s) => only.includes(s)) : [...SCENARIOS];
  const status: Record<string, string> = {};
  let broken = false;
  for (const s of selected) {
    if (!existsSync(join(HERE, `${s}.js`))) {
      status[s] = 'not built';
      process.stdout.write(`== ${s}: no bench/${s}.ts in this build, skipped\n`);
      continue;
    }
    process.stdout.write(`== ${s}${quick ? ' (quick)' : ''}\n`);
    const r = await runScenario(s, (quick ? 6 : 30) * 60_000);
    const { problems } = readResult(s);
    if (r.code !== 0 || problems.length) {
      broken = true;
      status[s] = r.code !== 0 ? `failed (exit ${r.code})` : `malformed: ${problems.join('; ')}`;
      process.stderr.write(`bench ${s}: ${status[s]}\n`);
    } else status[s] = `ok in ${(r.ms / 1000).toFixed(1)} s`;
  }
  const results: Record<string, ResultFile | undefined> = {};
  for (const s of SCENARIOS) results[s] = readResult(s).doc;
  const rows = summarize(results);
  process.stdout.write(`\n${renderTable(rows)}\n${renderLoads(results)}`);
  const charts = writeCharts(results);
  writeFileSync(
    join(RESULTS_DIR, 'summary.json'),
    `${JSON.stringify(
      { scenario: 'summary', when: new Date().toISOString(), machine: { cpus: cpus().length, kernel: release() }, quick, status, rows, charts },
      null,
      2,
    )}\n`,
  );
  process.stdout.write(`\nwrote ${join(RESULTS_DIR, 'summary.json')}${charts.length ? ` and ${charts.join(', ')}` : ''}\n`);
  for (const [s, st] of Object.entries(status)) process.stdout.write(`  ${s}: ${st}\n`);
  return broken ? 1 : 0;
}

main().then(
  (c) => process.exit(c),
  (err) => {
    process.stderr.write(`bench: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
