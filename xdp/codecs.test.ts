// Pure codecs: the QUIC CID format, prefixes and LPM keys, map values. Property tests make sure
// random input only ever raises the module's own typed error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { IPv4CidrRange } from 'ip-num';
import { constants as osConstants } from 'node:os';
import { CbrError, errorCode, httpStatusFor } from '../dataplane/index.js';
import { BpfError } from './libbpf.js';
import { encodeCid, decodeCid, CidError, CID_MIN_LEN, CID_MAX_LEN } from './cid.js';
import { parsePrefixList, lpmKey, decodeLpmKey } from './prefix.js';
import { parsePrefix, PrefixError, formatIp } from '../dataplane/index.js';
import { encodeConfig, decodeConfig, encodeBackend, decodeBackend, counterIndex, COUNTERS, REASONS, LAYOUTS } from './maps.js';

test('CID: encode/decode round trip for every length and the documented byte layout', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 7 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: CID_MIN_LEN, max: CID_MAX_LEN }),
      (configId, serverId, length) => {
        const cid = encodeCid({ configId, serverId }, length);
        assert.equal(cid.length, length);
        assert.equal(cid[0], (configId << 5) | (length - 1));
        assert.equal(cid.readUInt16BE(1), serverId);
        assert.deepEqual(decodeCid(cid), { configId, serverId, length });
      },
    ),
  );
  // the nonce differs between CIDs
  assert.notDeepEqual(encodeCid({ configId: 0, serverId: 1 }), encodeCid({ configId: 0, serverId: 1 }));
});

test('CID: random bytes decode or raise CidError, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 30 }), (b) => {
      try {
        const d = decodeCid(b);
        assert.equal(d.length, b.length);
      } catch (err) {
        assert.ok(err instanceof CidError, String(err));
      }
    }),
  );
  assert.throws(() => encodeCid({ configId: 8, serverId: 1 }), CidError);
  assert.throws(() => encodeCid({ configId: 0, serverId: 70000 }), CidError);
  assert.throws(() => encodeCid({ configId: 0, serverId: 1 }, 7), CidError);
});

test('prefixes: normalised, LPM keys round-trip, errors are PrefixError naming the input', () => {
  assert.equal(parsePrefix('192.0.2.77/24').text, '192.0.2.0/24');
  assert.equal(parsePrefix('2001:db8::1/32').text, '2001:db8::/32');
  assert.equal(parsePrefix('10.1.2.3').text, '10.1.2.3/32');
  assert.deepEqual([...lpmKey(parsePrefix('10.1.2.0/24'))], [24, 0, 0, 0, 10, 1, 2, 0]);
  for (const t of ['0.0.0.0/0', '2001:db8:abcd::/48', '::/0', '255.255.255.255/32', 'fe80::1/128'])
    assert.equal(decodeLpmKey(lpmKey(parsePrefix(t))).text, parsePrefix(t).text);
  assert.throws(() => parsePrefix('10.0.0.0/33'), /more than 32/);
  assert.throws(() => parsePrefix('nonsense'), PrefixError);
  assert.throws(() => parsePrefixList('10.0.0.0/8\n# c\n\nbad\n', 'list.txt'), /list\.txt:4:/);
  assert.equal(parsePrefixList('10.0.0.0/8 # why\n\n2001:db8::/32\n', 'x').length, 2);
  fc.assert(
    fc.property(fc.string({ maxLength: 50 }), (s) => {
      try {
        parsePrefix(s);
      } catch (err) {
        assert.ok(err instanceof PrefixError, String(err));
      }
    }),
  );
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 24 }), (b) => {
      try {
        decodeLpmKey(Buffer.from(b));
      } catch (err) {
        assert.ok(err instanceof PrefixError, String(err));
      }
    }),
  );
  // the IPv4 fast path agrees with ip-num
  fc.assert(
    fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (a, n) => {
      assert.equal(parsePrefix(`${a}/${n}`).text, `${IPv4CidrRange.fromCidr(`${a}/${n}`).getFirst().toString()}/${n}`);
    }),
  );
  fc.assert(fc.property(fc.ipV6(), (a) => assert.equal(formatIp(parsePrefix(`${a}/128`).addr), new URL(`http://[${a}]/`).hostname.slice(1, -1))));
});

