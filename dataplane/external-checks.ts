// Health checks configured by the operator (health.checks): a command whose exit 0 means healthy, or
// an HTTP probe whose 2xx answer does. Both are bounded by the check's timeout.
import { spawn } from 'node:child_process';
import type { HealthCheckSpec } from './health.js';
import type { ExternalCheckConfig } from './config/base.js';

function runCommand(argv: string[], signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], signal, killSignal: 'SIGKILL' });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 512) stderr += d.toString('utf8');
    });
    child.once('error', (err) => reject(new Error(signal.aborted ? 'timed out' : `cannot run ${argv[0]}: ${err.message}`)));
    child.once('close', (code, sig) => {
      if (code === 0) resolve();
      else reject(new Error(`exit ${code ?? sig}${stderr ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
    });
  });
}

async function probeHttp(url: string, signal: AbortSignal): Promise<void> {
  const res = await fetch(url, { signal, redirect: 'manual' });
  await res.body?.cancel();
  if (res.status < 200 || res.status > 299) throw new Error(`HTTP ${res.status}`);
}

export function externalCheckSpec(c: ExternalCheckConfig): HealthCheckSpec {
  return {
    name: `external.${c.name}`,
    intervalMs: c.interval,
    timeoutMs: c.timeout,
    rise: c.rise,
    fall: c.fall,
    run: (signal) => (c.command ? runCommand(c.command, signal) : probeHttp(c.http!, signal)),
  };
}
