// The `auth` section: how Zitadel-issued tokens are verified and which roles each session kind needs.
import { z } from 'zod';
import { enabledFlag, duration, isLoopback } from '../dataplane/index.js';

/**
 * Why `url` may not carry keys or tokens: anything but https, except http to a loopback host or with
 * allowInsecure. Undefined when it may.
 */
export function insecureUrlProblem(url: string, allowInsecure: boolean): string | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return `expected a URL, got ${JSON.stringify(url)}`;
  }
  if (u.protocol === 'https:') return undefined;
  if (u.protocol !== 'http:') return `expected an https:// URL, got ${JSON.stringify(url)}`;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (allowInsecure || host === 'localhost' || isLoopback(host)) return undefined;
  return `${url}: http:// is refused for a host other than loopback (keys and tokens would travel unprotected); use https:// or set auth.allowInsecureIssuer: true`;
}

/** Signature algorithms a deployment may allow. `none` and the HMAC family are not in it, on purpose. */
export const ALLOWABLE_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'] as const;
export type AllowedAlgorithm = (typeof ALLOWABLE_ALGORITHMS)[number];

export const INTROSPECTION_MODES = ['jwt-only', 'introspect-opaque', 'introspect-always'] as const;
export type IntrospectionMode = (typeof INTROSPECTION_MODES)[number];

const roleList = (dflt: string[], what: string) =>
  z
    .array(z.string().min(1))
    .min(1, { error: 'expected at least one role (an empty list would let every valid token in)' })
    .default(dflt)
    .describe(`roles of which a token needs at least one to ${what}`);

const bucket = (rate: number, burst: number, who: string) =>
  z
    .strictObject({
      rate: z.number().min(0).default(rate).describe(`session setups per second refilled per ${who}; 0 turns this limit off`),
      burst: z.number().int().min(1).default(burst).describe(`session setups a ${who} may make at once (bucket size)`),
    })
    .prefault({})
    .describe(`token bucket per ${who}`);