test('map values: config and backend encode/decode; counter indexes fit the counters map', () => {
  const cfg = {
    flags: 5,
    ringSize: 65537,
    rlCostNs: 1000n,
    rlBurstNs: 5000n,
    gwMac: Buffer.from([2, 0, 0, 0, 0, 1]),
    srcMac: Buffer.from([2, 0, 0, 0, 0, 2]),
    cidConfigId: 3,
    encapSrc4: Buffer.from([10, 0, 0, 1]),
    encapSrc6: Buffer.alloc(16, 9),
    rlNewCostNs: 40_000n,
    rlNewBurstNs: 2_000_000_000n,
  };
  const enc = encodeConfig(cfg);
  assert.equal(enc.length, LAYOUTS.cbr_config.size);
  assert.deepEqual(decodeConfig(enc), cfg);
  assert.deepEqual(decodeBackend(encodeBackend({ address: '10.0.0.9', up: true, weight: 7 })), {
    family: 4,
    addr: Buffer.from([10, 0, 0, 9]),
    up: true,
    weight: 7,
  });
  for (const r of REASONS) assert.ok(counterIndex('aborted', r) < COUNTERS);
});

test("destination table: every address is found by the filter's probe, nothing else is; ports bitmap", async () => {
  const { buildDstTable, dstHome, encodePorts, DST_SLOTS, DST_PROBES, LAYOUTS } = await import('./maps.js');
  const { parseAddress } = await import('../dataplane/index.js');
  // the filter's lookup, in TypeScript: probe from the home slot until an empty slot
  const probe = (table: Buffer[], address: string): number => {
    const { family, addr } = parseAddress(address);
    const home = dstHome(family, addr);
    for (let i = 0; i < DST_PROBES; i++) {
      const s = table[(home + i) & (DST_SLOTS - 1)]!;
      if (s[16] === 0) return 0;
      if (s[16] === family && s.subarray(0, family === 4 ? 4 : 16).equals(addr)) return s[17]!;
    }
    return 0;
  };
  const addr = fc.oneof(
    fc.ipV4(),
    fc.ipV6().filter((a) => !a.includes('.')),
  );
  fc.assert(
    fc.property(fc.uniqueArray(addr, { maxLength: 300 }), fc.array(addr, { maxLength: 20 }), (set, others) => {
      const entries = new Map(set.map((a, i) => [a, 1 + (i % 3)]));
      const table = buildDstTable(entries);
      assert.equal(table.length, DST_SLOTS);
      for (const [a, f] of entries) assert.equal(probe(table, a), f, a);
      const norm = new Set(set.map((a) => parseAddress(a).addr.toString('hex')));
      for (const o of others) if (!norm.has(parseAddress(o).addr.toString('hex'))) assert.equal(probe(table, o), 0, o);
    }),
    { numRuns: 100 },
  );
  const ports = encodePorts({ udp: [443, 0, 65535], tcp: [179], icmp: true });
  const L = LAYOUTS.cbr_ports.fields;
  const bit = (base: number, p: number) => (ports.readBigUInt64LE(base + 8 * (p >> 6)) >> BigInt(p & 63)) & 1n;
  for (const p of [443, 0, 65535]) assert.equal(bit(L.udp.offset, p), 1n);
  assert.equal(bit(L.udp.offset, 444), 0n);
  assert.equal(bit(L.tcp.offset, 179), 1n);
  assert.equal(bit(L.tcp.offset, 443), 0n);
  assert.equal(ports.readUInt32LE(L.icmp.offset), 1);
});

test('errors: xdp errors carry stable codes and map to HTTP statuses without message text', () => {
  const cases: Array<[unknown, string, number]> = [
    [catchErr(() => parsePrefix('10.0.0.0/33')), 'PREFIX_INVALID', 400],
    [catchErr(() => decodeCid(Buffer.alloc(1))), 'CID_INVALID', 400],
    [new BpfError('bpf_map_update_elem', osConstants.errno.E2BIG), 'MAP_FULL', 507],
    [new BpfError('bpf_map_update_elem', osConstants.errno.ENOSPC), 'MAP_FULL', 507],
    [new BpfError('bpf_obj_get', osConstants.errno.ENOENT), 'BPF_FAILED', 500],
  ];
  for (const [err, code, status] of cases) {
    assert.ok(err instanceof CbrError, String(err));
    assert.equal(errorCode(err), code);
    assert.equal(httpStatusFor(err), status);
  }
  assert.equal((cases[0]![0] as Error).name, 'PrefixError');
});

function catchErr(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  assert.fail('expected an error');
}
