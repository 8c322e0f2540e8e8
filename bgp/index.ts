// bgp/: BIRD config rendering, control-socket client, speaker supervision, announce/drain/withdraw.
import type { SubsystemFactory, CommandRegistrar } from '../dataplane/index.js';
export { bgpConfigSchema } from './config.js';

/** Not built yet (issue: anycast through BIRD); enabling `bgp` is refused by the agent until it lands. */
export const bgpSubsystem: SubsystemFactory | undefined = undefined;
export const registerBgpCommands: CommandRegistrar = () => {};
