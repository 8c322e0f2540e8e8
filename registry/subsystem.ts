// The registry subsystem: opens the registry (embedded SQLite, or the fleet's PostgreSQL followed into
// a durable local SQLite copy), applies the migrations, runs the change feed, and offers both stores
// to the other subsystems under REGISTRY_SERVICE. With the database away the PoP is degraded, not
// down: the health check `registry` is non-critical, tunnels keep their peers from the local copy,
// and writes answer UNAVAILABLE (503) until the database returns.
import { join } from 'node:path';
import { CbrError, errorCode, errorMessage, popName, type AgentContext, type CbrConfig, type Subsystem, type SubsystemFactory } from '../dataplane/index.js';
import type { RegistryConfig } from './config.js';
import { ChangeFeed, postgresFeedSource } from './feed.js';
import { CHANGE_CHANNEL, openPostgresRegistry, PostgresConnector } from './postgres.js';
import { moveStoreAside, openSqliteRegistry } from './sqlite.js';
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
/** How often a fleet PoP reports its liveness (and at once on every health change). */
export const POP_REPORT_MS = 1000;
/** How often the change logs are cut to registry.changeRetention. */
const PRUNE_INTERVAL_MS = 60_000;

class RegistrySubsystem implements Subsystem {
  private local?: SqlRegistryStore;
  private primary?: SqlRegistryStore;
  private feed?: ChangeFeed;
  private migrated = false;
  private migrateTimer?: NodeJS.Timeout;
  private pruneTimer?: NodeJS.Timeout;
  private reportTimer?: NodeJS.Timeout;
  private reporting?: Promise<void>;
  private offHealth?: () => void;
  private lastMigrateError?: string;
  private unregisterHealth?: () => void;
  private unregisterStoreCheck?: () => void;
  private removeRoute?: () => void;
  private stopped = false;
  private readonly applied: RegistryConfig;

  constructor(private readonly ctx: AgentContext) {
    this.applied = ctx.config.registry;
  }

