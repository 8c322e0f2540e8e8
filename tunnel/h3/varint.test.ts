import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { H3Error, H3ErrorCode, h3ErrorName } from './errors.js';
import { decodeVarint, encodeVarint, encodeVarintBig, readVarint, readVarintBig, varintLength, writeVarint } from './varint.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));

test('RFC 9000 §A.1 sample varints decode', () => {
  assert.equal(readVarintBig(hex('c2197c5eff14e88c'), 0), 151288809941952652n);
  assert.equal(readVarint(hex('9d7f3e7d'), 0), 494878333);
  assert.equal(readVarint(hex('7bbd'), 0), 15293);
  assert.equal(readVarint(hex('25'), 0), 37);
  assert.equal(readVarint(hex('4025'), 0), 37); // non-minimal encodings are valid
});

test('encodings use the minimal length and match the RFC samples', () => {
  assert.deepEqual(encodeVarint(37), hex('25'));
  assert.deepEqual(encodeVarint(15293), hex('7bbd'));
  assert.deepEqual(encodeVarint(494878333), hex('9d7f3e7d'));
  assert.deepEqual(encodeVarintBig(151288809941952652n), hex('c2197c5eff14e88c'));
  assert.deepEqual([63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30].map(varintLength), [1, 2, 2, 4, 4, 8]);
});

test('truncated input reads as incomplete, not as a value', () => {
  assert.equal(readVarint(hex(''), 0), -1);
  assert.equal(readVarint(hex('9d7f3e'), 0), -1);
  assert.equal(readVarintBig(hex('c2197c'), 0), -1n);
  assert.equal(decodeVarint(hex('40')), null);
  assert.deepEqual(decodeVarint(hex('007bbd'), 1), { value: 15293, length: 2 });
});

test('writeVarint refuses values it cannot encode, with H3Error', () => {
  const buf = new Uint8Array(8);
  for (const bad of [-1, 1.5, Number.MAX_SAFE_INTEGER + 1]) {
    assert.throws(() => writeVarint(buf, 0, bad), H3Error);
  }
  assert.throws(() => writeVarint(new Uint8Array(1), 0, 64), H3Error);
  assert.throws(() => writeVarint(buf, 0, 300, 1), H3Error);
  assert.equal(writeVarint(buf, 0, 5, 8), 8); // forced long form
  assert.equal(readVarint(buf, 0), 5);
});

test('H3Error carries code, scope and a readable name', () => {
  const e = new H3Error(H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection', 'DATA on control stream');
  assert.equal(e.h3Code, 0x105);
  assert.equal(e.isConnectionError, true);
  assert.equal(e.message, 'H3_FRAME_UNEXPECTED: DATA on control stream');
  assert.equal(e.reason, 'DATA on control stream');
  assert.equal(h3ErrorName(0x33), 'H3_DATAGRAM_ERROR');
  assert.equal(h3ErrorName(0x999), '0x999');
});

test('property: every safe integer round-trips through the varint codec', () => {
  fc.assert(
    fc.property(fc.maxSafeNat(), fc.nat(4), (v, pad) => {
      const buf = new Uint8Array(pad + 8);
      const end = writeVarint(buf, pad, v);
      assert.equal(end - pad, varintLength(v));
      assert.equal(readVarint(buf, pad), v);
      assert.equal(readVarintBig(buf, pad), BigInt(v));
    }),
  );
  fc.assert(
    fc.property(fc.bigInt({ min: 0n, max: (1n << 62n) - 1n }), (v) => {
      assert.equal(readVarintBig(encodeVarintBig(v), 0), v);
    }),
  );
});
