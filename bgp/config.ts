// The `bgp` section: the supervised BIRD speaker and the anycast prefixes it announces.
import { z } from 'zod';
import { IPv4, IPv6, IPv4CidrRange, IPv6CidrRange } from 'ip-num';
import { enabledFlag, duration, ipAddress, prefix, isIPv4, isIPv6 } from '../dataplane/index.js';

const asn = () =>
  z
    .number({ error: (iss) => `expected an AS number 1-4294967295, got ${JSON.stringify(iss.input)}` })
    .int()
    .min(1, { error: 'expected an AS number 1-4294967295' })
    .max(4294967295, { error: 'expected an AS number 1-4294967295' });

/** A duration BIRD takes in whole seconds (hold, keepalive, connect timers). */
const wholeSeconds = (dflt: string) =>
  duration()
    .prefault(dflt)
    .refine((ms) => ms % 1000 === 0, { error: 'expected whole seconds, e.g. "3s"' });

/** True when the prefix's address has no bits set past its length (BIRD refuses such static routes). */
export function isNetworkAddress(p: string): boolean {
  const [addr, len] = p.split('/') as [string, string];
  try {
    if (isIPv4(addr)) return IPv4CidrRange.fromCidr(p).getFirst().getValue() === IPv4.fromString(addr).getValue();
    if (isIPv6(addr)) return IPv6CidrRange.fromCidr(`${addr}/${len}`).getFirst().getValue() === IPv6.fromString(addr).getValue();
  } catch {
    return false;
  }
  return false;
}

const peerSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z][a-z0-9_]{0,30}$/, { error: 'expected a peer name of a-z, 0-9 and _ starting with a letter (at most 31)' })
    .describe('short name of the session, used in BIRD (protocol peer_<name>), metrics and status'),
  address: ipAddress().describe("the upstream router's address; the session carries the anycast prefixes of this address family"),
  remoteAs: asn().describe("the upstream's AS number"),
  sourceAddress: ipAddress().optional().describe('local address of the session (default: chosen by the kernel)'),
  multihop: z.number().int().min(1).max(255).optional().describe('TTL for a multihop eBGP session (default: directly connected)'),
  passwordFile: z.string().min(1).optional().describe('file holding the TCP-MD5 session password (first line; no double quote)'),
  bfd: z.boolean().default(false).describe('run BFD on this session so a dead link takes it down in well under a second'),
});

export const bgpConfigSchema = z
  .strictObject({
    enabled: enabledFlag(),
    routerId: z
      .string()
      .refine(isIPv4, { error: (iss) => `expected an IPv4 address as router id, got ${JSON.stringify(iss.input)}` })
      .optional()
      .describe('BGP router id (required when enabled)'),
    localAs: asn().optional().describe("this PoP's AS number (required when enabled)"),
    prefixes: z
      .array(prefix().refine(isNetworkAddress, { error: 'expected a network address (no host bits set past the prefix length)' }))
      .default([])
      .describe('anycast prefixes announced while healthy, IPv4 and IPv6 (at least one when enabled)'),
    peers: z.array(peerSchema).default([]).describe('upstream BGP sessions (at least one when enabled)'),
    timers: z
      .strictObject({
        hold: wholeSeconds('9s').describe('BGP hold time (0 or at least 3s); a dead peer is noticed after this'),
        keepalive: wholeSeconds('3s').describe('BGP keepalive interval (less than hold)'),
        connectRetry: wholeSeconds('5s').describe('time between connection attempts to a peer'),
        connectDelay: wholeSeconds('1s').describe('delay before the first connection attempt after BIRD starts'),
      })
      .prefault({}),
    bfd: z
      .strictObject({
        interval: duration().prefault('100ms').describe('BFD transmit and receive interval for sessions with bfd: true'),
        multiplier: z.number().int().min(1).max(255).default(3).describe('missed BFD packets before the session is declared down'),
      })
      .prefault({}),
    drain: z
      .strictObject({
        wait: duration()
          .prefault('15s')
          .describe('time prefixes stay announced with GRACEFUL_SHUTDOWN (65535:0) before the withdrawal; keep it below lifecycle.shutdownTimeout'),
        prepend: z.number().int().min(0).max(8).default(0).describe('extra prepends of the local AS while draining'),
        file: z.string().min(1).optional().describe('while this file exists the PoP drains (maintenance switch for tools without API access)'),
      })
      .prefault({}),
    sessionCheck: z
      .strictObject({
        require: z
          .enum(['any', 'all', 'none'])
          .default('any')
          .describe('health check bgp.sessions: at least one (any) or every (all) session Established; none registers no check'),
        interval: duration().prefault('1s').describe('time between runs of the session check'),
        rise: z.number().int().min(1).default(1).describe('consecutive passes before the check counts as up'),
        fall: z.number().int().min(1).default(3).describe('consecutive failures before the check counts as down'),
      })
      .prefault({}),
    bird: z
      .strictObject({
        binary: z.string().min(1).default('bird').describe('the BIRD 2 daemon'),
        statusInterval: duration().prefault('2s').describe('how often session states and exported prefixes are read for status and metrics'),
      })
      .prefault({}),
  })
  .superRefine((c, ctx) => {
    if (!c.enabled) return;
    if (c.routerId === undefined) ctx.addIssue({ code: 'custom', path: ['routerId'], message: 'required when bgp is enabled' });
    if (c.localAs === undefined) ctx.addIssue({ code: 'custom', path: ['localAs'], message: 'required when bgp is enabled' });
    if (c.prefixes.length === 0) ctx.addIssue({ code: 'custom', path: ['prefixes'], message: 'expected at least one anycast prefix when bgp is enabled' });
    if (c.peers.length === 0) ctx.addIssue({ code: 'custom', path: ['peers'], message: 'expected at least one peer when bgp is enabled' });
    const names = new Set<string>();
    c.peers.forEach((p, i) => {
      if (names.has(p.name)) ctx.addIssue({ code: 'custom', path: ['peers', i, 'name'], message: `duplicate peer name ${p.name}` });
      names.add(p.name);
      if (p.sourceAddress !== undefined && isIPv4(p.sourceAddress) !== isIPv4(p.address)) {
        ctx.addIssue({ code: 'custom', path: ['peers', i, 'sourceAddress'], message: 'expected the same address family as address' });
      }
      const family = isIPv4(p.address) ? 4 : 6;
      if (!c.prefixes.some((x) => (x.includes(':') ? 6 : 4) === family)) {
        ctx.addIssue({
          code: 'custom',
          path: ['peers', i, 'address'],
          message: `this IPv${family} session would carry nothing: no IPv${family} prefix in bgp.prefixes`,
        });
      }
    });
    const { hold, keepalive } = c.timers;
    if (hold !== 0 && hold < 3000) ctx.addIssue({ code: 'custom', path: ['timers', 'hold'], message: 'expected 0 or at least 3s' });
    if (hold !== 0 && keepalive >= hold) ctx.addIssue({ code: 'custom', path: ['timers', 'keepalive'], message: 'expected less than timers.hold' });
    if (c.bfd.interval < 1) ctx.addIssue({ code: 'custom', path: ['bfd', 'interval'], message: 'expected at least 1ms' });
  });

export type BgpConfig = z.output<typeof bgpConfigSchema>;
export type BgpPeerConfig = BgpConfig['peers'][number];

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    bgp: BgpConfig;
  }
}
