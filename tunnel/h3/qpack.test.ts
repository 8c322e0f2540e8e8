import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { H3Error, H3ErrorCode } from './errors.js';
import { EOS, HUFFMAN_TABLE, HUFFMAN_TABLE_ERROR, huffmanDecode, huffmanDecodeBitwise, huffmanEncode } from './huffman.js';
import { decodeFieldSection, encodeFieldSection, QPACK_STATIC_TABLE, QpackDecoderStreamReader, QpackEncoderStreamReader, type HeaderField } from './qpack.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

function expectH3(fn: () => unknown, code: number): void {
  assert.throws(fn, (e: unknown) => e instanceof H3Error && e.h3Code === code);
}

test('Huffman table is a complete prefix code (Kraft sum 1, no collisions)', () => {
  assert.equal(HUFFMAN_TABLE_ERROR, null);
  assert.equal(HUFFMAN_TABLE.length, 257);
  let kraft = 0;
  for (const [code, len] of HUFFMAN_TABLE) {
    assert.ok(code < 2 ** len, 'code fits its length');
    kraft += 2 ** -len;
  }
  assert.equal(kraft, 1);
  assert.deepEqual(HUFFMAN_TABLE[EOS], [0x3fffffff, 30]);
});

test('RFC 7541 C.4 Huffman examples decode', () => {
  assert.equal(huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff')), 'www.example.com');
  assert.equal(huffmanDecode(hex('a8eb 1064 9cbf')), 'no-cache');
  assert.equal(huffmanDecode(hex('25a8 49e9 5ba9 7d7f')), 'custom-key');
  assert.equal(huffmanDecode(hex('25a8 49e9 5bb8 e8b4 bf')), 'custom-value');
  // C.6.1 (responses): "302", "private", a date, a URL.
  assert.equal(huffmanDecode(hex('6402')), '302');
  assert.equal(huffmanDecode(hex('aec3 771a 4b')), 'private');
  assert.equal(huffmanDecode(hex('d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff')), 'Mon, 21 Oct 2013 20:13:21 GMT');
  assert.equal(huffmanDecode(hex('9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3')), 'https://www.example.com');
  assert.equal(huffmanDecode(new Uint8Array(0)), '');
});

test('Huffman encoder reproduces the RFC bytes', () => {
  assert.equal(toHex(huffmanEncode('www.example.com')), 'f1e3c2e5f23a6ba0ab90f4ff');
  assert.equal(toHex(huffmanEncode('no-cache')), 'a8eb10649cbf');
  assert.equal(toHex(huffmanEncode('custom-value')), '25a849e95bb8e8b4bf');
});

test('Huffman errors: EOS, long padding, padding with zeros', () => {
  expectH3(() => huffmanDecode(hex('ffff ffff')), H3ErrorCode.QPACK_DECOMPRESSION_FAILED); // 30 ones = EOS
  expectH3(() => huffmanDecode(hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff ff')), H3ErrorCode.QPACK_DECOMPRESSION_FAILED); // 8+ bits padding
  expectH3(() => huffmanDecode(hex('a8eb 1064 9cb0')), H3ErrorCode.QPACK_DECOMPRESSION_FAILED); // padding 0000
});

test('QPACK static table has the 99 entries of RFC 9204 Appendix A', () => {
  assert.equal(QPACK_STATIC_TABLE.length, 99);
  assert.deepEqual(QPACK_STATIC_TABLE[0], [':authority', '']);
  assert.deepEqual(QPACK_STATIC_TABLE[15], [':method', 'CONNECT']);
  assert.deepEqual(QPACK_STATIC_TABLE[25], [':status', '200']);
  assert.deepEqual(QPACK_STATIC_TABLE[63], [':status', '100']);
  assert.deepEqual(QPACK_STATIC_TABLE[84], ['authorization', '']);
  assert.deepEqual(QPACK_STATIC_TABLE[98], ['x-frame-options', 'sameorigin']);
});

test('RFC 9204 B.1: literal field line with static name reference', () => {
  assert.deepEqual(decodeFieldSection(hex('0000 510b 2f69 6e64 6578 2e68 746d 6c')), [{ name: ':path', value: '/index.html' }]);
  assert.equal(toHex(encodeFieldSection([{ name: ':path', value: '/index.html' }], { huffman: false })), '0000510b2f696e6465782e68746d6c');
});

test('field line representations decode', () => {
  // Indexed static 17 and 25; literal with static name ref 0 and N=1 (0x70); literal name 'x-a' (0x23).
  const fields = decodeFieldSection(hex('0000 d1 d9 7003616263 23782d6103 78797a'));
  assert.deepEqual(fields, [
    { name: ':method', value: 'GET' },
    { name: ':status', value: '200' },
    { name: ':authority', value: 'abc', neverIndex: true },
    { name: 'x-a', value: 'xyz' },
  ]);
  // Huffman-coded literal name and value: custom-key: custom-value (RFC 7541 C.4.3 strings).
  assert.deepEqual(decodeFieldSection(hex('0000 2f01 25a849e95ba97d7f 89 25a849e95bb8e8b4bf')), [{ name: 'custom-key', value: 'custom-value' }]);
});

test('dynamic table references and bad prefixes are QPACK_DECOMPRESSION_FAILED', () => {
  const bad = [
    '0100 d1', // Required Insert Count 1
    '0080 d1', // sign bit: negative Base
    '0000 80', // indexed dynamic
    '0000 10', // indexed post-base
    '0000 4003616263', // literal with dynamic name ref
    '0000 00', // literal with post-base name ref
    '0000 ff24', // static index 63+36 = 99: out of range
    '0000 5103616263ff', // trailing garbage byte 0xff: indexed static with unterminated integer
    '0000 510b2f69', // value runs past the end
    '0000 51', // missing value
    '00', // prefix cut short
    '',
    '0000 c0ffffffffffffff7f', // huge integer
  ];
  for (const b of bad) expectH3(() => decodeFieldSection(hex(b)), H3ErrorCode.QPACK_DECOMPRESSION_FAILED);
});

test('decoded size is bounded', () => {
  const fields = Array.from({ length: 50 }, (_, i) => ({ name: `x-h${i}`, value: 'v'.repeat(100) }));
  const block = encodeFieldSection(fields);
  assert.equal(decodeFieldSection(block).length, 50);
  const e = (() => {
    try {
      decodeFieldSection(block, { maxFieldSectionSize: 1000 });
    } catch (err) {
      return err;
    }
  })();
  assert.ok(e instanceof H3Error && e.h3Code === H3ErrorCode.H3_EXCESSIVE_LOAD && e.scope === 'stream');
});

test('encoder uses indexed lines for exact static matches and keeps the never-index bit', () => {
  const block = encodeFieldSection([
    { name: ':method', value: 'CONNECT' },
    { name: ':scheme', value: 'https' },
    { name: ':status', value: '200' },
    { name: 'authorization', value: 'Bearer abc', neverIndex: true },
  ]);
  assert.equal(toHex(block.subarray(0, 5)), '0000cfd7d9'); // 15, 23, 25 indexed
  assert.equal((block[5] ?? 0) & 0xf0, 0x70); // 01 N=1 T=1
  assert.equal(decodeFieldSection(block)[3]?.neverIndex, true);
  assert.throws(() => encodeFieldSection([{ name: 'x', value: 'snow\u2603' }]), H3Error);
});

test('encoder stream: only Set Dynamic Table Capacity 0 is accepted', () => {
  new QpackEncoderStreamReader().push(hex('2020'));
  for (const b of ['21', '3f01', 'c0 01 61', '41 61 01 62', '00'])
    expectH3(() => new QpackEncoderStreamReader().push(hex(b)), H3ErrorCode.QPACK_ENCODER_STREAM_ERROR);
});

test('decoder stream: Stream Cancellation accepted, acknowledgments and increments refused', () => {
  const r = new QpackDecoderStreamReader();
  r.push(hex('44 7f'));
  r.push(hex('ff')); // continuation of the 6-bit prefix integer
  r.push(hex('01 45'));
  expectH3(() => new QpackDecoderStreamReader().push(hex('84')), H3ErrorCode.QPACK_DECODER_STREAM_ERROR);
  expectH3(() => new QpackDecoderStreamReader().push(hex('01')), H3ErrorCode.QPACK_DECODER_STREAM_ERROR);
  expectH3(() => new QpackDecoderStreamReader().push(hex('00')), H3ErrorCode.QPACK_DECODER_STREAM_ERROR);
  expectH3(() => new QpackDecoderStreamReader().push(hex('7f ffffffffffffffffffff')), H3ErrorCode.QPACK_DECODER_STREAM_ERROR);
});

// ---------------------------------------------------------------- properties

const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 255 }).map((c) => String.fromCharCode(c)), maxLength: 60 });
const staticName = fc.constantFrom(...QPACK_STATIC_TABLE.map(([n]) => n));
const fieldArb: fc.Arbitrary<HeaderField> = fc.record({
  name: fc.oneof(latin1, staticName),
  value: fc.oneof(latin1, fc.constantFrom(...QPACK_STATIC_TABLE.map(([, v]) => v))),
  neverIndex: fc.boolean(),
});

