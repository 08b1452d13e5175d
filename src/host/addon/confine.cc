// Least privilege for the vunet process, applied once its sockets and files are open (see
// src/host/confine.ts for the JS interface and src/main/privileges.ts for the policy).
//
// confine(spec) does, in this order, and stops at the first step that fails:
//   1. credentials: with spec.user (needs root) PR_SET_KEEPCAPS, the bounding set reduced to the
//      kept capabilities, setgroups(0), setresgid, setresuid (glibc applies these three to every
//      thread); then, with or without a user, capset: permitted = effective = the kept set
//      (CAP_NET_RAW at most), inheritable and ambient empty; PR_SET_KEEPCAPS 0. Checked after:
//      the ids are the target's and setuid(0) fails.
//   2. with spec.sandbox: PR_SET_NO_NEW_PRIVS.
//   3. with spec.sandbox, best effort: a Landlock ruleset that handles every write-type access of
//      the kernel's ABI (and execute, device ioctls, signal and abstract-socket scoping) and allows
//      only writing spec.writableFiles and removing files beneath spec.removableDirs. With ABI 8
//      (LANDLOCK_RESTRICT_SELF_TSYNC) it binds every thread; before that, only the calling thread
//      and the threads it creates later — the report says which.
//   4. with spec.sandbox: a seccomp filter on every thread (SECCOMP_FILTER_FLAG_TSYNC; failure
//      throws) that kills a process making calls for another architecture, refuses x32 numbers,
//      and answers EPERM to what a network backend never does once started (see DENIED below),
//      ENOSYS to clone3 and openat2 (their flags sit behind a pointer the filter cannot read;
//      glibc falls back to clone, and openat2 is not used) and to io_uring_setup (its requests
//      would bypass the open() checks; libuv falls back to its thread pool). CAP_NET_RAW, when
//      kept, is narrowed to what the echo proxy uses: raw IPv4/IPv6 sockets of protocol ICMP or
//      ICMPv6 only, no packet sockets (AF_PACKET, SOCK_PACKET), no IP_HDRINCL / IPV6_HDRINCL —
//      so no sniffing of the host's traffic and no forged IP headers. Everything else is
//      allowed: Node, V8 and libuv use too many calls for an allow list to stay correct.
//
// Credentials (uid, capabilities) are per thread in the kernel: glibc broadcasts set*id to all
// threads, but capset only changes the calling thread. Threads that existed before step 1 end up
// with no capabilities at all (their setresuid ran without KEEPCAPS); threads created later
// inherit the caller's. Only Linux x86_64 is supported (the filter's syscall numbers).
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

// Landlock access rights and flags newer than the build machine's headers (Linux 6.1 has ABI 2).
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)  // ABI 3
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)  // ABI 5
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)  // ABI 6
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)  // ABI 6
#endif
#ifndef LANDLOCK_RESTRICT_SELF_TSYNC
#define LANDLOCK_RESTRICT_SELF_TSYNC (1U << 3)  // ABI 8
#endif
#ifndef SECCOMP_RET_KILL_PROCESS
#define SECCOMP_RET_KILL_PROCESS 0x80000000U
#endif

namespace hn {
namespace {

Napi::Value Fail(Napi::Env env) { return env.Undefined(); }  // with a pending exception

#if defined(__x86_64__)

constexpr int kCapNetRaw = CAP_NET_RAW;
constexpr uint32_t kX32SyscallBit = 0x40000000U;

// ---------- capabilities ----------

struct CapSets {
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
};

bool CapGet(CapSets* out) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &header, data) != 0) return false;
  out->effective = data[0].effective | (uint64_t{data[1].effective} << 32);
  out->permitted = data[0].permitted | (uint64_t{data[1].permitted} << 32);
  out->inheritable = data[0].inheritable | (uint64_t{data[1].inheritable} << 32);
  return true;
}

// permitted = effective = keep, inheritable empty (this thread).
bool CapSet(uint64_t keep) {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(keep);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(keep >> 32);
  return syscall(SYS_capset, &header, data) == 0;
}

// ---------- Landlock ----------

// struct landlock_ruleset_attr as of ABI 6 (the build headers stop at handled_access_fs).
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};

