// Host sockets for the NAT: ICMP (ping sockets and raw sockets) and UDP, with the IP_RECVERR
// error queue, TTL / hop limit control and reporting. Every fd made here is non-blocking and
// close-on-exec, and every call is issued so that it cannot block the event loop. Expected
// failures come back as -errno; only calls that set something up (socket creation, socket
// options, getsockname) throw.
//
// Addresses cross the boundary as bytes: 4 (IPv4) or 16 (IPv6) bytes in network order. For
// family 4 a 16-byte array is accepted too and its first 4 bytes are used, so the 16-byte
// address a receive call fills can be passed back as is. Ports are host-order numbers.
#include <time.h>  // before linux/errqueue.h, which needs struct timespec

#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <climits>
#include <cstring>

#include "common.h"

#ifndef ICMP_FILTER
#define ICMP_FILTER 1  // <linux/icmp.h>, which clashes with glibc's headers
#endif

namespace hn {
namespace {

Napi::Value Fail(Napi::Env env) { return env.Undefined(); }  // with a pending exception

int Domain(int family) { return family == 4 ? AF_INET : AF_INET6; }

// Throws the errno of a failed setup step, first closing `fd` (if >= 0) that the step leaves
// useless.
Napi::Value CloseAndThrow(Napi::Env env, int fd, const char* syscall) {
  int err = errno;
  if (fd >= 0) close(fd);
  ThrowErrno(env, err, syscall);
  return Fail(env);
}

// A socket address of either family, sized for both.
union SockAddr {
  sockaddr sa;
  sockaddr_in in4;
  sockaddr_in6 in6;
  sockaddr_storage storage;
};

// Reads (addr, port) at info[index], info[index + 1] into a sockaddr of `family`.
bool ArgAddress(const Napi::CallbackInfo& info, size_t index, int family, SockAddr* out,
                socklen_t* len) {
  Napi::Env env = info.Env();
  uint8_t* bytes;
  size_t length;
  if (!BytesOf(env, info[index], "addr", family == 4 ? 4 : 16, &bytes, &length)) return false;
  if (length != 4 && length != 16) {
    Napi::RangeError::New(env, "addr must hold 4 or 16 bytes").ThrowAsJavaScriptException();
    return false;
  }
  int64_t port;
  if (!ArgInt(info, index + 1, "port", 0, 65535, &port)) return false;
  std::memset(out, 0, sizeof *out);
  if (family == 4) {
    out->in4.sin_family = AF_INET;
    out->in4.sin_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&out->in4.sin_addr, bytes, 4);
    *len = sizeof out->in4;
  } else {
    out->in6.sin6_family = AF_INET6;
    out->in6.sin6_port = htons(static_cast<uint16_t>(port));
    std::memcpy(&out->in6.sin6_addr, bytes, 16);
    *len = sizeof out->in6;
  }
  return true;
}

// Writes the address of `sa` into 16 bytes (IPv4 in the first 4, the rest zeroed) and returns
// its port; -1 (and zeroed bytes) for a family other than AF_INET / AF_INET6.
int StoreAddress(const SockAddr& sa, socklen_t len, uint8_t* out16) {
  std::memset(out16, 0, 16);
  if (sa.sa.sa_family == AF_INET && len >= sizeof sa.in4) {
    std::memcpy(out16, &sa.in4.sin_addr, 4);
    return ntohs(sa.in4.sin_port);
  }
  if (sa.sa.sa_family == AF_INET6 && len >= sizeof sa.in6) {
    std::memcpy(out16, &sa.in6.sin6_addr, 16);
    return ntohs(sa.in6.sin6_port);
  }
  return -1;
}

// The caller's reusable result object (info[index]) and its 16-byte `key` Uint8Array.
bool ArgOut(const Napi::CallbackInfo& info, size_t index, const char* key, Napi::Object* out,
            uint8_t** bytes) {
  Napi::Env env = info.Env();
  if (!info[index].IsObject()) {
    Napi::TypeError::New(env, "out must be an object").ThrowAsJavaScriptException();
    return false;
  }
  *out = info[index].As<Napi::Object>();
  // napi_get_named_property makes an internalized string: a table lookup, no new heap object.
  Napi::Value value = out->Get(key);
  if (env.IsExceptionPending()) return false;
  size_t length;
  return BytesOf(env, value, key, 16, bytes, &length);
}

// Control buffer for received cmsgs (TTL, hop limit, extended errors), aligned as a cmsghdr.
union ControlBuffer {
  cmsghdr align;
  char bytes[512];
};

// The msghdr of a recvmsg into one buffer, with room for the peer's address and the control
// messages. It points into itself: never copied or moved.
struct RecvMessage {
  SockAddr peer;
  iovec iov;
  msghdr msg{};
  ControlBuffer control;  // last: cmsghdr ends in a flexible array member

