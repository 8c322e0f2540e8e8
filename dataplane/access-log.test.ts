// The access log: the line format (unit), and the lines a real agent writes for a MASQUE session
// (closed by the client, ended by token expiry) and a WireGuard registration (deleted, revoked).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTopology, waitFor, uniqueName, killAndWait, type Namespace } from '../testhosts/index.js';
import { AccessLog } from './access-log.js';
import { startAgent, CLI_PATH, type AgentProcess } from './testing.js';
import { masqueTestbed, type Testbed } from '../tunnel/masque/testing.js';
import { generatePrivateKey, publicKeyFor } from '../tunnel/wireguard/keys.js';
import * as wg from '../tunnel/wireguard/testing.js';

type Line = Record<string, unknown>;

function accessLines(agent: AgentProcess): Line[] {
  return agent.logLines.flatMap((l) => {
    try {
      const e = JSON.parse(l) as Line;
      return e.access ? [e] : [];
    } catch {
      return [];
    }
  });
}

test('format: a start line, one end line with bytes, duration and reason; resume writes no start line', () => {
  const lines: Array<{ o: Line; m?: string }> = [];
  const log = new AccessLog({ info: (o, m) => lines.push({ o: o as Line, m }) });
  const s = log.start({ kind: 'masque-connect-udp', subject: 'alice', org: 'acme', client: '192.0.2.7:4000', target: '198.51.100.9:53' });
  s.fromClient += 120;
  s.toClient += 300;
  s.end('fin');
  s.end('reset');
  assert.equal(lines.length, 2);
  assert.deepEqual(lines[0]!.o, {
    access: 'start',
    kind: 'masque-connect-udp',
    subject: 'alice',
    org: 'acme',
    client: '192.0.2.7:4000',
    target: '198.51.100.9:53',
  });
  const { durationMs, ...end } = lines[1]!.o;
  assert.deepEqual(end, {
    access: 'end',
    kind: 'masque-connect-udp',
    subject: 'alice',
    org: 'acme',
    client: '192.0.2.7:4000',
    target: '198.51.100.9:53',
    reason: 'fin',
    bytesFromClient: 120,
    bytesToClient: 300,
  });
  assert.ok(typeof durationMs === 'number' && durationMs >= 0);
  const r = log.resume({ kind: 'wireguard', subject: 'bob', lease: ['10.0.0.2'] }, Date.now() - 60_000);
  r.end('expired', { fromClient: 5, toClient: 7 });
  assert.equal(lines.length, 3);
  assert.equal(lines[2]!.o.reason, 'expired');
  assert.equal(lines[2]!.o.bytesToClient, 7);
  assert.ok((lines[2]!.o.durationMs as number) >= 60_000);
});

/** `cbr connect --mode udp` in the client namespace; resolves once the session is open. */
async function connectUdp(tb: Testbed, token: string, listenPort: number) {
  const flags = {
    server: `${tb.popAddr}:${tb.port}`,
    'server-name': 'pop.test',
    ca: tb.caFile,
    token,
    mode: 'udp',
    target: `${tb.originAddr}:7007`,
    listen: `127.0.0.1:${listenPort}`,
  };
  const child = tb.client.spawn([process.execPath, CLI_PATH, 'connect', ...Object.entries(flags).flatMap(([k, v]) => [`--${k}`, v])]);
  let err = '';
  child.stderr?.on('data', (d) => (err += d));
  child.stdout?.resume();
  await waitFor(`the session to open (cbr connect said: ${err})`, async () => (/session open: connect-udp/.test(err) ? true : undefined), 15_000, 100);
  return { child, output: () => err };
}

/** Sends n datagrams of `size` bytes through the local relay port and waits for each echo. */
async function echoThrough(ns: Namespace, port: number, n: number, size: number): Promise<void> {
  const src = `const s=require('dgram').createSocket('udp4');const b=Buffer.alloc(${size},120);let k=0;s.on('message',()=>{if(++k===${n})process.exit(0);s.send(b,${port},'127.0.0.1')});s.send(b,${port},'127.0.0.1');setTimeout(()=>process.exit(1),5000)`;
  await ns.exec([process.execPath, '-e', src], { timeoutMs: 10_000 });
}

