// Batched UDP sockets over the native cbr_io addon (dataplane/os/native/cbr_io.c): recvmmsg/sendmmsg
// into and out of buffers this object owns, UDP GRO on receive and GSO on send where the kernel has
// them. Packets reach the caller in batches as (buffer, offset, length, address slot) with no object
// made per packet. GRO super-datagrams are split here into their segments before the caller sees
// them, so a caller never has to know whether GRO was on.
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isIPv4 } from 'node:net';
import { CbrError, errorMessage } from '../errors.js';
import { formatIp, parseIp } from '../net/ip.js';

export interface Addon {
  open(family: 4 | 6, host: string, port: number, gro: boolean, bufferBytes: number): [number, number, boolean, boolean];
  connect(fd: number, host: string, port: number): void;
  recv(fd: number, data: Uint8Array, slotSize: number, lens: Uint32Array, segs: Uint16Array, addrs: Uint8Array): number;
  send(fd: number, data: Uint8Array, lens: Uint32Array, addrs: Uint8Array, count: number, gso: boolean): number;
  watch(fd: number, onReady: (events: number) => void): unknown;
  unwatch(handle: unknown): void;
  pollWritable(handle: unknown, on: boolean): void;
  close(fd: number): void;
  MAX_BATCH: number;
  ADDR_SLOT: number;
  // TUN offloads (cbr_tun.c; see dataplane/os/tun-offload.ts)
  tunOffload(fd: number): number;
  tunWrite(fd: number, data: Uint8Array, lens: Uint32Array, count: number, result: Uint32Array, udp: boolean): number;
  tunCoalesce(data: Uint8Array, lens: Uint32Array, count: number, out: Uint8Array, outLens: Uint32Array, result: Uint32Array, udp: boolean): number;
  tunRead(fd: number, scratch: Uint8Array, out: Uint8Array, outLens: Uint32Array, stats: Float64Array): number;
  tunSplit(input: Uint8Array, out: Uint8Array, outLens: Uint32Array, stats: Float64Array): number;
  TUN_MAX_BATCH: number;
  TUN_VNET_HDR: number;
}

/** Where `make native` puts the addon, from dist/dataplane/os/ or dataplane/os/. */
const ADDON_PATHS = [
  join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'dataplane', 'os', 'native', 'build', 'cbr_io.node'),
  join(dirname(fileURLToPath(import.meta.url)), 'native', 'build', 'cbr_io.node'),
];

let addon: Addon | undefined;
let loadError: string | undefined;

/** The addon, or undefined with the reason in `nativeIoUnavailable()` (not built, wrong ABI). */
export function nativeIo(): Addon | undefined {
  if (addon || loadError) return addon;
  const require = createRequire(import.meta.url);
  for (const p of ADDON_PATHS) {
    try {
      addon = require(p) as Addon;
      return addon;
    } catch (err) {
      loadError = `${p}: ${errorMessage(err)}`;
    }
  }
  return undefined;
}

export function nativeIoUnavailable(): string | undefined {
  nativeIo();
  return addon ? undefined : loadError;
}

export const ADDR_SLOT = 20;
/** Largest datagram a receive slot holds: a GRO super-datagram is at most 64 KiB. */
const SLOT_GRO = 65_536;
const SLOT_PLAIN = 2_048;

export interface BatchSocketOptions {
  host: string;
  port: number;
  /** Ask for UDP GRO (default true); off tests the plain path. */
  gro?: boolean;
  /** Use UDP GSO on send when the kernel has it (default true). */
  gso?: boolean;
  /** SO_RCVBUF/SO_SNDBUF request in bytes (capped by net.core.*mem_max). */
  bufferBytes?: number;
  /** Datagrams per receive call (≤ the addon's MAX_BATCH). */
  batch?: number;
  /** Fixes the peer: only its datagrams arrive, and sends with an empty (all-zero) address slot go to it. */
  connect?: { host: string; port: number };
  /**
   * Receive buffers shared with other sockets (a handler must be done with a batch when it returns).
   * GRO is asked for only when they hold 64 KiB slots.
   */
  rx?: RxBuffers;
}

