// The Internet checksum over a byte range (RFC 1071), for src/wire/checksum.ts's sum16 on ranges
// long enough that the call pays for itself (payload of frames a guest without checksum offload
// sends or receives).
//
// Words are summed as the machine loads them (little-endian): 64 bytes a step in AVX2 lanes where
// the CPU has them (checked once at load), else 32 bytes a step in SSE2 lanes (every x86-64), then
// eight bytes at a time into 64-bit accumulators; RFC 1071 §2(B) (byte-order independence) makes
// the folded sum the byte swap of the network-order sum. A frame's cache lines are asked for all at
// once first: a frame in guest memory was just written by another CPU, and its sum would otherwise
// wait on one line at a time (1448 bytes not in this core's caches: ~940 ns without, ~700 ns with,
// about what copying them costs; scripts/checksum-bench.ts measures it).
#include <algorithm>
#include <cstring>
#include <ctime>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "common.h"

namespace hn {
namespace {

// Asks for every cache line of [p, p + len) at once (up to 4 KiB), so that a frame in guest
// memory another CPU just wrote arrives in parallel rather than one line after another as the
// sum reaches it (the loads of a summing loop do not run far enough ahead; memcpy's do).
inline void PrefetchRange(const uint8_t* p, size_t len) {
  napi_util::PrefetchLines(p, len < 4096 ? len : 4096);
}

// A 16-bit sum's two bytes swapped: the sum of bytes that start at an odd place (RFC 1071 §2(B)).
inline uint32_t Swap16(uint32_t s) { return ((s & 0xff) << 8) | (s >> 8); }

// The one's-complement fold of a sum, to 16 bits.
inline uint32_t Fold(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum);
}

// The tail after the vector loop, and the fold: `a` holds 16-bit words summed as loaded.
inline uint32_t FinishSum(const uint8_t* p, size_t i, size_t len, uint64_t a) {
  uint64_t b = 0;
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
  uint32_t r = Fold(s);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  r = Swap16(r);
#endif
  return r;
}

#if defined(__x86_64__)
// AVX2, where the CPU has it: 64 bytes a step, each 32-bit lane split into its two 16-bit words
// (mask and shift), four accumulators. A lane gains at most 0xffff a step; spilled into `a` every
// 32768 steps, before 2^32. With kCopy the bytes loaded are also stored to q (CopySum), and the
// tail is summed from the copy: the sum is always of what was copied.
template <bool kCopy>
__attribute__((target("avx2"))) inline uint32_t SumAvx2(const uint8_t* p, uint8_t* q, size_t n) {
  uint64_t a = 0;
  size_t i = 0;
  const __m256i low = _mm256_set1_epi32(0xffff);
  while (i + 64 <= n) {
    __m256i s0 = _mm256_setzero_si256();
    __m256i s1 = _mm256_setzero_si256();
    __m256i s2 = _mm256_setzero_si256();
    __m256i s3 = _mm256_setzero_si256();
    for (size_t steps = 0; steps < 32768 && i + 64 <= n; steps++, i += 64) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i));
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i + 32));
      if constexpr (kCopy) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), x);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i + 32), y);
      }
      s0 = _mm256_add_epi32(s0, _mm256_and_si256(x, low));
      s1 = _mm256_add_epi32(s1, _mm256_srli_epi32(x, 16));
      s2 = _mm256_add_epi32(s2, _mm256_and_si256(y, low));
      s3 = _mm256_add_epi32(s3, _mm256_srli_epi32(y, 16));
    }
    alignas(32) uint32_t lanes[32];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), s0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 8), s1);
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 16), s2);
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 24), s3);
    for (uint32_t lane : lanes) a += lane;
  }
  if constexpr (kCopy) {
    std::memcpy(q + i, p + i, n - i);
    return FinishSum(q, i, n, a);
  } else {
    return FinishSum(p, i, n, a);
  }
}

__attribute__((target("avx2"))) uint32_t SumRangeAvx2(const uint8_t* p, size_t len) {
  PrefetchRange(p, len);
  return SumAvx2<false>(p, nullptr, len);
}
#endif

uint32_t SumRangeSse2(const uint8_t* p, size_t len) {
  PrefetchRange(p, len);
  uint64_t a = 0;
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
  return FinishSum(p, i, len, a);
}

#if defined(__x86_64__)
// Asked once, when the addon loads (__builtin_cpu_init first: this runs as a static initializer,
// which may come before libgcc's own).
bool CpuHasAvx2() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
}
const bool kHaveAvx2 = CpuHasAvx2();
#endif

uint32_t SumRange(const uint8_t* p, size_t len) {
#if defined(__x86_64__)
  if (kHaveAvx2) return SumRangeAvx2(p, len);
#endif
  return SumRangeSse2(p, len);
}

#if defined(__x86_64__)
// CopySum with AVX2: the loads of the copy are the loads of the sum.
__attribute__((target("avx2"))) uint32_t CopySumAvx2(const uint8_t* src, uint8_t* dst, size_t len, size_t from) {
  std::memcpy(dst, src, from);
  return SumAvx2<true>(src + from, dst + from, len - from);
}
#endif

// Without AVX2: the copy, then the SSE2 sum of the copy (still hot).
uint32_t CopySumPortable(const uint8_t* src, uint8_t* dst, size_t len, size_t from) {
  std::memcpy(dst, src, len);
  return SumRangeSse2(dst + from, len - from);
}

// The copy and sum by the best loop this CPU has.
uint32_t CopySumRange(const uint8_t* src, uint8_t* dst, size_t len, size_t from) {
#if defined(__x86_64__)
  if (kHaveAvx2) return CopySumAvx2(src, dst, len, from);
#endif
  return CopySumPortable(src, dst, len, from);
}

// Whether [a, a + an) and [b, b + bn) share a byte.
bool Overlap(const uint8_t* a, size_t an, const uint8_t* b, size_t bn) {
  return a < b + bn && b < a + an;
}

