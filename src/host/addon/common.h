// What the parts of the vunet_hostnet native addon share: the helpers of vhost-user-ts's
// napi-util.h (errno errors shaped like Node's, argument checks, scatter-list spans; one source
// for both addons), the address family argument, and the per-file Init functions that addon.cc
// calls.
//
// Built with C++ exceptions disabled (NAPI_DISABLE_CPP_EXCEPTIONS): a helper that fails leaves a
// pending JS exception and returns false; the caller then returns to JS at once.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

#include "vhost-user-ts/napi-util.h"

namespace hn {

using napi_util::ArgByteRange;
using napi_util::ArgFd;
using napi_util::ArgInt;
using napi_util::ByteRange;
using napi_util::BytesOf;
using napi_util::IndexArg;
using napi_util::kMaxSafeInteger;
using napi_util::RetryEintr;
using napi_util::SpanResolver;
using napi_util::ThrowErrno;
using napi_util::Uint8ArrayArg;

// The address family argument: 4 or 6.
bool ArgFamily(const Napi::CallbackInfo& info, size_t index, int* out);

// Registration of each part of the addon on the exports object.
void InitSockets(Napi::Env env, Napi::Object exports);   // sockets.cc
void InitChecksum(Napi::Env env, Napi::Object exports);  // checksum.cc: sums, and copy
void InitStream(Napi::Env env, Napi::Object exports);    // stream.cc
void InitPoller(Napi::Env env, Napi::Object exports);    // poller.cc: Poller (uv_poll_t)

}  // namespace hn
