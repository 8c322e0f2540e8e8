// What a registered client gets back: its addresses, the PoP's public key and anycast endpoint, as
// JSON and as a wg-quick file. Pure: config and lease in, text out.
import type { WireguardInterfaceConfig } from './config.js';
import type { PeerRecord as Lease } from '../../registry/index.js';

export interface ClientConfig {
  publicKey: string;
  interface: string;
  addresses: { ipv4?: string; ipv6?: string };
  /** Address lines with prefix length, as wg-quick's Address takes them. */
  address: string[];
  dns: string[];
  server: { publicKey: string; endpoint: string };
  allowedIPs: string[];
  persistentKeepalive: number;
  expiresAt: string;
  /** wg-quick file; the client adds its own PrivateKey line. */
  wgQuick: string;
}

export function clientAddressLines(lease: Pick<Lease, 'ipv4' | 'ipv6'>): string[] {
  return [...(lease.ipv4 ? [`${lease.ipv4}/32`] : []), ...(lease.ipv6 ? [`${lease.ipv6}/128`] : [])];
}

export function renderWgQuick(c: Omit<ClientConfig, 'wgQuick'>): string {
  const lines = [
    `# CloudBridge WireGuard client config for ${c.publicKey}, valid until ${c.expiresAt}.`,
    '# Add the private key of that public key as "PrivateKey = ..." under [Interface].',
    '[Interface]',
    `Address = ${c.address.join(', ')}`,
  ];
  if (c.dns.length) lines.push(`DNS = ${c.dns.join(', ')}`);
  lines.push('', '[Peer]', `PublicKey = ${c.server.publicKey}`, `Endpoint = ${c.server.endpoint}`, `AllowedIPs = ${c.allowedIPs.join(', ')}`);
  if (c.persistentKeepalive > 0) lines.push(`PersistentKeepalive = ${c.persistentKeepalive}`);
  return `${lines.join('\n')}\n`;
}

export function clientConfig(lease: Lease, iface: WireguardInterfaceConfig, serverPublicKey: string): ClientConfig {
  const base = {
    publicKey: lease.publicKey,
    interface: lease.iface,
    addresses: { ...(lease.ipv4 ? { ipv4: lease.ipv4 } : {}), ...(lease.ipv6 ? { ipv6: lease.ipv6 } : {}) },
    address: clientAddressLines(lease),
    dns: iface.dns,
    server: { publicKey: serverPublicKey, endpoint: iface.endpoint },
    allowedIPs: iface.clientAllowedIPs,
    persistentKeepalive: iface.persistentKeepalive,
    expiresAt: new Date(lease.expiresAt).toISOString(),
  };
  return { ...base, wgQuick: renderWgQuick(base) };
}