// copySum(src, srcOffset, length, dst, dstOffset, from): copies src[srcOffset, +length) to
// dst[dstOffset, +length) (not overlapping: a guest frame into a private buffer) and returns sum16
// of the copied bytes from `from` on (0 ≤ from ≤ length), folded, not complemented: one pass where
// a copy and then a sum make two (Linux's CHECKSUM_COMPLETE). The sum is of the copy, never of
// guest memory read a second time. Throws on a bad argument.
napi_value CopySum(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 6;
  napi_value argv[6];
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok) return nullptr;
  napi_util::CopyRange r;
  if (!napi_util::CopyArgs(env, argv, argc, "copySum", &r)) return nullptr;
  double from = -1;
  if (argc < 6 || napi_get_value_double(env, argv[5], &from) != napi_ok || !(from >= 0) ||
      from != static_cast<double>(static_cast<size_t>(from)) || from > static_cast<double>(r.length)) {
    napi_throw_range_error(env, nullptr, "copySum: from must be an integer from 0 to the length");
    return nullptr;
  }
  const uint8_t* src = r.src;
  uint8_t* dst = r.dst;
  const size_t len = r.length;
  if (Overlap(src, len, dst, len)) {
    napi_throw_range_error(env, nullptr, "copySum: the ranges overlap");
    return nullptr;
  }
  const uint32_t sum = CopySumRange(src, dst, len, static_cast<size_t>(from));
  napi_value result = nullptr;
  napi_create_uint32(env, sum, &result);
  return result;
}

// sum16(buf, offset, length): the ones' complement sum of the range in network order, folded to
// 16 bits (0..0xffff; not complemented). Throws on a bad argument. Plain N-API (no CallbackInfo,
// no separate type checks): it runs per frame, and its cost beyond the sum is the calls it makes.
// The function's data is the SumRange to use (sum16Portable: the SSE2 one, for tests on machines
// with AVX2).
napi_value Sum16(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 3;
  napi_value argv[3];
  napi_typedarray_type type = napi_int8_array;
  size_t byteLength = 0;
  void* data = nullptr;
  void* fn = nullptr;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, &fn) != napi_ok || argc < 3 ||
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
  const auto sum = reinterpret_cast<uint32_t (*)(const uint8_t*, size_t)>(fn);
  napi_create_uint32(env, sum(static_cast<const uint8_t*>(data) + static_cast<size_t>(off), static_cast<size_t>(len)), &result);
  return result;
}

// sumFrames(views, offsets: Float64Array, lengths: Uint32Array, starts: Uint32Array, sums:
// Uint32Array, frames, spanCount): the sum16 of each frame of a batch. Frame k's spans are
// [starts[k], starts[k + 1]) (the last one's end is spanCount); its sum, added to sums[k] (the sum
// of its headers) and folded, replaces sums[k]. views: a Uint8Array per span, or the one all spans
// lie in (SpanResolver). A span that starts at an odd position of its frame contributes its sum
// byte-swapped (RFC 1071 §2(B)). The frames a batch placed in guest memory, summed while still in
// cache, with one call instead of one per frame.
napi_value SumFrames(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 7;
  napi_value argv[7];
  uint32_t frames = 0;
  uint32_t spanCount = 0;
  napi_typedarray_type types[4] = {};
  size_t lens[4] = {};
  void* data[4] = {};
  bool ok = napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) == napi_ok && argc >= 7 &&
            napi_get_value_uint32(env, argv[5], &frames) == napi_ok && napi_get_value_uint32(env, argv[6], &spanCount) == napi_ok;
  for (int i = 0; ok && i < 4; i++) ok = napi_get_typedarray_info(env, argv[1 + i], &types[i], &lens[i], &data[i], nullptr, nullptr) == napi_ok;
  if (!ok || types[0] != napi_float64_array || types[1] != napi_uint32_array || types[2] != napi_uint32_array || types[3] != napi_uint32_array) {
    napi_throw_type_error(env, nullptr,
                          "sumFrames(views, offsets: Float64Array, lengths: Uint32Array, starts: Uint32Array, sums: Uint32Array, frames, spanCount)");
    return nullptr;
  }
  const auto* starts = static_cast<const uint32_t*>(data[2]);
  auto* sums = static_cast<uint32_t*>(data[3]);
  if (spanCount > lens[0] || spanCount > lens[1] || frames > lens[2] || frames > lens[3]) {
    napi_throw_range_error(env, nullptr, "sumFrames: frames or spanCount outside the arrays");
    return nullptr;
  }
  for (uint32_t k = 0; k < frames; k++) {
    const uint32_t to = k + 1 < frames ? starts[k + 1] : spanCount;
    if (starts[k] > to || to > spanCount) {
      napi_throw_range_error(env, nullptr, "sumFrames: frame starts out of order or past spanCount");
      return nullptr;
    }
  }
  const auto* offsets = static_cast<const double*>(data[0]);
  const auto* lengths = static_cast<const uint32_t*>(data[1]);
  SpanResolver spans(env, argv[0]);
  for (uint32_t k = 0; k < frames; k++) {
    const uint32_t to = k + 1 < frames ? starts[k + 1] : spanCount;
    uint64_t sum = sums[k];
    uint64_t at = 0;
    for (uint32_t i = starts[k]; i < to; i++) {
      uint8_t* p;
      if (!spans.Pointer(i, offsets[i], lengths[i], &p)) return nullptr;
      uint32_t s = SumRange(p, lengths[i]);
      if (at & 1) s = Swap16(s);
      sum += s;
      at += lengths[i];
    }
    sums[k] = Fold(sum);
  }
  return nullptr;
}

// copyJob(src, work): the copy of a guest frame into the TCP coalescer's arena (`work`), its
// numbers read from work's first kCopyJobBytes (Float64s, CopyJobField; the caller keeps a
// Float64Array over them): no number crosses as an argument, and the frame's copy and the next
// frame's prefetch are one call instead of two (an argument costs ~10 ns, a typed array ~27, a
// call ~15: the two calls cost ~230 ns a frame, more than copying and summing its 1448 bytes).
// Copies the first headLength bytes of src[srcOffset, +length) to work[headAt, …) and the rest to
// work[dstAt, …) (with a dstAt of -1 nowhere: the rest is summed where it lies), and stores the
// sum16 of the rest from sumFrom on (folded, not complemented) in the sum field. First it asks
// for the cache lines of src[prefetchOffset, +prefetchLength) (the next frame: a hint, clipped to
// src; nothing when the length is 0). Throws on a number that is not an integer within its array,
// a range that overlaps the block or another range.
constexpr size_t kCopyJobFields = 9;
constexpr size_t kCopyJobBytes = kCopyJobFields * 8;
enum CopyJobField : size_t { kSrcOffset, kLength, kHeadAt, kHeadLength, kDstAt, kSumFrom, kPrefetchOffset, kPrefetchLength, kSum };
// A dstAt that copies nothing of the rest (src/wire/checksum.ts's SUM_IN_PLACE).
constexpr double kSumInPlace = -1;

