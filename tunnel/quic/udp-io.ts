// The QUIC endpoint's UDP socket: batched (recvmmsg/sendmmsg with GRO/GSO through the native addon)
// or node:dgram when the addon is not there or CBR_NATIVE_IO=0. Either way the endpoint builds each
// outgoing packet in place (reserve → quiche writes → commit) and flushes once per turn; received
// packets reach it as (Buffer, RemoteInfo) with the RemoteInfo reused while the peer is the same.
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { Host } from '@matrixai/quic/native/types.js';
import { BatchUdpSocket, nativeIoUnavailable, writeSlot, ADDR_SLOT, CbrError, errorMessage, formatIp } from '../../dataplane/index.js';

export type PacketSink = (msg: Buffer, rinfo: RemoteInfo) => void;

export interface UdpIoStats {
  /** Receive calls (batches; one per datagram on the dgram path). */
  recvCalls: number;
  /** Send calls (one per flushed batch; one per packet on the dgram path). */
  sendCalls: number;
  /** Sends that the kernel took only in part (socket buffer full). */
  sendShort: number;
}

export interface UdpIo {
  readonly kind: 'batch' | 'dgram';
  readonly stats: UdpIoStats;
  readonly local: Host;
  /** A buffer of `max` bytes to build the next packet in, or undefined while the queue is full and the socket blocked. */
  reserve(max: number): Buffer | undefined;
  /** Queues the first `n` bytes of the last reserved buffer for `host:port`. */
  commit(n: number, host: string, port: number): void;
  /** Sends what is queued (one call for the batch). */
  flush(): void;
  /** Called once the queue has drained after being full (the endpoint then flushes the connections it held back). */
  onWritable: () => void;
  /** Called when the kernel refused a send (not a full buffer) with the packets lost. */
  onSendError: (packets: number) => void;
  close(): Promise<void>;
}

export interface UdpIoOptions {
  host: string;
  port: number;
  /** Packets the send queue holds (batched path); default 256. */
  sendQueuePackets?: number;
  /** Largest packet the endpoint builds. */
  maxPacket: number;
  /** SO_SNDBUF/SO_RCVBUF request (default 8 MiB, capped by net.core.*mem_max). */
  bufferBytes?: number;
  /** Use the native addon when it is there (default: CBR_NATIVE_IO !== '0'). */
  native?: boolean;
}

/** Whether the endpoint uses the native addon: CBR_NATIVE_IO=0 forces node:dgram. */
export function nativeIoWanted(env = process.env.CBR_NATIVE_IO): boolean {
  return env !== '0' && nativeIoUnavailable() === undefined;
}

export async function openUdpIo(o: UdpIoOptions, onPacket: PacketSink): Promise<UdpIo> {
  if (o.native ?? nativeIoWanted()) return new BatchIo(o, onPacket);
  return DgramIo.open(o, onPacket);
}

const emptyStats = (): UdpIoStats => ({ recvCalls: 0, sendCalls: 0, sendShort: 0 });

/** node:dgram: one datagram per call; packets are built in a slab and sent as views of it. */
class DgramIo implements UdpIo {
  readonly kind = 'dgram';
  readonly stats = emptyStats();
  local: Host = { host: '0.0.0.0', port: 0 };
  onWritable = (): void => {};
  onSendError = (_packets: number): void => {};
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private slabOff = 0;
  private pending: Buffer | undefined;

  private constructor(private readonly socket: Socket) {}

  static open(o: UdpIoOptions, onPacket: PacketSink): Promise<DgramIo> {
    const socket = createSocket({ type: isIPv6(o.host) ? 'udp6' : 'udp4', reuseAddr: false });
    const io = new DgramIo(socket);
    socket.on('message', (msg, rinfo) => {
      io.stats.recvCalls++;
      onPacket(msg, rinfo);
    });
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      socket.once('error', onError);
      socket.bind(o.port, o.host, () => {
        socket.off('error', onError);
        socket.on('error', () => io.onSendError(1));
        try {
          socket.setRecvBufferSize(o.bufferBytes ?? 8 << 20);
          socket.setSendBufferSize(o.bufferBytes ?? 8 << 20);
        } catch {
          /* capped by net.core.*mem_max; not fatal */
        }
        const a = socket.address();
        io.local = { host: a.address, port: a.port };
        resolve(io);
      });
    });
  }

  reserve(max: number): Buffer {
    // A send keeps its view alive until the kernel has it; a full slab is dropped for a fresh one.
    if (this.slabOff + max > SLAB_BYTES) {
      this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.slabOff = 0;
    }
    this.pending = this.slab.subarray(this.slabOff, this.slabOff + max);
    return this.pending;
  }

  commit(n: number, host: string, port: number): void {
    const buf = this.pending;
    if (!buf) return;
    this.pending = undefined;
    this.slabOff += (n + 7) & ~7;
    this.stats.sendCalls++;
    this.socket.send(buf.subarray(0, n), port, host);
  }

  flush(): void {}

  close(): Promise<void> {
    return new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}

const SLAB_BYTES = 256 << 10;

/**
 * The native batched socket. Packets queue back to back in one buffer with their lengths and
 * address slots; `flush` hands the whole queue to one sendmmsg (GSO for runs of equal-size packets
 * to one peer). A short send keeps the rest at the head of the queue until the socket is writable.
 */
