// The NAT's host side on real sockets (the hostnet addon): ICMP echo through an unprivileged ping
// socket, or a raw socket when ping sockets are not permitted and the process has CAP_NET_RAW.
// Which one is in use is probed once and logged. Every socket event runs inside `event()`: an
// exception costs that event only (it is reported through `failed`), the time it took is reported
// (`batch`), and `after` lets the runtime re-arm the stack's timer (a reply may start neighbour
// resolution). Each event handles a bounded amount (PER_EVENT datagrams or connections); a
// level-triggered poller comes back for the rest on the next turn, after other sockets had theirs.
import { networkInterfaces } from 'node:os';
import { performance } from 'node:perf_hooks';
import { getSystemErrorName } from 'node:util';
import type { ScatterViews } from '../wire/bytes.js';
import { oneView } from '../wire/bytes.js';
import { hostnet, newErrInfo, newRecvInfo } from './native.js';
import type { Family, HostPoller } from './native.js';
import type { Log } from '../iface/log.js';
import type {
  AcceptedTcp,
  BoundUdpEvents,
  BoundUdpSocket,
  EchoSocket,
  EchoSocketEvents,
  HostNet,
  HostTcp,
  HostUdp,
  HostUdpListen,
  TcpListener,
  TcpSocket,
  StreamQueue,
  TcpSocketEvents,
  UdpSocket,
  UdpSocketEvents,
} from '../nat/host.js';
import type { HostError } from '../nat/icmp-errors.js';
import { formatIpv6, internetChecksum } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';
import { EdgePoller } from './edge-poller.js';
import type { EdgeTarget } from './edge-poller.js';

const ICMP_ECHO = { 4: { request: 8, reply: 0 }, 6: { request: 128, reply: 129 } } as const;
const MAX_ICMP = 65536;
/** Datagrams read, or connections accepted, per socket event. */
const PER_EVENT = 64;

/** What the runtime hears about socket events. */
export interface HostEvents {
  /** Before each socket event's handler runs. */
  before?(): void;
  /** After each socket event (also when its handler threw). */
  after(): void;
  /** A handler threw: the event was dropped. */
  failed(err: unknown): void;
  /** How long an event took (ms). */
  batch(ms: number): void;
}

const NO_EVENTS: HostEvents = { after: () => undefined, failed: () => undefined, batch: () => undefined };

export class NodeHostNet implements HostNet, HostUdp, HostTcp, HostUdpListen {
  /** Which echo socket this process may open. It follows from the process's credentials, so
   *  every instance shares it; reprobe() refreshes it after they change. */
  get echoMode(): EchoMode {
    return echoMode;
  }
  /** Receive and send scratch, shared by all sockets (handlers run one at a time). */
  private readonly rx = new Uint8Array(MAX_ICMP);
  /** Views of rx by datagram length, and of the IPv4 source in recvInfo (none made per datagram). */
  private readonly rxViews = new ViewCache();
  private readonly tx = new Uint8Array(MAX_ICMP);
  private readonly recvInfo = newRecvInfo();
  private readonly from4 = this.recvInfo.addr.subarray(0, 4);
  private readonly errInfo = newErrInfo();
  private nextRawIdent = (Math.random() * 0xffff) | 0;

  /** HostTcp: open sockets offer their receive queue as the connection's send buffer (where the
   *  kernel has SO_PEEK_OFF for TCP: Linux 6.9+; `streamQueues: false` turns it off). */
  readonly streamQueues: boolean;

  constructor(
    log: Log,
    private readonly events: HostEvents = NO_EVENTS,
    opts: { streamQueues?: boolean } = {},
  ) {
    this.streamQueues = opts.streamQueues !== false && peekOffSupported();
    if (!this.streamQueues) log.info({ peekOff: false }, 'host TCP data is buffered in vunet (the kernel has no SO_PEEK_OFF for TCP, or it was turned off)');
    echoMode = probe();
    if (this.echoMode === 'ping') log.info({ echo: 'ping socket' }, 'guest pings go out through unprivileged ICMP ping sockets');
    else if (this.echoMode === 'raw')
      log.info({ echo: 'raw socket' }, 'ping sockets are not permitted here; guest pings go out through raw ICMP sockets (CAP_NET_RAW)');
    else {
      log.warn(
        { echo: 'none' },
        'no ICMP socket available: guest pings beyond the gateway will go unanswered. Fix: sysctl -w net.ipv4.ping_group_range="0 2147483647" (or give vunet CAP_NET_RAW)',
      );
    }
  }