  explicit RecvMessage(const ByteRange& range) : iov{range.data, range.length} {
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof peer;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
  }
  RecvMessage(const RecvMessage&) = delete;
  RecvMessage& operator=(const RecvMessage&) = delete;
};

bool SetOpt(Napi::Env env, int fd, int level, int name, const void* value, socklen_t len) {
  if (setsockopt(fd, level, name, value, len) < 0) {
    ThrowErrno(env, errno, "setsockopt");
    return false;
  }
  return true;
}

bool SetIntOpt(Napi::Env env, int fd, int level, int name, int value) {
  return SetOpt(env, fd, level, name, &value, sizeof value);
}

// openIcmp(family, raw): fd. socket(AF_INET[6], SOCK_DGRAM (ping socket) or SOCK_RAW,
// IPPROTO_ICMP[V6]). Throws: EACCES when the process's group is outside
// net.ipv4.ping_group_range (ping sockets), EPERM without CAP_NET_RAW (raw sockets).
Napi::Value OpenIcmp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family;
  if (!ArgFamily(info, 0, &family)) return Fail(env);
  int type = info[1].ToBoolean().Value() ? SOCK_RAW : SOCK_DGRAM;
  int protocol = family == 4 ? static_cast<int>(IPPROTO_ICMP) : static_cast<int>(IPPROTO_ICMPV6);
  int fd = socket(Domain(family), type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol);
  if (fd < 0) return CloseAndThrow(env, -1, "socket");
  return Napi::Number::New(env, fd);
}

// openUdp(family): fd of a non-blocking UDP socket; IPv6 ones are IPV6_V6ONLY. Throws.
Napi::Value OpenUdp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family;
  if (!ArgFamily(info, 0, &family)) return Fail(env);
  int fd = socket(Domain(family), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_UDP);
  if (fd < 0) return CloseAndThrow(env, -1, "socket");
  int on = 1;
  if (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0) {
    return CloseAndThrow(env, fd, "setsockopt");
  }
  return Napi::Number::New(env, fd);
}

// Reads (fd, family, addr, port), the arguments of bind and connect. False with an exception
// pending.
static bool ArgFdAddress(const Napi::CallbackInfo& info, int* fd, SockAddr* addr, socklen_t* len) {
  int family;
  return ArgFd(info, 0, fd) && ArgFamily(info, 1, &family) && ArgAddress(info, 2, family, addr, len);
}

// bind(fd, family, addr, port): 0 or -errno. For a ping socket the port is the echo identifier.
Napi::Value Bind(const Napi::CallbackInfo& info) {
  int fd;
  SockAddr addr;
  socklen_t len;
  if (!ArgFdAddress(info, &fd, &addr, &len)) return Fail(info.Env());
  int r = bind(fd, &addr.sa, len);
  return Napi::Number::New(info.Env(), r == 0 ? 0 : -errno);
}

// connect(fd, family, addr, port): 0 or -errno. Datagram connects complete at once.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  int fd;
  SockAddr addr;
  socklen_t len;
  if (!ArgFdAddress(info, &fd, &addr, &len)) return Fail(info.Env());
  int r = RetryEintr([&] { return connect(fd, &addr.sa, len); });
  return Napi::Number::New(info.Env(), r == 0 ? 0 : -errno);
}

