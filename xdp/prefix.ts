// Prefix handling for the deny/allow lists: parse and normalise with ip-num, encode as the LPM trie
// keys of xdp/src/cbr_xdp.h (struct cbr_lpm4 / cbr_lpm6), and decode them back.
import { IPv6CidrRange, IPv4, IPv6 } from 'ip-num';
import { CbrError, errorMessage, isIPv4, isIPv6 } from '../dataplane/index.js';

export class PrefixError extends CbrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PREFIX_INVALID', message, options);
  }
}

export interface ParsedPrefix {
  family: 4 | 6;
  /** Network address bytes (host bits cleared): 4 or 16 bytes. */
  addr: Buffer;
  length: number;
  /** Normalised text, e.g. 192.0.2.0/24, 2001:db8::/32. */
  text: string;
}

function bigToBytes(v: bigint, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = n - 1; i >= 0; i--) {
    b[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return b;
}

function bytesToBig(b: Buffer): bigint {
  let v = 0n;
  for (const x of b) v = (v << 8n) | BigInt(x);
  return v;
}

/** Canonical hex form (embedded IPv4 and the like rewritten) that ip-num accepts; PrefixError if none. */
function canonicalV6(addr: string, input: string): string {
  try {
    return new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  } catch {
    throw new PrefixError(`expected an IPv6 address without a zone, got ${JSON.stringify(input)}`);
  }
}

/** "192.0.2.7/24" → 192.0.2.0/24; a bare address is a /32 or /128. Throws PrefixError naming the input. */
export function parsePrefix(input: string): ParsedPrefix {
  const s = input.trim();
  const [addr, len, extra] = s.split('/');
  if (addr === undefined || extra !== undefined || (len !== undefined && !/^\d{1,3}$/.test(len))) {
    throw new PrefixError(`expected an IP prefix like 192.0.2.0/24 or 2001:db8::/32, got ${JSON.stringify(input)}`);
  }
  if (isIPv4(addr)) {
    const n = len === undefined ? 32 : Number(len);
    if (n > 32) throw new PrefixError(`prefix length ${n} is more than 32 in ${JSON.stringify(input)}`);
    // IPv4 by plain arithmetic: million-entry lists would spend half a minute in ip-num's objects
    const v = addr.split('.').reduce((a, o) => (a * 256 + Number(o)) >>> 0, 0);
    const net = n === 0 ? 0 : (v & (0xffffffff << (32 - n))) >>> 0;
    const bytes = Buffer.alloc(4);
    bytes.writeUInt32BE(net);
    return { family: 4, addr: bytes, length: n, text: `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}/${n}` };
  }
  if (isIPv6(addr)) {
    const n = len === undefined ? 128 : Number(len);
    if (n > 128) throw new PrefixError(`prefix length ${n} is more than 128 in ${JSON.stringify(input)}`);
    const first = IPv6CidrRange.fromCidr(`${canonicalV6(addr, input)}/${n}`).getFirst();
    const bytes = bigToBytes(first.getValue(), 16);
    return { family: 6, addr: bytes, length: n, text: `${formatAddress(6, bytes)}/${n}` };
  }
  throw new PrefixError(`expected an IP prefix like 192.0.2.0/24 or 2001:db8::/32, got ${JSON.stringify(input)}`);
}

/** An address (no length) as 4 or 16 bytes. */
export function parseAddress(input: string): { family: 4 | 6; addr: Buffer } {
  if (isIPv4(input)) return { family: 4, addr: bigToBytes(IPv4.fromString(input).getValue(), 4) };
  if (isIPv6(input)) return { family: 6, addr: bigToBytes(IPv6.fromString(canonicalV6(input, input)).getValue(), 16) };
  throw new PrefixError(`expected an IPv4 or IPv6 address, got ${JSON.stringify(input)}`);
}

/** Compact text form (RFC 5952 for IPv6, via Node's URL parser). */
export function formatAddress(family: 4 | 6, addr: Buffer): string {
  if (family === 4) return Array.from(addr.subarray(0, 4)).join('.');
  return new URL(`http://[${new IPv6(bytesToBig(addr.subarray(0, 16))).toString()}]/`).hostname.slice(1, -1);
}

/** struct cbr_lpm4 / cbr_lpm6: __u32 prefixlen (host order), then the address bytes. */
export function lpmKey(p: ParsedPrefix): Buffer {
  const k = Buffer.alloc(4 + (p.family === 4 ? 4 : 16));
  k.writeUInt32LE(p.length, 0);
  p.addr.copy(k, 4);
  return k;
}

export function decodeLpmKey(k: Buffer): ParsedPrefix {
  if (k.length !== 8 && k.length !== 20) throw new PrefixError(`LPM key of ${k.length} bytes: expected 8 or 20`);
  const family = k.length === 8 ? 4 : 6;
  const length = k.readUInt32LE(0);
  if (length > (family === 4 ? 32 : 128)) throw new PrefixError(`LPM key prefix length ${length} is too long for IPv${family}`);
  const addr = Buffer.from(k.subarray(4));
  return { family, addr, length, text: `${formatAddress(family, addr)}/${length}` };
}

/** Reads a list file: one prefix a line; `#` comments and blank lines ignored. Errors name file and line. */
export function parsePrefixList(text: string, source: string): ParsedPrefix[] {
  const out: ParsedPrefix[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.replace(/#.*/, '').trim();
    if (!line) continue;
    try {
      out.push(parsePrefix(line));
    } catch (err) {
      throw new PrefixError(`${source}:${i + 1}: ${errorMessage(err)}`, { cause: err });
    }
  }
  return out;
}
