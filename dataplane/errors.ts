// One error base for the whole project: every error the agent raises on purpose carries a stable
// `code` (what callers branch on, what metrics and API bodies show) and the error that caused it.
// Callers map codes, never message text: HTTP statuses here (`httpStatusFor`), HTTP/3 error codes in
// tunnel/h3/errors.ts, process exit codes in exit-codes.ts. Modelled on undici's errors.

/** Stable error codes. Add a code here, with its HTTP status below when an API can return it. */
export const ERROR_CODES = [
  // generic
  'INTERNAL',
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'METHOD_NOT_ALLOWED',
  'CONFLICT',
  'UNAVAILABLE',
  'UPSTREAM_FAILED',
  'TIMEOUT',
  'LIMIT_EXCEEDED',
  'TOO_LARGE',
  'UNAUTHENTICATED',
  'FORBIDDEN',
  // config, OS, processes
  'CONFIG_INVALID',
  'FILE_PERMISSIONS',
  'SYSCALL_FAILED',
  'TUN_FAILED',
  'COMMAND_FAILED',
  'ADMIN_REQUEST_FAILED',
  // auth (see auth/gate.ts)
  'INVALID_TOKEN',
  'EXPIRED',
  'NOT_YET_VALID',
  'WRONG_ISSUER',
  'WRONG_AUDIENCE',
  'MISSING_ROLE',
  'ISSUER_UNAVAILABLE',
  'RATE_LIMITED',
  // xdp
  'BPF_FAILED',
  'PREFIX_INVALID',
  'MAGLEV_INVALID',
  'CID_INVALID',
  'MAP_FULL',
  // tunnels
  'POOL_EXHAUSTED',
  'TARGET_REFUSED',
  'TARGET_UNRESOLVABLE',
  'TARGET_UNREACHABLE',
  'DNS_FAILED',
  'TLS_MATERIAL_INVALID',
  'TLS_CERTIFICATE_REJECTED',
  'H3_PROTOCOL',
  'MASQUE_HTTP',
  'UAPI_FAILED',
  'DEVICE_LIMIT',
  'KEY_IN_USE',
  'REGISTRATION_FAILED',
  'STORE_CORRUPT',
  // bgp
  'BIRD_PROTOCOL',
  'BIRD_COMMAND_FAILED',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class CbrError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The message of anything thrown (an Error's message, else its string form). */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The stable code of a CbrError; Node's system errors keep their own (`ENOENT`, …). */
export function errorCode(err: unknown): string | undefined {
  if (err instanceof CbrError) return err.code;
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** The one map from codes to HTTP statuses (API answers, the MASQUE CONNECT response). */
const HTTP_STATUS: Partial<Record<ErrorCode, number>> = {
  INTERNAL: 500,
  INVALID_ARGUMENT: 400,
  CONFIG_INVALID: 400,
  FILE_PERMISSIONS: 400,
  PREFIX_INVALID: 400,
  CID_INVALID: 400,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  DEVICE_LIMIT: 409,
  KEY_IN_USE: 409,
  UNAVAILABLE: 503,
  UPSTREAM_FAILED: 502,
  ISSUER_UNAVAILABLE: 503,
  POOL_EXHAUSTED: 503,
  UAPI_FAILED: 503,
  STORE_CORRUPT: 503,
  TIMEOUT: 504,
  LIMIT_EXCEEDED: 429,
  TOO_LARGE: 413,
  RATE_LIMITED: 429,
  UNAUTHENTICATED: 401,
  INVALID_TOKEN: 401,
  EXPIRED: 401,
  NOT_YET_VALID: 401,
  WRONG_ISSUER: 401,
  WRONG_AUDIENCE: 401,
  FORBIDDEN: 403,
  MISSING_ROLE: 403,
  TARGET_REFUSED: 403,
  TARGET_UNRESOLVABLE: 502,
  TARGET_UNREACHABLE: 502,
  DNS_FAILED: 502,
  MAP_FULL: 507,
};

/** HTTP status for an error: its code's status, else 500. */
export function httpStatusFor(err: unknown): number {
  const code = errorCode(err);
  return (code !== undefined && HTTP_STATUS[code as ErrorCode]) || 500;
}

/** The generic code of an HTTP status (for errors that start from a status: routes, the admin client). */
export function codeForStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'FORBIDDEN';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 409:
      return 'CONFLICT';
    case 413:
      return 'TOO_LARGE';
    case 429:
      return 'LIMIT_EXCEEDED';
    case 502:
      return 'UPSTREAM_FAILED';
    case 503:
      return 'UNAVAILABLE';
    case 504:
      return 'TIMEOUT';
    default:
      return status >= 400 && status < 500 ? 'INVALID_ARGUMENT' : 'INTERNAL';
  }
}

/** Whether a string is one of the stable codes (e.g. a code read back from an API body). */
export function isErrorCode(s: unknown): s is ErrorCode {
  return typeof s === 'string' && (ERROR_CODES as readonly string[]).includes(s);
}
