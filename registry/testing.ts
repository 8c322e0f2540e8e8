// Helpers for the registry's tests: a PostgreSQL test host and stores on it, WireGuard-shaped keys,
// and a lowest-free IPv4 allocator like the WireGuard pools'.
import { randomBytes } from 'node:crypto';
import { PostgresHost } from '../testhosts/index.js';
import { CbrError, errorCode } from '../dataplane/index.js';
import { openPostgresRegistry, PostgresConnector } from './postgres.js';
import type { SqlRegistryStore } from './sql-store.js';
import type { RegisterRequest, RegistryStore } from './store.js';

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
    // This machine is shared and noisy: a burst may queue long for the serialized writes.
    queueTimeoutMs: 60_000,
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

export interface Burst {
  /** Public keys whose registration was acknowledged, in order. */
  acked: string[];
  /** Refused registrations by error code. */
  failures: Map<string, number>;
  /** Ends the burst and waits for the writers. */
  stop(): Promise<void>;
}

/** Registers new peers in a loop, `writers` at a time per store, until stop() (at most 5000 each). */
export function registrationBurst(stores: RegistryStore[], writers: number, pauseOnFailureMs = 20): Burst {
  const acked: string[] = [];
  const failures = new Map<string, number>();
  let stopped = false;
  const writer = async (s: RegistryStore, w: number) => {
    for (let i = 0; !stopped && i < 5000; i++) {
      const req = registration(`w${w}-${i}`);
      try {
        await s.register(req);
        acked.push(req.publicKey);
      } catch (err) {
        const code = errorCode(err) ?? 'none';
        failures.set(code, (failures.get(code) ?? 0) + 1);
        await new Promise((r) => setTimeout(r, pauseOnFailureMs));
      }
    }
  };
  const running = stores.flatMap((s, si) => Array.from({ length: writers }, (_, wi) => writer(s, si * writers + wi)));
  return {
    acked,
    failures,
    async stop() {
      stopped = true;
      await Promise.all(running);
    },
  };
}
