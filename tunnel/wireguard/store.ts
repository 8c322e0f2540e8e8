// Peers and their address leases in SQLite (better-sqlite3, WAL, synchronous=FULL so a commit is on
// disk before the API answers). Unique indexes make a double-leased address impossible even if the
// allocation logic were wrong.
import { existsSync, mkdirSync, renameSync } from 'node:fs';
import { dirname } from 'node:path';
import { createRequire } from 'node:module';
import { CbrError, errorCode, errorMessage } from '../../dataplane/index.js';

// better-sqlite3 ships no type declarations; this is the part of its API used here.
interface Statement<P extends unknown[], R> {
  get(...params: P): R | undefined;
  all(...params: P): R[];
  run(...params: P): { changes: number };
}
interface SqliteDatabase {
  readonly open: boolean;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(sql: string): void;
  prepare<P extends unknown[] = unknown[], R = unknown>(sql: string): Statement<P, R>;
  transaction<T>(fn: () => T): { immediate(): T };
  close(): void;
}
const Database = createRequire(import.meta.url)('better-sqlite3') as new (path: string) => SqliteDatabase;

export interface Lease {
  publicKey: string;
  iface: string;
  subject: string;
  ipv4?: string;
  ipv6?: string;
  /** Unix milliseconds */
  createdAt: number;
  expiresAt: number;
}

interface Row {
  public_key: string;
  interface: string;
  subject: string;
  ipv4: string | null;
  ipv6: string | null;
  created_at: number;
  expires_at: number;
}

function toLease(r: Row): Lease {
  return {
    publicKey: r.public_key,
    iface: r.interface,
    subject: r.subject,
    ...(r.ipv4 !== null ? { ipv4: r.ipv4 } : {}),
    ...(r.ipv6 !== null ? { ipv6: r.ipv6 } : {}),
    createdAt: r.created_at,
    expiresAt: r.expires_at,
  };
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS peers (
  public_key TEXT PRIMARY KEY,
  interface  TEXT NOT NULL,
  subject    TEXT NOT NULL,
  ipv4       TEXT,
  ipv6       TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS peers_ipv4 ON peers(interface, ipv4) WHERE ipv4 IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS peers_ipv6 ON peers(interface, ipv6) WHERE ipv6 IS NOT NULL;
CREATE INDEX IF NOT EXISTS peers_subject ON peers(subject);
CREATE INDEX IF NOT EXISTS peers_expiry ON peers(expires_at);
`;

export class LeaseStore {
  private readonly db: SqliteDatabase;
  private readonly stmts: ReturnType<LeaseStore['prepareAll']>;

  /** Opens (or creates) the store. Throws CbrError STORE_CORRUPT when the file is not a sound SQLite database. */
  constructor(readonly path: string) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    this.db = new Database(path);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('busy_timeout = 5000');
      // quick_check reads every page once: cheap for a lease table, and it finds a torn or overwritten file.
      const check = String(this.db.pragma('quick_check', { simple: true }));
      if (check !== 'ok') throw new CbrError('STORE_CORRUPT', `${path}: integrity check failed: ${check.slice(0, 200)}`);
      this.db.exec(SCHEMA);
      this.stmts = this.prepareAll();
    } catch (err) {
      this.db.close();
      if (err instanceof CbrError) throw err;
      const code = errorCode(err) ?? '';
      if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'))
        throw new CbrError('STORE_CORRUPT', `${path}: ${errorMessage(err)} (${code})`, { cause: err });
      throw err;
    }
  }

  private prepareAll() {
    return {
      byKey: this.db.prepare<[string], Row>('SELECT * FROM peers WHERE public_key = ?'),
      bySubject: this.db.prepare<[string], Row>('SELECT * FROM peers WHERE subject = ? ORDER BY created_at'),
      byIface: this.db.prepare<[string], Row>('SELECT * FROM peers WHERE interface = ? ORDER BY created_at'),
      all: this.db.prepare<[], Row>('SELECT * FROM peers ORDER BY interface, created_at'),
      countSubject: this.db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM peers WHERE subject = ?'),
      usedV4: this.db.prepare<[string], { a: string }>('SELECT ipv4 AS a FROM peers WHERE interface = ? AND ipv4 IS NOT NULL'),
      usedV6: this.db.prepare<[string], { a: string }>('SELECT ipv6 AS a FROM peers WHERE interface = ? AND ipv6 IS NOT NULL'),
      insert: this.db.prepare<[Record<string, unknown>]>(
        'INSERT INTO peers (public_key, interface, subject, ipv4, ipv6, created_at, expires_at) VALUES (@publicKey, @iface, @subject, @ipv4, @ipv6, @createdAt, @expiresAt)',
      ),
      extend: this.db.prepare<[number, string]>('UPDATE peers SET expires_at = ? WHERE public_key = ?'),
      remove: this.db.prepare<[string]>('DELETE FROM peers WHERE public_key = ?'),
      expired: this.db.prepare<[number], Row>('SELECT * FROM peers WHERE expires_at <= ? ORDER BY expires_at'),
      count: this.db.prepare<[string], { n: number }>('SELECT COUNT(*) AS n FROM peers WHERE interface = ?'),
    };
  }

  get journalMode(): string {
    return String(this.db.pragma('journal_mode', { simple: true }));
  }

  get(publicKey: string): Lease | undefined {
    const r = this.stmts.byKey.get(publicKey);
    return r ? toLease(r) : undefined;
  }

  forSubject(subject: string): Lease[] {
    return this.stmts.bySubject.all(subject).map(toLease);
  }

  forInterface(iface: string): Lease[] {
    return this.stmts.byIface.all(iface).map(toLease);
  }

  all(): Lease[] {
    return this.stmts.all.all().map(toLease);
  }

  countForSubject(subject: string): number {
    return this.stmts.countSubject.get(subject)!.n;
  }

  countForInterface(iface: string): number {
    return this.stmts.count.get(iface)!.n;
  }

  usedAddresses(iface: string, family: 4 | 6): Set<string> {
    return new Set((family === 4 ? this.stmts.usedV4 : this.stmts.usedV6).all(iface).map((r) => r.a));
  }

  insert(lease: Lease): void {
    this.stmts.insert.run({ ...lease, ipv4: lease.ipv4 ?? null, ipv6: lease.ipv6 ?? null });
  }

  extend(publicKey: string, expiresAt: number): void {
    this.stmts.extend.run(expiresAt, publicKey);
  }

  remove(publicKey: string): boolean {
    return this.stmts.remove.run(publicKey).changes > 0;
  }

  expired(now: number): Lease[] {
    return this.stmts.expired.all(now).map(toLease);
  }

  /** Runs fn in one immediate transaction: it commits (durably) when fn returns, rolls back when it throws. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/**
 * Moves a corrupt store (with its -wal and -shm files) aside as `<path>.corrupt-<UTC timestamp>`,
 * keeping it for inspection; the next open starts an empty store. Returns the new path.
 */
export function moveStoreAside(path: string, now = new Date()): string {
  const aside = `${path}.corrupt-${now.toISOString().replace(/[:.]/g, '-')}`;
  for (const suffix of ['', '-wal', '-shm']) {
    if (existsSync(path + suffix)) renameSync(path + suffix, aside + suffix);
  }
  return aside;
}
