// ICMPv6 on the guest link (RFC 4443): messages to our addresses dispatched by type — echo
// requests answered (through the echo hook, echo.ts), NS/NA to NDP (ndp.ts), router solicitations
// and advertisements to the router advertiser, MLD to mld.ts — echo requests beyond us shown to
// the echo hook first, and the errors we generate — about the guest's packets, back to it, and
// about packets from beyond that we failed to deliver, through the router's `beyond` — under one
// rule for when an error may be sent and one rate limit. Read RFC 4443 §2.4 (when an error may be
// sent) and §4 (echo) before editing; behaviour follows gVisor's netstack
// (pkg/tcpip/network/ipv6/icmp.go) where the RFCs leave room.
//
// The part of the IPv6 layer that speaks ICMPv6: it is given the layer's LayerContext, its NDP
// and MLD parts, and, as an Icmpv6Port, what it needs of the layer (our addresses, framing).
import { numberedNames } from './counters.js';
import { EchoRequestSlot } from './echo.js';
import type { LayerContext } from './layer.js';
import type { Mld } from './mld.js';
import type { Ndp } from './ndp.js';
import type { RxMeta } from './link.js';
import { TokenBucket } from './rate-limit.js';
import {
  ETHERNET_HEADER_LEN,
  ICMPV6_HEADER_LEN,
  IPV6_HEADER_LEN,
  IPV6_MIN_MTU,
  Icmpv6Packet,
  Icmpv6Type,
  IpProtocol,
  Ipv6ChainResult,
  Ipv6HeaderChain,
  NdpOptionType,
  NdpRouterSolicit,
  copyBytes,
  emitIcmpv6,
  emitIcmpv6Error,
  emitIpv6Header,
  formatIpv6,
  get16,
  icmpv6EchoRest,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6IsUnspecified,
  walkIpv6Headers,
} from '../wire/index.js';
import type { EthernetFrame, Icmpv6Repr, Ipv6Packet } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';

/** Quote as much of the offending packet as fits in the minimum MTU (RFC 4443 §2.4 (c)). */
const ICMP_ERROR_MAX = IPV6_MIN_MTU - IPV6_HEADER_LEN;
/** The hop limit of what we originate (the IPv6 layer's; Linux's default). */
const HOP_LIMIT = 64;
/** Counter names of messages in, by type. */
const ICMP6_IN = numberedNames('icmp6.in.');

/** What ICMPv6 needs of the IPv6 layer. */
export interface Icmpv6Port {
  /** Our global gateway address and our link-local address (sources of our errors and replies). */
  readonly gateway: Uint8Array;
  readonly linkLocal: Uint8Array;
  /** Whether the 16 bytes at b[off] are a usable (preferred) address of ours. */
  isOurs(b: Uint8Array, off: number): boolean;
  /** Writes the IPv6 header for the payload at out[54, +payloadLength) and sends the frame, to the
   *  MAC at mac[macOff] when given (to the group's MAC when `dst` is multicast). */
  finish(src: Uint8Array, dst: Uint8Array, next: number, payloadLength: number, hopLimit: number, mac?: Uint8Array, macOff?: number): boolean;
  /** Frames and sends a whole IPv6 packet we built to `mac`, in fragments when it exceeds the MTU. */
  sendPacketTo(packet: Uint8Array, mac: Uint8Array): boolean;
  /** Sends a whole packet to its destination on the guest link, resolving it first. */
  sendToGuest(packet: Uint8Array): boolean;
  /** A router solicitation (the whole packet at b[off, +len)): whether the router advertiser took
   *  it (valid, and the advertiser started). */
  routerSolicitation(b: Uint8Array, off: number, len: number): boolean;
  /** A router advertisement from the guest: checked and logged by the advertiser, never obeyed. */
  routerAdvertisement(b: Uint8Array, off: number, len: number): void;
}

export class Icmpv6 {
  /** RFC 4443 §2.4 (f): the rate limit of our errors (a token bucket, as gVisor and Linux). */
  private readonly limiter: TokenBucket;
  private readonly icmp = new Icmpv6Packet();
  private readonly rs = new NdpRouterSolicit();
  /** Scratch for the error rules (the input path's chain is still in use when they run). */
  private readonly errChain = new Ipv6HeaderChain();
  /** Errors about packets from beyond, and the reassembly's time exceeded, are built here. */
  private readonly errBuf = new Uint8Array(IPV6_MIN_MTU);
  private readonly echoSlot = new EchoRequestSlot(6, () => this.echoReply());
  /** Views of guest frames: the echo request's packet and data (none made per frame). */
  private readonly packetViews = new ViewCache();
  private readonly payloadViews = new ViewCache();
  private readonly addrScratch = new Uint8Array(16);
  private readonly dstScratch = new Uint8Array(16);
  /** The echo reply's ICMPv6 header, reused (nothing made per reply). */
  private readonly replyRepr: Icmpv6Repr = { type: Icmpv6Type.ECHO_REPLY, code: 0, rest: 0, payloadLength: 0 };
  private big: Uint8Array | undefined;

