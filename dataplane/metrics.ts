// One prom-client registry per agent: process metrics plus every subsystem's `cbr_` metrics.
import { Registry, collectDefaultMetrics, Gauge, Counter, Histogram, Summary } from 'prom-client';

export { Registry, Gauge, Counter, Histogram, Summary };

export function createMetricsRegistry(labels: Record<string, string> = {}): Registry {
  const registry = new Registry();
  registry.setDefaultLabels(labels);
  collectDefaultMetrics({ register: registry, prefix: 'cbr_' });
  return registry;
}
