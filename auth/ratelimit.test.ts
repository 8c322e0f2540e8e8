import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { TokenBuckets, sourceKey } from './ratelimit.js';

test('a bucket allows its burst, then answers with the wait until the next token', () => {
  let now = 0;
  const b = new TokenBuckets({ rate: 2, burst: 3 }, 100, () => now);
  assert.equal(b.take('a'), 0);
  assert.equal(b.take('a'), 0);
  assert.equal(b.take('a'), 0);
  assert.equal(b.take('a'), 0.5);
  assert.equal(b.take('b'), 0, 'other keys have their own bucket');
  now += 500;
  assert.equal(b.take('a'), 0);
  assert.ok(b.take('a') > 0);
  now += 10_000;
  for (let i = 0; i < 3; i++) assert.equal(b.take('a'), 0, 'refilled up to burst');
  assert.ok(b.take('a') > 0);
});

test('rate 0 turns the limit off; the map stays bounded', () => {
  const off = new TokenBuckets({ rate: 0, burst: 1 }, 100);
  for (let i = 0; i < 50; i++) assert.equal(off.take('x'), 0);
  const b = new TokenBuckets({ rate: 1, burst: 1 }, 100);
  for (let i = 0; i < 1000; i++) b.take(`k${i}`);
  assert.equal(b.size, 100);
});

test('source keys: IPv4 as is, IPv4-mapped folded, IPv6 grouped by /64', () => {
  assert.equal(sourceKey('192.0.2.7'), '192.0.2.7');
  assert.equal(sourceKey('::ffff:192.0.2.7'), '192.0.2.7');
  assert.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:DB8:1:2:bbbb:cccc:dddd:eeee'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(sourceKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  assert.equal(sourceKey('::1'), '0:0:0:0::/64');
  fc.assert(fc.property(fc.string(), (s) => typeof sourceKey(s) === 'string'));
  // The dotted-IPv4 shortcut answers what the full path (padded, mapped) answers.
  fc.assert(fc.property(fc.ipV4(), (a) => sourceKey(a) === a && sourceKey(` ${a} `) === a && sourceKey(`::FFFF:${a}`) === a));
  fc.assert(fc.property(fc.ipV6(), (a) => /::\/64$/.test(sourceKey(a)) || a.startsWith('::ffff:') || /^[\d.]+$/.test(sourceKey(a))));
});
