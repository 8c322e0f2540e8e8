// The agent: composes the subsystems in dependency order, owns the lifecycle (start, SIGHUP reload,
// SIGTERM drain and stop), the admin listener, the health model and the child supervisor.
import { mkdirSync, readFileSync } from 'node:fs';
import { isDeepStrictEqual } from 'node:util';
import type { Registry } from 'prom-client';
import { Gauge, Counter } from 'prom-client';
import {
  ConfigError,
  errorMessage,
  readSecretFile,
  createLogger,
  createMetricsRegistry,
  HealthModel,
  AdminServer,
  HttpError,
  Supervisor,
  SystemdNotifier,
  externalCheckSpec,
  ServiceRegistry,
  registerStatusPage,
  popName,
  VERSION,
  type CbrConfig,
  type Logger,
  type AgentContext,
  type Subsystem,
  type SubsystemFactory,
} from '../dataplane/index.js';
import { authSubsystem } from '../auth/index.js';
import { xdpSubsystem } from '../xdp/index.js';
import { wireguardSubsystem, masqueSubsystem } from '../tunnel/index.js';
import { bgpSubsystem } from '../bgp/index.js';
import { registrySubsystem } from '../registry/index.js';
import { configLoader } from './config/schema.js';

/** Start order: auth gates the tunnels, the filter protects them, BGP announces only what is ready. */
const SUBSYSTEM_ORDER: Array<{ section: string; factory: SubsystemFactory | undefined; enabled: (c: CbrConfig) => boolean }> = [
  { section: 'auth', factory: authSubsystem, enabled: (c) => c.auth.enabled },
  // The registry (embedded by default) before the tunnels whose peers it holds and the filter that
  // applies its deny list; it starts from its local copy, never waiting on the database.
  { section: 'registry', factory: registrySubsystem, enabled: () => true },
  { section: 'xdp', factory: xdpSubsystem, enabled: (c) => c.xdp.enabled },
  { section: 'tunnel.wireguard', factory: wireguardSubsystem, enabled: (c) => c.tunnel.wireguard.enabled },
  { section: 'tunnel.masque', factory: masqueSubsystem, enabled: (c) => c.tunnel.masque.enabled },
  { section: 'bgp', factory: bgpSubsystem, enabled: (c) => c.bgp.enabled },
];

interface Running {
  section: string;
  subsystem: Subsystem;
}

export interface AgentOptions {
  config: CbrConfig;
  /** File to re-read on SIGHUP; without one, reload re-validates the embedded defaults. */
  configPath?: string;
  env?: NodeJS.ProcessEnv;
  logger?: Logger;
}

export class Agent {
  readonly log: Logger;
  readonly registry: Registry;
  readonly health: HealthModel;
  readonly admin: AdminServer;
  readonly supervisor: Supervisor;
  readonly services = new ServiceRegistry();
  private config: CbrConfig;
  private readonly running: Running[] = [];
  private readonly notifier: SystemdNotifier;
  private removeExternalChecks: Array<() => void> = [];
  private shuttingDown?: Promise<number>;
  private reloading = false;
  private readonly startedAt = Date.now();
  private readonly reloadsTotal: Counter;
  private readonly stopStatusPage: () => void;

  constructor(private readonly opts: AgentOptions) {
    this.config = opts.config;
    const env = opts.env ?? process.env;
    this.log = opts.logger ?? createLogger(this.config.log.level, undefined, { pop: popName(this.config) });
    this.registry = createMetricsRegistry();
    this.health = new HealthModel(this.log.child({ subsystem: 'health' }), this.registry);
    this.supervisor = new Supervisor(this.log.child({ subsystem: 'supervisor' }), this.registry);
    this.admin = new AdminServer({
      listen: this.config.admin.listen,
      maxConnections: this.config.admin.maxConnections,
      apiToken: readApiToken(this.config),
      registry: this.registry,
      health: this.health,
      log: this.log.child({ subsystem: 'admin' }),
    });
    this.notifier = new SystemdNotifier(this.log.child({ subsystem: 'systemd' }), env);
    new Gauge({ name: 'cbr_build_info', help: 'Agent version', labelNames: ['version'], registers: [this.registry] }).set({ version: VERSION }, 1);
    const startedAt = this.startedAt;
    new Gauge({
      name: 'cbr_agent_start_time_seconds',
      help: 'Unix time the agent started',
      registers: [this.registry],
      collect() {
        this.set(startedAt / 1000);
      },
    });
    this.reloadsTotal = new Counter({ name: 'cbr_config_reloads_total', help: 'Config reloads by result', labelNames: ['result'], registers: [this.registry] });
    this.addApiRoutes();
    const { registry, health, supervisor, services } = this;
    // The page samples counters every 2 s for its charts: only when there is a listener to show it.
    this.stopStatusPage = !this.config.admin.enabled
      ? () => {}
      : registerStatusPage(this.admin, { pop: this.popName, version: VERSION, startedAt, registry, health, supervisor, services });
  }