struct LandlockResult {
  int abi = 0;              // 0: not applied
  bool allThreads = false;  // TSYNC was used (or the process had one thread)
  std::string error;        // why it was not applied, when abi == 0 or it failed
};

// The write-type rights of ABI `abi`, with execute and device ioctls.
uint64_t HandledFs(int abi) {
  uint64_t access = LANDLOCK_ACCESS_FS_EXECUTE | LANDLOCK_ACCESS_FS_WRITE_FILE |
                    LANDLOCK_ACCESS_FS_REMOVE_DIR | LANDLOCK_ACCESS_FS_REMOVE_FILE |
                    LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_DIR |
                    LANDLOCK_ACCESS_FS_MAKE_REG | LANDLOCK_ACCESS_FS_MAKE_SOCK |
                    LANDLOCK_ACCESS_FS_MAKE_FIFO | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
                    LANDLOCK_ACCESS_FS_MAKE_SYM;
  if (abi >= 2) access |= LANDLOCK_ACCESS_FS_REFER;
  if (abi >= 3) access |= LANDLOCK_ACCESS_FS_TRUNCATE;
  if (abi >= 5) access |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
  return access;
}

std::string Describe(const char* what, const std::string& path, int err) {
  return std::string(what) + " " + path + ": " + std::strerror(err);
}

// Adds a path-beneath rule allowing `access` (masked to what the ruleset handles) on `path`.
bool AddPathRule(int ruleset, const std::string& path, bool directory, uint64_t access,
                 uint64_t handled, std::string* error) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) {
    *error = Describe("cannot open", path, errno);
    return false;
  }
  landlock_path_beneath_attr rule{};
  rule.allowed_access = access & handled;
  rule.parent_fd = fd;
  long rc = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &rule, 0);
  int err = errno;
  close(fd);
  if (rc != 0) {
    *error = Describe("landlock_add_rule on", path, err);
    return false;
  }
  return true;
}

int CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') n++;
  }
  closedir(dir);
  return n;
}

LandlockResult ApplyLandlock(const std::vector<std::string>& files,
                             const std::vector<std::string>& dirs, int threads) {
  LandlockResult r;
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 0) {
    r.error = errno == ENOSYS || errno == EOPNOTSUPP ? "not available in this kernel"
                                                      : std::string("landlock_create_ruleset: ") + std::strerror(errno);
    return r;
  }
  RulesetAttr attr{};
  attr.handled_access_fs = HandledFs(static_cast<int>(abi));
  size_t size = sizeof attr.handled_access_fs;
  if (abi >= 6) {
    attr.scoped = LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | LANDLOCK_SCOPE_SIGNAL;
    size = sizeof attr;
  }
  int ruleset = static_cast<int>(syscall(SYS_landlock_create_ruleset, &attr, size, 0));
  if (ruleset < 0) {
    r.error = std::string("landlock_create_ruleset: ") + std::strerror(errno);
    return r;
  }
  bool ok = true;
  for (const std::string& f : files) {
    ok = ok && AddPathRule(ruleset, f, false, LANDLOCK_ACCESS_FS_WRITE_FILE, attr.handled_access_fs, &r.error);
  }
  for (const std::string& d : dirs) {
    ok = ok && AddPathRule(ruleset, d, true, LANDLOCK_ACCESS_FS_REMOVE_FILE, attr.handled_access_fs, &r.error);
  }
  if (ok) {
    unsigned flags = abi >= 8 ? LANDLOCK_RESTRICT_SELF_TSYNC : 0;
    if (syscall(SYS_landlock_restrict_self, ruleset, flags) != 0) {
      r.error = std::string("landlock_restrict_self: ") + std::strerror(errno);
    } else {
      r.abi = static_cast<int>(abi);
      r.allThreads = flags != 0 || threads == 1;
    }
  }
  close(ruleset);
  return r;
}

// ---------- seccomp ----------

