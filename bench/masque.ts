// bench/masque: MASQUE connect-ip against wireguard-go and the direct path, in one topology and one
// run (client ns ↔ PoP ns ↔ origin ns, the real agent with auth against cbr dev-issuer), plus the
// connect-udp relay rate, session setups per second against a bare QUIC handshake loop (same
// certificate, client and concurrency, no HTTP/3, token or CONNECT) and agent memory per idle session.
// QUICK=1: shorter flows, fewer sessions.
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import type { JsonWebKey } from 'node:crypto';
import { join } from 'node:path';
import { withTopology, type Namespace } from '../testhosts/index.js';
import { writeBenchResult, type BenchMetric } from './results.js';
import { bareVerifier, measure } from './jwt-bare.js';
import { startDevIssuer } from '../auth/dev-issuer.js';
import { masqueTestbed, startBareQuic, startConnect, startLoad, stopConnect, udpEcho, LOAD_LIMITS, type Testbed } from '../tunnel/masque/testing.js';
import { nativeIoWanted } from '../tunnel/quic/index.js';
import { nativeIoUnavailable, tunOffloadDefault } from '../dataplane/index.js';

const QUICK = process.env.QUICK === '1';
const SECONDS = QUICK ? 3 : 10;
const PINGS = QUICK ? 10 : 30;
const SESSIONS = QUICK ? 1000 : 10_000;

async function iperf(tb: Testbed): Promise<number> {
  const server = tb.origin.spawn(['iperf3', '-s', '-1', '-B', tb.originAddr]);
  await new Promise((r) => setTimeout(r, 400));
  try {
    const out = JSON.parse(await tb.client.exec(['iperf3', '-c', tb.originAddr, '-t', String(SECONDS), '-J'], { timeoutMs: (SECONDS + 20) * 1000 }));
    return out.end.sum_received.bits_per_second / 1e9;
  } finally {
    server.kill('SIGKILL');
  }
}

async function rtt(ns: Namespace, addr: string): Promise<number> {
  const out = await ns.exec(['ping', '-n', '-q', '-c', String(PINGS), '-i', '0.2', addr], { timeoutMs: PINGS * 1000 + 10_000 });
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  if (!m) throw new Error(`ping: ${out}`);
  return Number(m[1]);
}

/** The load generator with room for 10,000 sessions. */
const load = (tb: Testbed, cfg: object) => startLoad(tb, cfg, { timeoutMs: 600_000, nodeArgs: ['--max-old-space-size=4096'] });

/** The bare signature check of an RS256 access token (node:crypto only), the floor of a session's token check. */
async function bareJwtVerifyPerSecond(): Promise<number> {
  const dev = await startDevIssuer({ projectId: 'bench-project' });
  try {
    const tokens = await Promise.all(Array.from({ length: 64 }, (_, i) => dev.mint({ alg: 'RS256', subject: `user-${i}` })));
    const jwks = (await (await fetch(`${dev.url}/oauth/v2/keys`)).json()) as { keys: Array<JsonWebKey & { kid?: string }> };
    const jwk = jwks.keys.find((k) => k.kid === dev.currentKid('RS256'));
    if (!jwk) throw new Error('dev issuer: no RS256 key in its JWKS');
    return (await measure(bareVerifier('RS256', jwk, tokens))).perSecond;
  } finally {
    await dev.close();
  }
}

