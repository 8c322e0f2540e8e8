// The change feed: a PoP follows the fleet's registry into its durable local copy. LISTEN carries
// each new change number; after every (re)connect, on every notification past the applied number,
// and every `catchUpInterval`, the follower reads the log from its last applied number, so a missed
// notification loses nothing. Numbers have no gaps: a log that no longer reaches back to the copy's
// position (pruned) means a full snapshot. The copy keeps answering while the database is away.
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { Counter, Gauge, type Registry } from 'prom-client';
import { CbrError, errorCode, errorMessage, type Logger } from '../dataplane/index.js';
import { encodeChange, type Change } from './change.js';
import type { RegistryReplica, RegistryStore, Snapshot } from './store.js';

/** Where the feed reads from: the primary's store and its notifications. */
export interface FeedSource {
  store: Pick<RegistryStore, 'changesSince' | 'head' | 'snapshot'>;
  /** Connects a listener; `onSeq` gets each notified change number, `onEnd` the connection's end. */
  listen(onSeq: (seq: number | undefined) => void, onEnd: (err?: Error) => void): Promise<{ close(): Promise<void> }>;
}

export interface FeedOptions {
  /** Periodic catch-up even without notifications (default 5 s). */
  catchUpIntervalMs?: number;
  /** Changes read per query (default 500). */
  batch?: number;
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  log?: Logger;
  metrics?: Registry;
  now?: () => number;
}

export interface FeedEvents {
  /** One applied change, after it is durable in the local copy. */
  change: [Change];
  /** The local copy was replaced by a snapshot. */
  resync: [Snapshot];
  connected: [];
  disconnected: [Error | undefined];
}

export class ChangeFeed extends EventEmitter<FeedEvents> {
  private applied = 0;
  private knownHead = 0;
  private caughtUpAt: number;
  private listener: { close(): Promise<void> } | undefined;
  private running = false;
  private connecting = false;
  private reconnectDelay: number;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private catching: Promise<void> | undefined;
  private again = false;
  /** Check, before the next read, that the database's history still contains the copy's position. */
  private verifyNext = true;
  private readonly now: () => number;
  private readonly reconnects?: Counter;
  private readonly appliedTotal?: Counter;
  private readonly errors?: Counter;

  constructor(
    private readonly source: FeedSource,
    private readonly local: RegistryReplica,
    private readonly opts: FeedOptions = {},
  ) {
    super();
    this.now = opts.now ?? Date.now;
    this.caughtUpAt = this.now();
    this.reconnectDelay = opts.reconnectMinMs ?? 200;
    const registers = opts.metrics ? [opts.metrics] : [];
    if (opts.metrics) {
      const self = this;
      new Gauge({
        name: 'cbr_registry_feed_lag_seconds',
        help: 'Seconds since the local registry copy was last known to hold every change of the database',
        registers,
        collect() {
          this.set(self.lagSeconds());
        },
      });
      new Gauge({
        name: 'cbr_registry_feed_changes_behind',
        help: 'Changes the database is known to have that the local copy has not applied',
        registers,
        collect() {
          this.set(Math.max(0, self.knownHead - self.applied));
        },
      });
      new Gauge({
        name: 'cbr_registry_last_applied_change',
        help: 'Number of the last change applied to the local registry copy',
        registers,
        collect() {
          this.set(self.applied);
        },
      });
      new Gauge({
        name: 'cbr_registry_feed_connected',
        help: '1 while the change feed listens to the database',
        registers,
        collect() {
          this.set(self.listener ? 1 : 0);
        },
      });
      this.reconnects = new Counter({ name: 'cbr_registry_feed_reconnects_total', help: 'Times the change feed lost its database connection', registers });
      this.errors = new Counter({ name: 'cbr_registry_feed_errors_total', help: 'Catch-ups of the change feed that failed (retried)', registers });
      this.appliedTotal = new Counter({ name: 'cbr_registry_feed_applied_total', help: 'Changes applied to the local registry copy', registers });
    }
  }

  get lastApplied(): number {
    return this.applied;
  }

  get connected(): boolean {
    return this.listener !== undefined;
  }

  /** Seconds since the copy was last known to be complete (0 while it is). */
  lagSeconds(): number {
    return this.listener && this.applied >= this.knownHead ? 0 : (this.now() - this.caughtUpAt) / 1000;
  }

