import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isIPv4, isIPv6 } from 'node:net';
import { IPv4, IPv6, collapseIPv6Number } from 'ip-num';
import { PrefixError, bigIntToIp, canonicalIp, firstHost, formatIp, ipToBigInt, parseIp, parsePrefix, prefixContains, prefixesOverlap } from './ip.js';

const groups8 = fc.array(fc.oneof(fc.constant(0), fc.constant(0), fc.nat(0xffff)), { minLength: 8, maxLength: 8 });
const fromGroups = (g: number[]) => Uint8Array.from(g.flatMap((x) => [x >> 8, x & 0xff]));

/** RFC 5952 §4.2.3 by its definition: of the runs of 2+ zero groups, the longest, the first on a tie. */
function longestZeroRun(g: number[]): { start: number; len: number } | undefined {
  let best: { start: number; len: number } | undefined;
  for (let i = 0; i < 8; i++) {
    if (g[i] !== 0 || (i > 0 && g[i - 1] === 0)) continue;
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i >= 2 && (!best || j - i > best.len)) best = { start: i, len: j - i };
  }
  return best;
}

test('RFC 5952: the longest run of zero groups is shortened, the leftmost on a tie, never a single group', () => {
  const cases: [string, string][] = [
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'], // a later, longer run wins over the first run
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // tie: the leftmost
    ['0:0:1:0:0:0:1:0', '0:0:1::1:0'],
    ['1:0:0:0:2:0:0:0', '1::2:0:0:0'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // §4.2.2: one zero group stays
    ['2001:DB8::0001', '2001:db8::1'], // §4.3 lowercase, §4.1 no leading zeros
    ['::', '::'],
    ['1::', '1::'],
    ['::ffff:192.0.2.1', '::ffff:c000:201'],
  ];
  for (const [input, want] of cases) assert.equal(formatIp(parseIp(input)!), want, input);
});

test('property: formatIp is RFC 5952 and agrees with ip-num and with Node (WHATWG URL host serializer)', () => {
  fc.assert(
    fc.property(groups8, (g) => {
      const s = formatIp(fromGroups(g));
      const run = longestZeroRun(g);
      const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
      assert.equal(s, run ? `${hex(g.slice(0, run.start))}::${hex(g.slice(run.start + run.len))}` : hex(g));
      assert.equal(s, collapseIPv6Number(IPv6.fromBigInt(ipToBigInt(fromGroups(g))).toString()));
      assert.equal(`[${s}]`, new URL(`http://[${s}]/`).hostname);
      assert.deepEqual(parseIp(s), fromGroups(g));
    }),
    { numRuns: 3000 },
  );
  fc.assert(
    fc.property(fc.nat(0xffffffff), (n) => assert.equal(formatIp(bigIntToIp(BigInt(n), 4)), IPv4.fromNumber(BigInt(n)).toString())),
    { numRuns: 500 },
  );
});

test('property: parseIp accepts exactly what node:net accepts, minus zones and IPv4 leading zeros', () => {
  const strictV4 = /^(0|[1-9]\d{0,2})(\.(0|[1-9]\d{0,2})){3}$/;
  const nodeAccepts = (s: string) => (s.includes(':') ? isIPv6(s) && !s.includes('%') : isIPv4(s) && strictV4.test(s));
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6(), fc.ipV4Extended(), fc.string({ maxLength: 46 }), fc.stringMatching(/^[0-9a-fA-F:.]{0,40}$/)), (s) => {
      assert.equal(parseIp(s) !== null, nodeAccepts(s), s);
    }),
    { numRuns: 5000 },
  );
});

test('prefixes: normalised, bare addresses, errors name the input; overlap, containment, first host', () => {
  assert.equal(parsePrefix('192.0.2.77/24').text, '192.0.2.0/24');
  assert.equal(parsePrefix(' 2001:DB8::1/32 ').text, '2001:db8::/32');
  assert.equal(parsePrefix('::ffff:192.0.2.1/120').text, '::ffff:c000:200/120');
  assert.equal(parsePrefix('10.1.2.3').text, '10.1.2.3/32');
  for (const bad of ['10.0.0.0/33', 'nonsense', '10.0.0.0/8/8', '10.0.0.0/', 'fd00::1%eth0/64', '010.0.0.0/8']) {
    assert.throws(
      () => parsePrefix(bad),
      (err: unknown) => err instanceof PrefixError && err.code === 'PREFIX_INVALID' && err.message.includes(JSON.stringify(bad)),
      bad,
    );
  }
  assert.ok(prefixesOverlap('10.0.0.0/8', '10.1.0.0/16'));
  assert.ok(!prefixesOverlap('10.0.0.0/16', '10.1.0.0/16'));
  assert.ok(!prefixesOverlap('10.0.0.0/8', 'fd00::/8'));
  assert.ok(prefixContains('fd00::/64', 'FD00::5'));
  assert.ok(!prefixContains('fd00::/64', '10.0.0.1'));
  assert.equal(canonicalIp('FD00:0:0::5'), 'fd00::5');
  assert.equal(firstHost('100.64.9.0/24'), '100.64.9.1');
  assert.equal(firstHost('fd00:cb::/64'), 'fd00:cb::1');
});
