// The agent's whole configuration: the sections the foundation owns plus one section per subsystem,
// each declared in its own folder. Every object is strict so a typo is an error, not a silent default.
import { z } from 'zod';
import { duration, hostPort, enabledFlag } from './common.js';
import { authConfigSchema } from '../../auth/config.js';
import { xdpConfigSchema } from '../../xdp/config.js';
import { masqueConfigSchema } from '../../tunnel/masque/config.js';
import { wireguardConfigSchema } from '../../tunnel/wireguard/config.js';
import { bgpConfigSchema } from '../../bgp/config.js';

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

export const configSchema = z.strictObject({
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
      apiToken: z.string().min(16, { error: 'expected at least 16 characters' }).optional()
        .describe('bearer token for /v1/ (prefer apiTokenFile); without either, /v1/ answers only from loopback'),
      apiTokenFile: z.string().optional().describe('file holding the /v1/ bearer token'),
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
  auth: authConfigSchema.prefault({}),
  xdp: xdpConfigSchema.prefault({}),
  tunnel: z
    .strictObject({
      masque: masqueConfigSchema.prefault({}),
      wireguard: wireguardConfigSchema.prefault({}),
    })
    .prefault({}),
  bgp: bgpConfigSchema.prefault({}),
});

export type CbrConfig = z.output<typeof configSchema>;
export type CbrConfigInput = z.input<typeof configSchema>;
export type ExternalCheckConfig = z.output<typeof externalCheckSchema>;
