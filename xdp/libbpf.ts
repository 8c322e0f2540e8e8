// A small libbpf binding (libbpf.so.1 from Debian's libbpf1) through ffi-rs. Main thread only (see
// DESIGN.md: ffi-rs in a worker crashes the process on exit); every call costs a few µs, so this is
// for control-plane work (load, attach, map sync, counters), never per packet.
// Pointers cross as plain numbers (user-space addresses fit in 2^53); memory the kernel reads or
// writes is malloc'd native memory viewed from JS through a zero-copy Buffer.
import { open, load, DataType, createExternalBuffer, type JsExternal } from 'ffi-rs';
import { constants as osConstants } from 'node:os';
import { CbrError, errorMessage } from '../dataplane/index.js';

const LIBBPF = 'cbr-libbpf';
const LIBC = 'cbr-libc';
let opened = false;

function ensureOpen(): void {
  if (opened) return;
  try {
    open({ library: LIBBPF, path: 'libbpf.so.1' });
  } catch (err) {
    throw new BpfError('dlopen', 0, `cannot load libbpf.so.1 (install Debian package libbpf1): ${errorMessage(err)}`, { cause: err });
  }
  open({ library: LIBC, path: 'libc.so.6' });
  opened = true;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([k, v]) => [v, k]));

/** E2BIG from a full hash map, ENOSPC from a full LPM trie. */
const MAP_FULL_ERRNOS = new Set([osConstants.errno.E2BIG, osConstants.errno.ENOSPC]);

export class BpfError extends CbrError {
  constructor(
    readonly call: string,
    readonly errno: number,
    detail?: string,
    options?: { cause?: unknown },
  ) {
    super(
      MAP_FULL_ERRNOS.has(errno) ? 'MAP_FULL' : 'BPF_FAILED',
      `${call}: ${detail ?? ERRNO_NAMES.get(errno) ?? 'error'}${errno ? ` (errno ${errno})` : ''}`,
      options,
    );
  }
}

function fn(library: string, funcName: string, retType: DataType, paramsType: DataType[]) {
  return (...paramsValue: unknown[]): number => {
    ensureOpen();
    return load({ library, funcName, retType, paramsType, paramsValue }) as unknown as number;
  };
}
function fnExternal(library: string, funcName: string, paramsType: DataType[]) {
  return (...paramsValue: unknown[]): JsExternal => {
    ensureOpen();
    return load({ library, funcName, retType: DataType.External, paramsType, paramsValue }) as unknown as JsExternal;
  };
}
function fnErrno(library: string, funcName: string, retType: DataType.I32 | DataType.U64, paramsType: DataType[]) {
  return (...paramsValue: unknown[]): { value: number; errno: number } => {
    ensureOpen();
    const r = load({ library, funcName, retType, paramsType, paramsValue, errno: true }) as unknown as { value: number; errnoCode: number };
    return { value: r.value, errno: r.errnoCode };
  };
}

const P = DataType.U64; // a pointer
const I = DataType.I32;
const U32 = DataType.U32;
const S = DataType.String;

