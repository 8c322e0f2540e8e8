// The PoP side of connect-udp: one connected UDP socket per session towards the target, after DNS
// resolution (with a timeout) and the target policy. The sockets are the server's RelayIo
// (udp-relay-io.ts: batched through the native addon, or node:dgram); replies go to the session's sink.
import { isIP } from 'node:net';
import { type TargetPolicy, TargetError, type UdpTarget } from './policy.js';
import type { TargetResolver } from './dns.js';
import { errorMessage } from '../../dataplane/index.js';
import type { RelayIo, RelaySocket, ReplySink } from './udp-relay-io.js';

export class UdpRelay {
  private closed = false;

  private constructor(
    readonly address: string,
    readonly port: number,
    private readonly socket: RelaySocket,
  ) {}

  /**
   * Resolves and checks the target, then connects a UDP socket to it. Throws TargetError:
   * TARGET_REFUSED when the policy refuses it, the resolver's codes when the name does not resolve,
   * TARGET_UNREACHABLE when the kernel will not connect a socket to it (no route, broadcast).
   */
  static async open(target: UdpTarget, policy: TargetPolicy, resolver: TargetResolver, io: RelayIo, onReply: ReplySink): Promise<UdpRelay> {
    const address = isIP(target.host) === 0 ? await resolver.resolve(target.host) : target.host;
    const why = policy.check(address, target.port);
    if (why) throw new TargetError('TARGET_REFUSED', why);
    let socket: RelaySocket;
    try {
      socket = await io.open(address, target.port, onReply);
    } catch (err) {
      throw new TargetError('TARGET_UNREACHABLE', `udp ${address}:${target.port}: ${errorMessage(err)}`, { cause: err });
    }
    return new UdpRelay(address, target.port, socket);
  }

  /** A payload from the client towards the target (copied into the send queue). */
  send(payload: Uint8Array): void {
    if (!this.closed) this.socket.send(payload);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
  }
}
