// cbr_tun: TUN offloads (IFF_VNET_HDR), as wireguard-go does in tun/offload_linux.go.
//
// A TUN write carries one packet per syscall, and that syscall was the largest single cost of a
// connect-ip packet. With IFF_VNET_HDR and TUNSETOFFLOAD each packet is prefixed by a struct
// virtio_net_hdr, and the kernel accepts (write) and hands out (read) GSO super-packets:
// - write: a batch of IP packets is coalesced per TCP flow (in-order sequence numbers, same
//   ACK/flags/options, equal segment sizes but the last) into one super-packet with a TCPV4/TCPV6
//   GSO header and a partial (pseudo-header) checksum, and UDP datagrams of one flow (equal sizes
//   but the last) into one UDP_L4 super-packet when the kernel took USO; everything else goes out
//   alone behind a zeroed header. One writev per resulting packet, payloads straight from the caller's buffer.
// - read: a super-packet (TSO from the local stack, GRO from a forwarding path, USO) is split into
//   IP packets with lengths, IDs, sequence numbers, flags and full checksums fixed; a packet whose
//   checksum the kernel left partial (NEEDS_CSUM) gets it completed.
// The coalescing and splitting are pure functions over buffers; `tunCoalesce`/`tunSplit` expose them
// for tests, `tunWrite`/`tunRead` do the I/O.
#define _GNU_SOURCE
#include "cbr_io.h"
#include <errno.h>
#include <linux/if_tun.h>
#include <linux/virtio_net.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef TUN_F_USO4
#define TUN_F_USO4 0x20
#endif
#ifndef TUN_F_USO6
#define TUN_F_USO6 0x40
#endif
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define MAX_RUN 64         // segments per coalesced super-packet
#define OPEN_RUNS 8        // flows coalesced at once within a batch
#define MAX_IP_TOTAL 65535 // an IPv4 total length / IPv6 payload length cannot exceed this

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

static inline uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static inline uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static inline void wr16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}
static inline void wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

// Adds the ones'-complement sum of `p` as big-endian 16-bit words (an odd tail padded with zero)
// to `acc`. Summed 8 bytes at a time in host order and swapped once at the end: the sum does not
// depend on byte order (RFC 1071 §2(B)), and this is the hottest loop of both paths.
static uint64_t sum16(uint64_t acc, const uint8_t *p, size_t len) {
  uint64_t s = 0;
  for (; len >= 8; p += 8, len -= 8) {
    uint64_t x;
    memcpy(&x, p, 8);
    s += (x & 0xffffffff) + (x >> 32);
  }
  for (; len >= 2; p += 2, len -= 2) {
    uint16_t x;
    memcpy(&x, p, 2);
    s += x;
  }
  if (len) {
    uint8_t tail[2] = {p[0], 0};
    uint16_t x;
    memcpy(&x, tail, 2);
    s += x;
  }
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  s = __builtin_bswap16((uint16_t)s);
#endif
  return acc + s;
}
static uint16_t fold(uint64_t s) {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return (uint16_t)s;
}
// The pseudo header of a TCP/UDP checksum: addresses, protocol, L4 length.
static uint64_t pseudo(const uint8_t *ip, int v6, uint8_t proto, uint32_t l4len) {
  uint64_t s = v6 ? sum16(0, ip + 8, 32) : sum16(0, ip + 12, 8);
  return s + proto + (l4len & 0xffff) + (l4len >> 16);
}
static void ipv4_fix_csum(uint8_t *ip, size_t iphl) {
  wr16(ip + 10, 0);
  wr16(ip + 10, (uint16_t)~fold(sum16(0, ip, iphl)));
}

// ---- write: coalescing ----

typedef struct {
  const uint8_t *p;
  uint32_t len;
  uint8_t v6;
  uint8_t proto; // 6 or 17
  uint8_t iphl;
  uint8_t l4hl;
  uint8_t flags; // TCP
  uint32_t seq;  // TCP
  uint32_t plen; // payload bytes after the L4 header
  int ok;        // 1: may join a run; 0: a flow key only (keeps its flow's order); -1: neither
} seg_t;

