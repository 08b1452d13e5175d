// Helpers shared by vhost-user-ts's addon and the addons of programs built on it (vunet's host
// addon includes this header through the include directory `native/include` of this package):
// errno errors shaped like Node's, argument checks, scatter-list spans, and `copy`, a memmove
// between Uint8Arrays that makes no view. Header-only (inline): each addon compiles its own copy
// of the same source, so no helper is ever forked.
//
// Built with C++ exceptions disabled (NAPI_DISABLE_CPP_EXCEPTIONS): a helper that fails leaves a
// pending JS exception and returns false; the caller then returns to JS at once.
#pragma once

#include <napi.h>
#include <uv.h>

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace napi_util {

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

// Throws an Error shaped like Node's system errors: message "EADDRINUSE: address already in use,
// bind '/path'", and properties code ('EADDRINUSE'), errno (negative, as Node sets it), syscall
// and, when given, path. `detail` replaces the strerror text when the errno alone is unclear.
inline void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* path = nullptr,
                       const char* detail = nullptr) {
  // libuv's error numbers are the negated errno values on Unix; its *_r variants never allocate
  // (the plain uv_err_name leaks a string for unknown numbers).
  char code[64];
  char text[256];
  uv_err_name_r(-err, code, sizeof code);
  uv_strerror_r(-err, text, sizeof text);
  std::string message = std::string(code) + ": " + (detail != nullptr ? detail : text) + ", " + syscall;
  if (path != nullptr) message += std::string(" '") + path + "'";

  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  if (path != nullptr) error.Set("path", Napi::String::New(env, path));
  error.ThrowAsJavaScriptException();
}

