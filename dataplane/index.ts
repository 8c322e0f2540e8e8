// The dataplane's interface for the other subsystems: building blocks they share, nothing that
// composes them (agent/ does that).
export * from './config/common.js';
export {
  baseSections,
  baseConfigSchema,
  LOG_LEVELS,
  popName,
  type CbrConfig,
  type BaseConfig,
  type ConfigSections,
  type ExternalCheckConfig,
} from './config/base.js';
export { ConfigLoader, ConfigError, parseConfigText, envNameFor, type LoadedConfig, type JsonSchema } from './config/load.js';
export { createLogger, scrubSecrets, redactSecrets, type Logger } from './log.js';
export { HealthModel, type HealthCheckSpec, type HealthCheckStatus, type HealthState } from './health.js';
export { AdminServer, HttpError, isLoopback, type AdminRequest, type AdminResponse, type RouteHandler } from './admin.js';
export { Supervisor, SupervisedChild, type ChildSpec } from './supervisor.js';
export { ServiceRegistry, type AgentContext, type Subsystem, type SubsystemFactory, type CommandRegistrar } from './subsystem.js';
export { adminClient, adminClientFromOptions, withAdminOptions, AdminClientError, type AdminClient, type AdminClientOptions } from './admin-client.js';
export { TunDevice, TunError, tunOffloadDefault, type TunOptions, type TunReadMode, type TunPacketHandler } from './os/tun.js';
export { createMetricsRegistry } from './metrics.js';
export { SystemdNotifier } from './sdnotify.js';
export { externalCheckSpec } from './external-checks.js';
export { VERSION } from './version.js';
export { AccessLog, AccessSession, type AccessFields, type AccessKind, type AccessEndReason } from './access-log.js';
export { registerStatusPage, STATUS_PAGE_JSON } from './status-page/page.js';
export { BGP_STATUS_SERVICE, type BgpStatusView, type StatusSnapshot } from './status-page/snapshot.js';
export { CbrError, errorMessage, errorCode, httpStatusFor, ERROR_CODES, type ErrorCode } from './errors.js';
export { EXIT, exitCodeFor } from './exit-codes.js';
export { SPECIAL_PURPOSE_V4, SPECIAL_PURPOSE_V6 } from './net/special-ranges.js';
export {
  EgressGuard,
  renderEgressRules,
  parseEgressCounters,
  egressTableName,
  EGRESS_DROP_REASONS,
  type EgressPolicy,
  type EgressDropReason,
} from './os/egress.js';
export {
  PrefixError,
  parseIp,
  parseIpv4,
  parseIpv6,
  formatIp,
  familyOf,
  ipToBigInt,
  bigIntToIp,
  addressBytes,
  parseAddress,
  ipValue,
  canonicalIp,
  compareIpBytes,
  hostBitsZero,
  parsePrefix,
  prefixRange,
  prefixesOverlap,
  prefixContains,
  firstHost,
  type IpFamily,
  type ParsedPrefix,
} from './net/ip.js';
export { AddressPool, PoolExhaustedError } from './net/pool.js';
export { checkSecretFileMode, readSecretFile } from './os/secret-file.js';
export {
  BatchUdpSocket,
  RxBuffers,
  nativeIoUnavailable,
  writeSlot,
  formatSlot,
  ADDR_SLOT,
  type BatchHandler,
  type BatchSocketOptions,
} from './os/udp-batch.js';
