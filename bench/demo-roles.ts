// Helper processes for `make demo`, started inside the demo's namespaces (`node dist/bench/demo-roles.js <role> …`):
//
//   origin HTTP_PORT ECHO_PORT ADDR[,ADDR]   HTTP server (GET /bytes/N answers N bytes, GET / says who
//                                asked) and a UDP echo on each address that tags each answer with the
//                                address it came from (the PoP that NATed the client's tunnel traffic)
//   echo ADDRESS PORT TAG        UDP echo bound to ADDRESS (the anycast address on a PoP), tagging answers with TAG;
//                                a "fail" line on stdin stops the answers (a failed service), "ok" resumes them
//   probe HOST PORT RATE [TICK]  sends RATE numbered probes per second to HOST:PORT (what is due every TICK ms,
//                                default 2) and prints a JSON line
//                                each time the answering tag changes (when, sequence numbers, probes lost), and
//                                {"silent": ms} once answers have stopped for a second
//   register URL TOKEN N CONC [WATCH_URL ADMIN_TOKEN]
//                                POSTs N fresh WireGuard keys to URL (CONC in flight) and prints one JSON line
//                                (ok, failed, distinct addresses, seconds); with WATCH_URL (another PoP's
//                                admin peer list) also each key's time from its 201 to onDevice there
//
// Each prints "ready" once listening; echo and probe stop when stdin closes, so none outlives the demo.
import { createServer } from 'node:http';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';

const now = () => performance.timeOrigin + performance.now();

function runOrigin(httpPort: number, echoPort: number, addrs: string[]): void {
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const http = createServer((req, res) => {
    const m = /^\/bytes\/(\d{1,10})$/.exec(req.url ?? '');
    if (m) {
      let left = Math.min(Number(m[1]), 1 << 30);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
      const more = (): void => {
        while (left > 0) {
          const n = Math.min(left, chunk.length);
          left -= n;
          if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
            res.once('drain', more);
            return;
          }
        }
        res.end();
      };
      more();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`hello from the origin; you reached me from ${req.socket.remoteAddress}\n`);
  });
  let up = 0;
  const ready = () => {
    if (++up === 1 + addrs.length) process.stdout.write('ready\n');
  };
  http.listen(httpPort, '0.0.0.0', ready);
  // one socket per address, so each answer leaves from the address the probe was sent to (NAT on the way back needs that)
  for (const addr of addrs) {
    const echo = createSocket('udp4');
    echo.on('message', (msg, rinfo) => echo.send(Buffer.concat([msg, Buffer.from(rinfo.address)]), rinfo.port, rinfo.address));
    echo.bind(echoPort, addr, ready);
  }
}

function runEcho(address: string, port: number, tag: string): void {
  const sock = createSocket('udp4');
  let failed = false;
  sock.on('message', (msg, rinfo) => {
    if (!failed) sock.send(Buffer.concat([msg, Buffer.from(tag)]), rinfo.port, rinfo.address);
  });
  sock.bind(port, address, () => process.stdout.write('ready\n'));
  createInterface({ input: process.stdin }).on('line', (l) => {
    failed = l.trim() === 'fail';
  });
  process.stdin.on('end', () => process.exit(0));
}

/** Probe datagram: u32 sequence, f64 send time (ms since the epoch); the echo appends its tag. */
/** An answer later than this after its probe was sent does not count as an answer. */
const TIMELY_MS = 1000;
/** Shorter silences (scheduling, a busy machine) are not outages. */
const OUTAGE_MIN_MS = 100;