// Argument readers: on a bad argument they throw TypeError/RangeError and return false.
inline bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
                   int64_t max, int64_t* out) {
  Napi::Env env = info.Env();
  Napi::Value value = info[index];
  if (!value.IsNumber()) {
    Napi::TypeError::New(env, std::string(name) + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  double d = value.As<Napi::Number>().DoubleValue();
  // The double comparisons are exact: min and max are within +-2^53.
  if (!std::isfinite(d) || std::trunc(d) != d || d < static_cast<double>(min) ||
      d > static_cast<double>(max)) {
    Napi::RangeError::New(env, std::string(name) + " must be an integer in [" + std::to_string(min) +
                                   ", " + std::to_string(max) + "]")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int64_t>(d);
  return true;
}

inline bool ArgFd(const Napi::CallbackInfo& info, size_t index, int* out) {
  int64_t fd;
  if (!ArgInt(info, index, "fd", 0, INT_MAX, &fd)) return false;
  *out = static_cast<int>(fd);
  return true;
}

inline bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out) {
  if (!info[index].IsString()) {
    Napi::TypeError::New(info.Env(), std::string(name) + " must be a string").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[index].As<Napi::String>().Utf8Value();
  return true;
}

// The bytes of a Uint8Array of at least `minLength` bytes; `name` is for the error message.
inline bool BytesOf(Napi::Env env, Napi::Value value, const char* name, size_t minLength, uint8_t** data,
                    size_t* length) {
  napi_typedarray_type type;
  size_t byteLength = 0;
  void* ptr = nullptr;
  // napi_get_typedarray_info's data pointer already includes the view's byteOffset.
  if (!value.IsTypedArray() ||
      napi_get_typedarray_info(env, value, &type, &byteLength, &ptr, nullptr, nullptr) != napi_ok ||
      (type != napi_uint8_array && type != napi_uint8_clamped_array)) {
    Napi::TypeError::New(env, std::string(name) + " must be a Uint8Array").ThrowAsJavaScriptException();
    return false;
  }
  if (byteLength < minLength) {
    Napi::RangeError::New(env, std::string(name) + " must hold at least " + std::to_string(minLength) +
                                   " bytes")
        .ThrowAsJavaScriptException();
    return false;
  }
  *data = static_cast<uint8_t*>(ptr);
  *length = byteLength;
  return true;
}

// A byte range of a Uint8Array given as (buf, offset, length) at info[index..index+2].
struct ByteRange {
  uint8_t* data;
  size_t length;
};

inline bool ArgByteRange(const Napi::CallbackInfo& info, size_t index, ByteRange* out) {
  Napi::Env env = info.Env();
  uint8_t* data;
  size_t byteLength;
  if (!BytesOf(env, info[index], "buf", 0, &data, &byteLength)) return false;
  int64_t offset;
  int64_t length;
  if (!ArgInt(info, index + 1, "offset", 0, kMaxSafeInteger, &offset) ||
      !ArgInt(info, index + 2, "length", 0, kMaxSafeInteger, &length)) {
    return false;
  }
  if (static_cast<uint64_t>(offset) + static_cast<uint64_t>(length) > byteLength) {
    Napi::RangeError::New(env, "offset + length exceeds the buffer").ThrowAsJavaScriptException();
    return false;
  }
  out->data = data + offset;
  out->length = static_cast<size_t>(length);
  return true;
}

// A Uint8Array argument's bytes, else false (nothing pending: the caller throws, naming itself).
inline bool Uint8ArrayArg(napi_env env, napi_value v, uint8_t** data, size_t* length) {
  napi_typedarray_type type = napi_int8_array;
  void* p = nullptr;
  if (napi_get_typedarray_info(env, v, &type, length, &p, nullptr, nullptr) != napi_ok || type != napi_uint8_array) return false;
  *data = static_cast<uint8_t*>(p);
  return true;
}

// The spans of a scatter list given as (views, offsets, lengths), in turn: a pointer to span i,
// views[i][offset, offset + length), checked to lie within its view. `views` is an array of
// Uint8Arrays, one per span, or the one Uint8Array every span lies in (guest memory in one region,
// the usual case), looked up once: a lookup per span (napi_get_element, napi_get_typedarray_info)
// costs ~70 ns, most of what a span costs. False leaves an exception pending.
class SpanResolver {
 public:
  SpanResolver(napi_env env, napi_value views) : env_(env), views_(views) {
    bool typed = false;
    one_ = napi_is_typedarray(env, views, &typed) == napi_ok && typed;
  }

  bool Pointer(uint32_t i, double offset, uint32_t length, uint8_t** out) {
    if (!one_ || !resolved_) {
      napi_value view = views_;
      if ((!one_ && napi_get_element(env_, views_, i, &view) != napi_ok) || !Uint8ArrayArg(env_, view, &base_, &size_)) {
        napi_throw_type_error(env_, nullptr, "scatter list: views must be Uint8Arrays");
        return false;
      }
      resolved_ = true;
    }
    if (!(offset >= 0 && offset + length <= static_cast<double>(size_))) {
      napi_throw_range_error(env_, nullptr, "scatter list: a span outside its view");
      return false;
    }
    *out = base_ + static_cast<size_t>(offset);
    return true;
  }

 private:
  napi_env env_;
  napi_value views_;
  bool one_ = false;
  bool resolved_ = false;
  uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// An offset or length argument: a whole number in [0, max], else false (nothing pending).
inline bool IndexArg(napi_env env, napi_value v, double max, size_t* out) {
  double d = -1;
  if (napi_get_value_double(env, v, &d) != napi_ok || !(d >= 0) || d > max || d != static_cast<double>(static_cast<size_t>(d))) return false;
  *out = static_cast<size_t>(d);
  return true;
}

// The arguments (src, srcOffset, length, dst, dstOffset) at argv[0..4] of copy and of the
// functions built like it (the host addon's copySum): two Uint8Arrays and a range within each.
// False leaves a TypeError or RangeError pending, its message starting with `name`.
struct CopyRange {
  const uint8_t* src;
  uint8_t* dst;
  size_t length;
};

inline bool CopyArgs(napi_env env, const napi_value* argv, size_t argc, const char* name, CopyRange* out) {
  uint8_t* src = nullptr;
  uint8_t* dst = nullptr;
  size_t srcLen = 0;
  size_t dstLen = 0;
  if (argc < 5 || !Uint8ArrayArg(env, argv[0], &src, &srcLen) || !Uint8ArrayArg(env, argv[3], &dst, &dstLen)) {
    napi_throw_type_error(env, nullptr, (std::string(name) + "(src, srcOffset, length, dst, dstOffset): src and dst must be Uint8Arrays").c_str());
    return false;
  }
  size_t srcOff = 0;
  size_t len = 0;
  size_t dstOff = 0;
  if (!IndexArg(env, argv[1], static_cast<double>(srcLen), &srcOff) || !IndexArg(env, argv[2], static_cast<double>(srcLen - srcOff), &len) ||
      !IndexArg(env, argv[4], static_cast<double>(dstLen) - static_cast<double>(len), &dstOff)) {
    napi_throw_range_error(env, nullptr, (std::string(name) + ": offsets and length must be integers within both arrays").c_str());
    return false;
  }
  out->src = src + srcOff;
  out->dst = dst + dstOff;
  out->length = len;
  return true;
}

// copy(src, srcOffset, length, dst, dstOffset): memmove of src[srcOffset, +length) to
// dst[dstOffset, +length) (Uint8Arrays, e.g. guest memory and a private buffer). Throws on a bad
// range. It is the copy a descriptor chain makes per segment: unlike dst.set(src.subarray(...)),
// it makes no view, so copying a frame in or out of guest memory allocates nothing. A fault in
// guest memory is repaired by vhost-user-ts's SIGBUS guard as for any other access.
// Plain N-API (no CallbackInfo, no separate type checks: napi_get_typedarray_info refuses what is
// not a typed array): this is called per frame, and its cost is the calls it makes.
inline napi_value Copy(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  CopyRange r;
  if (!CopyArgs(env, argv, argc, "copy", &r)) return nullptr;
  std::memmove(r.dst, r.src, r.length);
  return nullptr;
}

// Asks the CPU for every cache line of [p, p + n) at once and returns without waiting for them
// (a hint: the addresses are never read). Shared with the host addon's checksum, which asks for a
// frame's lines before summing it.
inline void PrefetchLines(const uint8_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 64) __builtin_prefetch(p + i);
}

// Asks for the lines of [data + offset, + length) clipped to [data, data + size) and to its first
// 4 KiB, the last byte's line included (prefetch and the host addon's copyJob): nothing when
// offset is past the end or length is 0. offset and length are non-negative (checked by callers).
inline void PrefetchWithin(const uint8_t* data, size_t size, double offset, double length) {
  if (!(offset < static_cast<double>(size)) || !(length > 0)) return;
  const size_t start = static_cast<size_t>(offset);
  size_t n = length < 4096 ? static_cast<size_t>(length) : 4096;
  if (n > size - start) n = size - start;
  PrefetchLines(data + start, n);
  __builtin_prefetch(data + start + n - 1);
}

// prefetch(buf, offset, length): asks the CPU for the cache lines of buf[offset, +length) (at
// most the first 4 KiB) and returns at once. For the next frame in guest memory, which another
// CPU wrote: its lines then arrive while the current frame is handled instead of one at a time
// when its copy reads them. A range outside the buffer is clipped (a hint is never an error).
inline napi_value Prefetch(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type type = napi_int8_array;
  size_t size = 0;
  void* data = nullptr;
  double off = -1;
  double len = -1;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3 ||
      napi_get_typedarray_info(env, argv[0], &type, &size, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array ||
      napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, "prefetch(buf: Uint8Array, offset, length)");
    return nullptr;
  }
  if (!(off >= 0)) return nullptr;
  PrefetchWithin(static_cast<const uint8_t*>(data), size, off, len);
  return nullptr;
}

// Sets exports.copy (see Copy).
inline void ExportCopy(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  if (napi_create_function(env, "copy", NAPI_AUTO_LENGTH, Copy, nullptr, &fn) == napi_ok) exports.Set("copy", Napi::Value(env, fn));
}

// Sets exports.prefetch (see Prefetch).
inline void ExportPrefetch(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  if (napi_create_function(env, "prefetch", NAPI_AUTO_LENGTH, Prefetch, nullptr, &fn) == napi_ok) {
    exports.Set("prefetch", Napi::Value(env, fn));
  }
}

}  // namespace napi_util
