// Test and bench helpers: an upstream router running its own BIRD in a network namespace, queried
// through the control-socket client (never by scraping birdc).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Namespace } from '../testhosts/index.js';
import { BirdControl, waitForBird } from './control.js';
import { isErrorReply, parseAsPath, parseCommunities, parseRoutePrefixes } from './reply.js';

export interface RouterNeighbor {
  name: string;
  address: string;
  as: number;
  /** Preference for routes from this neighbor (higher wins). */
  localPref?: number;
  /** TCP-MD5 session password. */
  password?: string;
}

export interface RouterOptions {
  routerId: string;
  as: number;
  neighbors: RouterNeighbor[];
  /** Install the best routes into the namespace's kernel table (for forwarding traffic). */
  kernel?: boolean;
}

export function renderRouterConfig(o: RouterOptions): string {
  const lines = ['log stderr all;', `router id ${o.routerId};`, 'timeformat protocol iso long;', 'protocol device { scan time 10; }'];
  if (o.kernel) {
    lines.push('protocol kernel { ipv4 { import none; export all; }; merge paths off; }');
    lines.push('protocol kernel { ipv6 { import none; export all; }; }');
  }
  for (const n of o.neighbors) {
    const fam = n.address.includes(':') ? 6 : 4;
    lines.push(`protocol bgp ${n.name} {`);
    lines.push(`  local as ${o.as};`);
    lines.push(`  neighbor ${n.address} as ${n.as};`);
    if (n.password) lines.push(`  password "${n.password}";`);
    lines.push('  direct; hold time 3; keepalive time 1; connect retry time 1; connect delay time 1; error wait time 1, 5;');
    lines.push(`  ipv${fam} { import filter { bgp_local_pref = ${n.localPref ?? 100}; accept; }; export none; };`);
    lines.push('}');
  }
  return `${lines.join('\n')}\n`;
}

export interface RouterBird {
  control: BirdControl;
  socketPath: string;
  dir: string;
  stop(): Promise<void>;
}

/** Starts BIRD inside `ns` with its own config and socket in a temp dir (never /run/bird). */
export async function startRouterBird(ns: Namespace, o: RouterOptions): Promise<RouterBird> {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-router-'));
  const conf = join(dir, 'bird.conf');
  const socketPath = join(dir, 'bird.ctl');
  writeFileSync(conf, renderRouterConfig(o));
  const proc = ns.spawn(['bird', '-f', '-s', socketPath, '-c', conf, '-P', join(dir, 'bird.pid')]);
  proc.stdout?.resume();
  proc.stderr?.resume();
  const control = new BirdControl({ socketPath, timeoutMs: 3000 });
  await waitForBird(control, 10_000);
  return {
    control,
    socketPath,
    dir,
    async stop() {
      control.close();
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 2000))]);
        proc.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface RouteView {
  present: boolean;
  communities: Array<[number, number]>;
  asPath: number[];
  /** Protocol the best (first listed) route came from ("pop_a"). */
  from?: string;
  /** Protocols of every route listed for the prefix, best first. */
  protocols: string[];
}

/** `show route for X all` on the router, read through the control socket. */
export async function routeFor(control: BirdControl, prefix: string): Promise<RouteView> {
  const reply = await control.raw(`show route for ${prefix} all`);
  if (isErrorReply(reply)) return { present: false, communities: [], asPath: [], protocols: [] };
  const present = parseRoutePrefixes(reply).length > 0;
  // The first route line names its protocol in brackets: "198.51.100.1/32 unicast [pop_a 12:00:00] * (100)".
  const first = reply.lines.find((l) => l.code === 1007 && /^\S+\/\d+\s/.test(l.text.trim()));
  const from = first ? /\[(\S+)/.exec(first.text)?.[1] : undefined;
  const protocols = reply.lines
    .filter((l) => l.code === 1007)
    .flatMap((l) => {
      const m = /^\s*(?:\S+\/\d+\s+)?\S+\s+\[(\S+)\s/.exec(l.text);
      return m ? [m[1]!] : [];
    });
  return { present, communities: present ? parseCommunities(reply) : [], asPath: present ? parseAsPath(reply) : [], from, protocols };
}

/** Polls until pred holds for the route or the time runs out; returns the last view and how long it took. */
export async function waitForRoute(
  control: BirdControl,
  prefix: string,
  pred: (r: RouteView) => boolean,
  timeoutMs: number,
  everyMs = 20,
): Promise<{ view: RouteView; ms: number; ok: boolean }> {
  const t0 = performance.now();
  for (;;) {
    let view: RouteView;
    try {
      view = await routeFor(control, prefix);
    } catch {
      view = { present: false, communities: [], asPath: [], protocols: [] };
    }
    const ms = performance.now() - t0;
    if (pred(view)) return { view, ms, ok: true };
    if (ms > timeoutMs) return { view, ms, ok: false };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
