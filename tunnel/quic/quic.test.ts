import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import fc from 'fast-check';
import quiche from '@matrixai/quic/native/quiche.js';
import { newServerConnectionId, serverIdOfConnectionId, SERVER_CID_LENGTH } from './cid.js';
import { RetryTokenKey } from './token.js';
import { resolveCongestionControl, QuicEndpoint, buildClientConfig, type QuicConnection } from './endpoint.js';
import { generateSelfSigned, loadTlsMaterial, writeTlsMaterial, TlsMaterialError } from './tls.js';
import { nativeIoWanted } from './udp-io.js';
import { nativeIoUnavailable } from '../../dataplane/index.js';
import { loopbackPair, measureDatagramEcho, measureStreamTransfer } from './loopback.js';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

test('server connection IDs carry the server id in the documented layout', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffff }), (id) => {
      const cid = newServerConnectionId(id);
      assert.equal(cid.length, SERVER_CID_LENGTH);
      assert.equal(cid[0], 19);
      assert.equal(cid.readUInt16BE(1), id);
      assert.equal(serverIdOfConnectionId(cid), id);
    }),
  );
  assert.notDeepEqual(newServerConnectionId(1), newServerConnectionId(1));
  assert.throws(() => newServerConnectionId(70000), RangeError);
  assert.equal(serverIdOfConnectionId(Buffer.alloc(8)), undefined);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (b) => {
      const r = serverIdOfConnectionId(b);
      assert.ok(r === undefined || (r >= 0 && r <= 0xffff));
    }),
  );
});

test('retry tokens bind address, original DCID and retry SCID, and expire', () => {
  const k = new RetryTokenKey(Buffer.alloc(32, 1), 10);
  const odcid = Buffer.from('0102030405060708', 'hex');
  const scid = newServerConnectionId(3);
  const now = 1_700_000_000_000;
  const t = k.mint('192.0.2.1', odcid, scid, now);
  assert.deepEqual(k.validate(t, '192.0.2.1', scid, now + 2000), { odcid });
  assert.deepEqual(k.validate(t, '192.0.2.2', scid, now), { rejected: 'bad-mac' });
  assert.deepEqual(k.validate(t, '192.0.2.1', newServerConnectionId(3), now), { rejected: 'bad-mac' });
  assert.deepEqual(k.validate(t, '192.0.2.1', scid, now + 11_000), { rejected: 'expired' });
  assert.deepEqual(k.validate(t, '192.0.2.1', scid, now - 5000), { rejected: 'future' });
  const tampered = Buffer.from(t);
  tampered[7]! ^= 1;
  assert.deepEqual(k.validate(tampered, '192.0.2.1', scid, now), { rejected: 'bad-mac' });
  assert.deepEqual(new RetryTokenKey(Buffer.alloc(32, 2)).validate(t, '192.0.2.1', scid, now), { rejected: 'bad-mac' });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (b) => {
      const r = k.validate(b, '192.0.2.1', scid, now);
      assert.ok('rejected' in r);
    }),
  );
});

test('congestion control: CBR_CC overrides the config, bad names are refused', () => {
  assert.equal(resolveCongestionControl(undefined, undefined), 'bbr');
  assert.equal(resolveCongestionControl('cubic', undefined), 'cubic');
  assert.equal(resolveCongestionControl('cubic', 'reno'), 'reno');
  assert.throws(() => resolveCongestionControl('bbr', 'vegas'), /CBR_CC: expected one of bbr, cubic, reno/);
});

