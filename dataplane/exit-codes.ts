// The one map from error codes to the CLI's exit statuses (after sysexits.h), so scripts can tell
// "fix the config" from "the agent is down" from "try again" without reading stderr.
import { errorCode, type ErrorCode } from './errors.js';

export const EXIT = {
  FAILURE: 1,
  /** `cbr xdp status` without an agent: the program is attached but nothing controls it. */
  UNCONTROLLED: 3,
  USAGE: 64, // EX_USAGE: a bad argument
  DATA: 65, // EX_DATAERR: input that does not parse (a token, a key, a record)
  NO_INPUT: 66, // EX_NOINPUT: what was named does not exist
  UNAVAILABLE: 69, // EX_UNAVAILABLE: the agent or a service it needs is not reachable
  OS: 71, // EX_OSERR: a syscall, TUN, BPF or child process failed
  TEMPFAIL: 75, // EX_TEMPFAIL: try again later (rate limit, timeout, pool full)
  NO_PERM: 77, // EX_NOPERM: credentials or file permissions
  CONFIG: 78, // EX_CONFIG: the config is wrong
} as const;

const BY_CODE: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: EXIT.USAGE,
  METHOD_NOT_ALLOWED: EXIT.USAGE,
  PREFIX_INVALID: EXIT.DATA,
  CID_INVALID: EXIT.DATA,
  INVALID_TOKEN: EXIT.DATA,
  STORE_CORRUPT: EXIT.DATA,
  NOT_FOUND: EXIT.NO_INPUT,
  UNAVAILABLE: EXIT.UNAVAILABLE,
  UPSTREAM_FAILED: EXIT.UNAVAILABLE,
  ADMIN_REQUEST_FAILED: EXIT.UNAVAILABLE,
  ISSUER_UNAVAILABLE: EXIT.UNAVAILABLE,
  UAPI_FAILED: EXIT.UNAVAILABLE,
  SYSCALL_FAILED: EXIT.OS,
  TUN_FAILED: EXIT.OS,
  BPF_FAILED: EXIT.OS,
  COMMAND_FAILED: EXIT.OS,
  BIRD_COMMAND_FAILED: EXIT.OS,
  TIMEOUT: EXIT.TEMPFAIL,
  RATE_LIMITED: EXIT.TEMPFAIL,
  LIMIT_EXCEEDED: EXIT.TEMPFAIL,
  POOL_EXHAUSTED: EXIT.TEMPFAIL,
  UNAUTHENTICATED: EXIT.NO_PERM,
  FORBIDDEN: EXIT.NO_PERM,
  MISSING_ROLE: EXIT.NO_PERM,
  EXPIRED: EXIT.NO_PERM,
  NOT_YET_VALID: EXIT.NO_PERM,
  WRONG_ISSUER: EXIT.NO_PERM,
  WRONG_AUDIENCE: EXIT.NO_PERM,
  FILE_PERMISSIONS: EXIT.NO_PERM,
  CONFIG_INVALID: EXIT.CONFIG,
  TLS_MATERIAL_INVALID: EXIT.CONFIG,
};

/** Node's system errors that reach the CLI as they are (reading a file it was given). */
const BY_ERRNO: Record<string, number> = { ENOENT: EXIT.NO_INPUT, EACCES: EXIT.NO_PERM, EPERM: EXIT.NO_PERM, ECONNREFUSED: EXIT.UNAVAILABLE };

/** The exit status for an error that ends a CLI command: its code's status, else 1. */
export function exitCodeFor(err: unknown): number {
  const code = errorCode(err);
  if (code === undefined) return EXIT.FAILURE;
  return BY_CODE[code as ErrorCode] ?? BY_ERRNO[code] ?? EXIT.FAILURE;
}
