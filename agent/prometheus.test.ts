// Debian's prometheus in its own namespace scrapes a real agent (XDP filter, BGP to a router's BIRD,
// auth against the dev issuer, MASQUE and WireGuard): every query of docs/grafana/cbr.json must
// return data through Prometheus's HTTP API, and the rules of docs/prometheus/cbr-rules.yml must
// load (promtool) and fire for real: a PoP withdrawn, a child restarting, a high drop rate by reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { withTopology, waitFor, uniqueName, killAndWait, startPrometheus, type Namespace } from '../testhosts/index.js';
import { startAgent, CLI_PATH } from '../dataplane/testing.js';
import { waitForRoute } from '../bgp/testing.js';
import { generateSelfSigned, writeTlsMaterial } from '../tunnel/quic/index.js';
import { generatePrivateKey, publicKeyFor } from '../tunnel/wireguard/keys.js';
import { startIssuerIn, httpIn, tokenFor, removeSocketOnDestroy, clientTunnelFromWgQuick, pingUntil, PROJECT } from '../tunnel/wireguard/testing.js';
import { routerAndPop, popAgentYaml, ANYCAST_PREFIX, DENIED_SOURCE } from './testing.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const DASHBOARD = join(ROOT, 'docs', 'grafana', 'cbr.json');
const RULES = join(ROOT, 'docs', 'prometheus', 'cbr-rules.yml');
const RULE_TESTS = join(ROOT, 'docs', 'prometheus', 'cbr-rules.test.yml');
const UDPSEND = join(ROOT, 'dist', 'xdp', 'udpsend.js');
const ADMIN_PORT = 9780;
/** A load-balanced service on the PoP (XDP encapsulates to the backend and sends it back out). */
const LB_VIP = '198.51.100.7';
/**
 * Series that exist only under a config this test does not use; for these the test checks that the
 * agent exposes the metric (its HELP/TYPE reached Prometheus), so a wrong name still fails.
 */
const CONFIG_DEPENDENT: Record<string, string> = {
  cbr_auth_introspections_total: 'auth.introspection.mode introspect-opaque or introspect-always',
};
const ADMIN_TOKEN = 'prometheus-test-admin-token-0123';

interface Panel {
  title?: string;
  targets?: Array<{ expr?: string; refId?: string }>;
  panels?: Panel[];
}

/** Every (panel, expr) of the dashboard, rows' nested panels included. */
function dashboardQueries(): Array<{ panel: string; expr: string }> {
  const d = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] };
  const out: Array<{ panel: string; expr: string }> = [];
  const walk = (ps: Panel[]) => {
    for (const p of ps) {
      for (const t of p.targets ?? []) if (t.expr) out.push({ panel: p.title ?? '?', expr: t.expr });
      walk(p.panels ?? []);
    }
  };
  walk(d.panels);
  return out;
}

/** Grafana's variables as Grafana would expand them for "All PoPs" and a 1 s scrape interval. */
const expand = (expr: string) => expr.replaceAll('$pop', '.*').replaceAll('$__rate_interval', '30s');

test('promtool: the shipped rules load and their unit tests pass', () => {
  assert.match(execFileSync('promtool', ['check', 'rules', RULES], { encoding: 'utf8' }), /SUCCESS: \d+ rules found/);
  assert.match(execFileSync('promtool', ['test', 'rules', RULE_TESTS], { encoding: 'utf8' }), /SUCCESS/);
});

