// The guest-facing stack: Ethernet in, Ethernet out. Read RFC 1122 §3.2 (what a host checks on IP
// input and when it may send ICMP errors), RFC 826 (ARP) and RFC 792 before editing; the ICMP error
// rules follow gVisor's ipv4/icmp.go returnError (../shared/seeds/000_c245984113abe07b.txt).
//
// receive() dispatches a frame from the guest: ARP → answer for our addresses and learn the guest;
// IPv4 → validate, then ICMP (echo for our addresses), UDP (handlers by port, else port
// unreachable), other protocols to us → protocol unreachable. Anything malformed is counted and
// dropped, never thrown. Output goes through one preallocated frame buffer into the FrameLink.
//
// Not here yet (see ARCHITECTURE.md): IPv6, the RFC 4861 neighbour state machine, fragments, NAT.
import type { FrameLink, FrameSink, RxMeta } from './link.js';
import {
  ArpOp,
  ArpPacket,
  ETHERNET_HEADER_LEN,
  EtherType,
  EthernetFrame,
  ICMPV4_HEADER_LEN,
  Icmpv4Packet,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  IpProtocol,
  Ipv4Error,
  Ipv4Packet,
  MAC_BROADCAST,
  UDP_HEADER_LEN,
  UdpDatagram,
  copyBytes,
  emitArp,
  emitEthernetHeader,
  emitIcmpv4,
  emitIcmpv4Error,
  emitIpv4Header,
  emitUdpV4,
  icmpv4EchoRest,
  ipv4InSubnet,
  ipv4IsBroadcast,
  ipv4IsMulticast,
  ipv4SubnetBroadcast,
  macIsUnicast,
} from '../wire/index.js';
import type { StackConfig } from './config.js';
import { Counters } from './counters.js';
import { TokenBucket } from './rate-limit.js';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
}

export const systemClock: Clock = { now: () => performance.now() };

export interface StackLogger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
}

const silent: StackLogger = { debug: () => undefined, info: () => undefined, warn: () => undefined };

/** A UDP datagram addressed to one of our IPv4 addresses, as handlers see it (views valid only
 *  during the call). */
export interface UdpV4Input {
  srcIp: number;
  dstIp: number;
  srcPort: number;
  dstPort: number;
  /** Link source of the frame. */
  srcMac: Uint8Array;
  srcMacOffset: number;
  payload: Uint8Array;
}

export type UdpV4Handler = (dgram: UdpV4Input, stack: Stack) => void;

export interface StackOptions {
  clock?: Clock;
  logger?: StackLogger;
  /** ICMP errors per second, and burst (gVisor's defaults: 1000/s, burst 50). */
  icmpRate?: number;
  icmpBurst?: number;
}

/** RFC 1122 §3.2.1.7 leaves the TTL to the host; 64 is what Linux and slirp use. */
const DEFAULT_TTL = 64;
/** Quote as much of the offending datagram as fits in 576 bytes (RFC 1812 §4.3.2.3). */
const ICMP_ERROR_MAX = 576 - 20;

export class Stack implements FrameSink {
  readonly counters = new Counters();
  /** The guest's MAC: from config, else learnt from its first unicast-sourced frame. */
  guestMac: Uint8Array | undefined;
  /** IPv4 address → MAC learnt from the guest's ARP and IP traffic (bounded). */
  private readonly arpTable = new Map<number, Uint8Array>();
  private static readonly ARP_TABLE_MAX = 256;
  private readonly udpV4 = new Map<number, UdpV4Handler>();
  private readonly clock: Clock;
  private readonly log: StackLogger;
  private readonly icmpLimiter: TokenBucket;
  private ipId = 0;

  // One scratch view per layer, re-pointed per frame (no allocation per packet).
  private readonly eth = new EthernetFrame();
  private readonly arp = new ArpPacket();
  private readonly ip4 = new Ipv4Packet();
  private readonly icmp4 = new Icmpv4Packet();
  private readonly udp = new UdpDatagram();
  private readonly udpInput: UdpV4Input = { srcIp: 0, dstIp: 0, srcPort: 0, dstPort: 0, srcMac: new Uint8Array(6), srcMacOffset: 0, payload: new Uint8Array(0) };
  /** Output frame under construction. */
  private readonly out: Uint8Array;