// The two Uint8Arrays a call of copyJob's shape takes (guest memory, then the arena): false when
// there are fewer, or another kind.
bool TwoByteArrays(napi_env env, napi_callback_info cbinfo, uint8_t** a, size_t* aLen, uint8_t** b, size_t* bLen) {
  size_t argc = 2;
  napi_value argv[2];
  return napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) == napi_ok && argc >= 2 && Uint8ArrayArg(env, argv[0], a, aLen) &&
         Uint8ArrayArg(env, argv[1], b, bLen);
}

napi_value CopyJob(napi_env env, napi_callback_info cbinfo) {
  uint8_t* src = nullptr;
  uint8_t* work = nullptr;
  size_t srcLen = 0, workLen = 0;
  if (!TwoByteArrays(env, cbinfo, &src, &srcLen, &work, &workLen) || workLen < kCopyJobBytes) {
    napi_throw_type_error(env, nullptr, "copyJob(src, work): src and work must be Uint8Arrays, work at least the job's block long");
    return nullptr;
  }
  double f[kCopyJobFields];
  std::memcpy(f, work, sizeof f);  // (work need not be 8-aligned)
  // Each number a whole one in [0, bound]; the bounds follow from the ones checked before.
  auto whole = [](double d, double bound) { return d >= 0 && d <= bound && d == static_cast<double>(static_cast<size_t>(d)); };
  const double job = static_cast<double>(kCopyJobBytes);
  const double w = static_cast<double>(workLen);
  if (!whole(f[kSrcOffset], static_cast<double>(srcLen)) || !whole(f[kLength], static_cast<double>(srcLen) - f[kSrcOffset]) ||
      !whole(f[kHeadLength], f[kLength]) || !whole(f[kSumFrom], f[kLength] - f[kHeadLength]) ||
      !(f[kHeadAt] >= job) || !whole(f[kHeadAt], w - f[kHeadLength]) ||
      (f[kDstAt] != kSumInPlace && (!(f[kDstAt] >= job) || !whole(f[kDstAt], w - (f[kLength] - f[kHeadLength])))) ||
      !whole(f[kPrefetchOffset], 0x1p53) || !whole(f[kPrefetchLength], 0x1p53)) {
    napi_throw_range_error(env, nullptr, "copyJob: offsets and lengths must be integers within the arrays, clear of the job's block");
    return nullptr;
  }
  const size_t len = static_cast<size_t>(f[kLength]);
  const size_t headLen = static_cast<size_t>(f[kHeadLength]);
  const size_t rest = len - headLen;
  const bool inPlace = f[kDstAt] == kSumInPlace;
  const size_t copied = inPlace ? 0 : rest;
  const uint8_t* from = src + static_cast<size_t>(f[kSrcOffset]);
  uint8_t* head = work + static_cast<size_t>(f[kHeadAt]);
  uint8_t* dst = inPlace ? work : work + static_cast<size_t>(f[kDstAt]);
  if (Overlap(from, len, work, kCopyJobBytes) || Overlap(from, len, head, headLen) || Overlap(from, len, dst, copied) ||
      Overlap(head, headLen, dst, copied)) {
    napi_throw_range_error(env, nullptr, "copyJob: the ranges overlap");
    return nullptr;
  }
  napi_util::PrefetchWithin(src, srcLen, f[kPrefetchOffset], f[kPrefetchLength]);
  std::memcpy(head, from, headLen);
  const size_t sumFrom = static_cast<size_t>(f[kSumFrom]);
  const double sum = inPlace ? SumRange(from + headLen + sumFrom, rest - sumFrom) : CopySumRange(from + headLen, dst, rest, sumFrom);
  std::memcpy(work + kSum * 8, &sum, sizeof sum);
  return nullptr;
}

inline void Put16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

// cutFrames(views, offsets: Float64Array, count, template: Uint8Array, layout: Uint32Array, sums:
// Uint32Array, sumAt): src/wire/tcp-cut.ts's cutFrames (its comment says what each frame gets):
// the headers of `count` of a large TCP segment's frames of one MSS from piece `first` on, frame
// j (piece first + j) written at views[j][offsets[j], + headLen), and with sumAt >= 0 the sum of
// frame j's TCP header in sums[sumAt + j]. Every field's place is checked against headLen, and
// every frame against its view, before anything is written.
constexpr uint32_t kCutFields = 13;
enum CutField : uint32_t { kHeadLen, kIp, kTcp, kV4, kTcpLen, kSize, kPayload, kSeq, kFlags, kIpSum, kTcpSum, kPseudoBase, kFirst };