test('prometheus scrapes a real agent: every dashboard query has data; the rules fire', { timeout: 170_000 }, async () => {
  await withTopology(async (topo) => {
    const t = await routerAndPop(topo);
    const { router, pop } = t;
    const mon = await topo.namespace('mon');
    await topo.link(mon, pop, { aAddr: '10.0.9.1/24', bAddr: '10.0.9.2/24' });
    await mon.exec(['ip', 'link', 'set', 'lo', 'up']);

    const issuer = await startIssuerIn(topo, pop, '10.0.1.2:9400', t.work);
    const tls = await generateSelfSigned(['pop.test', '10.0.1.2']);
    const certFile = join(t.work, 'pop.crt');
    const keyFile = join(t.work, 'pop.key');
    writeTlsMaterial(tls, certFile, keyFile);
    const wgIf = uniqueName('w');
    removeSocketOnDestroy(topo, wgIf);
    const routerMac = JSON.parse(await router.exec(['ip', '-j', 'link', 'show', t.routerEnd.ifname]))[0].address as string;
    const extra = `auth:
  enabled: true
  issuer: ${issuer}
  allowInsecureIssuer: true
  audience: ["${PROJECT}"]
tunnel:
  wireguard:
    enabled: true
    interfaces:
      - name: ${wgIf}
        listenPort: 51820
        address: [10.88.0.1/24]
        pools: [10.88.0.0/24]
        endpoint: 10.0.1.2:51820
        clientAllowedIPs: [10.0.100.0/24]
  masque:
    enabled: true
    listen: 0.0.0.0:4433
    tls: { certFile: ${certFile}, keyFile: ${keyFile} }
    udp: { allowPrivate: true }
    ip: { enabled: false }
`;
    const lb = `  lb:
    vips: [{ address: ${LB_VIP}, port: 4434, protocol: udp }]
    backends: [{ address: 10.0.1.1, weight: 1 }]
    nextHopMac: "${routerMac}"
    encapSourceV4: 10.0.1.2
`;
    const agent = await startAgent(popAgentYaml(t, { listen: `0.0.0.0:${ADMIN_PORT}`, apiToken: ADMIN_TOKEN, drainWait: '1s', xdpExtra: lb, extra }), {
      netns: pop.name,
    });
    topo.onDestroy(async () => void (await agent.stop('SIGKILL')));
    await agent.waitForLog((e) => e.msg === 'agent started', 40_000);
    assert.ok((await waitForRoute(t.bird.control, ANYCAST_PREFIX, (r) => r.present, 30_000)).ok, `router never learned ${ANYCAST_PREFIX}`);

    const prom = await startPrometheus(topo, mon, {
      targets: [`10.0.9.2:${ADMIN_PORT}`],
      rulesFile: RULES,
      // Real firing within the test's time: no `for:` waits (their logic is covered by promtool test rules).
      rewrite: (text) => text.replace(/^(\s+for:) \S+$/gm, '$1 0s'),
    });

    // Traffic and events every panel is about: a WireGuard registration, a MASQUE session that
    // carries datagrams and ends, a config reload, denied and passed packets.
    const token = await tokenFor(router, issuer, 'vpn-client', 'vpn-secret');
    const wgKey = generatePrivateKey();
    const reg = await httpIn(router, 'POST', `http://10.0.1.2:${ADMIN_PORT}/v1/wireguard/peers`, {
      token,
      body: JSON.stringify({ publicKey: publicKeyFor(wgKey) }),
    });
    assert.equal(reg.status, 201, reg.text);
    // A WireGuard handshake (the handshake-age panels): the router brings the tunnel up and sends
    // into it (nothing answers behind the PoP here; the handshake is what counts).
    await clientTunnelFromWgQuick(topo, router, uniqueName('c'), reg.json.wgQuick, wgKey, reg.json.allowedIPs);
    await pingUntil(router, '10.0.100.1', 2_000);
    await masqueSession(router, token, certFile);
    agent.proc.kill('SIGHUP');
    await agent.waitForLog((e) => e.msg === 'config reloaded', 15_000);
    // A datagram too short for QUIC (MASQUE drops by reason) and a few to the load-balanced VIP.
    await router.exec([process.execPath, UDPSEND, '10.0.1.2', '4433', '3', '2', '1', '40']);
    await router.exec(['ip', 'route', 'add', `${LB_VIP}/32`, 'via', '10.0.1.2']);
    await router.exec([process.execPath, UDPSEND, LB_VIP, '4434', '20', '2', '4']);
    for (const src of [DENIED_SOURCE, '10.0.1.1']) topo.track(router.spawn(['ping', '-q', '-c', '100', '-i', '0.1', '-I', src, '10.0.1.2']));

    // Every dashboard query returns data once a few scrapes have happened.
    const queries = dashboardQueries();
    assert.ok(queries.length >= 30, `only ${queries.length} queries found in ${DASHBOARD}`);
    // The first scrape may not have happened yet on a loaded machine.
    const pops = await waitFor(
      'prometheus to have scraped the agent',
      async () => {
        const v = await prom.api<string[]>('label/instance/values', { 'match[]': 'cbr_build_info' });
        return v.length ? v : undefined;
      },
      30_000,
      250,
    );
    assert.deepEqual(pops, [`10.0.9.2:${ADMIN_PORT}`], 'the dashboard variable $pop');
    let empty: string[] = [];
    await waitFor(
      'every dashboard query to return data',
      async () => {
        empty = [];
        for (const q of queries) {
          if ((await prom.query(expand(q.expr))).length > 0) continue;
          const needs = Object.keys(CONFIG_DEPENDENT).find((m) => q.expr.includes(m));
          if (needs && (await prom.api<unknown[]>('targets/metadata', { metric: needs })).length > 0) continue;
          empty.push(`${q.panel}: ${q.expr}`);
        }
        return empty.length === 0 ? true : undefined;
      },
      30_000,
      1_000,
    ).catch(() => assert.fail(`queries without data:\n${empty.join('\n')}`));

    // Nothing fires while the PoP is healthy and quiet.
    const firing = async (name: string, match: Record<string, string> = {}) =>
      (await prom.alerts()).some((a) => a.labels.alertname === name && a.state === 'firing' && Object.entries(match).every(([k, v]) => a.labels[k] === v));
    await waitFor('the start-up alerts to clear', async () => ((await firing('CbrPopWithdrawn')) ? undefined : true), 20_000, 500);
    for (const name of ['CbrXdpDropRateHigh', 'CbrChildRestarting', 'CbrHealthDown', 'CbrAgentDown'])
      assert.equal(await firing(name), false, `${name} fires on a healthy PoP`);

    // A flood from a denied source: CbrXdpDropRateHigh for reason denylist.
    await router.exec([process.execPath, UDPSEND, '10.0.1.2', '9', '400000', '3', '1', '', DENIED_SOURCE], { timeoutMs: 30_000 });
    await waitFor(
      'CbrXdpDropRateHigh{reason="denylist"}',
      async () => ((await firing('CbrXdpDropRateHigh', { reason: 'denylist' })) ? true : undefined),
      20_000,
      500,
    );

    // BIRD killed: the supervisor restarts it, CbrChildRestarting{child="bird"}.
    const status = JSON.parse(await pop.exec(['curl', '-sf', '-H', `authorization: Bearer ${ADMIN_TOKEN}`, `http://127.0.0.1:${ADMIN_PORT}/v1/status`])) as {
      children: Array<{ name: string; pid?: number }>;
    };
    const bird = status.children.find((c) => c.name === 'bird');
    assert.ok(bird?.pid, JSON.stringify(status.children));
    process.kill(bird.pid, 'SIGKILL');
    await waitFor('CbrChildRestarting{child="bird"}', async () => ((await firing('CbrChildRestarting', { child: 'bird' })) ? true : undefined), 20_000, 500);

    // Health check fails: the PoP withdraws, CbrPopWithdrawn and CbrHealthDown.
    rmSync(t.healthFile);
    await waitFor('CbrPopWithdrawn', async () => ((await firing('CbrPopWithdrawn')) ? true : undefined), 20_000, 500);
    assert.equal(await firing('CbrHealthDown'), true);
    // and back: the alert resolves once the PoP announces again
    writeFileSync(t.healthFile, '');
    await waitFor('CbrPopWithdrawn to resolve', async () => ((await firing('CbrPopWithdrawn')) ? undefined : true), 20_000, 500);
  });
});

