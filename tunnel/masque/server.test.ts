// The MASQUE server and client over loopback with an in-process AuthGate: connect-udp echo, the
// auth answers, the status page, token refresh and expiry, malformed HTTP/3 from a raw QUIC client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { AuthError, type AuthGate, type Identity, type SessionKind } from '../../auth/index.js';
import { generateSelfSigned, nativeIoWanted, QuicEndpoint, type TlsMaterial, type CloseReason, type QuicConnection } from '../quic/index.js';
import { encodeControlStreamPreamble, encodeDataFrame, encodeExtendedConnect, encodeFrame, H3ErrorCode } from '../h3/index.js';
import { MasqueServer } from './server.js';
import { MasqueClient, MasqueHttpError } from './client.js';
import { TargetPolicy } from './policy.js';
import { runConnect, staticToken } from './connect.js';
import { CbrError } from '../../dataplane/index.js';

/** Tokens for this test: `sub:expiresAtUnixSeconds:role,role`. */
class TestGate implements AuthGate {
  calls = 0;
  async authorize(token: string, kind: SessionKind): Promise<Identity> {
    this.calls++;
    const [subject, exp, roles] = token.split(':');
    if (!subject || !exp || roles === undefined) throw new AuthError('INVALID_TOKEN', 'unreadable token');
    if (Number(exp) * 1000 <= Date.now()) throw new AuthError('EXPIRED', 'token expired');
    if (subject === 'flood') throw new AuthError('RATE_LIMITED', 'slow down', 7);
    if (subject === 'slow') await new Promise((r) => setTimeout(r, 1000));
    const list = roles.split(',');
    if (!list.includes('vpn-user')) throw new AuthError('MISSING_ROLE', `${kind} needs vpn-user`);
    return { subject, roles: list, expiresAt: Number(exp) };
  }
}

const tokenFor = (sub: string, seconds: number, roles = 'vpn-user') => `${sub}:${Math.floor(Date.now() / 1000) + seconds}:${roles}`;

let tls: TlsMaterial;
let server: MasqueServer;
let echo: ReturnType<typeof createSocket>;
let echoPort: number;
const gate = new TestGate();

before(async () => {
  tls = await generateSelfSigned();
  server = await MasqueServer.listen({
    host: '127.0.0.1',
    port: 0,
    tls,
    serverId: 3,
    auth: gate,
    dnsTimeoutMs: 1000,
    udpPolicy: new TargetPolicy({ allowPrefixes: ['127.0.0.0/8'], allowPrivate: true }),
  });
  echo = createSocket('udp4');
  echo.on('message', (m, r) => echo.send(m, r.port, r.address));
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', r));
  echoPort = echo.address().port;
});

after(async () => {
  echo.close();
  await server.close();
});

const connect = () => MasqueClient.connect({ host: '127.0.0.1', port: server.address.port, serverName: 'localhost', caPem: tls.certPem, timeoutMs: 5000 });

test('connect-udp carries a UDP echo through the relay; GET / and 404', async () => {
  const c = await connect();
  try {
    const status = await c.request('GET', '/');
    assert.equal(status.status, 200);
    assert.equal(JSON.parse(status.body.toString()).service, 'cbr-masque');
    assert.equal((await c.request('GET', '/nope')).status, 404);
    const s = await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('alice', 60));
    const got: string[] = [];
    s.onPayload = (p) => got.push(p.toString());
    for (let i = 0; i < 20; i++) s.send(Buffer.from(`ping ${i}`));
    const until = Date.now() + 3000;
    while (got.length < 20 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, 20, `echoes received: ${got.length}`);
    assert.ok(got.includes('ping 7'));
    assert.equal(server.live.udp, 1);
    assert.ok(server.counters.datagramsIn >= 20 && server.counters.datagramsOut >= 20);
    // The relay socket: batched through the addon unless CBR_NATIVE_IO=0 (udp-relay.test.ts covers both paths).
    assert.equal(server.relayIo.kind, nativeIoWanted() ? 'batch' : 'dgram');
    assert.equal(server.relayIo.stats.sockets, 1);
    s.close();
    const until2 = Date.now() + 2000;
    while ((server.live.udp as number) !== 0 && Date.now() < until2) await new Promise((r) => setTimeout(r, 10));
    assert.equal(server.live.udp, 0, 'FIN from the client ends the session on the server');
    assert.equal(server.relayIo.stats.sockets, 0, 'the session took its relay socket with it');
  } finally {
    await c.close();
  }
});

test('no token → 401, missing role → 403, rate limited → 429 with retry-after, policy → 403', async () => {
  const c = await connect();
  try {
    const refused = async (p: Promise<unknown>) => {
      try {
        await p;
      } catch (e) {
        assert.ok(e instanceof MasqueHttpError, String(e));
        return e.status;
      }
      assert.fail('expected a refusal');
    };
    assert.equal(await refused(c.openUdp({ host: '127.0.0.1', port: echoPort })), 401);
    assert.equal(await refused(c.openUdp({ host: '127.0.0.1', port: echoPort }, 'garbage')), 401);
    assert.equal(await refused(c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('bob', 60, 'viewer'))), 403);
    assert.equal(await refused(c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('flood', 60))), 429);
    assert.equal(await refused(c.openUdp({ host: '10.1.2.3', port: 53 }, tokenFor('alice', 60))), 403);
    assert.equal(await refused(c.openIp(tokenFor('alice', 60))), 403, 'connect-ip without a gateway');
    assert.ok((server.counters.authFailures['401'] ?? 0) >= 2);
    assert.equal((await c.request('GET', '/')).status, 200, 'the connection survives refusals');
  } finally {
    await c.close();
  }
});

