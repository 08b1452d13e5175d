// A simulated network behind the gateway: the routers and hosts of a Topology answer the guest as
// real ones would, with nothing leaving the machine.
//
// A guest packet whose destination the topology claims (routeFor) comes here from the gateway
// (vunet's stack, which already answered a TTL of 1: it is the first hop). It walks the path hop by
// hop, in zero real time but accounting simulated time:
// - on each link: the MTU (a packet too big with DF, or any IPv6 one, gets fragmentation needed /
//   packet too big from the node before the link; an IPv4 packet without DF is fragmented on the
//   link and reassembled by the destination, which nobody can tell apart from carrying it whole),
//   loss (a seeded draw), and time: queueing behind what the link still sends at its rate,
//   serialization, the one-way delay and jitter;
// - at each router on the way: TTL / hop limit minus one; at zero, time exceeded from that router;
// - at the node that owns the route: a router with `unreachable` there answers net unreachable; a
//   host that is down gets host unreachable from the node before it once resolution gives up;
//   otherwise the destination answers (answer()).
// Whatever a node sends back (answers, ICMP errors, TCP segments) walks the path to the gateway
// the same way, with a TTL of 64 that each router decrements, and is delivered to the guest when
// its simulated arrival time comes (the gateway forwards it: TTL minus one). ICMP errors are rate
// limited per node as Linux limits them (icmp_ratelimit per destination with a burst of six,
// icmp_msgs_per_sec / icmp_msgs_burst in all; echo replies and packet too big are never limited).
import type { Inany, TcpRepr } from '../wire/index.js';
import {
  IPV6_HEADER_LEN,
  IpProtocol,
  TcpFlags,
  TcpSegment,
  checksumUpdate16,
  emitTcpV4,
  emitTcpV6,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  Icmpv6ParamProblemCode,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  emitIcmpv4,
  emitIcmpv4Error,
  emitIcmpv6,
  emitIcmpv6Error,
  emitIpv4Header,
  emitIpv6Header,
  emitUdpV4,
  emitUdpV6,
  icmpv4IsError,
  icmpv6IsError,
  inanyBytes,
  internetChecksum,
  ipFamily,
  ipv4Read,
} from '../wire/index.js';
import { SimTcpServices } from './tcp-services.js';
import type { SimLink, SimNode, SimService, Topology } from './topology.js';
import { routeFor } from './topology.js';

/** How the simulated network reaches the guest and the clock: the stack, or a test. */
export interface SimPort {
  now(): number;
  /** A packet for the guest, forwarded by the gateway (its TTL already decremented). */
  toGuest(family: 4 | 6, packet: Uint8Array): void;
  /** The gateway's own address of a family (4 or 16 bytes): the source of its ICMP errors. */
  gatewayAddress(family: 4 | 6): Uint8Array | undefined;
}

/** Errors a node sends, before they are given a family's type and code. */
const Err = { NET: 0, HOST: 1, PROTOCOL: 2, PORT: 3, ADMIN: 4, TOO_BIG: 5, TTL: 6 } as const;
type Err = (typeof Err)[keyof typeof Err];

/** Bound on packets in flight back to the guest (the rest are lost, as a full queue loses them). */
const MAX_IN_FLIGHT = 4096;
/** Bound on the per-destination rate-limit entries of one node. */
const MAX_PEERS = 1024;
/** Linux's XRLIM_BURST_FACTOR: a destination may get six errors at once. */
const BURST_FACTOR = 6;
const TTL_DEFAULT = 64;

interface InFlight {
  at: number;
  order: number;
  family: 4 | 6;
  packet: Uint8Array;
}

/** A node's ICMP error limits, as Linux keeps them (icmp_global_allow, inet_peer_xrlim_allow). */
class IcmpLimiter {
  private credit: number;
  private stamp = 0;
  private readonly peers = new Map<string, { tokens: number; stamp: number }>();
  constructor(private readonly node: SimNode) {
    this.credit = node.msgsBurst;
  }

