// The XDP programs under BPF_PROG_TEST_RUN (the real verifier and kernel, crafted packets): every
// verdict path for IPv4 and IPv6, VLAN, extension-header chains, truncation at every length,
// fragments, the rate limit, and the load balancer's hash and QUIC-CID paths with encapsulation.
import { test } from 'node:test';
import type { NetworkInterfaceInfo } from 'node:os';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { progTestRun } from './libbpf.js';
import { readCounters, syncLists } from './control.js';
import type { XdpPipeline } from './loader.js';
import { buildPacket, quicShort, quicLong, testConfig, withTestPipeline, XDP_DROP, XDP_PASS, XDP_TX, type PacketSpec } from './testing.js';
import { encodeCid } from './cid.js';
import { formatIp, parseAddress, type CbrConfig } from '../dataplane/index.js';
import { autoAllowEntries } from './always-pass.js';

const SVC4 = '198.51.100.1';
const SVC6 = '2001:db8:53::1';
const BASE = {
  deny: { prefixes: ['203.0.113.0/24', '2001:db8:bad::/48'] },
  allow: { prefixes: ['203.0.113.7/32', '2001:db8:bad:1::/64'] },
  services: { addresses: [SVC4, SVC6] },
};

function counterDelta(p: XdpPipeline, run: () => void): Map<string, bigint> {
  const before = new Map(readCounters(p).map((r) => [`${r.action}/${r.reason}`, r.packets]));
  run();
  const out = new Map<string, bigint>();
  for (const r of readCounters(p)) {
    const d = r.packets - (before.get(`${r.action}/${r.reason}`) ?? 0n);
    if (d) out.set(`${r.action}/${r.reason}`, d);
  }
  return out;
}

/** Runs one packet and checks the verdict and the one counter it must move. */
function expectVerdict(p: XdpPipeline, spec: PacketSpec | Buffer, verdict: number, counter: string, what: string): Buffer {
  const pkt = Buffer.isBuffer(spec) ? spec : buildPacket(spec);
  let out!: Buffer;
  const d = counterDelta(p, () => {
    const r = progTestRun(p.filterFd, pkt);
    assert.equal(r.retval, verdict, `${what}: verdict ${r.retval}, want ${verdict}`);
    out = r.dataOut;
  });
  assert.deepEqual([...d.entries()], [[counter, 1n]], `${what}: counters ${JSON.stringify([...d].map(([k, v]) => [k, Number(v)]))}`);
  return out;
}

/** A QUIC short header to port 443 whose CID names `serverId`: the LB forwards it by the CID. */
function expectByCid(p: XdpPipeline, spec: PacketSpec, serverId: number, what: string): Buffer {
  return expectVerdict(p, { ...spec, dport: 443, payload: quicShort(encodeCid({ configId: 0, serverId })) }, XDP_TX, 'tx/lb_cid', what);
}

test('filter: pass, deny, allow and service policy for IPv4 and IPv6, with and without VLAN tags', async () => {
  await withTestPipeline(testConfig(BASE), (p) => {
    for (const vlans of [[], [100], [200, 100]]) {
      const tag = `vlans=${vlans.join('.')}`;
      expectVerdict(p, { src: '192.0.2.1', dst: '192.0.2.99', vlans }, XDP_PASS, 'pass/ok', `v4 plain ${tag}`);
      expectVerdict(p, { src: '2001:db8::1', dst: '2001:db8::99', vlans }, XDP_PASS, 'pass/ok', `v6 plain ${tag}`);
      expectVerdict(p, { src: '203.0.113.9', dst: '192.0.2.99', vlans }, XDP_DROP, 'drop/denylist', `v4 denied ${tag}`);
      expectVerdict(p, { src: '2001:db8:bad:2::1', dst: '2001:db8::99', vlans }, XDP_DROP, 'drop/denylist', `v6 denied ${tag}`);
      expectVerdict(p, { src: '203.0.113.7', dst: '192.0.2.99', vlans }, XDP_PASS, 'pass/allowlist', `v4 allowlisted inside denied ${tag}`);
      expectVerdict(p, { src: '2001:db8:bad:1::5', dst: '2001:db8::99', vlans }, XDP_PASS, 'pass/allowlist', `v6 allowlisted ${tag}`);
    }
    const svc: Array<[string, string, PacketSpec['proto'], number, number, string]> = [
      ['192.0.2.1', SVC4, 'udp', 443, XDP_PASS, 'pass/ok'],
      ['192.0.2.1', SVC4, 'udp', 51820, XDP_PASS, 'pass/ok'],
      ['192.0.2.1', SVC4, 'tcp', 179, XDP_PASS, 'pass/ok'],
      ['192.0.2.1', SVC4, 'udp', 53, XDP_DROP, 'drop/policy'],
      ['192.0.2.1', SVC4, 'tcp', 22, XDP_DROP, 'drop/policy'],
      ['192.0.2.1', SVC4, 'icmp', 0, XDP_PASS, 'pass/ok'],
      ['192.0.2.1', SVC4, 47, 0, XDP_DROP, 'drop/policy'],
      ['2001:db8::1', SVC6, 'udp', 443, XDP_PASS, 'pass/ok'],
      ['2001:db8::1', SVC6, 'tcp', 443, XDP_PASS, 'pass/ok'],
      ['2001:db8::1', SVC6, 'udp', 123, XDP_DROP, 'drop/policy'],
      ['2001:db8::1', SVC6, 'icmp', 0, XDP_PASS, 'pass/ok'],
    ];
    for (const [src, dst, proto, dport, v, c] of svc) expectVerdict(p, { src, dst, proto, dport }, v, c, `service ${dst} ${proto}/${dport}`);
    // non-IP (ARP) always passes
    const arp = Buffer.alloc(42);
    arp.writeUInt16BE(0x0806, 12);
    expectVerdict(p, arp, XDP_PASS, 'pass/non_ip', 'arp');
  });
});