// Parses a TCP segment or UDP datagram. ok = 1: coalescible; 0: TCP/UDP with a flow key but not
// coalescible (flags, no or bad checksum, UDP without USO); -1: anything else or malformed.
static void parse_seg(const uint8_t *p, uint32_t len, seg_t *s, int udpOk) {
  memset(s, 0, sizeof *s);
  s->p = p;
  s->len = len;
  s->ok = -1;
  if (len < 20) return;
  if (p[0] >> 4 == 4) {
    if ((p[0] & 0x0f) != 5 || rd16(p + 2) != len || (rd16(p + 6) & 0x3fff) != 0) return; // options or fragments
    s->iphl = 20;
    s->proto = p[9];
  } else if (p[0] >> 4 == 6) {
    if (len < 40 || (uint32_t)rd16(p + 4) + 40 != len) return; // extension headers are left alone
    s->v6 = 1;
    s->iphl = 40;
    s->proto = p[6];
  } else {
    return;
  }
  const uint8_t *t = p + s->iphl;
  if (s->proto == 6) {
    if (len < (uint32_t)s->iphl + 20) return;
    s->l4hl = (uint8_t)((t[12] >> 4) * 4);
    if (s->l4hl < 20 || len < (uint32_t)s->iphl + s->l4hl) return;
    s->flags = t[13];
    s->seq = rd32(t + 4);
  } else if (s->proto == 17) {
    s->l4hl = 8;
    if (len < (uint32_t)s->iphl + 8 || rd16(t + 4) != len - s->iphl) return;
  } else {
    return;
  }
  s->plen = len - s->iphl - s->l4hl;
  s->ok = 0;
  if (s->plen == 0) return;
  if (s->proto == 6 && ((s->flags & ~(TCP_ACK | TCP_PSH)) != 0 || !(s->flags & TCP_ACK))) return;
  if (s->proto == 17 && (!udpOk || rd16(t + 6) == 0)) return; // a datagram sent without checksum stays so
  // A packet with a bad checksum must not be hidden inside a super-packet the kernel trusts.
  if (!s->v6 && fold(sum16(0, p, 20)) != 0xffff) return;
  if (fold(sum16(pseudo(p, s->v6, s->proto, len - s->iphl), t, len - s->iphl)) != 0xffff) return;
  s->ok = 1;
}

// Same flow: version, protocol, addresses and ports.
static int same_flow(const seg_t *a, const seg_t *b) {
  if (a->v6 != b->v6 || a->proto != b->proto) return 0;
  if (a->v6 ? memcmp(a->p + 8, b->p + 8, 32) : memcmp(a->p + 12, b->p + 12, 8)) return 0;
  return memcmp(a->p + a->iphl, b->p + b->iphl, 4) == 0;
}

// Whether `c` continues the run that starts with `h` and ends with `l` (n segments, `bytes` payload).
static int can_append(const seg_t *h, const seg_t *l, const seg_t *c, int n, uint32_t bytes) {
  if (n >= MAX_RUN || l->plen != h->plen || c->plen > h->plen) return 0;
  if ((uint32_t)h->l4hl + bytes + c->plen + (h->v6 ? 0 : h->iphl) > MAX_IP_TOTAL) return 0;
  const uint8_t *hp = h->p, *cp = c->p;
  if (h->v6) {
    if (memcmp(hp, cp, 4) || hp[7] != cp[7]) return 0; // traffic class, flow label, hop limit
  } else {
    if (hp[1] != cp[1] || hp[8] != cp[8] || ((hp[6] ^ cp[6]) & 0x40)) return 0; // TOS, TTL, DF
    // IDs must count up by one, as the kernel's segmentation will rebuild them (id + i).
    if (rd16(cp + 4) != (uint16_t)(rd16(hp + 4) + n)) return 0;
  }
  if (h->proto == 17) return 1;
  if ((l->flags & TCP_PSH) || c->seq != l->seq + l->plen || c->l4hl != h->l4hl || (c->flags & ~TCP_PSH) != (h->flags & ~TCP_PSH)) return 0;
  const uint8_t *ht = hp + h->iphl, *ct = cp + c->iphl;
  // ACK number, window, and options must match (the super-packet carries the first header).
  return memcmp(ht + 8, ct + 8, 4) == 0 && memcmp(ht + 14, ct + 14, 2) == 0 && memcmp(ht + 20, ct + 20, h->l4hl - 20u) == 0;
}

typedef int (*emit_fn)(void *ctx, struct iovec *iov, int n);

typedef struct {
  uint32_t packets;   // input packets handled
  uint32_t out;       // packets handed to emit
  uint32_t coalesced; // input packets that went into super-packets
  uint32_t supers;    // super-packets made
  uint32_t errors;    // input packets whose emit failed
} wstats_t;

