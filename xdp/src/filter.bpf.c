/* CloudBridge XDP filter: the PoP's first line. Parses Ethernet (up to two VLAN tags), IPv4 (with
 * options) and IPv6 (bounded extension-header walk), TCP/UDP/ICMP; decides by allow/deny prefix
 * lists, fragment and malformed policies, the service protocol/port policy and per-source token
 * buckets; counts every verdict; and tail-calls the load balancer for what it passes to a VIP
 * address.
 *
 * The common pass path is kept cheap: config flags say which lists are empty (no LPM lookup then),
 * whether the policy and the LB are on; service and VIP addresses are found in one inlined array
 * probe (cbr_dst) instead of hash lookups, the port policy is one bit in an array value, and only
 * packets to a VIP address pay for the tail call and the per-CPU hand-over slot. */
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include "common.bpf.h"

#define MAX_VLAN 2
#define MAX_EXT_HDRS 8
#define MAX_L4_OFF 4095 /* keeps packet offsets provably small for the verifier */

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024); /* the loader sets the configured size */
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cbr_lpm4);
	__type(value, __u32);
} cbr_deny4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cbr_lpm6);
	__type(value, __u32);
} cbr_deny6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cbr_lpm4);
	__type(value, __u32);
} cbr_allow4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct cbr_lpm6);
	__type(value, __u32);
} cbr_allow6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_PRE4_ENTRIES);
	__type(key, __u32);
	__type(value, struct cbr_pre4);
} cbr_pre4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct cbr_rl_key);
	__type(value, struct cbr_rl_state);
} cbr_rl SEC(".maps");

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
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cbr_progs SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct frag6 {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off; /* offset << 3 | M */
	__be32 id;
};

/* Malformed and truncated packets follow the same policy; the reason says which it was. */
static __always_inline int bad_packet(struct xdp_md *ctx, const struct cbr_config *cfg, __u32 reason)
{
	return cbr_count(ctx, (cfg->flags & CBR_F_MALFORMED_DROP) ? CBR_ACT_DROP : CBR_ACT_PASS, reason);
}

/* Token bucket per source; tokens are nanoseconds of credit. Buckets are shared between CPUs
 * without a lock: two CPUs racing on one source can each spend the same token, which costs at
 * most one packet per race and keeps the fast path lock-free. */
