// The `bgp` section: the supervised BIRD speaker and the anycast prefixes it announces.
import { z } from 'zod';
import { enabledFlag } from '../dataplane/config/common.js';

export const bgpConfigSchema = z.strictObject({
  enabled: enabledFlag(),
});
