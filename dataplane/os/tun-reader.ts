// Worker thread: blocking reads from a TUN queue fd, straight into the shared packet ring (ring
// mode) or posted to the main thread one transferred buffer per packet (message mode). No ffi-rs
// here: a worker that loads it crashes the process when it exits. The read returns an error once
// the device is deleted, which ends the loop.
import { readSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { RingWriter, STOP, TAIL, type RingBuffers } from './tun-ring.js';

interface ReaderData {
  fd: number;
  mtu: number;
  mode: 'ring' | 'message';
  ring?: RingBuffers;
}

const { fd, mtu, mode, ring } = workerData as ReaderData;
const maxLen = Math.max(mtu, 1500) + 64;

function readLoop(): string {
  if (mode === 'ring') {
    const w = new RingWriter(ring!);
    for (;;) {
      if (Atomics.load(w.ctrl, STOP) === 1) return 'stopped';
      let off = w.reserve(maxLen);
      while (off < 0) {
        // Ring full: wait for the main thread to drain (it notifies TAIL), re-checking STOP.
        Atomics.wait(w.ctrl, TAIL, Atomics.load(w.ctrl, TAIL), 50);
        if (Atomics.load(w.ctrl, STOP) === 1) return 'stopped';
        off = w.reserve(maxLen);
      }
      const n = readSync(fd, w.bytes, off, maxLen, null);
      if (n <= 0) return 'eof'; // the device is gone (a TUN never yields empty packets)
      w.commit(off, n);
    }
  } else {
    for (;;) {
      const buf = new Uint8Array(maxLen);
      const n = readSync(fd, buf, 0, maxLen, null);
      if (n <= 0) return 'eof';
      parentPort!.postMessage(buf.subarray(0, n), [buf.buffer]);
    }
  }
}

try {
  parentPort!.postMessage({ exit: readLoop() });
} catch (err) {
  parentPort!.postMessage({ exit: (err as NodeJS.ErrnoException).code ?? String(err) });
}
