// Split-virtqueue chains popped natively (src/virtqueue.ts, VirtQueue.popSpans): the descriptor walk
// of a batch of chains in one call, which in JavaScript costs a DataView read per field and a
// translation per buffer (most of a device's per-frame cost in TX).
//
// This walk is a fast path, not a second judge. It takes only the chains that are plainly well
// formed (direct, or through one indirect table at the head; every buffer of the one direction
// asked for; every buffer inside guest memory; no more spans than the caller's chain can hold) and
// stops before the first chain it does not take, leaving it to VirtQueue.pop(): the JavaScript walk
// stays the only one that judges a malformed chain, counts it, returns it to the guest or marks
// the queue broken. What the two walks produce for a chain this one takes is the same, span for
// span (test/native-pop.test.ts holds them together over hostile and random tables).
//
// Everything the guest wrote is read once, into a local copy, and decided on that copy: a
// descriptor's 16 bytes (LoadDesc), an avail ring entry. The caller has read avail.idx (an atomic
// load) before the entries and descriptors it publishes, as VirtQueue.pop() does.
//
// Guest memory is seen through a memory table (memoryTable): GuestMemory's segments by guest-
// physical address, each a range of a mapping that the table holds. A table whose mapping has
// been unmapped (munmap) translates nothing, so a walk with a stale table leaves every chain to
// pop(); GuestMemory makes a new table on every change anyway.
//
// A call costs its N-API arguments (a type-tagged unwrap alone is ~60 ns, a typed array ~15 ns,
// against ~15 ns for the JavaScript walk of a one-descriptor chain): so popChains takes one
// Uint32Array, which names its table by number (this thread's registry of live tables) and the
// ring areas by segment and offset.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <unordered_map>
#include <vector>

#include "common.h"

namespace vu {
namespace {

// Virtio 1.2 §2.7.5.
constexpr uint16_t kDescNext = 1;
constexpr uint16_t kDescWrite = 2;
constexpr uint16_t kDescIndirect = 4;
constexpr uint32_t kMaxQueueSize = 32768;
constexpr uint64_t kMaxAddress = uint64_t{1} << 53;  // as JavaScript translates (a double)

// popChains' exchange array, as src/virtqueue.ts's PopField names it: these fields, then
// kChainCapacity chains (two numbers each), then spans (three numbers each) to its end.
enum PopField : uint32_t {
  kTable = 0,          // in: the memory table's id
  kSize = 1,           // in: the queue size
  kLastAvail = 2,      // in: the next avail slot to take (free-running u16)
  kAvailIdx = 3,       // in: avail.idx as the caller read it
  kFlags = 4,          // in: PopFlag bits
  kMaxChains = 5,      // in: at most this many chains
  kMaxSpans = 6,       // in: at most this many spans per chain (the caller's chain capacity)
  kDescSegment = 7,    // in: the descriptor table's segment (its index in the table)
  kDescOffset = 8,     // in: and its offset in that segment's chunk
  kAvailSegment = 9,   // in: the avail ring's segment
  kAvailOffset = 10,   // in: and offset
  kChainCapacity = 11, // in: room for this many chains after the fields
  kLeft = 12,          // out: 1 when the walk stopped before a chain it leaves to pop()
  kIndirect = 13,      // out: 1 when a chain taken went through an indirect table
  kFieldCount = 16,
};
enum PopFlag : uint32_t {
  kFlagIndirect = 1,  // VIRTIO_F_INDIRECT_DESC negotiated
  kFlagWritable = 2,  // chains of device-writable buffers (RX); else device-readable (TX)
  kFlagPrefetch = 4,  // ask for the batch's descriptors before walking (see Prefetch)
};

struct Desc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(Desc) == 16, "a virtq_desc is 16 bytes");

// A descriptor's copy. The guest may rewrite it meanwhile: the checks and the use must see the
// same bytes, so the compiler must not read a field from guest memory again after this.
inline Desc LoadDesc(const uint8_t* p) {
  Desc d;
  std::memcpy(&d, p, sizeof d);
  asm volatile("" ::: "memory");
  return d;
}

// One contiguous, mapped piece of guest memory (GuestMemory's Segment).
struct Segment {
  uint64_t gpa;
  uint64_t length;
  uint8_t* data;    // its first byte
  uint32_t offset;  // its first byte's index in the chunk ArrayBuffer JavaScript views it through
};

struct MemoryTable {
  std::vector<Segment> segments;  // by gpa, disjoint
  std::vector<Mapping*> mappings;  // each held while the table lives
  size_t lastHit = 0;

