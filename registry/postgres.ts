// The fleet backend: PostgreSQL through node-postgres (`pg`), over TLS with a client certificate
// (`sslmode=verify-full` only). pg 8 takes one host per connection and no `target_session_attrs`
// (brianc/node-postgres#1470, #2781), so the libpq behaviour is done here: the URL may list several
// hosts; they are tried in order, and with `target_session_attrs=read-write` a host whose
// `SHOW transaction_read_only` says `on` (a standby) is skipped. A connection failure or a
// read-only answer drops the pool, and the next use selects the primary again.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import pg from 'pg';
import { Counter, Gauge, type Registry } from 'prom-client';
import { CbrError, errorCode, errorMessage } from '../dataplane/index.js';
import { SqlRegistryStore, type Row, type SqlDriver, type SqlQuery } from './sql-store.js';

export interface PostgresHostPort {
  host: string;
  port: number;
}

export interface PostgresUrl {
  hosts: PostgresHostPort[];
  user: string;
  password?: string;
  database: string;
  sslmode: 'verify-full';
  sslrootcert: string;
  sslcert: string;
  sslkey: string;
  targetSessionAttrs: 'any' | 'read-write';
  connectTimeoutS?: number;
  applicationName?: string;
}

const KNOWN_PARAMS = new Set(['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'target_session_attrs', 'connect_timeout', 'application_name']);

function bad(message: string): CbrError {
  return new CbrError('CONFIG_INVALID', message);
}

function decode(part: string, what: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw bad(`${what}: invalid percent-encoding`);
  }
}

function hostPort(spec: string): PostgresHostPort {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]/]+))(?::(\d{1,5}))?$/.exec(spec);
  if (!m) throw bad(`host ${JSON.stringify(spec)}: expected host, host:port or [v6]:port`);
  const port = m[3] === undefined ? 5432 : Number(m[3]);
  if (port < 1 || port > 65535) throw bad(`host ${JSON.stringify(spec)}: port out of range`);
  const host = m[1] ?? decode(m[2]!, 'host');
  if (m[1] !== undefined && isIP(host) !== 6) throw bad(`host ${JSON.stringify(spec)}: not an IPv6 address`);
  return { host, port };
}

/**
 * Parses a libpq-style URL, `postgres[ql]://user[:password]@host1[:port],host2[:port]/database?…`.
 * Requires `sslmode=verify-full` with `sslrootcert`, `sslcert` and `sslkey`; throws CbrError
 * CONFIG_INVALID naming the part that is wrong.
 */
