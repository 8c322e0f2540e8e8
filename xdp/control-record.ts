// Who controls the XDP program on an interface, and when it last checked in. The program keeps
// filtering when its agent is gone (by design: a restart must not open the PoP), so something must
// tell a filter running on its last lists apart from a controlled one: the agent rewrites this record
// in agent.stateDir every few seconds and marks it stopped on a clean stop; `cbr xdp status` (without
// an agent) and the next agent read it. Pure apart from the two file functions.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ControlRecord {
  pid: number;
  interface: string;
  /** ms since the epoch */
  startedAt: number;
  heartbeatAt: number;
  /** Set by a clean stop (the program was left running on purpose). */
  stoppedAt?: number;
}

/** controlled: the agent checks in. stopped: it stopped cleanly. orphaned: it died. unresponsive: alive, silent. */
export type ControlState = 'controlled' | 'stopped' | 'orphaned' | 'unresponsive' | 'unknown';

/** A heartbeat older than this, from a process that still exists, means its control loop is stuck. */
export const HEARTBEAT_STALE_MS = 10_000;

export interface ControlView {
  state: ControlState;
  pid?: number;
  /** Seconds since the last heartbeat (or the clean stop). */
  sinceSeconds?: number;
  detail: string;
}

export function controlRecordPath(stateDir: string, ifname: string): string {
  return join(stateDir, `xdp-control-${ifname}.json`);
}

/** Reads the record; undefined when there is none or it is not one (a torn or foreign file). */
export function readControlRecord(path: string): ControlRecord | undefined {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    // no record (never controlled here) or an unreadable one: both mean "unknown"
    return undefined;
  }
  const r = doc as Partial<ControlRecord> | null;
  if (!r || !Number.isInteger(r.pid) || typeof r.interface !== 'string' || !Number.isFinite(r.heartbeatAt) || !Number.isFinite(r.startedAt)) return undefined;
  if (r.stoppedAt !== undefined && !Number.isFinite(r.stoppedAt)) return undefined;
  return r as ControlRecord;
}

/** Writes the record atomically (a reader never sees half of it). */
export function writeControlRecord(path: string, rec: ControlRecord): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(rec)}\n`, { mode: 0o600 });
  renameSync(`${path}.tmp`, path);
}

/** What the record says, given the time and whether its process exists. */
export function describeControl(rec: ControlRecord | undefined, now: number, processExists: (pid: number) => boolean): ControlView {
  if (!rec) return { state: 'unknown', detail: 'no control record (the program was never controlled from this state directory)' };
  if (rec.stoppedAt !== undefined) {
    const since = Math.max(0, Math.round((now - rec.stoppedAt) / 1000));
    return {
      state: 'stopped',
      pid: rec.pid,
      sinceSeconds: since,
      detail: `the agent (pid ${rec.pid}) stopped cleanly ${since} s ago; the filter runs on its last lists`,
    };
  }
  const since = Math.max(0, Math.round((now - rec.heartbeatAt) / 1000));
  if (!processExists(rec.pid))
    return { state: 'orphaned', pid: rec.pid, sinceSeconds: since, detail: `the agent (pid ${rec.pid}) is gone without stopping; last heard ${since} s ago` };
  if (now - rec.heartbeatAt > HEARTBEAT_STALE_MS)
    return { state: 'unresponsive', pid: rec.pid, sinceSeconds: since, detail: `the agent (pid ${rec.pid}) runs but has not checked in for ${since} s` };
  return { state: 'controlled', pid: rec.pid, sinceSeconds: since, detail: `controlled by pid ${rec.pid}` };
}

/** kill(pid, 0): whether a process with this pid exists (EPERM means it does, owned by someone else). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
