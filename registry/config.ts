// The `registry` section: where WireGuard peers, leases, revocations and the fleet deny list live.
// Without `postgres.url` the registry is embedded SQLite (one PoP); with it, PostgreSQL is the fleet's
// source of truth and `path` holds this PoP's durable local copy, followed through the change feed.
import { z } from 'zod';
import { duration, errorMessage } from '../dataplane/index.js';
import { parsePostgresUrl } from './postgres.js';

export const registryConfigSchema = z
  .strictObject({
    path: z
      .string()
      .min(1)
      .optional()
      .describe('SQLite file: the registry itself, or the local copy of the fleet registry (default <agent.stateDir>/registry.db)'),
    changeRetention: z
      .number()
      .int()
      .min(100)
      .default(100_000)
      .describe('changes kept in the change log (database and local copy); a PoP further behind copies a snapshot'),
    postgres: z
      .strictObject({
        url: z
          .string()
          .superRefine((url, ctx) => {
            try {
              parsePostgresUrl(url);
            } catch (err) {
              ctx.addIssue({ code: 'custom', message: errorMessage(err) });
            }
          })
          .optional()
          .describe(
            'postgres://user@host1[:port][,host2[:port]]/db?sslmode=verify-full&sslrootcert=FILE&sslcert=FILE&sslkey=FILE&target_session_attrs=read-write; set to use PostgreSQL',
          ),
        passwordFile: z.string().min(1).optional().describe("file holding the database role's password (first line)"),
        poolSize: z.number().int().min(1).max(100).default(10).describe('connections to the primary'),
        maxPending: z
          .number()
          .int()
          .min(1)
          .default(1000)
          .describe('database requests waiting for or using a connection at most; more are refused (429) at once'),
        connectTimeout: duration().prefault('5s').describe('per host, before trying the next one'),
        statementTimeout: duration().prefault('10s').describe('server-side limit of one statement'),
        catchUpInterval: duration().prefault('5s').describe('the feed reads the change log this often even without notifications'),
      })
      .prefault({}),
  })
  .prefault({});

export type RegistryConfig = z.infer<typeof registryConfigSchema>;

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    registry: RegistryConfig;
  }
}
