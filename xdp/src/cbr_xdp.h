/* CloudBridge XDP: the one header for map layouts shared by filter.bpf.c, lb.bpf.c and the
 * TypeScript mirror in xdp/maps.ts (checked against this object's BTF by xdp/maps.test.ts).
 * Every struct here has explicit padding so its layout is the same on both sides. */
#ifndef CBR_XDP_H
#define CBR_XDP_H

#include <linux/types.h>

/* Verdict actions (the high bits of a counter index). */
enum cbr_action {
	CBR_ACT_PASS = 0,
	CBR_ACT_DROP = 1,
	CBR_ACT_TX = 2,
	CBR_ACT_ABORTED = 3,
};

/* Why a verdict was taken (the low bits of a counter index). */
enum cbr_reason {
	CBR_R_OK = 0,          /* nothing matched: default pass */
	CBR_R_ALLOWLIST = 1,   /* source in the allow list: skips deny and rate limit */
	CBR_R_DENYLIST = 2,    /* source in the deny list */
	CBR_R_RATELIMIT = 3,   /* source over its token bucket */
	CBR_R_POLICY = 4,      /* protocol/port not allowed to a service address */
	CBR_R_FRAGMENT = 5,    /* IP fragment, by the fragments policy */
	CBR_R_MALFORMED = 6,   /* header fields that make no sense, by the malformed policy */
	CBR_R_TRUNCATED = 7,   /* packet ends inside a header, by the malformed policy */
	CBR_R_NON_IP = 8,      /* not IPv4/IPv6 (ARP, LLDP...): always pass */
	CBR_R_LB_HASH = 9,     /* load balanced by the 5-tuple Maglev hash */
	CBR_R_LB_CID = 10,     /* load balanced by the QUIC connection ID's server ID */
	CBR_R_LB_NO_BACKEND = 11, /* VIP packet but the chosen slot has no live backend */
	CBR_R_LB_ENCAP = 12,   /* encapsulation failed (no headroom, no outer source) */
	CBR_R_RATELIMIT_NEW = 13, /* source not tracked yet and the shared bucket for new sources is empty */
	CBR_R_MAX = 16,
};
#define CBR_COUNTERS (4 * CBR_R_MAX)
#define CBR_COUNTER_INDEX(action, reason) (((action) << 4) | (reason))

/* cbr_cfg[0].flags */
#define CBR_F_FRAG_DROP      (1u << 0) /* drop fragments (else pass them, skipping port policy and LB) */
#define CBR_F_MALFORMED_DROP (1u << 1) /* drop malformed/truncated IP packets (else pass) */
#define CBR_F_RATELIMIT      (1u << 2) /* per-source token buckets on */
#define CBR_F_POLICY         (1u << 3) /* service address protocol/port policy on */
/* Lists known to be empty: the filter skips their LPM lookups. Inverted sense on purpose: a config
 * value without these bits (an older agent's, or the direct CLI path racing a sync) means "look". */
#define CBR_F_DENY4_EMPTY    (1u << 4)
#define CBR_F_DENY6_EMPTY    (1u << 5)
#define CBR_F_ALLOW4_EMPTY   (1u << 6)
#define CBR_F_ALLOW6_EMPTY   (1u << 7)
#define CBR_F_LB             (1u << 8) /* some VIP exists: look up destinations for the VIP flag */
#define CBR_F_PRE4           (1u << 9) /* cbr_pre4 is maintained: trust its clear bits */
#define CBR_F_RL_COARSE      (1u << 10) /* token buckets on the tick clock (bucket deeper than 2 ticks) */

/* IPv4 list prefilter: one bit per /24 of the IPv4 space and list, set when some prefix of that
 * list overlaps the /24 (a superset is fine: a set bit only means "ask the LPM trie"). Entry i holds
 * the /24s i*64 .. i*64+63, bit b for /24 i*64+b. A legitimate source outside every list costs one
 * inlined array lookup instead of an LPM walk. deny_full bits are exact or clear, never stale: set
 * only by a full sync, cleared before a live delete. */
#define CBR_PRE4_ENTRIES (1u << 18)
struct cbr_pre4 {
	__u64 deny;
	__u64 allow;
	__u64 deny_full;       /* a deny prefix of /24 or shorter covers the whole /24: drop without the trie */
	__u64 pad;
};

/* Global knobs, one entry in the cbr_cfg array. */
struct cbr_config {
	__u32 flags;
	__u32 ring_size;       /* Maglev slots in cbr_ring (a prime) */
	__u64 rl_cost_ns;      /* tokens (in ns) one packet costs: 1e9 / packets-per-second */
	__u64 rl_burst_ns;     /* bucket depth: burst * rl_cost_ns */
	__u8 gw_mac[6];        /* next hop for encapsulated packets (XDP_TX goes back out the same port) */
	__u8 src_mac[6];       /* the interface's own MAC */
	__u8 cid_config_id;    /* QUIC CID config rotation bits this PoP routes by (0-6) */
	__u8 pad0[3];
	__u8 encap_src4[4];    /* outer source for IPv4 backends */
	__u8 encap_src6[16];   /* outer source for IPv6 backends */
	__u32 pad1;
	/* One bucket shared by every source not tracked yet (a spoofed random-source flood is all new
	 * sources): a new source is admitted, and gets its own bucket, only while this one has credit. */
	__u64 rl_new_cost_ns;
	__u64 rl_new_burst_ns;
};

