// The auth subsystem in the agent: starts the gate from the `auth` section, provides it to the tunnels
// under AUTH_SERVICE, reports whether the signing keys are fetched and usable, and lets tokens with
// the policy's admin role use the /v1/ API.
import { AuthError, AUTH_SERVICE, type AuthGate, type Identity, type SessionKind } from './gate.js';
import type { AgentContext, CbrConfig, Subsystem, SubsystemFactory } from '../dataplane/index.js';
import { HttpError } from '../dataplane/index.js';
import { TokenGate, keyStoreIdentity } from './token-gate.js';
import { authMetrics } from './metrics.js';
import type { AuthConfig } from './config.js';

/** Maps an AuthError to the admin API's HttpError (status, Retry-After, code). */
export function authHttpError(err: AuthError): HttpError {
  const headers: Record<string, string> = {};
  if (err.status === 401) headers['www-authenticate'] = `Bearer realm="cbr", error="invalid_token"`;
  if (err.retryAfterSeconds !== undefined) headers['retry-after'] = String(err.retryAfterSeconds);
  if (err.status === 503) headers['retry-after'] ??= '5';
  return new HttpError(err.status, err.message, headers, err.code);
}

class AuthSubsystem implements Subsystem {
  private gate?: TokenGate;
  private applied?: AuthConfig;
  private removeRoutes: Array<() => void> = [];
  private unregisterHealth?: () => void;
  /** What other subsystems hold: stays the same object across reloads that replace the gate. */
  private readonly service: AuthGate = {
    authorize: async (token: string, kind: SessionKind, source?: string): Promise<Identity> => this.current().authorize(token, kind, source),
  };

  constructor(private readonly ctx: AgentContext) {}

  private current(): TokenGate {
    if (!this.gate) throw new AuthError('ISSUER_UNAVAILABLE', 'auth is not running');
    return this.gate;
  }

  private build(config: AuthConfig): TokenGate {
    const log = this.ctx.log;
    return new TokenGate({
      config,
      metrics: authMetrics(this.ctx.registry),
      onInternalError: (err) => log.error({ err }, 'token verification failed unexpectedly'),
      onJwksFetch: (result, d) => {
        if (result === 'ok') log.debug({ keys: d.keys, ms: d.durationMs }, 'JWKS fetched');
        else log.warn({ error: d.error, cachedKeys: d.keys }, 'JWKS fetch failed; cached keys stay in use until jwks.maxAge');
      },
    });
  }

  async start(): Promise<void> {
    const config = this.ctx.config.auth;
    const gate = this.build(config);
    await gate.keys.start();
    const s = gate.keys.status();
    if (s.usable) this.ctx.log.info({ keys: s.keys, jwks: s.jwksUri, issuer: config.issuer }, 'auth ready');
    else this.ctx.log.warn({ error: s.lastError, issuer: config.issuer }, 'auth started without signing keys; retrying in the background');
    this.gate = gate;
    this.applied = config;
    this.ctx.services.provide(AUTH_SERVICE, this.service);
    this.unregisterHealth = this.ctx.health.register({
      name: 'auth.jwks',
      intervalMs: 5000,
      timeoutMs: 1000,
      rise: 1,
      fall: 1,
      run: () => {
        const st = this.current().keys.status();
        if (!st.usable) throw new Error(`signing keys not usable: ${st.lastError ?? 'not fetched yet'}`);
        if (st.keys === 0) throw new Error('the JWKS holds no usable key');
      },
    });
    this.removeRoutes = [
      this.ctx.admin.route('GET', '/v1/auth', () => ({ body: this.current().status() })),
      this.ctx.admin.route('POST', '/v1/auth/refresh', async () => {
        const keys = this.current().keys;
        await keys.refresh();
        const st = keys.status();
        if (st.lastError) throw new HttpError(502, `JWKS refresh failed: ${st.lastError}`);
        return { body: st };
      }),
    ];
    this.ctx.admin.setAuthorizer(async (bearer, req) => {
      try {
        await this.service.authorize(bearer, 'admin', req.remoteAddress);
        return true;
      } catch (err) {
        // Invalid tokens fall through to the admin server's 401; outages and rate limits keep their status.
        if (err instanceof AuthError && (err.code === 'ISSUER_UNAVAILABLE' || err.code === 'RATE_LIMITED' || err.code === 'MISSING_ROLE'))
          throw authHttpError(err);
        return false;
      }
    });
  }

  checkReload(next: CbrConfig): void {
    // Builds (without starting) to surface config problems such as an unreadable key file.
    if (next.auth.enabled) this.build(next.auth).keys.stop();
  }

  async reload(next: CbrConfig): Promise<void> {
    const old = this.gate;
    if (!old || !this.applied) return;
    if (keyStoreIdentity(next.auth) === keyStoreIdentity(this.applied)) {
      old.configure(next.auth);
    } else {
      // A new issuer or key settings: a fresh key store, fetched before it takes over.
      const gate = this.build(next.auth);
      await gate.keys.start();
      this.gate = gate;
      old.keys.stop();
    }
    this.applied = next.auth;
  }

  async stop(): Promise<void> {
    this.ctx.admin.setAuthorizer(undefined);
    for (const remove of this.removeRoutes) remove();
    this.removeRoutes = [];
    this.ctx.services.withdraw(AUTH_SERVICE);
    this.unregisterHealth?.();
    this.gate?.keys.stop();
    this.gate = undefined;
  }
}

export const authSubsystemFactory: SubsystemFactory = {
  name: 'auth',
  enabled: (config) => config.auth.enabled,
  create: (ctx) => new AuthSubsystem(ctx),
};
