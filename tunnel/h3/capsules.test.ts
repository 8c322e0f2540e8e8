import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CapsuleParser,
  CapsuleType,
  decodeCapsuleValue,
  encodeCapsule,
  encodeDatagramCapsule,
  encodeTypedCapsule,
  readContextId,
  type Capsule,
  type IpAddressEntry,
  type IpAddressRange,
} from './capsules.js';
import {
  encodeHttpDatagram,
  encodeHttpDatagramPrefix,
  httpDatagramHeaderLength,
  newHttpDatagramHeader,
  parseHttpDatagram,
  readDatagramStreamId,
} from './datagram.js';
import { H3Error, H3ErrorCode } from './errors.js';
import { formatIp, parseIp } from '../../dataplane/index.js';
import { encodeVarint } from './varint.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

function expectH3(fn: () => unknown, code: number, scope?: 'connection' | 'stream'): void {
  assert.throws(fn, (e: unknown) => e instanceof H3Error && e.h3Code === code && (!scope || e.scope === scope));
}

// ---------------------------------------------------------------- HTTP Datagrams

test('HTTP/3 datagram: quarter stream ID and context ID', () => {
  const dgram = encodeHttpDatagram(8, 0, hex('45000014'));
  assert.deepEqual(dgram, hex('02 00 45000014'));
  const h = newHttpDatagramHeader();
  assert.equal(parseHttpDatagram(dgram, h), true);
  assert.deepEqual(h, { streamId: 8, contextId: 0, payloadOffset: 2 });
  assert.deepEqual(dgram.subarray(h.payloadOffset), hex('45000014'));
  // Larger IDs: stream 4*100 = 400 needs a 2-byte quarter ID.
  const big = encodeHttpDatagram(400, 70, new Uint8Array(0));
  assert.equal(big.length, httpDatagramHeaderLength(400, 70));
  assert.equal(parseHttpDatagram(big, h), true);
  assert.deepEqual(h, { streamId: 400, contextId: 70, payloadOffset: 4 });
  assert.deepEqual(encodeHttpDatagramPrefix(400, 70), big);
});

test('HTTP/3 datagram errors: empty, truncated or out-of-range quarter stream ID', () => {
  expectH3(() => readDatagramStreamId(new Uint8Array(0)), H3ErrorCode.H3_DATAGRAM_ERROR, 'connection');
  expectH3(() => readDatagramStreamId(hex('40')), H3ErrorCode.H3_DATAGRAM_ERROR);
  expectH3(() => readDatagramStreamId(hex('d000000000000000')), H3ErrorCode.H3_DATAGRAM_ERROR); // 2^60
  assert.equal(readDatagramStreamId(hex('cfffffffffffffff')), (2 ** 60 - 1) * 4); // largest legal (approximate number)
  // Context ID missing: drop (false), not an error.
  assert.equal(parseHttpDatagram(hex('02'), newHttpDatagramHeader()), false);
  assert.equal(parseHttpDatagram(hex('0240'), newHttpDatagramHeader()), false);
  assert.throws(() => encodeHttpDatagram(5, 0, new Uint8Array(0)), H3Error); // not a client bidi stream
});

// ---------------------------------------------------------------- capsules

test('DATAGRAM capsule layout and context ID', () => {
  const c = encodeDatagramCapsule(0, hex('aabb'));
  assert.deepEqual(c, hex('00 03 00 aabb'));
  assert.deepEqual(new CapsuleParser().push(c), [{ type: 'datagram', payload: hex('00aabb') }]);
  assert.deepEqual(readContextId(hex('4001ff')), { contextId: 1, offset: 2 });
  assert.equal(readContextId(hex('')), null);
});

