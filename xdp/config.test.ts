import { test } from 'node:test';
import assert from 'node:assert/strict';
import { xdpConfigSchema } from './config.js';

function problems(x: unknown): string[] {
  const r = xdpConfigSchema.safeParse(x);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

test('xdp config: defaults, and refusals that name the field', () => {
  const d = xdpConfigSchema.parse({});
  assert.equal(d.mode, 'native');
  assert.equal(d.lb.ringSize, 65537);
  assert.equal(d.pinRoot, '/sys/fs/bpf/cbr');
  assert.deepEqual(problems({ enabled: true }), ['interface: required when xdp is enabled']);
  assert.ok(problems({ enabled: true, interface: 'eth0', lb: { ringSize: 65539 + 2 } }).includes('lb.ringSize: expected a prime, got 65541'));
  const lb = problems({
    enabled: true,
    interface: 'eth0',
    lb: {
      vips: [{ address: '192.0.2.1', port: 443, protocol: 'tcp' }],
      backends: [
        { address: '10.0.0.1', serverId: 1 },
        { address: '10.0.0.1', serverId: 1 },
      ],
    },
  });
  for (const want of [
    'lb.nextHopMac: required when lb.vips is set',
    'lb.encapSourceV4: an IPv4 address is required for IPv4 backends',
    'lb.backends.1.address: duplicate backend 10.0.0.1',
    'lb.backends.1.serverId: server ID 1 is used twice',
    'lb.vips.0.quic: QUIC routing needs protocol udp',
  ])
    assert.ok(lb.includes(want), `${want} in ${JSON.stringify(lb)}`);
  assert.ok(problems({ deny: { prefixes: ['10.0.0.0/40'] } })[0]!.startsWith('deny.prefixes.0: expected an IP prefix'));
  assert.ok(problems({ services: { allow: [{ protocol: 'udp' }] } }).includes('services.allow.0.port: required for udp'));
});
