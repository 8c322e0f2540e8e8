// The bgp subsystem: renders BIRD's config, runs BIRD under the agent's supervisor, and turns the
// agent's health (plus drain requests) into announce / drain / withdraw (decided in decide.ts) through
// `configure`.
//
// The bgp.sessions health check (at least one / every session Established) feeds the same health
// model, which could look circular: the PoP withdraws while no session is up. It cannot deadlock,
// because withdrawing only changes the export filter; the sessions stay configured and come up on
// their own, the check then rises and the PoP announces. At start every check is down until it has
// passed `rise` times, so nothing is announced before the sessions (and the other checks) are up.
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { Counter, Gauge, Histogram } from 'prom-client';
import {
  BGP_STATUS_SERVICE,
  HttpError,
  errorMessage,
  type AgentContext,
  type BgpStatusView,
  type CbrConfig,
  type HealthState,
  type Subsystem,
  type SupervisedChild,
} from '../dataplane/index.js';
import type { BgpConfig } from './config.js';
import { BirdControl, waitForBird } from './control.js';
import { checkBirdConfig, readPasswords, writeFileAtomic, writeFileAtomicQuiet } from './birdconf.js';
import { decide, drainReasons, type DrainPhase } from './decide.js';
import { bgpSessionState, isErrorReply, parseProtocols, parseRoutePrefixes, replyErrorText } from './reply.js';
import { peerProtocol, renderBirdConfig, type AnnounceState } from './render.js';

const CHILD_NAME = 'bird';
const MAX_UNIX_PATH = 107;

export interface SessionStatus {
  peer: string;
  address: string;
  remoteAs: number;
  /** BIRD's BGP state: Established, Active, Connect, Idle, OpenSent, OpenConfirm, Down. */
  state: string;
  up: boolean;
  since?: string;
  info?: string;
}

export interface BgpStatus {
  state: AnnounceState;
  /** The state BIRD last accepted (undefined while BIRD is not running or has not confirmed one). */
  applied?: AnnounceState;
  health: HealthState;
  drain: { manual: boolean; file: boolean; health: boolean; phase: DrainPhase; since?: string; waitMs: number };
  sessions: SessionStatus[];
  prefixes: Array<{ prefix: string; announced: boolean }>;
  bird: { running: boolean; pid?: number; restarts: number; socket: string; config: string };
  lastChange: string;
  /** Why the announce state last changed (health, a drain request, the drain wait ending, …). */
  lastChangeReason: string;
  secondsSinceChange: number;
  lastConfigureMs?: number;
  lastError?: string;
  /** none, or what stands in for a withdraw bird.conf could not carry. */
  withdrawFallback: WithdrawFallback;
}

export type WithdrawFallback = 'none' | 'protocols_disabled' | 'bird_stopped';

export class BgpSubsystem implements Subsystem {
  private readonly dir: string;
  readonly confPath: string;
  readonly socketPath: string;
  private readonly pidPath: string;
  private readonly manualDrainPath: string;
  private readonly control: BirdControl;
  private child?: SupervisedChild;
  private passwords: Record<string, string> = {};
  private cfg: BgpConfig;

  private target: AnnounceState = 'withdraw';
  private applied?: AnnounceState;
  private lastGoodText?: string;
  private applying = false;
  private applyAgain = false;
  private retryTimer?: NodeJS.Timeout;
  private lastChangeAt = Date.now();
  private lastChangeReason = 'start';
  private lastConfigureMs?: number;
  private lastError?: string;
  /** What stands in for a withdraw BIRD's config could not express (see forceWithdraw). */
  private fallback: WithdrawFallback = 'none';

  private manualDrain = false;
  private fileDrain = false;
  private drainStartedAt?: number;
  private drainPhase: DrainPhase = 'none';
  private drainTimer?: NodeJS.Timeout;

  private sessions: SessionStatus[] = [];
  private exported = new Set<string>();
  private pollTimer?: NodeJS.Timeout;
  private drainFileTimer?: NodeJS.Timeout;
  private polling = false;
  private started = false;
  private stopped = false;
  private readonly disposers: Array<() => void> = [];
  private removeSessionCheck?: () => void;
  private readonly waiters = new Set<() => void>();