static __thread seg_t segs[MAX_WRITE_BATCH];
static __thread int next_in_run[MAX_WRITE_BATCH];

// Emits the packets of `data` (lengths `lens`, back to back) as coalesced runs, in order of each
// run's first packet. Scratch is per thread (the batch is too large for the stack).
static void coalesce(const uint8_t *data, size_t dataLen, const uint32_t *lens, int count, int udpOk, emit_fn emit, void *ctx, wstats_t *st) {
  static __thread int head[MAX_WRITE_BATCH], tail[MAX_WRITE_BATCH], runN[MAX_WRITE_BATCH];
  static __thread uint32_t runBytes[MAX_WRITE_BATCH];
  int items = 0;
  int open[OPEN_RUNS];
  int nopen = 0;
  size_t off = 0;
  for (int i = 0; i < count; i++) {
    uint32_t len = lens[i];
    if (off + len > dataLen) len = 0; // the caller guarantees this; an empty packet is an emit error
    parse_seg(data + off, len, &segs[i], udpOk);
    off += len;
    next_in_run[i] = -1;
    seg_t *s = &segs[i];
    int joined = 0;
    if (s->ok >= 0) {
      for (int k = 0; k < nopen; k++) {
        int r = open[k];
        if (!same_flow(&segs[head[r]], s)) continue;
        if (s->ok == 1 && can_append(&segs[head[r]], &segs[tail[r]], s, runN[r], runBytes[r])) {
          next_in_run[tail[r]] = i;
          tail[r] = i;
          runN[r]++;
          runBytes[r] += s->plen;
          joined = 1;
        } else {
          // This flow's run ends here: later segments must not jump ahead of this packet.
          open[k] = open[--nopen];
        }
        break;
      }
    }
    if (joined) continue;
    int r = items++;
    head[r] = tail[r] = i;
    runN[r] = 1;
    runBytes[r] = s->plen;
    if (s->ok == 1) {
      if (nopen == OPEN_RUNS) memmove(open, open + 1, sizeof open[0] * (--nopen));
      open[nopen++] = r;
    }
  }
  st->packets += (uint32_t)count;
  for (int r = 0; r < items; r++) {
    struct iovec iov[MAX_RUN + 2];
    struct virtio_net_hdr vh;
    uint8_t hdr[120];
    memset(&vh, 0, sizeof vh);
    const seg_t *h = &segs[head[r]];
    int n = runN[r];
    if (n == 1) {
      iov[0].iov_base = &vh;
      iov[0].iov_len = VNET_HDR;
      iov[1].iov_base = (void *)h->p;
      iov[1].iov_len = h->len;
      st->out++;
      if (emit(ctx, iov, 2) < 0) st->errors++;
      continue;
    }
    uint32_t hl = (uint32_t)h->iphl + h->l4hl;
    memcpy(hdr, h->p, hl);
    uint8_t *t = hdr + h->iphl;
    uint32_t l4len = h->l4hl + runBytes[r];
    int udp = h->proto == 17;
    if (udp) wr16(t + 4, (uint16_t)l4len);
    else t[13] = (uint8_t)(h->flags | (segs[tail[r]].flags & TCP_PSH));
    if (h->v6) {
      wr16(hdr + 4, (uint16_t)l4len);
    } else {
      wr16(hdr + 2, (uint16_t)(h->iphl + l4len));
      ipv4_fix_csum(hdr, h->iphl);
    }
    // NEEDS_CSUM: the field holds the folded pseudo-header sum; the kernel adds the rest.
    wr16(t + (udp ? 6 : 16), fold(pseudo(hdr, h->v6, h->proto, l4len)));
    vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh.gso_type = udp ? VIRTIO_NET_HDR_GSO_UDP_L4 : h->v6 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4;
    vh.hdr_len = (uint16_t)hl;
    vh.gso_size = (uint16_t)h->plen;
    vh.csum_start = h->iphl;
    vh.csum_offset = udp ? 6 : 16;
    iov[0].iov_base = &vh;
    iov[0].iov_len = VNET_HDR;
    iov[1].iov_base = hdr;
    iov[1].iov_len = hl;
    int k = 2;
    for (int i = head[r]; i >= 0; i = next_in_run[i]) {
      iov[k].iov_base = (void *)(segs[i].p + segs[i].iphl + segs[i].l4hl);
      iov[k].iov_len = segs[i].plen;
      k++;
    }
    st->out++;
    st->supers++;
    st->coalesced += (uint32_t)n;
    if (emit(ctx, iov, k) < 0) st->errors += (uint32_t)n;
  }
}

