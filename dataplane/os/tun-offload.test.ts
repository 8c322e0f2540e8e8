// The TUN offload codecs of the native addon (native/cbr_tun.c) against a reference written here:
// coalescing on write, splitting and checksum completion on read. No device: pure buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nativeIo, nativeIoUnavailable } from './udp-batch.js';

const io = nativeIo();
const need = (): NonNullable<typeof io> => {
  assert.ok(io, `the native addon is needed (make native): ${nativeIoUnavailable()}`);
  return io;
};

const VNET = 10;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_UDP_L4 = 5;
const NEEDS_CSUM = 1;
const FIN = 0x01;
const PSH = 0x08;
const ACK = 0x10;
const CWR = 0x80;

// ---- reference: Internet checksum (RFC 1071) and packet building ----

function sum(b: Uint8Array, s = 0): number {
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) s += b[b.length - 1]! << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
const isV6 = (p: Uint8Array) => p[0]! >> 4 === 6;
const ipHeaderLen = (p: Uint8Array) => (isV6(p) ? 40 : (p[0]! & 0x0f) * 4);
function pseudoSum(p: Uint8Array, proto: number, l4len: number): number {
  const addrs = isV6(p) ? p.subarray(8, 40) : p.subarray(12, 20);
  return sum(addrs) + proto + l4len;
}
/** Whether the IPv4 header checksum and the TCP/UDP checksum of a plain packet are right. */
function checksumsValid(p: Uint8Array): boolean {
  const hl = ipHeaderLen(p);
  if (!isV6(p) && fold(sum(p.subarray(0, hl))) !== 0xffff) return false;
  const proto = isV6(p) ? p[6]! : p[9]!;
  return fold(sum(p.subarray(hl), pseudoSum(p, proto, p.length - hl))) === 0xffff;
}
const be16 = (p: Uint8Array, o: number) => (p[o]! << 8) | p[o + 1]!;
const be32 = (p: Uint8Array, o: number) => ((p[o]! << 24) | (p[o + 1]! << 16) | (p[o + 2]! << 8) | p[o + 3]!) >>> 0;
function put16(p: Uint8Array, o: number, v: number): void {
  p[o] = (v >> 8) & 0xff;
  p[o + 1] = v & 0xff;
}
function put32(p: Uint8Array, o: number, v: number): void {
  put16(p, o, (v >>> 16) & 0xffff);
  put16(p, o + 2, v & 0xffff);
}

interface Flow {
  v6: boolean;
  port: number;
  seq: number;
  id: number;
  mss: number;
  /** TCP options (timestamps-sized), the same on every segment of the flow. */
  opts: number;
}

/** An IPv4/IPv6 packet with a TCP (proto 6) or UDP (17) header and correct checksums. */
function packet(
  v6: boolean,
  proto: number,
  port: number,
  payload: Uint8Array,
  tcp: { seq: number; flags: number; optLen: number } | undefined,
  id = 0,
): Uint8Array {
  const iphl = v6 ? 40 : 20;
  const l4hl = proto === 6 ? 20 + (tcp?.optLen ?? 0) : 8;
  const p = new Uint8Array(iphl + l4hl + payload.length);
  if (v6) {
    p[0] = 0x60;
    put16(p, 4, l4hl + payload.length);
    p[6] = proto;
    p[7] = 64;
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 8);
    p.set([0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2], 24);
  } else {
    p[0] = 0x45;
    put16(p, 2, p.length);
    put16(p, 4, id & 0xffff);
    put16(p, 6, 0x4000);
    p[8] = 64;
    p[9] = proto;
    p.set([10, 0, 0, 1, 10, 0, 0, 2], 12);
    put16(p, 10, ~fold(sum(p.subarray(0, 20))) & 0xffff);
  }
  const t = p.subarray(iphl);
  put16(t, 0, port);
  put16(t, 2, 5201);
  if (proto === 6 && tcp) {
    put32(t, 4, tcp.seq);
    put32(t, 8, 0x01020304);
    t[12] = (l4hl / 4) << 4;
    t[13] = tcp.flags;
    put16(t, 14, 5000);
    for (let i = 20; i < l4hl; i++) t[i] = i === 20 ? 1 : 8; // NOPs would do; any fixed bytes do
  } else {
    put16(t, 4, l4hl + payload.length);
  }
  t.set(payload, l4hl);
  const c = ~fold(sum(t, pseudoSum(p, proto, t.length))) & 0xffff;
  put16(t, proto === 6 ? 16 : 6, proto === 17 && c === 0 ? 0xffff : c);
  return p;
}

