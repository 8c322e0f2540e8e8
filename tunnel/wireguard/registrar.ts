// Peer registration on the registry: one lease (addresses from the interface's pools) per public key,
// owned by the token's subject, written to the registry's primary (PostgreSQL for a fleet: unique
// fleet-wide by its constraints) before the peer is added to the device and before the API answers.
// Every PoP applies the registry's changes to its devices (applyChange), and its devices carry the
// peers of the registry's local copy, which keeps serving while the database is away.
import type { Identity } from '../../auth/index.js';
import type { WireguardConfig, WireguardInterfaceConfig } from './config.js';
import {
  AccessLog,
  AddressPool,
  CbrError,
  PoolExhaustedError,
  canonicalIp,
  errorCode,
  type AccessEndReason,
  type AccessSession,
  type Logger,
} from '../../dataplane/index.js';
import type { Change, PeerRecord, RegistryService } from '../../registry/index.js';
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

export function devicePeer(lease: PeerRecord): DevicePeer {
  return { publicKey: lease.publicKey, allowedIps: clientAddressLines(lease) };
}

export class PeerRegistrar {
  private readonly access: AccessLog;
  /** Access records of the peers registered by this process (one per lease, gone when it ends). */
  private readonly accessByKey = new Map<string, AccessSession>();

  constructor(
    private readonly registry: RegistryService,
    private readonly interfaces: Map<string, RegisteredInterface>,
    private readonly config: () => WireguardConfig,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.access = new AccessLog(log);
  }

  iface(name: string): RegisteredInterface | undefined {
    return this.interfaces.get(name);
  }

  /**
   * Registers (or renews) `publicKey` for the identity. Resolves with the lease and whether it is new.
   * Throws a CbrError (status and code for the API) when it cannot: UNAVAILABLE while the database is away.
   */
  async register(identity: Identity, publicKey: string, ifaceName?: string, client?: string): Promise<{ lease: PeerRecord; created: boolean }> {
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
    // Allocation and insert in one registry transaction: two registrations (on any PoP) cannot get the same address.
    const outcome = await this.registry.primary.register({
      publicKey,
      iface: iface.config.name,
      subject: identity.subject,
      now,
      expiresAt,
      deviceLimit: cfg.deviceLimit,
      allocate: async (used) => {
        const out: { ipv4?: string; ipv6?: string } = {};
        try {
          for (const fam of iface.pools.families()) {
            const a = iface.pools.allocate(fam, await used(fam));
            if (fam === 4) out.ipv4 = a;
            else out.ipv6 = a;
          }
        } catch (err) {
          if (err instanceof PoolExhaustedError)
            throw new RegistrationError('POOL_EXHAUSTED', `interface ${iface.config.name}: ${err.message}`, { cause: err });
          throw err;
        }
        return out;
      },
    });
    const lease = outcome.peer;
    try {
      // The change feed adds it too (here and on every other PoP); this PoP answers only once it is on the device.
      await iface.device.addPeer(devicePeer(lease));
    } catch (err) {
      if (outcome.created) {
        // Not on the device, so not registered: undo the lease and tell the client to retry.
        await this.registry.primary.removePeer(publicKey, 'deleted').catch(() => undefined);
        await iface.device.removePeer(publicKey).catch(() => undefined);
      }
      this.log.warn({ err, interface: iface.config.name }, 'adding a peer to the device failed');
      throw new RegistrationError('UNAVAILABLE', `interface ${iface.config.name} is not ready; retry shortly`);
    }
    this.log.info(
      { interface: lease.iface, subject: identity.subject, ipv4: lease.ipv4, ipv6: lease.ipv6, created: outcome.created, seq: outcome.seq },
      outcome.created ? 'peer registered' : 'peer renewed',
    );
    if (outcome.created) this.accessByKey.set(publicKey, this.access.start({ ...accessFields(lease), org: identity.org, client }));
    return { lease, created: outcome.created };
  }

  /** A subject's live peers: from the database, or the local copy while it is away. */
  async leasesOf(subject: string): Promise<PeerRecord[]> {
    let peers: PeerRecord[];
    try {
      peers = await this.registry.primary.peers({ subject });
    } catch (err) {
      if (errorCode(err) !== 'UNAVAILABLE') throw err;
      peers = await this.registry.local.peers({ subject });
    }
    return peers.filter((l) => l.expiresAt > this.now());
  }

  /** Every peer of the local copy (what the devices carry). */
  all(): Promise<PeerRecord[]> {
    return this.registry.local.peers();
  }

