// Fleet keys: a retry token or a stateless reset made by one endpoint is good at another endpoint
// with the same key file (two PoPs behind one anycast address), not at one with another key; rotation
// by overlap keeps both working. The "route switch" is a UDP relay in front of two endpoints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { FleetKeys, RESET_TOKEN_LEN } from './fleet-key.js';
import { statelessResetPacket, ResetLimiter, MIN_RESET_LEN } from './stateless-reset.js';
import { RetryTokenKey } from './token.js';
import { QuicEndpoint, type QuicConnection, type CloseReason } from './endpoint.js';
import { generateSelfSigned, type TlsMaterial } from './tls.js';
import { newServerConnectionId } from './cid.js';
import { CbrError } from '../../dataplane/index.js';

const K1 = randomBytes(32);
const K2 = randomBytes(32);

function keyFile(dir: string, name: string, lines: string[], mode = 0o600): string {
  const p = join(dir, name);
  writeFileSync(p, `${lines.join('\n')}\n`);
  chmodSync(p, mode);
  return p;
}

test('fleet key file: hex or base64 lines, comments; bad files are refused naming the line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-fleet-'));
  try {
    const a = FleetKeys.fromFile(keyFile(dir, 'a', ['# fleet key', K1.toString('hex'), '', K2.toString('base64')]), 'f');
    assert.equal(a.size, 2);
    assert.ok(a.shared);
    const b = FleetKeys.fromSecrets([K1, K2]);
    const cid = newServerConnectionId(1);
    assert.deepEqual(a.resetToken(cid, 0), b.resetToken(cid, 0));
    assert.deepEqual(a.resetToken(cid, 1), b.resetToken(cid, 1));
    assert.notDeepEqual(a.resetToken(cid, 0), a.resetToken(cid, 1));
    assert.equal(a.resetToken(cid).length, RESET_TOKEN_LEN);
    assert.notDeepEqual(a.resetToken(cid), FleetKeys.local().resetToken(cid));
    assert.throws(() => FleetKeys.fromFile(keyFile(dir, 'loose', [K1.toString('hex')], 0o644), 'tunnel.masque.fleetKeyFile'), /mode 0644/);
    assert.throws(() => FleetKeys.parse('abcd\n', 'f'), /line 1 holds 2 bytes/);
    assert.throws(() => FleetKeys.parse('# only a comment\n', 'f'), /holds no key/);
    assert.throws(() => FleetKeys.parse(`${K1.toString('hex')}\nnot base64 !!\n`, 'f'), /line 2 is neither hex nor base64/);
    assert.throws(() => FleetKeys.parse(Array(5).fill(K1.toString('hex')).join('\n'), 'f'), /at most 4/);
    fc.assert(
      fc.property(fc.string({ maxLength: 200 }), (text) => {
        try {
          FleetKeys.parse(text, 'f');
        } catch (err) {
          assert.ok(err instanceof CbrError, String(err));
        }
      }),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('retry tokens: the first key signs, every key verifies (rotation by overlap)', () => {
  const old = new RetryTokenKey(FleetKeys.fromSecrets([K1]).retryKeys());
  const overlap = new RetryTokenKey(FleetKeys.fromSecrets([K2, K1]).retryKeys());
  const next = new RetryTokenKey(FleetKeys.fromSecrets([K2]).retryKeys());
  const scid = newServerConnectionId(2);
  const odcid = randomBytes(8);
  const now = 1_700_000_000_000;
  const byOld = old.mint('192.0.2.7', odcid, scid, now);
  const byOverlap = overlap.mint('192.0.2.7', odcid, scid, now);
  assert.deepEqual(overlap.validate(byOld, '192.0.2.7', scid, now), { odcid });
  assert.deepEqual(next.validate(byOverlap, '192.0.2.7', scid, now), { odcid });
  assert.deepEqual(old.validate(byOverlap, '192.0.2.7', scid, now), { rejected: 'bad-mac' });
  assert.deepEqual(next.validate(byOld, '192.0.2.7', scid, now), { rejected: 'bad-mac' });
});

test('stateless reset packets: short-header form, smaller than the trigger, ≥ 21 bytes, end with the token', () => {
  const token = randomBytes(16);
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2000 }), (trigger) => {
      const p = statelessResetPacket(token, trigger);
      if (trigger - 1 < MIN_RESET_LEN) return assert.equal(p, undefined);
      assert.ok(p);
      assert.ok(p.length < trigger && p.length >= MIN_RESET_LEN);
      assert.equal(p[0]! & 0xc0, 0x40);
      assert.deepEqual(p.subarray(p.length - 16), token);
    }),
  );
  assert.throws(() => statelessResetPacket(randomBytes(8), 100), RangeError);
  const l = new ResetLimiter(10, 0);
  let sent = 0;
  for (let i = 0; i < 50; i++) if (l.take(0)) sent++;
  assert.equal(sent, 10);
  assert.equal(l.take(50), false); // half a token back after 50 ms
  assert.equal(l.take(100), true);
});

