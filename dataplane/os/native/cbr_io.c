// cbr_io: batched UDP I/O for the agent's hot path (N-API, built with gcc against the headers that
// ship with Node; see the Makefile's `native` target).
//
// Node's dgram sends and receives one datagram per call and offers neither GSO nor GRO. This addon
// moves packets in batches between a UDP socket and caller-owned buffers: recvmmsg with UDP_GRO
// (one coalesced super-datagram per flow and batch, split by the caller using the segment size it
// reports), sendmmsg with UDP_SEGMENT (runs of same-size packets to one destination sent as one
// GSO message). Nothing is allocated per packet and no JavaScript object is made per packet: the
// caller reads lengths and addresses from typed arrays. Each feature falls back when the kernel
// refuses it (GRO off, GSO off after EIO/EINVAL), and the caller can switch both off to test that.
//
// Address slots are 20 bytes: [0] family (4 or 6), [1] unused, [2..3] port (big endian),
// [4..19] address (IPv4 in the first 4 bytes). On a connected socket a send slot with family 0
// means the connected peer (no address passed: the kernel uses the socket's cached route).
#define _GNU_SOURCE
#include "cbr_io.h"
#include <uv.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 64
#define ADDR_SLOT 20
#define GSO_MAX_SEGMENTS 64
#define GSO_MAX_BYTES 65000

#define NAPI_CALL(env, call)                                                         \
  do {                                                                               \
    if ((call) != napi_ok) {                                                         \
      const napi_extended_error_info *info;                                          \
      napi_get_last_error_info((env), &info);                                        \
      bool pending;                                                                  \
      napi_is_exception_pending((env), &pending);                                    \
      if (!pending) napi_throw_error((env), "CBR_IO", info && info->error_message ? info->error_message : "N-API call failed"); \
      return NULL;                                                                   \
    }                                                                                \
  } while (0)

napi_value throw_errno(napi_env env, const char *what, int err) {
  char msg[160];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  char code[32];
  snprintf(code, sizeof code, "E%d", err);
  napi_throw_error(env, code, msg);
  return NULL;
}

napi_value make_int(napi_env env, int64_t v) {
  napi_value out;
  napi_create_int64(env, v, &out);
  return out;
}

static napi_value make_bool(napi_env env, bool v) {
  napi_value out;
  napi_get_boolean(env, v, &out);
  return out;
}

int get_int(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok ? 0 : -1;
}

int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len) {
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  void *p;
  if (napi_get_typedarray_info(env, v, &type, len, &p, &ab, &off) != napi_ok) return -1;
  size_t elem = type == napi_uint32_array ? 4 : type == napi_uint16_array ? 2 : 1;
  *len *= elem;
  *data = p;
  return 0;
}

// Encodes a sockaddr into a 20-byte slot.
static void put_addr(uint8_t *slot, const struct sockaddr_storage *ss) {
  memset(slot, 0, ADDR_SLOT);
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    slot[0] = 4;
    memcpy(slot + 2, &a->sin_port, 2);
    memcpy(slot + 4, &a->sin_addr, 4);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    slot[0] = 6;
    memcpy(slot + 2, &a->sin6_port, 2);
    memcpy(slot + 4, &a->sin6_addr, 16);
  }
}

// Decodes a slot for a socket of `family`; an IPv4 slot on an IPv6 socket becomes v4-mapped.
static socklen_t get_addr(const uint8_t *slot, int family, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (family == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    memcpy(&a->sin_port, slot + 2, 2);
    memcpy(&a->sin_addr, slot + 4, 4);
    return sizeof *a;
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  a->sin6_family = AF_INET6;
  memcpy(&a->sin6_port, slot + 2, 2);
  if (slot[0] == 4) {
    a->sin6_addr.s6_addr[10] = 0xff;
    a->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&a->sin6_addr.s6_addr[12], slot + 4, 4);
  } else {
    memcpy(&a->sin6_addr, slot + 4, 16);
  }
  return sizeof *a;
}

