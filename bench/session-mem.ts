// Iteration tool (not part of bench:all): agent memory per idle connect-udp session, split into JS
// heap, external and the rest (native: quiche, BoringSSL, libuv), with N sessions against the real
// agent of the MASQUE testbed. N from SESSIONS (default 2000). HEAPSNAP=1 also writes a heap snapshot
// of the agent (with the sessions open) into HEAPSNAP_DIR.
import { readFileSync, readdirSync } from 'node:fs';
import { withTopology } from '../testhosts/index.js';
import { masqueTestbed, startBareQuic, startLoad, LOAD_LIMITS, metricValue, processCpuMs, type Testbed } from '../tunnel/masque/testing.js';

const N = Number(process.env.SESSIONS ?? 2000);

function sample(tb: Testbed, text: string) {
  const smaps = readFileSync(`/proc/${tb.agent.pid}/smaps_rollup`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(smaps)?.[1] ?? NaN) * 1024;
  return {
    rss: tb.agentRss(),
    anon: kb('Anonymous'),
    heapUsed: metricValue(text, 'cbr_nodejs_heap_size_used_bytes'),
    heapTotal: metricValue(text, 'cbr_nodejs_heap_size_total_bytes'),
    external: metricValue(text, 'cbr_nodejs_external_memory_bytes'),
  };
}

await withTopology(async (topo) => {
  const tb = await masqueTestbed(topo, { logLevel: 'info', extraMasque: `    maxSessions: 200000\n${LOAD_LIMITS}` });
  tb.origin.spawn([process.execPath, '-e', `require('dgram').createSocket('udp4').bind(7007);`]);
  const token = await tb.mint('load', { ttlS: 3600 });
  await new Promise((r) => setTimeout(r, 1500));
  const before = sample(tb, await tb.metrics());
  const lines0 = tb.agent.logLines.length;
  const self0 = process.cpuUsage();
  const cpu0 = processCpuMs(tb.agent.pid);
  const s = await startLoad(
    tb,
    { mode: 'sessions', host: tb.popAddr, port: tb.port, ca: tb.caFile, token, target: { host: tb.originAddr, port: 7007 }, count: N, concurrency: 200 },
    {
      timeoutMs: 600_000,
      nodeArgs: ['--max-old-space-size=4096', ...(process.env.LOAD_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.LOAD_PROF}`] : [])],
    },
  );
  const agentCpuMsPerSession = (processCpuMs(tb.agent.pid) - cpu0) / s.result.opened!;
  const loadCpuMsPerSession = processCpuMs(s.child.pid!) / s.result.opened!;
  const self = process.cpuUsage(self0);
  const benchCpuMsPerSession = (self.user + self.system) / 1000 / s.result.opened!;
  const logLinesPerSession = (tb.agent.logLines.length - lines0) / s.result.opened!;
  await new Promise((r) => setTimeout(r, 3000));
  const after = sample(tb, await tb.metrics());
  const opened = s.result.opened!;
  const per = Object.fromEntries(
    Object.entries(after).map(([k, v]) => [k, Math.round(((v - (before as Record<string, number>)[k]!) / opened / 1024) * 10) / 10]),
  );
  const fds = readdirSync(`/proc/${tb.agent.pid}/fd`).length;
  process.stdout.write(
    `${JSON.stringify({ opened, perSecond: Math.round(s.result.perSecond!), pktOut: s.result.packetsOutPerSetup, pktIn: s.result.packetsInPerSetup, handshakeMsAvg: Math.round(s.result.handshakeMsAvg!), connectMsAvg: Math.round(s.result.connectMsAvg!), kbPerSession: per, fds, failed: s.result.failed, agentCpuMsPerSession, loadCpuMsPerSession, benchCpuMsPerSession, logLinesPerSession })}\n`,
  );
  if (process.env.HEAPSNAP === '1') {
    process.kill(tb.agent.pid, 'SIGUSR2');
    await new Promise((r) => setTimeout(r, 15_000));
  }
  s.child.stdin!.write('close\n');
  await new Promise((r) => s.child.once('exit', r));
  const bare = await startBareQuic(tb, tb.port + 1);
  const b0 = processCpuMs(bare.pid!);
  const h = await startLoad(tb, { mode: 'handshakes', host: tb.popAddr, port: tb.port + 1, ca: tb.caFile, count: N, concurrency: 200 }, { timeoutMs: 600_000 });
  const bareCpu = (processCpuMs(bare.pid!) - b0) / h.result.opened!;
  process.stdout.write(
    `${JSON.stringify({ bare: Math.round(h.result.perSecond!), pktOut: h.result.packetsOutPerSetup, pktIn: h.result.packetsInPerSetup, bareServerCpuMs: bareCpu, bareLoadCpuMs: processCpuMs(h.child.pid!) / h.result.opened! })}\n`,
  );
  h.child.stdin!.write('close\n');
  await new Promise((r) => h.child.once('exit', r));
  bare.stdin!.end();
});
