// The client ↔ PoP ↔ origin namespaces the MASQUE end-to-end tests and bench/masque share. The PoP
// namespace runs the real thing: `cbr dev-issuer` (on the PoP's client-side address, so the agent and
// the client namespace both reach it) and `cbr agent` with auth enabled against it and
// tunnel.masque on. Tokens are minted through the dev issuer's /admin/mint from the client namespace.
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ChildProcess } from 'node:child_process';
import { uniqueName, type Topology, type Namespace } from '../../testhosts/index.js';
import { startAgent, CLI_PATH, type AgentProcess } from '../../dataplane/testing.js';
import { generateSelfSigned, writeTlsMaterial } from '../quic/index.js';

export interface Testbed {
  client: Namespace;
  pop: Namespace;
  origin: Namespace;
  /** The PoP's address on the client side, and the origin's address. */
  popAddr: string;
  originAddr: string;
  port: number;
  caFile: string;
  /** The PoP certificate's private key (for a bare QUIC server with the same certificate). */
  keyFile: string;
  agent: AgentProcess;
  issuerUrl: string;
  /** A service user of the dev issuer with the vpn-user role (for --issuer/--client-id/--client-secret-file). */
  clientId: string;
  clientSecretFile: string;
  mint(subject: string, opts?: { roles?: string[]; ttlS?: number }): Promise<string>;
  /** The agent's metrics text (scraped inside the PoP namespace). */
  metrics(): Promise<string>;
  /** The agent's resident memory in bytes. */
  agentRss(): number;
  /** The agent's CPU time so far (user + system), in ms. */
  agentCpuMs(): number;
}

const PROJECT = '281474976710656';

export function metricValue(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return line ? Number(line.split(' ').pop()) : NaN;
}

/**
 * tunnel.masque lines for load runs: the load generator is one address and one token subject, so the
 * per-source and per-subject caps (meant for the internet) are lifted for it.
 */
export const LOAD_LIMITS = [
  '    limits:',
  '      maxConnectionsPerSource: 100000',
  '      maxHandshakesPerSource: 100000',
  '      maxUdpSessionsPerSubject: 100000',
].join('\n');

/** A token from the dev issuer's /admin/mint, fetched from inside `from`. */
export async function mintToken(from: Namespace, issuerUrl: string, subject: string, o: { roles?: string[]; ttlS?: number } = {}): Promise<string> {
  const body = JSON.stringify({ subject, roles: o.roles ?? ['vpn-user'], expiresIn: o.ttlS ?? 300 });
  const out = await from.exec(['curl', '-sf', '-X', 'POST', '-H', 'content-type: application/json', '--data', body, `${issuerUrl}/admin/mint`]);
  return (JSON.parse(out) as { access_token: string }).access_token;
}

/** User + system CPU time of a process (all its threads) in ms, from /proc/PID/stat. */
export function processCpuMs(pid: number): number {
  // fields 14 and 15 (utime, stime) in clock ticks (USER_HZ, 100 on Linux), after the ")" of the name
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * `logLevel`: the agent's log level (tests run it at debug to read its lines; benches at info, what an
 * operator runs, so the figures do not include debug logging per packet or session).
 */
export async function masqueTestbed(topo: Topology, opts: { routes?: string[]; extraMasque?: string; logLevel?: string } = {}): Promise<Testbed> {
  const client = await topo.namespace('mclient');
  const pop = await topo.namespace('mpop');
  const origin = await topo.namespace('morigin');
  await topo.link(client, pop, { aAddr: '10.61.1.2/24', bAddr: '10.61.1.1/24' });
  await topo.link(pop, origin, { aAddr: '10.61.2.1/24', bAddr: '10.61.2.2/24' });
  await pop.exec(['ip', 'link', 'set', 'lo', 'up']);
  const dir = mkdtempSync(join(tmpdir(), 'cbr-masque-'));
  topo.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const tls = await generateSelfSigned(['pop.test', '10.61.1.1']);
  const certFile = join(dir, 'pop.crt');
  const keyFile = join(dir, 'pop.key');
  writeTlsMaterial(tls, certFile, keyFile);
  const clientSecretFile = join(dir, 'client-secret');
  writeFileSync(clientSecretFile, 'testbed-secret\n');
  writeFileSync(
    join(dir, 'issuer.yaml'),
    `tokenLifetime: 600\nserviceUsers:\n  - { clientId: "svc-vpn", clientSecret: "testbed-secret", subject: "svc-vpn", roles: [vpn-user] }\n`,
  );

  const issuerUrl = 'http://10.61.1.1:8088';
  const issuer = pop.spawn([
    process.execPath,
    CLI_PATH,
    'dev-issuer',
    '--listen',
    '10.61.1.1:8088',
    '--project-id',
    PROJECT,
    '--config',
    join(dir, 'issuer.yaml'),
  ]);
  await waitForOutput(issuer, /dev issuer listening/, 15_000);

  const agent = await startAgent(
    [
      'auth:',
      '  enabled: true',
      `  issuer: ${issuerUrl}`,
      '  allowInsecureIssuer: true', // the dev issuer serves http:// inside the test namespaces
      `  audience: ["${PROJECT}"]`,
      '  rateLimit:',
      '    perSubject: { rate: 100000, burst: 100000 }',
      '    perSource: { rate: 100000, burst: 100000 }',
      'tunnel:',
      '  egress:',
      '    allow: [10.61.2.0/24]', // the test origin sits in a private range
      '  masque:',
      '    enabled: true',
      '    listen: 0.0.0.0:4433',
      '    tls:',
      `      certFile: ${certFile}`,
      `      keyFile: ${keyFile}`,
      '    udp:',
      '      allowPrivate: true',
      '    ip:',
      `      tun: ${uniqueName('q')}`,
      '      poolV4: 100.64.61.0/24',
      '      poolV6: fd00:cb:61::/64',
      `      routes: [${(opts.routes ?? ['10.61.2.0/24']).join(', ')}]`,
      '      allowPrivate: true',
      ...(opts.extraMasque ? [opts.extraMasque] : []),
      '',
    ].join('\n'),
    { netns: pop.name, ...(opts.logLevel ? { env: { CBR_LOG_LEVEL: opts.logLevel } } : {}) },
  );
  topo.onDestroy(async () => void (await agent.stop()));
  await agent.waitForLog((e) => e.msg === 'MASQUE listener up', 30_000);

  const tb: Testbed = {
    client,
    pop,
    origin,
    popAddr: '10.61.1.1',
    originAddr: '10.61.2.2',
    port: 4433,
    caFile: certFile,
    keyFile,
    agent,
    issuerUrl,
    clientId: 'svc-vpn',
    clientSecretFile,
    mint: (subject, o = {}) => mintToken(client, issuerUrl, subject, o),
    metrics: () => pop.exec(['curl', '-sf', `${agent.adminUrl}/metrics`]),
    agentRss() {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${agent.pid}/status`, 'utf8'));
      return m ? Number(m[1]) * 1024 : NaN;
    },
    agentCpuMs: () => processCpuMs(agent.pid),
  };
  return tb;
}

/** `cbr connect` in the client namespace; resolves when a stderr line matches. */
export function startConnect(
  tb: Pick<Testbed, 'client' | 'popAddr' | 'port' | 'caFile'>,
  args: string[],
): { child: ChildProcess; waitFor(re: RegExp, ms?: number): Promise<string>; output(): string } {
  const child = tb.client.spawn([
    process.execPath,
    CLI_PATH,
    'connect',
    '--server',
    `${tb.popAddr}:${tb.port}`,
    '--server-name',
    'pop.test',
    '--ca',
    tb.caFile,
    ...args,
  ]);
  let err = '';
  const listeners = new Set<() => void>();
  child.stderr!.on('data', (d) => {
    err += d;
    for (const l of listeners) l();
  });
  child.stdout!.resume();
  return {
    child,
    output: () => err,
    waitFor(re, ms = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = re.exec(err);
          if (m) {
            listeners.delete(check);
            clearTimeout(t);
            resolve(m[0]);
          }
        };
        const t = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${re} within ${ms} ms; cbr connect said:\n${err}`));
        }, ms);
        listeners.add(check);
        check();
      });
    },
  };
}

