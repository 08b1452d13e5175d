// The host-socket native addon (src/host/addon/*.cc, target `vunet_hostnet`): the socket calls
// Node core lacks and the NAT needs — ICMP echo through ping sockets (SOCK_DGRAM, IPPROTO_ICMP[V6])
// or raw sockets, the IP_RECVERR error queue (ICMP errors caused by our own datagrams), per-socket
// or per-datagram TTL / hop limit, TCP queues read by peeking — and a Poller for those sockets on
// Node's loop. Its argument checks, `copy` and the Poller are vhost-user-ts's napi-util.h and
// poller.h, compiled into this addon: one source for both addons.
//
// Conventions (as in vhost-user-ts's addon):
// - Every fd made here is non-blocking and close-on-exec; no call ever blocks.
// - Calls that can fail for an expected reason (bind, connect, sendTo, recvFrom, recvErr, close)
//   return a negative errno (compare with the constants below, e.g. `n === -hostnet.EAGAIN`).
// - Setup calls (openIcmp, openUdp, the set* options, getsockname) throw an Error whose `code` is
//   the errno name ('EACCES'), `errno` the negative number, `syscall` the failed call.
// - Addresses are bytes in network order: 4 (IPv4) or 16 (IPv6). For family 4 a 16-byte array
//   whose first 4 bytes hold the address is accepted too, so `RecvInfo.addr` can be passed back.
//   Ports (and ping identifiers) are host-order numbers.
//
// Socket modes and what they carry (send = the buffer given to sendTo, recv = what recvFrom
// returns; the error queue's payload is the same shape as send):
// - ping socket, IPv4 (openIcmp(4, false)): send an ICMP echo request (type 8, code 0: header
//   type/code/checksum/identifier/sequence, then data); the kernel computes the checksum and
//   replaces the identifier by the socket's (its "port", see getsockname). recv: the echo reply as
//   an ICMP message WITHOUT the IP header, identifier = the socket's. Only echo replies matching
//   the identifier are delivered; ICMP errors about our requests go to the error queue
//   (with setRecvErr). Needs the process's group inside net.ipv4.ping_group_range (per network
//   namespace; `1 0`, i.e. off, is the kernel default) — EACCES otherwise, even for root.
// - ping socket, IPv6 (openIcmp(6, false)): the same with ICMPv6 echo (type 128 out, 129 back),
//   no IPv6 header in either direction. Governed by the same net.ipv4.ping_group_range sysctl.
// - raw socket, IPv4 (openIcmp(4, true)): needs CAP_NET_RAW (EPERM otherwise). send: the ICMP
//   message as is — the kernel does NOT compute the ICMP checksum nor touch the identifier.
//   recv: the whole IPv4 packet, IP header INCLUDED (ihl*4 bytes, TTL at byte 8), of EVERY ICMP
//   packet the namespace receives (echo requests included, and on loopback our own outgoing
//   requests), not only replies to us: filter with setIcmpFilter and match identifiers yourself.
// - raw socket, IPv6 (openIcmp(6, true)): CAP_NET_RAW. send: the ICMPv6 message; the kernel
//   computes the checksum (always, for ICMPv6). recv: the ICMPv6 message WITHOUT the IPv6 header
//   (hop limit via setRecvTtl), again for every ICMPv6 packet (NDP, MLD, echo requests...).
// - UDP (openUdp): payload only in both directions. IPv6 sockets are IPV6_V6ONLY.
// For ICMP sockets pass port 0 to sendTo (raw IPv6 sockets reject any port but 0 or 58).
//
// Errors (setRecvErr on): an ICMP error about a datagram we sent, or a local failure such as
// EMSGSIZE, is queued on the socket's error queue: read it with recvErr until -EAGAIN. While
// anything is queued, poll reports POLLERR. The kernel also sets the socket's pending error
// (SO_ERROR), so the NEXT recvFrom OR sendTo fails ONCE with that errno (-ECONNREFUSED,
// -EHOSTUNREACH, ...) — a recvFrom even with datagrams waiting, a sendTo WITHOUT sending
// anything. Draining recvErr clears it. So: drain recvErr when the poller says so, treat a
// recvFrom result other than a length or -EAGAIN as "drain recvErr, then read again", and
// retry a sendTo that failed with such an errno once. (Seen on UDP and ping sockets.)
//
// Polling: `new hostnet.Poller(fd, cb, false)`. A readable socket calls back
// `cb(0, POLL_READABLE)` (level-triggered: read until -EAGAIN). A pending error (POLLERR) is NOT
// reported as readable: libuv turns POLLERR into `cb(UV_EBADF = -9, 0)` and stops the poller,
// even when datagrams are waiting too; drain recvErr and recvFrom until -EAGAIN, then call
// `poller.start(...)` again. Better: setSelectErrQueue(fd, true) and start the poller with
// POLL_READABLE | POLL_PRIORITIZED; an error then arrives as `cb(0, POLL_PRIORITIZED)` (with
// POLL_READABLE too when data waits) and the poller keeps running.
//
// What ICMP errors look like here (Linux 6.x, checked by test/host/native.test.ts):
// - time exceeded: errno EHOSTUNREACH, origin ICMP type 11 / ICMP6 type 3, offender = the router.
// - no route at a router: ENETUNREACH, ICMP type 3 code 0 / ICMP6 type 1 code 0.
// - port unreachable: ECONNREFUSED, ICMP type 3 code 3 / ICMP6 type 1 code 4.
// - our own neighbor resolution failing (ARP / NDP unanswered on a local link) is NOT origin
//   LOCAL: the host sends itself an ICMP host unreachable (type 3 code 1) / ICMP6 address
//   unreachable (type 1 code 3), so origin is ICMP / ICMP6 and the offender is OUR OWN address.
// - fragmentation needed / packet too big (with setDontFragment): EMSGSIZE, ICMP type 3 code 4 /
//   ICMP6 type 2, `info` = the MTU; the kernel caches the path MTU, so later larger sends fail at
//   once with -EMSGSIZE and queue an origin-LOCAL entry (info = MTU, no offender, no payload).
// - no route on this host: sendTo returns -ENETUNREACH and nothing is queued.
// TCP sockets (Linux 6.x, checked by test/host/tcp.test.ts):
// - connect() on a non-blocking socket returns -EINPROGRESS; the socket turns writable when the
//   handshake ends, and soError() tells how: 0, -ECONNREFUSED (RST), -EHOSTUNREACH /
//   -ENETUNREACH (ICMP errors, or our own ARP/NDP failure), -ETIMEDOUT (SYN retries exhausted).
// - With setRecvErr on, an ICMP error that kills a connect in SYN_SENT is also queued on the
//   error queue (origin ICMP / ICMP6, the type and code, offender = the reporting router; the
//   host's own resolution failure shows as ICMP host unreachable from one of our own addresses,
//   as for UDP). A RST queues nothing.
// - setTtl before connect sets the SYN's TTL; setTtl(-1) after it restores the default.
import { createRequire } from 'node:module';
import { useNativeCopy } from '../wire/bytes.js';
import type { ScatterViews } from '../wire/bytes.js';
import type { FramesSum } from '../wire/checksum.js';
import { useNativeCopyJob, useNativeCopySum, useNativeSum, useNativeSumFrames } from '../wire/checksum.js';
import type { CutFrames } from '../wire/tcp-cut.js';
import { useNativeCutFrames } from '../wire/tcp-cut.js';
import type { JoinRun } from '../wire/join-run.js';
import { useNativeJoinRun } from '../wire/join-run.js';