class BatchIo implements UdpIo {
  readonly kind = 'batch';
  readonly stats = emptyStats();
  readonly local: Host;
  onWritable = (): void => {};
  onSendError = (_packets: number): void => {};
  private readonly sock: BatchUdpSocket;
  private readonly tx: Buffer;
  private readonly lens: Uint32Array;
  private readonly addrs: Uint8Array;
  private readonly capacity: number;
  private count = 0;
  private bytes = 0;
  private blocked = false;
  private reserved = 0;
  // The destination of the last queued packet, to copy its slot instead of parsing the address again.
  private lastHost = '';
  private lastPort = -1;
  // Received: the RemoteInfo of the last sender, kept while the next datagrams come from the same slot.
  private readonly lastFrom = new Uint8Array(ADDR_SLOT);
  private lastInfo: RemoteInfo | undefined;

  constructor(o: UdpIoOptions, onPacket: PacketSink) {
    try {
      this.sock = new BatchUdpSocket({ host: o.host, port: o.port, bufferBytes: o.bufferBytes });
    } catch (err) {
      throw new CbrError('SYSCALL_FAILED', `quic udp ${o.host}:${o.port}: ${errorMessage(err)}`, { cause: err });
    }
    this.local = { host: o.host, port: this.sock.port };
    this.capacity = Math.max(1, o.sendQueuePackets ?? 256);
    this.tx = Buffer.allocUnsafe(this.capacity * o.maxPacket);
    this.lens = new Uint32Array(this.capacity);
    this.addrs = new Uint8Array(this.capacity * ADDR_SLOT);
    let view: Buffer | undefined;
    this.sock.onBatch((count, data, offsets, lengths, addrs, addrIndex) => {
      this.stats.recvCalls++;
      view ??= Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      for (let i = 0; i < count; i++) {
        const off = offsets[i]!;
        onPacket(view.subarray(off, off + lengths[i]!), this.remoteInfo(addrs, addrIndex[i]!, lengths[i]!));
      }
      // Acks and responses built while the batch was read leave together.
      this.flush();
    });
  }

  private remoteInfo(addrs: Uint8Array, slot: number, size: number): RemoteInfo {
    const o = slot * ADDR_SLOT;
    let same = this.lastInfo !== undefined;
    for (let i = 0; same && i < ADDR_SLOT; i++) same = addrs[o + i] === this.lastFrom[i];
    if (!same || !this.lastInfo) {
      this.lastFrom.set(addrs.subarray(o, o + ADDR_SLOT));
      const port = (addrs[o + 2]! << 8) | addrs[o + 3]!;
      const host = addrs[o] === 4 ? formatIp(addrs.subarray(o + 4, o + 8)) : formatV6(addrs.subarray(o + 4, o + 20));
      this.lastInfo = { address: host, family: addrs[o] === 4 ? 'IPv4' : 'IPv6', port, size };
    }
    return this.lastInfo;
  }

  reserve(max: number): Buffer | undefined {
    if (this.count === this.capacity || this.bytes + max > this.tx.length) {
      this.flush();
      if (this.count === this.capacity || this.bytes + max > this.tx.length) return undefined;
    }
    this.reserved = max;
    return this.tx.subarray(this.bytes, this.bytes + max);
  }

  commit(n: number, host: string, port: number): void {
    if (this.reserved === 0 || n > this.reserved) return;
    this.reserved = 0;
    const i = this.count;
    if (i > 0 && host === this.lastHost && port === this.lastPort) this.addrs.copyWithin(i * ADDR_SLOT, (i - 1) * ADDR_SLOT, i * ADDR_SLOT);
    else {
      writeSlot(this.addrs, i, host, port);
      this.lastHost = host;
      this.lastPort = port;
    }
    this.lens[i] = n;
    this.bytes += n;
    this.count = i + 1;
  }

  flush(): void {
    if (this.count === 0 || this.blocked) return;
    this.stats.sendCalls++;
    let sent: number;
    try {
      sent = this.sock.send(this.tx, this.lens, this.addrs, this.count);
    } catch {
      // Not a full buffer (that is a short count): the route or the address is refused. QUIC treats it as loss.
      const lost = this.count;
      this.count = 0;
      this.bytes = 0;
      this.onSendError(lost);
      return;
    }
    if (sent === this.count) {
      this.count = 0;
      this.bytes = 0;
      return;
    }
    this.stats.sendShort++;
    let done = 0;
    for (let i = 0; i < sent; i++) done += this.lens[i]!;
    this.tx.copyWithin(0, done, this.bytes);
    this.lens.copyWithin(0, sent, this.count);
    this.addrs.copyWithin(0, sent * ADDR_SLOT, this.count * ADDR_SLOT);
    this.count -= sent;
    this.bytes -= done;
    this.blocked = true;
    this.sock.whenWritable(() => {
      this.blocked = false;
      this.flush();
      if (!this.blocked) this.onWritable();
    });
  }

  close(): Promise<void> {
    this.flush();
    this.sock.close();
    return Promise.resolve();
  }
}

/**
 * An IPv6 address as node:dgram reports it: an IPv4-mapped peer of a dual-stack socket as
 * ::ffff:a.b.c.d (sourceKey and the retry tokens read that form), others canonical.
 */
export function formatV6(b: Uint8Array): string {
  for (let i = 0; i < 10; i++) if (b[i] !== 0) return formatIp(b);
  if (b[10] !== 0xff || b[11] !== 0xff) return formatIp(b);
  return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
}
