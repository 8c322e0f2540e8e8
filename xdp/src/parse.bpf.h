/* Packet parsing for the filter: always-inline helpers over one packet description, one layer
 * each, in the manner of Katran's pckt_parsing.h. Each helper bounds-checks against data_end before
 * it reads, fills `struct cbr_pkt`, and returns CBR_NEXT to go on or the verdict for a packet that
 * cannot be parsed (truncated, malformed: counted by bad_packet). */
#ifndef CBR_PARSE_BPF_H
#define CBR_PARSE_BPF_H

#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include "common.bpf.h"

#define CBR_NEXT (-1)       /* no verdict yet */
#define MAX_VLAN 2
#define MAX_EXT_HDRS 8
#define MAX_L4_OFF 4095     /* keeps packet offsets provably small for the verifier */

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

struct frag6 {
	__u8 nexthdr;
	__u8 reserved;
	__be16 frag_off;    /* offset << 3 | M */
	__be32 id;
};

/* What parsing found. Lives in registers: nothing takes its address past the inlined helpers. */
struct cbr_pkt {
	__u32 saddr[4];     /* as loaded from the packet; IPv4 in saddr[0] */
	__u32 daddr[4];
	__u32 l3_off;
	__u32 off;          /* the next header to read (the L4 header once L3 is parsed) */
	__be16 proto;       /* ethertype after the VLAN tags */
	__u8 family;        /* 4 or 6 */
	__u8 l4;
	__u8 frag;          /* 1: a fragment; 2: a non-first fragment (no L4 header) */
	__be16 sport;
	__be16 dport;
};

/* Malformed and truncated packets follow the same policy; the reason says which it was. */
static __always_inline int bad_packet(struct xdp_md *ctx, const struct cbr_config *cfg, __u32 reason)
{
	return cbr_count(ctx, (cfg->flags & CBR_F_MALFORMED_DROP) ? CBR_ACT_DROP : CBR_ACT_PASS, reason);
}

/* Ethernet and up to MAX_VLAN 802.1Q / 802.1ad tags. */
static __always_inline int parse_eth(struct xdp_md *ctx, const struct cbr_config *cfg, struct cbr_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	__be16 proto = eth->h_proto;
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
	p->proto = proto;
	p->l3_off = off;
	p->off = off;
	return CBR_NEXT;
}

/* IPv4 header (options skipped by IHL); its total length must fit in the frame. */
static __always_inline int parse_ipv4(struct xdp_md *ctx, const struct cbr_config *cfg, struct cbr_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = p->off;
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
	p->family = 4;
	p->saddr[0] = ip->saddr;
	p->daddr[0] = ip->daddr;
	__u16 fo = bpf_ntohs(ip->frag_off);
	if (fo & 0x3fff) /* MF or an offset */
		p->frag = (fo & 0x1fff) ? 2 : 1;
	p->l4 = ip->protocol;
	p->off = off + hlen;
	return CBR_NEXT;
}

/* The fixed IPv6 header; its payload length must fit in the frame. */
static __always_inline int parse_ipv6(struct xdp_md *ctx, const struct cbr_config *cfg, struct cbr_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = p->off;
	struct ipv6hdr *ip6 = data + off;
	if ((void *)(ip6 + 1) > data_end)
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	if (ip6->version != 6)
		return bad_packet(ctx, cfg, CBR_R_MALFORMED);
	__u32 end6 = off + sizeof(*ip6) + bpf_ntohs(ip6->payload_len);
	if (data + end6 > data_end && end6 > bpf_xdp_get_buff_len(ctx))
		return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	p->family = 6;
	__builtin_memcpy(p->saddr, &ip6->saddr, 16);
	__builtin_memcpy(p->daddr, &ip6->daddr, 16);
	p->l4 = ip6->nexthdr;
	p->off = off + sizeof(*ip6);
	return CBR_NEXT;
}

/* IPv6 extension headers: a bounded walk; a chain longer than MAX_EXT_HDRS is malformed. */
static __always_inline int parse_ipv6_ext(struct xdp_md *ctx, const struct cbr_config *cfg, struct cbr_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 off = p->off;
	__u8 l4 = p->l4;
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
				p->frag = 2;
				p->l4 = l4;
				p->off = off;
				return CBR_NEXT;
			}
			if (fo & 1)
				p->frag = 1; /* first fragment; an atomic fragment (offset 0, no M) is a whole packet */
		} else {
			p->l4 = l4;
			p->off = off;
			return CBR_NEXT;
		}
	}
	return bad_packet(ctx, cfg, CBR_R_MALFORMED);
}

/* TCP/UDP ports and a sanity check of their lengths; ICMP must hold its 4-byte header. A non-first
 * fragment carries no L4 header. */
static __always_inline int parse_l4(struct xdp_md *ctx, const struct cbr_config *cfg, struct cbr_pkt *p)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	if (p->frag == 2)
		return CBR_NEXT;
	__u8 *h = data + p->off;
	if (p->l4 == IPPROTO_TCP) {
		if ((void *)(h + 20) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		if ((h[12] >> 4) < 5)
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
		p->sport = *(__be16 *)h;
		p->dport = *(__be16 *)(h + 2);
	} else if (p->l4 == IPPROTO_UDP) {
		if ((void *)(h + 8) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
		if (bpf_ntohs(*(__be16 *)(h + 4)) < 8)
			return bad_packet(ctx, cfg, CBR_R_MALFORMED);
		p->sport = *(__be16 *)h;
		p->dport = *(__be16 *)(h + 2);
	} else if (p->l4 == IPPROTO_ICMP || p->l4 == IPPROTO_ICMPV6) {
		if ((void *)(h + 4) > data_end)
			return bad_packet(ctx, cfg, CBR_R_TRUNCATED);
	}
	return CBR_NEXT;
}


#endif
