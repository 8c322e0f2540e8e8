// The PoP side of connect-udp: one connected UDP socket per session towards the target, after DNS
// resolution (with a timeout) and the target policy. The socket is made on the session's first payload,
// not at CONNECT: an idle session then holds no socket, libuv handle or file descriptor (most of 10,000
// idle sessions never send). Payloads (context ID 0) go out as they come; replies go back to the sink.
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { type TargetPolicy, TargetError, type UdpTarget } from './policy.js';
import type { TargetResolver } from './dns.js';

export type UdpDropReason = 'send-error' | 'client-queue';

export function newUdpDrops(): Record<UdpDropReason, number> {
  return { 'send-error': 0, 'client-queue': 0 };
}

/** Payloads held while the socket connects (the first ones of a session); more are dropped as send errors. */
export const CONNECTING_QUEUE = 64;

export class UdpRelay {
  readonly counters = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 };
  private closed = false;
  private socket: Socket | undefined;
  /** Payloads waiting for the socket to connect; undefined once it has. */
  private connecting: Uint8Array[] | undefined;

  private constructor(
    readonly address: string,
    readonly port: number,
    private readonly onPacket: (payload: Buffer) => boolean,
    /** Drops by reason, shared by the relays of one server (cbr_masque_drops_total{reason="relay-…"}). */
    readonly drops: Record<UdpDropReason, number>,
  ) {}

  /**
   * Resolves and checks the target. Throws TargetError: TARGET_REFUSED when the policy refuses it, the
   * resolver's codes when the name does not resolve.
   */
  static async open(
    target: UdpTarget,
    policy: TargetPolicy,
    resolver: TargetResolver,
    onPacket: (payload: Buffer) => boolean,
    drops: Record<UdpDropReason, number> = newUdpDrops(),
  ): Promise<UdpRelay> {
    const address = isIP(target.host) === 0 ? await resolver.resolve(target.host) : target.host;
    const why = policy.check(address, target.port);
    if (why) throw new TargetError('TARGET_REFUSED', why);
    return new UdpRelay(address, target.port, onPacket, drops);
  }

  /** Whether the relay holds a socket now (made on the first payload). */
  get hasSocket(): boolean {
    return this.socket !== undefined;
  }

  /** A payload from the client towards the target. */
  send(payload: Uint8Array): void {
    if (this.closed) return;
    this.counters.packetsIn++;
    this.counters.bytesIn += payload.length;
    if (!this.socket) this.connect();
    if (this.connecting) {
      // A copy: the caller may reuse its buffer once send returns.
      if (this.connecting.length < CONNECTING_QUEUE) this.connecting.push(Buffer.from(payload));
      else this.drops['send-error']++;
      return;
    }
    this.socket!.send(payload);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.connecting = undefined;
    this.socket?.close();
    this.socket = undefined;
  }

  private connect(): void {
    const socket = createSocket(isIP(this.address) === 6 ? 'udp6' : 'udp4');
    this.socket = socket;
    this.connecting = [];
    const failed = () => {
      if (this.socket !== socket) return; // closed meanwhile
      // No route or no local address: this burst is lost; the next payload tries a new socket.
      this.drops['send-error'] += this.connecting?.length ?? 0;
      this.connecting = undefined;
      this.socket = undefined;
      socket.close();
    };
    socket.once('error', failed);
    socket.connect(this.port, this.address, () => {
      socket.off('error', failed);
      socket.on('error', () => this.drops['send-error']++);
      socket.on('message', (msg) => {
        this.counters.packetsOut++;
        this.counters.bytesOut += msg.length;
        if (!this.onPacket(msg)) this.drops['client-queue']++;
      });
      const queued = this.connecting ?? [];
      this.connecting = undefined;
      if (this.socket !== socket) return; // closed meanwhile
      for (const p of queued) socket.send(p);
    });
  }
}