await withTopology(async (topo) => {
  const tb = await masqueTestbed(topo, { logLevel: 'info', extraMasque: `    maxSessions: 200000\n${LOAD_LIMITS}` });
  const results: Record<string, BenchMetric> = {};
  const put = (k: string, value: number, unit: string) => {
    results[k] = { value: Math.round(value * 1000) / 1000, unit };
    process.stdout.write(`${k.padEnd(28)} ${results[k]!.value} ${unit}\n`);
  };

  // The bare token check, beside the session setups below (one core, no network).
  put('jwt_verify_per_s_rs256_bare', await bareJwtVerifyPerSecond(), 'verifications/s (RS256 signature only, node:crypto, one core)');

  // Direct: routed through the PoP namespace, no tunnel.
  await tb.client.exec(['ip', 'route', 'replace', '10.61.2.0/24', 'via', tb.popAddr]);
  await tb.origin.exec(['ip', 'route', 'replace', '10.61.1.0/24', 'via', '10.61.2.1']);
  put('tcp_gbps_direct', await iperf(tb), 'Gbit/s');
  put('rtt_ms_direct', await rtt(tb.client, tb.originAddr), 'ms');
  await tb.client.exec(['ip', 'route', 'del', '10.61.2.0/24']);

  // wireguard-go between the client and PoP namespaces, configured by hand with wg.
  const dir = mkdtempSync(join(tmpdir(), 'cbr-wgbench-'));
  try {
    const env = { ...process.env, WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD: '1' };
    const keys = async (name: string) => {
      const priv = (await tb.client.exec(['wg', 'genkey'])).trim();
      const pub = (await tb.client.exec(['wg', 'pubkey'], { input: `${priv}\n` })).trim();
      writeFileSync(join(dir, name), `${priv}\n`);
      return pub;
    };
    const cPub = await keys('c.key');
    const pPub = await keys('p.key');
    const wgc = tb.client.spawn(['wireguard-go', '-f', 'wgbc'], { env });
    const wgp = tb.pop.spawn(['wireguard-go', '-f', 'wgbp'], { env });
    const until = Date.now() + 10_000;
    for (;;) {
      const ok = await Promise.all([
        tb.client.exec(['ip', 'link', 'show', 'wgbc']).then(
          () => true,
          () => false,
        ),
        tb.pop.exec(['ip', 'link', 'show', 'wgbp']).then(
          () => true,
          () => false,
        ),
      ]);
      if (ok.every(Boolean)) break;
      if (Date.now() > until) throw new Error('wireguard-go did not create its interfaces');
      await new Promise((r) => setTimeout(r, 100));
    }
    await tb.pop.exec(['wg', 'set', 'wgbp', 'private-key', join(dir, 'p.key'), 'listen-port', '51820', 'peer', cPub, 'allowed-ips', '10.62.0.2/32']);
    await tb.client.exec([
      'wg',
      'set',
      'wgbc',
      'private-key',
      join(dir, 'c.key'),
      'peer',
      pPub,
      'endpoint',
      `${tb.popAddr}:51820`,
      'allowed-ips',
      '10.62.0.0/24,10.61.2.0/24',
    ]);
    await tb.pop.addAddress('wgbp', '10.62.0.1/24');
    await tb.client.addAddress('wgbc', '10.62.0.2/24');
    await tb.client.exec(['ip', 'route', 'replace', '10.61.2.0/24', 'dev', 'wgbc']);
    await tb.origin.exec(['ip', 'route', 'replace', '10.62.0.0/24', 'via', '10.61.2.1']);
    await tb.client.ping(tb.originAddr, { count: 3, timeoutS: 2 });
    put('tcp_gbps_wireguard_go', await iperf(tb), 'Gbit/s');
    put('rtt_ms_wireguard_go', await rtt(tb.client, tb.originAddr), 'ms');
    wgc.kill('SIGTERM');
    wgp.kill('SIGTERM');
    await tb.client.exec(['ip', 'link', 'del', 'wgbc']).catch(() => {});
    await tb.pop.exec(['ip', 'link', 'del', 'wgbp']).catch(() => {});
    await tb.client.exec(['ip', 'route', 'del', '10.61.2.0/24']).catch(() => {});
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }

  // MASQUE connect-ip with cbr connect.
  const connect = startConnect(tb, ['--mode', 'ip', '--tun', 'cbrb0', '--token', await tb.mint('bench', { ttlS: 3600 })]);
  await connect.waitFor(/session open: connect-ip/, 30_000);
  await tb.client.ping(tb.originAddr, { count: 3, timeoutS: 2 });
  put('tcp_gbps_masque_ip', await iperf(tb), 'Gbit/s');
  put('rtt_ms_masque_ip', await rtt(tb.client, tb.originAddr), 'ms');
  await stopConnect(connect.child);

  // connect-udp relay rate: one session, echo in the origin (batched, so the echo is not what is measured).
  udpEcho(tb.origin, 7007, { batched: nativeIoWanted() });
  await new Promise((r) => setTimeout(r, 300));
  const token = await tb.mint('load', { ttlS: 3600 });
  const target = { host: tb.originAddr, port: 7007 };
  const agentCpu0 = tb.agentCpuMs();
  const pps = await load(tb, { mode: 'pps', host: tb.popAddr, port: tb.port, ca: tb.caFile, token, target, seconds: SECONDS, size: 64 });
  put('udp_relay_kpps', pps.result.kpps!, 'kpps (64 B, echoed)');
  // CPU per echoed datagram (both directions): on a shared 2-core machine the rate follows the load; these less so.
  const relayed = Math.max(1, pps.result.received!);
  put('udp_relay_cpu_us_per_pkt_agent', ((tb.agentCpuMs() - agentCpu0) * 1000) / relayed, 'µs CPU per echoed datagram (agent, incl. session set-up)');
  put('udp_relay_cpu_us_per_pkt_client', pps.result.cpuUsPerPacket!, 'µs CPU per echoed datagram (the load generator: MasqueClient)');

  // Session setups and memory per idle session: the agent's RSS before and with SESSIONS sessions open.
  await new Promise((r) => setTimeout(r, 1000));
  const rssBefore = tb.agentRss();
  const s = await load(tb, { mode: 'sessions', host: tb.popAddr, port: tb.port, ca: tb.caFile, token, target, count: SESSIONS, concurrency: 200 });
  put('session_setups_per_s', s.result.perSecond!, 'sessions/s (QUIC handshake + JWT + CONNECT)');
  await new Promise((r) => setTimeout(r, 2000));
  const rssAfter = tb.agentRss();
  put('kb_per_idle_session_10k', (rssAfter - rssBefore) / Math.max(1, s.result.opened!) / 1024, `KB (agent RSS delta / ${s.result.opened} sessions)`);
  s.child.stdin!.write('close\n');
  await new Promise((r) => s.child.once('exit', r));

  // The bare QUIC handshake loop the setups are compared with: the same count and concurrency.
  const packets = (r: Record<string, number>) => ({ out: r.packetsOutPerSetup, in: r.packetsInPerSetup });
  const setupPackets: Record<string, unknown> = { session: packets(s.result) };
  const bare = await startBareQuic(tb, tb.port + 1);
  try {
    const h = await load(tb, { mode: 'handshakes', host: tb.popAddr, port: tb.port + 1, ca: tb.caFile, count: SESSIONS, concurrency: 200 });
    put('quic_handshakes_per_s_bare', h.result.perSecond!, 'handshakes/s (QUIC only, same client and certificate)');
    put('session_setup_ratio_to_bare', s.result.perSecond! / h.result.perSecond!, 'session_setups_per_s / quic_handshakes_per_s_bare (goal ≥ 0.7)');
    setupPackets.bare = packets(h.result);
    h.child.stdin!.write('close\n');
    await new Promise((r) => h.child.once('exit', r));
  } finally {
    bare.stdin!.end();
  }
  writeBenchResult('masque', results, {
    quick: QUICK,
    sessions: SESSIONS,
    seconds: SECONDS,
    failedSessions: s.result.failed,
    // Where a session setup's time went (client side, averages) and the client's packets per setup.
    setupMsAvg: { handshake: s.result.handshakeMsAvg, connect: s.result.connectMsAvg },
    setupPackets,
    // The QUIC endpoints' socket path (CBR_NATIVE_IO=0 measures the node:dgram fallback).
    quicSocketIo: nativeIoWanted() ? 'batched (native addon: recvmmsg/GRO, sendmmsg/GSO)' : 'node:dgram',
    // The connect-ip TUNs (CBR_TUN_OFFLOAD=0 measures one write per packet).
    tunIo:
      tunOffloadDefault() && nativeIoUnavailable() === undefined ? 'offloads (vnet header: coalesced GSO writes, split reads)' : 'plain (one write per packet)',
  });
});
