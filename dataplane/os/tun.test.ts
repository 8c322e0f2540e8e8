import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createRing, RingReader, RingWriter } from './tun-ring.js';
import { TunDevice, TunError, tunOffloadDefault } from './tun.js';
import { withTopology, uniqueName } from '../../testhosts/index.js';

test('packet ring: any sequence of packet sizes and drain points comes out in order and intact', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.integer({ min: 1, max: 2000 }), fc.boolean()), { maxLength: 300 }), (ops) => {
      const ring = createRing(1 << 16);
      const w = new RingWriter(ring);
      const r = new RingReader(ring);
      const sent: Buffer[] = [];
      const got: Buffer[] = [];
      let seq = 0;
      for (const [len, drain] of ops) {
        let off = w.reserve(2064);
        if (off < 0) {
          got.push(...r.drain());
          off = w.reserve(2064);
        }
        assert.ok(off >= 0, 'an empty ring must take a packet');
        const pkt = Buffer.alloc(len, seq & 0xff);
        if (len >= 4) pkt.writeUInt32LE(seq, len - 4);
        seq++;
        w.bytes.set(pkt, off);
        w.commit(off, len);
        sent.push(pkt);
        if (drain) got.push(...r.drain(3));
      }
      got.push(...r.drain());
      assert.equal(got.length, sent.length);
      for (let i = 0; i < sent.length; i++) assert.ok(got[i]!.equals(sent[i]!), `packet ${i} differs`);
    }),
  );
});

test('tun: bad names are refused with a TunError', () => {
  assert.throws(() => TunDevice.open({ name: 'x'.repeat(16) }), TunError);
  assert.throws(() => TunDevice.open({ name: 'ok', queues: 0 }), TunError);
});

/** Answers ICMP echo requests that the kernel routes into the TUN: exercises the read and the write path. */
function icmpEchoReply(pkt: Buffer): Buffer | undefined {
  if (pkt.length < 28 || pkt[0]! >> 4 !== 4 || pkt[9] !== 1) return undefined;
  const ihl = (pkt[0]! & 0x0f) * 4;
  if (pkt[ihl] !== 8) return undefined;
  const out = Buffer.from(pkt);
  pkt.copy(out, 12, 16, 20);
  pkt.copy(out, 16, 12, 16);
  out[ihl] = 0;
  out.writeUInt16BE(0, ihl + 2);
  out.writeUInt16BE(checksum(out.subarray(ihl)), ihl + 2);
  out.writeUInt16BE(0, 10);
  out.writeUInt16BE(checksum(out.subarray(0, ihl)), 10);
  return out;
}
function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

for (const mode of ['ring', 'message'] as const) {
  test(`tun (${mode} reader) in a namespace answers ping through its read and write paths, and closes cleanly`, async () => {
    await withTopology(async (topo) => {
      const ns = await topo.namespace('tun');
      const tun = TunDevice.open({ name: uniqueName('u'), mode });
      try {
        await tun.moveToNetns(ns.name);
        await tun.configure({ addresses: ['10.77.0.1/24'] });
        tun.onPackets((pkts) => {
          for (const p of pkts) {
            const reply = icmpEchoReply(p);
            if (reply) tun.write(reply);
          }
        });
        const out = await ns.exec(['ping', '-n', '-c', '20', '-i', '0.01', '-W', '1', '10.77.0.9'], { timeoutMs: 15_000 });
        assert.match(out, / 0% packet loss/);
        assert.ok(tun.stats.rxPackets >= 20);
        assert.ok(tun.stats.txPackets >= 20);
        assert.equal(typeof tun.write(Buffer.from([0x45, 0, 0])), 'boolean', 'a truncated packet is no crash (the kernel drops it)');
      } finally {
        const t0 = Date.now();
        await tun.close();
        assert.ok(Date.now() - t0 < 2000, 'the reader worker exits once the link is deleted');
        assert.equal(tun.write(Buffer.alloc(28)), false, 'writes after close are refused');
      }
    });
  });
}

