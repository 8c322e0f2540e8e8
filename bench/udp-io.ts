// bench/udp-io: UDP packets per second through one Node process on loopback, sender and receiver in
// the same event loop (what a PoP's QUIC endpoint does), 1,200-byte datagrams (a full QUIC packet):
//   - baseline: node:dgram, one send call and one 'message' event per datagram;
//   - the native addon without GRO/GSO (recvmmsg/sendmmsg batches of 64);
//   - the native addon with UDP GSO on send and GRO on receive.
// Each mode runs for a fixed time with a bounded number of packets in flight (a window, so the
// receiver is never flooded past its buffer and every figure counts delivered packets).
//
// `node dist/bench/udp-io.js` (QUICK=1: short). Writes bench/results/udp-io.json.
import { createSocket } from 'node:dgram';
import { loadavg } from 'node:os';
import { BatchUdpSocket, writeSlot, ADDR_SLOT } from '../dataplane/os/udp-batch.js';
import { writeBenchResult } from './results.js';

const QUICK = process.env.QUICK === '1';
const RUN_MS = QUICK ? 700 : 4000;
const SIZE = 1200;
const WINDOW = 256;
const BATCH = 64;

const tick = () => new Promise<void>((r) => setImmediate(r));

async function dgramPps(): Promise<number> {
  const rx = createSocket('udp4');
  const tx = createSocket('udp4');
  await new Promise<void>((r) => rx.bind(0, '127.0.0.1', r));
  await new Promise<void>((r) => tx.bind(0, '127.0.0.1', r));
  const port = rx.address().port;
  const payload = Buffer.alloc(SIZE, 7);
  let received = 0;
  let sent = 0;
  rx.on('message', () => received++);
  const t0 = performance.now();
  while (performance.now() - t0 < RUN_MS) {
    while (sent - received < WINDOW) {
      tx.send(payload, port, '127.0.0.1');
      sent++;
    }
    await tick();
  }
  const secs = (performance.now() - t0) / 1000;
  const pps = received / secs;
  rx.close();
  tx.close();
  return pps;
}

async function batchedPps(offload: boolean): Promise<{ pps: number; gro: boolean; gso: boolean; packetsPerRead: number }> {
  const rx = new BatchUdpSocket({ host: '127.0.0.1', port: 0, gro: offload });
  const tx = new BatchUdpSocket({ host: '127.0.0.1', port: 0, gso: offload });
  let received = 0;
  rx.onBatch((n) => {
    received += n;
  });
  const data = new Uint8Array(SIZE * BATCH).fill(7);
  const lengths = new Uint32Array(BATCH).fill(SIZE);
  const addrs = new Uint8Array(ADDR_SLOT * BATCH);
  for (let i = 0; i < BATCH; i++) writeSlot(addrs, i, '127.0.0.1', rx.port);
  let sent = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < RUN_MS) {
    while (sent - received < WINDOW) {
      const n = tx.send(data, lengths, addrs, BATCH);
      sent += n;
      if (n < BATCH) break;
    }
    await tick();
  }
  const secs = (performance.now() - t0) / 1000;
  const out = { pps: received / secs, gro: rx.gro, gso: tx.gso, packetsPerRead: rx.stats.packets / Math.max(1, rx.stats.batches) };
  rx.close();
  tx.close();
  return out;
}

async function main(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  // interleaved rounds so a noisy neighbour hits every mode alike; the median of each
  const rounds = QUICK ? 1 : 3;
  const runs = { dgram: [] as number[], plain: [] as number[], offload: [] as number[] };
  let offloadInfo = { gro: false, gso: false, packetsPerRead: 0 };
  for (let r = 0; r < rounds; r++) {
    runs.dgram.push(await dgramPps());
    runs.plain.push((await batchedPps(false)).pps);
    const o = await batchedPps(true);
    runs.offload.push(o.pps);
    offloadInfo = o;
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const dgram = median(runs.dgram);
  const plain = median(runs.plain);
  const offload = median(runs.offload);
  const results = {
    udp_kpps_dgram: { value: +(dgram / 1000).toFixed(1), unit: 'kpps' },
    udp_kpps_batched: { value: +(plain / 1000).toFixed(1), unit: 'kpps' },
    udp_kpps_batched_gso_gro: { value: +(offload / 1000).toFixed(1), unit: 'kpps' },
    udp_batched_over_dgram: { value: +(plain / dgram).toFixed(2), unit: 'x' },
    udp_gso_gro_over_dgram: { value: +(offload / dgram).toFixed(2), unit: 'x' },
  };
  const path = writeBenchResult('udp-io', results, {
    quick: QUICK,
    load: { before: loadBefore, after: loadavg()[0] },
    notes: `loopback, ${SIZE}-byte datagrams, one event loop for both ends, window ${WINDOW}, batches of ${BATCH}; GRO ${offloadInfo.gro ? 'on' : 'off'}, GSO ${offloadInfo.gso ? 'on' : 'off'}, ${offloadInfo.packetsPerRead.toFixed(1)} packets per handler call with offload; median of ${rounds}`,
  });
  for (const [k, m] of Object.entries(results)) process.stdout.write(`${k.padEnd(28)} ${String(m.value).padStart(8)} ${m.unit}\n`);
  process.stdout.write(`wrote ${path}\n`);
}

await main();