  /** Runs one socket event's handler: a throw costs that event; the runtime hears of it. */
  private readonly event = (fn: () => void): void => {
    const start = performance.now();
    this.events.before?.();
    try {
      fn();
    } catch (err) {
      this.events.failed(err);
    }
    this.events.batch(performance.now() - start);
    this.events.after();
  };

  /** Probes again once the process's credentials changed (src/main/privileges.ts drops them
   *  after start) and returns the mode every instance now uses. */
  static reprobe(): EchoMode {
    echoMode = probe();
    return echoMode;
  }

  openEcho(family: Family, events: EchoSocketEvents): EchoSocket {
    const raw = this.echoMode === 'raw';
    if (this.echoMode === 'none') throw Object.assign(new Error('no ICMP socket permitted'), { code: 'EACCES' });
    const fd = hostnet.openIcmp(family, raw);
    let ident = 0;
    try {
      hostnet.setRecvErr(fd, family, true);
      hostnet.setRecvTtl(fd, family, true);
      if (raw) {
        hostnet.setIcmpFilter(fd, family, [ICMP_ECHO[family].reply]);
        this.nextRawIdent = (this.nextRawIdent + 1) & 0xffff;
        ident = this.nextRawIdent;
      }
    } catch (err) {
      hostnet.close(fd);
      throw err;
    }
    let poller: HostPoller | undefined;
    // Made once per socket: an event allocates nothing.
    const handle = (): void => {
      this.drain(fd, family, raw, ident, events);
      poller?.start(hostnet.POLL_READABLE); // a pending error stops the poller (see native.ts)
    };
    const onEvent = (): void => this.event(handle);
    poller = new hostnet.Poller(fd, onEvent, false);
    poller.start(hostnet.POLL_READABLE);
    return {
      send: (dst, seq, data, ttl) => this.send(fd, family, raw, ident, dst, seq, data, ttl),
      close: () => {
        poller?.close();
        poller = undefined;
        hostnet.close(fd);
      },
    };
  }

  openUdp(family: Family, dst: Uint8Array, port: number, events: UdpSocketEvents): UdpSocket {
    const fd = hostnet.openUdp(family);
    try {
      hostnet.setRecvErr(fd, family, true);
      const rc = hostnet.connect(fd, family, dst, port);
      if (rc < 0) throw Object.assign(new Error(`connect failed: errno ${-rc}`), { code: `errno ${-rc}` });
    } catch (err) {
      hostnet.close(fd);
      throw err;
    }
    let poller: HostPoller | undefined;
    const handle = (): void => {
      this.drainUdp(fd, family, events);
      poller?.start(hostnet.POLL_READABLE);
    };
    poller = new hostnet.Poller(fd, () => this.event(handle), false);
    poller.start(hostnet.POLL_READABLE);
    return {
      send: (data, ttl) => {
        let rc = hostnet.sendTo(fd, family, data, 0, data.length, null, 0, ttl);
        // A queued error fails the next send once (see native.ts): send again.
        if (rc < 0 && rc !== -hostnet.EAGAIN) rc = hostnet.sendTo(fd, family, data, 0, data.length, null, 0, ttl);
        return rc;
      },
      sendMany: (buf, offsets, lengths, ttls, start, count) => hostnet.sendMany(fd, family, buf, offsets, lengths, ttls, start, count),
      close: () => {
        poller?.close();
        poller = undefined;
        hostnet.close(fd);
      },
    };
  }