  allow(family: 4 | 6, dst: Uint8Array, now: number): boolean {
    const n = this.node;
    if (n.msgsPerSec > 0) {
      this.credit = Math.min(n.msgsBurst, this.credit + ((now - this.stamp) * n.msgsPerSec) / 1000);
      this.stamp = now;
      if (this.credit < 1) return false;
    }
    if (n.ratelimitMs > 0) {
      const key = `${family}:${dst.join('.')}`;
      let p = this.peers.get(key);
      if (!p) {
        if (this.peers.size >= MAX_PEERS) this.peers.delete(this.peers.keys().next().value!);
        p = { tokens: BURST_FACTOR * n.ratelimitMs, stamp: now };
        this.peers.set(key, p);
      }
      p.tokens = Math.min(BURST_FACTOR * n.ratelimitMs, p.tokens + now - p.stamp);
      p.stamp = now;
      if (p.tokens < n.ratelimitMs) return false;
      p.tokens -= n.ratelimitMs;
    }
    if (n.msgsPerSec > 0) this.credit -= 1;
    return true;
  }
}

export class SimNetwork {
  readonly stats = { packetsIn: 0, delivered: 0, lost: 0, errorsSent: 0, rateLimited: 0, tooBig: 0, timeExceeded: 0, queueFull: 0 };
  readonly tcp: SimTcpServices;
  private readonly random: () => number;
  /** When each link is free again, per direction (a→b at 2i, b→a at 2i + 1). */
  private readonly busyUntil: Float64Array;
  private readonly linkIndex = new Map<SimLink, number>();
  private readonly limiters: IcmpLimiter[];
  /** Packets on their way back, a binary heap by arrival time (then order sent). */
  private readonly heap: InFlight[] = [];
  private order = 0;
  /** While a host handles a segment: when it arrived there (simulated time). */
  private arrivedAt: number | undefined;
  private ipId = 0;
  private readonly buf = new Uint8Array(IPV6_HEADER_LEN + 0x10000);
  private readonly seg = new TcpSegment();
  private readonly rst: TcpRepr = { srcPort: 0, dstPort: 0, seq: 0, ack: 0, flags: 0, window: 0, payloadLength: 0 };

  constructor(
    readonly topology: Topology,
    private readonly port: SimPort,
  ) {
    this.random = mulberry32(topology.seed);
    this.busyUntil = new Float64Array(topology.links.length * 2);
    topology.links.forEach((l, i) => this.linkIndex.set(l, i));
    this.limiters = topology.nodes.map((n) => new IcmpLimiter(n));
    // A host's segments leave when its input arrived (answers), or now (its timers).
    this.tcp = new SimTcpServices(
      (node, family, p) => this.fromNode(node, family, p, this.arrivedAt ?? this.port.now()),
      () => this.port.now(),
      this.random,
    );
  }

  /** Whether a guest packet to the `family` address at packet[dstOff] is ours: the topology has a
   *  route for it, or the NAT is off (then everything beyond the gateway is). */
  claims(family: 4 | 6, packet: Uint8Array, dstOff: number): boolean {
    return !this.topology.nat || routeFor(this.topology, family, packet, dstOff) !== undefined;
  }

  /** A guest packet (whole, checked by the stack, TTL as the guest sent it: at least 2) that
   *  claims() took. */
  input(family: 4 | 6, packet: Uint8Array): void {
    this.stats.packetsIn++;
    const t = this.topology;
    const fam = ipFamily(family);
    const now = this.port.now();
    const route = routeFor(t, family, packet, fam.dstOff);
    if (!route) return this.error(t.gateway, family, packet, Err.NET, 0, now);
    const df = family === 6 || (packet[6]! & 0x40) !== 0;
    // The gateway forwarded it: one hop spent.
    let ttl = (family === 4 ? packet[8]! : packet[7]!) - 1;
    let node = t.gateway;
    let at = now;
    let previous = node;
    while (node !== route.node) {
      const link = t.nextHop[node.index]![route.node.index];
      if (!link) return this.error(node, family, packet, Err.NET, 0, at);
      if (packet.length > link.mtu && df) {
        this.stats.tooBig++;
        return this.error(node, family, packet, Err.TOO_BIG, link.mtu, at, ttl);
      }
      const arrival = this.cross(link, node, packet.length, at);
      if (arrival < 0) return;
      at = arrival;
      previous = node;
      node = link.a === node ? link.b : link.a;
      if (node === route.node) break;
      // A router on the way.
      if (--ttl <= 0) {
        this.stats.timeExceeded++;
        return this.error(node, family, packet, Err.TTL, 0, at, 1);
      }
    }
    if (route.unreachable) return this.error(node, family, packet, Err.NET, 0, at, ttl);
    if (node.down) return this.error(previous, family, packet, Err.HOST, 0, at + t.resolveMs, ttl);
    this.answer(node, family, packet, at, ttl);
  }

