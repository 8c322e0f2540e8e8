// The HPACK/QPACK Huffman code (RFC 7541 Appendix B; QPACK reuses it, RFC 9204 §4.1.2).
// Decoding walks a binary tree built once from the table; padding must be < 8 bits of ones (a prefix of EOS).
import { H3Error, H3ErrorCode } from './errors.js';

/** Code of each symbol 0..256 (256 = EOS), right-aligned, as listed in RFC 7541 Appendix B. */
// biome-ignore format: the RFC's table, eight symbols a row
const CODES: readonly number[] = [
  0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, // 0-7
  0xfffffe8, 0xffffea, 0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, // 8-15
  0xfffffed, 0xfffffee, 0xfffffef, 0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, // 16-23
  0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7, 0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, // 24-31
  0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, // 32-39: SP ! " # $ % & '
  0x3fa, 0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, // 40-47: ( ) * + , - . /
  0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, // 48-55: 0 1 2 3 4 5 6 7
  0x1e, 0x1f, 0x5c, 0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, // 56-63: 8 9 : ; < = > ?
  0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, // 64-71: @ A B C D E F G
  0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, // 72-79: H I J K L M N O
  0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, // 80-87: P Q R S T U V W
  0xfc, 0x73, 0xfd, 0x1ffb, 0x7fff0, 0x1ffc, 0x3ffc, 0x22, // 88-95: X Y Z [ \ ] ^ _
  0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, // 96-103: ` a b c d e f g
  0x27, 0x6, 0x74, 0x75, 0x28, 0x29, 0x2a, 0x7, // 104-111: h i j k l m n o
  0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, // 112-119: p q r s t u v w
  0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd, 0x1ffd, 0xffffffc, // 120-127: x y z { | } ~ DEL
  0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, // 128-135
  0x3fffd6, 0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, // 136-143
  0xffffec, 0xffffed, 0x3fffd7, 0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, // 144-151
  0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9, 0x7fffe6, 0x7fffe7, 0xffffef, // 152-159
  0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9, 0x1fffde, // 160-167
  0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, // 168-175
  0x1fffe0, 0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, // 176-183
  0xfffea, 0x3fffe2, 0x3fffe3, 0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, // 184-191
  0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7, 0x7ffff2, 0x3fffe8, 0x1ffffec, // 192-199
  0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1, 0x1ffffed, // 200-207
  0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, // 208-215
  0x1fffe4, 0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, // 216-223
  0xfffec, 0xfffff3, 0xfffed, 0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, // 224-231
  0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4, 0xfffff5, 0x3ffffea, 0x7ffff4, // 232-239
  0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8, 0x7ffffe9, 0x7ffffea, // 240-247
  0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0, 0x3ffffee, // 248-255
  0x3fffffff, // EOS
];

/** Code length in bits of each symbol 0..256. */
// biome-ignore format: sixteen symbols a row
const LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0-15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 16-31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, // 32-47: SP ! " # $ % & ' ( ) * + , - . /
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, // 48-63: 0 1 2 3 4 5 6 7 8 9 : ; < = > ?
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, // 64-79: @ A B C D E F G H I J K L M N O
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, // 80-95: P Q R S T U V W X Y Z [ \ ] ^ _
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, // 96-111: ` a b c d e f g h i j k l m n o
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, // 112-127: p q r s t u v w x y z { | } ~ DEL
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 128-143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 144-159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 160-175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 176-191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 192-207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 208-223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 224-239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 240-255
  30, // EOS
];

export const EOS = 256;

/** For tests: the table as (code, length) pairs. */
export const HUFFMAN_TABLE: ReadonlyArray<readonly [code: number, length: number]> = CODES.map((c, i) => [c, LENGTHS[i]!] as const); // both tables hold 257 entries

// Decoding tree: node i has children tree[2i] (bit 0) and tree[2i+1] (bit 1). A child value >= 0 is
// another node; a negative value -(sym+1) is a leaf. 0 means "no child" (the root is never a child).
// Indexes below marked ! are in range by construction: symbols 0..256 index the 257-entry tables, nodes
// stay below 512 (a prefix code over 257 symbols has 256 inner nodes), nibbles below 16.
const tree = new Int32Array(2 * 512);
let treeError: string | null = null;
{
  let nodes = 1;
  for (let sym = 0; sym <= EOS && !treeError; sym++) {
    const code = CODES[sym]!;
    const len = LENGTHS[sym]!;
    let node = 0;
    for (let bit = len - 1; bit >= 0; bit--) {
      const slot = 2 * node + ((code >>> bit) & 1);
      const child = tree[slot]!;
      if (bit === 0) {
        if (child !== 0) treeError = `symbol ${sym} collides with another code`;
        tree[slot] = -(sym + 1);
      } else if (child < 0) {
        treeError = `symbol ${sym} extends the code of symbol ${-child - 1}`;
      } else {
        if (child === 0) tree[slot] = nodes++;
        node = tree[slot]!;
      }
    }
  }
}
/** Null when the table above forms a valid prefix code (checked by the tests). */
export const HUFFMAN_TABLE_ERROR: string | null = treeError;

const failed = (msg: string) => new H3Error(H3ErrorCode.QPACK_DECOMPRESSION_FAILED, 'connection', msg);

