// The scorecard: which metric of which scenario is compared with which baseline, and the goal.
// Keys are the contract of each issue (bench/results/<scenario>.json), so keep them stable.

export type Goal =
  /** value >= n */
  | { kind: 'atLeast'; n: number }
  /** value <= n */
  | { kind: 'atMost'; n: number }
  /** value / baseline >= n (throughput-like) */
  | { kind: 'ratioAtLeast'; n: number }
  /** value / baseline <= n (cost-like: ns, ms) */
  | { kind: 'ratioAtMost'; n: number }
  /** (value - ref) <= (baseline - ref): our overhead over `ref` no worse than the baseline's */
  | { kind: 'overheadNoWorse'; ref: string }
  /** reported, no goal */
  | { kind: 'info' };

export interface ScoreRow {
  scenario: string;
  metric: string;
  baseline?: string;
  goal: Goal;
  /** A second condition: value must also beat this other metric (higher is better). */
  alsoAbove?: string;
}

export const SCORECARD: ScoreRow[] = [
  // issue 13: the whole gate (no token cache) against the bare signature check of the same tokens
  { scenario: 'auth', metric: 'verify_per_s_rs256', baseline: 'verify_per_s_rs256_node_crypto', goal: { kind: 'ratioAtLeast', n: 0.9 } },
  { scenario: 'auth', metric: 'verify_per_s_es256', baseline: 'verify_per_s_es256_node_crypto', goal: { kind: 'ratioAtLeast', n: 0.9 } },
  { scenario: 'auth', metric: 'verify_p99_us', goal: { kind: 'info' } },
  // XDP: the scored goal is the CPU a flood costs per dropped packet against nftables in the same run
  // (the XDP paper: 24 Mpps dropped on one core against 4.8 Mpps for iptables raw, on a NIC). It applies
  // to the frames source (live-frames test_run redirected into the PoP veth: XDP sees an xdp_frame,
  // no skb, as from a NIC's DMA buffer). The _skb figures (trafgen: native XDP on veth first copies
  // each skb into a page-pool page, which no NIC does) are reported beside them. Test-run figures are
  // reported beside the bare XDP_PASS program (mostly the test loop itself, so a ratio to it says
  // little once any map is read); the flood goodput ratio is reported (see xdp/README.md on veth).
  { scenario: 'xdp', metric: 'ns_filter_drop_per_pkt_xdp', baseline: 'ns_drop_per_pkt_nftables', goal: { kind: 'ratioAtMost', n: 0.25 } },
  { scenario: 'xdp', metric: 'ns_drop_per_pkt_xdp_bare_drop', baseline: 'ns_drop_per_pkt_nftables', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_drop_per_pkt_xdp_skb', baseline: 'ns_drop_per_pkt_nftables_skb', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_drop_per_pkt_xdp_generic_skb', baseline: 'ns_drop_per_pkt_nftables_skb', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_drop_per_pkt_xdp_bare_drop_skb', baseline: 'ns_drop_per_pkt_nftables_skb', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_pass', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_deny_100k', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_deny_100k_trie', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_filter_ratelimit', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_lb_hash', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_lb_cid', baseline: 'ns_bare_pass', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_lb_hash_over_bare', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'ns_lb_cid_over_bare', goal: { kind: 'info' } },
  { scenario: 'xdp', metric: 'flood_goodput_ratio_xdp', baseline: 'flood_goodput_ratio_nftables', goal: { kind: 'info' } },
  { scenario: 'udp-io', metric: 'udp_kpps_batched_gso_gro', baseline: 'udp_kpps_dgram', goal: { kind: 'ratioAtLeast', n: 3 } },
  { scenario: 'udp-io', metric: 'udp_kpps_batched', baseline: 'udp_kpps_dgram', goal: { kind: 'info' } },
  // issue 13: connect-ip 1.5x wireguard-go (stretch: 1 Gbit/s), connect-udp 3x the 49 kpps of before,
  // setups 0.7x a bare QUIC handshake loop, all in the same run
  { scenario: 'masque', metric: 'tcp_gbps_masque_ip', baseline: 'tcp_gbps_wireguard_go', goal: { kind: 'ratioAtLeast', n: 1.5 } },
  { scenario: 'masque', metric: 'tcp_gbps_wireguard_go', baseline: 'tcp_gbps_direct', goal: { kind: 'info' } },
  { scenario: 'masque', metric: 'rtt_ms_masque_ip', baseline: 'rtt_ms_wireguard_go', goal: { kind: 'overheadNoWorse', ref: 'rtt_ms_direct' } },
  { scenario: 'masque', metric: 'udp_relay_kpps', goal: { kind: 'atLeast', n: 147 } },
  { scenario: 'masque', metric: 'session_setups_per_s', baseline: 'quic_handshakes_per_s_bare', goal: { kind: 'ratioAtLeast', n: 0.7 } },
  { scenario: 'masque', metric: 'jwt_verify_per_s_rs256_bare', goal: { kind: 'info' } },
  { scenario: 'masque', metric: 'kb_per_idle_session_10k', goal: { kind: 'atMost', n: 20 } },
  { scenario: 'wireguard', metric: 'tcp_gbps_supervised', baseline: 'tcp_gbps_plain', goal: { kind: 'ratioAtLeast', n: 0.95 } },
  { scenario: 'wireguard', metric: 'registrations_per_s', goal: { kind: 'info' } },
  { scenario: 'failover', metric: 'withdraw_ms_p50', baseline: 'baseline_withdraw_ms_p50', goal: { kind: 'atMost', n: 1000 } },
  { scenario: 'failover', metric: 'withdraw_ms_p99', goal: { kind: 'info' } },
  { scenario: 'failover', metric: 'loss_window_ms_p50', baseline: 'baseline_loss_window_ms_p50', goal: { kind: 'atMost', n: 2000 } },
  { scenario: 'failover', metric: 'loss_window_ms_p99', goal: { kind: 'info' } },
  // issue 11: the fleet on one PostgreSQL registry; stock WireGuard clients and cbr connect across PoPs
  { scenario: 'fleet', metric: 'peer_propagation_ms_p50', goal: { kind: 'info' } },
  { scenario: 'fleet', metric: 'peer_propagation_ms_p99', goal: { kind: 'atMost', n: 1000 } },
  { scenario: 'fleet', metric: 'registrations_per_s_postgres', baseline: 'registrations_per_s_sqlite', goal: { kind: 'ratioAtLeast', n: 0.5 } },
  { scenario: 'fleet', metric: 'masque_failover_gap_ms_p50', baseline: 'anycast_failover_gap_ms_p50', goal: { kind: 'atMost', n: 1500 } },
  { scenario: 'fleet', metric: 'wireguard_failover_gap_ms_p50', baseline: 'anycast_failover_gap_ms_p50', goal: { kind: 'atMost', n: 1500 } },
  { scenario: 'fleet', metric: 'anycast_failover_gap_ms_p50', goal: { kind: 'info' } },
  { scenario: 'fleet', metric: 'wireguard_restart_gap_ms_p50', goal: { kind: 'atMost', n: 2000 } },
];

