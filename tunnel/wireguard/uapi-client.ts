// A small client for the WireGuard UAPI socket (/var/run/wireguard/<if>.sock): one connection per
// operation, bounded by a timeout, replies decoded by the pure codec in uapi.ts.
import { connect } from 'node:net';
import { encodeSet, decodeErrno, decodeGet, replyEnd, GET_REQUEST, UapiError, type DeviceSet, type DeviceState } from './uapi.js';

export const UAPI_DIR = '/var/run/wireguard';
const MAX_REPLY = 16 << 20;

export function uapiSocketPath(ifname: string, dir = UAPI_DIR): string {
  return `${dir}/${ifname}.sock`;
}

export class UapiClient {
  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 5_000,
  ) {}

  /** Sends one request and resolves with the raw reply (through the terminating blank line). */
  exchange(request: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const sock = connect(this.socketPath);
      let buf = '';
      let done = false;
      const finish = (err: Error | undefined, reply?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(reply!);
      };
      const timer = setTimeout(() => finish(new UapiError(`${this.socketPath}: no reply within ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.setEncoding('utf8');
      sock.on('connect', () => sock.write(request));
      sock.on('data', (chunk: string) => {
        buf += chunk;
        const end = replyEnd(buf);
        if (end >= 0) finish(undefined, buf.slice(0, end));
        else if (buf.length > MAX_REPLY) finish(new UapiError(`${this.socketPath}: reply larger than ${MAX_REPLY} bytes`));
      });
      sock.on('end', () => finish(new UapiError(`${this.socketPath}: connection closed before the reply ended`)));
      sock.on('error', (err: NodeJS.ErrnoException) => finish(new UapiError(`${this.socketPath}: ${err.code ?? err.message}`)));
    });
  }

  async get(): Promise<DeviceState> {
    return decodeGet(await this.exchange(GET_REQUEST));
  }

  /** Applies a set=1 request; throws UapiError (with errno) when the device refuses it. */
  async set(req: DeviceSet): Promise<void> {
    const errno = decodeErrno(await this.exchange(encodeSet(req)));
    if (errno !== 0) throw new UapiError(`${this.socketPath}: set refused with errno=${errno}`, errno);
  }
}
