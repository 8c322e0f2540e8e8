import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { SoftirqPerf, descendants, ksoftirqd } from './softirq-perf.js';

test('descendants finds a grandchild; ksoftirqd finds the per-CPU thread', { timeout: 20_000 }, async () => {
  const sh = spawn('sh', ['-c', 'sleep 5 & wait'], { stdio: 'ignore' });
  try {
    await new Promise((r) => setTimeout(r, 300));
    const kids = descendants(sh.pid!);
    assert.equal(kids.length, 1);
    assert.ok(!kids.includes(sh.pid!));
    assert.deepEqual(descendants(kids[0]!), []);
    assert.ok(ksoftirqd(0)! > 0);
    assert.equal(ksoftirqd(4096), undefined);
  } finally {
    sh.kill('SIGKILL');
    for (const k of descendants(sh.pid!)) process.kill(k, 'SIGKILL');
  }
});

test('perf counts the NET_RX softirq of the threads it is given, and only theirs', { timeout: 60_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-softirq-perf-'));
  try {
    const perf = await SoftirqPerf.open(0, join(dir, 'perf.data'));
    if (!perf) return t.skip('perf cannot sample here');
    await perf.start();
    // loopback traffic: each send runs the receive side as NET_RX softirq inline in the sender, on its CPU
    const ping = spawn('taskset', ['-c', '0', 'ping', '-q', '-f', '-c', '20000', '-s', '64', '127.0.0.1'], { stdio: 'ignore', timeout: 20_000 });
    const code = await new Promise<number | null>((r) => ping.once('exit', r));
    await perf.stop();
    assert.equal(code, 0);
    const ours = await perf.netRxNs(new Set([ping.pid!])); // taskset execs ping: one pid
    assert.ok(ours.samples > 0, 'the ping flood spent no sampled time in NET_RX');
    assert.equal(ours.ns, ours.samples * 100_000);
    assert.ok(ours.cpuNs > ours.ns, 'ping also spends CPU outside NET_RX');
    assert.equal(ours.runNs, 0, 'ping runs no XDP test run');
    assert.deepEqual(await perf.netRxNs(new Set([0x7fffffff])), { ns: 0, samples: 0, cpuNs: 0, runNs: 0, netRxInRunNs: 0 });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