/** Address family of a socket: 4 (AF_INET) or 6 (AF_INET6). */
export type Family = 4 | 6;

/** Filled in place by recvFrom: allocate once (newRecvInfo) and reuse for every datagram. */
export interface RecvInfo {
  /** Source address: 16 bytes, IPv4 in the first 4 (the rest zero). Written in place. */
  readonly addr: Uint8Array;
  /** Source port (UDP); 0 for ICMP sockets. */
  port: number;
  /** TTL / hop limit of the received packet with setRecvTtl on; -1 otherwise. */
  ttl: number;
  /** The datagram was longer than the buffer; the rest was discarded. */
  truncated: boolean;
}

/** Filled in place by recvErr: one error-queue entry (a struct sock_extended_err and friends). */
export interface ErrInfo {
  /** ee_errno: the errno this error maps to (EHOSTUNREACH, ECONNREFUSED, EMSGSIZE...). */
  errno: number;
  /** ee_origin: SO_EE_ORIGIN_LOCAL (1, the host itself), _ICMP (2) or _ICMP6 (3). */
  origin: number;
  /** ee_type / ee_code: the ICMP type and code (0 for origin LOCAL). */
  type: number;
  code: number;
  /** ee_info: the MTU for fragmentation needed / packet too big (and local EMSGSIZE), the
   *  pointer for parameter problem, else 0. */
  info: number;
  /** SO_EE_OFFENDER: the address that sent the ICMP error (16 bytes, IPv4 in the first 4). */
  readonly offender: Uint8Array;
  /** False when the kernel gave no offender (origin LOCAL): `offender` is then all zero. */
  offenderValid: boolean;
  /** Destination of the datagram that caused the error (16 bytes, IPv4 in the first 4). */
  readonly dstAddr: Uint8Array;
  /** Its destination port (UDP); 0 for ICMP sockets, and 0 for IPv4 origin-LOCAL errors on an
   *  unconnected socket (the kernel reports the connected port there). */
  dstPort: number;
  /** The quoted payload was longer than the buffer. */
  truncated: boolean;
}

