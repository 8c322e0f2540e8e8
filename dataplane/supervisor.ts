// Supervises child processes (BIRD, wireguard-go, …): restart on exit with capped exponential
// backoff, stdout/stderr into the agent's log, and no child outliving the agent. Each child is
// started through util-linux `setpriv --pdeathsig KILL`, so the kernel kills it when the agent's
// main thread dies, including on SIGKILL of the agent.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { EventEmitter } from 'node:events';
import { Gauge, Counter, type Registry } from 'prom-client';
import type { Logger } from './log.js';

/** Exit status of a child that found its parent already gone before it could run. */
export const ORPHAN_EXIT = 125;

/**
 * argv for spawn: setpriv sets the parent-death signal, then a shell checks that the parent is still
 * `parentPid` before exec'ing the command. That closes the window between fork and prctl in which the
 * agent could die without the kernel ever signalling the child (it would run on, re-parented).
 */
export function guardedArgv(command: string, args: readonly string[], parentPid: number): string[] {
  return [
    'setpriv',
    '--pdeathsig',
    'KILL',
    '--',
    '/bin/sh',
    '-c',
    `[ "$PPID" = "$1" ] || exit ${ORPHAN_EXIT}; shift; exec "$@"`,
    'cbr-child',
    String(parentPid),
    command,
    ...args,
  ];
}

export interface ChildSpec {
  /** Unique name, used in logs and metrics (`child` label). */
  name: string;
  command: string;
  args?: string[];
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** First restart delay; doubles on each quick failure up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A child that ran at least this long resets the backoff. */
  stableAfterMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL. */
  stopTimeoutMs?: number;
  /** Log level for the child's stderr lines (stdout is logged at info). */
  stderrLevel?: 'info' | 'warn' | 'error';
}

export type ChildState = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped';

export class SupervisedChild extends EventEmitter<{ start: [number]; exit: [number | null, NodeJS.Signals | null]; line: [string, 'stdout' | 'stderr'] }> {
  state: ChildState = 'starting';
  restarts = 0;
  private proc?: ChildProcess;
  private backoffMs: number;
  private restartTimer?: NodeJS.Timeout;
  private startedAt = 0;
  private exitWaiters: Array<() => void> = [];