/** Ctrl-C to `cbr connect` (SIGKILL after 5 s); resolves with its exit code. */
export async function stopConnect(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  child.kill('SIGINT');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  const code = await exited;
  clearTimeout(t);
  return code;
}

const LOAD_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'testing-load.js');
const BARE_QUIC_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'testing-bare-quic.js');

/**
 * A bare QUIC server (testing-bare-quic.ts) on the PoP's address and `port`, with the agent's certificate
 * and transport limits; it stops when its stdin is closed (or the topology goes).
 */
export async function startBareQuic(tb: Testbed, port: number): Promise<ChildProcess> {
  const child = tb.pop.spawn([process.execPath, BARE_QUIC_MAIN], {
    env: { ...process.env, CBR_BARE_QUIC: JSON.stringify({ host: tb.popAddr, port, certFile: tb.caFile, keyFile: tb.keyFile }) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  await waitForOutput(child, /listening/, 15_000);
  return child;
}

export interface Load {
  /** The generator's first output line (its result), parsed. */
  result: Record<string, number>;
  /** Still running for modes that hold sessions open: "close" on stdin ends them. */
  child: ChildProcess;
  /** Everything it printed so far. */
  output(): string;
}

/** Runs the load generator (testing-load.ts) with `cfg` in the client namespace until its result line. */
export async function startLoad(tb: Testbed, cfg: object, o: { timeoutMs: number; nodeArgs?: string[] }): Promise<Load> {
  const child = tb.client.spawn([process.execPath, ...(o.nodeArgs ?? []), LOAD_MAIN], {
    env: { ...process.env, CBR_LOAD: JSON.stringify(cfg) },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const line = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`load generator timed out: ${err}`)), o.timeoutMs);
    child.stdout!.on('data', (d) => {
      out += d;
      const i = out.indexOf('\n');
      if (i >= 0) {
        clearTimeout(t);
        resolve(out.slice(0, i));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`load generator exited ${code}: ${err}`));
    });
  });
  return { result: JSON.parse(line) as Record<string, number>, child, output: () => out };
}

/** Resolves once the child's stdout or stderr matches `re`; rejects after `ms` or when it exits. */
export function waitForOutput(child: ChildProcess, re: RegExp, ms: number): Promise<void> {
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${re} within ${ms} ms: ${out}`)), ms);
    const on = (d: Buffer) => {
      out += d;
      if (re.test(out)) {
        clearTimeout(t);
        resolve();
      }
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`exited ${code}: ${out}`));
    });
  });
}

/**
 * A UDP echo on `port` in `ns` (the origin the connect-udp tests relay to); killed with the topology's
 * processes. `batched`: the native one (testing-echo.ts) for rate measurements, where a node:dgram echo
 * (~7 µs of CPU per datagram) would be what is measured.
 */
export function udpEcho(ns: Namespace, port: number, o: { batched?: boolean } = {}): ChildProcess {
  if (o.batched) return ns.spawn([process.execPath, ECHO_MAIN, String(port)]);
  const src = `const s=require('dgram').createSocket('udp4');s.on('message',(m,r)=>s.send(m,r.port,r.address));s.bind(${port});`;
  return ns.spawn([process.execPath, '-e', src]);
}

const ECHO_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'testing-echo.js');
