// The registry subsystem: opens the registry (embedded SQLite, or the fleet's PostgreSQL followed into
// a durable local SQLite copy), applies the migrations, runs the change feed, and offers both stores
// to the other subsystems under REGISTRY_SERVICE. With the database away the PoP is degraded, not
// down: the health check `registry` is non-critical, tunnels keep their peers from the local copy,
// and writes answer UNAVAILABLE (503) until the database returns.
import { join } from 'node:path';
import { CbrError, errorMessage, type AgentContext, type CbrConfig, type Subsystem, type SubsystemFactory } from '../dataplane/index.js';
import type { RegistryConfig } from './config.js';
import { ChangeFeed, postgresFeedSource } from './feed.js';
import { CHANGE_CHANNEL, openPostgresRegistry, PostgresConnector } from './postgres.js';
import { openSqliteRegistry } from './sqlite.js';
import type { SqlRegistryStore } from './sql-store.js';
import type { RegistryStore } from './store.js';

export const REGISTRY_SERVICE = 'registry';

/** What the registry offers the other subsystems. */
export interface RegistryService {
  /** Where writes go: the database (PostgreSQL) or the embedded store. */
  readonly primary: RegistryStore;
  /** Where reads that must work during an outage go: the local copy (the embedded store itself without PostgreSQL). */
  readonly local: RegistryStore;
  /** The change feed (PostgreSQL only): `change` events after each applied change. */
  readonly feed: ChangeFeed | undefined;
}

/** Retry interval of the start-up migration while the database is away. */
const MIGRATE_RETRY_MS = 2000;

class RegistrySubsystem implements Subsystem {
  private local?: SqlRegistryStore;
  private primary?: SqlRegistryStore;
  private feed?: ChangeFeed;
  private migrated = false;
  private migrateTimer?: NodeJS.Timeout;
  private lastMigrateError?: string;
  private unregisterHealth?: () => void;
  private stopped = false;
  private readonly applied: RegistryConfig;

  constructor(private readonly ctx: AgentContext) {
    this.applied = ctx.config.registry;
  }

  async start(): Promise<void> {
    const cfg = this.applied;
    const path = cfg.path ?? join(this.ctx.stateDir, 'registry.db');
    this.local = openSqliteRegistry(path);
    await this.local.migrate();
    const pgc = cfg.postgres;
    if (pgc.url !== undefined) {
      const connector = new PostgresConnector({
        url: pgc.url,
        ...(pgc.passwordFile !== undefined ? { passwordFile: pgc.passwordFile } : {}),
        poolSize: pgc.poolSize,
        connectTimeoutMs: pgc.connectTimeout,
        statementTimeoutMs: pgc.statementTimeout,
      });
      this.primary = openPostgresRegistry(connector);
      this.feed = new ChangeFeed(
        postgresFeedSource(this.primary, () => connector.connect(), CHANGE_CHANNEL),
        this.local,
        { catchUpIntervalMs: pgc.catchUpInterval, log: this.ctx.log, metrics: this.ctx.registry },
      );
      // The database may be away at start: serve from the local copy and migrate when it is back.
      void this.migratePrimary();
      await this.feed.start();
      this.ctx.log.info(
        { hosts: connector.url.hosts.map((h) => `${h.host}:${h.port}`), copy: path, applied: this.feed.lastApplied },
        'registry follows PostgreSQL',
      );
    } else {
      this.migrated = true;
      this.ctx.log.info({ path }, 'registry in embedded SQLite');
    }
    const service: RegistryService = { primary: this.primary ?? this.local, local: this.local, feed: this.feed };
    this.ctx.services.provide(REGISTRY_SERVICE, service);
    // The embedded store has nothing to lose contact with: a check only for the fleet database.
    if (!this.feed) return;
    this.unregisterHealth = this.ctx.health.register({
      name: 'registry',
      critical: false,
      intervalMs: 2000,
      timeoutMs: 1000,
      rise: 1,
      fall: 2,
      run: () => this.check(),
    });
  }

  private async migratePrimary(): Promise<void> {
    if (this.stopped || this.migrated || !this.primary) return;
    try {
      await this.primary.migrate();
      this.migrated = true;
      this.lastMigrateError = undefined;
    } catch (err) {
      // A schema newer than this agent is not an outage: say so and keep retrying (an upgrade may follow).
      this.lastMigrateError = errorMessage(err);
      this.ctx.log.warn({ err: this.lastMigrateError }, 'registry migration failed; retrying');
      this.migrateTimer = setTimeout(() => void this.migratePrimary(), MIGRATE_RETRY_MS);
      this.migrateTimer.unref();
    }
  }

  private check(): void {
    if (!this.feed) return;
    if (!this.migrated) throw new CbrError('UNAVAILABLE', `registry database not migrated: ${this.lastMigrateError ?? 'pending'}`);
    if (!this.feed.connected) {
      throw new CbrError('UNAVAILABLE', `registry database unreachable; serving ${this.feed.lastApplied} applied changes from the local copy`);
    }
  }

  checkReload(next: CbrConfig): void {
    if (JSON.stringify(next.registry) !== JSON.stringify(this.applied)) {
      throw new CbrError('CONFIG_INVALID', 'registry: changes to this section take effect after a restart');
    }
  }

  async reload(): Promise<void> {
    // Nothing to apply: checkReload refuses every change to the section.
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.migrateTimer);
    this.unregisterHealth?.();
    this.ctx.services.withdraw(REGISTRY_SERVICE);
    await this.feed?.stop();
    await this.primary?.close();
    await this.local?.close();
  }
}

export const registrySubsystem: SubsystemFactory = {
  name: 'registry',
  // Always on: the embedded default needs no config.
  enabled: () => true,
  create: (ctx) => new RegistrySubsystem(ctx),
};
