import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { pbkdf2 } from 'node:crypto';
import { UdpRelay } from './udp-relay.js';
import { RelayIo } from './udp-relay-io.js';
import { nativeIoUnavailable } from '../../dataplane/index.js';
import { TargetPolicy, TargetError } from './policy.js';
import { TargetResolver } from './dns.js';

/**
 * A DNS server on loopback for the names the tests ask: `echo.test` → 127.0.0.1 (one A record),
 * `gone.test` → NXDOMAIN, anything else → no answer at all (a server that hangs).
 */
async function fakeDns(): Promise<{ sock: Socket; server: string }> {
  const sock = createSocket('udp4');
  sock.on('message', (q, r) => {
    const name = q.toString('latin1', 12).split('\0')[0] ?? '';
    if (name.includes('echo')) {
      const answer = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1]);
      const head = Buffer.from(q);
      head.writeUInt16BE(0x8180, 2);
      head.writeUInt16BE(1, 6);
      sock.send(Buffer.concat([head, answer]), r.port, r.address);
    } else if (name.includes('gone')) {
      const reply = Buffer.from(q);
      reply.writeUInt16BE(0x8183, 2);
      sock.send(reply, r.port, r.address);
    }
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  return { sock, server: `127.0.0.1:${sock.address().port}` };
}

/** A UDP echo on loopback; returns its port. */
async function echoServer(): Promise<{ sock: Socket; port: number }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  sock.setRecvBufferSize(4 << 20); // a burst must not overflow it (capped by net.core.rmem_max)
  sock.on('message', (m, ri) => sock.send(m, ri.port, ri.address));
  return { sock, port: sock.address().port };
}

const until = async (done: () => boolean, ms = 2000) => {
  const end = Date.now() + ms;
  while (!done() && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
};

const open = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: true });
const kinds = [...(nativeIoUnavailable() === undefined ? [true] : []), false];

test('udp relay: the native addon is built (the batched relay path below needs it)', () => {
  assert.equal(nativeIoUnavailable(), undefined);
});

