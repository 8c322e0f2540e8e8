import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildMaglevTable, diffTables, isPrime, DEFAULT_RING_SIZE, EMPTY_SLOT, MaglevError, type MaglevBackend } from './maglev.js';

const backends = (n: number, weight = (_i: number) => 1): MaglevBackend[] =>
  Array.from({ length: n }, (_, i) => ({ key: `10.0.${i >> 8}.${i & 255}`, weight: weight(i), index: i }));
function shares(table: Uint32Array): Map<number, number> {
  const m = new Map<number, number>();
  for (const v of table) m.set(v, (m.get(v) ?? 0) + 1);
  return m;
}

test('the default ring size is a prime of at least 65537, and non-primes are refused', () => {
  assert.ok(isPrime(DEFAULT_RING_SIZE) && DEFAULT_RING_SIZE >= 65537);
  assert.throws(() => buildMaglevTable(backends(3), 65536), MaglevError);
});

test('equal weights: every backend within 1% of the ideal share', () => {
  for (const n of [2, 3, 7, 10, 32]) {
    const t = buildMaglevTable(backends(n));
    const ideal = DEFAULT_RING_SIZE / n;
    const s = shares(t);
    assert.equal(s.size, n);
    for (const [b, c] of s) assert.ok(Math.abs(c - ideal) / ideal <= 0.01, `n=${n} backend ${b}: ${c} slots vs ideal ${ideal.toFixed(1)}`);
  }
});

test('removing one of N moves about 1/N of the slots (and only changed slots are rewritten)', () => {
  for (const n of [3, 5, 10, 20]) {
    const all = backends(n);
    const before = buildMaglevTable(all);
    const after = buildMaglevTable(all.filter((b) => b.index !== 1));
    const moved = diffTables(before, after).length;
    const own = shares(before).get(1)!;
    // every slot the removed backend held must move; Maglev moves a little more
    assert.ok(moved >= own);
    assert.ok(moved / DEFAULT_RING_SIZE <= (1 / n) * 1.1, `n=${n}: moved ${((moved / DEFAULT_RING_SIZE) * 100).toFixed(2)}% vs 1/N = ${(100 / n).toFixed(2)}%`);
    // the others' slots that did move went to survivors, never to the removed one
    for (const i of diffTables(before, after)) assert.notEqual(after[i], 1);
  }
});

test('adding a backend back restores the original table (deterministic from the set, not the order)', () => {
  const all = backends(6);
  const t1 = buildMaglevTable(all);
  const t2 = buildMaglevTable([...all].reverse());
  assert.deepEqual(diffTables(t1, t2), []);
});

test('weights are honoured', () => {
  const t = buildMaglevTable(backends(3, (i) => [1, 2, 5][i]!));
  const s = shares(t);
  const total = 8;
  for (const [b, w] of [
    [0, 1],
    [1, 2],
    [2, 5],
  ] as const) {
    const want = (DEFAULT_RING_SIZE * w) / total;
    assert.ok(Math.abs(s.get(b)! - want) / want <= 0.02, `backend ${b} weight ${w}: ${s.get(b)} slots vs ${want.toFixed(0)}`);
  }
  // weight 0 takes a backend out; no backends leaves the table empty
  assert.equal(shares(buildMaglevTable(backends(3, (i) => (i === 2 ? 0 : 1)))).has(2), false);
  assert.ok(buildMaglevTable([]).every((v) => v === EMPTY_SLOT));
});

test('bad backends are refused with a clear error', () => {
  assert.throws(
    () =>
      buildMaglevTable([
        { key: 'a', weight: 1, index: 0 },
        { key: 'a', weight: 1, index: 1 },
      ]),
    /appears twice/,
  );
  assert.throws(() => buildMaglevTable([{ key: 'a', weight: 1.5, index: 0 }]), /weight/);
});
