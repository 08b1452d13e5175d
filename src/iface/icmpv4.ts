// ICMPv4 on the guest link (RFC 792): echo requests to our addresses and beyond (through the echo
// hook, echo.ts) with the built-in reply, and the errors we generate — about the guest's datagrams,
// back to it, and about datagrams from beyond that we failed to deliver, through the router's
// `beyond` — under one rule for when an error may be sent and one rate limit. Read RFC 1122 §3.2.2
// (when a host may send ICMP errors), RFC 1812 §4.3.2 (a router's errors and their rate limit) and
// RFC 1191 (fragmentation needed) before editing; the error rules follow gVisor's netstack
// (returnError and allowICMPReply in pkg/tcpip/network/ipv4/icmp.go), the echo its handleICMP.
//
// The part of the IPv4 layer that speaks ICMP: it is given the layer's LayerContext and, as an
// Icmpv4Port, what it needs of the layer (options processing, IPv4 headers, framing).
import { numberedNames } from './counters.js';
import { EchoRequestSlot } from './echo.js';
import type { LayerContext } from './layer.js';
import { TokenBucket } from './rate-limit.js';
import {
  ETHERNET_HEADER_LEN,
  EtherType,
  ICMPV4_HEADER_LEN,
  Icmpv4Packet,
  Icmpv4TimeExceededCode,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  IpProtocol,
  Ipv4OptionsUsage,
  Ipv4Packet,
  emitEthernetHeader,
  emitIcmpv4,
  emitIcmpv4Error,
  formatIpv4,
  icmpv4EchoRest,
  ipv4IsBroadcast,
  ipv4IsMulticast,
  ipv4Read,
  ipv4SubnetBroadcast,
} from '../wire/index.js';
import type { EthernetFrame, Icmpv4Repr } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';

/** Echo-request types and the like that an ICMP error may be about; gVisor takes any other type
 *  for an error (RFC 1812 §4.3.2.7: never an error about an error). */
const ICMP_NOT_ERRORS = new Set<number>([0, 8, 13, 14, 15, 16]);
/** Quote as much of the offending datagram as fits in 576 bytes (RFC 1812 §4.3.2.3). */
const ICMP_ERROR_MAX = 576 - 20;
const NO_OPTIONS = new Uint8Array(0);
/** Counter names of messages in, by type. */
const ICMP4_IN = numberedNames('icmp4.in.');

/** What ICMPv4 needs of the IPv4 layer. */
export interface Icmpv4Port {
  /** Whether `addr` is one of our addresses. */
  isOurs(addr: number): boolean;
  /** Processes the options of the datagram in `ip` for `usage`; false: malformed, answered with
   *  parameter problem (through error()) and dropped. */
  checkOptions(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, usage: Ipv4OptionsUsage, broadcast: boolean): boolean;
  /** The options the last checkOptions() for an echo left for the reply (valid until the next). */
  echoOptions(): Uint8Array;
  /** Writes an IPv4 header (20 bytes plus `options`) at b[0] for a payload already in place after
   *  it, with the layer's next identification. */
  emitHeader(b: Uint8Array, src: number, dst: number, proto: number, payloadLength: number, tos?: number, options?: Uint8Array): void;
  /** Frames and sends a whole packet to `mac`, in fragments when it exceeds the link MTU. */
  frameAndSend(packet: Uint8Array, mac: Uint8Array): boolean;
  /** Sends a whole packet to its destination on the guest link, resolving it first. */
  sendToGuest(packet: Uint8Array): boolean;
}

