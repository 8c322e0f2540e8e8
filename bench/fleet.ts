// bench/fleet: two PoPs on one registry (PostgreSQL, mutual TLS), measured as issue 11 asks.
//
//   core (PostgreSQL, dev issuer)   origin (UDP echo)   PoP S (SQLite, the registration baseline)
//                        \_______________|_______________/
//   client ─────────────────────── router (BIRD) ──── PoP A (preferred) ─┐ anycast 198.51.100.1
//                                                 └─── PoP B ─────────────┘
//
// - peer_propagation_ms_p50/_p99: 201 at PoP A → the peer on PoP B's WireGuard device (B's admin
//   peer list polled back to back), over PROPAGATION registrations.
// - registrations_per_s_postgres / _sqlite: the same burst (16 in flight) at A and at a standalone PoP
//   on SQLite, same run.
// - {anycast,wireguard,masque}_failover_gap_ms_p50: the client registers once (through the anycast
//   address), brings up a stock wireguard-go from the returned wg-quick file and `cbr connect`, and
//   sends 200 probes/s through each tunnel and to the anycast address; PoP A's health check fails,
//   and the gap is the longest run of probes without an answer within 1 s (Probe.outageAfter). A is
//   restored (and every stream back on it) between repetitions.
// - wireguard_restart_gap_ms_p50: kill -9 of wireguard-go on PoP A (the active PoP), same probes.
//
// `node dist/bench/fleet.js` (QUICK=1: 2 repetitions, 40 registrations).
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PostgresHost, uniqueName, waitFor, withTopology, type Namespace, type Topology } from '../testhosts/index.js';
import { PRIVATE_WIREGUARD_RUN, startAgent, type AgentProcess } from '../dataplane/testing.js';
import { waitForRoute, type RouterBird } from '../bgp/testing.js';
import { generatePrivateKey, publicKeyFor } from '../tunnel/wireguard/keys.js';
import {
  authYaml,
  vpnClientConnectArgs,
  clientTunnelFromWgQuick,
  httpIn,
  startIssuerIn,
  tokenFor,
  waitHealthy,
  ADMIN_PORT,
  ADMIN_TOKEN,
} from '../tunnel/wireguard/testing.js';
import { startConnect, stopConnect } from '../tunnel/masque/testing.js';
import { generateSelfSigned, writeTlsMaterial } from '../tunnel/quic/index.js';
import { ANYCAST, FAST_CHECK, buildTwoPops, popTunnelYaml, popYamlBase, type TwoPopsPop } from './two-pops.js';
import { Probe, startRole, type Outage } from './probe.js';
import { percentile, writeBenchResult, type BenchMetric } from './results.js';

const QUICK = process.env.QUICK === '1';
const REPS = QUICK ? 2 : 10;
const PROPAGATION = QUICK ? 40 : 200;
const BURST = QUICK ? 40 : 200;
const BURST_CONCURRENCY = 16;
const PROBE_PPS = 200;
const CORE = '10.0.200.2';
const ORIGIN = '10.0.100.2';
const ORIGIN_MASQUE = '10.0.101.2';
const ORIGIN_ECHO = 7001;
const POP_ECHO = 7000;
const SQLITE_POP = '10.0.3.2';
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (m: string) => process.stderr.write(`fleet: ${m}\n`);

interface Files {
  issuer: string;
  wgKeyFile: string;
  fleetKeyFile: string;
  certFile: string;
  keyFile: string;
}

/** What every PoP of the bench runs: admin (also the registration API), auth, WireGuard on `pool`. */
function tunnelYaml(o: { name: string; stateDir: string; issuer: string; wgIf: string; pool: string; wgKeyFile?: string }): string {
  const gw = o.pool.replace(/\.0\/16$/, '.1/16');
  return `agent:
  name: ${o.name}
  stateDir: ${o.stateDir}
admin:
  listen: 0.0.0.0:${ADMIN_PORT}
  apiToken: ${ADMIN_TOKEN}
${authYaml(o.issuer)}${popTunnelYaml({ wgIf: o.wgIf, address: gw, pool: o.pool, deviceLimit: 100000, keyFile: o.wgKeyFile })}`;
}

