// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2): the first varint on a peer's unidirectional
// stream says what it is; push streams then carry a Push ID.
import { H3Error, H3ErrorCode } from './errors.js';
import { encodeSettingsFrame, type EndpointRole } from './frames.js';
import { DEFAULT_LOCAL_SETTINGS, type H3Settings } from './settings.js';
import { readVarint, varintLength, varintLengthFromFirstByte, writeVarint } from './varint.js';

export const UniStreamType = {
  CONTROL: 0x00,
  PUSH: 0x01,
  QPACK_ENCODER: 0x02,
  QPACK_DECODER: 0x03,
} as const;

export type UniStreamKind = 'control' | 'push' | 'qpack_encoder' | 'qpack_decoder' | 'unknown';

export interface UniStreamHeader {
  kind: UniStreamKind;
  /** The stream type varint as read (approximate above 2^53; only meaningful for 'unknown'). */
  type: number;
  /** Push ID (push streams only). */
  pushId?: number;
  /** Bytes the header took; the stream's frames/instructions start here. */
  headerLength: number;
}

const KINDS: Record<number, UniStreamKind> = { 0: 'control', 1: 'push', 2: 'qpack_encoder', 3: 'qpack_decoder' };

/**
 * Parse the start of a peer's unidirectional stream. Returns null until enough bytes are there
 * (at most 16: buffer the first bytes of the stream until this returns a header).
 */
export function readUniStreamHeader(buf: Uint8Array): UniStreamHeader | null {
  const type = readVarint(buf, 0);
  if (type < 0) return null;
  const tlen = varintLengthFromFirstByte(buf[0]!); // type >= 0: byte 0 is there
  const kind = KINDS[type] ?? 'unknown';
  if (kind !== 'push') return { kind, type, headerLength: tlen };
  const pushId = readVarint(buf, tlen);
  if (pushId < 0) return null;
  return { kind, type, pushId, headerLength: tlen + varintLengthFromFirstByte(buf[tlen]!) }; // pushId >= 0: read whole
}

/** The bytes that open one of our unidirectional streams. */
export function encodeUniStreamHeader(type: number, pushId?: number): Uint8Array {
  const out = new Uint8Array(varintLength(type) + (pushId === undefined ? 0 : varintLength(pushId)));
  const pos = writeVarint(out, 0, type);
  if (pushId !== undefined) writeVarint(out, pos, pushId);
  return out;
}

/**
 * Tracks the peer's unidirectional streams for one connection: at most one control, QPACK encoder and
 * QPACK decoder stream each (a second is H3_STREAM_CREATION_ERROR), push streams only from a server that
 * was granted push IDs. accept() says whether to read the stream ('read') or abandon it ('ignore',
 * answer with STOP_SENDING H3_STREAM_CREATION_ERROR) for unknown types.
 */
export class PeerUniStreams {
  private seen = new Set<UniStreamKind>();
  /** `role` is our role; `maxPushId` the largest push ID we (a client) granted, if any. */
  constructor(
    readonly role: EndpointRole,
    readonly maxPushId?: number,
  ) {}

  accept(header: UniStreamHeader): 'read' | 'ignore' {
    switch (header.kind) {
      case 'unknown':
        return 'ignore';
      case 'push':
        if (this.role === 'server') {
          throw new H3Error(H3ErrorCode.H3_STREAM_CREATION_ERROR, 'connection', 'a client opened a push stream');
        }
        if (this.maxPushId === undefined || (header.pushId ?? 0) > this.maxPushId) {
          throw new H3Error(H3ErrorCode.H3_ID_ERROR, 'connection', `push stream with push ID ${header.pushId} beyond the granted maximum`);
        }
        return 'read';
      default:
        if (this.seen.has(header.kind)) {
          throw new H3Error(H3ErrorCode.H3_STREAM_CREATION_ERROR, 'connection', `the peer opened a second ${header.kind} stream`);
        }
        this.seen.add(header.kind);
        return 'read';
    }
  }

  /** Whether the peer's control stream has been seen. */
  get hasControlStream(): boolean {
    return this.seen.has('control');
  }
}

/** A critical stream (control, QPACK encoder/decoder) ended or was reset: H3_CLOSED_CRITICAL_STREAM. */
export function criticalStreamClosed(kind: UniStreamKind): H3Error {
  return new H3Error(H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, 'connection', `the peer closed its ${kind} stream`);
}

/**
 * The first bytes of our control stream: stream type 0x00 and the SETTINGS frame (by default: QPACK
 * capacity 0, blocked streams 0, Extended CONNECT and HTTP Datagrams on). GOAWAY frames follow later.
 */
export function encodeControlStreamPreamble(settings: H3Settings = DEFAULT_LOCAL_SETTINGS): Uint8Array {
  const settingsFrame = encodeSettingsFrame(settings);
  const out = new Uint8Array(1 + settingsFrame.length);
  out[0] = UniStreamType.CONTROL;
  out.set(settingsFrame, 1);
  return out;
}
