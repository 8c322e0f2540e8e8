/* A bench reference: drops every packet, reading nothing. What an XDP drop costs on an interface
 * before any filter logic (bench/xdp-drop-cost.ts). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int cbr_bare_drop(struct xdp_md *ctx)
{
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