function pack(pkts: Uint8Array[]): { data: Uint8Array; lens: Uint32Array } {
  const data = new Uint8Array(pkts.reduce((s, p) => s + p.length, 0));
  const lens = new Uint32Array(pkts.length);
  let o = 0;
  pkts.forEach((p, i) => {
    data.set(p, o);
    lens[i] = p.length;
    o += p.length;
  });
  return { data, lens };
}

function unpack(data: Uint8Array, lens: Uint32Array, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let o = 0;
  for (let i = 0; i < n; i++) {
    out.push(data.slice(o, o + lens[i]!));
    o += lens[i]!;
  }
  return out;
}

function coalesce(pkts: Uint8Array[], udp = true): { out: Uint8Array[]; result: Uint32Array } {
  const { data, lens } = pack(pkts);
  const out = new Uint8Array(data.length + pkts.length * VNET + 1024);
  const outLens = new Uint32Array(pkts.length + 1);
  const result = new Uint32Array(5);
  const n = need().tunCoalesce(data, lens, pkts.length, out, outLens, result, udp);
  return { out: unpack(out, outLens, n), result };
}

function split(input: Uint8Array): Uint8Array[] {
  const out = new Uint8Array(65_536 + 256 * 128);
  const lens = new Uint32Array(256);
  const n = need().tunSplit(input, out, lens, new Float64Array(4));
  return unpack(out, lens, n);
}

interface Vnet {
  flags: number;
  gsoType: number;
  hdrLen: number;
  gsoSize: number;
  csumStart: number;
  csumOffset: number;
}
function vnet(b: Uint8Array): Vnet {
  const v = new DataView(b.buffer, b.byteOffset, VNET);
  return {
    flags: b[0]!,
    gsoType: b[1]!,
    hdrLen: v.getUint16(2, true),
    gsoSize: v.getUint16(4, true),
    csumStart: v.getUint16(6, true),
    csumOffset: v.getUint16(8, true),
  };
}
function withVnet(h: Vnet, pkt: Uint8Array): Uint8Array {
  const b = new Uint8Array(VNET + pkt.length);
  const v = new DataView(b.buffer);
  b[0] = h.flags;
  b[1] = h.gsoType;
  v.setUint16(2, h.hdrLen, true);
  v.setUint16(4, h.gsoSize, true);
  v.setUint16(6, h.csumStart, true);
  v.setUint16(8, h.csumOffset, true);
  b.set(pkt, VNET);
  return b;
}

const flowKey = (p: Uint8Array) => be16(p, ipHeaderLen(p));

// ---- write path ----

type Step = { flow: number; kind: 'seg' | 'short' | 'psh' | 'gap' | 'bad' | 'udp' | 'fin' };
const stepArb = fc.record({
  flow: fc.nat(9),
  kind: fc.constantFrom<Step['kind']>('seg', 'seg', 'seg', 'seg', 'seg', 'short', 'psh', 'gap', 'bad', 'udp', 'fin'),
});

