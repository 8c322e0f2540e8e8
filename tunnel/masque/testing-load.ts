// Load generator run inside the client namespace (tests and bench): opens `count` MASQUE sessions
// (one QUIC connection + one connect-udp each, all on one UDP socket), `concurrency` at a time, or
// only `count` QUIC handshakes (mode 'handshakes', against testing-bare-quic.ts), or measures the
// connect-udp relay rate with one session. Config JSON in CBR_LOAD; prints one JSON
// line with the result, then (sessions mode) waits for a line on stdin before closing them.
import { readFileSync } from 'node:fs';
import { QuicEndpoint } from '../quic/index.js';
import { MasqueClient, type MasqueSession } from './client.js';
import { errorMessage } from '../../dataplane/index.js';

interface Cfg {
  mode: 'sessions' | 'handshakes' | 'pps';
  host: string;
  port: number;
  ca: string;
  token: string;
  target: { host: string; port: number };
  count?: number;
  concurrency?: number;
  seconds?: number;
  size?: number;
}
const cfg = JSON.parse(process.env.CBR_LOAD ?? '{}') as Cfg;
const caPem = readFileSync(cfg.ca, 'utf8');
const endpoint = await QuicEndpoint.client({ caPem, idleTimeoutMs: 120_000, initialMaxStreamData: 64 << 10, initialMaxData: 256 << 10 });
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);

/** Runs `fn` `count` times, `concurrency` at a time; returns the successes, the time taken and the errors by message. */
async function openMany(fn: () => Promise<void>): Promise<{
  opened: number;
  failed: number;
  setupMs: number;
  perSecond: number;
  packetsOutPerSetup: number;
  packetsInPerSetup: number;
  errors: Record<string, number>;
}> {
  const count = cfg.count ?? 1000;
  const errors = new Map<string, number>();
  let opened = 0;
  let next = 0;
  const t0 = performance.now();
  const worker = async () => {
    while (next < count) {
      next++;
      try {
        await fn();
        opened++;
      } catch (err) {
        const m = errorMessage(err).slice(0, 120);
        errors.set(m, (errors.get(m) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: cfg.concurrency ?? 100 }, worker));
  const setupMs = performance.now() - t0;
  // Packets the client sent and received per setup (each costs a native call and a syscall share on both ends).
  const per = (n: number) => n / Math.max(1, opened);
  return {
    opened,
    failed: count - opened,
    setupMs,
    perSecond: opened / (setupMs / 1000),
    packetsOutPerSetup: per(endpoint.stats.packetsOut),
    packetsInPerSetup: per(endpoint.stats.packetsIn),
    errors: Object.fromEntries(errors),
  };
}

if (cfg.mode === 'handshakes') {
  // The bare QUIC handshake: the same client endpoint and server name, no HTTP/3, token or CONNECT.
  const r = await openMany(
    () =>
      new Promise<void>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('handshake timed out')), 15_000);
        endpoint.connect(cfg.host, cfg.port, 'pop.test', {
          onEstablished: () => {
            clearTimeout(t);
            resolve();
          },
          onClosed: (_c, why) => {
            clearTimeout(t);
            reject(new Error(`closed during handshake: ${why.by} ${why.code} ${why.reason}`));
          },
        });
      }),
  );
  out(r);
  await new Promise((r) => process.stdin.once('data', r));
  process.stdin.destroy();
  await endpoint.close({ isApp: true, code: 0x100, graceMs: 1500 });
} else if (cfg.mode === 'sessions') {
  const clients: MasqueClient[] = [];
  // Where a setup's time goes: the QUIC handshake, then the CONNECT until its 200.
  let handshakeMs = 0;
  let connectMs = 0;
  const r = await openMany(async () => {
    const t0 = performance.now();
    const c = await MasqueClient.connect({ host: cfg.host, port: cfg.port, serverName: 'pop.test', caPem, endpoint, timeoutMs: 15_000 });
    clients.push(c);
    const t1 = performance.now();
    handshakeMs += t1 - t0;
    await c.openUdp(cfg.target, cfg.token);
    connectMs += performance.now() - t1;
  });
  // Check the sessions still carry traffic: one echo through a sample of them.
  const sample = clients.filter((c) => c.sessions.size > 0).slice(0, 50);
  let echoed = 0;
  await Promise.all(
    sample.map(
      (c) =>
        new Promise<void>((resolve) => {
          const s = [...c.sessions.values()][0]!;
          const t = setTimeout(resolve, 3000);
          s.onPayload = () => {
            echoed++;
            clearTimeout(t);
            resolve();
          };
          s.send(Buffer.from('x'));
        }),
    ),
  );
  out({ ...r, handshakeMsAvg: handshakeMs / Math.max(1, clients.length), connectMsAvg: connectMs / Math.max(1, r.opened), sampled: sample.length, echoed });
  await new Promise((r) => process.stdin.once('data', r));
  process.stdin.destroy();
  const alive = clients.filter((c) => c.sessions.size > 0 && !c.closed).length;
  await Promise.all(clients.map((c) => c.close()));
  await new Promise((r) => setTimeout(r, 500));
  // 1,000 CONNECTION_CLOSE packets: give the socket time to send them before it closes.
  await endpoint.close({ isApp: true, code: 0x100, graceMs: 1500 });
  out({ alive });
} else {
  const c = await MasqueClient.connect({ host: cfg.host, port: cfg.port, serverName: 'pop.test', caPem, endpoint });
  const s: MasqueSession = await c.openUdp(cfg.target, cfg.token);
  let received = 0;
  s.onPayload = () => received++;
  const payload = Buffer.alloc(cfg.size ?? 64, 1);
  const until = performance.now() + (cfg.seconds ?? 3) * 1000;
  let sent = 0;
  // Echoes not back after LOSS_MS are written off as lost: a fixed window that only received
  // echoes reopen stalls for good once packets are dropped (the old method measured its own stall).
  const WINDOW = 1024;
  const LOSS_MS = 50;
  let writtenOff = 0;
  let lastProgress = performance.now();
  let lastReceived = 0;
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  while (performance.now() < until) {
    const now = performance.now();
    if (received !== lastReceived) {
      lastReceived = received;
      lastProgress = now;
    } else if (now - lastProgress > LOSS_MS) {
      writtenOff = sent - received;
      lastProgress = now;
    }
    for (let i = 0; i < 64 && sent - received - writtenOff < WINDOW; i++) {
      s.send(payload);
      sent++;
    }
    await new Promise((r) => setImmediate(r));
  }
  await new Promise((r) => setTimeout(r, 300));
  const secs = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  // The generator's own CPU per echoed datagram: on a small machine it shares the cores with the relay.
  const cpuUsPerPacket = (cpu.user + cpu.system) / Math.max(1, received);
  out({ sent, received, lost: sent - received, kpps: received / secs / 1000, cpuUsPerPacket });
  await c.close();
  await endpoint.close();
}
process.exit(0);
