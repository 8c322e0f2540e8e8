// The allow-list entries the subsystem adds by itself (xdp.allow.auto): the BGP peers, so a flood
// spoofed in a peer's name cannot drain its bucket and drop its keepalives (the hold timer would
// withdraw the PoP), and the network the admin listener is on. Read from the whole agent config: xdp
// does not import bgp, it reads the `bgp` section's peer addresses by shape.
import type { NetworkInterfaceInfo } from 'node:os';
import { isLoopback, splitHostPort, type CbrConfig } from '../dataplane/index.js';
import { parseAddress, parsePrefix, formatIp, type ParsedPrefix } from '../dataplane/index.js';

export interface AutoAllowEntry {
  prefix: ParsedPrefix;
  /** Where it came from, e.g. `bgp.peers[0].address`. */
  from: string;
}

/** The parts of another section read here, by shape. */
interface BgpPeersShape {
  bgp?: { enabled?: boolean; peers?: Array<{ address?: unknown }> };
}

function sameAddress(a: string, canonical: string): boolean {
  try {
    const x = parseAddress(a);
    return formatIp(x.addr) === canonical;
  } catch {
    return false; // an address Node reports that we do not parse (a zone): not the listener's
  }
}

/**
 * The automatic always-pass prefixes for a config, given the host's interfaces (os.networkInterfaces()).
 * Empty when xdp.allow.auto is off.
 */
export function autoAllowEntries(config: CbrConfig, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): AutoAllowEntry[] {
  if (!config.xdp.allow.auto) return [];
  const out: AutoAllowEntry[] = [];
  const bgp = (config as CbrConfig & BgpPeersShape).bgp;
  if (bgp?.enabled)
    (bgp.peers ?? []).forEach((peer, i) => {
      if (typeof peer.address !== 'string') return;
      out.push({ prefix: parsePrefix(peer.address), from: `bgp.peers[${i}].address` }); // a bare address: its /32 or /128
    });
  const admin = config.admin.enabled ? splitHostPort(config.admin.listen) : undefined;
  if (admin && !isLoopback(admin.host)) {
    let host: string | undefined;
    try {
      const a = parseAddress(admin.host);
      if (!a.addr.every((b) => b === 0)) host = formatIp(a.addr); // a wildcard names no network
    } catch {
      host = undefined; // a host name: the listener's network cannot be told from it
    }
    for (const addrs of Object.values(interfaces))
      for (const ni of addrs ?? [])
        if (host !== undefined && ni.cidr && sameAddress(ni.address, host)) out.push({ prefix: parsePrefix(ni.cidr), from: `admin.listen (${ni.cidr})` }); // parsePrefix clears the host bits
  }
  return out;
}