static __always_inline int over_rate(const struct cbr_config *cfg, struct cbr_rl_key *key)
{
	/* The precise clock costs ~35 ns a read on a VM (kvm-clock); the tick clock ~5 ns. With a bucket
	 * deeper than two ticks of credit, refilling once a tick loses nothing: the rate holds exactly over
	 * time and a packet is at worst judged one tick early (stricter). The control plane decides. */
	__u64 now = (cfg->flags & CBR_F_RL_COARSE) ? bpf_ktime_get_coarse_ns() : bpf_ktime_get_ns();
	struct cbr_rl_state *st = bpf_map_lookup_elem(&cbr_rl, key);
	if (!st) {
		struct cbr_rl_state fresh = { .tokens_ns = cfg->rl_burst_ns - cfg->rl_cost_ns, .last_ns = now };
		if (cfg->rl_burst_ns < cfg->rl_cost_ns)
			fresh.tokens_ns = 0;
		bpf_map_update_elem(&cbr_rl, key, &fresh, BPF_ANY);
		return 0;
	}
	__u64 elapsed = now > st->last_ns ? now - st->last_ns : 0;
	__u64 tokens = st->tokens_ns;
	if (elapsed >= cfg->rl_burst_ns || tokens + elapsed >= cfg->rl_burst_ns)
		tokens = cfg->rl_burst_ns;
	else
		tokens += elapsed;
	st->last_ns = now;
	if (tokens < cfg->rl_cost_ns) {
		st->tokens_ns = tokens;
		return 1;
	}
	st->tokens_ns = tokens - cfg->rl_cost_ns;
	return 0;
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

SEC("xdp.frags")
int cbr_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct cbr_config *cfg = bpf_map_lookup_elem(&cbr_cfg, &zero);
	if (!cfg)
		return XDP_PASS; /* cannot happen for arrays; fail open rather than black-hole */
	__u32 flags = cfg->flags;

	/* ---- L2 ---- */
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	__u16 proto = eth->h_proto;
	__u32 off = sizeof(*eth);
#pragma unroll
	for (int i = 0; i < MAX_VLAN; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vh = data + off;
		if ((void *)(vh + 1) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		proto = vh->proto;
		off += sizeof(*vh);
	}

	struct cbr_rl_key rlk = {};
	__u32 daddr[4] = {};
	__u8 family;
	__u8 l4 = 0;
	__u8 frag = 0;      /* 1: a fragment; 2: a non-first fragment (no L4 header) */
	__u32 reason = CBR_R_OK;
	__u32 l3_off = off;

	/* ---- L3 ---- */
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + off;
		if ((void *)(ip + 1) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		__u32 hlen = ip->ihl * 4;
		if (ip->version != 4 || hlen < sizeof(*ip))
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
		__u32 tot = bpf_ntohs(ip->tot_len);
		if (tot < hlen)
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
		/* the frame's length beyond the linear part is only asked for when it matters */
		if (data + off + tot > data_end && off + tot > bpf_xdp_get_buff_len(ctx))
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		struct cbr_lpm4 k4 = { .prefixlen = 32 };
		__builtin_memcpy(k4.addr, &ip->saddr, 4);
		int ask_allow = !(flags & CBR_F_ALLOW4_EMPTY);
		int ask_deny = !(flags & CBR_F_DENY4_EMPTY);
		if ((ask_allow | ask_deny) && (flags & CBR_F_PRE4)) {
			__u32 s24 = bpf_ntohl(ip->saddr) >> 8;
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
		if (ask_allow && bpf_map_lookup_elem(&cbr_allow4, &k4)) {
			reason = CBR_R_ALLOWLIST;
		} else if (ask_deny && bpf_map_lookup_elem(&cbr_deny4, &k4)) {
			return cbr_count(ctx, CBR_ACT_DROP, CBR_R_DENYLIST);
		}
		rlk.family = 4;
		__builtin_memcpy(rlk.addr, &ip->saddr, 4);
		family = 4;
		daddr[0] = ip->daddr;
		__u16 fo = bpf_ntohs(ip->frag_off);
		if (fo & 0x3fff) /* MF or an offset */
			frag = (fo & 0x1fff) ? 2 : 1;
		l4 = ip->protocol;
		off += hlen;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + off;
		if ((void *)(ip6 + 1) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		if (ip6->version != 6)
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
		__u32 end6 = off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
		if (data + end6 > data_end && end6 > bpf_xdp_get_buff_len(ctx))
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		struct cbr_lpm6 k6 = { .prefixlen = 128 };
		__builtin_memcpy(k6.addr, &ip6->saddr, 16);
		if (!(flags & CBR_F_ALLOW6_EMPTY) && bpf_map_lookup_elem(&cbr_allow6, &k6)) {
			reason = CBR_R_ALLOWLIST;
		} else if (!(flags & CBR_F_DENY6_EMPTY) && bpf_map_lookup_elem(&cbr_deny6, &k6)) {
			return cbr_count(ctx, CBR_ACT_DROP, CBR_R_DENYLIST);
		}
		rlk.family = 6;
		__builtin_memcpy(rlk.addr, &ip6->saddr, 8);
		family = 6;
		__builtin_memcpy(daddr, &ip6->daddr, 16);
		l4 = ip6->nexthdr;
		off += sizeof(*ip6);
		/* Extension headers: a bounded walk; a chain longer than MAX_EXT_HDRS is malformed. */
		int done = 0;
#pragma unroll
		for (int i = 0; i < MAX_EXT_HDRS; i++) {
			if (off > MAX_L4_OFF) /* beyond any linear XDP buffer: cut short */
				return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
			if (l4 == IPPROTO_HOPOPTS || l4 == IPPROTO_ROUTING || l4 == IPPROTO_DSTOPTS) {
				__u8 *h = data + off;
				if ((void *)(h + 2) > data_end)
					return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
				l4 = h[0];
				off += (h[1] + 1) * 8;
			} else if (l4 == IPPROTO_AH) {
				__u8 *h = data + off;
				if ((void *)(h + 2) > data_end)
					return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
				l4 = h[0];
				off += (h[1] + 2) * 4;
			} else if (l4 == IPPROTO_FRAGMENT) {
				struct frag6 *fh = data + off;
				if ((void *)(fh + 1) > data_end)
					return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
				__u16 fo = bpf_ntohs(fh->frag_off);
				l4 = fh->nexthdr;
				off += sizeof(*fh);
				if (fo & 0xfff8) {
					frag = 2;
					done = 1;
					break;
				}
				if (fo & 1)
					frag = 1; /* first fragment; an atomic fragment (offset 0, no M) is a whole packet */
			} else {
				done = 1;
				break;
			}
		}
		if (!done)
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
	} else {
		return cbr_count(ctx, CBR_ACT_PASS, CBR_R_NON_IP);
	}
	if (off > MAX_L4_OFF)
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);

	if (frag && (flags & CBR_F_FRAG_DROP))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_FRAGMENT);

	/* ---- L4 ---- (a non-first fragment carries none) */
	__be16 sport = 0, dport = 0;
	if (frag != 2) {
		if (l4 == IPPROTO_TCP) {
			__u8 *t = data + off;
			if ((void *)(t + 20) > data_end)
				return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
			if ((t[12] >> 4) < 5)
				return bad_packet(ctx, cfg, CBR_R_MALFORMED);
			sport = *(__be16 *)t;
			dport = *(__be16 *)(t + 2);
		} else if (l4 == IPPROTO_UDP) {
			__u8 *u = data + off;
			if ((void *)(u + 8) > data_end)
				return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
			if (bpf_ntohs(*(__be16 *)(u + 4)) < 8)
				return bad_packet(ctx, cfg, CBR_R_MALFORMED);
			sport = *(__be16 *)u;
			dport = *(__be16 *)(u + 2);
		} else if (l4 == IPPROTO_ICMP || l4 == IPPROTO_ICMPV6) {
			__u8 *ic = data + off;
			if ((void *)(ic + 4) > data_end)
				return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		}
	}

	/* ---- service policy: only the listed protocols/ports reach the PoP's service addresses ---- */
	__u32 dflags = 0;
	if (flags & (CBR_F_POLICY | CBR_F_LB))
		dflags = dst_flags(family, daddr);
	if ((flags & CBR_F_POLICY) && (dflags & CBR_DST_F_SERVICE) && frag != 2 && !port_allowed(l4, dport))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_POLICY);

	if (reason != CBR_R_ALLOWLIST && (flags & CBR_F_RATELIMIT) && over_rate(cfg, &rlk))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_RATELIMIT);

	if (frag)
		return cbr_count(ctx, CBR_ACT_PASS, CBR_R_FRAGMENT);

	/* not to a VIP address (or no LB): no hand-over, no tail call */
	if (!(dflags & CBR_DST_F_VIP))
		return cbr_count(ctx, CBR_ACT_PASS, reason);
	struct cbr_parse *p = bpf_map_lookup_elem(&cbr_scratch, &zero);
	if (!p)
		return cbr_count(ctx, CBR_ACT_PASS, reason);
	p->l3_off = l3_off;
	p->family = family;
	p->l4_off = off;
	p->l4_proto = l4;
	p->reason = reason;
	p->frag = frag;
	p->sport = sport;
	p->dport = dport;
	bpf_tail_call(ctx, &cbr_progs, CBR_PROG_LB);
	/* no load balancer loaded */
	return cbr_count(ctx, CBR_ACT_PASS, reason);
}

char _license[] SEC("license") = "GPL";
