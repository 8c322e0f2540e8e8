// The `tunnel.wireguard` section: WireGuard interfaces terminated on this PoP, the address pools
// registered clients get leases from, and the registration policy (device limit, lifetime).
import { z } from 'zod';
import { enabledFlag, duration, hostPort, ifname, ipAddress, port, prefix, isIPv4, prefixesOverlap } from '../../dataplane/index.js';

export const wireguardInterfaceSchema = z.strictObject({
  name: ifname().describe('interface name; also names the UAPI socket /var/run/wireguard/<name>.sock'),
  implementation: z
    .enum(['auto', 'kernel', 'userspace'])
    .default('auto')
    .describe('kernel WireGuard, wireguard-go (userspace), or auto: kernel when the host has it'),
  listenPort: port().default(51820).describe('UDP port WireGuard listens on'),
  privateKeyFile: z
    .string()
    .min(1)
    .optional()
    .describe('file holding the base64 private key (default <agent.stateDir>/wireguard/<name>.key; generated when missing)'),
  mtu: z.number().int().min(1280).max(9000).default(1420).describe('interface MTU'),
  address: z
    .array(
      z
        .string()
        .regex(/^[^/]+\/\d{1,3}$/, { error: 'expected an address with prefix length like 10.77.0.1/24' })
        .pipe(prefix()),
    )
    .min(1)
    .describe('addresses of the PoP on the interface, with prefix length (e.g. 10.77.0.1/24, fd00:77::1/64)'),
  pools: z.array(prefix()).min(1).describe('prefixes client addresses are leased from; a lease gets one address of each family present'),
  routes: z.array(prefix()).default([]).describe('extra prefixes routed into the interface (pools are routed automatically)'),
  endpoint: hostPort().describe('host:port clients connect to (the anycast address), put into client configs'),
  dns: z.array(ipAddress()).default([]).describe('DNS servers put into client configs'),
  clientAllowedIPs: z.array(prefix()).default(['0.0.0.0/0', '::/0']).describe('AllowedIPs put into client configs'),
  persistentKeepalive: z.number().int().min(0).max(65535).default(25).describe('PersistentKeepalive (seconds) in client configs; 0 turns it off'),
});

export const wireguardConfigSchema = z
  .strictObject({
    enabled: enabledFlag(),
    interfaces: z.array(wireguardInterfaceSchema).default([]).describe('one WireGuard interface per entry; registrations go to the first unless they name one'),
    deviceLimit: z.number().int().min(1).default(5).describe('most peers (devices) one subject may register'),
    peerLifetime: duration().optional().describe('how long a registration lasts; default: until the token expires. Registering again extends it'),
    expiryInterval: duration().prefault('10s').describe('how often expired peers are looked for and removed'),
    reconcileInterval: duration()
      .prefault('30s')
      .describe('how often each device is compared with the lease store: peers without a live lease are removed, missing ones added'),
    perPeerMetrics: z.boolean().default(false).describe('export per-peer metrics (label per public key; high cardinality)'),
  })
  .superRefine((c, ctx) => {
    if (c.enabled && c.interfaces.length === 0) {
      ctx.addIssue({ code: 'custom', path: ['interfaces'], message: 'expected at least one interface when enabled' });
    }
    const seen = new Map<string, number>();
    const ports = new Map<number, number>();
    c.interfaces.forEach((iface, i) => {
      if (seen.has(iface.name))
        ctx.addIssue({
          code: 'custom',
          path: ['interfaces', i, 'name'],
          message: `duplicate interface name ${iface.name} (also interfaces[${seen.get(iface.name)}])`,
        });
      seen.set(iface.name, i);
      if (ports.has(iface.listenPort))
        ctx.addIssue({
          code: 'custom',
          path: ['interfaces', i, 'listenPort'],
          message: `port ${iface.listenPort} is also used by interfaces[${ports.get(iface.listenPort)}]`,
        });
      ports.set(iface.listenPort, i);
      iface.pools.forEach((p, j) => {
        const len = Number(p.split('/')[1]);
        const maxLen = isIPv4(p.split('/')[0]!) ? 30 : 126;
        if (len > maxLen)
          ctx.addIssue({ code: 'custom', path: ['interfaces', i, 'pools', j], message: `pool ${p} is too small to lease from (at most /${maxLen})` });
        for (let k = 0; k < j; k++) {
          if (prefixesOverlap(p, iface.pools[k]!))
            ctx.addIssue({ code: 'custom', path: ['interfaces', i, 'pools', j], message: `pool ${p} overlaps pools[${k}] ${iface.pools[k]}` });
        }
        c.interfaces.slice(0, i).forEach((other, oi) => {
          other.pools.forEach((q) => {
            if (prefixesOverlap(p, q))
              ctx.addIssue({ code: 'custom', path: ['interfaces', i, 'pools', j], message: `pool ${p} overlaps ${q} of interfaces[${oi}]` });
          });
        });
      });
    });
  });

export type WireguardConfig = z.output<typeof wireguardConfigSchema>;
export type WireguardInterfaceConfig = z.output<typeof wireguardInterfaceSchema>;