// Calls a started network backend never makes: EPERM.
const int DENIED[] = {
    // new programs and processes (clone is checked on its flags below)
    __NR_execve, __NR_execveat, __NR_fork, __NR_vfork,
    // other processes' memory and files
    __NR_ptrace, __NR_process_vm_readv, __NR_process_vm_writev, __NR_pidfd_getfd,
    // mounts, namespaces, root directory
    __NR_mount, __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_unshare, __NR_setns,
    __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
    __NR_mount_setattr,
    // the kernel itself
    __NR_init_module, __NR_finit_module, __NR_delete_module, __NR_kexec_load,
    __NR_kexec_file_load, __NR_reboot, __NR_swapon, __NR_swapoff, __NR_keyctl, __NR_add_key,
    __NR_request_key, __NR_bpf, __NR_perf_event_open, __NR_userfaultfd, __NR_acct,
    __NR_quotactl, __NR_quotactl_fd, __NR_syslog, __NR_iopl, __NR_ioperm,
    // clocks
    __NR_settimeofday, __NR_clock_settime, __NR_adjtimex, __NR_clock_adjtime,
    // files by handle, device nodes
    __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_mknod, __NR_mknodat,
    // credentials
    __NR_setuid, __NR_setgid, __NR_setreuid, __NR_setregid, __NR_setresuid, __NR_setresgid,
    __NR_setfsuid, __NR_setfsgid, __NR_setgroups, __NR_capset,
    // writing the filesystem other than through open(): Landlock covers these too, but only on
    // the threads it binds. unlink stays allowed (the vhost-user socket is removed at exit).
    __NR_creat, __NR_truncate, __NR_mkdir, __NR_mkdirat, __NR_rmdir, __NR_rename, __NR_renameat,
    __NR_renameat2, __NR_link, __NR_linkat, __NR_symlink, __NR_symlinkat, __NR_chmod,
    __NR_fchmod, __NR_fchmodat, __NR_chown, __NR_fchown, __NR_lchown, __NR_fchownat,
    __NR_setxattr, __NR_lsetxattr, __NR_fsetxattr, __NR_removexattr, __NR_lremovexattr,
    __NR_fremovexattr, __NR_utime, __NR_utimes, __NR_futimesat, __NR_utimensat,
};

// Calls answered ENOSYS, as a kernel without them would.
const int ABSENT[] = {__NR_clone3, __NR_openat2, __NR_io_uring_setup};

constexpr uint32_t kWriteFlags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC;
constexpr uint32_t kNamespaceFlags = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC |
                                     CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;

constexpr uint32_t ArgLow(int index) {
  // The low 32 bits of a 64-bit argument (little-endian); every flag tested here lives there and
  // the kernel ignores the high half of these int / clone-flags arguments.
  return static_cast<uint32_t>(offsetof(seccomp_data, args) + 8 * index);
}

class Filter {
 public:
  void Stmt(uint16_t code, uint32_t k) { prog_.push_back(BPF_STMT(code, k)); }
  void Jump(uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) { prog_.push_back(BPF_JUMP(code, k, jt, jf)); }
  void Errno(int err) { Stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (static_cast<uint32_t>(err) & SECCOMP_RET_DATA)); }
  void Allow() { Stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW); }
  std::vector<sock_filter>& Program() { return prog_; }

 private:
  std::vector<sock_filter> prog_;
};

