// IPv4 on the guest link: IPv4 input with its options, and UDP dispatch for our addresses; ARP
// with the RFC 5227 claims of our addresses (arp.ts, arp-claim.ts), ICMPv4 (icmpv4.ts: echo and
// the errors we send) and IGMP (igmp.ts) are parts it drives. Read RFC 1122 §3.2.1 (what a host
// checks on IP input), RFC 791 §3.1 (options) and RFC 1191 (fragmentation needed) before editing;
// options validation follows gVisor's netstack (processIPOptions in pkg/tcpip/network/ipv4/ipv4.go).
import { Arp } from './arp.js';
import type { RxMeta } from './link.js';
import { LINK_HEADROOM, REASSEMBLED, frameSumTo, placePacket, reassembledFrame } from './link.js';
import type { LayerContext } from './layer.js';
import { fragmentIpv4 } from './fragment.js';
import { Reassembler } from './reassembly.js';
import type { ReassemblyStats } from './reassembly.js';
import { NeighborCache } from './neighbor.js';
import { Icmpv4 } from './icmpv4.js';
import { Igmp } from './igmp.js';
import {
  completeChecksum,
  ETHERNET_HEADER_LEN,
  EtherType,
  EthernetFrame,
  IGMPV3_ALL_ROUTERS,
  IGMP_ALL_ROUTERS,
  IGMP_ALL_SYSTEMS,
  Icmpv4ParamProblemCode,
  Icmpv4TimeExceededCode,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  IpProtocol,
  Ipv4Error,
  Ipv4OptionsResult,
  Ipv4OptionsUsage,
  Ipv4Packet,
  MAC_BROADCAST,
  TcpSegment,
  UDP_HEADER_LEN,
  UdpDatagram,
  emitEthernetHeader,
  emitIpv4Header,
  emitUdpV4,
  ipv4Read,
  ipv4InSubnet,
  ipv4IsBroadcast,
  ipv4IsMulticast,
  ipv4SubnetBroadcast,
  processIpv4Options,
} from '../wire/index.js';
import type { EthernetRepr, Ipv4Repr } from '../wire/index.js';
import { ViewCache, doubleFields } from '../wire/bytes.js';

/** A UDP datagram addressed to one of our IPv4 addresses, as handlers see it (views valid only
 *  during the call). */
export interface UdpV4Input {
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** Link source of the frame: `srcMac[srcMacOffset..+6]`. */
  srcMac: Uint8Array;
  srcMacOffset: number;
  payload: Uint8Array;
}

/** Returns false when the datagram is not the handler's after all (the stack then treats the
 *  port as unserved). */
export type UdpV4Handler = (dgram: UdpV4Input, now: number) => boolean | void;

/** RFC 1122 §3.2.1.7 leaves the TTL to the host; 64 is what Linux and slirp use. */
const DEFAULT_TTL = 64;
const MS_PER_DAY = 86_400_000;

/** The groups we receive: all-systems (every host, RFC 1112 §4) and the all-routers groups. */
function listening(group: number): boolean {
  return group === IGMP_ALL_SYSTEMS || group === IGMP_ALL_ROUTERS || group === IGMPV3_ALL_ROUTERS;
}

export class Ipv4Layer {
  /** Guest-link IPv4 address → MAC (RFC 4861's machine, run by ARP). */
  readonly neighbors: NeighborCache<number>;
  private readonly udpHandlers = new Map<number, UdpV4Handler>();
  private ipId = 0;
  /** ARP: answers, what the guest teaches the neighbour cache, our address claims (arp.ts). */
  readonly arp: Arp;
  /** Fragments from the guest waiting for their datagram (RFC 791: 30 s, hence IPv4's timer). */
  private readonly reassembler: Reassembler;
  /** The IP part of the stack's output frame. */
  private readonly outIp: Uint8Array;
  private readonly eth = new EthernetFrame();
  /** The Ethernet header of what frameOne sends (no literal per frame). */
  private readonly ethOut: EthernetRepr;
  /** Views of guest frames: their IP packet (of every length a joined TCP segment may have, in
   *  each slot: see the device's frameViews), a UDP or echo payload (none made per frame). */
  private readonly packetViews = new ViewCache(512);
  private readonly payloadViews = new ViewCache();
  /** Where fragmentAndSend's fragments go. */
  private fragMac: Uint8Array = MAC_BROADCAST;
  /** Where fragments are cut (one MTU). */
  private readonly fragScratch: Uint8Array;
  /** ICMPv4: echo, and the errors we send with their rate limit (icmpv4.ts). */
  readonly icmp: Icmpv4;
  /** The options processed for an echo reply (RFC 1122 §3.2.2.6): optBuf[0, optResult.length). */
  private readonly optBuf = new Uint8Array(40);
  private readonly optResult = new Ipv4OptionsResult();
  /** IGMP: our memberships and the guest link's querier (igmp.ts). */
  readonly igmp: Igmp;
  private readonly ip4 = new Ipv4Packet();
  private readonly udp = new UdpDatagram();
  private readonly tcp = new TcpSegment();
  private readonly udpInput: UdpV4Input = {
    srcIp: 0,
    dstIp: 0,
    srcPort: 0,
    dstPort: 0,
    srcMac: new Uint8Array(6),
    srcMacOffset: 0,
    payload: new Uint8Array(0),
  };