napi_value CutFrames(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 7;
  napi_value argv[7];
  uint32_t count = 0;
  int32_t sumAt = -1;
  napi_typedarray_type types[3] = {};
  size_t lens[3] = {};
  void* data[3] = {};
  const int typedArgs[3] = {1, 4, 5};
  uint8_t* tmpl = nullptr;
  size_t tmplLen = 0;
  bool ok = napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) == napi_ok && argc >= 7 &&
            napi_get_value_uint32(env, argv[2], &count) == napi_ok && napi_get_value_int32(env, argv[6], &sumAt) == napi_ok &&
            napi_util::Uint8ArrayArg(env, argv[3], &tmpl, &tmplLen);
  for (int i = 0; ok && i < 3; i++) ok = napi_get_typedarray_info(env, argv[typedArgs[i]], &types[i], &lens[i], &data[i], nullptr, nullptr) == napi_ok;
  if (!ok || types[0] != napi_float64_array || types[1] != napi_uint32_array || types[2] != napi_uint32_array) {
    napi_throw_type_error(env, nullptr,
                          "cutFrames(views, offsets: Float64Array, count, template: Uint8Array, layout: Uint32Array, sums: Uint32Array, sumAt)");
    return nullptr;
  }
  const auto* offsets = static_cast<const double*>(data[0]);
  const auto* f = static_cast<const uint32_t*>(data[1]);
  auto* sums = static_cast<uint32_t*>(data[2]);
  if (lens[1] < kCutFields) {
    napi_throw_range_error(env, nullptr, "cutFrames: layout too short");
    return nullptr;
  }
  const uint32_t headLen = f[kHeadLen], ip = f[kIp], tcp = f[kTcp], hl = f[kTcpLen], size = f[kSize], payload = f[kPayload];
  const bool v4 = f[kV4] == 1;
  const uint32_t first = f[kFirst];
  const uint64_t pieces = size == 0 ? 0 : (static_cast<uint64_t>(payload) + size - 1) / size;
  if (headLen > tmplLen || static_cast<uint64_t>(ip) + (v4 ? 20 : 40) > headLen || static_cast<uint64_t>(tcp) + 20 > headLen || size == 0 ||
      static_cast<uint64_t>(first) + count > pieces || count > lens[0] || (sumAt >= 0 && static_cast<uint64_t>(sumAt) + count > lens[2])) {
    napi_throw_range_error(env, nullptr, "cutFrames: a field, frame or sum outside its place");
    return nullptr;
  }
  napi_util::SpanResolver spans(env, argv[0]);
  uint8_t* dst[64];
  for (uint32_t done = 0; done < count;) {
    // In steps of 64 frames: every one's place is resolved (and checked) before any is written.
    const uint32_t n = count - done < 64 ? count - done : 64;
    for (uint32_t j = 0; j < n; j++) {
      if (!spans.Pointer(done + j, offsets[done + j], headLen, &dst[j])) return nullptr;
    }
    for (uint32_t j = 0; j < n; j++) {
      const uint32_t k = first + done + j;
      uint8_t* p = dst[j];
      std::memmove(p, tmpl, headLen);
      const uint32_t len = std::min<uint64_t>(size, payload - static_cast<uint64_t>(k) * size);
      if (v4) {
        Put16(p + ip + 2, 20 + hl + len);
        Put16(p + ip + 10, ~Fold(static_cast<uint64_t>(f[kIpSum]) + 20 + hl + len) & 0xffff);
      } else {
        Put16(p + ip + 4, hl + len);
      }
      const uint32_t s = f[kSeq] + k * size;
      const uint32_t flags = f[kFlags] & (k == 0 ? 0xff : ~0x80u) & (k + 1 == pieces ? 0xff : ~0x09u) & 0xff;
      const uint32_t pseudo = Fold(static_cast<uint64_t>(f[kPseudoBase]) + hl + len);
      Put16(p + tcp + 4, s >> 16);
      Put16(p + tcp + 6, s & 0xffff);
      p[tcp + 13] = static_cast<uint8_t>(flags);
      Put16(p + tcp + 16, pseudo);
      if (sumAt >= 0) sums[sumAt + done + j] = Fold(static_cast<uint64_t>(f[kTcpSum]) + (s >> 16) + (s & 0xffff) + flags + pseudo);
    }
    done += n;
  }
  return nullptr;
}


// joinRun(view, arena): the TCP coalescer's joins (src/virtio/tcp-coalescer.ts: continuesAt,
// coalescible, match and join, each rule as there) for a TX batch's frames that start (none
// pending) or continue the pending run, with one call for all of them instead of JavaScript and
// a copyJob per frame. The run's state and everything else lies in the arena (`work` of
// copyJob): the numbers at kRunAt (Uint32s, RunField, written by TcpCoalescer.joinBatch before
// the call and read back after), the pending frame's headers at bufAt, the mask of the header
// bits that must repeat at sameAt, the run's spans (in place) at spanOffsetsAt and
// spanLengthsAt, and the batch: frame i's readable spans (its virtio-net header first) are
// entries [rows[2i], + rows[2i + 1]) of the (offset, length) pairs at spansAt, in `view`; a
// count of 0 is a frame the caller handles itself.
//
// From frame `from` on, each frame is read (its virtio-net header and headers copied first: every
// decision is taken on the copy), checked, its payload copied and summed behind the pending one
// (a run in place: summed where it lies, its spans appended to the run's) and joined, until one
// does not continue the run or the run closes. Returns the index of the first frame not joined;
// a frame that fails a check after its payload was summed leaves nothing changed. The run's first
// join (payloadSum still unset: 0xffffffff) verifies the pending frame's own checksums first, as
// join() does, and sets payloadSum, ipFixed and tcpFixed; a pending frame that fails them joins
// nothing (JavaScript then finds the same and hands both frames on alone). With no frame pending
// (length 0), the first frame starts the run, as TcpCoalescer.start() after the device's copy
// (coalesce: a frame in one buffer copied to bufAt and summed) or its reading of the headers
// (coalesceScattered: a run in place, its payload spans the table's first), and `started` is its
// index + 1. `over` is 1 when the run stopped because it takes nothing more (closed, or the next
// frame does not fit): its caller hands it on and calls again from there. Throws on a layout
// outside the arena or a span outside the view (the caller's bug, not the guest's).
constexpr size_t kRunAt = kCopyJobBytes;
constexpr uint32_t kRunFields = 29;
enum RunField : uint32_t {
  kRLength, kRSegments, kRAt, kRTcp, kRNextSeq, kRSegmentSize, kRClosed, kRPartial, kRInPlace, kRIpFixed, kRTcpFixed,
  kRPayloadSum, kRPsh, kRSpanCount, kRWords, kRBufAt, kRBufCap, kRSameAt, kRSpanOffsetsAt, kRSpanLengthsAt, kRSpanMax,
  kRRowsAt, kRSpansAt, kRSpanSlots, kRFrom, kRCount, kRFirstSum, kRStarted, kROver,
};
constexpr uint32_t kUnset = 0xffffffff;
constexpr uint32_t kEthLen = 14;
constexpr uint32_t kVnetHdr = 12;
constexpr uint32_t kHeadMax = 116;  // COALESCE_HEAD
constexpr uint32_t kCoalesceMin = 256;
constexpr uint32_t kGsoMaxPacket = 65535;
constexpr uint32_t kMaxFrame = 65536 + 14;
enum TcpFlag : uint8_t { kFin = 0x01, kSyn = 0x02, kRst = 0x04, kPsh = 0x08, kAck = 0x10, kUrg = 0x20, kCwr = 0x80 };

