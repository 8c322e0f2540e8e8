import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withTopology, uniqueName } from '../../testhosts/index.js';
import { IpGateway } from './ip-gateway.js';
import { checksum } from './ip-packet.js';

function echoRequest(src: number[], dst: number[], ttl: number, size = 64, id = 7): Uint8Array {
  const p = new Uint8Array(size);
  p[0] = 0x45;
  p[2] = size >> 8;
  p[3] = size & 0xff;
  p[6] = 0x40;
  p[8] = ttl;
  p[9] = 1;
  p.set(src, 12);
  p.set(dst, 16);
  let c = checksum(p.subarray(0, 20));
  p[10] = c >> 8;
  p[11] = c & 0xff;
  p[20] = 8;
  p[24] = 0;
  p[25] = id;
  c = checksum(p.subarray(20));
  p[22] = c >> 8;
  p[23] = c & 0xff;
  return p;
}

test('connect-ip gateway: forwards and NATs a client packet to an origin namespace and routes the reply back; drops and ICMP errors', async () => {
  await withTopology(async (topo) => {
    const pop = await topo.namespace('pop');
    const origin = await topo.namespace('origin');
    const [popEnd] = await topo.link(pop, origin, { aAddr: '10.50.0.1/24', bAddr: '10.50.0.2/24' });
    void popEnd;
    const gw = await IpGateway.create({
      tunName: uniqueName('m'),
      mtu: 1280,
      poolV4: '100.64.9.0/24',
      poolV6: 'fd00:cb:9::/64',
      nat: true,
      allowPrivate: true,
      netns: pop.name,
    });
    try {
      const received: Uint8Array[] = [];
      const sink = { deliver: (p: Uint8Array) => received.push(Uint8Array.from(p)) > 0 };
      const lease = gw.attach(sink);
      assert.equal(lease.v4, '100.64.9.2');
      const src = lease.v4.split('.').map(Number);
      const wait = async (pred: () => boolean) => {
        const until = Date.now() + 3000;
        while (!pred() && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
      };
      assert.equal(gw.fromClient(lease, sink, echoRequest(src, [10, 50, 0, 2], 64)), undefined);
      await wait(() => received.some((p) => p[20] === 0));
      const reply = received.find((p) => p[20] === 0);
      assert.ok(reply, `no echo reply; drops ${JSON.stringify(gw.drops)}`);
      assert.deepEqual([...reply.subarray(12, 16)], [10, 50, 0, 2]);
      assert.deepEqual([...reply.subarray(16, 20)], src);
      assert.equal(reply[8], 62, 'origin TTL 64, minus the kernel forwarding hop, minus the tunnel endpoint hop');

      assert.equal(gw.fromClient(lease, sink, echoRequest([100, 64, 9, 99], [10, 50, 0, 2], 64)), 'spoofed-source');
      received.length = 0;
      assert.equal(gw.fromClient(lease, sink, echoRequest(src, [10, 50, 0, 2], 64, 1400)), 'too-big');
      assert.equal(received[0]?.[20], 3, 'ICMP fragmentation needed back to the client');
      assert.equal((received[0]![26]! << 8) | received[0]![27]!, 1280);
      assert.equal(gw.fromClient(lease, sink, echoRequest(src, [10, 50, 0, 2], 1)), 'ttl-expired');
      assert.equal(received[1]?.[20], 11);
      assert.equal(gw.fromClient(lease, sink, new Uint8Array(10)), 'malformed');
      lease.release();
      assert.equal(gw.sessionCount, 0);
      assert.equal(gw.attach(sink).v4, '100.64.9.2', 'released addresses are reused');
    } finally {
      await gw.close();
    }
  });
});
