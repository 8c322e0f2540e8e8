// QPACK (RFC 9204) without a dynamic table: we announce QPACK_MAX_TABLE_CAPACITY 0 and
// QPACK_BLOCKED_STREAMS 0, so a field section may only use the static table and literals, and the
// peer's encoder stream may only say "capacity 0". Strings are latin1 (one char per byte), so any
// field bytes round-trip unchanged.
import { H3Error, H3ErrorCode } from './errors.js';
import { huffmanDecode, huffmanEncodedLength, huffmanEncodeInto } from './huffman.js';
import { QPACK_STATIC_TABLE } from './qpack-static.js';

export { QPACK_STATIC_TABLE } from './qpack-static.js';

export interface HeaderField {
  name: string;
  value: string;
  /** Encode with the N ("never index") bit: intermediaries must not put it in a dynamic table (credentials). */
  neverIndex?: boolean;
}

/** RFC 9114 §4.2.2: a field's size is name + value + 32 bytes. */
export function fieldSize(f: { name: string; value: string }): number {
  return f.name.length + f.value.length + 32;
}

const failed = (msg: string) => new H3Error(H3ErrorCode.QPACK_DECOMPRESSION_FAILED, 'connection', msg);

// ---------------------------------------------------------------- prefixed integers (RFC 7541 §5.1)

/** Largest integer we accept from a peer in a field section: bounds lengths and indexes. */
const MAX_PREFIXED_INT = 2 ** 32;

class Reader {
  pos = 0;
  constructor(readonly buf: Uint8Array) {}

  /** The current byte, not consumed; at the end, QPACK_DECOMPRESSION_FAILED saying where it ended. */
  peek(where: string): number {
    const b = this.buf[this.pos];
    if (b === undefined) throw failed(`field section ends ${where}`);
    return b;
  }

  /** A prefixed integer whose prefix is the low `bits` bits of the current byte. */
  int(bits: number): number {
    const max = (1 << bits) - 1;
    let value = this.peek('inside an integer') & max;
    this.pos++;
    if (value < max) return value;
    let shift = 0;
    for (;;) {
      const b = this.peek('inside an integer');
      this.pos++;
      value += (b & 0x7f) * 2 ** shift;
      if (value > MAX_PREFIXED_INT) throw failed('integer in field section is too large');
      if ((b & 0x80) === 0) return value;
      shift += 7;
    }
  }

  /** A string literal whose H flag is bit `bits` of the current byte and length the low `bits` bits. */
  string(bits: number): string {
    const huffman = (this.peek('before a string literal') & (1 << bits)) !== 0;
    const len = this.int(bits);
    if (len > this.buf.length - this.pos) throw failed('string literal runs past the end of the field section');
    const bytes = this.buf.subarray(this.pos, this.pos + len);
    this.pos += len;
    return huffman ? huffmanDecode(bytes) : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('latin1');
  }
}

function staticEntry(index: number): readonly [string, string] {
  const e = QPACK_STATIC_TABLE[index];
  if (!e) throw failed(`static table index ${index} is out of range (0..98)`);
  return e;
}

export interface DecodeFieldSectionOptions {
  /** Largest decoded size (sum of name + value + 32 per field) we accept; default 64 KiB. */
  maxFieldSectionSize?: number;
}

export const DEFAULT_MAX_FIELD_SECTION_SIZE = 64 * 1024;

/**
 * Decode an encoded field section (a HEADERS or PUSH_PROMISE payload). Dynamic-table and post-base
 * references, a non-zero Required Insert Count, and any malformed input are QPACK_DECOMPRESSION_FAILED
 * (connection error); a section that decodes larger than the limit is H3_EXCESSIVE_LOAD on the stream.
 */
