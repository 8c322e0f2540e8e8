// bench/: scenarios, the demo and reports. Nothing outside bench/ imports it.
export { writeBenchResult, type BenchMetric } from './results.js';