// getsockname(fd, family): { addr (4 or 16 bytes, by the socket's actual family), port }. Throws.
Napi::Value GetSockName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family)) return Fail(env);
  SockAddr addr;
  socklen_t len = sizeof addr;
  if (getsockname(fd, &addr.sa, &len) < 0) {
    ThrowErrno(env, errno, "getsockname");
    return Fail(env);
  }
  uint8_t bytes[16];
  int port = StoreAddress(addr, len, bytes);
  if (port < 0) {
    ThrowErrno(env, EAFNOSUPPORT, "getsockname", nullptr, "not an IPv4 or IPv6 socket");
    return Fail(env);
  }
  size_t size = addr.sa.sa_family == AF_INET ? 4 : 16;
  Napi::Uint8Array out = Napi::Uint8Array::New(env, size);
  std::memcpy(out.Data(), bytes, size);
  Napi::Object result = Napi::Object::New(env);
  result.Set("addr", out);
  result.Set("port", Napi::Number::New(env, port));
  return result;
}

// Sets the option of the socket's family: IPPROTO_IP's opt4 to value4, or IPPROTO_IPV6's opt6 to
// value6. Throws.
static void SetFamilyOpt(Napi::Env env, int fd, int family, int opt4, int value4, int opt6, int value6) {
  if (family == 4) {
    SetIntOpt(env, fd, IPPROTO_IP, opt4, value4);
  } else {
    SetIntOpt(env, fd, IPPROTO_IPV6, opt6, value6);
  }
}

// Reads (fd, family, on) and sets the option of the socket's family to its on or off value: the
// shape of every boolean per-family option below. Throws.
static Napi::Value SetFamilyFlag(const Napi::CallbackInfo& info, int opt4, int on4, int off4, int opt6, int on6, int off6) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family)) return Fail(env);
  bool on = info[2].ToBoolean().Value();
  SetFamilyOpt(env, fd, family, opt4, on ? on4 : off4, opt6, on ? on6 : off6);
  return env.Undefined();
}

// setRecvErr(fd, family, on): IP_RECVERR / IPV6_RECVERR. Throws.
Napi::Value SetRecvErr(const Napi::CallbackInfo& info) {
  return SetFamilyFlag(info, IP_RECVERR, 1, 0, IPV6_RECVERR, 1, 0);
}

// setRecvTtl(fd, family, on): IP_RECVTTL / IPV6_RECVHOPLIMIT, so recvFrom reports `ttl`. Throws.
Napi::Value SetRecvTtl(const Napi::CallbackInfo& info) {
  return SetFamilyFlag(info, IP_RECVTTL, 1, 0, IPV6_RECVHOPLIMIT, 1, 0);
}

// setDontFragment(fd, family, on): IP_MTU_DISCOVER / IPV6_MTU_DISCOVER = PMTUDISC_DO (IPv4: DF
// set; both: never fragment locally, sends above the known path MTU fail with EMSGSIZE and queue
// an origin-LOCAL error carrying the MTU) or PMTUDISC_DONT (fragment locally as needed, IPv4: DF
// clear). Throws.
Napi::Value SetDontFragment(const Napi::CallbackInfo& info) {
  return SetFamilyFlag(info, IP_MTU_DISCOVER, IP_PMTUDISC_DO, IP_PMTUDISC_DONT, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO, IPV6_PMTUDISC_DONT);
}

// setSelectErrQueue(fd, on): SO_SELECT_ERR_QUEUE: a non-empty error queue also raises POLLPRI
// next to POLLERR, so a libuv poller watching UV_PRIORITIZED reports it as an event (status 0)
// instead of as an error that stops the poller. Throws.
Napi::Value SetSelectErrQueue(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(env);
  SetIntOpt(env, fd, SOL_SOCKET, SO_SELECT_ERR_QUEUE, info[1].ToBoolean().Value() ? 1 : 0);
  return env.Undefined();
}

