// Peer registration: one lease (addresses from the interface's pools) per public key, owned by the
// token's subject, persisted before the peer is added to the device and before the API answers.
import type { Identity } from '../../auth/index.js';
import type { WireguardConfig, WireguardInterfaceConfig } from './config.js';
import {
  AccessLog,
  AddressPool,
  CbrError,
  PoolExhaustedError,
  canonicalIp,
  ipValue,
  type AccessEndReason,
  type AccessSession,
  type IpFamily,
  type Logger,
} from '../../dataplane/index.js';
import type { LeaseStore, Lease } from './store.js';
import type { WireguardDevice, DevicePeer } from './device.js';
import type { DeviceState } from './uapi.js';
import { clientAddressLines } from './client-config.js';

/** A registration that cannot be done; the API answers httpStatusFor(err) with err.code. */
export class RegistrationError extends CbrError {}

export interface RegisteredInterface {
  config: WireguardInterfaceConfig;
  device: WireguardDevice;
  publicKey: string;
  pools: AddressPool;
}

export function poolsFor(iface: WireguardInterfaceConfig): AddressPool {
  return new AddressPool(
    iface.pools,
    iface.address.map((a) => a.split('/')[0]!),
  );
}

export function devicePeer(lease: Lease): DevicePeer {
  return { publicKey: lease.publicKey, allowedIps: clientAddressLines(lease) };
}

/**
 * Per interface and family: the addresses in use (mirrors the store; every insert and delete goes
 * through the registrar) and a low-water mark below which every address is taken, so an allocation
 * does not rescan the pool from its start.
 */
class UsedAddresses {
  private readonly used = new Map<string, Set<string>>();
  private readonly lowWater = new Map<string, bigint>();

  constructor(private readonly store: LeaseStore) {}

  private key(iface: string, fam: IpFamily): string {
    return `${iface}/${fam}`;
  }

  set(iface: string, fam: IpFamily): Set<string> {
    const k = this.key(iface, fam);
    let s = this.used.get(k);
    if (!s) {
      s = this.store.usedAddresses(iface, fam);
      this.used.set(k, s);
    }
    return s;
  }

  from(iface: string, fam: IpFamily): bigint | undefined {
    return this.lowWater.get(this.key(iface, fam));
  }

  taken(iface: string, fam: IpFamily, addr: string): void {
    this.set(iface, fam).add(addr);
    this.lowWater.set(this.key(iface, fam), ipValue(addr) + 1n);
  }

  released(lease: Lease): void {
    for (const [fam, addr] of [
      [4, lease.ipv4],
      [6, lease.ipv6],
    ] as const) {
      if (addr === undefined) continue;
      const k = this.key(lease.iface, fam);
      this.used.get(k)?.delete(addr);
      const lw = this.lowWater.get(k);
      if (lw !== undefined && ipValue(addr) < lw) this.lowWater.set(k, ipValue(addr));
    }
  }

  /** Pools changed (reload): scan from the start again. */
  resetLowWater(): void {
    this.lowWater.clear();
  }
}

export class PeerRegistrar {
  private readonly usedAddrs: UsedAddresses;
  private readonly access: AccessLog;
  /** Access records of the peers registered by this process (one per lease, gone when it ends). */
  private readonly accessByKey = new Map<string, AccessSession>();

  constructor(
    private readonly store: LeaseStore,
    private readonly interfaces: Map<string, RegisteredInterface>,
    private readonly config: () => WireguardConfig,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.usedAddrs = new UsedAddresses(store);
    this.access = new AccessLog(log);
  }

  /** Called after the pools changed (reload). */
  poolsChanged(): void {
    this.usedAddrs.resetLowWater();
  }

  iface(name: string): RegisteredInterface | undefined {
    return this.interfaces.get(name);
  }