  constructor(
    private readonly s: LayerContext,
    icmpRate: number,
    icmpBurst: number,
  ) {
    this.fragScratch = new Uint8Array(s.config.mtu);
    this.ethOut = { dst: MAC_BROADCAST, src: s.config.mac, etherType: EtherType.IPV4 };
    this.outIp = s.out.subarray(ETHERNET_HEADER_LEN);
    this.reassembler = new Reassembler(4, { timeoutMs: 30_000, headroom: LINK_HEADROOM, memory: s.memory.account('reassembly') });
    this.neighbors = new NeighborCache<number>(
      {
        solicit: (ip, mac) => this.arp.request(ip, mac),
        resolved: (_ip, mac, queued) => {
          for (const p of queued) this.frameAndSend(p.bytes, mac);
        },
        failed: (ip, queued) => {
          for (const p of queued) this.unreachable(p.bytes, p.tag);
        },
      },
      { random: s.random, memory: s.memory.account('neighbors') },
    );
    this.arp = new Arp(s, this.neighbors, (addr) => this.isOurs(addr));
    this.igmp = new Igmp(s);
    this.icmp = new Icmpv4(
      s,
      {
        isOurs: (addr) => this.isOurs(addr),
        checkOptions: (frame, eth, ip, usage, broadcast) => this.checkOptions(frame, eth, ip, usage, broadcast),
        echoOptions: () => this.optBuf.subarray(0, this.optResult.length),
        emitHeader: (b, src, dst, proto, payloadLength, tos, options) => this.emitHeaderInto(b, src, dst, proto, payloadLength, tos, options),
        frameAndSend: (packet, mac) => this.frameAndSend(packet, mac),
        sendToGuest: (packet) => this.sendToGuest(packet),
      },
      icmpRate,
      icmpBurst,
    );
  }

  /** Counters of the reassembly of the guest's fragments (status). */
  get reassemblyStats(): Readonly<ReassemblyStats> {
    return this.reassembler.stats;
  }

  onUdp(port: number, handler: UdpV4Handler): void {
    this.udpHandlers.set(port, handler);
  }

  isOurs(addr: number): boolean {
    return addr === this.s.config.ipv4.gateway || addr === this.s.config.ipv4.dns;
  }

  lookupMac(addr: number): Uint8Array | undefined {
    return this.neighbors.lookup(addr);
  }

  /**
   * Sends an IPv4 packet (from its header; checksums done) to a destination on the guest link,
   * resolving it first. While resolution runs the packet waits (copied) in the neighbour cache; if
   * it fails, the packet is answered as a router would (see unreachable()). `tag` identifies the
   * flow for the router's unreachable().
   */
  sendToGuest(packet: Uint8Array, tag?: unknown, partial = 0, segmentSize = 0): boolean {
    const dst = ipv4Read(packet, 16);
    const cfg = this.s.config.ipv4;
    if (!ipv4InSubnet(dst, cfg.network, cfg.prefixLength) || this.isOurs(dst)) {
      this.s.drop('ipv4.noRouteToGuest');
      return false;
    }
    if (segmentSize > 0) return this.sendSegmented(packet, dst, partial, segmentSize);
    if (partial > 0 && (packet.length > this.s.config.mtu || !this.neighbors.lookup(dst))) {
      // A partial checksum goes only into a whole frame sent now: one that waits for ARP (copied
      // into the queue) or is cut into fragments gets its checksum completed first.
      const hl = (packet[0]! & 0x0f) * 4;
      completeChecksum(packet, hl, packet.length, partial, packet[9] === IpProtocol.UDP);
      partial = 0;
    }
    const mac = this.neighbors.resolve(dst, this.s.now(), packet, tag);
    if (!mac) return false;
    return this.frameAndSend(packet, mac, partial);
  }

