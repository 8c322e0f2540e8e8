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

  constructor(private settings: BucketSettings, private readonly maxTracked: number, now?: () => number) {
    this.now = now ?? Date.now;
  }

  configure(settings: BucketSettings): void {
    this.settings = settings;
  }

  /** Takes one token: returns 0 when allowed, else the seconds until one is available. */
  take(key: string): number {
    const { rate, burst } = this.settings;
    if (rate <= 0) return 0;
    const now = this.now();
    const b = this.buckets.get(key);
    let tokens = burst;
    if (b) {
      tokens = Math.min(burst, b.tokens + ((now - b.at) / 1000) * rate);
      this.buckets.delete(key);
    }
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: now });
      this.evict();
      return 0;
    }
    this.buckets.set(key, { tokens, at: now });
    this.evict();
    return (1 - tokens) / rate;
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