// open(family 4|6, host, port, gro, bufferBytes) -> [fd, port, groOn, gsoAvailable]
static napi_value io_open(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fam, port, buf;
  bool gro;
  char host[64];
  size_t hostLen;
  if (argc < 5 || get_int(env, argv[0], &fam) || get_int(env, argv[2], &port) || napi_get_value_bool(env, argv[3], &gro) != napi_ok ||
      get_int(env, argv[4], &buf) || napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hostLen) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "open(family, host, port, gro, bufferBytes)");
    return NULL;
  }
  int af = fam == 6 ? AF_INET6 : AF_INET;
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t slen;
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)&ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return throw_errno(env, "open: not an IPv4 address", EINVAL);
    slen = sizeof *a;
  } else {
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return throw_errno(env, "open: not an IPv6 address", EINVAL);
    slen = sizeof *a;
  }
  int fd = socket(af, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  if (buf > 0) {
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof buf);
  }
  if (af == AF_INET6) {
    int off = 0;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  int one = 1;
  bool groOn = gro && setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) == 0;
  int seg = 0;
  socklen_t segLen = sizeof seg;
  bool gso = getsockopt(fd, IPPROTO_UDP, UDP_SEGMENT, &seg, &segLen) == 0;
  if (bind(fd, (struct sockaddr *)&ss, slen) < 0) {
    int err = errno;
    close(fd);
    return throw_errno(env, "bind", err);
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  getsockname(fd, (struct sockaddr *)&bound, &blen);
  int boundPort = ntohs(bound.ss_family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port : ((struct sockaddr_in6 *)&bound)->sin6_port);
  napi_value out;
  NAPI_CALL(env, napi_create_array_with_length(env, 4, &out));
  napi_set_element(env, out, 0, make_int(env, fd));
  napi_set_element(env, out, 1, make_int(env, boundPort));
  napi_set_element(env, out, 2, make_bool(env, groOn));
  napi_set_element(env, out, 3, make_bool(env, gso));
  return out;
}

static int socket_family(int fd);

// connect(fd, host, port): fixes the socket's peer. The kernel then delivers only that peer's
// datagrams and keeps the route; sends with a family-0 slot go to it.
static napi_value io_connect(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, port;
  char host[64];
  size_t hostLen;
  if (argc < 3 || get_int(env, argv[0], &fd) || get_int(env, argv[2], &port) || port < 1 || port > 65535 ||
      napi_get_value_string_utf8(env, argv[1], host, sizeof host, &hostLen) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "connect(fd, host, port)");
    return NULL;
  }
  uint8_t slot[ADDR_SLOT] = {0};
  slot[2] = (uint8_t)(port >> 8);
  slot[3] = (uint8_t)(port & 0xff);
  if (inet_pton(AF_INET, host, slot + 4) == 1) slot[0] = 4;
  else if (inet_pton(AF_INET6, host, slot + 4) == 1) slot[0] = 6;
  else return throw_errno(env, "connect: not an IP address", EINVAL);
  int family = socket_family(fd);
  if (family == AF_INET && slot[0] == 6) return throw_errno(env, "connect: an IPv6 peer on an IPv4 socket", EAFNOSUPPORT);
  struct sockaddr_storage ss;
  socklen_t len = get_addr(slot, family, &ss);
  if (connect(fd, (struct sockaddr *)&ss, len) < 0) return throw_errno(env, "connect", errno);
  return NULL;
}

static int socket_family(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return AF_INET;
  return ss.ss_family;
}

