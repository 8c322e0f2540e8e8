/* Maps and helpers both BPF objects use. The loader pins every map by name under
 * /sys/fs/bpf/cbr/<ifname>/, so the copies declared in filter and lb become one map. */
#ifndef CBR_COMMON_BPF_H
#define CBR_COMMON_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "cbr_xdp.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cbr_config);
} cbr_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CBR_COUNTERS);
	__type(key, __u32);
	__type(value, struct cbr_counter);
} cbr_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct cbr_parse);
} cbr_scratch SEC(".maps");

/* Both programs are frags-aware (SEC("xdp.frags"), BPF_F_XDP_HAS_FRAGS), so an interface with a
 * jumbo MTU (a multi-buffer frame) can run them; tail calls need both sides to agree. Headers are
 * read from the linear part (data..data_end), which every multi-buffer driver makes at least a few
 * hundred bytes long; lengths are checked against the whole frame. */
static __always_inline int cbr_count(struct xdp_md *ctx, __u32 action, __u32 reason)
{
	__u32 idx = CBR_COUNTER_INDEX(action, reason) & (CBR_COUNTERS - 1);
	struct cbr_counter *c = bpf_map_lookup_elem(&cbr_stats, &idx);
	if (c) {
		c->packets += 1;
		c->bytes += bpf_xdp_get_buff_len(ctx); /* with fragments: the whole frame, not just the linear part */
	}
	switch (action) {
	case CBR_ACT_DROP:
		return XDP_DROP;
	case CBR_ACT_TX:
		return XDP_TX;
	case CBR_ACT_ABORTED:
		return XDP_ABORTED;
	default:
		return XDP_PASS;
	}
}

#endif
