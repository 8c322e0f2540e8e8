// The `tunnel.masque` section: the HTTP/3 listener terminating connect-udp and connect-ip.
import { z } from 'zod';
import { enabledFlag, hostPort } from '../../dataplane/config/common.js';

export const masqueConfigSchema = z.strictObject({
  enabled: enabledFlag(),
  listen: hostPort().default('0.0.0.0:443').describe('UDP address of the QUIC listener'),
  congestionControl: z.enum(['bbr', 'cubic', 'reno']).default('bbr').describe('QUIC congestion control; CBR_CC overrides'),
});
