// `cbr connect` says what it is doing: the status model (unit) and the JSON lines of a real client
// against a real agent (the PoP's name from the cbr-pop header, bytes, token time, a certificate error).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { withTopology, waitFor, killAndWait } from '../../testhosts/index.js';
import { CLI_PATH } from '../../dataplane/testing.js';
import { generateSelfSigned, writeTlsMaterial } from '../quic/index.js';
import { ConnectStatus, stateForEnd, stateForFailure } from './connect-status.js';
import { MasqueHandshakeError, MasqueHttpError } from './client.js';
import { masqueTestbed, type Testbed } from './testing.js';

function sink(isTTY: boolean) {
  const chunks: string[] = [];
  return { isTTY, columns: 200, chunks, write: (s: string) => chunks.push(s) };
}

test('not a terminal: one JSON line per change, reconnects counted', () => {
  const out = sink(false);
  const err = sink(false);
  let now = Date.parse('2026-01-01T00:00:00Z');
  const st = new ConnectStatus(out, err, () => now);
  st.set('connecting');
  assert.equal(out.chunks.length, 0, 'no change, no line');
  st.connected({ headers: [{ name: 'cbr-pop', value: 'pop-a' }], addresses: ['100.64.0.2/32'], expiresAt: now / 1000 + 300 });
  st.bytesUp += 1200;
  now += 60_000;
  st.set('reconnecting after a reset');
  st.set('connecting');
  st.log('a log line');
  st.close();
  const lines = out.chunks.map((l) => JSON.parse(l));
  assert.deepEqual(
    lines.map((l) => l.state),
    ['connected', 'reconnecting after a reset', 'connecting', 'stopped'],
  );
  assert.deepEqual(lines[0], {
    time: '2026-01-01T00:00:00.000Z',
    state: 'connected',
    pop: 'pop-a',
    addresses: ['100.64.0.2/32'],
    tokenExpiresInS: 300,
    bytesUp: 0,
    bytesDown: 0,
    reconnects: 0,
  });
  assert.equal(lines[1].tokenExpiresInS, 240);
  assert.equal(lines[1].bytesUp, 1200);
  assert.equal(lines[2].reconnects, 1);
  assert.deepEqual(err.chunks, ['a log line\n']);
});

test('a terminal: one line with PoP, addresses, token time, bytes, reconnects; logs go above it', () => {
  const out = sink(true);
  const err = sink(true);
  const now = Date.parse('2026-01-01T00:00:00Z');
  const st = new ConnectStatus(out, err, () => now);
  st.connected({ headers: [{ name: 'cbr-pop', value: 'pop-a' }], addresses: ['100.64.0.2/32', 'fd00::2/128'], expiresAt: now / 1000 + 250 });
  st.bytesUp = 1234;
  st.bytesDown = 5_600_000;
  assert.equal(st.line(), 'connected · PoP pop-a · 100.64.0.2/32 fd00::2/128 · token 4m 10s · ↑ 1.2 kB ↓ 5.6 MB · 0 reconnects');
  assert.ok(out.chunks.at(-1)!.startsWith('\r\x1b[K\x1b[32mconnected · PoP pop-a'), 'cleared, green, the line');
  st.log('cbr connect: token refreshed');
  assert.deepEqual(err.chunks, ['cbr connect: token refreshed\n']);
  assert.match(out.chunks.at(-1)!, /connected · PoP pop-a/, 'the status line is drawn again');
  st.close();
});

test('states for failures and ends: refused, certificate error (TLS alert in CRYPTO_ERROR), reset', () => {
  assert.equal(stateForFailure(new MasqueHttpError(401, 'no')), 'refused');
  assert.equal(stateForFailure(new MasqueHandshakeError('x', { by: 'local', isApp: false, code: 0x100 + 48, reason: '' })), 'certificate error');
  assert.equal(stateForFailure(new MasqueHandshakeError('x', { by: 'local', isApp: false, code: 0x100 + 40, reason: '' })), 'reconnecting');
  assert.equal(stateForFailure(new Error('timeout')), 'reconnecting');
  assert.equal(stateForEnd({ by: 'reset' }), 'reconnecting after a reset');
  assert.equal(stateForEnd({ by: 'server-fin' }), 'reconnecting');
});

function connectJson(tb: Testbed, flags: Record<string, string>) {
  const child = tb.client.spawn([
    process.execPath,
    CLI_PATH,
    'connect',
    ...Object.entries({ server: `${tb.popAddr}:${tb.port}`, 'server-name': 'pop.test', mode: 'udp', ...flags }).flatMap(([k, v]) => [`--${k}`, v]),
  ]);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  child.stderr?.resume();
  const lines = () =>
    out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { child, lines, until: (pred: (l: Record<string, unknown>) => boolean, what: string) => waitFor(what, async () => lines().find(pred), 15_000, 100) };
}

test('cbr connect to a real agent: JSON lines name the PoP, count bytes, and say "certificate error"', { timeout: 90_000 }, async () => {
  await withTopology(async (topo) => {
    const tb = await masqueTestbed(topo);
    tb.origin.spawn([process.execPath, '-e', "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7007);"]);
    const c = connectJson(tb, { ca: tb.caFile, token: await tb.mint('erin', { ttlS: 300 }), target: `${tb.originAddr}:7007`, listen: '127.0.0.1:17009' });
    const up = await c.until((l) => l.state === 'connected', 'a connected line');
    assert.equal(up.pop, hostname(), 'the PoP name from the cbr-pop header');
    assert.ok((up.tokenExpiresInS as number) > 250 && (up.tokenExpiresInS as number) <= 300, String(up.tokenExpiresInS));
    const src = `const s=require('dgram').createSocket('udp4');const b=Buffer.alloc(100,1);let k=0;s.on('message',()=>{if(++k===5)process.exit(0);s.send(b,17009,'127.0.0.1')});s.send(b,17009,'127.0.0.1');setTimeout(()=>process.exit(1),5000)`;
    await tb.client.exec([process.execPath, '-e', src], { timeoutMs: 10_000 });
    await killAndWait(c.child, 5_000, 'SIGINT');
    const last = c.lines().at(-1)!;
    assert.equal(last.state, 'stopped');
    assert.equal(last.bytesUp, 500);
    assert.equal(last.bytesDown, 500);
    assert.equal(last.reconnects, 0);

    // A CA that did not sign the PoP's certificate.
    const other = await generateSelfSigned(['pop.test']);
    const dir = tb.agent.dir;
    writeTlsMaterial(other, join(dir, 'other.crt'), join(dir, 'other.key'));
    const bad = connectJson(tb, { ca: join(dir, 'other.crt'), token: await tb.mint('erin'), target: `${tb.originAddr}:7007` });
    try {
      const failed = await bad.until((l) => l.state !== 'connecting', 'a failure line');
      assert.equal(failed.state, 'certificate error', JSON.stringify(failed));
    } finally {
      await killAndWait(bad.child, 5_000, 'SIGINT');
    }
  });
});
