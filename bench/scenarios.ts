/** Every bench scenario, in the order `make bench` runs them (each writes bench/results/<name>.json). */
export const SCENARIOS = ['auth', 'xdp', 'udp-io', 'masque', 'wireguard', 'failover', 'fleet'] as const;
