import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { BatchUdpSocket, RxBuffers, writeSlot, formatSlot, ADDR_SLOT } from './udp-batch.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects what a socket receives: per packet its sequence number (first 4 bytes) and length. */
function collector(sock: BatchUdpSocket) {
  const got: Array<{ seq: number; len: number; from: string }> = [];
  sock.onBatch((n, data, offsets, lengths, addrs, addrIndex) => {
    for (let i = 0; i < n; i++) {
      const o = offsets[i]!;
      const seq = ((data[o]! << 24) | (data[o + 1]! << 16) | (data[o + 2]! << 8) | data[o + 3]!) >>> 0;
      const a = formatSlot(addrs, addrIndex[i]!);
      got.push({ seq, len: lengths[i]!, from: `${a.host}:${a.port}` });
    }
  });
  return got;
}

async function until(pred: () => boolean, ms: number): Promise<void> {
  const end = performance.now() + ms;
  while (!pred() && performance.now() < end) await sleep(5);
}

/** Sends `sizes.length` packets numbered from `first` to the slots' destinations, retrying what the socket buffer did not take. */
async function sendAll(sock: BatchUdpSocket, sizes: number[], dest: (i: number) => [string, number], first = 0): Promise<void> {
  const total = sizes.reduce((s, x) => s + x, 0);
  const data = new Uint8Array(total);
  const lengths = Uint32Array.from(sizes);
  const addrs = new Uint8Array(sizes.length * ADDR_SLOT);
  let off = 0;
  sizes.forEach((len, i) => {
    const seq = first + i;
    data.set([seq >>> 24, (seq >>> 16) & 0xff, (seq >>> 8) & 0xff, seq & 0xff], off);
    data.fill(i & 0xff, off + 4, off + len);
    const [h, p] = dest(i);
    writeSlot(addrs, i, h, p);
    off += len;
  });
  let done = 0;
  let byteOff = 0;
  for (let tries = 0; done < sizes.length && tries < 1000; tries++) {
    const n = sock.send(data.subarray(byteOff), lengths.subarray(done), addrs.subarray(done * ADDR_SLOT), sizes.length - done);
    for (let i = done; i < done + n; i++) byteOff += sizes[i]!;
    done += n;
    if (done < sizes.length) await sleep(2);
  }
  assert.equal(done, sizes.length, 'every packet was taken by the socket');
}

for (const mode of [
  { name: 'GRO and GSO', gro: true, gso: true },
  { name: 'fallback without GRO and GSO', gro: false, gso: false },
]) {
  test(`batched loopback I/O (${mode.name}): every packet arrives once, in batches, with its source`, async () => {
    const rx = new BatchUdpSocket({ host: '127.0.0.1', port: 0, gro: mode.gro });
    const tx = new BatchUdpSocket({ host: '127.0.0.1', port: 0, gso: mode.gso });
    try {
      assert.equal(rx.gro, mode.gro, 'GRO state as asked (this kernel has it)');
      const got = collector(rx);
      // 3 rounds of 200 packets: runs of 1200-byte packets with a shorter tail every 16 (a GSO run's end)
      const sizes = Array.from({ length: 200 }, (_, i) => (i % 16 === 15 ? 300 : 1200));
      for (let r = 0; r < 3; r++) await sendAll(tx, sizes, () => ['127.0.0.1', rx.port], r * 200);
      await until(() => got.length >= 600, 5000);
      assert.equal(got.length, 600);
      assert.deepEqual(
        got.map((g) => g.seq).sort((a, b) => a - b),
        Array.from({ length: 600 }, (_, i) => i),
      );
      for (const g of got) assert.equal(g.len, (g.seq % 200) % 16 === 15 ? 300 : 1200);
      assert.ok(got.every((g) => g.from === `127.0.0.1:${tx.port}`));
      assert.ok(rx.stats.batches < 600, `batched: ${rx.stats.batches} handler calls for 600 packets`);
      if (mode.gro) assert.ok(rx.stats.datagrams < rx.stats.packets, `GRO coalesced: ${rx.stats.datagrams} datagrams for ${rx.stats.packets} packets`);
      else assert.equal(rx.stats.datagrams, rx.stats.packets);
      assert.equal(tx.gso, mode.gso);
    } finally {
      rx.close();
      tx.close();
    }
  });
}

test('IPv6 and mixed destinations: a GSO run never spans two destinations', async () => {
  const a = new BatchUdpSocket({ host: '::1', port: 0 });
  const b = new BatchUdpSocket({ host: '::1', port: 0 });
  const tx = new BatchUdpSocket({ host: '::1', port: 0 });
  try {
    const gotA = collector(a);
    const gotB = collector(b);
    const sizes = Array.from({ length: 64 }, () => 500);
    await sendAll(tx, sizes, (i) => ['::1', (i >> 2) % 2 ? b.port : a.port]);
    await until(() => gotA.length + gotB.length >= 64, 5000);
    assert.deepEqual(
      gotA.map((g) => g.seq).sort((x, y) => x - y),
      sizes.map((_, i) => i).filter((i) => !((i >> 2) % 2)),
    );
    assert.deepEqual(
      gotB.map((g) => g.seq).sort((x, y) => x - y),
      sizes.map((_, i) => i).filter((i) => (i >> 2) % 2),
    );
    assert.ok(gotA.every((g) => g.from === `::1:${tx.port}`));
  } finally {
    for (const s of [a, b, tx]) s.close();
  }
});

