// Reads bench/results/<scenario>.json, checks their shape, and renders the scorecard: a table for
// the terminal, summary.json, and SVG bar charts. Pure apart from the file reads/writes at the edge.
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { SCORECARD, describeGoal, judge } from './scorecard.js';
import { RESULTS_DIR } from './results.js';

export interface ResultFile {
  scenario: string;
  when: string;
  machine: { cpus: number; kernel: string; loadavg?: { start: number[]; end: number[] } };
  results: Record<string, { value: number; unit: string }>;
}

/** Problems with a results document's shape (DESIGN.md's contract); empty when it is well formed. */
export function checkResultShape(doc: unknown, scenario: string): string[] {
  const p: string[] = [];
  const d = doc as Partial<ResultFile> | null;
  if (!d || typeof d !== 'object') return [`${scenario}.json: expected an object`];
  if (d.scenario !== scenario) p.push(`${scenario}.json: scenario: expected "${scenario}", got ${JSON.stringify(d.scenario)}`);
  if (typeof d.when !== 'string' || Number.isNaN(Date.parse(d.when))) p.push(`${scenario}.json: when: expected an ISO time`);
  if (!d.machine || typeof d.machine.cpus !== 'number' || typeof d.machine.kernel !== 'string')
    p.push(`${scenario}.json: machine: expected { cpus: number, kernel: string }`);
  if (!d.results || typeof d.results !== 'object' || Object.keys(d.results).length === 0) p.push(`${scenario}.json: results: expected at least one metric`);
  else {
    for (const [k, m] of Object.entries(d.results)) {
      if (!m || typeof m.value !== 'number' || !Number.isFinite(m.value) || typeof m.unit !== 'string')
        p.push(`${scenario}.json: results.${k}: expected { value: finite number, unit: string }`);
    }
  }
  return p;
}

export function readResult(scenario: string, dir = RESULTS_DIR): { doc?: ResultFile; problems: string[] } {
  const path = join(dir, `${scenario}.json`);
  if (!existsSync(path)) return { problems: [`${scenario}.json: missing`] };
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    return { problems: [`${scenario}.json: not JSON (${(err as Error).message})`] };
  }
  const problems = checkResultShape(doc, scenario);
  return { doc: problems.length ? undefined : (doc as ResultFile), problems };
}

export interface SummaryRow {
  scenario: string;
  metric: string;
  value?: number;
  unit?: string;
  baseline?: string;
  baselineValue?: number;
  ratio?: number;
  goal: string;
  met?: boolean;
}

export function summarize(results: Record<string, ResultFile | undefined>): SummaryRow[] {
  return SCORECARD.map((row) => {
    const res = results[row.scenario]?.results ?? {};
    const flat: Record<string, number | undefined> = Object.fromEntries(Object.entries(res).map(([k, m]) => [k, m.value]));
    const value = flat[row.metric];
    const baselineValue = row.baseline ? flat[row.baseline] : undefined;
    return {
      scenario: row.scenario,
      metric: row.metric,
      value,
      unit: res[row.metric]?.unit,
      baseline: row.baseline,
      baselineValue,
      ratio: value !== undefined && baselineValue ? value / baselineValue : undefined,
      goal: describeGoal(row),
      met: judge(row, flat),
    };
  });
}

const fmt = (v: number | undefined) => (v === undefined ? '-' : Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3));

/** One line per results file: when it was measured and the 1-minute load at its start and end. */
export function renderLoads(results: Record<string, ResultFile | undefined>): string {
  const lines = Object.entries(results).flatMap(([s, doc]) => {
    if (!doc) return [];
    const l = doc.machine.loadavg;
    return [`  ${s}: ${doc.when}, load ${l ? `${l.start[0]} at start, ${l.end[0]} at end` : 'not recorded'}`];
  });
  return `measured (1-minute load average on ${Object.values(results).find((d) => d)?.machine.cpus ?? '?'} CPUs):\n${lines.join('\n')}\n`;
}