test('filter: IPv4 options and IPv6 extension-header chains reach the L4 header', async () => {
  await withTestPipeline(testConfig(BASE), (p) => {
    const opts = Buffer.from([0x94, 0x04, 0, 0, 1, 1, 1, 0]); // router alert + NOPs + EOL
    expectVerdict(p, { src: '192.0.2.1', dst: SVC4, dport: 443, ipv4Options: opts }, XDP_PASS, 'pass/ok', 'v4 options to 443');
    expectVerdict(p, { src: '192.0.2.1', dst: SVC4, dport: 53, ipv4Options: opts }, XDP_DROP, 'drop/policy', 'v4 options to 53');
    const chain = [{ type: 0 }, { type: 43, len8: 2 }, { type: 60, len8: 1 }, { type: 51, len8: 4 }];
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 443, ext6: chain }, XDP_PASS, 'pass/ok', 'v6 chain to 443');
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 53, ext6: chain }, XDP_DROP, 'drop/policy', 'v6 chain to 53 (L4 found behind the chain)');
    const long = Array.from({ length: 9 }, () => ({ type: 60 }));
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 443, ext6: long }, XDP_DROP, 'drop/malformed', 'v6 chain longer than the walk');
    const eight = Array.from({ length: 7 }, () => ({ type: 60 }));
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 443, ext6: eight }, XDP_PASS, 'pass/ok', 'v6 chain of 7 fits');
  });
});

test('filter: malformed headers follow the malformed policy', async () => {
  const bad: Array<[string, (b: Buffer) => void, PacketSpec]> = [
    ['v4 ihl 4', (b) => (b[14] = 0x44), { src: '192.0.2.1', dst: '192.0.2.2' }],
    ['v4 version 5', (b) => (b[14] = 0x55), { src: '192.0.2.1', dst: '192.0.2.2' }],
    ['v4 tot_len < ihl', (b) => b.writeUInt16BE(10, 16), { src: '192.0.2.1', dst: '192.0.2.2' }],
    ['v6 version 4', (b) => (b[14] = 0x40), { src: '2001:db8::1', dst: '2001:db8::2' }],
    ['tcp doff 4', (b) => (b[14 + 20 + 12] = 0x40), { src: '192.0.2.1', dst: '192.0.2.2', proto: 'tcp' }],
    ['udp length 4', (b) => b.writeUInt16BE(4, 14 + 20 + 4), { src: '192.0.2.1', dst: '192.0.2.2' }],
  ];
  for (const policy of ['drop', 'pass'] as const) {
    await withTestPipeline(testConfig({ ...BASE, malformed: policy }), (p) => {
      for (const [what, mutate, spec] of bad) {
        const pkt = buildPacket(spec);
        mutate(pkt);
        expectVerdict(p, pkt, policy === 'drop' ? XDP_DROP : XDP_PASS, `${policy}/malformed`, `${what} (${policy})`);
      }
    });
  }
});

test('filter: a packet truncated at every length gets the truncated verdict, never an abort', async () => {
  const specs: PacketSpec[] = [
    { src: '192.0.2.1', dst: SVC4, dport: 443, ipv4Options: Buffer.from([1, 1, 1, 0]) },
    { src: '192.0.2.1', dst: SVC4, proto: 'tcp', dport: 443, vlans: [7, 8] },
    { src: '2001:db8::1', dst: SVC6, dport: 443, ext6: [{ type: 0 }, { type: 43, len8: 1 }, { type: 60 }] },
    { src: '2001:db8::1', dst: SVC6, proto: 'icmp', vlans: [9] },
  ];
  for (const policy of ['drop', 'pass'] as const) {
    await withTestPipeline(testConfig({ ...BASE, malformed: policy }), (p) => {
      for (const spec of specs) {
        const full = buildPacket(spec);
        expectVerdict(p, full, XDP_PASS, 'pass/ok', `whole ${spec.src} vlans=${spec.vlans ?? []}`);
        for (let len = 14; len < full.length; len++) {
          expectVerdict(
            p,
            full.subarray(0, len),
            policy === 'drop' ? XDP_DROP : XDP_PASS,
            `${policy}/truncated`,
            `${spec.src}${spec.vlans ? ' vlan' : ''} cut at ${len}/${full.length} (${policy})`,
          );
        }
        // BPF_PROG_TEST_RUN itself refuses frames shorter than an Ethernet header
        assert.throws(() => progTestRun(p.filterFd, full.subarray(0, 13)), /EINVAL|errno 22/);
      }
    });
  }
});