  /**
   * A TCP segment larger than the MTU for a guest with segmentation offload (GUEST_TSO4): sent whole,
   * never queued or fragmented, to a neighbour already resolved (the TCP NAT asks for offload only
   * then; otherwise false, and TCP sends it again). `packet` has the link header's room before it.
   */
  private sendSegmented(packet: Uint8Array, dst: number, partial: number, segmentSize: number): boolean {
    const mac = this.neighbors.lookup(dst) && this.neighbors.resolve(dst, this.s.now());
    return this.s.sendSegmented(packet, mac, EtherType.IPV4, (packet[0]! & 0x0f) * 4, partial, segmentSize);
  }

  /**
   * Frames and sends a packet to `mac`, in fragments when it exceeds the link MTU. `partial` > 0:
   * the packet fits and its transport checksum, that far into the transport header, is partial.
   */
  private frameAndSend(packet: Uint8Array, mac: Uint8Array, partial = 0): boolean {
    if (packet.length > this.s.config.mtu) return this.fragmentAndSend(packet, mac);
    const start = partial > 0 ? ETHERNET_HEADER_LEN + (packet[0]! & 0x0f) * 4 : 0;
    return this.frameOne(packet, mac, start, partial);
  }

  /** One packet that fits into the stack's output frame, behind an Ethernet header to `mac`. */
  private frameOne(packet: Uint8Array, mac: Uint8Array, checksumStart = 0, partial = 0): boolean {
    const o = this.s.out;
    placePacket(o, packet);
    this.ethOut.dst = mac;
    emitEthernetHeader(o, 0, this.ethOut);
    return this.s.transmit(ETHERNET_HEADER_LEN + packet.length, checksumStart, partial);
  }

  /** A packet over the link MTU: in fragments (RFC 791), or refused as a router refuses it. */
  private fragmentAndSend(packet: Uint8Array, mac: Uint8Array): boolean {
    this.fragMac = mac;
    if (!fragmentIpv4(packet, this.s.config.mtu, this.fragScratch, this.sendFragment)) {
      const src = ipv4Read(packet, 12);
      if ((packet[6]! & 0x40) === 0 || this.isOurs(src)) {
        // An MTU too small for the header, or a DF datagram of ours: our own bug, counted.
        this.s.drop('ipv4.cannotFragment');
        return false;
      }
      // RFC 1191 §4 / RFC 792: a router that must fragment a DF datagram drops it and answers
      // fragmentation needed with the next-hop MTU; its source is beyond the guest link.
      this.s.counters.add('ipv4.fragNeeded');
      this.icmp.errorBeyond(packet, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.FRAG_NEEDED, this.s.config.mtu & 0xffff);
      return false;
    }
    this.s.counters.add('ipv4.fragmentedOut');
    return true;
  }

  private readonly sendFragment = (p: Uint8Array): boolean => this.frameOne(p, this.fragMac);

  /**
   * Resolution of its destination failed for a queued packet. RFC 1812 §4.3.3.1 / RFC 4861 §7.2.2: a router
   * answers host unreachable to the packet's source — unless we are that source, and then the flow
   * that sent it is told instead. The source of a packet we forward sits beyond the guest link,
   * so the error goes to the beyond hook (the NAT).
   */
  private unreachable(packet: Uint8Array, tag: unknown): void {
    const src = ipv4Read(packet, 12);
    this.s.counters.add('ipv4.unresolved');
    if (this.isOurs(src)) {
      this.s.router.unreachable?.(tag, 4);
      return;
    }
    this.icmp.errorBeyond(packet, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.HOST, 0);
  }

  /** Starts RFC 5227 probing of our addresses: the guest's link just came up. */
  linkUp(now: number): void {
    this.arp.claims.linkUp(now);
    this.igmp.stop();
  }

  pollAt(): number {
    return Math.min(this.neighbors.pollAt(), this.reassembler.pollAt(), this.arp.claims.pollAt(), this.igmp.pollAt());
  }

