// JSON-lines logging through pino. Secrets never reach the log: authorization headers, tokens and
// private keys are censored wherever they appear in a logged object.
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

/** Paths censored in every log line (pino's fast-redact syntax; `*` is one level of any key). */
export const REDACT_PATHS = [
  'authorization',
  'Authorization',
  '*.authorization',
  '*.Authorization',
  'headers.authorization',
  '*.headers.authorization',
  'req.headers.authorization',
  'token',
  '*.token',
  'accessToken',
  '*.accessToken',
  'access_token',
  '*.access_token',
  'idToken',
  '*.idToken',
  'refreshToken',
  '*.refreshToken',
  'apiToken',
  '*.apiToken',
  'privateKey',
  '*.privateKey',
  'private_key',
  '*.private_key',
  'clientSecret',
  '*.clientSecret',
  'client_secret',
  '*.client_secret',
  'password',
  '*.password',
  'secret',
  '*.secret',
  'key',
  '*.key',
];

const SECRET_KEYS = new Set(REDACT_PATHS.map((p) => p.split('.').at(-1)!));

/** A deep copy with every value under a secret-named key (the leaves of REDACT_PATHS) censored. */
export function redactSecrets<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => redactSecrets(v)) as T;
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, SECRET_KEYS.has(k) && v !== undefined ? '[Redacted]' : redactSecrets(v)])) as T;
}

// A bearer token or a JWT can also hide inside a free-text message or an error string.
const JWT_RE = /\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*/g;
const BEARER_RE = /(Bearer\s+)[^\s"']+/gi;
export function scrubSecrets(text: string): string {
  return text.replace(JWT_RE, '[Redacted JWT]').replace(BEARER_RE, '$1[Redacted]');
}

export function createLogger(level: string, destination?: DestinationStream, base: Record<string, unknown> = {}): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid, ...base },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[Redacted]' },
      formatters: { level: (label) => ({ level: label }) },
      hooks: {
        logMethod(args, method) {
          // Messages and string arguments go through the scrubber; objects are handled by `redact`.
          const scrubbed = args.map((a) => (typeof a === 'string' ? scrubSecrets(a) : a)) as typeof args;
          method.apply(this, scrubbed);
        },
      },
      serializers: {
        err: (err: unknown) => {
          const s = pino.stdSerializers.err(err as Error);
          if (s && typeof s.message === 'string') s.message = scrubSecrets(s.message);
          if (s && typeof s.stack === 'string') s.stack = scrubSecrets(s.stack);
          return s;
        },
      },
    },
    destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
