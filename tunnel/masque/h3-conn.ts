// The HTTP/3 layer over one QuicConnection, shared by the MASQUE server and client: our control
// stream (SETTINGS, later GOAWAY), the peer's unidirectional streams, buffered
// writes on request streams (quiche takes what flow control allows; the rest waits for
// onStreamWritable), HTTP Datagram demultiplexing, and protocol errors mapped to their H3 codes:
// connection errors close the QUIC connection, stream errors reset that stream.
import type { QuicConnection, CloseReason, ConnectionHandler } from '../quic/index.js';
import {
  H3Error,
  H3ErrorCode,
  h3CodeFor,
  H3FrameParser,
  PeerUniStreams,
  readUniStreamHeader,
  criticalStreamClosed,
  encodeControlStreamPreamble,
  encodeGoawayFrame,
  QpackEncoderStreamReader,
  QpackDecoderStreamReader,
  parseHttpDatagram,
  newHttpDatagramHeader,
  type H3Settings,
  type EndpointRole,
  type UniStreamKind,
} from '../h3/index.js';

/**
 * Our one unidirectional stream: the control stream (client 2, server 3). No QPACK encoder or decoder
 * stream: our encoder never uses the dynamic table and our SETTINGS give it capacity 0, which is when
 * RFC 9204 §4.2 lets an endpoint not create them; each quiche stream costs ~1.6 KB per connection.
 */
function ownControlStreamId(role: EndpointRole): number {
  return role === 'server' ? 3 : 2;
}

interface PeerUni {
  head: Uint8Array | null;
  kind?: UniStreamKind;
  control?: H3FrameParser;
  encoder?: QpackEncoderStreamReader;
  decoder?: QpackDecoderStreamReader;
  ignore?: boolean;
}

export interface H3Events {
  /** Bytes (and FIN) arrived on a client-initiated bidirectional stream. */
  onRequestStream(streamId: number, chunk: Uint8Array, fin: boolean): void;
  /** An HTTP Datagram for `streamId` (context ID and payload parsed). */
  onHttpDatagram(streamId: number, contextId: number, payload: Buffer): void;
  /** The peer's SETTINGS arrived. */
  onSettings?(settings: H3Settings): void;
  onGoaway?(id: number): void;
  onClosed(reason: CloseReason): void;
  /** We reset a stream (a stream error): its state can go. */
  onStreamGone?(streamId: number): void;
  /**
   * The peer abandoned a request stream: RESET_STREAM (`how` 'reset') or STOP_SENDING ('stopped'),
   * with its error code. Our side of the stream has been shut down too; its state can go.
   */
  onStreamAbandoned?(streamId: number, how: 'reset' | 'stopped', code: number): void;
}

// One read buffer shared by every connection: reads are synchronous and each chunk is copied out
// before the next read, so no connection holds a read buffer of its own while idle.
const readBuf = Buffer.allocUnsafe(65_536);

/** Its QuicConnection's handler itself (methods, not six closures per connection). */
export class H3Connection implements ConnectionHandler {
  peerSettings: H3Settings | undefined;
  private readonly peerUni = new Map<number, PeerUni>();
  private readonly peerUniTypes: PeerUniStreams;
  private readonly pending = new Map<number, { chunks: Uint8Array[]; bytes: number; fin: boolean }>();
  private readonly dgHeader = newHttpDatagramHeader();
  private controlOpened = false;
  /** We closed the connection: what the peer still sends is not read. */
  private closing = false;
  goawaySent = false;
  /** The highest client bidirectional stream ID we have seen (for GOAWAY). */
  highestRequestStream = -4;

  constructor(
    readonly quic: QuicConnection,
    readonly role: EndpointRole,
    private readonly events: H3Events,
  ) {
    this.peerUniTypes = new PeerUniStreams(role);
    quic.handler = this;
    if (quic.isEstablished) this.openControlStreams();
  }

  onEstablished(): void {
    this.openControlStreams();
  }

  onStreamReadable(_c: QuicConnection, streamId: number): void {
    try {
      this.onReadable(streamId);
    } catch (err) {
      this.caught(err, streamId);
    }
  }

  onStreamWritable(_c: QuicConnection, streamId: number): void {
    this.flushStream(streamId);
  }

