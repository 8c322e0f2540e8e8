// The sections of the config the shared base owns (agent, log, admin, lifecycle, health), and the
// type of the whole config as subsystems see it. Each subsystem adds its own section to
// `ConfigSections` by module augmentation in its config.ts; agent/config/schema.ts assembles the
// zod schema from those sections and checks at compile time that it yields exactly `CbrConfig`.
import { hostname } from 'node:os';
import { z } from 'zod';
import { duration, hostPort, enabledFlag } from './common.js';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

const externalCheckSchema = z
  .strictObject({
    name: z.string().regex(/^[a-z0-9_-]{1,40}$/, { error: 'expected a check name of a-z, 0-9, _ or - (at most 40)' }),
    command: z.array(z.string()).min(1).optional().describe('argv run without a shell; exit 0 means healthy'),
    http: z.url().optional().describe('URL probed with GET; a 2xx answer means healthy'),
    interval: duration().prefault('2s').describe('time between runs'),
    timeout: duration().prefault('1s').describe('a run that takes longer fails'),
    rise: z.number().int().min(1).default(2).describe('consecutive passes before the check counts as up'),
    fall: z.number().int().min(1).default(2).describe('consecutive failures before the check counts as down'),
  })
  .refine((c) => (c.command === undefined) !== (c.http === undefined), {
    error: 'expected exactly one of command or http',
  });

/** The base sections' schemas, spread into the full schema by agent/config/schema.ts. */
export const baseSections = {
  agent: z
    .strictObject({
      name: z.string().min(1).optional().describe('name of this PoP in logs and metrics (default: the host name)'),
      stateDir: z.string().min(1).default('/var/lib/cbr').describe('directory for state that survives restarts (leases, keys)'),
    })
    .prefault({}),
  log: z
    .strictObject({
      level: z.enum(LOG_LEVELS).default('info').describe('pino log level; CBR_LOG_LEVEL overrides'),
    })
    .prefault({}),
  admin: z
    .strictObject({
      enabled: enabledFlag(true),
      listen: hostPort().default('127.0.0.1:9780').describe('address of /metrics, /healthz and the /v1/ API'),
      apiToken: z
        .string()
        .min(16, { error: 'expected at least 16 characters' })
        .optional()
        .describe('bearer token for /v1/ (prefer apiTokenFile); without either, /v1/ answers only from loopback'),
      apiTokenFile: z.string().optional().describe('file holding the /v1/ bearer token'),
      maxConnections: z.number().int().min(1).default(256).describe('open connections the admin listener accepts at once (more are closed at accept)'),
    })
    .prefault({}),
  clientApi: z
    .strictObject({
      enabled: enabledFlag(false),
      listen: hostPort()
        .default('0.0.0.0:443')
        .describe('HTTPS listener for what VPN clients call (WireGuard registration); only client routes, never /metrics, /healthz or the admin API'),
      certFile: z.string().optional().describe('PEM certificate chain (default: tunnel.masque.tls.certFile); re-read on SIGHUP'),
      keyFile: z.string().optional().describe('PEM private key (default: tunnel.masque.tls.keyFile)'),
      maxConnections: z.number().int().min(1).default(1024).describe('open connections the client listener accepts at once'),
    })
    .prefault({}),
  lifecycle: z
    .strictObject({
      shutdownTimeout: duration().prefault('30s').describe('hard limit for drain plus stop on SIGTERM; past it the agent exits 1'),
      drainTime: duration().prefault('0s').describe('time to stay in draining before stopping (BGP adds its own drain wait)'),
    })
    .prefault({}),
  health: z
    .strictObject({
      checks: z.array(externalCheckSchema).default([]).describe('external checks: a command or an HTTP probe'),
    })
    .prefault({}),
};

/** Only the base sections, other keys kept unchecked: what CLI commands read to find the admin API. */
export const baseConfigSchema = z.looseObject(baseSections);

export type BaseConfig = z.output<z.ZodObject<typeof baseSections>>;
export type ExternalCheckConfig = z.output<typeof externalCheckSchema>;

/** Filled in by each subsystem's config.ts (`declare module` augmentation). */
// biome-ignore lint/suspicious/noEmptyInterface: augmented by the subsystems
export interface ConfigSections {}

/** The whole validated config. */
export type CbrConfig = BaseConfig & ConfigSections;

/** The PoP's name in logs, metrics, the status page and the `cbr-pop` response header. */
export function popName(config: Pick<BaseConfig, 'agent'>): string {
  return config.agent.name ?? hostname();
}
