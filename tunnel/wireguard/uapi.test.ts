import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  encodeSet,
  decodeGet,
  decodeErrno,
  encodeGetReply,
  replyEnd,
  base64ToHex,
  hexToBase64,
  keyFromBase64,
  UapiError,
  type DeviceState,
  type PeerState,
} from './uapi.js';

const KEY_A = Buffer.alloc(32, 0xab).toString('base64');
const KEY_B = Buffer.alloc(32, 0x01).toString('base64');

test('encodeSet writes the documented key=value lines with hex keys and a terminating blank line', () => {
  const text = encodeSet({
    privateKey: KEY_A,
    listenPort: 51820,
    replacePeers: true,
    peers: [
      {
        publicKey: KEY_B,
        replaceAllowedIps: true,
        allowedIps: ['10.0.0.2/32', 'fd00::2/128'],
        persistentKeepaliveInterval: 25,
        endpoint: '[2001:db8::1]:51820',
      },
      { publicKey: KEY_A, remove: true, allowedIps: ['10.9.9.9/32'] },
    ],
  });
  assert.equal(
    text,
    [
      'set=1',
      `private_key=${'ab'.repeat(32)}`,
      'listen_port=51820',
      'replace_peers=true',
      `public_key=${'01'.repeat(32)}`,
      'endpoint=[2001:db8::1]:51820',
      'persistent_keepalive_interval=25',
      'replace_allowed_ips=true',
      'allowed_ip=10.0.0.2/32',
      'allowed_ip=fd00::2/128',
      `public_key=${'ab'.repeat(32)}`,
      'remove=true',
      '',
      '',
    ].join('\n'),
  );
});

test('encodeSet refuses values the protocol cannot carry (a line break would inject keys)', () => {
  assert.throws(() => encodeSet({ listenPort: 70000 }), UapiError);
  assert.throws(() => encodeSet({ privateKey: 'not-a-key' }), UapiError);
  assert.throws(() => encodeSet({ peers: [{ publicKey: KEY_B, allowedIps: ['10.0.0.1/32\nremove=true'] }] }), UapiError);
  assert.throws(() => encodeSet({ peers: [{ publicKey: KEY_B, endpoint: 'example.com:1' }] }), UapiError);
  assert.throws(() => encodeSet({ peers: [{ publicKey: KEY_B, endpoint: '2001:db8::1:51820' }] }), UapiError);
});

test('decodeGet reads a wireguard-go reply', () => {
  const reply = [
    `private_key=${'ab'.repeat(32)}`,
    'listen_port=51820',
    `public_key=${'01'.repeat(32)}`,
    'protocol_version=1',
    'endpoint=192.0.2.7:40000',
    'last_handshake_time_sec=1700000000',
    'last_handshake_time_nsec=5',
    'tx_bytes=100',
    'rx_bytes=200',
    'persistent_keepalive_interval=0',
    'allowed_ip=10.0.0.2/32',
    'errno=0',
    '',
    '',
  ].join('\n');
  const s = decodeGet(reply);
  assert.equal(s.privateKey, KEY_A);
  assert.equal(s.listenPort, 51820);
  assert.equal(s.peers.length, 1);
  assert.deepEqual(s.peers[0], {
    publicKey: KEY_B,
    protocolVersion: 1,
    endpoint: '192.0.2.7:40000',
    lastHandshakeTimeSec: 1700000000,
    lastHandshakeTimeNsec: 5,
    txBytes: 100,
    rxBytes: 200,
    persistentKeepaliveInterval: 0,
    allowedIps: ['10.0.0.2/32'],
  });
});

test('decodeGet: an errno reply throws with the errno, a malformed one names the problem', () => {
  assert.throws(
    () => decodeGet('errno=-22\n\n'),
    (e: unknown) => e instanceof UapiError && e.errno === -22,
  );
  assert.throws(() => decodeGet('listen_port=1\n\n'), /no errno/);
  assert.throws(() => decodeGet('listen_port=99999\nerrno=0\n\n'), /listen_port/);
  assert.throws(() => decodeGet('tx_bytes=1\nerrno=0\n\n'), /not a device key/);
  assert.throws(() => decodeGet(`public_key=${'01'.repeat(32)}\nbogus=1\nerrno=0\n\n`), /unknown key/);
  assert.throws(() => decodeGet(`public_key=${'0'.repeat(63)}\nerrno=0\n\n`), /public_key/);
  assert.throws(() => decodeGet('errno=0\n'), /blank line/);
  assert.throws(() => decodeGet('errno=0\nlisten_port=1\n\n'), /after errno/);
});

test('decodeErrno', () => {
  assert.equal(decodeErrno('errno=0\n\n'), 0);
  assert.equal(decodeErrno('errno=-22\n\n'), -22);
  assert.throws(() => decodeErrno('errno=x\n\n'), UapiError);
  assert.throws(() => decodeErrno('listen_port=1\nerrno=0\n\n'), UapiError);
});

