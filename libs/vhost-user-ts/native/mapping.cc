// mmap of a file (guest RAM shared by the vhost-user frontend) exposed to JS as external
// ArrayBuffers ("chunks"): Node 20 caps one ArrayBuffer at 4 GiB, so a region is cut into pieces.
//
// Lifetime. A Mapping is shared by the JS mapping object (through napi_wrap) and by every chunk
// ArrayBuffer (through its finalizer); `holds` counts them. The memory stays mapped while any of
// them is alive, because a view over a chunk may outlive the mapping object. munmap() ends it
// early: it detaches every chunk still alive (views over it drop to length 0) and only then
// unmaps, so JS can never reach unmapped memory. The struct is freed when the last holder goes,
// and `mapped` makes sure the memory is unmapped exactly once whichever path comes first.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "common.h"

namespace vu {
namespace {

struct Mapping {
  uint8_t* base;
  size_t length;
  bool mapped;
  int holds;                     // the mapping object (the builder, until it exists) + live chunks
  std::vector<napi_ref> chunks;  // weak references, so munmap can detach the chunks still alive
};

// Node caps an external ArrayBuffer at 4 GiB (buffer.constants.MAX_LENGTH in Node 20).
constexpr int64_t kMaxChunk = int64_t{1} << 32;

// Tags mapping objects so munmap never unwraps somebody else's native pointer.
constexpr napi_type_tag kMappingTag = {0x7668'6f73'742d'7573ULL, 0x6572'2d6d'6d61'7031ULL};

// Process-wide (the memory is): mappings made and not yet unmapped.
std::atomic<int64_t> liveMappings{0};

void Unmap(Mapping* m) {
  munmap(m->base, m->length);
  m->mapped = false;
  liveMappings--;
}

void DeleteChunkRefs(napi_env env, Mapping* m) {
  for (napi_ref ref : m->chunks) napi_delete_reference(env, ref);
  m->chunks.clear();
}

// Drops one hold; the last one unmaps (if munmap() has not) and frees the struct. No JS can
// reach the memory then: the mapping object and every chunk are gone.
void Release(napi_env env, Mapping* m) {
  if (--m->holds > 0) return;
  if (m->mapped) Unmap(m);
  DeleteChunkRefs(env, m);
  delete m;
}

void FinalizeChunk(napi_env env, void* /*data*/, void* hint) {
  Release(env, static_cast<Mapping*>(hint));
}

void FinalizeMappingObject(napi_env env, void* data, void* /*hint*/) {
  Release(env, static_cast<Mapping*>(data));
}

// Detaches every chunk still alive. False, with an exception pending, if one cannot be detached.
bool DetachChunks(Napi::Env env, Mapping* m) {
  for (napi_ref ref : m->chunks) {
    napi_value value = nullptr;
    napi_get_reference_value(env, ref, &value);
    if (value == nullptr) continue;  // already collected
    Napi::ArrayBuffer chunk(env, value);
    if (!chunk.IsDetached() && napi_detach_arraybuffer(env, value) != napi_ok) {
      if (!env.IsExceptionPending()) ThrowErrno(env, EBUSY, "munmap", nullptr, "a chunk cannot be detached");
      return false;
    }
  }
  return true;
}

// Detach, then unmap; nothing to do if already unmapped. If a chunk refuses to detach the memory
// stays mapped (a view could still reach it) and the finalizers unmap it later.
bool UnmapNow(Napi::Env env, Mapping* m) {
  if (!m->mapped) return true;
  if (!DetachChunks(env, m)) return false;
  Unmap(m);
  DeleteChunkRefs(env, m);  // only munmap needed them
  return true;
}

// The reason mmap's geometry is invalid, or nullptr.
const char* CheckGeometry(int64_t offset, int64_t length, int64_t chunkSize) {
  const int64_t page = sysconf(_SC_PAGESIZE);
  if (length <= 0) return "length must be > 0";
  if (chunkSize <= 0 || chunkSize % page != 0) {
    return "chunkSize must be a positive multiple of the page size";
  }
  if (std::min(chunkSize, length) > kMaxChunk) return "chunks are limited to 4 GiB";
  if (offset % page != 0) return "offset must be page aligned";
  return nullptr;
}

// A regular file must cover the whole range: touching a page past its end raises SIGBUS, which
// would kill the process on a frontend's bad region size.
bool CheckFileCovers(Napi::Env env, int fd, int64_t offset, int64_t length) {
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, errno, "fstat");
    return false;
  }
  if (S_ISREG(st.st_mode) && offset + length > st.st_size) {
    ThrowErrno(env, EINVAL, "mmap", nullptr, "mapping extends past the end of the file");
    return false;
  }
  return true;
}

