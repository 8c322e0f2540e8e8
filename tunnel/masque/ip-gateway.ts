// The PoP side of connect-ip: one TUN device for all sessions, addresses from the pools, packets
// from clients checked (source = assigned address, size ≤ MTU, TTL) and written into the kernel,
// packets from the kernel routed to the session owning the destination. Forwarding and NAT
// (nft masquerade of the pools) are set up here and removed on close.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { AddressPool, TunDevice, addressBytes, firstHost, formatIp, parsePrefix } from '../../dataplane/index.js';
import { addresses, decrementTtl, packetTooBig, timeExceeded, ipVersion } from './ip-packet.js';
import { TargetPolicy } from './policy.js';

const execFileAsync = promisify(execFile);

export interface IpSessionSink {
  /** Sends one IP packet to the client (as an HTTP Datagram); false when it was dropped. */
  deliver(pkt: Uint8Array): boolean;
}

export interface IpLease {
  v4: string;
  v6: string;
  /** The same addresses as bytes (the per-packet source check compares these). */
  v4Bytes: Uint8Array;
  v6Bytes: Uint8Array;
  release(): void;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Policy verdicts per destination, so the string-based policy runs once per destination, not per packet. */
const POLICY_CACHE_MAX = 4096;

export type IpDropReason = 'malformed' | 'spoofed-source' | 'too-big' | 'ttl-expired' | 'policy' | 'no-session' | 'tun-write' | 'client-queue';

export interface IpGatewayOptions {
  tunName: string;
  mtu: number;
  poolV4: string;
  poolV6: string;
  nat: boolean;
  allowPrivate: boolean;
  /** Run the iproute2/nft/sysctl commands in this namespace (tests); the TUN is moved there. */
  netns?: string;
}

function key(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

export class IpGateway {
  readonly drops: Record<IpDropReason, number> = {
    malformed: 0,
    'spoofed-source': 0,
    'too-big': 0,
    'ttl-expired': 0,
    policy: 0,
    'no-session': 0,
    'tun-write': 0,
    'client-queue': 0,
  };
  readonly counters = { packetsIn: 0, packetsOut: 0, bytesIn: 0, bytesOut: 0 };
  private readonly sessions = new Map<string, IpSessionSink>();
  private readonly gw4: Uint8Array;
  private readonly gw6: Uint8Array;
  private readonly policy: TargetPolicy;
  private readonly nftTable: string;
  private readonly policyCache = new Map<string, boolean>();

  private constructor(
    readonly opts: IpGatewayOptions,
    readonly tun: TunDevice,
    readonly pool: AddressPool,
  ) {
    this.gw4 = addressBytes(firstHost(opts.poolV4));
    this.gw6 = addressBytes(firstHost(opts.poolV6));
    this.policy = new TargetPolicy({ allowPrefixes: ['0.0.0.0/0', '::/0'], allowPrivate: opts.allowPrivate });
    this.nftTable = `cbr_masque_${opts.tunName.replace(/[^a-zA-Z0-9_]/g, '_')}`;
    tun.onPackets((pkts) => {
      for (const p of pkts) this.fromKernel(p);
    });
  }

  static async create(opts: IpGatewayOptions): Promise<IpGateway> {
    // The first host address of each prefix is the PoP's own end of the tunnel.
    const gw4 = firstHost(opts.poolV4);
    const gw6 = firstHost(opts.poolV6);
    const pool = new AddressPool([opts.poolV4, opts.poolV6], [gw4, gw6]);
    const tun = TunDevice.open({ name: opts.tunName, mtu: opts.mtu });
    try {
      if (opts.netns) await tun.moveToNetns(opts.netns);
      await tun.configure({ addresses: [`${gw4}/${parsePrefix(opts.poolV4).length}`, `${gw6}/${parsePrefix(opts.poolV6).length}`] });
      const gw = new IpGateway(opts, tun, pool);
      await gw.setupForwarding();
      return gw;
    } catch (err) {
      await tun.close();
      throw err;
    }
  }

  private run(argv: string[], input?: string): Promise<unknown> {
    const full = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, ...argv] : argv;
    const p = execFileAsync(full[0]!, full.slice(1), { timeout: 10_000 });
    if (input !== undefined) p.child.stdin!.end(input);
    return p;
  }

  private async setupForwarding(): Promise<void> {
    await this.run(['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    await this.run(['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
    if (!this.opts.nat) return;
    const t = this.opts.tunName;
    await this.run(
      ['nft', '-f', '-'],
      [
        `table inet ${this.nftTable} {`,
        '  chain postrouting {',
        '    type nat hook postrouting priority srcnat; policy accept;',
        `    ip saddr ${this.opts.poolV4} oifname != "${t}" masquerade`,
        `    ip6 saddr ${this.opts.poolV6} oifname != "${t}" masquerade`,
        '  }',
        '}',
        '',
      ].join('\n'),
    );
  }

  /** Assigns one IPv4 and one IPv6 address to a session; packets to them go to `sink`. */
  attach(sink: IpSessionSink): IpLease {
    const v4 = this.pool.acquire(4);
    let v6: string;
    try {
      v6 = this.pool.acquire(6);
    } catch (err) {
      this.pool.release(v4);
      throw err;
    }
    const v4Bytes = addressBytes(v4);
    const v6Bytes = addressBytes(v6);
    const k4 = key(v4Bytes);
    const k6 = key(v6Bytes);
    this.sessions.set(k4, sink);
    this.sessions.set(k6, sink);
    let released = false;
    return {
      v4,
      v6,
      v4Bytes,
      v6Bytes,
      release: () => {
        if (released) return;
        released = true;
        this.sessions.delete(k4);
        this.sessions.delete(k6);
        this.pool.release(v4);
        this.pool.release(v6);
      },
    };
  }

  get sessionCount(): number {
    return this.sessions.size / 2;
  }

  /** A packet a client sent through its tunnel. ICMP errors go back to the same client. */
  fromClient(lease: IpLease, sink: IpSessionSink, pkt: Uint8Array, ipproto?: number): IpDropReason | undefined {
    const a = addresses(pkt);
    if (!a) return this.drop('malformed');
    const v = ipVersion(pkt)!;
    const total = v === 4 ? (pkt[2]! << 8) | pkt[3]! : 40 + ((pkt[4]! << 8) | pkt[5]!);
    if (total !== pkt.length) return this.drop('malformed');
    if (!sameBytes(a.src, v === 4 ? lease.v4Bytes : lease.v6Bytes)) return this.drop('spoofed-source');
    if (ipproto !== undefined && a.proto !== ipproto) return this.drop('policy');
    if (!this.allowed(a.dst)) return this.drop('policy');
    if (pkt.length > this.opts.mtu) {
      const icmp = packetTooBig(pkt, this.opts.mtu, v === 4 ? this.gw4 : this.gw6);
      if (icmp) sink.deliver(icmp);
      return this.drop('too-big');
    }
    if (decrementTtl(pkt) === 'ttl-expired') {
      const icmp = timeExceeded(pkt, v === 4 ? this.gw4 : this.gw6);
      if (icmp) sink.deliver(icmp);
      return this.drop('ttl-expired');
    }
    if (!this.tun.write(pkt)) return this.drop('tun-write');
    this.counters.packetsIn++;
    this.counters.bytesIn += pkt.length;
    return undefined;
  }

  private fromKernel(pkt: Buffer): void {
    const a = addresses(pkt);
    if (!a) return void this.drop('malformed');
    const sink = this.sessions.get(key(a.dst));
    if (!sink) return void this.drop('no-session');
    const v = ipVersion(pkt)!;
    if (pkt.length > this.opts.mtu) {
      const icmp = packetTooBig(pkt, this.opts.mtu, v === 4 ? this.gw4 : this.gw6);
      if (icmp) this.tun.write(icmp);
      return void this.drop('too-big');
    }
    if (decrementTtl(pkt) === 'ttl-expired') {
      const icmp = timeExceeded(pkt, v === 4 ? this.gw4 : this.gw6);
      if (icmp) this.tun.write(icmp);
      return void this.drop('ttl-expired');
    }
    if (!sink.deliver(pkt)) return void this.drop('client-queue');
    this.counters.packetsOut++;
    this.counters.bytesOut += pkt.length;
  }

  private allowed(dst: Uint8Array): boolean {
    const k = key(dst);
    let ok = this.policyCache.get(k);
    if (ok === undefined) {
      ok = this.policy.check(formatIp(dst)) === undefined;
      if (this.policyCache.size >= POLICY_CACHE_MAX) this.policyCache.clear();
      this.policyCache.set(k, ok);
    }
    return ok;
  }

  private drop(r: IpDropReason): IpDropReason {
    this.drops[r]++;
    return r;
  }

  async close(): Promise<void> {
    if (this.opts.nat) await this.run(['nft', 'delete', 'table', 'inet', this.nftTable]).catch(() => {});
    await this.tun.close();
  }
}
