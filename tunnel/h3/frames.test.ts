import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { H3Error, H3ErrorCode } from './errors.js';
import {
  encodeCancelPushFrame,
  encodeDataFrame,
  encodeDataFrameHeader,
  encodeFrame,
  encodeGoawayFrame,
  encodeH3Frame,
  encodeHeadersFrame,
  encodeMaxPushIdFrame,
  encodePushPromiseFrame,
  encodeSettingsFrame,
  greaseFrameType,
  H3FrameParser,
  type FrameParserOptions,
  type H3Frame,
} from './frames.js';
import { decodeSettings, DEFAULT_LOCAL_SETTINGS, encodeSettings, greaseSettingId, type H3Settings } from './settings.js';
import { encodeControlStreamPreamble, encodeUniStreamHeader, PeerUniStreams, readUniStreamHeader, UniStreamType } from './unistream.js';
import { encodeVarint, encodeVarintBig } from './varint.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));

function expectH3(fn: () => unknown, code: number, scope?: 'connection' | 'stream'): H3Error {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof H3Error, `expected H3Error, got ${String(e)}`);
    assert.equal(e.h3Code, code, `expected code 0x${code.toString(16)}, got ${e.message}`);
    if (scope) assert.equal(e.scope, scope);
    return e;
  }
  assert.fail('expected an H3Error');
}

/** Feed `bytes` in pieces split at the given points and collect frames (DATA chunks merged per frame is up to the caller). */
function feed(parser: H3FrameParser, bytes: Uint8Array, cuts: number[] = []): H3Frame[] {
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: H3Frame[] = [];
  let prev = 0;
  for (const p of [...points, bytes.length]) {
    out.push(...parser.push(bytes.subarray(prev, p)));
    prev = p;
  }
  return out;
}

test('SETTINGS payload: our defaults encode and decode', () => {
  const payload = encodeSettings(DEFAULT_LOCAL_SETTINGS);
  // 0x01=0, 0x06=65536, 0x07=0, 0x08=1, 0x33=1
  assert.deepEqual(payload, hex('0100 06 80010000 0700 0801 3301'));
  assert.deepEqual(decodeSettings(payload), { ...DEFAULT_LOCAL_SETTINGS });
});

test('SETTINGS: unknown and GREASE ids are kept aside, not errors', () => {
  const s = decodeSettings(cat(encodeVarint(greaseSettingId(3)), encodeVarint(7), encodeVarintBig((1n << 62n) - 1n), encodeVarint(1), hex('3301')));
  assert.equal(s.h3Datagram, true);
  assert.deepEqual(s.unknown, [
    { id: BigInt(greaseSettingId(3)), value: 7n },
    { id: (1n << 62n) - 1n, value: 1n },
  ]);
});

test('SETTINGS errors: duplicates, HTTP/2 ids, bad booleans, truncation', () => {
  expectH3(() => decodeSettings(hex('0801 0801')), H3ErrorCode.H3_SETTINGS_ERROR, 'connection');
  expectH3(() => decodeSettings(hex('2101 2102')), H3ErrorCode.H3_SETTINGS_ERROR); // duplicate unknown id
  for (const id of ['00', '02', '03', '04', '05']) expectH3(() => decodeSettings(hex(`${id}01`)), H3ErrorCode.H3_SETTINGS_ERROR);
  expectH3(() => decodeSettings(hex('0802')), H3ErrorCode.H3_SETTINGS_ERROR);
  expectH3(() => decodeSettings(hex('3302')), H3ErrorCode.H3_SETTINGS_ERROR);
  expectH3(() => decodeSettings(hex('08')), H3ErrorCode.H3_FRAME_ERROR);
  expectH3(() => decodeSettings(hex('0840')), H3ErrorCode.H3_FRAME_ERROR);
});

test('control stream: SETTINGS first, then GOAWAY; GREASE frames skipped', () => {
  const bytes = cat(
    encodeSettingsFrame(DEFAULT_LOCAL_SETTINGS),
    encodeFrame(greaseFrameType(2), new Uint8Array(300)),
    encodeGoawayFrame(8),
    encodeGoawayFrame(4),
  );
  const frames = new H3FrameParser({ stream: 'control', role: 'client' }).push(bytes);
  assert.deepEqual(
    frames.map((f) => f.type),
    ['settings', 'goaway', 'goaway'],
  );
  assert.deepEqual(frames[2], { type: 'goaway', id: 4 });
});