// Echo server / client run inside the namespaces (plain node, no project code).
const ECHO_SERVER = `const s=require('net').createServer(c=>c.pipe(c)).listen(5300,process.argv[1],()=>console.log('ready'));`;
const ECHO_CLIENT = `
const data=require('crypto').randomBytes(+process.argv[2]);const got=[];let n=0;const t0=Date.now();
const c=require('net').connect(5300,process.argv[1],()=>c.end(data));
c.on('data',b=>{got.push(b);n+=b.length;});
c.on('end',()=>console.log(JSON.stringify({ok:Buffer.concat(got).equals(data),bytes:n,ms:Date.now()-t0})));
c.on('error',e=>{console.log(JSON.stringify({ok:false,error:String(e)}));});`;

/**
 * A TCP stream echoed between two namespaces whose only link is two TunDevices bridged here
 * (what one reads the other writes): both read paths see the kernel's TSO super-packets, both
 * write paths get the split segments back in batches.
 */
async function echoThroughTuns(offload: boolean, bytes: number, queues = 1) {
  return withTopology(async (topo) => {
    const [nsA, nsB] = [await topo.namespace('a'), await topo.namespace('b')];
    const a = TunDevice.open({ name: uniqueName('a'), offload, queues });
    const b = TunDevice.open({ name: uniqueName('b'), offload, queues });
    try {
      assert.equal(a.offload, offload);
      a.onPackets((ps) => {
        for (const p of ps) b.write(p);
      });
      b.onPackets((ps) => {
        for (const p of ps) a.write(p);
      });
      await a.moveToNetns(nsA.name);
      await b.moveToNetns(nsB.name);
      await a.configure({ addresses: ['10.79.0.1/24'] });
      await b.configure({ addresses: ['10.79.0.2/24'] });
      const server = nsB.spawn([process.execPath, '-e', ECHO_SERVER, '10.79.0.2']);
      await new Promise<void>((resolve, reject) => {
        server.stdout!.once('data', () => resolve());
        server.once('exit', (code) => reject(new Error(`echo server exited ${code}`)));
      });
      const out = await nsA.exec([process.execPath, '-e', ECHO_CLIENT, '10.79.0.2', String(bytes)], { timeoutMs: 60_000 });
      const r = JSON.parse(out) as { ok: boolean; bytes: number; ms: number; error?: string };
      assert.ok(r.ok, `echo intact: ${out} a ${JSON.stringify(a.stats)} b ${JSON.stringify(b.stats)}`);
      assert.equal(r.bytes, bytes);
      return { a: { ...a.stats }, b: { ...b.stats }, ms: r.ms };
    } finally {
      await a.close();
      await b.close();
    }
  });
}

test('tun with offloads: a TCP stream through two bridged TUNs arrives intact, split on read and coalesced on write', async () => {
  const r = await echoThroughTuns(true, 8 << 20);
  for (const s of [r.a, r.b]) {
    assert.ok(s.rxSuperPackets > 0, `the kernel handed out TSO super-packets that were split: ${JSON.stringify(s)}`);
    assert.ok(s.rxSegments > s.rxSuperPackets);
    assert.ok(s.txCoalesced > 0 && s.txSuperPackets > 0, `segments were coalesced on write: ${JSON.stringify(s)}`);
    assert.ok(s.txWrites < s.txPackets, 'fewer writes than packets');
    assert.equal(s.rxMalformed, 0);
  }
});

test('tun with offloads and two queues (IFF_MULTI_QUEUE): the stream arrives intact, split and coalesced', async () => {
  const r = await echoThroughTuns(true, 4 << 20, 2);
  for (const s of [r.a, r.b]) assert.ok(s.rxSuperPackets > 0 && s.txSuperPackets > 0, JSON.stringify(s));
});

test('tun without offloads (the fallback): the same stream arrives intact, one write per packet', async () => {
  const r = await echoThroughTuns(false, 2 << 20);
  for (const s of [r.a, r.b]) {
    assert.equal(s.rxSuperPackets + s.txCoalesced + s.txSuperPackets, 0);
    assert.equal(s.txWrites, s.txPackets);
  }
});

test('tun: CBR_TUN_OFFLOAD=0 switches offloads off by default', () => {
  const was = process.env.CBR_TUN_OFFLOAD;
  try {
    process.env.CBR_TUN_OFFLOAD = '0';
    assert.equal(tunOffloadDefault(), false);
    delete process.env.CBR_TUN_OFFLOAD;
    assert.equal(tunOffloadDefault(), true);
  } finally {
    if (was === undefined) delete process.env.CBR_TUN_OFFLOAD;
    else process.env.CBR_TUN_OFFLOAD = was;
  }
});

