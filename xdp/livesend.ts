// A NIC-like flood source for tests and the bench, run inside a namespace (`node dist/xdp/livesend.js`):
// BPF_PROG_TEST_RUN in live-frames mode runs cbr_redirect (xdp/src/redirect.bpf.c) `count` times on one
// UDP packet, each run redirecting the frame out of IFNAME. On a veth that is ndo_xdp_xmit, so the
// frames reach the peer's XDP program as xdp_frames, with no skb (the peer must have an XDP program
// attached, or veth drops them). The peer's NAPI poll runs as NET_RX softirq on this thread's CPU when
// the kernel re-enables bottom halves after each batch. Prints {"sent":N,"ns":wall ns of the run}.
import { join } from 'node:path';
import { BpfObject, ifNameToIndex, progTestRunLive, u32KeyBuf } from './libbpf.js';
import { DEFAULT_OBJECT_DIR } from './loader.js';
import { buildPacket } from './testing.js';

const USAGE = 'usage: livesend IFNAME COUNT DST_MAC SRC_MAC SADDR DADDR [BATCH]\n';
const [ifname, countText, dstMac, srcMac, saddr, daddr, batchText] = process.argv.slice(2);
const mac = (s: string | undefined) => (s && /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(s) ? Buffer.from(s.replaceAll(':', ''), 'hex') : undefined);
const count = Number(countText);
const dst = mac(dstMac);
const src = mac(srcMac);
if (!ifname || !saddr || !daddr || !dst || !src || !Number.isInteger(count) || count < 1) {
  process.stderr.write(USAGE);
  process.exit(2);
}
// the same packet as the bench's trafgen flood: 60-byte UDP to port 9999 (nobody listens), valid IPv4 checksum
const packet = buildPacket({ src: saddr, dst: daddr, proto: 'udp', sport: 1024, dport: 9999, payload: Buffer.alloc(18, 0x41), srcMac: src, dstMac: dst });
const obj = BpfObject.open(join(DEFAULT_OBJECT_DIR, 'redirect.bpf.o'));
try {
  obj.load();
  obj.map('cbr_redirect_to').update(u32KeyBuf(0), u32KeyBuf(ifNameToIndex(ifname)));
  const t0 = process.hrtime.bigint();
  progTestRunLive(obj.progFd('cbr_redirect'), packet, { repeat: count, batchSize: batchText ? Number(batchText) : undefined });
  process.stdout.write(`${JSON.stringify({ sent: count, ns: Number(process.hrtime.bigint() - t0) })}\n`);
} finally {
  obj.close();
}