for (const native of kinds) {
  const kind = native ? 'batch' : 'dgram';
  test(`udp relay (${kind}): carries payloads to a target by address or name; policy and DNS failures are typed`, async () => {
    const echo = await echoServer();
    const port = echo.port;
    const dns = await fakeDns();
    const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: [dns.server] });
    const io = RelayIo.create({ sendQueuePackets: 1024, native });
    assert.equal(io.kind, kind);
    try {
      for (const host of ['127.0.0.1', 'echo.test']) {
        const got: string[] = [];
        const relay = await UdpRelay.open({ host, port }, open, resolver, io, (d, o, n) => got.push(d.toString('latin1', o, o + n)) > 0);
        for (let i = 0; i < 10; i++) relay.send(Buffer.from(`ping ${i}`));
        await until(() => got.length >= 10);
        assert.equal(got.length, 10, host);
        assert.equal(got[3], 'ping 3');
        relay.close();
      }
      assert.equal(io.stats.sockets, 0, 'closed relays leave no socket');
      const closed = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: false });
      const refused = (status: number, code: string) => (e: unknown) => e instanceof TargetError && e.status === status && e.code === code;
      await assert.rejects(
        UdpRelay.open({ host: '127.0.0.1', port }, closed, resolver, io, () => true),
        refused(403, 'TARGET_REFUSED'),
      );
      await assert.rejects(
        UdpRelay.open({ host: 'gone.test', port }, open, resolver, io, () => true),
        refused(502, 'TARGET_UNRESOLVABLE'),
      );
      const t0 = Date.now();
      await assert.rejects(
        UdpRelay.open({ host: 'hang.test', port }, open, resolver, io, () => true),
        refused(504, 'TIMEOUT'),
      );
      assert.ok(Date.now() - t0 < 2000, `a hanging DNS server is given up after ${Date.now() - t0} ms (timeout 500 ms)`);
    } finally {
      echo.sock.close();
      dns.sock.close();
    }
  });

  test(`udp relay (${kind}): sessions keep their own targets; a burst is relayed whole and in order`, async () => {
    const echoes = [await echoServer(), await echoServer()];
    const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: ['127.0.0.1:9'] });
    const io = RelayIo.create({ sendQueuePackets: 4096, native });
    const got: string[][] = [[], []];
    const relays = await Promise.all(
      echoes.map((e, k) =>
        UdpRelay.open({ host: '127.0.0.1', port: e.port }, open, resolver, io, (d, o, n) => got[k]!.push(d.toString('latin1', o, o + n)) > 0),
      ),
    );
    try {
      // Interleaved sizes and sessions: runs of equal sizes (GSO on the batched path) and runs that break.
      const N = 150;
      const msg = (k: number, i: number) => `${k}:${i}:${'x'.repeat(i % 7 < 4 ? 40 : 40 + (i % 300))}`;
      for (let i = 0; i < N; i++) for (let k = 0; k < 2; k++) relays[k]!.send(Buffer.from(msg(k, i)));
      await until(() => got[0]!.length >= N && got[1]!.length >= N);
      for (let k = 0; k < 2; k++) {
        assert.equal(got[k]!.length, N, `session ${k}: every payload echoed (loopback loses none)`);
        assert.deepEqual(
          got[k],
          Array.from({ length: N }, (_, i) => msg(k, i)),
          `session ${k}: its own target, in order`,
        );
      }
      if (native) {
        // One sendmmsg per socket for the burst sent in one turn, and replies read in batches.
        assert.equal(io.stats.sendCalls, 2 * 1, `send calls ${io.stats.sendCalls}`);
        assert.ok(io.stats.recvCalls < N, `receive batches ${io.stats.recvCalls} for ${2 * N} replies`);
      } else {
        assert.equal(io.stats.sendCalls, 2 * N);
      }
      assert.deepEqual(io.drops, { 'send-error': 0, 'send-queue': 0 });
    } finally {
      for (const r of relays) r.close();
      for (const e of echoes) e.sock.close();
    }
  });

  test(`udp relay (${kind}): a closed target port costs the payloads, not the relay`, async () => {
    const probe = createSocket('udp4');
    await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
    const port = probe.address().port;
    probe.close(); // nothing listens there now: the kernel answers ICMP port unreachable
    const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: ['127.0.0.1:9'] });
    const io = RelayIo.create({ sendQueuePackets: 1024, native });
    const relay = await UdpRelay.open({ host: '127.0.0.1', port }, open, resolver, io, () => assert.fail('no reply expected'));
    try {
      for (let round = 0; round < 5; round++) {
        relay.send(Buffer.from('anyone?'));
        await new Promise((r) => setTimeout(r, 20));
      }
      // A refusal surfaces on the next send (ICMP reported on the connected socket; a read between may consume it).
      await until(() => io.drops['send-error'] > 0, 500);
      assert.ok(io.drops['send-error'] >= 1, `send errors counted: ${JSON.stringify(io.drops)}`);
      // Bigger than a UDP datagram can be (a DATAGRAM capsule may carry 64 KiB): counted, not sent.
      const before = io.drops['send-error'];
      relay.send(Buffer.alloc(65_508));
      assert.equal(io.drops['send-error'], before + 1);
    } finally {
      relay.close();
    }
  });
}

test('udp relay (batch): a target the kernel will not connect to is TARGET_UNREACHABLE (502), no socket kept', { skip: nativeIoUnavailable() }, async () => {
  const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: ['127.0.0.1:9'] });
  const io = RelayIo.create({ sendQueuePackets: 64, native: true });
  // Broadcast without SO_BROADCAST: connect(2) answers EACCES. (node:dgram connects it; its sends then fail, counted.)
  await assert.rejects(
    UdpRelay.open({ host: '255.255.255.255', port: 9 }, open, resolver, io, () => true),
    (e: unknown) => e instanceof TargetError && e.code === 'TARGET_UNREACHABLE' && e.status === 502 && /255\.255\.255\.255:9/.test(e.message),
  );
  assert.equal(io.stats.sockets, 0);
});