function runProbe(host: string, port: number, rate: number, tickMs: number): void {
  const sock = createSocket('udp4');
  sock.on('error', () => undefined); // ICMP errors while a route is missing: the probe just counts as lost
  let seq = 0;
  let lastTag: string | undefined;
  let lastSeq = -1;
  let lastSend = 0;
  let lastRecv = 0;
  let answered = 0;
  let lastAnswer = now();
  let silent = false;
  // Outages as the stream's user sees them: runs of probes (by send time) that got no answer within
  // TIMELY_MS. Answers that come late (a PoP retransmitting old data, a queue drained after a
  // reconnect) do not close an outage, so the figure is what a packet capture shows.
  let lastTimelySeq = -1;
  let lastTimelySend = 0;
  sock.on('message', (msg) => {
    const recv = now();
    lastAnswer = recv;
    silent = false;
    if (msg.length < 13) return;
    const s = msg.readUInt32BE(0);
    const sent = msg.readDoubleBE(4);
    const tag = msg.subarray(12).toString();
    answered++;
    if (recv - sent <= TIMELY_MS && s > lastTimelySeq) {
      if (lastTimelySeq >= 0 && sent - lastTimelySend >= OUTAGE_MIN_MS) {
        process.stdout.write(
          `${JSON.stringify({ outage: { fromSendMs: lastTimelySend, toSendMs: sent, ms: sent - lastTimelySend, unanswered: s - lastTimelySeq - 1 } })}\n`,
        );
      }
      lastTimelySeq = s;
      lastTimelySend = sent;
    }
    if (s <= lastSeq) return; // late or reordered: switches are decided in sequence order
    if (tag !== lastTag) {
      process.stdout.write(
        `${JSON.stringify({
          from: lastTag ?? 'none',
          to: tag,
          lastFromSeq: lastSeq,
          lastFromSendMs: lastSend,
          lastFromRecvMs: lastRecv,
          firstToSeq: s,
          firstToSendMs: sent,
          firstToRecvMs: recv,
          lost: s - lastSeq - 1,
        })}\n`,
      );
    }
    lastTag = tag;
    lastSeq = s;
    lastSend = sent;
    lastRecv = recv;
  });
  const payload = Buffer.alloc(12);
  const t0 = now();
  const timer = setInterval(() => {
    if (!silent && answered > 0 && now() - lastAnswer > 1000) {
      silent = true;
      process.stdout.write(`${JSON.stringify({ silent: now() - lastAnswer })}\n`);
    }
    const due = Math.floor(((now() - t0) / 1000) * rate);
    for (; seq < due; seq++) {
      payload.writeUInt32BE(seq, 0);
      payload.writeDoubleBE(now(), 4);
      sock.send(payload, port, host);
    }
  }, tickMs);
  sock.bind(0, () => process.stdout.write('ready\n'));
  process.stdin.resume();
  process.stdin.on('end', () => {
    clearInterval(timer);
    process.stdout.write(`${JSON.stringify({ sent: seq, answered })}\n`);
    sock.close();
    process.exit(0);
  });
}

async function runRegister(url: string, token: string, n: number, conc: number, watchUrl?: string, adminToken?: string): Promise<void> {
  const keys = Array.from({ length: n }, () => randomBytes(32).toString('base64'));
  const created = new Map<string, number>();
  const seen = new Map<string, number>();
  const addrs = new Set<string>();
  let next = 0;
  let failed = 0;
  let lastError = '';
  process.stdout.write('ready\n');
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < keys.length) {
      const k = keys[next++]!;
      const r = await fetch(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ publicKey: k }),
      });
      const t = now();
      const j = (await r.json().catch(() => ({}))) as { addresses?: { ipv4?: string } };
      if (r.status === 201) {
        created.set(k, t);
        addrs.add(j.addresses?.ipv4 ?? '');
      } else {
        failed++;
        lastError = `${r.status} ${JSON.stringify(j)}`;
      }
    }
  };
  let registering = true;
  // Polls the other PoP's peer list back to back: when each key is first on its device.
  const watch = async (): Promise<void> => {
    if (!watchUrl) return;
    // after the last 201, up to 15 s more for the keys not seen yet
    let deadline = Number.POSITIVE_INFINITY;
    while (now() < deadline && (registering || [...created.keys()].some((k) => !seen.has(k)))) {
      if (!registering && deadline === Number.POSITIVE_INFINITY) deadline = now() + 15_000;
      const r = await fetch(watchUrl, { headers: { authorization: `Bearer ${adminToken}` } }).catch(() => undefined);
      const t = now();
      const peers = r?.ok ? ((await r.json()) as { peers: Array<{ publicKey: string; onDevice: boolean }> }).peers : [];
      for (const p of peers) if (p.onDevice && !seen.has(p.publicKey)) seen.set(p.publicKey, t);
      await new Promise((res) => setTimeout(res, 2));
    }
  };
  const watching = watch();
  await Promise.all(Array.from({ length: conc }, worker));
  const seconds = (performance.now() - t0) / 1000;
  registering = false;
  await watching;
  // null: never seen there; 0 when the other PoP had it before the 201 reached the client
  const propagationMs = watchUrl ? [...created].map(([k, t]) => (seen.has(k) ? Math.max(0, seen.get(k)! - t) : null)) : undefined;
  const unseen = [...created.keys()].filter((k) => watchUrl && !seen.has(k));
  process.stdout.write(`${JSON.stringify({ ok: created.size, failed, lastError, distinct: addrs.size, seconds, propagationMs, unseen })}\n`);
  process.exit(0);
}

const [role, a, b, c, d, e, f] = process.argv.slice(2);
if (role === 'origin') runOrigin(Number(a), Number(b), (c ?? '0.0.0.0').split(','));
else if (role === 'echo') runEcho(a!, Number(b), c ?? '?');
else if (role === 'probe') runProbe(a!, Number(b), Number(c ?? 100), Number(d ?? 2));
else if (role === 'register') void runRegister(a!, b!, Number(c), Number(d ?? 1), e, f);
else {
  process.stderr.write(
    'usage: demo-roles origin HTTP_PORT ECHO_PORT ADDR[,ADDR] | echo ADDRESS PORT TAG | probe HOST PORT RATE [TICK_MS] | register URL TOKEN N CONC [WATCH_URL ADMIN_TOKEN]\n',
  );
  process.exit(2);
}
