// Loopback measurements of the QUIC endpoint (datagram echo rate, one-stream transfer rate): the
// ceiling the MASQUE layers above can reach on this machine. Used by the tests (small runs) and
// by bench/masque (longer runs).
import { QuicEndpoint, type QuicConnection, type CongestionControl } from './endpoint.js';
import { generateSelfSigned, type TlsMaterial } from './tls.js';

export interface LoopbackPair {
  server: QuicEndpoint;
  client: QuicEndpoint;
  /** Client side of an established connection. */
  conn: QuicConnection;
  /** Server side of it. */
  serverConn: QuicConnection;
  close(): Promise<void>;
}

/** A server and a client endpoint on 127.0.0.1 with one established connection (retry on). */
export async function loopbackPair(
  opts: {
    tls?: TlsMaterial;
    cc?: CongestionControl;
    idleTimeoutMs?: number;
    /** Socket path of both endpoints (default: the endpoint's own choice). */
    nativeIo?: boolean;
    onServerConnection?: (c: QuicConnection) => void;
  } = {},
): Promise<LoopbackPair> {
  const tls = opts.tls ?? (await generateSelfSigned());
  let serverConn: QuicConnection | undefined;
  const server = await QuicEndpoint.listen({
    host: '127.0.0.1',
    port: 0,
    tls,
    serverId: 7,
    congestionControl: opts.cc,
    idleTimeoutMs: opts.idleTimeoutMs,
    nativeIo: opts.nativeIo,
    onConnection: (c) => {
      serverConn = c;
      opts.onServerConnection?.(c);
    },
  });
  const client = await QuicEndpoint.client({ caPem: tls.certPem, congestionControl: opts.cc, idleTimeoutMs: opts.idleTimeoutMs, nativeIo: opts.nativeIo });
  const conn = await new Promise<QuicConnection>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('handshake timed out')), 5000);
    const c = client.connect('127.0.0.1', server.address.port, 'localhost', {
      onEstablished: () => {
        clearTimeout(timer);
        resolve(c);
      },
      onClosed: (_c, r) => {
        clearTimeout(timer);
        reject(new Error(`closed during handshake: ${JSON.stringify(r)}`));
      },
    });
  });
  return {
    server,
    client,
    conn,
    serverConn: serverConn!,
    async close() {
      await client.close();
      await server.close();
    },
  };
}

/** Datagram echo: the client keeps `window` datagrams in flight for `durationMs`; returns echoed datagrams per second. */
export async function measureDatagramEcho(
  pair: LoopbackPair,
  durationMs: number,
  size = 1000,
  window = 64,
): Promise<{ pps: number; sent: number; echoed: number }> {
  pair.serverConn.handler = { ...pair.serverConn.handler, onDatagram: (c, d) => void c.datagramSend(d) };
  const payload = Buffer.alloc(size, 0xab);
  let echoed = 0;
  let sent = 0;
  let inflight = 0;
  const start = Date.now();
  const end = start + durationMs;
  return new Promise((resolve) => {
    const pump = () => {
      while (inflight < window && Date.now() < end) {
        if (!pair.conn.datagramSend(payload)) break;
        sent++;
        inflight++;
      }
    };
    pair.conn.handler = {
      ...pair.conn.handler,
      onDatagram: () => {
        echoed++;
        inflight--;
        pump();
      },
    };
    // Lost datagrams would stall the window: refill it periodically.
    const refill = setInterval(() => {
      inflight = 0;
      pump();
    }, 100);
    pump();
    setTimeout(() => {
      clearInterval(refill);
      resolve({ pps: (echoed * 1000) / (Date.now() - start), sent, echoed });
    }, durationMs + 50);
  });
}

/** Sends `bytes` on one client bidi stream; the server counts them. Returns Mbit/s and the bytes received. */
export async function measureStreamTransfer(pair: LoopbackPair, bytes: number, timeoutMs = 20_000): Promise<{ mbps: number; received: number }> {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const buf = Buffer.allocUnsafe(64 * 1024);
  let received = 0;
  const start = Date.now();
  const done = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`stream transfer timed out after ${received} bytes`)), timeoutMs);
    pair.serverConn.handler = {
      ...pair.serverConn.handler,
      onStreamReadable: (c, id) => {
        for (;;) {
          const r = c.streamRecv(id, buf);
          if (typeof r !== 'object' || 'reset' in r) break;
          received += r.bytes;
          if (r.fin) {
            clearTimeout(timer);
            resolve();
            return;
          }
        }
      },
    };
  });
  let offset = 0;
  const streamId = 0;
  const write = () => {
    while (offset < bytes) {
      const len = Math.min(chunk.length, bytes - offset);
      const n = pair.conn.streamSend(streamId, chunk.subarray(0, len), offset + len >= bytes);
      offset += n;
      if (n < len) {
        pair.conn.wantWritable(streamId);
        return;
      }
    }
  };
  pair.conn.handler = { ...pair.conn.handler, onStreamWritable: () => write() };
  write();
  await done;
  return { mbps: (received * 8) / 1000 / (Date.now() - start), received };
}

/** One-way datagram rate: the client sends for `durationMs` as fast as the send queue takes; returns datagrams/s the server received. */
export async function measureDatagramRate(pair: LoopbackPair, durationMs: number, size = 1000): Promise<{ pps: number; sent: number; received: number }> {
  let received = 0;
  pair.serverConn.handler = { ...pair.serverConn.handler, onDatagram: () => void received++ };
  const payload = Buffer.alloc(size, 0xcd);
  let sent = 0;
  const start = Date.now();
  const end = start + durationMs;
  await new Promise<void>((resolve) => {
    const tick = () => {
      if (Date.now() >= end) return resolve();
      // A bounded burst per turn so the receiver's socket buffer is not overrun by one flush.
      for (let i = 0; i < 48; i++) {
        if (!pair.conn.datagramSend(payload)) break;
        sent++;
      }
      setImmediate(tick);
    };
    tick();
  });
  await new Promise((r) => setTimeout(r, 100));
  return { pps: (received * 1000) / (Date.now() - start - 100), sent, received };
}