// Sends `count` UDP datagrams of `size` bytes as one UDP_SEGMENT (GSO) message with the native socket.
const GSO_SENDER = `
const { BatchUdpSocket, writeSlot, ADDR_SLOT } = await import(process.argv[1]);
const [count, size] = [+process.argv[2], +process.argv[3]];
const s = new BatchUdpSocket({ host: '10.77.0.1', port: 0 });
const addrs = new Uint8Array(count * ADDR_SLOT);
for (let i = 0; i < count; i++) writeSlot(addrs, i, '10.77.0.9', 9999);
const data = new Uint8Array(count * size).map((_, i) => i & 0xff);
console.log(JSON.stringify({ sent: s.send(data, new Uint32Array(count).fill(size), addrs, count), gso: s.gso }));
s.close();`;

// Receives `count` datagrams on 10.77.0.1:9998 and says whether each holds the GSO_SENDER pattern, in order.
const UDP_RECEIVER = `
const s = require('dgram').createSocket('udp4'); const want = +process.argv[1]; let count = 0, intact = true;
s.on('message', (m) => { const k = count++; intact &&= m.length === 1000 && m.every((b, j) => b === ((k * 1000 + j) & 0xff));
  if (count === want) { console.log(JSON.stringify({ count, intact })); s.close(); } });
s.bind(9998, '10.77.0.1', () => console.log('ready'));`;

test('tun with offloads: UDP GSO datagrams are split on read and coalesced on write (USO), intact both ways', async () => {
  await withTopology(async (topo) => {
    const ns = await topo.namespace('uso');
    const tun = TunDevice.open({ name: uniqueName('u'), offload: true });
    try {
      assert.ok(tun.offload);
      const got: Buffer[] = [];
      tun.onPackets((pkts) => {
        for (const p of pkts) if (p[0]! >> 4 === 4 && p[9] === 17) got.push(Buffer.from(p));
      });
      await tun.moveToNetns(ns.name);
      await tun.configure({ addresses: ['10.77.0.1/24'] });
      const udpBatch = new URL('./udp-batch.js', import.meta.url).href;
      const out = JSON.parse(await ns.exec([process.execPath, '--input-type=module', '-e', GSO_SENDER, udpBatch, '10', '1000']));
      assert.deepEqual(out, { sent: 10, gso: true });
      const t0 = Date.now();
      while (got.length < 10 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      assert.equal(got.length, 10);
      for (const p of got) {
        assert.equal(p.length, 1028);
        assert.equal(checksum(p.subarray(0, 20)), 0, 'IPv4 header checksum');
        const pseudo = Buffer.concat([p.subarray(12, 20), Buffer.from([0, 17, p[24]!, p[25]!])]);
        assert.equal(checksum(Buffer.concat([pseudo, p.subarray(20)])), 0, 'UDP checksum');
      }
      const USO = 0x20 | 0x40;
      if (tun.offloadFlags & USO) assert.ok(tun.stats.rxSuperPackets >= 1, `one USO super-packet split: ${JSON.stringify(tun.stats)}`);

      // The write path: the datagrams turned around into the namespace, to a socket there.
      const receiver = ns.spawn([process.execPath, '-e', UDP_RECEIVER, '10']);
      await new Promise<void>((resolve) => receiver.stdout!.once('data', () => resolve()));
      const done = new Promise<string>((resolve) => receiver.stdout!.once('data', (b: Buffer) => resolve(b.toString())));
      for (const p of got) {
        const back = Buffer.from(p);
        p.copy(back, 12, 16, 20);
        p.copy(back, 16, 12, 16);
        back.writeUInt16BE(9998, 22); // to the receiver's port, from the sender's
        back.writeUInt16BE(0, 26);
        const pseudo = Buffer.concat([back.subarray(12, 20), Buffer.from([0, 17, back[24]!, back[25]!])]);
        back.writeUInt16BE(checksum(Buffer.concat([pseudo, back.subarray(20)])) || 0xffff, 26);
        assert.ok(tun.write(back));
      }
      assert.deepEqual(JSON.parse(await done), { count: 10, intact: true });
      if (tun.offloadFlags & USO) assert.ok(tun.stats.txSuperPackets >= 1, `the datagrams were coalesced into a USO write: ${JSON.stringify(tun.stats)}`);
    } finally {
      await tun.close();
    }
  });
});