  // Every mapping still mapped: the segments' pointers are good.
  bool Live() const {
    size_t length;
    for (const Mapping* m : mappings) {
      if (MappedBytes(m, &length) == nullptr) return false;
    }
    return true;
  }

  // The index of the segment holding gpa, or -1.
  int64_t Find(uint64_t gpa) {
    if (lastHit < segments.size()) {
      const Segment& s = segments[lastHit];
      if (gpa >= s.gpa && gpa - s.gpa < s.length) return static_cast<int64_t>(lastHit);
    }
    size_t lo = 0;
    size_t hi = segments.size();
    while (lo < hi) {
      size_t mid = lo + (hi - lo) / 2;
      const Segment& s = segments[mid];
      if (gpa < s.gpa) {
        hi = mid;
      } else if (gpa - s.gpa >= s.length) {
        lo = mid + 1;
      } else {
        lastHit = mid;
        return static_cast<int64_t>(mid);
      }
    }
    return -1;
  }
};

// The live tables of this thread (an addon instance runs on its environment's thread), by id:
// what popChains finds its table by. A table leaves when its JS object is collected.
struct Registry {
  std::unordered_map<uint32_t, MemoryTable*> tables;
  uint32_t nextId = 1;
};
thread_local Registry registry;

void FinalizeTable(napi_env env, void* data, void* hint) {
  auto* table = static_cast<MemoryTable*>(data);
  registry.tables.erase(static_cast<uint32_t>(reinterpret_cast<uintptr_t>(hint)));
  for (Mapping* m : table->mappings) ReleaseMapping(env, m);
  delete table;
}

// memoryTable(mappings: NativeMapping[], rows: Float64Array): the table of GuestMemory's
// segments, five numbers a segment in guest-physical order: gpa, length, the index of its mapping
// in `mappings`, its first byte's offset in that mapping, and that byte's offset in its chunk.
// Returns a frozen object {id}, which keeps the table alive. Throws on rows that do not describe
// disjoint, sorted ranges inside their mappings.
Napi::Value MakeMemoryTable(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const char* usage = "memoryTable(mappings: NativeMapping[], rows: Float64Array)";
  if (!info[0].IsArray() || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array) {
    Napi::TypeError::New(env, usage).ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array list = info[0].As<Napi::Array>();
  // The rows are copied before anything else is read: reading `mappings` may run JavaScript (an
  // index getter), which could detach the rows' buffer under a pointer kept across it.
  Napi::Float64Array rowArray = info[1].As<Napi::Float64Array>();
  const std::vector<double> rows(rowArray.Data(), rowArray.Data() + rowArray.ElementLength());
  auto table = std::make_unique<MemoryTable>();
  std::vector<size_t> lengths;
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value item = list.Get(i);
    if (env.IsExceptionPending()) return env.Undefined();  // (a getter threw)
    Mapping* m = UnwrapMapping(env, item);
    size_t length = 0;
    if (m == nullptr || MappedBytes(m, &length) == nullptr) {
      Napi::TypeError::New(env, "memoryTable: every mapping must be one mmap() made, still mapped")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    table->mappings.push_back(m);
    lengths.push_back(length);
  }
  if (rows.size() % 5 != 0) {
    Napi::RangeError::New(env, "memoryTable: rows come five to a segment").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  for (size_t r = 0; r < rows.size(); r += 5) {
    const double gpa = rows[r], length = rows[r + 1], mapping = rows[r + 2], at = rows[r + 3], offset = rows[r + 4];
    const double safe = static_cast<double>(kMaxSafeInteger);
    bool ok = gpa >= 0 && length > 0 && gpa + length <= safe && std::trunc(gpa) == gpa && std::trunc(length) == length &&
              mapping >= 0 && mapping < static_cast<double>(table->mappings.size()) && std::trunc(mapping) == mapping &&
              at >= 0 && std::trunc(at) == at && offset >= 0 && std::trunc(offset) == offset &&
              offset + length <= 4294967296.0;
    if (ok) ok = at + length <= static_cast<double>(lengths[static_cast<size_t>(mapping)]);
    if (ok && !table->segments.empty()) {
      const Segment& last = table->segments.back();
      ok = static_cast<double>(last.gpa + last.length) <= gpa;
    }
    if (!ok) {
      Napi::RangeError::New(env, "memoryTable: a row is not a range of its mapping, in order")
          .ThrowAsJavaScriptException();
      return env.Undefined();
    }
    size_t unused;
    uint8_t* base = MappedBytes(table->mappings[static_cast<size_t>(mapping)], &unused);
    table->segments.push_back({static_cast<uint64_t>(gpa), static_cast<uint64_t>(length),
                               base + static_cast<size_t>(at), static_cast<uint32_t>(offset)});
  }
  uint32_t id = registry.nextId++;
  if (registry.nextId == 0) registry.nextId = 1;  // (0 names no table)
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("id", Napi::Number::New(env, id));
  MemoryTable* raw = table.get();
  void* hint = reinterpret_cast<void*>(static_cast<uintptr_t>(id));
  if (napi_wrap(env, obj, raw, FinalizeTable, hint, nullptr) != napi_ok) return env.Undefined();
  table.release();
  for (Mapping* m : raw->mappings) HoldMapping(m);
  registry.tables[id] = raw;
  obj.Freeze();
  return obj;
}

// The walk of one batch: what popChains was given.
struct Walk {
  MemoryTable* table;
  const uint8_t* desc;  // the queue's descriptor table, size entries
  uint32_t size;
  bool indirectOk;
  bool writable;
  uint32_t maxSpans;    // per chain
  uint32_t* spans;      // out: (segment, offset, length) triples
  size_t spanCapacity;  // triples
  size_t spanCount = 0;
  bool indirectUsed = false;
};

// Appends the spans of [addr, addr + len) (split where segments end, as GuestMemory.translateGpa
// and VirtQueue's addBuffer split it). False when part of it is not guest memory or the chain
// or the output would have too many spans.
inline bool AddBuffer(Walk& w, size_t first, uint64_t addr, uint64_t len) {
  while (len > 0) {
    int64_t found = w.table->Find(addr);
    if (found < 0) return false;
    const Segment& s = w.table->segments[static_cast<size_t>(found)];
    uint64_t within = addr - s.gpa;
    uint64_t n = std::min(len, s.length - within);
    if (w.spanCount - first >= w.maxSpans || w.spanCount >= w.spanCapacity) return false;
    uint32_t* out = w.spans + 3 * w.spanCount;
    out[0] = static_cast<uint32_t>(found);
    out[1] = static_cast<uint32_t>(s.offset + within);  // < 2^32: memoryTable checked the segment
    out[2] = static_cast<uint32_t>(n);                  // ≤ len, a descriptor's u32
    w.spanCount++;
    addr += n;
    len -= n;
  }
  return true;
}

// Walks the chain at `head` into w's spans (from w.spanCount). False, with nothing appended
// (w.spanCount as before), when the chain is left to pop(): anything VirtQueue.walk() would
// refuse, and what this walk does not take (the other direction, too many spans).
bool WalkChain(Walk& w, uint32_t head) {
  const size_t first = w.spanCount;
  const uint8_t* table = w.desc;
  uint32_t tableSize = w.size;
  uint32_t idx = head;
  uint32_t walked = 0;
  bool viaTable = false;
  for (;;) {
    if (walked++ >= tableSize) break;  // a loop, or longer than its table
    const Desc d = LoadDesc(table + static_cast<size_t>(idx) * sizeof(Desc));
    if (d.addr >= kMaxAddress) break;
    if ((d.flags & kDescIndirect) != 0) {
      // §2.7.5.3.1, as VirtQueue.walk(): the head only, not with NEXT, not nested, whole
      // descriptors, all in one segment.
      if (!w.indirectOk || viaTable || walked != 1 || (d.flags & kDescNext) != 0) break;
      if (d.len == 0 || d.len % sizeof(Desc) != 0 || d.len / sizeof(Desc) > kMaxQueueSize) break;
      int64_t found = w.table->Find(d.addr);
      if (found < 0) break;
      const Segment& s = w.table->segments[static_cast<size_t>(found)];
      if (d.len > s.length - (d.addr - s.gpa)) break;
      table = s.data + (d.addr - s.gpa);
      tableSize = d.len / sizeof(Desc);
      idx = 0;
      walked = 0;
      viaTable = true;
      continue;
    }
    if (((d.flags & kDescWrite) != 0) != w.writable) break;
    if (!AddBuffer(w, first, d.addr, d.len)) break;
    if ((d.flags & kDescNext) == 0) {
      if (viaTable) w.indirectUsed = true;
      return true;
    }
    if (d.next >= tableSize) break;
    idx = d.next;
  }
  w.spanCount = first;
  return false;
}

// Asks the CPU for the head descriptors of the next `count` chains (independent loads, whose
// misses overlap), then for each indirect head's table: the walks then find them on the way
// instead of waiting on each in turn (the guest's CPU just wrote them). A hint: what is out of
// range is skipped, and the walk checks everything again.
void Prefetch(Walk& w, const uint16_t* ring, uint32_t last, uint32_t count) {
  for (uint32_t k = 0; k < count; k++) {
    uint32_t head = __atomic_load_n(&ring[((last + k) & 0xffff) % w.size], __ATOMIC_RELAXED);
    if (head < w.size) __builtin_prefetch(w.desc + static_cast<size_t>(head) * sizeof(Desc));
  }
  for (uint32_t k = 0; k < count; k++) {
    uint32_t head = __atomic_load_n(&ring[((last + k) & 0xffff) % w.size], __ATOMIC_RELAXED);
    if (head >= w.size) continue;
    const Desc d = LoadDesc(w.desc + static_cast<size_t>(head) * sizeof(Desc));
    if ((d.flags & kDescIndirect) == 0 || d.addr >= kMaxAddress) continue;
    int64_t found = w.table->Find(d.addr);
    if (found < 0) continue;
    const Segment& s = w.table->segments[static_cast<size_t>(found)];
    __builtin_prefetch(s.data + (d.addr - s.gpa));
  }
}

// The start of a ring area of `length` bytes at (segment, offset in its chunk), or nullptr when
// it is not all inside that segment or is not 2-aligned.
const uint8_t* RingArea(const MemoryTable& table, uint32_t segment, uint32_t offset, size_t length) {
  if (segment >= table.segments.size()) return nullptr;
  const Segment& s = table.segments[segment];
  if (offset < s.offset || length > s.length || offset - s.offset > s.length - length) return nullptr;
  const uint8_t* p = s.data + (offset - s.offset);
  return (reinterpret_cast<uintptr_t>(p) & 1) == 0 ? p : nullptr;
}

// popChains(exchange: Uint32Array): walks the chains from avail slot [kLastAvail] on, at most
// [kMaxChains] and never past [kAvailIdx], and returns how many it took. Chain i is
// chains[2i] (its head) and chains[2i + 1] (where its spans end), chains being the exchange from
// kFieldCount on; its spans follow the chain before's in the spans (from kFieldCount + 2 *
// [kChainCapacity] on), three numbers each: the segment's index in the table, the offset in that
// segment's chunk, the length. [kLeft] says whether it stopped before a chain it leaves to pop().
// Plain N-API, one argument: it is called per batch of chains.
napi_value PopChains(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 1;
  napi_value arg;
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (napi_get_cb_info(env, cbinfo, &argc, &arg, nullptr, nullptr) != napi_ok || argc < 1 ||
      napi_get_typedarray_info(env, arg, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint32_array || length < kFieldCount) {
    napi_throw_type_error(env, nullptr, "popChains(exchange: Uint32Array) with room for its fields");
    return nullptr;
  }
  uint32_t* x = static_cast<uint32_t*>(data);
  const uint32_t chainCapacity = x[kChainCapacity];
  if (chainCapacity > (length - kFieldCount) / 2) {
    napi_throw_range_error(env, nullptr, "popChains: the exchange has no room for its chains");
    return nullptr;
  }
  x[kLeft] = 1;
  x[kIndirect] = 0;
  napi_value result;
  const auto found = registry.tables.find(x[kTable]);
  const uint32_t size = x[kSize];
  const uint32_t last = x[kLastAvail] & 0xffff;
  const uint32_t published = (x[kAvailIdx] - last) & 0xffff;
  const uint8_t* desc = nullptr;
  const uint8_t* avail = nullptr;
  // A table gone or dead, a ring not where it says, an avail index past the queue size: every
  // chain is pop()'s (which says what is wrong, where something is).
  if (found != registry.tables.end() && found->second->Live() && size > 0 && size <= kMaxQueueSize &&
      published <= size) {
    desc = RingArea(*found->second, x[kDescSegment], x[kDescOffset], size_t{size} * sizeof(Desc));
    avail = RingArea(*found->second, x[kAvailSegment], x[kAvailOffset], (2 + size_t{size}) * 2);
  }
  if (desc == nullptr || avail == nullptr) {
    napi_create_uint32(env, 0, &result);
    return result;
  }
  const uint32_t flags = x[kFlags];
  uint32_t* chains = x + kFieldCount;
  uint32_t* spans = chains + 2 * size_t{chainCapacity};
  Walk w{found->second,
         desc,
         size,
         (flags & kFlagIndirect) != 0,
         (flags & kFlagWritable) != 0,
         x[kMaxSpans],
         spans,
         (length - kFieldCount - 2 * size_t{chainCapacity}) / 3};
  const uint32_t count = std::min({published, x[kMaxChains], chainCapacity});
  const uint16_t* ring = reinterpret_cast<const uint16_t*>(avail) + 2;
  if ((flags & kFlagPrefetch) != 0) Prefetch(w, ring, last, count);
  uint32_t taken = 0;
  while (taken < count) {
    const uint32_t head = __atomic_load_n(&ring[((last + taken) & 0xffff) % size], __ATOMIC_RELAXED);
    if (head >= size || !WalkChain(w, head)) break;
    chains[2 * taken] = head;
    chains[2 * taken + 1] = static_cast<uint32_t>(w.spanCount);
    taken++;
  }
  x[kLeft] = taken < count ? 1 : 0;
  x[kIndirect] = w.indirectUsed ? 1 : 0;
  napi_create_uint32(env, taken, &result);
  return result;
}

}  // namespace

void InitRing(Napi::Env env, Napi::Object exports) {
  exports.Set("memoryTable", Napi::Function::New(env, MakeMemoryTable, "memoryTable"));
  napi_value fn;
  if (napi_create_function(env, "popChains", NAPI_AUTO_LENGTH, PopChains, nullptr, &fn) == napi_ok) {
    exports.Set("popChains", fn);
  }
}

}  // namespace vu