test('TLS material: self-signed pair loads from files; mismatched or missing files name the field', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-tls-'));
  try {
    const a = await generateSelfSigned(['localhost']);
    const b = await generateSelfSigned(['localhost']);
    writeTlsMaterial(a, join(dir, 'a.crt'), join(dir, 'a.key'));
    writeTlsMaterial(b, join(dir, 'b.crt'), join(dir, 'b.key'));
    assert.deepEqual(loadTlsMaterial(join(dir, 'a.crt'), join(dir, 'a.key')), a);
    assert.throws(() => loadTlsMaterial(join(dir, 'a.crt'), join(dir, 'b.key'), 'tunnel.masque.tls'), /tunnel\.masque\.tls\.keyFile: .*does not match/);
    assert.throws(
      () => loadTlsMaterial(join(dir, 'none.crt'), join(dir, 'a.key')),
      (e: unknown) => e instanceof TlsMaterialError && e.field === 'tls.certFile',
    );
    writeFileSync(join(dir, 'junk.crt'), 'hello');
    assert.throws(() => loadTlsMaterial(join(dir, 'junk.crt'), join(dir, 'a.key')), /tls\.certFile: .*no PEM certificate/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('loopback: retry handshake, ALPN h3, server CID layout, datagram echo and a stream transfer', async () => {
  const pair = await loopbackPair();
  try {
    assert.equal(pair.server.stats.retriesSent, 1);
    assert.equal(Buffer.from(pair.conn.native.applicationProto()).toString(), 'h3');
    assert.equal(serverIdOfConnectionId(pair.conn.native.destinationId()), 7);
    assert.ok(pair.conn.datagramMaxSize() >= 1100);
    const echo = await measureDatagramEcho(pair, 500, 1000, 16);
    assert.ok(echo.echoed > 100, `only ${echo.echoed} datagrams echoed`);
    const bytes = 8 << 20;
    const s = await measureStreamTransfer(pair, bytes);
    assert.equal(s.received, bytes);
  } finally {
    await pair.close();
  }
});

test('socket paths: the batched addon and node:dgram both carry handshake, datagrams and a stream; CBR_NATIVE_IO=0 picks dgram', async () => {
  assert.equal(nativeIoWanted('0'), false);
  const unavailable = nativeIoUnavailable();
  assert.equal(unavailable, undefined, `the addon must be built for this test (make native): ${unavailable}`);
  assert.equal(nativeIoWanted(undefined), true);
  for (const nativeIo of [true, false]) {
    const pair = await loopbackPair({ nativeIo });
    try {
      assert.equal(pair.server.socketIo.kind, nativeIo ? 'batch' : 'dgram');
      assert.equal(pair.client.socketIo.kind, nativeIo ? 'batch' : 'dgram');
      const echo = await measureDatagramEcho(pair, 500, 1000, 16);
      assert.ok(echo.echoed > 100, `${pair.server.socketIo.kind}: only ${echo.echoed} datagrams echoed`);
      const bytes = 8 << 20;
      const s = await measureStreamTransfer(pair, bytes);
      assert.equal(s.received, bytes);
      const io = pair.server.socketIo.stats;
      if (nativeIo) assert.ok(pair.server.stats.packetsOut > io.sendCalls * 2, `batched: ${pair.server.stats.packetsOut} packets in ${io.sendCalls} sends`);
      else assert.equal(io.sendCalls, pair.server.stats.packetsOut);
      assert.equal(pair.server.stats.sendErrors + pair.client.stats.sendErrors, 0);
    } finally {
      await pair.close();
    }
  }
});

test('a dual-stack listener (::) serves an IPv4 client through retry on both socket paths', async () => {
  const tls = await generateSelfSigned();
  for (const nativeIo of [true, false]) {
    const server = await QuicEndpoint.listen({ host: '::', port: 0, tls, serverId: 3, nativeIo, onConnection: () => {} });
    const client = await QuicEndpoint.client({ caPem: tls.certPem, nativeIo });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${server.socketIo.kind}: handshake timed out`)), 5000);
        client.connect('127.0.0.1', server.address.port, 'localhost', {
          onEstablished: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
      assert.equal(server.stats.retriesSent, 1);
      assert.equal(server.connectionCount, 1);
    } finally {
      await client.close();
      await server.close();
    }
  }
});

test('loopback: idle timeout closes both ends', async () => {
  const closed: string[] = [];
  const pair = await loopbackPair({ idleTimeoutMs: 300 });
  try {
    const p = new Promise<void>((resolve) => {
      const h = (c: QuicConnection, side: string) =>
        (c.handler = {
          ...c.handler,
          onClosed: (_c, r) => {
            closed.push(`${side}:${r.by}`);
            if (closed.length === 2) resolve();
          },
        });
      h(pair.conn, 'client');
      h(pair.serverConn, 'server');
    });
    await Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error('no idle close')), 3000))]);
    assert.deepEqual(closed.sort(), ['client:idle', 'server:idle']);
    assert.equal(pair.server.connectionCount, 0);
  } finally {
    await pair.close();
  }
});

test('a replayed Initial from another address (spoofed) creates no connection; garbage is dropped', async () => {
  const tls = await generateSelfSigned();
  let accepted = 0;
  const server = await QuicEndpoint.listen({ host: '127.0.0.1', port: 0, tls, serverId: 1, onConnection: () => accepted++ });
  const a = createSocket('udp4');
  const b = createSocket('udp4');
  try {
    await new Promise<void>((r) => a.bind(0, '127.0.0.1', () => r()));
    await new Promise<void>((r) => b.bind(0, '127.0.0.2', () => r()));
    const local = { host: '127.0.0.1', port: a.address().port };
    const srv = { host: '127.0.0.1', port: server.address.port };
    const conn = quiche.Connection.connect('localhost', Buffer.alloc(20, 9), local, srv, buildClientConfig({ insecure: true }));
    const out = Buffer.alloc(1500);
    const retry = new Promise<Buffer>((resolve) => a.once('message', (m) => resolve(m)));
    let r = conn.send(out)!;
    a.send(out.subarray(0, r[0]), srv.port, srv.host);
    const retryPkt = await retry;
    conn.recv(retryPkt, { from: srv, to: local });
    r = conn.send(out)!;
    // The Initial with the token, sent from 127.0.0.2: the token is bound to 127.0.0.1.
    b.send(Buffer.from(out.subarray(0, r[0])), srv.port, srv.host);
    b.send(Buffer.alloc(30, 0x41), srv.port, srv.host);
    b.send(Buffer.alloc(1300, 0xc3), srv.port, srv.host);
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && server.stats.drops['bad-token'] + server.stats.drops['unknown-cid'] + server.stats.drops.header < 3)
      await new Promise((res) => setTimeout(res, 20));
    assert.equal(server.stats.drops['bad-token'], 1);
    assert.equal(accepted, 0);
    assert.equal(server.connectionCount, 0);
  } finally {
    a.close();
    b.close();
    await server.close();
  }
});

test('certificate checks: wrong CA fails the handshake; setTls serves the new certificate to new connections', async () => {
  const first = await generateSelfSigned();
  const second = await generateSelfSigned();
  const server = await QuicEndpoint.listen({ host: '127.0.0.1', port: 0, tls: first, serverId: 2, onConnection: () => {} });
  const tryConnect = async (caPem: string): Promise<string> => {
    const client = await QuicEndpoint.client({ caPem });
    try {
      return await new Promise<string>((resolve) => {
        const t = setTimeout(() => resolve('timeout'), 3000);
        client.connect('127.0.0.1', server.address.port, 'localhost', {
          onEstablished: () => {
            clearTimeout(t);
            resolve('ok');
          },
          onClosed: (_c, r) => {
            clearTimeout(t);
            resolve(`closed:${r.by}:${r.code}`);
          },
        });
      });
    } finally {
      await client.close();
    }
  };
  try {
    assert.equal(await tryConnect(first.certPem), 'ok');
    assert.match(await tryConnect(second.certPem), /^closed:local:/);
    server.setTls(second);
    assert.equal(await tryConnect(second.certPem), 'ok');
  } finally {
    await server.close();
  }
});

test("server CIDs are the XDP load balancer's format: its decoder reads our server id", async () => {
  const { decodeCid } = await import('../../xdp/index.js');
  for (const id of [0, 1, 4242, 0xffff]) {
    const fields = decodeCid(newServerConnectionId(id));
    assert.deepEqual(fields, { configId: 0, serverId: id, length: SERVER_CID_LENGTH });
  }
});
