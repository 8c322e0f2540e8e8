// The health model: subsystems register checks with interval, timeout, rise and fall counts; the
// aggregated state (up | draining | down) is what BGP announces on and what /healthz reports.
import { EventEmitter } from 'node:events';
import { Gauge, Counter, type Registry } from 'prom-client';
import type { Logger } from './log.js';

export type HealthState = 'up' | 'draining' | 'down';

export interface HealthCheckSpec {
  /** Unique name, e.g. `masque.listener` or `external.dns`. */
  name: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive passes before a down check counts as up. */
  rise: number;
  /** Consecutive failures before an up check counts as down. */
  fall: number;
  /** Resolves when healthy; throws (or rejects) with the reason when not. */
  run: (signal: AbortSignal) => Promise<void> | void;
  /**
   * false: a failure marks the PoP degraded (shown in /healthz) but does not take it down, so anycast
   * stays (e.g. the fleet registry's database away while tunnels still work). Default true.
   */
  critical?: boolean;
}

export interface HealthCheckStatus {
  name: string;
  healthy: boolean;
  critical: boolean;
  lastResult: 'pass' | 'fail' | 'pending';
  lastError?: string;
  lastRunAt?: string;
  lastChangeAt?: string;
  lastDurationMs?: number;
  consecutivePasses: number;
  consecutiveFailures: number;
}

interface CheckEntry {
  spec: HealthCheckSpec;
  status: HealthCheckStatus;
  timer?: NodeJS.Timeout;
  running: boolean;
}

export class HealthModel extends EventEmitter<{ change: [HealthState, HealthState]; check: [HealthCheckStatus]; draining: [boolean] }> {
  private readonly checks = new Map<string, CheckEntry>();
  private draining = false;
  private current: HealthState = 'up';
  private stopped = false;
  private readonly stateGauge?: Gauge;
  private readonly checkGauge?: Gauge;
  private readonly transitions?: Counter;

  constructor(
    private readonly log: Logger,
    registry?: Registry,
  ) {
    super();
    if (registry) {
      this.stateGauge = new Gauge({
        name: 'cbr_health_state',
        help: 'Aggregated health: 1 for the current state',
        labelNames: ['state'],
        registers: [registry],
      });
      this.checkGauge = new Gauge({
        name: 'cbr_health_check_up',
        help: 'Whether a health check counts as up (after rise/fall)',
        labelNames: ['check'],
        registers: [registry],
      });
      this.transitions = new Counter({
        name: 'cbr_health_transitions_total',
        help: 'Aggregated health state changes',
        labelNames: ['to'],
        registers: [registry],
      });
      this.updateStateGauge();
    }
  }

  get state(): HealthState {
    return this.current;
  }

  /** Registers and starts a check. A new check starts down and needs `rise` passes (its first run is immediate). */
  register(spec: HealthCheckSpec): () => void {
    if (this.checks.has(spec.name)) throw new Error(`health check ${spec.name} is already registered`);
    const entry: CheckEntry = {
      spec,
      running: false,
      status: { name: spec.name, healthy: false, critical: spec.critical ?? true, lastResult: 'pending', consecutivePasses: 0, consecutiveFailures: 0 },
    };
    this.checks.set(spec.name, entry);
    this.checkGauge?.set({ check: spec.name }, 0);
    this.recompute();
    if (!this.stopped) void this.runOnce(entry);
    return () => this.unregister(spec.name);
  }

  unregister(name: string): void {
    const entry = this.checks.get(name);
    if (!entry) return;
    clearTimeout(entry.timer);
    this.checks.delete(name);
    this.checkGauge?.remove({ check: name });
    this.recompute();
  }

  /** Runs a check now (used after a config change or by tests) and waits for its result. */
  async runNow(name: string): Promise<HealthCheckStatus | undefined> {
    const entry = this.checks.get(name);
    if (!entry) return undefined;
    clearTimeout(entry.timer);
    await this.runOnce(entry);
    return { ...entry.status };
  }

  setDraining(draining: boolean): void {
    if (this.draining === draining) return;
    this.draining = draining;
    this.log.info({ draining }, draining ? 'entering drain' : 'leaving drain');
    // Its own event: a PoP that is down stays down when it drains, so 'change' may not fire.
    this.emit('draining', draining);
    this.recompute();
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /** Whether a non-critical check is failing (the PoP serves, with less than it should). */
  get isDegraded(): boolean {
    return [...this.checks.values()].some((e) => !e.status.critical && !e.status.healthy);
  }

  snapshot(): { state: HealthState; draining: boolean; degraded: boolean; checks: HealthCheckStatus[] } {
    return { state: this.current, draining: this.draining, degraded: this.isDegraded, checks: [...this.checks.values()].map((e) => ({ ...e.status })) };
  }

  stop(): void {
    this.stopped = true;
    for (const e of this.checks.values()) clearTimeout(e.timer);
  }

  private async runOnce(entry: CheckEntry): Promise<void> {
    if (entry.running) return;
    entry.running = true;
    const { spec, status } = entry;
    const started = performance.now();
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let error: string | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(() => spec.run(ac.signal)),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => {
            ac.abort();
            reject(new Error(`timed out after ${spec.timeoutMs} ms`));
          }, spec.timeoutMs);
        }),
      ]);
    } catch (err) {
      error = err instanceof Error ? err.message : String(err);
    } finally {
      clearTimeout(timer);
      entry.running = false;
    }
    if (!this.checks.has(spec.name)) return; // unregistered while running
    status.lastRunAt = new Date().toISOString();
    status.lastDurationMs = Math.round(performance.now() - started);
    if (error === undefined) {
      status.lastResult = 'pass';
      delete status.lastError;
      status.consecutivePasses++;
      status.consecutiveFailures = 0;
      if (!status.healthy && status.consecutivePasses >= spec.rise) this.flip(entry, true);
    } else {
      status.lastResult = 'fail';
      status.lastError = error;
      status.consecutiveFailures++;
      status.consecutivePasses = 0;
      // A check that never came up stays down; one that was up goes down after `fall` failures.
      if (status.healthy && status.consecutiveFailures >= spec.fall) this.flip(entry, false);
    }
    this.emit('check', { ...status });
    if (!this.stopped) entry.timer = setTimeout(() => void this.runOnce(entry), spec.intervalMs);
  }

  private flip(entry: CheckEntry, healthy: boolean): void {
    entry.status.healthy = healthy;
    entry.status.lastChangeAt = new Date().toISOString();
    this.checkGauge?.set({ check: entry.spec.name }, healthy ? 1 : 0);
    const logFn = healthy ? this.log.info.bind(this.log) : this.log.warn.bind(this.log);
    logFn({ check: entry.spec.name, error: entry.status.lastError }, healthy ? 'health check up' : 'health check down');
    this.recompute();
  }

  private recompute(): void {
    const allUp = [...this.checks.values()].every((e) => e.status.healthy || !e.status.critical);
    const next: HealthState = !allUp ? 'down' : this.draining ? 'draining' : 'up';
    if (next === this.current) return;
    const prev = this.current;
    this.current = next;
    this.transitions?.inc({ to: next });
    this.updateStateGauge();
    this.log.info({ from: prev, to: next }, 'health state changed');
    this.emit('change', next, prev);
  }

  private updateStateGauge(): void {
    for (const s of ['up', 'draining', 'down'] as const) this.stateGauge?.set({ state: s }, s === this.current ? 1 : 0);
  }
}
