import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { UdpRelay } from './udp-relay.js';
import { TargetPolicy, TargetError } from './policy.js';

test('udp relay: carries payloads to a target and replies back; policy and DNS failures are typed', async () => {
  const echo = createSocket('udp4');
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  echo.on('message', (m, ri) => echo.send(m, ri.port, ri.address));
  const port = echo.address().port;
  try {
    const open = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: true });
    const got: Buffer[] = [];
    const relay = await UdpRelay.open({ host: '127.0.0.1', port }, open, 1000, (p) => (got.push(p), true));
    for (let i = 0; i < 10; i++) relay.send(Buffer.from(`ping ${i}`));
    const until = Date.now() + 2000;
    while (got.length < 10 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 10);
    assert.equal(got[3]!.toString(), 'ping 3');
    relay.close();
    const closed = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: false });
    await assert.rejects(
      UdpRelay.open({ host: '127.0.0.1', port }, closed, 1000, () => true),
      (e: unknown) => e instanceof TargetError && e.status === 403,
    );
    await assert.rejects(
      UdpRelay.open({ host: 'does-not-exist.invalid', port }, open, 500, () => true),
      (e: unknown) => e instanceof TargetError && e.status === 400,
    );
  } finally {
    echo.close();
  }
});