  /**
   * Registers (or renews) `publicKey` for the identity. Resolves with the lease and whether it is new.
   * Throws RegistrationError (status and code for the API) when it cannot.
   */
  async register(identity: Identity, publicKey: string, ifaceName?: string, client?: string): Promise<{ lease: Lease; created: boolean }> {
    const cfg = this.config();
    const name = ifaceName ?? cfg.interfaces[0]?.name;
    const iface = name === undefined ? undefined : this.interfaces.get(name);
    if (!iface) throw new RegistrationError('INVALID_ARGUMENT', `interface: no WireGuard interface named ${JSON.stringify(name)}`);
    if ([...this.interfaces.values()].some((i) => i.publicKey === publicKey)) {
      throw new RegistrationError('INVALID_ARGUMENT', "publicKey: that is the PoP's own public key");
    }
    const now = this.now();
    const expiresAt = cfg.peerLifetime !== undefined ? now + cfg.peerLifetime : identity.expiresAt * 1000;
    if (expiresAt <= now) throw new RegistrationError('EXPIRED', 'the token has expired');
    // Allocation and insert in one transaction: two registrations cannot get the same address.
    const outcome = this.store.transaction(() => {
      const existing = this.store.get(publicKey);
      if (existing) {
        if (existing.subject !== identity.subject) throw new RegistrationError('KEY_IN_USE', 'publicKey: registered by another subject');
        if (existing.iface !== iface.config.name)
          throw new RegistrationError('KEY_IN_USE', `publicKey: registered on interface ${existing.iface}; delete it there first`);
        const extended = Math.max(existing.expiresAt, expiresAt);
        this.store.extend(publicKey, extended);
        return { lease: { ...existing, expiresAt: extended }, created: false };
      }
      if (this.store.countForSubject(identity.subject) >= cfg.deviceLimit) {
        throw new RegistrationError('DEVICE_LIMIT', `device limit reached: a subject may register at most ${cfg.deviceLimit} peers; delete one first`);
      }
      const lease: Lease = { publicKey, iface: iface.config.name, subject: identity.subject, createdAt: now, expiresAt };
      try {
        for (const fam of iface.pools.families()) {
          const a = iface.pools.allocate(fam, this.usedAddrs.set(iface.config.name, fam), this.usedAddrs.from(iface.config.name, fam));
          if (fam === 4) lease.ipv4 = a;
          else lease.ipv6 = a;
        }
      } catch (err) {
        if (err instanceof PoolExhaustedError) throw new RegistrationError('POOL_EXHAUSTED', `interface ${iface.config.name}: ${err.message}`, { cause: err });
        throw err;
      }
      this.store.insert(lease);
      // Only after the insert succeeded (a throw rolls the transaction back and leaves these alone).
      if (lease.ipv4) this.usedAddrs.taken(lease.iface, 4, lease.ipv4);
      if (lease.ipv6) this.usedAddrs.taken(lease.iface, 6, lease.ipv6);
      return { lease, created: true };
    });
    try {
      await iface.device.addPeer(devicePeer(outcome.lease));
    } catch (err) {
      if (outcome.created) {
        // Not on the device, so not registered: undo the lease and tell the client to retry.
        this.store.remove(publicKey);
        this.usedAddrs.released(outcome.lease);
        await iface.device.removePeer(publicKey).catch(() => undefined);
      }
      this.log.warn({ err, interface: iface.config.name }, 'adding a peer to the device failed');
      throw new RegistrationError('UNAVAILABLE', `interface ${iface.config.name} is not ready; retry shortly`);
    }
    this.log.info(
      { interface: iface.config.name, subject: identity.subject, ipv4: outcome.lease.ipv4, ipv6: outcome.lease.ipv6, created: outcome.created },
      outcome.created ? 'peer registered' : 'peer renewed',
    );
    if (outcome.created) this.accessByKey.set(publicKey, this.access.start({ ...accessFields(outcome.lease), org: identity.org, client }));
    return outcome;
  }

  leasesOf(subject: string): Lease[] {
    return this.store.forSubject(subject).filter((l) => l.expiresAt > this.now());
  }

  all(): Lease[] {
    return this.store.all();
  }

