// HTTP/3 frames (RFC 9114 §7): encoders, and an incremental parser for one stream that applies the
// per-stream-type rules of §6.2.1 and §7.2 and maps each violation to its H3 error code.
import { H3Error, H3ErrorCode } from './errors.js';
import { decodeSettings, encodeSettings, type H3Settings } from './settings.js';
import { TlvReader, type TlvDisposition } from './tlv.js';
import { readVarint, varintLength, varintLengthFromFirstByte, writeVarint, tlvHeaderLength, writeTlvHeader, encodeTlv } from './varint.js';

export const FrameType = {
  DATA: 0x00,
  HEADERS: 0x01,
  CANCEL_PUSH: 0x03,
  SETTINGS: 0x04,
  PUSH_PROMISE: 0x05,
  GOAWAY: 0x07,
  MAX_PUSH_ID: 0x0d,
} as const;

/** HTTP/2 frame types with no HTTP/3 meaning (§7.2.8): PRIORITY, PING, WINDOW_UPDATE, CONTINUATION. */
export const HTTP2_ONLY_FRAME_TYPES: ReadonlySet<number> = new Set([0x02, 0x06, 0x08, 0x09]);

export type H3Frame =
  /** DATA payload. The parser hands DATA over as it arrives, so one DATA frame may come as several chunks. */
  | { type: 'data'; payload: Uint8Array }
  /** HEADERS: an encoded QPACK field section (decode with decodeFieldSection). */
  | { type: 'headers'; fieldSection: Uint8Array }
  | { type: 'settings'; settings: H3Settings }
  /** GOAWAY: a stream ID (sent by servers) or a push ID (sent by clients). */
  | { type: 'goaway'; id: number }
  | { type: 'cancel_push'; pushId: number }
  | { type: 'max_push_id'; pushId: number }
  | { type: 'push_promise'; pushId: number; fieldSection: Uint8Array };

/** The kinds of stream that carry frames. */
export type FrameStreamKind = 'control' | 'request' | 'push';
/** Which end we are: decides who may send MAX_PUSH_ID, PUSH_PROMISE and what a GOAWAY ID means. */
export type EndpointRole = 'client' | 'server';

// ---------------------------------------------------------------- encoders

/** Bytes a frame header (type + length) takes. */
export const frameHeaderLength = tlvHeaderLength;
/** Write a frame header at `offset`; returns the offset after it. */
export const writeFrameHeader = writeTlvHeader;
/** A frame with the given type and payload as one buffer. */
export const encodeFrame = encodeTlv;

/** Just the DATA frame header for a payload of `length` bytes (send it, then the payload, without copying). */
export function encodeDataFrameHeader(length: number): Uint8Array {
  const out = new Uint8Array(frameHeaderLength(FrameType.DATA, length));
  writeFrameHeader(out, 0, FrameType.DATA, length);
  return out;
}

export const encodeDataFrame = (payload: Uint8Array): Uint8Array => encodeFrame(FrameType.DATA, payload);
export const encodeHeadersFrame = (fieldSection: Uint8Array): Uint8Array => encodeFrame(FrameType.HEADERS, fieldSection);
export const encodeSettingsFrame = (settings: H3Settings): Uint8Array => encodeFrame(FrameType.SETTINGS, encodeSettings(settings));

function singleVarintFrame(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(varintLength(value));
  writeVarint(payload, 0, value);
  return encodeFrame(type, payload);
}

export const encodeGoawayFrame = (id: number): Uint8Array => singleVarintFrame(FrameType.GOAWAY, id);
export const encodeCancelPushFrame = (pushId: number): Uint8Array => singleVarintFrame(FrameType.CANCEL_PUSH, pushId);
export const encodeMaxPushIdFrame = (pushId: number): Uint8Array => singleVarintFrame(FrameType.MAX_PUSH_ID, pushId);

export function encodePushPromiseFrame(pushId: number, fieldSection: Uint8Array): Uint8Array {
  const payload = new Uint8Array(varintLength(pushId) + fieldSection.length);
  payload.set(fieldSection, writeVarint(payload, 0, pushId));
  return encodeFrame(FrameType.PUSH_PROMISE, payload);
}

/** Encode any H3Frame value (the parser's output type). */
export function encodeH3Frame(frame: H3Frame): Uint8Array {
  switch (frame.type) {
    case 'data':
      return encodeDataFrame(frame.payload);
    case 'headers':
      return encodeHeadersFrame(frame.fieldSection);
    case 'settings':
      return encodeSettingsFrame(frame.settings);
    case 'goaway':
      return encodeGoawayFrame(frame.id);
    case 'cancel_push':
      return encodeCancelPushFrame(frame.pushId);
    case 'max_push_id':
      return encodeMaxPushIdFrame(frame.pushId);
    case 'push_promise':
      return encodePushPromiseFrame(frame.pushId, frame.fieldSection);
  }
}

