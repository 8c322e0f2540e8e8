// Address pools for connect-ip: one IPv4 address and one IPv6 /128 per session, handed out from
// the configured prefixes and returned when the session ends. The first address of each prefix is
// the PoP's own end of the tunnel.
import { isIP } from 'node:net';

function v4ToBig(a: string): bigint {
  return a.split('.').reduce((acc, o) => (acc << 8n) | BigInt(Number(o)), 0n);
}
function bigToV4(n: bigint): string {
  return [24n, 16n, 8n, 0n].map((s) => String((n >> s) & 255n)).join('.');
}
function v6ToBig(a: string): bigint {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g || '0', 16)), 0n);
}
function bigToV6(n: bigint): string {
  const g: string[] = [];
  for (let i = 7; i >= 0; i--) g.push(((n >> BigInt(i * 16)) & 0xffffn).toString(16));
  return g
    .join(':')
    .replace(/(^|:)0(:0)+(:|$)/, '::')
    .replace(/:{3,}/, '::');
}

export class PoolExhaustedError extends Error {
  constructor(prefix: string) {
    super(`address pool ${prefix} is exhausted`);
    this.name = 'PoolExhaustedError';
  }
}

export class AddressPool {
  readonly family: 4 | 6;
  private readonly base: bigint;
  private readonly size: bigint;
  private next = 2n;
  private readonly free: bigint[] = [];
  private readonly used = new Set<bigint>();

  constructor(readonly prefix: string) {
    const [addr, len] = prefix.split('/');
    const fam = isIP(addr ?? '');
    if (fam === 0 || len === undefined) throw new Error(`bad pool prefix ${prefix}`);
    this.family = fam as 4 | 6;
    const bits = BigInt(fam === 4 ? 32 : 128);
    const host = bits - BigInt(Number(len));
    if (host < 2n) throw new Error(`pool prefix ${prefix} is too small`);
    const a = fam === 4 ? v4ToBig(addr!) : v6ToBig(addr!);
    this.base = (a >> host) << host;
    // Skip the network address and the gateway (.1); for IPv4 also the broadcast address.
    this.size = (1n << host) - (fam === 4 ? 1n : 0n);
  }

  /** The PoP's own address in this pool (the first host address). */
  get gateway(): string {
    return this.format(this.base + 1n);
  }

  get prefixLength(): number {
    return Number(this.prefix.split('/')[1]);
  }

  private format(n: bigint): string {
    return this.family === 4 ? bigToV4(n) : bigToV6(n);
  }

  allocate(): string {
    let off = this.free.pop();
    if (off === undefined) {
      if (this.next >= this.size) throw new PoolExhaustedError(this.prefix);
      off = this.next++;
    }
    this.used.add(off);
    return this.format(this.base + off);
  }

  release(address: string): void {
    const n = (this.family === 4 ? v4ToBig(address) : v6ToBig(address)) - this.base;
    if (this.used.delete(n)) this.free.push(n);
  }

  get inUse(): number {
    return this.used.size;
  }
}