test('ADDRESS_ASSIGN / ADDRESS_REQUEST / ROUTE_ADVERTISEMENT layouts (RFC 9484 §4.7)', () => {
  const assign = encodeTypedCapsule({ type: 'address_assign', addresses: [{ requestId: 1, version: 4, address: '192.0.2.7', prefixLength: 32 }] });
  assert.deepEqual(assign, hex('01 07 01 04 c0000207 20'));
  const req = encodeTypedCapsule({ type: 'address_request', addresses: [{ requestId: 2, version: 6, address: '::', prefixLength: 128 }] });
  assert.deepEqual(req, cat(hex('02 13 02 06'), new Uint8Array(16), hex('80')));
  const routes = encodeTypedCapsule({
    type: 'route_advertisement',
    ranges: [
      { version: 4, start: '0.0.0.0', end: '255.255.255.255', ipProtocol: 0 },
      { version: 6, start: '2001:db8::', end: '2001:db8::ffff', ipProtocol: 17 },
    ],
  });
  assert.deepEqual(routes.subarray(0, 13), hex('03 2c 04 00000000 ffffffff 00 06'));
  const parsed = new CapsuleParser().push(cat(assign, req, routes));
  assert.deepEqual(parsed, [
    { type: 'address_assign', addresses: [{ requestId: 1, version: 4, address: '192.0.2.7', prefixLength: 32 }] },
    { type: 'address_request', addresses: [{ requestId: 2, version: 6, address: '::', prefixLength: 128 }] },
    {
      type: 'route_advertisement',
      ranges: [
        { version: 4, start: '0.0.0.0', end: '255.255.255.255', ipProtocol: 0 },
        { version: 6, start: '2001:db8::', end: '2001:db8::ffff', ipProtocol: 17 },
      ],
    },
  ]);
});

test('connect-ip capsule validation (malformed = H3_MESSAGE_ERROR on the stream)', () => {
  const bad: Array<[number, string]> = [
    [CapsuleType.ADDRESS_ASSIGN, '01 05 c0000207 20'], // IP version 5
    [CapsuleType.ADDRESS_ASSIGN, '01 04 c0000207 21'], // prefix 33 > 32
    [CapsuleType.ADDRESS_ASSIGN, '01 04 c0000207 18'], // host bits set beyond /24
    [CapsuleType.ADDRESS_ASSIGN, '01 04 c00002'], // truncated address
    [CapsuleType.ADDRESS_ASSIGN, '01 04 c0000207'], // missing prefix length
    [CapsuleType.ADDRESS_ASSIGN, '40'], // truncated request ID
    [CapsuleType.ADDRESS_REQUEST, ''], // no requested address
    [CapsuleType.ADDRESS_REQUEST, '00 04 00000000 20'], // request ID 0
    [CapsuleType.ROUTE_ADVERTISEMENT, '04 0a000002 0a000001 00'], // start > end
    [CapsuleType.ROUTE_ADVERTISEMENT, `06 ${'00'.repeat(32)} 00 04 00000000 00000000 00`], // v6 before v4
    [CapsuleType.ROUTE_ADVERTISEMENT, '04 00000000 00000001 11 04 00000005 00000006 06'], // protocol order 17 then 6
    [CapsuleType.ROUTE_ADVERTISEMENT, '04 00000000 00000005 00 04 00000005 00000006 00'], // overlap
    [CapsuleType.ROUTE_ADVERTISEMENT, '04 00000000 000000ff 00 04 00000005 00000006 06'], // protocol 6 inside an all-protocol range
    [CapsuleType.ROUTE_ADVERTISEMENT, '04 00000000 000000ff'], // truncated
  ];
  for (const [type, value] of bad) {
    expectH3(() => decodeCapsuleValue(type, hex(value)), H3ErrorCode.H3_MESSAGE_ERROR, 'stream');
  }
  // Adjacent (not overlapping) ranges and an empty ADDRESS_ASSIGN / ROUTE_ADVERTISEMENT are fine.
  assert.equal(decodeCapsuleValue(CapsuleType.ROUTE_ADVERTISEMENT, hex('04 00000000 00000004 00 04 00000005 00000006 00'))?.type, 'route_advertisement');
  assert.deepEqual(decodeCapsuleValue(CapsuleType.ADDRESS_ASSIGN, hex('')), { type: 'address_assign', addresses: [] });
  assert.deepEqual(decodeCapsuleValue(CapsuleType.ROUTE_ADVERTISEMENT, hex('')), { type: 'route_advertisement', ranges: [] });
  // Encoders refuse the same mistakes.
  assert.throws(
    () => encodeTypedCapsule({ type: 'address_assign', addresses: [{ requestId: 0, version: 4, address: '10.0.0.1', prefixLength: 24 }] }),
    H3Error,
  );
  assert.throws(() => encodeTypedCapsule({ type: 'address_request', addresses: [] }), H3Error);
  assert.throws(
    () => encodeTypedCapsule({ type: 'address_assign', addresses: [{ requestId: 0, version: 6, address: '10.0.0.1', prefixLength: 24 }] }),
    H3Error,
  );
});

