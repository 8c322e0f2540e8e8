import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CbrError } from '../dataplane/index.js';
import { CHANGE_KINDS, decodeChange, encodeChange, type ChangeBody, type PeerRecord } from './change.js';
import { parsePostgresUrl } from './postgres.js';

const key = fc.uint8Array({ minLength: 32, maxLength: 32 }).map((b) => Buffer.from(b).toString('base64'));
const text = fc.string({ minLength: 1, maxLength: 40, unit: 'grapheme' });
const millis = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const peer: fc.Arbitrary<PeerRecord> = fc.record(
  { publicKey: key, iface: text, subject: text, ipv4: fc.ipV4(), ipv6: fc.ipV6(), createdAt: millis, expiresAt: millis },
  { requiredKeys: ['publicKey', 'iface', 'subject', 'createdAt', 'expiresAt'], noNullPrototype: true },
);
const body: fc.Arbitrary<ChangeBody> = fc.oneof(
  peer.map((p) => ({ kind: 'peer.put' as const, peer: p })),
  fc.record(
    {
      kind: fc.constant('peer.delete' as const),
      publicKey: key,
      iface: text,
      reason: fc.constantFrom('deleted' as const, 'expired' as const, 'revoked' as const),
    },
    { noNullPrototype: true },
  ),
  fc.record(
    { kind: fc.constant('deny.add' as const), prefix: text, comment: fc.string({ maxLength: 100 }) },
    { requiredKeys: ['kind', 'prefix'], noNullPrototype: true },
  ),
  fc.record({ kind: fc.constant('deny.delete' as const), prefix: text }, { noNullPrototype: true }),
);

test('change codec: decode(encode(change)) is the change, seq and at as numbers or PostgreSQL strings', () => {
  fc.assert(
    fc.property(body, fc.integer({ min: 0, max: 2 ** 53 - 1 }), millis, fc.boolean(), (b, seq, at, asString) => {
      const row = { seq: asString ? String(seq) : seq, at: asString ? String(at) : at, ...encodeChange(b) };
      const decoded = decodeChange(row);
      assert.deepEqual(decoded, { ...b, seq, at });
      // A decoded change encodes to the same row (a follower stores what it applied).
      assert.deepEqual(encodeChange(decoded), encodeChange(b));
    }),
  );
});

test('change codec: any row decodes or fails with INVALID_ARGUMENT, never another error', () => {
  const json = fc.oneof(
    fc.json(),
    fc.string(),
    body.map((b) => encodeChange(b).body),
  );
  const kind = fc.oneof(fc.constantFrom(...CHANGE_KINDS), fc.string());
  const num = fc.oneof(fc.integer(), fc.double(), fc.string(), fc.constant('99999999999999999999'));
  fc.assert(
    fc.property(num, num, kind, json, (seq, at, k, b) => {
      try {
        const c = decodeChange({ seq: seq as number | string, at: at as number | string, kind: k, body: b });
        assert.ok(CHANGE_KINDS.includes(c.kind));
        assert.ok(Number.isSafeInteger(c.seq) && c.seq >= 0);
      } catch (err) {
        assert.ok(err instanceof CbrError, `not a CbrError: ${String(err)}`);
        assert.equal(err.code, 'INVALID_ARGUMENT');
      }
    }),
    { numRuns: 2000 },
  );
});

test('change codec: bad rows name what is wrong', () => {
  const good = encodeChange({ kind: 'deny.delete', prefix: '10.0.0.0/8' });
  assert.throws(() => decodeChange({ seq: -1, at: 0, ...good }), /seq is not a non-negative integer/);
  assert.throws(() => decodeChange({ seq: 1, at: 0, kind: 'peer.zap', body: '{}' }), /unknown kind "peer.zap"/);
  assert.throws(() => decodeChange({ seq: 1, at: 0, kind: 'deny.add', body: '{' }), /body is not JSON/);
  assert.throws(
    () => decodeChange({ seq: 1, at: 0, kind: 'peer.delete', body: '{"publicKey":"x","iface":"wg0","reason":"deleted"}' }),
    /publicKey: expected a base64 WireGuard public key/,
  );
});

test('PostgreSQL URL: several hosts, IPv6, libpq TLS parameters; bad URLs name the part', () => {
  const tls = 'sslmode=verify-full&sslrootcert=/ca.crt&sslcert=/c.crt&sslkey=/c.key';
  const u = parsePostgresUrl(`postgres://cbr%40pop@10.0.0.1,[fd00::2]:5433,db.example:6000/fleet?${tls}&target_session_attrs=read-write&connect_timeout=3`);
  assert.deepEqual(u.hosts, [
    { host: '10.0.0.1', port: 5432 },
    { host: 'fd00::2', port: 5433 },
    { host: 'db.example', port: 6000 },
  ]);
  assert.equal(u.user, 'cbr@pop');
  assert.equal(u.database, 'fleet');
  assert.equal(u.targetSessionAttrs, 'read-write');
  assert.equal(u.connectTimeoutS, 3);
  assert.equal(u.sslkey, '/c.key');
  const cases: [string, RegExp][] = [
    ['mysql://a@b/c', /expected postgres:\/\//],
    [`postgres://h/db?${tls}`, /user: missing/],
    [`postgres://u@h/?${tls}`, /database: missing/],
    ['postgres://u@h/db?sslmode=require&sslrootcert=a&sslcert=b&sslkey=c', /sslmode: must be verify-full/],
    ['postgres://u@h/db?sslmode=verify-full&sslrootcert=a&sslcert=b', /sslkey: missing/],
    [`postgres://u@h:99999/db?${tls}`, /port out of range/],
    [`postgres://u@[zz]/db?${tls}`, /expected host/],
    [`postgres://u@h/db?${tls}&target_session_attrs=primary`, /target_session_attrs: expected any or read-write/],
    [`postgres://u@h/db?${tls}&foo=1`, /parameter foo: not supported/],
  ];
  for (const [url, re] of cases) assert.throws(() => parsePostgresUrl(url), re, url);
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        parsePostgresUrl(s);
      } catch (err) {
        assert.ok(err instanceof CbrError && err.code === 'CONFIG_INVALID');
      }
    }),
  );
});