// setTtl(fd, family, ttl): IP_TTL / IPV6_UNICAST_HOPS for unicast sends; -1 restores the
// default (the route's, or net.ipv4.ip_default_ttl). Throws (EINVAL for 0 with IPv4).
Napi::Value SetTtl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  int64_t ttl;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family) || !ArgInt(info, 2, "ttl", -1, 255, &ttl)) {
    return Fail(env);
  }
  SetFamilyOpt(env, fd, family, IP_TTL, static_cast<int>(ttl), IPV6_UNICAST_HOPS, static_cast<int>(ttl));
  return env.Undefined();
}

// setIcmpFilter(fd, family, passTypes): raw ICMP sockets only (ICMP_FILTER / ICMP6_FILTER): only
// the listed ICMP types are delivered to recvFrom. IPv4 can filter types 0..31 only (higher types
// always pass). The error queue is not affected. Throws (ENOPROTOOPT / EOPNOTSUPP on ping sockets).
Napi::Value SetIcmpFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family)) return Fail(env);
  if (!info[2].IsArray()) {
    Napi::TypeError::New(env, "passTypes must be an array").ThrowAsJavaScriptException();
    return Fail(env);
  }
  Napi::Array list = info[2].As<Napi::Array>();
  uint32_t blocked[8];  // one bit per type, set = blocked (both the kernel's layouts)
  std::memset(blocked, 0xff, sizeof blocked);
  for (uint32_t i = 0; i < list.Length(); i++) {
    Napi::Value v = list.Get(i);
    double d = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : -1;
    if (!(d >= 0 && d <= 255 && static_cast<double>(static_cast<int>(d)) == d)) {
      Napi::RangeError::New(env, "passTypes must hold ICMP types (0..255)").ThrowAsJavaScriptException();
      return Fail(env);
    }
    int type = static_cast<int>(d);
    blocked[type >> 5] &= ~(1U << (type & 31));
  }
  if (family == 4) {
    SetOpt(env, fd, SOL_RAW, ICMP_FILTER, &blocked[0], sizeof blocked[0]);
  } else {
    icmp6_filter filter;
    static_assert(sizeof filter == sizeof blocked, "icmp6_filter is 256 bits");
    std::memcpy(&filter, blocked, sizeof filter);
    SetOpt(env, fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
  }
  return env.Undefined();
}

// sendTo(fd, family, buf, offset, length, addr | null, port, ttl = -1): bytes sent or -errno.
// addr null sends on a connected socket. ttl >= 0 sets the TTL / hop limit of this datagram
// alone (an IP_TTL / IPV6_HOPLIMIT cmsg); -1 uses the socket's. MSG_NOSIGNAL | MSG_DONTWAIT.
Napi::Value SendTo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  ByteRange range;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family) || !ArgByteRange(info, 2, &range)) {
    return Fail(env);
  }
  SockAddr addr;
  socklen_t addrLen = 0;
  bool connected = info[5].IsNull() || info[5].IsUndefined();
  if (!connected && !ArgAddress(info, 5, family, &addr, &addrLen)) return Fail(env);
  int64_t ttl = -1;
  if (info.Length() > 7 && !info[7].IsUndefined() && !ArgInt(info, 7, "ttl", -1, 255, &ttl)) {
    return Fail(env);
  }

  union {
    cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  } control;
  iovec iov{range.data, range.length};
  msghdr msg{};
  msg.msg_name = connected ? nullptr : &addr;
  msg.msg_namelen = connected ? 0 : addrLen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (ttl >= 0) {
    std::memset(control.bytes, 0, sizeof control.bytes);
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = family == 4 ? IPPROTO_IP : IPPROTO_IPV6;
    c->cmsg_type = family == 4 ? IP_TTL : IPV6_HOPLIMIT;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    int value = static_cast<int>(ttl);
    std::memcpy(CMSG_DATA(c), &value, sizeof value);
  }
  ssize_t n = RetryEintr([&] { return sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT); });
  return Napi::Number::New(env, n >= 0 ? static_cast<double>(n) : -errno);
}

