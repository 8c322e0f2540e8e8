import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { pbkdf2 } from 'node:crypto';
import { UdpRelay, CONNECTING_QUEUE, newUdpDrops } from './udp-relay.js';
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

test('udp relay: carries payloads to a target by address or name; policy and DNS failures are typed', async () => {
  const echo = createSocket('udp4');
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  echo.on('message', (m, ri) => echo.send(m, ri.port, ri.address));
  const port = echo.address().port;
  const dns = await fakeDns();
  const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8, servers: [dns.server] });
  try {
    const open = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: true });
    for (const host of ['127.0.0.1', 'echo.test']) {
      const got: Buffer[] = [];
      const relay = await UdpRelay.open({ host, port }, open, resolver, (p) => got.push(p) > 0);
      // No socket until the first payload; the first ones wait for it to connect, none is lost.
      assert.equal(relay.hasSocket, false);
      for (let i = 0; i < 10; i++) relay.send(Buffer.from(`ping ${i}`));
      assert.equal(relay.hasSocket, true);
      const until = Date.now() + 2000;
      while (got.length < 10 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      assert.equal(got.length, 10, host);
      assert.equal(got[3]?.toString(), 'ping 3');
      relay.close();
    }
    const closed = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: false });
    const refused = (status: number, code: string) => (e: unknown) => e instanceof TargetError && e.status === status && e.code === code;
    await assert.rejects(
      UdpRelay.open({ host: '127.0.0.1', port }, closed, resolver, () => true),
      refused(403, 'TARGET_REFUSED'),
    );
    await assert.rejects(
      UdpRelay.open({ host: 'gone.test', port }, open, resolver, () => true),
      refused(502, 'TARGET_UNRESOLVABLE'),
    );
    const t0 = Date.now();
    await assert.rejects(
      UdpRelay.open({ host: 'hang.test', port }, open, resolver, () => true),
      refused(504, 'TIMEOUT'),
    );
    assert.ok(Date.now() - t0 < 2000, `a hanging DNS server is given up after ${Date.now() - t0} ms (timeout 500 ms)`);
  } finally {
    echo.close();
    dns.sock.close();
  }
});

test('udp relay: a burst before the socket connects is held up to CONNECTING_QUEUE; close while connecting is clean', async () => {
  const echo = createSocket('udp4');
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  echo.on('message', (m, ri) => echo.send(m, ri.port, ri.address));
  const resolver = new TargetResolver({ timeoutMs: 500, maxInFlight: 8 });
  const policy = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0'], allowPrivate: true });
  try {
    const got: Buffer[] = [];
    const shared = newUdpDrops(); // the server's record, exported as cbr_masque_drops_total{reason="relay-…"}
    const relay = await UdpRelay.open({ host: '127.0.0.1', port: echo.address().port }, policy, resolver, (p) => got.push(p) > 0, shared);
    const burst = CONNECTING_QUEUE + 10;
    for (let i = 0; i < burst; i++) relay.send(Buffer.from(`p${i}`));
    assert.equal(shared['send-error'], 10);
    const until = Date.now() + 2000;
    while (got.length < CONNECTING_QUEUE && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, CONNECTING_QUEUE);
    assert.deepEqual(new Set(got.map(String)), new Set(Array.from({ length: CONNECTING_QUEUE }, (_, i) => `p${i}`)));
    // Once connected, payloads go straight out.
    relay.send(Buffer.from('after'));
    const until2 = Date.now() + 2000;
    while (got.length < CONNECTING_QUEUE + 1 && Date.now() < until2) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.at(-1)?.toString(), 'after');
    relay.close();

    const early = await UdpRelay.open({ host: '127.0.0.1', port: echo.address().port }, policy, resolver, () => true);
    early.send(Buffer.from('x'));
    early.close(); // before its socket connected: nothing throws, nothing is sent later
    early.send(Buffer.from('y'));
    assert.equal(early.hasSocket, false);
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    echo.close();
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