export const authConfigSchema = z
  .strictObject({
    enabled: enabledFlag(),
    issuer: z.url().optional().describe("Zitadel issuer URL, exactly as in the tokens' iss claim (https://, or http:// only to a loopback host)"),
    allowInsecureIssuer: z
      .boolean()
      .default(false)
      .describe(
        'accept an http:// issuer, JWKS or introspection URL on a host other than loopback (keys and tokens then travel unprotected; test networks only)',
      ),
    audience: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'project IDs or client IDs accepted in aud; roles count only from the project-scoped claim urn:zitadel:iam:org:project:{id}:roles of these IDs',
      ),
    trustGenericRoleClaim: z
      .boolean()
      .default(false)
      .describe(
        "also take roles from Zitadel's generic claim urn:zitadel:iam:org:project:roles; it holds the roles of the project of the client that requested the token, which may be another project than ours",
      ),
    clockSkew: duration().prefault('30s').describe('tolerance for exp, nbf and iat'),
    algorithms: z.array(z.enum(ALLOWABLE_ALGORITHMS)).min(1).default(['RS256', 'ES256']).describe('signature algorithms accepted (never none, never HMAC)'),
    jwks: z
      .strictObject({
        uri: z.url().optional().describe('JWKS URL; without it, jwks_uri from <issuer>/.well-known/openid-configuration (Zitadel: /oauth/v2/keys)'),
        refreshInterval: duration().prefault('5m').describe('time between background refreshes of the key set'),
        unknownKidRefetchInterval: duration().prefault('30s').describe('a token with an unknown kid triggers a refetch at most this often'),
        maxAge: duration().prefault('12h').describe('cached keys keep verifying during an issuer outage until the last successful fetch is this old'),
        fetchTimeout: duration().prefault('5s').describe('limit for one discovery or JWKS request'),
        maxBytes: z
          .number()
          .int()
          .min(1024)
          .default(1 << 20)
          .describe('largest discovery, JWKS or introspection answer read; a longer one is cut off while it streams in and the fetch fails'),
      })
      .prefault({})
      .describe("the issuer's signing keys"),
    tokenCache: z
      .strictObject({
        maxEntries: z
          .number()
          .int()
          .min(0)
          .default(10000)
          .describe('verified tokens remembered (claims are still checked on every use; 0 turns the cache off)'),
      })
      .prefault({})
      .describe('cache of signature-verified tokens, keyed by the whole token, dropped at exp or when its key leaves the JWKS'),
    introspection: z
      .strictObject({
        mode: z
          .enum(INTROSPECTION_MODES)
          .default('jwt-only')
          .describe(
            'jwt-only: verify JWTs locally; introspect-opaque: also accept opaque tokens through introspection; introspect-always: also ask the issuer about every JWT (revocation)',
          ),
        keyFile: z
          .string()
          .min(1)
          .optional()
          .describe('Zitadel application key file (JSON: type, keyId, key, clientId, appId) for private_key_jwt client authentication'),
        endpoint: z.url().optional().describe('introspection URL; without it, introspection_endpoint from discovery (Zitadel: /oauth/v2/introspect)'),
        cacheTtl: duration().prefault('30s').describe("how long an active answer is reused (never past the token's exp)"),
        timeout: duration().prefault('5s').describe('limit for one introspection request'),
      })
      .prefault({})
      .describe('optional token introspection (RFC 7662)'),
    policy: z
      .strictObject({
        'masque-connect-ip': roleList(['vpn-user'], 'open a MASQUE connect-ip tunnel'),
        'masque-connect-udp': roleList(['vpn-user'], 'open a MASQUE connect-udp tunnel'),
        'wireguard-register': roleList(['vpn-user'], 'register a WireGuard peer'),
        admin: roleList(['admin'], 'use the admin API under /v1/'),
      })
      .prefault({})
      .describe('roles each session kind needs (Zitadel project roles)'),
    rateLimit: z
      .strictObject({
        perSubject: bucket(1, 10, 'subject'),
        perSource: bucket(5, 20, 'source address'),
        adminFailuresPerSource: z
          .strictObject({
            rate: z.number().min(0).default(0.2).describe('failed admin-API authentications forgiven per second per source address; 0 turns this limit off'),
            burst: z.number().int().min(1).default(10).describe('failed admin-API authentications a source may make before it gets 429'),
          })
          .prefault({})
          .describe('token bucket of failed admin-API authentications per source address (429 with Retry-After once empty)'),
        maxTracked: z.number().int().min(100).default(100000).describe('buckets remembered per kind of limit; the least recently used are dropped'),
      })
      .prefault({})
      .describe(
        'session-setup rate limits for tunnels and WireGuard registrations, and failed admin-API authentications (RATE_LIMITED with Retry-After when exceeded)',
      ),
  })
  .superRefine((c, ctx) => {
    if (!c.enabled) return;
    if (!c.issuer) ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'required when auth is enabled (the Zitadel instance URL)' });
    if (c.audience.length === 0)
      ctx.addIssue({ code: 'custom', path: ['audience'], message: 'required when auth is enabled: at least one project ID or client ID' });
    const urls: Array<[string[], string | undefined]> = [
      [['issuer'], c.issuer],
      [['jwks', 'uri'], c.jwks.uri],
      [['introspection', 'endpoint'], c.introspection.endpoint],
    ];
    for (const [path, url] of urls) {
      const problem = url === undefined ? undefined : insecureUrlProblem(url, c.allowInsecureIssuer);
      if (problem) ctx.addIssue({ code: 'custom', path, message: problem });
    }
    if (c.introspection.mode !== 'jwt-only' && !c.introspection.keyFile) {
      ctx.addIssue({ code: 'custom', path: ['introspection', 'keyFile'], message: `required when introspection.mode is ${c.introspection.mode}` });
    }
  });

export type AuthConfig = z.output<typeof authConfigSchema>;

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    auth: AuthConfig;
  }
}