/* One counter pair, per CPU. */
struct cbr_counter {
	__u64 packets;
	__u64 bytes;
};

/* LPM trie keys for the deny/allow lists. */
struct cbr_lpm4 {
	__u32 prefixlen;
	__u8 addr[4];
};
struct cbr_lpm6 {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Rate-limit bucket key: the source /32 (IPv4) or /64 (IPv6). */
struct cbr_rl_key {
	__u8 family;           /* 4 or 6 */
	__u8 pad[7];
	__u8 addr[8];          /* IPv4 in addr[0..3], rest zero */
};
struct cbr_rl_state {
	__u64 tokens_ns;
	__u64 last_ns;
};

/* Destination addresses the filter cares about (service addresses, VIP addresses), in an
 * open-addressed table (an ARRAY map: its lookups are inlined, unlike a hash map's): an address lives
 * within CBR_DST_PROBES slots of its home slot cbr_dst_home(), with no empty slot in between. The
 * control plane (control.ts) builds the table with the same hash. */
#define CBR_DST_SLOTS 4096     /* a power of two */
#define CBR_DST_BITS 12
#define CBR_DST_PROBES 8
#define CBR_DST_F_SERVICE (1u << 0) /* the protocol/port policy applies */
#define CBR_DST_F_VIP     (1u << 1) /* some VIP has this address: hand the packet to the LB */
struct cbr_dst {
	__u8 addr[16];         /* IPv4 in addr[0..3], rest zero */
	__u8 family;           /* 0: empty slot */
	__u8 flags;
	__u16 pad;
};
/* Home slot: a multiplicative hash of the address's 32-bit words (as loaded, little-endian). */
#define CBR_DST_MULT 0x9E3779B1u

/* The protocol/port policy for service addresses as one bitmap (cbr_ports[0]): bit p of udp/tcp
 * allows that destination port; icmp bit 0 allows ICMP and ICMPv6. Anything else is refused. */
struct cbr_ports {
	__u64 udp[1024];
	__u64 tcp[1024];
	__u32 icmp;
	__u32 pad;
};

/* What the filter parsed, handed to the LB through a per-CPU scratch slot (tail calls stay on one CPU). */
struct cbr_parse {
	__u16 l3_off;
	__u16 l4_off;
	__u8 family;
	__u8 l4_proto;
	__u8 reason;           /* the filter's pass reason (ok or allowlist) */
	__u8 frag;
	__be16 sport;
	__be16 dport;
	__u32 pad;
};

/* A virtual service: address, port and protocol. */
struct cbr_vip_key {
	__u8 addr[16];         /* IPv4 in addr[0..3], rest zero */
	__be16 port;
	__u8 proto;
	__u8 family;
};
#define CBR_VIP_F_QUIC (1u << 0) /* route QUIC short headers by connection ID */
struct cbr_vip {
	__u32 flags;
	__u32 pad;
};

/* A backend host; packets reach it IPIP / IPv6-in-IP encapsulated. */
#define CBR_BACKEND_F_UP (1u << 0)
struct cbr_backend {
	__u8 addr[16];         /* IPv4 in addr[0..3], rest zero */
	__u8 family;
	__u8 flags;
	__u16 pad;
	__u32 weight;
};

/* Map sizes. The loader resizes the ones marked "configured" before loading (xdp/loader.ts), so
 * their numbers here are only what an object loaded on its own (tests, bpftool) gets. */
#define CBR_LIST_ENTRIES 1024  /* each deny/allow LPM trie (configured: xdp.deny/allow.maxEntries) */
#define CBR_RL_SOURCES 65536   /* tracked rate-limit sources (configured: xdp.rateLimit.maxSources) */
#define CBR_RING_SLOTS 65537   /* Maglev ring (configured: xdp.lb.ringSize, a prime) */
#define CBR_MAX_VIPS 256
#define CBR_MAX_BACKENDS 4096
#define CBR_SERVER_IDS 65536
#define CBR_PROGS 1            /* tail-call slots in cbr_progs */
#define CBR_PROG_LB 0          /* slot in cbr_progs the filter tail-calls */

/* QUIC connection ID layout (see xdp/README.md): byte 0 = config id (3 bits) | length - 1 (5 bits),
 * bytes 1-2 = server ID (big-endian), then a nonce. */
#define CBR_CID_MIN_LEN 8

#endif
