// A WireGuard fleet in network namespaces, for tests and the bench: a core namespace with PostgreSQL
// (mutual TLS) and the dev issuer, N PoP namespaces each running an agent on the shared registry with
// the same interface name and key, and the anycast address on every PoP; a client behind a router
// linked to every PoP, whose route to the anycast address picks the PoP (anycast's nearest PoP).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PostgresHost, uniqueName, type Namespace, type Topology } from '../../testhosts/index.js';
import { PRIVATE_WIREGUARD_RUN, startAgent, type AgentProcess } from '../../dataplane/testing.js';
import { generatePrivateKey } from './keys.js';
import { ADMIN_PORT, ADMIN_TOKEN, agentYaml, httpIn, startIssuerIn, type JsonBody } from './testing.js';

export const ANYCAST = '198.51.100.1';
/** The PoPs' tunnel address (the same on every PoP), which a client pings through the tunnel. */
export const TUNNEL_GATEWAY = '10.88.0.1';
const CORE = '10.70.0.1';

export interface FleetPop {
  name: string;
  ns: Namespace;
  /** The PoP's unicast address on the client side (its admin listener). */
  addr: string;
  adminUrl: string;
  agent?: AgentProcess;
  yaml: string;
}

export interface WgFleet {
  core: Namespace;
  client: Namespace;
  router: Namespace;
  pg: PostgresHost;
  issuer: string;
  ifname: string;
  pops: FleetPop[];
  /** Sends the client's anycast traffic to PoP `i`. */
  routeTo(i: number): Promise<void>;
  /** Starts (or restarts) PoP `i`'s agent and waits until its WireGuard serves. */
  start(i: number): Promise<AgentProcess>;
  /** GET/DELETE on PoP `i`'s admin API (with the admin token). */
  admin(i: number, method: string, path: string): Promise<{ status: number; json: JsonBody }>;
  /** The peers PoP `i` lists (its local copy), keyed by public key. */
  peers(i: number): Promise<Map<string, { onDevice: boolean; latestHandshakeAgeSeconds?: number; endpoint?: string }>>;
}

