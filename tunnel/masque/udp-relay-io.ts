// The sockets of connect-udp relays (one connected UDP socket per session towards its target), shared
// by all sessions of a server. Batched: each socket is a native BatchUdpSocket; all of them receive
// into one set of buffers (recvmmsg, GRO) and hand their replies on as (buffer, offset, length) with
// no object per packet; payloads towards targets queue in one bounded buffer and leave with one
// sendmmsg per socket once the current event-loop turn is done. Fallback (no addon, CBR_NATIVE_IO=0):
// node:dgram, one call per datagram, its send queue bounded the same way.
import { createSocket } from 'node:dgram';
import { isIP } from 'node:net';
import { BatchUdpSocket, RxBuffers, ADDR_SLOT, errorMessage } from '../../dataplane/index.js';
import { nativeIoWanted } from '../quic/index.js';

/**
 * Why a payload towards a target was dropped (replies the client's queue cannot take are the
 * server's 'client-queue' drops).
 */
export type UdpDropReason = 'send-error' | 'send-queue';

/**
 * Takes one reply: `data[offset .. offset + length)`, valid only during the call. False: the client's
 * queue is full (the reply was dropped and counted there); the batched path then reads no more of
 * this socket until the event loop has flushed that queue.
 */
export type ReplySink = (data: Buffer, offset: number, length: number) => boolean;

export interface RelaySocket {
  /** Queues a payload towards the target (copied; the caller may reuse it). */
  send(payload: Uint8Array): void;
  close(): void;
}

export interface RelayIoOptions {
  /** Payloads towards targets queued per event-loop turn, all sessions together (more are dropped as 'send-queue'). */
  sendQueuePackets: number;
  /** Use the native addon (default: when it is built and CBR_NATIVE_IO !== '0'); true without it fails at open. */
  native?: boolean;
}

export interface RelayIoStats {
  /** Receive batches (one per datagram on the dgram path). */
  recvCalls: number;
  /** Send calls (one per socket and turn; one per datagram on the dgram path). */
  sendCalls: number;
  sockets: number;
}

/** SO_RCVBUF/SO_SNDBUF asked for each relay socket (capped by net.core.*mem_max). */
const SOCKET_BUFFER = 1 << 20;
/** The largest UDP payload: a queued payload always fits once the queue is flushed. */
const MAX_UDP_PAYLOAD = 65_507;
/** Receive batch of the shared buffers (64 KiB GRO slots: 2 MiB for all relay sockets of a process). */
const RX_BATCH = 32;

export abstract class RelayIo {
  abstract readonly kind: 'batch' | 'dgram';
  readonly drops: Record<UdpDropReason, number> = { 'send-error': 0, 'send-queue': 0 };
  readonly stats: RelayIoStats = { recvCalls: 0, sendCalls: 0, sockets: 0 };

  static create(o: RelayIoOptions): RelayIo {
    return (o.native ?? nativeIoWanted()) ? new BatchRelayIo(o) : new DgramRelayIo(o);
  }

  /** A socket connected to `address:port` (an IP literal) whose replies go to `sink`. */
  abstract open(address: string, port: number, sink: ReplySink): Promise<RelaySocket>;

  /** A DATAGRAM capsule can carry more than UDP can: the kernel would refuse it (EMSGSIZE), and with it its batch. */
  protected tooBig(payload: Uint8Array): boolean {
    if (payload.length <= MAX_UDP_PAYLOAD) return false;
    this.drops['send-error']++;
    return true;
  }
}

class DgramRelayIo extends RelayIo {
  readonly kind = 'dgram';

  constructor(private readonly o: RelayIoOptions) {
    super();
  }

  async open(address: string, port: number, sink: ReplySink): Promise<RelaySocket> {
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    // A send error (ICMP unreachable reported on the connected socket) loses that datagram only.
    socket.on('error', () => this.drops['send-error']++);
    socket.on('message', (msg) => {
      this.stats.recvCalls++;
      sink(msg, 0, msg.length);
    });
    this.stats.sockets++;
    let closed = false;
    return {
      send: (payload) => {
        if (closed || this.tooBig(payload)) return;
        // libuv queues what the kernel does not take at once: bounded here.
        if (socket.getSendQueueCount() >= this.o.sendQueuePackets) {
          this.drops['send-queue']++;
          return;
        }
        this.stats.sendCalls++;
        socket.send(payload);
      },
      close: () => {
        if (closed) return;
        closed = true;
        this.stats.sockets--;
        socket.close();
      },
    };
  }
}

class BatchSocket implements RelaySocket {
  closed = false;
  /** Its payloads in the send queue: first and last index (-1: none), chained through `next`. */
  head = -1;
  tail = -1;
  constructor(
    private readonly io: BatchRelayIo,
    readonly sock: BatchUdpSocket,
  ) {}

  send(payload: Uint8Array): void {
    if (!this.closed) this.io.enqueue(this, payload);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.io.closed(this);
  }
}

