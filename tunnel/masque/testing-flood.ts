// A hostile HTTP/3 client for the limits tests, run inside the client namespace (config JSON in
// CBR_FLOOD), built on the project's own QUIC endpoint:
// - 'partial-headers': `connections` connections from one address, each with its control stream and
//   `streams` request streams that send a HEADERS frame header declaring `declared` bytes and then
//   only `send` of them. Prints {established, closed: {code: count}, unsettled} once every connection
//   is closed (or after settleMs), holds them for holdMs, then prints {final: ...}.
// - 'honest': one MasqueClient from `bind`: prints {status} of GET /.
import { readFileSync } from 'node:fs';
import { QuicEndpoint, type QuicConnection } from '../quic/index.js';
import { encodeControlStreamPreamble, FrameType, writeFrameHeader, frameHeaderLength } from '../h3/index.js';
import { MasqueClient } from './client.js';

interface Cfg {
  mode: 'partial-headers' | 'honest';
  /** The PoP's address and port, and its CA file. */
  host: string;
  port: number;
  ca: string;
  /** Local address to send from. */
  bind?: string;
  /** partial-headers: connections × streams, each declaring `declared` header bytes and sending `send`. */
  connections?: number;
  streams?: number;
  declared?: number;
  send?: number;
  settleMs?: number;
  holdMs?: number;
}
const cfg = JSON.parse(process.env.CBR_FLOOD ?? '{}') as Cfg;
const out = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const caPem = readFileSync(cfg.ca, 'utf8');
const endpoint = await QuicEndpoint.client({ caPem, host: cfg.bind, idleTimeoutMs: 60_000 });

if (cfg.mode === 'honest') {
  const c = await MasqueClient.connect({ host: cfg.host, port: cfg.port, serverName: 'pop.test', caPem, endpoint, timeoutMs: 10_000 });
  const a = await c.request('GET', '/');
  out({ status: a.status });
  await c.close();
} else {
  const declared = cfg.declared ?? 60_000;
  const send = cfg.send ?? 6;
  const partial = new Uint8Array(frameHeaderLength(FrameType.HEADERS, declared) + send).fill(0x80);
  writeFrameHeader(partial, 0, FrameType.HEADERS, declared);
  let established = 0;
  const closed: Record<string, number> = {};
  const conns: QuicConnection[] = [];
  const total = cfg.connections ?? 16;
  for (let i = 0; i < total; i++) {
    const conn = endpoint.connect(cfg.host, cfg.port, 'pop.test', {
      onEstablished: (q) => {
        established++;
        q.streamSend(2, encodeControlStreamPreamble());
        // quiche takes what the congestion window allows: keep writing the rest as room opens.
        const left = new Map<number, Uint8Array>();
        for (let k = 0; k < (cfg.streams ?? 1024); k++) left.set(4 * k, partial);
        const pump = () => {
          for (const [id, rest] of left) {
            const n = q.streamSend(id, rest);
            if (n === rest.length) left.delete(id);
            else {
              left.set(id, rest.subarray(n));
              break;
            }
          }
          if (left.size > 0 && !q.closed) setTimeout(pump, 5);
        };
        pump();
      },
      onClosed: (_q, r) => {
        const k = `0x${r.code.toString(16)}`;
        closed[k] = (closed[k] ?? 0) + 1;
      },
    });
    conns.push(conn);
  }
  const settled = () => conns.every((q) => q.closed);
  const until = Date.now() + (cfg.settleMs ?? 8000);
  while (!settled() && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  out({ established, closed: { ...closed }, unsettled: conns.filter((q) => !q.isEstablished && !q.closed).length });
  await new Promise((r) => setTimeout(r, cfg.holdMs ?? 0));
  out({ final: { closed } });
}
await endpoint.close({ graceMs: 200 });
process.exit(0);
