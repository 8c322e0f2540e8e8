// Hostile-size inputs: every decoder finishes fast, buffers no more than its bound, and fails with H3Error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { CapsuleParser, CapsuleType, decodeCapsuleValue } from './capsules.js';
import { H3Error } from './errors.js';
import { encodeFrame, H3FrameParser } from './frames.js';
import { huffmanDecode } from './huffman.js';
import { decodeFieldSection } from './qpack.js';
import { RequestStreamReader } from './stream.js';
import { encodeVarint } from './varint.js';

function within<T>(ms: number, what: string, fn: () => T): void {
  const t0 = performance.now();
  try {
    fn();
  } catch (e) {
    if (!(e instanceof H3Error)) throw e;
  }
  const took = performance.now() - t0;
  // Generous: the machine is shared; a quadratic path would take seconds to minutes here.
  assert.ok(took < ms, `${what} took ${took.toFixed(0)} ms`);
}

test('4 MiB of random bytes through each stream decoder in 1 KiB chunks', () => {
  const data = randomBytes(4 * 1024 * 1024);
  const chunked = (push: (c: Uint8Array) => unknown) => () => {
    for (let i = 0; i < data.length; i += 1024) push(data.subarray(i, i + 1024));
  };
  within(
    3000,
    'control parser',
    chunked((c) => new H3FrameParser({ stream: 'control', role: 'server' }).push(c)),
  );
  within(
    3000,
    'request reader',
    chunked((c) => new RequestStreamReader({ role: 'server' }).push(c)),
  );
  within(
    3000,
    'capsule parser',
    chunked((c) => new CapsuleParser().push(c)),
  );
});

test('long streams of tiny frames and capsules are linear', () => {
  // 200k GREASE frames of length 0 after SETTINGS, fed in one piece.
  const grease = encodeFrame(0x21, new Uint8Array(0));
  const many = new Uint8Array(2 + grease.length * 200_000);
  many.set([0x04, 0x00]);
  for (let i = 0; i < 200_000; i++) many.set(grease, 2 + i * grease.length);
  within(2000, '200k GREASE frames', () => assert.equal(new H3FrameParser({ stream: 'control', role: 'server' }).push(many).length, 1));
  // 200k unknown capsules of length 0.
  const capsules = new Uint8Array(200_000 * 3);
  for (let i = 0; i < 200_000; i++) capsules.set([0x40, 0x40, 0x00], i * 3);
  within(2000, '200k unknown capsules', () => assert.equal(new CapsuleParser().push(capsules).length, 0));
});

test('big hostile values stay bounded', () => {
  within(2000, 'Huffman 1 MiB of ones', () => huffmanDecode(new Uint8Array(1024 * 1024).fill(0xff)));
  within(2000, 'Huffman 1 MiB of zeros', () => huffmanDecode(new Uint8Array(1024 * 1024)));
  // 64 KiB of 1-byte indexed lines: stopped by the decoded-size limit.
  const indexed = new Uint8Array(2 + 65536).fill(0xc0);
  indexed[0] = 0;
  indexed[1] = 0;
  within(1000, 'field section of 64k indexed lines', () => decodeFieldSection(indexed));
  // A ROUTE_ADVERTISEMENT with 6500 valid IPv4 ranges and the all-protocols overlap check.
  const ranges = new Uint8Array(6500 * 10);
  const dv = new DataView(ranges.buffer);
  for (let i = 0; i < 6500; i++) {
    ranges[i * 10] = 4;
    dv.setUint32(i * 10 + 1, i * 16);
    dv.setUint32(i * 10 + 5, i * 16 + 7);
    ranges[i * 10 + 9] = i < 3250 ? 0 : 6;
  }
  within(2000, '6500 routes', () => decodeCapsuleValue(CapsuleType.ROUTE_ADVERTISEMENT, ranges));
  // A frame claiming 2^62-1 bytes is refused from its header; nothing is allocated.
  const huge = new Uint8Array([0x01, ...encodeVarint(2 ** 53 - 1)]);
  assert.throws(() => new RequestStreamReader({ role: 'server' }).push(huge), H3Error);
});

test('a partial HEADERS frame holds the bytes that arrived, not its declared length', () => {
  // 1,000 request streams, each with a HEADERS frame that declares 60,000 bytes and sends 10.
  const header = Uint8Array.from([0x01, ...encodeVarint(60_000)]);
  const before = process.memoryUsage().arrayBuffers;
  const readers: RequestStreamReader[] = [];
  for (let i = 0; i < 1000; i++) {
    const r = new RequestStreamReader({ role: 'server' });
    r.push(header);
    r.push(new Uint8Array(10).fill(0x80));
    readers.push(r);
  }
  const held = process.memoryUsage().arrayBuffers - before;
  // The old parser allocated 1,000 × 60,000 bytes = 57 MiB here.
  assert.ok(held < 4 << 20, `1,000 partial frames (10 KB received) hold ${(held / 1048576).toFixed(1)} MiB`);
  assert.equal(readers[0]?.buffered, 10);
});

test('property: buffered bytes never exceed the bytes received, and any split decodes the same frames', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.array(fc.nat(3100), { maxLength: 12 }), (payload, cuts) => {
      const wire = Uint8Array.from([...encodeFrame(0x01, payload), ...encodeFrame(0x00, payload)]);
      const points = [...new Set(cuts.map((c) => Math.min(c, wire.length)))].sort((a, b) => a - b);
      const p = new H3FrameParser({ stream: 'request', role: 'server' });
      const frames = [];
      let prev = 0;
      for (const at of [...points, wire.length]) {
        frames.push(...p.push(wire.subarray(prev, at)));
        assert.ok(p.buffered <= at, `buffered ${p.buffered} after ${at} bytes`);
        prev = at;
      }
      const headers = frames.filter((f) => f.type === 'headers');
      assert.equal(headers.length, 1);
      assert.deepEqual(headers[0]?.type === 'headers' ? Buffer.from(headers[0].fieldSection) : null, Buffer.from(payload));
      const data = frames.flatMap((f) => (f.type === 'data' ? [f.payload] : []));
      assert.deepEqual(Buffer.concat(data), Buffer.from(payload));
    }),
    { numRuns: 300 },
  );
});
