// Token buckets keyed by subject or source address. A bucket holds at most `burst` tokens and
// refills at `rate` per second; the map is bounded, dropping the least recently used buckets.
export interface BucketSettings {
  /** Tokens per second; 0 turns the limit off. */
  rate: number;
  burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  private readonly now: () => number;

  constructor(
    private settings: BucketSettings,
    private readonly maxTracked: number,
    now?: () => number,
  ) {
    this.now = now ?? Date.now;
  }

  configure(settings: BucketSettings): void {
    this.settings = settings;
  }

  /** Seconds until `key` has a token (0: it has one now), without taking it. */
  wait(key: string): number {
    const { rate, burst } = this.settings;
    if (rate <= 0) return 0;
    const b = this.buckets.get(key);
    if (!b) return 0;
    const tokens = Math.min(burst, b.tokens + ((this.now() - b.at) / 1000) * rate);
    return tokens >= 1 ? 0 : (1 - tokens) / rate;
  }

  /** Takes one token: returns 0 when allowed, else the seconds until one is available. */
  take(key: string): number {
    const { rate, burst } = this.settings;
    if (rate <= 0) return 0;
    const now = this.now();
    let b = this.buckets.get(key);
    if (b) {
      b.tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      b.at = now;
      this.buckets.delete(key); // re-inserted below: the map's order is the recency order
    } else {
      b = { tokens: burst, at: now };
    }
    const allowed = b.tokens >= 1;
    if (allowed) b.tokens -= 1;
    this.buckets.set(key, b);
    this.evict();
    return allowed ? 0 : (1 - b.tokens) / rate;
  }

  private evict(): void {
    while (this.buckets.size > this.maxTracked) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
  }

  get size(): number {
    return this.buckets.size;
  }
}

const DOTTED_IPV4 = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/**
 * The bucket key for a client address: IPv4-mapped IPv6 folds to IPv4, and IPv6 clients are grouped
 * by /64 (one host usually owns a whole /64 and could otherwise rotate through it).
 */
export function sourceKey(address: string): string {
  if (DOTTED_IPV4.test(address)) return address; // what the steps below return for it, without their copies
  const a = address.trim().toLowerCase().replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(':')) return a;
  const [head, tail] = a.split('::', 2) as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  // An embedded IPv4 tail counts as two groups; the /64 never reaches it unless there is no '::'.
  const groups = tail === undefined ? h : [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  if (groups.length < 4 || groups.slice(0, 4).some((g) => !/^[0-9a-f]{1,4}$/.test(g))) return a;
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}
