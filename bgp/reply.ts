// BIRD's control-socket reply protocol, as pure functions over bytes and strings (no sockets here).
//
// Every line ends in "\n". A reply is a run of lines that ends with a line "DDDD text" (four digits
// and a space). Before it come "DDDD-text" lines (more follows) and " text" lines, which continue
// the previous line's code. Lines starting with "+" are spontaneous printouts (e.g. log echo) that
// may arrive between replies. Codes 0xxx are success, 1xxx table entries, 2xxx table headings,
// 8xxx run-time errors and 9xxx parse errors (BIRD's doc/reply_codes).
import { CbrError } from '../dataplane/index.js';

export class BirdProtocolError extends CbrError {
  constructor(message: string) {
    super('BIRD_PROTOCOL', message);
  }
}

export interface ReplyLine {
  /** The line's code; continuation lines (" text") carry the code of the line they continue. */
  code: number;
  text: string;
}

export interface BirdReply {
  /** Code of the final line. */
  code: number;
  /** Every line of the reply in order, the final one included. */
  lines: ReplyLine[];
}

export type BirdMessage = { kind: 'reply'; reply: BirdReply } | { kind: 'spontaneous'; text: string };

/** A reply with a final code of 8000 or above is BIRD refusing the command. */
export function isErrorReply(reply: BirdReply): boolean {
  return reply.code >= 8000;
}

/** The text of the reply's error lines (8xxx/9xxx), for messages. */
export function replyErrorText(reply: BirdReply): string {
  return (
    reply.lines
      .filter((l) => l.code >= 8000)
      .map((l) => l.text.trim())
      .join('; ') || `code ${reply.code}`
  );
}

const MAX_LINE_BYTES = 64 * 1024;
const MAX_REPLY_LINES = 1_000_000;

/**
 * Incremental decoder: push chunks as they arrive, get the complete messages out. Throws
 * BirdProtocolError on anything that is not the protocol; after that the decoder is unusable
 * (the connection should be closed).
 */
export class BirdReplyDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private lines: ReplyLine[] = [];
  private lastCode: number | undefined;
  private failed = false;

  push(chunk: Uint8Array): BirdMessage[] {
    if (this.failed) throw new BirdProtocolError('decoder already failed');
    const out: BirdMessage[] = [];
    let buf = this.pending.length ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk);
    let start = 0;
    try {
      for (;;) {
        const nl = buf.indexOf(0x0a, start);
        if (nl < 0) break;
        if (nl - start > MAX_LINE_BYTES) throw new BirdProtocolError(`line longer than ${MAX_LINE_BYTES} bytes`);
        const msg = this.line(buf.toString('utf8', start, nl));
        if (msg) out.push(msg);
        start = nl + 1;
      }
      buf = buf.subarray(start);
      if (buf.length > MAX_LINE_BYTES) throw new BirdProtocolError(`line longer than ${MAX_LINE_BYTES} bytes`);
    } catch (err) {
      this.failed = true;
      throw err;
    }
    this.pending = Buffer.from(buf);
    return out;
  }

  /** True when a reply has started but not ended, or a line is incomplete. */
  get midReply(): boolean {
    return this.lines.length > 0 || this.pending.length > 0;
  }

  private line(raw: string): BirdMessage | undefined {
    const text = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (text.startsWith('+')) return { kind: 'spontaneous', text: text.slice(1) };
    if (text.startsWith(' ')) {
      if (this.lastCode === undefined) throw new BirdProtocolError(`continuation line outside a reply: ${JSON.stringify(text.slice(0, 80))}`);
      this.addLine({ code: this.lastCode, text: text.slice(1) });
      return undefined;
    }
    const m = /^(\d{4})([ -])/.exec(text);
    if (!m) throw new BirdProtocolError(`expected a 4-digit code, got ${JSON.stringify(text.slice(0, 80))}`);
    const code = Number(m[1]);
    this.addLine({ code, text: text.slice(5) });
    if (m[2] === '-') {
      this.lastCode = code;
      return undefined;
    }
    const reply: BirdReply = { code, lines: this.lines };
    this.lines = [];
    this.lastCode = undefined;
    return { kind: 'reply', reply };
  }

  private addLine(l: ReplyLine): void {
    if (this.lines.length >= MAX_REPLY_LINES) throw new BirdProtocolError(`reply longer than ${MAX_REPLY_LINES} lines`);
    this.lines.push(l);
  }
}

