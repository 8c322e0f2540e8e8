// tunnel/masque/: connect-udp and connect-ip over HTTP/3, the server and the `cbr connect` client.
import type { SubsystemFactory, CommandRegistrar } from '../../dataplane/index.js';
import { masqueSubsystemFactory } from './subsystem.js';
import { registerConnectCommand } from './connect.js';
export { masqueConfigSchema, type MasqueConfig } from './config.js';
export { MasqueServer, TOKEN_REFRESH_PATH, type MasqueServerOptions, type MasqueCounters } from './server.js';
export { MasqueClient, MasqueSession, MasqueHttpError, type MasqueClientOptions } from './client.js';

export const masqueSubsystem: SubsystemFactory | undefined = masqueSubsystemFactory;
export const registerMasqueCommands: CommandRegistrar = (program) => registerConnectCommand(program);