  connectTcp(family: Family, dst: Uint8Array, port: number, ttl: number, events: TcpSocketEvents): TcpSocket {
    const fd = hostnet.openTcp(family);
    let rc: number;
    try {
      // The error queue tells which router answered an ICMP error (traceroute -T); the TTL is
      // the guest's, for the SYN only.
      hostnet.setRecvErr(fd, family, true);
      if (ttl > 0) hostnet.setTtl(fd, family, Math.min(255, ttl));
      rc = hostnet.connect(fd, family, dst, port);
    } catch (err) {
      hostnet.close(fd);
      throw err;
    }
    const s = new NodeTcpSocket(fd, family, events, this.event, 'connecting', ttl > 0, this.streamQueues);
    if (rc === 0) queueMicrotask(() => this.event(() => s.connectDone(0)));
    else if (rc !== -hostnet.EINPROGRESS) queueMicrotask(() => this.event(() => s.connectDone(rc)));
    else s.watch(false, true);
    return s;
  }

  listenTcp(family: Family, addr: Uint8Array | null, port: number, accepted: (conn: AcceptedTcp) => void): TcpListener {
    const fd = hostnet.openTcp(family);
    const any = new Uint8Array(16);
    let rc = hostnet.bind(fd, family, addr ?? any, port);
    if (rc === 0) rc = hostnet.listen(fd, 128);
    if (rc < 0) {
      hostnet.close(fd);
      throw errnoError(-rc, 'listen');
    }
    const info = { addr: new Uint8Array(16), port: 0 };
    const poller = new hostnet.Poller(fd, () => this.event(() => this.acceptSome(fd, family, port, info, accepted)), false);
    poller.start(hostnet.POLL_READABLE);
    return {
      close: () => {
        poller.close();
        hostnet.close(fd);
      },
    };
  }

  /** Accepts up to PER_EVENT pending connections; one the owner neither attaches nor rejects
   *  (or whose handling throws) is closed. */
  private acceptSome(fd: number, family: Family, port: number, info: { addr: Uint8Array; port: number }, accepted: (conn: AcceptedTcp) => void): void {
    for (let n = 0; n < PER_EVENT; n++) {
      const c = hostnet.accept(fd, info);
      if (c < 0) return; // -EAGAIN, or a connection that died before we took it
      const peer = info.addr.slice(0, family === 4 ? 4 : 16);
      let taken = false;
      try {
        accepted({
          family,
          peer,
          peerPort: info.port,
          localPort: port,
          attach: (events) => {
            taken = true;
            return new NodeTcpSocket(c, family, events, this.event, 'open', false, this.streamQueues);
          },
          reject: () => {
            taken = true;
            hostnet.setLingerZero(c);
            hostnet.close(c);
          },
        });
      } finally {
        if (!taken) hostnet.close(c);
      }
    }
  }

  bindUdp(family: Family, addr: Uint8Array | null, port: number, events: BoundUdpEvents): BoundUdpSocket {
    const fd = hostnet.openUdp(family);
    const rc = hostnet.bind(fd, family, addr ?? new Uint8Array(16), port);
    if (rc < 0) {
      hostnet.close(fd);
      throw errnoError(-rc, 'bind');
    }
    const alen = family === 4 ? 4 : 16;
    const from = this.recvInfo.addr.subarray(0, alen);
    const handle = (): void => {
      const b = this.rx;
      for (let i = 0; i < PER_EVENT; i++) {
        const n = hostnet.recvFrom(fd, family, b, 0, b.length, this.recvInfo);
        if (n === -hostnet.EAGAIN) break;
        if (n < 0) continue; // a pending error reported once
        events.datagram(this.rxViews.of(b, 0, n), from, this.recvInfo.port);
      }
    };
    const poller = new hostnet.Poller(fd, () => this.event(handle), false);
    poller.start(hostnet.POLL_READABLE);
    return {
      sendTo: (data, to, toPort) => hostnet.sendTo(fd, family, data, 0, data.length, to, toPort),
      close: () => {
        poller.close();
        hostnet.close(fd);
      },
    };
  }

