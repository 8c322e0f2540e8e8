// The request stream (RFC 9114 §4.1): HEADERS, then DATA*, then optional trailing HEADERS; responses may
// start with interim (1xx) HEADERS. MessageSequence is the pure ordering rule; RequestStreamReader puts
// frame parsing, QPACK decoding, validation and ordering together for one request stream.
import { H3Error, H3ErrorCode } from './errors.js';
import { H3FrameParser, type EndpointRole } from './frames.js';
import { validateRequestHeaders, validateResponseHeaders, validateTrailers, type ValidatedRequest, type ValidatedResponse } from './headers.js';
import { decodeFieldSection, type HeaderField } from './qpack.js';

const unexpected = (msg: string) => new H3Error(H3ErrorCode.H3_FRAME_UNEXPECTED, 'connection', msg);

export type MessageState = 'start' | 'interim' | 'body' | 'trailers' | 'ended';

/**
 * Frame order on one direction of a request stream. `kind` is the message being read: a 'request'
 * (server side) or a 'response' (client side).
 */
export class MessageSequence {
  state: MessageState = 'start';
  private expectedLength: number | undefined;
  private received = 0;

  /**
   * Set once a CONNECT (or Extended CONNECT) exchange is established: from then on only DATA may follow
   * (RFC 9114 §4.4), so a trailing HEADERS frame is H3_FRAME_UNEXPECTED.
   */
  tunnel = false;

  constructor(readonly kind: 'request' | 'response') {}

  /**
   * A HEADERS frame arrived: returns whether it is the message's header section, an interim response
   * (`status` 100-199, responses only) or the trailer section.
   */
  onHeaders(status?: number): 'headers' | 'interim' | 'trailers' {
    switch (this.state) {
      case 'start':
      case 'interim':
        if (this.kind === 'response' && status !== undefined && status >= 100 && status < 200) {
          this.state = 'interim';
          return 'interim';
        }
        this.state = 'body';
        return 'headers';
      case 'body':
        if (this.tunnel) throw unexpected('HEADERS frame on an established CONNECT stream');
        this.state = 'trailers';
        return 'trailers';
      default:
        throw unexpected('HEADERS frame after the trailer section');
    }
  }

  /** The header section's Content-Length, to check the DATA total against. */
  setContentLength(length: number | undefined): void {
    this.expectedLength = length;
  }

  onData(length: number): void {
    if (this.state === 'start' || this.state === 'interim') throw unexpected('DATA frame before the HEADERS frame');
    if (this.state !== 'body') throw unexpected('DATA frame after the trailer section');
    this.received += length;
    if (this.expectedLength !== undefined && this.received > this.expectedLength) {
      throw new H3Error(H3ErrorCode.H3_MESSAGE_ERROR, 'stream', `more DATA than content-length ${this.expectedLength}`);
    }
  }

  /** The stream ended (FIN). */
  onEnd(): void {
    if (this.state === 'start' || this.state === 'interim') {
      throw new H3Error(H3ErrorCode.H3_REQUEST_INCOMPLETE, 'stream', `the stream ended before the ${this.kind} header section`);
    }
    if (this.expectedLength !== undefined && this.received !== this.expectedLength) {
      throw new H3Error(H3ErrorCode.H3_MESSAGE_ERROR, 'stream', `content-length ${this.expectedLength} but ${this.received} bytes of DATA`);
    }
    this.state = 'ended';
  }
}

export type RequestStreamEvent =
  /** Server side: the validated request header section. */
  | { type: 'request'; request: ValidatedRequest }
  /** Client side: a validated response header section (`interim` for 1xx). */
  | { type: 'response'; response: ValidatedResponse; interim: boolean }
  /** Bytes of the message content / data stream (capsules for Extended CONNECT). */
  | { type: 'data'; payload: Uint8Array }
  | { type: 'trailers'; fields: HeaderField[] };

export interface RequestStreamReaderOptions {
  /** Our role: a 'server' reads a request, a 'client' reads a response. */
  role: EndpointRole;
  /** Largest encoded HEADERS frame we buffer (default 64 KiB). */
  maxFrameSize?: number;
  /** Largest decoded header section (default 64 KiB). */
  maxFieldSectionSize?: number;
  /** Whether we announced Extended CONNECT (servers; default true). */
  extendedConnect?: boolean;
  /** Client only: the request we sent was a CONNECT, so a 2xx response opens a tunnel (no trailers). */
  requestIsConnect?: boolean;
}

/**
 * Reads one request stream: push() the stream's bytes, get validated events back. Throws H3Error:
 * connection errors (frame order, QPACK) mean close the connection; stream errors (malformed message)
 * mean reset this stream with the code.
 */
export class RequestStreamReader {
  private readonly frames: H3FrameParser;
  readonly sequence: MessageSequence;
  private failed: H3Error | null = null;

  constructor(private readonly opts: RequestStreamReaderOptions) {
    this.frames = new H3FrameParser({ stream: 'request', role: opts.role, maxFrameSize: opts.maxFrameSize });
    this.sequence = new MessageSequence(opts.role === 'server' ? 'request' : 'response');
  }

  /** Bytes held back for an incomplete frame (what arrived so far). */
  get buffered(): number {
    return this.frames.buffered;
  }

  push(chunk: Uint8Array): RequestStreamEvent[] {
    if (this.failed) throw this.failed;
    try {
      return this.read(chunk);
    } catch (e) {
      if (e instanceof H3Error) this.failed = e;
      throw e;
    }
  }

  private read(chunk: Uint8Array): RequestStreamEvent[] {
    const out: RequestStreamEvent[] = [];
    for (const frame of this.frames.push(chunk)) {
      if (frame.type === 'data') {
        this.sequence.onData(frame.payload.length);
        out.push({ type: 'data', payload: frame.payload });
      } else if (frame.type === 'headers') {
        const fields = decodeFieldSection(frame.fieldSection, { maxFieldSectionSize: this.opts.maxFieldSectionSize });
        const state = this.sequence.state;
        if (state === 'trailers' || state === 'ended') this.sequence.onHeaders(); // throws H3_FRAME_UNEXPECTED
        if (state === 'body') {
          this.sequence.onHeaders();
          out.push({ type: 'trailers', fields: validateTrailers(fields) });
        } else if (this.opts.role === 'server') {
          const request = validateRequestHeaders(fields, { extendedConnect: this.opts.extendedConnect });
          this.sequence.onHeaders();
          if (request.kind === 'request') this.sequence.setContentLength(request.contentLength);
          else this.sequence.tunnel = true;
          out.push({ type: 'request', request });
        } else {
          const response = validateResponseHeaders(fields);
          const kind = this.sequence.onHeaders(response.status);
          if (kind === 'headers') {
            if (this.opts.requestIsConnect && response.status >= 200 && response.status < 300) this.sequence.tunnel = true;
            else this.sequence.setContentLength(response.contentLength);
          }
          out.push({ type: 'response', response, interim: kind === 'interim' });
        }
      }
      // push_promise: we never grant push IDs, so the frame parser has already refused it.
    }
    return out;
  }

  /** The peer finished the stream (FIN). */
  end(): void {
    if (this.failed) throw this.failed;
    this.frames.end();
    this.sequence.onEnd();
  }
}
