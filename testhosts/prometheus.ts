// Debian's `prometheus` inside a test namespace: a temp dir for its config, rules and TSDB (removed
// on destroy), scraping the given targets every second, queried through its HTTP API from inside
// the namespace (curl), so nothing listens outside the topology.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Namespace, Topology } from './testhosts.js';
import { killAndWait, waitFor } from './testhosts.js';

export interface PrometheusOptions {
  /** host:port of each agent's admin listener, as seen from `ns`. */
  targets: string[];
  /** A rules file copied in; `rewrite` may change its text first (e.g. shorter `for:` for a test). */
  rulesFile?: string;
  rewrite?: (rules: string) => string;
  port?: number;
  intervalS?: number;
}

export interface PrometheusServer {
  url: string;
  dir: string;
  /** GET /api/v1/<path>; rejects unless Prometheus answers status "success". */
  api<T>(path: string, params?: Record<string, string>): Promise<T>;
  /** An instant query's result vector (empty when no series matched). */
  query(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>>;
  /** Active alerts (pending and firing). */
  alerts(): Promise<Array<{ labels: Record<string, string>; state: string; value: string }>>;
}

export async function startPrometheus(topo: Topology, ns: Namespace, o: PrometheusOptions): Promise<PrometheusServer> {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-prometheus-'));
  topo.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const port = o.port ?? 9090;
  const interval = `${o.intervalS ?? 1}s`;
  const rules: string[] = [];
  if (o.rulesFile) {
    const dest = join(dir, 'rules.yml');
    const text = readFileSync(o.rulesFile, 'utf8');
    writeFileSync(dest, o.rewrite ? o.rewrite(text) : text);
    rules.push(dest);
  }
  const config = [
    'global:',
    `  scrape_interval: ${interval}`,
    `  evaluation_interval: ${interval}`,
    `rule_files: [${rules.map((r) => JSON.stringify(r)).join(', ')}]`,
    'scrape_configs:',
    '  - job_name: cbr',
    `    static_configs: [{ targets: [${o.targets.map((t) => JSON.stringify(t)).join(', ')}] }]`,
    '',
  ].join('\n');
  writeFileSync(join(dir, 'prometheus.yml'), config);
  const proc = ns.spawn([
    'prometheus',
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--web.console.templates=/nonexistent',
    '--web.console.libraries=/nonexistent',
  ]);
  let log = '';
  proc.stderr?.on('data', (d) => {
    if (log.length < 50_000) log += d;
  });
  proc.stdout?.resume();
  topo.onDestroy(() => killAndWait(proc, 5_000));
  const url = `http://127.0.0.1:${port}`;
  const api = async <T>(path: string, params: Record<string, string> = {}): Promise<T> => {
    const argv = ['curl', '-s', '-m', '5', '-G', `${url}/api/v1/${path}`];
    for (const [k, v] of Object.entries(params)) argv.push('--data-urlencode', `${k}=${v}`);
    const out = await ns.exec(argv);
    const body = JSON.parse(out) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${body.error ?? out}`);
    return body.data;
  };
  const server: PrometheusServer = {
    url,
    dir,
    api,
    query: async (expr) => (await api<{ result: Array<{ metric: Record<string, string>; value: [number, string] }> }>('query', { query: expr })).result,
    alerts: async () => (await api<{ alerts: Array<{ labels: Record<string, string>; state: string; value: string }> }>('alerts')).alerts,
  };
  await waitFor(
    `prometheus to serve (log:\n${log.slice(-2000)})`,
    async () => {
      if (proc.exitCode !== null) throw new Error(`prometheus exited ${proc.exitCode}: ${log.slice(-2000)}`);
      return (await server.query('vector(1)')).length === 1 ? true : undefined;
    },
    20_000,
    200,
  );
  return server;
}
