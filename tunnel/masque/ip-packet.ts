// IP packet handling on the connect-ip path (pure functions over bytes): header checks, TTL /
// hop-limit decrement as a router does (RFC 9484 §4.3: the endpoint acts as a router), and the
// ICMP errors a router sends (Time Exceeded, Packet Too Big / Fragmentation Needed).
export type PacketVerdict = 'ok' | 'malformed' | 'ttl-expired';

export function ipVersion(pkt: Uint8Array): 4 | 6 | undefined {
  if (pkt.length < 20) return undefined;
  const v = pkt[0]! >> 4;
  if (v === 4 && pkt.length >= 20 && (pkt[0]! & 0x0f) >= 5) return 4;
  if (v === 6 && pkt.length >= 40) return 6;
  return undefined;
}

/** Source and destination as raw bytes (4 or 16), or undefined when the header is not valid. */
export function addresses(pkt: Uint8Array): { src: Uint8Array; dst: Uint8Array; proto: number } | undefined {
  const v = ipVersion(pkt);
  if (v === 4) return { src: pkt.subarray(12, 16), dst: pkt.subarray(16, 20), proto: pkt[9]! };
  if (v === 6) return { src: pkt.subarray(8, 24), dst: pkt.subarray(24, 40), proto: pkt[6]! };
  return undefined;
}

/** Decrements TTL / hop limit in place (IPv4 header checksum updated incrementally, RFC 1624). */
export function decrementTtl(pkt: Uint8Array): PacketVerdict {
  const v = ipVersion(pkt);
  if (v === undefined) return 'malformed';
  if (v === 4) {
    if (pkt[8]! <= 1) return 'ttl-expired';
    pkt[8]! -= 1;
    // TTL is the high byte of the 16-bit word at 8: HC' = HC + 0x0100 (one's complement).
    let sum = ((pkt[10]! << 8) | pkt[11]!) + 0x0100;
    sum = (sum & 0xffff) + (sum >>> 16);
    pkt[10] = sum >> 8;
    pkt[11] = sum & 0xff;
    return 'ok';
  }
  if (pkt[7]! <= 1) return 'ttl-expired';
  pkt[7]! -= 1;
  return 'ok';
}

export function checksum(b: Uint8Array, initial = 0): number {
  let s = initial;
  for (let i = 0; i + 1 < b.length; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (b.length & 1) s += b[b.length - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function icmpv4(from: Uint8Array, orig: Uint8Array, type: number, code: number, rest: number): Uint8Array {
  // RFC 1812 §4.3.2.3: as much of the original datagram as fits in 576 bytes.
  const quote = orig.subarray(0, Math.min(orig.length, 576 - 28));
  const out = new Uint8Array(28 + quote.length);
  out[0] = 0x45;
  out[2] = out.length >> 8;
  out[3] = out.length & 0xff;
  out[8] = 64;
  out[9] = 1;
  out.set(from, 12);
  out.set(orig.subarray(12, 16), 16);
  const hc = checksum(out.subarray(0, 20));
  out[10] = hc >> 8;
  out[11] = hc & 0xff;
  out[20] = type;
  out[21] = code;
  out[24] = (rest >>> 24) & 0xff;
  out[25] = (rest >>> 16) & 0xff;
  out[26] = (rest >>> 8) & 0xff;
  out[27] = rest & 0xff;
  out.set(quote, 28);
  const c = checksum(out.subarray(20));
  out[22] = c >> 8;
  out[23] = c & 0xff;
  return out;
}

function icmpv6(from: Uint8Array, orig: Uint8Array, type: number, code: number, rest: number): Uint8Array {
  // RFC 4443 §2.4(c): as much of the invoking packet as fits in the minimum MTU (1280).
  const quote = orig.subarray(0, Math.min(orig.length, 1280 - 48));
  const len = 8 + quote.length;
  const out = new Uint8Array(40 + len);
  out[0] = 0x60;
  out[4] = len >> 8;
  out[5] = len & 0xff;
  out[6] = 58;
  out[7] = 64;
  out.set(from, 8);
  out.set(orig.subarray(8, 24), 24);
  out[40] = type;
  out[41] = code;
  out[44] = (rest >>> 24) & 0xff;
  out[45] = (rest >>> 16) & 0xff;
  out[46] = (rest >>> 8) & 0xff;
  out[47] = rest & 0xff;
  out.set(quote, 48);
  // Pseudo-header: src, dst, upper-layer length, next header.
  let s = 0;
  for (let i = 8; i < 40; i += 2) s += (out[i]! << 8) | out[i + 1]!;
  s += len + 58;
  const c = checksum(out.subarray(40), s);
  out[42] = c >> 8;
  out[43] = c & 0xff;
  return out;
}

/** ICMP Packet Too Big (v6) / Fragmentation Needed (v4) from `from` (the PoP's tunnel address) to the packet's source. */
export function packetTooBig(orig: Uint8Array, mtu: number, from: Uint8Array): Uint8Array | undefined {
  const v = ipVersion(orig);
  if (v === 4 && from.length === 4) return icmpv4(from, orig, 3, 4, mtu & 0xffff);
  if (v === 6 && from.length === 16) return icmpv6(from, orig, 2, 0, mtu);
  return undefined;
}

/** ICMP Time Exceeded (hop limit / TTL reached zero in transit). */
export function timeExceeded(orig: Uint8Array, from: Uint8Array): Uint8Array | undefined {
  const v = ipVersion(orig);
  if (v === 4 && from.length === 4) return icmpv4(from, orig, 11, 0, 0);
  if (v === 6 && from.length === 16) return icmpv6(from, orig, 3, 0, 0);
  return undefined;
}

/** IPv4 DF bit: only packets that may not be fragmented get Fragmentation Needed; others are dropped here too (we do not fragment). */
export function dontFragment(pkt: Uint8Array): boolean {
  return ipVersion(pkt) === 4 ? (pkt[6]! & 0x40) !== 0 : true;
}