// Nibble transition table for decoding 4 bits per step: for node n and nibble v, entry [n * 16 + v] packs
// the next node (bits 0-8), the emitted symbol + 1 (bits 9-17, 0 = none; at most one symbol fits in 4
// bits because the shortest code is 5 bits) and a failure flag (bit 18: the nibble completes EOS).
// A walk may end on node n only if n's path from the root is at most 7 one-bits (valid padding).
const NIBBLE = new Int32Array(512 * 16);
const PADDING_OK = new Uint8Array(512);
{
  const depth = new Int32Array(512);
  const ones = new Uint8Array(512);
  ones[0] = 1;
  // Nodes are numbered in creation order, so a parent always precedes its children.
  for (let node = 0; node < 512; node++) {
    for (let bit = 0; bit < 2; bit++) {
      const child = tree[2 * node + bit]!;
      if (child > 0) {
        depth[child] = depth[node]! + 1;
        ones[child] = ones[node]! & bit;
      }
    }
  }
  for (let node = 0; node < 512; node++) {
    PADDING_OK[node] = ones[node] && depth[node]! <= 7 ? 1 : 0;
    for (let v = 0; v < 16; v++) {
      let n = node;
      let emitted = 0;
      let fail = 0;
      for (let b = 3; b >= 0; b--) {
        const next = tree[2 * n + ((v >> b) & 1)]!;
        if (next < 0) {
          const sym = -next - 1;
          if (sym === EOS) fail = 1;
          emitted = sym + 1;
          n = 0;
        } else n = next;
      }
      NIBBLE[node * 16 + v] = n | (emitted << 9) | (fail << 18);
    }
  }
}

/**
 * Decode Huffman-coded bytes to a latin1 string. Errors (EOS in the data, padding longer than 7 bits
 * or not all ones) are QPACK_DECOMPRESSION_FAILED.
 */
export function huffmanDecode(data: Uint8Array): string {
  const out = new Uint8Array(Math.ceil((data.length * 8) / 5));
  let n = 0;
  let node = 0;
  for (const byte of data) {
    let e = NIBBLE[node * 16 + (byte >> 4)]!;
    if (e & 0x40000) throw failed('Huffman string contains EOS');
    if (e & 0x3fe00) out[n++] = (e >> 9) - 1;
    e = NIBBLE[(e & 0x1ff) * 16 + (byte & 0x0f)]!;
    if (e & 0x40000) throw failed('Huffman string contains EOS');
    if (e & 0x3fe00) out[n++] = (e >> 9) - 1;
    node = e & 0x1ff;
  }
  if (!PADDING_OK[node]) throw failed('Huffman padding is longer than 7 bits or not a prefix of EOS');
  return Buffer.from(out.buffer, out.byteOffset, n).toString('latin1');
}

/** Reference bit-at-a-time decoder (for tests: must agree with huffmanDecode on every input). */
export function huffmanDecodeBitwise(data: Uint8Array): string {
  const out = new Uint8Array(Math.ceil((data.length * 8) / 5));
  let n = 0;
  let node = 0;
  let bitsSinceSymbol = 0;
  let allOnes = true;
  for (const byte of data) {
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >> b) & 1;
      const next = tree[2 * node + bit]!;
      bitsSinceSymbol++;
      if (bit === 0) allOnes = false;
      if (next < 0) {
        const sym = -next - 1;
        if (sym === EOS) throw failed('Huffman string contains EOS');
        out[n++] = sym;
        node = 0;
        bitsSinceSymbol = 0;
        allOnes = true;
      } else {
        node = next;
      }
    }
  }
  if (bitsSinceSymbol > 7 || !allOnes) throw failed('Huffman padding is longer than 7 bits or not a prefix of EOS');
  return Buffer.from(out.buffer, out.byteOffset, n).toString('latin1');
}

/** Bytes huffmanEncode(text) would produce (text as latin1). */
export function huffmanEncodedLength(text: string): number {
  let bits = 0;
  for (let i = 0; i < text.length; i++) bits += LENGTHS[text.charCodeAt(i) & 0xff]!;
  return Math.ceil(bits / 8);
}

/** Write the Huffman code of `text` (latin1; every char code must be <= 0xff) at `offset`; returns the end offset. */
export function huffmanEncodeInto(text: string, buf: Uint8Array, offset: number): number {
  // Integer bit packing: `acc` holds fewer than 8 pending bits between symbols, so adding a code of up
  // to 24 bits stays within 31 bits; the few longer codes (25-30 bits) go in two parts.
  let acc = 0;
  let accBits = 0;
  let pos = offset;
  for (let i = 0; i < text.length; i++) {
    const sym = text.charCodeAt(i);
    const len = LENGTHS[sym];
    const code = CODES[sym];
    if (len === undefined || code === undefined || sym > 0xff)
      throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `char code ${sym} is not latin1 and has no Huffman code`);
    if (len > 24) {
      acc = (acc << (len - 16)) | (code >>> 16);
      accBits += len - 16;
      while (accBits >= 8) {
        accBits -= 8;
        buf[pos++] = (acc >>> accBits) & 0xff;
      }
      acc = ((acc & ((1 << accBits) - 1)) << 16) | (code & 0xffff);
      accBits += 16;
    } else {
      acc = (acc << len) | code;
      accBits += len;
    }
    while (accBits >= 8) {
      accBits -= 8;
      buf[pos++] = (acc >>> accBits) & 0xff;
    }
    acc &= (1 << accBits) - 1;
  }
  if (accBits > 0) buf[pos++] = ((acc << (8 - accBits)) | (0xff >> accBits)) & 0xff;
  return pos;
}

export function huffmanEncode(text: string): Uint8Array {
  const out = new Uint8Array(huffmanEncodedLength(text));
  huffmanEncodeInto(text, out, 0);
  return out;
}