test('filter: fragments by policy, IPv4 flags and the IPv6 fragment header', async () => {
  const frags: PacketSpec[] = [
    { src: '192.0.2.1', dst: SVC4, dport: 443, frag: { offset: 0, more: true } },
    { src: '192.0.2.1', dst: SVC4, dport: 443, frag: { offset: 185, more: false } },
    { src: '2001:db8::1', dst: SVC6, dport: 443, frag: { offset: 0, more: true } },
    { src: '2001:db8::1', dst: SVC6, dport: 443, ext6: [{ type: 0 }], frag: { offset: 100, more: true } },
  ];
  for (const policy of ['drop', 'pass'] as const) {
    await withTestPipeline(testConfig({ ...BASE, fragments: policy }), (p) => {
      for (const f of frags)
        expectVerdict(p, f, policy === 'drop' ? XDP_DROP : XDP_PASS, `${policy}/fragment`, `${f.src} frag ${JSON.stringify(f.frag)} (${policy})`);
      // denied sources are dropped before the fragment policy is asked
      expectVerdict(p, { src: '203.0.113.9', dst: SVC4, frag: { offset: 8, more: false } }, XDP_DROP, 'drop/denylist', 'denied fragment');
      // an IPv6 atomic fragment (offset 0, no M) is a whole packet
      expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 443, frag: { offset: 0, more: false } }, XDP_PASS, 'pass/ok', 'atomic fragment');
    });
  }
});

test('filter: per-source token bucket drops over the burst and spares allowlisted sources', async () => {
  await withTestPipeline(testConfig({ ...BASE, rateLimit: { enabled: true, packetsPerSecond: 1, burst: 5 } }), (p) => {
    for (const [src, key] of [
      ['192.0.2.50', 'v4'],
      ['2001:db8:1:2::1', 'v6'],
    ] as const) {
      const dst = key === 'v6' ? '2001:db8::99' : '192.0.2.99';
      for (let i = 0; i < 5; i++) expectVerdict(p, { src, dst }, XDP_PASS, 'pass/ok', `${key} burst ${i}`);
      expectVerdict(p, { src, dst }, XDP_DROP, 'drop/ratelimit', `${key} over the burst`);
    }
    // the same /64 shares a bucket
    expectVerdict(p, { src: '2001:db8:1:2::ffff', dst: '2001:db8::99' }, XDP_DROP, 'drop/ratelimit', 'same /64');
    // another source has its own
    expectVerdict(p, { src: '192.0.2.51', dst: '192.0.2.99' }, XDP_PASS, 'pass/ok', 'other source');
    for (let i = 0; i < 10; i++) expectVerdict(p, { src: '203.0.113.7', dst: '192.0.2.99' }, XDP_PASS, 'pass/allowlist', 'allowlisted is not limited');
  });
});

test('rate limit: deep buckets run on the tick clock, shallow ones on the precise clock; both refill', async () => {
  const { decodeConfig, CFG_FLAGS, u32Key } = await import('./maps.js');
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  // 1000/s with a burst of 1: 1 ms of credit, shallower than two ticks -> precise clock
  await withTestPipeline(testConfig({ rateLimit: { enabled: true, packetsPerSecond: 1000, burst: 1 } }), async (p) => {
    assert.equal(decodeConfig(p.map('cbr_cfg').lookup(u32Key(0))!).flags & CFG_FLAGS.RL_COARSE, 0);
    // two runs back to back inside the kernel (a 1 ms bucket is gone by the time user space could send again)
    const d = counterDelta(p, () =>
      assert.equal(progTestRun(p.filterFd, buildPacket({ src: '192.0.2.60', dst: '192.0.2.99' }), 2).retval, XDP_DROP, 'second at once'),
    );
    assert.deepEqual([...d.entries()].sort(), [
      ['drop/ratelimit', 1n],
      ['pass/ok', 1n],
    ]);
    await sleep(5);
    expectVerdict(p, { src: '192.0.2.60', dst: '192.0.2.99' }, XDP_PASS, 'pass/ok', 'after 5 ms');
  });
  // 10/s with a burst of 10: 1 s of credit -> tick clock; runs back to back inside the kernel
  await withTestPipeline(testConfig({ rateLimit: { enabled: true, packetsPerSecond: 10, burst: 10 } }), async (p) => {
    assert.ok(decodeConfig(p.map('cbr_cfg').lookup(u32Key(0))!).flags & CFG_FLAGS.RL_COARSE);
    const pkt = buildPacket({ src: '192.0.2.61', dst: '192.0.2.99' });
    const burst = () => counterDelta(p, () => assert.equal(progTestRun(p.filterFd, pkt, 11).retval, XDP_DROP, 'the 11th'));
    assert.deepEqual(
      [...burst().entries()].sort(),
      [
        ['drop/ratelimit', 1n],
        ['pass/ok', 10n],
      ],
      'the burst, then a drop',
    );
    await sleep(1500); // 15 packets of credit, capped at 10
    assert.deepEqual(
      [...burst().entries()].sort(),
      [
        ['drop/ratelimit', 1n],
        ['pass/ok', 10n],
      ],
      'refilled to the burst, not beyond',
    );
  });
});

