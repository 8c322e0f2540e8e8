// testhosts/: network-namespace topologies for tests, the bench and the demo. It imports nothing of
// the project, so every layer's tests can stand on it.
export {
  Topology,
  Namespace,
  withTopology,
  waitFor,
  run,
  CommandError,
  uniqueName,
  killAndWait,
  staleNamespaces,
  freePort,
  type VethEnd,
} from './testhosts.js';
export { startPrometheus, type PrometheusServer, type PrometheusOptions } from './prometheus.js';
export { PostgresHost, POSTGRES_BIN, processRunning, type PostgresHostOptions, type ClientTls } from './postgres.js';