inline uint32_t Get16(const uint8_t* p) { return (static_cast<uint32_t>(p[0]) << 8) | p[1]; }
inline uint32_t Get32(const uint8_t* p) { return (Get16(p) << 16) | Get16(p + 2); }
// The one's complement of the word at p: added to a sum, it takes the word out (RFC 1624).
inline uint32_t Not16(const uint8_t* p) { return ~Get16(p) & 0xffff; }

// tcp-coalescer.ts's partialOverTcp(): the virtio-net header's NEEDS_CSUM csum_start and
// csum_offset (little-endian) say the TCP checksum field of a segment whose TCP header is at tcp.
inline bool PartialOverTcp(const uint8_t* vnet, uint32_t tcp) {
  return static_cast<uint32_t>(vnet[6] | (vnet[7] << 8)) == tcp && static_cast<uint32_t>(vnet[8] | (vnet[9] << 8)) == 16;
}

// TcpCoalescer.join's first step: the pending frame's own checksums (its headers at buf[0, at),
// `length` bytes in all, summed from its IP header on as firstSum), verified now that it will not
// go alone, and the fixed parts of its headers' sums every later part repeats (the words that may
// differ taken out). False when a checksum does not verify; st unchanged then.
bool VerifyPending(const uint8_t* buf, uint32_t* st) {
  const uint32_t tcp = st[kRTcp], at = st[kRAt];
  const bool v4 = tcp == kEthLen + 20;
  const uint32_t ipSum = SumRange(buf + kEthLen, tcp - kEthLen);
  if (v4 && ipSum != 0xffff) return false;
  const uint32_t ipFixed = v4 ? Fold(static_cast<uint64_t>(ipSum) + Not16(buf + kEthLen + 2) + Not16(buf + kEthLen + 4) + Not16(buf + kEthLen + 10)) : 0;
  if (st[kRPartial] != 0) {
    st[kRIpFixed] = ipFixed;
    st[kRPayloadSum] = 0;  // (not summed: nothing verifies it)
    return true;
  }
  // The pseudo-header with length 0 (each part adds its own): the addresses, and the protocol.
  const uint32_t pseudo = Fold(static_cast<uint64_t>(v4 ? SumRange(buf + kEthLen + 12, 8) : SumRange(buf + kEthLen + 8, 32)) + 6);
  const uint32_t tcpSum = SumRange(buf + tcp, at - tcp);
  const uint32_t payload = Fold(static_cast<uint64_t>(st[kRFirstSum]) + (~Fold(static_cast<uint64_t>(ipSum) + tcpSum) & 0xffff));
  if (Fold(static_cast<uint64_t>(tcpSum) + pseudo + (st[kRLength] - tcp) + payload) != 0xffff) return false;
  st[kRIpFixed] = ipFixed;
  st[kRPayloadSum] = payload;
  st[kRTcpFixed] = Fold(static_cast<uint64_t>(tcpSum) + pseudo + Not16(buf + tcp + 4) + Not16(buf + tcp + 6) + Not16(buf + tcp + 12) + Not16(buf + tcp + 16));
  return true;
}

// tcp-coalescer.ts's coalescible(): where the payload of the segment whose first `have` bytes are
// h (len bytes in all) starts, when it may join a run; else 0.
uint32_t Coalescible(const uint8_t* h, uint32_t have, uint32_t len) {
  if (have < kEthLen + 40) return 0;
  const uint32_t type = Get16(h + 12);
  uint32_t tcp;
  if (type == 0x0800) {
    if (h[14] != 0x45 || h[23] != 6 || h[22] <= 1) return 0;
    if ((Get16(h + 20) & 0x3fff) != 0) return 0;
    if (Get16(h + 16) != len - kEthLen) return 0;
    tcp = kEthLen + 20;
  } else if (type == 0x86dd) {
    if (h[14] >> 4 != 6 || h[20] != 6 || h[21] <= 1) return 0;
    if (Get16(h + 18) != len - kEthLen - 40) return 0;
    tcp = kEthLen + 40;
  } else {
    return 0;
  }
  if (tcp + 20 > have) return 0;
  const uint32_t at = tcp + (h[tcp + 12] >> 4) * 4;
  const uint8_t flags = h[tcp + 13];
  if (at < tcp + 20 || at > have || at >= len) return 0;
  if ((flags & kAck) == 0 || (flags & (kSyn | kFin | kRst | kUrg | kCwr)) != 0) return 0;
  return at;
}

// Copies readable bytes [0, n) of a frame's spans (pairs at `spans`, count of them) to dst;
// returns how many there were.
uint32_t GatherFront(const uint8_t* view, const uint32_t* spans, uint32_t count, uint8_t* dst, uint32_t n) {
  uint32_t got = 0;
  for (uint32_t k = 0; k < count && got < n; k++) {
    const uint32_t take = std::min(spans[2 * k + 1], n - got);
    std::memcpy(dst + got, view + spans[2 * k], take);
    got += take;
  }
  return got;
}

// Calls f(offset, length) for each piece of the readable spans s (count of them) past their first
// `skip` bytes, in order, while f returns true; false when f stopped it.
template <typename F>
bool EachSpanFrom(const uint32_t* s, uint32_t count, uint32_t skip, F&& f) {
  for (uint32_t k = 0; k < count; k++) {
    const uint32_t l = s[2 * k + 1];
    if (skip >= l) {
      skip -= l;
      continue;
    }
    if (!f(s[2 * k] + skip, l - skip)) return false;
    skip = 0;
  }
  return true;
}

