/* CloudBridge XDP filter: the PoP's first line. Parses Ethernet (up to two VLAN tags), IPv4 (with
 * options) and IPv6 (bounded extension-header walk), TCP/UDP/ICMP; decides by allow/deny prefix
 * lists, fragment and malformed policies, the service protocol/port policy and per-source token
 * buckets; counts every verdict; and tail-calls the load balancer for what it passes to a VIP
 * address.
 *
 * The common pass path is kept cheap: config flags say which lists are empty (no LPM lookup then),
 * whether the policy and the LB are on; service and VIP addresses are found in one inlined array
 * probe (cbr_dst) instead of hash lookups, the port policy is one bit in an array value, and only
 * packets to a VIP address pay for the tail call and the per-CPU hand-over slot.
 *
 * Parsing lives in parse.bpf.h; the helpers here decide. */
#include "parse.bpf.h"

/* The deny/allow lists: one LPM trie per list and family (the loader sets the configured size). */
#define CBR_LPM_LIST(name, key_type)                         \
	struct {                                             \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);         \
		__uint(max_entries, CBR_LIST_ENTRIES);       \
		__uint(map_flags, BPF_F_NO_PREALLOC);        \
		__type(key, key_type);                       \
		__type(value, __u32);                        \
	} name SEC(".maps")

CBR_LPM_LIST(cbr_deny4, struct cbr_lpm4);
CBR_LPM_LIST(cbr_deny6, struct cbr_lpm6);
CBR_LPM_LIST(cbr_allow4, struct cbr_lpm4);
CBR_LPM_LIST(cbr_allow6, struct cbr_lpm6);

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_PRE4_ENTRIES);
	__type(key, __u32);
	__type(value, struct cbr_pre4);
} cbr_pre4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, CBR_RL_SOURCES); /* the loader sets the configured size */
	__type(key, struct cbr_rl_key);
	__type(value, struct cbr_rl_state);
} cbr_rl SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cbr_rl_state);
} cbr_rl_new SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_DST_SLOTS);
	__type(key, __u32);
	__type(value, struct cbr_dst);
} cbr_dst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cbr_ports);
} cbr_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, CBR_PROGS);
	__type(key, __u32);
	__type(value, __u32);
} cbr_progs SEC(".maps");

/* Refills a token bucket (tokens are nanoseconds of credit) up to `burst` and spends one packet's
 * `cost`; 1 when there is not enough credit. */
static __always_inline int bucket_take(struct cbr_rl_state *st, __u64 now, __u64 cost, __u64 burst)
{
	__u64 elapsed = now > st->last_ns ? now - st->last_ns : 0;
	__u64 tokens = st->tokens_ns;
	if (elapsed >= burst || tokens + elapsed >= burst)
		tokens = burst;
	else
		tokens += elapsed;
	st->last_ns = now;
	if (tokens < cost) {
		st->tokens_ns = tokens;
		return 1;
	}
	st->tokens_ns = tokens - cost;
	return 0;
}

#define CBR_RL_OK 0
#define CBR_RL_SOURCE 1 /* the source's own bucket is empty */
#define CBR_RL_NEW 2    /* an untracked source, and the shared bucket for new sources is empty */

/* Token bucket per source, behind one shared bucket for sources not tracked yet: without it a
 * source never seen starts with a full bucket, and a flood from random (spoofed) sources is never
 * limited. A refused new source gets no bucket, so such a flood does not churn the tracked ones out
 * of the LRU either. Buckets are shared between CPUs without a lock: two CPUs racing on one bucket
 * can each spend the same token, which costs at most one packet per race and keeps the fast path
 * lock-free. */
static __always_inline int over_rate(const struct cbr_config *cfg, struct cbr_rl_key *key)
{
	/* The precise clock costs ~35 ns a read on a VM (kvm-clock); the tick clock ~5 ns. With buckets
	 * deeper than two ticks of credit, refilling once a tick loses nothing: the rate holds exactly over
	 * time and a packet is at worst judged one tick early (stricter). The control plane decides. */
	__u64 now = (cfg->flags & CBR_F_RL_COARSE) ? bpf_ktime_get_coarse_ns() : bpf_ktime_get_ns();
	struct cbr_rl_state *st = bpf_map_lookup_elem(&cbr_rl, key);
	if (st)
		return bucket_take(st, now, cfg->rl_cost_ns, cfg->rl_burst_ns) ? CBR_RL_SOURCE : CBR_RL_OK;
	__u32 zero = 0;
	struct cbr_rl_state *shared = bpf_map_lookup_elem(&cbr_rl_new, &zero);
	if (shared && bucket_take(shared, now, cfg->rl_new_cost_ns, cfg->rl_new_burst_ns))
		return CBR_RL_NEW;
	struct cbr_rl_state fresh = { .tokens_ns = cfg->rl_burst_ns - cfg->rl_cost_ns, .last_ns = now };
	if (cfg->rl_burst_ns < cfg->rl_cost_ns)
		fresh.tokens_ns = 0;
	bpf_map_update_elem(&cbr_rl, key, &fresh, BPF_ANY);
	return CBR_RL_OK;
}