function buildStream(flows: Flow[], steps: Step[], seed: number): Uint8Array[] {
  const pkts: Uint8Array[] = [];
  let x = seed;
  const bytes = (n: number) =>
    Uint8Array.from({ length: n }, () => {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      return x & 0xff;
    });
  for (const s of steps) {
    const f = flows[s.flow % flows.length]!;
    if (s.kind === 'udp') {
      pkts.push(packet(f.v6, 17, f.port + 1000, bytes(100), undefined, f.id++));
      continue;
    }
    if (s.kind === 'gap') f.seq = (f.seq + 7 * f.mss) >>> 0;
    const len = s.kind === 'short' ? 1 + (f.mss >> 1) : f.mss;
    const flags = ACK | (s.kind === 'psh' ? PSH : 0) | (s.kind === 'fin' ? FIN : 0);
    const p = packet(f.v6, 6, f.port, bytes(len), { seq: f.seq, flags, optLen: f.opts }, f.id++);
    if (s.kind === 'bad') p[p.length - 1]! ^= 0xff; // the TCP checksum no longer matches
    f.seq = (f.seq + len) >>> 0;
    pkts.push(p);
  }
  return pkts;
}

const flowsArb = fc.array(
  fc.record({ v6: fc.boolean(), mss: fc.integer({ min: 1, max: 1460 }), seq: fc.integer({ min: 0, max: 0xffffffff }), opts: fc.constantFrom(0, 12) }),
  { minLength: 1, maxLength: 10 },
);

test('tun coalesce: any mix of flows comes back byte for byte, in order per flow, after the kernel-side split', () => {
  fc.assert(
    fc.property(flowsArb, fc.array(stepArb, { maxLength: 200 }), fc.integer(), fc.boolean(), (fs, steps, seed, uso) => {
      const flows: Flow[] = fs.map((f, i) => ({ ...f, port: 40000 + i, id: i * 1000 }));
      const pkts = buildStream(flows, steps, seed);
      const { out, result } = coalesce(pkts, uso);
      assert.equal(result[0], pkts.length);
      assert.equal(result[1], out.length);
      assert.equal(result[4], 0);
      let supers = 0;
      let inSupers = 0;
      const back: Uint8Array[] = [];
      for (const o of out) {
        const h = vnet(o);
        const p = o.subarray(VNET);
        if (h.gsoType === 0) {
          assert.deepEqual(
            h,
            { flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 },
            'a packet not coalesced goes behind a zeroed header',
          );
        } else {
          supers++;
          const hl = ipHeaderLen(p);
          const proto = isV6(p) ? p[6]! : p[9]!;
          assert.ok(proto === 6 || uso, 'UDP is coalesced only when the kernel took USO');
          assert.equal(h.gsoType, proto === 17 ? GSO_UDP_L4 : isV6(p) ? GSO_TCPV6 : GSO_TCPV4);
          assert.equal(h.flags, NEEDS_CSUM);
          assert.equal(h.csumStart, hl);
          assert.equal(h.csumOffset, proto === 17 ? 6 : 16);
          assert.equal(h.hdrLen, hl + (proto === 17 ? 8 : (p[hl + 12]! >> 4) * 4));
          if (proto === 17) assert.equal(be16(p, hl + 4), p.length - hl, 'UDP length of the super-packet');
          if (!isV6(p)) {
            assert.equal(be16(p, 2), p.length, 'IPv4 total length of the super-packet');
            assert.equal(fold(sum(p.subarray(0, 20))), 0xffff, 'IPv4 header checksum of the super-packet');
          } else assert.equal(be16(p, 4) + 40, p.length);
          assert.ok(p.length - (isV6(p) ? 40 : 0) <= 0xffff, 'within the IP length field');
          assert.equal(be16(p, hl + h.csumOffset), fold(pseudoSum(p, proto, p.length - hl)), 'the partial checksum is the folded pseudo-header sum');
          const segs = split(o);
          assert.ok(segs.length >= 2);
          inSupers += segs.length;
        }
        back.push(...split(o));
      }
      assert.equal(result[3], supers);
      assert.equal(result[2], inSupers);
      assert.equal(back.length, pkts.length);
      const byFlow = (ps: Uint8Array[]) => {
        const m = new Map<number, string[]>();
        for (const p of ps) m.set(flowKey(p), [...(m.get(flowKey(p)) ?? []), Buffer.from(p).toString('hex')]);
        return m;
      };
      assert.deepEqual(byFlow(back), byFlow(pkts));
    }),
    { numRuns: 150 },
  );
});

