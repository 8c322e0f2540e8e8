// Helpers for the registry's tests: a PostgreSQL test host and stores on it, WireGuard-shaped keys,
// and a lowest-free IPv4 allocator like the WireGuard pools'.
import { randomBytes } from 'node:crypto';
import { PostgresHost } from '../testhosts/index.js';
import { CbrError } from '../dataplane/index.js';
import { openPostgresRegistry, PostgresConnector } from './postgres.js';
import type { SqlRegistryStore } from './sql-store.js';
import type { RegisterRequest } from './store.js';

export function randomKey(): string {
  return randomBytes(32).toString('base64');
}

/** The lowest free address of 10.77.0.0/16 (from .0.2), as the WireGuard pools allocate. */
export const lowestFree: RegisterRequest['allocate'] = async (used) => {
  const taken = await used(4);
  for (let i = 2; i < 65535; i++) {
    const a = `10.77.${i >> 8}.${i & 255}`;
    if (!taken.has(a)) return { ipv4: a };
  }
  throw new CbrError('POOL_EXHAUSTED', 'the IPv4 pools are exhausted');
};

export function registration(subject: string, publicKey = randomKey(), now = Date.now()): RegisterRequest {
  return { publicKey, iface: 'wg0', subject, now, expiresAt: now + 3_600_000, deviceLimit: 1000, allocate: lowestFree };
}

export function connectorFor(h: PostgresHost, opts: { url?: string; role?: string } = {}): PostgresConnector {
  const role = opts.role ?? h.roles[0]!;
  return new PostgresConnector({
    url: opts.url ?? `${h.url(role)}&target_session_attrs=read-write`,
    passwordFile: h.passwordFile(role),
    connectTimeoutMs: 2000,
  });
}

export function postgresStore(h: PostgresHost): SqlRegistryStore {
  return openPostgresRegistry(connectorFor(h));
}

/** Starts a PostgreSQL test host, runs fn, stops it whatever happens. */
export async function withPostgres<T>(fn: (h: PostgresHost) => Promise<T>): Promise<T> {
  const h = await PostgresHost.start();
  try {
    return await fn(h);
  } finally {
    await h.stop();
  }
}