// One external ArrayBuffer per chunkSize bytes (the last may be shorter), each holding `m`.
bool MakeChunks(Napi::Env env, Mapping* m, size_t chunkSize, Napi::Array chunks) {
  uint32_t index = 0;
  for (size_t off = 0; off < m->length; off += chunkSize) {
    size_t size = std::min(chunkSize, m->length - off);
    napi_value chunk;
    if (napi_create_external_arraybuffer(env, m->base + off, size, FinalizeChunk, m, &chunk) != napi_ok) {
      return false;
    }
    m->holds++;
    napi_ref ref;
    if (napi_create_reference(env, chunk, 0, &ref) != napi_ok) return false;
    m->chunks.push_back(ref);
    chunks.Set(index++, chunk);
  }
  return true;
}

// The JS mapping object {chunks, chunkSize, length}, frozen, wrapping and tagged for `m`. Takes
// over the builder's hold on success.
bool MakeMappingObject(Napi::Env env, Mapping* m, Napi::Array chunks, int64_t chunkSize, Napi::Object* out) {
  Napi::Object obj = Napi::Object::New(env);
  obj.Set("chunks", chunks);
  obj.Set("chunkSize", Napi::Number::New(env, static_cast<double>(chunkSize)));
  obj.Set("length", Napi::Number::New(env, static_cast<double>(m->length)));
  if (napi_wrap(env, obj, m, FinalizeMappingObject, nullptr, nullptr) != napi_ok) return false;
  obj.TypeTag(&kMappingTag);
  chunks.Freeze();
  obj.Freeze();
  *out = obj;
  return true;
}

// mmap(fd, offset, length, chunkSize): the mapping object. Throws.
Napi::Value Mmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int64_t offset, length, chunkSize;
  if (!ArgFd(info, 0, &fd) || !ArgInt(info, 1, "offset", 0, kMaxSafeInteger, &offset) ||
      !ArgInt(info, 2, "length", 0, kMaxSafeInteger, &length) ||
      !ArgInt(info, 3, "chunkSize", 0, kMaxSafeInteger, &chunkSize)) {
    return env.Undefined();
  }
  if (const char* problem = CheckGeometry(offset, length, chunkSize)) {
    ThrowErrno(env, EINVAL, "mmap", nullptr, problem);
    return env.Undefined();
  }
  if (!CheckFileCovers(env, fd, offset, length)) return env.Undefined();

  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (base == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap");
    return env.Undefined();
  }
  auto* m = new Mapping{static_cast<uint8_t*>(base), static_cast<size_t>(length), true, 1, {}};
  liveMappings++;

  Napi::Array chunks = Napi::Array::New(env);
  Napi::Object result;
  if (!MakeChunks(env, m, chunkSize, chunks) || !MakeMappingObject(env, m, chunks, chunkSize, &result)) {
    // No chunk has reached JS, so the memory can go now; the chunks made release their holds
    // when collected.
    if (!env.IsExceptionPending()) {
      ThrowErrno(env, ENOMEM, "mmap", nullptr, "cannot create the chunk ArrayBuffers");
    }
    Unmap(m);
    Release(env, m);
    return env.Undefined();
  }
  return result;
}

// munmap(mapping): detach every chunk, then unmap. Idempotent.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  void* data = nullptr;
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kMappingTag) ||
      napi_unwrap(env, info[0], &data) != napi_ok) {
    Napi::TypeError::New(env, "munmap expects a mapping made by mmap()").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  UnmapNow(env, static_cast<Mapping*>(data));
  return env.Undefined();
}

Napi::Value LiveMappings(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(liveMappings.load()));
}

}  // namespace

void InitMapping(Napi::Env env, Napi::Object exports) {
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("liveMappings", Napi::Function::New(env, LiveMappings, "liveMappings"));
}

}  // namespace vu