test('rate limit: a random-source flood is held to the shared bucket for new sources; tracked sources keep theirs', async () => {
  const newPps = 100;
  const newBurst = 50;
  const cfg = testConfig({ rateLimit: { enabled: true, packetsPerSecond: 1, burst: 5, newSources: { packetsPerSecond: newPps, burst: newBurst } } });
  await withTestPipeline(cfg, (p) => {
    const dst = '192.0.2.99';
    expectVerdict(p, { src: '192.0.2.77', dst }, XDP_PASS, 'pass/ok', 'an honest source, tracked before the flood');
    const flood = 2000;
    const t0 = performance.now();
    const d = counterDelta(p, () => {
      for (let i = 0; i < flood; i++) {
        const src = `100.${64 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`; // every packet a new source
        progTestRun(p.filterFd, buildPacket({ src, dst, sport: 1024 + (i % 50000) }));
      }
    });
    const seconds = (performance.now() - t0) / 1000;
    const passed = Number(d.get('pass/ok') ?? 0n);
    const dropped = Number(d.get('drop/ratelimit_new') ?? 0n);
    assert.equal(passed + dropped, flood, `every flood packet is counted once: ${JSON.stringify([...d].map(([k, v]) => [k, Number(v)]))}`);
    // the burst, plus the rate over the time the flood took, plus a packet of slack for the tick clock
    const bound = newBurst + Math.ceil(newPps * seconds) + 2;
    assert.ok(passed >= newBurst && passed <= bound, `${passed} of ${flood} new sources admitted in ${seconds.toFixed(2)} s, want ${newBurst}..${bound}`);
    // the tracked source still has its own bucket (4 of 5 left), untouched by the flood
    expectVerdict(p, { src: '192.0.2.77', dst }, XDP_PASS, 'pass/ok', 'the honest source during the flood');
  });
});

