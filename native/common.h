// Shared helpers of the vunet_hostnet native addon: errno errors shaped like Node's, argument
// checks, and the per-file Init functions that addon.cc calls.
//
// Built with C++ exceptions disabled (NAPI_DISABLE_CPP_EXCEPTIONS): a helper that fails leaves a
// pending JS exception and returns false; the caller then returns to JS at once.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>

namespace hn {

// Number.MAX_SAFE_INTEGER: the largest integer a JS number holds exactly.
constexpr int64_t kMaxSafeInteger = (int64_t{1} << 53) - 1;

// Repeats a system call interrupted by a signal, so no caller ever sees EINTR.
template <typename Call>
auto RetryEintr(Call call) -> decltype(call()) {
  decltype(call()) r;
  do {
    r = call();
  } while (r == -1 && errno == EINTR);
  return r;
}

// Throws an Error shaped like Node's system errors: message "EACCES: permission denied, socket",
// and properties code ('EACCES'), errno (negative, as Node sets it) and syscall. `detail`
// replaces the strerror text when the errno alone is unclear.
void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* detail = nullptr);

// Argument readers: on a bad argument they throw TypeError/RangeError and return false.
bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
            int64_t max, int64_t* out);
bool ArgFd(const Napi::CallbackInfo& info, size_t index, int* out);
// The address family argument: 4 or 6.
bool ArgFamily(const Napi::CallbackInfo& info, size_t index, int* out);

// A byte range of a Uint8Array given as (buf, offset, length) at info[index..index+2].
struct ByteRange {
  uint8_t* data;
  size_t length;
};
bool ArgByteRange(const Napi::CallbackInfo& info, size_t index, ByteRange* out);

// The bytes of a Uint8Array of at least `minLength` bytes; `name` is for the error message.
bool BytesOf(Napi::Env env, Napi::Value value, const char* name, size_t minLength, uint8_t** data,
             size_t* length);

// The bytes of span i of a scatter list given as (views: Uint8Array[], offsets, lengths): a
// pointer to views[i][offset, offset + length), checked to lie within the view. False leaves an
// exception pending.
bool SpanPointer(napi_env env, napi_value views, uint32_t i, double offset, uint32_t length, uint8_t** out);

// Registration of each part of the addon on the exports object.
void InitSockets(Napi::Env env, Napi::Object exports);   // sockets.cc
void InitChecksum(Napi::Env env, Napi::Object exports);  // checksum.cc
void InitStream(Napi::Env env, Napi::Object exports);    // stream.cc

}  // namespace hn