  constructor(
    private readonly s: LayerContext,
    private readonly ndp: Pick<Ndp, 'nsInput' | 'naInput' | 'learn'>,
    private readonly mld: Pick<Mld, 'input'>,
    private readonly port: Icmpv6Port,
    rate: number,
    burst: number,
  ) {
    this.limiter = new TokenBucket(rate, burst, s.now());
  }

  /**
   * An ICMPv6 message to us (one of our addresses or a group we take) at frame[off, +len), after
   * the IPv6 layer's extension headers; `routerAlert` is the hop-by-hop router alert's value, or
   * -1 (MLD requires one).
   */
  input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, off: number, len: number, meta: RxMeta, routerAlert: number): void {
    const icmp = this.icmp.at(frame, off, len);
    if (!icmp.check()) return this.s.drop('icmp6.short');
    if (!meta.checksumPartial && !icmp.verifyChecksum(frame, ip.srcOffset, frame, ip.dstOffset)) return this.s.drop('icmp6.badChecksum');
    const type = icmp.type;
    this.s.note(ICMP6_IN(type), this.s.debugging ? { code: icmp.code, from: formatIpv6(frame.subarray(ip.srcOffset, ip.srcOffset + 16)) } : undefined);
    switch (type) {
      case Icmpv6Type.ECHO_REQUEST:
        this.echo(frame, eth, ip, icmp, true);
        return;
      case Icmpv6Type.NEIGHBOR_SOLICIT:
        return this.ndp.nsInput(frame, eth, ip, off, len);
      case Icmpv6Type.NEIGHBOR_ADVERT:
        return this.ndp.naInput(frame, ip, off, len);
      case Icmpv6Type.ROUTER_SOLICIT: {
        // The advertiser validates (RFC 4861 §6.1.1) and schedules the answer; before our
        // link-local address passed DAD there is no advertiser yet and its first RAs cover it.
        if (!this.port.routerSolicitation(frame, ip.offset, ip.end - ip.offset)) return this.s.counters.add('ndp.rsUnanswered');
        const sll = this.rs.at(frame, off, len).findLinkAddress(NdpOptionType.SOURCE_LL_ADDR);
        if (sll >= 0) this.ndp.learn(frame, ip.srcOffset, sll);
        return;
      }
      case Icmpv6Type.ROUTER_ADVERT:
        // We are the router: a guest's RA is validated and logged, never obeyed.
        return this.port.routerAdvertisement(frame, ip.offset, ip.end - ip.offset);
      case Icmpv6Type.MLD_QUERY:
      case Icmpv6Type.MLD_REPORT:
      case Icmpv6Type.MLD_DONE:
      case Icmpv6Type.MLDV2_REPORT:
        return this.mld.input(frame, ip, off, len, routerAlert);
      default:
        return; // errors and informational types we do not act on
    }
  }

  /**
   * An ICMPv6 message right behind the IPv6 header on its way beyond us (hop limit checked): an
   * echo request goes to the echo handler first (the NAT's echo proxy, or an embedder's). Returns
   * whether it is settled (consumed, answered or dropped); anything else goes on to the router.
   */
  forward(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, meta: RxMeta): boolean {
    const icmp = this.icmp.at(frame, ip.payloadOffset, ip.end - ip.payloadOffset);
    if (!icmp.check() || icmp.type !== Icmpv6Type.ECHO_REQUEST) return false;
    if (!meta.checksumPartial && !icmp.verifyChecksum(frame, ip.srcOffset, frame, ip.dstOffset)) {
      this.s.drop('icmp6.badChecksum');
      return true;
    }
    return this.echo(frame, eth, ip, icmp, false);
  }

  /** Hands an echo request to the embedder's handler (see echo.ts); returns whether it is settled. */
  private echo(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, icmp: Icmpv6Packet, toUs: boolean): boolean {
    if (ipv6IsUnspecified(frame, ip.srcOffset)) {
      this.s.drop('icmp6.echoFromUnspecified');
      return true;
    }
    const packet = this.packetViews.of(frame, ip.offset, ip.end);
    const data = this.payloadViews.of(frame, icmp.payloadOffset, icmp.offset + icmp.length);
    return this.echoSlot.fill(frame, eth.srcOffset, packet, ip.hopLimit, icmp.ident, icmp.seq, data, toUs).run(this.s.router.echoHandler);
  }

  /** The built-in echo reply to the request in echoSlot (RFC 4443 §4.2): same identifier,
   *  sequence and data; from the address it was sent to, or from fe80::2 when that was a group. */
  private echoReply(): boolean {
    const r = this.echoSlot;
    const p = r.packet;
    // From the address it was sent to, or the link-local one for a group.
    if (ipv6IsMulticast(p, 24)) copyBytes(this.addrScratch, 0, this.port.linkLocal, 0, 16);
    else copyBytes(this.addrScratch, 0, p, 24, 16);
    // Only preferred addresses answer (a tentative or duplicate one takes NDP alone).
    if (r.toUs && !this.port.isOurs(this.addrScratch, 0)) {
      this.s.drop('icmp6.echoToUnusableAddress');
      return false;
    }
    const len = r.data.length;
    copyBytes(this.dstScratch, 0, p, 8, 16);
    const total = IPV6_HEADER_LEN + ICMPV6_HEADER_LEN + len;
    this.s.note('icmp6.out.129.0');
    // Built in place in the output frame, or whole in a side buffer when it must be fragmented
    // (the answer to a reassembled request larger than the link MTU).
    const fits = total <= this.s.config.mtu;
    const b = fits ? this.s.out : (this.big ??= new Uint8Array(IPV6_HEADER_LEN + 0x10000));
    const icmpOff = fits ? ETHERNET_HEADER_LEN + IPV6_HEADER_LEN : IPV6_HEADER_LEN;
    b.set(r.data, icmpOff + ICMPV6_HEADER_LEN);
    const reply = this.replyRepr;
    reply.rest = icmpv6EchoRest(r.ident, r.seq);
    reply.payloadLength = len;
    emitIcmpv6(b, icmpOff, reply, this.addrScratch, this.dstScratch);
    if (fits) return this.port.finish(this.addrScratch, this.dstScratch, IpProtocol.ICMPV6, ICMPV6_HEADER_LEN + len, HOP_LIMIT, r.frame, r.srcMacOffset);
    emitIpv6Header(b, 0, {
      src: this.addrScratch,
      dst: this.dstScratch,
      nextHeader: IpProtocol.ICMPV6,
      hopLimit: HOP_LIMIT,
      payloadLength: ICMPV6_HEADER_LEN + len,
    });
    return this.port.sendPacketTo(b.subarray(0, total), r.srcMac);
  }

  /**
   * An ICMPv6 error about the guest's packet in `ip`, back to it, when mayAnswerWithError allows
   * (`allowMulticast`: the exceptions of RFC 4443 §2.4 (e.3) apply to this error).
   */
  error(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, type: number, code: number, rest: number, allowMulticast: boolean): void {
    this.s.loadRxPayload(); // the error quotes it
    if (!this.mayAnswerWithError(frame, ip.offset, ip.end, type, allowMulticast, eth.isMulticast())) return;
    // From the address the packet was sent to when it is ours, else from the address on its side.
    const to = frame.subarray(ip.dstOffset, ip.dstOffset + 16);
    const from = this.port.isOurs(frame, ip.dstOffset) ? to : ipv6IsLinkLocal(frame, ip.srcOffset) ? this.port.linkLocal : this.port.gateway;
    copyBytes(this.addrScratch, 0, from, 0, 16);
    copyBytes(this.dstScratch, 0, frame, ip.srcOffset, 16);
    const o = this.s.out;
    const icmpOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    const n = emitIcmpv6Error(
      o,
      icmpOff,
      type,
      code,
      rest,
      frame,
      ip.offset,
      ip.end - ip.offset,
      Math.min(ICMP_ERROR_MAX, this.s.config.mtu - IPV6_HEADER_LEN),
      this.addrScratch,
      this.dstScratch,
    );
    if (n < 0) return;
    this.port.finish(this.addrScratch, this.dstScratch, IpProtocol.ICMPV6, n, HOP_LIMIT, frame, eth.srcOffset);
    this.s.note(`icmp6.out.${type}.${code}`, { to: formatIpv6(this.dstScratch) });
  }

  /**
   * An ICMPv6 error about `packet`, a whole packet from beyond the guest link that we failed to
   * deliver, to its source through the beyond hook (the NAT), from the gateway address (the
   * router that failed it). Subject to mayAnswerWithError (which also takes the token).
   */
  errorBeyond(packet: Uint8Array, type: number, code: number, rest: number): void {
    this.errorAbout(packet, type, code, rest, false);
  }

  /**
   * An ICMPv6 error about `packet`, a whole packet from the guest that we cannot carry further (a
   * protocol the NAT does not relay), to the guest, from the gateway address. Subject to
   * mayAnswerWithError (never about an ICMPv6 error, a multicast destination...).
   */
  errorToGuest(packet: Uint8Array, type: number, code: number, rest: number): void {
    this.errorAbout(packet, type, code, rest, true);
  }

  private errorAbout(packet: Uint8Array, type: number, code: number, rest: number, toGuest: boolean): void {
    if (packet.length < IPV6_HEADER_LEN) return;
    if (!this.mayAnswerWithError(packet, 0, packet.length, type, type === Icmpv6Type.PACKET_TOO_BIG, false)) return;
    copyBytes(this.dstScratch, 0, packet, 8, 16);
    const b = this.errBuf;
    const gateway = this.port.gateway;
    const n = emitIcmpv6Error(b, IPV6_HEADER_LEN, type, code, rest, packet, 0, packet.length, ICMP_ERROR_MAX, gateway, this.dstScratch);
    if (n < 0) return;
    emitIpv6Header(b, 0, { src: gateway, dst: this.dstScratch, nextHeader: IpProtocol.ICMPV6, hopLimit: HOP_LIMIT, payloadLength: n });
    this.s.note(`icmp6.out.${type}.${code}`, { to: formatIpv6(this.dstScratch), ...(toGuest ? {} : { beyond: true }) });
    if (toGuest) this.port.sendToGuest(b.subarray(0, IPV6_HEADER_LEN + n));
    else this.s.router.beyond?.(b.subarray(0, IPV6_HEADER_LEN + n));
  }

  /** Reassembly timed out: time exceeded (code 1) to the source of `first`, the first fragment
   *  (RFC 8200 §4.5). */
  reassemblyTimeout(first: Uint8Array): void {
    if (first.length < IPV6_HEADER_LEN) return;
    if (!this.mayAnswerWithError(first, 0, first.length, Icmpv6Type.TIME_EXCEEDED, false, false)) return;
    const dst = first.subarray(8, 24);
    const from = ipv6IsLinkLocal(first, 8) ? this.port.linkLocal : this.port.gateway;
    const b = this.errBuf;
    const n = emitIcmpv6Error(b, IPV6_HEADER_LEN, Icmpv6Type.TIME_EXCEEDED, 1, 0, first, 0, first.length, ICMP_ERROR_MAX, from, dst);
    emitIpv6Header(b, 0, { src: from, dst, nextHeader: IpProtocol.ICMPV6, hopLimit: HOP_LIMIT, payloadLength: n });
    this.s.note('icmp6.out.3.1', { to: formatIpv6(dst) });
    this.port.sendToGuest(b.subarray(0, IPV6_HEADER_LEN + n));
  }

  /**
   * The one place that decides whether an ICMPv6 error of `type` may answer the packet at
   * b[off, end) (RFC 4443 §2.4 (e) and (f), as gVisor's returnError):
   *  - never about an ICMPv6 error message or a redirect (e.1, e.2);
   *  - never to a source that does not name one node: unspecified or multicast (e.6);
   *  - not about a packet sent to a multicast address or as link-layer multicast (e.3-e.5), except
   *    packet too big and parameter problem code 2 about an option whose type starts with bits 10
   *    (the caller says so in `multicastOk`);
   *  - not about a fragment other than the first, except parameter problem (RFC 8200 §4.5 sends
   *    those about fragments; anything else could not quote an upper-layer header);
   *  - then the token bucket (f), which gVisor applies to every error type.
   * Counts the reason when it says no.
   */
  private mayAnswerWithError(b: Uint8Array, off: number, end: number, type: number, multicastOk: boolean, linkMulticast: boolean): boolean {
    let why: string | undefined;
    if (ipv6IsUnspecified(b, off + 8) || ipv6IsMulticast(b, off + 8)) why = 'icmp6.errorForBadSource';
    else if (!multicastOk && (linkMulticast || ipv6IsMulticast(b, off + 24))) why = 'icmp6.errorForGroup';
    else {
      const c = this.errChain;
      const walked = walkIpv6Headers(b, off, c);
      const laterFragment = c.fragmentOffset >= 0 && (get16(b, c.fragmentOffset + 2) & 0xfff8) !== 0;
      if (laterFragment && type !== Icmpv6Type.PARAM_PROBLEM) why = 'icmp6.errorForFragment';
      else if (walked === Ipv6ChainResult.OK && !laterFragment && c.upperProtocol === IpProtocol.ICMPV6) {
        // An ICMPv6 message we cannot see the type of may be an error: no answer (gVisor's
        // choice for ICMPv4, applied here too).
        const t = c.upperOffset < end ? b[c.upperOffset]! : -1;
        if (t < 0 || t < 128 || t === Icmpv6Type.REDIRECT) why = 'icmp6.errorForError';
      }
    }
    if (why === undefined && !this.limiter.take(this.s.now())) why = 'icmp6.rateLimited';
    if (why === undefined) return true;
    this.s.drop(why);
    return false;
  }
}