test('rate limit: packets spoofed as a BGP peer pass although its own bucket is empty (xdp.allow.auto)', async () => {
  const peers = ['10.0.1.1', '2001:db8:1::1'];
  // the shared new-source bucket is generous in the control case (so the peer gets a bucket of its
  // own and empties it) and tiny with the automatic entries (so a flood has emptied it)
  const rateLimit = (auto: boolean) => ({ enabled: true, packetsPerSecond: 1, burst: 5, newSources: auto ? { packetsPerSecond: 1, burst: 1 } : {} });
  const ifaces: NodeJS.Dict<NetworkInterfaceInfo[]> = {
    eth9: [{ address: '10.9.0.5', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:09', internal: false, cidr: '10.9.0.5/24' }],
  };
  const whole = (auto: boolean) =>
    ({
      xdp: testConfig({ rateLimit: rateLimit(auto), allow: { auto } }),
      bgp: { enabled: true, peers: peers.map((address, i) => ({ name: `p${i}`, address, remoteAs: 65000 })) },
      admin: { enabled: true, listen: '10.9.0.5:9780' },
    }) as unknown as CbrConfig;
  const dstFor = (src: string) => (src.includes(':') ? '2001:db8::99' : '192.0.2.99');
  // without the automatic entries the peer's own bucket runs dry: the control case
  await withTestPipeline(whole(false).xdp, (p) => {
    syncLists(
      p,
      whole(false).xdp,
      { api: { deny: [], allow: [] } },
      autoAllowEntries(whole(false), ifaces).map((e) => e.prefix),
    );
    for (const src of peers) {
      const pkt = buildPacket({ src, dst: dstFor(src), sport: 179 });
      const d = counterDelta(p, () => progTestRun(p.filterFd, pkt, 20));
      assert.equal(
        d.get('drop/ratelimit'),
        15n,
        `${src}: the control case drops past its own burst: ${JSON.stringify([...d].map(([k, v]) => [k, Number(v)]))}`,
      );
    }
  });
  await withTestPipeline(whole(true).xdp, (p) => {
    const auto = autoAllowEntries(whole(true), ifaces);
    assert.deepEqual(
      auto.map((e) => [e.prefix.text, e.from]),
      [
        ['10.0.1.1/32', 'bgp.peers[0].address'],
        ['2001:db8:1::1/128', 'bgp.peers[1].address'],
        ['10.9.0.0/24', 'admin.listen (10.9.0.5/24)'],
      ],
    );
    syncLists(
      p,
      whole(true).xdp,
      { api: { deny: [], allow: [] } },
      auto.map((e) => e.prefix),
    );
    // drain the shared new-source bucket with a random-source flood first
    for (let i = 0; i < 50; i++) progTestRun(p.filterFd, buildPacket({ src: `100.64.0.${i}`, dst: '192.0.2.99' }));
    for (const src of [...peers, '10.9.0.77']) {
      const pkt = buildPacket({ src, dst: dstFor(src), sport: 179 });
      const d = counterDelta(p, () => assert.equal(progTestRun(p.filterFd, pkt, 200).retval, XDP_PASS, `${src}: the 200th`));
      assert.deepEqual([...d.entries()], [['pass/allowlist', 200n]], `${src}: every packet passes`);
    }
    // anyone else in the peer's /24 is still limited
    const other = buildPacket({ src: '10.0.1.2', dst: '192.0.2.99' });
    assert.equal(progTestRun(p.filterFd, other, 20).retval, XDP_DROP, '10.0.1.2 is not a peer');
  });
});

const LB = {
  ...BASE,
  lb: {
    vips: [
      { address: '198.51.100.10', port: 443, protocol: 'udp', quic: true },
      { address: '2001:db8:53::10', port: 443, protocol: 'udp', quic: true },
      { address: '198.51.100.10', port: 80, protocol: 'tcp', quic: false },
    ],
    backends: [
      { address: '10.9.0.1', weight: 1, serverId: 101 },
      { address: '10.9.0.2', weight: 1, serverId: 102 },
      { address: '2001:db8:9::3', weight: 1, serverId: 103 },
    ],
    nextHopMac: '02:00:00:00:00:fe',
    encapSourceV4: '10.9.0.254',
    encapSourceV6: '2001:db8:9::fe',
  },
};

function outerDst(out: Buffer): string {
  const et = out.readUInt16BE(12);
  if (et === 0x0800) return formatIp(out.subarray(30, 34));
  return formatIp(out.subarray(38, 54));
}

test('lb: QUIC short headers go by CID server ID, everything else by the Maglev hash; IPIP/IP6 encapsulation', async () => {
  await withTestPipeline(testConfig(LB), (p) => {
    const inner = buildPacket({
      src: '192.0.2.1',
      dst: '198.51.100.10',
      dport: 443,
      sport: 5000,
      payload: quicShort(encodeCid({ configId: 0, serverId: 102 })),
    });
    const out = expectVerdict(p, inner, XDP_TX, 'tx/lb_cid', 'short header to sid 102');
    // Ethernet: next hop and our MAC; outer IPv4 with proto 4 and a valid checksum; inner packet intact
    assert.deepEqual([...out.subarray(0, 6)], [2, 0, 0, 0, 0, 0xfe]);
    assert.deepEqual([...out.subarray(6, 12)], [2, 0, 0, 0, 0, 0x10]);
    assert.equal(out.readUInt16BE(12), 0x0800);
    assert.equal(out[14], 0x45);
    assert.equal(out[23], 4);
    assert.equal(out.readUInt16BE(16), inner.length - 14 + 20);
    assert.equal(outerDst(out), '10.9.0.2');
    assert.deepEqual([...out.subarray(26, 30)], [10, 9, 0, 254]);
    let s = 0;
    for (let i = 14; i < 34; i += 2) s += out.readUInt16BE(i);
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    assert.equal(s, 0xffff, 'outer IPv4 checksum');
    assert.deepEqual(out.subarray(34), inner.subarray(14));
    // the same connection from other source ports (and addresses) stays on its backend
    for (const sport of [5001, 6000, 65000]) {
      for (const src of ['192.0.2.1', '192.0.2.77']) {
        const o = expectByCid(p, { src, dst: '198.51.100.10', sport }, 102, `sid 102 from ${src}:${sport}`);
        assert.equal(outerDst(o), '10.9.0.2');
      }
    }
    // IPv6 backend: outer IPv6, next header 4 (IPv4 inside)
    const o6 = expectByCid(p, { src: '192.0.2.1', dst: '198.51.100.10' }, 103, 'sid 103');
    assert.equal(o6.readUInt16BE(12), 0x86dd);
    assert.equal(o6[20], 4);
    assert.equal(outerDst(o6), '2001:db8:9::3');
    // IPv6 inside: next header / protocol 41
    const o66 = expectByCid(p, { src: '2001:db8::1', dst: '2001:db8:53::10' }, 101, 'v6 sid 101');
    assert.equal(o66[23], 41);
    assert.equal(outerDst(o66), '10.9.0.1');
    // unknown server ID, another config id, a long header, TCP: the hash
    expectVerdict(
      p,
      { src: '192.0.2.1', dst: '198.51.100.10', dport: 443, payload: quicShort(encodeCid({ configId: 0, serverId: 999 })) },
      XDP_TX,
      'tx/lb_hash',
      'unknown sid',
    );
    expectVerdict(
      p,
      { src: '192.0.2.1', dst: '198.51.100.10', dport: 443, payload: quicShort(encodeCid({ configId: 3, serverId: 101 })) },
      XDP_TX,
      'tx/lb_hash',
      'other config id',
    );
    expectVerdict(
      p,
      { src: '192.0.2.1', dst: '198.51.100.10', dport: 443, payload: quicLong(encodeCid({ configId: 0, serverId: 101 })) },
      XDP_TX,
      'tx/lb_hash',
      'long header',
    );
    expectVerdict(
      p,
      { src: '192.0.2.1', dst: '198.51.100.10', dport: 443, payload: Buffer.from([0x41, 1, 2]) },
      XDP_TX,
      'tx/lb_hash',
      'short header too short for a CID',
    );
    expectVerdict(p, { src: '192.0.2.1', dst: '198.51.100.10', proto: 'tcp', dport: 80 }, XDP_TX, 'tx/lb_hash', 'tcp vip');
    // the hash is per flow: the same 5-tuple always lands on the same backend; flows spread
    const seen = new Map<string, number>();
    for (let sport = 20000; sport < 20300; sport++) {
      const spec = { src: '192.0.2.1', dst: '198.51.100.10', dport: 443, sport, payload: quicLong(Buffer.alloc(8, 1)) };
      const a = outerDst(progTestRun(p.filterFd, buildPacket(spec)).dataOut);
      assert.equal(outerDst(progTestRun(p.filterFd, buildPacket(spec)).dataOut), a);
      seen.set(a, (seen.get(a) ?? 0) + 1);
    }
    assert.equal(seen.size, 3, `flows spread over ${[...seen.keys()]}`);
    for (const n of seen.values()) assert.ok(n > 60, `per-backend flows ${[...seen.values()]}`);
    // not a VIP (other port, other address): the stack; denied sources never reach the LB
    expectVerdict(p, { src: '192.0.2.1', dst: '198.51.100.10', dport: 444 }, XDP_PASS, 'pass/ok', 'vip address, other port');
    expectVerdict(p, { src: '203.0.113.7', dst: '198.51.100.11', dport: 443 }, XDP_PASS, 'pass/allowlist', 'allowlisted, not a vip');
    expectByCid(p, { src: '203.0.113.7', dst: '198.51.100.10' }, 101, 'allowlisted to a vip');
    expectVerdict(p, { src: '203.0.113.9', dst: '198.51.100.10', dport: 443 }, XDP_DROP, 'drop/denylist', 'denied to a vip');
    // VLAN-tagged VIP traffic leaves untagged
    const ov = expectByCid(p, { src: '192.0.2.1', dst: '198.51.100.10', vlans: [5] }, 101, 'vlan to vip');
    assert.equal(ov.readUInt16BE(12), 0x0800);
  });
});

test('lb: a VIP with no live backend drops with its own reason', async () => {
  await withTestPipeline(testConfig({ ...LB, lb: { ...LB.lb, backends: [{ address: '10.9.0.1', weight: 0 }] } }), (p) => {
    expectVerdict(p, { src: '192.0.2.1', dst: '198.51.100.10', dport: 443 }, XDP_DROP, 'drop/lb_no_backend', 'all weights 0');
  });
});

test('fuzz: random frames never abort and always count exactly one verdict', async () => {
  await withTestPipeline(testConfig({ ...LB, rateLimit: { enabled: true, packetsPerSecond: 1000, burst: 1000 } }), (p) => {
    const head = fc.constantFrom(
      buildPacket({ src: '192.0.2.1', dst: '198.51.100.10', dport: 443, payload: quicShort(encodeCid({ configId: 0, serverId: 101 })) }),
      buildPacket({ src: '2001:db8::1', dst: SVC6, dport: 443, ext6: [{ type: 0 }, { type: 44 }] }),
      buildPacket({ src: '192.0.2.1', dst: SVC4, proto: 'tcp', vlans: [1, 2] }),
    );
    fc.assert(
      fc.property(head, fc.array(fc.tuple(fc.nat(120), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(140), (base, flips, cut) => {
        const pkt = Buffer.from(base);
        for (const [i, v] of flips) if (i < pkt.length) pkt[i] = v;
        const frame = pkt.subarray(0, Math.max(14, Math.min(pkt.length, cut + 14)));
        const d = counterDelta(p, () => {
          const r = progTestRun(p.filterFd, frame);
          assert.ok([XDP_DROP, XDP_PASS, XDP_TX].includes(r.retval), `verdict ${r.retval} for ${frame.toString('hex')}`);
        });
        assert.equal(
          [...d.values()].reduce((a, b) => a + b, 0n),
          1n,
        );
      }),
      { numRuns: 300 },
    );
  });
});

test('addresses used by the tests parse', () => {
  assert.equal(parseAddress(SVC6).family, 6);
});

test('frags: a multi-buffer frame (jumbo MTU) is judged by its whole length and counted in full', async () => {
  await withTestPipeline(testConfig(BASE), (p) => {
    // BPF_PROG_TEST_RUN puts what does not fit in one page into fragments (only for xdp.frags programs)
    const big = buildPacket({ src: '192.0.2.1', dst: SVC4, dport: 443, payload: Buffer.alloc(8000, 7) });
    const before = readCounters(p).find((r) => r.action === 'pass' && r.reason === 'ok')?.bytes ?? 0n;
    expectVerdict(p, big, XDP_PASS, 'pass/ok', 'v4 8000-byte payload');
    const after = readCounters(p).find((r) => r.action === 'pass' && r.reason === 'ok')!.bytes;
    assert.equal(after - before, BigInt(big.length), 'bytes counted over all fragments');
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 443, payload: Buffer.alloc(9000, 7) }, XDP_PASS, 'pass/ok', 'v6 9000-byte payload');
    expectVerdict(p, { src: '192.0.2.1', dst: SVC4, dport: 53, payload: Buffer.alloc(8000, 7) }, XDP_DROP, 'drop/policy', 'big packet to a refused port');
    expectVerdict(
      p,
      { src: '203.0.113.9', dst: SVC4, dport: 443, payload: Buffer.alloc(8000, 7) },
      XDP_DROP,
      'drop/denylist',
      'big packet from a denied source',
    );
    // an IP length beyond the whole frame is still truncated
    const cut = Buffer.from(big);
    cut.writeUInt16BE(big.length - 14 + 100, 16);
    expectVerdict(p, cut, XDP_DROP, 'drop/truncated', 'IPv4 length past the last fragment');
  });
});

test('lists: the filter skips empty lists by config flags, and a prefix added live is never skipped', async () => {
  const { liveListAdd, liveListDelete, ORIGIN } = await import('./control.js');
  const { decodeConfig, encodeConfig, CFG_FLAGS, u32Key } = await import('./maps.js');
  const { parsePrefix } = await import('../dataplane/index.js');
  await withTestPipeline(testConfig({ services: BASE.services }), (p) => {
    const flags = () => decodeConfig(p.map('cbr_cfg').lookup(u32Key(0))!).flags;
    const all = CFG_FLAGS.DENY4_EMPTY | CFG_FLAGS.DENY6_EMPTY | CFG_FLAGS.ALLOW4_EMPTY | CFG_FLAGS.ALLOW6_EMPTY;
    assert.equal(flags() & all, all, 'all four lists empty');
    assert.ok(flags() & CFG_FLAGS.PRE4, 'the IPv4 prefilter is in use after a sync');
    expectVerdict(p, { src: '203.0.113.9', dst: SVC4 }, XDP_PASS, 'pass/ok', 'nothing denied yet');
    liveListAdd(p, 'deny', parsePrefix('203.0.113.0/24'), ORIGIN.api);
    liveListAdd(p, 'deny', parsePrefix('2001:db8:bad::/48'), ORIGIN.api);
    assert.equal(flags() & all, CFG_FLAGS.ALLOW4_EMPTY | CFG_FLAGS.ALLOW6_EMPTY, 'deny lists hold something');
    expectVerdict(p, { src: '203.0.113.9', dst: SVC4 }, XDP_DROP, 'drop/denylist', 'v4 added live');
    expectVerdict(p, { src: '2001:db8:bad::9', dst: SVC6 }, XDP_DROP, 'drop/denylist', 'v6 added live');
    expectVerdict(p, { src: '203.0.114.9', dst: SVC4 }, XDP_PASS, 'pass/ok', 'next /24 is not denied');
    // a /8 through the prefilter: every /24 inside it is asked, allow wins over deny
    liveListAdd(p, 'deny', parsePrefix('100.0.0.0/8'), ORIGIN.api);
    liveListAdd(p, 'allow', parsePrefix('100.200.3.4/32'), ORIGIN.api);
    for (const src of ['100.0.0.1', '100.127.255.254', '100.255.255.255', '100.200.3.5'])
      expectVerdict(p, { src, dst: SVC4 }, XDP_DROP, 'drop/denylist', `${src} in 100/8`);
    expectVerdict(p, { src: '100.200.3.4', dst: SVC4 }, XDP_PASS, 'pass/allowlist', 'allowlisted inside the denied /8');
    expectVerdict(p, { src: '101.0.0.1', dst: SVC4 }, XDP_PASS, 'pass/ok', 'just past 100/8');
    // a config value without the empty and prefilter bits (an older agent's) makes the filter look, never skip
    const cur = decodeConfig(p.map('cbr_cfg').lookup(u32Key(0))!);
    p.map('cbr_cfg').update(u32Key(0), encodeConfig({ ...cur, flags: cur.flags & ~(all | CFG_FLAGS.PRE4) }));
    expectVerdict(p, { src: '203.0.113.9', dst: SVC4 }, XDP_DROP, 'drop/denylist', 'no flags at all');
    expectVerdict(p, { src: '192.0.2.1', dst: SVC4 }, XDP_PASS, 'pass/ok', 'no flags, not listed');
    p.map('cbr_cfg').update(u32Key(0), encodeConfig(cur));
    for (const [kind, t] of [
      ['deny', '203.0.113.0/24'],
      ['deny', '2001:db8:bad::/48'],
      ['deny', '100.0.0.0/8'],
      ['allow', '100.200.3.4/32'],
    ] as const) {
      assert.equal(liveListDelete(p, kind, parsePrefix(t)), true, t);
    }
    assert.equal(liveListDelete(p, 'deny', parsePrefix('203.0.113.0/24')), false, 'already gone');
    assert.equal(flags() & all, all, 'empty again');
    expectVerdict(p, { src: '203.0.113.9', dst: SVC4 }, XDP_PASS, 'pass/ok', 'removed live');
    expectVerdict(p, { src: '100.0.0.1', dst: SVC4 }, XDP_PASS, 'pass/ok', '/8 removed live');
  });
});

test('lists: whole-/24 deny bits drop without the trie after a sync and are gone before a live delete', async () => {
  const { liveListDelete } = await import('./control.js');
  const { parsePrefix } = await import('../dataplane/index.js');
  await withTestPipeline(testConfig({ deny: { prefixes: ['10.0.0.0/8', '198.18.0.7/32'] } }), (p) => {
    // the API-added prefix is synced like the config's (its deny_full bits are set by the sync)
    syncLists(p, testConfig({ deny: { prefixes: ['10.0.0.0/8', '198.18.0.7/32'] } }), { api: { deny: ['172.16.0.0/12'], allow: [] } });
    for (const src of ['10.1.2.3', '172.16.5.5', '172.31.255.1', '198.18.0.7']) expectVerdict(p, { src, dst: '192.0.2.200' }, XDP_DROP, 'drop/denylist', src);
    for (const src of ['172.32.0.1', '198.18.0.8', '11.0.0.1']) expectVerdict(p, { src, dst: '192.0.2.200' }, XDP_PASS, 'pass/ok', src);
    assert.equal(liveListDelete(p, 'deny', parsePrefix('172.16.0.0/12')), true);
    expectVerdict(p, { src: '172.16.5.5', dst: '192.0.2.200' }, XDP_PASS, 'pass/ok', 'deleted /12: no stale whole-/24 bit');
    expectVerdict(p, { src: '10.200.0.1', dst: '192.0.2.200' }, XDP_DROP, 'drop/denylist', 'the /8 stays');
  });
});

test('lists: the IPv4 prefilter agrees with the LPM tries for random lists and sources', async () => {
  const prefixes = fc
    .sample(fc.tuple(fc.integer({ min: 1, max: 0xfffffffe }), fc.integer({ min: 8, max: 32 })), { numRuns: 300, seed: 42 })
    .map(([a, l]) => `${a >>> 24}.${(a >>> 16) & 255}.${(a >>> 8) & 255}.${a & 255}/${l}`);
  const { parsePrefix } = await import('../dataplane/index.js');
  const deny = prefixes.slice(0, 200).map((t) => parsePrefix(t).text);
  const allow = prefixes.slice(200).map((t) => parsePrefix(t).text);
  await withTestPipeline(testConfig({ deny: { prefixes: deny }, allow: { prefixes: allow } }), (p) => {
    const inside = (src: number, list: string[]) =>
      list.some((t) => {
        const [a, l] = t.split('/');
        const n = a!.split('.').reduce((x, o) => x * 256 + Number(o), 0);
        const len = Number(l);
        return len === 0 || src >>> (32 - len) === n >>> (32 - len);
      });
    // sources inside listed prefixes, next to them, and anywhere
    const near = deny.concat(allow).map((t) =>
      t
        .split('/')[0]!
        .split('.')
        .reduce((x, o) => x * 256 + Number(o), 0),
    );
    const sources = near
      .flatMap((n) => [n, (n + 1) >>> 0, (n + 256) >>> 0, (n - 1) >>> 0])
      .concat(fc.sample(fc.integer({ min: 0, max: 0xffffffff }), { numRuns: 200, seed: 7 }));
    for (const s of sources) {
      const src = `${s >>> 24}.${(s >>> 16) & 255}.${(s >>> 8) & 255}.${s & 255}`;
      const want = inside(s, allow) ? 'pass/allowlist' : inside(s, deny) ? 'drop/denylist' : 'pass/ok';
      expectVerdict(p, { src, dst: '192.0.2.200' }, want === 'drop/denylist' ? XDP_DROP : XDP_PASS, want, src);
    }
  });
});

test('services: addresses that share a home slot in the destination table are all found, others are not', async () => {
  const { dstHome, DST_PROBES } = await import('./maps.js');
  // the first DST_PROBES + 1 addresses of 10.77.0.0/16 with the home slot of 10.77.0.1
  const home = dstHome(4, parseAddress('10.77.0.1').addr);
  const same: string[] = [];
  for (let i = 1; i < 65536 && same.length <= DST_PROBES; i++) {
    const a = `10.77.${i >> 8}.${i & 255}`;
    if (dstHome(4, parseAddress(a).addr) === home) same.push(a);
  }
  assert.equal(same.length, DST_PROBES + 1);
  const services = same.slice(0, DST_PROBES);
  await withTestPipeline(testConfig({ services: { addresses: [...services, SVC6] } }), (p) => {
    for (const a of services) {
      expectVerdict(p, { src: '192.0.2.1', dst: a, dport: 53 }, XDP_DROP, 'drop/policy', `service ${a} (shared home slot)`);
      expectVerdict(p, { src: '192.0.2.1', dst: a, dport: 443 }, XDP_PASS, 'pass/ok', `service ${a} port 443`);
    }
    expectVerdict(p, { src: '192.0.2.1', dst: same[DST_PROBES]!, dport: 53 }, XDP_PASS, 'pass/ok', 'same home slot, not a service address');
    expectVerdict(p, { src: '2001:db8::1', dst: SVC6, dport: 53 }, XDP_DROP, 'drop/policy', 'v6 service');
  });
  await assert.rejects(
    withTestPipeline(testConfig({ services: { addresses: same } }), () => undefined),
    /xdp\.services\.addresses: .*no free slot/,
  );
});