  /**
   * Removes a peer fleet-wide: when `subject` is given, that subject's own peer (deleted); otherwise an
   * operator's revocation (the key is refused from then on). Resolves false when there is none.
   */
  async revoke(publicKey: string, subject?: string): Promise<boolean> {
    const lease = await this.registry.primary.getPeer(publicKey);
    if (!lease || (subject !== undefined && lease.subject !== subject)) return false;
    const removed =
      subject === undefined
        ? await this.registry.primary.revoke(publicKey, 'revoked by an operator', this.now())
        : await this.registry.primary.removePeer(publicKey, 'deleted', subject);
    if (!removed) return false;
    await this.removeFromDevice(lease, subject === undefined ? 'revoked' : 'deleted');
    this.log.info(
      { interface: lease.iface, subject: lease.subject, reason: subject === undefined ? 'revoked by an operator' : 'deleted by its subject' },
      'peer removed',
    );
    return true;
  }

  /** Removes the peer from its device and writes its access-log end line (with the device's byte counts). */
  private async removeFromDevice(
    lease: PeerRecord,
    why: AccessEndReason,
    states = new Map<string, Promise<DeviceState | undefined>>(),
    resume = true,
  ): Promise<void> {
    const iface = this.interfaces.get(lease.iface);
    const record = this.accessByKey.get(lease.publicKey) ?? (resume ? this.access.resume(accessFields(lease), lease.createdAt) : undefined);
    this.accessByKey.delete(lease.publicKey);
    // One device read per interface for a whole sweep; without one the line has no counts but is still written.
    if (record && !states.has(lease.iface)) states.set(lease.iface, iface?.device.get().catch(() => undefined) ?? Promise.resolve(undefined));
    // Queued now, in this same turn, behind the read and ahead of anything that comes after: a
    // register of the same key that arrives while we wait for the read must not be undone by it.
    // A device that is restarting re-reads the local copy, which no longer has the peer.
    const removed = iface?.device
      .removePeer(lease.publicKey)
      .catch((err) => this.log.warn({ err, interface: lease.iface }, 'removing a peer from the device failed; it is gone from the registry'));
    if (record) {
      const peer = (await states.get(lease.iface))?.peers.find((p) => p.publicKey === lease.publicKey);
      record.end(why, peer && { fromClient: peer.rxBytes, toClient: peer.txBytes });
    }
    await removed;
  }

  /**
   * Removes every expired peer from the registry (any PoP may; the feed tells the others); resolves
   * with how many. While the database is away the devices drop expired peers anyway (livePeers).
   */
  async sweepExpired(): Promise<number> {
    let expired: PeerRecord[];
    try {
      expired = await this.registry.primary.expire(this.now());
    } catch (err) {
      if (errorCode(err) !== 'UNAVAILABLE') throw err;
      this.log.debug({ err }, 'expiry sweep: registry database away; the devices drop expired peers by themselves');
      return 0;
    }
    const states = new Map<string, Promise<DeviceState | undefined>>();
    for (const lease of expired) {
      await this.removeFromDevice(lease, 'expired', states);
      this.log.info({ interface: lease.iface, subject: lease.subject, expiredAt: new Date(lease.expiresAt).toISOString() }, 'peer expired and removed');
    }
    return expired.length;
  }

  /** Applies one change of the registry feed (made here or on another PoP) to this PoP's devices. */
  async applyChange(c: Change): Promise<void> {
    if (c.kind === 'peer.put') {
      const iface = this.interfaces.get(c.peer.iface);
      if (!iface || c.peer.expiresAt <= this.now()) return;
      await iface.device.addPeer(devicePeer(c.peer)).catch((err) => {
        // The next (re)configure or reconcile adds it from the local copy.
        this.log.warn({ err, interface: c.peer.iface }, 'adding a peer from the registry feed failed; the reconcile retries');
      });
    } else if (c.kind === 'peer.delete') {
      if (!this.interfaces.has(c.iface)) return;
      const why: AccessEndReason = c.reason;
      const record = this.accessByKey.get(c.publicKey);
      const lease = { publicKey: c.publicKey, iface: c.iface, subject: '', createdAt: 0, expiresAt: 0 };
      await this.removeFromDevice(lease, why, undefined, record !== undefined);
    }
  }

  /** The peers a (re)started device must carry: its unexpired leases in the local copy. */
  async livePeers(iface: string): Promise<DevicePeer[]> {
    const now = this.now();
    return (await this.registry.local.peers({ iface })).filter((l) => l.expiresAt > now).map(devicePeer);
  }

  /**
   * Problems a new config would cause for existing leases: an interface that disappears, or an
   * address no longer inside the interface's pools. Empty when the change orphans nothing.
   */
  async orphanProblems(next: WireguardConfig): Promise<string[]> {
    const problems: string[] = [];
    const mine = new Set(this.interfaces.keys());
    for (const [name, rows] of groupBy(
      (await this.registry.local.peers()).filter((l) => mine.has(l.iface)),
      (l) => l.iface,
    )) {
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

function accessFields(lease: PeerRecord) {
  return { kind: 'wireguard' as const, subject: lease.subject, lease: [lease.ipv4, lease.ipv6].filter((a): a is string => a !== undefined) };
}