/** A fleet PoP: the above on the shared registry, plus health/BGP and MASQUE with the fleet key. */
function fleetPopYaml(p: TwoPopsPop, o: Files & { stateDir: string; wgIf: string; db: PostgresHost }): string {
  const n = p.as - 65000;
  return `${tunnelYaml({ name: `pop-${p.name.toLowerCase()}`, stateDir: o.stateDir, issuer: o.issuer, wgIf: o.wgIf, pool: '10.77.0.0/16', wgKeyFile: o.wgKeyFile })}  masque:
    enabled: true
    listen: 0.0.0.0:443
    serverId: ${n}
    idleTimeout: 5s
    tls: { certFile: ${o.certFile}, keyFile: ${o.keyFile} }
    fleetKeyFile: ${o.fleetKeyFile}
    ip:
      tun: ${uniqueName('q')}
      poolV4: 100.64.${n}.0/24
      poolV6: fd00:cb:${n}::/64
      routes: [10.0.101.0/24]
      allowPrivate: true
${popYamlBase(p, FAST_CHECK)}registry:
  postgres:
    url: "${o.db.url()}&target_session_attrs=read-write"
    passwordFile: ${o.db.passwordFile(o.db.roles[0]!)}
`;
}

interface Agent {
  ns: Namespace;
  adminUrl: string;
  agent?: AgentProcess;
}
type Pop = TwoPopsPop & Agent;

/** A registration run from the client: N fresh keys at `url`; with `watchUrl`, each key's propagation there. */
async function register(client: Namespace, url: string, token: string, n: number, conc: number, watchUrl?: string) {
  const role = await startRole(client, ['register', url, token, String(n), String(conc), ...(watchUrl ? [watchUrl, ADMIN_TOKEN] : [])]);
  const line = await new Promise<string>((resolve, reject) => {
    role.onLine(resolve);
    role.proc.once('exit', (c) => reject(new Error(`register helper exited (${c})`)));
  });
  const r = JSON.parse(line) as {
    ok: number;
    failed: number;
    lastError: string;
    distinct: number;
    seconds: number;
    propagationMs?: Array<number | null>;
    unseen: string[];
  };
  if (r.failed > 0 || r.distinct !== n)
    throw new Error(`registrations at ${url}: ${r.ok} ok, ${r.failed} failed (${r.lastError}), ${r.distinct} distinct addresses`);
  return r;
}

interface Streams {
  anycast: Probe;
  wireguard: Probe;
  masque: Probe;
}

/** Waits until every stream is answered through `pop` (a switch to it after `since`, unless already there). */
async function allOn(s: Streams, pop: 'A' | 'B', since: number, timeoutMs: number, what: string): Promise<void> {
  for (const [name, p] of Object.entries(s) as Array<[string, Probe]>) {
    if (p.current !== pop) await p.wait((x) => x.to === pop && x.firstToRecvMs >= since, timeoutMs, `${what}: ${name} through PoP ${pop}`);
  }
}

async function failoverReps(rb: RouterBird, a: Pop, s: Streams): Promise<Record<keyof Streams, number[]>> {
  const gaps: Record<keyof Streams, number[]> = { anycast: [], wireguard: [], masque: [] };
  const prefix = `${ANYCAST}/32`;
  let tRestore = 0;
  for (let i = 0; i < REPS; i++) {
    const ready = await waitForRoute(rb.control, prefix, (v) => v.from === 'pop_a' && v.protocols.includes('pop_b'), 60_000);
    if (!ready.ok) throw new Error(`PoP A is not preferred at the router: ${JSON.stringify(ready.view)}`);
    await allOn(s, 'A', tRestore, 60_000, 'failback');
    // steady on A (so no earlier outage is counted), then a failure at a random point of the check's cycle
    await sleep(1500 + Math.random() * 200);
    const tFail = now();
    rmSync(a.healthFile, { force: true });
    const down = await waitFor(
      'PoP A to report down',
      async () => ((await httpIn(a.ns, 'GET', `${a.adminUrl}/healthz`)).json?.state === 'down' ? now() - tFail : undefined),
      30_000,
      20,
    );
    const gone = await waitForRoute(rb.control, prefix, (v) => !v.protocols.includes('pop_a'), 30_000, 5);
    if (!gone.ok) throw new Error(`the router kept A's route: ${JSON.stringify(gone.view)}`);
    await allOn(s, 'B', tFail, 40_000, 'failover');
    const out: Record<string, Outage> = {};
    for (const [name, p] of Object.entries(s) as Array<[keyof Streams, Probe]>) {
      out[name] = await p.outageAfter(tFail, name === 'anycast' ? 1500 : 0);
      gaps[name].push(out[name]!.ms);
    }
    log(
      `failover ${i + 1}/${REPS}: A down after ${Math.round(down)} ms, route gone after ${Math.round(gone.ms + down)} ms; gaps anycast ${Math.round(out.anycast!.ms)} ms, wireguard ${Math.round(out.wireguard!.ms)} ms, masque ${Math.round(out.masque!.ms)} ms`,
    );
    tRestore = now();
    writeFileSync(a.healthFile, '');
  }
  await allOn(s, 'A', tRestore, 60_000, 'failback');
  return gaps;
}