test('bad input gets an error naming it, not a crash', () => {
  assert.throws(() => new BatchUdpSocket({ host: '127.0.0.1.5', port: 0 }), /not an IPv/);
  const s = new BatchUdpSocket({ host: '127.0.0.1', port: 0 });
  try {
    const addrs = new Uint8Array(ADDR_SLOT);
    writeSlot(addrs, 0, '127.0.0.1', s.port);
    assert.throws(() => s.send(new Uint8Array(10), Uint32Array.of(100), addrs, 1), /lengths run past the data/);
    assert.throws(() => s.send(new Uint8Array(10), Uint32Array.of(10), addrs, 2), /send\(fd/);
    const busy = new BatchUdpSocket({ host: '127.0.0.1', port: 0 });
    busy.close();
    assert.throws(() => new BatchUdpSocket({ host: '127.0.0.1', port: s.port }), /Address already in use/);
  } finally {
    s.close();
  }
});

test('connected sockets: empty slots go to the peer, only the peer is heard, shared receive buffers', async () => {
  const peer = new BatchUdpSocket({ host: '127.0.0.1', port: 0 });
  const stranger = new BatchUdpSocket({ host: '127.0.0.1', port: 0 });
  const rx = new RxBuffers(true, 8);
  const a = new BatchUdpSocket({ host: '127.0.0.1', port: 0, connect: { host: '127.0.0.1', port: peer.port }, rx });
  const b = new BatchUdpSocket({ host: '127.0.0.1', port: 0, connect: { host: '127.0.0.1', port: peer.port }, rx });
  try {
    const atPeer = collector(peer);
    const gotA = collector(a);
    const gotB = collector(b);
    const data = new Uint8Array(4 * 8);
    for (let i = 0; i < 8; i++) new DataView(data.buffer).setUint32(i * 4, i);
    // family 0: no address passed, the kernel sends to the connected peer (a GSO run of 8 x 4 bytes)
    assert.equal(a.send(data, new Uint32Array(8).fill(4), new Uint8Array(8 * ADDR_SLOT), 8), 8);
    assert.equal(b.send(data, Uint32Array.of(4), new Uint8Array(ADDR_SLOT), 1), 1);
    await until(() => atPeer.length >= 9, 2000);
    assert.deepEqual(
      atPeer.filter((p) => p.from === `127.0.0.1:${a.port}`).map((p) => p.seq),
      [0, 1, 2, 3, 4, 5, 6, 7],
    );
    assert.equal(atPeer.filter((p) => p.from === `127.0.0.1:${b.port}`).length, 1);
    // The peer answers both; a stranger writing to a's port is not delivered (the kernel filters it).
    const slots = new Uint8Array(3 * ADDR_SLOT);
    writeSlot(slots, 0, '127.0.0.1', a.port);
    writeSlot(slots, 1, '127.0.0.1', b.port);
    assert.equal(peer.send(data.subarray(0, 8), Uint32Array.of(4, 4), slots, 2), 2);
    assert.equal(stranger.send(data.subarray(8, 12), Uint32Array.of(4), slots, 1), 1);
    await until(() => gotA.length >= 1 && gotB.length >= 1, 2000);
    await sleep(50);
    assert.deepEqual(
      gotA.map((p) => [p.seq, p.from]),
      [[0, `127.0.0.1:${peer.port}`]],
    );
    assert.deepEqual(
      gotB.map((p) => [p.seq, p.from]),
      [[1, `127.0.0.1:${peer.port}`]],
    );
    assert.throws(
      () => new BatchUdpSocket({ host: '127.0.0.1', port: 0, connect: { host: 'peer.test', port: 9 } }),
      /udp connect peer\.test:9: .*not an IP address/,
    );
    assert.throws(() => new BatchUdpSocket({ host: '127.0.0.1', port: 0, connect: { host: '::1', port: 9 } }), /IPv6 peer on an IPv4 socket/);
  } finally {
    for (const s of [peer, stranger, a, b]) s.close();
  }
});

test('address slots round-trip', () => {
  const slots = new Uint8Array(ADDR_SLOT);
  fc.assert(
    fc.property(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 65535 }), (host, port) => {
      writeSlot(slots, 0, host, port);
      const back = formatSlot(slots, 0);
      assert.equal(back.port, port);
      writeSlot(slots, 0, back.host, back.port);
      assert.deepEqual(formatSlot(slots, 0), back);
    }),
  );
});
