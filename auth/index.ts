// auth/: Zitadel JWT verification, roles, introspection, rate limits and the development issuer.
import type { SubsystemFactory, CommandRegistrar } from '../dataplane/index.js';
export { authConfigSchema } from './config.js';

/** Not built yet (issue: Zitadel JWT gate); enabling `auth` is refused by the agent until it lands. */
export const authSubsystem: SubsystemFactory | undefined = undefined;
export const registerAuthCommands: CommandRegistrar = () => {};
export { AuthError, AUTH_ERROR_STATUS, AUTH_SERVICE, type AuthGate, type AuthErrorCode, type Identity, type SessionKind } from './gate.js';
