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

Napi::Value Fail(Napi::Env env) { return env.Undefined(); }  // with a pending exception

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
// 16 bits (0..0xffff; not complemented). Throws on a bad argument.
Napi::Value Sum16(const Napi::CallbackInfo& info) {
  ByteRange r;
  if (!ArgByteRange(info, 0, &r)) return Fail(info.Env());
  return Napi::Number::New(info.Env(), SumRange(r.data, r.length));
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  exports.Set("sum16", Napi::Function::New(env, Sum16, "sum16"));
}

}  // namespace hn