const c = {
  malloc: fnExternal(LIBC, 'malloc', [P]),
  addrOf: fn(LIBC, 'memset', DataType.U64, [DataType.External, I, P]), // memset(p, 0, 0) returns p
  free: fn(LIBC, 'free', DataType.Void, [P]),
  close: fn(LIBC, 'close', I, [I]),
  if_nametoindex: fn(LIBC, 'if_nametoindex', DataType.U32, [S]),
  open_file: fnErrno(LIBBPF, 'bpf_object__open_file', P, [S, P]),
  obj_load: fn(LIBBPF, 'bpf_object__load', I, [P]),
  obj_close: fn(LIBBPF, 'bpf_object__close', DataType.Void, [P]),
  find_prog: fn(LIBBPF, 'bpf_object__find_program_by_name', P, [P, S]),
  prog_fd: fn(LIBBPF, 'bpf_program__fd', I, [P]),
  find_map: fn(LIBBPF, 'bpf_object__find_map_by_name', P, [P, S]),
  next_map: fn(LIBBPF, 'bpf_object__next_map', P, [P, P]),
  map_name: fn(LIBBPF, 'bpf_map__name', P, [P]),
  map_fd: fn(LIBBPF, 'bpf_map__fd', I, [P]),
  map_type: fn(LIBBPF, 'bpf_map__type', I, [P]),
  map_key_size: fn(LIBBPF, 'bpf_map__key_size', U32, [P]),
  map_value_size: fn(LIBBPF, 'bpf_map__value_size', U32, [P]),
  map_max_entries: fn(LIBBPF, 'bpf_map__max_entries', U32, [P]),
  map_set_max_entries: fn(LIBBPF, 'bpf_map__set_max_entries', I, [P, U32]),
  map_set_pin_path: fn(LIBBPF, 'bpf_map__set_pin_path', I, [P, S]),
  xdp_attach: fn(LIBBPF, 'bpf_xdp_attach', I, [I, I, U32, P]),
  xdp_detach: fn(LIBBPF, 'bpf_xdp_detach', I, [I, U32, P]),
  xdp_query_id: fn(LIBBPF, 'bpf_xdp_query_id', I, [I, I, P]),
  link_create: fn(LIBBPF, 'bpf_link_create', I, [I, I, I, P]),
  link_update: fn(LIBBPF, 'bpf_link_update', I, [I, I, P]),
  link_detach: fn(LIBBPF, 'bpf_link_detach', I, [I]),
  obj_pin: fn(LIBBPF, 'bpf_obj_pin', I, [I, S]),
  obj_get: fn(LIBBPF, 'bpf_obj_get', I, [S]),
  obj_info: fn(LIBBPF, 'bpf_obj_get_info_by_fd', I, [I, P, P]),
  prog_get_fd_by_id: fn(LIBBPF, 'bpf_prog_get_fd_by_id', I, [U32]),
  map_update: fn(LIBBPF, 'bpf_map_update_elem', I, [I, P, P, P]),
  map_lookup: fn(LIBBPF, 'bpf_map_lookup_elem', I, [I, P, P]),
  map_delete: fn(LIBBPF, 'bpf_map_delete_elem', I, [I, P]),
  map_next_key: fn(LIBBPF, 'bpf_map_get_next_key', I, [I, P, P]),
  map_update_batch: fn(LIBBPF, 'bpf_map_update_batch', I, [I, P, P, P, P]),
  map_lookup_batch: fn(LIBBPF, 'bpf_map_lookup_batch', I, [I, P, P, P, P, P, P]),
  map_delete_batch: fn(LIBBPF, 'bpf_map_delete_batch', I, [I, P, P, P]),
  test_run: fn(LIBBPF, 'bpf_prog_test_run_opts', I, [I, P]),
  num_cpus: fn(LIBBPF, 'libbpf_num_possible_cpus', I, []),
};

/** malloc'd memory with a zero-copy Buffer view; free() it when done. */
export class NativeMem {
  readonly addr: number;
  readonly buf: Buffer;
  private freed = false;
  constructor(readonly size: number) {
    const ext = c.malloc(Math.max(size, 8));
    const addr = c.addrOf(ext, 0, 0);
    if (!addr) throw new BpfError('malloc', 12);
    this.addr = addr;
    this.buf = createExternalBuffer(ext, Math.max(size, 8)).subarray(0, size);
    this.buf.fill(0);
  }
  free(): void {
    if (this.freed) return;
    this.freed = true;
    c.free(this.addr);
  }
}

/** Runs fn with native copies of the given buffers; copies the native bytes back afterwards. */
function withNative<T>(bufs: Array<Buffer | number>, fnBody: (addrs: number[]) => T): T {
  const mems = bufs.map((b) =>
    typeof b === 'number'
      ? new NativeMem(b)
      : (() => {
          const m = new NativeMem(b.length);
          b.copy(m.buf);
          return m;
        })(),
  );
  try {
    return fnBody(mems.map((m) => m.addr));
  } finally {
    mems.forEach((m, i) => {
      const b = bufs[i];
      if (b !== undefined && typeof b !== 'number') m.buf.copy(b);
    });
    for (const m of mems) m.free();
  }
}

