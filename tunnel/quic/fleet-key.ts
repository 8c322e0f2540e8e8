// The fleet's shared static key (tunnel.masque.fleetKeyFile): every PoP holds the same file, so a
// stateless reset token (RFC 9000 §10.3) and a retry token (§8.1.3) made by one PoP are valid at
// every other. Keys are rotated by overlap: the file holds one or more keys, the first signs (new
// retry tokens, the reset token advertised for new connections), all verify (retry tokens) or are
// tried (reset tokens for connections made under an older key).
//
// The TLS session-ticket key derives from it too, so `cbr connect` resumes its session at another PoP.
//
// File: one key per line, hex or base64, at least 32 bytes; blank lines and `#` comments ignored.
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { CbrError, readSecretFile } from '../../dataplane/index.js';

const MIN_KEY_BYTES = 32;
/** More keys than an overlap needs means a file that was never pruned: refuse it. */
const MAX_KEYS = 4;
export const RESET_TOKEN_LEN = 16;

function derive(key: Buffer, info: string): Buffer {
  return Buffer.from(hkdfSync('sha256', key, Buffer.alloc(0), info, 32));
}

interface DerivedKey {
  reset: Buffer;
  retry: Buffer;
}

export class FleetKeys {
  private readonly keys: readonly DerivedKey[];
  private readonly ticket: Buffer;

  /** `shared`: keys from the fleet's file (false: one random key of this process). */
  private constructor(
    secrets: readonly Buffer[],
    readonly shared: boolean,
  ) {
    this.keys = secrets.map((k) => ({ reset: derive(k, 'cbr quic stateless reset v1'), retry: derive(k, 'cbr quic retry token v1') }));
    this.ticket = Buffer.from(hkdfSync('sha256', secrets[0]!, Buffer.alloc(0), 'cbr tls session ticket v1', 48));
  }

  /** A random key for this process only: tokens it makes are valid nowhere else and not after a restart. */
  static local(): FleetKeys {
    return new FleetKeys([randomBytes(32)], false);
  }

  static fromSecrets(secrets: readonly Buffer[]): FleetKeys {
    if (secrets.length === 0) throw new RangeError('a fleet key set needs at least one key');
    return new FleetKeys(secrets, true);
  }

  /** Parses the key file's text; errors name `field` and the line that is wrong. */
  static parse(text: string, field: string): FleetKeys {
    const secrets: Buffer[] = [];
    const lines = text.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.replace(/#.*/, '').trim();
      if (!line) continue;
      const key = /^[0-9a-fA-F]+$/.test(line) && line.length % 2 === 0 ? Buffer.from(line, 'hex') : Buffer.from(line, 'base64');
      // Buffer.from(…, 'base64') skips what is not base64; a round trip shows whether the line was.
      const isBase64 = key.toString('base64').replace(/=+$/, '') === line.replace(/=+$/, '');
      if (!/^[0-9a-fA-F]+$/.test(line) && !isBase64) throw new CbrError('CONFIG_INVALID', `${field}: line ${i + 1} is neither hex nor base64`);
      if (key.length < MIN_KEY_BYTES)
        throw new CbrError('CONFIG_INVALID', `${field}: line ${i + 1} holds ${key.length} bytes, keys need at least ${MIN_KEY_BYTES}`);
      secrets.push(key);
    }
    if (secrets.length === 0) throw new CbrError('CONFIG_INVALID', `${field}: the file holds no key (one per line, hex or base64, ≥ ${MIN_KEY_BYTES} bytes)`);
    if (secrets.length > MAX_KEYS) throw new CbrError('CONFIG_INVALID', `${field}: ${secrets.length} keys, at most ${MAX_KEYS} (remove the retired ones)`);
    return new FleetKeys(secrets, true);
  }

  /** Reads the file (refused when group or others may access it, see readSecretFile). */
  static fromFile(path: string, field: string): FleetKeys {
    return FleetKeys.parse(readSecretFile(path, field), field);
  }

  get size(): number {
    return this.keys.length;
  }

  /** The stateless reset token of a connection ID under key `index` (0 = the signing key). */
  resetToken(cid: Uint8Array, index = 0): Buffer {
    const k = this.keys[index];
    if (!k) throw new RangeError(`no fleet key ${index}`);
    return createHmac('sha256', k.reset).update(cid).digest().subarray(0, RESET_TOKEN_LEN);
  }

  /**
   * The TLS session-ticket key (48 bytes, BoringSSL's name | HMAC | AES layout), from the signing key:
   * a ticket issued by one PoP resumes at another. BoringSSL takes a single key, so during a rotation
   * PoPs with different first keys fall back to full handshakes.
   */
  ticketKey(): Buffer {
    return this.ticket;
  }

  /** MAC keys for retry tokens, the signing one first. */
  retryKeys(): Buffer[] {
    return this.keys.map((k) => k.retry);
  }
}