/** What one receive call fills, and what a handler sees: GRO segments expanded to packets. */
export class RxBuffers {
  readonly slot: number;
  readonly batch: number;
  readonly data: Uint8Array;
  readonly lens: Uint32Array;
  readonly segs: Uint16Array;
  readonly addrs: Uint8Array;
  readonly offsets: Uint32Array;
  readonly lengths: Uint32Array;
  readonly addrIndex: Uint16Array;

  constructor(gro: boolean, batch: number) {
    this.slot = gro ? SLOT_GRO : SLOT_PLAIN;
    this.batch = batch;
    this.data = new Uint8Array(this.slot * batch);
    this.lens = new Uint32Array(batch);
    this.segs = new Uint16Array(batch);
    this.addrs = new Uint8Array(ADDR_SLOT * batch);
    const maxPackets = gro ? batch * 64 : batch;
    this.offsets = new Uint32Array(maxPackets);
    this.lengths = new Uint32Array(maxPackets);
    this.addrIndex = new Uint16Array(maxPackets);
  }

  get gro(): boolean {
    return this.slot === SLOT_GRO;
  }
}

/**
 * Called once per batch: packet i is `data[offsets[i] .. offsets[i] + lengths[i])`, from the address
 * in `addrs` slot `addrIndex[i]` (see `formatSlot`). The arrays are reused by the next batch.
 * Returning false stops reading until the next wake-up: the socket stays readable, so the event
 * loop comes back to it after its other work (backpressure from a full queue downstream).
 */
export type BatchHandler = (
  count: number,
  data: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  addrs: Uint8Array,
  addrIndex: Uint16Array,
) => undefined | boolean;

/** Writes `host:port` into a 20-byte slot (any IPv6 text form, IPv4-embedded included). */
export function writeSlot(slots: Uint8Array, index: number, host: string, port: number): void {
  const ip = parseIp(host);
  if (!ip) throw new CbrError('INVALID_ARGUMENT', `udp: not an IP address: ${JSON.stringify(host)}`);
  const o = index * ADDR_SLOT;
  slots.fill(0, o, o + ADDR_SLOT);
  slots[o] = ip.length === 4 ? 4 : 6;
  slots[o + 2] = port >> 8;
  slots[o + 3] = port & 0xff;
  slots.set(ip, o + 4);
}

/** `{ host, port }` of a slot (for logs and tests; the hot path compares slot bytes). */
export function formatSlot(slots: Uint8Array, index: number): { host: string; port: number } {
  const o = index * ADDR_SLOT;
  const port = ((slots[o + 2] ?? 0) << 8) | (slots[o + 3] ?? 0);
  return { host: formatIp(slots.subarray(o + 4, o + (slots[o] === 4 ? 8 : 20))), port };
}

export class BatchUdpSocket {
  readonly port: number;
  /** Whether the kernel took UDP_GRO / has UDP_SEGMENT (GSO is switched off after a refusal). */
  readonly gro: boolean;
  gso: boolean;
  readonly stats = { batches: 0, datagrams: 0, packets: 0, sendCalls: 0, sent: 0, sendShort: 0, recvErrors: 0 };
  private readonly io: Addon;
  private readonly fd: number;
  private readonly rx: RxBuffers;
  private watch?: unknown;
  private writable?: () => void;
  private closed = false;

