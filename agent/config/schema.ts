// The agent's whole configuration: the base sections plus one section per subsystem, each declared
// in its own folder. Every object is strict so a typo is an error, not a silent default.
import { z } from 'zod';
import { baseSections, ConfigLoader, type CbrConfig } from '../../dataplane/index.js';
import { authConfigSchema } from '../../auth/index.js';
import { xdpConfigSchema } from '../../xdp/index.js';
import { masqueConfigSchema, wireguardConfigSchema, egressConfigSchema } from '../../tunnel/index.js';
import { bgpConfigSchema } from '../../bgp/index.js';
import { registryConfigSchema } from '../../registry/index.js';

export const configSchema = z.strictObject({
  ...baseSections,
  auth: authConfigSchema.prefault({}),
  xdp: xdpConfigSchema.prefault({}),
  tunnel: z
    .strictObject({
      masque: masqueConfigSchema.prefault({}),
      wireguard: wireguardConfigSchema.prefault({}),
      egress: egressConfigSchema.prefault({}).describe('what tunnel clients may reach through the PoP (nftables rules per tunnel interface)'),
    })
    .prefault({}),
  bgp: bgpConfigSchema.prefault({}),
  registry: registryConfigSchema,
});

export type CbrConfigInput = z.input<typeof configSchema>;

// The subsystems see the config through dataplane's CbrConfig (assembled by augmentation): both
// directions must hold, or a section was added to one side only.
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const sameShape: Same<z.output<typeof configSchema>, CbrConfig> = true;
void sameShape;

/** Loads, overrides and validates against the full schema. */
export const configLoader = new ConfigLoader<CbrConfig>(configSchema);
