// The Internet checksum over a byte range (RFC 1071), for src/wire/checksum.ts's sum16 on ranges
// long enough that the call pays for itself (payload of frames a guest without checksum offload
// sends or receives).
//
// Words are summed as the machine loads them (little-endian) eight bytes at a time into a 64-bit
// accumulator; RFC 1071 §2(B) (byte-order independence) makes the folded sum the byte swap of the
// network-order sum. A 64 KiB range adds at most 8192 × 2^33 (< 2^46): no carry is ever lost.
#include <cstring>

#include "common.h"

namespace hn {
namespace {

uint32_t SumRange(const uint8_t* p, size_t len) {
  uint64_t a = 0;
  uint64_t b = 0;
  size_t i = 0;
  // Two accumulators so consecutive adds do not wait on each other.
  for (; i + 16 <= len; i += 16) {
    uint64_t x;
    uint64_t y;
    std::memcpy(&x, p + i, 8);
    std::memcpy(&y, p + i + 8, 8);
    a += (x & 0xffffffffu) + (x >> 32);
    b += (y & 0xffffffffu) + (y >> 32);
  }
  uint64_t s = a + b;
  for (; i + 2 <= len; i += 2) {
    uint16_t w;
    std::memcpy(&w, p + i, 2);
    s += w;
  }
  if (i < len) s += p[i];  // the odd byte, padded with zero on its right in network order
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  s = ((s & 0xff) << 8) | (s >> 8);
#endif
  return static_cast<uint32_t>(s);
}

// sum16(buf, offset, length): the ones' complement sum of the range in network order, folded to
// 16 bits (0..0xffff; not complemented). Throws on a bad argument. Plain N-API (no CallbackInfo,
// no separate type checks): it runs per frame, and its cost beyond the sum is the calls it makes.
napi_value Sum16(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type type = napi_int8_array;
  size_t byteLength = 0;
  void* data = nullptr;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok || argc < 3 ||
      napi_get_typedarray_info(env, argv[0], &type, &byteLength, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    napi_throw_type_error(env, nullptr, "sum16(buf, offset, length): buf must be a Uint8Array");
    return nullptr;
  }
  double off = -1;
  double len = -1;
  if (napi_get_value_double(env, argv[1], &off) != napi_ok || napi_get_value_double(env, argv[2], &len) != napi_ok ||
      !(off >= 0) || !(len >= 0) || off + len > static_cast<double>(byteLength) ||
      off != static_cast<double>(static_cast<size_t>(off)) || len != static_cast<double>(static_cast<size_t>(len))) {
    napi_throw_range_error(env, nullptr, "sum16: offset and length must be integers within the buffer");
    return nullptr;
  }
  napi_value result = nullptr;
  napi_create_uint32(env, SumRange(static_cast<const uint8_t*>(data) + static_cast<size_t>(off), static_cast<size_t>(len)), &result);
  return result;
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  if (napi_create_function(env, "sum16", NAPI_AUTO_LENGTH, Sum16, nullptr, &fn) == napi_ok) exports.Set("sum16", Napi::Value(env, fn));
}

}  // namespace hn
