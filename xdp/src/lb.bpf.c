/* CloudBridge XDP load balancer, tail-called by the filter for packets it passed. Packets to a VIP
 * go to a backend host chosen by Maglev over the 5-tuple, or, for QUIC short headers, by the
 * server ID in the destination connection ID; they leave by XDP_TX, encapsulated IPIP (or
 * IPv6-in-IP) towards the backend through the configured next hop (as Katran does). */
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include "common.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, CBR_MAX_VIPS);
	__type(key, struct cbr_vip_key);
	__type(value, struct cbr_vip);
} cbr_vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_RING_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} cbr_ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct cbr_backend);
} cbr_backends SEC(".maps");

/* server ID -> backend index + 1 (0: not assigned) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, CBR_SERVER_IDS);
	__type(key, __u32);
	__type(value, __u32);
} cbr_server_ids SEC(".maps");

static __always_inline __u32 rol32(__u32 w, int s)
{
	return (w << s) | (w >> (32 - s));
}

/* A small multiply-rotate mix (murmur3-style) over the flow's words. */
static __always_inline __u32 mix(__u32 h, __u32 k)
{
	k *= 0xcc9e2d51;
	k = rol32(k, 15);
	k *= 0x1b873593;
	h ^= k;
	h = rol32(h, 13);
	return h * 5 + 0xe6546b64;
}

static __always_inline __u32 fmix(__u32 h)
{
	h ^= h >> 16;
	h *= 0x85ebca6b;
	h ^= h >> 13;
	h *= 0xc2b2ae35;
	h ^= h >> 16;
	return h;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

SEC("xdp.frags")
int cbr_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct cbr_config *cfg = bpf_map_lookup_elem(&cbr_cfg, &zero);
	struct cbr_parse *p = bpf_map_lookup_elem(&cbr_scratch, &zero);
	if (!cfg || !p)
		return XDP_PASS;
	__u32 pass_reason = p->reason & (CBR_R_MAX - 1);
	__u32 l3 = p->l3_off & 0xff;  /* Ethernet + at most two VLAN tags */
	__u32 l4 = p->l4_off;
	if (l4 > 4095) /* the filter never hands over more */
		return cbr_count(ctx, CBR_ACT_PASS, pass_reason);

	struct cbr_vip_key vk = { .port = p->dport, .proto = p->l4_proto, .family = p->family };
	__u32 h = 0x5bd1e995;
	__u32 inner_len;
	if (p->family == 4) {
		struct iphdr *ip = data + l3;
		if ((void *)(ip + 1) > data_end)
			return cbr_count(ctx, CBR_ACT_PASS, pass_reason);
		__builtin_memcpy(vk.addr, &ip->daddr, 4);
		h = mix(h, ip->saddr);
		h = mix(h, ip->daddr);
		inner_len = bpf_ntohs(ip->tot_len);
	} else {
		struct ipv6hdr *ip6 = data + l3;
		if ((void *)(ip6 + 1) > data_end)
			return cbr_count(ctx, CBR_ACT_PASS, pass_reason);
		__builtin_memcpy(vk.addr, &ip6->daddr, 16);
#pragma unroll
		for (int i = 0; i < 4; i++) {
			h = mix(h, ip6->saddr.in6_u.u6_addr32[i]);
			h = mix(h, ip6->daddr.in6_u.u6_addr32[i]);
		}
		inner_len = bpf_ntohs(ip6->payload_len) + sizeof(*ip6);
	}
	struct cbr_vip *vip = bpf_map_lookup_elem(&cbr_vips, &vk);
	if (!vip)
		return cbr_count(ctx, CBR_ACT_PASS, pass_reason);

	struct cbr_backend *be = 0;
	__u32 reason = CBR_R_LB_HASH;
	if ((vip->flags & CBR_VIP_F_QUIC) && p->l4_proto == IPPROTO_UDP) {
		/* QUIC short header: form bit 0, fixed bit 1, then our CID (config id | len, server id). */
		__u8 *q = data + l4 + 8;
		if ((void *)(q + 1 + CBR_CID_MIN_LEN) <= data_end && (q[0] & 0xc0) == 0x40 &&
		    (q[1] >> 5) == cfg->cid_config_id) {
			__u32 sid = ((__u32)q[2] << 8) | q[3];
			__u32 *slot = bpf_map_lookup_elem(&cbr_server_ids, &sid);
			if (slot && *slot) {
				__u32 bi = *slot - 1;
				be = bpf_map_lookup_elem(&cbr_backends, &bi);
				if (be && (be->flags & CBR_BACKEND_F_UP))
					reason = CBR_R_LB_CID;
				else
					be = 0;
			}
		}
	}
	if (!be) {
		h = mix(h, ((__u32)p->sport << 16) | p->dport);
		h = fmix(mix(h, p->l4_proto));
		__u32 size = cfg->ring_size;
		if (!size)
			return cbr_count(ctx, CBR_ACT_DROP, CBR_R_LB_NO_BACKEND);
		__u32 slot = h % size;
		__u32 *bi = bpf_map_lookup_elem(&cbr_ring, &slot);
		if (!bi)
			return cbr_count(ctx, CBR_ACT_DROP, CBR_R_LB_NO_BACKEND);
		__u32 idx = *bi;
		be = bpf_map_lookup_elem(&cbr_backends, &idx);
		if (!be || !(be->flags & CBR_BACKEND_F_UP))
			return cbr_count(ctx, CBR_ACT_DROP, CBR_R_LB_NO_BACKEND);
	}

	/* ---- encapsulate: new Ethernet + outer IP in front of the inner IP packet (VLAN tags go) ---- */
	__u8 inner_proto = p->family == 4 ? IPPROTO_IPIP : IPPROTO_IPV6;
	int outer = be->family == 4 ? sizeof(struct iphdr) : sizeof(struct ipv6hdr);
	if (be->family == 4 && !(cfg->encap_src4[0] | cfg->encap_src4[1] | cfg->encap_src4[2] | cfg->encap_src4[3]))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_LB_ENCAP);
	__u8 baddr[16];
	__builtin_memcpy(baddr, be->addr, 16);
	__u8 bfamily = be->family;