  poll(now: number): void {
    this.neighbors.poll(now);
    this.reassembler.poll(now, (e) => this.reassemblyExpired(e.firstFragment));
    this.arp.claims.poll(now);
    // IGMP starts once the gateway address has been probed (RFC 5227 §2.1.1: not a source before):
    // our reports (RFC 3376 §5.1) and the querier's startup queries (§6.6.2).
    if (!this.igmp.running && this.arp.claims.probed(0)) this.igmp.start(now);
    this.igmp.poll(now);
  }

  /** Whether the guest listens to IPv4 group `group` (all-systems: always, RFC 1112 §4). Multicast
   *  toward the guest other than to all-systems is sent only to groups it joined. */
  guestJoined(group: number): boolean {
    return this.igmp.guestJoined(group);
  }

  /** An IPv4 packet from the guest (RFC 1122 §3.2.1 checks, then dispatch). */
  ipv4Input(frame: Uint8Array, eth: EthernetFrame, meta: RxMeta): void {
    const ip = this.ip4.at(frame, eth.payloadOffset, eth.payloadLength);
    const err = ip.problem();
    if (err !== Ipv4Error.OK) return this.s.drop(`ipv4.${ipv4ErrorName(err)}`);
    // RFC 1122 §3.2.1.2: a host MUST verify the header checksum and silently discard on failure.
    if (!ip.verifyChecksum()) return this.s.drop('ipv4.badChecksum');
    const options = ip.headerLength > 20;
    const dst = ip.dst;
    const cfg = this.s.config.ipv4;
    const broadcast = ipv4IsBroadcast(dst) || dst === ipv4SubnetBroadcast(cfg.network, cfg.prefixLength);
    if (ip.isFragment()) {
      // A fragment's options are checked, not changed, before it is held (gVisor's
      // optionUsageVerify): a malformed one is answered now, not after reassembly.
      if (options && !this.checkOptions(frame, eth, ip, Ipv4OptionsUsage.VERIFY, broadcast)) return;
      return this.fragmentInput(frame, ip);
    }
    if (!this.isOurs(dst) && !broadcast && !ipv4IsMulticast(dst)) {
      // Destined beyond us: we are the first router on its way (RFC 1812 §5.3.1). A TTL that
      // would reach zero here gets time exceeded from the gateway — the first traceroute hop.
      if (ip.ttl <= 1) {
        this.s.counters.add('ipv4.ttlExpired');
        return this.icmp.error(frame, eth, ip, Icmpv4Type.TIME_EXCEEDED, Icmpv4TimeExceededCode.TTL, 0, false);
      }
      // Options as gVisor's forwarding path processes them (optionUsageForward, after the TTL):
      // a malformed one gets parameter problem. The NAT re-originates from host sockets what
      // goes on beyond vunet, so no IP option travels further: they are checked, not carried.
      if (options && !this.checkOptions(frame, eth, ip, Ipv4OptionsUsage.FORWARD, false)) return;
      // Echo requests go to the echo handler first (the NAT's echo proxy, or an embedder's).
      if (ip.protocol === IpProtocol.ICMP && this.icmp.forward(frame, eth, ip)) return;
      // The rest is the NAT's, which sends it on with TTL - 1; without one it is
      // counted and dropped.
      if (ip.protocol === IpProtocol.TCP && this.s.router.tcpInput) return this.tcpv4Input(frame, ip, meta);
      if (!this.s.router.beyond) return this.s.drop('ipv4.notForUs');
      // The guest is untrusted: a UDP datagram is checked here before the NAT sends it on.
      if (ip.protocol === IpProtocol.UDP && !ip.isFragment()) {
        const udp = this.udp.at(frame, ip.payloadOffset, ip.payloadLength);
        if (!udp.check()) return this.s.drop('udp4.malformed');
        if (!meta.checksumPartial && !udp.verifyChecksumV4(ip.src, ip.dst, frameSumTo(frame, meta, udp.offset + udp.udpLength), ETHERNET_HEADER_LEN))
          return this.s.drop('udp4.badChecksum');
      }
      return this.s.router.beyond(this.packetViews.of(frame, ip.offset, ip.offset + ip.totalLength));
    }
    // Multicast we are no member of is not ours (IGMP excepted: as the querier we hear all of it).
    if (ipv4IsMulticast(dst) && ip.protocol !== IpProtocol.IGMP && !listening(dst)) return this.s.drop('ipv4.groupNotJoined');
    // ICMP handles its options itself, after its checksum (gVisor's handleICMP); the others'
    // are processed here as received (optionUsageReceive).
    let routerAlert = false;
    if (options && ip.protocol !== IpProtocol.ICMP) {
      if (!this.checkOptions(frame, eth, ip, Ipv4OptionsUsage.RECEIVE, broadcast)) return;
      routerAlert = this.optResult.routerAlert;
    }
    switch (ip.protocol) {
      case IpProtocol.ICMP:
        return this.icmp.input(frame, eth, ip, broadcast);
      case IpProtocol.UDP:
        return this.udpv4Input(frame, eth, ip, meta, broadcast);
      case IpProtocol.IGMP:
        return this.igmp.input(frame, ip, routerAlert);
      case IpProtocol.TCP:
        if (broadcast) return this.s.drop('tcp4.broadcast'); // RFC 9293 §3.9.2.1: unicast only
        if (this.s.router.tcpInput) return this.tcpv4Input(frame, ip, meta);
        this.s.counters.add('ipv4.unknownProtocol');
        return this.icmp.error(frame, eth, ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PROTOCOL, 0, broadcast);
      default:
        // RFC 1122 §3.2.2.1: protocol unreachable for a transport we do not implement.
        this.s.counters.add('ipv4.unknownProtocol');
        return this.icmp.error(frame, eth, ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PROTOCOL, 0, broadcast);
    }
  }