test('an expired token ends the session; an in-band refresh keeps it', async () => {
  const c = await connect();
  try {
    const short = await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('carol', 2));
    const kept = await (await connect()).openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('dave', 2));
    let shortEnd: string | undefined;
    short.onEnd = (w) => (shortEnd = w.by);
    const r = await kept.client.refreshToken(tokenFor('dave', 60));
    assert.equal(r.status, 204);
    assert.equal(r.headers.find((h) => h.name === 'cbr-sessions-refreshed')?.value, '1');
    assert.equal(
      (await kept.client.refreshToken(tokenFor('eve', 60))).headers.find((h) => h.name === 'cbr-sessions-refreshed')?.value,
      '0',
      'another subject refreshes nothing',
    );
    assert.equal((await kept.client.refreshToken('junk')).status, 401);
    const until = Date.now() + 5000;
    while (!shortEnd && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(shortEnd, 'server-fin', 'the server ended the session at expiry');
    assert.equal(kept.ended, false, 'the refreshed session lives on');
    let echoed = false;
    kept.onPayload = () => (echoed = true);
    kept.send(Buffer.from('still here'));
    const until2 = Date.now() + 2000;
    while (!echoed && Date.now() < until2) await new Promise((r) => setTimeout(r, 10));
    assert.ok(echoed);
    assert.ok(server.counters.sessionsEnded['token-expired'] >= 1);
    await kept.client.close();
  } finally {
    await c.close();
  }
});

async function until(cond: () => boolean, ms: number): Promise<void> {
  const end = Date.now() + ms;
  while (!cond() && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
}

test('a client RESET_STREAM or STOP_SENDING on a connect-udp stream ends its session', async () => {
  const c = await connect();
  try {
    for (const direction of ['both', 'write', 'read'] as const) {
      const ended = server.counters.sessionsEnded.reset;
      const s = await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('resetter', 60));
      await until(() => server.live.udp === 1, 2000);
      assert.equal(server.live.udp, 1);
      // 'write': RESET_STREAM only; 'read': STOP_SENDING only; 'both': the two together.
      c.h3.quic.streamShutdown(s.streamId, H3ErrorCode.H3_REQUEST_CANCELLED, direction);
      await until(() => server.live.udp === 0, 3000);
      assert.equal(server.live.udp, 0, `the session ends after a client shutdown (${direction})`);
      assert.equal(server.counters.sessionsEnded.reset, ended + 1);
    }
    assert.equal((await c.request('GET', '/')).status, 200, 'the connection lives on');
  } finally {
    await c.close();
  }
});

test('sessions per subject are capped: 429 naming the limit, and room again once one ends', async () => {
  server.update({ limits: { maxUdpSessionsPerSubject: 2 } });
  const c = await connect();
  try {
    const a = await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('capped', 60));
    await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('capped', 60));
    await assert.rejects(c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('capped', 60)), (e: unknown) => {
      assert.ok(e instanceof MasqueHttpError, String(e));
      assert.equal(e.status, 429);
      assert.equal(JSON.parse(e.body).limit, 'tunnel.masque.limits.maxUdpSessionsPerSubject');
      return true;
    });
    assert.ok(await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('other', 60)), 'another subject is not affected');
    a.close();
    await until(() => server.live.udp === 2, 2000);
    assert.ok(await c.openUdp({ host: '127.0.0.1', port: echoPort }, tokenFor('capped', 60)));
    assert.equal(server.counters.limits['udp-sessions-per-subject'], 1);
  } finally {
    server.update({ limits: {} });
    await c.close();
  }
});