  private drainUdp(fd: number, family: Family, events: UdpSocketEvents): void {
    // Datagrams land where the NAT builds its frame to the guest, when it says where.
    const land = events.landing ?? this.rx;
    for (let i = 0; i < PER_EVENT; i++) {
      const n = hostnet.recvFrom(fd, family, land, 0, land.length, this.recvInfo);
      if (n === -hostnet.EAGAIN) break;
      if (n < 0) continue; // a pending error's errno, reported once: the error queue has it
      events.datagram(this.rxViews.of(land, 0, n));
    }
    const b = this.rx;
    const e = this.errInfo;
    for (;;) {
      const n = hostnet.recvErr(fd, family, b, 0, b.length, e);
      if (n < 0) break;
      const fromHost = e.offenderValid && isLocalAddress(e.offender, family);
      events.error(
        { origin: e.origin, type: e.type, code: e.code, errno: e.errno, info: e.info, offender: e.offender, offenderValid: e.offenderValid && !fromHost },
        b.subarray(0, n),
      );
    }
  }

  private send(fd: number, family: Family, raw: boolean, ident: number, dst: Uint8Array, seq: number, data: Uint8Array, ttl: number): number {
    const b = this.tx;
    const len = 8 + data.length;
    if (len > b.length) return -hostnet.EMSGSIZE;
    b[0] = ICMP_ECHO[family].request;
    b[1] = 0;
    b[2] = b[3] = 0;
    // Ping sockets put their own identifier there; a raw socket sends ours.
    b[4] = ident >> 8;
    b[5] = ident & 0xff;
    b[6] = seq >> 8;
    b[7] = seq & 0xff;
    b.set(data, 8);
    if (raw && family === 4) {
      // Raw ICMPv4: the kernel leaves the checksum to us (ICMPv6's it computes itself).
      const c = internetChecksum(b, 0, len);
      b[2] = c >> 8;
      b[3] = c & 0xff;
    }
    let rc = hostnet.sendTo(fd, family, b, 0, len, dst, 0, ttl);
    // A queued error makes the next send fail once with its errno (see native.ts) though nothing
    // is wrong with this datagram: traceroute's parallel probes hit that. Send again.
    if (rc < 0 && rc !== -hostnet.EAGAIN) rc = hostnet.sendTo(fd, family, b, 0, len, dst, 0, ttl);
    return rc;
  }

  /** Reads every queued reply and error-queue entry. */
  private drain(fd: number, family: Family, raw: boolean, ident: number, events: EchoSocketEvents): void {
    // A ping socket's replies land where the NAT builds its reply to the guest (a raw socket's
    // come with their IP header first, so they go to scratch).
    const b = raw ? this.rx : (events.landing ?? this.rx);
    const info = this.recvInfo;
    for (let i = 0; i < PER_EVENT; i++) {
      const n = hostnet.recvFrom(fd, family, b, 0, b.length, info);
      if (n === -hostnet.EAGAIN) break;
      if (n < 0) continue; // a pending error's errno, reported once: the error queue has it
      // Raw IPv4 delivers the IP header too; skip it (and take the TTL from it).
      let off = 0;
      let ttl = info.ttl;
      if (raw && family === 4) {
        off = (b[0]! & 0x0f) * 4;
        ttl = b[8]!;
      }
      if (n - off < 8 || b[off] !== ICMP_ECHO[family].reply) continue;
      if (raw && ((b[off + 4]! << 8) | b[off + 5]!) !== ident) continue; // someone else's reply
      const seq = (b[off + 6]! << 8) | b[off + 7]!;
      events.reply(family === 4 ? this.from4 : info.addr, seq, this.rxViews.of(b, off + 8, n), ttl);
    }
    const e = this.errInfo;
    const q = this.rx;
    for (;;) {
      const n = hostnet.recvErr(fd, family, q, 0, q.length, e);
      if (n < 0) break;
      if (n < 8) continue;
      const seq = (q[6]! << 8) | q[7]!;
      // The host reports its own failures to resolve a next hop as ICMP from one of its own
      // addresses: those come from our gateway address, like any local failure.
      const fromHost = e.offenderValid && isLocalAddress(e.offender, family);
      events.error(
        { origin: e.origin, type: e.type, code: e.code, errno: e.errno, info: e.info, offender: e.offender, offenderValid: e.offenderValid && !fromHost },
        seq,
        q.subarray(8, n),
      );
    }
  }
}

