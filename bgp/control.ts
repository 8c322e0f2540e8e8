// A client for BIRD's control socket: one connection, commands one at a time (replies carry no
// tag, so order is the only way to pair them), the greeting consumed on connect, spontaneous "+"
// lines passed to a listener. Decoding lives in reply.ts.
import { connect, type Socket } from 'node:net';
import { BirdReplyDecoder, BirdProtocolError, isErrorReply, replyErrorText, type BirdReply } from './reply.js';
import { CbrError, errorMessage } from '../dataplane/index.js';

export class BirdCommandError extends CbrError {
  constructor(
    readonly command: string,
    readonly reply: BirdReply,
  ) {
    super('BIRD_COMMAND_FAILED', `BIRD refused "${command}": ${replyErrorText(reply)}`);
  }
}

interface Pending {
  command: string;
  resolve: (r: BirdReply) => void;
  reject: (e: Error) => void;
  timer?: NodeJS.Timeout;
}

export interface BirdControlOptions {
  socketPath: string;
  /** Per command (and for the greeting). */
  timeoutMs?: number;
  onSpontaneous?: (text: string) => void;
}

export class BirdControl {
  private socket?: Socket;
  private connecting?: Promise<Socket>;
  private decoder = new BirdReplyDecoder();
  private queue: Pending[] = [];
  private inFlight?: Pending;
  private greeting?: { resolve: () => void; reject: (e: Error) => void };
  private closed = false;

  constructor(private readonly opts: BirdControlOptions) {}

  get connected(): boolean {
    return this.socket !== undefined && !this.connecting;
  }

  /** Sends a command and resolves with BIRD's reply; a reply with an 8xxx/9xxx code rejects with BirdCommandError. */
  async command(command: string): Promise<BirdReply> {
    const reply = await this.raw(command);
    if (isErrorReply(reply)) throw new BirdCommandError(command, reply);
    return reply;
  }

  /** Sends a command and resolves with whatever reply comes, errors included. */
  raw(command: string): Promise<BirdReply> {
    if (/[\r\n]/.test(command)) return Promise.reject(new Error('a BIRD command is one line'));
    if (this.closed) return Promise.reject(new Error('BIRD control client is closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ command, resolve, reject });
      void this.pump();
    });
  }

  /** Drops the connection (pending commands fail); the next command reconnects. */
  reset(reason = 'connection reset'): void {
    const s = this.socket;
    this.socket = undefined;
    this.connecting = undefined;
    s?.destroy();
    this.decoder = new BirdReplyDecoder();
    const err = new Error(`BIRD control socket: ${reason}`);
    this.greeting?.reject(err);
    this.greeting = undefined;
    if (this.inFlight) {
      clearTimeout(this.inFlight.timer);
      this.inFlight.reject(err);
      this.inFlight = undefined;
    }
  }

  close(): void {
    this.closed = true;
    this.reset('closed');
    for (const p of this.queue.splice(0)) p.reject(new Error('BIRD control client is closed'));
  }

  private async pump(): Promise<void> {
    if (this.inFlight || this.queue.length === 0) return;
    let socket: Socket;
    try {
      socket = await this.ensureConnected();
    } catch (err) {
      for (const p of this.queue.splice(0)) p.reject(err as Error);
      return;
    }
    if (this.inFlight || this.queue.length === 0) return;
    const p = this.queue.shift()!;
    this.inFlight = p;
    p.timer = setTimeout(() => this.reset(`no reply to "${p.command}" within ${this.timeoutMs} ms`), this.timeoutMs);
    socket.write(`${p.command}\n`);
  }

  private get timeoutMs(): number {
    return this.opts.timeoutMs ?? 5000;
  }

  private ensureConnected(): Promise<Socket> {
    if (this.socket && !this.connecting) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<Socket>((resolve, reject) => {
      const s = connect(this.opts.socketPath);
      this.socket = s;
      this.decoder = new BirdReplyDecoder();
      const timer = setTimeout(() => this.reset(`no greeting within ${this.timeoutMs} ms`), this.timeoutMs);
      this.greeting = {
        resolve: () => {
          clearTimeout(timer);
          this.greeting = undefined;
          this.connecting = undefined;
          resolve(s);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      s.on('data', (chunk: Buffer) => this.onData(s, chunk));
      s.on('error', (err) => {
        if (this.socket === s) this.reset(err.message);
      });
      s.on('close', () => {
        if (this.socket === s) this.reset('closed by BIRD');
        void this.pump();
      });
    });
    return this.connecting;
  }

  private onData(s: Socket, chunk: Buffer): void {
    if (this.socket !== s) return;
    let messages: ReturnType<BirdReplyDecoder['push']>;
    try {
      messages = this.decoder.push(chunk);
    } catch (err) {
      this.reset(err instanceof BirdProtocolError ? `protocol error: ${err.message}` : String(err));
      return;
    }
    for (const m of messages) {
      if (m.kind === 'spontaneous') {
        this.opts.onSpontaneous?.(m.text);
        continue;
      }
      if (this.greeting) {
        // 0001 "BIRD x.y.z ready." — anything else means this is not BIRD's control socket.
        if (m.reply.code === 1 || m.reply.code === 0) this.greeting.resolve();
        else this.reset(`unexpected greeting ${m.reply.code}`);
        continue;
      }
      const p = this.inFlight;
      if (!p) {
        this.reset(`reply ${m.reply.code} without a command`);
        return;
      }
      clearTimeout(p.timer);
      this.inFlight = undefined;
      p.resolve(m.reply);
    }
    void this.pump();
  }
}

/** Connects, waiting until BIRD's socket answers or the deadline passes. */
export async function waitForBird(control: BirdControl, deadlineMs: number): Promise<void> {
  const until = Date.now() + deadlineMs;
  let last: unknown;
  for (;;) {
    try {
      await control.command('show status');
      return;
    } catch (err) {
      last = err;
      if (Date.now() > until) throw new Error(`BIRD control socket did not answer within ${deadlineMs} ms: ${errorMessage(last)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
