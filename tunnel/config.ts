// The `tunnel` section: one subsection per tunnel kind, each declared in its own folder.
import type { MasqueConfig } from './masque/index.js';
import type { WireguardConfig } from './wireguard/index.js';

export interface TunnelConfig {
  masque: MasqueConfig;
  wireguard: WireguardConfig;
}

// This section's place in the whole config (see dataplane/config/base.ts).
declare module '../dataplane/config/base.js' {
  interface ConfigSections {
    tunnel: TunnelConfig;
  }
}