/** Polls an fd through libuv (uv_poll_t) on the Node event loop (vhost-user-ts's poller.h). */
export interface HostPoller {
  /** Start or change the watched events (POLL_READABLE | POLL_WRITABLE | POLL_PRIORITIZED). */
  start(events: number): void;
  stop(): void;
  /** Stops and releases the handle; the fd itself is not closed. Idempotent. */
  close(): void;
}

export interface HostPollerConstructor {
  /** `callback(status, events)`: status is 0 or a negative libuv error (UV_EBADF for POLLERR,
   *  which stops the poller until start() again); events is the ready set. (`drain`: read an
   *  eventfd's counter before calling back; the host sockets never ask for it.) */
  new (fd: number, callback: (status: number, events: number) => void, drain: false): HostPoller;
}

export interface HostnetBinding {
  Poller: HostPollerConstructor;
  // libuv's event bits, as the Poller takes and reports them.
  readonly POLL_READABLE: number;
  readonly POLL_WRITABLE: number;
  readonly POLL_DISCONNECT: number;
  readonly POLL_PRIORITIZED: number;
  // Positive errno values; calls return them negated.
  readonly EAGAIN: number;
  readonly EHOSTUNREACH: number;
  readonly ENETUNREACH: number;
  readonly ECONNREFUSED: number;
  readonly EMSGSIZE: number;
  readonly EACCES: number;
  readonly EPERM: number;
  readonly EPROTO: number;
  readonly EINPROGRESS: number;
  readonly ECONNRESET: number;
  readonly ETIMEDOUT: number;
  readonly EPIPE: number;
  /** ErrInfo.origin values. */
  readonly SO_EE_ORIGIN_LOCAL: number;
  readonly SO_EE_ORIGIN_ICMP: number;
  readonly SO_EE_ORIGIN_ICMP6: number;

