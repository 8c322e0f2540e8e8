import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { run, uniqueName, withTopology, waitFor } from '../../testhosts/index.js';
import { openUdpIo, formatV6 } from './udp-io.js';
import { sourceKey } from './endpoint.js';
import { writeSlot, formatSlot, ADDR_SLOT } from '../../dataplane/index.js';

test('peer addresses: IPv4-mapped peers read as ::ffff:a.b.c.d (as node:dgram), and that text writes the same slot', () => {
  const slots = new Uint8Array(2 * ADDR_SLOT);
  writeSlot(slots, 0, '::ffff:10.0.0.1', 443);
  writeSlot(slots, 1, '::ffff:a00:1', 443);
  assert.deepEqual(slots.subarray(0, ADDR_SLOT), slots.subarray(ADDR_SLOT));
  const mapped = formatV6(slots.subarray(4, 20));
  assert.equal(mapped, '::ffff:10.0.0.1');
  assert.equal(sourceKey(mapped), '10.0.0.1');
  writeSlot(slots, 0, '2001:db8::1', 1);
  assert.equal(formatV6(slots.subarray(4, 20)), '2001:db8::1');
  assert.deepEqual(formatSlot(slots, 0), { host: '2001:db8::1', port: 1 });
  assert.throws(() => writeSlot(slots, 0, 'example.com', 1), /not an IP address/);
});

// A veth from the root namespace (where this process sends) into a test namespace, shaped with tbf:
// queued packets hold the socket's small send buffer, so the kernel takes a batch only in part.
test('batched socket: a short send keeps the rest queued, holds new packets while full, and drains when writable', async () => {
  await withTopology(async (topo) => {
    const ns = await topo.namespace('qio');
    const root = uniqueName('q');
    const net = `198.18.${process.pid % 250}`;
    await run(['ip', 'link', 'add', root, 'type', 'veth', 'peer', 'name', 'qpeer', 'netns', ns.name]);
    // Deleting the namespace deletes the pair; this covers a failure before that.
    topo.onDestroy(() =>
      run(['ip', 'link', 'del', root]).then(
        () => {},
        () => {},
      ),
    );
    await run(['ip', 'addr', 'add', `${net}.1/30`, 'dev', root]);
    await run(['ip', 'link', 'set', root, 'up']);
    await ns.addAddress('qpeer', `${net}.2/30`);
    await ns.exec(['ip', 'link', 'set', 'qpeer', 'up']);
    await run(['tc', 'qdisc', 'add', 'dev', root, 'root', 'tbf', 'rate', '20mbit', 'burst', '16kb', 'limit', '4mb']);
    const io = await openUdpIo({ host: `${net}.1`, port: 0, maxPacket: 1200, native: true, bufferBytes: 4096, sendQueuePackets: 32 }, () => {});
    try {
      assert.equal(io.kind, 'batch');
      let writable = 0;
      let errors = 0;
      io.onWritable = () => writable++;
      io.onSendError = (n) => (errors += n);
      const txPackets = () => Number(readFileSync(`/sys/class/net/${root}/statistics/tx_packets`, 'utf8'));
      const before = txPackets();
      let queued = 0;
      let refused = 0;
      const total = 400;
      const until = Date.now() + 20_000;
      while (queued < total && Date.now() < until) {
        const buf = io.reserve(1200);
        if (!buf) {
          refused++;
          await new Promise((r) => setTimeout(r, 5));
          continue;
        }
        buf.fill(queued & 0xff, 0, 1200);
        io.commit(1200, `${net}.2`, 9);
        queued++;
      }
      io.flush();
      // ARP (and nothing else: no listener answers) adds to the count, so at least `total`.
      await waitFor('the queue to drain through the shaped link', async () => (txPackets() - before >= total ? true : undefined), 15_000, 20);
      assert.equal(queued, total);
      assert.ok(io.stats.sendShort > 0, 'the shaped link never filled the send buffer');
      assert.ok(refused > 0, 'reserve never reported a full queue');
      assert.ok(writable > 0, 'onWritable never fired');
      assert.equal(errors, 0);
    } finally {
      await io.close();
    }
  });
});
