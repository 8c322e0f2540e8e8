// auth/: Zitadel JWT verification, roles, introspection, rate limits and the development issuer.
import type { SubsystemFactory, CommandRegistrar } from '../dataplane/index.js';
import { authSubsystemFactory } from './subsystem.js';
import { registerAuthCli } from './cli.js';
export { authConfigSchema, type AuthConfig } from './config.js';

/** Starts the gate from the `auth` section and provides it under AUTH_SERVICE. */
export const authSubsystem: SubsystemFactory | undefined = authSubsystemFactory;
/** `cbr auth verify`, `cbr auth token`, `cbr dev-issuer`. */
export const registerAuthCommands: CommandRegistrar = registerAuthCli;
export { AuthError, AUTH_SERVICE, type AuthGate, type AuthErrorCode, type Identity, type SessionKind } from './gate.js';
export { authHttpError } from './subsystem.js';
export { TokenGate } from './token-gate.js';
export { startDevIssuer, type DevIssuer, type DevIssuerOptions, type MintOptions, type ServiceUser } from './dev-issuer.js';
