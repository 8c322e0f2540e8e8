// `make demo`: the whole product in network namespaces, narrated with what it measures.
//
//   db (PostgreSQL)   idp (cbr dev-issuer)        origin (HTTP, UDP echo, iperf3 -s)
//               \__________\                 /
//   client ──────────────── router (BIRD, AS 65000) ──── PoP A  cbr agent: XDP filter, WireGuard, BGP (AS 65001, preferred)
//   attacker ──────────────/                    \──────── PoP B  cbr agent: XDP filter, WireGuard, BGP (AS 65002)
//
// Both PoPs announce 198.51.100.1/32 (the anycast address, on their lo) only while healthy. Both keep
// their WireGuard peers in one registry on PostgreSQL (namespace db, mutual TLS), each following its
// change feed. The client takes a token from the dev issuer (client_credentials), registers its
// WireGuard key once, through the anycast address, brings up a stock wireguard-go from the returned
// wg-quick file and fetches from the origin through the tunnel. The attacker floods; the XDP filter
// drops it. PoP A's health check then fails, A withdraws, B initiates the handshake to the client's
// last endpoint, and the client's traffic moves to B; the interruption is measured.
//
// Keeps the agents (and their /metrics) up until Ctrl-C; ONCE=1 exits at the end (0 only if every
// step worked). Everything it creates (namespaces, processes, the bpffs mount and pins, temp dirs,
// UAPI sockets) is removed on every exit path.
import { mkdtempSync, mkdirSync, rmSync, rmdirSync, writeFileSync, existsSync } from 'node:fs';
import { execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { PostgresHost, Topology, run, uniqueName, waitFor, startPrometheus, type Namespace, type PrometheusServer } from '../testhosts/index.js';
import { startAgent, runCli, CLI_PATH, PRIVATE_WIREGUARD_RUN, type AgentProcess } from '../dataplane/testing.js';
import { waitForRoute, type RouterBird } from '../bgp/testing.js';
import { generatePrivateKey, publicKeyFor } from '../tunnel/wireguard/keys.js';
import { uapiSocketPath } from '../tunnel/wireguard/uapi-client.js';
import { encodeCid } from '../xdp/index.js';
import { generateSelfSigned, writeTlsMaterial } from '../tunnel/quic/index.js';
import { quicLong, quicShort } from '../xdp/testing.js';
import { clientTunnelFromWgQuick, vpnClientConnectArgs, startIssuerIn, httpIn, tokenFor, PROJECT, ISSUER_PORT } from '../tunnel/wireguard/testing.js';
import { ANYCAST, FAST_CHECK, buildTwoPops, popTunnelYaml, popYamlBase, type TwoPopsPop } from './two-pops.js';
import { Probe, startRole } from './probe.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const BARE_XDP = join(HERE, '..', '..', 'xdp', 'build', 'bare.bpf.o');
const ALERT_RULES = join(HERE, '..', '..', 'docs', 'prometheus', 'cbr-rules.yml');
const UDPSEND = join(HERE, '..', 'xdp', 'udpsend.js');
const ONCE = process.env.ONCE === '1';
const VERBOSE = process.env.CBR_DEMO_VERBOSE === '1';

const ADMIN_PORT = 9780;
/** WireGuard registration over HTTPS (clientApi); MASQUE has UDP 443. */
const CLIENT_API_PORT = 443;
const ADMIN_TOKEN = `demo-admin-${process.pid}-${Math.random().toString(36).slice(2)}`;
const ORIGIN = '10.0.100.2';
/** PostgreSQL, the registry every PoP shares (namespace db, behind the router). */
const DB = '10.0.202.2';
/** A second origin address, routed to clients through MASQUE (WireGuard carries 10.0.100.0/24). */
const ORIGIN_MASQUE = '10.0.101.2';
const ORIGIN_HTTP = 8080;
const ORIGIN_ECHO = 7001;
const POP_ECHO = 7000;
const WG_POOL = '10.77.0.0/24';
const ATTACKER = '10.9.1.66';
const RATE_PPS = 20_000;
const PROBE_PPS = 200;
const LB_PORT = 4433;
const WORKERS = ['10.0.31.2', '10.0.32.2'];

// ---------------- narration ----------------

const T0 = performance.now();
const clock = () => `+${((performance.now() - T0) / 1000).toFixed(1).padStart(5)}s`;
function say(msg: string): void {
  process.stdout.write(`[${clock()}] ${msg}\n`);
}
function detail(msg: string): void {
  process.stdout.write(`           ${msg}\n`);
}
const ms = (x: number) => `${Math.round(x)} ms`;
const fmtRate = (bitsPerSecond: number) => (bitsPerSecond >= 1e9 ? `${(bitsPerSecond / 1e9).toFixed(2)} Gbit/s` : `${(bitsPerSecond / 1e6).toFixed(0)} Mbit/s`);

/** Steps that must hold; a failure ends the demo with a non-zero exit. */
function check(ok: unknown, what: string): asserts ok {
  if (!ok) throw new Error(what);
}

// ---------------- cleanup on every path ----------------

/** Synchronous removals (mounts, dirs, sockets) that also run on a hard exit. Idempotent. */
const syncCleanups: Array<() => void> = [];
function runSyncCleanups(): void {
  while (syncCleanups.length) {
    try {
      syncCleanups.pop()!();
    } catch {
      /* best effort: keep removing the rest */
    }
  }
}
process.on('exit', runSyncCleanups);

// ---------------- the PoPs ----------------

/** A PoP of the two-PoP topology (XDP attaches to its `ifname`) with what the demo adds. */
interface Pop extends TwoPopsPop {
  wgIf: string;
  masqueTun: string;
  /** The router's MAC on the PoP link: the LB's next hop. */
  routerMac: string;
  stateDir: string;
  agent?: AgentProcess;
}

function popYaml(
  p: Pop,
  o: { issuer: string; bpffs: string; wgKeyFile: string; fleetKeyFile: string; certFile: string; keyFile: string; db: PostgresHost },
): string {
  return `agent:
  name: pop-${p.name.toLowerCase()}
  stateDir: ${p.stateDir}
# admin on the PoP's unicast (management) address only; clients use the HTTPS client API
admin:
  listen: ${p.addr}:${ADMIN_PORT}
  apiToken: ${ADMIN_TOKEN}
clientApi:
  enabled: true
  listen: 0.0.0.0:${CLIENT_API_PORT}
  # certFile/keyFile default to tunnel.masque.tls: one certificate for the PoP's client services
${popYamlBase(p, FAST_CHECK)}registry:
  # the fleet's registry: PostgreSQL over mutual TLS (verify-full), followed into <stateDir>/registry.db
  postgres:
    url: "${o.db.url()}&target_session_attrs=read-write"
    passwordFile: ${o.db.passwordFile(o.db.roles[0]!)}
auth:
  enabled: true
  issuer: ${o.issuer}
  allowInsecureIssuer: true  # the dev issuer serves http:// inside the demo's namespaces
  audience: ["${PROJECT}"]
xdp:
  enabled: true
  interface: ${p.ifname}
  pinRoot: ${o.bpffs}
  mode: native
  rateLimit:
    enabled: true
    packetsPerSecond: ${RATE_PPS}
    burst: ${RATE_PPS}
  services:
    addresses: [${ANYCAST}]
    allow:
      - { protocol: udp, port: 51820 }
      - { protocol: udp, port: 443 }
      - { protocol: tcp, port: ${CLIENT_API_PORT} }
      - { protocol: udp, port: ${POP_ECHO} }
      - { protocol: udp, port: ${LB_PORT} }
      - { protocol: icmp }
  lb:
    # QUIC workers behind the PoP: new flows by Maglev, QUIC short headers by the server ID in their CID
    vips: [{ address: ${ANYCAST}, port: ${LB_PORT}, protocol: udp, quic: true }]
    backends:
${WORKERS.map((w, i) => `      - { address: ${w}, weight: 1, serverId: ${i + 1} }`).join('\n')}
    nextHopMac: "${p.routerMac}"
    encapSourceV4: ${p.addr}
${popTunnelYaml({ wgIf: p.wgIf, address: '10.77.0.1/24', pool: WG_POOL, deviceLimit: 5, keyFile: o.wgKeyFile, keepalive: 0 })}  masque:
    enabled: true
    listen: 0.0.0.0:443
    serverId: ${p.as - 65000}
    # short, so a client whose PoP went away notices within seconds (QUIC uses the smaller of both sides')
    idleTimeout: 5s
    tls: { certFile: ${o.certFile}, keyFile: ${o.keyFile} }
    # shared by both PoPs: the PoP that gets another PoP's QUIC packets answers with a stateless reset
    fleetKeyFile: ${o.fleetKeyFile}
    ip:
      tun: ${p.masqueTun}
      poolV4: 100.64.${p.as - 65000}.0/24
      poolV6: fd00:cb:${p.as - 65000}::/64
      routes: [10.0.101.0/24]
      allowPrivate: true
`;
}

async function healthState(p: Pop): Promise<string> {
  const out = await p.ns.exec(['curl', '-s', '-m', '2', `http://${p.addr}:${ADMIN_PORT}/healthz`]);
  return (JSON.parse(out) as { state: string }).state;
}

interface CounterRow {
  action: string;
  reason: string;
  packets: number;
}
async function xdpStats(p: Pop): Promise<CounterRow[]> {
  const r = await runCli(['xdp', 'stats', '--admin', `http://${p.addr}:${ADMIN_PORT}`], {
    netns: p.ns.name,
    env: { ...process.env, CBR_ADMIN_TOKEN: ADMIN_TOKEN },
  });
  if (r.code !== 0) throw new Error(`cbr xdp stats on PoP ${p.name}: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { counters: CounterRow[] }).counters;
}
function delta(after: CounterRow[], before: CounterRow[], action: string, reason: string): number {
  const get = (rows: CounterRow[]) => rows.find((r) => r.action === action && r.reason === reason)?.packets ?? 0;
  return get(after) - get(before);
}

async function iperfGbps(client: Namespace, seconds: number, server = ORIGIN): Promise<number> {
  const out = await client.exec(['iperf3', '-c', server, '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
  return (JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second;
}

/** A bounded trafgen flood from the attacker at the anycast address (UDP 51820, every source port). */
async function flood(attacker: Namespace, ifname: string, routerMac: string, conf: string, seconds: number): Promise<void> {
  const myMac = (await attacker.exec(['cat', `/sys/class/net/${ifname}/address`])).trim();
  writeFileSync(
    conf,
    `{\n  eth(da=${routerMac}, sa=${myMac}, type=0x0800),\n  ipv4(saddr=${ATTACKER}, daddr=${ANYCAST}, proto=17, ttl=64),\n  udp(sport=dinc(1024, 65000), dport=51820),\n  fill(0x41, 32)\n}\n`,
  );
  await attacker
    .exec(['timeout', '-s', 'INT', String(seconds), 'trafgen', '--dev', ifname, '--conf', conf, '--cpus', '1'], { timeoutMs: (seconds + 10) * 1000 })
    .catch((err: Error) => {
      // timeout(1) exits 124 when it had to stop trafgen, which is how a bounded flood ends
      if (!/exit 124/.test(err.message)) throw err;
    });
}

async function interfacePackets(ns: Namespace, ifname: string, dir: 'rx' | 'tx'): Promise<number> {
  return Number((await ns.exec(['cat', `/sys/class/net/${ifname}/statistics/${dir}_packets`])).trim());
}

// ---------------- the demo, step by step ----------------

interface Worker {
  ns: Namespace;
  addr: string;
  ifname: string;
}

/** What the topology step built: the namespaces and what the later steps address in them. */
interface Net {
  topo: Topology;
  work: string;
  router: Namespace;
  origin: Namespace;
  idp: Namespace;
  client: Namespace;
  attacker: Namespace;
  /** The attacker's end of its link, and the router's MAC on it (the flood's next hop). */
  attackerIf: string;
  routerMacToAttacker: string;
  pops: [Pop, Pop];
  workers: Worker[];
  /** The WireGuard server key both PoPs share. */
  serverKey: string;
  wgKeyFile: string;
  /** The MASQUE fleet key both PoPs share (stateless resets, retry tokens, TLS tickets). */
  fleetKeyFile: string;
  bpffs: string;
  rb: RouterBird;
  /** The registry both PoPs share. */
  db: PostgresHost;
}

/** The services beside the PoPs that the agents and the client use. */
interface Services {
  issuer: string;
  certFile: string;
  /** Debian's Prometheus scraping both PoPs, in namespace `mon`. */
  prom: PrometheusServer;
  mon: Namespace;
}

interface WireGuardClient {
  probe: Probe;
  ifname: string;
  allowedIPs: string[];
  /** iperf3 through the tunnel before the attack. */
  bps: number;
  /** WireGuard handshake initiations counted by nftables in a namespace. */
  initiations: (ns: Namespace) => Promise<number>;
}

interface MasqueClient {
  proc: ChildProcess;
  lines: string[];
  says: (re: RegExp, timeoutMs: number, from?: number) => Promise<string>;
  probe: Probe;
}

/** The probes answer with the address of the PoP that carried them: name it. */
const popTag = (net: Net) => (addr: string) => (addr === net.pops[0].addr ? 'A' : addr === net.pops[1].addr ? 'B' : addr);

async function buildTopology(topo: Topology, work: string): Promise<Net> {
  say('building the topology: router, origin, idp, PoP A, PoP B, 2 QUIC workers, client, attacker (network namespaces)');
  // Debian's wireguard-go (0.0.20220316) has no sticky sockets: it answers from the route's
  // preferred source, and a client roams to whatever address answers it. So the PoPs' client-facing
  // (default) route prefers the anycast address; the infrastructure (10.0.0.0/16: origin, idp)
  // is reached from the PoP's unicast address.
  const { router, client, pops: base, rb } = await buildTwoPops(topo, work, { anycastSource: true });
  syncCleanups.push(() => rmSync(rb.dir, { recursive: true, force: true }));
  const origin = await topo.namespace('origin');
  const idp = await topo.namespace('idp');
  const attacker = await topo.namespace('attacker');
  await topo.link(router, origin, { aAddr: ['10.0.100.1/24', '10.0.101.1/24'], bAddr: [`${ORIGIN}/24`, `${ORIGIN_MASQUE}/24`] });
  await topo.link(router, idp, { aAddr: '10.0.200.1/24', bAddr: '10.0.200.2/24' });
  const [rAtk, atkIf] = await topo.link(router, attacker, { aAddr: '10.9.1.1/24', bAddr: `${ATTACKER}/24` });
  for (const ns of [origin, idp, attacker])
    await ns.exec([
      'ip',
      'route',
      'add',
      'default',
      'via',
      `${(await ns.exec(['ip', '-4', '-o', 'addr', 'show', 'scope', 'global'])).match(/inet (\d+\.\d+\.\d+)\./)![1]}.1`,
    ]);

  // One WireGuard server key for the anycast service, shared by both PoPs (as an anycast WireGuard
  // deployment must: the client has one server public key).
  const wgKeyFile = join(work, 'wg-anycast.key');
  const serverKey = generatePrivateKey();
  writeFileSync(wgKeyFile, `${serverKey}\n`, { mode: 0o600 });
  const fleetKeyFile = join(work, 'masque-fleet.key');
  writeFileSync(fleetKeyFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });

  // The same WireGuard interface on both PoPs (the registry keys peers by interface), each agent with a
  // /run/wireguard of its own for the UAPI socket, as on separate hosts.
  const wgIf = uniqueName('w');
  const pops: Pop[] = [];
  for (const p of base) {
    // native XDP on the PoP's veth needs an XDP program on the sending peer too (veth NAPI)
    await router.exec(['ip', 'link', 'set', 'dev', p.routerIf, 'xdpdrv', 'obj', BARE_XDP, 'sec', 'xdp']);
    await p.ns.sysctl('net.ipv4.ip_forward', '1');
    // tunnel traffic leaves the PoP from the PoP's own address, so the origin answers whichever PoP carried it
    await p.ns.exec(['nft', '-f', '-'], {
      input: `table ip cbrdemo {\n chain post {\n  type nat hook postrouting priority 100;\n  ip saddr ${WG_POOL} oifname "${p.ifname}" snat to ${p.addr}\n }\n chain in {\n  type filter hook input priority 0;\n  udp dport 51820 @th,64,8 1 counter comment "wireguard handshake initiations"\n }\n}\n`,
    });
    const stateDir = join(work, `pop-${p.name.toLowerCase()}`);
    mkdirSync(stateDir);
    const routerMac = (await router.exec(['cat', `/sys/class/net/${p.routerIf}/address`])).trim();
    pops.push({ ...p, wgIf, masqueTun: uniqueName('q'), routerMac, stateDir });
  }
  const [a, b] = pops as [Pop, Pop];
  // QUIC workers the PoPs' load balancer sends to (IPIP through the router). This kernel has no IPIP
  // module to decapsulate, so each worker counts what arrives for it with an nftables ingress counter.
  const workers: Worker[] = [];
  for (const [i, addr] of WORKERS.entries()) {
    const w = await topo.namespace(`worker${i + 1}`);
    const [, wEnd] = await topo.link(router, w, { aAddr: addr.replace(/\.2$/, '.1/24'), bAddr: `${addr}/24` });
    await w.exec(['ip', 'route', 'add', 'default', 'via', addr.replace(/\.2$/, '.1')]);
    await w.exec(['nft', '-f', '-'], {
      input: `table netdev cbrdemo {\n chain in {\n  type filter hook ingress device "${wEnd.ifname}" priority 0;\n  ip protocol 4 counter\n }\n}\n`,
    });
    workers.push({ ns: w, addr, ifname: wEnd.ifname });
  }
  const routerMacToAttacker = (await router.exec(['cat', `/sys/class/net/${rAtk.ifname}/address`])).trim();

  // The fleet's registry: Debian's PostgreSQL in a namespace of its own, TLS with client certificates.
  const dbNs = await topo.namespace('db');
  await topo.link(router, dbNs, { aAddr: '10.0.202.1/24', bAddr: `${DB}/24` });
  await dbNs.exec(['ip', 'route', 'add', 'default', 'via', '10.0.202.1']);
  const tDb = performance.now();
  const db = await PostgresHost.start({ netns: dbNs.name, address: DB });
  topo.onDestroy(() => db.stop());
  say(`registry: PostgreSQL up at ${DB}:${db.port} in ${ms(performance.now() - tDb)} (initdb, mutual TLS: verify-full and a client certificate per PoP role)`);

  // bpffs of the demo's own: `ip netns exec` remounts /sys, hiding the host's /sys/fs/bpf
  const bpffs = `/run/cbr-t${process.pid}-demo-bpf`;
  mkdirSync(bpffs, { recursive: true });
  await run(['mount', '-t', 'bpf', 'bpf', bpffs]);
  syncCleanups.push(() => {
    try {
      execFileSync('umount', [bpffs], { stdio: 'ignore' });
    } catch {
      /* not mounted */
    }
    if (existsSync(bpffs)) rmdirSync(bpffs);
  });

  say(`upstream router: BIRD up (AS 65000), expecting PoP A (AS ${a.as}, local-pref 200) and PoP B (AS ${b.as}, local-pref 100)`);
  return {
    topo,
    work,
    router,
    origin,
    idp,
    client,
    attacker,
    attackerIf: atkIf.ifname,
    routerMacToAttacker,
    pops: [a, b],
    workers,
    serverKey,
    wgKeyFile,
    fleetKeyFile,
    bpffs,
    rb,
    db,
  };
}

/** The dev issuer, the origin, the MASQUE certificate, then both PoP agents until BGP has them. */
async function startPopAgents(net: Net): Promise<Services> {
  const { topo, work, pops, rb } = net;
  const issuer = await startIssuerIn(topo, net.idp, `10.0.200.2:${ISSUER_PORT}`, work);
  say(`dev issuer up at ${issuer} (Zitadel-shaped discovery, JWKS, client_credentials; project ${PROJECT})`);

  await startRole(net.origin, ['origin', String(ORIGIN_HTTP), String(ORIGIN_ECHO), `${ORIGIN},${ORIGIN_MASQUE}`]);
  const iperfSrv = net.origin.spawn(['iperf3', '-s']);
  iperfSrv.stdout?.resume();
  iperfSrv.stderr?.resume();
  say(`origin up at ${ORIGIN} and ${ORIGIN_MASQUE}: HTTP :${ORIGIN_HTTP}, UDP echo :${ORIGIN_ECHO}, iperf3 -s`);
  // One TLS certificate for the anycast MASQUE service, shared by both PoPs; the client trusts it by --ca.
  const certFile = join(work, 'masque.crt');
  const keyFile = join(work, 'masque.key');
  writeTlsMaterial(await generateSelfSigned(['pop.demo', ANYCAST, ...net.pops.map((p) => p.addr)]), certFile, keyFile);

  const tAgents = performance.now();
  const started = await Promise.all(
    pops.map(async (p) => {
      writeFileSync(p.healthFile, '');
      const t = performance.now();
      p.agent = await startAgent(
        popYaml(p, { issuer, bpffs: net.bpffs, wgKeyFile: net.wgKeyFile, fleetKeyFile: net.fleetKeyFile, certFile, keyFile, db: net.db }),
        {
          netns: p.ns.name,
          env: { CBR_LOG_LEVEL: 'info' },
          wrap: PRIVATE_WIREGUARD_RUN,
        },
      );
      syncCleanups.push(() => rmSync(p.agent!.dir, { recursive: true, force: true }));
      if (VERBOSE) createInterface({ input: p.agent.proc.stdout! }).on('line', (l) => process.stdout.write(`  ${p.name}| ${l}\n`));
      await waitFor(
        `PoP ${p.name} to report healthy`,
        async () => {
          if (p.agent!.proc.exitCode !== null) throw new Error(`agent ${p.name} exited:\n${p.agent!.logLines.slice(-20).join('\n')}`);
          return (await healthState(p)) === 'up' ? true : undefined;
        },
        45_000,
        200,
      );
      return performance.now() - t;
    }),
  );
  say(
    `PoP agents up and healthy: A in ${ms(started[0]!)}, B in ${ms(started[1]!)} (XDP filter + LB attached, wireguard-go and BIRD supervised, MASQUE listening on UDP 443, JWKS fetched)`,
  );
  // Debian's prometheus in a namespace of its own (behind the router), scraping both PoPs with the shipped rules.
  const mon = await topo.namespace('mon');
  await topo.link(net.router, mon, { aAddr: '10.0.201.1/24', bAddr: '10.0.201.2/24' });
  await mon.exec(['ip', 'route', 'add', 'default', 'via', '10.0.201.1']);
  await mon.exec(['ip', 'link', 'set', 'lo', 'up']);
  const prom = await startPrometheus(topo, mon, { targets: pops.map((p) => `${p.addr}:${ADMIN_PORT}`), rulesFile: ALERT_RULES, intervalS: 2 });
  const scraped = await waitFor(
    'prometheus to scrape both PoPs',
    async () => ((await prom.query('up{job="cbr"} == 1')).length === 2 ? true : undefined),
    20_000,
    500,
  )
    .then(() => true)
    .catch(() => false);
  check(scraped, 'prometheus did not scrape both PoPs');
  say(`Prometheus (Debian's, namespace ${mon.name}) scrapes both PoPs every 2 s with docs/prometheus/cbr-rules.yml loaded`);
  const routes = await waitForRoute(rb.control, `${ANYCAST}/32`, (v) => v.from === 'pop_a' && v.protocols.includes('pop_b'), 30_000);
  check(routes.ok, `the router did not learn ${ANYCAST}/32 from both PoPs: ${JSON.stringify(routes.view)}`);
  say(`BGP: the router has ${ANYCAST}/32 from both PoPs, best via PoP A (${ms(performance.now() - tAgents)} after the agents started)`);
  for (const p of pops) {
    const st = await p.ns.exec(['curl', '-s', '-m', '2', '-H', `authorization: Bearer ${ADMIN_TOKEN}`, `http://${p.addr}:${ADMIN_PORT}/v1/xdp/status`]);
    detail(
      `PoP ${p.name}: xdp ${/"attached":\s*true/.test(st) ? 'attached' : 'NOT attached'} on ${p.ifname}; metrics at http://${p.addr}:${ADMIN_PORT}/metrics`,
    );
  }
  return { issuer, certFile, prom, mon };
}

/** Anycast reachability: a UDP echo on each PoP's anycast address, probed from the client. */
async function probeAnycast(net: Net): Promise<Probe> {
  for (const p of net.pops) await startRole(p.ns, ['echo', ANYCAST, String(POP_ECHO), p.name]);
  const probe = await Probe.start(net.client, ANYCAST, POP_ECHO, { rate: PROBE_PPS });
  const firstHop = await probe.wait((s) => s.to === 'A' || s.to === 'B', 10_000, 'the anycast probe to be answered');
  check(firstHop.to === 'A', `the anycast address answered from PoP ${firstHop.to}, expected A`);
  say(`client → ${ANYCAST}: answered by PoP ${firstHop.to} (${PROBE_PPS} probes/s keep running to time the failover)`);
  return probe;
}

async function takeToken(net: Net, svc: Services): Promise<string> {
  const tTok = performance.now();
  const token = await tokenFor(net.client, svc.issuer, 'vpn-client', 'vpn-secret');
  const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { sub: string; exp: number; iat: number };
  say(
    `client: token from the dev issuer in ${ms(performance.now() - tTok)} (client_credentials; sub ${claims.sub}, role vpn-user, valid ${claims.exp - claims.iat} s)`,
  );
  return token;
}

/** Registers the client's key once, through the anycast address; brings the tunnel up, measures it. */
async function connectWireGuard(net: Net, svc: Services, token: string): Promise<WireGuardClient> {
  const { client } = net;
  const [, b] = net.pops;
  const clientKey = generatePrivateKey();
  const body = JSON.stringify({ publicKey: publicKeyFor(clientKey) });
  const tReg = performance.now();
  const regA = await httpIn(client, 'POST', `https://${ANYCAST}/v1/wireguard/peers`, { token, body, cacert: svc.certFile });
  const regAms = performance.now() - tReg;
  check(regA.status === 201, `WireGuard registration through the anycast address: HTTP ${regA.status} ${regA.text}`);
  const t201 = performance.now();
  const pub = publicKeyFor(clientKey);
  const onB = async () => {
    const r = await httpIn(b.ns, 'GET', `http://${b.addr}:${ADMIN_PORT}/v1/wireguard/admin/peers`, { token: ADMIN_TOKEN });
    return (r.json?.peers as Array<{ publicKey: string; onDevice: boolean }> | undefined)?.some((p) => p.publicKey === pub && p.onDevice) ? true : undefined;
  };
  await waitFor('the registration to reach PoP B through the registry', onB, 10_000, 10);
  say(
    `WireGuard: POST https://${ANYCAST}/v1/wireguard/peers (client API, TLS) → 201 in ${ms(regAms)} (lease ${regA.json.addresses.ipv4}, endpoint ${regA.json.server.endpoint}); registered once: PoP B's device had the peer ${ms(performance.now() - t201)} later (PostgreSQL change feed)`,
  );
  const clientWg = uniqueName('c');
  await client.exec(['nft', '-f', '-'], {
    input: `table ip cbrdemo {\n chain out {\n  type filter hook output priority 0;\n  udp dport 51820 @th,64,8 1 counter comment "wireguard handshake initiations"\n }\n}\n`,
  });
  const initiations = async (ns: Namespace) => Number(/packets (\d+)/.exec(await ns.exec(['nft', 'list', 'table', 'ip', 'cbrdemo']))?.[1] ?? NaN);
  syncCleanups.push(() => rmSync(uapiSocketPath(clientWg), { force: true }));
  const tUp = performance.now();
  await clientTunnelFromWgQuick(net.topo, client, clientWg, regA.json.wgQuick, clientKey, regA.json.allowedIPs);
  await waitFor('a ping through the WireGuard tunnel', async () => ((await client.ping(ORIGIN, { count: 1, timeoutS: 1 })) ? true : undefined), 20_000, 0);
  say(`WireGuard: client wireguard-go up from the returned wg-quick config; first ping to the origin through the tunnel after ${ms(performance.now() - tUp)}`);
  const hello = await client.exec(['curl', '-s', '-m', '5', `http://${ORIGIN}:${ORIGIN_HTTP}/`]);
  detail(`GET http://${ORIGIN}:${ORIGIN_HTTP}/ → ${hello.trim()}`);
  const fetched = await fetch20MB(client, ORIGIN, 30, 'the 20 MB fetch through the tunnel');
  detail(`GET /bytes/20000000 through the tunnel: ${fetched}`);
  const bps = await iperfGbps(client, 3);
  detail(`iperf3 TCP 3 s through the tunnel: ${fmtRate(bps)}`);
  const probe = await Probe.start(client, ORIGIN, ORIGIN_ECHO, { rate: PROBE_PPS, tagOf: popTag(net) });
  const tunHop = await probe.wait((s) => s.to === 'A' || s.to === 'B', 10_000, 'the tunnel probe to be answered');
  check(tunHop.to === 'A', `tunnel traffic went through PoP ${tunHop.to}, expected A`);
  detail(`UDP probes through the tunnel (${PROBE_PPS}/s) reach the origin via PoP A`);
  return { probe, ifname: clientWg, allowedIPs: regA.json.allowedIPs, bps, initiations };
}

/** GET /bytes/20000000 from `host` with curl in `ns`; checks the size, says how long it took. */
async function fetch20MB(ns: Namespace, host: string, timeoutS: number, what: string): Promise<string> {
  const out = (
    await ns.exec([
      'curl',
      '-s',
      '-m',
      String(timeoutS),
      '-o',
      '/dev/null',
      '-w',
      '%{size_download} %{time_total}',
      `http://${host}:${ORIGIN_HTTP}/bytes/20000000`,
    ])
  )
    .trim()
    .split(' ');
  const bytes = Number(out[0]);
  const secs = Number(out[1]);
  check(bytes === 20_000_000, `${what} got ${out[0]} bytes`);
  return `${(secs * 1000).toFixed(0)} ms (${fmtRate((bytes * 8) / secs)})`;
}

/** Collects a child's stderr lines; `says` waits for one matching `re` from line `from` on. */
function watchLines(proc: ChildProcess, tag: string, what: string): Pick<MasqueClient, 'lines' | 'says'> {
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; from: number; resolve: (l: string) => void }> = [];
  createInterface({ input: proc.stderr! }).on('line', (l) => {
    lines.push(l);
    if (VERBOSE) process.stdout.write(`  ${tag}| ${l}\n`);
    for (const w of [...waiters])
      if (lines.length > w.from && w.re.test(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(l);
      }
  });
  const says = (re: RegExp, timeoutMs: number, from = 0): Promise<string> => {
    const seen = lines.slice(from).find((l) => re.test(l));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        re,
        from,
        resolve: (l: string) => {
          clearTimeout(t);
          resolve(l);
        },
      };
      const t = setTimeout(() => {
        waiters.splice(waiters.indexOf(w), 1);
        reject(new Error(`${what} did not say ${re} within ${timeoutMs} ms:\n${lines.slice(-10).join('\n')}`));
      }, timeoutMs);
      waiters.push(w);
    });
  };
  return { lines, says };
}