static int emit_fd(void *ctx, struct iovec *iov, int n) {
  int fd = *(int *)ctx;
  for (;;) {
    ssize_t w = writev(fd, iov, n);
    if (w >= 0) return 0;
    if (errno != EINTR) return -1;
  }
}

typedef struct {
  uint8_t *out;
  size_t cap;
  size_t used;
  uint32_t *lens;
  size_t maxLens;
  size_t n;
} buf_ctx;

static int emit_buf(void *ctx, struct iovec *iov, int n) {
  buf_ctx *b = ctx;
  size_t total = 0;
  for (int i = 0; i < n; i++) total += iov[i].iov_len;
  if (b->n >= b->maxLens || b->used + total > b->cap) return -1;
  for (int i = 0; i < n; i++) {
    if (iov[i].iov_len == 0) continue; // an empty typed array may have no data pointer
    memcpy(b->out + b->used, iov[i].iov_base, iov[i].iov_len);
    b->used += iov[i].iov_len;
  }
  b->lens[b->n++] = (uint32_t)total;
  return 0;
}

// ---- read: splitting ----

typedef struct {
  uint32_t supers;    // super-packets split
  uint32_t segments;  // packets they became
  uint32_t csums;     // partial checksums completed
  uint32_t malformed; // reads dropped (header that does not describe the packet)
} rstats_t;

// Splits one read (vnet header + packet) into IP packets written back to back into `out`, their
// lengths into `lens`. Returns the packet count, or 0 when the read is dropped as malformed.
static int split(const uint8_t *in, size_t inLen, uint8_t *out, size_t cap, uint32_t *lens, size_t maxLens, rstats_t *st) {
  struct virtio_net_hdr vh;
  if (inLen < VNET_HDR || maxLens == 0) goto bad;
  memcpy(&vh, in, VNET_HDR);
  const uint8_t *p = in + VNET_HDR;
  size_t len = inLen - VNET_HDR;
  uint8_t gso = vh.gso_type & ~VIRTIO_NET_HDR_GSO_ECN;
  if (gso == VIRTIO_NET_HDR_GSO_NONE) {
    if (len > cap) goto bad;
    memcpy(out, p, len);
    if (vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
      size_t at = (size_t)vh.csum_start + vh.csum_offset;
      if (at + 2 > len || vh.csum_start > len) goto bad;
      uint16_t c = (uint16_t)~fold(sum16(0, out + vh.csum_start, len - vh.csum_start));
      if (c == 0 && vh.csum_offset == 6) c = 0xffff; // UDP sends a zero checksum as all ones
      wr16(out + at, c);
      st->csums++;
    }
    lens[0] = (uint32_t)len;
    return 1;
  }
  if (gso != VIRTIO_NET_HDR_GSO_TCPV4 && gso != VIRTIO_NET_HDR_GSO_TCPV6 && gso != VIRTIO_NET_HDR_GSO_UDP_L4) goto bad;
  if (len < 20 || vh.gso_size == 0) goto bad;
  int v6 = p[0] >> 4 == 6;
  size_t iphl;
  uint8_t proto;
  if (v6) {
    if (len < 40) goto bad;
    iphl = 40;
    proto = p[6];
  } else {
    if (p[0] >> 4 != 4) goto bad;
    iphl = (size_t)(p[0] & 0x0f) * 4;
    proto = p[9];
    if (iphl < 20 || len < iphl) goto bad;
  }
  int udp = gso == VIRTIO_NET_HDR_GSO_UDP_L4;
  if (proto != (udp ? 17 : 6) || len < iphl + (udp ? 8 : 20)) goto bad;
  size_t l4hl = udp ? 8 : (size_t)(p[iphl + 12] >> 4) * 4;
  size_t hl = iphl + l4hl;
  if ((udp ? l4hl != 8 : l4hl < 20) || len < hl) goto bad; // the fixes below write inside the L4 header
  size_t payload = len - hl;
  size_t mss = vh.gso_size;
  size_t nseg = payload == 0 ? 1 : (payload + mss - 1) / mss;
  if (nseg > maxLens || nseg * hl + payload > cap) goto bad;
  uint16_t id = v6 ? 0 : rd16(p + 4);
  uint32_t seq = udp ? 0 : rd32(p + iphl + 4);
  uint8_t flags = udp ? 0 : p[iphl + 13];
  size_t o = 0;
  for (size_t i = 0; i < nseg; i++) {
    size_t plen = i + 1 < nseg ? mss : payload - i * mss;
    uint8_t *q = out + o;
    memcpy(q, p, hl);
    memcpy(q + hl, p + hl + i * mss, plen);
    uint32_t l4len = (uint32_t)(l4hl + plen);
    uint8_t *t = q + iphl;
    if (v6) {
      wr16(q + 4, (uint16_t)(l4len + iphl - 40));
    } else {
      wr16(q + 2, (uint16_t)(iphl + l4len));
      wr16(q + 4, (uint16_t)(id + i));
      ipv4_fix_csum(q, iphl);
    }
    int csumAt;
    if (udp) {
      wr16(t + 4, (uint16_t)l4len);
      csumAt = 6;
    } else {
      wr32(t + 4, seq + (uint32_t)(i * mss));
      uint8_t f = flags;
      if (i + 1 < nseg) f &= (uint8_t)~(TCP_FIN | TCP_PSH);
      if (i > 0) f &= (uint8_t)~TCP_CWR;
      t[13] = f;
      csumAt = 16;
    }
    wr16(t + csumAt, 0);
    uint16_t c = (uint16_t)~fold(sum16(pseudo(q, v6, proto, l4len), t, l4len));
    if (c == 0 && udp) c = 0xffff;
    wr16(t + csumAt, c);
    lens[i] = (uint32_t)(hl + plen);
    o += hl + plen;
  }
  st->supers++;
  st->segments += (uint32_t)nseg;
  return (int)nseg;
bad:
  st->malformed++;
  return 0;
}

