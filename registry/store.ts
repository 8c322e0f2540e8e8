// The registry's one interface, whatever the backend (SQLite embedded, PostgreSQL for a fleet):
// peers with their address leases, revocations, the fleet deny list, the peers' last endpoints, and
// the change log every mutation appends to in the same transaction, numbered without gaps.
import type { Change, PeerRecord, RemovalReason } from './change.js';

export type Family = 4 | 6;

export interface Revocation {
  publicKey: string;
  subject: string;
  revokedAt: number;
  reason: string;
}

export interface DenyEntry {
  prefix: string;
  addedAt: number;
  comment?: string;
}

export interface EndpointRecord {
  publicKey: string;
  /** host:port the peer was last heard from */
  endpoint: string;
  /** Unix milliseconds */
  at: number;
  /** the PoP that heard it */
  pop: string;
}

/** A PoP's liveness as it last reported it (not a change: it would flood the log). */
export interface PopStatus {
  name: string;
  /** Unix milliseconds of its last report */
  seenAt: number;
  /** false once it withdrew from anycast (health down, drain) */
  serving: boolean;
}

export interface RegisterRequest {
  publicKey: string;
  iface: string;
  subject: string;
  now: number;
  expiresAt: number;
  /** A subject's peers at most (DEVICE_LIMIT beyond). */
  deviceLimit: number;
  /**
   * Picks the new peer's addresses, given those in use on the interface (canonical strings), inside
   * the registration's transaction; throws (e.g. POOL_EXHAUSTED) when it cannot.
   */
  allocate(used: (family: Family) => Promise<Set<string>>): Promise<{ ipv4?: string; ipv6?: string }>;
}

export interface RegisterOutcome {
  peer: PeerRecord;
  created: boolean;
  /** the change number that recorded it */
  seq: number;
}

/** What a follower needs when the log no longer reaches back to its position. */
export interface Snapshot {
  seq: number;
  peers: PeerRecord[];
  deny: DenyEntry[];
}

export interface RegistryStore {
  readonly backend: 'sqlite' | 'postgres';
  /** Applies the schema migrations this code knows (safe when several agents start at once). */
  migrate(): Promise<number>;
  /**
   * Registers or renews a peer in one transaction: KEY_IN_USE (another subject or interface),
   * FORBIDDEN (revoked key), DEVICE_LIMIT, or the allocator's error. Addresses are unique by the
   * database's constraints.
   */
  register(req: RegisterRequest): Promise<RegisterOutcome>;
  /**
   * Adds peers with the addresses they already hold (an upgrade from a PoP's own lease file), each
   * with its change; a peer whose key or an address is taken, or whose key was revoked, is skipped.
   * Resolves with those added.
   */
  importPeers(peers: PeerRecord[]): Promise<PeerRecord[]>;
  getPeer(publicKey: string): Promise<PeerRecord | undefined>;
  peers(filter?: { iface?: string; subject?: string }): Promise<PeerRecord[]>;
  /** Removes a peer (only `subject`'s when given); false when there is none. */
  removePeer(publicKey: string, reason: Exclude<RemovalReason, 'revoked'>, subject?: string): Promise<boolean>;
  /** Removes a peer and refuses its key from now on. */
  revoke(publicKey: string, reason: string, now: number): Promise<boolean>;
  revocations(): Promise<Revocation[]>;
  /** Removes every peer expired at `now`; resolves with them. */
  expire(now: number): Promise<PeerRecord[]>;
  /** Records peers' last endpoints (not a change: it would flood the log). */
  recordEndpoints(records: EndpointRecord[]): Promise<void>;
  endpoints(iface?: string): Promise<EndpointRecord[]>;
  /** Records a PoP's liveness (upsert). */
  reportPop(status: PopStatus): Promise<void>;
  /** Every PoP's last report. */
  pops(): Promise<PopStatus[]>;
  addDeny(prefix: string, now: number, comment?: string): Promise<boolean>;
  removeDeny(prefix: string): Promise<boolean>;
  denyList(): Promise<DenyEntry[]>;
  /** Changes after `seq`, in order, at most `limit`. */
  changesSince(seq: number, limit: number): Promise<Change[]>;
  /** The number of the newest change (0 when none). */
  head(): Promise<number>;
  /** Deletes all but the newest `keep` changes (a follower further behind copies a snapshot); resolves with how many. */
  pruneChanges(keep: number): Promise<number>;
  /** The whole state and the change number it reflects (one consistent read). */
  snapshot(): Promise<Snapshot>;
  close(): Promise<void>;
}

/** A local copy that mirrors a primary's change log (a follower's SQLite). */
export interface RegistryReplica {
  head(): Promise<number>;
  changesSince(seq: number, limit: number): Promise<Change[]>;
  /** Applies changes (consecutive, after head()) in one transaction. */
  applyChanges(changes: Change[]): Promise<void>;
  /** Replaces the whole state by a primary's snapshot (when the log no longer reaches back). */
  replaceWith(snapshot: Snapshot): Promise<void>;
}
