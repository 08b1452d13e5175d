// The SIGBUS guard: guest memory a frontend truncates must not kill the process.
//
// Why. Touching a page of a MAP_SHARED file mapping that lies beyond the end of the file raises
// SIGBUS (mmap(2), "Errors": "Attempted access to a page of the buffer that lies beyond the end of
// the mapped file"), whose default action ends the process. A vhost-user frontend can ftruncate()
// the memfd it shared at any time, unless the file is sealed against shrinking (memfd_create(2),
// F_SEAL_SHRINK). The library seals what it can (sealShrink in mapping.cc); a memfd made without
// MFD_ALLOW_SEALING, a tmpfs or hugetlbfs file cannot be sealed, and shared tmpfs memory can also
// raise SIGBUS when the filesystem is full. So every mapping mmap() makes is entered here.
//
// How. A fixed-size table of [start, end) ranges, written with lock-free atomics (a signal handler
// may read it at any instruction). The handler, for a fault inside a live range, maps an anonymous
// zero page over the faulting page (MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS), so the access is
// re-executed and completes: reads see zeros, writes go nowhere. It counts the fault on the entry
// and writes 1 to the eventfd of the environment that made the mapping; JS polls that eventfd,
// learns which mapping faulted (mappingFaults) and drops the frontend. A fault anywhere else is
// not ours: the previous disposition is restored (or the previous handler called) so the signal
// has its usual effect.
//
// Async-signal safety. The handler calls only mmap, write, sigaction and raise, which are system
// call wrappers on Linux (mmap is not in POSIX's list but is a plain system call in glibc and
// musl; libsigsegv and language runtimes rely on the same), and reads the table with atomics.
// Entries are added before the memory is reachable from JS and removed before munmap, by the
// thread that owns the mapping; that thread is also the only one that touches it, so a range
// cannot vanish while the handler repairs a fault in it.
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <mutex>

#include "common.h"

namespace vu {
namespace {

// More than any process needs: a connection maps at most its memory slots (32 by default).
constexpr int kSlots = 1024;
// An entry being written or removed: the handler skips it.
constexpr uint64_t kBusy = UINT64_MAX;

struct Slot {
  std::atomic<uint64_t> id{0};  // 0 free, kBusy in transition, else the entry's id
  std::atomic<uintptr_t> start{0};
  std::atomic<uintptr_t> end{0};
  std::atomic<uintptr_t> granule{0};
  std::atomic<int> wakeFd{-1};
  std::atomic<uint32_t> faults{0};
};
static_assert(std::atomic<uint64_t>::is_always_lock_free && std::atomic<uintptr_t>::is_always_lock_free &&
                  std::atomic<int>::is_always_lock_free && std::atomic<uint32_t>::is_always_lock_free,
              "the signal handler needs lock-free atomics");

Slot slots[kSlots];
std::atomic<uint64_t> nextId{1};
std::atomic<bool> installed{false};
std::mutex installMutex;
struct sigaction previous;

// Hands the signal to whatever was there before us. For a kernel-generated fault, returning
// re-executes the access, which faults again under the restored disposition (the default action
// ends the process, as it would have without us). A signal sent by a process (si_code <= 0) does
// not repeat: it is raised again, and delivered when this handler returns.
void PassOn(int sig, siginfo_t* info, void* context) {
  if ((previous.sa_flags & SA_SIGINFO) != 0 && previous.sa_sigaction != nullptr) {
    previous.sa_sigaction(sig, info, context);
    return;
  }
  if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    previous.sa_handler(sig);
    return;
  }
  if (info->si_code <= 0 && previous.sa_handler == SIG_IGN) return;
  sigaction(SIGBUS, &previous, nullptr);
  installed.store(false);
  if (info->si_code <= 0) raise(SIGBUS);
}

// Repairs a fault inside a live entry; false if `addr` is in none (or the repair failed).
bool Repair(uintptr_t addr) {
  for (Slot& slot : slots) {
    uint64_t id = slot.id.load(std::memory_order_acquire);
    if (id == 0 || id == kBusy) continue;
    uintptr_t start = slot.start.load(std::memory_order_relaxed);
    uintptr_t end = slot.end.load(std::memory_order_relaxed);
    uintptr_t granule = slot.granule.load(std::memory_order_relaxed);
    int wakeFd = slot.wakeFd.load(std::memory_order_relaxed);
    // Fields read while the entry changed (another thread's add or remove) are not used.
    if (slot.id.load(std::memory_order_acquire) != id) continue;
    if (addr < start || addr >= end) continue;
    uintptr_t page = start + ((addr - start) & ~(granule - 1));
    size_t length = granule < end - page ? granule : end - page;
    void* fixed = mmap(reinterpret_cast<void*>(page), length, PROT_READ | PROT_WRITE,
                       MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (fixed == MAP_FAILED) return false;
    slot.faults.fetch_add(1);
    if (wakeFd >= 0) {
      uint64_t one = 1;
      ssize_t ignored = write(wakeFd, &one, sizeof one);  // EAGAIN: a wake-up is pending anyway
      (void)ignored;
    }
    return true;
  }
  return false;
}

void OnSigbus(int sig, siginfo_t* info, void* context) {
  int savedErrno = errno;
  // si_code > 0: raised by the kernel for an access, si_addr is the faulting address.
  bool repaired = info->si_code > 0 && Repair(reinterpret_cast<uintptr_t>(info->si_addr));
  if (!repaired) PassOn(sig, info, context);
  errno = savedErrno;
}

// One eventfd per environment (main thread, each worker), closed with it. Its entries are removed
// first, so the handler never writes to a closed (or reused) fd number.
struct GuardEnv {
  int wakeFd;
};

void ForgetWakeFd(int fd) {
  for (Slot& slot : slots) {
    uint64_t id = slot.id.load(std::memory_order_acquire);
    if (id == 0 || id == kBusy || slot.wakeFd.load() != fd) continue;
    GuardRemove(GuardEntry{static_cast<int>(&slot - slots), id});
  }
}

void FinalizeGuardEnv(Napi::Env /*env*/, GuardEnv* data) {
  ForgetWakeFd(data->wakeFd);
  close(data->wakeFd);
  delete data;
}

// guardWakeFd(): the eventfd this environment polls to learn of repaired faults.
Napi::Value WakeFd(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), GuardWakeFd(info.Env()));
}

}  // namespace

