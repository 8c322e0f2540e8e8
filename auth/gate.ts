// The contract the tunnel and API front ends call: one method that turns a bearer token into an
// identity for a session kind, or throws an AuthError whose code maps to an HTTP status.
import { CbrError, httpStatusFor, type ErrorCode } from '../dataplane/index.js';

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

export type AuthErrorCode = Extract<
  ErrorCode,
  'INVALID_TOKEN' | 'EXPIRED' | 'NOT_YET_VALID' | 'WRONG_ISSUER' | 'WRONG_AUDIENCE' | 'MISSING_ROLE' | 'ISSUER_UNAVAILABLE' | 'RATE_LIMITED'
>;

/** A token that does not pass, or a gate that cannot decide; its HTTP status comes from its code (httpStatusFor). */
export class AuthError extends CbrError {
  declare readonly code: AuthErrorCode;
  constructor(
    code: AuthErrorCode,
    message: string,
    readonly retryAfterSeconds?: number,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }

  /** 401 / 403 / 503 / 429, from dataplane/errors.ts's one code→status map. */
  get status(): number {
    return httpStatusFor(this);
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
