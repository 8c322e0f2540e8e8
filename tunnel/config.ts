// The `tunnel` section: one subsection per tunnel kind, each declared in its own folder, and the
// egress policy both kinds share (enforced per tunnel interface by dataplane/os/egress.ts).
import { z } from 'zod';
import { prefix } from '../dataplane/index.js';
import type { MasqueConfig } from './masque/index.js';
import type { WireguardConfig } from './wireguard/index.js';

export const egressConfigSchema = z.strictObject({
  allow: z.array(prefix()).default([]).describe('destinations tunnel clients may reach although a denied range covers them (e.g. an internal origin)'),
  deny: z.array(prefix()).default([]).describe('destinations denied on top of the special-purpose ranges'),
  allowPrivate: z
    .boolean()
    .default(false)
    .describe('let clients reach private, loopback, link-local, CGNAT, documentation and other special-purpose ranges (labs only)'),
  allowPeerToPeer: z.boolean().default(false).describe('let clients of one tunnel interface reach each other'),
  allowPopAddresses: z.boolean().default(false).describe("let clients open connections to the PoP's own addresses through the tunnel"),
});
export type EgressConfig = z.output<typeof egressConfigSchema>;

export interface TunnelConfig {
  masque: MasqueConfig;
  wireguard: WireguardConfig;
  egress: EgressConfig;
}

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    tunnel: TunnelConfig;
  }
}