test('replyEnd finds the end of the first reply in a stream', () => {
  assert.equal(replyEnd('errno=0\n'), -1);
  assert.equal(replyEnd('errno=0\n\nrest'), 9);
});

test('keys: base64 <-> hex round trip; non-canonical or wrong-length base64 is refused', () => {
  assert.equal(hexToBase64(base64ToHex(KEY_A)), KEY_A);
  assert.equal(keyFromBase64(Buffer.alloc(31).toString('base64')), undefined);
  // 'B' in the last position sets one of the 2 spare bits: not what wg would ever print.
  assert.equal(keyFromBase64(`${'A'.repeat(42)}B=`), undefined);
  assert.throws(() => hexToBase64('AB'.repeat(32)), UapiError);
});

const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64'));
const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 0, max: 32 })).map(([a, b, c, d, l]) => `${a}.${b}.${c}.${d}/${l}`);
const v6 = fc
  .tuple(fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 128 }))
  .map(([h, l]) => `${h.map((x) => x.toString(16)).join(':')}/${l}`);
const endpoint = fc.oneof(
  fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255), fc.integer({ min: 1, max: 65535 })).map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}:${p}`),
  fc
    .tuple(fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }), fc.integer({ min: 1, max: 65535 }))
    .map(([h, p]) => `[${h.map((x) => x.toString(16)).join(':')}]:${p}`),
);
const peerState: fc.Arbitrary<PeerState> = fc.record(
  {
    publicKey: key,
    presharedKey: key,
    endpoint,
    lastHandshakeTimeSec: fc.nat(),
    lastHandshakeTimeNsec: fc.integer({ min: 0, max: 999_999_999 }),
    rxBytes: fc.maxSafeNat(),
    txBytes: fc.maxSafeNat(),
    persistentKeepaliveInterval: fc.nat(65535),
    protocolVersion: fc.constant(1),
    allowedIps: fc.array(fc.oneof(v4, v6), { maxLength: 4 }),
  },
  { requiredKeys: ['publicKey', 'lastHandshakeTimeSec', 'lastHandshakeTimeNsec', 'rxBytes', 'txBytes', 'persistentKeepaliveInterval', 'allowedIps'] },
);
const deviceState: fc.Arbitrary<DeviceState> = fc.record(
  { privateKey: key, listenPort: fc.nat(65535), fwmark: fc.nat(0xffffffff), peers: fc.array(peerState, { maxLength: 5 }) },
  { requiredKeys: ['peers'] },
);

test('property: decodeGet(encodeGetReply(state)) === state', () => {
  fc.assert(
    fc.property(deviceState, (s) => {
      // fast-check records have a null prototype; compare plain copies.
      const plain = { ...s, peers: s.peers.map((p) => ({ ...p, allowedIps: [...p.allowedIps] })) };
      assert.deepEqual(decodeGet(encodeGetReply(s)), plain);
    }),
    { numRuns: 300 },
  );
});

test('property: encodeSet output is one key=value per line, ends with a blank line, and every key is hex', () => {
  fc.assert(
    fc.property(
      fc.record({
        privateKey: key,
        listenPort: fc.nat(65535),
        peers: fc.array(fc.record({ publicKey: key, remove: fc.boolean(), allowedIps: fc.array(v4, { maxLength: 3 }) }), { maxLength: 4 }),
      }),
      (req) => {
        const text = encodeSet(req);
        assert.ok(text.endsWith('\n\n'));
        const lines = text.slice(0, -2).split('\n');
        assert.equal(lines[0], 'set=1');
        for (const l of lines) assert.match(l, /^[a-z_]+=[^\n=]+$/);
        for (const l of lines.filter((x) => /_key=/.test(x))) assert.match(l, /=[0-9a-f]{64}$/);
        assert.equal(lines.filter((l) => l.startsWith('public_key=')).length, req.peers.length);
      },
    ),
    { numRuns: 200 },
  );
});

test('property: random text never makes the decoders throw anything but UapiError', () => {
  const alphabet = fc.constantFrom(
    ...'abcdefgh_=0123456789-\n'.split(''),
    'errno=',
    'public_key=',
    'listen_port=',
    'allowed_ip=',
    '\n\n',
    'rx_bytes=',
    'endpoint=',
  );
  const texts = fc.oneof(
    fc.string(),
    fc.array(alphabet, { maxLength: 40 }).map((a) => a.join('')),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
  );
  fc.assert(
    fc.property(texts, (t) => {
      for (const f of [decodeGet, decodeErrno]) {
        try {
          f(t);
        } catch (err) {
          assert.ok(err instanceof UapiError, `${f.name} threw ${String(err)}`);
        }
      }
    }),
    { numRuns: 2000 },
  );
});
