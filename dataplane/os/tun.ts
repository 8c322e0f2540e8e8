// TUN devices: created with one ioctl through ffi-rs on the main thread, read by a worker thread
// doing blocking reads (the event loop never blocks), packets handed over in batches through a
// SharedArrayBuffer ring. With the native addon the TUN is opened with offloads (IFF_VNET_HDR,
// TUNSETOFFLOAD, see native/cbr_tun.c): writes are queued and flushed once per event-loop turn,
// TCP segments of one flow coalesced into GSO super-packets; the reader splits the super-packets
// the kernel hands out. Without the addon, when the kernel refuses the offloads, or with
// CBR_TUN_OFFLOAD=0, writes are plain fs.writeSync, one packet per call (a TUN write never blocks).
import { openSync, closeSync, writeSync, constants as fsc } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ioctlBuffer } from './libc.js';
import { createRing, RingReader, SEQ, STOP, type RingBuffers } from './tun-ring.js';
import { CbrError, errorMessage } from '../errors.js';
import { nativeIo, type Addon } from './udp-batch.js';

const execFileAsync = promisify(execFile);
// ES2024 Atomics.waitAsync (in Node 20's V8; not in this TypeScript lib target).
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

export const TUNSETIFF = 0x400454ca;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_MULTI_QUEUE = 0x0100;
export const IFF_VNET_HDR = 0x4000;
export const TUN_F_USO = 0x20 | 0x40;
/** Queued write bytes flushed at once (a flush also happens at TUN_MAX_BATCH packets). */
const TX_BYTES = 1 << 20;
const IFNAMSIZ = 16;

export type TunReadMode = 'ring' | 'message';

export interface TunOptions {
  /** Interface name (≤ 15 bytes); a `%d` in it lets the kernel pick the number. */
  name: string;
  mtu?: number;
  /** Queues (IFF_MULTI_QUEUE when > 1), each with its own reader worker. */
  queues?: number;
  /** How the reader hands packets over: the shared ring (default, fastest measured) or postMessage per packet. */
  mode?: TunReadMode;
  /** Ring size per queue in bytes (default 4 MiB). */
  ringBytes?: number;
  /**
   * Use the kernel's offloads through the native addon (default: on unless CBR_TUN_OFFLOAD=0);
   * without the addon or when the kernel refuses them the device silently runs without.
   */
  offload?: boolean;
}

/** Whether offloads are wanted by default: CBR_TUN_OFFLOAD=0 switches them off. */
export function tunOffloadDefault(): boolean {
  return process.env.CBR_TUN_OFFLOAD !== '0';
}

export class TunError extends CbrError {
  constructor(message: string) {
    super('TUN_FAILED', message);
  }
}

/**
 * One packet batch per event-loop turn at most; packets are IPv4/IPv6 datagrams (no packet-info
 * header). In ring mode they are views into the shared ring, valid only until the handler returns
 * (the handler may modify them in place; copy what must outlive the call).
 */
export type TunPacketHandler = (packets: Buffer[]) => void;

interface Queue {
  fd: number;
  worker: Worker;
  ring?: RingBuffers;
  reader?: RingReader;
  /** Read-side offload counters the worker adds to: super-packets, segments, checksums, malformed. */
  rxOffload: Float64Array;
  exited: Promise<void>;
}

/** The queue fds, the name the kernel gave, and the TUN_F_* offload flags taken (0: none). */
interface Opened {
  fds: number[];
  name: string;
  offloadFlags: number;
}

function openQueues(name: string, queues: number, io: Addon | undefined): Opened {
  const fds: number[] = [];
  try {
    for (let i = 0; i < queues; i++) {
      const fd = openSync('/dev/net/tun', fsc.O_RDWR);
      fds.push(fd);
      const ifr = Buffer.alloc(40);
      ifr.write(name, 0, IFNAMSIZ - 1, 'utf8');
      ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (queues > 1 ? IFF_MULTI_QUEUE : 0) | (io ? IFF_VNET_HDR : 0), IFNAMSIZ);
      ioctlBuffer(fd, TUNSETIFF, ifr);
      name = ifr.toString('utf8', 0, ifr.indexOf(0) >= 0 && ifr.indexOf(0) < IFNAMSIZ ? ifr.indexOf(0) : IFNAMSIZ);
    }
    let offloadFlags = 0;
    if (io) for (const fd of fds) offloadFlags = io.tunOffload(fd);
    return { fds, name, offloadFlags };
  } catch (err) {
    for (const fd of fds) closeSync(fd);
    throw err;
  }
}

/**
 * The read-side offload counters (super-packets split, the packets they became, checksums completed,
 * malformed reads): each reader worker adds to its queue's shared array; they are summed when read.
 */
function rxOffloadCounters(queues: readonly Queue[]) {
  const sum = (i: number) => queues.reduce((n, q) => n + q.rxOffload[i]!, 0);
  return {
    get rxSuperPackets() {
      return sum(0);
    },
    get rxSegments() {
      return sum(1);
    },
    get rxChecksums() {
      return sum(2);
    },
    get rxMalformed() {
      return sum(3);
    },
  };
}

