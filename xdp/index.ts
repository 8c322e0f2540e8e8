// xdp/: the C XDP filter and load balancer and their TypeScript control (libbpf through ffi-rs).
// This file is the folder's interface for the rest of the project: the subsystem factory, the CLI
// commands, the config section and the codecs other folders use (QUIC connection IDs, Maglev).
export { xdpSubsystem, XdpSubsystem } from './subsystem.js';
export { registerXdpCommands } from './cli.js';
export { xdpConfigSchema, type XdpConfig } from './config.js';
export { encodeCid, decodeCid, CidError, CID_MIN_LEN, CID_MAX_LEN, CID_UNROUTABLE_CONFIG, type CidFields } from './cid.js';
export { buildMaglevTable, diffTables, isPrime, DEFAULT_RING_SIZE } from './maglev.js';
export { BpfError, u32KeyBuf } from './libbpf.js';