function check(call: string, rc: number): number {
  if (rc < 0) throw new BpfError(call, -rc);
  return rc;
}

export function possibleCpus(): number {
  return check('libbpf_num_possible_cpus', c.num_cpus());
}

export function ifNameToIndex(name: string): number {
  const idx = c.if_nametoindex(name);
  if (!idx) throw new BpfError('if_nametoindex', 19, `no interface named ${JSON.stringify(name)}`);
  return idx;
}

export function closeFd(fd: number): void {
  if (fd >= 0) c.close(fd);
}

export const BPF_MAP_TYPE = { HASH: 1, ARRAY: 2, PROG_ARRAY: 3, PERCPU_HASH: 5, PERCPU_ARRAY: 6, LPM_TRIE: 11, LRU_HASH: 9, LRU_PERCPU_HASH: 10 } as const;
const PERCPU_TYPES = new Set<number>([BPF_MAP_TYPE.PERCPU_HASH, BPF_MAP_TYPE.PERCPU_ARRAY, BPF_MAP_TYPE.LRU_PERCPU_HASH]);

export interface MapInfo {
  type: number;
  id: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
  flags: number;
  name: string;
}

/** bpf_obj_get_info_by_fd into a buffer of `size` bytes (the prefix of the info struct we read). */
function objInfo(fd: number, size: number): Buffer {
  const info = Buffer.alloc(size);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(info.length);
  withNative([info, len], ([i, l]) => check('bpf_obj_get_info_by_fd', c.obj_info(fd, i, l)));
  return info;
}

/** struct bpf_map_info (the prefix we read). */
export function mapInfo(fd: number): MapInfo {
  const info = objInfo(fd, 88);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    keySize: info.readUInt32LE(8),
    valueSize: info.readUInt32LE(12),
    maxEntries: info.readUInt32LE(16),
    flags: info.readUInt32LE(20),
    name: info.subarray(24, 40).toString('latin1').replace(/\0.*$/s, ''),
  };
}

export interface LinkInfo {
  type: number;
  id: number;
  progId: number;
  ifindex: number;
}
/** struct bpf_link_info for an XDP link: type, id, prog_id, then xdp.ifindex. */
export function linkInfo(fd: number): LinkInfo {
  const info = objInfo(fd, 64);
  return { type: info.readUInt32LE(0), id: info.readUInt32LE(4), progId: info.readUInt32LE(8), ifindex: info.readUInt32LE(16) };
}

export interface ProgInfo {
  type: number;
  id: number;
  tag: string;
  name: string;
}
/** struct bpf_prog_info: type, id, tag[8], ..., name[16] at offset 64. */
export function progInfo(fd: number): ProgInfo {
  const info = objInfo(fd, 96);
  return {
    type: info.readUInt32LE(0),
    id: info.readUInt32LE(4),
    tag: info.subarray(8, 16).toString('hex'),
    name: info.subarray(64, 80).toString('latin1').replace(/\0.*$/s, ''),
  };
}

export const BPF_ANY = 0;
export const BPF_NOEXIST = 1;
export const BPF_EXIST = 2;

/** A BPF map by fd, with element and batch operations on Buffers. */
export class BpfMap {
  readonly keySize: number;
  readonly valueSize: number;
  /** Bytes one lookup returns: valueSize, or valueSize rounded to 8 times the possible CPUs. */
  readonly valueBytes: number;
  readonly perCpu: boolean;
  readonly info: MapInfo;
  constructor(
    readonly fd: number,
    readonly name: string,
    private readonly ownsFd = false,
  ) {
    this.info = mapInfo(fd);
    this.keySize = this.info.keySize;
    this.valueSize = this.info.valueSize;
    this.perCpu = PERCPU_TYPES.has(this.info.type);
    this.valueBytes = this.perCpu ? Math.ceil(this.valueSize / 8) * 8 * possibleCpus() : this.valueSize;
  }