/** Decodes a complete byte string (tests, one-shot use); a trailing partial line is an error. */
export function decodeAll(bytes: Uint8Array): BirdMessage[] {
  const d = new BirdReplyDecoder();
  const out = d.push(bytes);
  if (d.midReply) throw new BirdProtocolError('input ends inside a reply');
  return out;
}

/** Encodes a reply the way BIRD writes it (tests and fakes): "-" for all but the last line, " " for repeats of a code. */
export function encodeReply(reply: BirdReply): string {
  let out = '';
  let prev: number | undefined;
  reply.lines.forEach((l, i) => {
    const last = i === reply.lines.length - 1;
    if (!last && l.code === prev) out += ` ${l.text}\n`;
    else out += `${String(l.code).padStart(4, '0')}${last ? ' ' : '-'}${l.text}\n`;
    prev = l.code;
  });
  return out;
}

// ---- Readers of specific replies (pure; fed with BirdReply lines) ----

export interface ProtocolRow {
  name: string;
  proto: string;
  table: string;
  state: string;
  since: string;
  info: string;
}

/**
 * Rows of `show protocols` (code 1002). Needs `timeformat protocol iso long` in the config, so that
 * "since" is exactly two words (date and time) and everything after it is the info column.
 */
export function parseProtocols(reply: BirdReply): ProtocolRow[] {
  const rows: ProtocolRow[] = [];
  for (const l of reply.lines) {
    if (l.code !== 1002) continue;
    const words = l.text.trim().split(/\s+/);
    if (words.length < 6) throw new BirdProtocolError(`unexpected protocol row: ${JSON.stringify(l.text.slice(0, 120))}`);
    const [name, proto, table, state, date, time, ...info] = words as [string, string, string, string, string, string, ...string[]];
    rows.push({ name, proto, table, state, since: `${date} ${time}`, info: info.join(' ') });
  }
  return rows;
}

/** BGP session state from a `show protocols` row's info ("Established", "Active", "Connect Socket: …"). */
export function bgpSessionState(row: ProtocolRow): string {
  return row.info.split(/\s+/)[0] || (row.state === 'down' ? 'Down' : 'Idle');
}

const NET_RE = /^([0-9a-fA-F:.]+\/\d{1,3})$/;

/** Prefixes listed by `show route …` (code 1007 lines whose first word is a network). */
export function parseRoutePrefixes(reply: BirdReply): string[] {
  const nets: string[] = [];
  for (const l of reply.lines) {
    if (l.code !== 1007) continue;
    const first = l.text.trim().split(/\s+/)[0] ?? '';
    if (NET_RE.test(first) && !nets.includes(first)) nets.push(first);
  }
  return nets;
}

/** BGP communities "(a,b)" found in `show route … all` attribute lines (BGP.community: (65535,0) …). */
export function parseCommunities(reply: BirdReply): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const l of reply.lines) {
    const m = /BGP\.community:\s*(.*)$/.exec(l.text);
    if (!m) continue;
    for (const c of m[1]!.matchAll(/\((\d+),\s*(\d+)\)/g)) out.push([Number(c[1]), Number(c[2])]);
  }
  return out;
}

/** AS path from a `show route … all` reply (BGP.as_path: 65001 65001), empty when none. */
export function parseAsPath(reply: BirdReply): number[] {
  for (const l of reply.lines) {
    const m = /BGP\.as_path:\s*(.*)$/.exec(l.text);
    if (m)
      return m[1]!
        .trim()
        .split(/\s+/)
        .filter((w) => /^\d+$/.test(w))
        .map(Number);
  }
  return [];
}