  /** Starts following; resolves once the local position is read (the database may still be away). */
  async start(): Promise<void> {
    this.running = true;
    this.applied = await this.local.head();
    this.knownHead = this.applied;
    this.intervalTimer = setInterval(() => void this.catchUp().catch((err) => this.failed(err)), this.opts.catchUpIntervalMs ?? 5000);
    this.intervalTimer.unref();
    void this.connect();
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.intervalTimer);
    const l = this.listener;
    this.listener = undefined;
    await l?.close().catch(() => undefined);
    await this.catching?.catch(() => undefined);
  }

  private async connect(): Promise<void> {
    if (!this.running || this.connecting || this.listener) return;
    this.connecting = true;
    let l: { close(): Promise<void> } | undefined;
    try {
      l = await this.source.listen(
        (seq) => {
          if (seq !== undefined) this.knownHead = Math.max(this.knownHead, seq);
          if (seq === undefined || seq > this.applied) void this.catchUp().catch((err) => this.failed(err));
        },
        (err) => this.lost(l, err),
      );
      if (!this.running) {
        await l.close();
        return;
      }
      this.listener = l;
      this.reconnectDelay = this.opts.reconnectMinMs ?? 200;
      this.opts.log?.info({ applied: this.applied }, 'registry feed connected');
      this.emit('connected');
      this.verifyNext = true;
      await this.catchUp().catch((err) => this.failed(err));
    } catch (err) {
      this.opts.log?.warn({ err: errorMessage(err) }, 'registry feed cannot reach the database; the local copy serves');
      this.schedule();
    } finally {
      this.connecting = false;
    }
  }

  /** A catch-up that failed: the database being away is reported by the connection; anything else is news. */
  private failed(err: unknown): void {
    this.errors?.inc();
    if (errorCode(err) === 'UNAVAILABLE') this.opts.log?.debug({ err: errorMessage(err) }, 'registry feed: catch-up failed; retrying');
    else this.opts.log?.warn({ err: errorMessage(err), applied: this.applied }, 'registry feed: applying changes failed; retrying');
  }

  private lost(l: { close(): Promise<void> } | undefined, err?: Error): void {
    if (l === undefined || this.listener !== l) return;
    this.listener = undefined;
    this.reconnects?.inc();
    this.opts.log?.warn({ err: err ? errorMessage(err) : undefined, applied: this.applied }, 'registry feed lost the database; the local copy serves');
    this.emit('disconnected', err);
    void l.close().catch(() => undefined);
    this.schedule();
  }

  private schedule(): void {
    if (!this.running) return;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = setTimeout(() => void this.connect(), this.reconnectDelay);
    this.reconnectDelay = Math.min(this.reconnectDelay * 2, this.opts.reconnectMaxMs ?? 5000);
  }

  /** Reads and applies everything after the applied number; concurrent calls share one run. */
  catchUp(): Promise<void> {
    if (this.catching) {
      this.again = true;
      return this.catching;
    }
    this.catching = (async () => {
      try {
        do {
          this.again = false;
          await this.catchUpOnce();
        } while (this.again && this.running);
      } finally {
        this.catching = undefined;
      }
    })();
    return this.catching;
  }

  /**
   * After a fail-over to a replica that had not received the newest changes, or a restore from a
   * backup, the database may have a different change under the copy's number (or none): then the
   * copy's history is not the database's, and only a snapshot makes them equal again.
   */
  private async positionHolds(): Promise<boolean> {
    if (this.applied === 0) return true;
    if ((await this.source.store.head()) < this.applied) return false;
    const [theirs] = await this.source.store.changesSince(this.applied - 1, 1);
    const [ours] = await this.local.changesSince(this.applied - 1, 1);
    // Nothing to compare when either side no longer has that change (pruned there, or a snapshot here).
    if (theirs?.seq !== this.applied || ours?.seq !== this.applied) return true;
    return theirs.at === ours.at && JSON.stringify(encodeChange(theirs)) === JSON.stringify(encodeChange(ours));
  }

  private async catchUpOnce(): Promise<void> {
    const batch = this.opts.batch ?? 500;
    if (this.verifyNext) {
      let holds: boolean;
      try {
        holds = await this.positionHolds();
      } catch (err) {
        throw new CbrError('UNAVAILABLE', `registry feed: checking change ${this.applied}: ${errorMessage(err)}`, { cause: err });
      }
      if (!holds) {
        this.opts.log?.warn({ applied: this.applied }, "registry feed: the database's history differs from the local copy's (fail-over or restore)");
        await this.resync();
      }
      this.verifyNext = false;
    }
    for (;;) {
      const started = this.now();
      let changes: Change[];
      try {
        changes = await this.source.store.changesSince(this.applied, batch);
      } catch (err) {
        throw new CbrError('UNAVAILABLE', `registry feed: reading changes after ${this.applied}: ${errorMessage(err)}`, { cause: err });
      }
      if (changes.length > 0 && changes[0]!.seq !== this.applied + 1) {
        await this.resync();
        continue;
      }
      if (changes.length > 0) {
        await this.local.applyChanges(changes);
        this.applied = changes[changes.length - 1]!.seq;
        this.knownHead = Math.max(this.knownHead, this.applied);
        this.appliedTotal?.inc(changes.length);
        for (const c of changes) this.emit('change', c);
      }
      if (changes.length < batch) {
        // Everything committed before this read is applied (a notification during it reruns us).
        if (this.applied >= this.knownHead) this.caughtUpAt = started;
        this.knownHead = Math.max(this.knownHead, this.applied);
        return;
      }
    }
  }

  private async resync(): Promise<void> {
    const snap = await this.source.store.snapshot();
    await this.local.replaceWith(snap);
    this.opts.log?.warn({ from: this.applied, to: snap.seq }, 'registry feed: the change log no longer reaches back; copied a snapshot');
    this.applied = snap.seq;
    this.knownHead = Math.max(this.knownHead, snap.seq);
    this.emit('resync', snap);
  }
}

/** A FeedSource on PostgreSQL: a dedicated LISTEN connection to the primary. */
export function postgresFeedSource(store: FeedSource['store'], connect: () => Promise<{ client: pg.Client }>, channel: string): FeedSource {
  return {
    store,
    async listen(onSeq, onEnd) {
      const { client } = await connect();
      let ended = false;
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        onEnd(err);
      };
      client.on('notification', (n) => {
        if (n.channel !== channel) return;
        const seq = n.payload !== undefined && /^\d{1,16}$/.test(n.payload) ? Number(n.payload) : undefined;
        onSeq(seq);
      });
      client.on('error', (err) => end(err));
      client.on('end', () => end());
      await client.query(`LISTEN ${channel}`);
      // Keepalive so a dead server is noticed even when nothing changes.
      const ping = setInterval(() => void client.query('SELECT 1').catch((err: Error) => end(err)), 2000);
      ping.unref();
      return {
        async close() {
          clearInterval(ping);
          ended = true;
          await client.end().catch(() => undefined);
        },
      };
    },
  };
}
