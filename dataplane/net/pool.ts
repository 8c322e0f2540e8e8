// The one address pool for both tunnels: which addresses a client may get from the configured
// prefixes. WireGuard passes in the addresses its lease store holds (allocation and insert happen in
// one store transaction); connect-ip lets the pool track the addresses its live sessions hold.
import { CbrError } from '../errors.js';
import { type IpFamily, bigIntToIp, canonicalIp, formatIp, ipValue, parsePrefix, prefixRange } from './ip.js';

export class PoolExhaustedError extends CbrError {
  constructor(
    readonly family: IpFamily,
    prefixes: readonly string[],
  ) {
    super('POOL_EXHAUSTED', `the IPv${family} address pool ${prefixes.join(', ') || '(none)'} is exhausted`);
  }
}

interface Range {
  family: IpFamily;
  text: string;
  first: bigint;
  last: bigint;
}

/**
 * Prefixes of one interface. A leasable address is inside a prefix, is not its first address (the
 * subnet / subnet-router anycast address), not an IPv4 broadcast address, and not reserved (the PoP's
 * own addresses). Allocation is lowest-first, which the callers' low-water marks rely on.
 */
export class AddressPool {
  private readonly ranges: Range[];
  private readonly reserved: Set<string>;
  /** Addresses held through acquire(), for callers without a store of their own. */
  private readonly held = new Set<string>();
  /** Everything below this is held (per family), so acquire() need not rescan from the start. */
  private readonly lowWater = new Map<IpFamily, bigint>();

  constructor(prefixes: readonly string[], reserved: readonly string[] = []) {
    this.ranges = prefixes
      .map((p) => {
        const pp = parsePrefix(p);
        return { ...prefixRange(pp), text: pp.text };
      })
      .sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    this.reserved = new Set(reserved.map(canonicalIp));
  }

  families(): IpFamily[] {
    return [...new Set(this.ranges.map((r) => r.family))].sort();
  }

  /** The normalised prefixes of a family, in address order. */
  prefixes(family: IpFamily): string[] {
    return this.ranges.filter((r) => r.family === family).map((r) => r.text);
  }

  /** Whether `addr` may hold a lease in this pool. */
  isLeasable(addr: string): boolean {
    const fam: IpFamily = addr.includes(':') ? 6 : 4;
    const v = ipValue(addr);
    if (this.reserved.has(formatIp(bigIntToIp(v, fam)))) return false;
    return this.ranges.some((r) => r.family === fam && v > r.first && (fam === 6 || v < r.last) && v <= r.last);
  }

  /**
   * The lowest leasable address of `family` not in `used` (canonical strings) nor held, at or above
   * `from` when given (a caller that knows everything below is taken). Throws PoolExhaustedError,
   * also after `maxScan` candidates (a huge IPv6 pool is never scanned to its end).
   */
  allocate(family: IpFamily, used: ReadonlySet<string>, from?: bigint, maxScan = 1_000_000): string {
    let scanned = 0;
    for (const r of this.ranges) {
      if (r.family !== family) continue;
      const end = family === 4 ? r.last - 1n : r.last;
      const start = from !== undefined && from > r.first + 1n ? from : r.first + 1n;
      for (let v = start; v <= end; v++) {
        const a = formatIp(bigIntToIp(v, family));
        if (!used.has(a) && !this.held.has(a) && !this.reserved.has(a)) return a;
        if (++scanned >= maxScan) throw new PoolExhaustedError(family, this.prefixes(family));
      }
    }
    throw new PoolExhaustedError(family, this.prefixes(family));
  }

  /** Takes the lowest free address of `family` and holds it until release(). Throws PoolExhaustedError. */
  acquire(family: IpFamily): string {
    const a = this.allocate(family, this.held, this.lowWater.get(family));
    this.held.add(a);
    this.lowWater.set(family, ipValue(a) + 1n);
    return a;
  }

  /** Returns an address taken with acquire(); unknown addresses are ignored. */
  release(addr: string): void {
    const a = canonicalIp(addr);
    if (!this.held.delete(a)) return;
    const fam: IpFamily = a.includes(':') ? 6 : 4;
    const lw = this.lowWater.get(fam);
    const v = ipValue(a);
    if (lw !== undefined && v < lw) this.lowWater.set(fam, v);
  }

  /** How many addresses acquire() holds. */
  get inUse(): number {
    return this.held.size;
  }
}