/**
 * A host TCP socket on the native calls. Connecting: its own poller waits for writability, then
 * SO_ERROR says how the connect ended (with the error queue's ICMP entry, when there is one).
 * Open: it joins the process's edge-triggered set (EdgePoller) and, where the kernel has
 * SO_PEEK_OFF for TCP, offers its receive queue as the connection's send buffer (`queue`). An
 * error or hangup is reported as readable (the read, or takeError(), then returns it). Should the
 * set refuse it, a level-triggered poller of its own watches what the owner asks for.
 */
/** What the edge-triggered set watches a socket for, of EPOLLIN and EPOLLOUT. */
function interestOf(read: boolean, write: boolean): number {
  return (read ? hostnet.EPOLLIN : 0) | (write ? hostnet.EPOLLOUT : 0);
}

class NodeTcpSocket implements TcpSocket, EdgeTarget, StreamQueue {
  private poller: HostPoller | undefined;
  /** What the own poller has armed. */
  private events = 0;
  /** In the edge-triggered set: its token there, else -1. */
  private token = -1;
  private wantRead = false;
  private wantWrite = false;
  /** What the set watches for (EPOLLIN, EPOLLOUT): what the owner wants, so the kernel wakes
   *  nobody for the rest (data arriving for a connection whose guest window is full). */
  private interest = 0;
  /** Edge events not yet handled, and what they told for good (FIN, error). */
  private edgeBits = 0;
  private finSeen = false;
  private errorSeen = false;
  /** The kernel's SO_PEEK_OFF as we last set or moved it. */
  private peekOff = 0;
  private recheckDue = false;
  queue: StreamQueue | undefined;

  constructor(
    private readonly fd: number,
    private readonly family: Family,
    private readonly handlers: TcpSocketEvents,
    private readonly event: (fn: () => void) => void,
    private phase: 'connecting' | 'open' | 'closed',
    private readonly ttlSet: boolean,
    private readonly streams: boolean,
  ) {
    if (phase === 'open') this.opened();
    else this.ownPoller();
  }

  private ownPoller(): void {
    this.poller ??= new hostnet.Poller(
      this.fd,
      (status, ready) => {
        this.pollStatus = status;
        this.pollReady = ready;
        this.event(this.polled);
      },
      false,
    );
  }

  /** The connection is open: into the edge-triggered set, with the queue as a buffer. */
  private opened(): void {
    let token = -1;
    try {
      this.interest = interestOf(this.wantRead, this.wantWrite);
      token = EdgePoller.get().add(this.fd, this, this.interest);
    } catch {
      // no epoll fd (EMFILE): the own poller serves
    }
    if (token < 0) {
      this.ownPoller();
      return;
    }
    this.token = token;
    this.poller?.close();
    this.poller = undefined;
    this.events = 0;
    if (this.streams && hostnet.setPeekOff(this.fd, 0) === 0) this.queue = this;
  }

  /** The own poller's last report, for polled (made once: an event allocates nothing). */
  private pollStatus = 0;
  private pollReady = 0;
  private readonly polled = (): void => this.onPoll(this.pollStatus, this.pollReady);

  private onPoll(status: number, ready: number): void {
    if (this.phase === 'connecting') {
      this.connectDone(hostnet.soError(this.fd));
    } else if (this.phase === 'open') {
      // libuv stops the poller on POLLERR (status < 0): the read reports the error.
      if (status < 0) this.events = 0;
      if (status < 0 || (ready & hostnet.POLL_READABLE) !== 0) this.handlers.readable();
      if (this.phase === 'open' && status === 0 && (ready & hostnet.POLL_WRITABLE) !== 0) this.handlers.writable();
    }
  }

  /** EdgeTarget: the set reports `bits` (EPOLL*): the interest's, and the FIN, errors and
   *  hangup always. */
  edge(bits: number): void {
    if ((bits & (hostnet.EPOLLRDHUP | hostnet.EPOLLHUP)) !== 0) this.finSeen = true;
    if ((bits & hostnet.EPOLLERR) !== 0) this.errorSeen = true;
    this.edgeBits |= bits;
    this.event(this.onEdge);
  }

