// TCP streams as passt drives them: an edge-triggered epoll set for the open host TCP sockets,
// and the socket's receive queue as the connection's send buffer (SO_PEEK_OFF: MSG_PEEK reads
// from a kept offset; MSG_TRUNC discards what the guest acknowledged; peeks land through iovecs
// anywhere, guest memory included).
//
// Plain N-API: these run per frame or per batch. Every call returns -errno rather than throwing,
// except on wrong argument types or ranges (a caller bug).
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common.h"

namespace hn {
namespace {

// Reads `want` int32 arguments after the fd-like first ones; false leaves a TypeError pending.
bool Args(napi_env env, napi_callback_info cbinfo, size_t want, napi_value* argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) != napi_ok || argc < want) {
    napi_throw_type_error(env, nullptr, "missing arguments");
    return false;
  }
  return true;
}

bool Int(napi_env env, napi_value v, int32_t* out) {
  if (napi_get_value_int32(env, v, out) == napi_ok) return true;
  napi_throw_type_error(env, nullptr, "expected an integer");
  return false;
}

napi_value Result(napi_env env, double value) {
  napi_value r = nullptr;
  napi_create_double(env, value, &r);
  return r;
}

napi_value SysResult(napi_env env, ssize_t n) { return Result(env, n >= 0 ? static_cast<double>(n) : -errno); }

// epollCreate(): an epoll fd (close-on-exec) or -errno.
napi_value EpollCreate(napi_env env, napi_callback_info) { return SysResult(env, epoll_create1(EPOLL_CLOEXEC)); }

// epollCtl(epfd, op, fd, token, interest): op 0 adds fd, 1 modifies its entry. Always watched:
// the peer's FIN (EPOLLRDHUP), errors and hangup, edge-triggered (EPOLLET); `interest` adds
// EPOLLIN and/or EPOLLOUT (other bits are refused). The kernel reports at once what is ready of
// the new interest. Events carry `token` (an unsigned 32-bit value). 0 or -errno.
napi_value EpollCtl(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[5];
  int32_t epfd, op, fd;
  uint32_t token, interest;
  if (!Args(env, cbinfo, 5, argv) || !Int(env, argv[0], &epfd) || !Int(env, argv[1], &op) || !Int(env, argv[2], &fd)) return nullptr;
  if (napi_get_value_uint32(env, argv[3], &token) != napi_ok || napi_get_value_uint32(env, argv[4], &interest) != napi_ok) {
    napi_throw_type_error(env, nullptr, "epollCtl: token and interest must be numbers");
    return nullptr;
  }
  if ((op != 0 && op != 1) || (interest & ~static_cast<uint32_t>(EPOLLIN | EPOLLOUT)) != 0) {
    napi_throw_range_error(env, nullptr, "epollCtl: op is 0 (add) or 1 (modify); interest is EPOLLIN and/or EPOLLOUT");
    return nullptr;
  }
  epoll_event ev{};
  ev.events = interest | EPOLLRDHUP | EPOLLET;
  ev.data.u32 = token;
  return SysResult(env, epoll_ctl(epfd, op == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev));
}

// epollDel(epfd, fd): 0 or -errno.
napi_value EpollDel(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[2];
  int32_t epfd, fd;
  if (!Args(env, cbinfo, 2, argv) || !Int(env, argv[0], &epfd) || !Int(env, argv[1], &fd)) return nullptr;
  epoll_event ev{};
  return SysResult(env, epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev));
}

constexpr size_t kWaitMax = 256;