// The filter. The syscall number stays in the accumulator until a call that is checked on its
// arguments matches; that branch then always returns. Calls that never look at their arguments
// are answered the same way every time, which lets the kernel's seccomp cache skip the filter
// for every allowed call but open, openat and clone.
std::vector<sock_filter> BuildFilter() {
  Filter f;
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
  f.Stmt(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr));
  // x32 calls reach the same kernel functions under other numbers: refuse them all.
  f.Jump(BPF_JMP | BPF_JGE | BPF_K, kX32SyscallBit, 0, 1);
  f.Errno(ENOSYS);

  // open(path, flags, mode), openat(dirfd, path, flags, mode): no opening for writing.
  const int openCalls[][2] = {{__NR_open, 1}, {__NR_openat, 2}};
  for (const auto& call : openCalls) {
    f.Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(call[0]), 0, 4);
    f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(call[1]));
    f.Jump(BPF_JMP | BPF_JSET | BPF_K, kWriteFlags, 0, 1);
    f.Errno(EPERM);
    f.Allow();
  }
  // socket(domain, type, protocol): no packet sockets; raw IP sockets for ICMP / ICMPv6 only.
  // (Netlink's raw sockets, which getifaddrs opens, are another domain and pass.)
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 13);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(0));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, AF_PACKET, 10, 0);  // -> EPERM
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0);
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, 7);  // another domain -> allow
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(1));
  f.Stmt(BPF_ALU | BPF_AND | BPF_K, 0xf);               // the type without SOCK_NONBLOCK/CLOEXEC
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, SOCK_PACKET, 5, 0);  // -> EPERM
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, SOCK_RAW, 0, 3);     // not raw -> allow
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(2));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMP, 1, 0);
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_ICMPV6, 0, 1);
  f.Allow();
  f.Errno(EPERM);
  // setsockopt(fd, level, name, ...): no IP_HDRINCL / IPV6_HDRINCL (a raw socket writing whole
  // IP headers could forge any protocol and source).
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_setsockopt, 0, 9);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(2));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IP_HDRINCL, 0, 2);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(1));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_IP, 4, 3);  // -> EPERM / allow
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IPV6_HDRINCL, 0, 2);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(1));
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_IPV6, 1, 0);  // -> EPERM
  f.Allow();
  f.Errno(EPERM);
  // clone(flags, ...): threads only (CLONE_THREAD), and no new namespaces.
  f.Jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 5);
  f.Stmt(BPF_LD | BPF_W | BPF_ABS, ArgLow(0));
  f.Jump(BPF_JMP | BPF_JSET | BPF_K, kNamespaceFlags, 2, 0);
  f.Jump(BPF_JMP | BPF_JSET | BPF_K, CLONE_THREAD, 0, 1);
  f.Allow();
  f.Errno(EPERM);

  for (int nr : DENIED) {
    f.Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1);
    f.Errno(EPERM);
  }
  for (int nr : ABSENT) {
    f.Jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint32_t>(nr), 0, 1);
    f.Errno(ENOSYS);
  }
  f.Allow();
  return std::move(f.Program());
}

// ---------- arguments ----------