export async function wgFleet(topo: Topology, n: number, dir: string): Promise<WgFleet> {
  const core = await topo.namespace('core');
  const client = await topo.namespace('wgcli');
  const router = await topo.namespace('router');
  await topo.link(client, router, { aAddr: '192.168.49.2/24', bAddr: '192.168.49.1/24' });
  await client.exec(['ip', 'route', 'add', 'default', 'via', '192.168.49.1']);
  await router.sysctl('net.ipv4.ip_forward', '1');
  await core.exec(['ip', 'addr', 'add', `${CORE}/32`, 'dev', 'lo']);
  const pg = await PostgresHost.start({ netns: core.name, address: CORE });
  topo.onDestroy(() => pg.stop());
  const issuer = await startIssuerIn(topo, core, `${CORE}:9400`, dir);
  const ifname = uniqueName('w');
  // One key for the anycast service: a client's config names one server key, whatever PoP answers.
  const keyFile = join(dir, 'wg.key');
  writeFileSync(keyFile, `${generatePrivateKey()}\n`, { mode: 0o600 });
  const role = pg.roles[0]!;
  const pops: FleetPop[] = [];
  for (let i = 0; i < n; i++) {
    const name = String.fromCharCode(65 + i);
    const ns = await topo.namespace(`pop${name}`);
    await topo.link(core, ns, { aAddr: `10.70.${i + 1}.1/24`, bAddr: `10.70.${i + 1}.2/24` });
    await ns.addRoute(`${CORE}/32`, `10.70.${i + 1}.1`);
    const addr = `192.168.${50 + i}.1`;
    await topo.link(router, ns, { aAddr: `192.168.${50 + i}.2/24`, bAddr: `${addr}/24` });
    await ns.exec(['ip', 'addr', 'add', `${ANYCAST}/32`, 'dev', 'lo']);
    // Clients are reached through the router, from the anycast address (WireGuard answers from it).
    await ns.exec(['ip', 'route', 'add', '192.168.49.0/24', 'via', `192.168.${50 + i}.2`, 'src', ANYCAST]);
    const base = agentYaml({ stateDir: join(dir, `pop-${name}`), issuer, ifname, admin: `${addr}:${ADMIN_PORT}` });
    const yaml = `${base
      .replace('agent:\n', `agent:\n  name: pop-${name.toLowerCase()}\n`)
      .replace('implementation: auto', `implementation: userspace\n        privateKeyFile: ${keyFile}`)
      .replace('endpoint: 192.168.50.1:51820', `endpoint: ${ANYCAST}:51820`)
      .replace(
        'clientAllowedIPs: [192.168.60.0/24, "fd60::/64"]',
        'clientAllowedIPs: [10.88.0.0/24]',
      )}registry:\n  postgres:\n    url: "${pg.url(role)}&target_session_attrs=read-write"\n    passwordFile: ${pg.passwordFile(role)}\n    catchUpInterval: 1s\n`;
    pops.push({ name, ns, addr, adminUrl: `http://${addr}:${ADMIN_PORT}`, yaml });
  }
  topo.onDestroy(async () => {
    for (const p of pops) await p.agent?.stop('SIGKILL').catch(() => undefined);
  });
  const fleet: WgFleet = {
    core,
    client,
    router,
    pg,
    issuer,
    ifname,
    pops,
    async routeTo(i) {
      await router.exec(['ip', 'route', 'replace', `${ANYCAST}/32`, 'via', pops[i]!.addr]);
    },
    async start(i) {
      const p = pops[i]!;
      await p.agent?.stop('SIGTERM').catch(() => undefined);
      p.agent = await startAgent(p.yaml, { netns: p.ns.name, wrap: PRIVATE_WIREGUARD_RUN });
      await Promise.race([
        p.agent.waitForLog((e) => e.msg === 'agent started', 30_000),
        p.agent.exited.then((e) =>
          Promise.reject(new Error(`PoP ${p.name}'s agent exited (${e.code ?? e.signal}):\n${p.agent!.logLines.slice(-20).join('\n')}`)),
        ),
      ]);
      return p.agent;
    },
    async admin(i, method, path) {
      const p = pops[i]!;
      return httpIn(p.ns, method, `${p.adminUrl}${path}`, { token: ADMIN_TOKEN });
    },
    async peers(i) {
      const r = await fleet.admin(i, 'GET', '/v1/wireguard/admin/peers');
      if (r.status !== 200) throw new Error(`PoP ${pops[i]!.name}: GET /v1/wireguard/admin/peers → ${r.status}`);
      return new Map((r.json.peers as Array<{ publicKey: string; onDevice: boolean }>).map((p) => [p.publicKey, p]));
    },
  };
  return fleet;
}

/**
 * Pings `address` from `ns` every `intervalMs` while `during` runs and for `afterMs` more; resolves
 * with the longest time between two replies after `during` started, and the replies counted.
 */
export async function pingGap(ns: Namespace, address: string, during: () => Promise<void>, o: { intervalMs?: number; afterMs?: number } = {}) {
  const interval = o.intervalMs ?? 20;
  const child = ns.spawn(['ping', '-n', '-D', '-i', String(interval / 1000), '-W', '1', address]);
  const replies: number[] = [];
  let buf = '';
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      const m = /^\[(\d+\.\d+)\] \d+ bytes from/.exec(buf.slice(0, nl));
      if (m) replies.push(Number(m[1]) * 1000);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
  });
  child.stderr?.resume();
  try {
    await new Promise((r) => setTimeout(r, 500));
    const t0 = Date.now();
    await during();
    await new Promise((r) => setTimeout(r, o.afterMs ?? 5_000));
    let gap = 0;
    let prev: number | undefined;
    for (const t of replies) {
      if (prev !== undefined && t >= t0) gap = Math.max(gap, t - prev);
      prev = t;
    }
    // No reply at all since `during` started: the gap is the whole wait.
    if (!replies.some((t) => t >= t0)) gap = Date.now() - t0;
    return { gapMs: Math.round(gap), replies: replies.filter((t) => t >= t0).length };
  } finally {
    child.kill('SIGINT');
  }
}
