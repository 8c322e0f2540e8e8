// Table test of the announce / drain / withdraw decision.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decide, type DecisionInput } from './decide.js';

const base: DecisionInput = { health: 'up', agentDraining: false, manualDrain: false, fileDrain: false, drainWaitMs: 10_000, now: 100_000 };

const rows: Array<[string, Partial<DecisionInput>, { state: string; phase: string; drainStartedAt?: number; recheckInMs?: number }]> = [
  ['healthy, nothing asked', {}, { state: 'announce', phase: 'none' }],
  ['health down', { health: 'down' }, { state: 'withdraw', phase: 'none' }],
  ['manual drain begins now', { manualDrain: true }, { state: 'drain', phase: 'graceful', drainStartedAt: 100_000, recheckInMs: 10_000 }],
  [
    'drain file, 4 s in',
    { fileDrain: true, drainFile: '/run/drain', drainStartedAt: 96_000 },
    { state: 'drain', phase: 'graceful', drainStartedAt: 96_000, recheckInMs: 6_000 },
  ],
  [
    'agent draining, wait just over',
    { agentDraining: true, health: 'draining', drainStartedAt: 90_000 },
    { state: 'withdraw', phase: 'withdrawn', drainStartedAt: 90_000 },
  ],
  ['health draining alone counts as a drain', { health: 'draining' }, { state: 'drain', phase: 'graceful', drainStartedAt: 100_000, recheckInMs: 10_000 }],
  [
    'health down during a drain withdraws at once',
    { manualDrain: true, health: 'down', drainStartedAt: 99_000 },
    { state: 'withdraw', phase: 'graceful', drainStartedAt: 99_000 },
  ],
  ['drain ended: the old start is forgotten', { drainStartedAt: 50_000 }, { state: 'announce', phase: 'none' }],
  ['zero wait withdraws at once', { manualDrain: true, drainWaitMs: 0 }, { state: 'withdraw', phase: 'withdrawn', drainStartedAt: 100_000 }],
];

for (const [name, input, want] of rows) {
  test(`decide: ${name}`, () => {
    const d = decide({ ...base, ...input });
    assert.equal(d.state, want.state);
    assert.equal(d.phase, want.phase);
    assert.equal(d.drainStartedAt, want.drainStartedAt);
    assert.equal(d.recheckInMs, want.recheckInMs);
    assert.ok(d.because.length > 0);
  });
}

test('decide: reasons name every drain source', () => {
  const d = decide({ ...base, manualDrain: true, fileDrain: true, drainFile: '/run/cbr/drain', agentDraining: true });
  assert.deepEqual(d.drainReasons, ['cbr bgp drain', 'drain file /run/cbr/drain', 'agent draining (POST /v1/drain or shutdown)']);
});
