// A UDP echo for the origin namespace of load runs (bench/masque's connect-udp rate): batched through
// the native addon (recvmmsg, sendmmsg with GSO back to each sender), so the origin costs about a
// microsecond per datagram and the relay, not the echo, sets the rate. Usage: node testing-echo.js PORT
import { ADDR_SLOT, BatchUdpSocket } from '../../dataplane/index.js';

const port = Number(process.argv[2]);
const sock = new BatchUdpSocket({ host: '0.0.0.0', port, bufferBytes: 4 << 20 });
let tx = new Uint8Array(0);
let lens = new Uint32Array(0);
let to = new Uint8Array(0);
sock.onBatch((count, data, offsets, lengths, addrs, addrIndex) => {
  if (lens.length < count) {
    lens = new Uint32Array(count);
    to = new Uint8Array(count * ADDR_SLOT);
  }
  let bytes = 0;
  for (let i = 0; i < count; i++) bytes += lengths[i]!;
  if (tx.length < bytes) tx = new Uint8Array(bytes);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const off = offsets[i]!;
    const len = lengths[i]!;
    tx.set(data.subarray(off, off + len), at);
    at += len;
    lens[i] = len;
    const a = addrIndex[i]! * ADDR_SLOT;
    to.set(addrs.subarray(a, a + ADDR_SLOT), i * ADDR_SLOT);
  }
  // A full socket buffer drops the rest, as a busy UDP server would.
  sock.send(tx, lens, to, count);
});
process.stdout.write(`udp echo on ${sock.port}\n`);