#ifdef CBR_BENCH_RESTORE
	struct ethhdr saved;
	if (data + sizeof(saved) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(&saved, data, sizeof(saved));
#endif
	if (bpf_xdp_adjust_head(ctx, (int)l3 - (int)sizeof(struct ethhdr) - outer))
		return cbr_count(ctx, CBR_ACT_DROP, CBR_R_LB_ENCAP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return cbr_count(ctx, CBR_ACT_ABORTED, CBR_R_LB_ENCAP);
	__builtin_memcpy(eth->h_dest, cfg->gw_mac, 6);
	__builtin_memcpy(eth->h_source, cfg->src_mac, 6);
	if (bfamily == 4) {
		struct iphdr *o = (void *)(eth + 1);
		if ((void *)(o + 1) > data_end)
			return cbr_count(ctx, CBR_ACT_ABORTED, CBR_R_LB_ENCAP);
		eth->h_proto = bpf_htons(ETH_P_IP);
		o->version = 4;
		o->ihl = 5;
		o->tos = 0;
		o->tot_len = bpf_htons(inner_len + sizeof(*o));
		o->id = 0;
		o->frag_off = 0;
		o->ttl = 64;
		o->protocol = inner_proto;
		o->check = 0;
		__builtin_memcpy(&o->saddr, cfg->encap_src4, 4);
		__builtin_memcpy(&o->daddr, baddr, 4);
		__u32 sum = 0;
		__u16 *w = (__u16 *)o;
#pragma unroll
		for (int i = 0; i < 10; i++)
			sum += w[i];
		o->check = csum_fold(sum);
	} else {
		struct ipv6hdr *o = (void *)(eth + 1);
		if ((void *)(o + 1) > data_end)
			return cbr_count(ctx, CBR_ACT_ABORTED, CBR_R_LB_ENCAP);
		eth->h_proto = bpf_htons(ETH_P_IPV6);
		*(__be32 *)o = bpf_htonl(0x60000000);
		o->payload_len = bpf_htons(inner_len);
		o->nexthdr = inner_proto;
		o->hop_limit = 64;
		__builtin_memcpy(&o->saddr, cfg->encap_src6, 16);
		__builtin_memcpy(&o->daddr, baddr, 16);
	}
#ifdef CBR_BENCH_RESTORE
	/* Bench build only (lb_bench.bpf.o): undo the encapsulation so that BPF_PROG_TEST_RUN's repeated
	 * runs, which reuse one buffer, all see the original packet. Untagged frames only. */
	if (bpf_xdp_adjust_head(ctx, sizeof(struct ethhdr) + outer - (int)l3))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	if (data + sizeof(saved) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &saved, sizeof(saved));
#endif
	return cbr_count(ctx, CBR_ACT_TX, reason);
}

char _license[] SEC("license") = "GPL";
