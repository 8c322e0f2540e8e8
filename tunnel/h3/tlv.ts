// The one incremental type-length-value reader behind HTTP/3 frames (RFC 9114 §7.1) and capsules
// (RFC 9297 §3.2): a varint type, a varint length, then the value. What to do with each value is the
// caller's decision (buffer it whole, stream it through, skip it); this module only cuts the bytes.
// A buffered value holds copies of the bytes that have arrived, never its declared length up front:
// a peer that announces 64 KiB and sends one byte pins one byte.
import { concatBytes, readVarint, varintLengthFromFirstByte } from './varint.js';

/** 'buffer': hand over the whole value once complete; 'stream': hand over each piece as it arrives; 'skip': drop it. */
export type TlvDisposition = 'buffer' | 'stream' | 'skip';

export interface TlvSink {
  /** A header is complete: decide what to do with its value (may throw to refuse it). */
  start(type: number, length: number): TlvDisposition;
  /** A whole 'buffer' value, or one piece of a 'stream' value (`last` on its final piece; an empty value yields one empty piece). */
  value(type: number, bytes: Uint8Array, last: boolean): void;
}

export class TlvReader {
  /** A header split across chunks (made on the first such header: most readers never need it). */
  private header: Uint8Array | undefined;
  private headerLen = 0;
  private inValue = false;
  private type = 0;
  private remaining = 0;
  private disposition: TlvDisposition = 'skip';
  private parts: Uint8Array[] = [];
  private filled = 0;

  /** True while a header or value has started but not completed. */
  get midValue(): boolean {
    return this.inValue || this.headerLen > 0;
  }

  /** Bytes held back waiting for the rest of a header or a buffered value (what arrived, not what was declared). */
  get buffered(): number {
    return this.headerLen + this.filled;
  }

  /** Cuts `chunk` into values, calling `sink` for each. Streamed and single-chunk values alias `chunk`. */
  read(chunk: Uint8Array, sink: TlvSink): void {
    let pos = 0;
    const n = chunk.length;
    while (pos < n || (this.inValue && this.remaining === 0)) {
      if (!this.inValue) {
        const first = chunk[pos]!; // pos < n: the loop runs without a value only while bytes remain
        if (this.headerLen === 0) {
          // Fast path: the whole header is in this chunk.
          const tlen = varintLengthFromFirstByte(first);
          const second = chunk[pos + tlen];
          if (second !== undefined && pos + tlen + varintLengthFromFirstByte(second) <= n) {
            this.begin(sink, readVarint(chunk, pos), readVarint(chunk, pos + tlen));
            pos += tlen + varintLengthFromFirstByte(second);
            continue;
          }
        }
        // Slow path: gather header bytes one at a time (at most 16).
        this.header ??= new Uint8Array(16);
        const header = this.header;
        header[this.headerLen++] = first;
        pos++;
        const tlen = varintLengthFromFirstByte(header[0]!);
        const second = header[tlen];
        if (this.headerLen > tlen && second !== undefined && this.headerLen === tlen + varintLengthFromFirstByte(second)) {
          this.headerLen = 0;
          this.begin(sink, readVarint(header, 0), readVarint(header, tlen));
        }
        continue;
      }
      const take = Math.min(this.remaining, n - pos);
      const piece = chunk.subarray(pos, pos + take);
      pos += take;
      this.remaining -= take;
      const last = this.remaining === 0;
      if (last) this.inValue = false;
      if (this.disposition === 'stream') {
        sink.value(this.type, piece, last);
      } else if (this.disposition === 'buffer') {
        if (last && this.filled === 0) {
          sink.value(this.type, piece, true); // the whole value in this chunk: no copy
        } else {
          this.parts.push(piece.slice());
          this.filled += take;
          if (last) {
            const whole = concatBytes(this.parts);
            this.parts = [];
            this.filled = 0;
            sink.value(this.type, whole, true);
          }
        }
      }
    }
  }

  private begin(sink: TlvSink, type: number, length: number): void {
    this.type = type;
    this.remaining = length;
    this.inValue = true;
    this.disposition = sink.start(type, length);
  }
}