// sendMany(fd, family, buf, offsets, lengths, ttls, start, count): sendmmsg(MSG_NOSIGNAL |
// MSG_DONTWAIT) of `count` (1..SEND_MANY_MAX) datagrams on a connected socket, datagram i (from
// `start`) being buf[offsets[i], +lengths[i]) with TTL / hop limit ttls[i] (0..255, or -1 for the
// socket's).
// offsets, lengths and ttls are Int32Arrays. Returns how many were sent (the rest were not: the
// caller sends the first of them alone to learn why) or -errno when the first failed. Plain N-API:
// it runs once per socket per batch of guest frames.
constexpr uint32_t kSendManyMax = 64;

napi_value SendMany(napi_env env, napi_callback_info cbinfo) {
  size_t argc = 8;
  napi_value argv[8];
  int32_t fd = -1;
  int32_t family = 0;
  uint32_t start = 0;
  uint32_t count = 0;
  napi_typedarray_type types[4] = {};
  size_t lens[4] = {};
  void* data[4] = {};
  bool ok = napi_get_cb_info(env, cbinfo, &argc, argv, nullptr, nullptr) == napi_ok && argc >= 8 &&
            napi_get_value_int32(env, argv[0], &fd) == napi_ok && napi_get_value_int32(env, argv[1], &family) == napi_ok &&
            napi_get_value_uint32(env, argv[6], &start) == napi_ok && napi_get_value_uint32(env, argv[7], &count) == napi_ok;
  for (int i = 0; ok && i < 4; i++) {
    ok = napi_get_typedarray_info(env, argv[2 + i], &types[i], &lens[i], &data[i], nullptr, nullptr) == napi_ok;
  }
  if (!ok || types[0] != napi_uint8_array || types[1] != napi_int32_array || types[2] != napi_int32_array ||
      types[3] != napi_int32_array) {
    napi_throw_type_error(env, nullptr, "sendMany(fd, family, buf: Uint8Array, offsets, lengths, ttls: Int32Array, start, count)");
    return nullptr;
  }
  const uint64_t end = static_cast<uint64_t>(start) + count;
  if (fd < 0 || (family != 4 && family != 6) || count == 0 || count > kSendManyMax || end > lens[1] || end > lens[2] ||
      end > lens[3]) {
    napi_throw_range_error(env, nullptr, "sendMany: bad fd, family, start or count");
    return nullptr;
  }
  const auto* buf = static_cast<uint8_t*>(data[0]);
  const auto* offsets = static_cast<const int32_t*>(data[1]) + start;
  const auto* lengths = static_cast<const int32_t*>(data[2]) + start;
  const auto* ttls = static_cast<const int32_t*>(data[3]) + start;
  mmsghdr msgs[kSendManyMax];
  iovec iovs[kSendManyMax];
  union Control {
    cmsghdr align;
    char bytes[CMSG_SPACE(sizeof(int))];
  };
  Control controls[kSendManyMax];
  std::memset(msgs, 0, sizeof(mmsghdr) * count);
  for (uint32_t i = 0; i < count; i++) {
    int64_t off = offsets[i];
    int64_t len = lengths[i];
    if (off < 0 || len < 0 || static_cast<uint64_t>(off + len) > lens[0] || ttls[i] < -1 || ttls[i] > 255) {
      napi_throw_range_error(env, nullptr, "sendMany: a datagram outside buf, or a bad ttl");
      return nullptr;
    }
    iovs[i] = iovec{const_cast<uint8_t*>(buf) + off, static_cast<size_t>(len)};
    msghdr& m = msgs[i].msg_hdr;
    m.msg_iov = &iovs[i];
    m.msg_iovlen = 1;
    if (ttls[i] >= 0) {
      std::memset(controls[i].bytes, 0, sizeof controls[i].bytes);
      m.msg_control = controls[i].bytes;
      m.msg_controllen = sizeof controls[i].bytes;
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = family == 4 ? IPPROTO_IP : IPPROTO_IPV6;
      c->cmsg_type = family == 4 ? IP_TTL : IPV6_HOPLIMIT;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      int value = ttls[i];
      std::memcpy(CMSG_DATA(c), &value, sizeof value);
    }
  }
  int n = RetryEintr([&] { return sendmmsg(fd, msgs, count, MSG_NOSIGNAL | MSG_DONTWAIT); });
  napi_value result = nullptr;
  napi_create_int32(env, n >= 0 ? n : -errno, &result);
  return result;
}

