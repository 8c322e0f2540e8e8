import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { HealthModel, type HealthState } from './health.js';
import { createLogger } from './log.js';
import { createMetricsRegistry } from './metrics.js';

const quiet = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('no checks: up; a new check starts down until it rises', async () => {
  const h = new HealthModel(quiet);
  assert.equal(h.state, 'up');
  let passes = 0;
  h.register({ name: 'a', intervalMs: 10, timeoutMs: 100, rise: 3, fall: 2, run: () => void passes++ });
  assert.equal(h.state, 'down');
  for (let i = 0; i < 100 && h.state !== 'up'; i++) await sleep(5);
  assert.equal(h.state, 'up');
  assert.ok(passes >= 3);
  h.stop();
});

test('fall counts consecutive failures; a pass in between resets them', async () => {
  const h = new HealthModel(quiet);
  const results: boolean[] = [true, false, true, false, false];
  const seen: HealthState[] = [];
  h.on('change', (s) => seen.push(s));
  h.register({
    name: 'a',
    intervalMs: 1_000_000,
    timeoutMs: 100,
    rise: 1,
    fall: 2,
    run: () => {
      if (!results.shift()) throw new Error('broken');
    },
  });
  await sleep(10);
  assert.equal(h.state, 'up');
  await h.runNow('a'); // fail 1
  assert.equal(h.state, 'up');
  await h.runNow('a'); // pass
  await h.runNow('a'); // fail 1
  assert.equal(h.state, 'up');
  const st = await h.runNow('a'); // fail 2 -> down
  assert.equal(h.state, 'down');
  assert.equal(st?.lastError, 'broken');
  assert.deepEqual(seen, ['down', 'up', 'down']);
  h.stop();
});

test('a check that hangs fails by its timeout', async () => {
  const h = new HealthModel(quiet);
  h.register({
    name: 'slow',
    intervalMs: 1_000_000,
    timeoutMs: 30,
    rise: 1,
    fall: 1,
    run: (signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')))),
  });
  await sleep(60);
  const snap = h.snapshot();
  assert.equal(snap.checks[0]!.lastResult, 'fail');
  assert.match(snap.checks[0]!.lastError!, /timed out after 30 ms/);
  h.stop();
});

test('draining overrides up, down overrides draining; unregister removes the check', async () => {
  const registry = createMetricsRegistry();
  const h = new HealthModel(quiet, registry);
  let ok = true;
  const remove = h.register({
    name: 'a',
    intervalMs: 1_000_000,
    timeoutMs: 100,
    rise: 1,
    fall: 1,
    run: () => {
      if (!ok) throw new Error('x');
    },
  });
  await sleep(5);
  assert.equal(h.state, 'up');
  h.setDraining(true);
  assert.equal(h.state, 'draining');
  ok = false;
  await h.runNow('a');
  assert.equal(h.state, 'down');
  remove();
  assert.equal(h.state, 'draining');
  const text = await registry.metrics();
  assert.match(text, /cbr_health_state\{state="draining"\} 1/);
  assert.match(text, /cbr_health_transitions_total\{to="down"\} 2/);
  h.stop();
});

test('a failing non-critical check marks the PoP degraded, not down', async () => {
  const h = new HealthModel(quiet);
  let ok = false;
  h.register({ name: 'critical', intervalMs: 1_000_000, timeoutMs: 100, rise: 1, fall: 1, run: () => undefined });
  h.register({
    name: 'optional',
    critical: false,
    intervalMs: 1_000_000,
    timeoutMs: 100,
    rise: 1,
    fall: 1,
    run: () => {
      if (!ok) throw new Error('database away');
    },
  });
  await sleep(10);
  assert.equal(h.state, 'up');
  assert.equal(h.isDegraded, true);
  const snap = h.snapshot();
  assert.equal(snap.degraded, true);
  assert.deepEqual(
    snap.checks.map((c) => [c.name, c.critical, c.healthy]),
    [
      ['critical', true, true],
      ['optional', false, false],
    ],
  );
  ok = true;
  await h.runNow('optional');
  assert.equal(h.isDegraded, false);
  assert.equal(h.state, 'up');
  h.stop();
});
