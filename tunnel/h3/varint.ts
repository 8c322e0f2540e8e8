// QUIC variable-length integers (RFC 9000 §16): the two high bits of the first byte give the length
// (1, 2, 4 or 8 bytes), the rest is the big-endian value, up to 2^62-1.
//
// Values are JavaScript numbers: exact up to 2^53-1. Larger values (only seen in GREASE identifiers or
// hostile input) are read approximately by readVarint; use readVarintBig where exactness matters.
import { H3Error, H3ErrorCode } from './errors.js';

export const MAX_VARINT = (1n << 62n) - 1n;

/** Bytes the varint starting with `firstByte` occupies (1, 2, 4 or 8). */
export function varintLengthFromFirstByte(firstByte: number): 1 | 2 | 4 | 8 {
  return (1 << (firstByte >> 6)) as 1 | 2 | 4 | 8;
}

/** Bytes needed to encode `value` (1, 2, 4 or 8). */
export function varintLength(value: number): 1 | 2 | 4 | 8 {
  if (value < 0x40) return 1;
  if (value < 0x4000) return 2;
  if (value < 0x40000000) return 4;
  return 8;
}

function checkEncodable(value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `varint value ${value} is not an integer in 0..2^53-1`);
  }
}

/**
 * Write `value` at `offset` (minimal length unless `length` forces a longer one) and return the offset after it.
 * The caller makes sure the buffer has room (varintLength(value) bytes).
 */
export function writeVarint(buf: Uint8Array, offset: number, value: number, length?: 1 | 2 | 4 | 8): number {
  checkEncodable(value);
  const len = length ?? varintLength(value);
  if (len < varintLength(value)) throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `varint value ${value} does not fit in ${len} bytes`);
  if (offset + len > buf.length) throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', 'varint does not fit in the buffer');
  switch (len) {
    case 1:
      buf[offset] = value;
      return offset + 1;
    case 2:
      buf[offset] = 0x40 | (value >>> 8);
      buf[offset + 1] = value & 0xff;
      return offset + 2;
    case 4:
      buf[offset] = 0x80 | (value >>> 24);
      buf[offset + 1] = (value >>> 16) & 0xff;
      buf[offset + 2] = (value >>> 8) & 0xff;
      buf[offset + 3] = value & 0xff;
      return offset + 4;
    default: {
      const hi = Math.floor(value / 0x100000000);
      const lo = value >>> 0;
      buf[offset] = 0xc0 | (hi >>> 24);
      buf[offset + 1] = (hi >>> 16) & 0xff;
      buf[offset + 2] = (hi >>> 8) & 0xff;
      buf[offset + 3] = hi & 0xff;
      buf[offset + 4] = lo >>> 24;
      buf[offset + 5] = (lo >>> 16) & 0xff;
      buf[offset + 6] = (lo >>> 8) & 0xff;
      buf[offset + 7] = lo & 0xff;
      return offset + 8;
    }
  }
}

/** A fresh buffer holding `value` as a minimal varint. */
export function encodeVarint(value: number): Uint8Array {
  const out = new Uint8Array(varintLength(value));
  writeVarint(out, 0, value);
  return out;
}

/**
 * The varint at `offset`, or -1 when `buf` ends before it does (feed more bytes). No allocation;
 * the length it occupies is varintLengthFromFirstByte(buf[offset]).
 */
export function readVarint(buf: Uint8Array, offset: number): number {
  const first = buf[offset];
  if (first === undefined) return -1;
  const len = 1 << (first >> 6);
  if (offset + len > buf.length) return -1;
  // Multiply, not shift: values above 2^31 stay positive (and above 2^53 approximate, as documented).
  let v = first & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + buf[offset + i]!; // offset + i < offset + len <= buf.length
  return v;
}

/** The exact varint at `offset` as a bigint, or -1n when `buf` ends before it does. */
export function readVarintBig(buf: Uint8Array, offset: number): bigint {
  const first = buf[offset];
  if (first === undefined) return -1n;
  const len = 1 << (first >> 6);
  if (offset + len > buf.length) return -1n;
  let v = BigInt(first & 0x3f);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[offset + i]!); // in range, as above
  return v;
}

export interface DecodedVarint {
  value: number;
  /** Bytes the varint occupied. */
  length: number;
}

/** Convenience form of readVarint: `{ value, length }`, or null when `buf` ends before the varint does. */
export function decodeVarint(buf: Uint8Array, offset = 0): DecodedVarint | null {
  const value = readVarint(buf, offset);
  if (value < 0) return null;
  return { value, length: varintLengthFromFirstByte(buf[offset]!) }; // value >= 0: the byte is there
}

/** Encode a bigint varint (for values above 2^53, e.g. GREASE identifiers). */
export function encodeVarintBig(value: bigint): Uint8Array {
  if (value < 0n || value > MAX_VARINT) throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `varint value ${value} is out of range`);
  const len = value < 0x40n ? 1 : value < 0x4000n ? 2 : value < 0x40000000n ? 4 : 8;
  const out = new Uint8Array(len);
  let v = value;
  for (let i = len - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  out[0] = (out[0] ?? 0) | (len === 1 ? 0x00 : len === 2 ? 0x40 : len === 4 ? 0x80 : 0xc0);
  return out;
}

/** Concatenates byte strings into one new Uint8Array. */
export function concatBytes(parts: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Uint8Array(total);
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

// HTTP/3 frames (RFC 9114 §7.1) and capsules (RFC 9297 §3.2) share one layout: a varint type, a
// varint length, then the value. frames.ts and capsules.ts name these for their own kind.

/** Bytes a type + length header takes. */
export function tlvHeaderLength(type: number, valueLength: number): number {
  return varintLength(type) + varintLength(valueLength);
}

/** Writes a type + length header at `offset`; returns the offset after it. */
export function writeTlvHeader(buf: Uint8Array, offset: number, type: number, valueLength: number): number {
  return writeVarint(buf, writeVarint(buf, offset, type), valueLength);
}

/** Type, length and value as one buffer. */
export function encodeTlv(type: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(tlvHeaderLength(type, value.length) + value.length);
  out.set(value, writeTlvHeader(out, 0, type, value.length));
  return out;
}
