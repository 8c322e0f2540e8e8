// The registry's schema as numbered migrations, in SQL both SQLite and PostgreSQL accept. A
// migration is never edited once released: a change to the schema is a new entry at the end.
export interface Migration {
  version: number;
  statements: string[];
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    statements: [
      // One row: the newest change number. Writers lock it first, so changes commit in number order
      // and the numbers have no gaps (a follower that sees a gap knows it missed something).
      'CREATE TABLE registry_counter (id integer PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL)',
      'INSERT INTO registry_counter (id, seq) VALUES (1, 0)',
      `CREATE TABLE registry_peers (
        public_key text PRIMARY KEY,
        interface  text NOT NULL,
        subject    text NOT NULL,
        ipv4       text,
        ipv6       text,
        created_at bigint NOT NULL,
        expires_at bigint NOT NULL,
        endpoint   text,
        endpoint_at bigint,
        endpoint_pop text
      )`,
      // The leases: an address is held by one peer per interface, fleet-wide.
      'CREATE UNIQUE INDEX registry_peers_ipv4 ON registry_peers (interface, ipv4) WHERE ipv4 IS NOT NULL',
      'CREATE UNIQUE INDEX registry_peers_ipv6 ON registry_peers (interface, ipv6) WHERE ipv6 IS NOT NULL',
      'CREATE INDEX registry_peers_subject ON registry_peers (subject)',
      'CREATE INDEX registry_peers_expiry ON registry_peers (expires_at)',
      `CREATE TABLE registry_revocations (
        public_key text PRIMARY KEY,
        subject    text NOT NULL,
        revoked_at bigint NOT NULL,
        reason     text NOT NULL
      )`,
      'CREATE TABLE registry_deny (prefix text PRIMARY KEY, added_at bigint NOT NULL, comment text)',
      'CREATE TABLE registry_changes (seq bigint PRIMARY KEY, at bigint NOT NULL, kind text NOT NULL, body text NOT NULL)',
    ],
  },
  {
    version: 2,
    statements: [
      // Each PoP's liveness: written every second while it runs, `serving` 0 once it withdrew (health
      // down, drain). A PoP that finds another gone takes over its clients (see tunnel/wireguard).
      'CREATE TABLE registry_pops (name text PRIMARY KEY, seen_at bigint NOT NULL, serving integer NOT NULL)',
    ],
  },
];

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;