// ---- N-API ----

static int get_u32s(napi_env env, napi_value v, uint32_t **out, size_t *count) {
  uint8_t *raw;
  size_t bytes;
  if (get_bytes(env, v, &raw, &bytes)) return -1;
  *out = (uint32_t *)raw;
  *count = bytes / 4;
  return 0;
}

static void put_wstats(uint32_t *res, size_t n, const wstats_t *st) {
  uint32_t v[5] = {st->packets, st->out, st->coalesced, st->supers, st->errors};
  for (size_t i = 0; i < n && i < 5; i++) res[i] = v[i];
}

// Parses (data, lens, count) starting at argv[first]; throws and returns -1 on bad arguments.
static int write_args(napi_env env, napi_value *argv, uint8_t **data, size_t *dataLen, uint32_t **lens, int32_t *count) {
  size_t nlens;
  if (get_bytes(env, argv[0], data, dataLen) || get_u32s(env, argv[1], lens, &nlens) || get_int(env, argv[2], count) || *count < 0 ||
      (size_t)*count > nlens || *count > MAX_WRITE_BATCH)
    return -1;
  size_t total = 0;
  for (int32_t i = 0; i < *count; i++) total += (*lens)[i];
  return total > *dataLen ? -1 : 0;
}

// tunWrite(fd, data, lens: Uint32Array, count, result: Uint32Array(5), udp) -> packets written
// result: [packets, writes, coalesced packets, super-packets, packets refused by the kernel];
// udp: coalesce UDP too (the kernel took TUN_F_USO4/6).
napi_value tun_write(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd, count;
  uint8_t *data;
  size_t dataLen, nres;
  uint32_t *lens, *res;
  bool udp;
  if (argc < 6 || get_int(env, argv[0], &fd) || write_args(env, argv + 1, &data, &dataLen, &lens, &count) || get_u32s(env, argv[4], &res, &nres) ||
      napi_get_value_bool(env, argv[5], &udp) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "tunWrite(fd, data, lens, count <= 1024, result, udp)");
    return NULL;
  }
  wstats_t st = {0};
  coalesce(data, dataLen, lens, count, udp, emit_fd, &fd, &st);
  put_wstats(res, nres, &st);
  return make_int(env, (int64_t)st.packets - st.errors);
}

