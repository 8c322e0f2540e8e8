// Prefix ↔ inclusive address range, for ROUTE_ADVERTISEMENT (RFC 9484 §4.7.3) and for turning the
// advertised ranges back into routes on the client. Pure.
import type { IpAddressRange } from '../h3/index.js';
import { parseIp, formatIp, ipToBigInt, bigIntToIp, familyOf } from '../../dataplane/index.js';

/** `10.0.0.0/8` → { start 10.0.0.0, end 10.255.255.255 } (all protocols). */
export function prefixToRange(prefix: string): IpAddressRange {
  const [addr, lenText] = prefix.split('/');
  const bytes = parseIp(addr ?? '');
  if (!bytes) throw new Error(`not a prefix: ${prefix}`);
  const bits = bytes.length * 8;
  const len = lenText === undefined ? bits : Number(lenText);
  const hostMask = (1n << BigInt(bits - len)) - 1n;
  const start = ipToBigInt(bytes) & ~hostMask;
  return {
    version: familyOf(bytes),
    start: formatIp(bigIntToIp(start, familyOf(bytes))),
    end: formatIp(bigIntToIp(start | hostMask, familyOf(bytes))),
    ipProtocol: 0,
  };
}

/** Sorted as ROUTE_ADVERTISEMENT wants: IPv4 first, then by start address; overlapping ranges merged. */
export function sortRanges(ranges: IpAddressRange[]): IpAddressRange[] {
  const key = (a: string) => ipToBigInt(parseIp(a)!);
  const sorted = [...ranges].sort(
    (a, b) => a.version - b.version || a.ipProtocol - b.ipProtocol || (key(a.start) < key(b.start) ? -1 : key(a.start) > key(b.start) ? 1 : 0),
  );
  const out: IpAddressRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && last.version === r.version && last.ipProtocol === r.ipProtocol && key(r.start) <= key(last.end) + 1n) {
      if (key(r.end) > key(last.end)) last.end = r.end;
    } else out.push({ ...r });
  }
  return out;
}

/** The smallest set of prefixes covering an inclusive range exactly (for `ip route`). */
export function rangeToPrefixes(r: IpAddressRange): string[] {
  const bits = r.version === 4 ? 32 : 128;
  let start = ipToBigInt(parseIp(r.start)!);
  const end = ipToBigInt(parseIp(r.end)!);
  const out: string[] = [];
  for (let guard = 0; start <= end && guard < 512; guard++) {
    let size = 0;
    while (size < bits && (start & ((1n << BigInt(size + 1)) - 1n)) === 0n && start + (1n << BigInt(size + 1)) - 1n <= end) size++;
    out.push(`${formatIp(bigIntToIp(start, r.version))}/${bits - size}`);
    start += 1n << BigInt(size);
  }
  return out;
}
