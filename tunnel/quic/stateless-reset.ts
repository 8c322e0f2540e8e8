// Stateless reset (RFC 9000 §10.3): the answer to a short-header packet for a connection this
// endpoint does not know. It looks like a short-header packet (fixed bit set, long-header bit clear),
// random bytes, and ends with the connection's reset token, which only the holder of the fleet key
// (fleet-key.ts) can compute; the client compares the last 16 bytes with the token it was given.
import { randomFillSync } from 'node:crypto';
import { RESET_TOKEN_LEN } from './fleet-key.js';

/** Smallest datagram a peer recognises as a stateless reset (§10.3: 5 bytes of header, then the token). */
export const MIN_RESET_LEN = 21;
/** Long enough to look like a packet with a 20-byte CID and a 1-byte payload (§10.3 suggests ≥ 41 bytes). */
const TARGET_RESET_LEN = 43;

/**
 * A reset for a trigger of `triggerLen` bytes, or undefined when none may be sent: it must be smaller
 * than the trigger (§10.3.3, so two endpoints cannot reset each other forever) and at least 21 bytes.
 */
export function statelessResetPacket(token: Uint8Array, triggerLen: number): Buffer | undefined {
  if (token.length !== RESET_TOKEN_LEN) throw new RangeError(`a reset token has ${RESET_TOKEN_LEN} bytes, got ${token.length}`);
  const len = Math.min(TARGET_RESET_LEN, triggerLen - 1);
  if (len < MIN_RESET_LEN) return undefined;
  const out = randomFillSync(Buffer.allocUnsafe(len));
  out[0] = (out[0]! & 0x3f) | 0x40; // short header: form bit 0, fixed bit 1
  Buffer.from(token.buffer, token.byteOffset, token.length).copy(out, len - RESET_TOKEN_LEN);
  return out;
}

/** A token bucket: at most `perSecond` resets, bursts of up to one second's worth (§10.3.3 asks for a bound). */
export class ResetLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly perSecond: number,
    now = Date.now(),
  ) {
    this.tokens = perSecond;
    this.last = now;
  }

  take(now = Date.now()): boolean {
    this.tokens = Math.min(this.perSecond, this.tokens + ((now - this.last) * this.perSecond) / 1000);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }
}