  constructor(
    readonly config: StackConfig,
    private readonly link: FrameLink,
    opts: StackOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silent;
    this.guestMac = config.guestMac;
    this.out = new Uint8Array(ETHERNET_HEADER_LEN + config.mtu);
    this.icmpLimiter = new TokenBucket(opts.icmpRate ?? 1000, opts.icmpBurst ?? 50, this.clock.now());
  }

  /** Registers the handler for UDP datagrams to `port` on our IPv4 addresses. */
  onUdpV4(port: number, handler: UdpV4Handler): void {
    this.udpV4.set(port, handler);
  }

  /** Whether `addr` is one of our IPv4 addresses on the guest link. */
  isOurIpv4(addr: number): boolean {
    return addr === this.config.ipv4.gateway || addr === this.config.ipv4.dns;
  }

  /** The MAC learnt for an IPv4 address on the guest link. */
  lookupMac(addr: number): Uint8Array | undefined {
    return this.arpTable.get(addr);
  }

  // --- input ----------------------------------------------------------------------------

  receive(frame: Uint8Array, meta: RxMeta): void {
    const eth = this.eth.at(frame, 0, frame.length);
    if (!eth.check()) return this.drop('eth.short');
    if (!macIsUnicast(frame, eth.srcOffset)) return this.drop('eth.groupSource');
    if (!eth.isMulticast() && !eth.dstIs(this.config.mac)) return this.drop('eth.notOurs');
    if (!this.guestMac) {
      this.guestMac = frame.slice(eth.srcOffset, eth.srcOffset + 6);
      this.log.info({ mac: formatMacShort(this.guestMac) }, 'guest MAC learnt');
    }
    switch (eth.etherType) {
      case EtherType.ARP:
        return this.arpInput(frame, eth);
      case EtherType.IPV4:
        return this.ipv4Input(frame, eth, meta);
      default:
        return this.drop('eth.unknownType');
    }
  }

  private arpInput(frame: Uint8Array, eth: EthernetFrame): void {
    const arp = this.arp.at(frame, eth.payloadOffset, eth.payloadLength);
    if (!arp.check()) return this.drop('arp.malformed');
    const spa = arp.senderIp;
    // RFC 826: merge the sender into the table when we know it, and (as the target) add it.
    if (spa !== 0 && ipv4InSubnet(spa, this.config.ipv4.network, this.config.ipv4.prefixLength)) {
      this.learn(spa, frame, arp.senderMacOffset);
    }
    if (arp.operation !== ArpOp.REQUEST) return this.counters.add('arp.replyIn');
    const tpa = arp.targetIp;
    if (!this.isOurIpv4(tpa)) return this.counters.add('arp.notForUs');
    if (spa === tpa) return; // an announcement for our own address: nothing to answer
    const o = this.out;
    let n = emitEthernetHeader(o, 0, { dst: frame.subarray(eth.srcOffset, eth.srcOffset + 6), src: this.config.mac, etherType: EtherType.ARP });
    n += emitArp(o, n, {
      operation: ArpOp.REPLY,
      senderMac: this.config.mac,
      senderIp: tpa,
      targetMac: frame.subarray(arp.senderMacOffset, arp.senderMacOffset + 6),
      targetIp: spa,
    });
    this.counters.add('arp.replyOut');
    this.transmit(n);
  }

  private learn(ip: number, frame: Uint8Array, macOff: number): void {
    const known = this.arpTable.get(ip);
    if (known) {
      copyBytes(known, 0, frame, macOff, 6);
      return;
    }
    if (this.arpTable.size >= Stack.ARP_TABLE_MAX) {
      const oldest = this.arpTable.keys().next();
      if (!oldest.done) this.arpTable.delete(oldest.value);
    }
    this.arpTable.set(ip, frame.slice(macOff, macOff + 6));
  }