  /** socket(AF_INET[6], raw ? SOCK_RAW : SOCK_DGRAM, IPPROTO_ICMP[V6]): see the modes above.
   *  Throws: EACCES (ping sockets not permitted by ping_group_range), EPERM (raw without
   *  CAP_NET_RAW). A ping socket gets its identifier on bind (port 0 = any free one) or on its
   *  first send. */
  openIcmp(family: Family, raw: boolean): number;
  /** A UDP socket (IPV6_V6ONLY for family 6). Throws. */
  openUdp(family: Family): number;
  /** bind(): 0 or -errno (e.g. -EADDRINUSE). For a ping socket `port` is the echo identifier. */
  bind(fd: number, family: Family, addr: Uint8Array, port: number): number;
  /** connect() (immediate for datagram sockets): 0 or -errno. */
  connect(fd: number, family: Family, addr: Uint8Array, port: number): number;
  /** The local address (4 or 16 bytes, by the socket's family) and port; for a ping socket the
   *  port is the echo identifier the kernel assigned (0 before bind or the first send). Throws. */
  getsockname(fd: number, family: Family): { addr: Uint8Array; port: number };
  /** IP_RECVERR / IPV6_RECVERR: queue errors for recvErr. Throws. */
  setRecvErr(fd: number, family: Family, on: boolean): void;
  /** SO_SELECT_ERR_QUEUE: a queued error also raises POLLPRI, so a Poller started with
   *  POLL_READABLE | POLL_PRIORITIZED reports it as `cb(0, POLL_PRIORITIZED [| POLL_READABLE])`
   *  and keeps running, instead of `cb(-9, 0)` and stopping. Throws. */
  setSelectErrQueue(fd: number, on: boolean): void;
  /** IP_RECVTTL / IPV6_RECVHOPLIMIT: recvFrom reports RecvInfo.ttl. Throws. */
  setRecvTtl(fd: number, family: Family, on: boolean): void;
  /** IP_TTL / IPV6_UNICAST_HOPS for later sends (1..255; -1 = default). Throws. */
  setTtl(fd: number, family: Family, ttl: number): void;
  /** IP_MTU_DISCOVER / IPV6_MTU_DISCOVER: on = PMTUDISC_DO (IPv4 DF set; sends above the known
   *  path MTU fail with -EMSGSIZE and queue an origin-LOCAL error whose `info` is the MTU), off =
   *  PMTUDISC_DONT (fragment locally; IPv4 DF clear). Throws. */
  setDontFragment(fd: number, family: Family, on: boolean): void;
  /** Raw ICMP sockets only (ICMP_FILTER / ICMP6_FILTER): deliver only these ICMP types to
   *  recvFrom. IPv4 filters types 0..31 only (higher ones always pass). The error queue is not
   *  filtered. Throws on ping sockets. */
  setIcmpFilter(fd: number, family: Family, passTypes: readonly number[]): void;
  /** sendmsg(MSG_NOSIGNAL | MSG_DONTWAIT) of buf[offset, offset+length) to addr:port, or on a
   *  connected socket when addr is null. `ttl` (0..255) sets the TTL / hop limit of this datagram
   *  only; -1 or omitted uses the socket's. Bytes sent or -errno (-EAGAIN, -EMSGSIZE,
   *  -ENETUNREACH, or a pending error's errno once, see above). */
  sendTo(fd: number, family: Family, buf: Uint8Array, offset: number, length: number, addr: Uint8Array | null, port: number, ttl?: number): number;
  /** The most datagrams one sendMany call takes. */
  readonly SEND_MANY_MAX: number;
  /** sendmmsg(MSG_NOSIGNAL | MSG_DONTWAIT) of `count` (1..SEND_MANY_MAX) datagrams on a connected
   *  socket: datagram i (from `start`) is buf[offsets[i], +lengths[i]) with TTL / hop limit ttls[i]
   *  (0..255, -1: the socket's). How many were sent (the first of the rest, sent alone with sendTo,
   *  tells why they were not), or -errno when the first failed. Throws on bad arguments. */
  sendMany(fd: number, family: Family, buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, ttls: Int32Array, start: number, count: number): number;
  /** recvmsg(MSG_DONTWAIT) into buf[offset, offset+length): bytes (0 is a valid empty datagram)
   *  or -errno (-EAGAIN when nothing is queued). On success fills `out` in place; allocates
   *  nothing. */
  recvFrom(fd: number, family: Family, buf: Uint8Array, offset: number, length: number, out: RecvInfo): number;
  /** recvmsg(MSG_ERRQUEUE | MSG_DONTWAIT): the bytes of the offending datagram's payload copied
   *  into buf (what the ICMP error quoted of it: the ICMP message for ICMP sockets, the UDP payload
   *  for UDP; possibly cut short), or -errno (-EAGAIN when the queue is empty). Fills `out`. */
  recvErr(fd: number, family: Family, buf: Uint8Array, offset: number, length: number, out: ErrInfo): number;
  /** close(fd): 0 or -errno. */
  close(fd: number): number;

