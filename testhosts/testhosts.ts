// Test hosts: network namespaces, veth pairs, addresses and routes with unique names
// (`cbr-t<pid>-…`), commands and processes run inside them, and removal of everything at the end,
// also when a test fails or the run is interrupted. Used by integration tests and the bench.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';
import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';

const execFileAsync = promisify(execFile);

export class CommandError extends Error {
  constructor(
    readonly argv: string[],
    readonly code: number | null,
    readonly stderr: string,
    readonly stdout: string,
  ) {
    super(`${argv.join(' ')} failed (exit ${code}): ${stderr.trim() || stdout.trim()}`);
    this.name = 'CommandError';
  }
}

/** Runs a command (no shell) and returns its stdout; throws CommandError on a non-zero exit. */
export async function run(argv: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  try {
    const child = execFileAsync(argv[0]!, argv.slice(1), { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 64 << 20, env: opts.env, killSignal: 'SIGKILL' });
    if (opts.input !== undefined) {
      child.child.stdin!.end(opts.input);
    }
    const { stdout } = await child;
    return stdout;
  } catch (err) {
    const e = err as { code?: number | string; stderr?: string; stdout?: string; killed?: boolean };
    throw new CommandError(
      argv,
      typeof e.code === 'number' ? e.code : null,
      e.killed ? `timed out; ${e.stderr ?? ''}` : (e.stderr ?? String(err)),
      e.stdout ?? '',
    );
  }
}

const PREFIX = `cbr-t${process.pid}-`;
let counter = 0;
const liveTopologies = new Set<Topology>();

function cleanupAllSync(): void {
  for (const t of liveTopologies) t.destroySync();
}
let exitHooksInstalled = false;
function installExitHooks(): void {
  if (exitHooksInstalled) return;
  exitHooksInstalled = true;
  process.on('exit', cleanupAllSync);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      cleanupAllSync();
      process.kill(process.pid, sig);
    });
  }
}

