// The control-socket client against a real BIRD (no peers, its own socket in a temp dir).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BirdControl, BirdCommandError, waitForBird } from './control.js';
import { parseProtocols, parseRoutePrefixes } from './reply.js';

const CONF = `log stderr all;
router id 10.255.0.1;
timeformat protocol iso long;
protocol device {}
protocol static anycast4 { ipv4; route 198.51.100.1/32 blackhole; }
`;

function startBird(dir: string): ChildProcess {
  return spawn('bird', ['-f', '-s', join(dir, 'bird.ctl'), '-c', join(dir, 'bird.conf')], { stdio: 'ignore' });
}

async function killAndWait(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill('SIGKILL');
  await exited;
}

test('control client: commands, error replies, one-line rule, BIRD restart', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-bird-ctl-'));
  writeFileSync(join(dir, 'bird.conf'), CONF);
  let bird = startBird(dir);
  const control = new BirdControl({ socketPath: join(dir, 'bird.ctl'), timeoutMs: 2000 });
  try {
    await waitForBird(control, 10_000);
    const protos = parseProtocols(await control.command('show protocols'));
    assert.deepEqual(
      protos.map((p) => [p.name, p.state]),
      [
        ['device1', 'up'],
        ['anycast4', 'up'],
      ],
    );
    // Commands queue and pair with their replies in order.
    const [a, b, c] = await Promise.all([control.command('show route'), control.raw('show nonsense'), control.command('show status')]);
    assert.deepEqual(parseRoutePrefixes(a), ['198.51.100.1/32']);
    assert.ok(b.code >= 9000, `expected a parse error, got ${b.code}`);
    assert.ok(c.lines.some((l) => l.code === 1000 && /BIRD 2\./.test(l.text)));
    await assert.rejects(
      control.command('configure "/nonexistent/file"'),
      (err: unknown) => err instanceof BirdCommandError && /No such file/.test(err.message),
    );
    await assert.rejects(control.command('show status\nshow route'), /one line/);
    await control.command('disable anycast4');
    // A disabled protocol passes through `flush` (routes being removed) before `down`.
    const states: string[] = [];
    for (let i = 0; i < 50; i++) {
      const state = parseProtocols(await control.command('show protocols')).find((p) => p.name === 'anycast4')?.state ?? 'missing';
      states.push(state);
      if (state !== 'flush') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(states.at(-1), 'down', `states seen: ${states.join(', ')}`);
    // BIRD dies: commands fail with a clear error; after a restart the client reconnects by itself.
    await killAndWait(bird);
    await assert.rejects(control.command('show status'), /BIRD control socket|ECONNREFUSED|ENOENT/);
    bird = startBird(dir);
    await waitForBird(control, 10_000);
    assert.equal(parseProtocols(await control.command('show protocols')).find((p) => p.name === 'anycast4')?.state, 'up');
  } finally {
    control.close();
    await killAndWait(bird);
    rmSync(dir, { recursive: true, force: true });
  }
});
