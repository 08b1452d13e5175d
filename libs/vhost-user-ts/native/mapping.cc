// mmap of a file (guest RAM shared by the vhost-user frontend) exposed to JS as external
// ArrayBuffers ("chunks"): Node 20 caps one ArrayBuffer at 4 GiB, so a region is cut into pieces.
//
// Lifetime. A Mapping is shared by the JS mapping object (through napi_wrap) and by every chunk
// ArrayBuffer (through its finalizer); `holds` counts them. The memory stays mapped while any of
// them is alive, because a view over a chunk may outlive the mapping object. munmap() ends it
// early: it detaches every chunk still alive (views over it drop to length 0) and only then
// unmaps, so JS can never reach unmapped memory. The struct is freed when the last holder goes,
// and `mapped` makes sure the memory is unmapped exactly once whichever path comes first.
//
// Every mapping is entered in the SIGBUS guard's table (guard.cc) while it is mapped, so a file
// truncated under us costs the frontend its connection instead of killing the process.
#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include <cstring>

#include "common.h"

namespace vu {

// (Declared in common.h: ring.cc's memory table holds mappings.)
struct Mapping {
  uint8_t* base;
  size_t length;
  bool mapped;
  int holds;                     // the mapping object (the builder, until it exists) + live chunks
  std::vector<napi_ref> chunks;  // weak references, so munmap can detach the chunks still alive
  GuardEntry guard;              // slot -1: not guarded (the table was full)
};

namespace {

// Node caps an external ArrayBuffer at 4 GiB (buffer.constants.MAX_LENGTH in Node 20).
constexpr int64_t kMaxChunk = int64_t{1} << 32;

// Tags mapping objects so munmap never unwraps somebody else's native pointer.
constexpr napi_type_tag kMappingTag = {0x7668'6f73'742d'7573ULL, 0x6572'2d6d'6d61'7031ULL};

// Process-wide (the memory is): mappings made and not yet unmapped.
std::atomic<int64_t> liveMappings{0};

void Unmap(Mapping* m) {
  GuardRemove(m->guard);  // before munmap: the range may be reused at once
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
// (unguarded) would kill the process on a frontend's bad region size. Fills `st`.
bool CheckFileCovers(Napi::Env env, int fd, int64_t offset, int64_t length, struct stat* st) {
  if (fstat(fd, st) < 0) {
    ThrowErrno(env, errno, "fstat");
    return false;
  }
  if (S_ISREG(st->st_mode) && offset + length > st->st_size) {
    ThrowErrno(env, EINVAL, "mmap", nullptr, "mapping extends past the end of the file");
    return false;
  }
  return true;
}

// The unit a fault is repaired in: a page, or for a hugetlbfs file its huge page size (which
// fstat reports as st_blksize): a hugetlb mapping can only be split at huge page boundaries.
size_t RepairGranule(int fd, const struct stat& st) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  struct statfs fs;
  size_t block = static_cast<size_t>(st.st_blksize);
  if (fstatfs(fd, &fs) == 0 && fs.f_type == HUGETLBFS_MAGIC && block > page && (block & (block - 1)) == 0) {
    return block;
  }
  return page;
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
  struct stat st;
  if (!CheckFileCovers(env, fd, offset, length, &st)) return env.Undefined();

  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (base == MAP_FAILED) {
    ThrowErrno(env, errno, "mmap");
    return env.Undefined();
  }
  auto* m = new Mapping{static_cast<uint8_t*>(base), static_cast<size_t>(length), true, 1, {}, {}};
  liveMappings++;
  // Unguarded if the handler cannot be installed or the table is full: mappingGuarded() says so
  // and the caller decides (an unsealed region is then refused).
  if (GuardInstall()) m->guard = GuardAdd(base, m->length, RepairGranule(fd, st), GuardWakeFd(env));

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

// The Mapping behind info[0], or nullptr with a TypeError pending.
Mapping* ArgMapping(const Napi::CallbackInfo& info, const char* fn) {
  Napi::Env env = info.Env();
  void* data = nullptr;
  if (!info[0].IsObject() || !info[0].As<Napi::Object>().CheckTypeTag(&kMappingTag) ||
      napi_unwrap(env, info[0], &data) != napi_ok) {
    Napi::TypeError::New(env, std::string(fn) + " expects a mapping made by mmap()").ThrowAsJavaScriptException();
    return nullptr;
  }
  return static_cast<Mapping*>(data);
}

// munmap(mapping): detach every chunk, then unmap. Idempotent.
Napi::Value Munmap(const Napi::CallbackInfo& info) {
  Mapping* m = ArgMapping(info, "munmap");
  if (m != nullptr) UnmapNow(info.Env(), m);
  return info.Env().Undefined();
}

// mappingGuarded(mapping): whether a SIGBUS in it is repaired (false once unmapped).
Napi::Value MappingGuarded(const Napi::CallbackInfo& info) {
  Mapping* m = ArgMapping(info, "mappingGuarded");
  if (m == nullptr) return info.Env().Undefined();
  return Napi::Boolean::New(info.Env(), m->mapped && m->guard.slot >= 0);
}

// mappingFaults(mapping): SIGBUS faults repaired in it since the last call.
Napi::Value MappingFaults(const Napi::CallbackInfo& info) {
  Mapping* m = ArgMapping(info, "mappingFaults");
  if (m == nullptr) return info.Env().Undefined();
  return Napi::Number::New(info.Env(), m->mapped ? GuardTakeFaults(m->guard) : 0);
}

// sealShrink(fd): 0 when the file is sealed against shrinking (it was, or the seal was added
// now), else -errno: -EPERM when sealing is not allowed (a memfd made without MFD_ALLOW_SEALING,
// a tmpfs file, F_SEAL_SEAL already set), -EINVAL when the filesystem has no seals. See
// memfd_create(2) and fcntl(2), "File Sealing". A sealed file can never be truncated under a
// mapping of it, so that mapping can never raise SIGBUS for that reason.
Napi::Value SealShrink(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return info.Env().Undefined();
  int seals = fcntl(fd, F_GET_SEALS);
  int result = 0;
  if (seals < 0) {
    result = -errno;
  } else if ((seals & F_SEAL_SHRINK) == 0 && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK) < 0) {
    result = -errno;
  }
  return Napi::Number::New(info.Env(), result);
}

Napi::Value LiveMappings(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(liveMappings.load()));
}

}  // namespace