  constructor(opts: BatchSocketOptions) {
    const io = nativeIo();
    if (!io) throw new CbrError('UNAVAILABLE', `the native I/O addon is not built (make native): ${loadError}`);
    this.io = io;
    const family = isIPv4(opts.host) ? 4 : 6;
    const gro = (opts.gro ?? true) && (opts.rx?.gro ?? true);
    let opened: [number, number, boolean, boolean];
    try {
      opened = io.open(family, opts.host, opts.port, gro, opts.bufferBytes ?? 8 << 20);
    } catch (err) {
      throw new CbrError('SYSCALL_FAILED', `udp ${opts.host}:${opts.port}: ${errorMessage(err)}`, { cause: err });
    }
    [this.fd, this.port, this.gro] = opened;
    if (opts.connect) {
      try {
        io.connect(this.fd, opts.connect.host, opts.connect.port);
      } catch (err) {
        io.close(this.fd);
        throw new CbrError('SYSCALL_FAILED', `udp connect ${opts.connect.host}:${opts.connect.port}: ${errorMessage(err)}`, { cause: err });
      }
    }
    this.gso = opened[3] && (opts.gso ?? true);
    this.rx = opts.rx ?? new RxBuffers(this.gro, Math.min(opts.batch ?? io.MAX_BATCH, io.MAX_BATCH));
  }

  /** Starts delivering batches to `handler` when datagrams arrive. */
  onBatch(handler: BatchHandler): void {
    if (this.watch) throw new CbrError('CONFLICT', 'onBatch: a handler is already set');
    // The addon reports the ready UV_READABLE (1) / UV_WRITABLE (2) bits, or a negative libuv error.
    this.watch = this.io.watch(this.fd, (events) => {
      if (events > 0 && events & 2 && this.writable) {
        const cb = this.writable;
        this.writable = undefined;
        this.io.pollWritable(this.watch, false);
        cb();
      }
      if (events < 0 || events & 1) this.drain(handler);
    });
  }

  /**
   * Calls `cb` once when the socket has room again (after `send` returned short). Needs `onBatch`
   * first: readiness comes from the same poll handle.
   */
  whenWritable(cb: () => void): void {
    if (!this.watch) throw new CbrError('CONFLICT', 'whenWritable: call onBatch first');
    if (this.closed) return;
    this.writable = cb;
    this.io.pollWritable(this.watch, true);
  }

  /**
   * Reads until the socket is empty (bounded: 64 calls per wake-up, then yields to the loop). A failed
   * call (a connected socket's peer answered ICMP unreachable) is counted and consumes that error.
   */
  private drain(handler: BatchHandler): void {
    const rx = this.rx;
    for (let round = 0; round < 64 && !this.closed; round++) {
      let n: number;
      try {
        n = this.io.recv(this.fd, rx.data, rx.slot, rx.lens, rx.segs, rx.addrs);
      } catch {
        this.stats.recvErrors++;
        continue;
      }
      if (n === 0) return;
      let k = 0;
      for (let i = 0; i < n; i++) {
        const len = rx.lens[i]!;
        const seg = rx.segs[i]! || len;
        const base = i * rx.slot;
        for (let off = 0; off < len && k < rx.offsets.length; off += seg) {
          rx.offsets[k] = base + off;
          rx.lengths[k] = Math.min(seg, len - off);
          rx.addrIndex[k] = i;
          k++;
        }
      }
      this.stats.batches++;
      this.stats.datagrams += n;
      this.stats.packets += k;
      if (handler(k, rx.data, rx.offsets, rx.lengths, rx.addrs, rx.addrIndex) === false) return;
    }
  }

  /**
   * Sends `count` packets lying back to back in `data` (lengths in `lengths`, destinations in the
   * address slots `addrs`). Returns how many went out; fewer means the socket buffer is full.
   */
  send(data: Uint8Array, lengths: Uint32Array, addrs: Uint8Array, count: number): number {
    this.stats.sendCalls++;
    let sent: number;
    try {
      sent = this.io.send(this.fd, data, lengths, addrs, count, this.gso);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EGSO') throw new CbrError('SYSCALL_FAILED', `udp send: ${errorMessage(err)}`, { cause: err });
      // The path refused GSO (a device without checksum offload, an IPv6 route that needs it): plain from now on.
      this.gso = false;
      sent = this.io.send(this.fd, data, lengths, addrs, count, false);
    }
    this.stats.sent += sent;
    if (sent < count) this.stats.sendShort++;
    return sent;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.watch) this.io.unwatch(this.watch);
    this.io.close(this.fd);
  }
}
