// Address pools: which addresses a lease may get. Pure prefix math over ip-num; the set of used
// addresses comes from the lease store, so allocation and insert happen in one transaction.
import { IPv4CidrRange, IPv6CidrRange, IPv4, IPv6, collapseIPv6Number } from 'ip-num';
import { isIPv4 } from '../../dataplane/index.js';

export type Family = 4 | 6;

interface Range {
  family: Family;
  first: bigint;
  last: bigint;
}

function rangeOf(cidr: string): Range {
  const [addr, len] = cidr.split('/') as [string, string];
  const bits = isIPv4(addr) ? 32 : 128;
  const value = addressValue(addr);
  const hostBits = BigInt(bits - Number(len));
  const first = (value >> hostBits) << hostBits;
  return { family: bits === 32 ? 4 : 6, first, last: first + (1n << hostBits) - 1n };
}

export function addressValue(addr: string): bigint {
  return isIPv4(addr) ? IPv4.fromString(addr).getValue() : IPv6.fromString(addr).getValue();
}

/** Text form of an address value: dotted quad, or RFC 5952 (lowercase, longest zero run of 2+ groups as ::). */
export function formatAddress(family: Family, value: bigint): string {
  if (family === 4) {
    const n = Number(value);
    return `${(n >>> 24) & 255}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** ip-num's formatting, kept as the reference the fast formatter is tested against. */
export function formatAddressReference(family: Family, value: bigint): string {
  return family === 4 ? IPv4.fromNumber(value).toString() : collapseIPv6Number(IPv6.fromBigInt(value).toString());
}

/** Canonical text of an address (compressed IPv6, lowercase), so stored and compared forms agree. */
export function canonicalAddress(addr: string): string {
  return formatAddress(isIPv4(addr) ? 4 : 6, addressValue(addr));
}

export function prefixesOverlap(a: string, b: string): boolean {
  const ra = rangeOf(a);
  const rb = rangeOf(b);
  return ra.family === rb.family && ra.first <= rb.last && rb.first <= ra.last;
}

export function prefixContains(cidr: string, addr: string): boolean {
  const r = rangeOf(cidr);
  const fam: Family = isIPv4(addr) ? 4 : 6;
  if (fam !== r.family) return false;
  const v = addressValue(addr);
  return v >= r.first && v <= r.last;
}

export class PoolExhaustedError extends Error {
  constructor(readonly family: Family) {
    super(`the IPv${family} pools are exhausted`);
    this.name = 'PoolExhaustedError';
  }
}

/**
 * The pools of one interface. A leasable address is inside a pool, is not the pool's first address
 * (the subnet / subnet-router anycast address), not an IPv4 broadcast address, and not reserved
 * (the PoP's own addresses on the interface).
 */
export class AddressPools {
  private readonly ranges: Range[];
  private readonly reserved: Set<string>;

  constructor(pools: string[], reserved: string[] = []) {
    // Validate with ip-num as well: it rejects what our own math would silently accept.
    for (const p of pools) (isIPv4(p.split('/')[0]!) ? IPv4CidrRange : IPv6CidrRange).fromCidr(p);
    // Ascending order: allocation is lowest-first, which a caller's low-water mark relies on.
    this.ranges = pools.map(rangeOf).sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    this.reserved = new Set(reserved.map(canonicalAddress));
  }

  families(): Family[] {
    return [...new Set(this.ranges.map((r) => r.family))].sort();
  }

  /** Whether `addr` may hold a lease in these pools. */
  isLeasable(addr: string): boolean {
    const fam: Family = isIPv4(addr) ? 4 : 6;
    const v = addressValue(addr);
    if (this.reserved.has(formatAddress(fam, v))) return false;
    return this.ranges.some((r) => r.family === fam && v > r.first && (fam === 6 || v < r.last) && v <= r.last);
  }

  /**
   * The lowest leasable address of `family` not in `used` (canonical strings), at or above `from`
   * when given (a caller that knows everything below is taken). Throws PoolExhaustedError.
   */
  allocate(family: Family, used: Set<string>, from?: bigint, maxScan = 1_000_000): string {
    let scanned = 0;
    for (const r of this.ranges) {
      if (r.family !== family) continue;
      const end = family === 4 ? r.last - 1n : r.last;
      const start = from !== undefined && from > r.first + 1n ? from : r.first + 1n;
      for (let v = start; v <= end; v++) {
        const a = formatAddress(family, v);
        if (!used.has(a) && !this.reserved.has(a)) return a;
        if (++scanned >= maxScan) throw new PoolExhaustedError(family);
      }
    }
    throw new PoolExhaustedError(family);
  }
}