  private ipv4Input(frame: Uint8Array, eth: EthernetFrame, meta: RxMeta): void {
    const ip = this.ip4.at(frame, eth.payloadOffset, eth.payloadLength);
    const err = ip.check();
    if (err !== Ipv4Error.OK) return this.drop(`ipv4.${ipv4ErrorName(err)}`);
    // RFC 1122 §3.2.1.2: a host MUST verify the header checksum and silently discard on failure.
    if (!ip.verifyChecksum()) return this.drop('ipv4.badChecksum');
    const dst = ip.dst;
    const cfg = this.config.ipv4;
    const broadcast = ipv4IsBroadcast(dst) || dst === ipv4SubnetBroadcast(cfg.network, cfg.prefixLength);
    if (!this.isOurIpv4(dst) && !broadcast && !ipv4IsMulticast(dst)) {
      // Destined beyond us: the NAT (issue 4) takes these; until then they are counted.
      return this.drop('ipv4.notForUs');
    }
    if (ip.isFragment()) return this.drop('ipv4.fragment'); // reassembly: issue 6
    const src = ip.src;
    if (src !== 0 && ipv4InSubnet(src, cfg.network, cfg.prefixLength) && !this.isOurIpv4(src)) {
      this.learn(src, frame, eth.srcOffset);
    }
    switch (ip.protocol) {
      case IpProtocol.ICMP:
        return this.icmpv4Input(frame, eth, ip, broadcast);
      case IpProtocol.UDP:
        return this.udpv4Input(frame, eth, ip, meta, broadcast);
      case IpProtocol.IGMP:
        return this.counters.add('igmp.in'); // memberships: issue 6
      default:
        // RFC 1122 §3.2.2.1: protocol unreachable for a transport we do not implement.
        this.counters.add('ipv4.unknownProtocol');
        return this.sendIcmpv4Error(frame, eth, ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PROTOCOL, 0, broadcast);
    }
  }

