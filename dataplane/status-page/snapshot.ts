// What the status page shows, gathered inside the agent: the health model, the supervisor, the
// metric history (rates) and the BGP speaker's status through the service registry.
import type { Registry } from 'prom-client';
import type { HealthModel } from '../health.js';
import type { Supervisor } from '../supervisor.js';
import type { ServiceRegistry } from '../subsystem.js';
import { MetricHistory } from './history.js';

/** The service name under which bgp/ offers its status to the page. */
export const BGP_STATUS_SERVICE = 'bgp.status';

/** The part of bgp/'s status the page reads (bgp/ provides `{ status() }` under BGP_STATUS_SERVICE). */
export interface BgpStatusView {
  state: 'announce' | 'drain' | 'withdraw';
  applied?: string;
  lastChange: string;
  lastChangeReason?: string;
  drain: { phase: string };
  sessions: Array<{ peer: string; address: string; remoteAs: number; state: string; up: boolean; since?: string }>;
  prefixes: Array<{ prefix: string; announced: boolean }>;
  bird: { running: boolean; restarts: number };
  lastError?: string;
}

export type PrefixState = 'announced' | 'draining' | 'withdrawn';

export interface StatusSnapshot {
  pop: string;
  version: string;
  generatedAt: string;
  uptimeSeconds: number;
  sampleIntervalSeconds: number;
  health: {
    state: string;
    draining: boolean;
    checks: Array<{ name: string; healthy: boolean; lastResult: string; lastError?: string; lastChangeAt?: string }>;
  };
  bgp?: {
    state: string;
    applied?: string;
    lastChange: string;
    lastChangeReason?: string;
    birdRunning: boolean;
    lastError?: string;
    sessions: Array<{ peer: string; address: string; remoteAs: number; state: string; up: boolean; since?: string }>;
    prefixes: Array<{ prefix: string; state: PrefixState; since: string; why: string }>;
  };
  tunnels: {
    sessions: Array<{ kind: string; count: number }>;
    /** QUIC handshakes completed per second (MASQUE), latest step and the window. */
    handshakesPerSecond: number | null;
    handshakes: number[];
    registrationsPerSecond: number | null;
  };
  xdp?: {
    passedPerSecond: number;
    droppedPerSecond: number;
    /** Per-second packets over the window: `pass` summed, each drop reason on its own. */
    series: Array<{ name: string; values: number[] }>;
  };
  children: Array<{ name: string; state: string; pid?: number; restarts: number }>;
}

const COUNTERS = ['cbr_xdp_packets_total', 'cbr_masque_handshakes_total', 'cbr_wireguard_registrations_total'] as const;
const GAUGES = ['cbr_masque_sessions', 'cbr_wireguard_peers'] as const;

export interface StatusSources {
  pop: string;
  version: string;
  startedAt: number;
  registry: Registry;
  health: HealthModel;
  supervisor: Supervisor;
  services: ServiceRegistry;
  /** Sampling interval and window of the rate history. */
  intervalMs?: number;
  windowMs?: number;
}

export class StatusCollector {
  readonly history: MetricHistory;
  readonly intervalMs: number;
  private timer?: NodeJS.Timeout;
  private sampling?: Promise<void>;
  private readonly prefixes = new Map<string, { state: PrefixState; since: string; why: string; bgpChange: string }>();

  constructor(private readonly src: StatusSources) {
    this.intervalMs = src.intervalMs ?? 2_000;
    const keep = Math.max(2, Math.ceil((src.windowMs ?? 5 * 60_000) / this.intervalMs) + 1);
    this.history = new MetricHistory(src.registry, [...COUNTERS, ...GAUGES], keep);
  }

  /** Samples every interval (the timer does not keep the process alive). */
  start(): void {
    if (this.timer) return;
    void this.tick();
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): Promise<void> {
    // One sample at a time: a slow collect (a map read, a UAPI call) must not pile up.
    this.sampling ??= this.history
      .sample()
      .then(() => void this.bgp())
      .finally(() => {
        this.sampling = undefined;
      });
    return this.sampling;
  }