// recv(fd, data, slotSize, lens: Uint32Array, segs: Uint16Array, addrs) -> count (0 when nothing waits)
static napi_value io_recv(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, slot;
  uint8_t *data, *lensRaw, *segsRaw, *addrs;
  size_t dataLen, lensLen, segsLen, addrsLen;
  if (argc < 6 || get_int(env, argv[0], &fd) || get_bytes(env, argv[1], &data, &dataLen) || get_int(env, argv[2], &slot) || slot <= 0 ||
      get_bytes(env, argv[3], &lensRaw, &lensLen) || get_bytes(env, argv[4], &segsRaw, &segsLen) || get_bytes(env, argv[5], &addrs, &addrsLen)) {
    napi_throw_type_error(env, "CBR_IO", "recv(fd, data, slotSize, lens, segs, addrs)");
    return NULL;
  }
  size_t n = dataLen / (size_t)slot;
  if (n > lensLen / 4) n = lensLen / 4;
  if (n > segsLen / 2) n = segsLen / 2;
  if (n > addrsLen / ADDR_SLOT) n = addrsLen / ADDR_SLOT;
  if (n > MAX_BATCH) n = MAX_BATCH;
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage from[MAX_BATCH];
  char ctrl[MAX_BATCH][CMSG_SPACE(sizeof(int))];
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = data + i * (size_t)slot;
    iov[i].iov_len = (size_t)slot;
    memset(&msgs[i], 0, sizeof msgs[i]);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
    msgs[i].msg_hdr.msg_name = &from[i];
    msgs[i].msg_hdr.msg_namelen = sizeof from[i];
    msgs[i].msg_hdr.msg_control = ctrl[i];
    msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
  }
  int got = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
  if (got < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return make_int(env, 0);
    return throw_errno(env, "recvmmsg", errno);
  }
  uint32_t *lens = (uint32_t *)lensRaw;
  uint16_t *segs = (uint16_t *)segsRaw;
  for (int i = 0; i < got; i++) {
    // A datagram larger than the slot is cut (MSG_TRUNC): report the slot size; the caller's
    // slot is sized for the largest datagram it accepts (64 KiB with GRO).
    lens[i] = msgs[i].msg_len > (unsigned)slot ? (uint32_t)slot : msgs[i].msg_len;
    segs[i] = 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c)) {
      if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
        int gs;
        memcpy(&gs, CMSG_DATA(c), sizeof gs);
        segs[i] = (uint16_t)gs;
      }
    }
    put_addr(addrs + (size_t)i * ADDR_SLOT, &from[i]);
  }
  return make_int(env, got);
}

