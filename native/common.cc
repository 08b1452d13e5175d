// Errors and argument checks shared by the addon's parts.
#include "common.h"

#include <uv.h>

#include <climits>
#include <cmath>
#include <string>

namespace hn {

void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* detail) {
  // libuv's error numbers are the negated errno values on Unix; its *_r variants never allocate.
  char code[64];
  char text[256];
  uv_err_name_r(-err, code, sizeof code);
  uv_strerror_r(-err, text, sizeof text);
  std::string message = std::string(code) + ": " + (detail != nullptr ? detail : text) + ", " + syscall;

  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  error.Set("errno", Napi::Number::New(env, -err));
  error.Set("syscall", Napi::String::New(env, syscall));
  error.ThrowAsJavaScriptException();
}

bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
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

bool ArgFd(const Napi::CallbackInfo& info, size_t index, int* out) {
  int64_t fd;
  if (!ArgInt(info, index, "fd", 0, INT_MAX, &fd)) return false;
  *out = static_cast<int>(fd);
  return true;
}

bool ArgFamily(const Napi::CallbackInfo& info, size_t index, int* out) {
  int64_t family;
  if (!ArgInt(info, index, "family", 4, 6, &family)) return false;
  if (family == 5) {
    Napi::RangeError::New(info.Env(), "family must be 4 or 6").ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<int>(family);
  return true;
}

bool BytesOf(Napi::Env env, Napi::Value value, const char* name, size_t minLength, uint8_t** data,
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

bool ArgByteRange(const Napi::CallbackInfo& info, size_t index, ByteRange* out) {
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

bool SpanPointer(napi_env env, napi_value views, uint32_t i, double offset, uint32_t length, uint8_t** out) {
  napi_value view;
  napi_typedarray_type type;
  size_t size;
  void* base;
  if (napi_get_element(env, views, i, &view) != napi_ok ||
      napi_get_typedarray_info(env, view, &type, &size, &base, nullptr, nullptr) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, nullptr, "scatter list: views must be Uint8Arrays");
    return false;
  }
  if (!(offset >= 0 && offset + length <= static_cast<double>(size))) {
    napi_throw_range_error(env, nullptr, "scatter list: a span outside its view");
    return false;
  }
  *out = static_cast<uint8_t*>(base) + static_cast<size_t>(offset);
  return true;
}

}  // namespace hn