test('udp relay (batch): a refused reply stops reading that socket until the loop comes round again', { skip: nativeIoUnavailable() }, async () => {
  // A target that answers a ping with 300 datagrams at once: they wait in the relay socket together.
  const target = createSocket('udp4');
  await new Promise<void>((r) => target.bind(0, '127.0.0.1', () => r()));
  target.on('message', (_m, ri) => {
    for (let i = 0; i < 300; i++) target.send(Buffer.alloc(64, i), ri.port, ri.address);
  });
  const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: ['127.0.0.1:9'] });
  const io = RelayIo.create({ sendQueuePackets: 1024, native: true });
  // Replies per event-loop turn: a full client queue (the sink says false) must not make the relay read on.
  let inTurn = 0;
  let maxInTurn = 0;
  let got = 0;
  const relay = await UdpRelay.open({ host: '127.0.0.1', port: target.address().port }, open, resolver, io, () => {
    got++;
    if (inTurn++ === 0) setImmediate(() => (inTurn = 0));
    maxInTurn = Math.max(maxInTurn, inTurn);
    return false;
  });
  try {
    relay.send(Buffer.from('ping'));
    await until(() => got >= 300, 3000);
    assert.equal(got, 300, 'every reply still reaches the session, a batch per turn');
    assert.ok(maxInTurn <= 32, `at most one receive batch (32) per turn, saw ${maxInTurn}`);
  } finally {
    relay.close();
    target.close();
  }
});

test('udp relay (batch): the send queue is bounded per turn; the excess is counted, the rest goes', { skip: nativeIoUnavailable() }, async () => {
  const echo = await echoServer();
  const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: ['127.0.0.1:9'] });
  const io = RelayIo.create({ sendQueuePackets: 64, native: true });
  let got = 0;
  const relay = await UdpRelay.open({ host: '127.0.0.1', port: echo.port }, open, resolver, io, () => ++got > 0);
  try {
    for (let i = 0; i < 100; i++) relay.send(Buffer.alloc(64, i));
    assert.equal(io.drops['send-queue'], 36);
    await until(() => got >= 64);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, 64);
    // The next turn has the whole queue again.
    for (let i = 0; i < 64; i++) relay.send(Buffer.alloc(64, i));
    await until(() => got >= 128);
    assert.equal(got, 128);
    assert.equal(io.drops['send-queue'], 36);
    // Payloads queued by a session that closes in the same turn are not sent.
    relay.send(Buffer.alloc(64));
    relay.close();
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, 128);
  } finally {
    relay.close();
    echo.sock.close();
  }
});

test('DNS lookups are capped in flight and do not hold libuv pool threads', async () => {
  const dns = await fakeDns();
  const resolver = new TargetResolver({ timeoutMs: 1500, maxInFlight: 8, servers: [dns.server] });
  try {
    const stuck = Array.from({ length: 8 }, (_, i) => resolver.resolve(`hang${i}.test`).catch((e: unknown) => e));
    assert.equal(resolver.inFlight, 8);
    await assert.rejects(resolver.resolve('echo.test'), (e: unknown) => e instanceof TargetError && e.code === 'UNAVAILABLE' && e.status === 503);
    // getaddrinfo-based lookups would hold all four pool threads now; pbkdf2 runs on the same pool.
    const t0 = Date.now();
    await new Promise<void>((resolve, reject) => pbkdf2('x', 'y', 1, 32, 'sha256', (err) => (err ? reject(err) : resolve())));
    assert.ok(Date.now() - t0 < 500, `a pool task waited ${Date.now() - t0} ms behind stuck DNS lookups`);
    for (const e of await Promise.all(stuck)) assert.ok(e instanceof TargetError && e.code === 'TIMEOUT', String(e));
    assert.equal(resolver.inFlight, 0);
    assert.equal(await resolver.resolve('echo.test'), '127.0.0.1');
    assert.deepEqual(resolver.results, { ok: 1, 'not-found': 0, timeout: 8, busy: 1, error: 0 });
  } finally {
    dns.sock.close();
  }
});
