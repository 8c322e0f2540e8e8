// A bounded ring of counter samples taken inside the agent (from the prom-client registry, never by
// scraping /metrics over HTTP), so the status page can show per-second rates over the last minutes.
import type { Registry } from 'prom-client';

export interface RateSeries {
  labels: Record<string, string>;
  /** Per-second rate between consecutive samples, oldest first. */
  values: number[];
}

interface Sample {
  t: number;
  values: Map<string, number>;
}

export class MetricHistory {
  private readonly samples: Sample[] = [];
  private readonly labelsByKey = new Map<string, Record<string, string>>();

  constructor(
    private readonly registry: Registry,
    private readonly names: readonly string[],
    /** How many samples to keep (the window is keep × the sampling interval). */
    private readonly keep: number,
  ) {}

  /** Reads the counters now and appends one sample; the oldest falls off past `keep`. */
  async sample(now = Date.now()): Promise<void> {
    const values = new Map<string, number>();
    for (const name of this.names) {
      const metric = this.registry.getSingleMetric(name);
      if (!metric) continue;
      const data = await metric.get();
      for (const v of data.values) {
        const labels = Object.fromEntries(Object.entries(v.labels).map(([k, x]) => [k, String(x)]));
        const key = seriesKey(name, labels);
        this.labelsByKey.set(key, labels);
        values.set(key, (values.get(key) ?? 0) + v.value);
      }
    }
    this.samples.push({ t: now, values });
    while (this.samples.length > this.keep) this.samples.shift();
  }

  /** Per-second rates of one counter, one series per label set seen in the window. */
  rates(name: string): RateSeries[] {
    const keys = new Set<string>();
    for (const s of this.samples) for (const k of s.values.keys()) if (k.startsWith(`${name}{`)) keys.add(k);
    const out: RateSeries[] = [];
    for (const key of keys) {
      const values: number[] = [];
      for (let i = 1; i < this.samples.length; i++) {
        const prev = this.samples[i - 1]!;
        const cur = this.samples[i]!;
        const dt = (cur.t - prev.t) / 1000;
        const a = prev.values.get(key);
        const b = cur.values.get(key);
        // A counter that appeared, vanished or went backwards (a restart) has no rate for that step.
        values.push(a === undefined || b === undefined || b < a || dt <= 0 ? 0 : (b - a) / dt);
      }
      out.push({ labels: this.labelsByKey.get(key) ?? {}, values });
    }
    return out;
  }

  /** The latest value of a metric per label set (gauges). */
  latest(name: string): Array<{ labels: Record<string, string>; value: number }> {
    const last = this.samples.at(-1);
    if (!last) return [];
    const out: Array<{ labels: Record<string, string>; value: number }> = [];
    for (const [k, v] of last.values) if (k.startsWith(`${name}{`)) out.push({ labels: this.labelsByKey.get(k) ?? {}, value: v });
    return out;
  }

  get count(): number {
    return this.samples.length;
  }

  has(name: string): boolean {
    return this.registry.getSingleMetric(name) !== undefined;
  }
}

function seriesKey(name: string, labels: Record<string, string>): string {
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}=${labels[k]}`);
  return `${name}{${parts.join(',')}}`;
}