  onStreamStopped(_c: QuicConnection, streamId: number, code: number | undefined): void {
    try {
      this.onStopped(streamId, code);
    } catch (err) {
      this.caught(err);
    }
  }

  onDatagram(_c: QuicConnection, d: Buffer): void {
    const h = this.dgHeader;
    if (!parseHttpDatagram(d, h)) return;
    try {
      this.events.onHttpDatagram(h.streamId, h.contextId, d.subarray(h.payloadOffset));
    } catch (err) {
      this.caught(err);
    }
  }

  onClosed(_c: QuicConnection, r: CloseReason): void {
    this.events.onClosed(r);
  }

  private openControlStreams(): void {
    if (this.controlOpened) return;
    this.controlOpened = true;
    const control = ownControlStreamId(this.role);
    this.write(control, encodeControlStreamPreamble());
    this.quic.watchStream(control);
  }

  /** An H3Error becomes the close / reset its scope asks for; anything else is a bug, for the endpoint to handle. */
  private caught(err: unknown, streamId?: number): void {
    if (!(err instanceof H3Error)) throw err;
    this.fail(err, streamId);
  }

  /** A connection error closes the connection, a stream error resets the stream, each with h3CodeFor(err). */
  fail(err: H3Error, streamId?: number): void {
    const code = h3CodeFor(err);
    if (err.scope === 'connection' || streamId === undefined) {
      this.closing = true;
      this.quic.close(true, code, err.reason.slice(0, 200));
    } else {
      this.resetStream(streamId, code);
    }
  }

  resetStream(streamId: number, code: number): void {
    this.pending.delete(streamId);
    this.quic.streamShutdown(streamId, code, 'both');
    this.events.onStreamGone?.(streamId);
  }

  /** Writes on a stream, keeping what flow control does not take now. */
  write(streamId: number, data: Uint8Array, fin = false): void {
    const p = this.pending.get(streamId);
    if (p) {
      if (data.length > 0) p.chunks.push(data);
      p.bytes += data.length;
      p.fin ||= fin;
      return;
    }
    const n = data.length === 0 && !fin ? 0 : this.quic.streamSend(streamId, data, fin);
    if (n === data.length && (n > 0 || fin)) return;
    if (data.length === 0 && !fin) return;
    this.pending.set(streamId, { chunks: [data.subarray(n)], bytes: data.length - n, fin });
    this.quic.wantWritable(streamId);
  }

  /** Bytes waiting on a stream (for back-pressure decisions). */
  pendingBytes(streamId: number): number {
    return this.pending.get(streamId)?.bytes ?? 0;
  }

  private flushStream(streamId: number): void {
    const p = this.pending.get(streamId);
    if (!p) return;
    while (p.chunks.length > 0) {
      const c = p.chunks[0]!;
      const last = p.chunks.length === 1;
      const n = this.quic.streamSend(streamId, c, last && p.fin);
      p.bytes -= n;
      if (n < c.length || (c.length === 0 && last && p.fin && n === 0 && this.quic.streamCapacity(streamId) === 0)) {
        p.chunks[0] = c.subarray(n);
        this.quic.wantWritable(streamId);
        return;
      }
      p.chunks.shift();
    }
    this.pending.delete(streamId);
  }

  /** GOAWAY on our control stream: requests on streams ≥ the ID sent are refused from now on. */
  sendGoaway(): void {
    if (this.goawaySent || !this.controlOpened) return;
    this.goawaySent = true;
    this.write(ownControlStreamId(this.role), encodeGoawayFrame(this.role === 'server' ? this.highestRequestStream + 4 : 0));
  }

  /** The peer sent STOP_SENDING on one of our streams (code undefined: a critical stream already collected). */
  private onStopped(streamId: number, code: number | undefined): void {
    if (this.closing) return;
    if (streamId === ownControlStreamId(this.role))
      throw new H3Error(H3ErrorCode.H3_CLOSED_CRITICAL_STREAM, 'connection', 'the peer stopped our control stream');
    if ((streamId & 3) === 0) this.abandoned(streamId, 'stopped', code ?? H3ErrorCode.H3_REQUEST_CANCELLED);
  }

