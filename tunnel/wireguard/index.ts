// tunnel/wireguard/: supervised wireguard-go (or kernel WireGuard), UAPI codec and client, JWT-gated
// peer registration with persistent leases.
import type { Command } from 'commander';
import { withAdminOptions, adminClientFromOptions, type SubsystemFactory, type CommandRegistrar } from '../../dataplane/index.js';
import { WireguardSubsystem } from './subsystem.js';
import { isBase64Key } from './uapi.js';
export { wireguardConfigSchema, type WireguardConfig, type WireguardInterfaceConfig } from './config.js';
export { WireguardSubsystem } from './subsystem.js';

export const wireguardSubsystem: SubsystemFactory = {
  name: 'tunnel.wireguard',
  enabled: (config) => config.tunnel.wireguard.enabled,
  create: (ctx) => new WireguardSubsystem(ctx),
};

interface AdminPeer {
  publicKey: string;
  interface: string;
  subject: string;
  ipv4?: string;
  ipv6?: string;
  expiresAt: string;
  onDevice: boolean;
  latestHandshakeAgeSeconds?: number;
  rxBytes?: number;
  txBytes?: number;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return `${rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')}\n`;
}

export const registerWireguardCommands: CommandRegistrar = (program: Command) => {
  const wg = program.command('wg').description('WireGuard peers of the running agent');
  withAdminOptions(wg.command('peers').description('list registered peers with their leases and handshakes'))
    .option('--json', 'print the raw JSON')
    .action(async (opts: { admin?: string; config?: string; json?: boolean }) => {
      const out = (await adminClientFromOptions(opts).get('/v1/wireguard/admin/peers')) as { peers: AdminPeer[] };
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
        return;
      }
      const rows = [['PUBLIC KEY', 'INTERFACE', 'SUBJECT', 'IPV4', 'IPV6', 'EXPIRES', 'HANDSHAKE', 'RX', 'TX']];
      for (const p of out.peers) {
        rows.push([
          p.publicKey,
          p.interface,
          p.subject,
          p.ipv4 ?? '-',
          p.ipv6 ?? '-',
          p.expiresAt,
          p.latestHandshakeAgeSeconds !== undefined ? `${p.latestHandshakeAgeSeconds}s ago` : p.onDevice ? 'never' : 'not on device',
          String(p.rxBytes ?? '-'),
          String(p.txBytes ?? '-'),
        ]);
      }
      process.stdout.write(out.peers.length ? table(rows) : 'no peers registered\n');
    });
  withAdminOptions(wg.command('revoke').description('remove a peer and release its addresses').argument('<publicKey>', "the peer's base64 public key")).action(
    async (key: string, opts: { admin?: string; config?: string }) => {
      if (!isBase64Key(key)) throw new Error(`publicKey: expected a base64 WireGuard public key (44 characters), got ${JSON.stringify(key)}`);
      await adminClientFromOptions(opts).delete(`/v1/wireguard/admin/peers/${encodeURIComponent(key)}`);
      process.stdout.write(`revoked ${key}\n`);
    },
  );
};
