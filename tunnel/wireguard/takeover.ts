// Taking over another PoP's clients: when a PoP of the fleet stops serving (it reported a withdrawal,
// or its reports stopped), anycast moves its clients to the next PoP, whose device knows their keys
// but has no session with them; a stock client would wait out its rekey timer (~15 s). So every
// serving PoP makes its devices initiate handshakes to the last endpoints that PoP recorded. Only the
// PoP on the client's anycast path can complete one (the client answers the anycast address), so
// several PoPs doing it at once is harmless.
import { errorMessage, type HealthModel, type Logger } from '../../dataplane/index.js';
import type { RegistryService } from '../../registry/index.js';
import { ACTIVE_PEER_MS } from './endpoints.js';
import type { RegisteredInterface } from './registrar.js';
import { periodic, type Periodic } from './periodic.js';

/** How often the fleet's PoP reports are read. */
export const TAKEOVER_POLL_MS = 500;
/** A PoP whose last report is older than this is gone (it reports every second). */
export const POP_SILENT_MS = 3_000;

/** After a takeover, peers without a handshake are restarted at these delays (their first answer may have gone to the old PoP). */
export const REINITIATE_AFTER_MS = [1_000, 2_500];

export class Takeover {
  private task?: Periodic;
  private readonly timers = new Set<NodeJS.Timeout>();
  /** PoPs already taken over (until they serve again). */
  private readonly taken = new Set<string>();

  constructor(
    private readonly registry: RegistryService,
    private readonly interfaces: Map<string, RegisteredInterface>,
    private readonly self: string,
    private readonly health: HealthModel,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    // Alone (embedded registry) there is nobody to take over from.
    if (this.registry.primary === this.registry.local) return;
    this.task = periodic(
      TAKEOVER_POLL_MS,
      () => this.pollOnce(),
      (err) => this.log.debug({ err: errorMessage(err) }, 'reading the fleet PoPs failed; retrying'),
    );
  }

  async stop(): Promise<void> {
    await this.task?.stop();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }

  async pollOnce(): Promise<void> {
    const snap = this.health.snapshot();
    if (snap.state !== 'up' || snap.draining) return; // not receiving anycast traffic either
    const now = this.now();
    const gone = new Set(
      (await this.registry.primary.pops()).filter((p) => p.name !== this.self && (!p.serving || now - p.seenAt > POP_SILENT_MS)).map((p) => p.name),
    );
    for (const name of this.taken) if (!gone.has(name)) this.taken.delete(name);
    const fresh = [...gone].filter((n) => !this.taken.has(n));
    if (fresh.length === 0) return;
    for (const i of this.interfaces.values()) {
      const records = (await this.registry.primary.endpoints(i.config.name)).filter((r) => fresh.includes(r.pop) && now - r.at <= ACTIVE_PEER_MS);
      if (records.length === 0) continue;
      const peers = records.map((r) => ({ publicKey: r.publicKey, endpoint: r.endpoint }));
      await i.device.initiate(peers);
      this.log.info({ interface: i.config.name, from: fresh, peers: records.length }, "took over a gone PoP's clients: initiating handshakes");
      for (const delay of REINITIATE_AFTER_MS) {
        const t = setTimeout(() => {
          this.timers.delete(t);
          i.device
            .reinitiate(peers, now)
            .then(
              (n) => n && this.log.info({ interface: i.config.name, peers: n, afterMs: delay }, 'no handshake yet with taken-over clients: initiating again'),
            )
            .catch((err) => this.log.debug({ err: errorMessage(err) }, 'initiating again failed'));
        }, delay);
        t.unref();
        this.timers.add(t);
      }
    }
    for (const n of fresh) this.taken.add(n);
  }
}