test('MASQUE: start and end lines with subject, client, target, bytes each way; FIN and token expiry', { timeout: 90_000 }, async () => {
  await withTopology(async (topo) => {
    const tb = await masqueTestbed(topo);
    tb.origin.spawn([process.execPath, '-e', "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7007);"]);
    const token = await tb.mint('alice');
    const a = await connectUdp(tb, token, 17007);
    await echoThrough(tb.client, 17007, 5, 100);
    await killAndWait(a.child, 5_000, 'SIGINT');
    const end = await tb.agent.waitForLog((e) => e.access === 'end' && e.subject === 'alice', 10_000);
    const start = accessLines(tb.agent).find((e) => e.access === 'start' && e.subject === 'alice');
    assert.ok(start, 'a start line');
    assert.equal(start.kind, 'masque-connect-udp');
    assert.match(String(start.client), /^10\.61\.1\.2:\d+$/);
    assert.equal(start.target, `${tb.originAddr}:7007`);
    assert.equal(end.level, 'info');
    assert.equal(end.target, `${tb.originAddr}:7007`);
    assert.equal(end.bytesFromClient, 500);
    assert.equal(end.bytesToClient, 500);
    assert.ok(['fin', 'closed'].includes(String(end.reason)), `ended by the client: ${String(end.reason)}`);
    assert.ok((end.durationMs as number) > 0);

    // A token that runs out ends the session: reason token-expired.
    const b = await connectUdp(tb, await tb.mint('bob', { ttlS: 4 }), 17008);
    try {
      const expired = await tb.agent.waitForLog((e) => e.access === 'end' && e.subject === 'bob', 15_000);
      assert.equal(expired.reason, 'token-expired');
    } finally {
      await killAndWait(b.child, 5_000, 'SIGINT');
    }
    const all = tb.agent.logLines.join('\n');
    assert.ok(!all.includes(token), 'the bearer token never reaches the log');
  });
});

test('WireGuard: a registration logs start with org-less subject, client and lease; deleted and revoked end it', { timeout: 90_000 }, async () => {
  await withTopology(async (topo) => {
    const dir = mkdtempSync(join(tmpdir(), 'cbr-access-wg-'));
    topo.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
    const t = await wg.wgTopology(topo, ['10.88.0.0/24']);
    const issuer = await wg.startIssuerIn(topo, t.pop, `${t.popAddress}:9400`, dir);
    const ifname = uniqueName('w');
    wg.removeSocketOnDestroy(topo, ifname);
    const adminUrl = `http://${t.popAddress}:${wg.ADMIN_PORT}`;
    const agent = await startAgent(wg.agentYaml({ stateDir: join(dir, 'state'), issuer, ifname, admin: `${t.popAddress}:${wg.ADMIN_PORT}` }), {
      netns: t.pop.name,
    });
    topo.onDestroy(async () => void (await agent.stop()));
    await wg.waitHealthy(t.pop, adminUrl, agent);
    const token = await wg.tokenFor(t.client, issuer, 'vpn-client', 'vpn-secret');
    const keys = [publicKeyFor(generatePrivateKey()), publicKeyFor(generatePrivateKey())];
    for (const publicKey of keys) {
      const r = await wg.httpIn(t.client, 'POST', `${adminUrl}/v1/wireguard/peers`, { token, body: JSON.stringify({ publicKey }) });
      assert.equal(r.status, 201, r.text);
    }
    const starts = await waitFor('two start lines', async () => {
      const s = accessLines(agent).filter((e) => e.access === 'start' && e.kind === 'wireguard');
      return s.length === 2 ? s : undefined;
    });
    for (const s of starts) {
      assert.equal(s.subject, 'user-1');
      assert.equal(s.client, '192.168.50.2');
      assert.match(String((s.lease as string[])[0]), /^10\.88\.0\.\d+$/);
    }
    // The subject deletes its first peer; an operator revokes the second.
    const del = await wg.httpIn(t.client, 'DELETE', `${adminUrl}/v1/wireguard/peers/${encodeURIComponent(keys[0]!)}`, { token });
    assert.ok(del.status < 300, del.text);
    const revoke = await t.pop.exec([
      'curl',
      '-sf',
      '-X',
      'DELETE',
      '-H',
      `authorization: Bearer ${wg.ADMIN_TOKEN}`,
      `${adminUrl}/v1/wireguard/admin/peers/${encodeURIComponent(keys[1]!)}`,
    ]);
    assert.ok(revoke !== undefined);
    const ends = await waitFor('two end lines', async () => {
      const e = accessLines(agent).filter((x) => x.access === 'end' && x.kind === 'wireguard');
      return e.length === 2 ? e : undefined;
    });
    assert.deepEqual(
      ends.map((e) => e.reason),
      ['deleted', 'revoked'],
    );
    for (const e of ends) {
      assert.equal(e.client, '192.168.50.2');
      assert.equal(e.bytesFromClient, 0, 'no traffic through these peers');
      assert.equal(typeof e.durationMs, 'number');
    }
    assert.ok(!agent.logLines.join('\n').includes(token), 'the bearer token never reaches the log');
  });
});