export class TunDevice {
  private handler: TunPacketHandler = () => {};
  private readonly queues: Queue[] = [];
  private closed = false;
  private nextWrite = 0;
  /**
   * Packets read and written, writes the kernel refused (malformed packet, device down), and with
   * offloads: write syscalls, packets coalesced into super-packets and those super-packets, super-
   * packets split on read and the packets they became, partial checksums completed, reads dropped
   * because their vnet header did not describe the packet.
   */
  readonly stats = Object.assign(rxOffloadCounters(this.queues), {
    rxPackets: 0,
    txPackets: 0,
    txErrors: 0,
    rxBatches: 0,
    txWrites: 0,
    txCoalesced: 0,
    txSuperPackets: 0,
  });
  /** The native addon when offloads are on (writes are queued and flushed in batches). */
  private readonly io: Addon | undefined;
  private readonly tx: Uint8Array | undefined;
  private readonly txLens: Uint32Array;
  private readonly txResult = new Uint32Array(5);
  private txCount = 0;
  private txUsed = 0;
  private flushQueued = false;
  /** The kernel took USO (TUN_F_USO4|TUN_F_USO6): UDP datagrams are coalesced too. */
  private readonly uso: boolean;

  private constructor(
    readonly name: string,
    readonly mtu: number,
    private readonly mode: TunReadMode,
    /** TUN_F_* flags the kernel took (0: offloads off, plain packets). */
    readonly offloadFlags: number,
    io: Addon | undefined,
  ) {
    this.io = offloadFlags ? io : undefined;
    this.tx = this.io ? new Uint8Array(TX_BYTES) : undefined;
    this.txLens = new Uint32Array(this.io ? this.io.TUN_MAX_BATCH : 0);
    this.uso = (offloadFlags & TUN_F_USO) === TUN_F_USO;
  }

  /** Whether the device runs with the kernel's offloads (vnet header, coalesced writes, split reads). */
  get offload(): boolean {
    return this.io !== undefined;
  }

