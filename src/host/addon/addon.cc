// Entry point of the vunet_hostnet native addon: host sockets Node core cannot make (ICMP ping
// and raw sockets, the IP_RECVERR error queue, per-socket TTL, stream queues read by peeking), a
// Poller for them on Node's loop, the process's confinement, the Internet checksum over long
// ranges, and copies between Uint8Arrays that make no view. See src/host/native.ts for the JS
// interface and its conventions.
#include <time.h>  // before linux/errqueue.h, which needs struct timespec

#include <linux/errqueue.h>
#include <uv.h>

#include <cerrno>

#include "common.h"

namespace hn {
void InitConfine(Napi::Env env, Napi::Object exports);  // confine.cc
}  // namespace hn

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Positive errno values; calls return them negated.
  exports.Set("EAGAIN", Napi::Number::New(env, EAGAIN));
  exports.Set("EHOSTUNREACH", Napi::Number::New(env, EHOSTUNREACH));
  exports.Set("ENETUNREACH", Napi::Number::New(env, ENETUNREACH));
  exports.Set("ECONNREFUSED", Napi::Number::New(env, ECONNREFUSED));
  exports.Set("EMSGSIZE", Napi::Number::New(env, EMSGSIZE));
  exports.Set("EACCES", Napi::Number::New(env, EACCES));
  exports.Set("EPERM", Napi::Number::New(env, EPERM));
  exports.Set("EPROTO", Napi::Number::New(env, EPROTO));
  exports.Set("EINPROGRESS", Napi::Number::New(env, EINPROGRESS));
  exports.Set("ECONNRESET", Napi::Number::New(env, ECONNRESET));
  exports.Set("ETIMEDOUT", Napi::Number::New(env, ETIMEDOUT));
  exports.Set("EPIPE", Napi::Number::New(env, EPIPE));
  exports.Set("SO_EE_ORIGIN_LOCAL", Napi::Number::New(env, SO_EE_ORIGIN_LOCAL));
  exports.Set("SO_EE_ORIGIN_ICMP", Napi::Number::New(env, SO_EE_ORIGIN_ICMP));
  exports.Set("SO_EE_ORIGIN_ICMP6", Napi::Number::New(env, SO_EE_ORIGIN_ICMP6));
  hn::InitSockets(env, exports);
  hn::InitChecksum(env, exports);
  hn::InitStream(env, exports);
  hn::InitPoller(env, exports);
  hn::InitConfine(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(vunet_hostnet, Init)