/** A reserved (GREASE) frame type, 0x1f * N + 0x21 (§7.2.8); peers must ignore it. */
export function greaseFrameType(n: number): number {
  return 0x1f * n + 0x21;
}

// ---------------------------------------------------------------- parser

export interface FrameParserOptions {
  /** The stream this parser reads. */
  stream: FrameStreamKind;
  /** Which end we are (the parser reads what the other end sends). */
  role: EndpointRole;
  /**
   * Largest payload we buffer for a non-DATA frame (HEADERS, PUSH_PROMISE, SETTINGS, ...); larger is
   * H3_EXCESSIVE_LOAD. DATA and unknown frames are streamed through / skipped and never buffered.
   * Default 64 KiB.
   */
  maxFrameSize?: number;
  /**
   * Client only: the largest push ID we granted with MAX_PUSH_ID. Undefined (the default): we never
   * granted any, so PUSH_PROMISE and CANCEL_PUSH from the server are H3_ID_ERROR.
   */
  maxPushId?: number;
}

export const DEFAULT_MAX_FRAME_SIZE = 64 * 1024;

const unexpected = (msg: string) => new H3Error(H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection', msg);
const frameError = (msg: string) => new H3Error(H3ErrorCode.H3_FRAME_ERROR, 'connection', msg);
const idError = (msg: string) => new H3Error(H3ErrorCode.H3_ID_ERROR, 'connection', msg);

/**
 * Incremental frame parser for one stream. Feed it bytes as they arrive with push(); it returns the
 * frames completed so far and keeps the remainder. Unknown and reserved frame types are skipped
 * without buffering. Payload views (DATA, and non-DATA frames that arrived in one chunk) alias the
 * pushed chunk: copy them if the chunk's memory is reused.
 *
 * Call end() when the stream finishes (FIN): a truncated frame is H3_FRAME_ERROR, and the control
 * stream must never end (H3_CLOSED_CRITICAL_STREAM).
 */
export class H3FrameParser {
  readonly stream: FrameStreamKind;
  readonly role: EndpointRole;
  readonly maxFrameSize: number;
  readonly maxPushId: number | undefined;

  private readonly tlv = new TlvReader();
  private framesSeen = 0;
  private lastGoawayId = -1;
  private lastMaxPushId = -1;
  private failed: H3Error | null = null;

  constructor(opts: FrameParserOptions) {
    this.stream = opts.stream;
    this.role = opts.role;
    this.maxFrameSize = opts.maxFrameSize ?? DEFAULT_MAX_FRAME_SIZE;
    this.maxPushId = opts.maxPushId;
  }

  /** True while a frame has started but not completed. */
  get midFrame(): boolean {
    return this.tlv.midValue;
  }

  /** Bytes held back waiting for the rest of a frame: what has arrived, never more than 16 + maxFrameSize. */
  get buffered(): number {
    return this.tlv.buffered;
  }

  /** Feed the next bytes of the stream; returns the frames they complete. Throws H3Error on a protocol violation. */
  push(chunk: Uint8Array): H3Frame[] {
    if (this.failed) throw this.failed;
    try {
      return this.parse(chunk);
    } catch (e) {
      if (e instanceof H3Error) this.failed = e;
      throw e;
    }
  }

  /** The stream ended cleanly (FIN). */
  end(): void {
    if (this.failed) throw this.failed;
    if (this.stream === 'control') {
      throw new H3Error(H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, 'connection', 'the peer closed its control stream');
    }
    if (this.midFrame) throw frameError('the stream ended inside a frame');
  }

  private parse(chunk: Uint8Array): H3Frame[] {
    const out: H3Frame[] = [];
    this.tlv.read(chunk, {
      start: (type, length) => this.startFrame(type, length),
      value: (type, bytes) => {
        // DATA comes piece by piece (an empty DATA frame as one empty piece, so frame order is still checked).
        const frame = type === FrameType.DATA ? { type: 'data' as const, payload: bytes } : this.finishFrame(type, bytes);
        if (frame) out.push(frame);
      },
    });
    return out;
  }

  /** Called when a frame header is complete: check the frame is allowed here before its payload arrives. */
  private startFrame(type: number, length: number): TlvDisposition {
    const first = this.framesSeen++ === 0;
    const known = type <= 0x0d && (type === 0 || type === 1 || type === 3 || type === 4 || type === 5 || type === 7 || type === 0x0d);

    if (this.stream === 'control') {
      if (first && type !== FrameType.SETTINGS) {
        throw new H3Error(H3ErrorCode.H3_MISSING_SETTINGS, 'connection', `the control stream starts with frame type 0x${type.toString(16)}, not SETTINGS`);
      }
      if (!first && type === FrameType.SETTINGS) throw unexpected('a second SETTINGS frame on the control stream');
      if (type === FrameType.DATA || type === FrameType.HEADERS || type === FrameType.PUSH_PROMISE) {
        throw unexpected(`${frameName(type)} frame on the control stream`);
      }
      if (type === FrameType.MAX_PUSH_ID && this.role === 'client') throw unexpected('MAX_PUSH_ID frame sent by a server');
    } else {
      if (type === FrameType.SETTINGS || type === FrameType.GOAWAY || type === FrameType.MAX_PUSH_ID || type === FrameType.CANCEL_PUSH) {
        throw unexpected(`${frameName(type)} frame on a ${this.stream} stream`);
      }
      if (type === FrameType.PUSH_PROMISE && (this.stream === 'push' || this.role === 'server')) {
        throw unexpected(`PUSH_PROMISE frame on a ${this.stream} stream sent by a ${this.role === 'server' ? 'client' : 'server'}`);
      }
    }
    if (HTTP2_ONLY_FRAME_TYPES.has(type)) throw unexpected(`HTTP/2 frame type 0x${type.toString(16)} is not allowed in HTTP/3`);

    if (!known) return 'skip';
    if (type === FrameType.DATA) return 'stream';
    if (type === FrameType.GOAWAY || type === FrameType.CANCEL_PUSH || type === FrameType.MAX_PUSH_ID) {
      if (length < 1 || length > 8) throw frameError(`${frameName(type)} payload of ${length} bytes (must hold exactly one varint)`);
    }
    if (length > this.maxFrameSize) {
      throw new H3Error(H3ErrorCode.H3_EXCESSIVE_LOAD, 'connection', `${frameName(type)} frame of ${length} bytes exceeds the limit of ${this.maxFrameSize}`);
    }
    return 'buffer';
  }

  private finishFrame(type: number, payload: Uint8Array): H3Frame | null {
    switch (type) {
      case FrameType.HEADERS:
        return { type: 'headers', fieldSection: payload };
      case FrameType.SETTINGS:
        return { type: 'settings', settings: decodeSettings(payload) };
      case FrameType.GOAWAY: {
        const id = exactlyOneVarint(payload, 'GOAWAY');
        if (this.role === 'client' && id % 4 !== 0) throw idError(`GOAWAY stream ID ${id} is not a client-initiated bidirectional stream`);
        if (this.lastGoawayId >= 0 && id > this.lastGoawayId) throw idError(`GOAWAY ID ${id} is larger than the previous ${this.lastGoawayId}`);
        this.lastGoawayId = id;
        return { type: 'goaway', id };
      }
      case FrameType.MAX_PUSH_ID: {
        const pushId = exactlyOneVarint(payload, 'MAX_PUSH_ID');
        if (pushId < this.lastMaxPushId) throw idError(`MAX_PUSH_ID ${pushId} is smaller than the previous ${this.lastMaxPushId}`);
        this.lastMaxPushId = pushId;
        return { type: 'max_push_id', pushId };
      }
      case FrameType.CANCEL_PUSH: {
        const pushId = exactlyOneVarint(payload, 'CANCEL_PUSH');
        this.checkPushId(pushId, 'CANCEL_PUSH');
        return { type: 'cancel_push', pushId };
      }
      case FrameType.PUSH_PROMISE: {
        const pushId = readVarint(payload, 0);
        if (pushId < 0) throw frameError('PUSH_PROMISE payload ends inside the push ID');
        this.checkPushId(pushId, 'PUSH_PROMISE');
        return { type: 'push_promise', pushId, fieldSection: payload.subarray(varintLengthFromFirstByte(payload[0]!)) }; // pushId >= 0: byte 0 is there
      }
      default:
        return null;
    }
  }

  private checkPushId(pushId: number, what: string): void {
    // A server never pushes, so a client cannot cancel a push; a client only accepts IDs it granted.
    if (this.role === 'server') throw idError(`${what} for push ID ${pushId}, but this server never promised a push`);
    if (this.maxPushId === undefined || pushId > this.maxPushId) {
      throw idError(`${what} push ID ${pushId} exceeds the granted maximum ${this.maxPushId ?? '(none)'}`);
    }
  }
}

function exactlyOneVarint(payload: Uint8Array, what: string): number {
  const value = readVarint(payload, 0);
  // value >= 0 before payload[0] is read: the byte is there.
  if (value < 0 || varintLengthFromFirstByte(payload[0]!) !== payload.length) {
    throw frameError(`${what} payload is not exactly one varint`);
  }
  return value;
}

export function frameName(type: number): string {
  for (const [name, value] of Object.entries(FrameType)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}
