// The dataplane's interface for the other subsystems: building blocks they share, nothing that
// composes them (agent.ts and cli.ts import the subsystems, so they are not exported here).
export * from './config/common.js';
export type { CbrConfig } from './config/schema.js';
export { createLogger, scrubSecrets, type Logger } from './log.js';
export { HealthModel, type HealthCheckSpec, type HealthCheckStatus, type HealthState } from './health.js';
export { AdminServer, HttpError, isLoopback, type AdminRequest, type AdminResponse, type RouteHandler } from './admin.js';
export { Supervisor, SupervisedChild, type ChildSpec } from './supervisor.js';
export { ServiceRegistry, type AgentContext, type Subsystem, type SubsystemFactory, type CommandRegistrar } from './subsystem.js';
export { adminClient, adminClientFromOptions, withAdminOptions, AdminClientError, type AdminClient, type AdminClientOptions } from './admin-client.js';
export { TunDevice, TunError, type TunOptions, type TunReadMode, type TunPacketHandler } from './os/tun.js';
