/* A flood source for the drop-cost bench and its test: run by BPF_PROG_TEST_RUN in live-frames mode,
 * it redirects every test packet out of the interface whose ifindex is in cbr_redirect_to[0]. On a
 * veth that is ndo_xdp_xmit: the frame reaches the peer's XDP program as an xdp_frame, no skb made,
 * the way a NIC driver hands XDP its DMA buffer. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} cbr_redirect_to SEC(".maps");

SEC("xdp")
int cbr_redirect(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u32 *ifindex = bpf_map_lookup_elem(&cbr_redirect_to, &zero);

	if (!ifindex || !*ifindex)
		return XDP_ABORTED;
	return bpf_redirect(*ifindex, 0);
}

char _license[] SEC("license") = "GPL";
