// The `xdp` section: the filter and load balancer attached to the PoP's ingress interface.
import { z } from 'zod';
import { enabledFlag, ifname, ipAddress, prefix, port, isIPv4 } from '../dataplane/index.js';
import { isPrime } from './maglev.js';

const MAC_RE = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

const prefixList = (what: string) =>
  z.strictObject({
    prefixes: z.array(prefix()).default([]).describe(`${what} prefixes written inline`),
    files: z.array(z.string().min(1)).default([]).describe(`files with one ${what} prefix a line (# comments); re-read on reload`),
    maxEntries: z.number().int().min(1).max(16_777_216).default(65_536).describe(`LPM trie size per address family (entries); 1048576 and more are fine`),
  });

const serviceRule = z.strictObject({
  protocol: z.enum(['udp', 'tcp', 'icmp']).describe('protocol (icmp covers ICMP and ICMPv6)'),
  port: port().optional().describe('destination port (not for icmp)'),
});

const vip = z.strictObject({
  address: ipAddress().describe('virtual IP address'),
  port: port().describe('destination port'),
  protocol: z.enum(['udp', 'tcp']).default('udp').describe('protocol'),
  quic: z.boolean().default(true).describe('route QUIC short-header packets by the server ID in their connection ID (udp only)'),
});

const backend = z.strictObject({
  address: ipAddress().describe('backend host; packets reach it IPIP (IPv4) or IPv6-in-IP encapsulated'),
  weight: z.number().int().min(0).max(1000).default(1).describe('relative share of new flows (0 takes it out)'),
  serverId: z.number().int().min(0).max(65535).optional().describe('the server ID in the QUIC connection IDs this backend issues'),
});

