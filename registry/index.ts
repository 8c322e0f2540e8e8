// registry/: the fleet's peers, address leases, revocations and deny list, in embedded SQLite or in
// PostgreSQL followed by every PoP through a change feed into a durable local copy.
export { registryConfigSchema, type RegistryConfig } from './config.js';
export {
  decodeChange,
  encodeChange,
  CHANGE_KINDS,
  type Change,
  type ChangeBody,
  type ChangeKind,
  type ChangeRow,
  type PeerRecord,
  type RemovalReason,
} from './change.js';
export type {
  RegistryStore,
  RegistryReplica,
  RegisterRequest,
  RegisterOutcome,
  Revocation,
  DenyEntry,
  EndpointRecord,
  PopStatus,
  Snapshot,
  Family,
} from './store.js';
export { SqlRegistryStore } from './sql-store.js';
export { openSqliteRegistry, moveStoreAside, readLegacyLeases } from './sqlite.js';
export { openPostgresRegistry, PostgresConnector, parsePostgresUrl, CHANGE_CHANNEL, type PostgresOptions, type PostgresUrl } from './postgres.js';
export { ChangeFeed, postgresFeedSource, type FeedSource, type FeedOptions, type FeedEvents } from './feed.js';
export { MIGRATIONS, SCHEMA_VERSION } from './schema.js';
export { registrySubsystem, REGISTRY_SERVICE, type RegistryService } from './subsystem.js';
