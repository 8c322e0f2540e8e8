// The client ↔ PoP ↔ origin namespaces the MASQUE end-to-end tests and bench/masque share, and the
// PoP server (pop-main.ts) started inside the PoP namespace.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SignJWT } from 'jose';
import type { ChildProcess } from 'node:child_process';
import { uniqueName, type Topology, type Namespace } from '../../../bench/testhosts.js';

export interface Testbed {
  client: Namespace;
  pop: Namespace;
  origin: Namespace;
  /** The PoP's address on the client side, and the origin's address. */
  popAddr: string;
  originAddr: string;
  port: number;
  caFile: string;
  popProcess: ChildProcess;
  mint(subject: string, opts?: { roles?: string[]; ttlS?: number }): Promise<string>;
  /** One JSON line of the PoP's memory and counters. */
  popStats(): Promise<{ rss: number; heap: number; connections: number; live: { udp: number; ip: number } }>;
}

const POP_MAIN = join(dirname(fileURLToPath(import.meta.url)), 'pop-main.js');

export async function masqueTestbed(topo: Topology, opts: { routes?: string[]; nodeArgs?: string[] } = {}): Promise<Testbed> {
  const client = await topo.namespace('mclient');
  const pop = await topo.namespace('mpop');
  const origin = await topo.namespace('morigin');
  await topo.link(client, pop, { aAddr: '10.61.1.2/24', bAddr: '10.61.1.1/24' });
  await topo.link(pop, origin, { aAddr: '10.61.2.1/24', bAddr: '10.61.2.2/24' });
  await pop.sysctl('net.ipv4.ip_forward', '1');
  const dir = mkdtempSync(join(tmpdir(), 'cbr-masque-'));
  topo.onDestroy(() => rmSync(dir, { recursive: true, force: true }));
  const secret = randomBytes(32).toString('hex');
  const cfg = {
    port: 4433, secret, tun: uniqueName('q'), poolV4: '100.64.61.0/24', poolV6: 'fd00:cb:61::/64',
    routes: opts.routes ?? ['10.61.2.0/24'], certFile: join(dir, 'pop.crt'), keyFile: join(dir, 'pop.key'), names: ['pop.test', '10.61.1.1'],
  };
  const child = pop.spawn([process.execPath, ...(opts.nodeArgs ?? []), POP_MAIN], { env: { ...process.env, CBR_TESTBED: JSON.stringify(cfg) }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let buf = '';
  child.stdout!.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const l = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  const nextLine = (timeoutMs: number) =>
    new Promise<string>((resolve, reject) => {
      const l = lines.shift();
      if (l !== undefined) return resolve(l);
      const t = setTimeout(() => reject(new Error(`PoP server said nothing within ${timeoutMs} ms; stderr: ${stderr.slice(-2000)}`)), timeoutMs);
      waiters.push((x) => (clearTimeout(t), resolve(x)));
      child.once('exit', (code) => (clearTimeout(t), reject(new Error(`PoP server exited (${code}): ${stderr.slice(-2000)}`))));
    });
  const ready = await nextLine(20_000);
  if (!ready.startsWith('ready ')) throw new Error(`PoP server: unexpected ${ready}`);
  const key = new TextEncoder().encode(secret);
  return {
    client, pop, origin, popAddr: '10.61.1.1', originAddr: '10.61.2.2', port: Number(ready.slice(6)), caFile: cfg.certFile, popProcess: child,
    async mint(subject, o = {}) {
      return new SignJWT({ roles: o.roles ?? ['vpn-user'] })
        .setProtectedHeader({ alg: 'HS256' }).setSubject(subject).setIssuer('cbr-testbed').setAudience('cbr')
        .setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) + (o.ttlS ?? 300)).sign(key);
    },
    async popStats() {
      child.stdin!.write('stats\n');
      return JSON.parse(await nextLine(10_000));
    },
  };
}
