// The registry's logic once, over a small SQL driver that SQLite and PostgreSQL each implement: the
// SQL is written once (`$1` placeholders, syntax both accept). Every mutation locks the change
// counter first, changes the state, and appends its change in the same transaction.
import { CbrError } from '../dataplane/index.js';
import { decodeChange, encodeChange, type Change, type ChangeBody, type ChangeRow, type PeerRecord, type RemovalReason } from './change.js';
import { MIGRATIONS } from './schema.js';
import type {
  DenyEntry,
  EndpointRecord,
  Family,
  PopStatus,
  RegisterOutcome,
  RegisterRequest,
  RegistryReplica,
  RegistryStore,
  Revocation,
  Snapshot,
} from './store.js';

export type Row = Record<string, unknown>;
export type SqlQuery = <R extends Row = Row>(sql: string, params?: unknown[]) => Promise<R[]>;

export interface SqlDriver {
  readonly backend: 'sqlite' | 'postgres';
  /** Runs fn in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (q: SqlQuery) => Promise<T>): Promise<T>;
  query: SqlQuery;
  /** SQL that locks the change counter row until commit (writers run one at a time). */
  readonly lockCounterSql: string;
  /** Takes the lock that makes concurrent migrations wait for each other (inside the transaction). */
  lockForMigration(q: SqlQuery): Promise<void>;
  /**
   * Takes the next change number (the counter row is locked already) and appends the change with it;
   * PostgreSQL also NOTIFYs followers (delivered at commit). Resolves with the number.
   */
  append(q: SqlQuery, at: number, kind: string, body: string): Promise<number>;
  isUniqueViolation(err: unknown): boolean;
  close(): Promise<void>;
}

/** Attempts of a registration whose insert hit a unique constraint (a concurrent writer won). */
const REGISTER_ATTEMPTS = 5;

export interface PeerRow extends Row {
  public_key: string;
  interface: string;
  subject: string;
  ipv4: string | null;
  ipv6: string | null;
  created_at: number | string;
  expires_at: number | string;
}

export function toPeer(r: PeerRow): PeerRecord {
  return {
    publicKey: r.public_key,
    iface: r.interface,
    subject: r.subject,
    ...(r.ipv4 !== null ? { ipv4: r.ipv4 } : {}),
    ...(r.ipv6 !== null ? { ipv6: r.ipv6 } : {}),
    createdAt: Number(r.created_at),
    expiresAt: Number(r.expires_at),
  };
}

const PEER_COLUMNS = 'public_key, interface, subject, ipv4, ipv6, created_at, expires_at';

export class SqlRegistryStore implements RegistryStore, RegistryReplica {
  constructor(
    private readonly driver: SqlDriver,
    private readonly now: () => number = Date.now,
  ) {}

  get backend(): 'sqlite' | 'postgres' {
    return this.driver.backend;
  }

  async migrate(): Promise<number> {
    const newest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    return this.driver.transaction(async (q) => {
      await this.driver.lockForMigration(q);
      await q('CREATE TABLE IF NOT EXISTS registry_migrations (version integer PRIMARY KEY, applied_at bigint NOT NULL)');
      const done = new Set((await q<{ version: number | string }>('SELECT version FROM registry_migrations')).map((r) => Number(r.version)));
      const beyond = [...done].filter((v) => v > newest);
      if (beyond.length > 0) {
        throw new CbrError('UNAVAILABLE', `registry schema version ${Math.max(...beyond)} is newer than this agent knows (${newest}); upgrade the agent`);
      }
      for (const m of MIGRATIONS) {
        if (done.has(m.version)) continue;
        for (const sql of m.statements) await q(sql);
        await q('INSERT INTO registry_migrations (version, applied_at) VALUES ($1, $2)', [m.version, this.now()]);
      }
      return newest;
    });
  }

