import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Writable } from 'node:stream';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { Supervisor, guardedArgv, ORPHAN_EXIT } from './supervisor.js';
import { createLogger } from './log.js';
import { createMetricsRegistry } from './metrics.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Running (a zombie waiting for its reaper counts as gone). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

test('a crashing child is restarted with capped exponential backoff', async () => {
  const lines: string[] = [];
  const log = createLogger(
    'info',
    new Writable({
      write: (c, _e, cb) => {
        lines.push(String(c));
        cb();
      },
    }),
  );
  const registry = createMetricsRegistry();
  const sup = new Supervisor(log, registry);
  const starts: number[] = [];
  try {
    const child = sup.supervise({
      name: 'crasher',
      command: 'sh',
      args: ['-c', 'echo hello-from-child; exit 3'],
      initialBackoffMs: 40,
      maxBackoffMs: 160,
      stableAfterMs: 60_000,
    });
    child.on('start', () => starts.push(performance.now()));
    for (let i = 0; i < 200 && starts.length < 6; i++) await sleep(20);
    assert.ok(starts.length >= 6, `only ${starts.length} starts`);
    const gaps = starts.slice(1).map((t, i) => t - starts[i]!);
    // 40, 80, 160, 160, 160 (+ process start time): growing, then capped.
    assert.ok(gaps[0]! >= 35, `first gap ${gaps[0]}`);
    assert.ok(gaps[1]! >= 75, `second gap ${gaps[1]}`);
    assert.ok(gaps[2]! >= 150, `third gap ${gaps[2]}`);
    // Without the cap the fifth delay would be 640 ms; process start adds jitter on a busy machine.
    assert.ok(gaps[4]! >= 150 && gaps[4]! < 600, `capped gap ${gaps[4]}`);
    assert.ok(child.restarts >= 5);
    const text = await registry.metrics();
    assert.match(text, /cbr_child_restarts_total\{child="crasher"\} [5-9]/);
    assert.ok(
      lines.some((l) => l.includes('hello-from-child') && l.includes('"child":"crasher"')),
      'child stdout reaches the log',
    );
    assert.ok(lines.some((l) => l.includes('child exited; restarting')));
  } finally {
    await sup.stopAll();
    sup.dispose();
  }
});

test('stop() ends a running child for good and sets cbr_child_up to 0', async () => {
  const registry = createMetricsRegistry();
  const sup = new Supervisor(createLogger('silent'), registry);
  const child = sup.supervise({ name: 'sleeper', command: 'sleep', args: ['300'] });
  await new Promise((r) => child.once('start', r));
  const pid = child.pid!;
  assert.match(await registry.metrics(), /cbr_child_up\{child="sleeper"\} 1/);
  await sup.stop('sleeper');
  assert.equal(child.state, 'stopped');
  await sleep(50);
  assert.equal(alive(pid), false);
  assert.equal(sup.list().length, 0);
  sup.dispose();
});

test('a child that ignores SIGTERM is killed after stopTimeoutMs, with its own children', async () => {
  const sup = new Supervisor(createLogger('silent'));
  const child = sup.supervise({ name: 'stubborn', command: 'sh', args: ['-c', 'trap "" TERM; sleep 300 & echo $!; wait'], stopTimeoutMs: 200 });
  const grandchild = Number(await new Promise<string>((r) => child.once('line', r)));
  assert.ok(alive(grandchild));
  const t0 = performance.now();
  await sup.stop('stubborn');
  const took = performance.now() - t0;
  assert.ok(took >= 150 && took < 3000, `stop took ${took} ms`);
  await sleep(50);
  assert.equal(alive(grandchild), false, 'the whole process group is stopped');
  sup.dispose();
});

test('a missing executable is reported and retried, not a crash', async () => {
  const sup = new Supervisor(createLogger('silent'));
  const child = sup.supervise({ name: 'missing', command: '/nonexistent/binary', initialBackoffMs: 20, maxBackoffMs: 20 });
  for (let i = 0; i < 100 && child.restarts < 2; i++) await sleep(20);
  assert.ok(child.restarts >= 2);
  await sup.stopAll();
  sup.dispose();
});

test('SIGKILL of the supervising process leaves no child running', async () => {
  const fixture = join(import.meta.dirname, 'fixtures', 'supervise.js');
  const proc = spawn(process.execPath, [fixture, '--', 'sleep', '300'], { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const childPid = await new Promise<number>((resolve, reject) => {
      let buf = '';
      proc.stderr!.on('data', (d) => {
        buf += d;
        const m = /child-pid (\d+)/.exec(buf);
        if (m) resolve(Number(m[1]));
      });
      setTimeout(() => reject(new Error(`no child pid: ${buf}`)), 10_000);
    });
    // setpriv has exec'd sleep by the time it is running; wait until the pid is the sleep.
    assert.ok(alive(childPid));
    proc.kill('SIGKILL');
    await new Promise((r) => proc.once('exit', r));
    let gone = false;
    for (let i = 0; i < 100 && !gone; i++) {
      gone = !alive(childPid);
      if (!gone) await sleep(20);
    }
    assert.ok(gone, `child ${childPid} outlived its SIGKILLed supervisor`);
  } finally {
    proc.kill('SIGKILL');
  }
});

test('a child whose parent is gone before it runs exits without running its command', async () => {
  const runOnce = (parentPid: number) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const [cmd, ...args] = guardedArgv('echo', ['ran'], parentPid);
      const p = spawn(cmd!, args, { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      p.stdout.on('data', (d) => (out += d));
      p.on('close', (code) => resolve({ code, out }));
    });
  // this process is the parent: the command runs
  assert.deepEqual(await runOnce(process.pid), { code: 0, out: 'ran\n' });
  // a parent other than the real one stands for "the agent died before prctl": nothing runs
  assert.deepEqual(await runOnce(1), { code: ORPHAN_EXIT, out: '' });
});