test('tun coalesce: an in-order stream of one flow becomes one super-packet per 64 segments (64 KiB at most)', () => {
  for (const v6 of [false, true]) {
    const flows: Flow[] = [{ v6, port: 40000, seq: 0xfffff000, id: 0xfff0, mss: 1000, opts: 12 }];
    const steps: Step[] = Array.from({ length: 100 }, (_, i) => ({ flow: 0, kind: i === 99 ? 'short' : 'seg' }));
    const pkts = buildStream(flows, steps, 1);
    const { out, result } = coalesce(pkts);
    assert.equal(out.length, 2, `v6=${v6}: 64 + 36 segments`);
    assert.deepEqual([...result], [100, 2, 100, 2, 0]);
    assert.equal(vnet(out[0]!).gsoSize, 1000);
    assert.deepEqual(
      out.flatMap((o) => split(o)).map((p) => Buffer.from(p).toString('hex')),
      pkts.map((p) => Buffer.from(p).toString('hex')),
    );
  }
});

test('tun coalesce: UDP datagrams of one flow become one UDP_L4 super-packet with USO, none without', () => {
  for (const v6 of [false, true]) {
    const flows: Flow[] = [{ v6, port: 40000, seq: 0, id: 7, mss: 100, opts: 0 }];
    const pkts = buildStream(
      flows,
      Array.from({ length: 10 }, () => ({ flow: 0, kind: 'udp' as const })),
      3,
    );
    const { out, result } = coalesce(pkts, true);
    assert.equal(out.length, 1);
    assert.deepEqual([...result], [10, 1, 10, 1, 0]);
    assert.equal(vnet(out[0]!).gsoType, GSO_UDP_L4);
    assert.deepEqual(split(out[0]!), pkts);
    assert.equal(coalesce(pkts, false).out.length, 10);
  }
});

test('tun coalesce: any bytes as packets give a defined answer, never a crash', () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 120 }), { maxLength: 40 }), (pkts) => {
      const { out, result } = coalesce(pkts);
      assert.equal(result[0], pkts.length);
      assert.ok(out.length <= pkts.length);
    }),
  );
  assert.throws(
    () => need().tunCoalesce(new Uint8Array(10), Uint32Array.of(11), 1, new Uint8Array(100), new Uint32Array(1), new Uint32Array(5), true),
    TypeError,
  );
  assert.throws(
    () => need().tunCoalesce(new Uint8Array(10), new Uint32Array(2), 5000, new Uint8Array(100), new Uint32Array(1), new Uint32Array(5), true),
    TypeError,
  );
});

// ---- read path ----

test('tun split: any TSO/USO super-packet becomes MSS-sized packets with fixed headers and full checksums', () => {
  fc.assert(
    fc.property(
      fc.boolean(),
      fc.boolean(),
      fc.integer({ min: 0, max: 30_000 }),
      fc.integer({ min: 200, max: 1500 }),
      fc.integer({ min: 0, max: 0xff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffff }),
      (v6, udp, len, mss, flags, seq, id) => {
        const payload = Uint8Array.from({ length: len }, (_, i) => (i * 7 + 3) & 0xff);
        const proto = udp ? 17 : 6;
        const big = packet(v6, proto, 40000, payload, { seq, flags: flags | ACK, optLen: 12 }, id);
        const hl = ipHeaderLen(big);
        const l4hl = udp ? 8 : 32;
        // As the kernel hands it out: the L4 checksum field holds the partial pseudo-header sum.
        put16(big, hl + (udp ? 6 : 16), fold(pseudoSum(big, proto, big.length - hl)));
        const gsoType = udp ? GSO_UDP_L4 : v6 ? GSO_TCPV6 : GSO_TCPV4;
        const segs = split(withVnet({ flags: NEEDS_CSUM, gsoType, hdrLen: hl + l4hl, gsoSize: mss, csumStart: hl, csumOffset: udp ? 6 : 16 }, big));
        assert.equal(segs.length, Math.max(1, Math.ceil(len / mss)));
        const joined: number[] = [];
        segs.forEach((s, i) => {
          const last = i === segs.length - 1;
          assert.ok(checksumsValid(s), `segment ${i} checksums`);
          const plen = s.length - hl - l4hl;
          assert.equal(plen, last ? len - i * mss : mss);
          if (v6) assert.equal(be16(s, 4), s.length - 40);
          else {
            assert.equal(be16(s, 2), s.length);
            assert.equal(be16(s, 4), (id + i) & 0xffff);
          }
          if (udp) assert.equal(be16(s, hl + 4), s.length - hl);
          else {
            assert.equal(be32(s, hl + 4), (seq + i * mss) >>> 0);
            const f = s[hl + 13]!;
            const want = (flags | ACK) & ~(last ? 0 : FIN | PSH) & ~(i > 0 ? CWR : 0) & 0xff;
            assert.equal(f, want, `segment ${i} flags`);
          }
          joined.push(...s.subarray(hl + l4hl));
        });
        assert.deepEqual(Uint8Array.from(joined), payload);
      },
    ),
    { numRuns: 200 },
  );
});

