// Helpers for tests that run a real agent process: write a config, start `cbr agent` (optionally
// inside a network namespace), wait until /healthz answers, stop it and report how it exited.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { freePort } from '../testhosts/index.js';

// The `cbr` binary, run as a process (not imported: the agent composes the subsystems that use this).
export const CLI_PATH = join(dirname(fileURLToPath(import.meta.url)), '..', 'agent', 'cli.js');

// A free TCP port: one copy, in the test hosts.
export { freePort };

/** Runs `cbr <args>` to completion; never throws on a non-zero exit. */
export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number; netns?: string } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, process.execPath, CLI_PATH, ...args] : [process.execPath, CLI_PATH, ...args];
    const child = spawn(argv[0]!, argv.slice(1), { env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.stdin.end(opts.input ?? '');
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export interface AgentProcess {
  proc: ChildProcess;
  pid: number;
  adminUrl: string;
  configPath: string;
  dir: string;
  /** Every stdout line so far (JSON log lines). */
  logLines: string[];
  /** Resolves with the first log line matching; rejects after timeoutMs. */
  waitForLog(pred: (entry: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** Rewrites the config file (for SIGHUP tests). */
  writeConfig(yaml: string): void;
  /** Sends a signal and resolves with the exit code/signal and how long it took. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Starts `cbr agent --config <file>` with `yaml` (the admin listener is put on a free port unless
 * the yaml sets one) and waits for /healthz to answer.
 */
/**
 * A wrap for startAgent with `netns`: a private /run/wireguard for the agent and its wireguard-go
 * (`ip netns exec` gives each command its own mount namespace), so agents standing in for PoPs on
 * separate hosts can use the same interface name, as a fleet's PoPs do, without sharing UAPI sockets.
 */
export const PRIVATE_WIREGUARD_RUN = ['sh', '-c', 'mkdir -p /run/wireguard && mount -t tmpfs cbr-wg /run/wireguard && exec "$@"', 'sh'];

export async function startAgent(
  yaml: string,
  opts: {
    env?: NodeJS.ProcessEnv;
    netns?: string;
    adminPort?: number;
    waitMs?: number;
    /** Runs the agent through this command prefix (inside the namespace), e.g. `PRIVATE_WIREGUARD_RUN`. */
    wrap?: string[];
  } = {},
): Promise<AgentProcess> {
  const dir = mkdtempSync(join(tmpdir(), 'cbr-test-'));
  const port = opts.adminPort ?? (await freePort());
  const configPath = join(dir, 'agent.yaml');
  const withAdmin = /^admin:/m.test(yaml) ? yaml : `admin:\n  listen: 127.0.0.1:${port}\n${yaml}`;
  const withState = /^agent:/m.test(withAdmin) ? withAdmin : `agent:\n  stateDir: ${join(dir, 'state')}\n${withAdmin}`;
  writeFileSync(configPath, withState);
  const listen = /listen:\s*(\S+)/.exec(withState.split(/^admin:/m)[1] ?? '')?.[1] ?? `127.0.0.1:${port}`;
  const adminUrl = `http://${listen}`;
  const inner = [...(opts.wrap ?? []), process.execPath, CLI_PATH, 'agent', '--config', configPath];
  const argv = opts.netns ? ['ip', 'netns', 'exec', opts.netns, ...inner] : inner;
  const proc = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, CBR_LOG_LEVEL: 'debug', ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const logLines: string[] = [];
  const waiters: Array<{ pred: (e: Record<string, unknown>) => boolean; resolve: (e: Record<string, unknown>) => void }> = [];
  const onLine = (line: string) => {
    logLines.push(line);
    let entry: Record<string, unknown>;
    try {
      entry = JSON.parse(line);
    } catch {
      entry = { msg: line };
    }
    for (const w of [...waiters]) {
      if (w.pred(entry)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(entry);
      }
    }
  };
  createInterface({ input: proc.stdout! }).on('line', onLine);
  createInterface({ input: proc.stderr! }).on('line', (l) => onLine(JSON.stringify({ stderr: l })));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const agent: AgentProcess = {
    proc,
    pid: proc.pid!,
    adminUrl,
    configPath,
    dir,
    logLines,
    waitForLog(pred, timeoutMs = 10_000) {
      for (const line of logLines) {
        try {
          const e = JSON.parse(line);
          if (pred(e)) return Promise.resolve(e);
        } catch {
          /* skip */
        }
      }
      return new Promise((resolve, reject) => {
        const w = {
          pred,
          resolve: (e: Record<string, unknown>) => {
            clearTimeout(t);
            resolve(e);
          },
        };
        const t = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new Error(`no matching log line within ${timeoutMs} ms; last lines:\n${logLines.slice(-15).join('\n')}`));
        }, timeoutMs);
        waiters.push(w);
      });
    },
    writeConfig(text: string) {
      writeFileSync(configPath, text);
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      const t0 = performance.now();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const killer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const r = await exited;
      clearTimeout(killer);
      rmSync(dir, { recursive: true, force: true });
      return { ...r, ms: performance.now() - t0 };
    },
    exited,
  };
  if (opts.netns) return agent; // the caller probes inside the namespace
  const until = Date.now() + (opts.waitMs ?? 30_000);
  for (;;) {
    const early = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(() => r(undefined), 50))]);
    if (early) throw new Error(`agent exited (${early.code ?? early.signal}) before serving:\n${logLines.join('\n')}`);
    try {
      const res = await fetch(`${adminUrl}/healthz`, { signal: AbortSignal.timeout(500) });
      await res.body?.cancel();
      return agent;
    } catch {
      if (Date.now() > until) {
        proc.kill('SIGKILL');
        throw new Error(`agent did not serve /healthz within ${opts.waitMs ?? 30_000} ms:\n${logLines.join('\n')}`);
      }
    }
  }
}
