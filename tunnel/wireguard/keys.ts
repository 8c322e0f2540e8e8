// WireGuard keys: Curve25519 (X25519) through node:crypto. The private key lives in a file (base64,
// like `wg genkey` writes it); the public key is derived exactly as WireGuard does (X25519 of the
// clamped scalar with the base point; node's X25519 clamps like WireGuard does).
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { errorMessage, readSecretFile } from '../../dataplane/index.js';
import { keyFromBase64 } from './uapi.js';

// PKCS#8 DER header for an X25519 private key (RFC 8410): SEQUENCE { version 0, AlgorithmIdentifier 1.3.101.110, OCTET STRING { OCTET STRING(32) } }.
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/** A new private key, clamped as `wg genkey` does. */
export function generatePrivateKey(): string {
  const k = randomBytes(32);
  k[0]! &= 248;
  k[31]! &= 127;
  k[31]! |= 64;
  return k.toString('base64');
}

export function publicKeyFor(privateKeyB64: string): string {
  const raw = keyFromBase64(privateKeyB64);
  if (!raw) throw new Error('not a base64 WireGuard private key');
  const priv = createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, raw]), format: 'der', type: 'pkcs8' });
  const spki = createPublicKey(priv).export({ format: 'der', type: 'spki' });
  return spki.subarray(spki.length - 32).toString('base64');
}

/**
 * Reads the interface's private key from `path`; when the file does not exist, generates one, writes
 * it with mode 0600 and reports it through `onGenerated` (so the operator sees a new identity).
 * Throws with `field` in the message when the file is unreadable or malformed.
 */
export function loadOrCreatePrivateKey(
  path: string,
  field: string,
  onGenerated: (path: string, publicKey: string) => void,
): { privateKey: string; publicKey: string } {
  if (!existsSync(path)) {
    const privateKey = generatePrivateKey();
    try {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      writeFileSync(path, `${privateKey}\n`, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      throw new Error(`${field}: cannot write a new private key to ${path}: ${errorMessage(err)}`);
    }
    const publicKey = publicKeyFor(privateKey);
    onGenerated(path, publicKey);
    return { privateKey, publicKey };
  }
  const text = readSecretFile(path, field).trim();
  if (!keyFromBase64(text)) throw new Error(`${field}: ${path} does not hold a base64 WireGuard private key (44 characters, as \`wg genkey\` writes)`);
  return { privateKey: text, publicKey: publicKeyFor(text) };
}