export function parsePostgresUrl(url: string): PostgresUrl {
  const m = /^postgres(?:ql)?:\/\/(?:([^@/?#]*)@)?([^/?#]*)(?:\/([^?#]*))?(?:\?([^#]*))?$/.exec(url);
  if (!m) throw bad('expected postgres://user@host[:port][,host2[:port]]/database?sslmode=verify-full&…');
  const [, userinfo, hostList, db, query] = m;
  if (userinfo === undefined || userinfo === '') throw bad('user: missing (postgres://USER@host/…)');
  const colon = userinfo.indexOf(':');
  const user = decode(colon < 0 ? userinfo : userinfo.slice(0, colon), 'user');
  const password = colon < 0 ? undefined : decode(userinfo.slice(colon + 1), 'password');
  if (!hostList) throw bad('host: missing');
  const hosts = hostList.split(',').map(hostPort);
  const database = decode(db ?? '', 'database');
  if (!database) throw bad('database: missing (…/DATABASE?…)');
  const params = new URLSearchParams(query ?? '');
  for (const k of params.keys()) if (!KNOWN_PARAMS.has(k)) throw bad(`parameter ${k}: not supported (known: ${[...KNOWN_PARAMS].join(', ')})`);
  if (params.get('sslmode') !== 'verify-full') throw bad('sslmode: must be verify-full (PoPs reach the database with mutual TLS)');
  const file = (k: string): string => {
    const v = params.get(k);
    if (!v) throw bad(`${k}: missing (a file path; verify-full needs the CA, the client certificate and its key)`);
    return v;
  };
  const tsa = params.get('target_session_attrs') ?? 'any';
  if (tsa !== 'any' && tsa !== 'read-write') throw bad(`target_session_attrs: expected any or read-write, got ${JSON.stringify(tsa)}`);
  const ct = params.get('connect_timeout');
  if (ct !== null && !/^\d{1,4}$/.test(ct)) throw bad(`connect_timeout: expected whole seconds, got ${JSON.stringify(ct)}`);
  const app = params.get('application_name');
  return {
    hosts,
    user,
    ...(password !== undefined ? { password } : {}),
    database,
    sslmode: 'verify-full',
    sslrootcert: file('sslrootcert'),
    sslcert: file('sslcert'),
    sslkey: file('sslkey'),
    targetSessionAttrs: tsa,
    ...(ct !== null ? { connectTimeoutS: Number(ct) } : {}),
    ...(app !== null ? { applicationName: app } : {}),
  };
}

export interface PostgresOptions {
  url: string;
  /** File holding the password (first line); wins over a password in the URL. */
  passwordFile?: string;
  poolSize?: number;
  /** Per host, in milliseconds (default: the URL's connect_timeout, else 5 s). */
  connectTimeoutMs?: number;
  /** Server-side statement timeout in milliseconds (default 10 s). */
  statementTimeoutMs?: number;
  /** Longest wait for a pooled connection, in milliseconds (default 10 s). */
  queueTimeoutMs?: number;
  /** Requests waiting for or using a connection at most; more answer LIMIT_EXCEEDED (default 1000). */
  maxPending?: number;
  metrics?: Registry;
}

/** SQLSTATEs that mean "this server cannot serve writes now": reselect the primary. */
const RESELECT_STATES = new Set(['25006', '57P01', '57P02', '57P03', '08000', '08003', '08006']);

/** Connections to the primary of a multi-host URL: one-off clients and a pool. */
export class PostgresConnector {
  readonly url: PostgresUrl;
  private readonly password: string | undefined;
  private readonly tls: { ca: Buffer; cert: Buffer; key: Buffer };
  private pool: pg.Pool | undefined;
  private selecting: Promise<pg.Pool> | undefined;
  private pending = 0;
  private readonly rejected?: Counter;
  private readonly failures?: Counter;

  constructor(private readonly opts: PostgresOptions) {
    this.url = parsePostgresUrl(opts.url);
    try {
      this.password = opts.passwordFile !== undefined ? readFileSync(opts.passwordFile, 'utf8').split('\n')[0] : this.url.password;
      this.tls = { ca: readFileSync(this.url.sslrootcert), cert: readFileSync(this.url.sslcert), key: readFileSync(this.url.sslkey) };
    } catch (err) {
      throw new CbrError('CONFIG_INVALID', `registry.postgres: reading the password or TLS files: ${errorMessage(err)}`, { cause: err });
    }
    if (opts.metrics) {
      const registers = [opts.metrics];
      const self = this;
      new Gauge({
        name: 'cbr_registry_db_pending',
        help: 'Registry database requests waiting for or using a connection',
        registers,
        collect() {
          this.set(self.pending);
        },
      });
      this.rejected = new Counter({
        name: 'cbr_registry_db_rejected_total',
        help: 'Registry database requests refused because registry.postgres.maxPending were pending',
        registers,
      });
      this.failures = new Counter({
        name: 'cbr_registry_db_unavailable_total',
        help: 'Registry database requests that failed for want of a usable primary',
        registers,
      });
    }
  }

  private clientConfig(h: PostgresHostPort): pg.ClientConfig {
    return {
      host: h.host,
      port: h.port,
      user: this.url.user,
      database: this.url.database,
      ...(this.password !== undefined ? { password: this.password } : {}),
      ssl: { ...this.tls, rejectUnauthorized: true, ...(isIP(h.host) === 0 ? { servername: h.host } : {}) },
      connectionTimeoutMillis: this.opts.connectTimeoutMs ?? (this.url.connectTimeoutS ?? 5) * 1000,
      statement_timeout: this.opts.statementTimeoutMs ?? 10_000,
      // Client side too: a server cut off by the network answers nothing, not even an error.
      query_timeout: (this.opts.statementTimeoutMs ?? 10_000) + 2000,
      keepAlive: true,
      application_name: this.url.applicationName ?? 'cbr-registry',
    };
  }

  /** A connected client to the first acceptable host (read-write when the URL asks for it). */
  async connect(): Promise<{ client: pg.Client; host: PostgresHostPort }> {
    const failures: string[] = [];
    for (const h of this.url.hosts) {
      const client = new pg.Client(this.clientConfig(h));
      client.on('error', () => undefined); // reported through the query or connect that fails
      try {
        await client.connect();
        if (this.url.targetSessionAttrs === 'read-write') {
          const r = await client.query<{ transaction_read_only: string }>('SHOW transaction_read_only');
          if (r.rows[0]?.transaction_read_only !== 'off') {
            failures.push(`${h.host}:${h.port} is read-only`);
            await client.end().catch(() => undefined);
            continue;
          }
        }
        return { client, host: h };
      } catch (err) {
        failures.push(`${h.host}:${h.port}: ${errorMessage(err)}`);
        await client.end().catch(() => undefined);
      }
    }
    throw new CbrError('UNAVAILABLE', `registry database unreachable: ${failures.join('; ')}`);
  }

  private async currentPool(): Promise<pg.Pool> {
    if (this.pool) return this.pool;
    this.selecting ??= (async () => {
      try {
        const { client, host } = await this.connect();
        await client.end().catch(() => undefined);
        // connectionTimeoutMillis also bounds the wait for a free pooled connection.
        const pool = new pg.Pool({ ...this.clientConfig(host), max: this.opts.poolSize ?? 10, connectionTimeoutMillis: this.opts.queueTimeoutMs ?? 10_000 });
        pool.on('error', () => this.dropPool(pool)); // an idle client died: the server went away
        this.pool = pool;
        return pool;
      } finally {
        this.selecting = undefined;
      }
    })();
    return this.selecting;
  }

  private dropPool(pool: pg.Pool): void {
    if (this.pool !== pool) return;
    this.pool = undefined;
    pool.end().catch(() => undefined);
  }

  /** Runs fn on a pooled client; connection failures become UNAVAILABLE and reselect the primary. */
  async withClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const max = this.opts.maxPending ?? 1000;
    if (this.pending >= max) {
      this.rejected?.inc();
      throw new CbrError('LIMIT_EXCEEDED', `registry database: ${max} requests pending (registry.postgres.maxPending); retry shortly`);
    }
    this.pending++;
    try {
      return await this.onClient(fn);
    } catch (err) {
      if (errorCode(err) === 'UNAVAILABLE') this.failures?.inc();
      throw err;
    } finally {
      this.pending--;
    }
  }

  private async onClient<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    const pool = await this.currentPool();
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      this.dropPool(pool);
      throw new CbrError('UNAVAILABLE', `registry database: ${errorMessage(err)}`, { cause: err });
    }
    // The server may go away while the client is checked out: that surfaces through the query.
    const ignore = () => undefined;
    client.on('error', ignore);
    try {
      const r = await fn(client);
      client.off('error', ignore);
      client.release();
      return r;
    } catch (err) {
      client.off('error', ignore);
      const sqlError = err instanceof pg.DatabaseError;
      const reselect = !sqlError || RESELECT_STATES.has((err as pg.DatabaseError).code ?? '');
      client.release(reselect ? (err as Error) : undefined);
      if (reselect && !(err instanceof CbrError)) {
        this.dropPool(pool);
        throw new CbrError('UNAVAILABLE', `registry database: ${errorMessage(err)}`, { cause: err });
      }
      throw err;
    }
  }

  async end(): Promise<void> {
    const pool = this.pool;
    this.pool = undefined;
    await pool?.end();
  }
}

