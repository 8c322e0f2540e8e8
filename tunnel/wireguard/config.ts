// The `tunnel.wireguard` section: WireGuard interfaces terminated on this PoP.
import { z } from 'zod';
import { enabledFlag } from '../../dataplane/config/common.js';

export const wireguardConfigSchema = z.strictObject({
  enabled: enabledFlag(),
});