// tunCoalesce(data, lens, count, out, outLens: Uint32Array, result, udp) -> packets in out (each
// with its vnet header), the write path without the fd (for tests).
napi_value tun_coalesce(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t count;
  uint8_t *data, *out;
  size_t dataLen, outLen, nOutLens, nres;
  uint32_t *lens, *outLens, *res;
  bool udp;
  if (argc < 7 || write_args(env, argv, &data, &dataLen, &lens, &count) || get_bytes(env, argv[3], &out, &outLen) ||
      get_u32s(env, argv[4], &outLens, &nOutLens) || get_u32s(env, argv[5], &res, &nres) || napi_get_value_bool(env, argv[6], &udp) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "tunCoalesce(data, lens, count <= 1024, out, outLens, result, udp)");
    return NULL;
  }
  buf_ctx b = {out, outLen, 0, outLens, nOutLens, 0};
  wstats_t st = {0};
  coalesce(data, dataLen, lens, count, udp, emit_buf, &b, &st);
  put_wstats(res, nres, &st);
  return make_int(env, (int64_t)b.n);
}

static void put_rstats(double *res, size_t n, const rstats_t *st) {
  double v[4] = {st->supers, st->segments, st->csums, st->malformed};
  for (size_t i = 0; i < n && i < 4; i++) res[i] += v[i];
}

static int get_f64s(napi_env env, napi_value v, double **out, size_t *count) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, count, &p, &ab, &off) != napi_ok || type != napi_float64_array) return -1;
  *out = p;
  return 0;
}

// Where split packets go: (out, outLens: Uint32Array, stats: Float64Array(4)) from argv[0..2].
// stats accumulate: [super-packets split, segments, checksums completed, malformed].
typedef struct {
  uint8_t *out;
  size_t outLen;
  uint32_t *lens;
  size_t nLens;
  double *stats;
  size_t nStats;
} split_dest;

static int split_args(napi_env env, napi_value *argv, split_dest *d) {
  return get_bytes(env, argv[0], &d->out, &d->outLen) || get_u32s(env, argv[1], &d->lens, &d->nLens) || get_f64s(env, argv[2], &d->stats, &d->nStats);
}

static napi_value split_into(napi_env env, const uint8_t *in, size_t len, split_dest *d) {
  rstats_t st = {0};
  int n = split(in, len, d->out, d->outLen, d->lens, d->nLens, &st);
  put_rstats(d->stats, d->nStats, &st);
  return make_int(env, n);
}

// tunSplit(in, out, outLens, stats) -> packets in out (0: dropped as malformed)
napi_value tun_split(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  uint8_t *in;
  size_t inLen;
  split_dest d;
  if (argc < 4 || get_bytes(env, argv[0], &in, &inLen) || split_args(env, argv + 1, &d)) {
    napi_throw_type_error(env, "CBR_IO", "tunSplit(in, out, outLens, stats: Float64Array)");
    return NULL;
  }
  return split_into(env, in, inLen, &d);
}

// tunRead(fd, scratch, out, outLens, stats) -> packets in out; 0 when the read was dropped as
// malformed; -errno when the read failed (the device is gone). Blocks: for the reader worker.
napi_value tun_read(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  int32_t fd;
  uint8_t *scratch;
  size_t scratchLen;
  split_dest d;
  if (argc < 5 || get_int(env, argv[0], &fd) || get_bytes(env, argv[1], &scratch, &scratchLen) || split_args(env, argv + 2, &d)) {
    napi_throw_type_error(env, "CBR_IO", "tunRead(fd, scratch, out, outLens, stats: Float64Array)");
    return NULL;
  }
  ssize_t got;
  do got = read(fd, scratch, scratchLen);
  while (got < 0 && errno == EINTR);
  if (got < 0) return make_int(env, -errno);
  if (got == 0) return make_int(env, -EIO);
  return split_into(env, scratch, (size_t)got, &d);
}

// tunOffload(fd) -> the TUN_F_* flags the kernel took (USO only where it has it); throws when the
// kernel refuses even checksum and TSO offload (the caller reopens without IFF_VNET_HDR).
napi_value tun_offload(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int32_t fd;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1 || get_int(env, argv[0], &fd)) {
    napi_throw_type_error(env, "CBR_IO", "tunOffload(fd)");
    return NULL;
  }
  unsigned int base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
  unsigned int full = base | TUN_F_USO4 | TUN_F_USO6;
  if (ioctl(fd, TUNSETOFFLOAD, full) == 0) return make_int(env, full);
  if (ioctl(fd, TUNSETOFFLOAD, base) == 0) return make_int(env, base);
  return throw_errno(env, "TUNSETOFFLOAD", errno);
}