bool GuardInstall() {
  if (installed.load(std::memory_order_acquire)) return true;
  std::lock_guard<std::mutex> lock(installMutex);
  if (installed.load()) return true;
  // Read the previous disposition first: the handler may run as soon as it is installed.
  if (sigaction(SIGBUS, nullptr, &previous) < 0) return false;
  struct sigaction action {};
  action.sa_sigaction = OnSigbus;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
  if (sigaction(SIGBUS, &action, nullptr) < 0) return false;
  installed.store(true, std::memory_order_release);
  return true;
}

GuardEntry GuardAdd(void* base, size_t length, size_t granule, int wakeFd) {
  for (int i = 0; i < kSlots; i++) {
    Slot& slot = slots[i];
    uint64_t expected = 0;
    if (!slot.id.compare_exchange_strong(expected, kBusy)) continue;
    uint64_t id = nextId.fetch_add(1);
    slot.start.store(reinterpret_cast<uintptr_t>(base), std::memory_order_relaxed);
    slot.end.store(reinterpret_cast<uintptr_t>(base) + length, std::memory_order_relaxed);
    slot.granule.store(granule, std::memory_order_relaxed);
    slot.wakeFd.store(wakeFd, std::memory_order_relaxed);
    slot.faults.store(0, std::memory_order_relaxed);
    slot.id.store(id, std::memory_order_release);
    return GuardEntry{i, id};
  }
  return GuardEntry{};
}

void GuardRemove(GuardEntry entry) {
  if (entry.slot < 0 || entry.slot >= kSlots) return;
  Slot& slot = slots[entry.slot];
  uint64_t expected = entry.id;
  if (!slot.id.compare_exchange_strong(expected, kBusy)) return;  // stale: removed already
  slot.start.store(0, std::memory_order_relaxed);
  slot.end.store(0, std::memory_order_relaxed);
  slot.wakeFd.store(-1, std::memory_order_relaxed);
  slot.id.store(0, std::memory_order_release);
}

uint32_t GuardTakeFaults(GuardEntry entry) {
  if (entry.slot < 0 || entry.slot >= kSlots) return 0;
  Slot& slot = slots[entry.slot];
  if (slot.id.load(std::memory_order_acquire) != entry.id) return 0;
  return slot.faults.exchange(0);
}

int GuardWakeFd(Napi::Env env) {
  GuardEnv* data = env.GetInstanceData<GuardEnv>();
  return data != nullptr ? data->wakeFd : -1;
}

void InitGuard(Napi::Env env, Napi::Object exports) {
  int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd < 0) {
    ThrowErrno(env, errno, "eventfd");
    return;
  }
  env.SetInstanceData<GuardEnv, FinalizeGuardEnv>(new GuardEnv{fd});
  exports.Set("guardWakeFd", Napi::Function::New(env, WakeFd, "guardWakeFd"));
}

}  // namespace vu