/** A UDP relay: the client talks to it; it forwards to `target` (switchable) and relays the servers' answers back. */
async function relay(servers: number[]): Promise<{ port: number; target: number; close(): void; sock: Socket }> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const state = { port: sock.address().port, target: 0, sock, close: () => sock.close() };
  let client: number | undefined;
  sock.on('message', (msg, r) => {
    if (servers.includes(r.port)) {
      if (client !== undefined) sock.send(msg, client, '127.0.0.1');
      return;
    }
    client = r.port;
    sock.send(msg, state.target, '127.0.0.1');
  });
  return state;
}

interface Pops {
  a: QuicEndpoint;
  b: QuicEndpoint;
  client: QuicEndpoint;
  r: Awaited<ReturnType<typeof relay>>;
  close(): Promise<void>;
}

async function twoPops(tls: TlsMaterial, keysA: FleetKeys, keysB: FleetKeys): Promise<Pops> {
  const opts = { host: '127.0.0.1', port: 0, tls, idleTimeoutMs: 5000, onConnection: () => {} };
  const a = await QuicEndpoint.listen({ ...opts, serverId: 1, fleetKeys: keysA });
  const b = await QuicEndpoint.listen({ ...opts, serverId: 2, fleetKeys: keysB });
  const client = await QuicEndpoint.client({ caPem: tls.certPem, idleTimeoutMs: 5000 });
  const r = await relay([a.address.port, b.address.port]);
  return {
    a,
    b,
    client,
    r,
    async close() {
      r.close();
      await client.close();
      await a.close();
      await b.close();
    },
  };
}

function connectVia(p: Pops, onClosed: (r: CloseReason) => void = () => {}): Promise<QuicConnection | string> {
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve('timeout'), 1500);
    const c = p.client.connect('127.0.0.1', p.r.port, 'localhost', {
      onEstablished: () => {
        clearTimeout(t);
        resolve(c);
      },
      onClosed: (_c, r) => {
        clearTimeout(t);
        onClosed(r);
        resolve(`closed:${r.by}`);
      },
    });
  });
}

test('a retry token minted by one endpoint admits the client at another with the same key file, not with another key', async () => {
  const tls = await generateSelfSigned(['localhost']);
  for (const [keysB, admitted, reloadTo] of [
    [FleetKeys.fromSecrets([K1]), true, undefined],
    [FleetKeys.fromSecrets([K2, K1]), true, undefined], // B already signs with the new key, still verifies the old
    [FleetKeys.fromSecrets([K2]), false, undefined],
    [FleetKeys.fromSecrets([K2]), true, FleetKeys.fromSecrets([K2, K1])], // a reload brought A's key to B
  ] as const) {
    const p = await twoPops(tls, FleetKeys.fromSecrets([K1]), keysB);
    if (reloadTo) p.b.setFleetKeys(reloadTo);
    try {
      // The first Initial reaches A (which answers with Retry), everything after it B.
      p.r.target = p.a.address.port;
      p.r.sock.once('message', () => setImmediate(() => (p.r.target = p.b.address.port)));
      const c = await connectVia(p);
      assert.equal(p.a.stats.retriesSent, 1);
      assert.equal(p.b.stats.retriesSent, 0);
      if (admitted) {
        assert.ok(typeof c !== 'string', `not established at B: ${c}`);
        assert.equal(p.b.connectionCount, 1);
        assert.equal(p.a.connectionCount, 0);
      } else {
        assert.equal(c, 'timeout');
        assert.ok(p.b.stats.drops['bad-token'] >= 1);
        assert.equal(p.b.connectionCount, 0);
      }
    } finally {
      await p.close();
    }
  }
});

