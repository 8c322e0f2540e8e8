// The `xdp` section: the filter and load balancer attached to the PoP's ingress interface.
import { z } from 'zod';
import { enabledFlag, ifname } from '../dataplane/config/common.js';

export const xdpConfigSchema = z.strictObject({
  enabled: enabledFlag(),
  interface: ifname().optional().describe('ingress interface the programs attach to'),
  mode: z.enum(['native', 'generic']).default('native').describe('XDP attach mode'),
});
