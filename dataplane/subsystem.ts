// The contract between the agent and its subsystems (auth, xdp, tunnel.wireguard, tunnel.masque, bgp).
// Each subsystem folder's index.ts exports a SubsystemFactory; agent/agent.ts composes them.
import type { Command } from 'commander';
import type { Registry } from 'prom-client';
import type { CbrConfig } from './config/base.js';
import type { Logger } from './log.js';
import type { HealthModel } from './health.js';
import type { AdminServer } from './admin.js';
import type { Supervisor } from './supervisor.js';

/** Live objects one subsystem offers the others (e.g. auth's token gate), looked up by name. */
export class ServiceRegistry {
  private readonly services = new Map<string, unknown>();
  provide<T>(name: string, service: T): void {
    this.services.set(name, service);
  }
  withdraw(name: string): void {
    this.services.delete(name);
  }
  get<T>(name: string): T | undefined {
    return this.services.get(name) as T | undefined;
  }
  require<T>(name: string, by: string): T {
    const s = this.services.get(name);
    if (s === undefined) throw new Error(`${by} needs the ${name} subsystem: enable it in the config`);
    return s as T;
  }
}

export interface AgentContext {
  /** The config in force; replaced on a successful reload before reload() is called. */
  readonly config: CbrConfig;
  readonly log: Logger;
  readonly registry: Registry;
  readonly health: HealthModel;
  readonly admin: AdminServer;
  readonly supervisor: Supervisor;
  readonly services: ServiceRegistry;
  /** agent.stateDir, created before any subsystem starts. */
  readonly stateDir: string;
}

export interface Subsystem {
  /** Starts serving; throws with a message naming the config field when it cannot. */
  start(): Promise<void>;
  /** Throws (with a field path in the message) when `next` cannot be applied; called for every subsystem before any applies. */
  checkReload?(next: CbrConfig): Promise<void> | void;
  /** Applies a new config without dropping established sessions. */
  reload?(next: CbrConfig): Promise<void>;
  /** Maintenance drain before stop (e.g. BGP graceful shutdown); bounded by lifecycle.shutdownTimeout. */
  drain?(): Promise<void>;
  stop(): Promise<void>;
}

export interface SubsystemFactory {
  /** The config section's path, e.g. `tunnel.masque`. */
  readonly name: string;
  enabled(config: CbrConfig): boolean;
  create(ctx: AgentContext): Subsystem;
}

/** Subsystems add their CLI commands (`cbr xdp …`, `cbr bgp …`) through this. */
export type CommandRegistrar = (program: Command) => void;
