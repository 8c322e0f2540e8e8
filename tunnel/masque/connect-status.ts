// What `cbr connect` is doing, for the person running it: on a terminal one status line rewritten in
// place (the PoP reached, the addresses assigned, time until the token expires, bytes each way,
// reconnects, and the state in words); when the output is not a terminal, one JSON line per change.
import { getHeader, type HeaderField } from '../h3/index.js';
import { errorCode } from '../../dataplane/index.js';
import { MasqueHttpError, type SessionEnd } from './client.js';

export type ConnectState =
  | 'connecting'
  | 'connected'
  | 'refreshing the token'
  | 'reconnecting after a reset'
  | 'reconnecting'
  | 'certificate error'
  | 'refused'
  | 'stopped';

export interface StatusOutput {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** The state a failed connection attempt leaves the client in. */
export function stateForFailure(err: unknown): ConnectState {
  if (err instanceof MasqueHttpError) return 'refused';
  if (errorCode(err) === 'TLS_CERTIFICATE_REJECTED') return 'certificate error';
  return 'reconnecting';
}

/** The state after a session ended on its own (a stream reset, a close by the server, or a stateless reset). */
export function stateForEnd(end: SessionEnd): ConnectState {
  if (end.by === 'reset') return 'reconnecting after a reset';
  if (end.by === 'connection' && (end.reason.by === 'peer' || end.reason.by === 'stateless-reset')) return 'reconnecting after a reset';
  return 'reconnecting';
}

function bytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function seconds(s: number): string {
  if (s <= 0) return 'expired';
  if (s < 120) return `${Math.floor(s)}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export class ConnectStatus {
  state: ConnectState = 'connecting';
  detail?: string;
  pop?: string;
  addresses: string[] = [];
  /** Token expiry, Unix seconds. */
  expiresAt?: number;
  bytesUp = 0;
  bytesDown = 0;
  reconnects = 0;
  private readonly timer?: NodeJS.Timeout;

  /** `out` gets the status (stdout), `errOut` the log lines (stderr). */
  constructor(
    private readonly out: StatusOutput,
    private readonly errOut: StatusOutput,
    private readonly now: () => number = Date.now,
  ) {
    // On a terminal the line ticks (token countdown, bytes); elsewhere only changes are written.
    if (out.isTTY) this.timer = setInterval(() => this.draw(), 1000).unref();
  }

  /** A state change (and its detail); written at once. */
  set(state: ConnectState, detail?: string): void {
    if (state === this.state && detail === this.detail) return;
    if (state === 'connecting' && this.state !== 'connecting' && this.state !== 'stopped') this.reconnects++;
    this.state = state;
    this.detail = detail;
    this.emit();
  }

  /** A session is open: the PoP's name from its `cbr-pop` header, the addresses (connect-ip) or target (connect-udp). */
  connected(o: { headers: readonly HeaderField[]; addresses: string[]; expiresAt?: number }): void {
    this.pop = getHeader(o.headers, 'cbr-pop');
    this.addresses = o.addresses;
    this.expiresAt = o.expiresAt;
    this.set('connected');
  }

  /** A log line to errOut; on a terminal the status line is cleared first and drawn again below it. */
  log(line: string): void {
    if (this.out.isTTY) this.out.write('\r\x1b[K');
    this.errOut.write(`${line}\n`);
    if (this.out.isTTY) this.draw();
  }

  snapshot() {
    return {
      time: new Date(this.now()).toISOString(),
      state: this.state,
      ...(this.detail ? { detail: this.detail } : {}),
      pop: this.pop ?? null,
      addresses: this.addresses,
      tokenExpiresInS: this.expiresAt === undefined ? null : Math.round(this.expiresAt - this.now() / 1000),
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      reconnects: this.reconnects,
    };
  }

  /** The status line's text (without colour or cursor control). */
  line(): string {
    const parts = [this.detail ? `${this.state}: ${this.detail}` : this.state];
    if (this.pop) parts.push(`PoP ${this.pop}`);
    if (this.addresses.length) parts.push(this.addresses.join(' '));
    if (this.expiresAt !== undefined) parts.push(`token ${seconds(this.expiresAt - this.now() / 1000)}`);
    parts.push(`↑ ${bytes(this.bytesUp)} ↓ ${bytes(this.bytesDown)}`);
    parts.push(`${this.reconnects} reconnect${this.reconnects === 1 ? '' : 's'}`);
    return parts.join(' · ');
  }

  close(): void {
    clearInterval(this.timer);
    this.set('stopped');
    if (this.out.isTTY) this.out.write('\n');
  }

  private emit(): void {
    if (this.out.isTTY) this.draw();
    else this.out.write(`${JSON.stringify(this.snapshot())}\n`);
  }

  private draw(): void {
    const colour = this.state === 'connected' ? '32' : this.state === 'certificate error' || this.state === 'refused' ? '31' : '33';
    const text = this.line();
    const width = this.out.columns ?? 120;
    this.out.write(`\r\x1b[K\x1b[${colour}m${text.length > width - 1 ? `${text.slice(0, width - 2)}…` : text}\x1b[0m`);
  }
}
