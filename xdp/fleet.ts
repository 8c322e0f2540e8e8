// The fleet deny list in this PoP's filter: the registry's deny list, written by any PoP and followed
// by every PoP's change feed into its local copy, is the deny maps' third origin (ORIGIN.fleet). The
// filter reads only the local copy (at start, and after each deny change or snapshot the feed
// applied), never the database, so a database outage or an agent restart during one keeps the list.
import { Counter, Gauge, type Registry } from 'prom-client';
import { CbrError, errorMessage, parsePrefix, type Logger, type ParsedPrefix } from '../dataplane/index.js';
import type { Change, RegistryService, Snapshot } from '../registry/index.js';

export interface FleetEntry {
  prefix: ParsedPrefix;
  addedAt: number;
  comment?: string;
}

export interface FleetDenyOptions {
  log: Logger;
  metrics: Registry;
  /** Puts the difference into the maps; resolves with how many prefixes failed. */
  apply(added: ParsedPrefix[], removed: ParsedPrefix[]): number;
}

export class FleetDeny {
  private entries = new Map<string, FleetEntry>();
  private refreshing: Promise<void> | undefined;
  private again = false;
  private closed = false;
  /** Number of the newest deny change (or snapshot) seen by the feed, and of the one in the maps. */
  private seenChange = 0;
  private appliedChange = 0;
  private readonly cleanups: Array<() => void> = [];
  private readonly errors: Counter;
  private readonly updates: Counter<'op'>;

  constructor(
    private readonly service: RegistryService | undefined,
    private readonly opts: FleetDenyOptions,
  ) {
    const self = this;
    const reg = opts.metrics;
    this.errors = new Counter({
      name: 'cbr_xdp_fleet_deny_errors_total',
      help: 'Fleet deny entries that could not be read or written to the maps (bad prefix, full map, local copy unreadable)',
      registers: [],
    });
    this.updates = new Counter({
      name: 'cbr_xdp_fleet_deny_updates_total',
      help: 'Fleet deny prefixes added to or removed from the filter maps',
      labelNames: ['op'],
      registers: [],
    });
    const metrics = [
      new Gauge({
        name: 'cbr_xdp_fleet_deny_entries',
        help: 'Prefixes of the fleet deny list (registry) this PoP applies',
        registers: [],
        collect() {
          this.set(self.entries.size);
        },
      }),
      new Gauge({
        name: 'cbr_xdp_fleet_deny_last_change',
        help: 'Registry change number the filter maps hold the fleet deny list of',
        registers: [],
        collect() {
          this.set(self.appliedChange);
        },
      }),
      this.errors,
      this.updates,
    ];
    for (const m of metrics) {
      reg.registerMetric(m as unknown as Counter<string>);
      this.cleanups.push(() => reg.removeSingleMetric((m as unknown as { name: string }).name));
    }
  }

  /** Whether the registry is there to follow (it always is in the agent; not in bare tests). */
  get available(): boolean {
    return this.service !== undefined;
  }

  get lastChange(): number {
    return this.appliedChange;
  }

  prefixes(): ParsedPrefix[] {
    return [...this.entries.values()].map((e) => e.prefix);
  }

  has(text: string): boolean {
    return this.entries.has(text);
  }

  list(): Array<{ prefix: string; addedAt: number; comment?: string }> {
    return [...this.entries.values()].map((e) => ({ prefix: e.prefix.text, addedAt: e.addedAt, ...(e.comment !== undefined ? { comment: e.comment } : {}) }));
  }

  /** Counts entries the subsystem could not put in the maps. */
  failed(n: number): void {
    this.errors.inc(n);
  }

  /** Reads the local copy without touching the maps (the subsystem's first sync writes them). */
  async load(): Promise<void> {
    if (!this.service) return;
    this.appliedChange = this.seenChange = await this.service.local.head();
    this.entries = await this.read();
  }

  /** Follows the feed from now on; a refresh then covers what it applied since load(). */
  follow(): void {
    const feed = this.service?.feed;
    if (!feed) return;
    const onChange = (c: Change) => {
      if (c.kind !== 'deny.add' && c.kind !== 'deny.delete') return;
      this.seenChange = Math.max(this.seenChange, c.seq);
      this.kick();
    };
    const onResync = (s: Snapshot) => {
      this.seenChange = Math.max(this.seenChange, s.seq);
      this.kick();
    };
    feed.on('change', onChange);
    feed.on('resync', onResync);
    this.cleanups.push(() => {
      feed.off('change', onChange);
      feed.off('resync', onResync);
    });
    this.kick();
  }

  private kick(): void {
    void this.refresh().catch((err) => {
      this.errors.inc();
      this.opts.log.warn({ err: errorMessage(err) }, 'fleet deny list: reading the local registry copy failed; retried on the next change');
    });
  }

  /** Makes the maps hold the local copy's deny list; concurrent calls share one run. */
  refresh(): Promise<void> {
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      try {
        do {
          this.again = false;
          await this.refreshOnce();
        } while (this.again && !this.closed);
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  private async refreshOnce(): Promise<void> {
    if (!this.service || this.closed) return;
    const seq = this.seenChange;
    const next = await this.read();
    if (this.closed) return;
    const added = [...next.values()].filter((e) => !this.entries.has(e.prefix.text)).map((e) => e.prefix);
    const removed = [...this.entries.values()].filter((e) => !next.has(e.prefix.text)).map((e) => e.prefix);
    this.entries = next;
    if (added.length || removed.length) {
      const failed = this.opts.apply(added, removed);
      this.errors.inc(failed);
      this.updates.inc({ op: 'add' }, added.length);
      this.updates.inc({ op: 'remove' }, removed.length);
      this.opts.log.info({ added: added.map((p) => p.text), removed: removed.map((p) => p.text), change: seq, failed }, 'fleet deny list applied');
    }
    this.appliedChange = Math.max(this.appliedChange, seq);
  }

  /** The local copy's deny list; an entry that is no prefix is counted, logged and left out. */
  private async read(): Promise<Map<string, FleetEntry>> {
    const out = new Map<string, FleetEntry>();
    for (const d of await this.service!.local.denyList()) {
      try {
        const prefix = parsePrefix(d.prefix);
        out.set(prefix.text, { prefix, addedAt: d.addedAt, ...(d.comment !== undefined ? { comment: d.comment } : {}) });
      } catch (err) {
        this.errors.inc();
        this.opts.log.warn({ prefix: d.prefix, err: errorMessage(err) }, 'fleet deny list: entry is not a prefix; skipped');
      }
    }
    return out;
  }

  private primary() {
    if (!this.service) throw new CbrError('UNAVAILABLE', 'fleet deny list: the registry is not running');
    return this.service.primary;
  }

  /** Waits until this PoP's copy (and so its maps) holds what was just written to the database. */
  private async settle(): Promise<void> {
    // The feed would bring it within a second anyway; a failed catch-up is retried by the feed itself.
    await this.service?.feed?.catchUp().catch(() => undefined);
    await this.refresh();
  }

  /** Adds a prefix to the fleet's list (the database, or the embedded store); false when it was there. */
  async add(prefix: ParsedPrefix, comment?: string): Promise<boolean> {
    const added = await this.primary().addDeny(prefix.text, Date.now(), comment);
    await this.settle();
    return added;
  }

  /** Removes a prefix from the fleet's list; false when it was not there. */
  async remove(prefix: ParsedPrefix): Promise<boolean> {
    const removed = await this.primary().removeDeny(prefix.text);
    await this.settle();
    return removed;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const c of this.cleanups.splice(0).reverse()) c();
    await this.refreshing?.catch(() => undefined);
  }
}
