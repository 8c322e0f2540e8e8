// The PoP side of connect-udp: one connected UDP socket per session towards the target, after DNS
// resolution (with a timeout) and the target policy. Payloads (context ID 0) go out as they come;
// replies go back to the session's sink.
import { createSocket, type Socket } from 'node:dgram';
import { isIP } from 'node:net';
import { type TargetPolicy, TargetError, type UdpTarget } from './policy.js';
import type { TargetResolver } from './dns.js';

export type UdpDropReason = 'send-error' | 'client-queue';

export class UdpRelay {
  readonly counters = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 };
  readonly drops: Record<UdpDropReason, number> = { 'send-error': 0, 'client-queue': 0 };
  private closed = false;

  private constructor(
    private readonly socket: Socket,
    readonly address: string,
    readonly port: number,
  ) {}

  /**
   * Resolves and checks the target, then connects a UDP socket to it. Throws TargetError:
   * TARGET_REFUSED when the policy refuses it, the resolver's codes when the name does not resolve.
   */
  static async open(target: UdpTarget, policy: TargetPolicy, resolver: TargetResolver, onPacket: (payload: Buffer) => boolean): Promise<UdpRelay> {
    const address = isIP(target.host) === 0 ? await resolver.resolve(target.host) : target.host;
    const why = policy.check(address, target.port);
    if (why) throw new TargetError('TARGET_REFUSED', why);
    const socket = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4');
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.connect(target.port, address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const relay = new UdpRelay(socket, address, target.port);
    socket.on('error', () => relay.drops['send-error']++);
    socket.on('message', (msg) => {
      relay.counters.packetsOut++;
      relay.counters.bytesOut += msg.length;
      if (!onPacket(msg)) relay.drops['client-queue']++;
    });
    return relay;
  }

  /** A payload from the client towards the target. */
  send(payload: Uint8Array): void {
    if (this.closed) return;
    this.counters.packetsIn++;
    this.counters.bytesIn += payload.length;
    this.socket.send(payload);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