  /** The destination `node` got `packet` at `at` (TTL `ttl` left): it answers as a host or a
   *  router running Linux would. */
  private answer(node: SimNode, family: 4 | 6, packet: Uint8Array, at: number, ttl: number): void {
    const l4 = family === 4 ? (packet[0]! & 0x0f) * 4 : IPV6_HEADER_LEN;
    const proto = family === 4 ? packet[9]! : packet[6]!;
    if (family === 4 && ((packet[6]! & 0x3f) !== 0 || packet[7] !== 0)) return; // a fragment: the stack reassembles, none should come
    switch (proto) {
      case IpProtocol.ICMP:
      case IpProtocol.ICMPV6: {
        const echo = family === 4 ? Icmpv4Type.ECHO_REQUEST : Icmpv6Type.ECHO_REQUEST;
        if ((family === 4) !== (proto === IpProtocol.ICMP)) break;
        if (packet[l4] === echo) this.echoReply(node, family, packet, l4, at);
        return; // other ICMP is taken silently
      }
      case IpProtocol.UDP: {
        const dstPort = (packet[l4 + 2]! << 8) | packet[l4 + 3]!;
        const rule = this.rule(node, 'udp', dstPort);
        if (rule === 'silent') return;
        if (rule === 'filtered') return this.error(node, family, packet, Err.ADMIN, 0, at, ttl);
        if (rule) {
          if (rule.serve === 'echo') this.udpEcho(node, family, packet, l4, at);
          return;
        }
        return this.error(node, family, packet, Err.PORT, 0, at, ttl);
      }
      case IpProtocol.TCP: {
        const dstPort = (packet[l4 + 2]! << 8) | packet[l4 + 3]!;
        const rule = this.rule(node, 'tcp', dstPort);
        if (rule === 'silent') return;
        if (rule === 'filtered') return this.error(node, family, packet, Err.ADMIN, 0, at, ttl);
        const link = node.links[0];
        if (rule) {
          this.arrivedAt = at;
          try {
            if (this.tcp.input(node, rule, family, packet, l4, link ? link.mtu : 1500)) return;
          } finally {
            this.arrivedAt = undefined;
          }
        }
        return this.refuse(node, family, packet, l4, at);
      }
    }
    this.error(node, family, packet, Err.PROTOCOL, 0, at, ttl);
  }

  /** What `node` does with a port: a service, a filter, or nothing (closed). Routers serve none. */
  private rule(node: SimNode, proto: 'tcp' | 'udp', port: number): SimService | 'filtered' | 'silent' | undefined {
    const key = `${proto}/${port}`;
    if (node.silent.has(key)) return 'silent';
    if (node.filtered.has(key)) return 'filtered';
    return node.services.find((s) => s.proto === proto && s.port === port);
  }

  // ---- what nodes send ----

