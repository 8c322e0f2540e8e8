// The Capsule Protocol (RFC 9297 §3): Type (i) + Length (i) + Value on a request's data stream, the DATAGRAM
// capsule (§3.5), and the connect-ip capsules of RFC 9484 §4.7. Unknown capsule types are skipped.
// Errors are malformed-message errors (RFC 9297 §3.3 → RFC 9114 §4.1.2): H3_MESSAGE_ERROR on the stream.
import { H3Error, H3ErrorCode } from './errors.js';
import { compareIpBytes, formatIp, hostBitsZero, parseIp } from '../../dataplane/index.js';
import { TlvReader, type TlvDisposition } from './tlv.js';
import { readVarint, varintLength, varintLengthFromFirstByte, writeVarint, tlvHeaderLength, writeTlvHeader, encodeTlv, concatBytes } from './varint.js';

export const CapsuleType = {
  DATAGRAM: 0x00,
  ADDRESS_ASSIGN: 0x01,
  ADDRESS_REQUEST: 0x02,
  ROUTE_ADVERTISEMENT: 0x03,
} as const;

/** An address or prefix in ADDRESS_ASSIGN / ADDRESS_REQUEST (RFC 9484 §4.7.1-2). */
export interface IpAddressEntry {
  /** Request ID: non-zero in ADDRESS_REQUEST; in ADDRESS_ASSIGN the matching request's ID, or 0 if unsolicited. */
  requestId: number;
  version: 4 | 6;
  /** Address text ('192.0.2.1', '2001:db8::'), host bits beyond prefixLength zero. */
  address: string;
  prefixLength: number;
}

/** A range in ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3). */
export interface IpAddressRange {
  version: 4 | 6;
  /** Inclusive start and end addresses. */
  start: string;
  end: string;
  /** IP protocol number the route carries; 0 = all protocols. */
  ipProtocol: number;
}

export type Capsule =
  /** DATAGRAM (0x00): an HTTP Datagram payload (for connect-udp/ip: Context ID + data; see readContextId). */
  | { type: 'datagram'; payload: Uint8Array }
  | { type: 'address_assign'; addresses: IpAddressEntry[] }
  | { type: 'address_request'; addresses: IpAddressEntry[] }
  | { type: 'route_advertisement'; ranges: IpAddressRange[] };

const malformed = (msg: string) => new H3Error(H3ErrorCode.H3_MESSAGE_ERROR, 'stream', msg);
const badInput = (msg: string) => new H3Error(H3ErrorCode.H3_INTERNAL_ERROR, 'stream', msg);

// ---------------------------------------------------------------- raw capsules

/** Bytes of a capsule header (type + length). */
export const capsuleHeaderLength = tlvHeaderLength;
/** Write a capsule header at `offset`; returns the offset after it. */
export const writeCapsuleHeader = writeTlvHeader;
/** A capsule of any type as one buffer. */
export const encodeCapsule = encodeTlv;

/** A DATAGRAM capsule carrying `contextId` + `payload` (one allocation). */
export function encodeDatagramCapsule(contextId: number, payload: Uint8Array): Uint8Array {
  const valueLength = varintLength(contextId) + payload.length;
  const out = new Uint8Array(capsuleHeaderLength(CapsuleType.DATAGRAM, valueLength) + valueLength);
  const pos = writeVarint(out, writeCapsuleHeader(out, 0, CapsuleType.DATAGRAM, valueLength), contextId);
  out.set(payload, pos);
  return out;
}

/**
 * The Context ID at the start of an HTTP Datagram payload (e.g. a DATAGRAM capsule's), and where the
 * data after it starts; null when the payload is too short (drop it).
 */
export function readContextId(payload: Uint8Array): { contextId: number; offset: number } | null {
  const contextId = readVarint(payload, 0);
  if (contextId < 0) return null;
  return { contextId, offset: varintLengthFromFirstByte(payload[0]!) }; // contextId >= 0: byte 0 is there
}

// ---------------------------------------------------------------- connect-ip capsule values

function addrBytes(version: 4 | 6, text: string, what: string): Uint8Array {
  const b = parseIp(text);
  if (!b || b.length !== (version === 4 ? 4 : 16)) throw badInput(`${what} ${JSON.stringify(text)} is not an IPv${version} address`);
  return b;
}

function encodeAddressEntries(entries: IpAddressEntry[], isRequest: boolean): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    if (e.version !== 4 && e.version !== 6) throw badInput(`IP version ${e.version} (must be 4 or 6)`);
    const addr = addrBytes(e.version, e.address, 'address');
    checkPrefix(addr, e.prefixLength, badInput);
    if (isRequest && e.requestId === 0) throw badInput('ADDRESS_REQUEST Request ID must not be 0');
    const part = new Uint8Array(varintLength(e.requestId) + 2 + addr.length);
    let pos = writeVarint(part, 0, e.requestId);
    part[pos++] = e.version;
    part.set(addr, pos);
    part[pos + addr.length] = e.prefixLength;
    parts.push(part);
  }
  return concatBytes(parts);
}

