// tunnel/wireguard/: supervised wireguard-go, UAPI codec and client, JWT-gated peer registration.
import type { SubsystemFactory, CommandRegistrar } from '../../dataplane/index.js';
export { wireguardConfigSchema } from './config.js';

/** Not built yet (issue: WireGuard termination); enabling it is refused by the agent until it lands. */
export const wireguardSubsystem: SubsystemFactory | undefined = undefined;
export const registerWireguardCommands: CommandRegistrar = () => {};