/** The NOTIFY channel that carries change numbers. */
export const CHANGE_CHANNEL = 'cbr_registry_changes';
/** Key of the advisory lock that serializes migrations (any constant; "cbrR" in ASCII). */
const MIGRATION_LOCK = 0x63627252;

class PostgresDriver implements SqlDriver {
  readonly backend = 'postgres' as const;
  readonly lockCounterSql = 'SELECT seq FROM registry_counter WHERE id = 1 FOR UPDATE';

  constructor(private readonly connector: PostgresConnector) {}

  query: SqlQuery = <R extends Row>(sql: string, params: unknown[] = []) => this.connector.withClient(async (c) => (await c.query<R>(sql, params)).rows);

  transaction<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T> {
    return this.connector.withClient(async (c) => {
      await c.query('BEGIN');
      try {
        const r = await fn(async <R extends Row>(sql: string, params: unknown[] = []) => (await c.query<R>(sql, params)).rows);
        await c.query('COMMIT');
        return r;
      } catch (err) {
        await c.query('ROLLBACK').catch(() => undefined);
        throw err;
      }
    });
  }

  async lockForMigration(q: SqlQuery): Promise<void> {
    await q('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
  }

  async append(q: SqlQuery, at: number, kind: string, body: string): Promise<number> {
    // One round trip: the counter, the log row and the notification (sent at commit).
    const [r] = await q<{ seq: string }>(
      `WITH c AS (UPDATE registry_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq),
            ch AS (INSERT INTO registry_changes (seq, at, kind, body) SELECT seq, $1, $2, $3 FROM c RETURNING seq)
       SELECT seq, pg_notify($4, seq::text) FROM ch`,
      [at, kind, body, CHANGE_CHANNEL],
    );
    return Number(r!.seq);
  }

  isUniqueViolation(err: unknown): boolean {
    return err instanceof pg.DatabaseError && err.code === '23505';
  }

  async close(): Promise<void> {
    await this.connector.end();
  }
}

export function openPostgresRegistry(connector: PostgresConnector, now?: () => number): SqlRegistryStore {
  return new SqlRegistryStore(new PostgresDriver(connector), now);
}