export function describeGoal(row: ScoreRow): string {
  const g = row.goal;
  switch (g.kind) {
    case 'atLeast':
      return `>= ${g.n}${row.alsoAbove ? ` and > ${row.alsoAbove}` : ''}`;
    case 'atMost':
      return `<= ${g.n}`;
    case 'ratioAtLeast':
      return `>= ${g.n}x baseline`;
    case 'ratioAtMost':
      return `<= ${g.n}x baseline`;
    case 'overheadNoWorse':
      return `overhead over ${g.ref} <= baseline's`;
    case 'info':
      return '(reported)';
  }
}

/** true / false when the goal can be judged, undefined when a needed value is missing or there is no goal. */
export function judge(row: ScoreRow, metrics: Record<string, number | undefined>): boolean | undefined {
  const v = metrics[row.metric];
  if (v === undefined) return undefined;
  const b = row.baseline ? metrics[row.baseline] : undefined;
  const also = row.alsoAbove ? metrics[row.alsoAbove] : undefined;
  if (row.alsoAbove && also !== undefined && !(v > also)) return false;
  const g = row.goal;
  switch (g.kind) {
    case 'atLeast':
      return v >= g.n;
    case 'atMost':
      return v <= g.n;
    case 'ratioAtLeast':
      return b === undefined || b === 0 ? undefined : v / b >= g.n;
    case 'ratioAtMost':
      return b === undefined || b === 0 ? undefined : v / b <= g.n;
    case 'overheadNoWorse': {
      const ref = metrics[g.ref];
      return b === undefined || ref === undefined ? undefined : v - ref <= b - ref;
    }
    case 'info':
      return undefined;
  }
}