  private readonly onEdge = (): void => {
    const bits = this.edgeBits;
    this.edgeBits = 0;
    if (this.phase !== 'open') return;
    // An error or hangup is heard at once (the read, or takeError(), reports it); the FIN when
    // reads are on (`ended` says it meanwhile).
    const readBits = this.wantRead ? hostnet.EPOLLIN | hostnet.EPOLLRDHUP | hostnet.EPOLLHUP | hostnet.EPOLLERR : hostnet.EPOLLHUP | hostnet.EPOLLERR;
    if ((bits & readBits) !== 0) this.handlers.readable();
    if (this.phase === 'open' && this.wantWrite && (bits & (hostnet.EPOLLOUT | hostnet.EPOLLHUP | hostnet.EPOLLERR)) !== 0) this.handlers.writable();
  };

  /** Interest the set could not take (see watch()): the owner hears once, on the next turn, that
   *  it may look. */
  private readonly recheck = (): void => {
    if (!this.recheckDue) return;
    this.recheckDue = false;
    this.edgeBits |= hostnet.EPOLLIN | hostnet.EPOLLOUT;
    this.event(this.onEdge);
  };

  /** The connect ended with `rc` (0 or -errno). */
  connectDone(rc: number): void {
    if (this.phase !== 'connecting') return;
    if (rc === 0) {
      this.phase = 'open';
      if (this.ttlSet) hostnet.setTtl(this.fd, this.family, -1); // data goes with the default TTL
      // The error queue told how the connect ended; nobody reads it after (and what would queue
      // there, unread, keeps EPOLLERR up and counts against the receive buffer): off, purged.
      hostnet.setRecvErr(this.fd, this.family, false);
      this.opened();
      this.watch(false, false);
      this.handlers.connected();
      return;
    }
    const error = readConnectError(this.fd, this.family);
    this.close(false);
    this.handlers.connectFailed(-rc, error);
  }

  read(buf: Uint8Array, off: number, len: number): number {
    return this.phase === 'open' ? hostnet.read(this.fd, buf, off, len) : -hostnet.EPIPE;
  }

  write(buf: Uint8Array, off: number, len: number): number {
    return this.phase === 'open' ? hostnet.write(this.fd, buf, off, len) : -hostnet.EPIPE;
  }

  writev(views: readonly Uint8Array[], offsets: Float64Array, lengths: Uint32Array, count: number): number {
    return this.phase === 'open' ? hostnet.writev(this.fd, oneView(views, count), offsets, lengths, count) : -hostnet.EPIPE;
  }

  shutdownWrite(): void {
    if (this.phase === 'open') hostnet.shutdownWrite(this.fd);
  }

  /** Sets what the owner hears of. On the own poller `events` is what it really has armed:
   *  while connecting that is writability (the connect's end), so the first watch() once open
   *  turns it off — left on, a half-open connection's always-writable socket would spin. */
  watch(read: boolean, write: boolean): void {
    if (this.phase === 'closed') return;
    if (this.token >= 0) {
      this.wantRead = read;
      this.wantWrite = write;
      const interest = interestOf(read, write);
      if (interest === this.interest) return;
      // The kernel reports at once what of the new interest is ready: what happened while it was
      // off raised no edge, and is heard so.
      if (EdgePoller.get().change(this.fd, this.token, interest) === 0) this.interest = interest;
      else if (!this.recheckDue) {
        // (epoll_ctl refuses no change to an fd it holds but for want of kernel memory; should it,
        // the owner looks on the next turn and its next watch() tries again. Not in a microtask:
        // an owner that watches again from that look, refused again, would chain them and hold
        // the event loop for as long as the refusals last.)
        setImmediate(this.recheck);
        this.recheckDue = true;
      }
      return;
    }
    if (!this.poller) return;
    const ev = (read ? hostnet.POLL_READABLE : 0) | (write ? hostnet.POLL_WRITABLE : 0);
    if (this.phase === 'connecting') {
      this.poller.start(hostnet.POLL_WRITABLE);
      this.events = hostnet.POLL_WRITABLE;
      return;
    }
    if (ev === this.events) return;
    this.events = ev;
    if (ev === 0) this.poller.stop();
    else this.poller.start(ev);
  }