export function decodeFieldSection(block: Uint8Array, opts: DecodeFieldSectionOptions = {}): HeaderField[] {
  const limit = opts.maxFieldSectionSize ?? DEFAULT_MAX_FIELD_SECTION_SIZE;
  const r = new Reader(block);
  // Encoded Field Section Prefix: Required Insert Count (8-bit prefix), then S + Delta Base (7-bit prefix).
  const ric = r.int(8);
  if (ric !== 0) throw failed(`Required Insert Count ${ric}, but our dynamic table capacity is 0`);
  const sign = (r.peek('inside its prefix') & 0x80) !== 0;
  const deltaBase = r.int(7);
  if (sign) throw failed(`negative Base (Required Insert Count 0, Delta Base ${deltaBase} with sign set)`);

  const fields: HeaderField[] = [];
  let size = 0;
  while (r.pos < block.length) {
    const b = r.peek('inside a field line');
    let field: HeaderField;
    if (b & 0x80) {
      // Indexed Field Line: 1 T index(6)
      if ((b & 0x40) === 0) throw failed('indexed field line refers to the dynamic table');
      const [name, value] = staticEntry(r.int(6));
      field = { name, value };
    } else if (b & 0x40) {
      // Literal Field Line with Name Reference: 01 N T index(4)
      if ((b & 0x10) === 0) throw failed('literal field line refers to a dynamic table name');
      const neverIndex = (b & 0x20) !== 0;
      const [name] = staticEntry(r.int(4));
      if (r.pos >= block.length) throw failed('field section ends before a field value');
      const value = r.string(7);
      field = neverIndex ? { name, value, neverIndex } : { name, value };
    } else if (b & 0x20) {
      // Literal Field Line with Literal Name: 001 N H len(3)
      const neverIndex = (b & 0x10) !== 0;
      const name = r.string(3);
      if (r.pos >= block.length) throw failed('field section ends before a field value');
      const value = r.string(7);
      field = neverIndex ? { name, value, neverIndex } : { name, value };
    } else if (b & 0x10) {
      throw failed('indexed field line with post-base index (dynamic table)');
    } else {
      throw failed('literal field line with post-base name reference (dynamic table)');
    }
    size += fieldSize(field);
    if (size > limit) {
      throw new H3Error(H3ErrorCode.H3_EXCESSIVE_LOAD, 'stream', `field section exceeds ${limit} bytes`);
    }
    fields.push(field);
  }
  return fields;
}

// ---------------------------------------------------------------- encoder

const STATIC_EXACT = new Map<string, number>();
const STATIC_NAME = new Map<string, number>();
QPACK_STATIC_TABLE.forEach(([name, value], i) => {
  const key = `${name}\0${value}`;
  if (!STATIC_EXACT.has(key)) STATIC_EXACT.set(key, i);
  if (!STATIC_NAME.has(name)) STATIC_NAME.set(name, i);
});

function intLength(value: number, bits: number): number {
  const max = (1 << bits) - 1;
  if (value < max) return 1;
  let n = 1;
  value -= max;
  while (value >= 0x80) {
    n++;
    value = Math.floor(value / 128);
  }
  return n + 1;
}

function writeInt(buf: Uint8Array, pos: number, value: number, bits: number, flags: number): number {
  const max = (1 << bits) - 1;
  if (value < max) {
    buf[pos++] = flags | value;
    return pos;
  }
  buf[pos++] = flags | max;
  value -= max;
  while (value >= 0x80) {
    buf[pos++] = (value % 128) | 0x80;
    value = Math.floor(value / 128);
  }
  buf[pos++] = value;
  return pos;
}

export interface EncodeFieldSectionOptions {
  /** Huffman-code string literals when that is shorter (default true). */
  huffman?: boolean;
}

interface PlannedString {
  text: string;
  huffman: boolean;
  length: number;
}

function planString(text: string, huffman: boolean): PlannedString {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff) {
      throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `field text ${JSON.stringify(text.slice(0, 40))} has a character above 0xff`);
    }
  }
  if (huffman) {
    const h = huffmanEncodedLength(text);
    if (h < text.length) return { text, huffman: true, length: h };
  }
  return { text, huffman: false, length: text.length };
}

function writeString(buf: Uint8Array, pos: number, s: PlannedString, bits: number, flags: number): number {
  pos = writeInt(buf, pos, s.length, bits, flags | (s.huffman ? 1 << bits : 0));
  if (s.huffman) return huffmanEncodeInto(s.text, buf, pos);
  for (let i = 0; i < s.text.length; i++) buf[pos++] = s.text.charCodeAt(i);
  return pos;
}

/**
 * Encode fields as a QPACK field section using only the static table and literals (Required Insert
 * Count 0, Base 0). Exact static matches become indexed lines, static names become name references.
 */
