import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { AddressPools, PoolExhaustedError, prefixesOverlap, canonicalAddress, formatAddress, formatAddressReference } from './pool.js';
import { wireguardConfigSchema } from './config.js';

test("allocation skips the subnet address, broadcast and the PoP's own addresses, lowest first", () => {
  const pools = new AddressPools(['10.77.0.0/29', 'fd00:77::/125'], ['10.77.0.1', 'fd00:77::1']);
  const used = new Set<string>();
  const got: string[] = [];
  for (let i = 0; i < 5; i++) {
    const a = pools.allocate(4, used);
    used.add(a);
    got.push(a);
  }
  assert.deepEqual(got, ['10.77.0.2', '10.77.0.3', '10.77.0.4', '10.77.0.5', '10.77.0.6']);
  assert.throws(() => pools.allocate(4, used), PoolExhaustedError);
  assert.equal(pools.allocate(6, new Set()), 'fd00:77::2');
  assert.equal(pools.isLeasable('10.77.0.7'), false, 'broadcast');
  assert.equal(pools.isLeasable('10.77.0.0'), false, 'subnet');
  assert.equal(pools.isLeasable('10.77.0.1'), false, 'reserved');
  assert.equal(pools.isLeasable('10.77.0.6'), true);
  assert.equal(pools.isLeasable('fd00:77::7'), true, 'IPv6 has no broadcast');
  assert.equal(pools.isLeasable('10.78.0.6'), false);
  assert.deepEqual(pools.families(), [4, 6]);
});

test('a second pool is used when the first is full (pools are scanned in address order)', () => {
  const pools = new AddressPools(['10.1.0.0/30', '10.0.0.0/30']);
  const used = new Set(['10.0.0.1', '10.0.0.2']);
  assert.equal(pools.allocate(4, used), '10.1.0.1');
});

test('overlap and canonical forms', () => {
  assert.ok(prefixesOverlap('10.0.0.0/8', '10.1.0.0/16'));
  assert.ok(!prefixesOverlap('10.0.0.0/16', '10.1.0.0/16'));
  assert.ok(!prefixesOverlap('10.0.0.0/8', 'fd00::/8'));
  assert.equal(canonicalAddress('FD00:0:0::5'), 'fd00::5');
});

test('property: n allocations in a pool are distinct, leasable, and exhaust exactly at capacity', () => {
  fc.assert(
    fc.property(fc.integer({ min: 24, max: 30 }), fc.nat(255), (len, third) => {
      const pools = new AddressPools([`10.${third}.0.0/${len}`], [`10.${third}.0.1`]);
      const capacity = 2 ** (32 - len) - 3;
      const used = new Set<string>();
      for (let i = 0; i < capacity; i++) {
        const a = pools.allocate(4, used);
        assert.ok(!used.has(a));
        assert.ok(pools.isLeasable(a));
        used.add(a);
      }
      assert.throws(() => pools.allocate(4, used), PoolExhaustedError);
    }),
    { numRuns: 30 },
  );
});

test('config: overlapping pools, duplicate names and an enabled section without interfaces are refused with field paths', () => {
  const base = { name: 'wg0', address: ['10.0.0.1/24'], pools: ['10.0.0.0/24'], endpoint: '192.0.2.1:51820' };
  const r = wireguardConfigSchema.safeParse({ enabled: true, interfaces: [base, { ...base, listenPort: 51821, pools: ['10.0.0.128/25'] }] });
  assert.ok(!r.success);
  const msgs = r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  assert.ok(
    msgs.some((m) => m.startsWith('interfaces.1.name: duplicate')),
    msgs.join('\n'),
  );
  assert.ok(
    msgs.some((m) => m.startsWith('interfaces.1.pools.0:') && m.includes('overlaps')),
    msgs.join('\n'),
  );
  const e = wireguardConfigSchema.safeParse({ enabled: true });
  assert.ok(!e.success && e.error.issues[0]!.path.join('.') === 'interfaces');
  const ok = wireguardConfigSchema.parse({ enabled: true, interfaces: [base] });
  assert.equal(ok.interfaces[0]!.listenPort, 51820);
  assert.equal(ok.deviceLimit, 5);
  assert.equal(ok.peerLifetime, undefined);
});

test("property: the fast address formatter agrees with ip-num and with node's URL host serializer (RFC 5952)", () => {
  const v6 = fc.array(fc.oneof(fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 }).map((g) => g.reduce((acc, x) => (acc << 16n) | BigInt(x), 0n));
  fc.assert(
    fc.property(v6, (v) => {
      const s = formatAddress(6, v);
      assert.equal(s, formatAddressReference(6, v));
      assert.equal(`[${s}]`, new URL(`http://[${s}]/`).hostname);
    }),
    { numRuns: 2000 },
  );
  fc.assert(
    fc.property(fc.nat(0xffffffff), (n) => assert.equal(formatAddress(4, BigInt(n)), formatAddressReference(4, BigInt(n)))),
    { numRuns: 500 },
  );
});

test('allocate from a low-water mark skips what is below it', () => {
  const pools = new AddressPools(['10.0.0.0/24']);
  assert.equal(pools.allocate(4, new Set(), 10n * 2n ** 24n + 50n), '10.0.0.50');
});
