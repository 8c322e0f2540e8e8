// A bounded UDP sender for tests and the bench, run inside a namespace (`node dist/xdp/udpsend.js`):
// sends `count` datagrams (or until `seconds` pass) to host:port, cycling source ports over
// `ports` sockets, with an optional hex payload. Prints {"sent":N,"seconds":S}.
import { createSocket, type Socket } from 'node:dgram';

const [host, portText, countText, secondsText, portsText, payloadHex, bindAddr] = process.argv.slice(2);
if (!host || !portText) {
  process.stderr.write('usage: udpsend HOST PORT COUNT SECONDS [SOCKETS] [PAYLOAD_HEX] [BIND_ADDR]\n');
  process.exit(2);
}
const count = Number(countText ?? 1000);
const seconds = Number(secondsText ?? 2);
const nSockets = Math.max(1, Number(portsText ?? 1));
const payload = payloadHex ? Buffer.from(payloadHex, 'hex') : Buffer.alloc(32, 0x42);
const sockets: Socket[] = [];
for (let i = 0; i < nSockets; i++) {
  const s = createSocket(host.includes(':') ? 'udp6' : 'udp4');
  s.on('error', () => undefined); // ICMP unreachable replies surface here; they do not matter
  await new Promise<void>((r) => s.bind({ address: bindAddr, port: 0 }, () => r()));
  sockets.push(s);
}
const t0 = performance.now();
let sent = 0;
const deadline = t0 + seconds * 1000;
while (sent < count && performance.now() < deadline) {
  // bursts of 64, then yield so callbacks drain
  const burst = Math.min(64, count - sent);
  await Promise.all(
    Array.from({ length: burst }, (_, i) => new Promise<void>((r) => sockets[(sent + i) % nSockets]!.send(payload, Number(portText), host, () => r()))),
  );
  sent += burst;
}
const secondsTaken = (performance.now() - t0) / 1000;
for (const s of sockets) s.close();
process.stdout.write(`${JSON.stringify({ sent, seconds: secondsTaken })}\n`);