  private echoReply(node: SimNode, family: 4 | 6, packet: Uint8Array, l4: number, at: number): void {
    const b = this.buf;
    const fam = ipFamily(family);
    const dataLen = packet.length - l4 - 8;
    if (dataLen < 0) return;
    b.set(packet.subarray(l4 + 8), fam.headerLen + 8);
    const rest = ((packet[l4 + 4]! << 24) | (packet[l4 + 5]! << 16) | (packet[l4 + 6]! << 8) | packet[l4 + 7]!) >>> 0;
    const src = packet.subarray(fam.dstOff, fam.dstOff + fam.alen);
    const dst = packet.subarray(fam.srcOff, fam.srcOff + fam.alen);
    if (family === 4) {
      emitIcmpv4(b, 20, { type: Icmpv4Type.ECHO_REPLY, code: 0, rest, payloadLength: dataLen });
      this.ipv4Header(ipv4Read(src, 0), ipv4Read(dst, 0), IpProtocol.ICMP, 8 + dataLen);
    } else {
      emitIcmpv6(b, IPV6_HEADER_LEN, { type: Icmpv6Type.ECHO_REPLY, code: 0, rest, payloadLength: dataLen }, src, dst);
      emitIpv6Header(b, 0, { src, dst, nextHeader: IpProtocol.ICMPV6, hopLimit: TTL_DEFAULT, payloadLength: 8 + dataLen });
    }
    this.fromNode(node, family, b.subarray(0, fam.headerLen + 8 + dataLen), at);
  }

  private udpEcho(node: SimNode, family: 4 | 6, packet: Uint8Array, l4: number, at: number): void {
    const b = this.buf;
    const fam = ipFamily(family);
    const udpLen = (packet[l4 + 4]! << 8) | packet[l4 + 5]!;
    const dataLen = Math.min(udpLen, packet.length - l4) - 8;
    if (dataLen < 0) return;
    b.set(packet.subarray(l4 + 8, l4 + 8 + dataLen), fam.headerLen + 8);
    const repr = { srcPort: (packet[l4 + 2]! << 8) | packet[l4 + 3]!, dstPort: (packet[l4]! << 8) | packet[l4 + 1]!, payloadLength: dataLen };
    const src = packet.subarray(fam.dstOff, fam.dstOff + fam.alen);
    const dst = packet.subarray(fam.srcOff, fam.srcOff + fam.alen);
    if (family === 4) {
      emitUdpV4(b, 20, repr, ipv4Read(src, 0), ipv4Read(dst, 0));
      this.ipv4Header(ipv4Read(src, 0), ipv4Read(dst, 0), IpProtocol.UDP, 8 + dataLen);
    } else {
      emitUdpV6(b, IPV6_HEADER_LEN, repr, src, dst);
      emitIpv6Header(b, 0, { src, dst, nextHeader: IpProtocol.UDP, hopLimit: TTL_DEFAULT, payloadLength: 8 + dataLen });
    }
    this.fromNode(node, family, b.subarray(0, fam.headerLen + 8 + dataLen), at);
  }

  /** RFC 9293 §3.10.7.1: a segment to a closed port gets a RST (never one for a RST). */
  private refuse(node: SimNode, family: 4 | 6, packet: Uint8Array, l4: number, at: number): void {
    const seg = this.seg.at(packet, l4, packet.length - l4);
    if (seg.rst) return;
    const fam = ipFamily(family);
    const r = this.rst;
    r.srcPort = seg.dstPort;
    r.dstPort = seg.srcPort;
    r.seq = seg.hasAck ? seg.ack : 0;
    r.ack = seg.hasAck ? 0 : (seg.seq + seg.segmentLength) >>> 0;
    r.flags = seg.hasAck ? TcpFlags.RST : TcpFlags.RST | TcpFlags.ACK;
    const src = packet.subarray(fam.dstOff, fam.dstOff + fam.alen);
    const dst = packet.subarray(fam.srcOff, fam.srcOff + fam.alen);
    const b = this.buf;
    if (family === 4) {
      emitTcpV4(b, 20, r, ipv4Read(src, 0), ipv4Read(dst, 0));
      this.ipv4Header(ipv4Read(src, 0), ipv4Read(dst, 0), IpProtocol.TCP, 20);
    } else {
      emitTcpV6(b, IPV6_HEADER_LEN, r, src, dst);
      emitIpv6Header(b, 0, { src, dst, nextHeader: IpProtocol.TCP, hopLimit: TTL_DEFAULT, payloadLength: 20 });
    }
    this.fromNode(node, family, b.subarray(0, fam.headerLen + 20), at);
  }

