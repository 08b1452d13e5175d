// What the parts of the vhost-user-ts native addon share: the helpers of napi-util.h (errno errors
// shaped like Node's, argument checks), the SIGBUS guard, and the per-file Init functions that
// addon.cc calls.
//
// Built with C++ exceptions disabled (NAPI_DISABLE_CPP_EXCEPTIONS): a helper that fails leaves a
// pending JS exception and returns false; the caller then returns to JS at once.
#pragma once

#include <napi.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>

#include "vhost-user-ts/napi-util.h"

namespace vu {

// The helpers every addon built on vhost-user-ts shares (include/vhost-user-ts/napi-util.h).
using napi_util::ArgByteRange;
using napi_util::ArgFd;
using napi_util::ArgInt;
using napi_util::ArgString;
using napi_util::ByteRange;
using napi_util::kMaxSafeInteger;
using napi_util::RetryEintr;
using napi_util::ThrowErrno;

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

// Mappings made by mmap() (mapping.cc), as other parts of the addon use them (ring.cc's memory
// table). A hold keeps the Mapping struct alive (not the memory: munmap() unmaps it whatever the
// holds); the last release frees it.
struct Mapping;
// The Mapping a JS mapping object wraps, or nullptr (nothing pending) when `value` is not one.
Mapping* UnwrapMapping(napi_env env, napi_value value);
void HoldMapping(Mapping* m);
void ReleaseMapping(napi_env env, Mapping* m);
// The mapped bytes, and their count in `length`; nullptr once munmap() has unmapped them.
uint8_t* MappedBytes(const Mapping* m, size_t* length);

// Registration of each part of the addon on the exports object.
void InitIo(Napi::Env env, Napi::Object exports);       // io.cc: sockets, eventfd, memfd, fd kinds
void InitMapping(Napi::Env env, Napi::Object exports);  // mapping.cc: mmap, munmap, seals
void InitPoller(Napi::Env env, Napi::Object exports);   // poller.cc: Poller (uv_poll_t)
void InitGuard(Napi::Env env, Napi::Object exports);    // guard.cc: the SIGBUS guard's eventfd
void InitRing(Napi::Env env, Napi::Object exports);     // ring.cc: memoryTable, popChains

}  // namespace vu
