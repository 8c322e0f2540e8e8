// Shared by the addon's C files: the argument helpers of cbr_io.c and the TUN part's registration.
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
/** Adds the TUN offload functions (cbr_tun.c) to the addon's exports. */
CBR_HIDDEN void cbr_tun_register(napi_env env, napi_value exports);
#endif
