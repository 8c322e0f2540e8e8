// `make demo`: a PoP in a network namespace on embedded defaults. Starts `cbr agent` inside its own
// namespace, shows /healthz and /metrics, and keeps it up until Ctrl-C (or exits at once with ONCE=1).
// Everything it creates is removed on the way out.
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Topology } from './testhosts.js';

const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', 'dataplane', 'cli.js');
const once = process.env.ONCE === '1';
const say = (msg: string) => process.stdout.write(`[demo ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function main(): Promise<number> {
  const topo = new Topology();
  try {
    const pop = await topo.namespace('pop');
    say(`created network namespace ${pop.name} for the PoP`);
    const t0 = performance.now();
    const agent = pop.spawn([process.execPath, CLI, 'agent'], { env: { ...process.env, CBR_LOG_LEVEL: 'info', CBR_AGENT_NAME: 'demo-pop' } });
    let agentLog = '';
    createInterface({ input: agent.stdout! }).on('line', (l) => {
      agentLog += l + '\n';
      if (process.env.CBR_DEMO_VERBOSE) process.stdout.write(`  agent| ${l}\n`);
    });
    agent.stderr!.on('data', (d) => process.stderr.write(d));
    const health = await waitFor('the agent to answer /healthz', async () => {
      const out = await pop.exec(['curl', '-sf', '--max-time', '1', 'http://127.0.0.1:9780/healthz']);
      return JSON.parse(out) as { state: string; checks: unknown[] };
    });
    say(`agent up in ${Math.round(performance.now() - t0)} ms (pid ${agent.pid}); GET /healthz -> state "${health.state}", ${health.checks.length} checks`);
    const metrics = await pop.exec(['curl', '-sf', '--max-time', '2', 'http://127.0.0.1:9780/metrics']);
    const cbrLines = metrics.split('\n').filter((l) => l.startsWith('cbr_') && !l.startsWith('cbr_process_') && !l.startsWith('cbr_nodejs_'));
    say(`GET /metrics -> ${metrics.split('\n').filter((l) => l && !l.startsWith('#')).length} samples; the agent's own:`);
    for (const l of cbrLines) process.stdout.write(`    ${l}\n`);
    const status = JSON.parse(await pop.exec(['curl', '-sf', '--max-time', '2', 'http://127.0.0.1:9780/v1/status'])) as { version: string; subsystems: string[] };
    say(`GET /v1/status -> version ${status.version}, subsystems on: ${status.subsystems.length ? status.subsystems.join(', ') : 'none (embedded defaults)'}`);
    if (!once) {
      say(`metrics stay up: ip netns exec ${pop.name} curl -s 127.0.0.1:9780/metrics   (Ctrl-C to stop)`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      process.stdout.write('\n');
    }
    const t1 = performance.now();
    const exited = new Promise<number | null>((resolve) => agent.once('exit', (code) => resolve(code)));
    agent.kill('SIGTERM');
    const code = await exited;
    say(`SIGTERM -> agent exited ${code} in ${Math.round(performance.now() - t1)} ms`);
    if (code !== 0) {
      process.stderr.write(agentLog);
      return 1;
    }
    return 0;
  } finally {
    await topo.destroy();
    say('removed the namespace; nothing left behind');
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`demo failed: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
