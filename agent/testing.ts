// Test helpers for whole-agent tests (the status page, Prometheus): an upstream router running its
// own BIRD and a PoP namespace whose agent supervises BIRD and attaches the XDP filter to the link.
import { mkdirSync, mkdtempSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { run, type Topology, type Namespace, type VethEnd } from '../testhosts/index.js';
import { startRouterBird, type RouterBird } from '../bgp/testing.js';

const BARE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'xdp', 'build', 'bare.bpf.o');
export const ANYCAST_PREFIX = '198.51.100.1/32';
/** A source address on the router that the PoP's filter denies (in 10.0.1.64/28). */
export const DENIED_SOURCE = '10.0.1.66';

export interface RouterAndPop {
  router: Namespace;
  pop: Namespace;
  routerEnd: VethEnd;
  popEnd: VethEnd;
  bird: RouterBird;
  /** Temp dir of the test (state, health file), removed on destroy. */
  work: string;
  /** The PoP's health check passes while this file exists. */
  healthFile: string;
  bpffs: string;
}

/**
 * router (10.0.1.1 and DENIED_SOURCE, BIRD AS 65000) ── pop (10.0.1.2). The bpffs under /run (which
 * `ip netns exec` does not remount) and the pinned XDP objects are removed on destroy.
 */
export async function routerAndPop(topo: Topology): Promise<RouterAndPop> {
  const bpffs = `/run/cbr-t${process.pid}-bpf-${Math.random().toString(36).slice(2, 8)}`;
  mkdirSync(bpffs, { recursive: true });
  await run(['mount', '-t', 'bpf', 'bpf', bpffs]);
  // Unmounting drops the pins; deleting the namespace removes the veth and with it the attachment.
  topo.onDestroy(async () => {
    await run(['umount', bpffs]).catch(() => undefined);
    rmdirSync(bpffs);
  });
  const router = await topo.namespace('router');
  const pop = await topo.namespace('pop');
  const [routerEnd, popEnd] = await topo.link(router, pop, { aAddr: ['10.0.1.1/24', `${DENIED_SOURCE}/24`], bAddr: ['10.0.1.2/24'] });
  // XDP_PASS to the peer of a veth with native XDP needs NAPI on the sender side as well
  await router.exec(['ip', 'link', 'set', 'dev', routerEnd.ifname, 'xdpdrv', 'obj', BARE, 'sec', 'xdp']);
  await pop.exec(['ip', 'link', 'set', 'lo', 'up']);
  const bird = await startRouterBird(router, { routerId: '10.0.1.1', as: 65000, neighbors: [{ name: 'pop4', address: '10.0.1.2', as: 65001 }] });
  topo.onDestroy(() => bird.stop());
  const work = mkdtempSync(join(tmpdir(), 'cbr-agent-it-'));
  topo.onDestroy(() => rmSync(work, { recursive: true, force: true }));
  const healthFile = join(work, 'healthy');
  writeFileSync(healthFile, '');
  return { router, pop, routerEnd, popEnd, bird, work, healthFile, bpffs };
}

/** The PoP agent's config: health file check, XDP filter denying 10.0.1.64/28, BGP to the router; `extra` appended. */
export function popAgentYaml(
  t: RouterAndPop,
  o: { listen: string; apiToken?: string; name?: string; drainWait?: string; xdpExtra?: string; extra?: string },
): string {
  return `admin:
  listen: ${o.listen}
${o.apiToken ? `  apiToken: ${o.apiToken}\n` : ''}agent:
  name: ${o.name ?? 'pop-test-1'}
  stateDir: ${join(t.work, 'state')}
lifecycle:
  shutdownTimeout: 40s
health:
  checks:
    - name: svc
      command: [test, -f, ${t.healthFile}]
      interval: 200ms
      timeout: 1s
      rise: 1
      fall: 1
xdp:
  enabled: true
  interface: ${t.popEnd.ifname}
  pinRoot: ${t.bpffs}
  mode: native
  deny:
    prefixes: [10.0.1.64/28]
${o.xdpExtra ?? ''}bgp:
  enabled: true
  routerId: 10.0.1.2
  localAs: 65001
  prefixes: [${ANYCAST_PREFIX}]
  peers:
    - name: up4
      address: 10.0.1.1
      remoteAs: 65000
  timers: { hold: 3s, keepalive: 1s, connectRetry: 1s, connectDelay: 1s }
  drain: { wait: ${o.drainWait ?? '30s'} }
  sessionCheck: { require: any, interval: 500ms, rise: 1, fall: 2 }
  bird: { statusInterval: 500ms }
${o.extra ?? ''}`;
}
