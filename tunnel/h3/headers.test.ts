import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { H3Error, H3ErrorCode } from './errors.js';
import { encodeDataFrame, encodeHeadersFrame, encodeSettingsFrame, H3FrameParser } from './frames.js';
import {
  encodeExtendedConnect,
  encodeJsonResponse,
  encodeResponse,
  extendedConnectFields,
  getHeader,
  validateRequestHeaders,
  validateResponseHeaders,
  validateTrailers,
} from './headers.js';
import { decodeFieldSection, encodeFieldSection, type HeaderField } from './qpack.js';
import { MessageSequence, RequestStreamReader, type RequestStreamEvent } from './stream.js';

const cat = (...parts: Uint8Array[]) => Uint8Array.from(Buffer.concat(parts));
const f = (name: string, value: string): HeaderField => ({ name, value });
const fields = (...pairs: Array<[string, string]>) => pairs.map(([n, v]) => f(n, v));

function expectH3(fn: () => unknown, code: number, scope?: 'connection' | 'stream'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof H3Error, `not an H3Error: ${String(e)}`);
    assert.equal(e.h3Code, code, e.message);
    if (scope) assert.equal(e.scope, scope);
    return true;
  });
}

const connectIp = fields(
  [':method', 'CONNECT'],
  [':protocol', 'connect-ip'],
  [':scheme', 'https'],
  [':authority', 'pop.example:443'],
  [':path', '/.well-known/masque/ip/*/*/'],
  ['capsule-protocol', '?1'],
  ['authorization', 'Bearer t'],
);

test('Extended CONNECT validates into a typed request', () => {
  const r = validateRequestHeaders(connectIp);
  assert.equal(r.kind, 'extended-connect');
  if (r.kind !== 'extended-connect') return;
  assert.equal(r.protocol, 'connect-ip');
  assert.equal(r.authority, 'pop.example:443');
  assert.equal(r.path, '/.well-known/masque/ip/*/*/');
  assert.equal(r.capsuleProtocol, true);
  assert.equal(getHeader(r.headers, 'authorization'), 'Bearer t');
});

test('Extended CONNECT: every required pseudo-header, CONNECT only, setting needed', () => {
  for (const missing of [':scheme', ':authority', ':path']) {
    expectH3(() => validateRequestHeaders(connectIp.filter((x) => x.name !== missing)), H3ErrorCode.H3_MESSAGE_ERROR, 'stream');
  }
  expectH3(() => validateRequestHeaders(connectIp.map((x) => (x.name === ':method' ? f(':method', 'GET') : x))), H3ErrorCode.H3_MESSAGE_ERROR);
  expectH3(() => validateRequestHeaders(connectIp, { extendedConnect: false }), H3ErrorCode.H3_MESSAGE_ERROR);
  expectH3(() => validateRequestHeaders([...connectIp, f('content-length', '0')]), H3ErrorCode.H3_MESSAGE_ERROR); // capsule protocol forbids it
});

test('ordinary requests and classic CONNECT', () => {
  const get = validateRequestHeaders(fields([':method', 'GET'], [':scheme', 'https'], [':authority', 'a'], [':path', '/'], ['accept', '*/*']));
  assert.deepEqual(get, {
    kind: 'request',
    method: 'GET',
    scheme: 'https',
    authority: 'a',
    path: '/',
    headers: [f('accept', '*/*')],
    contentLength: undefined,
  });
  const viaHost = validateRequestHeaders(fields([':method', 'POST'], [':scheme', 'https'], [':path', '/x'], ['host', 'h'], ['content-length', '5']));
  assert.equal(viaHost.kind === 'request' && viaHost.authority, 'h');
  assert.equal(viaHost.kind === 'request' && viaHost.contentLength, 5);
  assert.deepEqual(validateRequestHeaders(fields([':method', 'CONNECT'], [':authority', 'h:443'])), {
    kind: 'connect',
    method: 'CONNECT',
    authority: 'h:443',
    headers: [],
  });
  const bad: HeaderField[][] = [
    fields([':scheme', 'https'], [':path', '/'], [':authority', 'a']), // no :method
    fields([':method', 'GET'], [':path', '/'], [':authority', 'a']), // no :scheme
    fields([':method', 'GET'], [':scheme', 'https'], [':authority', 'a']), // no :path
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/']), // no authority
    fields([':method', 'GET'], [':scheme', 'https'], [':path', 'x'], [':authority', 'a']), // path not absolute
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['host', 'b']), // disagree
    fields([':method', 'GET'], [':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a']), // duplicate
    fields([':method', 'GET'], ['accept', '*/*'], [':scheme', 'https'], [':path', '/'], [':authority', 'a']), // pseudo after regular
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], [':status', '200']), // response pseudo
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['Accept', 'x']), // uppercase
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['connection', 'close']),
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['te', 'gzip']),
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['x', 'a\r\nb']),
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['content-length', 'abc']),
    fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['content-length', '1'], ['content-length', '2']),
    fields([':method', 'CONNECT'], [':authority', 'a'], [':path', '/']), // classic CONNECT with :path
  ];
  for (const b of bad) expectH3(() => validateRequestHeaders(b), H3ErrorCode.H3_MESSAGE_ERROR, 'stream');
  validateRequestHeaders(fields([':method', 'GET'], [':scheme', 'https'], [':path', '/'], [':authority', 'a'], ['te', 'trailers']));
});