  /** Removes a peer (when `subject` is given, only that subject's). Resolves false when there is none. */
  async revoke(publicKey: string, subject?: string): Promise<boolean> {
    const lease = this.store.get(publicKey);
    if (!lease || (subject !== undefined && lease.subject !== subject)) return false;
    this.store.remove(publicKey);
    this.usedAddrs.released(lease);
    await this.removeFromDevice(lease, subject === undefined ? 'revoked' : 'deleted');
    this.log.info(
      { interface: lease.iface, subject: lease.subject, reason: subject === undefined ? 'revoked by an operator' : 'deleted by its subject' },
      'peer removed',
    );
    return true;
  }

  /** Removes the peer from its device and writes its access-log end line (with the device's byte counts). */
  private async removeFromDevice(lease: Lease, why: AccessEndReason, states = new Map<string, Promise<DeviceState | undefined>>()): Promise<void> {
    const iface = this.interfaces.get(lease.iface);
    // One device read per interface for a whole sweep; without one the line has no counts but is still written.
    if (!states.has(lease.iface)) states.set(lease.iface, iface?.device.get().catch(() => undefined) ?? Promise.resolve(undefined));
    // Queued now, in this same turn, behind the read and ahead of anything that comes after: a
    // register of the same key that arrives while we wait for the read must not be undone by it.
    // A device that is restarting re-reads the store, which no longer has the peer.
    const removed = iface?.device
      .removePeer(lease.publicKey)
      .catch((err) => this.log.warn({ err, interface: lease.iface }, 'removing a peer from the device failed; it is gone from the store'));
    const peer = (await states.get(lease.iface))?.peers.find((p) => p.publicKey === lease.publicKey);
    const record = this.accessByKey.get(lease.publicKey) ?? this.access.resume(accessFields(lease), lease.createdAt);
    this.accessByKey.delete(lease.publicKey);
    record.end(why, peer && { fromClient: peer.rxBytes, toClient: peer.txBytes });
    await removed;
  }

  /** Removes every expired peer; resolves with how many. */
  async sweepExpired(): Promise<number> {
    const expired = this.store.expired(this.now());
    const states = new Map<string, Promise<DeviceState | undefined>>();
    for (const lease of expired) {
      if (!this.store.remove(lease.publicKey)) continue;
      this.usedAddrs.released(lease);
      await this.removeFromDevice(lease, 'expired', states);
      this.log.info({ interface: lease.iface, subject: lease.subject, expiredAt: new Date(lease.expiresAt).toISOString() }, 'peer expired and removed');
    }
    return expired.length;
  }

  /** The peers a (re)started device must carry: its unexpired leases. */
  livePeers(iface: string): DevicePeer[] {
    const now = this.now();
    return this.store
      .forInterface(iface)
      .filter((l) => l.expiresAt > now)
      .map(devicePeer);
  }

  /**
   * Problems a new config would cause for existing leases: an interface that disappears, or an
   * address no longer inside the interface's pools. Empty when the change orphans nothing.
   */
  orphanProblems(next: WireguardConfig): string[] {
    const problems: string[] = [];
    for (const [name, rows] of groupBy(this.store.all(), (l) => l.iface)) {
      const idx = next.interfaces.findIndex((i) => i.name === name);
      if (idx < 0) {
        problems.push(`tunnel.wireguard.interfaces: interface ${name} would be removed but holds ${rows.length} lease(s); revoke them first`);
        continue;
      }
      const pools = poolsFor(next.interfaces[idx]!);
      const orphaned = rows.flatMap((l) => [l.ipv4, l.ipv6]).filter((a): a is string => a !== undefined && !pools.isLeasable(canonicalIp(a)));
      if (orphaned.length) {
        problems.push(
          `tunnel.wireguard.interfaces[${idx}].pools: the change would orphan ${orphaned.length} leased address(es) (e.g. ${orphaned.slice(0, 3).join(', ')}); keep a pool that contains them`,
        );
      }
    }
    return problems;
  }
}

function groupBy<T>(xs: T[], key: (x: T) => string): Map<string, T[]> {
  const m = new Map<string, T[]>();
  for (const x of xs) m.set(key(x), [...(m.get(key(x)) ?? []), x]);
  return m;
}

function accessFields(lease: Lease) {
  return { kind: 'wireguard' as const, subject: lease.subject, lease: [lease.ipv4, lease.ipv6].filter((a): a is string => a !== undefined) };
}
