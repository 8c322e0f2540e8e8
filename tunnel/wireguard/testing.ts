// Network-namespace topology for WireGuard tests and the bench: client — pop — origin, and a
// client-side wireguard-go brought up from the config the registration API returned.
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { uniqueName, type Topology, type Namespace } from '../../testhosts/index.js';
import { runCli, CLI_PATH, type AgentProcess } from '../../dataplane/testing.js';
import { UapiClient, uapiSocketPath } from './uapi-client.js';
import { generateSelfSigned, writeTlsMaterial } from '../quic/index.js';

export interface WgTopology {
  client: Namespace;
  pop: Namespace;
  origin: Namespace;
  /** The PoP's address as the client sees it (stands in for the anycast address). */
  popAddress: string;
  originAddress: string;
  originSubnet: string;
  /** Interface names of the pop—origin link (pop side, origin side). */
  popOriginIf: string;
  originIf: string;
}

/** client 192.168.50.2 — 192.168.50.1 pop 192.168.60.1 — 192.168.60.2 origin; the origin routes `tunnelPrefixes` back via the PoP. */
export async function wgTopology(topo: Topology, tunnelPrefixes: string[]): Promise<WgTopology> {
  const client = await topo.namespace('wgcli');
  const pop = await topo.namespace('wgpop');
  const origin = await topo.namespace('wgorg');
  await topo.link(client, pop, { aAddr: '192.168.50.2/24', bAddr: '192.168.50.1/24' });
  const [po, op] = await topo.link(pop, origin, { aAddr: ['192.168.60.1/24', 'fd60::1/64'], bAddr: ['192.168.60.2/24', 'fd60::2/64'] });
  await pop.sysctl('net.ipv4.ip_forward', '1');
  await pop.sysctl('net.ipv6.conf.all.forwarding', '1');
  for (const p of tunnelPrefixes) await origin.addRoute(p, p.includes(':') ? 'fd60::1' : '192.168.60.1');
  return {
    client,
    pop,
    origin,
    popAddress: '192.168.50.1',
    originAddress: '192.168.60.2',
    originSubnet: '192.168.60.0/24',
    popOriginIf: po.ifname,
    originIf: op.ifname,
  };
}