  static fromPin(path: string): BpfMap {
    const fd = objGet(path);
    return new BpfMap(fd, path.split('/').pop()!, true);
  }

  close(): void {
    if (this.ownsFd) closeFd(this.fd);
  }

  private checkKey(key: Buffer): void {
    if (key.length !== this.keySize) throw new BpfError(`${this.name}: key`, 22, `expected ${this.keySize} bytes, got ${key.length}`);
  }

  update(key: Buffer, value: Buffer, flags = BPF_ANY): void {
    this.checkKey(key);
    if (value.length !== this.valueBytes) throw new BpfError(`${this.name}: value`, 22, `expected ${this.valueBytes} bytes, got ${value.length}`);
    withNative([key, value], ([k, v]) => check(`bpf_map_update_elem(${this.name})`, c.map_update(this.fd, k, v, flags)));
  }

  lookup(key: Buffer): Buffer | undefined {
    this.checkKey(key);
    const value = Buffer.alloc(this.valueBytes);
    const rc = withNative([key, value], ([k, v]) => c.map_lookup(this.fd, k, v));
    if (rc === -2) return undefined;
    check(`bpf_map_lookup_elem(${this.name})`, rc);
    return value;
  }

  /** True when the key was there. */
  delete(key: Buffer): boolean {
    this.checkKey(key);
    const rc = withNative([key], ([k]) => c.map_delete(this.fd, k));
    if (rc === -2) return false;
    check(`bpf_map_delete_elem(${this.name})`, rc);
    return true;
  }

  /** Every key, by get_next_key (one call per key: fine for small maps). */
  keys(limit = 1 << 22): Buffer[] {
    const out: Buffer[] = [];
    const mem = new NativeMem(this.keySize * 2);
    try {
      let prev = 0;
      for (let i = 0; i < limit; i++) {
        const rc = c.map_next_key(this.fd, prev, mem.addr + this.keySize);
        if (rc === -2) break;
        check(`bpf_map_get_next_key(${this.name})`, rc);
        const k = Buffer.from(mem.buf.subarray(this.keySize));
        out.push(k);
        k.copy(mem.buf, 0);
        prev = mem.addr;
      }
    } finally {
      mem.free();
    }
    return out;
  }

  /** Writes many entries in one call per chunk (BPF_MAP_UPDATE_BATCH). */
  updateBatch(keys: Buffer[], values: Buffer[], flags = BPF_ANY): void {
    if (keys.length !== values.length) throw new BpfError(`${this.name}: updateBatch`, 22, 'keys and values differ in count');
    const CHUNK = 65536;
    for (let start = 0; start < keys.length; start += CHUNK) {
      const ks = keys.slice(start, start + CHUNK);
      const vs = values.slice(start, start + CHUNK);
      const kmem = new NativeMem(ks.length * this.keySize);
      const vmem = new NativeMem(vs.length * this.valueBytes);
      const opts = new NativeMem(24); // struct bpf_map_batch_opts { size_t sz; __u64 elem_flags; __u64 flags; }
      const count = new NativeMem(4);
      try {
        ks.forEach((k, i) => {
          this.checkKey(k);
          k.copy(kmem.buf, i * this.keySize);
        });
        vs.forEach((v, i) => {
          if (v.length !== this.valueBytes) throw new BpfError(`${this.name}: value`, 22, `expected ${this.valueBytes} bytes`);
          v.copy(vmem.buf, i * this.valueBytes);
        });
        opts.buf.writeBigUInt64LE(24n, 0);
        opts.buf.writeBigUInt64LE(BigInt(flags), 8);
        count.buf.writeUInt32LE(ks.length);
        check(`bpf_map_update_batch(${this.name})`, c.map_update_batch(this.fd, kmem.addr, vmem.addr, count.addr, opts.addr));
      } finally {
        for (const m of [kmem, vmem, opts, count]) m.free();
      }
    }
  }