  // ---- TCP (see "TCP sockets" above) ----
  /** A non-blocking TCP socket: TCP_NODELAY, SO_REUSEADDR, IPV6_V6ONLY for family 6. Throws. */
  openTcp(family: Family): number;
  /** getsockopt(SO_ERROR), which clears it: 0 or -errno (a finished connect's result). */
  soError(fd: number): number;
  /** recv(MSG_DONTWAIT): bytes, 0 at end of stream, or -errno (-EAGAIN: nothing yet). */
  read(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** send(MSG_DONTWAIT | MSG_NOSIGNAL): bytes (maybe fewer) or -errno (-EAGAIN, -EPIPE...). */
  write(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** shutdown(SHUT_WR): 0 or -errno. */
  shutdownWrite(fd: number): number;
  /** SO_LINGER {1, 0}: close() then sends a RST. Throws. */
  setLingerZero(fd: number): void;
  /** listen(): 0 or -errno. */
  listen(fd: number, backlog: number): number;
  /** accept4(NONBLOCK | CLOEXEC), TCP_NODELAY: the new fd or -errno (-EAGAIN); fills
   *  out.addr (16 bytes, IPv4 in the first 4) and out.port with the client's. */
  accept(fd: number, out: { readonly addr: Uint8Array; port: number }): number;

  // ---- TCP streams (addon/stream.cc): edge-triggered polling, the receive queue as a buffer ----
  readonly EPOLLIN: number;
  readonly EPOLLOUT: number;
  readonly EPOLLRDHUP: number;
  readonly EPOLLERR: number;
  readonly EPOLLHUP: number;
  /** The most segments one peekv call takes (UIO_MAXIOV). */
  readonly IOV_MAX: number;
  /** epoll_create1(EPOLL_CLOEXEC): the fd or -errno. */
  epollCreate(): number;
  /** Adds fd (op 0) or changes its entry (op 1): watched edge-triggered (EPOLLET) for the peer's
   *  FIN (EPOLLRDHUP), errors and hangup, and for what `interest` names of EPOLLIN and EPOLLOUT
   *  (a RangeError for other bits). The kernel reports at once what of it is ready. Events carry
   *  `token` (unsigned 32-bit). 0 or -errno. */
  epollCtl(epfd: number, op: 0 | 1, fd: number, token: number, interest: number): number;
  /** Stops watching fd: 0 or -errno. */
  epollDel(epfd: number, fd: number): number;
  /** The events ready now, without waiting: tokens[i] and events[i] (EPOLL* bits) for i below the
   *  count returned (at most 256 and the arrays' length), or -errno. */
  epollWait(epfd: number, tokens: Uint32Array, events: Uint32Array): number;
  /** SIOCINQ: the bytes in a TCP socket's receive queue, or -errno. */
  inq(fd: number): number;
  /** SO_PEEK_OFF: where the next peek starts, from the head of the receive queue (-1: off).
   *  0 or -errno (-EINVAL / -EOPNOTSUPP: the kernel has no SO_PEEK_OFF for TCP; Linux 6.9+). */
  setPeekOff(fd: number, offset: number): number;
  /** recv(MSG_PEEK | MSG_DONTWAIT) into buf[offset, offset + length), from the peek offset on,
   *  which moves past what it copied: bytes, 0 at the end of the stream, or -errno (-EAGAIN). */
  peek(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** As peek(), into the scatter list views[i][offsets[i], +lengths[i]) for i < count (at most
   *  IOV_MAX): a DescriptorChain's segments, straight into guest memory. `views` may be the one
   *  Uint8Array every span lies in (see ScatterViews). Throws on bad ranges. */
  peekv(fd: number, views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number;
  /** sendmsg(MSG_DONTWAIT | MSG_NOSIGNAL) of the scatter list views[i][offsets[i], +lengths[i])
   *  for i < count (at most IOV_MAX; a guest's payload in guest memory): bytes written (maybe
   *  fewer) or -errno (-EAGAIN, -EPIPE...). Throws on bad ranges. */
  writev(fd: number, views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number;
  /** recv(MSG_TRUNC | MSG_DONTWAIT): drops the first n queued bytes unread (the peek offset moves
   *  back by as much). Bytes or -errno. */
  discard(fd: number, n: number): number;

  /** sum16 of each frame of a batch in the scatter list views[i][offsets[i], +lengths[i]): frame
   *  k's spans are [starts[k], starts[k + 1]) (the last's end: spanCount), its sum added to sums[k]
   *  and stored there (what src/wire/checksum.ts's sumFrames computes). Throws on bad ranges. */
  sumFrames: FramesSum;
  /** The headers of a large TCP segment's frames, written where they go (src/wire/tcp-cut.ts's
   *  cutFrames). Throws on a field, frame or sum outside its place. */
  cutFrames: CutFrames;
  /** src/wire/join-run.ts's joinRun: a TX batch's frames that continue the TCP coalescer's run,
   *  joined with one call. */
  joinRun: JoinRun;
  /** Writes back and drops the cache lines of buf[offset, +length) from every cache (clflush),
   *  for benchmarks of cold paths (scripts/bench-tx.ts --cold). Throws on a bad range. */
  evictLines: (buf: Uint8Array, offset: number, length: number) => void;
  /** The calling thread's CPU time in ns (CLOCK_THREAD_CPUTIME_ID), for benchmarks that must not
   *  count the time another process ran in its place (scripts/bench-path.ts). */
  threadCpuNs: () => number;
  /** The ones' complement sum of buf[offset, offset + length) in network order, folded to 16
   *  bits, not complemented (what src/wire/checksum.ts's sum16 computes). Throws on a bad range. */
  sum16: (buf: Uint8Array, offset: number, length: number) => number;
  /** Copies src[srcOffset, +length) to dst[dstOffset, +length) (ranges must not overlap) and
   *  returns sum16 of the copied bytes from `from` on, in one pass. Throws on a bad range. */
  copySum: (src: Uint8Array, srcOffset: number, length: number, dst: Uint8Array, dstOffset: number, from: number) => number;
  /** A guest frame's headers and payload copied into work, the payload summed, the next frame
   *  prefetched, as the job in work's first bytes says (src/wire/checksum.ts's copyJob). Throws
   *  on a bad range. */
  copyJob: (src: Uint8Array, work: Uint8Array) => void;
  /** sum16 by the SSE2 loop that machines without AVX2 use (for tests; sum16 picks the best). */
  sum16Portable: (buf: Uint8Array, offset: number, length: number) => number;
  /** memmove of src[srcOffset, +length) to dst[dstOffset, +length), making no view. Throws on a
   *  bad range. */
  copy: (src: Uint8Array, srcOffset: number, length: number, dst: Uint8Array, dstOffset: number) => void;
}

/** A RecvInfo to pass to recvFrom again and again. */
export function newRecvInfo(): RecvInfo {
  return { addr: new Uint8Array(16), port: 0, ttl: -1, truncated: false };
}

/** An ErrInfo to pass to recvErr again and again. */
export function newErrInfo(): ErrInfo {
  return {
    errno: 0,
    origin: 0,
    type: 0,
    code: 0,
    info: 0,
    offender: new Uint8Array(16),
    offenderValid: false,
    dstAddr: new Uint8Array(16),
    dstPort: 0,
    truncated: false,
  };
}

const require = createRequire(import.meta.url);

function load(): HostnetBinding {
  // src/host/native.ts sits two levels under the package root, dist/src/host/native.js three.
  const candidates = ['../../build/Release/vunet_hostnet.node', '../../../build/Release/vunet_hostnet.node'];
  let lastError: unknown;
  for (const rel of candidates) {
    try {
      return require(rel) as HostnetBinding;
    } catch (err) {
      lastError = err;
    }
  }
  throw new Error(`vunet: host-socket addon not built (run \`npx node-gyp rebuild\`): ${String(lastError)}`);
}

// A copy by spread: the object the addon hands back holds its 76 functions in dictionary mode
// (each was added by a keyed store), so every `hostnet.f(...)` would be a generic property load
// (V8's LoadIC builtin: 1.6 % of vunet's CPU in a host→guest transfer, with vhost-user-ts's).
// The copy is a fast-mode object, which optimized code reads from a fixed slot.
export const hostnet: HostnetBinding = { ...load() };

// Long checksums (payload of frames a guest without checksum offload sends or gets) in C.
useNativeSum(hostnet.sum16);
useNativeSumFrames(hostnet.sumFrames);
useNativeCopySum(hostnet.copySum);
useNativeCopyJob(hostnet.copyJob);
// The headers of the frames a large TCP segment is cut into, all of them with one call.
useNativeCutFrames(hostnet.cutFrames);
// The frames of a TX batch that continue a TCP run, joined with one call.
useNativeJoinRun(hostnet.joinRun);
// Long copies (payload into and out of TCP buffers) without a view per call.
useNativeCopy(hostnet.copy);