test('a server named by its IP address is verified against the IP SANs; a refused certificate is permanent', async () => {
  const byIp = (serverName: string, caPem: string) =>
    MasqueClient.connect({ host: '127.0.0.1', port: server.address.port, serverName, caPem, timeoutMs: 5000 });
  const c = await byIp('127.0.0.1', tls.certPem);
  try {
    assert.equal((await c.request('GET', '/')).status, 200, 'the certificate names 127.0.0.1');
  } finally {
    await c.close();
  }
  const refused = (words: RegExp) => (e: unknown) => {
    assert.ok(e instanceof CbrError && e.code === 'TLS_CERTIFICATE_REJECTED', String(e));
    assert.match(e.message, words);
    assert.doesNotMatch(e.message, /0x12a/);
    return true;
  };
  await assert.rejects(byIp('127.0.0.2', tls.certPem), refused(/bad_certificate \(the certificate does not name 127\.0\.0\.2/));
  const other = await generateSelfSigned(['127.0.0.1']);
  await assert.rejects(byIp('127.0.0.1', other.certPem), refused(/not signed by the given CA/));
  // quiche's own check (a DNS name) refuses in words too.
  await assert.rejects(byIp('localhost', other.certPem), refused(/TLS alert \w+/));
  // cbr connect stops at once instead of reconnecting forever.
  const lines: string[] = [];
  const t0 = Date.now();
  await assert.rejects(
    runConnect(
      {
        server: `127.0.0.1:${server.address.port}`,
        tokens: staticToken(tokenFor('alice', 60)),
        mode: 'udp',
        target: `127.0.0.1:${echoPort}`,
        caPem: other.certPem,
        log: (l) => lines.push(l),
      },
      new AbortController().signal,
    ),
    refused(/not signed by the given CA/),
  );
  assert.ok(Date.now() - t0 < 5000);
  assert.equal(lines.filter((l) => l.startsWith('reconnecting')).length, 0, lines.join('\n'));
});

test('bytes queued while the token is checked are bounded: the stream is reset with H3_EXCESSIVE_LOAD', async () => {
  server.update({ limits: { maxQueuedBytesPerRequest: 1024 } });
  const ep = await QuicEndpoint.client({ caPem: tls.certPem });
  try {
    const before = server.counters.limits['queued-bytes'];
    const connect = encodeExtendedConnect({
      protocol: 'connect-udp',
      authority: 'localhost',
      path: `/.well-known/masque/udp/127.0.0.1/${echoPort}/`,
      headers: { authorization: `Bearer ${tokenFor('slow', 60)}` },
    });
    // 4 KiB of DATA right behind the CONNECT, while the (slow) token check runs.
    const reset = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the stream was not reset')), 5000);
      const conn = ep.connect('127.0.0.1', server.address.port, 'localhost', {
        onEstablished: () => {
          conn.streamSend(2, encodeControlStreamPreamble());
          conn.streamSend(0, Uint8Array.from([...connect, ...encodeDataFrame(new Uint8Array(4096))]));
        },
        onStreamReadable: (q, id) => {
          const r = q.streamRecv(id, Buffer.alloc(4096));
          if (id === 0 && typeof r === 'object' && 'reset' in r) {
            clearTimeout(timer);
            resolve(r.reset);
          }
        },
      });
    });
    assert.equal(reset, H3ErrorCode.H3_EXCESSIVE_LOAD);
    assert.equal(server.counters.limits['queued-bytes'], before + 1);
    await new Promise((r) => setTimeout(r, 1200)); // the token check finishes: no session for the reset stream
    assert.equal(server.live.udp, 0);
  } finally {
    server.update({ limits: {} });
    await ep.close();
  }
});

async function rawClient(streams: Array<[number, Uint8Array, boolean]>, then?: (conn: QuicConnection) => void): Promise<CloseReason> {
  const ep = await QuicEndpoint.client({ caPem: tls.certPem });
  try {
    return await new Promise<CloseReason>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the server did not close the connection')), 5000);
      const conn = ep.connect('127.0.0.1', server.address.port, 'localhost', {
        onEstablished: () => {
          for (const [id, data, fin] of streams) conn.streamSend(id, data, fin);
          if (then) setTimeout(() => then(conn), 100);
        },
        onClosed: (_c, r) => {
          clearTimeout(timer);
          resolve(r);
        },
      });
    });
  } finally {
    await ep.close();
  }
}

test('malformed HTTP/3 closes the connection with the right H3 error, and the next client is served', async () => {
  // A control stream that starts with DATA instead of SETTINGS.
  let r = await rawClient([[2, Uint8Array.from([0x00, 0x00, 0x01, 0xaa]), false]]);
  assert.equal(r.by, 'peer', JSON.stringify(r));
  assert.ok(r.isApp);
  assert.equal(r.code, H3ErrorCode.H3_MISSING_SETTINGS);
  // The control stream closed by the client.
  r = await rawClient([[2, encodeControlStreamPreamble(), true]]);
  assert.equal(r.code, H3ErrorCode.H3_CLOSED_CRITICAL_STREAM);
  // A frame type reserved for HTTP/2 on a request stream.
  r = await rawClient([
    [2, encodeControlStreamPreamble(), false],
    [0, encodeFrame(0x06, new Uint8Array(8)), false],
  ]);
  assert.equal(r.code, H3ErrorCode.H3_FRAME_UNEXPECTED);
  // The control stream reset by the client (RFC 9114 §6.2.1), and the server's control stream stopped.
  r = await rawClient([[2, encodeControlStreamPreamble(), false]], (conn) => conn.streamShutdown(2, 0x100, 'write'));
  assert.equal(r.code, H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, JSON.stringify(r));
  r = await rawClient([[2, encodeControlStreamPreamble(), false]], (conn) => conn.streamShutdown(3, 0x100, 'read'));
  assert.equal(r.code, H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, JSON.stringify(r));
  const c = await connect();
  try {
    assert.equal((await c.request('GET', '/')).status, 200);
  } finally {
    await c.close();
  }
});