/** Waits until a UAPI socket answers get=1. */
export async function waitForUapi(ifname: string, timeoutMs = 10_000): Promise<void> {
  const client = new UapiClient(uapiSocketPath(ifname), 1_000);
  const until = Date.now() + timeoutMs;
  for (;;) {
    try {
      await client.get();
      return;
    } catch (err) {
      if (Date.now() > until) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Starts wireguard-go for `ifname` in `ns` (killed with the topology). */
/** Removes the UAPI socket a SIGKILLed wireguard-go leaves behind, when the topology goes. */
export function removeSocketOnDestroy(topo: Topology, ifname: string): void {
  topo.onDestroy(() => rmSync(uapiSocketPath(ifname), { force: true }));
}

export async function startWireguardGo(topo: Topology, ns: Namespace, ifname: string): Promise<void> {
  removeSocketOnDestroy(topo, ifname);
  const child = ns.spawn(['env', 'WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1', 'LOG_LEVEL=error', 'wireguard-go', '-f', ifname]);
  child.stdout?.resume();
  child.stderr?.resume();
  topo.track(child);
  await waitForUapi(ifname);
}

/**
 * Brings up the client's tunnel from the wg-quick text the API returned: adds the private key,
 * lets `wg-quick strip` turn it into a `wg setconf` file, and applies Address and AllowedIPs
 * routes with iproute2 (what wg-quick up would do, without its DNS and firewall handling).
 */
export async function clientTunnelFromWgQuick(
  topo: Topology,
  ns: Namespace,
  ifname: string,
  wgQuick: string,
  privateKey: string,
  routes: string[],
): Promise<void> {
  await startWireguardGo(topo, ns, ifname);
  const dir = mkdtempSync(join(tmpdir(), 'cbr-wgq-'));
  try {
    const file = join(dir, `${ifname}.conf`);
    writeFileSync(file, wgQuick.replace('[Interface]\n', `[Interface]\nPrivateKey = ${privateKey}\n`), { mode: 0o600 });
    const stripped = await ns.exec(['wg-quick', 'strip', file]);
    writeFileSync(file, stripped);
    await ns.exec(['wg', 'setconf', ifname, file]);
    const address = /^Address = (.+)$/m.exec(wgQuick)?.[1]?.split(/,\s*/) ?? [];
    for (const a of address) await ns.exec(['ip', 'address', 'add', a, 'dev', ifname, ...(a.includes(':') ? ['nodad'] : [])]);
    await ns.exec(['ip', 'link', 'set', 'dev', ifname, 'up']);
    for (const r of routes) await ns.exec(['ip', 'route', 'replace', r, 'dev', ifname]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Pings until one reply or the deadline; true when one came back. */
export async function pingUntil(ns: Namespace, address: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (await ns.ping(address, { count: 1, timeoutS: 1 })) return true;
  }
  return false;
}

/** Runs iperf3 (server in `server`, client in `client`) for `seconds`; resolves with Gbit/s received. */
export async function iperf3Gbps(topo: Topology, server: Namespace, client: Namespace, address: string, seconds: number, port = 5201): Promise<number> {
  const srv = server.spawn(['iperf3', '-s', '-1', '-p', String(port), '-B', address]);
  srv.stdout?.resume();
  srv.stderr?.resume();
  topo.track(srv);
  let lastErr: unknown;
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const out = await client.exec(['iperf3', '-c', address, '-p', String(port), '-t', String(seconds), '-J'], { timeoutMs: (seconds + 20) * 1000 });
      const j = JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } };
      return j.end.sum_received.bits_per_second / 1e9;
    } catch (err) {
      lastErr = err;
      await new Promise((r) => setTimeout(r, 100)); // the server may not be listening yet
    }
  }
  throw lastErr;
}

export const ISSUER_PORT = 9400;
export const ADMIN_PORT = 9780;
export const CLIENT_API_PORT = 8443;
export const PROJECT = '4242';
export const ADMIN_TOKEN = 'integration-admin-token-0123456789';

/** Starts `cbr dev-issuer` in `ns` with two service users (one with the vpn-user role, one without). */
export async function startIssuerIn(_topo: Topology, ns: Namespace, listen: string, dir: string): Promise<string> {
  const cfg = join(dir, 'issuer.yaml');
  writeFileSync(
    cfg,
    [
      'serviceUsers:',
      '  - { clientId: vpn-client, clientSecret: vpn-secret, roles: [vpn-user], subject: "user-1" }',
      '  - { clientId: vpn-client-2, clientSecret: vpn-secret, roles: [vpn-user], subject: "user-2" }',
      '  - { clientId: no-role, clientSecret: other-secret, roles: [viewer], subject: "user-9" }',
      '',
    ].join('\n'),
  );
  const child = ns.spawn([process.execPath, CLI_PATH, 'dev-issuer', '--listen', listen, '--project-id', PROJECT, '--config', cfg]);
  child.stderr?.resume();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('dev issuer did not start within 10 s')), 10_000);
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        const j = JSON.parse(l) as { issuer?: string };
        if (j.issuer) {
          clearTimeout(t);
          resolve(j.issuer);
        }
      } catch {
        /* not the line we want */
      }
    });
    child.once('exit', (code) => reject(new Error(`dev issuer exited (${code})`)));
  });
}

/** The auth section for the dev issuer startIssuerIn runs, rate limits off (tests and benches register in bursts). */
export function authYaml(issuer: string): string {
  return `auth:
  enabled: true
  issuer: ${issuer}
  allowInsecureIssuer: true  # the dev issuer serves http:// inside the test namespaces
  audience: ["${PROJECT}"]
  rateLimit:
    perSubject: { rate: 0 }
    perSource: { rate: 0 }
`;
}

/** `cbr connect` arguments for the dev issuer's vpn-client (client_credentials), IP mode on TUN `tun`. */
export function vpnClientConnectArgs(issuer: string, secretFile: string, tun: string): string[] {
  return ['--issuer', issuer, '--client-id', 'vpn-client', '--client-secret-file', secretFile, '--project-id', PROJECT, '--mode', 'ip', '--tun', tun];
}

export function agentYaml(o: {
  stateDir: string;
  issuer: string;
  ifname: string;
  extra?: string;
  admin: string;
  log?: string;
  /** The client HTTPS listener (registration), when set. */
  client?: { listen: string; certFile: string; keyFile: string };
}): string {
  return `log:
  level: ${o.log ?? 'debug'}
agent:
  stateDir: ${o.stateDir}
admin:
  listen: ${o.admin}
  apiToken: ${ADMIN_TOKEN}
${o.client ? `clientApi:\n  enabled: true\n  listen: ${o.client.listen}\n  certFile: ${o.client.certFile}\n  keyFile: ${o.client.keyFile}\n` : ''}${authYaml(o.issuer)}tunnel:
  egress:
    # the test origin sits in a private range
    allow: [192.168.60.0/24, "fd60::/64"]
  wireguard:
    enabled: true
    expiryInterval: 500ms
    deviceLimit: 100000
${o.extra ?? ''}    interfaces:
      - name: ${o.ifname}
        implementation: auto
        listenPort: 51820
        address: [10.88.0.1/24, "fd00:88::1/64"]
        pools: [10.88.0.0/24, "fd00:88::/64"]
        endpoint: 192.168.50.1:51820
        dns: [10.88.0.1]
        clientAllowedIPs: [192.168.60.0/24, "fd60::/64"]
`;
}

