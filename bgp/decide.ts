// The announce / drain / withdraw decision, as a pure function of what the speaker knows. Evaluated on
// every health change, drain request and drain timer:
//   health down                          → withdraw at once
//   drain wanted (cbr bgp drain, drain file, health draining from POST /v1/drain or SIGTERM)
//                                        → drain: announce with 65535:0 (+ prepends) for drain.wait, then withdraw
//   otherwise (health up)                → announce
import type { HealthState } from '../dataplane/index.js';
import type { AnnounceState } from './render.js';

export type DrainPhase = 'none' | 'graceful' | 'withdrawn';

export interface DecisionInput {
  health: HealthState;
  /** The agent is draining (POST /v1/drain or shutdown). */
  agentDraining: boolean;
  /** `cbr bgp drain` is in force. */
  manualDrain: boolean;
  /** The drain file exists (its path, for the reason). */
  drainFile?: string;
  fileDrain: boolean;
  /** When the drain in progress began (from the previous decision); undefined when none is. */
  drainStartedAt?: number;
  drainWaitMs: number;
  now: number;
}

export interface Decision {
  state: AnnounceState;
  phase: DrainPhase;
  /** When the drain in progress began; carried into the next evaluation. */
  drainStartedAt?: number;
  /** Why a drain is wanted, in words (empty when none is). */
  drainReasons: string[];
  /** Why this state, in words. */
  because: string;
  /** Milliseconds until the decision changes on its own (the end of the drain wait), if it will. */
  recheckInMs?: number;
}

export function drainReasons(i: Pick<DecisionInput, 'manualDrain' | 'fileDrain' | 'drainFile' | 'agentDraining' | 'health'>): string[] {
  const r: string[] = [];
  if (i.manualDrain) r.push('cbr bgp drain');
  if (i.fileDrain) r.push(`drain file ${i.drainFile ?? ''}`.trim());
  if (i.agentDraining || i.health === 'draining') r.push('agent draining (POST /v1/drain or shutdown)');
  return r;
}

export function decide(i: DecisionInput): Decision {
  const reasons = drainReasons(i);
  const draining = reasons.length > 0;
  const drainStartedAt = draining ? (i.drainStartedAt ?? i.now) : undefined;
  const left = drainStartedAt === undefined ? undefined : drainStartedAt + i.drainWaitMs - i.now;
  const phase: DrainPhase = left === undefined ? 'none' : left > 0 ? 'graceful' : 'withdrawn';
  const base = { phase, drainStartedAt, drainReasons: reasons };
  if (i.health === 'down') return { ...base, state: 'withdraw', because: 'health down' };
  if (phase === 'graceful') return { ...base, state: 'drain', because: `draining: ${reasons.join(', ')}`, recheckInMs: left };
  if (phase === 'withdrawn') return { ...base, state: 'withdraw', because: `drain wait over: ${reasons.join(', ')}` };
  return { ...base, state: 'announce', because: 'health up' };
}
