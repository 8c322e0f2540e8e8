// The automatic allow entries: which parts of the agent config they come from, and when there are none.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NetworkInterfaceInfo } from 'node:os';
import type { CbrConfig } from '../dataplane/index.js';
import { autoAllowEntries } from './always-pass.js';
import { testConfig } from './testing.js';

const IFACES: NodeJS.Dict<NetworkInterfaceInfo[]> = {
  lo: [{ address: '127.0.0.1', netmask: '255.0.0.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: true, cidr: '127.0.0.1/8' }],
  mgmt: [
    { address: '10.9.0.5', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:09', internal: false, cidr: '10.9.0.5/24' },
    {
      address: '2001:db8:9::5',
      netmask: 'ffff:ffff:ffff:ffff::',
      family: 'IPv6',
      mac: '02:00:00:00:00:09',
      internal: false,
      cidr: '2001:db8:9::5/64',
      scopeid: 0,
    },
  ],
};

function config(o: { auto?: boolean; bgpEnabled?: boolean; listen?: string; adminEnabled?: boolean }): CbrConfig {
  return {
    xdp: testConfig({ allow: { auto: o.auto ?? true } }),
    bgp: { enabled: o.bgpEnabled ?? true, peers: [{ name: 'up', address: '192.0.2.1', remoteAs: 65000 }] },
    admin: { enabled: o.adminEnabled ?? true, listen: o.listen ?? '127.0.0.1:9780' },
  } as unknown as CbrConfig;
}

const texts = (c: CbrConfig) => autoAllowEntries(c, IFACES).map((e) => `${e.prefix.text} ${e.from}`);

test('auto allow: BGP peers and the admin listener network', () => {
  assert.deepEqual(texts(config({ listen: '10.9.0.5:9780' })), ['192.0.2.1/32 bgp.peers[0].address', '10.9.0.0/24 admin.listen (10.9.0.5/24)']);
  assert.deepEqual(texts(config({ listen: '[2001:db8:9:0::5]:9780' })), [
    '192.0.2.1/32 bgp.peers[0].address',
    '2001:db8:9::/64 admin.listen (2001:db8:9::5/64)',
  ]);
});

test('auto allow: nothing for loopback, wildcard or host-name listeners, a disabled bgp or admin, or auto off', () => {
  for (const listen of ['127.0.0.1:9780', '[::1]:9780', '0.0.0.0:9780', '[::]:9780', 'localhost:9780', '10.9.0.6:9780'])
    assert.deepEqual(texts(config({ listen })), ['192.0.2.1/32 bgp.peers[0].address'], listen);
  assert.deepEqual(texts(config({ bgpEnabled: false, listen: '10.9.0.5:9780' })), ['10.9.0.0/24 admin.listen (10.9.0.5/24)']);
  assert.deepEqual(texts(config({ adminEnabled: false, bgpEnabled: false, listen: '10.9.0.5:9780' })), []);
  assert.deepEqual(texts(config({ auto: false, listen: '10.9.0.5:9780' })), []);
});