// The frame (readable spans s, count of them; its virtio-net header first, len bytes of frame
// behind it) starts the run, as the device's coalesce() or coalesceScattered() and then
// TcpCoalescer.start() would: false, nothing pending, when it cannot (the caller's JavaScript
// path then handles it, the same way). Its copy is in buf (a frame in one buffer whole, else
// its headers: a run in place, whose payload spans are the table's first).
bool StartRun(const uint8_t* view, const uint32_t* s, uint32_t count, uint32_t len, uint8_t* buf, uint8_t* same, double* spanOffsets,
              uint32_t* spanLengths, uint32_t* st) {
  // The frame in one buffer (frameSegment): the header's, or the next one.
  const uint8_t* whole = nullptr;
  if (s[1] >= kVnetHdr + len) whole = view + s[0] + kVnetHdr;
  else if (count >= 2 && s[1] == kVnetHdr && s[3] >= len) whole = view + s[2];
  // The virtio-net header, and for a run in place the headers behind it, copied once: every
  // decision below is on copies (a frame in one buffer is copied whole below).
  const uint32_t have = std::min(len, kHeadMax);
  const uint32_t gather = kVnetHdr + (whole != nullptr ? 0 : have);
  uint8_t head[kVnetHdr + kHeadMax];
  if (GatherFront(view, s, count, head, gather) != gather) return false;
  if ((head[0] & ~1u) != 0 || head[1] != 0) return false;  // NEEDS_CSUM or nothing; GSO_NONE
  const bool partial = head[0] != 0;
  uint32_t at, frameSum = kUnset;
  uint32_t spanEnd = 0;
  if (whole != nullptr) {
    // Copied, summed from the IP header on (not at all with NEEDS_CSUM); decided on the copy.
    if (partial) std::memcpy(buf, whole, len);
    else frameSum = CopySumRange(whole, buf, len, kEthLen);
    at = Coalescible(buf, have, len);
    if (at == 0) return false;
  } else {
    if (st[kRSpanMax] == 0) return false;  // (a device that copies joined payload: JavaScript's)
    std::memcpy(buf, head + kVnetHdr, have);
    at = Coalescible(buf, have, len);
    if (at == 0) return false;
    // The payload's spans, summed where they lie (with NEEDS_CSUM not at all).
    uint64_t acc = 0;
    uint32_t pos = 0;
    const bool fits = EachSpanFrom(s, count, kVnetHdr + at, [&](uint32_t off, uint32_t l) {
      if (spanEnd == st[kRSpanMax]) return false;
      spanOffsets[spanEnd] = off;
      spanLengths[spanEnd] = l;
      spanEnd++;
      if (!partial) {
        const uint32_t sum = SumRange(view + off, l);
        acc += (pos & 1) != 0 ? Swap16(sum) : sum;
      }
      pos += l;
      return true;
    });
    if (!fits || pos != len - at || spanEnd == 0) return false;
    if (!partial) frameSum = Fold(static_cast<uint64_t>(SumRange(buf + kEthLen, at - kEthLen)) + Fold(acc));
  }
  const uint32_t tcp = buf[12] == 0x08 ? kEthLen + 20 : kEthLen + 40;
  if (partial && !PartialOverTcp(head, tcp)) return false;
  // The bits of the headers a frame that joins must repeat (TcpCoalescer.start): all but IPv4's
  // total length, identity and checksum (IPv6's payload length), TCP's sequence number, PSH and
  // checksum, and whatever lies past the headers in the last word.
  const uint32_t words = (at + 3) / 4;
  std::memset(same, 0xff, at);
  std::memset(same + at, 0, kHeadMax - at);
  if (tcp == kEthLen + 20) {
    std::memset(same + kEthLen + 2, 0, 4);
    std::memset(same + kEthLen + 10, 0, 2);
  } else {
    std::memset(same + kEthLen + 4, 0, 2);
  }
  std::memset(same + tcp + 4, 0, 4);
  same[tcp + 13] &= ~kPsh;
  std::memset(same + tcp + 16, 0, 2);
  st[kRLength] = len;
  st[kRSegments] = 1;
  st[kRAt] = at;
  st[kRTcp] = tcp;
  st[kRNextSeq] = Get32(buf + tcp + 4) + (len - at);
  st[kRSegmentSize] = len - at;
  st[kRClosed] = (buf[tcp + 13] & kPsh) != 0 ? 1 : 0;
  st[kRPartial] = partial ? 1 : 0;
  st[kRInPlace] = whole == nullptr ? 1 : 0;
  st[kRFirstSum] = frameSum;
  st[kRPayloadSum] = kUnset;
  st[kRPsh] = 0;
  st[kRSpanCount] = spanEnd;
  st[kRWords] = words;
  return true;
}

