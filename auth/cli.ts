// `cbr auth verify`, `cbr auth token` and `cbr dev-issuer`: operator tools around the gate.
import type { Command } from 'commander';
import { CbrError, withAdminOptions, adminClientFromOptions, errorMessage, readSecretFile } from '../dataplane/index.js';
import { authConfigSchema, type AuthConfig } from './config.js';
import { AuthError } from './gate.js';
import { TokenGate } from './token-gate.js';
import { requireAnyRole } from './claims.js';
import { discover, fetchJson, HttpStatusError } from './jwks.js';
import { startDevIssuer, loadDevIssuerConfig, type DevIssuerOptions } from './dev-issuer.js';

const collect = (v: string, prev: string[] = []) => [...prev, v];

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** The token from --token, --token-file or stdin (`-`); a leading "Bearer " is dropped. */
async function tokenFrom(opts: { token?: string; tokenFile?: string }, source?: string): Promise<string> {
  const given = [opts.token !== undefined, opts.tokenFile !== undefined, source === '-'].filter(Boolean).length;
  if (given !== 1) throw new CbrError('INVALID_ARGUMENT', 'give exactly one of --token T, --token-file F or - (stdin)');
  let raw: string;
  if (opts.token !== undefined) raw = opts.token;
  else if (opts.tokenFile !== undefined) {
    raw = readSecretFile(opts.tokenFile, '--token-file');
  } else raw = await readStdin();
  return raw.trim().replace(/^Bearer\s+/i, '');
}

/** An auth config from flags, through the same schema as the agent's (so defaults match). */
function configFromFlags(o: VerifyFlags): AuthConfig {
  const raw = {
    enabled: true,
    issuer: o.issuer,
    audience: o.audience ?? [],
    ...(o.clockSkew ? { clockSkew: o.clockSkew } : {}),
    ...(o.alg ? { algorithms: o.alg } : {}),
    jwks: { ...(o.jwksUri ? { uri: o.jwksUri } : {}), fetchTimeout: o.timeout ?? '5s' },
    tokenCache: { maxEntries: 0 },
    introspection: { mode: o.introspect ?? 'jwt-only', ...(o.keyFile ? { keyFile: o.keyFile } : {}) },
  };
  const r = authConfigSchema.safeParse(raw);
  if (!r.success) {
    const flag: Record<string, string> = {
      issuer: '--issuer',
      audience: '--audience',
      clockSkew: '--clock-skew',
      algorithms: '--alg',
      jwks: '--jwks-uri',
      introspection: '--introspect/--key-file',
    };
    const i = r.error.issues[0]!;
    throw new CbrError('INVALID_ARGUMENT', `${flag[String(i.path[0])] ?? i.path.join('.')}: ${i.message}`);
  }
  return r.data;
}

interface VerifyFlags {
  issuer?: string;
  audience?: string[];
  role?: string[];
  token?: string;
  tokenFile?: string;
  jwksUri?: string;
  clockSkew?: string;
  alg?: string[];
  introspect?: string;
  keyFile?: string;
  timeout?: string;
}