// recvFrom(fd, family, buf, offset, length, out): bytes received or -errno (-EAGAIN when none is
// queued). Fills the caller's reusable `out`: addr (16 bytes, written in place; IPv4 in the first
// 4), port, ttl (-1 unless setRecvTtl is on), truncated (the datagram was longer than `length`).
// On -errno `out` is untouched.
Napi::Value RecvFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  ByteRange range;
  Napi::Object out;
  uint8_t* outAddr;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family) || !ArgByteRange(info, 2, &range) ||
      !ArgOut(info, 5, "addr", &out, &outAddr)) {
    return Fail(env);
  }
  RecvMessage m(range);
  msghdr& msg = m.msg;
  const SockAddr& from = m.peer;
  // MSG_CMSG_CLOEXEC: inet sockets carry no fds, but should one ever arrive it is not inherited.
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
  if (n < 0) return Napi::Number::New(env, -errno);

  int ttl = -1;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_len < CMSG_LEN(sizeof(int))) continue;
    if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
        (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
      std::memcpy(&ttl, CMSG_DATA(c), sizeof ttl);
    }
  }
  int port = StoreAddress(from, msg.msg_namelen, outAddr);
  out.Set("port", Napi::Number::New(env, port < 0 ? 0 : port));
  out.Set("ttl", Napi::Number::New(env, ttl));
  out.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_TRUNC) != 0));
  return Napi::Number::New(env, static_cast<double>(n));
}

// recvErr(fd, family, buf, offset, length, out): recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT). Returns
// the number of bytes of the offending datagram's payload copied into buf (as much of it as the
// ICMP error quoted), or -errno (-EAGAIN when the queue is empty). Fills `out` (see native.ts).
Napi::Value RecvErr(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  int family;
  ByteRange range;
  Napi::Object out;
  uint8_t* offender;
  if (!ArgFd(info, 0, &fd) || !ArgFamily(info, 1, &family) || !ArgByteRange(info, 2, &range) ||
      !ArgOut(info, 5, "offender", &out, &offender)) {
    return Fail(env);
  }
  uint8_t* dstAddr;
  size_t dstLength;
  Napi::Value dstValue = out.Get("dstAddr");
  if (env.IsExceptionPending() || !BytesOf(env, dstValue, "dstAddr", 16, &dstAddr, &dstLength)) {
    return Fail(env);
  }

  RecvMessage m(range);
  msghdr& msg = m.msg;
  const SockAddr& dst = m.peer;
  // The error queue of an inet socket never holds SCM_RIGHTS; MSG_CMSG_CLOEXEC all the same.
  ssize_t n = RetryEintr([&] { return recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT | MSG_CMSG_CLOEXEC); });
  if (n < 0) return Napi::Number::New(env, -errno);

  sock_extended_err ee{};
  bool found = false;
  bool offenderValid = false;
  std::memset(offender, 0, 16);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (!((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
          (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR))) {
      continue;
    }
    if (c->cmsg_len < CMSG_LEN(sizeof ee)) continue;
    const unsigned char* data = CMSG_DATA(c);
    std::memcpy(&ee, data, sizeof ee);
    found = true;
    // SO_EE_OFFENDER: the sockaddr right after the sock_extended_err (AF_UNSPEC when unknown).
    size_t room = c->cmsg_len - CMSG_LEN(sizeof ee);
    SockAddr off;
    std::memset(&off, 0, sizeof off);
    std::memcpy(&off, data + sizeof ee, room < sizeof off ? room : sizeof off);
    offenderValid = StoreAddress(off, static_cast<socklen_t>(room), offender) >= 0;
  }
  int dstPort = StoreAddress(dst, msg.msg_namelen, dstAddr);

  out.Set("errno", Napi::Number::New(env, found ? ee.ee_errno : 0));
  out.Set("origin", Napi::Number::New(env, found ? ee.ee_origin : 0));
  out.Set("type", Napi::Number::New(env, found ? ee.ee_type : 0));
  out.Set("code", Napi::Number::New(env, found ? ee.ee_code : 0));
  out.Set("info", Napi::Number::New(env, found ? ee.ee_info : 0));
  out.Set("offenderValid", Napi::Boolean::New(env, offenderValid));
  out.Set("dstPort", Napi::Number::New(env, dstPort < 0 ? 0 : dstPort));
  out.Set("truncated", Napi::Boolean::New(env, (msg.msg_flags & MSG_TRUNC) != 0));
  return Napi::Number::New(env, static_cast<double>(n));
}