function checkPrefix(addr: Uint8Array, prefixLength: number, err: (m: string) => H3Error): void {
  if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > addr.length * 8) {
    throw err(`prefix length ${prefixLength} exceeds the ${addr.length * 8}-bit address`);
  }
  if (!hostBitsZero(addr, prefixLength)) throw err(`address ${formatIp(addr)} has bits set beyond prefix length ${prefixLength}`);
}

function decodeAddressEntries(value: Uint8Array, what: string, isRequest: boolean): IpAddressEntry[] {
  const out: IpAddressEntry[] = [];
  let pos = 0;
  while (pos < value.length) {
    const requestId = readVarint(value, pos);
    if (requestId < 0) throw malformed(`${what} ends inside a Request ID`);
    if (isRequest && requestId === 0) throw malformed(`${what} Request ID is 0`);
    pos += varintLengthFromFirstByte(value[pos]!); // requestId >= 0: read whole
    const [version, addr, next] = readVersionAndAddress(value, pos, what);
    pos = next;
    const prefixLength = value[pos++];
    if (prefixLength === undefined) throw malformed(`${what} ends before the IP Prefix Length`);
    checkPrefix(addr, prefixLength, malformed);
    out.push({ requestId, version, address: formatIp(addr), prefixLength });
  }
  if (isRequest && out.length === 0) throw malformed('ADDRESS_REQUEST carries no Requested Address');
  return out;
}

function readVersionAndAddress(value: Uint8Array, pos: number, what: string): [4 | 6, Uint8Array, number] {
  if (pos >= value.length) throw malformed(`${what} ends before the IP Version`);
  const version = value[pos++];
  if (version !== 4 && version !== 6) throw malformed(`${what} IP Version ${version} (must be 4 or 6)`);
  const len = version === 4 ? 4 : 16;
  if (pos + len > value.length) throw malformed(`${what} ends inside an IPv${version} address`);
  return [version, value.subarray(pos, pos + len), pos + len];
}

export const encodeAddressAssignValue = (addresses: IpAddressEntry[]): Uint8Array => encodeAddressEntries(addresses, false);
export const encodeAddressRequestValue = (addresses: IpAddressEntry[]): Uint8Array => {
  if (addresses.length === 0) throw badInput('ADDRESS_REQUEST needs at least one address');
  return encodeAddressEntries(addresses, true);
};
export const decodeAddressAssignValue = (value: Uint8Array): IpAddressEntry[] => decodeAddressEntries(value, 'ADDRESS_ASSIGN', false);
export const decodeAddressRequestValue = (value: Uint8Array): IpAddressEntry[] => decodeAddressEntries(value, 'ADDRESS_REQUEST', true);

interface RawRange {
  version: 4 | 6;
  start: Uint8Array;
  end: Uint8Array;
  ipProtocol: number;
}

/** RFC 9484 §4.7.3 ordering, plus the optional check that a protocol-0 range overlaps no other range. */
function checkRanges(ranges: RawRange[], err: (m: string) => H3Error): void {
  let p: RawRange | undefined;
  for (const r of ranges) {
    if (compareIpBytes(r.start, r.end) > 0) throw err(`route ${formatIp(r.start)}-${formatIp(r.end)} starts after it ends`);
    const prev = p;
    p = r;
    if (!prev) continue;
    if (prev.version > r.version) throw err('ROUTE_ADVERTISEMENT lists an IPv6 range before an IPv4 range');
    if (prev.version === r.version) {
      if (prev.ipProtocol > r.ipProtocol) throw err('ROUTE_ADVERTISEMENT ranges are not ordered by IP protocol');
      if (prev.ipProtocol === r.ipProtocol && compareIpBytes(prev.end, r.start) >= 0) {
        throw err(`ROUTE_ADVERTISEMENT ranges overlap or are out of order at ${formatIp(r.start)}`);
      }
    }
  }
  // Protocol-0 ranges (all protocols) come first within a version, sorted and disjoint: binary-search each
  // other range of that version against them.
  for (const version of [4, 6] as const) {
    const all = ranges.filter((r) => r.version === version && r.ipProtocol === 0);
    if (all.length === 0) continue;
    for (const r of ranges) {
      if (r.version !== version || r.ipProtocol === 0) continue;
      let lo = 0;
      let hi = all.length - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        const a = all[mid]!; // lo <= mid <= hi < all.length
        if (compareIpBytes(a.end, r.start) < 0) lo = mid + 1;
        else if (compareIpBytes(a.start, r.end) > 0) hi = mid - 1;
        else throw err(`route for protocol ${r.ipProtocol} at ${formatIp(r.start)} overlaps an all-protocols route`);
      }
    }
  }
}

export function encodeRouteAdvertisementValue(ranges: IpAddressRange[]): Uint8Array {
  const raw: RawRange[] = ranges.map((r) => {
    if (r.version !== 4 && r.version !== 6) throw badInput(`IP version ${r.version} (must be 4 or 6)`);
    if (!Number.isInteger(r.ipProtocol) || r.ipProtocol < 0 || r.ipProtocol > 255) throw badInput(`IP protocol ${r.ipProtocol}`);
    return { version: r.version, start: addrBytes(r.version, r.start, 'range start'), end: addrBytes(r.version, r.end, 'range end'), ipProtocol: r.ipProtocol };
  });
  checkRanges(raw, badInput);
  const parts = raw.map((r) => {
    const part = new Uint8Array(2 + 2 * r.start.length);
    part[0] = r.version;
    part.set(r.start, 1);
    part.set(r.end, 1 + r.start.length);
    part[part.length - 1] = r.ipProtocol;
    return part;
  });
  return concatBytes(parts);
}