/** kill -9 of A's wireguard-go while the tunnel runs through A: the gap until answers come back. */
async function restartReps(a: Pop, wgIf: string, wg: Probe): Promise<number[]> {
  const gaps: number[] = [];
  for (let i = 0; i < REPS; i++) {
    // endpoints are recorded every 2 s; the re-initiation keepalive runs 5 s after a restart; and the
    // supervisor doubles its restart delay for a child that ran less than 10 s (stableAfterMs), so
    // kills closer together than that would measure the crash-loop backoff, not one restart.
    await sleep(i === 0 ? 3000 : 11_000);
    const status = await httpIn(a.ns, 'GET', `${a.adminUrl}/v1/status`, { token: ADMIN_TOKEN });
    const child = (status.json?.children as Array<{ name: string; pid?: number }> | undefined)?.find((c) => c.name === `wireguard-go:${wgIf}`);
    if (!child?.pid) throw new Error(`no wireguard-go on PoP A: ${status.text}`);
    const t = now();
    process.kill(child.pid, 'SIGKILL');
    const o = await waitFor('the WireGuard tunnel to answer again after kill -9', async () => wg.outages.find((x) => x.toSendMs > t), 30_000, 100);
    gaps.push(o.ms);
    log(`restart ${i + 1}/${REPS}: kill -9 of wireguard-go (pid ${child.pid}) → no answers for ${Math.round(o.ms)} ms`);
  }
  return gaps;
}