test('responses and trailers', () => {
  assert.deepEqual(validateResponseHeaders(fields([':status', '200'], ['capsule-protocol', '?1'])), {
    status: 200,
    headers: [f('capsule-protocol', '?1')],
    contentLength: undefined,
    capsuleProtocol: true,
  });
  assert.equal(validateResponseHeaders(fields([':status', '404'], ['capsule-protocol', '?1'])).capsuleProtocol, false);
  for (const b of [
    fields(),
    fields([':status', '20']),
    fields([':status', '200'], [':status', '200']),
    fields([':status', '101']),
    fields([':status', '200'], [':path', '/']),
  ]) {
    expectH3(() => validateResponseHeaders(b), H3ErrorCode.H3_MESSAGE_ERROR);
  }
  assert.deepEqual(validateTrailers(fields(['x-t', '1'])), [f('x-t', '1')]);
  expectH3(() => validateTrailers(fields([':status', '200'])), H3ErrorCode.H3_MESSAGE_ERROR);
});

test('encodeResponse: HEADERS then DATA with content-length; JSON helper', () => {
  const bytes = encodeJsonResponse(200, { ok: true });
  const frames = new H3FrameParser({ stream: 'request', role: 'client' }).push(bytes);
  assert.deepEqual(
    frames.map((x) => x.type),
    ['headers', 'data'],
  );
  const [f0, f1] = frames;
  const hdrs = f0?.type === 'headers' ? decodeFieldSection(f0.fieldSection) : [];
  assert.deepEqual(hdrs, fields([':status', '200'], ['content-type', 'application/json'], ['content-length', '11']));
  assert.equal(f1?.type === 'data' && Buffer.from(f1.payload).toString(), '{"ok":true}');
  const noBody = new H3FrameParser({ stream: 'request', role: 'client' }).push(encodeResponse({ status: 404, headers: { 'X-Why': 'none' } }));
  assert.equal(noBody.length, 1);
  const [nb] = noBody;
  assert.deepEqual(nb?.type === 'headers' && decodeFieldSection(nb.fieldSection), fields([':status', '404'], ['x-why', 'none']));
  assert.throws(() => encodeResponse({ status: 99 }), H3Error);
});

test('Extended CONNECT builder produces what the validator accepts; authorization never indexed', () => {
  const spec = { protocol: 'connect-udp', authority: 'pop:443', path: '/.well-known/masque/udp/192.0.2.1/53/', headers: { authorization: 'Bearer x' } };
  const req = validateRequestHeaders(decodeFieldSection(encodeFieldSection(extendedConnectFields(spec))));
  assert.equal(req.kind === 'extended-connect' && req.protocol, 'connect-udp');
  const decoded = decodeFieldSection(
    new H3FrameParser({ stream: 'request', role: 'server' })
      .push(encodeExtendedConnect(spec))
      .map((x) => (x.type === 'headers' ? x.fieldSection : new Uint8Array(0)))[0] ?? new Uint8Array(0),
  );
  assert.equal(decoded.find((x) => x.name === 'authorization')?.neverIndex, true);
});