  async start(): Promise<void> {
    const cfg = this.applied;
    const path = cfg.path ?? join(this.ctx.stateDir, 'registry.db');
    const pgc = cfg.postgres;
    this.local = this.openLocal(path, pgc.url !== undefined);
    await this.local.migrate();
    if (pgc.url !== undefined) {
      const connector = new PostgresConnector({
        url: pgc.url,
        ...(pgc.passwordFile !== undefined ? { passwordFile: pgc.passwordFile } : {}),
        poolSize: pgc.poolSize,
        maxPending: pgc.maxPending,
        metrics: this.ctx.registry,
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
    this.pruneTimer = setInterval(() => void this.prune(), PRUNE_INTERVAL_MS);
    this.pruneTimer.unref();
    const primary = this.primary
      ? untilMigrated(
          this.primary,
          () => this.migrated,
          () => this.lastMigrateError,
        )
      : this.local;
    const service: RegistryService = { primary, local: this.local, feed: this.feed };
    this.ctx.services.provide(REGISTRY_SERVICE, service);
    this.removeRoute = this.ctx.admin.route('GET', '/v1/registry', async () => ({ body: await this.status() }));
    // The embedded store has nothing to lose contact with: a check only for the fleet database.
    if (!this.feed) return;
    this.reportTimer = setInterval(() => void this.reportPop(), POP_REPORT_MS);
    this.reportTimer.unref();
    const onChange = () => void this.reportPop();
    this.ctx.health.on('change', onChange);
    this.offHealth = () => this.ctx.health.off('change', onChange);
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

  /**
   * Opens the SQLite file. A corrupt one is kept for inspection under a new name and replaced by an
   * empty one: with PostgreSQL the copy is rebuilt from the database; alone, the PoP's peers are lost
   * (clients register again). Either way the PoP keeps running, degraded (check `registry.store`)
   * until a restart, instead of refusing to start.
   */
  private openLocal(path: string, fleet: boolean): SqlRegistryStore {
    try {
      return openSqliteRegistry(path);
    } catch (err) {
      if (errorCode(err) !== 'STORE_CORRUPT') throw new Error(`registry.path: cannot open the registry ${path}: ${errorMessage(err)}`);
      let aside: string | undefined;
      try {
        aside = moveStoreAside(path);
      } catch (mvErr) {
        this.ctx.log.error({ err: mvErr, path }, 'could not move the corrupt registry aside');
        throw err;
      }
      const reason = `registry ${path} was corrupt (${errorMessage(err)}); moved to ${aside}; ${
        fleet ? 'the local copy is rebuilt from the database' : 'started on an empty registry: its peers must register again'
      }`;
      this.ctx.log.error({ err, path, movedTo: aside }, `REGISTRY LOST: ${reason}`);
      this.unregisterStoreCheck = this.ctx.health.register({
        name: 'registry.store',
        intervalMs: 5_000,
        timeoutMs: 1_000,
        rise: 1,
        fall: 1,
        // Tunnels still work (on what is left): degraded, not withdrawn.
        critical: false,
        run: () => {
          throw new CbrError('STORE_CORRUPT', reason);
        },
      });
      return openSqliteRegistry(path);
    }
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

  /**
   * Tells the fleet this PoP is alive and whether it serves (health up, not draining): a PoP that sees
   * another stop serving, or stop reporting, takes over its clients (tunnel/wireguard/takeover.ts).
   */
  private async reportPop(serving?: boolean): Promise<void> {
    if (!this.primary || !this.migrated) return;
    await this.reporting;
    const snap = this.ctx.health.snapshot();
    this.reporting = this.primary
      .reportPop({ name: popName(this.ctx.config), seenAt: Date.now(), serving: serving ?? (snap.state === 'up' && !snap.draining) })
      .catch((err) => this.ctx.log.debug({ err: errorMessage(err) }, 'reporting this PoP to the registry failed'));
    await this.reporting;
  }

  /** GET /v1/registry: the backend, and with PostgreSQL how far the local copy is. */
  private async status(): Promise<Record<string, unknown>> {
    const localHead = await this.local!.head();
    if (!this.feed) return { backend: 'sqlite', head: localHead };
    return {
      backend: 'postgres',
      connected: this.feed.connected,
      migrated: this.migrated,
      ...(this.lastMigrateError !== undefined ? { migrateError: this.lastMigrateError } : {}),
      lastApplied: this.feed.lastApplied,
      lagSeconds: this.feed.lagSeconds(),
    };
  }

  /** Keeps the change logs bounded; the database's by whichever agent gets there first (idempotent). */
  private async prune(): Promise<void> {
    const keep = this.applied.changeRetention;
    for (const [where, store] of [
      ['database', this.migrated ? this.primary : undefined],
      ['local copy', this.local],
    ] as const) {
      if (!store) continue;
      try {
        const n = await store.pruneChanges(keep);
        if (n > 0) this.ctx.log.debug({ where, pruned: n, keep }, 'registry change log pruned');
      } catch (err) {
        this.ctx.log.warn({ where, err: errorMessage(err) }, 'pruning the registry change log failed; retrying later');
      }
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

  /** Shutdown begins (health draining): tell the fleet at once, so the others take over this PoP's clients. */
  async drain(): Promise<void> {
    if (this.feed) await Promise.race([this.reportPop(), new Promise((r) => setTimeout(r, POP_REPORT_MS).unref())]);
  }

  async stop(): Promise<void> {
    clearInterval(this.reportTimer);
    this.offHealth?.();
    // Leaving: the others take over this PoP's clients now rather than when its reports go stale (at
    // most a second's wait: with the database away they notice the silence instead).
    if (!this.stopped) await Promise.race([this.reportPop(false), new Promise((r) => setTimeout(r, POP_REPORT_MS).unref())]);
    this.stopped = true;
    clearTimeout(this.migrateTimer);
    clearInterval(this.pruneTimer);
    this.unregisterHealth?.();
    this.unregisterStoreCheck?.();
    this.removeRoute?.();
    this.ctx.services.withdraw(REGISTRY_SERVICE);
    await this.feed?.stop();
    await this.primary?.close();
    await this.local?.close();
  }
}

/**
 * The database's store as the other subsystems see it: until this agent has applied (or found) the
 * schema, every call answers UNAVAILABLE (503, retried) instead of an SQL error about missing tables.
 */
function untilMigrated(store: RegistryStore, migrated: () => boolean, lastError: () => string | undefined): RegistryStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== 'function' || prop === 'migrate' || prop === 'close') return v;
      return (...args: unknown[]) =>
        migrated()
          ? (v as (...a: unknown[]) => unknown).apply(target, args)
          : Promise.reject(new CbrError('UNAVAILABLE', `registry database not migrated yet: ${lastError() ?? 'connecting'}`));
    },
  });
}

export const registrySubsystem: SubsystemFactory = {
  name: 'registry',
  // Always on: the embedded default needs no config.
  enabled: () => true,
  create: (ctx) => new RegistrySubsystem(ctx),
};