  /** A request stream the peer reset or stopped: shut down both directions and tell the application. */
  private abandoned(streamId: number, how: 'reset' | 'stopped', code: number): void {
    this.pending.delete(streamId);
    this.quic.streamShutdown(streamId, H3ErrorCode.H3_REQUEST_CANCELLED, 'both');
    this.events.onStreamAbandoned?.(streamId, how, code);
  }

  /** The peer reset one of its streams (RFC 9114 §6.2.1: a critical stream closes the connection). */
  onPeerReset(streamId: number, code: number): void {
    if ((streamId & 3) === 0) {
      this.abandoned(streamId, 'reset', code);
      return;
    }
    const s = this.peerUni.get(streamId);
    this.peerUni.delete(streamId);
    if (s?.kind && s.kind !== 'push' && s.kind !== 'unknown') throw criticalStreamClosed(s.kind);
  }

  private onReadable(streamId: number): void {
    if (this.closing) return;
    for (let i = 0; i < 64; i++) {
      const r = this.quic.streamRecv(streamId, readBuf);
      if (r === 'blocked' || r === 'gone') return;
      if ('reset' in r) {
        this.onPeerReset(streamId, r.reset);
        return;
      }
      const { bytes: n, fin } = r;
      // The parsers may keep views of the chunk: hand them a copy, the read buffer is reused.
      const chunk = Buffer.from(readBuf.subarray(0, n));
      if ((streamId & 3) === 0) {
        if (this.role === 'client') return; // we never accept server-initiated bidi streams (quiche refuses them)
        if (streamId > this.highestRequestStream) this.highestRequestStream = streamId;
        try {
          this.events.onRequestStream(streamId, chunk, fin);
        } catch (err) {
          if (!(err instanceof H3Error)) throw err;
          this.fail(err, streamId);
          return;
        }
        if (this.closing) return;
      } else if ((streamId & 2) === 2) {
        this.onPeerUni(streamId, chunk, fin);
      }
      if (fin) return;
    }
    // More may be waiting: come back next turn instead of starving other connections.
    this.quic.endpoint.markDirty(this.quic);
  }

  private onPeerUni(streamId: number, chunk: Uint8Array, fin: boolean): void {
    let s = this.peerUni.get(streamId);
    if (!s) {
      s = { head: null };
      this.peerUni.set(streamId, s);
    }
    if (s.ignore) return;
    if (!s.kind) {
      const head: Uint8Array = s.head ? Buffer.concat([s.head, chunk]) : chunk;
      const h = readUniStreamHeader(head);
      if (!h) {
        if (head.length > 16) throw new H3Error(H3ErrorCode.H3_STREAM_CREATION_ERROR, 'connection', 'unreadable stream type');
        s.head = head;
        if (fin) this.peerUni.delete(streamId);
        return;
      }
      s.head = null;
      if (this.peerUniTypes.accept(h) === 'ignore') {
        s.ignore = true;
        this.quic.streamShutdown(streamId, H3ErrorCode.H3_STREAM_CREATION_ERROR, 'read');
        return;
      }
      s.kind = h.kind;
      if (h.kind === 'control') s.control = new H3FrameParser({ stream: 'control', role: this.role });
      else if (h.kind === 'qpack_encoder') s.encoder = new QpackEncoderStreamReader();
      else if (h.kind === 'qpack_decoder') s.decoder = new QpackDecoderStreamReader();
      chunk = head.subarray(h.headerLength);
    }
    if (s.control) {
      for (const f of s.control.push(chunk)) {
        if (f.type === 'settings') {
          this.peerSettings = f.settings;
          this.events.onSettings?.(f.settings);
        } else if (f.type === 'goaway') {
          this.events.onGoaway?.(f.id);
        }
      }
      if (fin) s.control.end();
    } else if (s.encoder) {
      s.encoder.push(chunk);
    } else if (s.decoder) {
      s.decoder.push(chunk);
    }
    if (fin && s.kind && s.kind !== 'push') throw criticalStreamClosed(s.kind);
  }

  /** Whether the peer announced HTTP Datagrams (else DATAGRAM capsules carry the packets). */
  get peerAcceptsDatagrams(): boolean {
    return this.peerSettings?.h3Datagram === true;
  }
}