  /** Creates (or attaches to) the interface; it exists as long as this object keeps it open. */
  static open(opts: TunOptions): TunDevice {
    const queues = opts.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > 16) throw new TunError(`tun queues must be 1..16, got ${queues}`);
    if (Buffer.byteLength(opts.name) >= IFNAMSIZ || opts.name.length === 0)
      throw new TunError(`tun name must be 1..15 bytes, got ${JSON.stringify(opts.name)}`);
    const mtu = opts.mtu ?? 1500;
    const io = (opts.offload ?? tunOffloadDefault()) ? nativeIo() : undefined;
    let opened: Opened | undefined;
    if (io) {
      try {
        opened = openQueues(opts.name, queues, io);
      } catch {
        // An old kernel without TUNSETOFFLOAD (or a name in use): the plain path below says which.
        opened = undefined;
      }
    }
    try {
      opened ??= openQueues(opts.name, queues, undefined);
    } catch (err) {
      throw new TunError(`cannot create tun ${opts.name}: ${errorMessage(err)}`);
    }
    const dev = new TunDevice(opened.name, mtu, opts.mode ?? 'ring', opened.offloadFlags, io);
    for (const fd of opened.fds) dev.startReader(fd, opts.ringBytes ?? 4 << 20);
    return dev;
  }

  private startReader(fd: number, ringBytes: number): void {
    const ring = this.mode === 'ring' ? createRing(ringBytes) : undefined;
    const rxOffload = new Float64Array(new SharedArrayBuffer(4 * 8));
    const worker = new Worker(new URL('./tun-reader.js', import.meta.url), {
      workerData: { fd, mtu: this.mtu, mode: this.mode, ring, vnet: this.offload, rxOffload: rxOffload.buffer },
    });
    worker.unref();
    const q: Queue = { fd, worker, ring, rxOffload, exited: new Promise((r) => worker.once('exit', () => r())) };
    if (ring) {
      q.reader = new RingReader(ring);
      void this.ringLoop(q);
    } else {
      // Message mode: collect what arrives in this turn and deliver it as one batch.
      const batch: Buffer[] = [];
      worker.on('message', (m: Uint8Array | { exit: string }) => {
        if (!(m instanceof Uint8Array)) return;
        if (batch.length === 0) setImmediate(() => this.deliver(batch.splice(0)));
        batch.push(Buffer.from(m.buffer, m.byteOffset, m.byteLength));
      });
    }
    worker.on('error', () => {});
    this.queues.push(q);
  }

  private async ringLoop(q: Queue): Promise<void> {
    const ctrl = q.reader!.ctrl;
    let seen = Atomics.load(ctrl, SEQ);
    while (!this.closed) {
      const w = waitAsync(ctrl, SEQ, seen);
      if (w.async) {
        // Keeps the process alive only while a handler is interested; close() wakes us.
        await w.value;
      }
      seen = Atomics.load(ctrl, SEQ);
      if (this.closed) return;
      // Views into the ring, freed when the handler returns: no copy and no allocation per packet.
      q.reader!.drainViews(this.deliverFn);
    }
  }

  private readonly deliverFn = (pkts: Buffer[]): void => this.deliver(pkts);

  private deliver(pkts: Buffer[]): void {
    this.stats.rxPackets += pkts.length;
    this.stats.rxBatches++;
    this.handler(pkts);
  }

  onPackets(handler: TunPacketHandler): void {
    this.handler = handler;
  }

  /**
   * Writes one IP packet into the kernel; false (and counted) when the kernel refuses it. With
   * offloads the packet is copied into the write batch and true means queued: the batch goes out
   * at the end of this event-loop turn (or when full), and the kernel's refusals are counted in
   * `stats.txErrors` then.
   */
  write(packet: Uint8Array): boolean {
    if (this.closed || this.queues.length === 0) return false;
    if (this.tx) return this.queueWrite(this.tx, packet);
    const q = this.queues[this.nextWrite]!;
    if (this.queues.length > 1) this.nextWrite = (this.nextWrite + 1) % this.queues.length;
    try {
      writeSync(q.fd, packet);
      this.stats.txPackets++;
      this.stats.txWrites++;
      return true;
    } catch {
      this.stats.txErrors++;
      return false;
    }
  }

  private queueWrite(tx: Uint8Array, packet: Uint8Array): boolean {
    const len = packet.length;
    if (len === 0 || len > 0xffff) {
      this.stats.txErrors++;
      return false;
    }
    if (this.txCount === this.txLens.length || this.txUsed + len > tx.length) this.flush();
    tx.set(packet, this.txUsed);
    this.txLens[this.txCount++] = len;
    this.txUsed += len;
    if (!this.flushQueued) {
      this.flushQueued = true;
      // After the poll phase: every packet the I/O callbacks of this turn produced goes in one batch.
      setImmediate(this.flushFn);
    }
    return true;
  }

  private readonly flushFn = (): void => {
    this.flushQueued = false;
    this.flush();
  };

  /** Hands the queued writes to the kernel (coalesced per TCP flow); one queue per batch. */
  flush(): void {
    if (!this.io || !this.tx || this.txCount === 0) return;
    const q = this.queues[this.nextWrite];
    if (this.queues.length > 1) this.nextWrite = (this.nextWrite + 1) % this.queues.length;
    const count = this.txCount;
    this.txCount = 0;
    this.txUsed = 0;
    if (!q) return;
    const r = this.txResult;
    this.io.tunWrite(q.fd, this.tx, this.txLens, count, r, this.uso);
    this.stats.txPackets += r[0]! - r[4]!;
    this.stats.txErrors += r[4]!;
    this.stats.txWrites += r[1]!;
    this.stats.txCoalesced += r[2]!;
    this.stats.txSuperPackets += r[3]!;
  }

  private netns: string | undefined;

  /** Moves the interface into a network namespace (the fds stay attached); later calls act there. */
  async moveToNetns(netns: string): Promise<void> {
    await ip(['link', 'set', 'dev', this.name, 'netns', netns], this.netns);
    this.netns = netns;
  }

  /** Sets MTU, brings the link up, adds addresses (CIDR) and routes through iproute2. */
  async configure(opts: { addresses?: string[]; routes?: string[]; up?: boolean } = {}): Promise<void> {
    await ip(['link', 'set', 'dev', this.name, 'mtu', String(this.mtu)], this.netns);
    for (const a of opts.addresses ?? []) await ip(['addr', 'add', a, 'dev', this.name, ...(a.includes(':') ? ['nodad'] : [])], this.netns);
    if (opts.up !== false) await ip(['link', 'set', 'dev', this.name, 'up'], this.netns);
    for (const r of opts.routes ?? []) await ip(['route', 'replace', r, 'dev', this.name], this.netns);
  }

  /**
   * Stops the readers and removes the interface. A blocking read is woken by deleting the link
   * (the kernel then fails the read), so no worker is left behind.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    for (const q of this.queues) {
      if (q.ring) {
        const ctrl = new Int32Array(q.ring.control);
        Atomics.store(ctrl, STOP, 1);
        Atomics.notify(ctrl, SEQ);
      }
    }
    // Hold the loop open until the readers have gone (they are unref'd while running).
    for (const q of this.queues) q.worker.ref();
    try {
      await ip(['link', 'del', 'dev', this.name], this.netns);
    } catch {
      /* already gone */
    }
    await Promise.race([Promise.all(this.queues.map((q) => q.exited)), new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const q of this.queues) {
      try {
        closeSync(q.fd);
      } catch {
        /* closed */
      }
    }
  }
}

async function ip(args: string[], netns?: string): Promise<void> {
  try {
    await execFileAsync('ip', netns ? ['-n', netns, ...args] : args, { timeout: 10_000 });
  } catch (err) {
    throw new TunError(`ip ${args.join(' ')}: ${((err as { stderr?: string }).stderr ?? String(err)).trim()}`);
  }
}
