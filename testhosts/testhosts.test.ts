import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { withTopology, run, Topology } from './testhosts.js';

async function namespaces(): Promise<string[]> {
  return (await run(['ip', 'netns', 'list']))
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

test('namespaces ping across a veth pair and are removed afterwards', async () => {
  let names: string[] = [];
  let sleeperPid = 0;
  await withTopology(async (t) => {
    const a = await t.namespace('ping');
    const b = await t.namespace('ping');
    const [ea, eb] = await t.link(a, b, { aAddr: ['10.200.0.1/24', 'fd00:200::1/64'], bAddr: ['10.200.0.2/24', 'fd00:200::2/64'] });
    assert.ok(ea.ifname.length <= 15 && eb.ifname.length <= 15);
    names = [a.name, b.name];
    assert.match(a.name, new RegExp(`^cbr-t${process.pid}-`));
    assert.ok(await a.ping('10.200.0.2'));
    assert.ok(await b.ping('fd00:200::1'));
    assert.equal(await a.ping('10.200.0.99', { timeoutS: 1 }), false);
    const sleeper = b.spawn(['sleep', '300']);
    sleeperPid = sleeper.pid!;
    const listed = await namespaces();
    for (const n of names) assert.ok(listed.includes(n));
  });
  const after = await namespaces();
  for (const n of names) assert.ok(!after.includes(n), `${n} left behind`);
  assert.throws(() => process.kill(sleeperPid, 0), 'processes inside are killed');
});

test('a test that fails inside withTopology still cleans up', async () => {
  let name = '';
  await assert.rejects(
    withTopology(async (t) => {
      name = (await t.namespace('fail')).name;
      throw new Error('boom');
    }),
    /boom/,
  );
  assert.ok(!(await namespaces()).includes(name));
});

for (const how of ['throw', 'sigterm', 'exit']) {
  test(`a test process that dies (${how}) leaves no namespace behind`, async () => {
    const fixture = join(import.meta.dirname, 'fixtures', 'leak-topology.js');
    const proc = spawn(process.execPath, [fixture, how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout!.on('data', (d) => (out += d));
    await new Promise((r) => proc.once('exit', r));
    const created = out.trim().split(' ').filter(Boolean);
    assert.equal(created.length, 2, `fixture printed ${JSON.stringify(out)}`);
    const listed = await namespaces();
    for (const n of created) assert.ok(!listed.includes(n), `${n} left behind after ${how}`);
  });
}

test('commands inside a namespace report failures with their stderr', async () => {
  const t = new Topology();
  try {
    const a = await t.namespace('cmd');
    await assert.rejects(a.exec(['ip', 'link', 'set', 'nonexistent0', 'up']), /nonexistent0|Cannot find device/);
    assert.match(await a.exec(['ip', '-o', 'link', 'show', 'lo']), /LOOPBACK/);
  } finally {
    await t.destroy();
  }
});