bool ArgStrings(Napi::Env env, Napi::Object spec, const char* key, std::vector<std::string>* out) {
  Napi::Value value = spec.Get(key);
  if (env.IsExceptionPending()) return false;
  if (value.IsUndefined()) return true;
  if (!value.IsArray()) {
    Napi::TypeError::New(env, std::string(key) + " must be an array of paths").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array array = value.As<Napi::Array>();
  for (uint32_t i = 0; i < array.Length(); i++) {
    Napi::Value item = array.Get(i);
    if (!item.IsString() || item.As<Napi::String>().Utf8Value().empty()) {
      Napi::TypeError::New(env, std::string(key) + " must hold non-empty strings").ThrowAsJavaScriptException();
      return false;
    }
    out->push_back(item.As<Napi::String>().Utf8Value());
  }
  return true;
}

bool ArgId(Napi::Env env, Napi::Object object, const char* key, uint32_t* out) {
  Napi::Value value = object.Get(key);
  if (env.IsExceptionPending()) return false;
  double d = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  // (uid_t)-1 means "unchanged" to set*id: refused, as is anything that is not an id.
  if (!(d >= 0 && d < 4294967295.0) || static_cast<double>(static_cast<uint32_t>(d)) != d) {
    Napi::RangeError::New(env, std::string("user.") + key + " must be an integer in [0, 4294967294]")
        .ThrowAsJavaScriptException();
    return false;
  }
  *out = static_cast<uint32_t>(d);
  return true;
}

Napi::Array CapList(Napi::Env env, uint64_t caps) {
  Napi::Array list = Napi::Array::New(env);
  uint32_t n = 0;
  for (int cap = 0; cap < 64; cap++) {
    if ((caps >> cap) & 1) list.Set(n++, Napi::Number::New(env, cap));
  }
  return list;
}

// ---------- the call ----------

// confine({ user?: { uid, gid }, keepCapabilities: number[], sandbox: boolean,
//           writableFiles?: string[], removableDirs?: string[] }): the report (see confine.ts).
Napi::Value Confine(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) {
    Napi::TypeError::New(env, "spec must be an object").ThrowAsJavaScriptException();
    return Fail(env);
  }
  Napi::Object spec = info[0].As<Napi::Object>();

  bool switchUser = false;
  uint32_t uid = 0;
  uint32_t gid = 0;
  Napi::Value user = spec.Get("user");
  if (!user.IsUndefined()) {
    if (!user.IsObject()) {
      Napi::TypeError::New(env, "user must be { uid, gid }").ThrowAsJavaScriptException();
      return Fail(env);
    }
    if (!ArgId(env, user.As<Napi::Object>(), "uid", &uid) || !ArgId(env, user.As<Napi::Object>(), "gid", &gid)) {
      return Fail(env);
    }
    switchUser = true;
  }
  uint64_t keep = 0;
  Napi::Value keepValue = spec.Get("keepCapabilities");
  if (!keepValue.IsArray()) {
    Napi::TypeError::New(env, "keepCapabilities must be an array").ThrowAsJavaScriptException();
    return Fail(env);
  }
  Napi::Array keepArray = keepValue.As<Napi::Array>();
  for (uint32_t i = 0; i < keepArray.Length(); i++) {
    Napi::Value cap = keepArray.Get(i);
    if (!cap.IsNumber() || cap.As<Napi::Number>().DoubleValue() != kCapNetRaw) {
      Napi::RangeError::New(env, "keepCapabilities may only hold CAP_NET_RAW (13)").ThrowAsJavaScriptException();
      return Fail(env);
    }
    keep |= uint64_t{1} << kCapNetRaw;
  }
  bool sandbox = spec.Get("sandbox").ToBoolean().Value();
  std::vector<std::string> files;
  std::vector<std::string> dirs;
  if (!ArgStrings(env, spec, "writableFiles", &files) || !ArgStrings(env, spec, "removableDirs", &dirs)) {
    return Fail(env);
  }
  // Built before anything changes: a bad filter must not leave a half-confined process.
  std::vector<sock_filter> program = BuildFilter();

  // 1. Credentials.
  if (switchUser && geteuid() != 0) {
    Napi::Error::New(env, "switching user needs root (euid is not 0)").ThrowAsJavaScriptException();
    return Fail(env);
  }
  CapSets before;
  if (!CapGet(&before)) {
    ThrowErrno(env, errno, "capget");
    return Fail(env);
  }
  keep &= before.permitted;  // a capability we do not have cannot be kept
  if (switchUser && prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) {
    ThrowErrno(env, errno, "prctl(PR_SET_KEEPCAPS)");
    return Fail(env);
  }
  // The bounding set needs CAP_SETPCAP; without it (an unprivileged start) it is left alone:
  // it only matters to execve, which the filter refuses.
  bool boundingDropped = false;
  if (before.effective & (uint64_t{1} << CAP_SETPCAP)) {
    for (int cap = 0; cap < 64; cap++) {
      if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0) break;  // past the kernel's last capability
      if ((keep >> cap) & 1) continue;
      if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        ThrowErrno(env, errno, "prctl(PR_CAPBSET_DROP)");
        return Fail(env);
      }
    }
    boundingDropped = true;
  }
  if (switchUser) {
    if (setgroups(0, nullptr) != 0) {
      ThrowErrno(env, errno, "setgroups");
      return Fail(env);
    }
    if (setresgid(gid, gid, gid) != 0) {
      ThrowErrno(env, errno, "setresgid");
      return Fail(env);
    }
    if (setresuid(uid, uid, uid) != 0) {
      ThrowErrno(env, errno, "setresuid");
      return Fail(env);
    }
    // Other processes of the new user may not ptrace us or read our memory (the guest's).
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
      ThrowErrno(env, errno, "prctl(PR_SET_DUMPABLE)");
      return Fail(env);
    }
  }
  if (!CapSet(keep)) {
    ThrowErrno(env, errno, "capset");
    return Fail(env);
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) {
    ThrowErrno(env, errno, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)");
    return Fail(env);
  }
  if (switchUser && prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) {
    ThrowErrno(env, errno, "prctl(PR_SET_KEEPCAPS)");
    return Fail(env);
  }
  if (switchUser) {
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || r != uid || e != uid || s != uid || getresgid(&rg, &eg, &sg) != 0 ||
        rg != gid || eg != gid || sg != gid || getgroups(0, nullptr) != 0) {
      Napi::Error::New(env, "the user switch did not take effect").ThrowAsJavaScriptException();
      return Fail(env);
    }
    if (uid != 0 && setuid(0) == 0) {
      Napi::Error::New(env, "root could be regained after the user switch").ThrowAsJavaScriptException();
      return Fail(env);
    }
  }
  CapSets after;
  if (!CapGet(&after)) {
    ThrowErrno(env, errno, "capget");
    return Fail(env);
  }

  // 2.-4. The sandbox.
  LandlockResult landlock;
  int threads = CountThreads();
  bool seccomp = false;
  if (sandbox) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      ThrowErrno(env, errno, "prctl(PR_SET_NO_NEW_PRIVS)");
      return Fail(env);
    }
    landlock = ApplyLandlock(files, dirs, threads);
    sock_fprog prog{static_cast<unsigned short>(program.size()), program.data()};
    long rc = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
    if (rc < 0) {
      ThrowErrno(env, errno, "seccomp(SECCOMP_SET_MODE_FILTER, TSYNC)");
      return Fail(env);
    }
    if (rc > 0) {
      std::string message = "seccomp: thread " + std::to_string(rc) + " could not be synchronized (TSYNC)";
      Napi::Error::New(env, message).ThrowAsJavaScriptException();
      return Fail(env);
    }
    seccomp = true;
  } else {
    landlock.error = "sandbox off";
  }

  Napi::Object report = Napi::Object::New(env);
  report.Set("uid", Napi::Number::New(env, getuid()));
  report.Set("gid", Napi::Number::New(env, getgid()));
  report.Set("capabilities", CapList(env, after.permitted | after.effective));
  report.Set("boundingSetDropped", Napi::Boolean::New(env, boundingDropped));
  report.Set("noNewPrivs", Napi::Boolean::New(env, prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1));
  report.Set("landlockAbi", Napi::Number::New(env, landlock.abi));
  report.Set("landlockAllThreads", Napi::Boolean::New(env, landlock.allThreads));
  if (!landlock.error.empty()) report.Set("landlockError", Napi::String::New(env, landlock.error));
  report.Set("threads", Napi::Number::New(env, threads));
  report.Set("seccomp", Napi::Boolean::New(env, seccomp));
  return report;
}

