// A hostile HTTP/3 client for the limits tests, run inside the client namespace (config JSON in
// CBR_FLOOD), built on the project's own QUIC endpoint:
// - 'partial-headers': `connections` connections from one address, each with its control stream and
//   `streams` request streams that send a HEADERS frame header declaring `declared` bytes and then
//   only `send` of them. Prints {established, closed: {code: count}, unsettled} once every connection
//   is closed (or after settleMs), holds them for holdMs, then prints {final: ...}.
// - 'honest': one MasqueClient from `bind`: prints {status} of GET /.
// - 'misbehave': for `seconds`, rounds of what a hostile client with a token does: CONNECTs with bad
//   tokens, connect-udp streams reset right after they open, connect-ip sessions flooded with
//   ADDRESS_REQUEST capsules, and a connection of partial HEADERS. Prints {rounds, answers, errors}.
import { readFileSync } from 'node:fs';
import { QuicEndpoint, type QuicConnection } from '../quic/index.js';
import {
  encodeControlStreamPreamble,
  FrameType,
  writeFrameHeader,
  frameHeaderLength,
  encodeCapsule,
  encodeAddressRequestValue,
  encodeDataFrameHeader,
  CapsuleType,
} from '../h3/index.js';
import { errorMessage } from '../../dataplane/index.js';
import { MasqueClient } from './client.js';

interface Cfg {
  mode: 'partial-headers' | 'honest' | 'misbehave';
  /** misbehave: a valid token (its subject misbehaves), how long, and a connect-udp target. */
  token?: string;
  seconds?: number;
  target?: { host: string; port: number };
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
} else if (cfg.mode === 'misbehave') {
  const answers: Record<string, number> = {};
  const errors: Record<string, number> = {};
  const count = (m: Record<string, number>, k: string) => (m[k] = (m[k] ?? 0) + 1);
  const until = Date.now() + (cfg.seconds ?? 20) * 1000;
  const target = cfg.target ?? { host: cfg.host, port: 9 };
  const request = encodeCapsule(CapsuleType.ADDRESS_REQUEST, encodeAddressRequestValue([{ requestId: 1, version: 4, address: '0.0.0.0', prefixLength: 32 }]));
  let rounds = 0;
  while (Date.now() < until) {
    rounds++;
    let c: MasqueClient | undefined;
    try {
      c = await MasqueClient.connect({ host: cfg.host, port: cfg.port, serverName: 'pop.test', caPem, endpoint, timeoutMs: 5_000 });
      // a forged token
      await c.openUdp(target, 'eyJhbGciOiJSUzI1NiJ9.e30.AAAA').then(
        () => count(answers, 'bad-token-accepted'),
        (err) => count(answers, `bad-token:${(err as { status?: number }).status ?? errorMessage(err).slice(0, 40)}`),
      );
      // a session reset as soon as it opens
      const s = await c.openUdp(target, cfg.token);
      c.h3.quic.streamShutdown(s.streamId, 0x10c, 'both'); // H3_REQUEST_CANCELLED
      count(answers, 'reset');
      // ADDRESS_REQUEST capsules, as fast as the stream takes them
      const ip = await c.openIp(cfg.token, 1000);
      for (let i = 0; i < 2000 && !ip.ended; i++) {
        c.h3.write(ip.streamId, encodeDataFrameHeader(request.length));
        c.h3.write(ip.streamId, request);
      }
      count(answers, ip.ended ? 'address-flood-ended' : 'address-flood');
      // partial HEADERS on a few request streams
      const partial = new Uint8Array(frameHeaderLength(FrameType.HEADERS, 60_000) + 6).fill(0x80);
      writeFrameHeader(partial, 0, FrameType.HEADERS, 60_000);
      for (let k = 0; k < 32; k++) c.h3.quic.streamSend(4 * (100 + k), partial);
      count(answers, 'partial-headers');
      await new Promise((r) => setTimeout(r, 100));
    } catch (err) {
      count(errors, errorMessage(err).slice(0, 60));
    } finally {
      await c?.close().catch(() => {
        // the server may have closed it already: nothing left to do
      });
    }
  }
  out({ rounds, answers, errors });
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
