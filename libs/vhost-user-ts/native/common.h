// Shared helpers of the vhost-user-ts native addon: errno errors shaped like Node's, argument
// checks, and the per-file Init functions that addon.cc calls.
//
// Built with C++ exceptions disabled (NAPI_DISABLE_CPP_EXCEPTIONS): a helper that fails leaves a
// pending JS exception and returns false; the caller then returns to JS at once.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

namespace vu {

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
void ThrowErrno(Napi::Env env, int err, const char* syscall, const char* path = nullptr,
                const char* detail = nullptr);

// Argument readers: on a bad argument they throw TypeError/RangeError and return false.
bool ArgInt(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min,
            int64_t max, int64_t* out);
bool ArgFd(const Napi::CallbackInfo& info, size_t index, int* out);
bool ArgString(const Napi::CallbackInfo& info, size_t index, const char* name, std::string* out);

// A byte range of a Uint8Array given as (buf, offset, length) at info[index..index+2].
struct ByteRange {
  uint8_t* data;
  size_t length;
};
bool ArgByteRange(const Napi::CallbackInfo& info, size_t index, ByteRange* out);

// The SIGBUS guard (guard.cc): a fixed-size table of the address ranges mmap() made, and a
// handler that repairs a fault inside one of them. An entry is named by its slot and a unique id,
// so a stale entry (already removed, the slot reused) is never touched.
struct GuardEntry {
  int slot = -1;
  uint64_t id = 0;
};
// Installs the process-wide SIGBUS handler (once). False, with errno set, if sigaction fails.
bool GuardInstall();
// Enters [base, base + length) in the table; faults there are repaired `granule` bytes at a time
// (the page size, or the huge page size of a hugetlbfs file) and reported by writing 1 to
// `wakeFd`. Returns an entry with slot -1 when the table is full.
GuardEntry GuardAdd(void* base, size_t length, size_t granule, int wakeFd);
// Removes an entry (before the range is unmapped). A stale entry is ignored.
void GuardRemove(GuardEntry entry);
// Faults repaired in the entry's range since the last call.
uint32_t GuardTakeFaults(GuardEntry entry);
// The eventfd the handler writes for mappings made in this environment (one per addon instance).
int GuardWakeFd(Napi::Env env);

// Registration of each part of the addon on the exports object.
void InitIo(Napi::Env env, Napi::Object exports);       // io.cc: sockets, eventfd, memfd, fd kinds
void InitMapping(Napi::Env env, Napi::Object exports);  // mapping.cc: mmap, munmap, seals
void InitPoller(Napi::Env env, Napi::Object exports);   // poller.cc: Poller (uv_poll_t)
void InitGuard(Napi::Env env, Napi::Object exports);    // guard.cc: the SIGBUS guard's eventfd

}  // namespace vu