  async snapshot(): Promise<StatusSnapshot> {
    if (this.history.count === 0) await this.tick();
    const health = this.src.health.snapshot();
    const h = this.history;
    const last = (xs: number[]) => xs.at(-1) ?? null;
    const handshakes = h.rates('cbr_masque_handshakes_total')[0]?.values ?? [];
    const registrations = h.rates('cbr_wireguard_registrations_total').map((s) => s.values);
    const sessions: Array<{ kind: string; count: number }> = h.latest('cbr_masque_sessions').map((s) => ({ kind: s.labels.kind ?? '?', count: s.value }));
    if (h.has('cbr_wireguard_peers')) sessions.push({ kind: 'wireguard', count: h.latest('cbr_wireguard_peers').reduce((a, s) => a + s.value, 0) });
    return {
      pop: this.src.pop,
      version: this.src.version,
      generatedAt: new Date().toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.src.startedAt) / 1000),
      sampleIntervalSeconds: this.intervalMs / 1000,
      health: {
        state: health.state,
        draining: health.draining,
        checks: health.checks.map((c) => ({
          name: c.name,
          healthy: c.healthy,
          lastResult: c.lastResult,
          lastError: c.lastError,
          lastChangeAt: c.lastChangeAt,
        })),
      },
      bgp: this.bgp(),
      tunnels: {
        sessions,
        handshakesPerSecond: h.has('cbr_masque_handshakes_total') ? last(handshakes) : null,
        handshakes,
        registrationsPerSecond: registrations.length
          ? registrations.reduce((a, v) => a + (v.at(-1) ?? 0), 0)
          : h.has('cbr_wireguard_registrations_total')
            ? 0
            : null,
      },
      xdp: h.has('cbr_xdp_packets_total') ? this.xdp() : undefined,
      children: this.src.supervisor.list().map((c) => ({ name: c.spec.name, state: c.state, pid: c.pid, restarts: c.restarts })),
    };
  }

  private xdp(): NonNullable<StatusSnapshot['xdp']> {
    const rates = this.history.rates('cbr_xdp_packets_total');
    const pass: number[] = [];
    const drops = new Map<string, number[]>();
    for (const s of rates) {
      if (s.labels.action === 'pass') addInto(pass, s.values);
      else if (s.labels.action === 'drop' || s.labels.action === 'aborted') {
        const name = s.labels.action === 'aborted' ? 'aborted' : (s.labels.reason ?? '?');
        drops.set(name, addInto(drops.get(name) ?? [], s.values));
      }
    }
    const dropped = [...drops.values()].reduce((a, v) => a + (v.at(-1) ?? 0), 0);
    const series = [{ name: 'passed', values: pass }];
    // Only reasons that dropped something in the window: a line of zeros per reason says nothing.
    for (const [name, values] of [...drops].sort(([a], [b]) => a.localeCompare(b)))
      if (values.some((v) => v > 0)) series.push({ name: `dropped: ${name}`, values });
    return { passedPerSecond: pass.at(-1) ?? 0, droppedPerSecond: dropped, series };
  }

  private bgp(): StatusSnapshot['bgp'] {
    const view = this.src.services.get<{ status(): BgpStatusView }>(BGP_STATUS_SERVICE);
    if (!view) return undefined;
    const s = view.status();
    const now = new Date().toISOString();
    const prefixes = s.prefixes.map((p) => {
      const state: PrefixState = !p.announced || s.state === 'withdraw' ? 'withdrawn' : s.state === 'drain' ? 'draining' : 'announced';
      const prev = this.prefixes.get(p.prefix);
      if (prev?.state !== state) {
        // A change of the speaker's decision explains it; otherwise the sessions did (one went down or came up).
        const decided = !prev || prev.bgpChange !== s.lastChange;
        const why = decided
          ? (s.lastChangeReason ?? 'start')
          : state === 'withdrawn'
            ? 'no Established session exports it'
            : 'exported on an Established session again';
        this.prefixes.set(p.prefix, { state, since: decided ? s.lastChange : now, why, bgpChange: s.lastChange });
      }
      const cur = this.prefixes.get(p.prefix)!;
      cur.bgpChange = s.lastChange;
      return { prefix: p.prefix, state, since: cur.since, why: cur.why };
    });
    for (const k of this.prefixes.keys()) if (!s.prefixes.some((p) => p.prefix === k)) this.prefixes.delete(k);
    return {
      state: s.state,
      applied: s.applied,
      lastChange: s.lastChange,
      lastChangeReason: s.lastChangeReason,
      birdRunning: s.bird.running,
      lastError: s.lastError,
      sessions: s.sessions.map((x) => ({ peer: x.peer, address: x.address, remoteAs: x.remoteAs, state: x.state, up: x.up, since: x.since })),
      prefixes,
    };
  }
}

/** Adds `values` element-wise into `acc` (series of one window have the same length). */
function addInto(acc: number[], values: number[]): number[] {
  for (let i = 0; i < values.length; i++) acc[i] = (acc[i] ?? 0) + values[i]!;
  return acc;
}
