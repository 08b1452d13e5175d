// TCP NAT: every guest TCP connection ends at one of our TcpConnections (src/tcp) and continues on
// a host socket, as slirp and passt do. The two halves meet here.
//
// Theory of operation
// - Outbound. A guest SYN to X:p (beyond us, or to the gateway, which reaches the host's loopback)
//   makes a flow in phase *connecting*: the connection remembers the SYN (acceptSyn) and a
//   non-blocking host connect to X:p starts with the guest's TTL minus one, so the SYN dies at the
//   hop the guest's would have (TCP traceroute). The guest hears nothing until the host knows:
//   connected → our SYN-ACK (phase *open*); refused → RST at once; an ICMP error → the same ICMP
//   error from the reporting hop, quoting the guest's SYN; the host's own resolution failure →
//   host unreachable from the gateway; silence → silence. Retransmitted SYNs meanwhile are ignored.
// - Inbound (port forwards). A listener accepts a host connection; the flow's connection opens
//   actively toward the guest's address (ARP/NDP resolves it; failure closes the host side).
// - Data, guest → host: in-order payload is written to the host socket straight from guest memory
//   (TcpEvents.data); what the socket does not take stays in the connection's receive buffer, and
//   the window we offer shrinks by that much — backpressure. `writable` drains it (deliver).
// - Data, host → guest: host reads go straight into the connection's send buffer (sendReserve);
//   reading pauses while that is full (the guest's window is closed or the guest is slow) and
//   resumes on `sendSpace`. Segments are built in place in the stack's output frame.
// - Close: each direction on its own. Host EOF → our FIN to the guest after the data; the guest's
//   FIN (with everything before it written) → shutdown(SHUT_WR) on the host socket. The host
//   socket closes once both directions ended; the connection lives on through TIME_WAIT.
//   A RST either way is passed on as a RST (SO_LINGER 0 toward the host).
// - Output is batched: input and host events mark flows dirty; flush() (after each TX batch and
//   host-event batch) runs output() on them. While the guest has no receive buffers, output stops
//   and resumes on the link's room callback.
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import type { Stack } from '../iface/stack.js';
import { LINK_LOCAL_ADDRESS } from '../iface/ipv6.js';
import { LINK_HEADROOM } from '../iface/link.js';
import { TcpConnection, TcpState, tcpStateName } from '../tcp/endpoint.js';
import type { OutSegment, TcpConfig, TcpEvents, TcpTransmitter } from '../tcp/endpoint.js';
import {
  IPV6_HEADER_LEN,
  IpProtocol,
  TcpFlags,
  TcpSegment,
  bytesEqual,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpV4,
  emitTcpV6,
  ipv4Read,
  tcpHeaderLength,
} from '../wire/index.js';
import type { Ipv4Repr, Ipv6Repr, TcpRepr } from '../wire/index.js';
import { LOOPBACK4, LOOPBACK6, clientAsSeen } from './addresses.js';
import type { AcceptedTcp, HostTcp, TcpListener, TcpSocket, TcpSocketEvents } from './host.js';
import { QUOTE4_MAX, QUOTE6_MAX, sendGuestError } from './flows.js';
import { Errno, refusedSend, translateError } from './icmp-errors.js';
import type { HostError } from './icmp-errors.js';

export interface TcpNatOptions {
  /** Connections to the gateway addresses reach the host's loopback (slirp's behaviour). */
  mapGateway?: boolean;
  /** Connections to the DNS address's port 53 go to this resolver (DNS over TCP). */
  dnsUpstream?: (family: 4 | 6) => { family: 4 | 6; addr: Uint8Array } | undefined;
  /** The guest's address for inbound connections of a family, when known. */
  guestAddress?: (family: 4 | 6) => Uint8Array | undefined;
  /** Bound on flows (connections in any state); SYNs beyond it are refused. */
  maxFlows?: number;
  /** Overrides for the endpoint's parameters (buffers, TIME_WAIT...). */
  tcp?: Partial<TcpConfig>;
  random?: () => number;
  log?: Log;
  /** Called when connections wait for the guest's receive buffers (ask the link for onRoom). */
  wantRoom?: () => void;
}

