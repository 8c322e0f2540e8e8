import { test } from 'node:test';
import assert from 'node:assert/strict';
import { wireguardConfigSchema } from './config.js';

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
