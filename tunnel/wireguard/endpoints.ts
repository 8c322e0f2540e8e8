// The peers' last endpoints, recorded in the registry (not its change log) every few seconds from the
// devices' state, so that a restarted wireguard-go (which knows no endpoints and no sessions) can be
// told where each active peer is and initiate the handshake itself: a stock client then needs no
// rekey timer to come back. Written to the local copy (serves during a database outage and across an
// agent restart) and to the fleet's database (for other PoPs).
import { errorMessage, type Logger } from '../../dataplane/index.js';
import type { EndpointRecord, RegistryService } from '../../registry/index.js';
import type { DevicePeer } from './device.js';
import type { RegisteredInterface } from './registrar.js';
import { periodic, type Periodic } from './periodic.js';

/** How often the devices' endpoints are read and recorded. */
export const ENDPOINT_RECORD_MS = 2_000;
/** A session older than this (WireGuard's REJECT_AFTER_TIME, 180 s) is over: its endpoint is not worth a handshake. */
export const ACTIVE_PEER_MS = 180_000;

export class EndpointRecorder {
  private task?: Periodic;
  /** What each store last accepted per peer (`endpoint@at`), so unchanged endpoints are not rewritten. */
  private readonly written = { local: new Map<string, string>(), primary: new Map<string, string>() };

  constructor(
    private readonly registry: RegistryService,
    private readonly interfaces: Map<string, RegisteredInterface>,
    private readonly pop: string,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.task = periodic(
      ENDPOINT_RECORD_MS,
      () => this.recordOnce(),
      (err) => this.log.warn({ err: errorMessage(err) }, 'recording WireGuard endpoints failed; retrying'),
    );
  }

  async stop(): Promise<void> {
    await this.task?.stop();
  }

  /** Reads every device and records the endpoints of its active peers that changed. */
  async recordOnce(): Promise<void> {
    const records: EndpointRecord[] = [];
    const now = this.now();
    for (const i of this.interfaces.values()) {
      if (!i.device.ready) continue;
      const state = await i.device.get().catch(() => undefined);
      for (const p of state?.peers ?? []) {
        const at = p.lastHandshakeTimeSec * 1000;
        if (p.endpoint === undefined || at === 0 || now - at > ACTIVE_PEER_MS) continue;
        records.push({ publicKey: p.publicKey, endpoint: p.endpoint, at, pop: this.pop });
      }
    }
    await this.write('local', records);
    if (this.registry.primary !== this.registry.local) {
      await this.write('primary', records).catch((err) =>
        this.log.debug({ err: errorMessage(err) }, 'registry database away: endpoints kept in the local copy only'),
      );
    }
  }

  private async write(where: 'local' | 'primary', records: EndpointRecord[]): Promise<void> {
    const seen = this.written[where];
    const fresh = records.filter((r) => seen.get(r.publicKey) !== `${r.endpoint}@${r.at}`);
    if (fresh.length === 0) return;
    await this.registry[where].recordEndpoints(fresh);
    for (const r of fresh) seen.set(r.publicKey, `${r.endpoint}@${r.at}`);
    // Forget peers no longer active, so the maps stay as small as the active set.
    const active = new Set(records.map((r) => r.publicKey));
    for (const k of seen.keys()) if (!active.has(k)) seen.delete(k);
  }

  /** `peers` with the endpoint each active one was last heard from (for a device (re)configure). */
  async withEndpoints(iface: string, peers: Promise<DevicePeer[]>): Promise<DevicePeer[]> {
    const list = await peers;
    let records: EndpointRecord[];
    try {
      records = await this.registry.local.endpoints(iface);
    } catch (err) {
      this.log.warn({ err: errorMessage(err), interface: iface }, 'reading the last endpoints failed; peers wait for their clients');
      return list;
    }
    const since = this.now() - ACTIVE_PEER_MS;
    const recent = new Map(records.filter((r) => r.at >= since).map((r) => [r.publicKey, r.endpoint]));
    return list.map((p) => {
      const endpoint = recent.get(p.publicKey);
      return endpoint === undefined ? p : { ...p, endpoint };
    });
  }
}
