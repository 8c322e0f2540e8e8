import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseUdpPath, parseIpPath, TargetPolicy, TargetError } from './policy.js';
import { AddressPool, PoolExhaustedError, firstHost } from '../../dataplane/index.js';
import { decrementTtl, checksum, packetTooBig, timeExceeded, addresses } from './ip-packet.js';
import { masqueConfigSchema } from './config.js';

test('connect-udp paths: host/port template, percent-encoded IPv6, bad paths are 400', () => {
  assert.deepEqual(parseUdpPath('/.well-known/masque/udp/192.0.2.6/443/'), { host: '192.0.2.6', port: 443 });
  assert.deepEqual(parseUdpPath('/.well-known/masque/udp/2001%3Adb8%3A%3A42/53/'), { host: '2001:db8::42', port: 53 });
  assert.deepEqual(parseUdpPath('/.well-known/masque/udp/example.com/53/'), { host: 'example.com', port: 53 });
  for (const bad of [
    '/.well-known/masque/udp/1.2.3.4/0/',
    '/.well-known/masque/udp/1.2.3.4/70000/',
    '/.well-known/masque/udp/1.2.3.4/53',
    '/other/1/2/',
    '/.well-known/masque/udp//53/',
    '/.well-known/masque/udp/a b/53/',
    '/.well-known/masque/udp/%zz/53/',
  ]) {
    assert.throws(
      () => parseUdpPath(bad),
      (e: unknown) => e instanceof TargetError && e.status === 400,
      bad,
    );
  }
  fc.assert(
    fc.property(fc.string(), (s) => {
      try {
        parseUdpPath(`/.well-known/masque/udp/${s}`);
      } catch (e) {
        assert.ok(e instanceof TargetError);
      }
    }),
  );
});

test('connect-ip paths: wildcards, prefixes and protocol numbers', () => {
  assert.deepEqual(parseIpPath('/.well-known/masque/ip/*/*/'), {});
  assert.deepEqual(parseIpPath('/.well-known/masque/ip/192.0.2.0%2F24/17/'), { prefix: { address: '192.0.2.0', length: 24 }, ipproto: 17 });
  assert.deepEqual(parseIpPath('/.well-known/masque/ip/2001%3Adb8%3A%3A1/*/'), { prefix: { address: '2001:db8::1', length: 128 } });
  for (const bad of ['/.well-known/masque/ip/*/300/', '/.well-known/masque/ip/host.example/*/', '/.well-known/masque/ip/1.2.3.4%2F40/*/']) {
    assert.throws(() => parseIpPath(bad), TargetError, bad);
  }
});

test('target policy: private and loopback refused unless allowed; prefixes and ports enforced', () => {
  const p = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0', '::/0'], allowPorts: [53, '1000-2000'], allowPrivate: false });
  assert.equal(p.check('8.8.8.8', 53), undefined);
  assert.equal(p.check('8.8.8.8', 1500), undefined);
  assert.match(p.check('8.8.8.8', 80)!, /port 80/);
  for (const a of ['127.0.0.1', '10.1.2.3', '192.168.1.1', '172.20.0.1', '169.254.1.1', '100.64.0.1', '::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1'])
    assert.match(p.check(a, 53)!, /private, loopback or special-purpose/, a);
  const q = new TargetPolicy({ allowPrefixes: ['10.0.0.0/8'], allowPrivate: true });
  assert.equal(q.check('10.9.9.9', 9), undefined);
  assert.match(q.check('8.8.8.8', 9)!, /outside the allowed prefixes/);
  assert.match(q.check('nope')!, /not an IP/);
});

test('address pools: skip network and gateway, reuse released addresses, exhaust cleanly', () => {
  assert.equal(firstHost('10.9.0.0/29'), '10.9.0.1');
  const p = new AddressPool(['10.9.0.0/29'], ['10.9.0.1']);
  const got = [p.acquire(4), p.acquire(4), p.acquire(4), p.acquire(4), p.acquire(4)];
  assert.deepEqual(got, ['10.9.0.2', '10.9.0.3', '10.9.0.4', '10.9.0.5', '10.9.0.6']);
  assert.throws(() => p.acquire(4), PoolExhaustedError);
  p.release('10.9.0.4');
  assert.equal(p.acquire(4), '10.9.0.4');
  assert.equal(p.inUse, 5);
  assert.equal(firstHost('fd00:cb::/64'), 'fd00:cb::1');
  const v6 = new AddressPool(['fd00:cb::/64'], ['fd00:cb::1']);
  assert.equal(v6.acquire(6), 'fd00:cb::2');
});