  private get popName(): string {
    return popName(this.config);
  }

  get currentConfig(): CbrConfig {
    return this.config;
  }

  private context(section: string): AgentContext {
    const agent = this;
    return {
      get config() {
        return agent.config;
      },
      log: this.log.child({ subsystem: section }),
      registry: this.registry,
      health: this.health,
      admin: this.admin,
      supervisor: this.supervisor,
      services: this.services,
      stateDir: this.config.agent.stateDir,
    };
  }

  /** Starts everything; on failure stops what started and rethrows. */
  async start(): Promise<void> {
    const needsState = SUBSYSTEM_ORDER.some((s) => s.enabled(this.config));
    if (needsState) {
      try {
        mkdirSync(this.config.agent.stateDir, { recursive: true, mode: 0o700 });
      } catch (err) {
        throw new Error(`agent.stateDir: cannot create ${this.config.agent.stateDir}: ${errorMessage(err)}`);
      }
    }
    if (this.config.admin.enabled) await this.admin.start();
    try {
      if (this.config.clientApi.enabled) {
        const tls = readClientTls(this.config);
        await this.admin.startClient({ listen: this.config.clientApi.listen, maxConnections: this.config.clientApi.maxConnections, ...tls });
      }
      for (const entry of SUBSYSTEM_ORDER) {
        if (entry.enabled(this.config)) await this.startSubsystem(entry);
      }
      this.applyExternalChecks();
    } catch (err) {
      await this.stopSubsystems();
      await this.admin.stop();
      throw err;
    }
    this.notifier.ready(`serving; health ${this.health.state}`);
    this.notifier.startWatchdog();
    this.health.on('change', (to) => this.notifier.status(`health ${to}`));
    this.log.info({ version: VERSION, subsystems: this.running.map((r) => r.section), admin: this.admin.address }, 'agent started');
  }

  private async startSubsystem(entry: (typeof SUBSYSTEM_ORDER)[number]): Promise<void> {
    if (!entry.factory) throw new Error(`${entry.section}.enabled: the ${entry.section} subsystem is not part of this build yet; set enabled: false`);
    const subsystem = entry.factory.create(this.context(entry.section));
    this.log.info({ subsystem: entry.section }, 'starting subsystem');
    await subsystem.start();
    this.running.push({ section: entry.section, subsystem });
  }

  private applyExternalChecks(): void {
    for (const remove of this.removeExternalChecks) remove();
    this.removeExternalChecks = this.config.health.checks.map((c) => this.health.register(externalCheckSpec(c)));
  }