  private icmpv4Input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, broadcast: boolean): void {
    const icmp = this.icmp4.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!icmp.check()) return this.drop('icmp4.short');
    if (!icmp.verifyChecksum()) return this.drop('icmp4.badChecksum');
    this.counters.add(`icmp4.in.${icmp.type}`);
    if (icmp.type !== Icmpv4Type.ECHO_REQUEST) return;
    // RFC 1122 §3.2.2.6: echo to a broadcast or multicast address MAY be silently discarded.
    if (broadcast || ipv4IsMulticast(ip.dst)) return this.drop('icmp4.echoToGroup');
    const len = icmp.payloadLength;
    if (ETHERNET_HEADER_LEN + 20 + ICMPV4_HEADER_LEN + len > this.out.length) return this.drop('icmp4.echoTooBig');
    const o = this.out;
    const ipOff = ETHERNET_HEADER_LEN;
    const icmpOff = ipOff + 20;
    copyBytes(o, icmpOff + ICMPV4_HEADER_LEN, frame, icmp.payloadOffset, len);
    emitIcmpv4(o, icmpOff, { type: Icmpv4Type.ECHO_REPLY, code: 0, rest: icmpv4EchoRest(icmp.ident, icmp.seq), payloadLength: len });
    this.emitIpv4(ip.dst, ip.src, IpProtocol.ICMP, ICMPV4_HEADER_LEN + len, ip.tos);
    emitEthernetHeader(o, 0, { dst: frame.subarray(eth.srcOffset, eth.srcOffset + 6), src: this.config.mac, etherType: EtherType.IPV4 });
    this.counters.add('icmp4.out.0');
    this.transmit(icmpOff + ICMPV4_HEADER_LEN + len);
  }

  private udpv4Input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, meta: RxMeta, broadcast: boolean): void {
    const udp = this.udp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!udp.check()) return this.drop('udp4.malformed');
    if (!meta.checksumPartial && !udp.verifyChecksumV4(ip.src, ip.dst)) return this.drop('udp4.badChecksum');
    const handler = this.udpV4.get(udp.dstPort);
    if (!handler) {
      this.counters.add('udp4.noPort');
      return this.sendIcmpv4Error(frame, eth, ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PORT, 0, broadcast);
    }
    const d = this.udpInput;
    d.srcIp = ip.src;
    d.dstIp = ip.dst;
    d.srcPort = udp.srcPort;
    d.dstPort = udp.dstPort;
    d.srcMac = frame;
    d.srcMacOffset = eth.srcOffset;
    d.payload = frame.subarray(udp.payloadOffset, udp.payloadOffset + udp.payloadLength);
    handler(d, this);
  }

  // --- output -----------------------------------------------------------------------------

  /** Sends a UDP datagram from one of our addresses to the guest: `payload` is copied. */
  sendUdpV4(src: number, srcPort: number, dst: number, dstPort: number, dstMac: Uint8Array, payload: Uint8Array): boolean {
    const o = this.out;
    const udpOff = ETHERNET_HEADER_LEN + 20;
    if (udpOff + UDP_HEADER_LEN + payload.length > o.length) {
      this.drop('udp4.outTooBig');
      return false;
    }
    o.set(payload, udpOff + UDP_HEADER_LEN);
    emitUdpV4(o, udpOff, { srcPort, dstPort, payloadLength: payload.length }, src, dst);
    this.emitIpv4(src, dst, IpProtocol.UDP, UDP_HEADER_LEN + payload.length, 0);
    emitEthernetHeader(o, 0, { dst: dstMac, src: this.config.mac, etherType: EtherType.IPV4 });
    return this.transmit(udpOff + UDP_HEADER_LEN + payload.length);
  }

  /** Broadcast MAC, for replies that must go to the whole link (e.g. DHCP NAK). */
  static readonly BROADCAST_MAC = MAC_BROADCAST;

  /** Writes a 20-byte IPv4 header at out[14] for a payload already in place. */
  private emitIpv4(src: number, dst: number, proto: number, payloadLength: number, tos: number): void {
    this.ipId = (this.ipId + 1) & 0xffff;
    emitIpv4Header(this.out, ETHERNET_HEADER_LEN, { src, dst, proto, ttl: DEFAULT_TTL, id: this.ipId, flags: 0, fragOffset: 0, payloadLength, tos });
  }

  /**
   * Sends an ICMP error about the datagram in `ip` back to its source, unless RFC 1122 §3.2.2 says
   * not to: never about an ICMP error, a datagram to a broadcast or multicast address (IP or
   * link), from a source that does not name a single host, or a non-first fragment; and never
   * faster than the rate limit.
   */
  private sendIcmpv4Error(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, type: number, code: number, rest: number, broadcast: boolean): void {
    const src = ip.src;
    if (broadcast || eth.isMulticast() || ipv4IsMulticast(ip.dst)) return this.drop('icmp4.errorForGroup');
    if (src === 0 || ipv4IsBroadcast(src) || ipv4IsMulticast(src) || src === ipv4SubnetBroadcast(this.config.ipv4.network, this.config.ipv4.prefixLength)) {
      return this.drop('icmp4.errorForBadSource');
    }
    if (ip.fragOffset !== 0) return this.drop('icmp4.errorForFragment');
    if (ip.protocol === IpProtocol.ICMP) {
      const inner = this.icmp4.at(frame, ip.payloadOffset, ip.payloadLength);
      if (!inner.check() || inner.isError()) return this.drop('icmp4.errorForError');
    }
    if (!this.icmpLimiter.take(this.clock.now())) return this.drop('icmp4.rateLimited');
    const o = this.out;
    const icmpOff = ETHERNET_HEADER_LEN + 20;
    const len = emitIcmpv4Error(o, icmpOff, type, code, rest, frame, ip.offset, ip.totalLength, Math.min(ICMP_ERROR_MAX, this.config.mtu - 20));
    if (len < 0) return;
    const from = this.isOurIpv4(ip.dst) ? ip.dst : this.config.ipv4.gateway;
    this.emitIpv4(from, src, IpProtocol.ICMP, len, 0);
    emitEthernetHeader(o, 0, { dst: frame.subarray(eth.srcOffset, eth.srcOffset + 6), src: this.config.mac, etherType: EtherType.IPV4 });
    this.counters.add(`icmp4.out.${type}.${code}`);
    this.transmit(icmpOff + len);
  }

  private transmit(len: number): boolean {
    const ok = this.link.send(this.out.subarray(0, len));
    if (!ok) this.counters.add('link.dropped');
    return ok;
  }

  private drop(reason: string): void {
    this.counters.add(reason);
    this.log.debug({ reason }, 'frame dropped');
  }
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

function formatMacShort(mac: Uint8Array): string {
  return Array.from(mac, (b) => b.toString(16).padStart(2, '0')).join(':');
}
