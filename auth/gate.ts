// The contract the tunnel and API front ends call: one method that turns a bearer token into an
// identity for a session kind, or throws an AuthError whose code maps to an HTTP status.
export type SessionKind = 'masque-connect-ip' | 'masque-connect-udp' | 'wireguard-register' | 'admin';

export interface Identity {
  subject: string;
  /** Zitadel organisation (urn:zitadel:iam:user:resourceowner:id), when present. */
  org?: string;
  roles: string[];
  clientId?: string;
  /** Token expiry, Unix seconds. */
  expiresAt: number;
}

export type AuthErrorCode =
  | 'INVALID_TOKEN'
  | 'EXPIRED'
  | 'NOT_YET_VALID'
  | 'WRONG_ISSUER'
  | 'WRONG_AUDIENCE'
  | 'MISSING_ROLE'
  | 'ISSUER_UNAVAILABLE'
  | 'RATE_LIMITED';

/** HTTP status each code answers with (401 / 403 / 503 / 429). */
export const AUTH_ERROR_STATUS: Record<AuthErrorCode, number> = {
  INVALID_TOKEN: 401,
  EXPIRED: 401,
  NOT_YET_VALID: 401,
  WRONG_ISSUER: 401,
  WRONG_AUDIENCE: 401,
  MISSING_ROLE: 403,
  ISSUER_UNAVAILABLE: 503,
  RATE_LIMITED: 429,
};

export class AuthError extends Error {
  readonly status: number;
  constructor(
    readonly code: AuthErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
  ) {
    super(message);
    this.name = 'AuthError';
    this.status = AUTH_ERROR_STATUS[code];
  }
}

export interface AuthGate {
  /**
   * Verifies `token` and checks that it carries the roles the policy requires for `kind`; applies the
   * per-subject and per-source rate limits (`source` is the client's address). Throws AuthError.
   */
  authorize(token: string, kind: SessionKind, source?: string): Promise<Identity>;
}

/** Name under which the auth subsystem provides its AuthGate in the agent's ServiceRegistry. */
export const AUTH_SERVICE = 'auth';