export class Icmpv4 {
  /** RFC 1812 §4.3.2.8: the rate limit of our errors (a token bucket, as gVisor and Linux). */
  private readonly limiter: TokenBucket;
  private readonly icmp = new Icmpv4Packet();
  private readonly errIp = new Ipv4Packet();
  /** Errors about datagrams from beyond, and the reassembly's time exceeded, are built here. */
  private readonly errBuf = new Uint8Array(576);
  /** The IP part of the stack's output frame. */
  private readonly outIp: Uint8Array;
  private readonly echoSlot = new EchoRequestSlot(4, () => this.echoReply());
  /** The options the built-in echo reply carries (RFC 1122 §3.2.2.6). */
  private replyOptions: Uint8Array = NO_OPTIONS;
  /** Views of guest frames: the echo request's packet and data (none made per frame). */
  private readonly packetViews = new ViewCache();
  private readonly payloadViews = new ViewCache();
  private big: Uint8Array | undefined;

  constructor(
    private readonly s: LayerContext,
    private readonly port: Icmpv4Port,
    rate: number,
    burst: number,
  ) {
    this.limiter = new TokenBucket(rate, burst, s.now());
    this.outIp = s.out.subarray(ETHERNET_HEADER_LEN);
  }

  /** An ICMP message to one of our addresses (or a group or broadcast): echo requests answered. */
  input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, broadcast: boolean): void {
    this.replyOptions = NO_OPTIONS;
    const icmp = this.icmp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!icmp.check()) return this.s.drop('icmp4.short');
    if (!icmp.verifyChecksum()) return this.s.drop('icmp4.badChecksum');
    this.s.note(ICMP4_IN(icmp.type), this.s.debugging ? { code: icmp.code, from: formatIpv4(ip.src) } : undefined);
    // RFC 1122 §3.2.2.6: record route and timestamp of an echo request are updated and returned in
    // the reply; other messages have their options processed as received (gVisor's handleICMP:
    // after the checksum).
    const echo = icmp.type === Icmpv4Type.ECHO_REQUEST;
    if (ip.headerLength > 20) {
      if (!this.port.checkOptions(frame, eth, ip, echo ? Ipv4OptionsUsage.ECHO : Ipv4OptionsUsage.RECEIVE, broadcast)) return;
      if (echo) this.replyOptions = this.port.echoOptions();
    }
    if (!echo) return;
    // RFC 1122 §3.2.2.6: echo to a broadcast or multicast address MAY be silently discarded.
    if (broadcast || ipv4IsMulticast(ip.dst)) return this.s.drop('icmp4.echoToGroup');
    this.echo(frame, eth, ip, icmp, true);
  }

  /**
   * An ICMP message on its way beyond us (options and TTL already checked): an echo request goes
   * to the echo handler first (the NAT's echo proxy, or an embedder's). Returns whether it is
   * settled (consumed, answered or dropped); anything else goes on to the router.
   */
  forward(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet): boolean {
    const icmp = this.icmp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!icmp.check() || icmp.type !== Icmpv4Type.ECHO_REQUEST) return false;
    if (!icmp.verifyChecksum()) {
      this.s.drop('icmp4.badChecksum');
      return true;
    }
    this.replyOptions = NO_OPTIONS; // (the forwarding path checks options; it carries none)
    return this.echo(frame, eth, ip, icmp, false);
  }

  /** Hands an echo request to the embedder's handler (see echo.ts); returns whether it is settled. */
  private echo(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, icmp: Icmpv4Packet, toUs: boolean): boolean {
    const packet = this.packetViews.of(frame, ip.offset, ip.offset + ip.totalLength);
    const data = this.payloadViews.of(frame, icmp.payloadOffset, icmp.offset + icmp.length);
    return this.echoSlot.fill(frame, eth.srcOffset, packet, ip.ttl, icmp.ident, icmp.seq, data, toUs).run(this.s.router.echoHandler);
  }

  /**
   * The built-in echo reply to the request in echoSlot (RFC 792): same identifier, sequence and
   * data, from the address it was sent to. As gVisor's handleICMP, the reply's header is the
   * request's with its options replaced by those processed for the echo (record route and
   * timestamp updated, router alert kept, the rest dropped: RFC 1122 §3.2.2.6).
   */
  private echoReply(): boolean {
    const r = this.echoSlot;
    const opts = this.replyOptions;
    const hl = 20 + opts.length;
    const len = r.data.length;
    const total = hl + ICMPV4_HEADER_LEN + len;
    // Built in place in the output frame, or whole in a side buffer when it must be fragmented
    // (the answer to a reassembled request larger than the link MTU).
    const big = total > this.s.config.mtu;
    const b = big ? this.bigBuffer() : this.outIp;
    b.set(r.data, hl + ICMPV4_HEADER_LEN);
    const reply = this.replyRepr;
    reply.rest = icmpv4EchoRest(r.ident, r.seq);
    reply.payloadLength = len;
    emitIcmpv4(b, hl, reply);
    this.port.emitHeader(b, ipv4Read(r.packet, 16), ipv4Read(r.packet, 12), IpProtocol.ICMP, ICMPV4_HEADER_LEN + len, r.packet[1], opts);
    this.s.note('icmp4.out.0.0');
    return this.port.frameAndSend(this.replyViews.of(b, 0, total), r.srcMac);
  }

  /** The echo reply's ICMP header and its packet's view, reused (nothing made per reply). */
  private readonly replyRepr: Icmpv4Repr = { type: Icmpv4Type.ECHO_REPLY, code: 0, rest: 0, payloadLength: 0 };
  private readonly replyViews = new ViewCache();

  /** A buffer for one whole datagram of up to 64 KiB (made on first use). */
  private bigBuffer(): Uint8Array {
    this.big ??= new Uint8Array(0x10000);
    return this.big;
  }

  /** Sends an ICMP error about the guest's datagram in `ip` back to it, when mayAnswerWithError
   *  allows and the rate limit has a token. */
  error(frame: Uint8Array, eth: EthernetFrame, ip: Ipv4Packet, type: number, code: number, rest: number, broadcast: boolean): void {
    this.s.loadRxPayload(); // the error quotes it
    if (!this.mayAnswerWithError(frame, ip, broadcast, eth.isMulticast())) return;
    const src = ip.src;
    if (!this.allowError(type, code)) return;
    const o = this.s.out;
    const icmpOff = ETHERNET_HEADER_LEN + 20;
    const len = emitIcmpv4Error(o, icmpOff, type, code, rest, frame, ip.offset, ip.totalLength, Math.min(ICMP_ERROR_MAX, this.s.config.mtu - 20));
    if (len < 0) return;
    const from = this.port.isOurs(ip.dst) ? ip.dst : this.s.config.ipv4.gateway;
    this.port.emitHeader(this.outIp, from, src, IpProtocol.ICMP, len, 0);
    emitEthernetHeader(o, 0, { dst: frame.subarray(eth.srcOffset, eth.srcOffset + 6), src: this.s.config.mac, etherType: EtherType.IPV4 });
    this.s.note(`icmp4.out.${type}.${code}`, { to: formatIpv4(src) });
    this.s.transmit(icmpOff + len);
  }

  /**
   * An ICMP error about `packet`, a whole datagram from beyond the guest link that we failed to
   * deliver, to its source through the beyond hook (the NAT), from the gateway: we are the router
   * that failed it (RFC 1812 §4.3.2.4). Subject to mayAnswerWithError and the rate limit.
   */
  errorBeyond(packet: Uint8Array, type: number, code: number, rest: number): void {
    this.errorAbout(packet, type, code, rest, false);
  }

  /**
   * An ICMP error about `packet`, a whole datagram from the guest that we cannot carry further
   * (a protocol the NAT does not relay), to the guest, from the gateway: we are the router that
   * failed it. Subject to mayAnswerWithError (never about an ICMP error, a group or broadcast
   * destination...) and the rate limit.
   */
  errorToGuest(packet: Uint8Array, type: number, code: number, rest: number): void {
    this.errorAbout(packet, type, code, rest, true);
  }

  private errorAbout(packet: Uint8Array, type: number, code: number, rest: number, toGuest: boolean): void {
    const ip = this.errIp.at(packet, 0, packet.length);
    if (!ip.check() || !this.mayAnswerWithError(packet, ip, ipv4IsBroadcast(ip.dst), false)) return;
    if (!this.allowError(type, code)) return;
    const b = this.errBuf;
    const len = emitIcmpv4Error(b, 20, type, code, rest, packet, 0, ip.totalLength, ICMP_ERROR_MAX);
    if (len < 0) return;
    this.port.emitHeader(b, this.s.config.ipv4.gateway, ip.src, IpProtocol.ICMP, len);
    this.s.note(`icmp4.out.${type}.${code}`, { to: formatIpv4(ip.src), ...(toGuest ? {} : { beyond: true }) });
    if (toGuest) this.port.sendToGuest(b.subarray(0, 20 + len));
    else this.s.router.beyond?.(b.subarray(0, 20 + len));
  }

  /** Reassembly timed out: time exceeded (code 1) to the source of `first`, the first fragment
   *  (RFC 792, RFC 1122 §3.3.2). */
  reassemblyTimeout(first: Uint8Array): void {
    const ip = this.errIp.at(first, 0, first.length);
    if (!ip.check() || !this.mayAnswerWithError(first, ip, false, false)) return;
    if (!this.allowError(Icmpv4Type.TIME_EXCEEDED, Icmpv4TimeExceededCode.REASSEMBLY)) return;
    const b = this.errBuf;
    const n = emitIcmpv4Error(b, 20, Icmpv4Type.TIME_EXCEEDED, Icmpv4TimeExceededCode.REASSEMBLY, 0, first, 0, first.length, ICMP_ERROR_MAX);
    this.port.emitHeader(b, this.port.isOurs(ip.dst) ? ip.dst : this.s.config.ipv4.gateway, ip.src, IpProtocol.ICMP, n);
    this.s.note('icmp4.out.11.1', { to: formatIpv4(ip.src) });
    this.port.sendToGuest(b.subarray(0, 20 + n));
  }

  /**
   * gVisor's allowICMPReply: destination unreachable, source quench, time exceeded and parameter
   * problem take a token from the bucket — except fragmentation needed, never limited (as Linux's
   * icmpv4_xrlim_allow: rate limiting would break path MTU discovery).
   */
  private allowError(type: number, code: number): boolean {
    if (type === Icmpv4Type.DEST_UNREACHABLE && code === Icmpv4UnreachableCode.FRAG_NEEDED) return true;
    if (this.limiter.take(this.s.now())) return true;
    this.s.drop('icmp4.rateLimited');
    return false;
  }

  /**
   * The one place that decides whether an ICMP error may answer the datagram in `ip` (RFC 1122
   * §3.2.2, RFC 1812 §4.3.2.7, as gVisor's returnError): never about an ICMP error, a datagram to
   * a broadcast or multicast address (IP or link), from a source that does not name a single host,
   * or a non-first fragment. Counts the reason when it says no.
   */
  private mayAnswerWithError(bytes: Uint8Array, ip: Ipv4Packet, broadcastDst: boolean, linkMulticast: boolean): boolean {
    const src = ip.src;
    const cfg = this.s.config.ipv4;
    let why: string | undefined;
    if (broadcastDst || linkMulticast || ipv4IsMulticast(ip.dst)) why = 'icmp4.errorForGroup';
    else if (src === 0 || ipv4IsBroadcast(src) || ipv4IsMulticast(src) || src === ipv4SubnetBroadcast(cfg.network, cfg.prefixLength))
      why = 'icmp4.errorForBadSource';
    else if (ip.fragOffset !== 0) why = 'icmp4.errorForFragment';
    else if (ip.protocol === IpProtocol.ICMP) {
      // Only about the informational types: any other, known or not, may be an error (as gVisor's netstack does).
      const t = ip.payloadLength > 0 ? bytes[ip.payloadOffset]! : -1;
      if (!ICMP_NOT_ERRORS.has(t)) why = 'icmp4.errorForError';
    }
    if (why === undefined) return true;
    this.s.drop(why);
    return false;
  }
}