// send(fd, data, lens: Uint32Array, addrs, count, gso) -> packets sent (fewer when the socket is full)
// Packets lie back to back in `data`. With gso, a run of packets to one destination whose lengths
// are equal (the last may be shorter) goes out as one message with UDP_SEGMENT.
static napi_value io_send(napi_env env, napi_callback_info info) {
  size_t argc = 6;
  napi_value argv[6];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd, count;
  bool gso;
  uint8_t *data, *lensRaw, *addrs;
  size_t dataLen, lensLen, addrsLen;
  if (argc < 6 || get_int(env, argv[0], &fd) || get_bytes(env, argv[1], &data, &dataLen) || get_bytes(env, argv[2], &lensRaw, &lensLen) ||
      get_bytes(env, argv[3], &addrs, &addrsLen) || get_int(env, argv[4], &count) || napi_get_value_bool(env, argv[5], &gso) != napi_ok || count < 0 ||
      (size_t)count > lensLen / 4 || (size_t)count > addrsLen / ADDR_SLOT) {
    napi_throw_type_error(env, "CBR_IO", "send(fd, data, lens, addrs, count, gso)");
    return NULL;
  }
  const uint32_t *lens = (const uint32_t *)lensRaw;
  int family = socket_family(fd);
  struct mmsghdr msgs[MAX_BATCH];
  struct iovec iov[MAX_BATCH];
  struct sockaddr_storage to[MAX_BATCH];
  char ctrl[MAX_BATCH][CMSG_SPACE(sizeof(uint16_t))];
  int firstPacket[MAX_BATCH + 1];
  int sent = 0;
  size_t off = 0;
  int p = 0;
  while (p < count) {
    // Build up to MAX_BATCH messages, each one packet or one GSO run.
    int m = 0;
    while (p < count && m < MAX_BATCH) {
      uint32_t len = lens[p];
      if (off + len > dataLen) {
        napi_throw_range_error(env, "CBR_IO", "send: lengths run past the data");
        return NULL;
      }
      int run = 1;
      size_t bytes = len;
      if (gso) {
        while (p + run < count && run < GSO_MAX_SEGMENTS && bytes + lens[p + run] <= GSO_MAX_BYTES && lens[p + run] <= len &&
               lens[p + run - 1] == len && memcmp(addrs + (size_t)(p + run) * ADDR_SLOT, addrs + (size_t)p * ADDR_SLOT, ADDR_SLOT) == 0 &&
               off + bytes + lens[p + run] <= dataLen) {
          bytes += lens[p + run];
          run++;
        }
      }
      memset(&msgs[m], 0, sizeof msgs[m]);
      iov[m].iov_base = data + off;
      iov[m].iov_len = bytes;
      msgs[m].msg_hdr.msg_iov = &iov[m];
      msgs[m].msg_hdr.msg_iovlen = 1;
      if (addrs[(size_t)p * ADDR_SLOT] != 0) {
        msgs[m].msg_hdr.msg_name = &to[m];
        msgs[m].msg_hdr.msg_namelen = get_addr(addrs + (size_t)p * ADDR_SLOT, family, &to[m]);
      }
      if (run > 1) {
        msgs[m].msg_hdr.msg_control = ctrl[m];
        msgs[m].msg_hdr.msg_controllen = sizeof ctrl[m];
        struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[m].msg_hdr);
        c->cmsg_level = IPPROTO_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t segSize = (uint16_t)len;
        memcpy(CMSG_DATA(c), &segSize, sizeof segSize);
      }
      firstPacket[m] = p;
      off += bytes;
      p += run;
      m++;
    }
    firstPacket[m] = p;
    int done = sendmmsg(fd, msgs, (unsigned)m, MSG_DONTWAIT);
    if (done < 0) {
      int err = errno;
      if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) return make_int(env, sent);
      // EIO/EINVAL on a GSO message: this path (device, route) does not take it; the caller
      // switches GSO off and resends from `sent`.
      if ((err == EIO || err == EINVAL) && gso) {
        if (sent > 0) return make_int(env, sent);
        napi_throw_error(env, "EGSO", "sendmmsg: the kernel refused a GSO message");
        return NULL;
      }
      return throw_errno(env, "sendmmsg", err);
    }
    sent = firstPacket[done];
    if (done < m) return make_int(env, sent);
  }
  return make_int(env, sent);
}

// ---- readiness: a uv_poll on the fd calls back into JavaScript when datagrams wait ----

typedef struct {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  int closing;
} watch_t;

static void on_closed(uv_handle_t *h) { free(h->data); }

static void on_readable(uv_poll_t *handle, int status, int events) {
  watch_t *w = handle->data;
  if (w->closing) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
  napi_value cb, global, result;
  napi_get_reference_value(w->env, w->callback, &cb);
  napi_get_global(w->env, &global);
  // A negative libuv status, else the UV_READABLE (1) / UV_WRITABLE (2) bits that are ready.
  napi_value arg = make_int(w->env, status < 0 ? status : events);
  if (napi_call_function(w->env, global, cb, 1, &arg, &result) != napi_ok) {
    bool pending = false;
    napi_is_exception_pending(w->env, &pending);
    if (pending) {
      napi_value err;
      napi_get_and_clear_last_exception(w->env, &err);
      napi_fatal_exception(w->env, err);
    }
  }
  napi_close_handle_scope(w->env, scope);
}

static void finalize_watch(napi_env env, void *data, void *hint) {
  (void)env;
  (void)data;
  (void)hint;
  // The handle is freed by unwatch (uv_close); an external that was never unwatched keeps the
  // poll alive for the process's life, which is what a listening socket wants.
}