export interface WgPop {
  issuer: string;
  /** The agent's WireGuard interface (its UAPI socket is removed when the topology is). */
  ifname: string;
  adminUrl: string;
  /** The client HTTPS listener (registration) and the CA file that verifies it. */
  clientUrl: string;
  caFile: string;
  /** The agent's config (agentYaml) with `extra` lines in tunnel.wireguard. */
  yaml: (extra?: string) => string;
}

/** The dev issuer in the PoP namespace of `t` and the agent config for it: what the agent tests and bench/wireguard start from. */
export async function wgPop(topo: Topology, t: WgTopology, dir: string, o: { log?: string } = {}): Promise<WgPop> {
  const issuer = await startIssuerIn(topo, t.pop, `${t.popAddress}:${ISSUER_PORT}`, dir);
  const ifname = uniqueName('w');
  removeSocketOnDestroy(topo, ifname);
  const admin = `${t.popAddress}:${ADMIN_PORT}`;
  // The certificate names the PoP's address, so curl verifies it as a client would (IP SAN).
  const certFile = join(dir, 'client-api.crt');
  const keyFile = join(dir, 'client-api.key');
  writeTlsMaterial(await generateSelfSigned([t.popAddress]), certFile, keyFile);
  const client = { listen: `${t.popAddress}:${CLIENT_API_PORT}`, certFile, keyFile };
  return {
    issuer,
    ifname,
    adminUrl: `http://${admin}`,
    clientUrl: `https://${client.listen}`,
    caFile: certFile,
    yaml: (extra = '') => agentYaml({ stateDir: join(dir, 'state'), issuer, ifname, admin, extra, log: o.log, client }),
  };
}

/** Waits until the agent in `ns` answers /healthz with state up. */
export async function waitHealthy(ns: Namespace, adminUrl: string, agent: AgentProcess, timeoutMs = 20_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  // Health can be up before the last subsystem has started; wait for the agent to say it has.
  await Promise.race([
    agent.waitForLog((e) => e.msg === 'agent started', timeoutMs),
    agent.exited.then((e) => Promise.reject(new Error(`agent exited (${e.code ?? e.signal}):\n${agent.logLines.slice(-30).join('\n')}`))),
  ]);
  for (;;) {
    const early = await Promise.race([agent.exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 200))]);
    if (early) throw new Error(`agent exited (${early.code ?? early.signal}):\n${agent.logLines.slice(-30).join('\n')}`);
    const out = await ns.exec(['curl', '-s', '-m', '2', `${adminUrl}/healthz`]).catch(() => '');
    if (out.includes('"state": "up"')) return;
    if (Date.now() > until) throw new Error(`agent not healthy within ${timeoutMs} ms: ${out}\n${agent.logLines.slice(-30).join('\n')}`);
  }
}

/** A JSON response body as tests read it, field by field. */
// biome-ignore lint/suspicious/noExplicitAny: the tests assert on the fields they need
export type JsonBody = any;

/** An HTTP request from inside a namespace (curl); resolves with status and parsed JSON. */
export async function httpIn(
  ns: Namespace,
  method: string,
  url: string,
  opts: { token?: string; body?: string; cacert?: string } = {},
): Promise<{ status: number; json: JsonBody; text: string }> {
  const argv = ['curl', '-s', '-m', '10', '-X', method, '-w', '\n%{http_code}', '-H', 'content-type: application/json'];
  if (opts.cacert) argv.push('--cacert', opts.cacert);
  if (opts.token) argv.push('-H', `authorization: Bearer ${opts.token}`);
  if (opts.body !== undefined) argv.push('--data-binary', '@-');
  argv.push(url);
  const out = await ns.exec(argv, { input: opts.body ?? '' });
  const i = out.lastIndexOf('\n');
  const text = out.slice(0, i);
  let json: JsonBody;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: Number(out.slice(i + 1)), json, text };
}

export async function tokenFor(ns: Namespace, issuer: string, clientId: string, secret: string): Promise<string> {
  const r = await runCli(['auth', 'token', '--issuer', issuer, '--client-id', clientId, '--client-secret', secret, '--project-id', PROJECT], {
    netns: ns.name,
  });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim();
}
