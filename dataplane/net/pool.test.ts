import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AddressPool, PoolExhaustedError } from './pool.js';
import { CbrError, httpStatusFor } from '../errors.js';

test("allocation skips the subnet address, broadcast and the PoP's own addresses, lowest first", () => {
  const pool = new AddressPool(['10.77.0.0/29', 'fd00:77::/125'], ['10.77.0.1', 'fd00:77::1']);
  const used = new Set<string>();
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const a = pool.allocate(4, used);
    used.add(a);
    got.push(a);
  }
  assert.deepEqual(got, ['10.77.0.2', '10.77.0.3', '10.77.0.4', '10.77.0.5', '10.77.0.6']);
  assert.throws(
    () => pool.allocate(4, used),
    (err: unknown) => err instanceof PoolExhaustedError && err instanceof CbrError && err.code === 'POOL_EXHAUSTED' && httpStatusFor(err) === 503,
  );
  assert.equal(pool.allocate(6, new Set()), 'fd00:77::2');
  assert.equal(pool.isLeasable('10.77.0.7'), false, 'broadcast');
  assert.equal(pool.isLeasable('10.77.0.0'), false, 'subnet');
  assert.equal(pool.isLeasable('10.77.0.1'), false, 'reserved');
  assert.equal(pool.isLeasable('10.77.0.6'), true);
  assert.equal(pool.isLeasable('fd00:77::7'), true, 'IPv6 has no broadcast');
  assert.equal(pool.isLeasable('10.78.0.6'), false);
  assert.deepEqual(pool.families(), [4, 6]);
});

test('a second prefix is used when the first is full (prefixes are scanned in address order)', () => {
  const pool = new AddressPool(['10.1.0.0/30', '10.0.0.0/30']);
  assert.equal(pool.allocate(4, new Set(['10.0.0.1', '10.0.0.2'])), '10.1.0.1');
});

test('allocate from a low-water mark skips what is below it', () => {
  assert.equal(new AddressPool(['10.0.0.0/24']).allocate(4, new Set(), 10n * 2n ** 24n + 50n), '10.0.0.50');
});

test('acquire/release: the pool tracks its own holders, reuses the lowest released address', () => {
  const pool = new AddressPool(['10.9.0.0/29', 'fd00:cb::/64'], ['10.9.0.1', 'fd00:cb::1']);
  assert.deepEqual(
    [1, 2, 3].map(() => pool.acquire(4)),
    ['10.9.0.2', '10.9.0.3', '10.9.0.4'],
  );
  pool.release('10.9.0.3');
  pool.release('10.9.0.3'); // twice: no effect
  assert.equal(pool.acquire(4), '10.9.0.3');
  assert.equal(pool.acquire(4), '10.9.0.5');
  assert.equal(pool.acquire(6), 'fd00:cb::2');
  pool.release('FD00:CB::2');
  assert.equal(pool.inUse, 4);
});

test('property: n allocations are distinct, leasable, and exhaust exactly at capacity (both modes)', () => {
  fc.assert(
    fc.property(fc.integer({ min: 24, max: 30 }), fc.nat(255), fc.array(fc.nat(), { maxLength: 20 }), (len, third, releases) => {
      const pool = new AddressPool([`10.${third}.0.0/${len}`], [`10.${third}.0.1`]);
      const capacity = 2 ** (32 - len) - 3;
      const used = new Set<string>();
      for (let i = 0; i < capacity; i++) {
        const a = pool.allocate(4, used);
        assert.ok(!used.has(a));
        assert.ok(pool.isLeasable(a));
        used.add(a);
      }
      assert.throws(() => pool.allocate(4, used), PoolExhaustedError);
      const held = Array.from({ length: capacity }, () => pool.acquire(4));
      assert.equal(new Set(held).size, capacity);
      assert.throws(() => pool.acquire(4), PoolExhaustedError);
      const freed = new Set(releases.map((r) => held[r % capacity]!));
      for (const a of freed) pool.release(a);
      const again = new Set(Array.from({ length: freed.size }, () => pool.acquire(4)));
      assert.deepEqual(again, freed);
    }),
    { numRuns: 30 },
  );
});