  /** SIGHUP: re-read and validate; if every subsystem accepts the new config, apply it. */
  async reload(): Promise<boolean> {
    if (this.reloading || this.shuttingDown) {
      this.log.warn('reload ignored: another reload or a shutdown is in progress');
      return false;
    }
    this.reloading = true;
    this.notifier.reloading();
    try {
      let next: CbrConfig;
      try {
        next = this.opts.configPath ? configLoader.loadFile(this.opts.configPath, this.opts.env ?? process.env).config : configLoader.validate({});
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
        this.log.error({ problems }, 'reload rejected: invalid config; keeping the running config');
        this.reloadsTotal.inc({ result: 'rejected' });
        return false;
      }
      const prev = this.config;
      const problems: string[] = [];
      if (next.admin.listen !== prev.admin.listen) problems.push('admin.listen: cannot change on reload; restart the agent');
      if (next.agent.stateDir !== prev.agent.stateDir) problems.push('agent.stateDir: cannot change on reload; restart the agent');
      if (!isDeepStrictEqual({ ...next.clientApi, certFile: 0, keyFile: 0 }, { ...prev.clientApi, certFile: 0, keyFile: 0 }))
        problems.push('clientApi: only certFile and keyFile can change on reload; restart the agent');
      let nextClientTls: ClientTls | undefined;
      try {
        if (next.clientApi.enabled) nextClientTls = readClientTls(next);
      } catch (err) {
        problems.push(errorMessage(err));
      }
      let nextApiToken: string | undefined;
      try {
        nextApiToken = readApiToken(next);
      } catch (err) {
        problems.push(...(err instanceof ConfigError ? err.problems : [errorMessage(err)]));
      }
      for (const r of this.running) {
        const entry = SUBSYSTEM_ORDER.find((e) => e.section === r.section)!;
        if (!entry.enabled(next)) continue;
        try {
          await r.subsystem.checkReload?.(next);
        } catch (err) {
          problems.push(errorMessage(err));
        }
      }
      for (const entry of SUBSYSTEM_ORDER) {
        if (entry.enabled(next) && !this.running.some((r) => r.section === entry.section) && !entry.factory) {
          problems.push(`${entry.section}.enabled: the ${entry.section} subsystem is not part of this build yet; set enabled: false`);
        }
      }
      if (problems.length) {
        this.log.error({ problems }, 'reload rejected; keeping the running config');
        this.reloadsTotal.inc({ result: 'rejected' });
        return false;
      }
      this.config = next;
      this.log.level = next.log.level;
      this.admin.setApiToken(nextApiToken);
      if (nextClientTls) this.admin.setClientTls(nextClientTls.cert, nextClientTls.key);
      // Stop what was switched off (reverse order), reload what stays, start what was switched on.
      for (const r of [...this.running].reverse()) {
        const entry = SUBSYSTEM_ORDER.find((e) => e.section === r.section)!;
        if (!entry.enabled(next)) {
          this.log.info({ subsystem: r.section }, 'stopping subsystem (disabled by reload)');
          await r.subsystem.stop();
          this.running.splice(this.running.indexOf(r), 1);
        }
      }
      for (const entry of SUBSYSTEM_ORDER) {
        if (!entry.enabled(next)) continue;
        const r = this.running.find((x) => x.section === entry.section);
        if (r) await r.subsystem.reload?.(next);
        else {
          await this.startSubsystem(entry);
          // keep running[] in start order
          this.running.sort((a, b) => SUBSYSTEM_ORDER.findIndex((e) => e.section === a.section) - SUBSYSTEM_ORDER.findIndex((e) => e.section === b.section));
        }
      }
      if (!isDeepStrictEqual(next.health.checks, prev.health.checks)) this.applyExternalChecks();
      this.reloadsTotal.inc({ result: 'applied' });
      this.log.info('config reloaded');
      return true;
    } catch (err) {
      this.reloadsTotal.inc({ result: 'failed' });
      this.log.error({ err }, 'reload failed while applying; some changes may be in effect');
      return false;
    } finally {
      this.reloading = false;
      this.notifier.ready(`serving; health ${this.health.state}`);
    }
  }

  /** Graceful shutdown: drain, wait lifecycle.drainTime, stop in reverse order. Resolves to the exit code. */
  shutdown(reason: string): Promise<number> {
    this.shuttingDown ??= this.doShutdown(reason);
    return this.shuttingDown;
  }

  private async doShutdown(reason: string): Promise<number> {
    const { shutdownTimeout, drainTime } = this.config.lifecycle;
    this.log.info({ reason, shutdownTimeoutMs: shutdownTimeout }, 'shutting down');
    this.notifier.stopping();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<number>((resolve) => {
      timer = setTimeout(() => {
        this.log.error({ shutdownTimeoutMs: shutdownTimeout }, 'graceful shutdown did not finish in time; killing children and exiting');
        this.supervisor.killAllNow();
        resolve(1);
      }, shutdownTimeout);
      timer.unref();
    });
    const graceful = (async () => {
      this.health.setDraining(true);
      await Promise.all(
        [...this.running].reverse().map(async (r) => {
          try {
            await r.subsystem.drain?.();
          } catch (err) {
            this.log.warn({ err, subsystem: r.section }, 'drain failed');
          }
        }),
      );
      if (drainTime > 0) await new Promise((r) => setTimeout(r, drainTime));
      await this.stopSubsystems();
      this.health.stop();
      this.stopStatusPage();
      await this.supervisor.stopAll();
      await this.admin.stop();
      return 0;
    })();
    const code = await Promise.race([graceful, deadline]);
    clearTimeout(timer);
    this.notifier.close();
    this.log.info({ code }, 'agent stopped');
    return code;
  }