// epollWait(epfd, tokens: Uint32Array, events: Uint32Array): the events ready now (no waiting),
// at most min(tokens.length, events.length, 256), or -errno.
napi_value EpollWait(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[3];
  int32_t epfd;
  if (!Args(env, cbinfo, 3, argv) || !Int(env, argv[0], &epfd)) return nullptr;
  napi_typedarray_type types[2];
  size_t lens[2];
  void* data[2];
  for (int i = 0; i < 2; i++) {
    if (napi_get_typedarray_info(env, argv[1 + i], &types[i], &lens[i], &data[i], nullptr, nullptr) != napi_ok ||
        types[i] != napi_uint32_array) {
      napi_throw_type_error(env, nullptr, "epollWait(epfd, tokens: Uint32Array, events: Uint32Array)");
      return nullptr;
    }
  }
  size_t max = lens[0] < lens[1] ? lens[0] : lens[1];
  if (max > kWaitMax) max = kWaitMax;
  if (max == 0) return Result(env, 0);
  epoll_event evs[kWaitMax];
  int n = RetryEintr([&] { return epoll_wait(epfd, evs, static_cast<int>(max), 0); });
  if (n < 0) return Result(env, -errno);
  auto* tokens = static_cast<uint32_t*>(data[0]);
  auto* events = static_cast<uint32_t*>(data[1]);
  for (int i = 0; i < n; i++) {
    tokens[i] = evs[i].data.u32;
    events[i] = evs[i].events;
  }
  return Result(env, n);
}

// inq(fd): the bytes in a TCP socket's receive queue (SIOCINQ), or -errno.
napi_value Inq(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[1];
  int32_t fd;
  if (!Args(env, cbinfo, 1, argv) || !Int(env, argv[0], &fd)) return nullptr;
  int n = 0;
  if (ioctl(fd, SIOCINQ, &n) < 0) return Result(env, -errno);
  return Result(env, n);
}

// setPeekOff(fd, offset): SO_PEEK_OFF (offset -1 turns it off). 0 or -errno (-EINVAL or
// -EOPNOTSUPP: the kernel cannot do it on TCP; Linux has it since 6.9).
napi_value SetPeekOff(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[2];
  int32_t fd, off;
  if (!Args(env, cbinfo, 2, argv) || !Int(env, argv[0], &fd) || !Int(env, argv[1], &off)) return nullptr;
  return SysResult(env, setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &off, sizeof off));
}

// peek(fd, buf, offset, length): copies queued bytes from the socket's peek offset on into
// buf[offset, offset + length) and moves the peek offset past them. Bytes, 0 at the end of the
// stream (the peer's FIN is next), or -errno (-EAGAIN: nothing there yet).
napi_value Peek(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[4];
  int32_t fd;
  double off, len;
  if (!Args(env, cbinfo, 4, argv) || !Int(env, argv[0], &fd)) return nullptr;
  napi_typedarray_type type;
  size_t size;
  void* data;
  if (napi_get_typedarray_info(env, argv[1], &type, &size, &data, nullptr, nullptr) != napi_ok || type != napi_uint8_array ||
      napi_get_value_double(env, argv[2], &off) != napi_ok || napi_get_value_double(env, argv[3], &len) != napi_ok) {
    napi_throw_type_error(env, nullptr, "peek(fd, buf: Uint8Array, offset, length)");
    return nullptr;
  }
  if (!(off >= 0 && len >= 0 && off + len <= static_cast<double>(size))) {
    napi_throw_range_error(env, nullptr, "peek: range outside buf");
    return nullptr;
  }
  auto* p = static_cast<uint8_t*>(data) + static_cast<size_t>(off);
  return SysResult(env, RetryEintr([&] { return recv(fd, p, static_cast<size_t>(len), MSG_PEEK | MSG_DONTWAIT); }));
}

// discard(fd, n): takes the first n queued bytes off unread (MSG_TRUNC; the peek offset moves
// back by what went). Bytes or -errno.
napi_value Discard(napi_env env, napi_callback_info cbinfo) {
  napi_value argv[2];
  int32_t fd, n;
  if (!Args(env, cbinfo, 2, argv) || !Int(env, argv[0], &fd) || !Int(env, argv[1], &n)) return nullptr;
  if (n < 0) {
    napi_throw_range_error(env, nullptr, "discard: negative count");
    return nullptr;
  }
  return SysResult(env, RetryEintr([&] { return recv(fd, nullptr, static_cast<size_t>(n), MSG_TRUNC | MSG_DONTWAIT); }));
}

constexpr uint32_t kIovMax = 1024;  // UIO_MAXIOV

