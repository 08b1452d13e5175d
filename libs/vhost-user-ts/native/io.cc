// Unix sockets with fd passing (SCM_RIGHTS), eventfd and memfd: the file-descriptor calls Node
// core lacks. Every fd made here is non-blocking and close-on-exec, and every call is issued so
// that it cannot block the event loop. Expected failures come back as -errno; only calls that
// set something up (listen, connect, eventfd, memfd) throw.
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
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

  ControlBuffer control;
  iovec iov{range.data, range.length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
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

  ControlBuffer control;
  iovec iov{range.data, range.length};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
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

// eventfd(initval): fd. Throws.
Napi::Value EventFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int64_t initval;
  if (!ArgInt(info, 0, "initval", 0, UINT32_MAX, &initval)) return Fail(env);
  int fd = eventfd(static_cast<unsigned>(initval), EFD_CLOEXEC | EFD_NONBLOCK);
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

// memfdCreate(name, size): fd of an anonymous file of `size` bytes. Throws.
Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name;
  int64_t size;
  if (!ArgString(info, 0, "name", &name) || !ArgInt(info, 1, "size", 0, kMaxSafeInteger, &size)) {
    return Fail(env);
  }
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return CloseAndThrow(env, -1, "memfd_create");
  if (RetryEintr([&] { return ftruncate(fd, size); }) < 0) return CloseAndThrow(env, fd, "ftruncate");
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitIo(Napi::Env env, Napi::Object exports) {
  exports.Set("unixListen", Napi::Function::New(env, UnixListen, "unixListen"));
  exports.Set("unixConnect", Napi::Function::New(env, UnixConnect, "unixConnect"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
  exports.Set("recvMsg", Napi::Function::New(env, RecvMsg, "recvMsg"));
  exports.Set("sendMsg", Napi::Function::New(env, SendMsg, "sendMsg"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("eventfd", Napi::Function::New(env, EventFd, "eventfd"));
  exports.Set("eventfdRead", Napi::Function::New(env, EventFdRead, "eventfdRead"));
  exports.Set("eventfdWrite", Napi::Function::New(env, EventFdWrite, "eventfdWrite"));
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
}

}  // namespace vu
