import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { withTopology } from '../../testhosts/index.js';
import { CbrError } from '../errors.js';
import { EgressGuard, renderEgressRules, parseEgressCounters, type EgressPolicy } from './egress.js';

const CLOSED: EgressPolicy = { allow: [], deny: [], allowPrivate: false, allowPeerToPeer: false, allowPopAddresses: false };

test('rendered rules: special-purpose ranges denied, allow list first, peer and PoP rules by flag', () => {
  const s = renderEgressRules('wg0', { ...CLOSED, allow: ['10.0.100.0/24', 'fd00:1::/64'], deny: ['11.1.0.0/16'] });
  assert.match(s, /set allow4 \{[^}]*elements = \{ 10\.0\.100\.0\/24 \}/);
  assert.match(s, /set allow6 \{[^}]*elements = \{ fd00:1::\/64 \}/);
  for (const p of ['169.254.0.0/16', '10.0.0.0/8', '198.18.0.0/15', '192.0.0.0/24', '11.1.0.0/16']) assert.ok(s.includes(p), p);
  assert.ok(s.indexOf('@allow4 accept') < s.indexOf('@deny4'), 'allow is checked before deny');
  assert.match(s, /iifname "wg0" oifname "wg0" counter name peer drop/);
  assert.match(s, /iifname "wg0" counter name pop drop/);
  const open = renderEgressRules('wg0', { ...CLOSED, allowPrivate: true, allowPeerToPeer: true, allowPopAddresses: true });
  assert.doesNotMatch(open, /name peer drop|name pop drop|169\.254/);
  assert.throws(() => renderEgressRules('wg0"; flush ruleset', CLOSED), /not an interface name/);
});

test('counter parsing takes what nft prints and names bad output', () => {
  const json = JSON.stringify({ nftables: [{ metainfo: {} }, { counter: { name: 'peer', packets: 3 } }, { counter: { name: 'pop', packets: 0 } }] });
  assert.deepEqual(parseEgressCounters(json), { private: 0, peer: 3, pop: 0 });
  assert.throws(() => parseEgressCounters('nope'), /not JSON/);
  assert.throws(() => parseEgressCounters('null'), /without an nftables list/);
  // whatever nft prints, the answer is counters or a CbrError naming the problem
  fc.assert(
    fc.property(
      fc.oneof(
        fc.string(),
        fc.json(),
        fc.jsonValue().map((v) => JSON.stringify({ nftables: [v, { counter: v }] })),
      ),
      (s) => {
        try {
          const c = parseEgressCounters(s);
          for (const v of Object.values(c)) assert.equal(typeof v, 'number');
        } catch (err) {
          assert.ok(err instanceof CbrError && err.code === 'COMMAND_FAILED', String(err));
        }
      },
    ),
  );
});

// A PoP namespace forwards between a "tunnel" interface (to the clients' LAN, where each client has a
// /32 and reaches everything through the PoP, as tunnel clients do) and an upstream with an origin
// (a public-looking address inside the test's own namespace), a private host and the metadata address.
test('the kernel enforces the policy: origin reachable; private, metadata, peers and the PoP refused', { timeout: 90_000 }, async () => {
  await withTopology(async (topo) => {
    const pop = await topo.namespace('pop');
    const lan = await topo.namespace('lan');
    const c1 = await topo.namespace('c1');
    const c2 = await topo.namespace('c2');
    const up = await topo.namespace('up');
    await pop.sysctl('net.ipv4.ip_forward', '1');
    const [tunSide] = await topo.link(pop, lan, { aAddr: '10.8.0.1/24' });
    const [, upEnd] = await topo.link(pop, up, { aAddr: '11.0.0.1/24', bAddr: '11.0.0.2/24' });
    for (const a of ['10.20.0.2/32', '169.254.169.254/32']) await up.exec(['ip', 'addr', 'add', a, 'dev', upEnd.ifname]);
    await up.exec(['ip', 'route', 'add', 'default', 'via', '11.0.0.1']);
    await pop.exec(['ip', 'route', 'add', '10.20.0.2/32', 'via', '11.0.0.2']);
    await pop.exec(['ip', 'route', 'add', '169.254.169.254/32', 'via', '11.0.0.2']);
    // the clients' LAN: a bridge, each client with a /32 and the PoP as its only router
    await lan.exec(['ip', 'link', 'add', 'br0', 'type', 'bridge']);
    await lan.exec(['ip', 'link', 'set', 'br0', 'up']);
    const lanIfs = (await lan.exec(['ip', '-o', 'link', 'show'])).match(/^\d+: ([^:@]+)/gm)!.map((l) => l.replace(/^\d+: /, ''));
    for (const ifn of lanIfs.filter((n) => n !== 'lo' && n !== 'br0')) await lan.exec(['ip', 'link', 'set', ifn, 'master', 'br0']);
    for (const [c, addr] of [
      [c1, '10.8.0.2'],
      [c2, '10.8.0.3'],
    ] as const) {
      const [lanEnd, cEnd] = await topo.link(lan, c);
      await lan.exec(['ip', 'link', 'set', lanEnd.ifname, 'master', 'br0']);
      await c.exec(['ip', 'addr', 'add', `${addr}/32`, 'dev', cEnd.ifname]);
      await c.exec(['ip', 'route', 'add', '10.8.0.1/32', 'dev', cEnd.ifname]);
      await c.exec(['ip', 'route', 'add', 'default', 'via', '10.8.0.1', 'dev', cEnd.ifname, 'onlink']);
    }
    // the PoP reaches each client by its /32 on the tunnel side
    await pop.exec(['ip', 'route', 'add', '10.8.0.3/32', 'dev', tunSide.ifname]);
    const reach = async () => ({
      origin: await c1.ping('11.0.0.2', { timeoutS: 1 }),
      private: await c1.ping('10.20.0.2', { timeoutS: 1 }),
      metadata: await c1.ping('169.254.169.254', { timeoutS: 1 }),
      peer: await c1.ping('10.8.0.3', { timeoutS: 1 }),
      popTcp: await c1
        .exec(['bash', '-c', 'exec 3<>/dev/tcp/10.8.0.1/22'], { timeoutMs: 3000 })
        .then(() => 'open')
        .catch((e: Error) => (/refused/i.test(e.message) ? 'refused' : 'dropped')),
    });
    // Without the policy everything is reachable (the PoP answers TCP with a reset: nothing listens).
    assert.deepEqual(await reach(), { origin: true, private: true, metadata: true, peer: true, popTcp: 'refused' });

    const guard = new EgressGuard(tunSide.ifname, CLOSED, { prefix: ['ip', 'netns', 'exec', pop.name] });
    await guard.apply();
    assert.deepEqual(await reach(), { origin: true, private: false, metadata: false, peer: false, popTcp: 'dropped' });
    const counts = await guard.counters();
    assert.ok(counts.private >= 2 && counts.peer >= 1 && counts.pop >= 1, JSON.stringify(counts));

    // configured exceptions, applied in place
    await guard.apply({ ...CLOSED, allow: ['10.20.0.0/24'], allowPeerToPeer: true });
    const r = await reach();
    assert.equal(r.private, true);
    assert.equal(r.peer, true);
    assert.equal(r.metadata, false);

    await guard.remove();
    assert.doesNotMatch(await pop.exec(['nft', 'list', 'tables']), /cbr_egress/);
  });
});
