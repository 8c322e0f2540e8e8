// H3 error codes (RFC 9114 §8.1, RFC 9204 §6, RFC 9297 §5.2), the one error type every decoder here
// throws, and the one map from error codes to H3 codes.
import { CbrError, errorCode } from '../../dataplane/index.js';

export const H3ErrorCode = {
  H3_NO_ERROR: 0x100,
  H3_GENERAL_PROTOCOL_ERROR: 0x101,
  H3_INTERNAL_ERROR: 0x102,
  H3_STREAM_CREATION_ERROR: 0x103,
  H3_CLOSED_CRITICAL_STREAM: 0x104,
  H3_FRAME_UNEXPECTED: 0x105,
  H3_FRAME_ERROR: 0x106,
  H3_EXCESSIVE_LOAD: 0x107,
  H3_ID_ERROR: 0x108,
  H3_SETTINGS_ERROR: 0x109,
  H3_MISSING_SETTINGS: 0x10a,
  H3_REQUEST_REJECTED: 0x10b,
  H3_REQUEST_CANCELLED: 0x10c,
  H3_REQUEST_INCOMPLETE: 0x10d,
  H3_MESSAGE_ERROR: 0x10e,
  H3_CONNECT_ERROR: 0x10f,
  H3_VERSION_FALLBACK: 0x110,
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
  H3_DATAGRAM_ERROR: 0x33,
} as const;

export type H3ErrorName = keyof typeof H3ErrorCode;
export type H3ErrorCodeValue = (typeof H3ErrorCode)[H3ErrorName];

const NAMES = new Map<number, H3ErrorName>((Object.entries(H3ErrorCode) as Array<[H3ErrorName, number]>).map(([name, code]) => [code, name]));

/** The name of an H3 error code (`H3_FRAME_ERROR`), or `0x…` for codes this module does not know. */
export function h3ErrorName(code: number): string {
  return NAMES.get(code) ?? `0x${code.toString(16)}`;
}

/**
 * Where the error applies: 'connection' means close the whole QUIC connection with `code`
 * (CONNECTION_CLOSE, application error); 'stream' means reset/stop only the stream it was found on.
 */
export type H3ErrorScope = 'connection' | 'stream';

/**
 * A protocol error found while decoding peer input (or refusing to encode invalid input): CbrError
 * code H3_PROTOCOL, and the HTTP/3 error code to close or reset with in `h3Code`.
 */
export class H3Error extends CbrError {
  constructor(
    readonly h3Code: H3ErrorCodeValue,
    readonly scope: H3ErrorScope,
    message: string,
  ) {
    super('H3_PROTOCOL', `${h3ErrorName(h3Code)}: ${message}`);
  }

  get isConnectionError(): boolean {
    return this.scope === 'connection';
  }

  /** The reason text without the code prefix (fits a CONNECTION_CLOSE reason phrase). */
  get reason(): string {
    return this.message.slice(h3ErrorName(this.h3Code).length + 2);
  }
}

/**
 * The one map from errors to HTTP/3 error codes: an H3Error carries its own; a bound that was hit is
 * H3_EXCESSIVE_LOAD, a deadline H3_REQUEST_INCOMPLETE, a refused request H3_REQUEST_REJECTED; anything
 * else is H3_INTERNAL_ERROR.
 */
export function h3CodeFor(err: unknown): H3ErrorCodeValue {
  if (err instanceof H3Error) return err.h3Code;
  switch (errorCode(err)) {
    case 'LIMIT_EXCEEDED':
    case 'RATE_LIMITED':
      return H3ErrorCode.H3_EXCESSIVE_LOAD;
    case 'TIMEOUT':
      return H3ErrorCode.H3_REQUEST_INCOMPLETE;
    case 'UNAVAILABLE':
      return H3ErrorCode.H3_REQUEST_REJECTED;
    default:
      return H3ErrorCode.H3_INTERNAL_ERROR;
  }
}

/** Shorthand constructors, so call sites read as the RFC does. */
export const connectionError = (code: H3ErrorCodeValue, message: string): H3Error => new H3Error(code, 'connection', message);
export const streamError = (code: H3ErrorCodeValue, message: string): H3Error => new H3Error(code, 'stream', message);