  /**
   * An ICMP error from `node` about `packet` (as the guest sent it; `ttl`: what was left of its
   * TTL where it died, as the quote shows it), within the node's rate limits.
   */
  private error(node: SimNode, family: 4 | 6, packet: Uint8Array, kind: Err, mtu: number, at: number, ttl?: number): void {
    const src = node === this.topology.gateway ? this.port.gatewayAddress(family) : sourceOf(node, family);
    if (!src || isIcmpError(family, packet)) return; // never an error about an error (RFC 1122 §3.2.2, RFC 4443 §2.4 (e))
    const fam = ipFamily(family);
    const guest = packet.subarray(fam.srcOff, fam.srcOff + fam.alen);
    // Linux never limits packet too big (PMTU discovery needs every one).
    if (kind !== Err.TOO_BIG && !this.limiters[node.index]!.allow(family, guest, at)) {
      this.stats.rateLimited++;
      return;
    }
    this.stats.errorsSent++;
    // The quote: the packet as it arrived at `node`.
    const quote = packet.slice(0, Math.min(packet.length, fam.errorMax));
    if (ttl !== undefined) {
      if (family === 4) {
        quote[8] = ttl;
        quote[10] = quote[11] = 0;
        const sum = internetChecksum(quote, 0, (quote[0]! & 0x0f) * 4, 0);
        quote[10] = sum >> 8;
        quote[11] = sum & 0xff;
      } else quote[7] = ttl;
    }
    const b = this.buf;
    let n: number;
    if (family === 4) {
      const [type, code] = ICMP4[kind];
      n = emitIcmpv4Error(b, 20, type, code, kind === Err.TOO_BIG ? mtu & 0xffff : 0, quote, 0, quote.length, fam.errorMax);
      this.ipv4Header(ipv4Read(src, 0), ipv4Read(guest, 0), IpProtocol.ICMP, n);
    } else {
      const [type, code] = ICMP6[kind];
      const rest = kind === Err.TOO_BIG ? mtu : kind === Err.PROTOCOL ? 6 : 0;
      n = emitIcmpv6Error(b, IPV6_HEADER_LEN, type, code, rest, quote, 0, quote.length, fam.errorMax, src, guest);
      emitIpv6Header(b, 0, { src, dst: guest, nextHeader: IpProtocol.ICMPV6, hopLimit: TTL_DEFAULT, payloadLength: n });
    }
    this.fromNode(node, family, b.subarray(0, fam.headerLen + n), at);
  }

  private ipv4Header(src: number, dst: number, proto: number, payloadLength: number): void {
    this.ipId = (this.ipId + 1) & 0xffff;
    emitIpv4Header(this.buf, 0, { src, dst, proto, ttl: TTL_DEFAULT, id: this.ipId, flags: 0, fragOffset: 0, payloadLength, tos: 0 });
  }

  /**
   * A packet `node` sends toward the guest at `at` (TTL as it set it): across the links to the
   * gateway, each router on the way taking one from its TTL, then to the guest at its arrival
   * time. Copied: `packet` may be a scratch buffer.
   */
  private fromNode(node: SimNode, family: 4 | 6, packet: Uint8Array, at: number): void {
    const t = this.topology;
    let ttl = family === 4 ? packet[8]! : packet[7]!;
    let n = node;
    while (n !== t.gateway) {
      const link = t.nextHop[n.index]![t.gateway.index];
      if (!link) return;
      const arrival = this.cross(link, n, packet.length, at);
      if (arrival < 0) return;
      at = arrival;
      n = link.a === n ? link.b : link.a;
      if (n !== t.gateway && --ttl <= 0) return;
    }
    // The gateway forwards it to the guest.
    if (--ttl <= 0) return;
    if (this.heap.length >= MAX_IN_FLIGHT) {
      this.stats.queueFull++;
      return;
    }
    const p = packet.slice();
    setTtl(p, family, ttl);
    this.push({ at, order: this.order++, family, packet: p });
  }

  /** Crossing `link` from `from` at `at` with `size` bytes: the arrival time, or -1 if lost. */
  private cross(link: SimLink, from: SimNode, size: number, at: number): number {
    if (link.loss > 0 && this.random() < link.loss) {
      this.stats.lost++;
      return -1;
    }
    const dir = this.linkIndex.get(link)! * 2 + (link.a === from ? 0 : 1);
    let leave = at;
    if (link.rate !== Infinity) {
      leave = Math.max(at, this.busyUntil[dir]!) + (size * 8 * 1000) / link.rate;
      this.busyUntil[dir] = leave;
    }
    const jitter = link.jitterMs > 0 ? (this.random() * 2 - 1) * link.jitterMs : 0;
    return leave + link.delayMs + jitter;
  }