  /** Deletes many keys (BPF_MAP_DELETE_BATCH); keys that are absent make the kernel stop with ENOENT, so callers pass present keys. */
  deleteBatch(keys: Buffer[]): void {
    const CHUNK = 65536;
    for (let start = 0; start < keys.length; start += CHUNK) {
      const ks = keys.slice(start, start + CHUNK);
      const kmem = new NativeMem(ks.length * this.keySize);
      const opts = new NativeMem(24);
      const count = new NativeMem(4);
      try {
        ks.forEach((k, i) => {
          this.checkKey(k);
          k.copy(kmem.buf, i * this.keySize);
        });
        opts.buf.writeBigUInt64LE(24n, 0);
        count.buf.writeUInt32LE(ks.length);
        check(`bpf_map_delete_batch(${this.name})`, c.map_delete_batch(this.fd, kmem.addr, count.addr, opts.addr));
      } finally {
        for (const m of [kmem, opts, count]) m.free();
      }
    }
  }

  /** Every entry by BPF_MAP_LOOKUP_BATCH, chunk by chunk. */
  lookupBatch(chunk = 4096): Array<{ key: Buffer; value: Buffer }> {
    const out: Array<{ key: Buffer; value: Buffer }> = [];
    const batchKeySize = Math.max(this.keySize, 8);
    const inB = new NativeMem(batchKeySize);
    const outB = new NativeMem(batchKeySize);
    const kmem = new NativeMem(chunk * this.keySize);
    const vmem = new NativeMem(chunk * this.valueBytes);
    const opts = new NativeMem(24);
    const count = new NativeMem(4);
    try {
      opts.buf.writeBigUInt64LE(24n, 0);
      let first = true;
      for (let guard = 0; guard < 1 << 20; guard++) {
        count.buf.writeUInt32LE(chunk);
        const rc = c.map_lookup_batch(this.fd, first ? 0 : inB.addr, outB.addr, kmem.addr, vmem.addr, count.addr, opts.addr);
        if (rc < 0 && rc !== -2) check(`bpf_map_lookup_batch(${this.name})`, rc);
        const n = count.buf.readUInt32LE();
        for (let i = 0; i < n; i++) {
          out.push({
            key: Buffer.from(kmem.buf.subarray(i * this.keySize, (i + 1) * this.keySize)),
            value: Buffer.from(vmem.buf.subarray(i * this.valueBytes, (i + 1) * this.valueBytes)),
          });
        }
        if (rc === -2) break;
        outB.buf.copy(inB.buf);
        first = false;
      }
    } finally {
      for (const m of [inB, outB, kmem, vmem, opts, count]) m.free();
    }
    return out;
  }
}

export function objPin(fd: number, path: string): void {
  check(`bpf_obj_pin(${path})`, c.obj_pin(fd, path));
}

export function objGet(path: string): number {
  const fd = c.obj_get(path);
  if (fd < 0) throw new BpfError(`bpf_obj_get(${path})`, -fd);
  return fd;
}

export const XDP_FLAGS = { UPDATE_IF_NOEXIST: 1, SKB_MODE: 2, DRV_MODE: 4, HW_MODE: 8, REPLACE: 16 } as const;
export const BPF_XDP_ATTACH_TYPE = 37;

export function xdpModeFlags(mode: 'native' | 'generic'): number {
  return mode === 'native' ? XDP_FLAGS.DRV_MODE : XDP_FLAGS.SKB_MODE;
}

/** Netlink attach (not tied to any fd: stays until detached). */
export function xdpAttach(ifindex: number, progFd: number, flags: number): void {
  check('bpf_xdp_attach', c.xdp_attach(ifindex, progFd, flags, 0));
}

export function xdpDetach(ifindex: number, flags: number): void {
  check('bpf_xdp_detach', c.xdp_detach(ifindex, flags, 0));
}

/** The id of the XDP program attached in this mode (flags: DRV/SKB, or 0 for whichever), 0 if none. */
export function xdpQueryId(ifindex: number, flags: number): number {
  const out = Buffer.alloc(4);
  withNative([out], ([o]) => check('bpf_xdp_query_id', c.xdp_query_id(ifindex, flags, o)));
  return out.readUInt32LE();
}