  /** Runs a mutation with the counter locked; `append` records a change and returns its number. */
  private write<T>(fn: (q: SqlQuery, append: (body: ChangeBody) => Promise<number>) => Promise<T>): Promise<T> {
    return this.driver.transaction(async (q) => {
      await q(this.driver.lockCounterSql);
      const append = async (body: ChangeBody): Promise<number> => {
        const { kind, body: json } = encodeChange(body);
        return this.driver.append(q, this.now(), kind, json);
      };
      return fn(q, append);
    });
  }

  private async peerIn(q: SqlQuery, publicKey: string): Promise<PeerRecord | undefined> {
    const [r] = await q<PeerRow>(`SELECT ${PEER_COLUMNS} FROM registry_peers WHERE public_key = $1`, [publicKey]);
    return r ? toPeer(r) : undefined;
  }

  async register(req: RegisterRequest): Promise<RegisterOutcome> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.write((q, append) => this.registerIn(q, append, req));
      } catch (err) {
        if (!this.driver.isUniqueViolation(err)) throw err;
        if (attempt >= REGISTER_ATTEMPTS) {
          throw new CbrError('CONFLICT', `registering ${req.publicKey}: addresses taken concurrently ${attempt} times; retry`, { cause: err });
        }
      }
    }
  }

  private async registerIn(q: SqlQuery, append: (body: ChangeBody) => Promise<number>, req: RegisterRequest): Promise<RegisterOutcome> {
    const existing = await this.peerIn(q, req.publicKey);
    if (existing) {
      if (existing.subject !== req.subject) throw new CbrError('KEY_IN_USE', 'publicKey: registered by another subject');
      if (existing.iface !== req.iface) throw new CbrError('KEY_IN_USE', `publicKey: registered on interface ${existing.iface}; delete it there first`);
      if (req.expiresAt <= existing.expiresAt) return { peer: existing, created: false, seq: await this.headIn(q) };
      await q('UPDATE registry_peers SET expires_at = $1 WHERE public_key = $2', [req.expiresAt, req.publicKey]);
      const peer = { ...existing, expiresAt: req.expiresAt };
      return { peer, created: false, seq: await append({ kind: 'peer.put', peer }) };
    }
    const [facts] = await q<{ revoked: number | string; n: number | string }>(
      'SELECT (SELECT COUNT(*) FROM registry_revocations WHERE public_key = $1) AS revoked, (SELECT COUNT(*) FROM registry_peers WHERE subject = $2) AS n',
      [req.publicKey, req.subject],
    );
    if (Number(facts!.revoked) > 0) throw new CbrError('FORBIDDEN', 'publicKey: this key was revoked; generate a new one');
    if (Number(facts!.n) >= req.deviceLimit) {
      throw new CbrError('DEVICE_LIMIT', `device limit reached: a subject may register at most ${req.deviceLimit} peers; delete one first`);
    }
    const addrs = await req.allocate(async (family: Family) => {
      const col = family === 4 ? 'ipv4' : 'ipv6';
      const rows = await q<{ a: string }>(`SELECT ${col} AS a FROM registry_peers WHERE interface = $1 AND ${col} IS NOT NULL`, [req.iface]);
      return new Set(rows.map((r) => r.a));
    });
    const peer: PeerRecord = {
      publicKey: req.publicKey,
      iface: req.iface,
      subject: req.subject,
      ...(addrs.ipv4 !== undefined ? { ipv4: addrs.ipv4 } : {}),
      ...(addrs.ipv6 !== undefined ? { ipv6: addrs.ipv6 } : {}),
      createdAt: req.now,
      expiresAt: req.expiresAt,
    };
    await q(`INSERT INTO registry_peers (${PEER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
      peer.publicKey,
      peer.iface,
      peer.subject,
      peer.ipv4 ?? null,
      peer.ipv6 ?? null,
      peer.createdAt,
      peer.expiresAt,
    ]);
    return { peer, created: true, seq: await append({ kind: 'peer.put', peer }) };
  }

  async importPeers(peers: PeerRecord[]): Promise<PeerRecord[]> {
    return this.write(async (q, append) => {
      const added: PeerRecord[] = [];
      for (const p of peers) {
        const [taken] = await q<{ n: number | string }>(
          `SELECT (SELECT COUNT(*) FROM registry_peers WHERE public_key = $1 OR (interface = $2 AND (ipv4 = $3 OR ipv6 = $4)))
            + (SELECT COUNT(*) FROM registry_revocations WHERE public_key = $1) AS n`,
          [p.publicKey, p.iface, p.ipv4 ?? null, p.ipv6 ?? null],
        );
        if (Number(taken!.n) > 0) continue;
        await q(`INSERT INTO registry_peers (${PEER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)`, [
          p.publicKey,
          p.iface,
          p.subject,
          p.ipv4 ?? null,
          p.ipv6 ?? null,
          p.createdAt,
          p.expiresAt,
        ]);
        await append({ kind: 'peer.put', peer: p });
        added.push(p);
      }
      return added;
    });
  }

  async getPeer(publicKey: string): Promise<PeerRecord | undefined> {
    return this.peerIn(this.driver.query, publicKey);
  }

  async peers(filter: { iface?: string; subject?: string } = {}): Promise<PeerRecord[]> {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.iface !== undefined) where.push(`interface = $${params.push(filter.iface)}`);
    if (filter.subject !== undefined) where.push(`subject = $${params.push(filter.subject)}`);
    const sql = `SELECT ${PEER_COLUMNS} FROM registry_peers${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, public_key`;
    return (await this.driver.query<PeerRow>(sql, params)).map(toPeer);
  }

  private async deletePeerIn(q: SqlQuery, append: (body: ChangeBody) => Promise<number>, peer: PeerRecord, reason: RemovalReason): Promise<void> {
    await q('DELETE FROM registry_peers WHERE public_key = $1', [peer.publicKey]);
    await append({ kind: 'peer.delete', publicKey: peer.publicKey, iface: peer.iface, reason });
  }

  async removePeer(publicKey: string, reason: Exclude<RemovalReason, 'revoked'>, subject?: string): Promise<boolean> {
    return this.write(async (q, append) => {
      const peer = await this.peerIn(q, publicKey);
      if (!peer || (subject !== undefined && peer.subject !== subject)) return false;
      await this.deletePeerIn(q, append, peer, reason);
      return true;
    });
  }

  async revoke(publicKey: string, reason: string, now: number): Promise<boolean> {
    return this.write(async (q, append) => {
      const peer = await this.peerIn(q, publicKey);
      if (!peer) return false;
      await q('INSERT INTO registry_revocations (public_key, subject, revoked_at, reason) VALUES ($1, $2, $3, $4) ON CONFLICT (public_key) DO NOTHING', [
        publicKey,
        peer.subject,
        now,
        reason,
      ]);
      await this.deletePeerIn(q, append, peer, 'revoked');
      return true;
    });
  }

  async revocations(): Promise<Revocation[]> {
    const rows = await this.driver.query<{ public_key: string; subject: string; revoked_at: number | string; reason: string }>(
      'SELECT public_key, subject, revoked_at, reason FROM registry_revocations ORDER BY revoked_at, public_key',
    );
    return rows.map((r) => ({ publicKey: r.public_key, subject: r.subject, revokedAt: Number(r.revoked_at), reason: r.reason }));
  }

  async expire(now: number): Promise<PeerRecord[]> {
    return this.write(async (q, append) => {
      const rows = (await q<PeerRow>(`SELECT ${PEER_COLUMNS} FROM registry_peers WHERE expires_at <= $1 ORDER BY expires_at`, [now])).map(toPeer);
      for (const peer of rows) await this.deletePeerIn(q, append, peer, 'expired');
      return rows;
    });
  }

  async recordEndpoints(records: EndpointRecord[]): Promise<void> {
    if (records.length === 0) return;
    await this.driver.transaction(async (q) => {
      for (const r of records) {
        // Only newer news: two PoPs may report the same peer.
        await q(
          'UPDATE registry_peers SET endpoint = $1, endpoint_at = $2, endpoint_pop = $3 WHERE public_key = $4 AND (endpoint_at IS NULL OR endpoint_at <= $2)',
          [r.endpoint, r.at, r.pop, r.publicKey],
        );
      }
    });
  }

  async endpoints(iface?: string): Promise<EndpointRecord[]> {
    const rows = await this.driver.query<{ public_key: string; endpoint: string; endpoint_at: number | string; endpoint_pop: string }>(
      `SELECT public_key, endpoint, endpoint_at, endpoint_pop FROM registry_peers WHERE endpoint IS NOT NULL${iface === undefined ? '' : ' AND interface = $1'} ORDER BY public_key`,
      iface === undefined ? [] : [iface],
    );
    return rows.map((r) => ({ publicKey: r.public_key, endpoint: r.endpoint, at: Number(r.endpoint_at), pop: r.endpoint_pop }));
  }

  async reportPop(status: PopStatus): Promise<void> {
    await this.driver.query(
      'INSERT INTO registry_pops (name, seen_at, serving) VALUES ($1, $2, $3) ON CONFLICT (name) DO UPDATE SET seen_at = excluded.seen_at, serving = excluded.serving',
      [status.name, status.seenAt, status.serving ? 1 : 0],
    );
  }

  async pops(): Promise<PopStatus[]> {
    const rows = await this.driver.query<{ name: string; seen_at: number | string; serving: number | string }>(
      'SELECT name, seen_at, serving FROM registry_pops ORDER BY name',
    );
    return rows.map((r) => ({ name: r.name, seenAt: Number(r.seen_at), serving: Number(r.serving) !== 0 }));
  }

  async addDeny(prefix: string, now: number, comment?: string): Promise<boolean> {
    return this.write(async (q, append) => {
      const added = await q('INSERT INTO registry_deny (prefix, added_at, comment) VALUES ($1, $2, $3) ON CONFLICT (prefix) DO NOTHING RETURNING prefix', [
        prefix,
        now,
        comment ?? null,
      ]);
      if (added.length === 0) return false;
      await append({ kind: 'deny.add', prefix, ...(comment !== undefined ? { comment } : {}) });
      return true;
    });
  }

  async removeDeny(prefix: string): Promise<boolean> {
    return this.write(async (q, append) => {
      const gone = await q('DELETE FROM registry_deny WHERE prefix = $1 RETURNING prefix', [prefix]);
      if (gone.length === 0) return false;
      await append({ kind: 'deny.delete', prefix });
      return true;
    });
  }

  async denyList(): Promise<DenyEntry[]> {
    const rows = await this.driver.query<{ prefix: string; added_at: number | string; comment: string | null }>(
      'SELECT prefix, added_at, comment FROM registry_deny ORDER BY prefix',
    );
    return rows.map((r) => ({ prefix: r.prefix, addedAt: Number(r.added_at), ...(r.comment !== null ? { comment: r.comment } : {}) }));
  }

  async changesSince(seq: number, limit: number): Promise<Change[]> {
    const rows = await this.driver.query<ChangeRow & Row>('SELECT seq, at, kind, body FROM registry_changes WHERE seq > $1 ORDER BY seq LIMIT $2', [
      seq,
      limit,
    ]);
    return rows.map(decodeChange);
  }

  private async headIn(q: SqlQuery): Promise<number> {
    const [r] = await q<{ seq: number | string }>('SELECT seq FROM registry_counter WHERE id = 1');
    return Number(r?.seq ?? 0);
  }

  async head(): Promise<number> {
    return this.headIn(this.driver.query);
  }

  async pruneChanges(keep: number): Promise<number> {
    const gone = await this.driver.query('DELETE FROM registry_changes WHERE seq <= (SELECT seq FROM registry_counter WHERE id = 1) - $1 RETURNING seq', [
      keep,
    ]);
    return gone.length;
  }

  async snapshot(): Promise<Snapshot> {
    return this.driver.transaction(async (q) => {
      await q(this.driver.lockCounterSql);
      const seq = await this.headIn(q);
      const peers = (await q<PeerRow>(`SELECT ${PEER_COLUMNS} FROM registry_peers ORDER BY public_key`)).map(toPeer);
      const deny = (await q<{ prefix: string; added_at: number | string; comment: string | null }>('SELECT prefix, added_at, comment FROM registry_deny')).map(
        (r) => ({
          prefix: r.prefix,
          addedAt: Number(r.added_at),
          ...(r.comment !== null ? { comment: r.comment } : {}),
        }),
      );
      return { seq, peers, deny };
    });
  }

  // --- follower side: mirror a primary's changes (same numbers) into this store ---

  async applyChanges(changes: Change[]): Promise<void> {
    if (changes.length === 0) return;
    await this.driver.transaction(async (q) => {
      let expected = (await this.headIn(q)) + 1;
      for (const c of changes) {
        if (c.seq !== expected) throw new CbrError('CONFLICT', `registry copy: change ${c.seq} does not follow ${expected - 1}`);
        await this.applyIn(q, c);
        const { kind, body } = encodeChange(c);
        await q('INSERT INTO registry_changes (seq, at, kind, body) VALUES ($1, $2, $3, $4)', [c.seq, c.at, kind, body]);
        expected++;
      }
      await q('UPDATE registry_counter SET seq = $1 WHERE id = 1', [expected - 1]);
    });
  }

  private async applyIn(q: SqlQuery, c: Change): Promise<void> {
    switch (c.kind) {
      case 'peer.put': {
        const p = c.peer;
        // An address the copy still shows on another peer was freed before this change on the primary.
        await q('DELETE FROM registry_peers WHERE public_key <> $1 AND interface = $2 AND (ipv4 = $3 OR ipv6 = $4)', [
          p.publicKey,
          p.iface,
          p.ipv4 ?? null,
          p.ipv6 ?? null,
        ]);
        await q(
          `INSERT INTO registry_peers (${PEER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (public_key) DO UPDATE SET interface = excluded.interface, subject = excluded.subject, ipv4 = excluded.ipv4,
             ipv6 = excluded.ipv6, created_at = excluded.created_at, expires_at = excluded.expires_at`,
          [p.publicKey, p.iface, p.subject, p.ipv4 ?? null, p.ipv6 ?? null, p.createdAt, p.expiresAt],
        );
        return;
      }
      case 'peer.delete':
        await q('DELETE FROM registry_peers WHERE public_key = $1', [c.publicKey]);
        return;
      case 'deny.add':
        await q('INSERT INTO registry_deny (prefix, added_at, comment) VALUES ($1, $2, $3) ON CONFLICT (prefix) DO NOTHING', [
          c.prefix,
          c.at,
          c.comment ?? null,
        ]);
        return;
      case 'deny.delete':
        await q('DELETE FROM registry_deny WHERE prefix = $1', [c.prefix]);
        return;
    }
  }

  async replaceWith(snapshot: Snapshot): Promise<void> {
    await this.driver.transaction(async (q) => {
      for (const t of ['registry_peers', 'registry_deny', 'registry_changes']) await q(`DELETE FROM ${t}`);
      for (const p of snapshot.peers) await this.applyIn(q, { kind: 'peer.put', peer: p, seq: snapshot.seq, at: p.createdAt });
      for (const d of snapshot.deny)
        await this.applyIn(q, {
          kind: 'deny.add',
          prefix: d.prefix,
          ...(d.comment !== undefined ? { comment: d.comment } : {}),
          seq: snapshot.seq,
          at: d.addedAt,
        });
      await q('UPDATE registry_counter SET seq = $1 WHERE id = 1', [snapshot.seq]);
    });
  }

  async close(): Promise<void> {
    await this.driver.close();
  }
}
