// Bench: WireGuard termination. registrations_per_s through the whole API path (HTTP, JWT
// verification, SQLite commit, UAPI set); tcp_gbps_supervised through the agent-managed interface
// and tcp_gbps_plain through a wireguard-go pair configured by hand with `wg`, same topology, same
// run, runs alternated. QUICK=1 for a short run.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { withTopology, uniqueName } from '../testhosts/index.js';
import { writeBenchResult } from './results.js';
import { startAgent, type AgentProcess } from '../dataplane/testing.js';
import { generatePrivateKey, publicKeyFor } from '../tunnel/wireguard/keys.js';
import { withSecretFile } from '../tunnel/wireguard/wg-tool.js';
import {
  wgTopology,
  wgPop,
  clientTunnelFromWgQuick,
  startWireguardGo,
  pingUntil,
  iperf3Gbps,
  waitHealthy,
  httpIn,
  tokenFor,
} from '../tunnel/wireguard/testing.js';

const QUICK = process.env.QUICK === '1';
const REGISTRATIONS = QUICK ? 200 : 1000;
const CONCURRENCY = 16;
const IPERF_SECONDS = QUICK ? 3 : 10;
const ROUNDS = QUICK ? 1 : 3;

// Runs inside the client namespace: POSTs every key with `CONCURRENCY` requests in flight; prints JSON.
const REGISTER_SCRIPT = `
const [url, token, keysFile, conc] = process.argv.slice(1);
const keys = (await import('node:fs')).readFileSync(keysFile, 'utf8').trim().split('\\n');
let next = 0, ok = 0, failed = 0;
const addrs = new Set();
const t0 = performance.now();
async function worker() {
  while (next < keys.length) {
    const k = keys[next++];
    const r = await fetch(url, { method: 'POST', headers: { authorization: 'Bearer ' + token, 'content-type': 'application/json' }, body: JSON.stringify({ publicKey: k }) });
    const j = await r.json();
    if (r.status === 201) { ok++; addrs.add(j.addresses.ipv4); } else failed++;
  }
}
await Promise.all(Array.from({ length: Number(conc) }, worker));
const s = (performance.now() - t0) / 1000;
console.log(JSON.stringify({ ok, failed, distinct: addrs.size, seconds: s }));
`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