/** bpf_link_create for XDP; the link holds the attachment for as long as it (or its pin) lives. */
export function xdpLinkCreate(progFd: number, ifindex: number, flags: number): number {
  const opts = new NativeMem(16); // struct bpf_link_create_opts { size_t sz; __u32 flags; ... }
  try {
    opts.buf.writeBigUInt64LE(16n, 0);
    opts.buf.writeUInt32LE(flags, 8);
    return check('bpf_link_create', c.link_create(progFd, ifindex, BPF_XDP_ATTACH_TYPE, opts.addr));
  } finally {
    opts.free();
  }
}

/** Atomically swaps the program behind a link. */
export function linkUpdate(linkFd: number, progFd: number): void {
  check('bpf_link_update', c.link_update(linkFd, progFd, 0));
}

export function linkDetach(linkFd: number): void {
  check('bpf_link_detach', c.link_detach(linkFd));
}

export function progFdById(id: number): number {
  return check('bpf_prog_get_fd_by_id', c.prog_get_fd_by_id(id));
}

export interface TestRunResult {
  retval: number;
  /** Average ns per run as the kernel measured it. */
  durationNs: number;
  dataOut: Buffer;
}

/** BPF_F_TEST_XDP_LIVE_FRAMES (uapi bpf.h): run XDP on real frames and act on the verdict. */
const BPF_F_TEST_XDP_LIVE_FRAMES = 1 << 1;
/** The kernel's TEST_XDP_MAX_BATCH: the largest batch_size live-frames mode takes. */
export const TEST_XDP_MAX_BATCH = 256;
const U32_MAX = 0xffff_ffff;

/**
 * Fills struct bpf_test_run_opts and calls bpf_prog_test_run_opts; `fill` sets the mode's fields.
 * Layout: sz@0, data_in@8, data_out@16, data_size_in@24, data_size_out@28, ctx_in@32, ctx_out@40,
 * ctx_size_in@48, ctx_size_out@52, retval@56, repeat@60, duration@64, flags@68, cpu@72, batch_size@76.
 */
function testRun<T>(progFd: number, data: Buffer, outSize: number, read: (o: Buffer, out: NativeMem | undefined) => T, fill: (o: Buffer) => void): T {
  const inMem = new NativeMem(data.length);
  const outMem = outSize > 0 ? new NativeMem(outSize) : undefined;
  const opts = new NativeMem(80);
  try {
    data.copy(inMem.buf);
    const o = opts.buf;
    o.writeBigUInt64LE(80n, 0);
    o.writeBigUInt64LE(BigInt(inMem.addr), 8);
    if (outMem) {
      o.writeBigUInt64LE(BigInt(outMem.addr), 16);
      o.writeUInt32LE(outMem.size, 28);
    }
    o.writeUInt32LE(data.length, 24);
    fill(o);
    check('bpf_prog_test_run_opts', c.test_run(progFd, opts.addr));
    return read(o, outMem);
  } finally {
    for (const m of [inMem, outMem, opts]) m?.free();
  }
}

/** BPF_PROG_TEST_RUN through bpf_prog_test_run_opts. */
export function progTestRun(progFd: number, data: Buffer, repeat = 1): TestRunResult {
  return testRun(
    progFd,
    data,
    data.length + 256,
    (o, out) => ({ retval: o.readUInt32LE(56), durationNs: o.readUInt32LE(64), dataOut: Buffer.from(out!.buf.subarray(0, o.readUInt32LE(28))) }),
    (o) => o.writeInt32LE(repeat, 60),
  );
}

/**
 * BPF_PROG_TEST_RUN of an XDP program in live-frames mode (kernel >= 5.18): the kernel builds
 * `repeat` real frames from `data` (in batches of `batchSize`, on a page pool) and carries out each
 * verdict, so XDP_REDIRECT transmits the frame through the target's ndo_xdp_xmit and XDP_PASS hands
 * it to the stack. Runs in the calling thread until done; a signal ends it early (EINTR). Needs root.
 */
