// Unix sockets with fd passing (SCM_RIGHTS), eventfd, memfd and pipes, and what kind of file an fd
// is: the file-descriptor calls Node core lacks. Every fd made here is non-blocking and
// close-on-exec, and every call is issued so that it cannot block the event loop. Expected
// failures come back as -errno; only calls that set something up (listen, connect, eventfd,
// memfd, pipe) or that cannot fail on a valid fd (fdKind) throw.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "common.h"

namespace vu {
namespace {

// The most fds the kernel carries in one SCM_RIGHTS message (SCM_MAX_FD).
constexpr int kMaxFds = 253;

// Room for kMaxFds fds, aligned as a cmsghdr must be.
union ControlBuffer {
  cmsghdr align;
  char bytes[CMSG_SPACE(kMaxFds * sizeof(int))];
};

// The msghdr of a sendmsg or recvmsg over one buffer, with room for the control messages the
// caller sets up. It points into itself: never copied or moved.
struct OneBufferMessage {
  iovec iov;
  msghdr msg{};
  ControlBuffer control;  // last: cmsghdr ends in a flexible array member

  explicit OneBufferMessage(const ByteRange& range) : iov{range.data, range.length} {
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
  }
  OneBufferMessage(const OneBufferMessage&) = delete;
  OneBufferMessage& operator=(const OneBufferMessage&) = delete;
};

Napi::Value Fail(Napi::Env env) { return env.Undefined(); }  // with a pending exception

// Throws the errno of a failed setup step, first closing `fd` (if >= 0) that the step leaves
// useless.
Napi::Value CloseAndThrow(Napi::Env env, int fd, const char* syscall, const char* path = nullptr) {
  int err = errno;
  if (fd >= 0) close(fd);
  ThrowErrno(env, err, syscall, path);
  return Fail(env);
}

// Fills a sockaddr_un for a filesystem path; throws (and returns false) when it does not fit.
bool UnixAddress(Napi::Env env, const std::string& path, const char* syscall, sockaddr_un* addr,
                 socklen_t* len) {
  if (path.empty() || path.find('\0') != std::string::npos) {
    ThrowErrno(env, EINVAL, syscall, path.c_str(), "invalid socket path");
    return false;
  }
  if (path.size() >= sizeof addr->sun_path) {  // sun_path needs room for the terminating NUL
    ThrowErrno(env, ENAMETOOLONG, syscall, path.c_str(), "socket path longer than sun_path");
    return false;
  }
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.data(), path.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + 1);
  return true;
}

// unixListen(path, backlog): fd. An existing path is the caller's business (EADDRINUSE).
Napi::Value UnixListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  int64_t backlog;
  sockaddr_un addr;
  socklen_t len;
  if (!ArgString(info, 0, "path", &path) || !ArgInt(info, 1, "backlog", 0, INT_MAX, &backlog) ||
      !UnixAddress(env, path, "bind", &addr, &len)) {
    return Fail(env);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return CloseAndThrow(env, -1, "socket");
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    return CloseAndThrow(env, fd, "bind", path.c_str());
  }
  if (listen(fd, static_cast<int>(backlog)) < 0) {
    int err = errno;
    unlink(path.c_str());  // bind created the socket file: do not leave it behind
    errno = err;
    return CloseAndThrow(env, fd, "listen", path.c_str());
  }
  return Napi::Number::New(env, fd);
}

// adoptListener(fd): takes over a listening unix stream socket the process was given (systemd's
// socket activation, a --fd argument): checks that it is one (ENOTSOCK, EINVAL otherwise, with what
// it is instead), makes it non-blocking and close-on-exec as the fds made here are, and returns the
// path it is bound to ('' for an abstract or unnamed one).
Napi::Value AdoptListener(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(env);
  struct stat st;
  if (fstat(fd, &st) < 0) {
    ThrowErrno(env, errno, "fstat");
    return Fail(env);
  }
  if (!S_ISSOCK(st.st_mode)) {
    ThrowErrno(env, ENOTSOCK, "adoptListener", nullptr, "the fd is not a socket");
    return Fail(env);
  }
  auto intOption = [fd](int name, int* out) {
    socklen_t optlen = sizeof *out;
    return getsockopt(fd, SOL_SOCKET, name, out, &optlen) == 0;
  };
  int domain = 0;
  int type = 0;
  int listening = 0;
  if (!intOption(SO_DOMAIN, &domain) || !intOption(SO_TYPE, &type) || !intOption(SO_ACCEPTCONN, &listening)) {
    ThrowErrno(env, errno, "getsockopt");
    return Fail(env);
  }
  if (domain != AF_UNIX || type != SOCK_STREAM || listening == 0) {
    ThrowErrno(env, EINVAL, "adoptListener", nullptr, "the fd is not a listening unix stream socket");
    return Fail(env);
  }
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
    ThrowErrno(env, errno, "fcntl");
    return Fail(env);
  }
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    ThrowErrno(env, errno, "getsockname");
    return Fail(env);
  }
  size_t pathLen = len > offsetof(sockaddr_un, sun_path) ? len - offsetof(sockaddr_un, sun_path) : 0;
  if (pathLen == 0 || addr.sun_path[0] == '\0') return Napi::String::New(env, "");
  return Napi::String::New(env, std::string(addr.sun_path, strnlen(addr.sun_path, pathLen)));
}

