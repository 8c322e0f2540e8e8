// HTTP/3 Datagrams (RFC 9297 §2.1): the QUIC DATAGRAM payload is Quarter Stream ID (i) + HTTP Datagram
// Payload; for connect-udp (RFC 9298 §5) and connect-ip (RFC 9484 §6) that payload starts with a Context ID (i).
// This is the per-packet path: nothing here allocates except encodeHttpDatagram / encodeHttpDatagramPrefix.
import { H3Error, H3ErrorCode } from './errors.js';
import { readVarint, varintLength, varintLengthFromFirstByte, writeVarint } from './varint.js';

/** Filled in by parseHttpDatagram; reuse one instance per receive loop to avoid allocation. */
export interface HttpDatagramHeader {
  /** The request stream ID (Quarter Stream ID × 4). */
  streamId: number;
  /** The Context ID (0 = the UDP payload / IP packet itself). */
  contextId: number;
  /** Where the payload after the Context ID starts: `buf.subarray(payloadOffset)`. */
  payloadOffset: number;
}

export function newHttpDatagramHeader(): HttpDatagramHeader {
  return { streamId: 0, contextId: 0, payloadOffset: 0 };
}

const datagramError = (msg: string) => new H3Error(H3ErrorCode.H3_DATAGRAM_ERROR, 'connection', msg);

/**
 * Read the Quarter Stream ID of a QUIC DATAGRAM payload and return the stream ID it names.
 * Too short, or a Quarter Stream ID above 2^60-1, is an H3_DATAGRAM_ERROR connection error.
 */
export function readDatagramStreamId(buf: Uint8Array): number {
  const first = buf[0];
  if (first === undefined) throw datagramError('QUIC DATAGRAM payload is empty (no Quarter Stream ID)');
  if (varintLengthFromFirstByte(first) > buf.length) throw datagramError('QUIC DATAGRAM payload ends inside the Quarter Stream ID');
  // An 8-byte varint's top 6 bits are bits 61..56 of the value: >= 2^60 iff either of the two highest is set.
  if (first >= 0xc0 && (first & 0x30) !== 0) throw datagramError('Quarter Stream ID exceeds 2^60-1');
  return readVarint(buf, 0) * 4;
}

/**
 * Parse a QUIC DATAGRAM payload carrying an HTTP Datagram with a Context ID into `out`.
 * Returns false when the Context ID is truncated (RFC 9298/9484: drop the datagram); throws H3Error
 * (H3_DATAGRAM_ERROR, connection) when the Quarter Stream ID is missing or out of range.
 */
export function parseHttpDatagram(buf: Uint8Array, out: HttpDatagramHeader): boolean {
  out.streamId = readDatagramStreamId(buf);
  const pos = varintLengthFromFirstByte(buf[0]!); // readDatagramStreamId found the whole varint
  const contextId = readVarint(buf, pos);
  if (contextId < 0) return false;
  out.contextId = contextId;
  out.payloadOffset = pos + varintLengthFromFirstByte(buf[pos]!); // contextId >= 0: its first byte is there
  return true;
}

function checkStreamId(streamId: number): void {
  if (!Number.isSafeInteger(streamId) || streamId < 0 || streamId % 4 !== 0) {
    throw new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', `stream ID ${streamId} is not a client-initiated bidirectional stream`);
  }
}

/** Bytes of the Quarter Stream ID + Context ID header for this stream and context. */
export function httpDatagramHeaderLength(streamId: number, contextId: number): number {
  return varintLength(streamId / 4) + varintLength(contextId);
}

/** Write the Quarter Stream ID + Context ID at `offset` of `buf`; returns where the payload goes. */
export function writeHttpDatagramHeader(buf: Uint8Array, offset: number, streamId: number, contextId: number): number {
  checkStreamId(streamId);
  return writeVarint(buf, writeVarint(buf, offset, streamId / 4), contextId);
}

/** The header bytes for a (stream, context) pair: compute once per session, then prepend to every packet. */
export function encodeHttpDatagramPrefix(streamId: number, contextId: number): Uint8Array {
  const out = new Uint8Array(httpDatagramHeaderLength(streamId, contextId));
  writeHttpDatagramHeader(out, 0, streamId, contextId);
  return out;
}

/** A complete QUIC DATAGRAM payload (one allocation, one copy of `payload`). */
export function encodeHttpDatagram(streamId: number, contextId: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(httpDatagramHeaderLength(streamId, contextId) + payload.length);
  out.set(payload, writeHttpDatagramHeader(out, 0, streamId, contextId));
  return out;
}