  private readonly metrics: {
    sessionUp: Gauge;
    prefixAnnounced: Gauge;
    state: Gauge;
    transitions: Counter;
    sinceChange: Gauge;
    configures: Counter;
    configureSeconds: Histogram;
    withdrawFailures: Counter;
    fallback: Gauge;
  };

  constructor(private readonly ctx: AgentContext) {
    this.cfg = ctx.config.bgp;
    this.dir = join(ctx.stateDir, 'bgp');
    this.confPath = join(this.dir, 'bird.conf');
    this.socketPath = join(this.dir, 'bird.ctl');
    this.pidPath = join(this.dir, 'bird.pid');
    this.manualDrainPath = join(this.dir, 'drained');
    this.control = new BirdControl({ socketPath: this.socketPath, timeoutMs: 5000, onSpontaneous: (text) => ctx.log.debug({ text }, 'BIRD printout') });
    const speaker = this;
    const r = ctx.registry;
    this.metrics = {
      sessionUp: new Gauge({
        name: 'cbr_bgp_session_up',
        help: 'Whether the BGP session to an upstream peer is Established',
        labelNames: ['peer'],
        registers: [r],
      }),
      prefixAnnounced: new Gauge({
        name: 'cbr_bgp_prefix_announced',
        help: 'Whether an anycast prefix is exported on at least one Established session',
        labelNames: ['prefix'],
        registers: [r],
      }),
      state: new Gauge({
        name: 'cbr_bgp_announce_state',
        help: 'Announce state wanted by the agent: 1 for the current one',
        labelNames: ['state'],
        registers: [r],
      }),
      transitions: new Counter({ name: 'cbr_bgp_state_transitions_total', help: 'Changes of the announce state', labelNames: ['to'], registers: [r] }),
      sinceChange: new Gauge({
        name: 'cbr_bgp_seconds_since_change',
        help: 'Seconds since the announce state last changed',
        registers: [r],
        collect() {
          this.set((Date.now() - speaker.lastChangeAt) / 1000);
        },
      }),
      configures: new Counter({ name: 'cbr_bgp_configure_total', help: 'BIRD configure commands by result', labelNames: ['result'], registers: [r] }),
      configureSeconds: new Histogram({
        name: 'cbr_bgp_configure_seconds',
        help: 'Time BIRD took to accept a configure',
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers: [r],
      }),
      withdrawFailures: new Counter({
        name: 'cbr_bgp_withdraw_failures_total',
        help: 'Failures to put a withdraw into BIRD through its config, by stage (write, configure, refused); each one starts or keeps a fallback',
        labelNames: ['stage'],
        registers: [r],
      }),
      fallback: new Gauge({
        name: 'cbr_bgp_withdraw_fallback',
        help: 'A withdraw fallback in force: 1 for protocols_disabled (BGP sessions disabled over the control socket) or bird_stopped',
        labelNames: ['mode'],
        registers: [r],
      }),
    };
    this.setFallback('none');
  }

  // ---------------- lifecycle ----------------

