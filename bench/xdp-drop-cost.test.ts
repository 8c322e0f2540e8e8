// A smoke run of the drop-cost bench: every mode with both flood sources, in namespaces it makes and
// removes. Each flood must be dropped by the rule under test (the bench throws when a mode counts no
// drop), and every metric the scorecard names must come out as a positive, finite figure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dropCostBench } from './xdp-drop-cost.js';
import { SCORECARD } from './scorecard.js';

test('drop-cost bench smoke: both sources, every mode, every scored metric', { timeout: 180_000 }, async () => {
  const log: string[] = [];
  const r = await dropCostBench({ quick: true, smoke: true, say: (m) => log.push(m) });
  const named = SCORECARD.filter((row) => row.scenario === 'xdp' && /drop_per_pkt/.test(row.metric)).flatMap((row) => [row.metric, row.baseline!]);
  // without perf the figures come from tick-sampled /proc/stat, which a flood this short can miss entirely
  const perf = log.some((l) => l.includes('perf record'));
  for (const key of [
    ...named,
    'ratio_drop_per_pkt_nftables_over_xdp',
    'ratio_drop_per_pkt_nftables_over_xdp_skb',
    'drop_kpps_xdp',
    'drop_kpps_nftables_raw_skb',
  ]) {
    const v = r[key]?.value;
    const floor = perf || key.startsWith('drop_kpps') ? Number.MIN_VALUE : 0;
    assert.ok(v !== undefined && Number.isFinite(v) && v >= floor, `${key}: ${v}\n${log.join('\n')}`);
  }
  assert.equal(r.ns_filter_drop_per_pkt_xdp_generic, undefined, 'generic XDP has no frames figure');
  assert.ok(
    log.some((l) => /^drop cost frames xdp #1: 100000 dropped/.test(l)),
    `the filter dropped every frame:\n${log.join('\n')}`,
  );
  // with perf, the frames runs check that the NET_RX time sits inside the test run's syscall
  if (log.some((l) => l.includes('perf record')))
    assert.ok(
      log.some((l) => /^drop cost frames .*inside the test run: [1-9]\d* ns\/packet/.test(l)),
      log.join('\n'),
    );
});