  // ---- time ----

  /** The simulation's clock (its port's). */
  now(): number {
    return this.port.now();
  }

  pollAt(): number {
    return Math.min(this.heap[0]?.at ?? Infinity, this.tcp.pollAt());
  }

  /** Delivers what has arrived by `now` (in arrival order) and runs the TCP timers. */
  poll(now: number): void {
    for (let n = 0; n < 1024; n++) {
      const top = this.heap[0];
      if (!top || top.at > now) break;
      this.pop();
      this.stats.delivered++;
      this.port.toGuest(top.family, top.packet);
    }
    this.tcp.poll(now);
  }

  /** Forgets everything in flight and every connection (the guest went away). */
  reset(): void {
    this.tcp.closeAll();
    this.heap.length = 0;
  }

  private push(e: InFlight): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): void {
    const h = this.heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && before(h[l]!, h[m]!)) m = l;
      if (r < h.length && before(h[r]!, h[m]!)) m = r;
      if (m === i) return;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}

const ICMP4: Record<Err, readonly [number, number]> = {
  [Err.NET]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.NET],
  [Err.HOST]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.HOST],
  [Err.PROTOCOL]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PROTOCOL],
  [Err.PORT]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PORT],
  [Err.ADMIN]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.ADMIN_PROHIBITED],
  [Err.TOO_BIG]: [Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.FRAG_NEEDED],
  [Err.TTL]: [Icmpv4Type.TIME_EXCEEDED, 0],
};

const ICMP6: Record<Err, readonly [number, number]> = {
  [Err.NET]: [Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.NO_ROUTE],
  [Err.HOST]: [Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADDRESS],
  [Err.PROTOCOL]: [Icmpv6Type.PARAM_PROBLEM, Icmpv6ParamProblemCode.UNRECOGNIZED_NEXT_HEADER],
  [Err.PORT]: [Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT],
  [Err.ADMIN]: [Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADMIN_PROHIBITED],
  [Err.TOO_BIG]: [Icmpv6Type.PACKET_TOO_BIG, 0],
  [Err.TTL]: [Icmpv6Type.TIME_EXCEEDED, 0],
};

/** Whether `packet` is an ICMP error message (wire's icmpv4IsError / icmpv6IsError on its type),
 *  not a fragment's tail. */
function isIcmpError(family: 4 | 6, packet: Uint8Array): boolean {
  if (family === 6) return packet[6] === IpProtocol.ICMPV6 && packet.length > IPV6_HEADER_LEN && icmpv6IsError(packet[IPV6_HEADER_LEN]!);
  if (packet[9] !== IpProtocol.ICMP || (packet[6]! & 0x1f) !== 0 || packet[7] !== 0) return false;
  return icmpv4IsError(packet[(packet[0]! & 0x0f) * 4]!);
}

function before(a: InFlight, b: InFlight): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}

/** A node's ICMP source of a family, as its 4 or 16 bytes. */
function sourceOf(node: SimNode, family: 4 | 6): Uint8Array | undefined {
  const a: Inany | undefined = family === 4 ? node.source4 : node.source6;
  return a ? inanyBytes(a) : undefined;
}

/** Sets a packet's TTL / hop limit (and the IPv4 header checksum, incrementally: RFC 1624). */
function setTtl(p: Uint8Array, family: 4 | 6, ttl: number): void {
  if (family === 6) {
    p[7] = ttl;
    return;
  }
  const old = (p[8]! << 8) | p[9]!;
  p[8] = ttl;
  const c = checksumUpdate16((p[10]! << 8) | p[11]!, old, (ttl << 8) | p[9]!);
  p[10] = c >> 8;
  p[11] = c & 0xff;
}

/** A small seeded PRNG (mulberry32): the same seed, the same draws. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
