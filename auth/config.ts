// The `auth` section: how Zitadel-issued tokens are verified and which roles each session kind needs.
import { z } from 'zod';
import { enabledFlag, duration } from '../dataplane/config/common.js';

export const authConfigSchema = z.strictObject({
  enabled: enabledFlag(),
  issuer: z.url().optional().describe('Zitadel issuer URL, exactly as in the tokens\' iss claim'),
  audience: z.array(z.string().min(1)).default([]).describe('project IDs or client IDs accepted in aud'),
  clockSkew: duration().prefault('30s').describe('tolerance for exp, nbf and iat'),
});