// Reads (fd, views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, count) into an
// iovec array: views[i][offsets[i], offsets[i] + lengths[i]) for i < count (a DescriptorChain's
// segments: guest memory). False leaves an exception pending.
bool ScatterArgs(napi_env env, napi_callback_info cbinfo, const char* name, int32_t* fd, iovec* iov, uint32_t* count) {
  napi_value argv[5];
  if (!Args(env, cbinfo, 5, argv) || !Int(env, argv[0], fd) || napi_get_value_uint32(env, argv[4], count) != napi_ok) {
    napi_throw_type_error(env, nullptr, name);
    return false;
  }
  napi_typedarray_type types[2];
  size_t lens[2];
  void* data[2];
  for (int i = 0; i < 2; i++) {
    if (napi_get_typedarray_info(env, argv[2 + i], &types[i], &lens[i], &data[i], nullptr, nullptr) != napi_ok) {
      napi_throw_type_error(env, nullptr, name);
      return false;
    }
  }
  if (types[0] != napi_float64_array || types[1] != napi_uint32_array || *count > kIovMax || *count > lens[0] || *count > lens[1]) {
    napi_throw_range_error(env, nullptr, "bad offsets, lengths or count");
    return false;
  }
  const auto* offsets = static_cast<const double*>(data[0]);
  const auto* lengths = static_cast<const uint32_t*>(data[1]);
  SpanResolver spans(env, argv[1]);
  for (uint32_t i = 0; i < *count; i++) {
    uint8_t* p;
    if (!spans.Pointer(i, offsets[i], lengths[i], &p)) return false;
    iov[i] = iovec{p, lengths[i]};
  }
  return true;
}

// recvmsg(MSG_PEEK) into, or sendmsg from, the scatter list of a peekv or writev call.
napi_value ScatterCall(napi_env env, napi_callback_info cbinfo, bool peek) {
  iovec iov[kIovMax];
  int32_t fd;
  uint32_t count;
  const char* usage = peek ? "peekv(fd, views, offsets, lengths, count)" : "writev(fd, views, offsets, lengths, count)";
  if (!ScatterArgs(env, cbinfo, usage, &fd, iov, &count)) return nullptr;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = count;
  if (peek) return SysResult(env, RetryEintr([&] { return recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT); }));
  return SysResult(env, RetryEintr([&] { return sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL); }));
}

// peekv(fd, views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, count): as peek(),
// into the scatter list (views may be one Uint8Array all spans lie in: SpanResolver). Bytes, 0 at
// the end of the stream, or -errno.
napi_value Peekv(napi_env env, napi_callback_info cbinfo) { return ScatterCall(env, cbinfo, true); }

// writev(fd, views, offsets, lengths, count): sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of the scatter
// list (a guest's TCP payload, from guest memory): bytes written (maybe fewer) or -errno.
napi_value Writev(napi_env env, napi_callback_info cbinfo) { return ScatterCall(env, cbinfo, false); }

void Define(napi_env env, napi_value exports, const char* name, napi_callback cb) {
  napi_value fn;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, nullptr, &fn);
  napi_set_named_property(env, exports, name, fn);
}

void Constant(napi_env env, napi_value exports, const char* name, uint32_t value) {
  napi_value v;
  napi_create_uint32(env, value, &v);
  napi_set_named_property(env, exports, name, v);
}

}  // namespace

void InitStream(Napi::Env env, Napi::Object exports) {
  Define(env, exports, "epollCreate", EpollCreate);
  Define(env, exports, "epollCtl", EpollCtl);
  Define(env, exports, "epollDel", EpollDel);
  Define(env, exports, "epollWait", EpollWait);
  Define(env, exports, "inq", Inq);
  Define(env, exports, "setPeekOff", SetPeekOff);
  Define(env, exports, "peek", Peek);
  Define(env, exports, "discard", Discard);
  Define(env, exports, "peekv", Peekv);
  Define(env, exports, "writev", Writev);
  Constant(env, exports, "EPOLLIN", EPOLLIN);
  Constant(env, exports, "EPOLLOUT", EPOLLOUT);
  Constant(env, exports, "EPOLLRDHUP", EPOLLRDHUP);
  Constant(env, exports, "EPOLLERR", EPOLLERR);
  Constant(env, exports, "EPOLLHUP", EPOLLHUP);
  Constant(env, exports, "IOV_MAX", kIovMax);
}

}  // namespace hn