test('capsule parser: unknown types skipped without buffering, split input, truncation at FIN, size bound', () => {
  const unknown = cat(encodeVarint(0x2843), encodeVarint(2 ** 40));
  const p = new CapsuleParser({ maxCapsuleLength: 100 });
  assert.deepEqual(p.push(cat(unknown, new Uint8Array(10000))), []);
  assert.equal(p.midCapsule, true);
  const q = new CapsuleParser();
  const bytes = cat(encodeCapsule(0x2843, hex('010203')), encodeDatagramCapsule(4, hex('ff')), encodeCapsule(0x17, new Uint8Array(0)));
  const got: Capsule[] = [];
  for (const b of bytes) got.push(...q.push(Uint8Array.of(b)));
  assert.deepEqual(got, [{ type: 'datagram', payload: hex('04ff') }]);
  q.end();
  const r = new CapsuleParser();
  r.push(encodeDatagramCapsule(0, hex('aabbcc')).subarray(0, 4));
  expectH3(() => r.end(), H3ErrorCode.H3_MESSAGE_ERROR, 'stream');
  expectH3(() => new CapsuleParser({ maxCapsuleLength: 100 }).push(hex('00 4065')), H3ErrorCode.H3_EXCESSIVE_LOAD, 'stream');
});

test('IP text forms', () => {
  assert.equal(formatIp(parseIp('2001:0db8:0:0:1:0:0:1')!), '2001:db8::1:0:0:1');
  assert.equal(formatIp(parseIp('::ffff:192.0.2.1')!), '::ffff:c000:201');
  assert.equal(formatIp(parseIp('::')!), '::');
  assert.equal(formatIp(parseIp('1:0:0:0:0:0:0:0')!), '1::');
  assert.equal(formatIp(parseIp('1:2:3:4:5:6:7:0')!), '1:2:3:4:5:6:7:0');
  for (const bad of ['1.2.3', '256.1.1.1', '01.1.1.1', '1::2::3', '1:2:3:4:5:6:7:8:9', ':::', 'g::', '1.2.3.4::', '']) {
    assert.equal(parseIp(bad), null, bad);
  }
});

// ---------------------------------------------------------------- properties

const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 });
const ipv6 = fc.uint8Array({ minLength: 16, maxLength: 16 });

function maskTo(addr: Uint8Array, prefix: number): Uint8Array {
  const out = Uint8Array.from(addr);
  for (let bit = prefix; bit < out.length * 8; bit++) out[bit >> 3] = (out[bit >> 3] ?? 0) & ~(0x80 >> (bit & 7));
  return out;
}

const entryArb = (minRequestId: number): fc.Arbitrary<IpAddressEntry> =>
  fc.oneof(
    fc
      .tuple(fc.nat({ max: 2 ** 40 }), ipv4, fc.integer({ min: 0, max: 32 }))
      .map(([id, a, p]) => ({ requestId: id + minRequestId, version: 4 as const, address: formatIp(maskTo(a, p)), prefixLength: p })),
    fc
      .tuple(fc.nat({ max: 2 ** 40 }), ipv6, fc.integer({ min: 0, max: 128 }))
      .map(([id, a, p]) => ({ requestId: id + minRequestId, version: 6 as const, address: formatIp(maskTo(a, p)), prefixLength: p })),
  );

/** Valid route lists: build sorted, disjoint ranges per (version, protocol) from sorted random points. */
const rangesArb: fc.Arbitrary<IpAddressRange[]> = fc
  .array(
    fc.tuple(fc.constantFrom(4 as const, 6 as const), fc.integer({ min: 1, max: 255 }), fc.array(fc.nat({ max: 2 ** 31 }), { minLength: 2, maxLength: 6 })),
    { maxLength: 4 },
  )
  .map((groups) => {
    const seen = new Set<string>();
    const out: IpAddressRange[] = [];
    for (const [version, proto, points] of groups.sort((a, b) => a[0] - b[0] || a[1] - b[1])) {
      if (seen.has(`${version}/${proto}`)) continue;
      seen.add(`${version}/${proto}`);
      const pts = [...new Set(points)].sort((a, b) => a - b);
      for (let i = 0; i + 1 < pts.length; i += 2) {
        const toAddr = (n: number) => {
          const b = new Uint8Array(version === 4 ? 4 : 16);
          new DataView(b.buffer).setUint32(b.length - 4, n);
          return formatIp(b);
        };
        out.push({ version, start: toAddr(pts[i]!), end: toAddr(pts[i + 1]!), ipProtocol: proto });
      }
    }
    return out;
  });