// seccompProgram(): the filter's instructions (struct sock_filter, 8 bytes each, host order), for
// tests that run it on chosen system calls.
Napi::Value SeccompProgram(const Napi::CallbackInfo& info) {
  std::vector<sock_filter> program = BuildFilter();
  return Napi::Buffer<uint8_t>::Copy(info.Env(), reinterpret_cast<const uint8_t*>(program.data()),
                                     program.size() * sizeof(sock_filter));
}

// tryExecve(path): execve(path, [path], environ) straight from this thread, for tests that show
// the filter refuses it; -errno when it fails (on success the process is replaced).
Napi::Value TryExecve(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) {
    Napi::TypeError::New(env, "path must be a string").ThrowAsJavaScriptException();
    return Fail(env);
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  char* argv[] = {path.data(), nullptr};
  execve(path.c_str(), argv, environ);
  return Napi::Number::New(env, -errno);
}

#else  // not x86_64

Napi::Value Confine(const Napi::CallbackInfo& info) {
  Napi::Error::New(info.Env(), "confine: only Linux x86_64 is supported").ThrowAsJavaScriptException();
  return Fail(info.Env());
}

Napi::Value TryExecve(const Napi::CallbackInfo& info) { return Confine(info); }
Napi::Value SeccompProgram(const Napi::CallbackInfo& info) { return Confine(info); }

#endif

}  // namespace

void InitConfine(Napi::Env env, Napi::Object exports) {
  exports.Set("confine", Napi::Function::New(env, Confine, "confine"));
  exports.Set("tryExecve", Napi::Function::New(env, TryExecve, "tryExecve"));
  exports.Set("seccompProgram", Napi::Function::New(env, SeccompProgram, "seccompProgram"));
#if defined(__x86_64__)
  exports.Set("CAP_NET_RAW", Napi::Number::New(env, kCapNetRaw));
#endif
}

}  // namespace hn