export function decodeRouteAdvertisementValue(value: Uint8Array): IpAddressRange[] {
  const raw: RawRange[] = [];
  let pos = 0;
  while (pos < value.length) {
    const [version, start, next] = readVersionAndAddress(value, pos, 'ROUTE_ADVERTISEMENT');
    const len = start.length;
    const ipProtocol = value[next + len];
    if (ipProtocol === undefined) throw malformed('ROUTE_ADVERTISEMENT ends inside a range');
    const end = value.subarray(next, next + len);
    raw.push({ version, start, end, ipProtocol });
    pos = next + len + 1;
  }
  checkRanges(raw, malformed);
  return raw.map((r) => ({ version: r.version, start: formatIp(r.start), end: formatIp(r.end), ipProtocol: r.ipProtocol }));
}

/** Encode a typed capsule. Invalid contents (bad addresses, misordered routes) throw H3Error. */
export function encodeTypedCapsule(capsule: Capsule): Uint8Array {
  switch (capsule.type) {
    case 'datagram':
      return encodeCapsule(CapsuleType.DATAGRAM, capsule.payload);
    case 'address_assign':
      return encodeCapsule(CapsuleType.ADDRESS_ASSIGN, encodeAddressAssignValue(capsule.addresses));
    case 'address_request':
      return encodeCapsule(CapsuleType.ADDRESS_REQUEST, encodeAddressRequestValue(capsule.addresses));
    case 'route_advertisement':
      return encodeCapsule(CapsuleType.ROUTE_ADVERTISEMENT, encodeRouteAdvertisementValue(capsule.ranges));
  }
}

/** Decode a capsule value of a known type; null for unknown types (skip them). */
export function decodeCapsuleValue(type: number, value: Uint8Array): Capsule | null {
  switch (type) {
    case CapsuleType.DATAGRAM:
      return { type: 'datagram', payload: value };
    case CapsuleType.ADDRESS_ASSIGN:
      return { type: 'address_assign', addresses: decodeAddressAssignValue(value) };
    case CapsuleType.ADDRESS_REQUEST:
      return { type: 'address_request', addresses: decodeAddressRequestValue(value) };
    case CapsuleType.ROUTE_ADVERTISEMENT:
      return { type: 'route_advertisement', ranges: decodeRouteAdvertisementValue(value) };
    default:
      return null;
  }
}

// ---------------------------------------------------------------- incremental parser

export interface CapsuleParserOptions {
  /** Largest capsule value we buffer (known types); larger is H3_EXCESSIVE_LOAD. Unknown types are skipped unbuffered. Default 65536+16. */
  maxCapsuleLength?: number;
}

export const DEFAULT_MAX_CAPSULE_LENGTH = 65536 + 16;

/**
 * Incremental capsule decoder for a request's data stream (the concatenated DATA frame payloads).
 * push() returns the capsules completed so far; unknown capsule types are skipped without buffering.
 * Values that arrive whole in one chunk alias that chunk (no copy). Call end() at FIN: a truncated
 * capsule is H3_MESSAGE_ERROR.
 */
export class CapsuleParser {
  readonly maxCapsuleLength: number;
  private readonly tlv = new TlvReader();
  private failed: H3Error | null = null;

  constructor(opts: CapsuleParserOptions = {}) {
    this.maxCapsuleLength = opts.maxCapsuleLength ?? DEFAULT_MAX_CAPSULE_LENGTH;
  }

  get midCapsule(): boolean {
    return this.tlv.midValue;
  }

  /** Bytes held back waiting for the rest of a capsule. */
  get buffered(): number {
    return this.tlv.buffered;
  }

  push(chunk: Uint8Array): Capsule[] {
    if (this.failed) throw this.failed;
    try {
      const out: Capsule[] = [];
      this.tlv.read(chunk, {
        start: (type, length) => this.start(type, length),
        value: (type, bytes) => {
          const capsule = decodeCapsuleValue(type, bytes);
          if (capsule) out.push(capsule);
        },
      });
      return out;
    } catch (e) {
      if (e instanceof H3Error) this.failed = e;
      throw e;
    }
  }

  end(): void {
    if (this.failed) throw this.failed;
    if (this.midCapsule) throw malformed('the data stream ended inside a capsule');
  }

  private start(type: number, length: number): TlvDisposition {
    if (type > CapsuleType.ROUTE_ADVERTISEMENT) return 'skip';
    if (length > this.maxCapsuleLength) {
      throw new H3Error(H3ErrorCode.H3_EXCESSIVE_LOAD, 'stream', `capsule of ${length} bytes exceeds the limit of ${this.maxCapsuleLength}`);
    }
    return 'buffer';
  }
}