  // ---- StreamQueue (offered only in the edge-triggered set, with SO_PEEK_OFF on) ----

  queued(): number {
    return this.phase === 'open' ? hostnet.inq(this.fd) : -hostnet.EPIPE;
  }

  /** Moves the kernel's peek offset to `offset` unless it is there already. */
  private seek(offset: number): number {
    if (offset === this.peekOff) return 0;
    const rc = hostnet.setPeekOff(this.fd, offset);
    if (rc === 0) this.peekOff = offset;
    return rc;
  }

  peek(offset: number, dst: Uint8Array, dstOff: number, len: number): number {
    if (this.phase !== 'open') return -hostnet.EPIPE;
    const rc = this.seek(offset);
    if (rc < 0) return rc;
    const n = hostnet.peek(this.fd, dst, dstOff, len);
    if (n > 0) this.peekOff += n;
    return n;
  }

  peekInto(offset: number, views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number {
    if (this.phase !== 'open') return -hostnet.EPIPE;
    const rc = this.seek(offset);
    if (rc < 0) return rc;
    const n = hostnet.peekv(this.fd, oneView(views, count), offsets, lengths, count);
    if (n > 0) this.peekOff += n;
    return n;
  }

  discard(n: number): number {
    if (this.phase !== 'open') return -hostnet.EPIPE;
    const r = hostnet.discard(this.fd, n);
    if (r > 0) this.peekOff = Math.max(0, this.peekOff - r); // as the kernel moves it
    return r;
  }

  get ended(): boolean {
    return this.finSeen;
  }

  takeError(): number {
    if (!this.errorSeen || this.phase !== 'open') return 0;
    this.errorSeen = false;
    return hostnet.soError(this.fd);
  }

  close(reset: boolean): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    this.queue = undefined;
    if (this.token >= 0) EdgePoller.get().remove(this.fd, this.token);
    this.token = -1;
    this.poller?.close();
    this.poller = undefined;
    if (reset) {
      try {
        hostnet.setLingerZero(this.fd);
      } catch {
        // the socket is going anyway
      }
    }
    hostnet.close(this.fd);
  }
}

const connectErr = newErrInfo();
const connectErrBuf = new Uint8Array(256);

/** The ICMP error that ended a connect, from the error queue (undefined for a RST or timeout). */
function readConnectError(fd: number, family: Family): HostError | undefined {
  let found: HostError | undefined;
  const e = connectErr;
  while (hostnet.recvErr(fd, family, connectErrBuf, 0, connectErrBuf.length, e) >= 0) {
    const fromHost = e.offenderValid && isLocalAddress(e.offender, family);
    found = {
      origin: e.origin,
      type: e.type,
      code: e.code,
      errno: e.errno,
      info: e.info,
      offender: e.offender.slice(),
      offenderValid: e.offenderValid && !fromHost,
    };
  }
  return found;
}

function errnoError(errno: number, syscall: string): Error {
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`${syscall} failed: ${code}`), { code, errno: -errno, syscall });
}

/** Whether `addr` (16 bytes, IPv4 in the first 4) is an address of this host (errors only). */
function isLocalAddress(addr: Uint8Array, family: Family): boolean {
  const text = family === 4 ? Array.from(addr.subarray(0, 4)).join('.') : formatIpv6(addr, 0);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.address === text) return true;
  }
  return false;
}

let peekOff: boolean | undefined;

/** Whether TCP sockets take SO_PEEK_OFF (Linux 6.9+), probed once. */
function peekOffSupported(): boolean {
  if (peekOff === undefined) {
    const fd = hostnet.openTcp(4);
    peekOff = hostnet.setPeekOff(fd, 0) === 0;
    hostnet.close(fd);
  }
  return peekOff;
}

type EchoMode = 'ping' | 'raw' | 'none';
let echoMode: EchoMode = 'none';

/** Which echo socket this process may open: a ping socket, else a raw one, else none. */
function probe(): EchoMode {
  for (const raw of [false, true]) {
    try {
      hostnet.close(hostnet.openIcmp(4, raw));
      return raw ? 'raw' : 'ping';
    } catch {
      // not permitted: try the next kind
    }
  }
  return 'none';
}