export function encodeFieldSection(fields: readonly HeaderField[], opts: EncodeFieldSectionOptions = {}): Uint8Array {
  const huffman = opts.huffman ?? true;
  type Plan =
    | { kind: 'indexed'; index: number }
    | { kind: 'nameref'; index: number; value: PlannedString; n: boolean }
    | { kind: 'literal'; name: PlannedString; value: PlannedString; n: boolean };
  const plans: Plan[] = [];
  let total = 2;
  for (const f of fields) {
    const n = f.neverIndex === true;
    const exact = n ? undefined : STATIC_EXACT.get(`${f.name}\0${f.value}`);
    if (exact !== undefined) {
      plans.push({ kind: 'indexed', index: exact });
      total += intLength(exact, 6);
      continue;
    }
    const value = planString(f.value, huffman);
    const nameIndex = STATIC_NAME.get(f.name);
    if (nameIndex !== undefined) {
      plans.push({ kind: 'nameref', index: nameIndex, value, n });
      total += intLength(nameIndex, 4) + intLength(value.length, 7) + value.length;
    } else {
      const name = planString(f.name, huffman);
      plans.push({ kind: 'literal', name, value, n });
      total += intLength(name.length, 3) + name.length + intLength(value.length, 7) + value.length;
    }
  }
  const out = new Uint8Array(total);
  let pos = 2; // prefix: Required Insert Count 0, Delta Base 0
  for (const p of plans) {
    if (p.kind === 'indexed') pos = writeInt(out, pos, p.index, 6, 0xc0);
    else if (p.kind === 'nameref') {
      pos = writeInt(out, pos, p.index, 4, 0x50 | (p.n ? 0x20 : 0));
      pos = writeString(out, pos, p.value, 7, 0);
    } else {
      pos = writeString(out, pos, p.name, 3, 0x20 | (p.n ? 0x10 : 0));
      pos = writeString(out, pos, p.value, 7, 0);
    }
  }
  return pos === total ? out : out.subarray(0, pos);
}

// ---------------------------------------------------------------- encoder / decoder stream instructions

/**
 * Reads the peer's QPACK encoder stream (RFC 9204 §4.3). With our capacity 0 the only valid
 * instruction is Set Dynamic Table Capacity 0 (the byte 0x20); anything else is QPACK_ENCODER_STREAM_ERROR.
 */
export class QpackEncoderStreamReader {
  push(chunk: Uint8Array): void {
    for (const b of chunk) {
      if (b === 0x20) continue;
      const what =
        b & 0x80 ? 'Insert With Name Reference' : b & 0x40 ? 'Insert With Literal Name' : b & 0x20 ? 'Set Dynamic Table Capacity above 0' : 'Duplicate';
      throw new H3Error(H3ErrorCode.QPACK_ENCODER_STREAM_ERROR, 'connection', `${what} on the encoder stream, but our dynamic table capacity is 0`);
    }
  }
}

/**
 * Reads the peer's QPACK decoder stream (RFC 9204 §4.4). We never reference the dynamic table, so
 * Section Acknowledgment and Insert Count Increment are QPACK_DECODER_STREAM_ERROR; Stream
 * Cancellation (01 + stream ID) is accepted and ignored.
 */
export class QpackDecoderStreamReader {
  /** Continuation bytes of a Stream Cancellation's stream ID still to skip. */
  private inInteger = false;
  private continuationBytes = 0;

  push(chunk: Uint8Array): void {
    for (const b of chunk) {
      if (this.inInteger) {
        if (++this.continuationBytes > 9) throw new H3Error(H3ErrorCode.QPACK_DECODER_STREAM_ERROR, 'connection', 'stream ID integer is too long');
        if ((b & 0x80) === 0) this.inInteger = false;
        continue;
      }
      if (b & 0x80)
        throw new H3Error(H3ErrorCode.QPACK_DECODER_STREAM_ERROR, 'connection', 'Section Acknowledgment for a field section that used no dynamic table');
      if ((b & 0x40) === 0) throw new H3Error(H3ErrorCode.QPACK_DECODER_STREAM_ERROR, 'connection', 'Insert Count Increment, but we never inserted');
      // Stream Cancellation with a 6-bit prefix: continuation bytes follow when the prefix is all ones.
      if ((b & 0x3f) === 0x3f) {
        this.inInteger = true;
        this.continuationBytes = 0;
      }
    }
  }
}
