// Worker thread: blocking reads from a TUN queue fd, straight into the shared packet ring (ring
// mode) or posted to the main thread one transferred buffer per packet (message mode). With
// offloads (vnet) the native addon reads and splits super-packets into plain IP packets first,
// which are then copied into the ring. No ffi-rs here: a worker that loads it crashes the process
// when it exits (the N-API addon is context-aware and safe here). The read returns an error once
// the device is deleted, which ends the loop.
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { RingWriter, STOP, TAIL, type RingBuffers } from './tun-ring.js';
import { nativeIo } from './udp-batch.js';

interface ReaderData {
  fd: number;
  mtu: number;
  mode: 'ring' | 'message';
  ring?: RingBuffers;
  /** The fd was opened with IFF_VNET_HDR: every read starts with a virtio_net_hdr. */
  vnet: boolean;
  rxOffload: SharedArrayBuffer;
}

const { fd, mtu, mode, ring, vnet, rxOffload } = workerData as ReaderData;
const maxLen = Math.max(mtu, 1500) + 64;
/** A super-packet is at most 64 KiB; split into at most SPLIT_MAX packets, each with its own headers. */
const SPLIT_MAX = 256;
const SPLIT_BYTES = 65_536 + SPLIT_MAX * 128;

/** Reserves room for `len` bytes in the ring, waiting while it is full; -1 when asked to stop. */
function reserve(w: RingWriter, len: number): number {
  let off = w.reserve(len);
  while (off < 0) {
    // Ring full: wait for the main thread to drain (it notifies TAIL), re-checking STOP.
    Atomics.wait(w.ctrl, TAIL, Atomics.load(w.ctrl, TAIL), 50);
    if (Atomics.load(w.ctrl, STOP) === 1) return -1;
    off = w.reserve(len);
  }
  return off;
}

function plainLoop(): string {
  if (mode === 'ring') {
    const w = new RingWriter(ring!);
    for (;;) {
      if (Atomics.load(w.ctrl, STOP) === 1) return 'stopped';
      const off = reserve(w, maxLen);
      if (off < 0) return 'stopped';
      const n = readSync(fd, w.bytes, off, maxLen, null);
      if (n <= 0) return 'eof'; // the device is gone (a TUN never yields empty packets)
      w.commit(off, n);
    }
  }
  for (;;) {
    const buf = new Uint8Array(maxLen);
    const n = readSync(fd, buf, 0, maxLen, null);
    if (n <= 0) return 'eof';
    parentPort!.postMessage(buf.subarray(0, n), [buf.buffer]);
  }
}

function offloadLoop(): string {
  const io = nativeIo();
  if (!io) return 'no-addon';
  const scratch = new Uint8Array(65_536 + io.TUN_VNET_HDR);
  const out = new Uint8Array(SPLIT_BYTES);
  const lens = new Uint32Array(SPLIT_MAX);
  const stats = new Float64Array(rxOffload);
  const w = mode === 'ring' ? new RingWriter(ring!) : undefined;
  for (;;) {
    if (w && Atomics.load(w.ctrl, STOP) === 1) return 'stopped';
    const n = io.tunRead(fd, scratch, out, lens, stats);
    if (n < 0) return 'eof';
    let at = 0;
    for (let i = 0; i < n; i++) {
      const len = lens[i]!;
      if (w) {
        const off = reserve(w, len);
        if (off < 0) return 'stopped';
        w.bytes.set(out.subarray(at, at + len), off);
        w.commit(off, len);
      } else {
        const b = out.slice(at, at + len);
        parentPort!.postMessage(b, [b.buffer]);
      }
      at += len;
    }
  }
}

try {
  parentPort!.postMessage({ exit: vnet ? offloadLoop() : plainLoop() });
} catch (err) {
  parentPort!.postMessage({ exit: (err as NodeJS.ErrnoException).code ?? String(err) });
}