await withTopology(async (topo) => {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-wgbench-'));
  let agent: AgentProcess | undefined;
  try {
    const t = await wgTopology(topo, ['10.88.0.0/16', 'fd00:88::/64', '10.99.0.0/24']);
    // A second origin address reached only through the hand-configured tunnel.
    await t.pop.exec(['ip', 'address', 'add', '192.168.61.1/24', 'dev', t.popOriginIf]);
    await t.origin.exec(['ip', 'address', 'add', '192.168.61.2/24', 'dev', t.originIf]);
    const pop = await wgPop(topo, t, dir, { log: 'info' });
    const { issuer, adminUrl } = pop;
    const yaml = pop
      .yaml()
      .replace('address: [10.88.0.1/24', 'address: [10.88.0.1/16')
      .replace('pools: [10.88.0.0/24', 'pools: [10.88.0.0/16')
      .replace('clientAllowedIPs: [192.168.60.0/24, "fd60::/64"]', 'clientAllowedIPs: [192.168.60.2/32]');
    agent = await startAgent(yaml, { netns: t.pop.name, env: { CBR_LOG_LEVEL: 'info' } });
    await waitHealthy(t.pop, adminUrl, agent);
    const token = await tokenFor(t.client, issuer, 'vpn-client', 'vpn-secret');

    // Data path first (an empty device), then the registration load.
    const priv = generatePrivateKey();
    const reg = await httpIn(t.client, 'POST', `${adminUrl}/v1/wireguard/peers`, { token, body: JSON.stringify({ publicKey: publicKeyFor(priv) }) });
    if (reg.status !== 201) throw new Error(`registration failed: ${reg.status} ${reg.text}`);
    await clientTunnelFromWgQuick(topo, t.client, uniqueName('c'), reg.json.wgQuick, priv, reg.json.allowedIPs);
    if (!(await pingUntil(t.client, t.originAddress, 15_000))) throw new Error('no ping through the supervised tunnel');

    // The baseline: wireguard-go on both ends configured by hand with wg, same namespaces and veths.
    const plainPop = uniqueName('p');
    const plainCli = uniqueName('q');
    await startWireguardGo(topo, t.pop, plainPop);
    await startWireguardGo(topo, t.client, plainCli);
    const popKey = generatePrivateKey();
    const cliKey = generatePrivateKey();
    await withSecretFile(dir, `${popKey}\n`, (f) =>
      t.pop.exec(['wg', 'set', plainPop, 'listen-port', '51821', 'private-key', f, 'peer', publicKeyFor(cliKey), 'allowed-ips', '10.99.0.2/32']),
    );
    await withSecretFile(dir, `${cliKey}\n`, (f) =>
      t.client.exec([
        'wg',
        'set',
        plainCli,
        'private-key',
        f,
        'peer',
        publicKeyFor(popKey),
        'endpoint',
        `${t.popAddress}:51821`,
        'allowed-ips',
        '192.168.61.2/32',
      ]),
    );
    for (const [ns, dev, addr] of [
      [t.pop, plainPop, '10.99.0.1/24'],
      [t.client, plainCli, '10.99.0.2/24'],
    ] as const) {
      await ns.exec(['ip', 'link', 'set', 'dev', dev, 'mtu', '1420']);
      await ns.addAddress(dev, addr);
    }
    await t.client.exec(['ip', 'route', 'replace', '192.168.61.2/32', 'dev', plainCli]);
    if (!(await pingUntil(t.client, '192.168.61.2', 15_000))) throw new Error('no ping through the plain tunnel');

    const supervised: number[] = [];
    const plain: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      supervised.push(await iperf3Gbps(topo, t.origin, t.client, t.originAddress, IPERF_SECONDS, 5201));
      plain.push(await iperf3Gbps(topo, t.origin, t.client, '192.168.61.2', IPERF_SECONDS, 5202));
      console.error(`round ${i + 1}: supervised ${supervised.at(-1)!.toFixed(3)} Gbit/s, plain ${plain.at(-1)!.toFixed(3)} Gbit/s`);
    }

    const keysFile = join(dir, 'keys.txt');
    writeFileSync(keysFile, `${Array.from({ length: REGISTRATIONS }, () => publicKeyFor(generatePrivateKey())).join('\n')}\n`);
    const out = await t.client.exec(
      [process.execPath, '--input-type=module', '-e', REGISTER_SCRIPT, `${adminUrl}/v1/wireguard/peers`, token, keysFile, String(CONCURRENCY)],
      { timeoutMs: 300_000 },
    );
    const r = JSON.parse(out) as { ok: number; failed: number; distinct: number; seconds: number };
    if (r.ok !== REGISTRATIONS || r.distinct !== REGISTRATIONS) throw new Error(`registrations: ${JSON.stringify(r)}`);
    const registrationsPerS = r.ok / r.seconds;

    const sup = median(supervised);
    const pl = median(plain);
    const path = writeBenchResult(
      'wireguard',
      {
        registrations_per_s: { value: Math.round(registrationsPerS * 10) / 10, unit: 'registrations/s' },
        tcp_gbps_supervised: { value: Math.round(sup * 1000) / 1000, unit: 'Gbit/s' },
        tcp_gbps_plain: { value: Math.round(pl * 1000) / 1000, unit: 'Gbit/s' },
        supervised_over_plain: { value: Math.round((sup / pl) * 1000) / 1000, unit: 'ratio' },
      },
      { quick: QUICK, registrations: REGISTRATIONS, concurrency: CONCURRENCY, iperfSeconds: IPERF_SECONDS, rounds: { supervised, plain } },
    );
    console.log(
      `registrations_per_s ${registrationsPerS.toFixed(1)}  tcp_gbps_supervised ${sup.toFixed(3)}  tcp_gbps_plain ${pl.toFixed(3)}  ratio ${(sup / pl).toFixed(3)} (goal >= 0.95)\n${path}`,
    );
  } finally {
    await agent?.stop('SIGTERM').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
});
