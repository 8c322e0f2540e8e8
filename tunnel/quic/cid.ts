// Server connection IDs in the layout the XDP load balancer reads to steer a QUIC connection to
// the worker/host that owns it, whatever the client's address becomes. The layout itself is defined
// once, in xdp/ (xdp/cid.ts, documented in xdp/README.md): byte 0 = config id (3 bits) | length-1
// (5 bits), bytes 1-2 = server id (u16 BE), the rest random. This PoP issues 20-byte CIDs with config id
// SERVER_CID_FORMAT (the LB's `xdp.lb.cidConfigId` default).
import { randomFillSync } from 'node:crypto';
import { encodeCid, decodeCid, CidError } from '../../xdp/index.js';

export const SERVER_CID_LENGTH = 20;
export const SERVER_CID_FORMAT = 0;

export function newServerConnectionId(serverId: number): Buffer {
  if (!Number.isInteger(serverId) || serverId < 0 || serverId > 0xffff) throw new RangeError(`server id must be 0..65535, got ${serverId}`);
  return encodeCid({ configId: SERVER_CID_FORMAT, serverId }, SERVER_CID_LENGTH, randomFillSync(Buffer.allocUnsafe(SERVER_CID_LENGTH - 3)));
}

/** The server id inside a connection ID of this PoP's layout; undefined for any other CID. */
export function serverIdOfConnectionId(cid: Uint8Array): number | undefined {
  if (cid.length !== SERVER_CID_LENGTH) return undefined;
  try {
    const fields = decodeCid(cid);
    return fields.configId === SERVER_CID_FORMAT ? fields.serverId : undefined;
  } catch (err) {
    if (err instanceof CidError) return undefined;
    throw err;
  }
}

/** A random client-side connection ID (no structure: only the server's CIDs are steered). */
export function newClientConnectionId(): Buffer {
  return randomFillSync(Buffer.allocUnsafe(SERVER_CID_LENGTH));
}
