// Server connection IDs in the layout the XDP load balancer reads to steer a QUIC connection to
// the worker/host that owns it, whatever the client's address becomes. One function makes them,
// one reads them back, so the layout can be aligned with xdp/ in one place.
//
// Layout (20 bytes, QUIC-LB style first octet):
//   byte 0      bits 7..5: config rotation / format version (0 = this layout)
//               bits 4..0: connection ID length − 1 (19), self-describing as in draft-ietf-quic-load-balancers
//   bytes 1..2  server id, unsigned 16-bit big endian (0..65535)
//   bytes 3..19 random (17 bytes, 136 bits: unguessable, so CIDs do not leak linkability)
import { randomFillSync } from 'node:crypto';

export const SERVER_CID_LENGTH = 20;
export const SERVER_CID_FORMAT = 0;
const FIRST_OCTET = (SERVER_CID_FORMAT << 5) | (SERVER_CID_LENGTH - 1);

export function newServerConnectionId(serverId: number): Buffer {
  if (!Number.isInteger(serverId) || serverId < 0 || serverId > 0xffff) throw new RangeError(`server id must be 0..65535, got ${serverId}`);
  const cid = Buffer.allocUnsafe(SERVER_CID_LENGTH);
  randomFillSync(cid, 3);
  cid[0] = FIRST_OCTET;
  cid.writeUInt16BE(serverId, 1);
  return cid;
}

/** The server id inside a connection ID of this layout; undefined for any other CID. */
export function serverIdOfConnectionId(cid: Uint8Array): number | undefined {
  if (cid.length !== SERVER_CID_LENGTH || cid[0] !== FIRST_OCTET) return undefined;
  return (cid[1]! << 8) | cid[2]!;
}

/** A random client-side connection ID (no structure: only the server's CIDs are steered). */
export function newClientConnectionId(): Buffer {
  return randomFillSync(Buffer.allocUnsafe(SERVER_CID_LENGTH));
}
