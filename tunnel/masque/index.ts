// tunnel/masque/: connect-udp and connect-ip over HTTP/3, the server and the `cbr connect` client.
import type { SubsystemFactory, CommandRegistrar } from '../../dataplane/index.js';
export { masqueConfigSchema } from './config.js';

/** Not built yet (issue: MASQUE tunnel termination); enabling it is refused by the agent until it lands. */
export const masqueSubsystem: SubsystemFactory | undefined = undefined;
export const registerMasqueCommands: CommandRegistrar = () => {};