/** One inbound forward: a host port whose connections go to a guest port. */
export interface TcpForward {
  family: 4 | 6;
  /** Host address to listen on (4 or 16 bytes), or null for any. */
  addr: Uint8Array | null;
  hostPort: number;
  guestPort: number;
}

type Phase = 'connecting' | 'open';

/** One connection: the guest side's 4-tuple, our endpoint, the host socket. */
class TcpFlow {
  next: TcpFlow | undefined;
  phase: Phase = 'connecting';
  socket: TcpSocket | undefined;
  /** The guest's SYN as it sent it (outbound, until the host connect ends): ICMP errors quote it. */
  syn: Uint8Array | undefined;
  /** Host side: end of stream read / our FIN written (shutdown). */
  hostEof = false;
  hostShut = false;
  reading = false;
  writing = false;
  dirty = false;
  constructor(
    readonly hash: number,
    readonly family: 4 | 6,
    /** Guest address and port. */
    readonly guest: Uint8Array,
    readonly guestPort: number,
    /** The address and port the guest talks to (source of what we send it). */
    readonly remote: Uint8Array,
    readonly remotePort: number,
    readonly inbound: boolean,
    readonly conn: TcpConnection,
  ) {}
}

const EAGAIN = 11;
const ECONNRESET = 104;
const ETIMEDOUT = 110;