const capsuleArb: fc.Arbitrary<Capsule> = fc.oneof(
  fc.uint8Array({ maxLength: 100 }).map((payload) => ({ type: 'datagram' as const, payload })),
  fc.array(entryArb(0), { maxLength: 5 }).map((addresses) => ({ type: 'address_assign' as const, addresses })),
  fc.array(entryArb(1), { minLength: 1, maxLength: 5 }).map((addresses) => ({ type: 'address_request' as const, addresses })),
  rangesArb.map((ranges) => ({ type: 'route_advertisement' as const, ranges })),
);

test('property: IP text round-trips', () => {
  fc.assert(fc.property(fc.oneof(ipv4, ipv6), (a) => assert.deepEqual(parseIp(formatIp(a)), a)));
});

test('property: capsules round-trip through the incremental parser under any chunking, unknown capsules interleaved', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(capsuleArb, fc.boolean()), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), (items, cuts) => {
      const bytes = cat(
        ...items.flatMap(([c, withUnknown]) => (withUnknown ? [encodeCapsule(0x1f * 7 + 0x29, hex('0102')), encodeTypedCapsule(c)] : [encodeTypedCapsule(c)])),
      );
      const parser = new CapsuleParser();
      const got: Capsule[] = [];
      let prev = 0;
      for (const point of [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b).concat(bytes.length)) {
        got.push(...parser.push(bytes.subarray(prev, point)));
        prev = point;
      }
      parser.end();
      assert.deepEqual(
        got,
        items.map(([c]) => c),
      );
    }),
    { numRuns: 500 },
  );
});

test('property: HTTP Datagram header round-trip', () => {
  const h = newHttpDatagramHeader();
  fc.assert(
    fc.property(fc.nat({ max: 2 ** 50 }), fc.maxSafeNat(), fc.uint8Array({ maxLength: 50 }), (q, ctx, payload) => {
      const d = encodeHttpDatagram(q * 4, ctx, payload);
      assert.equal(parseHttpDatagram(d, h), true);
      assert.equal(h.streamId, q * 4);
      assert.equal(h.contextId, ctx);
      assert.deepEqual(d.subarray(h.payloadOffset), payload);
    }),
  );
});

test('property: random bytes raise only H3Error from capsule and datagram decoders', () => {
  const h = newHttpDatagramHeader();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.array(fc.nat(), { maxLength: 4 }), (bytes, cuts) => {
      const attempts: Array<() => unknown> = [
        () => parseHttpDatagram(bytes, h),
        () => {
          const p = new CapsuleParser({ maxCapsuleLength: 150 });
          let prev = 0;
          for (const c of [...cuts.map((x) => x % (bytes.length + 1))].sort((a, b) => a - b).concat(bytes.length)) {
            p.push(bytes.subarray(prev, c));
            prev = c;
          }
          p.end();
        },
        ...[0, 1, 2, 3].map((t) => () => decodeCapsuleValue(t, bytes)),
      ];
      for (const fn of attempts) {
        try {
          fn();
        } catch (e) {
          if (!(e instanceof H3Error)) throw e;
        }
      }
    }),
    { numRuns: 3000 },
  );
  // Structured near-valid connect-ip values (right version bytes, random lengths) reach deeper checks.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom(4, 6, 5), fc.uint8Array({ maxLength: 34 })), { maxLength: 5 }), fc.constantFrom(1, 2, 3), (parts, type) => {
      const value = cat(...parts.map(([v, rest]) => (type === 3 ? cat(Uint8Array.of(v), rest) : cat(hex('01'), Uint8Array.of(v), rest))));
      try {
        decodeCapsuleValue(type, value);
      } catch (e) {
        if (!(e instanceof H3Error)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
});