/** `cbr connect` (MASQUE connect-ip) from the client through the anycast address, measured. */
async function connectMasque(net: Net, svc: Services): Promise<MasqueClient> {
  const { client, work } = net;
  const secretFile = join(work, 'client-secret');
  writeFileSync(secretFile, 'vpn-secret\n', { mode: 0o600 });
  const tConnect = performance.now();
  const proc = client.spawn(
    [
      process.execPath,
      CLI_PATH,
      'connect',
      '--server',
      `${ANYCAST}:443`,
      '--server-name',
      'pop.demo',
      '--ca',
      svc.certFile,
      ...vpnClientConnectArgs(svc.issuer, secretFile, uniqueName('m')),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout?.resume();
  const { lines, says } = watchLines(proc, 'masque', 'cbr connect');
  const opened = await says(/session open: connect-ip/, 30_000);
  say(
    `MASQUE: cbr connect (token by client_credentials, HTTP/3 Extended CONNECT connect-ip to ${ANYCAST}:443) → ${ms(performance.now() - tConnect)}: ${opened.replace(/^cbr connect: session open: connect-ip /, '')}`,
  );
  await waitFor('a ping through the MASQUE tunnel', async () => ((await client.ping(ORIGIN_MASQUE, { count: 1, timeoutS: 1 })) ? true : undefined), 15_000, 0);
  const fetched = await fetch20MB(client, ORIGIN_MASQUE, 60, 'the 20 MB fetch through MASQUE');
  detail(`GET http://${ORIGIN_MASQUE}:${ORIGIN_HTTP}/bytes/20000000 through MASQUE: ${fetched}`);
  const masqueBps = await iperfGbps(client, 3, ORIGIN_MASQUE);
  detail(`iperf3 TCP 3 s through MASQUE: ${fmtRate(masqueBps)}`);
  const probe = await Probe.start(client, ORIGIN_MASQUE, ORIGIN_ECHO, { rate: PROBE_PPS, tagOf: popTag(net) });
  const mHop = await probe.wait((s) => s.to === 'A' || s.to === 'B', 10_000, 'the MASQUE probe to be answered');
  check(mHop.to === 'A', `MASQUE traffic went through PoP ${mHop.to}, expected A`);
  detail(`UDP probes through MASQUE (${PROBE_PPS}/s) reach the origin via PoP A`);
  return { proc, lines, says, probe };
}

/** Sends `count` datagrams of `payload` from as many source ports; returns what each worker got. */
async function sendToWorkers(net: Net, count: number, payload: Buffer, what: string): Promise<number[]> {
  const workerPackets = async () =>
    Promise.all(net.workers.map(async (w) => Number(/packets (\d+)/.exec(await w.ns.exec(['nft', 'list', 'table', 'netdev', 'cbrdemo']))![1])));
  const base = await workerPackets();
  await net.client.exec(['node', UDPSEND, ANYCAST, String(LB_PORT), String(count), '10', String(count), payload.toString('hex')], { timeoutMs: 30_000 });
  return waitFor(
    what,
    async () => {
      const d = (await workerPackets()).map((x, i) => x - base[i]!);
      return d.reduce((s, x) => s + x, 0) >= count ? d : undefined;
    },
    10_000,
  );
}

/** PoP A's XDP load balancer: new flows spread by Maglev, a QUIC connection kept by its CID. */
async function loadBalance(net: Net): Promise<void> {
  const [a] = net.pops;
  const lbStats0 = await xdpStats(a);
  const spread = await sendToWorkers(net, 300, quicLong(Buffer.alloc(8, 7)), 'the load-balanced flows at the workers');
  const sticky = await sendToWorkers(net, 40, quicShort(encodeCid({ configId: 0, serverId: 2 })), 'the QUIC connection at its worker');
  const lbStats1 = await xdpStats(a);
  say(`XDP load balancer on PoP A (VIP ${ANYCAST}:${LB_PORT}, 2 QUIC workers, IPIP via XDP_TX): 300 new flows → ${spread.join(' / ')} by Maglev`);
  detail(
    `one QUIC connection (server ID 2 in its CID) from 40 source ports → ${sticky.join(' / ')}: all on worker 2; cbr xdp stats: tx/lb_hash +${delta(lbStats1, lbStats0, 'tx', 'lb_hash')}, tx/lb_cid +${delta(lbStats1, lbStats0, 'tx', 'lb_cid')}`,
  );
  check(
    spread.every((n) => n >= 60),
    `Maglev spread 300 flows as ${spread.join(' / ')}`,
  );
  check(sticky[0] === 0 && sticky[1] === 40, `the QUIC connection was split over the workers: ${sticky.join(' / ')}`);
}

/** The attacker floods PoP A: the rate limit first, then the operator's live deny-list entry. */
async function attack(net: Net, wg: WireGuardClient): Promise<void> {
  const { attacker, attackerIf, routerMacToAttacker, client } = net;
  const [a] = net.pops;
  const tunnelProbe = wg.probe;
  const conf = join(net.work, 'flood.trafgen');
  const before = await xdpStats(a);
  const atkTx0 = await interfacePackets(attacker, attackerIf, 'tx');
  const popRx0 = await interfacePackets(a.ns, a.ifname, 'rx');
  const switchesBefore = tunnelProbe.switches.length;
  say(`attack: ${ATTACKER} floods ${ANYCAST} UDP 51820 with trafgen for 4 s (every source port); the client runs iperf3 through its tunnel meanwhile`);
  const tFlood = performance.now();
  const [, underFloodBps] = await Promise.all([
    flood(attacker, attackerIf, routerMacToAttacker, conf, 4),
    new Promise((r) => setTimeout(r, 500)).then(() => iperfGbps(client, 3)),
  ]);
  const floodSecs = (performance.now() - tFlood) / 1000;
  const after = await xdpStats(a);
  const atkSent = (await interfacePackets(attacker, attackerIf, 'tx')) - atkTx0;
  const popRx = (await interfacePackets(a.ns, a.ifname, 'rx')) - popRx0;
  const rl = delta(after, before, 'drop', 'ratelimit');
  const passed = delta(after, before, 'pass', 'ok');
  detail(
    `attacker sent ${atkSent.toLocaleString('en')} packets; PoP A's interface received ${popRx.toLocaleString('en')} in that time (the flood as the router forwarded it, plus the client's)`,
  );
  detail(
    `cbr xdp stats on PoP A: drop/ratelimit +${rl.toLocaleString('en')}, pass/ok +${passed.toLocaleString('en')} (limit ${RATE_PPS.toLocaleString('en')} packets/s per source)`,
  );
  detail(
    `client iperf3 through the tunnel during the flood: ${fmtRate(underFloodBps)} (before: ${fmtRate(wg.bps)}); tunnel probes stayed on PoP ${tunnelProbe.current}`,
  );
  // On a busy shared machine trafgen and the router may not push the flood past the limit; then the
  // rate limit has nothing to drop (the deny list below drops it either way).
  if (popRx / floodSecs > 1.5 * RATE_PPS)
    check(rl > 0, `the flood arrived at ${Math.round(popRx / floodSecs)} packets/s and the XDP rate limit dropped nothing`);
  else detail(`(the flood arrived at only ${Math.round(popRx / floodSecs).toLocaleString('en')} packets/s, near the limit: this machine is busy)`);
  check(tunnelProbe.switches.length === switchesBefore, 'the tunnel probe lost its path during the flood');

  const tDeny = performance.now();
  const deny = await runCli(['xdp', 'deny', 'add', '10.9.1.0/24', '--admin', `http://${a.addr}:${ADMIN_PORT}`], {
    netns: a.ns.name,
    env: { ...process.env, CBR_ADMIN_TOKEN: ADMIN_TOKEN },
  });
  check(deny.code === 0, `cbr xdp deny add: ${deny.stderr}`);
  say(
    `operator: cbr xdp deny add 10.9.1.0/24 on PoP A (live, no reload; the CLI call took ${ms(performance.now() - tDeny)}); the attacker floods again for 2 s`,
  );
  const before2 = await xdpStats(a);
  await flood(attacker, attackerIf, routerMacToAttacker, conf, 2);
  const after2 = await xdpStats(a);
  const denied = delta(after2, before2, 'drop', 'denylist');
  const leaked = delta(after2, before2, 'pass', 'ok') + delta(after2, before2, 'drop', 'ratelimit');
  detail(
    `cbr xdp stats on PoP A: drop/denylist +${denied.toLocaleString('en')}; rate-limit and pass counters moved by ${leaked} (only the client's own traffic)`,
  );
  check(denied > 0, 'the deny list dropped nothing');
}

/** PoP A's health fails: BGP withdraws it, and the anycast, WireGuard and MASQUE traffic moves to B. */
async function failover(net: Net, svc: Services, anycastProbe: Probe, wg: WireGuardClient, mq: MasqueClient): Promise<void> {
  const { prom } = svc;
  const { client } = net;
  const [a, b] = net.pops;
  const tunnelProbe = wg.probe;
  const masqueProbe = mq.probe;
  await new Promise((r) => setTimeout(r, 300 + Math.random() * 200));
  const nAny = anycastProbe.switches.length;
  const nTun = tunnelProbe.switches.length;
  const nMasque = masqueProbe.switches.length;
  const nMasqueLines = mq.lines.length;
  const tFail = performance.now();
  const tFailWall = performance.timeOrigin + tFail;
  rmSync(a.healthFile, { force: true });
  say(`failover: PoP A's health check starts failing (its check file is removed; interval 200 ms, fall 2)`);
  await waitFor('PoP A to report down', async () => ((await healthState(a)) === 'down' ? true : undefined), 10_000, 20);
  detail(`PoP A /healthz says "down" after ${ms(performance.now() - tFail)}`);
  const gone = await waitForRoute(net.rb.control, `${ANYCAST}/32`, (v) => !v.protocols.includes('pop_a'), 10_000, 5);
  check(gone.ok, `the router kept PoP A's route: ${JSON.stringify(gone.view)}`);
  detail(`the router withdrew PoP A's route ${ms(performance.now() - tFail)} after the failure; best path now via ${gone.view.from}`);
  const anySw = await anycastProbe.wait((s) => anycastProbe.switches.indexOf(s) >= nAny && s.to === 'B', 15_000, 'anycast probes to reach PoP B');
  detail(
    `anycast probes: answered by B from ${ms(anySw.firstToRecvMs - tFailWall)} after the failure; no answers for ${ms((await anycastProbe.outageAfter(tFailWall - 1000)).ms)} (${(await anycastProbe.outageAfter(tFailWall - 1000, 0)).unanswered} probes without an answer within 1 s)`,
  );
  // The client is a stock wireguard-go: on its own it would wait out its rekey timer (~15 s). B sees
  // A stop serving (A's report in the registry) and initiates the handshake to the client's last
  // endpoint, as A recorded it.
  const tunSw = await tunnelProbe
    .wait((s) => tunnelProbe.switches.indexOf(s) >= nTun && s.to === 'B', 40_000, 'tunnel traffic to resume through PoP B')
    .catch(async (err: Error) => {
      if (VERBOSE) await explainStuckTunnel(net, wg);
      throw err;
    });
  say(
    `WireGuard tunnel moved to PoP B: interruption ${ms((await tunnelProbe.outageAfter(tFailWall - 1000)).ms)} without answers, first answer through B ${ms(tunSw.firstToRecvMs - tFailWall)} after the failure (${(await tunnelProbe.outageAfter(tFailWall - 1000, 0)).unanswered} probes without an answer within 1 s; stock client: B initiated the handshake to the endpoint A recorded)`,
  );
  detail(`handshake initiations: client sent ${await wg.initiations(client)}, PoP B received ${await wg.initiations(b.ns)}`);
  const mSw = await masqueProbe.wait((s) => masqueProbe.switches.indexOf(s) >= nMasque && s.to === 'B', 40_000, 'MASQUE traffic to resume through PoP B');
  const reopened = await mq.says(/session open: connect-ip/, 5_000, nMasqueLines).catch(() => '');
  say(
    `MASQUE tunnel moved to PoP B: last answer through A ${ms(mSw.lastFromRecvMs - tFailWall)} and first through B ${ms(mSw.firstToRecvMs - tFailWall)} after the failure (no answers for ${ms((await masqueProbe.outageAfter(tFailWall - 1000)).ms)}, ${(await masqueProbe.outageAfter(tFailWall - 1000, 0)).unanswered} probes without an answer within 1 s; ${mq.lines.some((l) => /stateless reset/.test(l)) ? 'PoP B answered with a stateless reset and cbr connect reconnected at once' : 'cbr connect reconnected after its idle timeout'}${reopened ? `: ${reopened.replace(/^cbr connect: session open: connect-ip /, '')}` : ''})`,
  );
  const fetched = await fetch20MB(client, ORIGIN, 30, 'the fetch through PoP B');
  detail(`GET /bytes/20000000 through PoP B: ${fetched}`);

  const instanceA = `${a.addr}:${ADMIN_PORT}`;
  const seen = await waitFor(
    'prometheus to raise CbrPopWithdrawn for PoP A',
    async () => ((await prom.alerts()).some((x) => x.labels.alertname === 'CbrPopWithdrawn' && x.labels.instance === instanceA) ? true : undefined),
    15_000,
    250,
  )
    .then(() => true)
    .catch(() => false);
  check(seen, 'prometheus did not raise CbrPopWithdrawn for PoP A');
  const alerts = (await prom.alerts()).map(
    (x) => `${x.labels.alertname}${x.labels.reason ? `{reason=${x.labels.reason}}` : ''} on ${x.labels.instance} ${x.state}`,
  );
  say(`Prometheus has raised CbrPopWithdrawn for PoP A (firing after its 1 min "for:"); alerts now: ${alerts.join(', ')}`);

  anycastProbe.stop();
  tunnelProbe.stop();
  masqueProbe.stop();
}

/** CBR_DEMO_VERBOSE: what the WireGuard ends and PoP B saw when the tunnel did not move. */
async function explainStuckTunnel(net: Net, wg: WireGuardClient): Promise<void> {
  const [a, b] = net.pops;
  detail(`client: ${await net.client.exec(['wg', 'show', wg.ifname]).catch((e: Error) => e.message)}`);
  // The PoPs' UAPI sockets are in their agents' own /run/wireguard: ask the agents.
  for (const p of [b, a]) {
    detail(
      `${p.name}: ${await p.ns.exec(['curl', '-s', '-H', `authorization: Bearer ${ADMIN_TOKEN}`, `http://${p.addr}:${ADMIN_PORT}/v1/wireguard/admin/peers`]).catch((e: Error) => e.message)}`,
    );
  }
  for (const [n, ns] of [
    ['client', net.client],
    ['B', b.ns],
    ['A', a.ns],
  ] as const) {
    detail(
      `${n} conntrack/routes: ${await ns.exec(['sh', '-c', 'ip route; cat /proc/net/nf_conntrack 2>/dev/null | grep -c . ; nft list ruleset | head -30']).catch((e: Error) => e.message)}`,
    );
  }
  detail(`handshake initiations: client sent ${await wg.initiations(net.client)}, A got ${await wg.initiations(a.ns)}, B got ${await wg.initiations(b.ns)}`);
  detail(
    await b.ns.exec(['curl', '-s', '-H', `authorization: Bearer ${ADMIN_TOKEN}`, `http://${b.addr}:${ADMIN_PORT}/v1/xdp/stats`]).catch((e: Error) => e.message),
  );
  detail(JSON.stringify(wg.probe.switches));
}

/** Unless ONCE, waits for Ctrl-C with the agents up; then stops cbr connect and both agents gracefully. */
async function summary(net: Net, svc: Services, mq: MasqueClient): Promise<void> {
  if (!ONCE) {
    say('done. The agents stay up; their metrics (Ctrl-C to stop and remove everything):');
    detail(`Prometheus alerts: ip netns exec ${svc.mon.name} curl -s ${svc.prom.url}/api/v1/alerts`);
    for (const p of net.pops) {
      detail(`ip netns exec ${p.ns.name} curl -s ${p.addr}:${ADMIN_PORT}/metrics | grep ^cbr_`);
      detail(
        `status page http://${p.addr}:${ADMIN_PORT}/ in ${p.ns.name} (bearer ${ADMIN_TOKEN}); as a table: CBR_ADMIN_TOKEN=${ADMIN_TOKEN} ip netns exec ${p.ns.name} node dist/agent/cli.js status --admin http://${p.addr}:${ADMIN_PORT}`,
      );
      detail(`ip netns exec ${p.ns.name} node dist/agent/cli.js xdp stats --admin http://${p.addr}:${ADMIN_PORT}   # CBR_ADMIN_TOKEN=${ADMIN_TOKEN}`);
    }
    await new Promise<void>((resolve) => {
      interrupt = resolve;
    });
    process.stdout.write('\n');
  }
  const masque = mq.proc;
  const masqueExit = new Promise<number | null>((resolve) => (masque.exitCode !== null ? resolve(masque.exitCode) : masque.once('exit', (c) => resolve(c))));
  masque.kill('SIGINT');
  const mCode = await masqueExit;
  say(`cbr connect: Ctrl-C → exited ${mCode}, TUN removed`);
  for (const p of net.pops) {
    const r = await p.agent!.stop('SIGTERM');
    say(`PoP ${p.name}: SIGTERM → agent exited ${r.code ?? r.signal} in ${ms(r.ms)}`);
    check(r.code === 0, `PoP ${p.name}'s agent exited ${r.code ?? r.signal}`);
  }
}

async function demo(topo: Topology, work: string): Promise<void> {
  const net = await buildTopology(topo, work);
  const svc = await startPopAgents(net);
  const anycastProbe = await probeAnycast(net);
  const token = await takeToken(net, svc);
  const wg = await connectWireGuard(net, svc, token);
  const mq = await connectMasque(net, svc);
  await loadBalance(net);
  await attack(net, wg);
  await failover(net, svc, anycastProbe, wg, mq);
  await summary(net, svc, mq);
}

// Ctrl-C: while waiting, a graceful stop; during the run (or a second Ctrl-C), remove everything at once.
let interrupt: (() => void) | undefined;

async function main(): Promise<number> {
  const work = mkdtempSync(join(tmpdir(), 'cbr-demo-'));
  syncCleanups.push(() => rmSync(work, { recursive: true, force: true }));
  const topo = new Topology();
  // testhosts re-raises the signal after its own synchronous cleanup; the demo handles signals itself.
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.removeAllListeners(sig);
    process.on(sig, () => {
      if (interrupt) {
        const r = interrupt;
        interrupt = undefined;
        r();
        return;
      }
      process.stderr.write(`\n${sig}: removing everything the demo created\n`);
      topo.destroySync();
      runSyncCleanups();
      process.exit(130);
    });
  }
  let failed: Error | undefined;
  try {
    await demo(topo, work);
  } catch (err) {
    failed = err as Error;
  }
  await topo.destroy();
  runSyncCleanups();
  if (failed) {
    process.stderr.write(`demo failed: ${failed.message}\n`);
    say('removed the namespaces, processes, bpffs mount and temp files');
    return 1;
  }
  say('removed the namespaces, processes, bpffs mount and temp files; every step worked');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    runSyncCleanups();
    process.exit(1);
  },
);
