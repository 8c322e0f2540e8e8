// The embedded backend: better-sqlite3 (WAL, synchronous=FULL, so a commit is on disk before it is
// acknowledged). The default for a single PoP, and a fleet PoP's durable local copy. better-sqlite3
// is synchronous; transactions here span awaits, so every use of the connection is queued.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { CbrError, errorCode, errorMessage } from '../dataplane/index.js';
import type { PeerRecord } from './change.js';
import { SqlRegistryStore, toPeer, type PeerRow, type Row, type SqlDriver, type SqlQuery } from './sql-store.js';

// better-sqlite3 ships no type declarations; this is the part of its API used here.
interface Statement {
  readonly reader: boolean;
  all(...params: unknown[]): Row[];
  run(...params: unknown[]): unknown;
}
interface SqliteDatabase {
  readonly open: boolean;
  readonly inTransaction: boolean;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}
const Database = createRequire(import.meta.url)('better-sqlite3') as new (
  path: string,
  options?: { readonly?: boolean; fileMustExist?: boolean },
) => SqliteDatabase;

/** SQLite has no `$1` positional parameters for better-sqlite3's arrays: rewrite to `?` in order. */
function positional(sql: string): { sql: string; order: number[] } {
  const order: number[] = [];
  const rewritten = sql.replace(/\$(\d+)/g, (_m, n: string) => {
    order.push(Number(n) - 1);
    return '?';
  });
  return { sql: rewritten, order };
}

class SqliteDriver implements SqlDriver {
  readonly backend = 'sqlite' as const;
  readonly lockCounterSql = 'SELECT seq FROM registry_counter WHERE id = 1'; // BEGIN IMMEDIATE already excludes other writers
  private readonly statements = new Map<string, { stmt: Statement; order: number[] }>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly db: SqliteDatabase) {}

  private exec: SqlQuery = async <R extends Row>(sql: string, params: unknown[] = []) => {
    let s = this.statements.get(sql);
    if (!s) {
      const p = positional(sql);
      s = { stmt: this.db.prepare(p.sql), order: p.order };
      this.statements.set(sql, s);
    }
    const args = s.order.map((i) => {
      const v = params[i];
      return typeof v === 'boolean' ? Number(v) : v;
    });
    if (s.stmt.reader) return s.stmt.all(...args) as R[];
    s.stmt.run(...args);
    return [];
  };

  private serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }

  query: SqlQuery = (sql, params) => this.serially(() => this.exec(sql, params));

  transaction<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T> {
    return this.serially(async () => {
      this.db.exec('BEGIN IMMEDIATE');
      try {
        const result = await fn(this.exec);
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        // SQLite rolls back by itself on some errors (SQLITE_FULL, SQLITE_IOERR): nothing left to undo.
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  async append(q: SqlQuery, at: number, kind: string, body: string): Promise<number> {
    const [r] = await q<{ seq: number }>('UPDATE registry_counter SET seq = seq + 1 WHERE id = 1 RETURNING seq');
    await q('INSERT INTO registry_changes (seq, at, kind, body) VALUES ($1, $2, $3, $4)', [r!.seq, at, kind, body]);
    return r!.seq;
  }

  async lockForMigration(): Promise<void> {
    // BEGIN IMMEDIATE holds the database's write lock; a second process waits (busy_timeout).
  }

  isUniqueViolation(err: unknown): boolean {
    const code = (err as { code?: unknown } | null)?.code;
    return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
  }

  async close(): Promise<void> {
    await this.serially(async () => {
      if (this.db.open) this.db.close();
    });
  }
}

/**
 * Opens (creating if needed) the SQLite registry at `path`; call migrate() before use. Throws CbrError
 * STORE_CORRUPT when the file is not a sound SQLite database.
 */
export function openSqliteRegistry(path: string, now?: () => number): SqlRegistryStore {
  if (path !== ':memory:') mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const db = new Database(path);
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 5000');
    // quick_check reads every page once: cheap at registry sizes, and it finds a torn or overwritten file.
    const check = String(db.pragma('quick_check', { simple: true }));
    if (check !== 'ok') throw new CbrError('STORE_CORRUPT', `${path}: integrity check failed: ${check.slice(0, 200)}`);
  } catch (err) {
    db.close();
    if (err instanceof CbrError) throw err;
    const code = errorCode(err) ?? '';
    if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
      throw new CbrError('STORE_CORRUPT', `${path}: ${errorMessage(err)} (${code})`, { cause: err });
    throw err;
  }
  return new SqlRegistryStore(new SqliteDriver(db), now);
}

/**
 * The peers of a lease file from before the registry (`<stateDir>/wireguard/leases.db`, table
 * `peers`), for RegistryStore.importPeers. Throws when the file cannot be read.
 */
export function readLegacyLeases(path: string): PeerRecord[] {
  const db = new Database(path, { fileMustExist: true });
  try {
    // The same columns as the registry's own peers table.
    return (db.prepare('SELECT public_key, interface, subject, ipv4, ipv6, created_at, expires_at FROM peers ORDER BY created_at').all() as PeerRow[]).map(
      toPeer,
    );
  } finally {
    db.close();
  }
}

/**
 * Moves a corrupt SQLite file (with its -wal and -shm files) aside as `<path>.corrupt-<UTC timestamp>`,
 * keeping it for inspection; the next open starts an empty one. Returns the new path.
 */
export function moveStoreAside(path: string, now = new Date()): string {
  const aside = `${path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
  }
  return aside;
}