// unixConnect(path): fd. The socket is non-blocking before connect: a unix stream connect never
// answers EINPROGRESS (it completes at once), and when the listener's backlog is full it fails
// with EAGAIN instead of blocking, which could deadlock a process that is its own listener.
Napi::Value UnixConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path;
  sockaddr_un addr;
  socklen_t len;
  if (!ArgString(info, 0, "path", &path) || !UnixAddress(env, path, "connect", &addr, &len)) return Fail(env);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return CloseAndThrow(env, -1, "socket");
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    return CloseAndThrow(env, fd, "connect", path.c_str());
  }
  return Napi::Number::New(env, fd);
}

// accept(fd): the new fd, or -errno (-EAGAIN when no connection is pending).
Napi::Value Accept(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  int conn = RetryEintr([&] { return accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC); });
  return Napi::Number::New(info.Env(), conn >= 0 ? conn : -errno);
}

// Appends every fd of every SCM_RIGHTS cmsg to `fds`. Checks each header's length itself rather
// than trusting the buffer, which may be partly unwritten (see RecvMsg).
void CollectFds(msghdr* msg, Napi::Env env, Napi::Array fds) {
  uint32_t count = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(msg); c != nullptr; c = CMSG_NXTHDR(msg, c)) {
    if (c->cmsg_len < CMSG_LEN(0)) break;
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < n; i++) {
      int fd;
      std::memcpy(&fd, data + i * sizeof(int), sizeof fd);  // CMSG_DATA need not be int-aligned
      if (fd >= 0) fds.Set(count++, Napi::Number::New(env, fd));
    }
  }
}

// recvMsg(fd, buf, offset, length, maxFds): {n, fds, truncated}. n is bytes, 0 at end of stream,
// or -errno. Every fd that arrived is returned, even with MSG_CTRUNC, so the caller can close it.
Napi::Value RecvMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  ByteRange range;
  int64_t maxFds;
  if (!ArgFd(info, 0, &fd) || !ArgByteRange(info, 1, &range) ||
      !ArgInt(info, 4, "maxFds", 0, kMaxFds, &maxFds)) {
    return Fail(env);
  }
  if (range.length == 0) {  // a zero-byte read returns 0, indistinguishable from end of stream
    Napi::RangeError::New(env, "recvMsg needs length > 0").ThrowAsJavaScriptException();
    return Fail(env);
  }

  OneBufferMessage m(range);
  msghdr& msg = m.msg;
  ControlBuffer& control = m.control;
  if (maxFds > 0) {
    // CMSG_LEN, not CMSG_SPACE: the kernel fits as many fds as the length allows, and the padding
    // of CMSG_SPACE would make room for one more than asked when maxFds is odd.
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_LEN(maxFds * sizeof(int));
    // Zeroed so CollectFds stops at once if the kernel wrote no control data.
    std::memset(control.bytes, 0, msg.msg_controllen);
  }
  size_t controlLen = msg.msg_controllen;
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT); });
  int err = n < 0 ? errno : 0;
  // On failure msg_controllen is not updated, yet Linux may in rare cases (a fault copying the
  // data) have installed fds already; scan what we offered so none of them leaks.
  if (n < 0) msg.msg_controllen = controlLen;

  Napi::Array fds = Napi::Array::New(env);
  if (msg.msg_control != nullptr) CollectFds(&msg, env, fds);
  Napi::Object result = Napi::Object::New(env);
  result.Set("n", Napi::Number::New(env, n >= 0 ? static_cast<double>(n) : -err));
  result.Set("fds", fds);
  result.Set("truncated", Napi::Boolean::New(env, n >= 0 && (msg.msg_flags & MSG_CTRUNC) != 0));
  return result;
}