  private async stopSubsystems(): Promise<void> {
    for (const r of [...this.running].reverse()) {
      try {
        this.log.info({ subsystem: r.section }, 'stopping subsystem');
        await r.subsystem.stop();
      } catch (err) {
        this.log.error({ err, subsystem: r.section }, 'subsystem stop failed');
      }
      this.running.splice(this.running.indexOf(r), 1);
    }
  }

  private addApiRoutes(): void {
    this.admin.route('GET', '/v1/status', () => ({
      body: {
        version: VERSION,
        pop: this.popName,
        pid: process.pid,
        uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
        subsystems: this.running.map((r) => r.section),
        health: this.health.snapshot(),
        children: this.supervisor.list().map((c) => ({ name: c.spec.name, state: c.state, pid: c.pid, restarts: c.restarts })),
      },
    }));
    this.admin.route('POST', '/v1/drain', () => {
      this.health.setDraining(true);
      return { body: { state: this.health.state } };
    });
    this.admin.route('POST', '/v1/undrain', () => {
      if (this.shuttingDown) throw new HttpError(409, 'the agent is shutting down');
      this.health.setDraining(false);
      return { body: { state: this.health.state } };
    });
    this.admin.route('POST', '/v1/reload', async () => {
      const ok = await this.reload();
      if (!ok) throw new HttpError(409, 'reload rejected; see the agent log for the problems', {}, 'CONFIG_INVALID');
      return { body: { reloaded: true } };
    });
  }

  /** Wires SIGTERM/SIGINT/SIGHUP; resolves with the exit code once shut down. */
  runUntilSignalled(): Promise<number> {
    return new Promise((resolve) => {
      const onStop = (sig: NodeJS.Signals) => {
        if (this.shuttingDown) {
          this.log.warn({ signal: sig }, 'already shutting down');
          return;
        }
        void this.shutdown(sig).then(resolve);
      };
      process.on('SIGTERM', onStop);
      process.on('SIGINT', onStop);
      process.on('SIGHUP', () => void this.reload());
    });
  }
}

interface ClientTls {
  cert: Buffer;
  key: Buffer;
}

/** The client listener's certificate and key: its own files, else the MASQUE listener's (one certificate per PoP name). */
function readClientTls(config: CbrConfig): ClientTls {
  const certFile = config.clientApi.certFile ?? config.tunnel.masque.tls?.certFile;
  const keyFile = config.clientApi.keyFile ?? config.tunnel.masque.tls?.keyFile;
  if (!certFile || !keyFile) throw new Error('clientApi.certFile: set certFile and keyFile (or tunnel.masque.tls) to serve clients over HTTPS');
  const read = (file: string, field: string) => {
    try {
      return readFileSync(file);
    } catch (err) {
      throw new Error(`${field}: cannot read ${file}: ${errorMessage(err)}`);
    }
  };
  return { cert: read(certFile, 'clientApi.certFile'), key: read(keyFile, 'clientApi.keyFile') };
}

function readApiToken(config: CbrConfig): string | undefined {
  if (config.admin.apiToken) return config.admin.apiToken;
  if (!config.admin.apiTokenFile) return undefined;
  let token: string;
  try {
    // refuses a file the group or others can read, naming it and its mode
    token = readSecretFile(config.admin.apiTokenFile, 'admin.apiTokenFile').trim();
  } catch (err) {
    throw new ConfigError([errorMessage(err)], config.admin.apiTokenFile);
  }
  if (token.length < 16) throw new ConfigError(['admin.apiTokenFile: expected at least 16 characters'], config.admin.apiTokenFile);
  return token;
}
