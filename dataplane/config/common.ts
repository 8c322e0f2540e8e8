// Zod building blocks shared by every subsystem's config section. Messages are written so that the
// loader can print `<field path>: <message>` and an operator knows what to type instead.
import { z } from 'zod';

const DURATION_RE = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;
const DURATION_UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "250ms", "5s", "2m", "1h" (or a bare number of milliseconds) into milliseconds. */
export function parseDurationMs(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const m = DURATION_RE.exec(value.trim());
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNIT_MS[m[2]!]!;
}

/** A duration written as "5s" / "250ms" / "2m" / "1h" or a number of milliseconds; yields milliseconds. */
export const duration = () =>
  z
    .union([z.number(), z.string()], {
      error: (iss) => `expected a duration like "5s" or "250ms", got ${JSON.stringify(iss.input)}`,
    })
    .transform((v, ctx) => {
      const ms = parseDurationMs(v);
      if (ms === undefined) {
        ctx.addIssue({ code: 'custom', message: `expected a duration like "5s" or "250ms", got ${JSON.stringify(v)}` });
        return z.NEVER;
      }
      return ms;
    });

/** Splits "host:port" / "[v6]:port"; undefined when it is not one. */
export function splitHostPort(value: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

export const hostPort = () =>
  z.string().refine((v) => splitHostPort(v) !== undefined, {
    error: (iss) => `expected host:port, got ${JSON.stringify(iss.input)}`,
  });

export const port = () =>
  z
    .number({ error: (iss) => `expected a port number 1-65535, got ${JSON.stringify(iss.input)}` })
    .int()
    .min(1, { error: (iss) => `expected a port number 1-65535, got ${JSON.stringify(iss.input)}` })
    .max(65535, { error: (iss) => `expected a port number 1-65535, got ${JSON.stringify(iss.input)}` });

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){3}$/;
export function isIPv4(v: string): boolean {
  return IPV4_RE.test(v);
}
export function isIPv6(v: string): boolean {
  // Node's own parser is the authority; net.isIPv6 is cheap.
  return /:/.test(v) && netIsIPv6(v);
}
import { isIPv6 as netIsIPv6 } from 'node:net';

/** "192.0.2.0/24" or "2001:db8::/32" with a valid length. */
export function isPrefix(v: string): boolean {
  const [addr, len, extra] = v.split('/');
  if (addr === undefined || len === undefined || extra !== undefined || !/^\d{1,3}$/.test(len)) return false;
  const n = Number(len);
  if (isIPv4(addr)) return n <= 32;
  if (isIPv6(addr)) return n <= 128;
  return false;
}

export const ipAddress = () =>
  z.string().refine((v) => isIPv4(v) || isIPv6(v), {
    error: (iss) => `expected an IPv4 or IPv6 address, got ${JSON.stringify(iss.input)}`,
  });

export const prefix = () =>
  z.string().refine(isPrefix, {
    error: (iss) => `expected an IP prefix like 192.0.2.0/24 or 2001:db8::/32, got ${JSON.stringify(iss.input)}`,
  });

/** Interface names: at most 15 bytes (IFNAMSIZ - 1), no slash or whitespace. */
export const ifname = () =>
  z.string().regex(/^[A-Za-z0-9_.:-]{1,15}$/, {
    error: (iss) => `expected a network interface name (1-15 characters), got ${JSON.stringify(iss.input)}`,
  });

/** Every subsystem section starts with this flag. */
export const enabledFlag = (dflt = false) => z.boolean().default(dflt).describe('turn this subsystem on');
