// The few libc calls Node does not expose, through ffi-rs. Main thread only: ffi-rs crashes the
// process when a worker thread that loaded it exits (see DESIGN.md). Keep these off per-packet paths.
import { open, load, DataType } from 'ffi-rs';
import { CbrError } from '../errors.js';

const LIBC = 'libc';
let opened = false;
function ensureOpen(): void {
  if (opened) return;
  open({ library: LIBC, path: 'libc.so.6' });
  opened = true;
}

export class SyscallError extends CbrError {
  constructor(
    readonly call: string,
    readonly errno: number,
    message: string,
  ) {
    super('SYSCALL_FAILED', `${call}: ${message} (errno ${errno})`);
  }
}

function call(funcName: string, retType: DataType, paramsType: DataType[], paramsValue: unknown[]): number {
  ensureOpen();
  const r = load({ library: LIBC, funcName, retType, paramsType, paramsValue, errno: true }) as unknown as {
    value: number;
    errnoCode: number;
    errnoMessage: string;
  };
  if (r.value < 0) throw new SyscallError(funcName, r.errnoCode, r.errnoMessage);
  return r.value;
}

export const AF_UNIX = 1;
export const SOCK_DGRAM = 2;
export const SOCK_CLOEXEC = 0o2000000;

export function socket(domain: number, type: number, protocol = 0): number {
  return call('socket', DataType.I32, [DataType.I32, DataType.I32, DataType.I32], [domain, type, protocol]);
}

export function close(fd: number): void {
  call('close', DataType.I32, [DataType.I32], [fd]);
}

/** sendto(2) with a raw sockaddr; returns the bytes sent. */
export function sendto(fd: number, data: Buffer, flags: number, addr: Buffer): number {
  return call(
    'sendto',
    DataType.I64,
    [DataType.I32, DataType.U8Array, DataType.U64, DataType.I32, DataType.U8Array, DataType.U32],
    [fd, data, data.length, flags, addr, addr.length],
  );
}

/** ioctl(2) whose argument is a buffer the kernel reads and may write back into. */
export function ioctlBuffer(fd: number, request: number, arg: Buffer): number {
  return call('ioctl', DataType.I32, [DataType.I32, DataType.U64, DataType.U8Array], [fd, request, arg]);
}

/** struct sockaddr_un for a path, or for an abstract name written as "@name". */
export function sockaddrUn(path: string): Buffer {
  const name = Buffer.from(path.startsWith('@') ? `\0${path.slice(1)}` : path, 'utf8');
  if (name.length > 107) throw new Error(`unix socket path too long (${name.length} > 107 bytes): ${path}`);
  const addr = Buffer.alloc(2 + name.length + (path.startsWith('@') ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  return addr;
}