async function bench(topo: Topology, work: string): Promise<void> {
  const net = await buildTwoPops(topo, work, { anycastSource: true });
  const { router, client, rb } = net;
  const core = await topo.namespace('core');
  const origin = await topo.namespace('origin');
  const popS = await topo.namespace('pops');
  await topo.link(router, core, { aAddr: '10.0.200.1/24', bAddr: `${CORE}/24` });
  await topo.link(router, origin, { aAddr: ['10.0.100.1/24', '10.0.101.1/24'], bAddr: [`${ORIGIN}/24`, `${ORIGIN_MASQUE}/24`] });
  await topo.link(router, popS, { aAddr: '10.0.3.1/24', bAddr: `${SQLITE_POP}/24` });
  for (const [ns, gw] of [
    [core, '10.0.200.1'],
    [origin, '10.0.100.1'],
    [popS, '10.0.3.1'],
  ] as const)
    await ns.exec(['ip', 'route', 'add', 'default', 'via', gw]);
  const db = await PostgresHost.start({ netns: core.name, address: CORE });
  topo.onDestroy(() => db.stop());
  const issuer = await startIssuerIn(topo, core, `${CORE}:9400`, work);
  await startRole(origin, ['origin', '8080', String(ORIGIN_ECHO), `${ORIGIN},${ORIGIN_MASQUE}`]);

  const files: Files = {
    issuer,
    wgKeyFile: join(work, 'wg.key'),
    fleetKeyFile: join(work, 'fleet.key'),
    certFile: join(work, 'pop.crt'),
    keyFile: join(work, 'pop.key'),
  };
  writeFileSync(files.wgKeyFile, `${generatePrivateKey()}\n`, { mode: 0o600 });
  writeFileSync(files.fleetKeyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  writeTlsMaterial(await generateSelfSigned(['pop.test', ANYCAST]), files.certFile, files.keyFile);

  const wgIf = uniqueName('w');
  const pops: Pop[] = net.pops.map((p) => ({ ...p, adminUrl: `http://${p.addr}:${ADMIN_PORT}` }));
  const sqlite: Agent = { ns: popS, adminUrl: `http://${SQLITE_POP}:${ADMIN_PORT}` };
  topo.onDestroy(async () => {
    for (const p of [...pops, sqlite]) await p.agent?.stop('SIGKILL').catch(() => undefined);
  });
  await Promise.all(
    pops.map(async (p) => {
      await p.ns.sysctl('net.ipv4.ip_forward', '1');
      // tunnel traffic leaves from the PoP's own address, so the origin answers whichever PoP carried it
      await p.ns.exec(['nft', '-f', '-'], {
        input: `table ip cbrbench {\n chain post {\n  type nat hook postrouting priority 100;\n  ip saddr { 10.77.0.0/16, 100.64.0.0/16 } oifname "${p.ifname}" snat to ${p.addr}\n }\n}\n`,
      });
      await startRole(p.ns, ['echo', ANYCAST, String(POP_ECHO), p.name]);
      writeFileSync(p.healthFile, '');
      const stateDir = join(work, `pop-${p.name}`);
      mkdirSync(stateDir);
      p.agent = await startAgent(fleetPopYaml(p, { ...files, stateDir, wgIf, db }), {
        netns: p.ns.name,
        env: { CBR_LOG_LEVEL: 'info' },
        wrap: PRIVATE_WIREGUARD_RUN,
      });
      await waitHealthy(p.ns, p.adminUrl, p.agent, 60_000);
    }),
  );
  sqlite.agent = await startAgent(tunnelYaml({ name: 'pop-s', stateDir: join(work, 'pop-s'), issuer, wgIf: uniqueName('w'), pool: '10.78.0.0/16' }), {
    netns: popS.name,
    env: { CBR_LOG_LEVEL: 'info' },
    wrap: PRIVATE_WIREGUARD_RUN,
  });
  await waitHealthy(popS, sqlite.adminUrl, sqlite.agent, 60_000);
  const routes = await waitForRoute(rb.control, `${ANYCAST}/32`, (v) => v.from === 'pop_a' && v.protocols.includes('pop_b'), 60_000);
  if (!routes.ok) throw new Error(`the router did not learn the anycast route from both PoPs: ${JSON.stringify(routes.view)}`);
  const [a, b] = pops as [Pop, Pop];
  log('PostgreSQL, both PoPs and the SQLite PoP up');

  const token = await tokenFor(client, issuer, 'vpn-client', 'vpn-secret');
  const regUrl = (p: Agent) => `${p.adminUrl}/v1/wireguard/peers`;
  const prop = await register(client, regUrl(a), token, PROPAGATION, 1, `${b.adminUrl}/v1/wireguard/admin/peers`);
  const missing = prop.propagationMs!.filter((x) => x === null).length;
  if (missing > 0) {
    const onB = await httpIn(b.ns, 'GET', `${b.adminUrl}/v1/wireguard/admin/peers`, { token: ADMIN_TOKEN });
    const now = (onB.json?.peers as Array<{ publicKey: string }> | undefined)?.filter((p) => prop.unseen.includes(p.publicKey));
    throw new Error(`${missing} of ${PROPAGATION} peers not on PoP B's device within 15 s (${prop.unseen.join(', ')}); B lists now: ${JSON.stringify(now)}`);
  }
  const propMs = prop.propagationMs!.filter((x): x is number => x !== null);
  log(`propagation: p50 ${Math.round(percentile(propMs, 0.5))} ms, p99 ${Math.round(percentile(propMs, 0.99))} ms over ${PROPAGATION}`);
  const pg = await register(client, regUrl(a), token, BURST, BURST_CONCURRENCY);
  const lite = await register(client, regUrl(sqlite), token, BURST, BURST_CONCURRENCY);
  const pgRate = BURST / pg.seconds;
  const liteRate = BURST / lite.seconds;
  log(`registrations: ${pgRate.toFixed(0)}/s on PostgreSQL, ${liteRate.toFixed(0)}/s on SQLite (${BURST}, ${BURST_CONCURRENCY} in flight)`);
  await sqlite.agent.stop('SIGTERM');

  // The client: one registration through the anycast address, a stock wireguard-go and cbr connect.
  const priv = generatePrivateKey();
  const reg = await httpIn(client, 'POST', `http://${ANYCAST}:${ADMIN_PORT}/v1/wireguard/peers`, {
    token,
    body: JSON.stringify({ publicKey: publicKeyFor(priv) }),
  });
  if (reg.status !== 201) throw new Error(`client registration: ${reg.status} ${reg.text}`);
  await clientTunnelFromWgQuick(topo, client, uniqueName('c'), reg.json.wgQuick, priv, reg.json.allowedIPs);
  const secretFile = join(work, 'client-secret');
  writeFileSync(secretFile, 'vpn-secret\n', { mode: 0o600 });
  const mq = startConnect({ client, popAddr: ANYCAST, port: 443, caFile: files.certFile }, vpnClientConnectArgs(issuer, secretFile, uniqueName('m')));
  topo.onDestroy(() => stopConnect(mq.child).then(() => undefined));
  await mq.waitFor(/session open: connect-ip/, 30_000);
  const tagOf = (addr: string) => (addr === a.addr ? 'A' : addr === b.addr ? 'B' : addr);
  const streams: Streams = {
    anycast: await Probe.start(client, ANYCAST, POP_ECHO, { rate: PROBE_PPS }),
    wireguard: await Probe.start(client, ORIGIN, ORIGIN_ECHO, { rate: PROBE_PPS, tagOf }),
    masque: await Probe.start(client, ORIGIN_MASQUE, ORIGIN_ECHO, { rate: PROBE_PPS, tagOf }),
  };
  await allOn(streams, 'A', 0, 20_000, 'start');
  log('client up: anycast, WireGuard and MASQUE probes answered through PoP A');

  const fo = await failoverReps(rb, a, streams);
  const restart = await restartReps(a, wgIf, streams.wireguard);
  for (const p of Object.values(streams)) p.stop();
  const resets = (mq.output().match(/stateless reset/g) ?? []).length;

  const ms = (v: number): BenchMetric => ({ value: Math.round(v * 10) / 10, unit: 'ms' });
  const results: Record<string, BenchMetric> = {
    peer_propagation_ms_p50: ms(percentile(propMs, 0.5)),
    peer_propagation_ms_p99: ms(percentile(propMs, 0.99)),
    registrations_per_s_postgres: { value: Math.round(pgRate * 10) / 10, unit: 'registrations/s' },
    registrations_per_s_sqlite: { value: Math.round(liteRate * 10) / 10, unit: 'registrations/s' },
    masque_failover_gap_ms_p50: ms(percentile(fo.masque, 0.5)),
    wireguard_failover_gap_ms_p50: ms(percentile(fo.wireguard, 0.5)),
    anycast_failover_gap_ms_p50: ms(percentile(fo.anycast, 0.5)),
    wireguard_restart_gap_ms_p50: ms(percentile(restart, 0.5)),
  };
  const round = (xs: number[]) => xs.map((x) => Math.round(x));
  const path = writeBenchResult('fleet', results, {
    setup: {
      quick: QUICK,
      repetitions: REPS,
      propagationRegistrations: PROPAGATION,
      burst: { registrations: BURST, concurrency: BURST_CONCURRENCY },
      probeRatePps: PROBE_PPS,
      gap: 'longest run of probes (by send time) without an answer within 1 s, ending after the failure',
      clients: 'wireguard-go from the returned wg-quick file; cbr connect --mode ip; registered once through the anycast address',
      masqueStatelessResetsSeen: resets,
      samples: {
        peer_propagation_ms: round(propMs),
        anycast_failover_gap_ms: round(fo.anycast),
        wireguard_failover_gap_ms: round(fo.wireguard),
        masque_failover_gap_ms: round(fo.masque),
        wireguard_restart_gap_ms: round(restart),
      },
    },
  });
  console.log('metric                            value');
  for (const [k, v] of Object.entries(results)) console.log(`${k.padEnd(34)}${String(v.value).padStart(10)} ${v.unit}`);
  console.log(`written to ${path}`);
}

const work = mkdtempSync(join(tmpdir(), 'cbr-fleet-'));
try {
  await withTopology((topo) => bench(topo, work));
} catch (err) {
  console.error(`fleet bench failed: ${(err as Error).message}`);
  process.exitCode = 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