test('control stream rules map to the RFC 9114 error codes', () => {
  const settings = encodeSettingsFrame({});
  const server = (): H3FrameParser => new H3FrameParser({ stream: 'control', role: 'server' });
  const client = (): H3FrameParser => new H3FrameParser({ stream: 'control', role: 'client' });
  expectH3(() => server().push(encodeGoawayFrame(0)), H3ErrorCode.H3_MISSING_SETTINGS);
  expectH3(() => server().push(encodeFrame(0x21, new Uint8Array(0))), H3ErrorCode.H3_MISSING_SETTINGS);
  expectH3(() => server().push(cat(settings, settings)), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => server().push(cat(settings, encodeDataFrame(hex('00')))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => server().push(cat(settings, encodeHeadersFrame(hex('0000')))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => server().push(cat(settings, encodePushPromiseFrame(0, hex('0000')))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  for (const h2 of [0x02, 0x06, 0x08, 0x09]) expectH3(() => server().push(cat(settings, encodeFrame(h2, new Uint8Array(4)))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  // MAX_PUSH_ID: only clients send it.
  assert.deepEqual(server().push(cat(settings, encodeMaxPushIdFrame(3)))[1], { type: 'max_push_id', pushId: 3 });
  expectH3(() => client().push(cat(settings, encodeMaxPushIdFrame(3))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => server().push(cat(settings, encodeMaxPushIdFrame(3), encodeMaxPushIdFrame(2))), H3ErrorCode.H3_ID_ERROR);
  // GOAWAY from a server must name a client-initiated bidirectional stream and never increase.
  expectH3(() => client().push(cat(settings, encodeGoawayFrame(5))), H3ErrorCode.H3_ID_ERROR);
  expectH3(() => client().push(cat(settings, encodeGoawayFrame(4), encodeGoawayFrame(8))), H3ErrorCode.H3_ID_ERROR);
  // A server never promised pushes; a client that granted none accepts no CANCEL_PUSH.
  expectH3(() => server().push(cat(settings, encodeCancelPushFrame(0))), H3ErrorCode.H3_ID_ERROR);
  expectH3(() => client().push(cat(settings, encodeCancelPushFrame(0))), H3ErrorCode.H3_ID_ERROR);
  assert.equal(new H3FrameParser({ stream: 'control', role: 'client', maxPushId: 4 }).push(cat(settings, encodeCancelPushFrame(2)))[1]?.type, 'cancel_push');
  // Layout errors.
  expectH3(() => server().push(cat(settings, encodeFrame(0x07, hex('0000')))), H3ErrorCode.H3_FRAME_ERROR);
  expectH3(() => server().push(cat(settings, encodeFrame(0x07, new Uint8Array(0)))), H3ErrorCode.H3_FRAME_ERROR);
  expectH3(() => server().push(cat(settings, encodeFrame(0x07, hex('40')))), H3ErrorCode.H3_FRAME_ERROR);
  // The control stream must not end.
  const p = server();
  p.push(settings);
  expectH3(() => p.end(), H3ErrorCode.H3_CLOSED_CRITICAL_STREAM);
});

test('request stream rules', () => {
  const server = (): H3FrameParser => new H3FrameParser({ stream: 'request', role: 'server' });
  for (const f of [encodeSettingsFrame({}), encodeGoawayFrame(0), encodeMaxPushIdFrame(1), encodeCancelPushFrame(1)]) {
    expectH3(() => server().push(f), H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection');
  }
  expectH3(() => server().push(encodePushPromiseFrame(0, hex('0000'))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => new H3FrameParser({ stream: 'request', role: 'client' }).push(encodePushPromiseFrame(0, hex('0000'))), H3ErrorCode.H3_ID_ERROR);
  const pp = new H3FrameParser({ stream: 'request', role: 'client', maxPushId: 0 }).push(encodePushPromiseFrame(0, hex('0000')));
  assert.deepEqual(pp, [{ type: 'push_promise', pushId: 0, fieldSection: hex('0000') }]);
  expectH3(() => new H3FrameParser({ stream: 'push', role: 'client' }).push(encodePushPromiseFrame(0, hex('0000'))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  // Truncated frame at FIN.
  const p = server();
  p.push(encodeHeadersFrame(hex('0000d1')).subarray(0, 3));
  expectH3(() => p.end(), H3ErrorCode.H3_FRAME_ERROR);
  const q = server();
  q.push(encodeHeadersFrame(hex('0000d1')));
  q.end();
});

test('size bounds: oversized HEADERS refused before buffering; DATA and unknown frames stream through', () => {
  const p = new H3FrameParser({ stream: 'request', role: 'server', maxFrameSize: 100 });
  expectH3(() => p.push(hex('01 4065')), H3ErrorCode.H3_EXCESSIVE_LOAD); // HEADERS of 101 bytes: only the header was sent
  assert.throws(() => p.push(hex('00')), H3Error); // stays failed
  const q = new H3FrameParser({ stream: 'request', role: 'server', maxFrameSize: 100 });
  // A 2^40-byte DATA frame: chunks come out as they arrive, nothing is buffered.
  const frames = q.push(cat(hex('00'), encodeVarint(2 ** 40), new Uint8Array(1000)));
  assert.equal(frames.length, 1);
  const [first] = frames;
  assert.equal(first?.type === 'data' && first.payload.length, 1000);
  assert.equal(q.buffered, 0);
  const r = new H3FrameParser({ stream: 'request', role: 'server', maxFrameSize: 100 });
  assert.deepEqual(r.push(cat(encodeVarint(greaseFrameType(9)), encodeVarint(2 ** 40), new Uint8Array(5000))), []);
  assert.equal(r.buffered, 0);
});

test('empty DATA frames are reported (so frame order can be checked)', () => {
  const frames = new H3FrameParser({ stream: 'request', role: 'server' }).push(cat(encodeHeadersFrame(hex('0000d1')), encodeDataFrame(new Uint8Array(0))));
  assert.deepEqual(
    frames.map((f) => f.type),
    ['headers', 'data'],
  );
});

test('DATA header encoder matches the full frame', () => {
  const payload = new Uint8Array(700).fill(7);
  assert.deepEqual(cat(encodeDataFrameHeader(700), payload), encodeDataFrame(payload));
});

test('unidirectional stream headers', () => {
  assert.deepEqual(readUniStreamHeader(hex('00')), { kind: 'control', type: 0, headerLength: 1 });
  assert.deepEqual(readUniStreamHeader(hex('02ff')), { kind: 'qpack_encoder', type: 2, headerLength: 1 });
  assert.deepEqual(readUniStreamHeader(hex('03')), { kind: 'qpack_decoder', type: 3, headerLength: 1 });
  assert.equal(readUniStreamHeader(hex('01')), null); // push ID not there yet
  assert.deepEqual(readUniStreamHeader(hex('01 4005')), { kind: 'push', type: 1, pushId: 5, headerLength: 3 });
  assert.equal(readUniStreamHeader(hex('')), null);
  assert.equal(readUniStreamHeader(hex('40')), null);
  assert.deepEqual(readUniStreamHeader(hex('4021')), { kind: 'unknown', type: 0x21, headerLength: 2 });
  assert.deepEqual(encodeUniStreamHeader(UniStreamType.PUSH, 5), hex('0105'));
  const preamble = encodeControlStreamPreamble();
  const header = readUniStreamHeader(preamble);
  assert.equal(header?.kind, 'control');
  const frames = new H3FrameParser({ stream: 'control', role: 'client' }).push(preamble.subarray(header!.headerLength));
  assert.deepEqual(frames, [{ type: 'settings', settings: { ...DEFAULT_LOCAL_SETTINGS } }]);

  const server = new PeerUniStreams('server');
  assert.equal(server.accept({ kind: 'control', type: 0, headerLength: 1 }), 'read');
  assert.equal(server.accept({ kind: 'qpack_encoder', type: 2, headerLength: 1 }), 'read');
  assert.equal(server.accept({ kind: 'unknown', type: 0x21, headerLength: 1 }), 'ignore');
  assert.equal(server.hasControlStream, true);
  expectH3(() => server.accept({ kind: 'control', type: 0, headerLength: 1 }), H3ErrorCode.H3_STREAM_CREATION_ERROR);
  expectH3(() => server.accept({ kind: 'qpack_encoder', type: 2, headerLength: 1 }), H3ErrorCode.H3_STREAM_CREATION_ERROR);
  expectH3(() => server.accept({ kind: 'push', type: 1, pushId: 0, headerLength: 2 }), H3ErrorCode.H3_STREAM_CREATION_ERROR);
  expectH3(() => new PeerUniStreams('client').accept({ kind: 'push', type: 1, pushId: 0, headerLength: 2 }), H3ErrorCode.H3_ID_ERROR);
});

// ---------------------------------------------------------------- properties

const settingsArb: fc.Arbitrary<H3Settings> = fc.record(
  {
    qpackMaxTableCapacity: fc.nat(),
    maxFieldSectionSize: fc.maxSafeNat(),
    qpackBlockedStreams: fc.nat(),
    enableConnectProtocol: fc.boolean(),
    h3Datagram: fc.boolean(),
  },
  { requiredKeys: [] },
);

const bytesArb = fc.uint8Array({ maxLength: 200 });
const frameArb = (opts: { control: boolean }): fc.Arbitrary<H3Frame> =>
  opts.control
    ? fc.oneof(
        fc.nat().map((n) => ({ type: 'max_push_id' as const, pushId: n })),
        fc.constant({ type: 'max_push_id' as const, pushId: 0 }),
      )
    : fc.oneof(
        bytesArb.map((b) => ({ type: 'data' as const, payload: b })),
        bytesArb.map((b) => ({ type: 'headers' as const, fieldSection: b })),
      );

test('property: SETTINGS round-trip', () => {
  fc.assert(
    fc.property(settingsArb, (s) => {
      assert.deepEqual(decodeSettings(encodeSettings(s)), { ...s });
    }),
  );
});

test('property: request-stream frames round-trip through the parser under any chunking', () => {
  fc.assert(
    fc.property(fc.array(frameArb({ control: false }), { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 10 }), (frames, cuts) => {
      const bytes = cat(...frames.map(encodeH3Frame));
      const got = feed(new H3FrameParser({ stream: 'request', role: 'server' }), bytes, cuts);
      // Merge DATA chunks per frame: rebuild a flat view to compare.
      const flatten = (fs: H3Frame[]) => {
        const out: Array<{ type: string; bytes: string }> = [];
        for (const f of fs) {
          const b = Buffer.from(f.type === 'data' ? f.payload : f.type === 'headers' ? f.fieldSection : new Uint8Array(0)).toString('hex');
          const last = out[out.length - 1];
          if (f.type === 'data' && last?.type === 'data-open') last.bytes += b;
          else out.push({ type: f.type === 'data' ? 'data-open' : f.type, bytes: b });
        }
        return out;
      };
      // Frames given to the encoder: adjacent DATA frames merge in both views.
      assert.deepEqual(flatten(got), flatten(frames));
    }),
  );
});

test('property: control-stream frames round-trip', () => {
  fc.assert(
    fc.property(settingsArb, fc.array(fc.nat({ max: 2 ** 40 }), { maxLength: 5 }), (nullProtoSettings, pushIds) => {
      const settings = { ...nullProtoSettings };
      const sorted = [...pushIds].sort((a, b) => a - b);
      const frames: H3Frame[] = [
        { type: 'settings', settings },
        ...sorted.map((p) => ({ type: 'max_push_id' as const, pushId: p })),
        { type: 'goaway', id: 12 },
      ];
      const bytes = cat(...frames.map(encodeH3Frame));
      const got = feed(new H3FrameParser({ stream: 'control', role: 'server' }), bytes, [1, 2, 3, 5, 8]);
      assert.deepEqual(got, frames);
    }),
  );
});

test('property: random bytes on any stream kind raise only H3Error', () => {
  const kinds: FrameParserOptions[] = [
    { stream: 'control', role: 'server' },
    { stream: 'control', role: 'client', maxPushId: 10 },
    { stream: 'request', role: 'server', maxFrameSize: 64 },
    { stream: 'request', role: 'client', maxPushId: 3 },
    { stream: 'push', role: 'client' },
  ];
  fc.assert(
    fc.property(fc.constantFrom(...kinds), fc.uint8Array({ maxLength: 300 }), fc.array(fc.nat(), { maxLength: 5 }), fc.boolean(), (opts, bytes, cuts, end) => {
      const p = new H3FrameParser(opts);
      try {
        feed(p, bytes, cuts);
        if (end) p.end();
      } catch (e) {
        if (!(e instanceof H3Error)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      try {
        decodeSettings(bytes);
      } catch (e) {
        if (!(e instanceof H3Error)) throw e;
      }
      readUniStreamHeader(bytes);
    }),
  );
});
