// The `tunnel.masque` section: the HTTP/3 listener terminating connect-udp and connect-ip.
import { z } from 'zod';
import { enabledFlag, hostPort, duration, prefix, ifname } from '../../dataplane/index.js';

/** A port (53 or "53") or an inclusive range ("1024-65535"); the output is a number or "low-high". */
const portRange = z.union([z.number(), z.string()]).transform((v, ctx) => {
  const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(String(v).trim());
  const lo = m ? Number(m[1]) : Number.NaN;
  const hi = m?.[2] !== undefined ? Number(m[2]) : lo;
  if (!m || lo < 1 || hi > 65535 || lo > hi) {
    ctx.addIssue({ code: 'custom', message: `expected a port (1-65535) or a range like "1024-65535", got ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return lo === hi ? lo : `${lo}-${hi}`;
});

/** What one remote party may hold on the listener; the server uses these when no config is given (tests). */
export const DEFAULT_MASQUE_LIMITS = {
  maxConnectionsPerSource: 64,
  maxHandshakesPerSource: 16,
  maxHeaderBytesPerStream: 16 * 1024,
  maxHeaderBytesPerConnection: 256 * 1024,
  headerTimeoutMs: 10_000,
  maxQueuedBytesPerRequest: 64 * 1024,
  maxReplyBytesPerStream: 256 * 1024,
  maxUdpSessionsPerSubject: 256,
  maxIpSessionsPerSubject: 8,
  addressRequestsPerSecond: 10,
  udpSendQueuePackets: 4096,
} as const;
export type MasqueLimits = { -readonly [K in keyof typeof DEFAULT_MASQUE_LIMITS]: number };

const D = DEFAULT_MASQUE_LIMITS;
const limitsSchema = z
  .strictObject({
    maxConnectionsPerSource: z
      .number()
      .int()
      .min(1)
      .default(D.maxConnectionsPerSource)
      .describe('most QUIC connections from one source address (IPv6 by /64); further Initials are dropped'),
    maxHandshakesPerSource: z
      .number()
      .int()
      .min(1)
      .default(D.maxHandshakesPerSource)
      .describe('most QUIC handshakes in progress from one source address (IPv6 by /64); further Initials are dropped'),
    maxHeaderBytesPerStream: z
      .number()
      .int()
      .min(1024)
      .default(D.maxHeaderBytesPerStream)
      .describe('largest HEADERS frame a request may send (larger closes the connection with H3_EXCESSIVE_LOAD)'),
    maxHeaderBytesPerConnection: z
      .number()
      .int()
      .min(1024)
      .default(D.maxHeaderBytesPerConnection)
      .describe('header bytes buffered for incomplete requests on one connection (more closes it with H3_EXCESSIVE_LOAD)'),
    headerTimeout: duration().prefault('10s').describe('time a request stream has to complete its headers (then reset with H3_REQUEST_INCOMPLETE)'),
    maxQueuedBytesPerRequest: z
      .number()
      .int()
      .min(1024)
      .default(D.maxQueuedBytesPerRequest)
      .describe('bytes queued on a CONNECT stream while its token or DNS lookup is pending (more resets it with H3_EXCESSIVE_LOAD)'),
    maxReplyBytesPerStream: z
      .number()
      .int()
      .min(4096)
      .default(D.maxReplyBytesPerStream)
      .describe('bytes waiting to be sent on one stream; capsule datagrams beyond are dropped, other capsules end the session'),
    maxUdpSessionsPerSubject: z.number().int().min(1).default(D.maxUdpSessionsPerSubject).describe('open connect-udp sessions per token subject (429 beyond)'),
    maxIpSessionsPerSubject: z.number().int().min(1).default(D.maxIpSessionsPerSubject).describe('open connect-ip sessions per token subject (429 beyond)'),
    addressRequestsPerSecond: z
      .number()
      .int()
      .min(1)
      .default(D.addressRequestsPerSecond)
      .describe('ADDRESS_REQUEST capsules answered per connect-ip session and second (a burst of as many); beyond are ignored'),
    udpSendQueuePackets: z
      .number()
      .int()
      .min(64)
      .max(1_000_000)
      .default(D.udpSendQueuePackets)
      .describe('connect-udp payloads queued towards targets per event-loop turn, all sessions together (more are dropped as udp-send-queue); read at start'),
  })
  .prefault({})
  .describe('bounds on what one client or source may hold (each counted in cbr_masque_limit_exceeded_total)');

/** The config section's limits in the server's form. */
export function masqueLimits(cfg: MasqueConfig): MasqueLimits {
  const { headerTimeout, ...rest } = cfg.limits;
  return { ...rest, headerTimeoutMs: headerTimeout };
}

export const masqueConfigSchema = z.strictObject({
  enabled: enabledFlag(),
  listen: hostPort().default('0.0.0.0:443').describe('UDP address of the QUIC listener'),
  congestionControl: z.enum(['bbr', 'cubic', 'reno']).default('bbr').describe('QUIC congestion control; CBR_CC overrides'),
  serverId: z.number().int().min(0).max(65535).default(0).describe('server id written into every QUIC connection ID (read by the XDP load balancer)'),
  idleTimeout: duration().prefault('30s').describe('QUIC idle timeout'),
  retry: z.boolean().default(true).describe('stateless retry (address validation) before creating connection state'),
  maxSessions: z.number().int().min(1).default(100_000).describe('most QUIC connections at once'),
  fleetKeyFile: z
    .string()
    .optional()
    .describe(
      "secret file (mode 0600) every PoP of the fleet holds: keys, one per line (hex or base64, ≥ 32 bytes), the first signs, all verify; stateless reset and retry tokens and the TLS session-ticket key derive from it, so any PoP can reset, admit or resume another PoP's clients. Re-read on reload. Without it all three are valid only at this PoP",
    ),
  statelessResetsPerSecond: z.number().int().min(1).default(1000).describe('most stateless resets sent per second (answers to packets of unknown connections)'),
  tls: z
    .strictObject({
      certFile: z.string().optional().describe('PEM certificate chain; re-read on SIGHUP'),
      keyFile: z.string().optional().describe('PEM private key; re-read on SIGHUP'),
    })
    .prefault({})
    .describe('TLS certificate; without files a self-signed pair is generated in the state directory (demo only)'),
  udp: z
    .strictObject({
      allowPrefixes: z.array(prefix()).default(['0.0.0.0/0', '::/0']).describe('connect-udp targets must be inside one of these'),
      allowPorts: z.array(portRange).default(['1-65535']).describe('connect-udp target ports (numbers or "low-high")'),
      allowPrivate: z.boolean().default(false).describe('allow private, loopback, link-local and CGNAT targets'),
      dnsTimeout: duration().prefault('2s').describe('DNS resolution timeout for host-name targets (504 when exceeded)'),
      maxDnsLookups: z.number().int().min(1).default(64).describe('host-name lookups in flight at once (503 beyond); c-ares, not the libuv thread pool'),
    })
    .prefault({})
    .describe('connect-udp (RFC 9298)'),
  limits: limitsSchema,
  ip: z
    .strictObject({
      enabled: z.boolean().default(true).describe('serve connect-ip (needs a TUN device and nftables); off answers connect-ip with 403'),
      tun: ifname().default('cbrmasq0').describe('TUN interface that carries connect-ip packets on the PoP'),
      mtu: z.number().int().min(1280).max(9000).default(1280).describe('link MTU of the tunnel (≥ 1280; bigger packets get ICMP Packet Too Big)'),
      poolV4: prefix().default('100.64.0.0/16').describe('IPv4 addresses assigned to clients'),
      poolV6: prefix().default('fd00:cb::/64').describe('IPv6 addresses assigned to clients (one /128 each)'),
      routes: z.array(prefix()).default(['0.0.0.0/0', '::/0']).describe('routes advertised to clients (ROUTE_ADVERTISEMENT)'),
      nat: z.boolean().default(true).describe('enable forwarding and nft masquerade of the pools on egress'),
      allowPrivate: z.boolean().default(false).describe('allow connect-ip traffic to private and loopback destinations'),
    })
    .prefault({})
    .describe('connect-ip (RFC 9484)'),
});
export type MasqueConfig = z.infer<typeof masqueConfigSchema>;