napi_value JoinRun(napi_env env, napi_callback_info cbinfo) {
  uint8_t* view = nullptr;
  uint8_t* arena = nullptr;
  size_t viewLen = 0, arenaLen = 0;
  if (!TwoByteArrays(env, cbinfo, &view, &viewLen, &arena, &arenaLen) || arenaLen < kRunAt + 4 * kRunFields) {
    napi_throw_type_error(env, nullptr, "joinRun(view, arena): view and arena must be Uint8Arrays, arena at least the run's block long");
    return nullptr;
  }
  uint32_t st[kRunFields];
  std::memcpy(st, arena + kRunAt, sizeof st);
  const uint64_t aLen = arenaLen;
  auto within = [aLen](uint64_t at, uint64_t n) { return at >= kRunAt + 4 * kRunFields && at <= aLen && n <= aLen - at; };
  const uint32_t bufCap = st[kRBufCap];
  // A pending frame's numbers must be a run's; with none, the first frame may start one (its
  // headers and the mask then written whole: bufCap and kHeadMax bytes).
  const bool pending = st[kRLength] > 0;
  const uint32_t at0 = st[kRAt], tcp0 = st[kRTcp];
  if ((pending && (!(tcp0 == kEthLen + 20 || tcp0 == kEthLen + 40) || at0 < tcp0 + 20 || at0 > kHeadMax || st[kRWords] != (at0 + 3) / 4)) ||
      bufCap > kEthLen + kGsoMaxPacket || bufCap < kHeadMax || !within(st[kRBufAt], bufCap) || st[kRLength] > bufCap || !within(st[kRSameAt], kHeadMax) ||
      st[kRSpanCount] > st[kRSpanMax] ||
      !within(st[kRSpanOffsetsAt], 8ull * st[kRSpanMax]) || !within(st[kRSpanLengthsAt], 4ull * st[kRSpanMax]) ||
      !within(st[kRRowsAt], 8ull * st[kRCount]) || !within(st[kRSpansAt], 8ull * st[kRSpanSlots]) || st[kRFrom] > st[kRCount] ||
      Overlap(view, viewLen, arena, arenaLen)) {
    napi_throw_range_error(env, nullptr, "joinRun: the run's layout lies outside the arena");
    return nullptr;
  }
  const uint32_t* rows = reinterpret_cast<const uint32_t*>(arena + st[kRRowsAt]);
  const uint32_t* spans = reinterpret_cast<const uint32_t*>(arena + st[kRSpansAt]);
  if (reinterpret_cast<uintptr_t>(arena) % 8 != 0 || (st[kRRowsAt] | st[kRSpansAt] | st[kRSameAt] | st[kRSpanLengthsAt]) % 4 != 0 ||
      st[kRSpanOffsetsAt] % 8 != 0) {
    napi_throw_range_error(env, nullptr, "joinRun: the run's arrays must lie on their words");
    return nullptr;
  }
  // Every frame's spans checked against the view before anything is read.
  for (uint32_t i = st[kRFrom]; i < st[kRCount]; i++) {
    const uint32_t first = rows[2 * i], count = rows[2 * i + 1];
    if (count > st[kRSpanSlots] || first > st[kRSpanSlots] - count) {
      napi_throw_range_error(env, nullptr, "joinRun: a frame's spans past the span table");
      return nullptr;
    }
    for (uint32_t k = first; k < first + count; k++) {
      if (spans[2 * k] > viewLen || spans[2 * k + 1] > viewLen - spans[2 * k]) {
        napi_throw_range_error(env, nullptr, "joinRun: a span outside the view");
        return nullptr;
      }
    }
  }
  const uint8_t* same = arena + st[kRSameAt];
  uint8_t* buf = arena + st[kRBufAt];
  auto* spanOffsets = reinterpret_cast<double*>(arena + st[kRSpanOffsetsAt]);
  auto* spanLengths = reinterpret_cast<uint32_t*>(arena + st[kRSpanLengthsAt]);
  uint32_t i = st[kRFrom];
  st[kRStarted] = 0;
  st[kROver] = 0;
  // Not in a run that is over, nor one whose numbers are not a run's (before its first join, the
  // pending frame's sum is needed unless the run is partial).
  const bool ready = !pending || (st[kRLength] > at0 && st[kRClosed] == 0 &&
                                  (st[kRPayloadSum] == kUnset ? st[kRPartial] != 0 || st[kRFirstSum] <= 0xffff : st[kRPayloadSum] <= 0xffff));
  for (; ready && i < st[kRCount]; i++) {
    const uint32_t* s = spans + 2 * rows[2 * i];
    const uint32_t count = rows[2 * i + 1];
    if (count == 0) break;
    if (i + 1 < st[kRCount] && rows[2 * i + 3] > 0) {
      // The next frame asked for now: its headers, and unless the run is partial (nothing reads
      // its payload then) all of it up to 4 KiB, so that its copy or sum finds its lines on the way.
      const uint32_t* t = spans + 2 * rows[2 * i + 2];
      uint32_t left = st[kRLength] > 0 && st[kRPartial] != 0 ? kVnetHdr + kHeadMax : 4096;
      for (uint32_t k = 0; k < rows[2 * i + 3] && left > 0; k++) {
        const uint32_t n = std::min(t[2 * k + 1], left);
        napi_util::PrefetchLines(view + t[2 * k], n);
        left -= n;
      }
    }
    uint64_t total = 0;
    for (uint32_t k = 0; k < count; k++) total += s[2 * k + 1];
    if (total < kVnetHdr + kEthLen || total > kVnetHdr + kMaxFrame) break;
    const uint32_t len = static_cast<uint32_t>(total) - kVnetHdr;
    if (len < kCoalesceMin || len > bufCap) break;
    const uint32_t length = st[kRLength];
    if (length == 0) {
      if (!StartRun(view, s, count, len, buf, arena + st[kRSameAt], spanOffsets, spanLengths, st)) break;
      st[kRStarted] = i + 1;
      if (st[kRClosed] != 0) {
        st[kROver] = 1;
        i++;
        break;
      }
      continue;
    }
    const uint32_t at = st[kRAt], tcp = st[kRTcp], words = st[kRWords];
    const bool v4 = tcp == kEthLen + 20;
    const bool partial = st[kRPartial] != 0;
    const bool inPlace = st[kRInPlace] != 0;
    // continuesAt(): a frame that does not fit behind the pending one (the run is full) leaves it
    // over.
    if (len <= at) break;
    if (length + (len - at) > bufCap || (inPlace && st[kRSpanCount] == st[kRSpanMax])) {
      st[kROver] = 1;
      break;
    }
    // The private copy of the virtio-net header and the headers (the words match() compares
    // beyond `at` are masked out: zeroed, not left unset).
    uint8_t copy[kVnetHdr + kHeadMax + 4] = {};
    if (GatherFront(view, s, count, copy, kVnetHdr + at) != kVnetHdr + at) break;
    const uint8_t* h = copy + kVnetHdr;
    const uint8_t flags = copy[0];
    if ((flags & ~1u) != 0 || copy[1] != 0 || (flags != 0) != partial) break;  // GSO_NONE, NEEDS_CSUM as the run
    if (Coalescible(h, at, len) != at) break;
    if (partial && !PartialOverTcp(copy, tcp)) break;
    // match()
    const uint32_t n = len - at;
    if (n > st[kRSegmentSize]) break;
    if (length - kEthLen + n > kGsoMaxPacket) {
      st[kROver] = 1;
      break;
    }
    bool differ = false;
    for (uint32_t w = 0; w < words && !differ; w++) {
      uint32_t a, b, m;
      std::memcpy(&a, h + 4 * w, 4);
      std::memcpy(&b, buf + 4 * w, 4);
      std::memcpy(&m, same + 4 * w, 4);
      differ = ((a ^ b) & m) != 0;
    }
    if (differ || Get32(h + tcp + 4) != st[kRNextSeq]) break;
    // The payload: summed where it lies (its spans appended), or copied behind the pending one
    // and summed as it is; not summed at all with NEEDS_CSUM.
    uint64_t acc = 0;
    uint32_t spanEnd = st[kRSpanCount];
    uint32_t pos = 0;  // of the payload
    const bool room = EachSpanFrom(s, count, kVnetHdr + at, [&](uint32_t off, uint32_t l) {
      uint32_t sum = 0;
      if (inPlace) {
        if (spanEnd == st[kRSpanMax]) return false;
        spanOffsets[spanEnd] = off;
        spanLengths[spanEnd] = l;
        spanEnd++;
        if (!partial) sum = SumRange(view + off, l);
      } else if (partial) {
        std::memcpy(buf + length + pos, view + off, l);
      } else {
        sum = CopySumRange(view + off, buf + length + pos, l, 0);
      }
      acc += (pos & 1) != 0 ? Swap16(sum) : sum;
      pos += l;
      return true;
    });
    if (!room || pos != n) break;
    const uint32_t sum = Fold(acc);
    // The run's first join: the pending frame's checksums first (once; only now that a frame
    // would join it, as join() does).
    if (st[kRPayloadSum] == kUnset && !VerifyPending(buf, st)) break;
    // join(): this part's checksums from its varying words and its payload's sum.
    if (v4 && Fold(static_cast<uint64_t>(st[kRIpFixed]) + Get16(h + kEthLen + 2) + Get16(h + kEthLen + 4) + Get16(h + kEthLen + 10)) != 0xffff) break;
    if (!partial) {
      if (Fold(static_cast<uint64_t>(st[kRTcpFixed]) + Get16(h + tcp + 4) + Get16(h + tcp + 6) + Get16(h + tcp + 12) + Get16(h + tcp + 16) +
               (len - tcp) + sum) != 0xffff) {
        break;
      }
      const uint32_t place = length - at;
      st[kRPayloadSum] = Fold(static_cast<uint64_t>(st[kRPayloadSum]) + ((place & 1) != 0 ? Swap16(sum) : sum));
    }
    st[kRLength] = length + n;
    st[kRSegments]++;
    st[kRNextSeq] += n;
    st[kRSpanCount] = spanEnd;
    const bool psh = (h[tcp + 13] & kPsh) != 0;
    if (psh) st[kRPsh] = 1;
    if (psh || n < st[kRSegmentSize]) {
      st[kRClosed] = 1;
      st[kROver] = 1;
      i++;
      break;
    }
  }
  std::memcpy(arena + kRunAt, st, sizeof st);
  napi_value result = nullptr;
  napi_create_uint32(env, i, &result);
  return result;
}

