// The QUIC connection ID format this PoP's load balancer routes by (documented in xdp/README.md).
// The MASQUE server issues its CIDs with encodeCid so that short-header packets reach it by CID
// whatever the client's address or port becomes.
//
//   byte 0    : config id (3 bits, 0-6; 7 = "not routable", hash instead) | CID length - 1 (5 bits)
//   bytes 1-2 : server ID, big-endian (0-65535), mapped to a backend by the LB
//   bytes 3.. : nonce (random, at least 5 bytes) so CIDs are not linkable
// Length 8-20 bytes (RFC 9000 caps CIDs at 20).
import { randomBytes } from 'node:crypto';
import { CbrError } from '../dataplane/index.js';

export const CID_MIN_LEN = 8;
export const CID_MAX_LEN = 20;
export const CID_UNROUTABLE_CONFIG = 7;

export class CidError extends CbrError {
  constructor(message: string) {
    super('CID_INVALID', message);
  }
}

export interface CidFields {
  configId: number;
  serverId: number;
}

export function encodeCid(fields: CidFields, length = 16, nonce: Buffer = randomBytes(length - 3)): Buffer {
  if (!Number.isInteger(length) || length < CID_MIN_LEN || length > CID_MAX_LEN)
    throw new CidError(`CID length ${length}: expected ${CID_MIN_LEN}-${CID_MAX_LEN}`);
  if (!Number.isInteger(fields.configId) || fields.configId < 0 || fields.configId > 7) throw new CidError(`config id ${fields.configId}: expected 0-7`);
  if (!Number.isInteger(fields.serverId) || fields.serverId < 0 || fields.serverId > 0xffff)
    throw new CidError(`server id ${fields.serverId}: expected 0-65535`);
  if (nonce.length < length - 3) throw new CidError(`nonce of ${nonce.length} bytes: need ${length - 3}`);
  const cid = Buffer.alloc(length);
  cid[0] = (fields.configId << 5) | (length - 1);
  cid.writeUInt16BE(fields.serverId, 1);
  nonce.copy(cid, 3, 0, length - 3);
  return cid;
}

/** Decodes a CID issued in this format; throws CidError when it is not one (wrong length byte, too short or long). */
export function decodeCid(cid: Uint8Array): CidFields & { length: number } {
  if (cid.length < CID_MIN_LEN || cid.length > CID_MAX_LEN) throw new CidError(`CID of ${cid.length} bytes: expected ${CID_MIN_LEN}-${CID_MAX_LEN}`);
  const length = (cid[0]! & 0x1f) + 1;
  if (length !== cid.length) throw new CidError(`CID length bits say ${length} bytes, the CID has ${cid.length}`);
  return { configId: cid[0]! >> 5, serverId: (cid[1]! << 8) | cid[2]!, length };
}