class BatchRelayIo extends RelayIo {
  readonly kind = 'batch';
  // Receive buffers and the payload bytes of the send queue: made with the first socket (a PoP
  // without connect-udp sessions holds none of their 4 MiB).
  private rx: RxBuffers | undefined;
  private rxView: Buffer = Buffer.alloc(0);
  // The send queue: payloads back to back in `tx` in arrival order, each socket's chained by `next`.
  private tx: Buffer = Buffer.alloc(0);
  private readonly offs: Uint32Array;
  private readonly lens: Uint32Array;
  private readonly next: Int32Array;
  /** Sockets with queued payloads, in the order they queued their first. */
  private readonly dirty: BatchSocket[] = [];
  // One socket's payloads gathered back to back when several sockets queued in one turn.
  private gather: Buffer = Buffer.alloc(0);
  private readonly gatherLens: Uint32Array;
  /** All-zero address slots: "the connected peer". */
  private readonly peer: Uint8Array;
  private count = 0;
  private bytes = 0;
  private flushQueued = false;
  /** The last send error (for logs and tests). */
  lastError: string | undefined;

  constructor(o: RelayIoOptions) {
    super();
    const capacity = Math.max(1, o.sendQueuePackets);
    this.offs = new Uint32Array(capacity);
    this.lens = new Uint32Array(capacity);
    this.next = new Int32Array(capacity);
    this.gatherLens = new Uint32Array(capacity);
    this.peer = new Uint8Array(capacity * ADDR_SLOT);
  }

  async open(address: string, port: number, sink: ReplySink): Promise<RelaySocket> {
    if (!this.rx) {
      this.rx = new RxBuffers(true, RX_BATCH);
      this.rxView = Buffer.from(this.rx.data.buffer, this.rx.data.byteOffset, this.rx.data.byteLength);
      const bytes = Math.max(MAX_UDP_PAYLOAD, Math.min(this.lens.length * 1500, 1 << 20));
      this.tx = Buffer.allocUnsafe(bytes);
      this.gather = Buffer.allocUnsafe(bytes);
    }
    const sock = new BatchUdpSocket({
      host: isIP(address) === 6 ? '::' : '0.0.0.0',
      port: 0,
      connect: { host: address, port },
      rx: this.rx,
      bufferBytes: SOCKET_BUFFER,
    });
    const s = new BatchSocket(this, sock);
    const view = this.rxView;
    sock.onBatch((count, _data, offsets, lengths) => {
      this.stats.recvCalls++;
      let taken = true;
      for (let i = 0; i < count && !s.closed; i++) taken = sink(view, offsets[i]!, lengths[i]!) && taken;
      return taken;
    });
    this.stats.sockets++;
    return s;
  }

  /** @internal */
  enqueue(s: BatchSocket, payload: Uint8Array): void {
    if (this.tooBig(payload)) return;
    if (this.count === this.lens.length) {
      this.drops['send-queue']++;
      return;
    }
    if (this.bytes + payload.length > this.tx.length) this.flush();
    const i = this.count;
    this.tx.set(payload, this.bytes);
    this.offs[i] = this.bytes;
    this.lens[i] = payload.length;
    this.next[i] = -1;
    if (s.head < 0) {
      s.head = i;
      this.dirty.push(s);
    } else this.next[s.tail] = i;
    s.tail = i;
    this.bytes += payload.length;
    this.count = i + 1;
    if (!this.flushQueued) {
      // After the current callback (the QUIC endpoint's batch of datagrams): one sendmmsg per socket.
      this.flushQueued = true;
      queueMicrotask(this.flush);
    }
  }

  /** @internal A closed socket's queued payloads are skipped by the next flush. */
  closed(s: BatchSocket): void {
    this.stats.sockets--;
    s.sock.close();
  }

  private readonly flush = (): void => {
    this.flushQueued = false;
    const only = this.dirty.length === 1 ? this.dirty[0] : undefined;
    if (only) {
      // The common case: one session queued this turn, its payloads already back to back.
      if (!only.closed) this.sendRun(only, this.tx, this.lens, this.count);
    } else {
      for (const s of this.dirty) {
        if (s.closed) continue;
        let n = 0;
        let at = 0;
        for (let i = s.head; i >= 0; i = this.next[i]!) {
          const len = this.lens[i]!;
          const from = this.offs[i]!;
          this.tx.copy(this.gather, at, from, from + len);
          this.gatherLens[n++] = len;
          at += len;
        }
        this.sendRun(s, this.gather, this.gatherLens, n);
      }
    }
    for (const s of this.dirty) s.head = s.tail = -1;
    this.dirty.length = 0;
    this.count = 0;
    this.bytes = 0;
  };

  private sendRun(s: BatchSocket, data: Buffer, lens: Uint32Array, n: number): void {
    this.stats.sendCalls++;
    let sent: number;
    try {
      sent = s.sock.send(data, lens, this.peer, n);
    } catch (err) {
      // The target refused (ICMP unreachable reported on the socket) or the route is gone: UDP loses them.
      this.drops['send-error'] += n;
      this.lastError = errorMessage(err);
      return;
    }
    // A full socket buffer: UDP is lossy, the rest is not held back.
    if (sent < n) this.drops['send-queue'] += n - sent;
  }
}
