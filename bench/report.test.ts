import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { checkResultShape, summarize, renderLoads, renderTable, writeCharts, readResult, type ResultFile } from './report.js';
import { writeBenchResult } from './results.js';
import { judge, SCORECARD } from './scorecard.js';

const doc = (scenario: string, results: Record<string, number>): ResultFile => ({
  scenario,
  when: new Date().toISOString(),
  machine: { cpus: 2, kernel: '6.x' },
  results: Object.fromEntries(Object.entries(results).map(([k, v]) => [k, { value: v, unit: 'u' }])),
});

test('result files are checked against the shape DESIGN.md fixes', () => {
  assert.deepEqual(checkResultShape(doc('xdp', { a: 1 }), 'xdp'), []);
  assert.ok(checkResultShape({ ...doc('xdp', { a: 1 }), scenario: 'auth' }, 'xdp').length);
  assert.ok(checkResultShape({ scenario: 'xdp', when: 'x', machine: {}, results: {} }, 'xdp').length >= 3);
  assert.ok(checkResultShape({ ...doc('xdp', {}), results: { a: { value: 'fast', unit: 'u' } } }, 'xdp')[0]!.includes('results.a'));
  assert.throws(() => writeBenchResult('x', { a: { value: NaN, unit: 'u' } }, {}, tmpdir()), /not a finite number/);
});

test('goals are judged against the same-run baseline', () => {
  const row = (m: string) => SCORECARD.find((r) => r.metric === m)!;
  assert.equal(judge(row('ns_filter_drop_per_pkt_xdp'), { ns_filter_drop_per_pkt_xdp: 90, ns_drop_per_pkt_nftables: 400 }), true);
  assert.equal(judge(row('ns_filter_drop_per_pkt_xdp'), { ns_filter_drop_per_pkt_xdp: 300, ns_drop_per_pkt_nftables: 400 }), false);
  // the skb source (trafgen: veth copies each skb for native XDP) is reported, not scored
  assert.equal(
    judge(row('ns_filter_drop_per_pkt_xdp_skb'), { ns_filter_drop_per_pkt_xdp_skb: 430, ns_drop_per_pkt_nftables_skb: 370 }),
    undefined,
    'skb source reported',
  );
  assert.equal(judge(row('ns_filter_pass'), { ns_filter_pass: 50, ns_bare_pass: 20 }), undefined, 'reported beside bare, no goal');
  assert.equal(judge(row('tcp_gbps_masque_ip'), { tcp_gbps_masque_ip: 0.7, tcp_gbps_wireguard_go: 0.4 }), true);
  assert.equal(judge(row('tcp_gbps_masque_ip'), { tcp_gbps_masque_ip: 0.5, tcp_gbps_wireguard_go: 0.4 }), false, 'issue 13: 1.5x wireguard-go');
  assert.equal(judge(row('session_setups_per_s'), { session_setups_per_s: 300, quic_handshakes_per_s_bare: 1000 }), false);
  assert.equal(judge(row('verify_per_s_es256'), { verify_per_s_es256: 4600, verify_per_s_es256_node_crypto: 5000 }), true);
  assert.equal(judge(row('rtt_ms_masque_ip'), { rtt_ms_masque_ip: 0.3, rtt_ms_wireguard_go: 0.25, rtt_ms_direct: 0.05 }), false);
  assert.equal(judge(row('flood_goodput_ratio_xdp'), { flood_goodput_ratio_xdp: 0.5, flood_goodput_ratio_nftables: 0.97 }), undefined, 'reported');
  assert.equal(judge(row('withdraw_ms_p50'), {}), undefined);
});

test('summary table, charts and missing data', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-bench-'));
  try {
    const results = {
      xdp: doc('xdp', { ns_bare_pass: 20, ns_filter_pass: 31, ns_lb_cid: 95, ns_filter_drop_per_pkt_xdp: 80, ns_drop_per_pkt_nftables: 400 }),
      masque: undefined,
    };
    const rows = summarize(results);
    const table = renderTable(rows);
    assert.match(table, /xdp\s+ns_filter_pass\s+31\.00\s+u\s+ns_bare_pass\s+20\.00\s+1\.55x\s+\(reported\)\s+-/);
    assert.match(table, /xdp\s+ns_filter_drop_per_pkt_xdp\s+80\.00\s+u\s+ns_drop_per_pkt_nftables\s+400\s+0\.20x\s+<= 0\.25x baseline\s+yes/);
    assert.match(table, /masque\s+tcp_gbps_masque_ip\s+-.*no data/);
    const files = writeCharts(results, dir);
    assert.deepEqual(files, ['xdp-ns-per-packet.svg']);
    const svg = readFileSync(join(dir, files[0]!), 'utf8');
    assert.match(svg, /^<svg xmlns/);
    assert.match(svg, /bare XDP_PASS/);
    writeFileSync(join(dir, 'auth.json'), '{not json');
    assert.match(readResult('auth', dir).problems[0]!, /not JSON/);
    assert.match(readResult('wireguard', dir).problems[0]!, /missing/);
  } finally {
    rmSync(dir, { recursive: true });
  }
});

test('every results file records the load it was measured under, and the scorecard prints it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-load-'));
  try {
    writeBenchResult('xdp', { a: { value: 1, unit: 'u' } }, {}, dir);
    const written = readResult('xdp', dir).doc!;
    const l = written.machine.loadavg!;
    assert.equal(l.start.length, 3);
    assert.equal(l.end.length, 3);
    assert.ok([...l.start, ...l.end].every((x) => Number.isFinite(x) && x >= 0));
    const out = renderLoads({ xdp: written, auth: doc('auth', { a: 1 }), masque: undefined });
    assert.match(out, new RegExp(`xdp: ${written.when}, load ${l.start[0]} at start, ${l.end[0]} at end`));
    assert.match(out, /auth: .*, load not recorded/);
    assert.doesNotMatch(out, /masque/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