test('a short-header packet for a connection B does not know gets a stateless reset that closes the client, with the fleet key', async () => {
  const tls = await generateSelfSigned(['localhost']);
  for (const [keysB, reset] of [
    [FleetKeys.fromSecrets([K1]), true],
    [FleetKeys.fromSecrets([K2, K1]), true], // rotation: B tries the old key's token too
    [FleetKeys.fromSecrets([K2]), false],
  ] as const) {
    const p = await twoPops(tls, FleetKeys.fromSecrets([K1]), keysB);
    try {
      p.r.target = p.a.address.port;
      let closedBy: string | undefined;
      let closedAt = 0;
      const c = await connectVia(p, (r) => {
        closedBy = r.by;
        closedAt = Date.now();
      });
      assert.ok(typeof c !== 'string', `not established at A: ${c}`);
      c.handler.onClosed = (_c, r) => {
        closedBy = r.by;
        closedAt = Date.now();
      };
      // Let the handshake be confirmed (HANDSHAKE_DONE): until then the client may still retransmit its
      // Initial, whose retry token B would accept as a new connection of that CID.
      await new Promise((res) => setTimeout(res, 200));
      p.r.target = p.b.address.port; // the "route" now leads to B
      const switched = Date.now();
      for (let i = 0; i < 20 && closedBy === undefined; i++) {
        c.datagramSend(Buffer.alloc(100, i));
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.ok(
        p.b.stats.statelessResets >= 1,
        `B sent no reset (case ${keysB.size} ${reset}, b conns ${p.b.connectionCount}): ${JSON.stringify({ b: p.b.stats, c: p.client.stats })}`,
      );
      if (reset) {
        assert.equal(closedBy, 'stateless-reset', JSON.stringify({ a: p.a.stats, b: p.b.stats, c: p.client.stats }));
        console.log(`stateless reset closed the client ${closedAt - switched} ms after the switch (B keys: ${keysB.size})`);
        assert.ok(closedAt - switched < 500);
      } else assert.equal(closedBy, undefined, 'a reset under another key must not close the connection');
    } finally {
      await p.close();
    }
  }
});

test('resets are bounded in rate and never larger than the trigger', async () => {
  const tls = await generateSelfSigned(['localhost']);
  const server = await QuicEndpoint.listen({ host: '127.0.0.1', port: 0, tls, serverId: 3, statelessResetsPerSecond: 10, onConnection: () => {} });
  const sock = createSocket('udp4');
  try {
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    const sizes: number[] = [];
    sock.on('message', (m) => sizes.push(m.length));
    for (let i = 0; i < 50; i++) {
      const pkt = randomBytes(30 + i);
      pkt[0] = 0x40 | (pkt[0]! & 0x3f);
      sock.send(pkt, server.address.port, '127.0.0.1');
    }
    sock.send(Buffer.alloc(21, 0x40), server.address.port, '127.0.0.1'); // too small to answer smaller
    const deadline = Date.now() + 2000;
    while (Date.now() < deadline && server.stats.drops['unknown-cid'] < 51) await new Promise((res) => setTimeout(res, 20));
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(server.stats.statelessResets, 10);
    assert.equal(server.stats.statelessResetsLimited, 40);
    assert.equal(sizes.length, 10);
    for (const [i, n] of sizes.entries()) assert.ok(n < 30 + i && n >= 21, `reset of ${n} bytes`);
  } finally {
    sock.close();
    await server.close();
  }
});

test('the reset token fits quiche’s 128-byte transport parameters with retry and a 20-byte original DCID', async () => {
  const { default: quiche } = await import('@matrixai/quic/native/quiche.js');
  const { buildServerConfig } = await import('./endpoint.js');
  const tls = await generateSelfSigned(['localhost']);
  // The MASQUE server's settings (server.ts) and the endpoint defaults.
  for (const o of [{ tls, initialMaxStreamsBidi: 1024, initialMaxStreamData: 256 << 10, initialMaxData: 8 << 20, idleTimeoutMs: 30_000 }, { tls }]) {
    const c = buildServerConfig(o);
    c.setStatelessResetToken(BigInt(`0x${'ab'.repeat(16)}`));
    const local = { host: '127.0.0.1', port: 1 };
    const peer = { host: '127.0.0.1', port: 2 };
    assert.doesNotThrow(() => quiche.Connection.accept(newServerConnectionId(1), randomBytes(20), local, peer, c));
  }
});

test('a TLS session from one endpoint resumes at another with the same fleet key (full handshake otherwise)', async () => {
  const tls = await generateSelfSigned(['localhost']);
  for (const [keysB, resumed] of [
    [FleetKeys.fromSecrets([K1, K2]), true],
    [FleetKeys.fromSecrets([K2, K1]), false], // BoringSSL holds one ticket key: the first key's
  ] as const) {
    const p = await twoPops(tls, FleetKeys.fromSecrets([K1]), keysB);
    try {
      p.r.target = p.a.address.port;
      const first = await connectVia(p);
      assert.ok(typeof first !== 'string', `not established at A: ${first}`);
      let session: Uint8Array | null = null;
      for (let i = 0; i < 50 && !session; i++) {
        await new Promise((res) => setTimeout(res, 20)); // the ticket follows the handshake
        session = first.tlsSession();
      }
      assert.ok(session, 'A sent no session ticket');
      assert.equal(first.isResumed, false);
      p.r.target = p.b.address.port;
      const second = await new Promise<QuicConnection | string>((resolve) => {
        const t = setTimeout(() => resolve('timeout'), 1500);
        const onEstablished = () => {
          clearTimeout(t);
          resolve(c);
        };
        const c = p.client.connect('127.0.0.1', p.r.port, 'localhost', { onEstablished }, session!);
      });
      assert.ok(typeof second !== 'string', `not established at B: ${second}`);
      assert.equal(second.isResumed, resumed);
    } finally {
      await p.close();
    }
  }
});