Mapping* UnwrapMapping(napi_env env, napi_value value) {
  bool tagged = false;
  void* data = nullptr;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_object ||
      napi_check_object_type_tag(env, value, &kMappingTag, &tagged) != napi_ok || !tagged ||
      napi_unwrap(env, value, &data) != napi_ok) {
    return nullptr;
  }
  return static_cast<Mapping*>(data);
}

void HoldMapping(Mapping* m) { m->holds++; }

void ReleaseMapping(napi_env env, Mapping* m) { Release(env, m); }

uint8_t* MappedBytes(const Mapping* m, size_t* length) {
  *length = m->mapped ? m->length : 0;
  return m->mapped ? m->base : nullptr;
}

void InitMapping(Napi::Env env, Napi::Object exports) {
  napi_util::ExportCopy(env, exports);
  napi_util::ExportPrefetch(env, exports);
  exports.Set("mmap", Napi::Function::New(env, Mmap, "mmap"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("liveMappings", Napi::Function::New(env, LiveMappings, "liveMappings"));
  exports.Set("mappingGuarded", Napi::Function::New(env, MappingGuarded, "mappingGuarded"));
  exports.Set("mappingFaults", Napi::Function::New(env, MappingFaults, "mappingFaults"));
  exports.Set("sealShrink", Napi::Function::New(env, SealShrink, "sealShrink"));
}

}  // namespace vu