// close(fd): 0 or -errno. Linux releases the fd even when close reports EINTR, so that counts as
// success: retrying could close an fd that another thread has just been given.
Napi::Value Close(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  int r = close(fd);
  return Napi::Number::New(info.Env(), r == 0 || errno == EINTR ? 0 : -errno);
}

// ---- TCP ----

// openTcp(family): fd of a non-blocking TCP socket with TCP_NODELAY (the guest does its own
// coalescing), SO_OOBINLINE, SO_REUSEADDR (listeners), IPV6_V6ONLY for family 6. Throws.
// SO_OOBINLINE: a peer's urgent byte (MSG_OOB) stays in the stream, which is how the guest can
// get it (the NAT sends no URG). Out of line, reads skip it, and SIOCINQ stops at its mark and
// then reads 0 until it is read with MSG_OOB: the receive queue as a send buffer would end there.
Napi::Value OpenTcp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int family;
  if (!ArgFamily(info, 0, &family)) return Fail(env);
  int fd = socket(Domain(family), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return CloseAndThrow(env, -1, "socket");
  int on = 1;
  if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &on, sizeof on) < 0 ||
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) < 0 ||
      (family == 6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on) < 0)) {
    return CloseAndThrow(env, fd, "setsockopt");
  }
  return Napi::Number::New(env, fd);
}

// soError(fd): the pending error (SO_ERROR, which reading clears) as 0 or -errno.
Napi::Value SoError(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
  return Napi::Number::New(info.Env(), -err);
}

// read(fd, buf, offset, length): bytes, 0 at end of stream, or -errno (-EAGAIN).
Napi::Value Read(const Napi::CallbackInfo& info) {
  int fd;
  ByteRange r;
  if (!ArgFd(info, 0, &fd) || !ArgByteRange(info, 1, &r)) return Fail(info.Env());
  ssize_t n = RetryEintr([&] { return recv(fd, r.data, r.length, MSG_DONTWAIT); });
  return Napi::Number::New(info.Env(), n >= 0 ? static_cast<double>(n) : -errno);
}

// write(fd, buf, offset, length): bytes written (maybe fewer) or -errno (-EAGAIN, -EPIPE...).
// MSG_NOSIGNAL: a peer that went away gives -EPIPE, not SIGPIPE.
Napi::Value Write(const Napi::CallbackInfo& info) {
  int fd;
  ByteRange r;
  if (!ArgFd(info, 0, &fd) || !ArgByteRange(info, 1, &r)) return Fail(info.Env());
  ssize_t n = RetryEintr([&] { return send(fd, r.data, r.length, MSG_DONTWAIT | MSG_NOSIGNAL); });
  return Napi::Number::New(info.Env(), n >= 0 ? static_cast<double>(n) : -errno);
}

// shutdownWrite(fd): shutdown(SHUT_WR), our FIN after what was written; 0 or -errno.
Napi::Value ShutdownWrite(const Napi::CallbackInfo& info) {
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(info.Env());
  return Napi::Number::New(info.Env(), shutdown(fd, SHUT_WR) == 0 ? 0 : -errno);
}

// setLingerZero(fd): SO_LINGER {on, 0}, so close() sends a RST and drops unsent data. Throws.
Napi::Value SetLingerZero(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  if (!ArgFd(info, 0, &fd)) return Fail(env);
  linger l{1, 0};
  if (!SetOpt(env, fd, SOL_SOCKET, SO_LINGER, &l, sizeof l)) return Fail(env);
  return env.Undefined();
}