// evictLines(buf, offset, length): writes back and drops the cache lines of the range from every
// cache (clflush), so that what reads them next waits on memory, as a device's first read of a
// frame another CPU wrote does: for benchmarks of cold paths (scripts/bench-tx.ts --cold). A no-op
// where the CPU has no clflush. Throws on a bad range.
Napi::Value EvictLines(const Napi::CallbackInfo& info) {
  napi_util::ByteRange r;
  if (!napi_util::ArgByteRange(info, 0, &r)) return info.Env().Undefined();
#if defined(__x86_64__) && defined(__SSE2__)
  for (size_t i = 0; i < r.length; i += 64) _mm_clflush(r.data + i);
  if (r.length > 0) _mm_clflush(r.data + r.length - 1);
  _mm_mfence();
#endif
  return info.Env().Undefined();
}

// threadCpuNs(): the calling thread's CPU time in nanoseconds (CLOCK_THREAD_CPUTIME_ID), for
// benchmarks whose timed part must not count the time another process ran in its place
// (scripts/bench-path.ts: the loopback write wakes the reader, which may take this CPU).
Napi::Value ThreadCpuNs(const Napi::CallbackInfo& info) {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return Napi::Number::New(info.Env(), static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec));
}

}  // namespace

void InitChecksum(Napi::Env env, Napi::Object exports) {
  napi_value fn;
  if (napi_create_function(env, "sum16", NAPI_AUTO_LENGTH, Sum16, reinterpret_cast<void*>(&SumRange), &fn) == napi_ok) {
    exports.Set("sum16", Napi::Value(env, fn));
  }
  if (napi_create_function(env, "sum16Portable", NAPI_AUTO_LENGTH, Sum16, reinterpret_cast<void*>(&SumRangeSse2), &fn) == napi_ok) {
    exports.Set("sum16Portable", Napi::Value(env, fn));
  }
  if (napi_create_function(env, "sumFrames", NAPI_AUTO_LENGTH, SumFrames, nullptr, &fn) == napi_ok) {
    exports.Set("sumFrames", Napi::Value(env, fn));
  }
  if (napi_create_function(env, "copySum", NAPI_AUTO_LENGTH, CopySum, nullptr, &fn) == napi_ok) exports.Set("copySum", Napi::Value(env, fn));
  if (napi_create_function(env, "copyJob", NAPI_AUTO_LENGTH, CopyJob, nullptr, &fn) == napi_ok) exports.Set("copyJob", Napi::Value(env, fn));
  exports.Set("evictLines", Napi::Function::New(env, EvictLines, "evictLines"));
  exports.Set("threadCpuNs", Napi::Function::New(env, ThreadCpuNs, "threadCpuNs"));
  if (napi_create_function(env, "joinRun", NAPI_AUTO_LENGTH, JoinRun, nullptr, &fn) == napi_ok) exports.Set("joinRun", Napi::Value(env, fn));
  if (napi_create_function(env, "cutFrames", NAPI_AUTO_LENGTH, CutFrames, nullptr, &fn) == napi_ok) {
    exports.Set("cutFrames", Napi::Value(env, fn));
  }
  napi_util::ExportCopy(env, exports);
}

}  // namespace hn