// Reads the fd list of sendMsg (info[4]); throws when it is not an array of fds.
bool ArgFdList(const Napi::CallbackInfo& info, size_t index, int* fds, size_t* count) {
  Napi::Env env = info.Env();
  if (!info[index].IsArray()) {
    Napi::TypeError::New(env, "fds must be an array").ThrowAsJavaScriptException();
    return false;
  }
  Napi::Array list = info[index].As<Napi::Array>();
  if (list.Length() > kMaxFds) {
    Napi::RangeError::New(env, "at most 253 fds per message").ThrowAsJavaScriptException();
    return false;
  }
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= INT_MAX && static_cast<double>(static_cast<int>(d)) == d)) {
      Napi::TypeError::New(env, "fds must hold file descriptors").ThrowAsJavaScriptException();
      return false;
    }
    fds[i] = static_cast<int>(d);
  }
  *count = list.Length();
  return true;
}

// sendMsg(fd, buf, offset, length, fds): bytes sent or -errno. The fds travel with the first byte
// sent; after a partial send the caller sends the rest without fds. MSG_NOSIGNAL: a closed peer
// gives -EPIPE instead of SIGPIPE.
Napi::Value SendMsg(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  ByteRange range;
  int fdList[kMaxFds];
  size_t fdCount = 0;
  if (!ArgFd(info, 0, &fd) || !ArgByteRange(info, 1, &range) || !ArgFdList(info, 4, fdList, &fdCount)) {
    return Fail(env);
  }

  OneBufferMessage m(range);
  msghdr& msg = m.msg;
  ControlBuffer& control = m.control;
  if (fdCount > 0) {
    std::memset(control.bytes, 0, CMSG_SPACE(fdCount * sizeof(int)));
    msg.msg_control = control.bytes;
    msg.msg_controllen = CMSG_SPACE(fdCount * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fdCount * sizeof(int));
    std::memcpy(CMSG_DATA(c), fdList, fdCount * sizeof(int));
  }
  ssize_t n = RetryEintr([&] { return sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
  return Napi::Number::New(env, n >= 0 ? static_cast<double>(n) : -errno);
}

// close(fd): 0 or -errno. Linux releases the fd even when close reports EINTR, so that counts
// as success: retrying could close an fd that another thread has just been given.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  int r = close(fd);
  return Napi::Number::New(info.Env(), r == 0 || errno == EINTR ? 0 : -errno);
}

// eventfd(initval, semaphore = false): fd. Throws. EFD_SEMAPHORE only for tests of what a
// frontend could send.
Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t initval;
  if (!ArgInt(info, 0, "initval", 0, UINT32_MAX, &initval)) return Fail(env);
  bool semaphore = info[1].ToBoolean().Value();
  int fd = eventfd(static_cast<unsigned>(initval), EFD_CLOEXEC | EFD_NONBLOCK | (semaphore ? EFD_SEMAPHORE : 0));
  if (fd < 0) return CloseAndThrow(env, -1, "eventfd");
  return Napi::Number::New(env, fd);
}

// eventfdRead(fd): the counter (> 0), which the read resets, or -errno (-EAGAIN when zero).
Napi::Value EventFdRead(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  uint64_t value;
  ssize_t n = RetryEintr([&] { return read(fd, &value, sizeof value); });
  double result = n == sizeof value ? static_cast<double>(value) : n < 0 ? -errno : -EINVAL;
  return Napi::Number::New(info.Env(), result);
}

// eventfdWrite(fd, value): 0 or -errno (-EAGAIN if the counter would overflow).
Napi::Value EventFdWrite(const Napi::CallbackInfo& info) {
  int fd;
  int64_t value;
  if (!ArgFd(info, 0, &fd) || !ArgInt(info, 1, "value", 0, kMaxSafeInteger, &value)) return Fail(info.Env());
  uint64_t v = static_cast<uint64_t>(value);
  ssize_t n = RetryEintr([&] { return write(fd, &v, sizeof v); });
  return Napi::Number::New(info.Env(), n == sizeof v ? 0 : n < 0 ? -errno : -EIO);
}

