// TUN devices: created with one ioctl through ffi-rs on the main thread, read by a worker thread
// doing blocking reads (the event loop never blocks), packets handed over in batches through a
// SharedArrayBuffer ring; writes are plain fs.writeSync (a TUN write never blocks).
import { openSync, closeSync, writeSync, constants as fsc } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ioctlBuffer } from './libc.js';
import { createRing, RingReader, SEQ, STOP, type RingBuffers } from './tun-ring.js';
import { CbrError, errorMessage } from '../errors.js';

const execFileAsync = promisify(execFile);
// ES2024 Atomics.waitAsync (in Node 20's V8; not in this TypeScript lib target).
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> | string } }).waitAsync;

export const TUNSETIFF = 0x400454ca;
export const IFF_TUN = 0x0001;
export const IFF_NO_PI = 0x1000;
export const IFF_MULTI_QUEUE = 0x0100;
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
  exited: Promise<void>;
}

export class TunDevice {
  private handler: TunPacketHandler = () => {};
  private readonly queues: Queue[] = [];
  private closed = false;
  private nextWrite = 0;
  /** Packets read and written, and writes the kernel refused (malformed packet, device down). */
  readonly stats = { rxPackets: 0, txPackets: 0, txErrors: 0, rxBatches: 0 };

  private constructor(
    readonly name: string,
    readonly mtu: number,
    private readonly mode: TunReadMode,
  ) {}

  /** Creates (or attaches to) the interface; it exists as long as this object keeps it open. */
  static open(opts: TunOptions): TunDevice {
    const queues = opts.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > 16) throw new TunError(`tun queues must be 1..16, got ${queues}`);
    if (Buffer.byteLength(opts.name) >= IFNAMSIZ || opts.name.length === 0)
      throw new TunError(`tun name must be 1..15 bytes, got ${JSON.stringify(opts.name)}`);
    const mtu = opts.mtu ?? 1500;
    const fds: number[] = [];
    let name = opts.name;
    try {
      for (let i = 0; i < queues; i++) {
        const fd = openSync('/dev/net/tun', fsc.O_RDWR);
        fds.push(fd);
        const ifr = Buffer.alloc(40);
        ifr.write(name, 0, IFNAMSIZ - 1, 'utf8');
        ifr.writeUInt16LE(IFF_TUN | IFF_NO_PI | (queues > 1 ? IFF_MULTI_QUEUE : 0), IFNAMSIZ);
        ioctlBuffer(fd, TUNSETIFF, ifr);
        name = ifr.toString('utf8', 0, ifr.indexOf(0) >= 0 && ifr.indexOf(0) < IFNAMSIZ ? ifr.indexOf(0) : IFNAMSIZ);
      }
    } catch (err) {
      for (const fd of fds) closeSync(fd);
      throw new TunError(`cannot create tun ${opts.name}: ${errorMessage(err)}`);
    }
    const dev = new TunDevice(name, mtu, opts.mode ?? 'ring');
    for (const fd of fds) dev.startReader(fd, opts.ringBytes ?? 4 << 20);
    return dev;
  }

  private startReader(fd: number, ringBytes: number): void {
    const ring = this.mode === 'ring' ? createRing(ringBytes) : undefined;
    const worker = new Worker(new URL('./tun-reader.js', import.meta.url), { workerData: { fd, mtu: this.mtu, mode: this.mode, ring } });
    worker.unref();
    const q: Queue = { fd, worker, ring, exited: new Promise((r) => worker.once('exit', () => r())) };
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

  /** Writes one IP packet into the kernel; false (and counted) when the kernel refuses it. */
  write(packet: Uint8Array): boolean {
    const q = this.queues[this.nextWrite];
    if (!q || this.closed) return false;
    if (this.queues.length > 1) this.nextWrite = (this.nextWrite + 1) % this.queues.length;
    try {
      writeSync(q.fd, packet);
      this.stats.txPackets++;
      return true;
    } catch {
      this.stats.txErrors++;
      return false;
    }
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