test('tun split: a partial checksum without GSO is completed; a plain packet passes as it is', () => {
  fc.assert(
    fc.property(fc.boolean(), fc.boolean(), fc.uint8Array({ maxLength: 1400 }), (v6, udp, payload) => {
      const proto = udp ? 17 : 6;
      const p = packet(v6, proto, 40000, payload, { seq: 1, flags: ACK, optLen: 0 }, 1);
      const plain = split(withVnet({ flags: 0, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, p));
      assert.deepEqual(plain, [p]);
      const hl = ipHeaderLen(p);
      const partial = Uint8Array.from(p);
      put16(partial, hl + (udp ? 6 : 16), fold(pseudoSum(p, proto, p.length - hl)));
      const [done] = split(withVnet({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0, csumStart: hl, csumOffset: udp ? 6 : 16 }, partial));
      assert.ok(done && checksumsValid(done));
      assert.deepEqual(done, p);
    }),
  );
});

test('tun split: any bytes give packets or a counted drop, never a crash', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 3000 }), (b) => {
      const stats = new Float64Array(4);
      const n = need().tunSplit(b, new Uint8Array(70_000), new Uint32Array(64), stats);
      assert.ok(n >= 0 && n <= 64);
      if (n === 0) assert.equal(stats[3], 1, 'a dropped read is counted as malformed');
    }),
  );
  // Headers that look real over packets that do not match them.
  fc.assert(
    fc.property(
      fc.record({
        flags: fc.constantFrom(0, NEEDS_CSUM),
        gsoType: fc.constantFrom(0, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4, GSO_TCPV4 | 0x80, 3),
        hdrLen: fc.nat(200),
        gsoSize: fc.nat(2000),
        csumStart: fc.nat(2000),
        csumOffset: fc.nat(40),
      }),
      fc.constantFrom(0x45, 0x46, 0x4f, 0x60, 0x00),
      fc.constantFrom(6, 17, 0),
      fc.uint8Array({ maxLength: 3000 }),
      (h, first, proto, body) => {
        const p = Uint8Array.from([first, ...body]);
        if (p.length > 9) p[9] = proto;
        if (p.length > 6) p[6] = proto;
        const stats = new Float64Array(4);
        const n = need().tunSplit(withVnet(h, p), new Uint8Array(70_000), new Uint32Array(64), stats);
        assert.ok(n >= 0 && n <= 64);
      },
    ),
    { numRuns: 2000 },
  );
  // A header that claims more segments than the caller has room for is a drop, not an overrun.
  const big = packet(false, 6, 1, new Uint8Array(5000), { seq: 0, flags: ACK, optLen: 0 });
  const stats = new Float64Array(4);
  const n = need().tunSplit(
    withVnet({ flags: 0, gsoType: GSO_TCPV4, hdrLen: 40, gsoSize: 10, csumStart: 20, csumOffset: 16 }, big),
    new Uint8Array(70_000),
    new Uint32Array(64),
    stats,
  );
  assert.equal(n, 0);
  assert.equal(stats[3], 1);
});