export const xdpConfigSchema = z
  .strictObject({
    enabled: enabledFlag(),
    interface: ifname().optional().describe('ingress interface the programs attach to'),
    mode: z.enum(['native', 'generic']).default('native').describe('XDP attach mode'),
    pinRoot: z
      .string()
      .regex(/^\//, { error: 'expected an absolute path' })
      .default('/sys/fs/bpf/cbr')
      .describe('maps and the XDP link are pinned under <pinRoot>/<interface>/'),
    objectDir: z.string().optional().describe('directory with the compiled *.bpf.o (default: xdp/build of this installation)'),
    fragments: z.enum(['drop', 'pass']).default('drop').describe('IP fragments: drop, or pass (fragments skip the port policy and the load balancer)'),
    malformed: z.enum(['drop', 'pass']).default('drop').describe('malformed or truncated IP packets'),
    deny: prefixList('denied source').prefault({}).describe('source prefixes dropped'),
    allow: prefixList('allowed source')
      .extend({
        auto: z
          .boolean()
          .default(true)
          .describe(
            "also allow, automatically, the BGP peers' addresses (bgp.peers[].address) and the network of the interface admin.listen is on (unless loopback or a wildcard): put other admin networks in prefixes",
          ),
      })
      .prefault({})
      .describe('source prefixes that skip the deny list and the rate limit (always pass)'),
    rateLimit: z
      .strictObject({
        enabled: z.boolean().default(false).describe('per-source token buckets (per /32 for IPv4, per /64 for IPv6)'),
        packetsPerSecond: z.number().int().min(1).max(100_000_000).default(10_000).describe('sustained packets per second per source'),
        burst: z.number().int().min(1).max(100_000_000).default(20_000).describe('bucket depth in packets'),
        maxSources: z.number().int().min(1024).max(16_777_216).default(262_144).describe('sources tracked at once (LRU)'),
        newSources: z
          .strictObject({
            packetsPerSecond: z.number().int().min(1).max(100_000_000).default(25_000).describe('new sources admitted per second, all together'),
            burst: z.number().int().min(1).max(100_000_000).default(50_000).describe('bucket depth in packets'),
          })
          .prefault({})
          .describe(
            'one bucket shared by all sources not tracked yet: a flood from random (spoofed) sources is held to it (drop/ratelimit_new), where each would otherwise start with a full bucket of its own',
          ),
      })
      .prefault({})
      .describe('per-source rate limit'),
    services: z
      .strictObject({
        addresses: z.array(ipAddress()).default([]).describe('the PoP service (anycast) addresses the policy applies to; empty: policy off'),
        allow: z
          .array(serviceRule)
          .default([
            { protocol: 'udp', port: 443 },
            { protocol: 'udp', port: 51820 },
            { protocol: 'tcp', port: 443 },
            { protocol: 'tcp', port: 179 },
            { protocol: 'icmp' },
          ])
          .describe('what may reach those addresses'),
      })
      .prefault({})
      .describe('protocol/port policy for service addresses'),
    lb: z
      .strictObject({
        vips: z.array(vip).default([]).describe('virtual services to load balance; empty: no load balancer'),
        backends: z.array(backend).default([]).describe('backend hosts with weights'),
        ringSize: z.number().int().min(65_537).max(16_777_259).default(65_537).describe('Maglev table size (a prime)'),
        nextHopMac: z
          .string()
          .regex(MAC_RE, { error: 'expected a MAC address like 02:00:00:00:00:01' })
          .optional()
          .describe('MAC of the router encapsulated packets are sent to (XDP_TX back out the interface)'),
        encapSourceV4: ipAddress().optional().describe('outer source address for IPv4 backends'),
        encapSourceV6: ipAddress().optional().describe('outer source address for IPv6 backends'),
        cidConfigId: z.number().int().min(0).max(6).default(0).describe('QUIC CID config id this PoP routes by (the top 3 bits of the CID first byte)'),
      })
      .prefault({})
      .describe('Maglev / QUIC-CID load balancer'),
  })
  .superRefine((x, ctx) => {
    if (x.enabled && !x.interface) ctx.addIssue({ code: 'custom', path: ['interface'], message: 'required when xdp is enabled' });
    if (!isPrime(x.lb.ringSize)) ctx.addIssue({ code: 'custom', path: ['lb', 'ringSize'], message: `expected a prime, got ${x.lb.ringSize}` });
    if (x.lb.vips.length) {
      if (!x.lb.nextHopMac) ctx.addIssue({ code: 'custom', path: ['lb', 'nextHopMac'], message: 'required when lb.vips is set' });
      if (x.lb.backends.some((b) => isIPv4(b.address)) && !(x.lb.encapSourceV4 && isIPv4(x.lb.encapSourceV4)))
        ctx.addIssue({ code: 'custom', path: ['lb', 'encapSourceV4'], message: 'an IPv4 address is required for IPv4 backends' });
      if (x.lb.backends.some((b) => !isIPv4(b.address)) && !(x.lb.encapSourceV6 && !isIPv4(x.lb.encapSourceV6)))
        ctx.addIssue({ code: 'custom', path: ['lb', 'encapSourceV6'], message: 'an IPv6 address is required for IPv6 backends' });
    }
    const seenAddr = new Set<string>();
    const seenSid = new Set<number>();
    x.lb.backends.forEach((b, i) => {
      if (seenAddr.has(b.address)) ctx.addIssue({ code: 'custom', path: ['lb', 'backends', i, 'address'], message: `duplicate backend ${b.address}` });
      seenAddr.add(b.address);
      if (b.serverId !== undefined) {
        if (seenSid.has(b.serverId))
          ctx.addIssue({ code: 'custom', path: ['lb', 'backends', i, 'serverId'], message: `server ID ${b.serverId} is used twice` });
        seenSid.add(b.serverId);
      }
    });
    x.lb.vips.forEach((v, i) => {
      if (v.quic && v.protocol !== 'udp') ctx.addIssue({ code: 'custom', path: ['lb', 'vips', i, 'quic'], message: 'QUIC routing needs protocol udp' });
    });
    x.services.allow.forEach((r, i) => {
      if (r.protocol === 'icmp' && r.port !== undefined) ctx.addIssue({ code: 'custom', path: ['services', 'allow', i, 'port'], message: 'icmp has no port' });
      if (r.protocol !== 'icmp' && r.port === undefined)
        ctx.addIssue({ code: 'custom', path: ['services', 'allow', i, 'port'], message: `required for ${r.protocol}` });
    });
    if (x.rateLimit.burst < 1) ctx.addIssue({ code: 'custom', path: ['rateLimit', 'burst'], message: 'expected at least 1' });
  });

export type XdpConfig = z.infer<typeof xdpConfigSchema>;

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    xdp: XdpConfig;
  }
}