/* Flags of a destination address in cbr_dst (0: not one we know). `w` are its 32-bit words as
 * loaded from the packet (one for IPv4, four for IPv6). */
static __always_inline __u32 dst_flags(__u8 family, const __u32 *w)
{
	__u32 x = family == 4 ? w[0] : (w[0] ^ w[1] ^ w[2] ^ w[3]);
	__u32 home = (x * CBR_DST_MULT) >> (32 - CBR_DST_BITS);
#pragma unroll
	for (__u32 i = 0; i < CBR_DST_PROBES; i++) {
		__u32 idx = (home + i) & (CBR_DST_SLOTS - 1);
		struct cbr_dst *d = bpf_map_lookup_elem(&cbr_dst, &idx);
		if (!d || !d->family)
			return 0;
		const __u32 *a = (const __u32 *)d->addr;
		if (d->family == family && a[0] == w[0] &&
		    (family == 4 || (a[1] == w[1] && a[2] == w[2] && a[3] == w[3])))
			return d->flags;
	}
	return 0;
}

/* The protocol/port policy: whether l4/dport may reach a service address. */
static __always_inline int port_allowed(__u8 l4, __be16 dport)
{
	__u32 zero = 0;
	struct cbr_ports *ports = bpf_map_lookup_elem(&cbr_ports, &zero);
	if (!ports)
		return 0;
	__u32 port = bpf_ntohs(dport);
	__u32 word = (port >> 6) & 1023;
	__u64 bit = 1ull << (port & 63);
	if (l4 == IPPROTO_UDP)
		return (ports->udp[word] & bit) != 0;
	if (l4 == IPPROTO_TCP)
		return (ports->tcp[word] & bit) != 0;
	if (l4 == IPPROTO_ICMP || l4 == IPPROTO_ICMPV6)
		return ports->icmp & 1;
	return 0;
}

/* The IPv4 lists: the /24 prefilter says which tries to ask, then the tries. An allow match sets
 * *reason (it skips the rate limit later); a deny match is the verdict. */
static __always_inline int list_verdict4(struct xdp_md *ctx, __u32 flags, const struct cbr_pkt *p, __u32 *reason)
{
	int ask_allow = !(flags & CBR_F_ALLOW4_EMPTY);
	int ask_deny = !(flags & CBR_F_DENY4_EMPTY);
	if (!(ask_allow | ask_deny))
		return CBR_NEXT;
	if (flags & CBR_F_PRE4) {
		__u32 s24 = bpf_ntohl(p->saddr[0]) >> 8;
		__u32 idx = s24 >> 6;
		struct cbr_pre4 *pre = bpf_map_lookup_elem(&cbr_pre4, &idx);
		if (pre) {
			__u64 bit = 1ull << (s24 & 63);
			ask_allow = ask_allow && (pre->allow & bit);
			if (ask_deny && !ask_allow && (pre->deny_full & bit))
				return cbr_count(ctx, CBR_ACT_DROP, CBR_R_DENYLIST);
			ask_deny = ask_deny && (pre->deny & bit);
		}
	}
	struct cbr_lpm4 k4 = { .prefixlen = 32 };
	__builtin_memcpy(k4.addr, &p->saddr[0], 4);
	if (ask_allow && bpf_map_lookup_elem(&cbr_allow4, &k4))
		*reason = CBR_R_ALLOWLIST;
	else if (ask_deny && bpf_map_lookup_elem(&cbr_deny4, &k4))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_DENYLIST);
	return CBR_NEXT;
}

