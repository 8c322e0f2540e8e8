// Address-validation tokens for stateless retry (RFC 9000 §8.1.2): the server answers a token-less
// Initial with a Retry carrying this token and only creates connection state when the client echoes
// it from the same address, so spoofed Initials cost one small packet and no memory.
//
// The MAC keys come from the fleet key (fleet-key.ts), so any PoP of the fleet accepts a token another
// minted; the first key signs, every key verifies (rotation by overlap).
//
// Token: 0x01 | issued (u32 seconds, big endian) | odcid length (u8) | odcid | HMAC-SHA256(key, all before ‖ client IP ‖ retry SCID)[0..16]
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { isIPv4 } from 'node:net';

const TOKEN_TYPE_RETRY = 0x01;
const MAC_LEN = 16;
export const MAX_CID_LEN = 20;

export type TokenRejection = 'malformed' | 'bad-mac' | 'expired' | 'future';

export class RetryTokenKey {
  private readonly keys: readonly Buffer[];

  /** `keys`: one MAC key, or several with the signing one first. */
  constructor(
    keys: Buffer | readonly Buffer[] = randomBytes(32),
    readonly lifetimeS = 10,
  ) {
    this.keys = Buffer.isBuffer(keys) ? [keys] : [...keys];
    if (this.keys.length === 0) throw new RangeError('a retry token key needs at least one MAC key');
  }

  mint(clientIp: string, odcid: Uint8Array, retryScid: Uint8Array, nowMs = Date.now()): Buffer {
    if (odcid.length > MAX_CID_LEN) throw new RangeError('odcid longer than 20 bytes');
    const body = Buffer.allocUnsafe(6 + odcid.length);
    body[0] = TOKEN_TYPE_RETRY;
    body.writeUInt32BE(Math.floor(nowMs / 1000) >>> 0, 1);
    body[5] = odcid.length;
    Buffer.from(odcid.buffer, odcid.byteOffset, odcid.length).copy(body, 6);
    return Buffer.concat([body, this.mac(this.keys[0]!, body, clientIp, retryScid)]);
  }

  /** The original DCID when the token is ours, fresh and bound to this address and retry SCID; else why not. */
  validate(token: Uint8Array, clientIp: string, retryScid: Uint8Array, nowMs = Date.now()): { odcid: Buffer } | { rejected: TokenRejection } {
    const t = Buffer.from(token.buffer, token.byteOffset, token.length);
    if (t.length < 6 + MAC_LEN || t[0] !== TOKEN_TYPE_RETRY) return { rejected: 'malformed' };
    const odcidLen = t[5]!;
    if (odcidLen > MAX_CID_LEN || t.length !== 6 + odcidLen + MAC_LEN) return { rejected: 'malformed' };
    const body = t.subarray(0, 6 + odcidLen);
    const mac = t.subarray(6 + odcidLen);
    if (!this.keys.some((k) => timingSafeEqual(this.mac(k, body, clientIp, retryScid), mac))) return { rejected: 'bad-mac' };
    const issued = t.readUInt32BE(1);
    const now = Math.floor(nowMs / 1000);
    if (issued > now + 1) return { rejected: 'future' };
    if (now - issued > this.lifetimeS) return { rejected: 'expired' };
    return { odcid: Buffer.from(body.subarray(6)) };
  }

  private mac(key: Buffer, body: Buffer, clientIp: string, retryScid: Uint8Array): Buffer {
    const h = createHmac('sha256', key);
    h.update(body);
    h.update(isIPv4(clientIp) ? `4:${clientIp}` : `6:${clientIp.toLowerCase()}`);
    h.update(retryScid);
    return h.digest().subarray(0, MAC_LEN);
  }
}