export function progTestRunLive(progFd: number, data: Buffer, opts: { repeat: number; batchSize?: number }): void {
  const batch = opts.batchSize ?? 64;
  if (!Number.isInteger(opts.repeat) || opts.repeat < 1 || opts.repeat > U32_MAX)
    throw new BpfError('bpf_prog_test_run_opts', 22, `live frames: repeat ${opts.repeat} is not an integer in 1..${U32_MAX}`);
  if (!Number.isInteger(batch) || batch < 1 || batch > TEST_XDP_MAX_BATCH)
    throw new BpfError('bpf_prog_test_run_opts', 22, `live frames: batch size ${batch} is not an integer in 1..${TEST_XDP_MAX_BATCH}`);
  testRun(
    progFd,
    data,
    0, // live frames take no data_out
    () => undefined,
    (o) => {
      o.writeUInt32LE(opts.repeat, 60);
      o.writeUInt32LE(BPF_F_TEST_XDP_LIVE_FRAMES, 68);
      o.writeUInt32LE(batch, 76);
    },
  );
}

export interface ObjectMapSpec {
  name: string;
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/** An opened (and, after load(), loaded) BPF object file. */
export class BpfObject {
  private ptr: number;
  private loaded = false;
  private constructor(
    ptr: number,
    readonly path: string,
  ) {
    this.ptr = ptr;
  }

  static open(path: string): BpfObject {
    const r = c.open_file(path, 0);
    if (!r.value) throw new BpfError(`bpf_object__open_file(${path})`, r.errno);
    return new BpfObject(r.value, path);
  }

  private mapPtr(name: string): number {
    const m = c.find_map(this.ptr, name);
    if (!m) throw new BpfError(`${this.path}: map ${name}`, 2, 'not in the object');
    return m;
  }

  mapNames(): string[] {
    const names: string[] = [];
    let m = 0;
    for (let i = 0; i < 1000; i++) {
      m = c.next_map(this.ptr, m);
      if (!m) break;
      const namePtr = c.map_name(m);
      names.push(readCString(namePtr));
    }
    return names;
  }

  mapSpec(name: string): ObjectMapSpec {
    const m = this.mapPtr(name);
    return { name, type: c.map_type(m), keySize: c.map_key_size(m), valueSize: c.map_value_size(m), maxEntries: c.map_max_entries(m) };
  }

  setMaxEntries(name: string, n: number): void {
    check(`bpf_map__set_max_entries(${name})`, c.map_set_max_entries(this.mapPtr(name), n));
  }

  /** Pins the map there on load, or reuses what is already pinned there. */
  setPinPath(name: string, path: string): void {
    check(`bpf_map__set_pin_path(${name})`, c.map_set_pin_path(this.mapPtr(name), path));
  }

  load(): void {
    check(`bpf_object__load(${this.path})`, c.obj_load(this.ptr));
    this.loaded = true;
  }

  progFd(name: string): number {
    if (!this.loaded) throw new BpfError(`${this.path}: program ${name}`, 22, 'object not loaded');
    const p = c.find_prog(this.ptr, name);
    if (!p) throw new BpfError(`${this.path}: program ${name}`, 2, 'not in the object');
    return check(`bpf_program__fd(${name})`, c.prog_fd(p));
  }

  /** The loaded map; its fd belongs to the object (valid until close()). */
  map(name: string): BpfMap {
    if (!this.loaded) throw new BpfError(`${this.path}: map ${name}`, 22, 'object not loaded');
    return new BpfMap(check(`bpf_map__fd(${name})`, c.map_fd(this.mapPtr(name))), name);
  }

  close(): void {
    if (this.ptr) c.obj_close(this.ptr);
    this.ptr = 0;
  }
}

const strlen = fn(LIBC, 'strlen', P, [P]);
const memcpyOut = fn(LIBC, 'memcpy', P, [P, P, P]);
function readCString(ptr: number): string {
  if (!ptr) return '';
  const n = strlen(ptr);
  const mem = new NativeMem(n);
  try {
    memcpyOut(mem.addr, ptr, n);
    return mem.buf.toString('utf8');
  } finally {
    mem.free();
  }
}

export function u32KeyBuf(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}
