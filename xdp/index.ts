// xdp/: the C XDP filter and load balancer and their TypeScript control (libbpf through ffi-rs).
import type { SubsystemFactory, CommandRegistrar } from '../dataplane/index.js';
export { xdpConfigSchema } from './config.js';

/** Not built yet (issue: XDP fast path); enabling `xdp` is refused by the agent until it lands. */
export const xdpSubsystem: SubsystemFactory | undefined = undefined;
export const registerXdpCommands: CommandRegistrar = () => {};