  async start(): Promise<void> {
    if (this.socketPath.length > MAX_UNIX_PATH)
      throw new Error(`agent.stateDir: too long for BIRD's control socket path (${this.socketPath.length} > ${MAX_UNIX_PATH} bytes)`);
    if (this.cfg.drain.wait >= this.ctx.config.lifecycle.shutdownTimeout) {
      throw new Error(
        `bgp.drain.wait: must be shorter than lifecycle.shutdownTimeout (${this.cfg.drain.wait} ms >= ${this.ctx.config.lifecycle.shutdownTimeout} ms)`,
      );
    }
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.passwords = readPasswords(this.cfg);
    this.manualDrain = existsSync(this.manualDrainPath);
    this.fileDrain = this.cfg.drain.file !== undefined && existsSync(this.cfg.drain.file);
    // Nothing is announced until the health model has had its say (see the header comment).
    this.target = 'withdraw';
    const text = this.render(this.cfg, this.target);
    writeFileAtomic(this.confPath, text);
    await checkBirdConfig(this.cfg.bird.binary, this.confPath);
    this.lastGoodText = text;
    rmSync(this.socketPath, { force: true });
    this.superviseBird();
    try {
      await waitForBird(this.control, 10_000);
    } catch (err) {
      await this.ctx.supervisor.stop(CHILD_NAME);
      throw new Error(`bgp: BIRD did not start: ${errorMessage(err)}`);
    }
    this.applied = 'withdraw';
    this.started = true;
    this.setStateGauge();
    this.registerSessionCheck();
    const onHealth = () => this.evaluate('health');
    this.ctx.health.on('change', onHealth);
    this.disposers.push(() => this.ctx.health.off('change', onHealth));
    this.addRoutes();
    this.startTimers();
    // The agent registers the external checks right after the subsystems start; deciding on the
    // next turn lets them count (they start down), so a PoP never announces before they have run.
    setImmediate(() => this.evaluate('start'));
    this.ctx.log.info({ peers: this.cfg.peers.map((p) => p.name), prefixes: this.cfg.prefixes }, 'BGP speaker started');
  }

  /** Runs BIRD under the supervisor with the file as it is on disk. */
  private superviseBird(): void {
    this.child = this.ctx.supervisor.supervise({
      name: CHILD_NAME,
      command: this.cfg.bird.binary,
      args: ['-f', '-s', this.socketPath, '-c', this.confPath, '-P', this.pidPath],
      stderrLevel: 'info',
      initialBackoffMs: 200,
      maxBackoffMs: 10_000,
      stableAfterMs: 5_000,
      stopTimeoutMs: 3_000,
    });
    this.child.on('start', () => void this.onBirdStarted());
    this.child.on('exit', (code, signal) => this.onBirdExited(code, signal));
  }

  checkReload(next: CbrConfig): Promise<void> {
    return this.checkConfig(next);
  }

  private async checkConfig(next: CbrConfig): Promise<void> {
    const n = next.bgp;
    if (n.bird.binary !== this.cfg.bird.binary) throw new Error('bgp.bird.binary: cannot change on reload; restart the agent');
    if (n.drain.wait >= next.lifecycle.shutdownTimeout) throw new Error('bgp.drain.wait: must be shorter than lifecycle.shutdownTimeout');
    const passwords = readPasswords(n);
    const candidate = join(this.dir, 'bird.conf.check');
    writeFileAtomic(candidate, renderBirdConfig({ config: n, state: this.target, passwords }));
    try {
      await checkBirdConfig(n.bird.binary, candidate);
    } finally {
      rmSync(candidate, { force: true });
    }
  }

  async reload(next: CbrConfig): Promise<void> {
    const prev = this.cfg;
    this.cfg = next.bgp;
    this.lastError = undefined;
    this.passwords = readPasswords(this.cfg);
    if (!isDeepStrictEqual(prev.sessionCheck, this.cfg.sessionCheck) || !isDeepStrictEqual(prev.peers, this.cfg.peers)) this.registerSessionCheck();
    if (prev.drain.file !== this.cfg.drain.file) this.fileDrain = this.cfg.drain.file !== undefined && existsSync(this.cfg.drain.file);
    this.startTimers();
    for (const p of prev.peers) if (!this.cfg.peers.some((q) => q.name === p.name)) this.metrics.sessionUp.remove({ peer: p.name });
    for (const p of prev.prefixes) if (!this.cfg.prefixes.includes(p)) this.metrics.prefixAnnounced.remove({ prefix: p });
    this.applied = undefined; // force a configure with the new text
    this.evaluate('reload');
    await this.waitApplied(10_000);
    if (this.lastError) this.ctx.log.warn({ error: this.lastError }, 'bgp reload: BIRD did not take the new config');
  }