test('MessageSequence: order of HEADERS, DATA and trailers', () => {
  const s = new MessageSequence('request');
  expectH3(() => new MessageSequence('request').onData(1), H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection');
  expectH3(() => new MessageSequence('request').onEnd(), H3ErrorCode.H3_REQUEST_INCOMPLETE, 'stream');
  assert.equal(s.onHeaders(), 'headers');
  s.onData(3);
  assert.equal(s.onHeaders(), 'trailers');
  expectH3(() => s.onData(1), H3ErrorCode.H3_FRAME_UNEXPECTED);
  expectH3(() => s.onHeaders(), H3ErrorCode.H3_FRAME_UNEXPECTED);
  const r = new MessageSequence('response');
  assert.equal(r.onHeaders(103), 'interim');
  expectH3(() => r.onData(1), H3ErrorCode.H3_FRAME_UNEXPECTED);
  assert.equal(r.onHeaders(200), 'headers');
  r.setContentLength(2);
  r.onData(2);
  expectH3(() => r.onData(1), H3ErrorCode.H3_MESSAGE_ERROR, 'stream');
  const short = new MessageSequence('response');
  short.onHeaders(200);
  short.setContentLength(5);
  short.onData(4);
  expectH3(() => short.onEnd(), H3ErrorCode.H3_MESSAGE_ERROR);
});

function readAll(reader: RequestStreamReader, bytes: Uint8Array, step: number): RequestStreamEvent[] {
  const out: RequestStreamEvent[] = [];
  for (let i = 0; i < bytes.length; i += step) out.push(...reader.push(bytes.subarray(i, i + step)));
  return out;
}

test('RequestStreamReader (server): Extended CONNECT then capsule data, any chunking', () => {
  const bytes = cat(encodeHeadersFrame(encodeFieldSection(connectIp)), encodeDataFrame(Uint8Array.of(1, 2, 3)), encodeDataFrame(Uint8Array.of(4)));
  for (const step of [1, 2, 7, bytes.length]) {
    const reader = new RequestStreamReader({ role: 'server' });
    const events = readAll(reader, bytes, step);
    assert.equal(events[0]?.type, 'request');
    const data = Buffer.concat(events.filter((e) => e.type === 'data').map((e) => (e.type === 'data' ? e.payload : new Uint8Array(0))));
    assert.deepEqual([...data], [1, 2, 3, 4]);
    reader.end();
  }
});

test('CONNECT streams carry only DATA once established (no trailers)', () => {
  const server = new RequestStreamReader({ role: 'server' });
  server.push(cat(encodeHeadersFrame(encodeFieldSection(connectIp)), encodeDataFrame(Uint8Array.of(0, 1, 0))));
  expectH3(() => server.push(encodeHeadersFrame(encodeFieldSection(fields(['x', '1'])))), H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection');
  expectH3(() => server.push(encodeDataFrame(Uint8Array.of(1))), H3ErrorCode.H3_FRAME_UNEXPECTED); // stays failed
  const client = new RequestStreamReader({ role: 'client', requestIsConnect: true });
  client.push(encodeResponse({ status: 200, headers: { 'capsule-protocol': '?1' } }));
  expectH3(() => client.push(encodeHeadersFrame(encodeFieldSection(fields(['x', '1'])))), H3ErrorCode.H3_FRAME_UNEXPECTED);
  // A refused CONNECT is an ordinary response: body and trailers allowed.
  const refused = new RequestStreamReader({ role: 'client', requestIsConnect: true });
  refused.push(cat(encodeResponse({ status: 403, body: 'no' }), encodeHeadersFrame(encodeFieldSection(fields(['x', '1'])))));
  refused.end();
});

test('RequestStreamReader (client): interim, final, data, trailers; errors carry the right codes', () => {
  const bytes = cat(
    encodeHeadersFrame(encodeFieldSection(fields([':status', '103']))),
    encodeResponse({ status: 200, body: 'hi' }),
    encodeHeadersFrame(encodeFieldSection(fields(['x-checksum', 'abc']))),
  );
  const reader = new RequestStreamReader({ role: 'client' });
  const events = reader.push(bytes);
  assert.deepEqual(
    events.map((e) => (e.type === 'response' ? `response:${e.response.status}:${e.interim}` : e.type)),
    ['response:103:true', 'response:200:false', 'data', 'trailers'],
  );
  reader.end();
  expectH3(() => reader.push(encodeDataFrame(Uint8Array.of(1))), H3ErrorCode.H3_FRAME_UNEXPECTED);

  expectH3(() => new RequestStreamReader({ role: 'server' }).push(encodeDataFrame(Uint8Array.of(1))), H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection');
  expectH3(() => new RequestStreamReader({ role: 'server' }).push(encodeSettingsFrame({})), H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection');
  expectH3(
    () => new RequestStreamReader({ role: 'server' }).push(encodeHeadersFrame(Uint8Array.of(0, 0, 0x80))),
    H3ErrorCode.QPACK_DECOMPRESSION_FAILED,
    'connection',
  );
  expectH3(
    () => new RequestStreamReader({ role: 'server' }).push(encodeHeadersFrame(encodeFieldSection(fields([':method', 'GET'])))),
    H3ErrorCode.H3_MESSAGE_ERROR,
    'stream',
  );
  const early = new RequestStreamReader({ role: 'server' });
  early.push(encodeHeadersFrame(encodeFieldSection(connectIp)).subarray(0, 5));
  expectH3(() => early.end(), H3ErrorCode.H3_FRAME_ERROR);
  expectH3(() => new RequestStreamReader({ role: 'server' }).end(), H3ErrorCode.H3_REQUEST_INCOMPLETE, 'stream');
});

test('property: random bytes on a request stream raise only H3Error (both roles)', () => {
  fc.assert(
    fc.property(
      fc.constantFrom('server' as const, 'client' as const),
      fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 6 }),
      fc.boolean(),
      (role, chunks, end) => {
        const reader = new RequestStreamReader({ role, maxFrameSize: 256, maxFieldSectionSize: 512 });
        try {
          for (const c of chunks) reader.push(c);
          if (end) reader.end();
        } catch (e) {
          if (!(e instanceof H3Error)) throw e;
        }
      },
    ),
    { numRuns: 2000 },
  );
  // Well-framed HEADERS with random field sections get deeper: QPACK and validation.
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), (section) => {
      try {
        new RequestStreamReader({ role: 'server' }).push(encodeHeadersFrame(Uint8Array.from([0, 0, ...section])));
      } catch (e) {
        if (!(e instanceof H3Error)) throw e;
      }
    }),
    { numRuns: 2000 },
  );
});