export function registerAuthCli(program: Command): void {
  const auth = program.command('auth').description('Zitadel token tools');
  auth
    .command('verify')
    .description('verify an access token as the agent would; print its identity as JSON (exit 0) or the error code on stderr (exit 1)')
    .argument('[source]', '"-" to read the token from stdin')
    .requiredOption('--issuer <url>', 'issuer URL, exactly as in iss')
    .option('--audience <id>', 'accepted aud value (project ID or client ID); repeatable', collect)
    .option('--role <role>', 'role the token must hold; repeatable (all are required)', collect)
    .option('--token <jwt>', 'the token')
    .option('--token-file <file>', 'file holding the token')
    .option('--jwks-uri <url>', 'JWKS URL instead of discovery')
    .option('--clock-skew <duration>', 'tolerance for exp/nbf/iat (default 30s)')
    .option('--alg <alg>', 'allowed algorithm; repeatable (default RS256, ES256)', collect)
    .option('--introspect <mode>', 'jwt-only | introspect-opaque | introspect-always')
    .option('--key-file <file>', 'Zitadel application key file for introspection')
    .option('--timeout <duration>', 'limit for each request to the issuer (default 5s)')
    .action(async (source: string | undefined, o: VerifyFlags) => {
      if (source !== undefined && source !== '-') throw new CbrError('INVALID_ARGUMENT', `unexpected argument ${JSON.stringify(source)} (use - for stdin)`);
      const token = await tokenFrom(o, source);
      const config = configFromFlags(o);
      const gate = new TokenGate({ config });
      try {
        const identity = await gate.identify(token);
        for (const role of o.role ?? []) requireAnyRole(identity, [role], `--role ${role}`);
        process.stdout.write(`${JSON.stringify(identity, null, 2)}\n`);
      } catch (err) {
        if (err instanceof AuthError) throw new CbrError(err.code, `${err.code}: ${err.message}`, { cause: err });
        throw err;
      } finally {
        gate.keys.stop();
      }
    });

  withAdminOptions(auth.command('status').description("show the running agent's issuer, signing-key cache and token cache (GET /v1/auth)"))
    .option('--refresh', 'refetch the JWKS first (POST /v1/auth/refresh)')
    .action(async (opts: { refresh?: boolean }) => {
      const client = adminClientFromOptions(opts as Parameters<typeof adminClientFromOptions>[0]);
      if (opts.refresh) await client.post('/v1/auth/refresh');
      process.stdout.write(`${JSON.stringify(await client.get('/v1/auth'), null, 2)}\n`);
    });

  auth
    .command('token')
    .description("get an access token with client_credentials (a Zitadel service user's client ID and secret); prints it")
    .requiredOption('--issuer <url>', 'issuer URL (its discovery document names the token endpoint)')
    .requiredOption('--client-id <id>', 'client ID')
    .option('--client-secret <secret>', 'client secret (or CBR_CLIENT_SECRET)')
    .option('--project-id <id>', 'ask for this project in aud and for its roles (Zitadel scopes)')
    .action(async (o: { issuer: string; clientId: string; clientSecret?: string; projectId?: string }) => {
      const secret = o.clientSecret ?? process.env.CBR_CLIENT_SECRET;
      if (!secret) throw new CbrError('INVALID_ARGUMENT', '--client-secret: required (or set CBR_CLIENT_SECRET)');
      const doc = await discover(o.issuer, 10_000);
      if (!doc.token_endpoint) throw new CbrError('UPSTREAM_FAILED', `${o.issuer}: the discovery document has no token_endpoint`);
      const scope = ['openid', 'urn:zitadel:iam:org:project:roles', ...(o.projectId ? [`urn:zitadel:iam:org:project:id:${o.projectId}:aud`] : [])].join(' ');
      let answer: unknown;
      try {
        answer = await fetchJson(doc.token_endpoint, 10_000, {
          method: 'POST',
          headers: {
            'content-type': 'application/x-www-form-urlencoded',
            authorization: `Basic ${Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(secret)}`).toString('base64')}`,
          },
          body: new URLSearchParams({ grant_type: 'client_credentials', scope }),
        });
      } catch (err) {
        // 400/401 from a token endpoint: the client credentials were refused (RFC 6749 §5.2)
        const refused = err instanceof HttpStatusError && (err.status === 400 || err.status === 401);
        throw new CbrError(refused ? 'UNAUTHENTICATED' : 'UPSTREAM_FAILED', `token request failed: ${errorMessage(err)}`, { cause: err });
      }
      const at = (answer as { access_token?: unknown } | null)?.access_token;
      if (typeof at !== 'string') throw new CbrError('UPSTREAM_FAILED', 'token endpoint answered without an access_token');
      process.stdout.write(`${at}\n`);
    });

  program
    .command('dev-issuer')
    .description('run a local Zitadel-compatible OpenID issuer for development and tests (keys in memory; not for production). SIGHUP rotates the signing key')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:0')
    .option('--project-id <id>', 'Zitadel project ID (aud and project role claim)')
    .option('--issuer <url>', 'iss value (default http://<listen>)')
    .option(
      '--config <file>',
      'YAML/JSON: serviceUsers [{clientId, clientSecret, roles, subject?, org?, opaque?}], apps [{clientId, keyFile}], orgId, tokenLifetime',
    )
    .action(async (o: { listen: string; projectId?: string; issuer?: string; config?: string }) => {
      const file = o.config ? loadDevIssuerConfig(o.config) : undefined;
      const projectId = o.projectId ?? file?.projectId;
      if (!projectId) throw new CbrError('INVALID_ARGUMENT', '--project-id: required (or projectId in --config)');
      const opts: DevIssuerOptions = { listen: o.listen, projectId };
      const issuer = o.issuer ?? file?.issuer;
      if (issuer) opts.issuer = issuer;
      if (file?.orgId) opts.orgId = file.orgId;
      if (file?.orgDomain) opts.orgDomain = file.orgDomain;
      if (file?.tokenLifetime) opts.tokenLifetime = file.tokenLifetime;
      if (file?.roleClaim) opts.roleClaim = file.roleClaim;
      if (file) opts.serviceUsers = file.serviceUsers;
      if (file) opts.apps = file.apps;
      const dev = await startDevIssuer(opts);
      const line = (o: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...o })}\n`);
      line({ msg: 'dev issuer listening (development tool, not for production)', issuer: dev.url, projectId, orgId: dev.orgId, kid: dev.currentKid() });
      process.on('SIGHUP', () => line({ msg: 'signing key rotated', kid: dev.rotate() }));
      await new Promise<void>((resolve) => {
        process.once('SIGTERM', resolve);
        process.once('SIGINT', resolve);
      });
      await dev.close();
      line({ msg: 'dev issuer stopped' });
    });
}
