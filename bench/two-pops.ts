// The two-PoP anycast topology bench/demo and bench/failover stand on:
//
//   client ── router (BIRD, AS 65000) ──── PoP A (AS 65001, preferred: local-pref 200)
//                                   └──── PoP B (AS 65002)
//
// Each PoP has the anycast address on lo and a link to the router (10.0.<n>.2, the router 10.0.<n>.1);
// the client is 10.9.0.2 behind 10.9.0.1. The router's BIRD installs the best route into its kernel
// table, so client traffic to the anycast address follows BGP. popYamlBase renders the agent config
// parts both benches give a PoP: the external health check on a file and the BGP speaker.
import type { Namespace, Topology } from '../testhosts/index.js';
import { startRouterBird, type RouterBird } from '../bgp/testing.js';
import { join } from 'node:path';

export const ANYCAST = '198.51.100.1';
export const ROUTER_AS = 65000;

export interface TwoPopsPop {
  name: 'A' | 'B';
  ns: Namespace;
  /** The PoP's end of its link to the router, and the router's end. */
  ifname: string;
  routerIf: string;
  addr: string;
  routerAddr: string;
  as: number;
  /** The PoP is healthy while this file exists (the benches fail a PoP by removing it). */
  healthFile: string;
}

export interface TwoPops {
  router: Namespace;
  client: Namespace;
  pops: [TwoPopsPop, TwoPopsPop];
  rb: RouterBird;
}

export interface TwoPopsOptions {
  /**
   * The PoPs' default route prefers the anycast address as source, and 10.0.0.0/16 (the
   * infrastructure behind the router) keeps the unicast one: for servers that answer from the
   * route's preferred source (wireguard-go) where the client expects the anycast address.
   */
  anycastSource?: boolean;
}

/** Builds the router, client and both PoPs in `topo` and starts the router's BIRD (stopped on destroy). */
export async function buildTwoPops(topo: Topology, work: string, o: TwoPopsOptions = {}): Promise<TwoPops> {
  const router = await topo.namespace('router');
  const client = await topo.namespace('client');
  await router.sysctl('net.ipv4.ip_forward', '1');
  await topo.link(router, client, { aAddr: '10.9.0.1/24', bAddr: '10.9.0.2/24' });
  await client.exec(['ip', 'route', 'add', 'default', 'via', '10.9.0.1']);
  const pops: TwoPopsPop[] = [];
  for (const [name, n] of [
    ['A', 1],
    ['B', 2],
  ] as const) {
    const ns = await topo.namespace(`pop${name.toLowerCase()}`);
    const [rEnd, pEnd] = await topo.link(router, ns, { aAddr: `10.0.${n}.1/24`, bAddr: `10.0.${n}.2/24` });
    await ns.exec(['ip', 'addr', 'add', `${ANYCAST}/32`, 'dev', 'lo']);
    if (o.anycastSource) {
      await ns.exec(['ip', 'route', 'add', 'default', 'via', `10.0.${n}.1`, 'src', ANYCAST]);
      await ns.exec(['ip', 'route', 'add', '10.0.0.0/16', 'via', `10.0.${n}.1`, 'src', `10.0.${n}.2`]);
    } else await ns.exec(['ip', 'route', 'add', 'default', 'via', `10.0.${n}.1`]);
    pops.push({
      name,
      ns,
      ifname: pEnd.ifname,
      routerIf: rEnd.ifname,
      addr: `10.0.${n}.2`,
      routerAddr: `10.0.${n}.1`,
      as: ROUTER_AS + n,
      healthFile: join(work, `healthy-${name}`),
    });
  }
  const [a, b] = pops as [TwoPopsPop, TwoPopsPop];
  const rb = await startRouterBird(router, {
    routerId: '10.9.0.1',
    as: ROUTER_AS,
    kernel: true,
    neighbors: [
      { name: 'pop_a', address: a.addr, as: a.as, localPref: 200 },
      { name: 'pop_b', address: b.addr, as: b.as, localPref: 100 },
    ],
  });
  topo.onDestroy(() => rb.stop());
  return { router, client, pops: [a, b], rb };
}

/** How often the PoP's health check runs and how many results flip it. */
export interface CheckTiming {
  interval: string;
  rise: number;
  fall: number;
}

/** The fast profile both benches run PoPs with. */
export const FAST_CHECK: CheckTiming = { interval: '200ms', rise: 2, fall: 2 };

/** The agent config both benches give a PoP: log, lifecycle, the health check on its file, BGP to the router. */
export function popYamlBase(p: TwoPopsPop, check: CheckTiming): string {
  return `log:
  level: info
lifecycle:
  shutdownTimeout: 10s
health:
  checks:
    - name: service
      command: [test, -f, ${p.healthFile}]
      interval: ${check.interval}
      timeout: 1s
      rise: ${check.rise}
      fall: ${check.fall}
bgp:
  enabled: true
  routerId: ${p.addr}
  localAs: ${p.as}
  prefixes: [${ANYCAST}/32]
  peers:
    - name: upstream
      address: ${p.routerAddr}
      remoteAs: ${ROUTER_AS}
  timers: { hold: 3s, keepalive: 1s, connectRetry: 1s, connectDelay: 1s }
  drain: { wait: 1s }
  sessionCheck: { require: any, interval: 500ms, rise: 1, fall: 3 }
`;
}

/** The `tunnel:` egress and WireGuard lines both benches give a PoP (the demo's origins are private). */
export function popTunnelYaml(o: { wgIf: string; address: string; pool: string; deviceLimit: number; keyFile?: string; keepalive?: number }): string {
  return `tunnel:
  egress:
    # the bench's origins live in private ranges; everything else special-purpose stays refused
    allow: [10.0.100.0/24, 10.0.101.0/24]
  wireguard:
    enabled: true
    deviceLimit: ${o.deviceLimit}
    interfaces:
      - name: ${o.wgIf}
        listenPort: 51820
${o.keyFile ? `        privateKeyFile: ${o.keyFile}\n` : ''}        address: [${o.address}]
        pools: [${o.pool}]
        endpoint: ${ANYCAST}:51820
        clientAllowedIPs: [10.0.100.0/24]
${o.keepalive === undefined ? '' : `        persistentKeepalive: ${o.keepalive}\n`}`;
}