// listen(fd, backlog): 0 or -errno.
Napi::Value Listen(const Napi::CallbackInfo& info) {
  int fd;
  int64_t backlog;
  if (!ArgFd(info, 0, &fd) || !ArgInt(info, 1, "backlog", 1, 65535, &backlog)) return Fail(info.Env());
  return Napi::Number::New(info.Env(), listen(fd, static_cast<int>(backlog)) == 0 ? 0 : -errno);
}

// accept(fd, out): the new connection's fd (non-blocking, close-on-exec, TCP_NODELAY,
// SO_OOBINLINE as openTcp's, which a listener's connections inherit anyway) or -errno
// (-EAGAIN when none waits). Fills out.addr (16 bytes, IPv4 in the first 4), out.port.
Napi::Value Accept(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  Napi::Object out;
  uint8_t* bytes;
  if (!ArgFd(info, 0, &fd) || !ArgOut(info, 1, "addr", &out, &bytes)) return Fail(env);
  SockAddr addr;
  socklen_t len = sizeof addr;
  int c = RetryEintr([&] { return accept4(fd, &addr.sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC); });
  if (c < 0) return Napi::Number::New(env, -errno);
  int on = 1;
  setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  setsockopt(c, SOL_SOCKET, SO_OOBINLINE, &on, sizeof on);
  int port = StoreAddress(addr, len, bytes);
  out.Set("port", Napi::Number::New(env, port < 0 ? 0 : port));
  return Napi::Number::New(env, c);
}

}  // namespace

void InitSockets(Napi::Env env, Napi::Object exports) {
  napi_value sendMany;
  if (napi_create_function(env, "sendMany", NAPI_AUTO_LENGTH, SendMany, nullptr, &sendMany) == napi_ok) {
    exports.Set("sendMany", Napi::Value(env, sendMany));
  }
  exports.Set("SEND_MANY_MAX", Napi::Number::New(env, kSendManyMax));
  exports.Set("openIcmp", Napi::Function::New(env, OpenIcmp, "openIcmp"));
  exports.Set("openUdp", Napi::Function::New(env, OpenUdp, "openUdp"));
  exports.Set("bind", Napi::Function::New(env, Bind, "bind"));
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("getsockname", Napi::Function::New(env, GetSockName, "getsockname"));
  exports.Set("setRecvErr", Napi::Function::New(env, SetRecvErr, "setRecvErr"));
  exports.Set("setSelectErrQueue", Napi::Function::New(env, SetSelectErrQueue, "setSelectErrQueue"));
  exports.Set("setRecvTtl", Napi::Function::New(env, SetRecvTtl, "setRecvTtl"));
  exports.Set("setTtl", Napi::Function::New(env, SetTtl, "setTtl"));
  exports.Set("setDontFragment", Napi::Function::New(env, SetDontFragment, "setDontFragment"));
  exports.Set("setIcmpFilter", Napi::Function::New(env, SetIcmpFilter, "setIcmpFilter"));
  exports.Set("sendTo", Napi::Function::New(env, SendTo, "sendTo"));
  exports.Set("recvFrom", Napi::Function::New(env, RecvFrom, "recvFrom"));
  exports.Set("recvErr", Napi::Function::New(env, RecvErr, "recvErr"));
  exports.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("openTcp", Napi::Function::New(env, OpenTcp, "openTcp"));
  exports.Set("soError", Napi::Function::New(env, SoError, "soError"));
  exports.Set("read", Napi::Function::New(env, Read, "read"));
  exports.Set("write", Napi::Function::New(env, Write, "write"));
  exports.Set("shutdownWrite", Napi::Function::New(env, ShutdownWrite, "shutdownWrite"));
  exports.Set("setLingerZero", Napi::Function::New(env, SetLingerZero, "setLingerZero"));
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("accept", Napi::Function::New(env, Accept, "accept"));
}

}  // namespace hn
