// tunnel/: client tunnel termination — MASQUE over HTTP/3 (quic/, h3/, masque/) and WireGuard (wireguard/).
export { masqueSubsystem, registerMasqueCommands, masqueConfigSchema } from './masque/index.js';
export { wireguardSubsystem, registerWireguardCommands, wireguardConfigSchema } from './wireguard/index.js';
export { egressConfigSchema, type TunnelConfig, type EgressConfig } from './config.js';
