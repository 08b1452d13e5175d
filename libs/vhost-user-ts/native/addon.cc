// Entry point of the vhost-user-ts native addon: the few system calls Node core lacks (see
// src/native.ts for the JS interface and its conventions).
#include <uv.h>

#include <cerrno>

#include "common.h"

namespace {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Positive errno values; calls return them negated.
  exports.Set("EAGAIN", Napi::Number::New(env, EAGAIN));
  exports.Set("EINTR", Napi::Number::New(env, EINTR));
  exports.Set("EPIPE", Napi::Number::New(env, EPIPE));
  exports.Set("ECONNRESET", Napi::Number::New(env, ECONNRESET));
  vu::InitGuard(env, exports);
  if (env.IsExceptionPending()) return exports;
  vu::InitIo(env, exports);
  vu::InitMapping(env, exports);
  vu::InitPoller(env, exports);
  vu::InitRing(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(vhost_user_native, Init)