test('property: Huffman round-trip for any latin1 string', () => {
  fc.assert(
    fc.property(latin1, (s) => {
      assert.equal(huffmanDecode(huffmanEncode(s)), s);
    }),
    { numRuns: 500 },
  );
});

test('property: the nibble-table Huffman decoder agrees with the bit-by-bit reference on any bytes', () => {
  const outcome = (fn: () => string): string => {
    try {
      return `ok:${fn()}`;
    } catch (e) {
      if (!(e instanceof H3Error)) throw e;
      return 'error';
    }
  };
  fc.assert(
    fc.property(
      fc.oneof(
        fc.uint8Array({ maxLength: 40 }),
        latin1.map((s) => huffmanEncode(s)),
        latin1.map((s) => Uint8Array.from([...huffmanEncode(s), 0xff])),
      ),
      (bytes) => {
        assert.equal(
          outcome(() => huffmanDecode(bytes)),
          outcome(() => huffmanDecodeBitwise(bytes)),
        );
      },
    ),
    { numRuns: 3000 },
  );
});

test('property: field sections round-trip, with and without Huffman', () => {
  fc.assert(
    fc.property(fc.array(fieldArb, { maxLength: 12 }), fc.boolean(), (fields, huffman) => {
      const decoded = decodeFieldSection(encodeFieldSection(fields, { huffman }));
      // An exact static match is sent indexed, which has no never-index bit; otherwise the bit survives.
      assert.deepEqual(
        decoded.map((f) => [f.name, f.value]),
        fields.map((f) => [f.name, f.value]),
      );
      for (const [i, f] of decoded.entries()) assert.equal(f.neverIndex ?? false, fields[i]?.neverIndex ?? false);
    }),
    { numRuns: 500 },
  );
});

test('property: random bytes raise only H3Error from every QPACK decoder', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (bytes, withPrefix) => {
      const input = withPrefix ? Uint8Array.from([0, 0, ...bytes]) : bytes;
      for (const fn of [
        () => decodeFieldSection(input, { maxFieldSectionSize: 2000 }),
        () => huffmanDecode(input),
        () => new QpackEncoderStreamReader().push(input),
        () => new QpackDecoderStreamReader().push(input),
      ]) {
        try {
          fn();
        } catch (e) {
          if (!(e instanceof H3Error)) throw e;
        }
      }
    }),
    { numRuns: 3000 },
  );
});
