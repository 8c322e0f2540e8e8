// A single-producer single-consumer packet ring in a SharedArrayBuffer: the TUN reader worker
// reads packets straight into it, the main thread copies them out in batches. No syscalls or FFI.
//
// control (Int32Array): [HEAD] next write offset (producer), [TAIL] next read offset (consumer),
// [SEQ] packets written (wraps), [STOP] set to 1 to ask the producer to exit.
// data: records of u32 length + bytes, 4-byte aligned; a length of WRAP means "continue at 0".
export const HEAD = 0;
export const TAIL = 1;
export const SEQ = 2;
export const STOP = 3;
const CONTROL_INTS = 4;
export const WRAP = 0xffffffff;

export interface RingBuffers {
  control: SharedArrayBuffer;
  data: SharedArrayBuffer;
}

export function createRing(capacity: number): RingBuffers {
  if (capacity % 4 !== 0 || capacity < 1 << 16) throw new RangeError('ring capacity must be a multiple of 4 and ≥ 64 KiB');
  return { control: new SharedArrayBuffer(CONTROL_INTS * 4), data: new SharedArrayBuffer(capacity) };
}

const align4 = (n: number) => (n + 3) & ~3;

/** Producer side: reserve room for one packet of up to maxLen, then commit its real length. */
export class RingWriter {
  readonly ctrl: Int32Array;
  readonly bytes: Uint8Array;
  private readonly view: DataView;
  private readonly cap: number;
  constructor(r: RingBuffers) {
    this.ctrl = new Int32Array(r.control);
    this.bytes = new Uint8Array(r.data);
    this.view = new DataView(r.data);
    this.cap = r.data.byteLength;
  }

  private free(head: number): number {
    const tail = Atomics.load(this.ctrl, TAIL);
    return head >= tail ? this.cap - head + tail - 4 : tail - head - 4;
  }

  /**
   * The offset where up to maxLen bytes of packet may be written, or -1 when the ring is full
   * (the caller waits on TAIL). Writes a wrap marker when the end of the buffer is too close.
   */
  reserve(maxLen: number): number {
    let head = Atomics.load(this.ctrl, HEAD);
    const need = 4 + align4(maxLen);
    if (head + need > this.cap) {
      // Wrap only when the consumer has left the start free (and is not sitting at 0 with us at the end).
      const tail = Atomics.load(this.ctrl, TAIL);
      if (tail > head || tail === 0 || tail - 4 < need) return -1;
      if (head + 4 <= this.cap) this.view.setUint32(head, WRAP, true);
      head = 0;
      Atomics.store(this.ctrl, HEAD, 0);
    }
    if (this.free(head) < need) return -1;
    return head + 4;
  }

  commit(offset: number, len: number): void {
    const head = offset - 4;
    this.view.setUint32(head, len, true);
    let next = head + 4 + align4(len);
    if (next >= this.cap) next = 0;
    Atomics.store(this.ctrl, HEAD, next);
    Atomics.add(this.ctrl, SEQ, 1);
    Atomics.notify(this.ctrl, SEQ);
  }
}

/** Consumer side: copies every committed packet out and frees its room. */
export class RingReader {
  readonly ctrl: Int32Array;
  private readonly bytes: Buffer;
  private readonly view: DataView;
  private readonly cap: number;
  constructor(r: RingBuffers) {
    this.ctrl = new Int32Array(r.control);
    this.bytes = Buffer.from(r.data);
    this.view = new DataView(r.data);
    this.cap = r.data.byteLength;
  }

  /**
   * Zero-copy drain: the committed packets as views into the ring, handed to `fn` in one array.
   * Their room is freed only after `fn` returns, so the views are valid during the call only.
   * Returns the number of packets.
   */
  drainViews(fn: (pkts: Buffer[]) => void): number {
    const out: Buffer[] = [];
    let tail = Atomics.load(this.ctrl, TAIL);
    const head = Atomics.load(this.ctrl, HEAD);
    while (tail !== head) {
      const len = tail + 4 <= this.cap ? this.view.getUint32(tail, true) : WRAP;
      if (len === WRAP) {
        tail = 0;
        continue;
      }
      out.push(this.bytes.subarray(tail + 4, tail + 4 + len));
      tail += 4 + align4(len);
      if (tail >= this.cap) tail = 0;
    }
    if (out.length === 0) return 0;
    try {
      fn(out);
    } finally {
      Atomics.store(this.ctrl, TAIL, tail);
      Atomics.notify(this.ctrl, TAIL);
    }
    return out.length;
  }

  drain(max = 1 << 30): Buffer[] {
    const out: Buffer[] = [];
    let tail = Atomics.load(this.ctrl, TAIL);
    const head = Atomics.load(this.ctrl, HEAD);
    while (tail !== head && out.length < max) {
      const len = tail + 4 <= this.cap ? this.view.getUint32(tail, true) : WRAP;
      if (len === WRAP) {
        tail = 0;
        continue;
      }
      out.push(Buffer.from(this.bytes.subarray(tail + 4, tail + 4 + len)));
      tail += 4 + align4(len);
      if (tail >= this.cap) tail = 0;
    }
    Atomics.store(this.ctrl, TAIL, tail);
    Atomics.notify(this.ctrl, TAIL);
    return out;
  }
}