/** A connect-udp session from the router to a UDP echo on the router itself, a few datagrams, then closed. */
async function masqueSession(router: Namespace, token: string, caFile: string): Promise<void> {
  const echo = router.spawn([
    process.execPath,
    '-e',
    "const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(7007,'10.0.1.1');",
  ]);
  const c = router.spawn([
    process.execPath,
    CLI_PATH,
    'connect',
    '--server',
    '10.0.1.2:4433',
    '--server-name',
    'pop.test',
    '--ca',
    caFile,
    '--token',
    token,
    '--mode',
    'udp',
    '--target',
    '10.0.1.1:7007',
    '--listen',
    '127.0.0.1:17007',
  ]);
  let err = '';
  c.stderr?.on('data', (d) => (err += d));
  c.stdout?.resume();
  await waitFor(`cbr connect to open a session (it said: ${err})`, async () => (/session open: connect-udp/.test(err) ? true : undefined), 15_000, 100);
  const ping = `const s=require('dgram').createSocket('udp4');let n=0;s.on('message',()=>{if(++n===5)process.exit(0);s.send('x',17007,'127.0.0.1')});s.send('x',17007,'127.0.0.1');setTimeout(()=>process.exit(1),5000)`;
  await router.exec([process.execPath, '-e', ping], { timeoutMs: 10_000 });
  await killAndWait(c, 5_000, 'SIGINT');
  await killAndWait(echo);
}