  constructor(
    readonly spec: Required<Pick<ChildSpec, 'initialBackoffMs' | 'maxBackoffMs' | 'stableAfterMs' | 'stopTimeoutMs'>> & ChildSpec,
    private readonly log: Logger,
    private readonly metrics: SupervisorMetrics | undefined,
  ) {
    super();
    this.backoffMs = spec.initialBackoffMs;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  /** Starts the child now (called by the supervisor). */
  start(): void {
    if (this.state === 'stopping' || this.state === 'stopped') return;
    this.state = 'starting';
    const [setpriv, ...args] = guardedArgv(this.spec.command, this.spec.args ?? [], process.pid);
    // Own process group, so stop() reaches grandchildren too (a shell wrapper's children, a forked helper).
    const proc = spawn(setpriv!, args, { env: this.spec.env ?? process.env, cwd: this.spec.cwd, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    this.proc = proc;
    this.startedAt = Date.now();
    proc.once('spawn', () => {
      this.state = 'running';
      this.metrics?.up.set({ child: this.spec.name }, 1);
      this.log.info({ pid: proc.pid, command: this.spec.command, args: this.spec.args }, 'child started');
      this.emit('start', proc.pid!);
    });
    proc.once('error', (err) => {
      // spawn failure (setpriv missing): 'exit' may not follow, so handle it as an exit.
      this.log.error({ err }, 'child could not be started');
      this.onExit(null, null);
    });
    for (const [stream, level] of [
      [proc.stdout!, 'info'],
      [proc.stderr!, this.spec.stderrLevel ?? 'warn'],
    ] as const) {
      const rl = createInterface({ input: stream });
      rl.on('line', (line) => {
        const which = stream === proc.stdout ? 'stdout' : 'stderr';
        this.log[level]({ stream: which }, line);
        this.emit('line', line, which);
      });
    }
    proc.once('exit', (code, signal) => this.onExit(code, signal));
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.proc === undefined) return;
    this.proc = undefined;
    this.metrics?.up.set({ child: this.spec.name }, 0);
    this.emit('exit', code, signal);
    const waiters = this.exitWaiters;
    this.exitWaiters = [];
    for (const w of waiters) w();
    if (this.state === 'stopping' || this.state === 'stopped') {
      this.state = 'stopped';
      this.log.info({ code, signal }, 'child stopped');
      return;
    }
    const ranMs = Date.now() - this.startedAt;
    if (ranMs >= this.spec.stableAfterMs) this.backoffMs = this.spec.initialBackoffMs;
    const delay = this.backoffMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.spec.maxBackoffMs);
    this.state = 'backoff';
    this.log.warn({ code, signal, ranMs, restartInMs: delay }, 'child exited; restarting');
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      this.metrics?.restarts.inc({ child: this.spec.name });
      this.start();
    }, delay);
  }

  /** Kills the running process so the supervisor restarts it (after the current backoff). */
  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    this.signalGroup(signal);
  }

  /** Signals the child's whole process group; falls back to the child alone. */
  private signalGroup(signal: NodeJS.Signals, proc = this.proc): void {
    if (!proc?.pid) return;
    try {
      process.kill(-proc.pid, signal);
    } catch {
      try {
        proc.kill(signal);
      } catch {
        /* already gone */
      }
    }
  }

  /** Stops the child for good: SIGTERM, then SIGKILL after stopTimeoutMs. */
  async stop(): Promise<void> {
    clearTimeout(this.restartTimer);
    if (this.state === 'stopped') return;
    this.state = 'stopping';
    const proc = this.proc;
    if (!proc) {
      this.state = 'stopped';
      return;
    }
    const exited = new Promise<void>((resolve) => this.exitWaiters.push(resolve));
    this.signalGroup('SIGTERM', proc);
    const killTimer = setTimeout(() => this.signalGroup('SIGKILL', proc), this.spec.stopTimeoutMs);
    await exited;
    clearTimeout(killTimer);
  }

  /** Synchronous last resort on process exit. */
  killNow(): void {
    clearTimeout(this.restartTimer);
    this.state = 'stopped';
    this.signalGroup('SIGKILL');
  }
}

interface SupervisorMetrics {
  up: Gauge;
  restarts: Counter;
}

export class Supervisor {
  private readonly children = new Map<string, SupervisedChild>();
  private readonly metrics?: SupervisorMetrics;
  private readonly onProcessExit = () => this.killAllNow();

  constructor(
    private readonly log: Logger,
    registry?: Registry,
  ) {
    if (registry) {
      this.metrics = {
        up: new Gauge({ name: 'cbr_child_up', help: 'Whether a supervised child process is running', labelNames: ['child'], registers: [registry] }),
        restarts: new Counter({
          name: 'cbr_child_restarts_total',
          help: 'Restarts of a supervised child process',
          labelNames: ['child'],
          registers: [registry],
        }),
      };
    }
    process.on('exit', this.onProcessExit);
  }

  /** Starts supervising a child; its name must be unique among running children. */
  supervise(spec: ChildSpec): SupervisedChild {
    if (this.children.has(spec.name)) throw new Error(`child ${spec.name} is already supervised`);
    const child = new SupervisedChild(
      { initialBackoffMs: 200, maxBackoffMs: 30_000, stableAfterMs: 10_000, stopTimeoutMs: 5_000, ...spec },
      this.log.child({ child: spec.name }),
      this.metrics,
    );
    this.children.set(spec.name, child);
    this.metrics?.restarts.inc({ child: spec.name }, 0);
    child.start();
    return child;
  }

  get(name: string): SupervisedChild | undefined {
    return this.children.get(name);
  }

  list(): SupervisedChild[] {
    return [...this.children.values()];
  }

  async stop(name: string): Promise<void> {
    const child = this.children.get(name);
    if (!child) return;
    await child.stop();
    this.children.delete(name);
    this.metrics?.up.remove({ child: name });
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.children.keys()].reverse().map((n) => this.stop(n)));
  }

  killAllNow(): void {
    for (const c of this.children.values()) c.killNow();
  }

  dispose(): void {
    process.off('exit', this.onProcessExit);
  }
}
