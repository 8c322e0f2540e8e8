import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenBuckets } from './ratelimit.js';

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
