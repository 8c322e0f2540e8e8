// Pure checks of a token's claims (JWT payload or introspection answer) and the mapping of Zitadel's
// role claims to an Identity. No I/O, no clock of its own: `nowSeconds` is passed in.
import { AuthError, type Identity } from './gate.js';

export const ZITADEL_ROLES_CLAIM = 'urn:zitadel:iam:org:project:roles';
export const ZITADEL_ORG_CLAIM = 'urn:zitadel:iam:user:resourceowner:id';
export const projectRolesClaim = (projectId: string): string => `urn:zitadel:iam:org:project:${projectId}:roles`;

export interface ClaimRules {
  issuer: string;
  /** Accepted aud values (project IDs or client IDs); the token's aud must contain one. */
  audience: readonly string[];
  clockSkewSeconds: number;
  /**
   * Also count the generic role claim. Zitadel fills it with the roles of the project of the client
   * that asked for the token, which need not be one of ours; off unless the config opts in.
   */
  trustGenericRoleClaim?: boolean;
}

type Claims = Record<string, unknown>;

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function numericDate(claims: Claims, name: string, required: boolean): number | undefined {
  const v = claims[name];
  if (v === undefined) {
    if (required) throw new AuthError('INVALID_TOKEN', `token has no ${name} claim`);
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new AuthError('INVALID_TOKEN', `${name} claim: expected a number of seconds`);
  return v;
}

/** Parses a JWT payload's bytes; anything but a JSON object is INVALID_TOKEN. */
export function parseClaimsJson(bytes: Uint8Array | string): Claims {
  let parsed: unknown;
  try {
    parsed = JSON.parse(typeof bytes === 'string' ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'));
  } catch {
    throw new AuthError('INVALID_TOKEN', 'token payload is not JSON');
  }
  if (!isPlainObject(parsed)) throw new AuthError('INVALID_TOKEN', 'token payload is not a JSON object');
  return parsed;
}

/** The role claim names per audience list (the same array object on every call), built once each. */
const roleClaimNameCache = new WeakMap<readonly string[], { scoped: readonly string[]; withGeneric: readonly string[] }>();

function roleClaimNames(projectIds: readonly string[], trustGeneric: boolean): readonly string[] {
  let names = roleClaimNameCache.get(projectIds);
  if (!names) {
    const scoped = projectIds.map(projectRolesClaim);
    names = { scoped, withGeneric: [ZITADEL_ROLES_CLAIM, ...scoped] };
    roleClaimNameCache.set(projectIds, names);
  }
  return trustGeneric ? names.withGeneric : names.scoped;
}

/**
 * Collects role names from the project-scoped claims of the project IDs in `projectIds` (roles of
 * other projects do not count) and, only when `trustGeneric`, from the generic role claim.
 * Shape: { role: { orgId: orgDomain } }.
 */
export function extractRoles(claims: Claims, projectIds: readonly string[], trustGeneric = false): string[] {
  const roles: string[] = [];
  for (const name of roleClaimNames(projectIds, trustGeneric)) {
    const claim = claims[name];
    if (claim === undefined) continue;
    if (!isPlainObject(claim)) throw new AuthError('INVALID_TOKEN', `${name}: expected an object of roles`);
    for (const role of Object.keys(claim)) {
      if (!isPlainObject(claim[role])) throw new AuthError('INVALID_TOKEN', `${name}.${role}: expected an object of organisations`);
      if (role.length > 0 && !roles.includes(role)) roles.push(role);
    }
  }
  return roles.sort();
}

function acceptsAudience(auds: readonly unknown[], accepted: readonly string[]): boolean {
  for (const a of auds) if (typeof a === 'string' && accepted.includes(a)) return true;
  return false;
}

/**
 * Checks iss, aud, exp, nbf and iat against `rules` at `nowSeconds` and builds the identity.
 * Throws AuthError naming the first failed check.
 */
export function checkClaims(claims: Claims, rules: ClaimRules, nowSeconds: number): Identity {
  const skew = rules.clockSkewSeconds;
  if (claims.iss !== rules.issuer) throw new AuthError('WRONG_ISSUER', `iss is not ${rules.issuer}`);

  const aud = claims.aud;
  const auds = typeof aud === 'string' ? [aud] : Array.isArray(aud) ? aud : undefined;
  if (auds === undefined)
    throw new AuthError(
      aud === undefined ? 'WRONG_AUDIENCE' : 'INVALID_TOKEN',
      aud === undefined ? 'token has no aud claim' : 'aud claim: expected a string or an array of strings',
    );
  if (!acceptsAudience(auds, rules.audience)) {
    throw new AuthError('WRONG_AUDIENCE', `aud contains none of the accepted audiences`);
  }

  const exp = numericDate(claims, 'exp', true)!;
  const nbf = numericDate(claims, 'nbf', false);
  const iat = numericDate(claims, 'iat', false);
  if (exp <= nowSeconds - skew) throw new AuthError('EXPIRED', `token expired at ${new Date(exp * 1000).toISOString()}`);
  if (nbf !== undefined && nbf > nowSeconds + skew) throw new AuthError('NOT_YET_VALID', `token is not valid before ${new Date(nbf * 1000).toISOString()}`);
  if (iat !== undefined && iat > nowSeconds + skew)
    throw new AuthError('NOT_YET_VALID', `token was issued in the future (${new Date(iat * 1000).toISOString()})`);

  const sub = claims.sub;
  if (typeof sub !== 'string' || sub.length === 0) throw new AuthError('INVALID_TOKEN', 'sub claim: expected a non-empty string');
  const org = claims[ZITADEL_ORG_CLAIM];
  if (org !== undefined && typeof org !== 'string') throw new AuthError('INVALID_TOKEN', `${ZITADEL_ORG_CLAIM}: expected a string`);
  const clientIdClaim = claims.client_id ?? claims.azp;
  if (clientIdClaim !== undefined && typeof clientIdClaim !== 'string') throw new AuthError('INVALID_TOKEN', 'client_id claim: expected a string');

  const identity: Identity = { subject: sub, roles: extractRoles(claims, rules.audience, rules.trustGenericRoleClaim === true), expiresAt: exp };
  if (org !== undefined) identity.org = org;
  if (clientIdClaim !== undefined) identity.clientId = clientIdClaim;
  return identity;
}

/** Throws MISSING_ROLE unless the identity holds at least one of `anyOf`. */
export function requireAnyRole(identity: Identity, anyOf: readonly string[], what: string): void {
  if (!anyOf.some((r) => identity.roles.includes(r))) {
    throw new AuthError('MISSING_ROLE', `${what} needs one of the roles ${anyOf.join(', ')}`);
  }
}