export class TcpNat implements TcpTransmitter {
  readonly stats = {
    connectsOut: 0,
    connectsIn: 0,
    established: 0,
    refused: 0,
    unreachable: 0,
    timedOut: 0,
    resetsToGuest: 0,
    resetsFromGuest: 0,
    tableFull: 0,
    bytesToHost: 0,
    bytesFromHost: 0,
    linkFull: 0,
  };
  /** The endpoints' counters, summed over closed connections and the open ones (status). */
  private readonly closedTotals: Record<string, number> = {};
  private readonly buckets = new Map<number, TcpFlow>();
  private count = 0;
  private readonly dirtyFlows: TcpFlow[] = [];
  private readonly waitingRoom = new Set<TcpFlow>();
  private readonly listeners: TcpListener[] = [];
  private readonly seg = new TcpSegment();
  private readonly repr: TcpRepr = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, payloadLength: 0 };
  private readonly ip4: Ipv4Repr = { src: 0, dst: 0, proto: IpProtocol.TCP, ttl: 64, id: 0, flags: 0b010, fragOffset: 0, payloadLength: 0, tos: 0 };
  private readonly ip6: Ipv6Repr = { src: new Uint8Array(16), dst: new Uint8Array(16), nextHeader: IpProtocol.TCP, hopLimit: 64, payloadLength: 0 };
  private readonly errBuf = new Uint8Array(IPV6_HEADER_LEN + 1280);
  private readonly rstBuf = new Uint8Array(IPV6_HEADER_LEN + 20);
  private readonly config4: TcpConfig;
  private readonly config6: TcpConfig;
  private readonly secret: number;
  private readonly mapGateway: boolean;
  private readonly maxFlows: number;
  private readonly log: Log;
  private readonly random: () => number;
  private readonly events: TcpEvents;

  constructor(
    private readonly stack: Stack,
    private readonly host: HostTcp,
    private readonly opts: TcpNatOptions = {},
  ) {
    this.mapGateway = opts.mapGateway ?? true;
    this.maxFlows = opts.maxFlows ?? 8192;
    this.log = opts.log ?? silentLog;
    this.random = opts.random ?? Math.random;
    this.secret = (this.random() * 0x1_0000_0000) >>> 0;
    const mtu = stack.config.mtu;
    // The MSS we announce: the link MTU less the IP and TCP headers (RFC 9293 §3.7.1).
    this.config4 = { ...opts.tcp, mss: mtu - 20 - 20 };
    this.config6 = { ...opts.tcp, mss: mtu - IPV6_HEADER_LEN - 20 };
    this.events = {
      established: (c) => this.established(flowOf(c)),
      data: (c, data) => this.toHost(flowOf(c), data),
      peerClosed: (c) => this.guestFin(flowOf(c)),
      sendSpace: (c) => this.readHost(flowOf(c)),
      aborted: (c, reason) => this.aborted(flowOf(c), reason),
      closed: (c) => this.remove(flowOf(c)),
    };
  }

  get flowCount(): number {
    return this.count;
  }

  /** The endpoints' counters (retransmits, timeouts, ...), all connections so far. */
  endpointTotals(): Record<string, number> {
    const out = { ...this.closedTotals };
    for (const head of this.buckets.values()) {
      for (let f: TcpFlow | undefined = head; f; f = f.next) for (const [k, v] of Object.entries(f.conn.stats)) out[k] = (out[k] ?? 0) + v;
    }
    return out;
  }

  /** Connections by state name, for status output. */
  states(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const head of this.buckets.values()) {
      for (let f: TcpFlow | undefined = head; f; f = f.next) {
        const name = f.phase === 'connecting' ? 'CONNECTING' : tcpStateName(f.conn.state);
        out[name] = (out[name] ?? 0) + 1;
      }
    }
    return out;
  }

  // ---- guest → us ----

  /** A TCP segment from the guest (the stack's tcpInput hook): checked, checksum verified. */
  input(family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number): void {
    const seg = this.seg.at(packet, l4Off, packet.length - l4Off);
    const srcOff = family === 4 ? 12 : 8;
    const dstOff = family === 4 ? 16 : 24;
    const alen = family === 4 ? 4 : 16;
    const hash = flowHash(family, packet, srcOff, seg.srcPort, packet, dstOff, seg.dstPort, alen, this.secret);
    const f = this.find(hash, family, packet, srcOff, seg.srcPort, packet, dstOff, seg.dstPort);
    const now = this.stack.now();
    if (f) {
      if (seg.syn && !seg.hasAck && f.conn.state === TcpState.TIME_WAIT) {
        // A new incarnation of a connection in TIME_WAIT (RFC 6191 lets a SYN reopen it): start
        // afresh.
        this.remove(f);
        return this.open(family, packet, l4Off, ttl, hash, now);
      }
      if (f.phase === 'connecting') {
        // The host has not answered yet: a retransmitted SYN waits with the first; a RST means
        // the guest gave up.
        if (seg.rst) this.drop(f, true);
        return;
      }
      if (seg.rst) this.stats.resetsFromGuest++;
      f.conn.input(seg, now);
      this.markDirty(f);
      return;
    }
    if (seg.rst) return;
    if (!seg.syn || seg.hasAck || seg.fin) return this.resetFor(family, packet, l4Off);
    this.open(family, packet, l4Off, ttl, hash, now);
  }

  /** A guest SYN for a new connection. */
  private open(family: 4 | 6, packet: Uint8Array, l4Off: number, ttl: number, hash: number, now: number): void {
    const seg = this.seg;
    const alen = family === 4 ? 4 : 16;
    const remote = packet.slice(family === 4 ? 16 : 24, (family === 4 ? 16 : 24) + alen);
    const port = seg.dstPort;
    // Where the host connects: the destination itself, or for our own addresses what stands
    // behind them (the host's loopback for the gateway, the resolver for the DNS address).
    let target: Uint8Array | undefined = remote;
    let hostFamily = family;
    let hostTtl = ttl - 1; // we are a router on its way: the host's SYN carries TTL - 1
    const ours = this.ourAddress(family, remote);
    if (ours) {
      hostTtl = -1;
      target = undefined;
      if (ours === 'gateway' && this.mapGateway) target = family === 4 ? LOOPBACK4 : LOOPBACK6;
      else if (ours === 'dns' && port === 53) {
        const r = this.opts.dnsUpstream?.(family);
        if (r) {
          target = r.addr;
          hostFamily = r.family;
        }
      }
      if (!target) return this.resetFor(family, packet, l4Off); // nothing listens there
    }
    if (this.count >= this.maxFlows) {
      this.stats.tableFull++;
      this.log.warn({ flows: this.count }, 'TCP flow table full: connection refused');
      return this.resetFor(family, packet, l4Off);
    }
    const conn = this.newConnection(family, now);
    if (!conn.acceptSyn(seg, now)) return;
    const guest = packet.slice(family === 4 ? 12 : 8, (family === 4 ? 12 : 8) + alen);
    const f = new TcpFlow(hash, family, guest, seg.srcPort, remote, port, false, conn);
    conn.owner = f;
    f.syn = packet.slice(0, Math.min(packet.length, family === 4 ? QUOTE4_MAX : QUOTE6_MAX));
    try {
      f.socket = this.host.connectTcp(hostFamily, target, port, hostTtl, this.socketEvents(f));
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'cannot open a host TCP socket: connection refused');
      return this.resetFor(family, packet, l4Off);
    }
    this.insert(f);
    this.stats.connectsOut++;
    this.log.debug({ family, port }, 'TCP connect from the guest');
  }

  // ---- host events ----

  private socketEvents(f: TcpFlow): TcpSocketEvents {
    return {
      connected: () => this.hostConnected(f),
      connectFailed: (errno, error) => this.hostConnectFailed(f, errno, error),
      readable: () => this.readHost(f),
      writable: () => this.hostWritable(f),
    };
  }

  private hostConnected(f: TcpFlow): void {
    if (!this.has(f) || f.phase !== 'connecting') return;
    f.phase = 'open';
    f.syn = undefined;
    f.conn.synAck(this.stack.now());
    this.markDirty(f);
    this.flush();
  }

  /** The host connect failed: tell the guest what a real network would have. */
  private hostConnectFailed(f: TcpFlow, errno: number, error: HostError | undefined): void {
    if (!this.has(f) || f.phase !== 'connecting') return;
    const syn = f.syn!;
    this.drop(f, false);
    if (errno === Errno.ECONNREFUSED && !error) {
      this.stats.refused++;
      return this.resetFor(f.family, syn, f.family === 4 ? (syn[0]! & 0x0f) * 4 : IPV6_HEADER_LEN);
    }
    if (errno === ETIMEDOUT && !error) {
      this.stats.timedOut++;
      return; // silence gives silence
    }
    const e = error ?? refusedSend(errno);
    const g = translateError(f.family, e);
    if (!g) {
      this.log.debug({ errno }, 'TCP connect failed without an ICMP equivalent');
      return;
    }
    this.stats.unreachable++;
    sendGuestError(this.stack, f.family, g, e, f.guest, syn, this.errBuf);
  }

  /** Host → guest: reads into the connection's send buffer while it has room. */
  private readHost(f: TcpFlow): void {
    const s = f.socket;
    if (!s || f.hostEof || !this.has(f)) return;
    for (;;) {
      const space = f.conn.sendReserve();
      if (space.length === 0) break; // the guest is behind: wait for sendSpace
      const n = s.read(space, 0, space.length);
      if (n > 0) {
        f.conn.sendCommit(n);
        this.stats.bytesFromHost += n;
        if (n < space.length) break;
        continue;
      }
      if (n === -EAGAIN) break;
      if (n === 0) {
        f.hostEof = true;
        f.conn.close(); // our FIN to the guest, after the data
        this.closeHostIfDone(f);
        break;
      }
      // A host-side reset or error: the guest gets a RST.
      this.log.debug({ errno: -n }, 'host TCP socket failed: resetting the guest connection');
      this.stats.resetsToGuest++;
      f.conn.abort();
      this.drop(f, n !== -ECONNRESET);
      this.flush();
      return;
    }
    this.watch(f);
    this.markDirty(f);
    this.flush();
  }

  /** The host socket has room: write out what the connection holds. */
  private hostWritable(f: TcpFlow): void {
    if (!this.has(f) || !f.socket) return;
    f.conn.deliver((data) => this.toHost(f, data));
    this.watch(f);
    this.markDirty(f); // the window reopened
    this.flush();
  }

  /** Guest → host: writes straight from the segment; returns what the host socket took. */
  private toHost(f: TcpFlow, data: Uint8Array): number {
    const s = f.socket;
    if (!s) return 0;
    const n = s.write(data, 0, data.length);
    if (n >= 0) {
      this.stats.bytesToHost += n;
      if (n < data.length) this.wantWrite(f);
      return n;
    }
    if (n === -EAGAIN) {
      this.wantWrite(f);
      return 0;
    }
    // The host peer is gone (EPIPE, ECONNRESET): the guest gets a RST once the input is done.
    this.log.debug({ errno: -n }, 'host TCP write failed: resetting the guest connection');
    queueMicrotask(() => {
      if (!this.has(f)) return;
      this.stats.resetsToGuest++;
      f.conn.abort();
      this.drop(f, true);
      this.flush();
    });
    return 0;
  }

  private wantWrite(f: TcpFlow): void {
    if (f.writing) return;
    f.writing = true;
    f.socket?.watch(f.reading, true);
  }

  /** Sets the host socket's interest: read while the send buffer has room, write while data waits. */
  private watch(f: TcpFlow): void {
    const s = f.socket;
    if (!s) return;
    // Reads start once the connection is synchronized: what the host sends first waits in the
    // socket, not in a connection that may never open.
    const read = !f.hostEof && f.phase === 'open' && f.conn.state >= TcpState.ESTABLISHED && f.conn.sendSpace > 0;
    const write = f.conn.recvBuffered > 0;
    if (read === f.reading && write === f.writing) return;
    f.reading = read;
    f.writing = write;
    s.watch(read, write);
  }

  // ---- connection events ----

  private established(f: TcpFlow): void {
    this.stats.established++;
    this.watch(f);
  }

  /** The guest's FIN, everything before it written: half-close toward the host. */
  private guestFin(f: TcpFlow): void {
    if (!f.socket || f.hostShut) return;
    f.hostShut = true;
    f.socket.shutdownWrite();
    this.closeHostIfDone(f);
  }

  private closeHostIfDone(f: TcpFlow): void {
    if (!f.hostEof || !f.hostShut || !f.socket) return;
    f.socket.close(false);
    f.socket = undefined;
  }

  private aborted(f: TcpFlow, reason: 'reset' | 'timeout' | 'refused'): void {
    this.log.debug({ reason, inbound: f.inbound }, 'TCP connection aborted');
    this.drop(f, true);
  }

  // ---- inbound ----

  /** Starts the listeners of port forwards. Throws (EADDRINUSE...) like HostTcp.listenTcp. */
  listen(forwards: readonly TcpForward[]): void {
    for (const fw of forwards) {
      this.listeners.push(this.host.listenTcp(fw.family, fw.addr, fw.hostPort, (acc) => this.accept(acc, fw.guestPort)));
    }
  }

  /** A host connection to a forwarded port: open toward the guest. */
  private accept(acc: AcceptedTcp, guestPort: number): void {
    // The guest side keeps the client's family when the guest has an address in it.
    let family = acc.family;
    let guest = this.opts.guestAddress?.(family);
    if (!guest) {
      family = family === 4 ? 6 : 4;
      guest = this.opts.guestAddress?.(family);
    }
    if (!guest || this.count >= this.maxFlows) {
      this.log.warn({ port: acc.localPort, reason: guest ? 'flow table full' : 'guest address unknown' }, 'forwarded TCP connection refused');
      return acc.reject();
    }
    // The client as the guest sees it: itself when it can be routed back through us, else the
    // gateway (the host's loopback, another family).
    const remote = clientAsSeen(this.stack.config, family, acc.peer);
    const alen = family === 4 ? 4 : 16;
    const hash = flowHash(family, guest, 0, guestPort, remote, 0, acc.peerPort, alen, this.secret);
    if (this.find(hash, family, guest, 0, guestPort, remote, 0, acc.peerPort)) return acc.reject();
    const now = this.stack.now();
    const conn = this.newConnection(family, now);
    const f = new TcpFlow(hash, family, guest.slice(), guestPort, remote, acc.peerPort, true, conn);
    conn.owner = f;
    f.phase = 'open';
    f.socket = acc.attach(this.socketEvents(f));
    this.insert(f);
    this.stats.connectsIn++;
    this.log.debug({ port: acc.localPort, guestPort, family }, 'forwarded TCP connection: SYN to the guest');
    conn.connect(now);
    this.markDirty(f);
    this.flush();
  }

  /** The guest's address did not resolve (ARP/NDP) for a packet of this flow. */
  unreachable(tag: unknown): boolean {
    if (!(tag instanceof TcpFlow) || !this.has(tag)) return false;
    this.log.warn({ inbound: tag.inbound, guestPort: tag.guestPort }, 'the guest did not answer ARP/NDP: TCP connection closed');
    this.drop(tag, true);
    return true;
  }

  // ---- output ----

  /** Sends what the dirty connections have due (after a batch of guest frames or host events). */
  flush(): void {
    const list = this.dirtyFlows;
    const now = this.stack.now();
    for (let i = 0; i < list.length; i++) {
      const f = list[i]!;
      f.dirty = false;
      if (this.has(f)) this.outputFlow(f, now);
    }
    list.length = 0;
    if (this.waitingRoom.size > 0) this.opts.wantRoom?.();
  }

  private outputFlow(f: TcpFlow, now: number): void {
    f.conn.output(now);
    this.watch(f);
  }

  /** TcpTransmitter: one segment into the stack's output frame, then to the guest. */
  transmit(conn: TcpConnection, seg: OutSegment): boolean {
    const f = flowOf(conn);
    if (seg.dataLength > 0 && !this.stack.linkHasRoom()) {
      // The guest has no receive buffers: stop here and resume when it posts some.
      this.stats.linkFull++;
      this.waitingRoom.add(f);
      return false;
    }
    const r = this.repr;
    r.srcPort = f.remotePort;
    r.dstPort = f.guestPort;
    r.seq = seg.seq;
    r.ack = seg.ack;
    r.flags = seg.flags;
    r.window = seg.window;
    r.options = seg.options;
    r.payloadLength = seg.dataLength;
    const o = this.stack.out;
    const ipOff = LINK_HEADROOM;
    const tcpOff = ipOff + (f.family === 4 ? 20 : IPV6_HEADER_LEN);
    const hl = tcpHeaderLength(r);
    const end = tcpOff + hl + seg.dataLength;
    if (end > o.length) return false;
    if (seg.dataLength > 0) conn.copySendData(seg.dataOffset, seg.dataLength, o, tcpOff + hl);
    if (f.family === 4) {
      const src = ipv4Read(f.remote, 0);
      const dst = ipv4Read(f.guest, 0);
      emitTcpV4(o, tcpOff, r, src, dst);
      const ip = this.ip4;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = hl + seg.dataLength;
      emitIpv4Header(o, ipOff, ip);
      this.stack.ipv4.sendToGuest(o.subarray(ipOff, end), f);
    } else {
      emitTcpV6(o, tcpOff, r, f.remote, f.guest);
      const ip = this.ip6;
      ip.src = f.remote;
      ip.dst = f.guest;
      ip.payloadLength = hl + seg.dataLength;
      emitIpv6Header(o, ipOff, ip);
      this.stack.ipv6?.sendToGuest(o.subarray(ipOff, end), f);
    }
    return true;
  }

  /** The guest posted receive buffers: connections that stopped for room go on. */
  linkRoom(): void {
    if (this.waitingRoom.size === 0) return;
    for (const f of this.waitingRoom) this.markDirty(f);
    this.waitingRoom.clear();
    this.flush();
  }

  /** Whether a connection waits for the guest's receive buffers (the runtime asks the link). */
  get wantsRoom(): boolean {
    return this.waitingRoom.size > 0;
  }

  /** RFC 9293 §3.10.7.1: a segment for no connection gets a RST (never a RST for a RST). */
  private resetFor(family: 4 | 6, packet: Uint8Array, l4Off: number): void {
    const seg = this.seg.at(packet, l4Off, packet.length - l4Off);
    const r = this.repr;
    r.srcPort = seg.dstPort;
    r.dstPort = seg.srcPort;
    r.window = 0;
    r.options = undefined;
    r.payloadLength = 0;
    if (seg.hasAck) {
      r.seq = seg.ack;
      r.ack = 0;
      r.flags = TcpFlags.RST;
    } else {
      r.seq = 0;
      r.ack = (seg.seq + seg.segmentLength) >>> 0;
      r.flags = TcpFlags.RST | TcpFlags.ACK;
    }
    const b = this.rstBuf;
    this.stats.resetsToGuest++;
    if (family === 4) {
      const src = ipv4Read(packet, 16);
      const dst = ipv4Read(packet, 12);
      emitTcpV4(b, 20, r, src, dst);
      const ip = this.ip4;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = 20;
      emitIpv4Header(b, 0, ip);
      this.stack.ipv4.sendToGuest(b.subarray(0, 40));
    } else {
      const src = packet.subarray(24, 40);
      const dst = packet.subarray(8, 24);
      emitTcpV6(b, IPV6_HEADER_LEN, r, src, dst);
      const ip = this.ip6;
      ip.src = src;
      ip.dst = dst;
      ip.payloadLength = 20;
      emitIpv6Header(b, 0, ip);
      this.stack.ipv6?.sendToGuest(b.subarray(0, IPV6_HEADER_LEN + 20));
    }
  }

  // ---- timers ----

  pollAt(): number {
    let at = Infinity;
    for (const head of this.buckets.values()) for (let f: TcpFlow | undefined = head; f; f = f.next) at = Math.min(at, f.conn.pollAt());
    return at;
  }

  poll(now: number): void {
    const due: TcpFlow[] = [];
    for (const head of this.buckets.values()) for (let f: TcpFlow | undefined = head; f; f = f.next) if (f.conn.pollAt() <= now) due.push(f);
    for (const head of this.buckets.values()) {
      for (let f: TcpFlow | undefined = head; f; f = f.next) if (f.phase === 'open' && f.conn.state === TcpState.CLOSED) due.push(f);
    }
    for (const f of due) {
      if (!this.has(f)) continue;
      if (f.phase === 'open' && f.conn.state === TcpState.CLOSED) {
        this.remove(f); // closed without an event (cannot happen today; never leak the slot)
        continue;
      }
      f.conn.poll(now);
      if (this.has(f)) this.watch(f);
    }
  }

  /** Closes every connection (RST toward both sides) and the listeners. */
  closeAll(): void {
    for (const l of this.listeners) l.close();
    this.listeners.length = 0;
    for (const head of [...this.buckets.values()]) {
      for (let f: TcpFlow | undefined = head; f; f = f.next) {
        if (f.phase === 'open' && f.conn.state !== TcpState.CLOSED) f.conn.abort();
        f.socket?.close(true);
        f.socket = undefined;
      }
    }
    this.buckets.clear();
    this.count = 0;
  }

  // ---- the table ----

  private newConnection(family: 4 | 6, now: number): TcpConnection {
    // RFC 6528: ISN = a 4 µs clock + a keyed function of the connection; here a random 32 bits
    // per connection on top of the clock (the 4-tuple is not reused within a clock wrap).
    const iss = (Math.floor(now * 250) + ((this.random() * 0x1_0000_0000) >>> 0)) >>> 0;
    const tsOffset = (this.random() * 0x1_0000_0000) >>> 0;
    return new TcpConnection(family === 4 ? this.config4 : this.config6, this.events, this, { iss, tsOffset });
  }

  private markDirty(f: TcpFlow): void {
    if (f.dirty) return;
    f.dirty = true;
    this.dirtyFlows.push(f);
  }

  private find(hash: number, family: 4 | 6, a: Uint8Array, aOff: number, aPort: number, b: Uint8Array, bOff: number, bPort: number): TcpFlow | undefined {
    const alen = family === 4 ? 4 : 16;
    for (let f = this.buckets.get(hash); f; f = f.next) {
      if (f.family !== family || f.guestPort !== aPort || f.remotePort !== bPort) continue;
      if (bytesEqual(f.guest, 0, a, aOff, alen) && bytesEqual(f.remote, 0, b, bOff, alen)) return f;
    }
    return undefined;
  }

  private insert(f: TcpFlow): void {
    f.next = this.buckets.get(f.hash);
    this.buckets.set(f.hash, f);
    this.count++;
  }

  private has(f: TcpFlow): boolean {
    for (let g = this.buckets.get(f.hash); g; g = g.next) if (g === f) return true;
    return false;
  }

  /** Forgets a flow after its connection closed. */
  private remove(f: TcpFlow): void {
    this.closeSocket(f, false);
    this.unlink(f);
  }

  /** Drops a flow now: its host socket closes (with a RST when `reset`). */
  private drop(f: TcpFlow, reset: boolean): void {
    this.closeSocket(f, reset);
    this.unlink(f);
  }

  private closeSocket(f: TcpFlow, reset: boolean): void {
    if (!f.socket) return;
    f.socket.close(reset);
    f.socket = undefined;
  }

  private unlink(f: TcpFlow): void {
    this.waitingRoom.delete(f);
    if (this.has(f)) for (const [k, v] of Object.entries(f.conn.stats)) this.closedTotals[k] = (this.closedTotals[k] ?? 0) + v;
    let prev: TcpFlow | undefined;
    for (let g = this.buckets.get(f.hash); g; prev = g, g = g.next) {
      if (g !== f) continue;
      if (prev) prev.next = g.next;
      else if (g.next) this.buckets.set(f.hash, g.next);
      else this.buckets.delete(f.hash);
      this.count--;
      return;
    }
  }

  // ---- addresses ----

  private ourAddress(family: 4 | 6, addr: Uint8Array): 'gateway' | 'dns' | 'other' | undefined {
    const c = this.stack.config;
    if (family === 4) {
      const a = ipv4Read(addr, 0);
      if (a === c.ipv4.gateway) return 'gateway';
      if (a === c.ipv4.dns) return 'dns';
      return this.stack.isOurIpv4(a) ? 'other' : undefined;
    }
    if (!c.ipv6) return undefined;
    if (bytesEqual(c.ipv6.gateway, 0, addr, 0, 16)) return 'gateway';
    if (bytesEqual(c.ipv6.dns, 0, addr, 0, 16)) return 'dns';
    return bytesEqual(LINK_LOCAL_ADDRESS, 0, addr, 0, 16) ? 'gateway' : undefined;
  }
}

function flowOf(c: TcpConnection): TcpFlow {
  return c.owner as TcpFlow;
}

/** A 32-bit hash of a flow's 4-tuple (FNV-1a, keyed), read in place. */
function flowHash(family: 4 | 6, a: Uint8Array, aOff: number, aPort: number, b: Uint8Array, bOff: number, bPort: number, alen: number, key: number): number {
  let h = (0x811c9dc5 ^ key ^ family) >>> 0;
  for (let i = 0; i < alen; i++) h = Math.imul(h ^ a[aOff + i]!, 0x01000193);
  for (let i = 0; i < alen; i++) h = Math.imul(h ^ b[bOff + i]!, 0x01000193);
  h = Math.imul(h ^ aPort, 0x01000193);
  h = Math.imul(h ^ bPort, 0x01000193);
  return h >>> 0;
}