// memfdCreate(name, size, sealing = 'sealed'): fd of an anonymous file of `size` bytes. Throws.
// 'sealed' is what QEMU's memory-backend-memfd does by default (seal=on): MFD_ALLOW_SEALING, then
// F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL. 'sealable' allows sealing but adds no seal (a backend
// may seal it); 'unsealable' is made without MFD_ALLOW_SEALING, so nobody can ever seal it.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  int64_t size;
  std::string sealing = "sealed";
  if (!ArgString(info, 0, "name", &name) || !ArgInt(info, 1, "size", 0, kMaxSafeInteger, &size) ||
      (!info[2].IsUndefined() && !ArgString(info, 2, "sealing", &sealing))) {
    return Fail(env);
  }
  if (sealing != "sealed" && sealing != "sealable" && sealing != "unsealable") {
    Napi::RangeError::New(env, "sealing must be 'sealed', 'sealable' or 'unsealable'").ThrowAsJavaScriptException();
    return Fail(env);
  }
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC | (sealing == "unsealable" ? 0 : MFD_ALLOW_SEALING));
  if (fd < 0) return CloseAndThrow(env, -1, "memfd_create");
  if (RetryEintr([&] { return ftruncate(fd, size); }) < 0) return CloseAndThrow(env, fd, "ftruncate");
  if (sealing == "sealed" && fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
    return CloseAndThrow(env, fd, "fcntl");
  }
  return Napi::Number::New(env, fd);
}

// pipe(): [readFd, writeFd], both non-blocking and close-on-exec. Throws.
Napi::Value Pipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return CloseAndThrow(env, -1, "pipe2");
  Napi::Array result = Napi::Array::New(env, 2);
  result.Set(0u, Napi::Number::New(env, fds[0]));
  result.Set(1u, Napi::Number::New(env, fds[1]));
  return result;
}

// Whether /proc/self/fdinfo/<fd> of an eventfd says it is in semaphore mode (EFD_SEMAPHORE: each
// read takes 1 from the counter instead of all of it). Linux shows "eventfd-semaphore:" since
// 6.5; older kernels do not say, and the answer is then false.
bool IsSemaphoreEventfd(int fd) {
  std::string path = "/proc/self/fdinfo/" + std::to_string(fd);
  int info = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (info < 0) return false;
  char text[1024];
  ssize_t n = RetryEintr([&] { return read(info, text, sizeof text - 1); });
  close(info);
  if (n <= 0) return false;
  text[n] = '\0';
  const char* field = std::strstr(text, "eventfd-semaphore:");
  if (field == nullptr) return false;
  field += std::strlen("eventfd-semaphore:");
  while (*field == ' ' || *field == '\t') field++;
  return *field == '1';
}

// fdKind(fd): what the fd refers to. 'eventfd' (or 'eventfd-semaphore' for one in EFD_SEMAPHORE
// mode), another anonymous inode as its /proc name ('anon_inode:[timerfd]', ...), else from
// fstat: 'regular' (memfd, tmpfs and hugetlbfs files too), 'fifo' (pipes), 'socket', 'directory',
// 'character', 'block', 'symlink', 'unknown'. Anonymous inodes are told apart by the link text
// of /proc/self/fd/<fd> ("anon_inode:[eventfd]"): fstat cannot tell an eventfd from a timerfd,
// and recent kernels give anonymous inodes a regular-file mode. Throws (EBADF, or ENOENT without
// /proc).
Napi::Value FdKind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(env);
  struct stat st;
  if (fstat(fd, &st) < 0) return CloseAndThrow(env, -1, "fstat");
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  char link[256];
  ssize_t n = readlink(path.c_str(), link, sizeof link - 1);
  if (n < 0) return CloseAndThrow(env, -1, "readlink", path.c_str());
  link[n] = '\0';
  std::string kind;
  if (std::strncmp(link, "anon_inode:", 11) == 0) {
    kind = std::strcmp(link, "anon_inode:[eventfd]") != 0 ? link
           : IsSemaphoreEventfd(fd)                     ? "eventfd-semaphore"
                                                        : "eventfd";
  } else {
    switch (st.st_mode & S_IFMT) {
      case S_IFREG: kind = "regular"; break;
      case S_IFIFO: kind = "fifo"; break;
      case S_IFSOCK: kind = "socket"; break;
      case S_IFDIR: kind = "directory"; break;
      case S_IFCHR: kind = "character"; break;
      case S_IFBLK: kind = "block"; break;
      case S_IFLNK: kind = "symlink"; break;
      default: kind = "unknown"; break;
    }
  }
  return Napi::String::New(env, kind);
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("adoptListener", Napi::Function::New(env, AdoptListener, "adoptListener"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite, "eventfdWrite"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("pipe", Napi::Function::New(env, Pipe, "pipe"));
  exports.Set("fdKind", Napi::Function::New(env, FdKind, "fdKind"));
}

}  // namespace vu
