// Shared by the addon's C files: cbr_io.c's argument helpers and the TUN functions its init exports.
#ifndef CBR_IO_H
#define CBR_IO_H
#include <node_api.h>
#include <stddef.h>
#include <stdint.h>

#define CBR_HIDDEN __attribute__((visibility("hidden")))
CBR_HIDDEN napi_value throw_errno(napi_env env, const char *what, int err);
CBR_HIDDEN napi_value make_int(napi_env env, int64_t v);
CBR_HIDDEN int get_int(napi_env env, napi_value v, int32_t *out);
CBR_HIDDEN int get_bytes(napi_env env, napi_value v, uint8_t **data, size_t *len);
/** One exported function: a row of the addon's napi_property_descriptor table. */
#define CBR_FN(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_default, NULL}

// The TUN offload part (cbr_tun.c), exported by cbr_io.c's init.
#define VNET_HDR 10 // sizeof(struct virtio_net_hdr): the TUN default, no TUNSETVNETHDRSZ needed
#define MAX_WRITE_BATCH 1024
CBR_HIDDEN napi_value tun_write(napi_env env, napi_callback_info info);
CBR_HIDDEN napi_value tun_coalesce(napi_env env, napi_callback_info info);
CBR_HIDDEN napi_value tun_read(napi_env env, napi_callback_info info);
CBR_HIDDEN napi_value tun_split(napi_env env, napi_callback_info info);
CBR_HIDDEN napi_value tun_offload(napi_env env, napi_callback_info info);
#endif
