// Request paths and target policy for connect-udp (RFC 9298) and connect-ip (RFC 9484): which
// targets a client may reach through this PoP. Pure functions over strings.
import { BlockList, isIP } from 'node:net';
import { CbrError, httpStatusFor, canonicalIp, SPECIAL_PURPOSE_V4, SPECIAL_PURPOSE_V6 } from '../../dataplane/index.js';

export const UDP_PATH_PREFIX = '/.well-known/masque/udp/';
export const IP_PATH_PREFIX = '/.well-known/masque/ip/';

/** A connect-udp / connect-ip target refused or unreachable; its code decides the HTTP status (httpStatusFor). */
export class TargetError extends CbrError {
  /** The HTTP status the code maps to (400 malformed path, 403 refused, 502/503/504 for DNS). */
  get status(): number {
    return httpStatusFor(this);
  }
}

export interface UdpTarget {
  host: string;
  port: number;
}

function splitTemplate(path: string, prefix: string): [string, string] {
  const q = path.indexOf('?');
  const p = q >= 0 ? path.slice(0, q) : path;
  if (!p.startsWith(prefix)) throw new TargetError('INVALID_ARGUMENT', `path does not start with ${prefix}`);
  const parts = p.slice(prefix.length).split('/');
  // Exactly two segments followed by the trailing slash.
  if (parts.length !== 3 || parts[2] !== '' || parts[0] === '' || parts[1] === '') throw new TargetError('INVALID_ARGUMENT', `expected ${prefix}{a}/{b}/`);
  try {
    return [decodeURIComponent(parts[0]!), decodeURIComponent(parts[1]!)];
  } catch {
    throw new TargetError('INVALID_ARGUMENT', 'bad percent-encoding in path');
  }
}

const HOSTNAME_RE = /^(?=.{1,253}$)(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*\.?$/;

/** `/.well-known/masque/udp/{target_host}/{target_port}/` → host and port (host is an IP literal or a DNS name). */
export function parseUdpPath(path: string): UdpTarget {
  const [host, portText] = splitTemplate(path, UDP_PATH_PREFIX);
  if (!/^\d{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535)
    throw new TargetError('INVALID_ARGUMENT', `bad target_port ${JSON.stringify(portText)}`);
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  if (isIP(h) === 0 && !HOSTNAME_RE.test(h)) throw new TargetError('INVALID_ARGUMENT', `bad target_host ${JSON.stringify(host)}`);
  return { host: h, port: Number(portText) };
}

export interface IpTarget {
  /** undefined for `*` (anything); else an address or prefix. */
  prefix?: { address: string; length: number };
  /** undefined for `*`; else the one IP protocol number allowed. */
  ipproto?: number;
}

/** `/.well-known/masque/ip/{target}/{ipproto}/` with `*` wildcards. */
export function parseIpPath(path: string): IpTarget {
  const [target, proto] = splitTemplate(path, IP_PATH_PREFIX);
  const out: IpTarget = {};
  if (proto !== '*') {
    if (!/^\d{1,3}$/.test(proto) || Number(proto) > 255) throw new TargetError('INVALID_ARGUMENT', `bad ipproto ${JSON.stringify(proto)}`);
    out.ipproto = Number(proto);
  }
  if (target !== '*') {
    const [addr, len, extra] = target.split('/');
    const fam = isIP(addr ?? '');
    if (fam === 0 || extra !== undefined)
      throw new TargetError('INVALID_ARGUMENT', `bad target ${JSON.stringify(target)} (this server takes IP literals or prefixes)`);
    const max = fam === 4 ? 32 : 128;
    const length = len === undefined ? max : /^\d{1,3}$/.test(len) ? Number(len) : NaN;
    if (!(length >= 0 && length <= max)) throw new TargetError('INVALID_ARGUMENT', `bad prefix length in ${JSON.stringify(target)}`);
    out.prefix = { address: addr!, length };
  }
  return out;
}

function blockList(prefixes: readonly string[]): BlockList {
  const b = new BlockList();
  for (const p of prefixes) {
    const [a, l] = p.split('/');
    b.addSubnet(a!, Number(l), isIP(a!) === 6 ? 'ipv6' : 'ipv4');
  }
  return b;
}

export interface TargetPolicyOptions {
  allowPrefixes: string[];
  /** Ports and "low-high" ranges; empty = none. */
  allowPorts?: Array<number | string>;
  allowPrivate: boolean;
  /** Addresses refused whatever allowPrivate says: the PoP's own (a client must not reach its services). */
  denyAddresses?: string[];
}

/** Decides whether a resolved target address (and port) may be reached. */
export class TargetPolicy {
  private readonly allow: BlockList;
  // Without ::ffff:0:0/96: Node's BlockList applies it to every IPv4 address, and check() already
  // judges a mapped address as the IPv4 address it carries.
  private readonly priv = blockList([...SPECIAL_PURPOSE_V4, ...SPECIAL_PURPOSE_V6.filter((p) => !p.startsWith('::ffff:'))]);
  private readonly own: Set<string>;
  private readonly ports: Array<[number, number]>;

  constructor(readonly opts: TargetPolicyOptions) {
    this.own = new Set((opts.denyAddresses ?? []).filter((a) => isIP(a) !== 0).map((a) => canonicalIp(a)));
    this.allow = blockList(opts.allowPrefixes);
    this.ports = (opts.allowPorts ?? ['1-65535']).map((p) => {
      if (typeof p === 'number') return [p, p];
      const [a, b] = p.split('-').map(Number);
      return [a!, b!];
    });
  }

  /** undefined when allowed, else the reason (for the log and the 403 body). */
  check(address: string, port?: number): string | undefined {
    let fam = isIP(address);
    if (fam === 0) return `not an IP address: ${address}`;
    // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
    const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
    if (mapped) {
      address = mapped[1]!;
      fam = 4;
    }
    const type = fam === 4 ? 'ipv4' : 'ipv6';
    if (this.own.has(canonicalIp(address))) return `target ${address} is an address of this PoP`;
    if (!this.opts.allowPrivate && this.priv.check(address, type)) return `private, loopback or special-purpose target ${address} (allowPrivate is off)`;
    if (!this.allow.check(address, type)) return `target ${address} is outside the allowed prefixes`;
    if (port !== undefined && !this.ports.some(([a, b]) => port >= a && port <= b)) return `target port ${port} is not allowed`;
    return undefined;
  }
}