function ipv4Packet(ttl: number, len = 60, df = true): Uint8Array {
  const p = new Uint8Array(len);
  p[0] = 0x45;
  p[2] = len >> 8;
  p[3] = len & 0xff;
  p[6] = df ? 0x40 : 0;
  p[8] = ttl;
  p[9] = 17;
  p.set([192, 0, 2, 9], 12);
  p.set([198, 51, 100, 7], 16);
  const c = checksum(p.subarray(0, 20));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  return p;
}

test('TTL decrement keeps the IPv4 header checksum valid; TTL 1 expires', () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 255 }), (ttl) => {
      const p = ipv4Packet(ttl);
      assert.equal(decrementTtl(p), 'ok');
      assert.equal(p[8], ttl - 1);
      assert.equal(checksum(p.subarray(0, 20)), 0);
    }),
  );
  assert.equal(decrementTtl(ipv4Packet(1)), 'ttl-expired');
  const v6 = new Uint8Array(48);
  v6[0] = 0x60;
  v6[7] = 1;
  assert.equal(decrementTtl(v6), 'ttl-expired');
  v6[7] = 9;
  assert.equal(decrementTtl(v6), 'ok');
  assert.equal(v6[7], 8);
  fc.assert(fc.property(fc.uint8Array({ maxLength: 80 }), (b) => void decrementTtl(b)));
});

test('ICMP errors: valid checksums, addressed back to the source, carry the MTU', () => {
  const orig = ipv4Packet(64, 1400);
  const ptb = packetTooBig(orig, 1280, Uint8Array.from([100, 64, 0, 1]))!;
  assert.equal(checksum(ptb.subarray(0, 20)), 0);
  assert.equal(checksum(ptb.subarray(20)), 0);
  assert.deepEqual([...addresses(ptb)!.dst], [192, 0, 2, 9]);
  assert.equal((ptb[26]! << 8) | ptb[27]!, 1280);
  assert.ok(ptb.length <= 576);
  const v6 = new Uint8Array(1400);
  v6[0] = 0x60;
  v6[7] = 64;
  v6[6] = 17;
  v6[8] = 0x20; // src 2000::
  v6[24] = 0x20;
  v6[39] = 1;
  const from = new Uint8Array(16);
  from[0] = 0xfd;
  const p6 = packetTooBig(v6, 1280, from)!;
  assert.ok(p6.length <= 1280);
  assert.equal(p6[40], 2);
  let s = 0;
  for (let i = 8; i < 40; i += 2) s += (p6[i]! << 8) | p6[i + 1]!;
  s += p6.length - 40 + 58;
  assert.equal(checksum(p6.subarray(40), s), 0);
  assert.equal(timeExceeded(orig, Uint8Array.from([100, 64, 0, 1]))![20], 11);
  assert.equal(packetTooBig(new Uint8Array(3), 1280, from), undefined);
});

test('config: defaults fill in; bad values name the field', () => {
  const c = masqueConfigSchema.parse({ enabled: true });
  assert.equal(c.ip.mtu, 1280);
  assert.equal(c.idleTimeout, 30_000);
  assert.deepEqual(c.udp.allowPorts, ['1-65535']);
  const r = masqueConfigSchema.safeParse({ ip: { mtu: 1000 } });
  assert.equal(r.success, false);
  assert.deepEqual(r.error!.issues[0]!.path, ['ip', 'mtu']);
  assert.equal(masqueConfigSchema.safeParse({ udp: { allowPorts: ['9-3'] } }).success, false);
});

test('connect-udp policy: every special-purpose range and the PoP itself are refused by default', () => {
  const p = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0', '::/0'], allowPrivate: false, denyAddresses: ['203.0.113.9', '2001:db8::9', 'fe80::1'] });
  for (const a of ['192.0.0.8', '198.18.0.1', '198.19.255.255', '169.254.169.254', '100.64.0.1', '::1', '2001:db8::1', '::ffff:10.0.0.1'])
    assert.match(p.check(a, 53) ?? '', /special-purpose|address of this PoP/, a);
  assert.equal(p.check('8.8.8.8', 53), undefined);
  // the PoP's own addresses stay refused when private targets are allowed
  const lab = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0', '::/0'], allowPrivate: true, denyAddresses: ['10.61.2.1', '2001:db8::9'] });
  assert.equal(lab.check('10.61.2.2', 53), undefined);
  assert.match(lab.check('10.61.2.1', 53) ?? '', /address of this PoP/);
  assert.match(lab.check('2001:0db8:0:0::9', 53) ?? '', /address of this PoP/);
  assert.match(lab.check('::ffff:10.61.2.1', 53) ?? '', /address of this PoP/);
});