// watch(fd, callback) -> handle
static napi_value io_watch(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 2 || get_int(env, argv[0], &fd)) {
    napi_throw_type_error(env, "CBR_IO", "watch(fd, callback)");
    return NULL;
  }
  struct uv_loop_s *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  watch_t *w = calloc(1, sizeof *w);
  if (!w) return throw_errno(env, "watch", ENOMEM);
  w->env = env;
  NAPI_CALL(env, napi_create_reference(env, argv[1], 1, &w->callback));
  int rc = uv_poll_init(loop, &w->poll, fd);
  if (rc != 0) {
    napi_delete_reference(env, w->callback);
    free(w);
    return throw_errno(env, "uv_poll_init", -rc);
  }
  w->poll.data = w;
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  napi_value ext;
  NAPI_CALL(env, napi_create_external(env, w, finalize_watch, NULL, &ext));
  return ext;
}

// The one argument of a call, or NULL when there is none.
static napi_value only_arg(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value arg = NULL;
  if (napi_get_cb_info(env, info, &argc, &arg, NULL, NULL) != napi_ok || argc < 1) return NULL;
  return arg;
}

// pollWritable(handle, on): also report UV_WRITABLE (after a short send) until switched off again
static napi_value io_poll_writable(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *p = NULL;
  bool on = false;
  if (argc < 2 || napi_get_value_external(env, argv[0], &p) != napi_ok || !p || napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "pollWritable(handle, on)");
    return NULL;
  }
  watch_t *w = p;
  if (!w->closing) uv_poll_start(&w->poll, UV_READABLE | (on ? UV_WRITABLE : 0), on_readable);
  return NULL;
}

// unwatch(handle)
static napi_value io_unwatch(napi_env env, napi_callback_info info) {
  napi_value arg = only_arg(env, info);
  void *p;
  if (!arg || napi_get_value_external(env, arg, &p) != napi_ok) {
    napi_throw_type_error(env, "CBR_IO", "unwatch(handle)");
    return NULL;
  }
  watch_t *w = p;
  if (w->closing) return NULL;
  w->closing = 1;
  uv_poll_stop(&w->poll);
  napi_delete_reference(env, w->callback);
  w->poll.data = w;
  uv_close((uv_handle_t *)&w->poll, on_closed);
  return NULL;
}

// close(fd)
static napi_value io_close(napi_env env, napi_callback_info info) {
  napi_value arg = only_arg(env, info);
  int32_t fd;
  if (!arg || get_int(env, arg, &fd)) {
    napi_throw_type_error(env, "CBR_IO", "close(fd)");
    return NULL;
  }
  if (close(fd) < 0) return throw_errno(env, "close", errno);
  return NULL;
}

static void set_int(napi_env env, napi_value exports, const char *name, int32_t v) {
  napi_value n;
  napi_create_int32(env, v, &n);
  napi_set_named_property(env, exports, name, n);
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      CBR_FN("open", io_open),
      CBR_FN("connect", io_connect),
      CBR_FN("recv", io_recv),
      CBR_FN("send", io_send),
      CBR_FN("watch", io_watch),
      CBR_FN("unwatch", io_unwatch),
      CBR_FN("pollWritable", io_poll_writable),
      CBR_FN("close", io_close),
      CBR_FN("tunWrite", tun_write),
      CBR_FN("tunCoalesce", tun_coalesce),
      CBR_FN("tunRead", tun_read),
      CBR_FN("tunSplit", tun_split),
      CBR_FN("tunOffload", tun_offload),
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  set_int(env, exports, "MAX_BATCH", MAX_BATCH);
  set_int(env, exports, "ADDR_SLOT", ADDR_SLOT);
  set_int(env, exports, "TUN_MAX_BATCH", MAX_WRITE_BATCH);
  set_int(env, exports, "TUN_VNET_HDR", VNET_HDR);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