export function renderTable(rows: SummaryRow[]): string {
  const header = ['scenario', 'metric', 'ours', 'unit', 'baseline', 'base value', 'ratio', 'goal', 'met'];
  const body = rows.map((r) => [
    r.scenario,
    r.metric,
    fmt(r.value),
    r.unit ?? '',
    r.baseline ?? '',
    fmt(r.baselineValue),
    r.ratio === undefined ? '-' : `${r.ratio.toFixed(2)}x`,
    r.goal,
    r.met === undefined ? (r.value === undefined ? 'no data' : '-') : r.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return `${[line(header), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n')}\n`;
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A horizontal bar chart as a standalone SVG. */
export function barChartSvg(title: string, unit: string, bars: Array<{ label: string; value: number; ours?: boolean }>): string {
  const rowH = 26;
  const labelW = 230;
  const chartW = 420;
  const top = 40;
  const h = top + bars.length * rowH + 30;
  const max = Math.max(...bars.map((b) => b.value), 1e-9);
  const rows = bars.map((b, i) => {
    const y = top + i * rowH;
    const w = Math.max(1, (b.value / max) * chartW);
    return (
      `<text x="${labelW - 8}" y="${y + 17}" text-anchor="end">${esc(b.label)}</text>` +
      `<rect x="${labelW}" y="${y + 4}" width="${w.toFixed(1)}" height="${rowH - 8}" fill="${b.ours ? '#2b7bb9' : '#9aa5b1'}"/>` +
      `<text x="${labelW + w + 6}" y="${y + 17}">${esc(fmt(b.value))} ${esc(unit)}</text>`
    );
  });
  return (
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelW + chartW + 140}" height="${h}" font-family="sans-serif" font-size="13">` +
    `<rect width="100%" height="100%" fill="white"/><text x="10" y="24" font-size="16" font-weight="bold">${esc(title)}</text>${rows.join('')}` +
    `<text x="10" y="${h - 8}" font-size="11" fill="#555">blue: CloudBridge, grey: baseline measured in the same run</text></svg>\n`
  );
}

/** The charts DESIGN.md asks for: each bar is "<scenario>.<metric>". */
const CHARTS: Array<{ file: string; title: string; unit: string; bars: string[] }> = [
  {
    file: 'throughput.svg',
    title: 'TCP throughput through the tunnel',
    unit: 'Gbit/s',
    bars: ['masque.tcp_gbps_masque_ip', 'masque.tcp_gbps_wireguard_go', 'masque.tcp_gbps_direct', 'wireguard.tcp_gbps_supervised', 'wireguard.tcp_gbps_plain'],
  },
  {
    file: 'xdp-ns-per-packet.svg',
    title: 'XDP cost per packet (BPF_PROG_TEST_RUN)',
    unit: 'ns',
    bars: ['xdp.ns_bare_pass', 'xdp.ns_filter_pass', 'xdp.ns_filter_deny_100k', 'xdp.ns_filter_ratelimit', 'xdp.ns_lb_hash', 'xdp.ns_lb_cid'],
  },
  {
    file: 'failover.svg',
    title: 'Failover: health failure to withdrawal and client loss window',
    unit: 'ms',
    bars: [
      'failover.withdraw_ms_p50',
      'failover.withdraw_ms_p99',
      'failover.baseline_withdraw_ms_p50',
      'failover.loss_window_ms_p50',
      'failover.loss_window_ms_p99',
      'failover.baseline_loss_window_ms_p50',
    ],
  },
];

/** What a chart calls each metric. */
const BAR_LABELS: Record<string, string> = {
  tcp_gbps_masque_ip: 'MASQUE connect-ip',
  tcp_gbps_wireguard_go: 'wireguard-go (by hand)',
  tcp_gbps_direct: 'direct veth',
  tcp_gbps_supervised: 'WireGuard, agent-managed',
  tcp_gbps_plain: 'wireguard-go, plain',
  ns_bare_pass: 'bare XDP_PASS',
  ns_filter_pass: 'filter: pass',
  ns_filter_deny_100k: 'filter: deny hit, 100k list',
  ns_filter_ratelimit: 'filter: rate limit',
  ns_lb_hash: 'LB: 5-tuple hash',
  ns_lb_cid: 'LB: QUIC CID',
  withdraw_ms_p50: 'withdraw p50',
  withdraw_ms_p99: 'withdraw p99',
  baseline_withdraw_ms_p50: 'ExaBGP-style withdraw p50',
  loss_window_ms_p50: 'loss window p50',
  loss_window_ms_p99: 'loss window p99',
  baseline_loss_window_ms_p50: 'ExaBGP-style loss p50',
};

/** CloudBridge's own figures (blue) are the metrics the scorecard scores; the rest are baselines (grey). */
const OURS = new Set(SCORECARD.map((r) => `${r.scenario}.${r.metric}`));

/** The charts, from whatever results exist. Returns the files written. */
export function writeCharts(results: Record<string, ResultFile | undefined>, dir = RESULTS_DIR): string[] {
  const charts = CHARTS.map(({ file, title, unit, bars }) => {
    const present = bars.flatMap((bar) => {
      const [scenario = '', metric = ''] = bar.split('.');
      const value = results[scenario]?.results[metric]?.value;
      return value === undefined ? [] : [{ label: BAR_LABELS[metric] ?? metric, value, ours: OURS.has(bar) }];
    });
    return [file, title, unit, present] as const;
  });
  const written: string[] = [];
  for (const [file, title, unit, bars] of charts) {
    if (!bars.length) continue;
    writeFileSync(join(dir, file), barChartSvg(title, unit, bars));
    written.push(file);
  }
  return written;
}
