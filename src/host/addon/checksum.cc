// The Internet checksum over a byte range (RFC 1071), for src/wire/checksum.ts's sum16 on ranges
// long enough that the call pays for itself (payload of frames a guest without checksum offload
// sends or receives).
//
// Words are summed as the machine loads them (little-endian): 32 bytes a step in SSE2 lanes where
// the CPU has them (every x86-64), then eight bytes at a time into 64-bit accumulators; RFC 1071
// §2(B) (byte-order independence) makes the folded sum the byte swap of the network-order sum. A 64 KiB range adds at most 8192 × 2^33 (< 2^46): no carry is ever lost.
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "common.h"

namespace hn {
namespace {

uint32_t SumRange(const uint8_t* p, size_t len) {
  uint64_t a = 0;
  uint64_t b = 0;
  size_t i = 0;
#ifdef __SSE2__
  // 16 bytes a step: the eight 16-bit words widened into four 32-bit lanes, two accumulators.
  // A lane gains at most 2 × 0xffff a step; spilled into `a` every 8192 steps, well before 2^32.
  const __m128i zero = _mm_setzero_si128();
  while (i + 32 <= len) {
    __m128i s0 = zero;
    __m128i s1 = zero;
    for (size_t steps = 0; steps < 8192 && i + 32 <= len; steps++, i += 32) {
      const __m128i x = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
      const __m128i y = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i + 16));
      s0 = _mm_add_epi32(s0, _mm_add_epi32(_mm_unpacklo_epi16(x, zero), _mm_unpackhi_epi16(x, zero)));
      s1 = _mm_add_epi32(s1, _mm_add_epi32(_mm_unpacklo_epi16(y, zero), _mm_unpackhi_epi16(y, zero)));
    }
    alignas(16) uint32_t lanes[8];
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes), s0);
    _mm_store_si128(reinterpret_cast<__m128i*>(lanes + 4), s1);
    for (uint32_t lane : lanes) a += lane;
  }
#endif
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

// sumv(views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, start, count): as
// sum16 over the concatenation of views[i][offsets[i], +lengths[i]) for i in [start, start +
// count): a scatter list in guest memory (a frame's payload). A span that starts at an odd
// position of the whole contributes its sum byte-swapped (RFC 1071 §2(B)).
napi_value Sumv(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 5;
  napi_value argv[5];
  uint32_t start = 0;
  uint32_t count = 0;
  napi_typedarray_type types[2] = {};
  size_t lens[2] = {};
  void* data[2] = {};
  bool ok = napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) == napi_ok && argc >= 5 &&
            napi_get_value_uint32(env, argv[3], &start) == napi_ok && napi_get_value_uint32(env, argv[4], &count) == napi_ok;
  for (int i = 0; ok && i < 2; i++) ok = napi_get_typedarray_info(env, argv[1 + i], &types[i], &lens[i], &data[i], nullptr, nullptr) == napi_ok;
  if (!ok || types[0] != napi_float64_array || types[1] != napi_uint32_array) {
    napi_throw_type_error(env, nullptr, "sumv(views, offsets: Float64Array, lengths: Uint32Array, start, count)");
    return nullptr;
  }
  const uint64_t end = static_cast<uint64_t>(start) + count;
  if (end > lens[0] || end > lens[1]) {
    napi_throw_range_error(env, nullptr, "sumv: start and count outside the arrays");
    return nullptr;
  }
  const auto* offsets = static_cast<const double*>(data[0]);
  const auto* lengths = static_cast<const uint32_t*>(data[1]);
  uint64_t sum = 0;
  uint64_t at = 0;
  for (uint32_t i = start; i < end; i++) {
    uint8_t* p;
    if (!SpanPointer(env, argv[0], i, offsets[i], lengths[i], &p)) return nullptr;
    uint32_t s = SumRange(p, lengths[i]);
    if (at & 1) s = ((s & 0xff) << 8) | (s >> 8);
    sum += s;
    at += lengths[i];
  }
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  napi_value result = nullptr;
  napi_create_uint32(env, static_cast<uint32_t>(sum), &result);
  return result;
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  if (napi_create_function(env, "sum16", NAPI_AUTO_LENGTH, Sum16, nullptr, &fn) == napi_ok) exports.Set("sum16", Napi::Value(env, fn));
  if (napi_create_function(env, "sumv", NAPI_AUTO_LENGTH, Sumv, nullptr, &fn) == napi_ok) exports.Set("sumv", Napi::Value(env, fn));
  napi_util::ExportCopy(env, exports);
}

}  // namespace hn