/** A unique interface name within 15 bytes (IFNAMSIZ): `cbr-t<pid>-` plus a role letter and a counter. */
export function uniqueName(role: string): string {
  const name = `${PREFIX}${role.slice(0, 1)}${(counter++).toString(36)}`;
  if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 bytes`);
  return name;
}

export class Namespace {
  constructor(
    readonly name: string,
    private readonly topo: Topology,
  ) {}

  /** Runs argv inside the namespace and returns stdout. */
  exec(argv: string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    return run(['ip', 'netns', 'exec', this.name, ...argv], opts);
  }

  /** Spawns a long-running process inside the namespace; it is killed when the topology is destroyed. */
  spawn(argv: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', this.name, ...argv], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.topo.track(child);
    return child;
  }

  /** Adds an address (CIDR) to an interface in this namespace and brings it up. */
  async addAddress(ifname: string, cidr: string): Promise<void> {
    await this.exec(['ip', 'addr', 'add', cidr, 'dev', ifname, ...(cidr.includes(':') ? ['nodad'] : [])]);
    await this.exec(['ip', 'link', 'set', ifname, 'up']);
  }

  async addRoute(dest: string, via: string, dev?: string): Promise<void> {
    await this.exec(['ip', 'route', 'replace', dest, 'via', via, ...(dev ? ['dev', dev] : [])]);
  }

  async sysctl(key: string, value: string): Promise<void> {
    await this.exec(['sysctl', '-qw', `${key}=${value}`]);
  }

  /** Pings once-per-interval until one answer or the count runs out; true if any reply came back. */
  async ping(address: string, opts: { count?: number; timeoutS?: number } = {}): Promise<boolean> {
    try {
      await this.exec(['ping', '-n', '-q', '-c', String(opts.count ?? 1), '-W', String(opts.timeoutS ?? 1), address], {
        timeoutMs: ((opts.count ?? 1) + (opts.timeoutS ?? 1) + 2) * 1000,
      });
      return true;
    } catch {
      return false;
    }
  }
}

export interface VethEnd {
  ns: Namespace;
  ifname: string;
}

/**
 * A set of namespaces and links owned by one test. `destroy()` (also run on process exit and on
 * SIGINT/SIGTERM) kills its processes and deletes its namespaces; veth pairs die with them.
 */
export class Topology {
  readonly namespaces: Namespace[] = [];
  private readonly processes = new Set<ChildProcess>();
  private readonly cleanups: Array<() => Promise<void> | void> = [];
  private destroyed = false;

  constructor() {
    installExitHooks();
    liveTopologies.add(this);
  }

  track(child: ChildProcess): void {
    this.processes.add(child);
    child.once('exit', () => this.processes.delete(child));
  }

  /** Registers extra cleanup (files, pinned objects), run in reverse order by destroy(). */
  onDestroy(fn: () => Promise<void> | void): void {
    this.cleanups.push(fn);
  }

  async namespace(role: string): Promise<Namespace> {
    // Namespace names have no length limit, so they keep the whole role for readability.
    const name = `${PREFIX}${role}${counter++}`;
    await run(['ip', 'netns', 'add', name]);
    const ns = new Namespace(name, this);
    this.namespaces.push(ns);
    await ns.exec(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** Creates a veth pair between two namespaces, each end up, with optional addresses (CIDR). */
  async link(a: Namespace, b: Namespace, opts: { aAddr?: string | string[]; bAddr?: string | string[]; mtu?: number } = {}): Promise<[VethEnd, VethEnd]> {
    const an = uniqueName('a');
    const bn = uniqueName('b');
    await run(['ip', 'link', 'add', an, 'netns', a.name, 'type', 'veth', 'peer', 'name', bn, 'netns', b.name]);
    for (const [ns, ifn, addrs] of [
      [a, an, opts.aAddr],
      [b, bn, opts.bAddr],
    ] as const) {
      if (opts.mtu) await ns.exec(['ip', 'link', 'set', ifn, 'mtu', String(opts.mtu)]);
      for (const cidr of addrs === undefined ? [] : Array.isArray(addrs) ? addrs : [addrs]) await ns.addAddress(ifn, cidr);
      await ns.exec(['ip', 'link', 'set', ifn, 'up']);
    }
    return [
      { ns: a, ifname: an },
      { ns: b, ifname: bn },
    ];
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    this.destroyed = true;
    liveTopologies.delete(this);
    await Promise.all([...this.processes].map((p) => killAndWait(p)));
    for (const fn of this.cleanups.reverse()) {
      try {
        await fn();
      } catch {
        /* best effort: keep removing the rest */
      }
    }
    for (const ns of this.namespaces) await killNamespacePids(ns.name);
    for (const ns of this.namespaces) await run(['ip', 'netns', 'del', ns.name]).catch(() => undefined);
  }

  /** Synchronous variant for process exit, where promises no longer run. */
  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    liveTopologies.delete(this);
    for (const p of this.processes) p.kill('SIGKILL');
    for (const ns of this.namespaces) {
      try {
        execFileSync('ip', ['netns', 'pids', ns.name])
          .toString()
          .split(/\s+/)
          .filter(Boolean)
          .forEach((pid) => {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              /* gone */
            }
          });
        execFileSync('ip', ['netns', 'del', ns.name], { stdio: 'ignore' });
      } catch {
        /* best effort */
      }
    }
  }
}

/** Signals a child (SIGTERM unless told), SIGKILLs it after graceMs, and resolves once it has exited. */
export async function killAndWait(p: ChildProcess, graceMs = 2000, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
  p.kill(signal);
  const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

async function killNamespacePids(ns: string): Promise<void> {
  const pids = (await run(['ip', 'netns', 'pids', ns]).catch(() => '')).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }
  // Give the kernel a moment to reap them so the namespace can go.
  for (let i = 0; i < 20 && pids.some(alive); i++) await new Promise((r) => setTimeout(r, 50));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Namespaces left by earlier runs whose process is gone (for `make clean-netns` and CI hygiene). */
export async function staleNamespaces(): Promise<string[]> {
  const out = await run(['ip', 'netns', 'list']).catch(() => '');
  return out
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => /^cbr-t\d+-/.test(n))
    .filter((n) => !alive(Number(/^cbr-t(\d+)-/.exec(n)![1])));
}

/**
 * Polls fn until it returns something other than undefined (errors count as "not yet"), at most
 * timeoutMs; the timeout error names what was awaited and the last error seen.
 */
export async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000, everyMs = 100): Promise<T> {
  const until = Date.now() + timeoutMs;
  let lastErr: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastErr ? `: ${(lastErr as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Creates a topology, runs fn, and destroys it whatever happens. */
export async function withTopology<T>(fn: (t: Topology) => Promise<T>): Promise<T> {
  const t = new Topology();
  try {
    return await fn(t);
  } finally {
    await t.destroy();
  }
}

/** A free TCP port on an address (bound and released; good enough for tests). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}