  async drain(): Promise<void> {
    // The agent has set the health model to draining: evaluate() started the graceful phase.
    this.evaluate('shutdown');
    const until = Date.now() + this.cfg.drain.wait + 5_000;
    while (Date.now() < until && !(this.target === 'withdraw' && (this.applied === 'withdraw' || this.fallback !== 'none'))) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 250);
        this.waiters.add(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.drainTimer);
    clearTimeout(this.retryTimer);
    clearInterval(this.pollTimer);
    clearInterval(this.drainFileTimer);
    this.removeSessionCheck?.();
    for (const d of this.disposers.splice(0)) d();
    this.control.close();
    // SIGTERM: BIRD closes its sessions with a Cease, so the peers drop the routes at once.
    await this.ctx.supervisor.stop(CHILD_NAME);
    for (const name of [
      'cbr_bgp_session_up',
      'cbr_bgp_prefix_announced',
      'cbr_bgp_announce_state',
      'cbr_bgp_state_transitions_total',
      'cbr_bgp_seconds_since_change',
      'cbr_bgp_configure_total',
      'cbr_bgp_configure_seconds',
      'cbr_bgp_withdraw_failures_total',
      'cbr_bgp_withdraw_fallback',
    ]) {
      this.ctx.registry.removeSingleMetric(name);
    }
    this.ctx.log.info('BGP speaker stopped');
  }

  // ---------------- decisions ----------------

  private decisionInput() {
    return {
      health: this.ctx.health.state,
      agentDraining: this.ctx.health.isDraining,
      manualDrain: this.manualDrain,
      fileDrain: this.fileDrain,
      drainFile: this.cfg.drain.file,
      drainStartedAt: this.drainStartedAt,
      drainWaitMs: this.cfg.drain.wait,
      now: Date.now(),
    };
  }

  private drainReasons(): string[] {
    return drainReasons(this.decisionInput());
  }

  private evaluate(why: string): void {
    if (!this.started || this.stopped) return;
    const d = decide(this.decisionInput());
    if (d.drainStartedAt !== this.drainStartedAt) clearTimeout(this.drainTimer);
    this.drainStartedAt = d.drainStartedAt;
    this.drainPhase = d.phase;
    if (d.recheckInMs !== undefined) {
      clearTimeout(this.drainTimer);
      this.drainTimer = setTimeout(() => this.evaluate('drain wait over'), d.recheckInMs);
    }
    if (d.state !== this.target) {
      this.ctx.log.info({ from: this.target, to: d.state, why, because: d.because, drainReasons: d.drainReasons }, 'BGP announce state changed');
      this.target = d.state;
      this.lastChangeAt = Date.now();
      this.lastChangeReason = [why === 'health' ? `health ${this.ctx.health.state}` : why, ...(d.state === 'drain' ? d.drainReasons : [])].join(': ');
      this.metrics.transitions.inc({ to: d.state });
      this.setStateGauge();
    }
    void this.kick();
  }

  private setStateGauge(): void {
    for (const s of ['announce', 'drain', 'withdraw'] as const) this.metrics.state.set({ state: s }, s === this.target ? 1 : 0);
  }

  private async kick(): Promise<void> {
    if (this.applying) {
      this.applyAgain = true;
      return;
    }
    this.applying = true;
    try {
      do {
        this.applyAgain = false;
        await this.applyTarget();
      } while (this.applyAgain && !this.stopped);
    } finally {
      this.applying = false;
      for (const w of this.waiters) w();
      this.waiters.clear();
    }
  }

  private render(cfg: BgpConfig, state: AnnounceState): string {
    return renderBirdConfig({ config: cfg, state, passwords: this.passwords });
  }

  /**
   * Writes the target state into bird.conf and has BIRD load it. When that fails: an announce or a
   * drain keeps the running config (the last good file is restored) and retries; a withdraw must not
   * fail, so it falls back to disabling the BGP sessions, or to stopping BIRD, and retries the file
   * until BIRD has it (then the fallback is undone).
   */
  private async applyTarget(): Promise<void> {
    const state = this.target;
    if ((state === this.applied && this.fallback === 'none') || this.stopped) return;
    const text = this.render(this.cfg, state);
    // The file is written first so a BIRD that restarts now starts in the wanted state.
    try {
      writeFileAtomic(this.confPath, text);
    } catch (err) {
      await this.applyFailed(state, 'write', `cannot write ${this.confPath}: ${errorMessage(err)}`);
      return;
    }
    if (this.fallback === 'bird_stopped') {
      this.ctx.log.warn({ state }, 'bird.conf is writable again; starting BIRD');
      this.setFallback('none');
      this.superviseBird(); // reads the file just written; onBirdStarted configures once more
      return;
    }
    if (this.child?.state !== 'running') return; // BIRD reads the file when it comes back (onBirdStarted)
    const t0 = performance.now();
    let reply: Awaited<ReturnType<BirdControl['raw']>>;
    try {
      reply = await this.control.raw('configure');
    } catch (err) {
      // The socket failed (BIRD died or hung); the file holds the state for BIRD's restart.
      await this.applyFailed(state, 'configure', `configure: ${errorMessage(err)}`);
      return;
    }
    const ms = performance.now() - t0;
    if (isErrorReply(reply)) {
      const reason = `BIRD refused the config for ${state}: ${replyErrorText(reply)}`;
      // A refused withdraw file stays: a BIRD that restarts then fails to start, which also withdraws.
      if (state !== 'withdraw' && this.lastGoodText !== undefined) writeFileAtomicQuiet(this.confPath, this.lastGoodText, this.ctx.log);
      this.metrics.configures.inc({ result: 'refused' });
      await this.applyFailed(state, 'refused', reason);
      return;
    }
    this.applied = state;
    this.lastGoodText = text;
    this.lastConfigureMs = ms;
    this.lastError = undefined;
    this.metrics.configures.inc({ result: 'applied' });
    this.metrics.configureSeconds.observe(ms / 1000);
    this.ctx.log.info({ state, configureMs: Math.round(ms * 10) / 10 }, 'BIRD configured');
    if (this.fallback === 'protocols_disabled') await this.enablePeers();
    // Read back the sessions and exports soon, so status and metrics follow the change.
    setTimeout(() => void this.poll(), 200).unref();
  }

  /** Records a failed apply and retries in a second; a failed withdraw also starts the fallback. */
  private async applyFailed(state: AnnounceState, stage: 'write' | 'configure' | 'refused', reason: string): Promise<void> {
    this.applied = undefined;
    this.lastError = reason;
    if (stage === 'configure') this.metrics.configures.inc({ result: 'error' });
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.evaluate('retry'), 1000);
    if (state !== 'withdraw') {
      this.ctx.log.error({ state, stage, reason }, 'BIRD did not take the new state; kept the running one, retrying');
      return;
    }
    this.metrics.withdrawFailures.inc({ stage });
    // once a fallback is in force the retries only count, so the log is not flooded every second
    if (this.fallback === 'none') this.ctx.log.error({ stage, reason }, 'withdraw through bird.conf failed; falling back, retrying');
    else this.ctx.log.debug({ stage, reason, fallback: this.fallback }, 'withdraw through bird.conf still failing');
    await this.forceWithdraw();
  }

  /**
   * Withdraws without the config file: disables every BGP session over the control socket (the
   * peers drop our routes at once); when BIRD cannot be told (socket down, command refused, or BIRD
   * restarting with a file that still announces), stops BIRD.
   */
  private async forceWithdraw(): Promise<void> {
    if (this.fallback !== 'none' || this.stopped) return;
    if (this.child?.state === 'running') {
      try {
        for (const p of this.cfg.peers) await this.control.command(`disable ${peerProtocol(p)}`);
        this.setFallback('protocols_disabled');
        this.ctx.log.error({ peers: this.cfg.peers.map((p) => p.name) }, 'withdraw fallback: BGP sessions disabled over the control socket');
        return;
      } catch (err) {
        this.ctx.log.error({ err: errorMessage(err) }, 'withdraw fallback: cannot disable the BGP sessions; stopping BIRD');
      }
    }
    this.setFallback('bird_stopped');
    this.ctx.log.error('withdraw fallback: BIRD stopped until bird.conf can be written');
    await this.ctx.supervisor.stop(CHILD_NAME);
    this.child = undefined;
  }

  /** Undoes the protocols_disabled fallback once BIRD has the withdraw (or a later state) in its config. */
  private async enablePeers(): Promise<void> {
    try {
      for (const p of this.cfg.peers) await this.control.command(`enable ${peerProtocol(p)}`);
      this.setFallback('none');
      this.ctx.log.warn('withdraw fallback undone: BIRD has the state in its config; BGP sessions enabled again');
    } catch (err) {
      this.lastError = `enable after fallback: ${errorMessage(err)}`;
      this.applied = undefined; // try again on the next retry
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.evaluate('retry'), 1000);
    }
  }

  private setFallback(mode: WithdrawFallback): void {
    this.fallback = mode;
    for (const m of ['protocols_disabled', 'bird_stopped'] as const) this.metrics.fallback.set({ mode: m }, m === mode ? 1 : 0);
  }

  private async onBirdStarted(): Promise<void> {
    if (!this.started || this.stopped) return;
    this.control.reset('BIRD restarted');
    try {
      await waitForBird(this.control, 10_000);
    } catch (err) {
      this.ctx.log.warn({ err: errorMessage(err) }, 'restarted BIRD does not answer on its socket');
      return;
    }
    // BIRD read bird.conf at start; configure once more in case the target moved while it started.
    // A restarted BIRD has its sessions enabled again: a withdraw still owed is forced anew.
    this.applied = undefined;
    if (this.fallback === 'protocols_disabled') this.setFallback('none');
    this.ctx.log.info({ pid: this.child?.pid, state: this.target }, 'BIRD is back; re-applying the announce state');
    this.evaluate('bird restarted');
  }

  private onBirdExited(code: number | null, signal: NodeJS.Signals | null): void {
    this.applied = undefined;
    this.control.reset('BIRD exited');
    if (this.stopped || this.fallback === 'bird_stopped') return;
    this.ctx.log.warn({ code, signal }, 'BIRD exited; the supervisor restarts it');
    this.sessions = this.sessions.map((s) => ({ ...s, state: 'Down', up: false, info: undefined }));
    this.exported.clear();
    this.updateSessionMetrics();
  }

  // ---------------- status, metrics, checks ----------------

  private startTimers(): void {
    clearInterval(this.pollTimer);
    this.pollTimer = setInterval(() => void this.poll(), this.cfg.bird.statusInterval);
    this.pollTimer.unref();
    clearInterval(this.drainFileTimer);
    if (this.cfg.drain.file !== undefined) {
      const file = this.cfg.drain.file;
      this.drainFileTimer = setInterval(() => {
        const exists = existsSync(file);
        if (exists !== this.fileDrain) {
          this.fileDrain = exists;
          this.ctx.log.info({ file, draining: exists }, exists ? 'drain file appeared' : 'drain file removed');
          this.evaluate('drain file');
        }
      }, 500);
      this.drainFileTimer.unref();
    }
    void this.poll();
  }

  /** Session states from `show protocols` (BGP rows named peer_<name>). */
  private async readSessions(): Promise<SessionStatus[]> {
    const rows = parseProtocols(await this.control.command('show protocols'));
    return this.cfg.peers.map((p) => {
      const row = rows.find((r) => r.name === peerProtocol(p));
      const state = row ? bgpSessionState(row) : 'Down';
      return { peer: p.name, address: p.address, remoteAs: p.remoteAs, state, up: state === 'Established', since: row?.since, info: row?.info };
    });
  }

  private async poll(): Promise<void> {
    if (this.polling || this.stopped || this.child?.state !== 'running') return;
    this.polling = true;
    try {
      this.sessions = await this.readSessions();
      const exported = new Set<string>();
      for (const s of this.sessions.filter((x) => x.up)) {
        const reply = await this.control.command(`show route export ${peerProtocol({ name: s.peer })}`);
        for (const net of parseRoutePrefixes(reply)) exported.add(net);
      }
      this.exported = exported;
      this.updateSessionMetrics();
    } catch (err) {
      this.ctx.log.debug({ err: errorMessage(err) }, 'BGP status poll failed');
    } finally {
      this.polling = false;
    }
  }

  private updateSessionMetrics(): void {
    for (const s of this.sessions) this.metrics.sessionUp.set({ peer: s.peer }, s.up ? 1 : 0);
    for (const p of this.cfg.prefixes) this.metrics.prefixAnnounced.set({ prefix: p }, this.exported.has(p) ? 1 : 0);
  }

  private registerSessionCheck(): void {
    this.removeSessionCheck?.();
    this.removeSessionCheck = undefined;
    const sc = this.cfg.sessionCheck;
    if (sc.require === 'none') return;
    this.removeSessionCheck = this.ctx.health.register({
      name: 'bgp.sessions',
      intervalMs: sc.interval,
      timeoutMs: Math.min(sc.interval, 3000),
      rise: sc.rise,
      fall: sc.fall,
      run: async () => {
        if (this.child?.state !== 'running') throw new Error('BIRD is not running');
        const sessions = await this.readSessions();
        const up = sessions.filter((s) => s.up).length;
        const ok = sc.require === 'all' ? up === sessions.length : up > 0;
        if (!ok) throw new Error(`${up}/${sessions.length} sessions Established (${sessions.map((s) => `${s.peer}: ${s.state}`).join(', ')})`);
      },
    });
  }

  status(): BgpStatus {
    const phase = this.drainPhase;
    return {
      state: this.target,
      applied: this.applied,
      health: this.ctx.health.state,
      drain: {
        manual: this.manualDrain,
        file: this.fileDrain,
        health: this.ctx.health.isDraining,
        phase,
        since: this.drainStartedAt === undefined ? undefined : new Date(this.drainStartedAt).toISOString(),
        waitMs: this.cfg.drain.wait,
      },
      sessions: this.sessions,
      prefixes: this.cfg.prefixes.map((p) => ({ prefix: p, announced: this.exported.has(p) })),
      bird: {
        running: this.child?.state === 'running',
        pid: this.child?.pid,
        restarts: this.child?.restarts ?? 0,
        socket: this.socketPath,
        config: this.confPath,
      },
      lastChange: new Date(this.lastChangeAt).toISOString(),
      lastChangeReason: this.lastChangeReason,
      secondsSinceChange: Math.round((Date.now() - this.lastChangeAt) / 100) / 10,
      lastConfigureMs: this.lastConfigureMs === undefined ? undefined : Math.round(this.lastConfigureMs * 10) / 10,
      lastError: this.lastError,
      withdrawFallback: this.fallback,
    };
  }

  private async waitApplied(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (Date.now() < until && (this.applying || this.applied !== this.target) && this.child?.state === 'running' && !this.lastError) {
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private setManualDrain(on: boolean): void {
    this.manualDrain = on;
    if (on) writeFileSync(this.manualDrainPath, `${new Date().toISOString()}\n`);
    else rmSync(this.manualDrainPath, { force: true });
    this.ctx.log.info({ draining: on }, on ? 'BGP drain requested' : 'BGP undrain requested');
    this.evaluate(on ? 'cbr bgp drain' : 'cbr bgp undrain');
  }

  private addRoutes(): void {
    const { admin } = this.ctx;
    // The status page reads the speaker through the service registry (dataplane cannot import bgp/).
    this.ctx.services.provide<{ status(): BgpStatusView }>(BGP_STATUS_SERVICE, { status: () => this.status() });
    this.disposers.push(() => this.ctx.services.withdraw(BGP_STATUS_SERVICE));
    this.disposers.push(
      admin.route('GET', '/v1/bgp', async () => {
        await this.poll();
        return { body: this.status() };
      }),
    );
    this.disposers.push(
      admin.route('POST', '/v1/bgp/drain', async () => {
        this.setManualDrain(true);
        await this.waitApplied(5_000);
        return { body: this.status() };
      }),
    );
    this.disposers.push(
      admin.route('POST', '/v1/bgp/undrain', async () => {
        if (!this.manualDrain && this.drainReasons().length === 0) throw new HttpError(409, 'not draining');
        this.setManualDrain(false);
        await this.waitApplied(5_000);
        return { body: { ...this.status(), stillDrainingBecause: this.drainReasons() } };
      }),
    );
  }
}