/* The IPv6 lists (no prefilter). */
static __always_inline int list_verdict6(struct xdp_md *ctx, __u32 flags, const struct cbr_pkt *p, __u32 *reason)
{
	if ((flags & (CBR_F_ALLOW6_EMPTY | CBR_F_DENY6_EMPTY)) == (CBR_F_ALLOW6_EMPTY | CBR_F_DENY6_EMPTY))
		return CBR_NEXT;
	struct cbr_lpm6 k6 = { .prefixlen = 128 };
	__builtin_memcpy(k6.addr, p->saddr, 16);
	if (!(flags & CBR_F_ALLOW6_EMPTY) && bpf_map_lookup_elem(&cbr_allow6, &k6))
		*reason = CBR_R_ALLOWLIST;
	else if (!(flags & CBR_F_DENY6_EMPTY) && bpf_map_lookup_elem(&cbr_deny6, &k6))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_DENYLIST);
	return CBR_NEXT;
}

/* After the lists: the service policy, the rate limit, fragments, then the hand-over to the LB for
 * packets to a VIP address. */
static __always_inline int final_verdict(struct xdp_md *ctx, const struct cbr_config *cfg, const struct cbr_pkt *p, __u32 reason)
{
	__u32 flags = cfg->flags;
	/* only the listed protocols/ports reach the PoP's service addresses */
	__u32 dflags = 0;
	if (flags & (CBR_F_POLICY | CBR_F_LB))
		dflags = dst_flags(p->family, p->daddr);
	if ((flags & CBR_F_POLICY) && (dflags & CBR_DST_F_SERVICE) && p->frag != 2 && !port_allowed(p->l4, p->dport))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_POLICY);

	if (reason != CBR_R_ALLOWLIST && (flags & CBR_F_RATELIMIT)) {
		struct cbr_rl_key rlk = { .family = p->family };
		__u32 *a = (__u32 *)rlk.addr; /* the /32, or the /64 for IPv6 */
		a[0] = p->saddr[0];
		if (p->family == 6)
			a[1] = p->saddr[1];
		int over = over_rate(cfg, &rlk);
		if (over)
			return cbr_count(ctx, CBR_ACT_DROP, over == CBR_RL_NEW ? CBR_R_RATELIMIT_NEW : CBR_R_RATELIMIT);
	}

	if (p->frag)
		return cbr_count(ctx, CBR_ACT_PASS, CBR_R_FRAGMENT);

	/* not to a VIP address (or no LB): no hand-over, no tail call */
	if (!(dflags & CBR_DST_F_VIP))
		return cbr_count(ctx, CBR_ACT_PASS, reason);
	__u32 zero = 0;
	struct cbr_parse *out = bpf_map_lookup_elem(&cbr_scratch, &zero);
	if (!out)
		return cbr_count(ctx, CBR_ACT_PASS, reason);
	out->l3_off = p->l3_off;
	out->family = p->family;
	out->l4_off = p->off;
	out->l4_proto = p->l4;
	out->reason = reason;
	out->frag = p->frag;
	out->sport = p->sport;
	out->dport = p->dport;
	bpf_tail_call(ctx, &cbr_progs, CBR_PROG_LB);
	/* no load balancer loaded */
	return cbr_count(ctx, CBR_ACT_PASS, reason);
}

SEC("xdp.frags")
int cbr_filter(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct cbr_config *cfg = bpf_map_lookup_elem(&cbr_cfg, &zero);
	if (!cfg)
		return XDP_PASS; /* cannot happen for arrays; fail open rather than black-hole */
	__u32 flags = cfg->flags;
	struct cbr_pkt p = {};
	__u32 reason = CBR_R_OK;
	int v = parse_eth(ctx, cfg, &p);
	if (v != CBR_NEXT)
		return v;
	/* the lists come before the rest of the parse: a listed source is judged on its address alone */
	if (p.proto == bpf_htons(ETH_P_IP)) {
		if ((v = parse_ipv4(ctx, cfg, &p)) != CBR_NEXT || (v = list_verdict4(ctx, flags, &p, &reason)) != CBR_NEXT)
			return v;
	} else if (p.proto == bpf_htons(ETH_P_IPV6)) {
		if ((v = parse_ipv6(ctx, cfg, &p)) != CBR_NEXT || (v = list_verdict6(ctx, flags, &p, &reason)) != CBR_NEXT ||
		    (v = parse_ipv6_ext(ctx, cfg, &p)) != CBR_NEXT)
			return v;
	} else {
		return cbr_count(ctx, CBR_ACT_PASS, CBR_R_NON_IP);
	}
	if (p.off > MAX_L4_OFF)
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	if (p.frag && (flags & CBR_F_FRAG_DROP))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_FRAGMENT);
	if ((v = parse_l4(ctx, cfg, &p)) != CBR_NEXT)
		return v;
	return final_verdict(ctx, cfg, &p, reason);
}

char _license[] SEC("license") = "GPL";
