// The one IP address codec: IPv4/IPv6 text <-> bytes <-> numbers, prefixes, RFC 5952 text form.
// Pure. Parsing and formatting are hand-written over bytes because they run per capsule and per line
// of million-entry deny lists, where ip-num's binary-string objects cost far more (and ip-num refuses
// embedded IPv4 such as ::ffff:192.0.2.1/128); ip-num is the reference in the property tests.
import { CbrError } from '../errors.js';

export type IpFamily = 4 | 6;

/** A text that is not an address or prefix (what the text was is in the message). */
export class PrefixError extends CbrError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('PREFIX_INVALID', message, options);
  }
}

/** 4 or 16 bytes of `text`, or null when it is not a literal IPv4 / IPv6 address (no zone, no leading zeros in IPv4). */
export function parseIp(text: string): Uint8Array | null {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}

const V4_PART = /^(0|[1-9][0-9]{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;

export function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!V4_PART.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

/** The 16-bit groups of one side of `::` (an embedded IPv4 part allowed last), or null. */
function v6Groups(s: string, lastMayBeV4: boolean): number[] | null {
  if (s === '') return [];
  const out: number[] = [];
  const parts = s.split(':');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (lastMayBeV4 && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (!v4) return null;
      out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else {
      if (!V6_GROUP.test(p)) return null;
      out.push(parseInt(p, 16));
    }
  }
  return out;
}

export function parseIpv6(text: string): Uint8Array | null {
  if (text.length > 45) return null;
  const dbl = text.indexOf('::');
  if (dbl >= 0 && text.indexOf('::', dbl + 1) >= 0) return null;
  const head = dbl >= 0 ? text.slice(0, dbl) : text;
  const tail = dbl >= 0 ? text.slice(dbl + 2) : '';
  const h = v6Groups(head, dbl < 0);
  const t = v6Groups(tail, true);
  if (!h || !t) return null;
  const missing = 8 - h.length - t.length;
  if (dbl >= 0 ? missing < 1 : missing !== 0) return null;
  const all = [...h, ...new Array<number>(dbl >= 0 ? missing : 0).fill(0), ...t];
  const out = new Uint8Array(16);
  all.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

/**
 * The canonical text form: dotted quad, or RFC 5952 §4 for IPv6 (lowercase, no leading zeros, the
 * LONGEST run of two or more zero groups shortened to `::`, the leftmost one on a tie).
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  if (bytes.length !== 16) throw new PrefixError(`an IP address has 4 or 16 bytes, not ${bytes.length}`);
  const g: number[] = [];
  for (let i = 0; i < 16; i += 2) g.push((bytes[i]! << 8) | bytes[i + 1]!);
  let bestStart = -1;
  let bestLen = 1; // a single zero group is never shortened (§4.2.2)
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number[]) => a.map((x) => x.toString(16)).join(':');
  if (bestStart < 0) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

export function familyOf(bytes: Uint8Array): IpFamily {
  return bytes.length === 4 ? 4 : 6;
}

/** The address as an unsigned big-endian number. */
export function ipToBigInt(bytes: Uint8Array): bigint {
  let v = 0n;
  for (const x of bytes) v = (v << 8n) | BigInt(x);
  return v;
}

/** The `family` address whose number is `value` (taken modulo 2^32 / 2^128). */
export function bigIntToIp(value: bigint, family: IpFamily): Uint8Array {
  const out = new Uint8Array(family === 4 ? 4 : 16);
  let v = value;
  for (let i = out.length - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Bytes of an address; PrefixError naming the text when it is none. */
export function addressBytes(text: string): Uint8Array {
  const b = parseIp(text);
  if (!b) throw new PrefixError(`expected an IPv4 or IPv6 address, got ${JSON.stringify(text)}`);
  return b;
}

/** An address as a Buffer (map encoders copy it), with its family. PrefixError when it is none. */
export function parseAddress(text: string): { family: IpFamily; addr: Buffer } {
  const b = addressBytes(text);
  return { family: familyOf(b), addr: Buffer.from(b.buffer, b.byteOffset, b.byteLength) };
}

/** The number of an address (PrefixError when it is none). */
export function ipValue(text: string): bigint {
  return ipToBigInt(addressBytes(text));
}

/** Canonical text of an address, so stored and compared forms agree ("FD00:0::5" → "fd00::5"). */
export function canonicalIp(text: string): string {
  return formatIp(addressBytes(text));
}

/** -1, 0 or 1 comparing two addresses of the same length as unsigned big-endian numbers. */
export function compareIpBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
  return 0;
}

/** True when every bit of `addr` after the first `prefixLength` bits is zero. */
export function hostBitsZero(addr: Uint8Array, prefixLength: number): boolean {
  for (let bit = prefixLength; bit < addr.length * 8; bit++) {
    if ((addr[bit >> 3] ?? 0) & (0x80 >> (bit & 7))) return false;
  }
  return true;
}

export interface ParsedPrefix {
  family: IpFamily;
  /** Network address bytes (host bits cleared): 4 or 16 bytes. */
  addr: Buffer;
  length: number;
  /** Normalised text, e.g. 192.0.2.0/24, 2001:db8::/32. */
  text: string;
}

const PREFIX_SHAPE = 'expected an IP prefix like 192.0.2.0/24 or 2001:db8::/32';

/** "192.0.2.7/24" → 192.0.2.0/24; a bare address is a /32 or /128. Throws PrefixError naming the input. */
export function parsePrefix(input: string): ParsedPrefix {
  const s = input.trim();
  const [addrText, len, extra] = s.split('/');
  const bytes = addrText === undefined ? null : parseIp(addrText);
  if (!bytes || extra !== undefined || (len !== undefined && !/^\d{1,3}$/.test(len))) {
    throw new PrefixError(`${PREFIX_SHAPE}, got ${JSON.stringify(input)}`);
  }
  const bits = bytes.length * 8;
  const n = len === undefined ? bits : Number(len);
  if (n > bits) throw new PrefixError(`prefix length ${n} is more than ${bits} in ${JSON.stringify(input)}`);
  const addr = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let bit = n; bit < bits; bit++) addr[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { family: familyOf(bytes), addr, length: n, text: `${formatIp(addr)}/${n}` };
}

/** The inclusive numeric range of a prefix. */
export function prefixRange(prefix: string | ParsedPrefix): { family: IpFamily; first: bigint; last: bigint } {
  const p = typeof prefix === 'string' ? parsePrefix(prefix) : prefix;
  const first = ipToBigInt(p.addr);
  const hostBits = BigInt(p.addr.length * 8 - p.length);
  return { family: p.family, first, last: first + (1n << hostBits) - 1n };
}

export function prefixesOverlap(a: string, b: string): boolean {
  const ra = prefixRange(a);
  const rb = prefixRange(b);
  return ra.family === rb.family && ra.first <= rb.last && rb.first <= ra.last;
}

export function prefixContains(prefix: string, addr: string): boolean {
  const r = prefixRange(prefix);
  const b = addressBytes(addr);
  if (familyOf(b) !== r.family) return false;
  const v = ipToBigInt(b);
  return v >= r.first && v <= r.last;
}

/** The first host address of a prefix (network + 1): the PoP's own end of a tunnel pool. */
export function firstHost(prefix: string): string {
  const r = prefixRange(prefix);
  return formatIp(bigIntToIp(r.first + 1n, r.family));
}
