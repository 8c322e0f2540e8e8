// bench/: network-namespace topologies, scenarios and reports. The test-host library is shared with
// the integration tests of every subsystem.
export { Topology, Namespace, withTopology, waitFor, run, CommandError, uniqueName, staleNamespaces, type VethEnd } from './testhosts.js';
export { writeBenchResult, type BenchMetric } from './results.js';
