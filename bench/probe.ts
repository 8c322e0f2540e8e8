// Client side of the demo-roles helpers: starting a role inside a namespace, and reading the probe
// role's switch lines (which PoP answers, and the gap when that changes). bench/demo and
// bench/failover both time failovers with it.
import type { ChildProcess } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Namespace } from '../testhosts/index.js';

const ROLES = join(dirname(fileURLToPath(import.meta.url)), 'demo-roles.js');

export interface Role {
  proc: ChildProcess;
  onLine: (fn: (l: string) => void) => void;
}

/** Starts a demo-roles process in `ns` and waits for its "ready" line. */
export async function startRole(ns: Namespace, args: string[]): Promise<Role> {
  const proc = ns.spawn([process.execPath, ROLES, ...args], { stdio: ['pipe', 'pipe', 'inherit'] });
  const listeners: Array<(l: string) => void> = [];
  const rl = createInterface({ input: proc.stdout! });
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${args[0]} helper did not start`)), 10_000);
    rl.once('line', () => {
      clearTimeout(t);
      resolve();
    });
    proc.once('exit', (c) => reject(new Error(`${args[0]} helper exited (${c})`)));
  });
  rl.on('line', (l) => {
    for (const fn of listeners) fn(l);
  });
  return { proc, onLine: (fn) => listeners.push(fn) };
}

export interface Switch {
  from: string;
  to: string;
  lastFromSendMs: number;
  firstToSendMs: number;
  /** When the last answer through the old path and the first through the new one arrived: the gap the client saw. */
  lastFromRecvMs: number;
  firstToRecvMs: number;
  lost: number;
}

/** Probes (by send time) that got no answer within a second: what the stream's user went without. */
export interface Outage {
  /** Send time of the last probe answered in time before it, and of the first after it (epoch ms). */
  fromSendMs: number;
  toSendMs: number;
  ms: number;
  unanswered: number;
}

export interface ProbeOptions {
  /** Probes per second. */
  rate: number;
  /** The sender's timer tick (it sends what the rate owes every tick). */
  tickMs?: number;
  /** Names the answering tag (the probe role reports what the echo appended). */
  tagOf?: (raw: string) => string;
}

/** A probe stream from the client: which PoP answers, and the gap when that changes. */
export class Probe {
  readonly switches: Switch[] = [];
  readonly outages: Outage[] = [];
  private waiters: Array<{ pred: (s: Switch) => boolean; resolve: (s: Switch) => void }> = [];
  /** Called when answers have stopped for a second. */
  onSilent?: () => void;
  private constructor(
    private readonly proc: ChildProcess,
    private readonly tagOf: (raw: string) => string,
  ) {}

  static async start(ns: Namespace, host: string, port: number, o: ProbeOptions): Promise<Probe> {
    const role = await startRole(ns, ['probe', host, String(port), String(o.rate), String(o.tickMs ?? 2)]);
    const p = new Probe(role.proc, o.tagOf ?? ((t) => t));
    role.onLine((l) => {
      let s: Switch;
      try {
        s = JSON.parse(l) as Switch;
      } catch {
        return;
      }
      if ((s as unknown as { silent?: number }).silent !== undefined) {
        p.onSilent?.();
        return;
      }
      const outage = (s as unknown as { outage?: Outage }).outage;
      if (outage) {
        p.outages.push(outage);
        return;
      }
      if (s.from === undefined) return;
      s = { ...s, from: s.from === 'none' ? 'none' : p.tagOf(s.from), to: p.tagOf(s.to) };
      p.switches.push(s);
      for (const w of [...p.waiters]) {
        if (w.pred(s)) {
          p.waiters.splice(p.waiters.indexOf(w), 1);
          w.resolve(s);
        }
      }
    });
    return p;
  }

  /**
   * The longest outage that ended after `sinceMs` (epoch ms), once timely answers have come back for
   * a moment (an outage is reported when they resume); a zero one when answers never stopped.
   */
  async outageAfter(sinceMs: number, settleMs = 1500): Promise<Outage> {
    await new Promise((r) => setTimeout(r, settleMs));
    return this.outageSince(sinceMs);
  }

  outageSince(sinceMs: number): Outage {
    const after = this.outages.filter((o) => o.toSendMs > sinceMs);
    return after.reduce((a, b) => (b.ms > a.ms ? b : a), { fromSendMs: sinceMs, toSendMs: sinceMs, ms: 0, unanswered: 0 });
  }

  get current(): string | undefined {
    return this.switches.at(-1)?.to;
  }

  wait(pred: (s: Switch) => boolean, timeoutMs: number, what: string): Promise<Switch> {
    const seen = this.switches.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (s: Switch) => {
          clearTimeout(t);
          resolve(s);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  stop(): void {
    this.proc.stdin?.end();
  }
}
