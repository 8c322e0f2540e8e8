// The `tunnel.masque` section: the HTTP/3 listener terminating connect-udp and connect-ip.
import { z } from 'zod';
import { enabledFlag, hostPort, duration, prefix, ifname, port } from '../../dataplane/index.js';

const portRange = z
  .union([port(), z.string().regex(/^\d{1,5}-\d{1,5}$/, { error: (iss) => `expected a port or a range like "1024-65535", got ${JSON.stringify(iss.input)}` })])
  .refine(
    (v) =>
      typeof v === 'number' ||
      (() => {
        const [a, b] = v.split('-').map(Number);
        return a! >= 1 && b! <= 65535 && a! <= b!;
      })(),
    {
      error: (iss) => `expected a port range within 1-65535, low-high, got ${JSON.stringify(iss.input)}`,
    },
  );

export const masqueConfigSchema = z.strictObject({
  enabled: enabledFlag(),
  listen: hostPort().default('0.0.0.0:443').describe('UDP address of the QUIC listener'),
  congestionControl: z.enum(['bbr', 'cubic', 'reno']).default('bbr').describe('QUIC congestion control; CBR_CC overrides'),
  serverId: z.number().int().min(0).max(65535).default(0).describe('server id written into every QUIC connection ID (read by the XDP load balancer)'),
  idleTimeout: duration().prefault('30s').describe('QUIC idle timeout'),
  retry: z.boolean().default(true).describe('stateless retry (address validation) before creating connection state'),
  maxSessions: z.number().int().min(1).default(100_000).describe('most QUIC connections at once'),
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
      dnsTimeout: duration().prefault('2s').describe('DNS resolution timeout for host-name targets'),
    })
    .prefault({})
    .describe('connect-udp (RFC 9298)'),
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