  /** A TCP segment to us or beyond: checked here (the guest is untrusted), then the TCP hook's. */
  private tcpv4Input(frame: Uint8Array, ip: Ipv4Packet, meta: RxMeta): void {
    const tcp = this.tcp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!tcp.check()) return this.s.drop('tcp4.malformed');
    if (!meta.checksumPartial) {
      // Verified from the device's sum when it has one (headers alone are read: payload left in
      // guest memory stays there), else over the payload.
      const sum = frameSumTo(frame, meta, tcp.offset + tcp.length);
      if (sum < 0) this.s.loadRxPayload();
      if (!tcp.verifyChecksumV4(ip.src, ip.dst, sum, ETHERNET_HEADER_LEN)) {
        return this.s.drop('tcp4.badChecksum');
      }
    }
    this.s.router.tcpInput!(4, this.packetViews.of(frame, ip.offset, ip.offset + ip.totalLength), ip.payloadOffset - ip.offset, ip.ttl);
  }

  /**
   * Processes the options of the datagram in `ip` for `usage` (wire/ipv4.ts processIpv4Options,
   * gVisor's processIPOptions): our address for record route and timestamp is the one the
   * datagram was sent to, else the gateway's (gVisor takes the interface's main address; ours
   * has two). Echo requests leave the reply's options in replyOptions. A malformed option is
   * answered with parameter problem pointing at it (when the error rules allow) and the datagram
   * dropped; returns whether it may go on.
   */
  private checkOptions(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, usage: Ipv4OptionsUsage, broadcast: boolean): boolean {
    const local = this.isOurs(ip.dst) ? ip.dst : this.s.config.ipv4.gateway;
    // RFC 791 page 22: milliseconds since midnight UT.
    const ts = ((Math.floor(this.s.wallClock()) % MS_PER_DAY) + MS_PER_DAY) % MS_PER_DAY;
    const r = this.optResult;
    if (processIpv4Options(frame, ip.offset, ip.headerLength, usage, local, ts, this.optBuf, r)) {
      if (r.recordRoute) this.s.counters.add('ipv4.option.recordRoute');
      if (r.timestamp) this.s.counters.add('ipv4.option.timestamp');
      if (r.routerAlert) this.s.counters.add('ipv4.option.routerAlert');
      return true;
    }
    this.s.drop('ipv4.badOption');
    this.icmp.error(frame, eth, ip, Icmpv4Type.PARAM_PROBLEM, Icmpv4ParamProblemCode.POINTER, r.problem * 0x100_0000, broadcast);
    return false;
  }

  /**
   * A fragment from the guest: held until its datagram is whole (reassembly.ts), which is then
   * processed as if it had arrived in one frame (behind a copy of this frame's link header).
   */
  private fragmentInput(frame: Uint8Array, ip: Ipv4Packet): void {
    const whole = this.reassembler.add(frame.subarray(ip.offset, ip.offset + ip.totalLength), this.s.now());
    if (!whole) return;
    const f = reassembledFrame(frame, whole);
    this.s.counters.add('ipv4.reassembled');
    this.ipv4Input(f, this.eth.at(f, 0, f.length), REASSEMBLED);
  }

  /** Reassembly timed out: time exceeded (code 1) to the source, when the first fragment came. */
  private reassemblyExpired(first: Uint8Array | undefined): void {
    this.s.counters.add('ipv4.reassemblyTimeout');
    if (first) this.icmp.reassemblyTimeout(first);
  }

  private udpv4Input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, meta: RxMeta, broadcast: boolean): void {
    const udp = this.udp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!udp.check()) return this.s.drop('udp4.malformed');
    if (!meta.checksumPartial && !udp.verifyChecksumV4(ip.src, ip.dst, frameSumTo(frame, meta, udp.offset + udp.udpLength), ETHERNET_HEADER_LEN))
      return this.s.drop('udp4.badChecksum');
    const handler = this.udpHandlers.get(udp.dstPort);
    if (handler) {
      const d = this.udpInput;
      d.srcIp = ip.src;
      d.dstIp = ip.dst;
      d.srcPort = udp.srcPort;
      d.dstPort = udp.dstPort;
      d.srcMac = frame;
      d.srcMacOffset = eth.srcOffset;
      d.payload = this.payloadViews.of(frame, udp.payloadOffset, udp.payloadOffset + udp.payloadLength);
      if (handler(d, this.s.now()) !== false) return;
    }
    const packet = this.packetViews.of(frame, ip.offset, ip.offset + ip.totalLength);
    if (!broadcast && this.s.router.unservedUdp?.(4, packet, udp.offset - ip.offset, ip.ttl)) return;
    this.s.counters.add('udp4.noPort');
    this.icmp.error(frame, eth, ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PORT, 0, broadcast);
  }

  /** Sends a UDP datagram from one of our addresses to the guest: `payload` is copied. */
  sendUdpV4(src: number, srcPort: number, dst: number, dstPort: number, dstMac: Uint8Array, payload: Uint8Array): boolean {
    const o = this.s.out;
    const udpOff = ETHERNET_HEADER_LEN + 20;
    if (udpOff + UDP_HEADER_LEN + payload.length > o.length) {
      this.s.drop('udp4.outTooBig');
      return false;
    }
    o.set(payload, udpOff + UDP_HEADER_LEN);
    emitUdpV4(o, udpOff, { srcPort, dstPort, payloadLength: payload.length }, src, dst);
    this.emitIpv4(src, dst, IpProtocol.UDP, UDP_HEADER_LEN + payload.length, 0);
    emitEthernetHeader(o, 0, { dst: dstMac, src: this.s.config.mac, etherType: EtherType.IPV4 });
    return this.s.transmit(udpOff + UDP_HEADER_LEN + payload.length);
  }

  /** Writes a 20-byte IPv4 header at out[14] for a payload already in place. */
  private emitIpv4(src: number, dst: number, proto: number, payloadLength: number, tos: number): void {
    this.emitHeaderInto(this.outIp, src, dst, proto, payloadLength, tos);
  }

  /** Writes an IPv4 header (20 bytes plus `options`, a multiple of 4) at b[0] for a payload
   *  already in place after it. */
  private emitHeaderInto(b: Uint8Array, src: number, dst: number, proto: number, payloadLength: number, tos = 0, options?: Uint8Array): void {
    this.ipId = (this.ipId + 1) & 0xffff;
    const r = this.headerRepr;
    r.src = src;
    r.dst = dst;
    r.proto = proto;
    r.id = this.ipId;
    r.payloadLength = payloadLength;
    r.tos = tos;
    r.options = options && options.length > 0 ? options : undefined;
    emitIpv4Header(b, 0, r);
  }

  /** The header emitHeaderInto() writes, reused (nothing made per packet). */
  private readonly headerRepr: Ipv4Repr = doubleFields(
    { src: 0, dst: 0, proto: 0, ttl: DEFAULT_TTL, id: 0, flags: 0, fragOffset: 0, payloadLength: 0, tos: 0, options: undefined },
    'src',
    'dst',
  );
}

function ipv4ErrorName(err: Ipv4Error): string {
  switch (err) {
    case Ipv4Error.TRUNCATED:
      return 'truncated';
    case Ipv4Error.VERSION:
      return 'badVersion';
    case Ipv4Error.HEADER_LENGTH:
      return 'badHeaderLength';
    case Ipv4Error.TOTAL_LENGTH:
      return 'badTotalLength';
    default:
      return 'malformed';
  }
}
