// IPv6 on the guest link: our addresses (link-local fe80::2, the gateway and DNS addresses of the
// prefix), IPv6 input with its extension headers, and UDP dispatch; ICMPv6 (icmpv6.ts: echo, the
// errors we send, dispatch by type), NDP (ndp.ts), duplicate address detection (dad.ts) and MLD
// (mld.ts) are parts it drives. Read RFC 8200 §4 (extension headers) and §5 (packet size) before
// editing. Behaviour follows gVisor's netstack (pkg/tcpip/network/ipv6/ipv6.go) where the RFCs
// leave room.
import { AddressDad, AddressState } from './dad.js';
import type { OwnAddress } from './dad.js';
import type { Ipv6Config } from './config.js';
import type { RxMeta } from './link.js';
import { LINK_HEADROOM, REASSEMBLED, frameSumTo, placePacket, reassembledFrame } from './link.js';
import { fragmentIpv6 } from './fragment.js';
import { Reassembler } from './reassembly.js';
import type { ReassemblyStats } from './reassembly.js';
import { NeighborCache, ipv6Key, ipv6KeyBytes } from './neighbor.js';
import { Icmpv6 } from './icmpv6.js';
import { Mld } from './mld.js';
import { Ndp } from './ndp.js';
import type { LayerContext } from './layer.js';
import {
  completeChecksum,
  ETHERNET_HEADER_LEN,
  EtherType,
  EthernetFrame,
  IPV6_ALL_DHCP_AGENTS,
  IPV6_ALL_MLDV2_ROUTERS,
  IPV6_ALL_NODES,
  IPV6_ALL_ROUTERS,
  IPV6_HEADER_LEN,
  IPV6_UNSPECIFIED,
  Icmpv6ParamProblemCode,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  IpProtocol,
  Ipv6ChainResult,
  Ipv6HeaderChain,
  Ipv6Packet,
  TcpSegment,
  UDP_HEADER_LEN,
  UdpDatagram,
  copyBytes,
  emitEthernetHeader,
  emitIpv6Header,
  emitUdpV6,
  formatIpv6,
  ipv6Equal,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6PrefixEqual,
  macFromIpv6Multicast,
  walkIpv6Headers,
} from '../wire/index.js';
import type { EthernetRepr, Ipv6Repr } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';

/** A UDP datagram to one of our IPv6 addresses (views valid only during the call). */
export interface UdpV6Input {
  /** Source and destination addresses: 16 bytes at srcOffset / dstOffset of `bytes`. */
  bytes: Uint8Array;
  srcOffset: number;
  dstOffset: number;
  srcPort: number;
  dstPort: number;
  srcMacOffset: number;
  payload: Uint8Array;
}

/** Returns false when the datagram is not the handler's after all (then the port is unserved). */
export type UdpV6Handler = (dgram: UdpV6Input, now: number) => boolean | void;

/** What the layer needs from the router advertiser (src/ra/router-advertiser.ts). */
export interface RouterAdvertiserPort {
  linkUp(now: number): void;
  /** A router solicitation (the whole IPv6 packet); returns whether it was valid. */
  handleRouterSolicitation(packet: Uint8Array, off: number, len: number, now: number): boolean;
  /** A router advertisement from the guest: checked and logged, never obeyed. */
  handleRouterAdvertisement(packet: Uint8Array, off: number, len: number, now: number): boolean;
  pollAt(): number;
  /** Emits due advertisements as whole IPv6 packets (views valid during the call). */
  poll(now: number, emit: (packet: Uint8Array) => void): void;
}

export { AddressState } from './dad.js';

const HOP_LIMIT = 64;
const DHCPV6_SERVER_PORT = 547;

export const LINK_LOCAL_ADDRESS = Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);

/** A packet handed to sendToGuest() as forwarded (not built by us), kept so while it waits for
 *  neighbour resolution: too big for the link, it gets packet too big instead of fragmentation. */
class Forwarded {
  constructor(readonly tag: unknown) {}
}

export class Ipv6Layer {
  /** Our addresses and their duplicate address detection. */
  private readonly dad: AddressDad;
  /** NDP for our addresses (ndp.ts). */
  private readonly ndp: Ndp;
  routerAdvertiser: RouterAdvertiserPort | undefined;
  private readonly udpHandlers = new Map<number, UdpV6Handler>();
  /** Guest-link IPv6 address (as hex) → MAC, the RFC 4861 machine. */
  readonly neighbors: NeighborCache<string>;
  /** ICMPv6: echo, the errors we send with their rate limit, dispatch by type (icmpv6.ts). */
  readonly icmp: Icmpv6;
  /** MLD: our memberships and the guest link's querier (mld.ts). */
  readonly mld: Mld;
  private advertiserStarted = false;
  private fragIdent = 0;
  /** Fragments from the guest waiting for their datagram (RFC 8200 §4.5: 60 s). */
  private readonly reassembler: Reassembler;
  private readonly eth = new EthernetFrame();
  /** Views of guest frames: their IP packet (of every length a joined TCP segment may have, in
   *  each slot: see the device's frameViews), a UDP or echo payload (none made per frame). */
  private readonly packetViews = new ViewCache(512);
  private readonly payloadViews = new ViewCache();
  private readonly fragScratch: Uint8Array;

  private readonly ip6 = new Ipv6Packet();
  private readonly chain = new Ipv6HeaderChain();
  private readonly udp = new UdpDatagram();
  private readonly tcp = new TcpSegment();
  private readonly udpInput: UdpV6Input = {
    bytes: new Uint8Array(0),
    srcOffset: 0,
    dstOffset: 0,
    srcPort: 0,
    dstPort: 0,
    srcMacOffset: 0,
    payload: new Uint8Array(0),
  };
  private readonly macScratch = new Uint8Array(6);
  /** The headers of what we send, reused (nothing made per packet). */
  private readonly ethOut: EthernetRepr = { dst: this.macScratch, src: new Uint8Array(6), etherType: EtherType.IPV6 };
  private readonly ipOut: Ipv6Repr = { src: new Uint8Array(16), dst: new Uint8Array(16), nextHeader: 0, hopLimit: 0, payloadLength: 0 };

  constructor(
    private readonly s: LayerContext,
    readonly config: Ipv6Config,
    icmpRate: number,
    icmpBurst: number,
  ) {
    this.fragScratch = new Uint8Array(s.config.mtu);
    this.fragIdent = Math.floor(s.random() * 0x1_0000_0000);
    this.reassembler = new Reassembler(6, { timeoutMs: 60_000, headroom: LINK_HEADROOM, memory: s.memory.account('reassembly') });
    this.neighbors = new NeighborCache<string>(
      {
        solicit: (key, mac) => this.ndp.sendSolicitation(ipv6KeyBytes(key), mac),
        resolved: (_key, mac, queued) => {
          for (const p of queued) this.sendPacketTo(p.bytes, mac, p.tag instanceof Forwarded);
        },
        failed: (key, queued) => {
          for (const p of queued) this.unreachable(p.bytes, p.tag instanceof Forwarded ? p.tag.tag : p.tag);
        },
      },
      { random: s.random, memory: s.memory.account('neighbors') },
    );
    this.dad = new AddressDad(
      [LINK_LOCAL_ADDRESS, config.gateway, config.dns],
      {
        probe: (a) => this.ndp.sendDadProbe(a),
        ready: (a) => this.s.log.debug({ address: formatIpv6(a.addr) }, 'IPv6 address ready (DAD passed)'),
        duplicate: (a, why) => {
          this.s.counters.add('ndp.dadFailed');
          this.s.log.error({ address: formatIpv6(a.addr), why }, 'duplicate IPv6 address: another node on the guest link uses it, so vunet will not');
        },
        contested: (a) => {
          this.s.counters.add('ndp.conflict');
          this.s.log.error({ address: formatIpv6(a.addr) }, 'the guest advertises one of our IPv6 addresses');
        },
      },
      s.random,
    );
    this.ndp = new Ndp(s, this.dad, this.neighbors, {
      gateway: config.gateway,
      linkLocal: LINK_LOCAL_ADDRESS,
      finish: (src, dst, next, len, hopLimit, mac, macOff) => this.finishIpv6(src, dst, next, len, hopLimit, mac, macOff),
    });
    this.mld = new Mld(
      s,
      {
        ownGroups: () => this.ownGroups(),
        source: () => this.mldSource(),
        finish: (src, dst, next, len, hopLimit) => this.finishIpv6(src, dst, next, len, hopLimit),
      },
      LINK_LOCAL_ADDRESS,
    );
    this.icmp = new Icmpv6(
      s,
      this.ndp,
      this.mld,
      {
        gateway: config.gateway,
        linkLocal: LINK_LOCAL_ADDRESS,
        isOurs: (b, off) => this.isOurs(b, off),
        finish: (src, dst, next, len, hopLimit, mac, macOff) => this.finishIpv6(src, dst, next, len, hopLimit, mac, macOff),
        sendPacketTo: (packet, mac) => this.sendPacketTo(packet, mac),
        sendToGuest: (packet) => this.sendToGuest(packet),
        // Before our link-local address passed DAD there is no advertiser yet.
        routerSolicitation: (b, off, len) => this.advertiserStarted && this.routerAdvertiser?.handleRouterSolicitation(b, off, len, s.now()) === true,
        routerAdvertisement: (b, off, len) => void this.routerAdvertiser?.handleRouterAdvertisement(b, off, len, s.now()),
      },
      icmpRate,
      icmpBurst,
    );
  }

  /** Counters of the reassembly of the guest's fragments (status). */
  get reassemblyStats(): Readonly<ReassemblyStats> {
    return this.reassembler.stats;
  }

  onUdp(port: number, handler: UdpV6Handler): void {
    this.udpHandlers.set(port, handler);
  }

  /** Our address equal to the 16 bytes at b[off], whatever its state. */
  private own(b: Uint8Array, off: number): OwnAddress | undefined {
    return this.dad.own(b, off);
  }

  /** Usable (preferred) address of ours at b[off]. */
  isOurs(b: Uint8Array, off: number): boolean {
    return this.own(b, off)?.state === AddressState.Preferred;
  }

  addressState(addr: Uint8Array): AddressState | undefined {
    return this.own(addr, 0)?.state;
  }

  // --- link-up: DAD and MLD reports ------------------------------------------------------

  /** RFC 4862 §5.4.2: join the solicited-node groups, then probe each address after a random
   *  delay of up to MAX_RTR_SOLICITATION_DELAY. */
  linkUp(now: number): void {
    this.dad.linkUp(now);
    this.advertiserStarted = false;
    this.mld.linkUp(now);
  }

  pollAt(): number {
    let at = Math.min(this.neighbors.pollAt(), this.reassembler.pollAt(), this.mld.pollAt(), this.dad.pollAt());
    if (this.advertiserStarted && this.routerAdvertiser) at = Math.min(at, this.routerAdvertiser.pollAt());
    return at;
  }

  poll(now: number): void {
    this.neighbors.poll(now);
    this.reassembler.poll(now, (e) => this.reassemblyExpired(e.firstFragment));
    this.mld.poll(now);
    this.dad.poll(now);
    const ll = this.dad.addresses[0]!;
    if (!this.advertiserStarted && ll.state === AddressState.Preferred && this.routerAdvertiser) {
      // Router advertisements come from our link-local address, usable only after its DAD.
      this.advertiserStarted = true;
      this.routerAdvertiser.linkUp(now);
    }
    if (this.advertiserStarted) {
      this.routerAdvertiser?.poll(now, (p) => {
        this.s.note('icmp6.out.134.0');
        this.sendPacket(p);
      });
    }
    // Queries come from our link-local address (RFC 3810 §5.1.14), usable once it passed DAD.
    if (!this.mld.querierRunning && ll.state === AddressState.Preferred) this.mld.startQuerier(now);
  }

  /** Whether the guest listens to the IPv6 group at b[off] (all-nodes: always, RFC 4291 §2.7.1).
   *  Multicast toward the guest other than to all-nodes goes only to groups it joined; NDP is the
   *  exception — a node is in its solicited-node groups by RFC 4861 §7.2.1, report or not. */
  guestJoined(b: Uint8Array, off: number): boolean {
    return this.mld.guestJoined(b, off);
  }

  /**
   * The groups we report (all-nodes never is, RFC 3810 §6): all-routers (we route), the MLDv2
   * routers group ff02::16 (we are one), the DHCPv6 servers group when we serve DHCPv6, and the
   * solicited-node groups of our addresses not found duplicate — fe80::2 and prefix::2 share one.
   */
  private ownGroups(): Uint8Array[] {
    const groups = [IPV6_ALL_ROUTERS, IPV6_ALL_MLDV2_ROUTERS];
    if (this.udpHandlers.has(DHCPV6_SERVER_PORT)) groups.push(IPV6_ALL_DHCP_AGENTS);
    for (const a of this.dad.addresses) {
      if (a.state !== AddressState.Duplicate && !groups.some((g) => ipv6Equal(g, 0, a.group, 0))) groups.push(a.group);
    }
    return groups;
  }

  /** Our MLD source: fe80::2 once it passed DAD, else :: (RFC 3810 §5.2.13, while tentative). */
  private mldSource(): Uint8Array {
    const ll = this.dad.addresses[0]!;
    return ll.state === AddressState.Preferred ? ll.addr : IPV6_UNSPECIFIED;
  }

  // --- input ------------------------------------------------------------------------------

  ipv6Input(frame: Uint8Array, eth: EthernetFrame, meta: RxMeta): void {
    const ip = this.ip6.at(frame, eth.payloadOffset, eth.payloadLength);
    if (!ip.check()) return this.s.drop('ipv6.malformed');
    const srcOff = ip.srcOffset;
    const dstOff = ip.dstOffset;
    // RFC 4291 §2.7: a multicast address must not be a source.
    if (ipv6IsMulticast(frame, srcOff)) return this.s.drop('ipv6.multicastSource');
    // A fragment (after any hop-by-hop or destination options) waits for its whole datagram.
    const nh = ip.nextHeader;
    if (nh === IpProtocol.IPV6_FRAG || nh === IpProtocol.HOPOPTS || nh === IpProtocol.IPV6_OPTS) {
      if (walkIpv6Headers(frame, ip.offset, this.chain) === Ipv6ChainResult.OK && this.chain.fragmentOffset >= 0) return this.fragmentInput(frame, ip);
    }
    const multicast = ipv6IsMulticast(frame, dstOff);
    const target = this.own(frame, dstOff);
    if (!multicast && !target) {
      // Destined beyond us: we are the first router on its way. A hop limit that would reach zero
      // gets time exceeded (RFC 4443 §3.3) — the first traceroute6 hop.
      if (ip.hopLimit <= 1) {
        this.s.counters.add('ipv6.hopLimitExpired');
        return this.icmp.error(frame, eth, ip, Icmpv6Type.TIME_EXCEEDED, 0, 0, false);
      }
      // Echo requests go to the echo handler first (the NAT's echo proxy, or an embedder's).
      if (ip.nextHeader === IpProtocol.ICMPV6 && this.icmp.forward(frame, eth, ip, meta)) return;
      // The rest is the NAT's, which sends it on with hop limit - 1; without one it is
      // counted and dropped.
      if (ip.nextHeader === IpProtocol.TCP && this.s.router.tcpInput) return this.tcpv6Input(frame, ip.offset, ip.payloadOffset, ip.end, ip.hopLimit, meta);
      if (!this.s.router.beyond) return this.s.drop('ipv6.notForUs');
      // The guest is untrusted: a UDP datagram is checked here before the NAT sends it on.
      if (ip.nextHeader === IpProtocol.UDP) {
        const udp = this.udp.at(frame, ip.payloadOffset, ip.end - ip.payloadOffset);
        if (!udp.check()) return this.s.drop('udp6.malformed');
        if (
          !meta.checksumPartial &&
          !udp.verifyChecksumV6(frame, ip.srcOffset, frame, ip.dstOffset, frameSumTo(frame, meta, udp.offset + udp.udpLength), ETHERNET_HEADER_LEN)
        )
          return this.s.drop('udp6.badChecksum');
      }
      return this.s.router.beyond(this.packetViews.of(frame, ip.offset, ip.end));
    }
    const chain = this.chain;
    const walked = walkIpv6Headers(frame, ip.offset, chain);
    // Multicast we are no member of is not ours — except MLD (ICMPv6 behind a hop-by-hop router
    // alert): as the querier we hear every report, whatever group it goes to (RFC 3810 §6).
    if (
      multicast &&
      !this.listening(frame, dstOff) &&
      !(walked === Ipv6ChainResult.OK && chain.upperProtocol === IpProtocol.ICMPV6 && chain.routerAlert >= 0)
    ) {
      return this.s.drop('ipv6.groupNotJoined');
    }
    switch (walked) {
      case Ipv6ChainResult.OK:
        break;
      case Ipv6ChainResult.PARAM_PROBLEM_UNLESS_MULTICAST:
        // An option of action 11: no error when the packet went to a group (RFC 8200 §4.2).
        if (multicast) return this.s.drop('ipv6.badOption');
        this.s.counters.add('ipv6.paramProblem');
        return this.icmp.error(frame, eth, ip, Icmpv6Type.PARAM_PROBLEM, chain.problemCode, chain.problemPointer, false);
      case Ipv6ChainResult.PARAM_PROBLEM:
        // RFC 4443 §2.4 (e.3): code 2 about an option of action 10 goes even to multicast.
        this.s.counters.add('ipv6.paramProblem');
        return this.icmp.error(
          frame,
          eth,
          ip,
          Icmpv6Type.PARAM_PROBLEM,
          chain.problemCode,
          chain.problemPointer,
          chain.problemCode === Icmpv6ParamProblemCode.UNRECOGNIZED_OPTION,
        );
      default:
        return this.s.drop('ipv6.badExtensionHeaders');
    }
    // A tentative address takes nothing but NDP (RFC 4862 §5.4).
    if (target && target.state !== AddressState.Preferred && chain.upperProtocol !== IpProtocol.ICMPV6) return this.s.drop('ipv6.tentative');
    const end = ip.end;
    switch (chain.upperProtocol) {
      case IpProtocol.ICMPV6:
        return this.icmp.input(frame, eth, ip, chain.upperOffset, end - chain.upperOffset, meta, chain.routerAlert);
      case IpProtocol.UDP:
        return this.udpv6Input(frame, eth, ip, chain.upperOffset, end - chain.upperOffset, meta);
      case IpProtocol.TCP:
        if (multicast) return this.s.drop('tcp6.multicast'); // RFC 9293 §3.9.2.1: unicast only
        if (!this.s.router.tcpInput) return this.s.drop('tcp6.unserved');
        return this.tcpv6Input(frame, ip.offset, chain.upperOffset, end, ip.hopLimit, meta);
      case 59: // No Next Header
        return;
      default:
        // RFC 8200 §4: unrecognized Next Header → parameter problem code 1.
        return this.icmp.error(frame, eth, ip, Icmpv6Type.PARAM_PROBLEM, 1, chain.nextHeaderPointer, false);
    }
  }

  /** A fragment: held until its datagram is whole (reassembly.ts), then processed as one packet. */
  private fragmentInput(frame: Uint8Array, ip: Ipv6Packet): void {
    const whole = this.reassembler.add(frame.subarray(ip.offset, ip.end), this.s.now());
    if (!whole) return;
    const f = reassembledFrame(frame, whole);
    this.s.counters.add('ipv6.reassembled');
    this.ipv6Input(f, this.eth.at(f, 0, f.length), REASSEMBLED);
  }

  /** Reassembly timed out: time exceeded (code 1) to the source, when the first fragment came
   *  (RFC 8200 §4.5). */
  private reassemblyExpired(first: Uint8Array | undefined): void {
    this.s.counters.add('ipv6.reassemblyTimeout');
    if (first) this.icmp.reassemblyTimeout(first);
  }

  /** Multicast groups we take: all-nodes, all-routers, MLDv2 routers, DHCPv6 servers
   *  (ff02::1:2, when a UDP 547 handler is registered), our solicited-node groups. */
  private listening(b: Uint8Array, off: number): boolean {
    if (ipv6Equal(b, off, IPV6_ALL_NODES, 0) || ipv6Equal(b, off, IPV6_ALL_ROUTERS, 0) || ipv6Equal(b, off, IPV6_ALL_MLDV2_ROUTERS, 0)) return true;
    if (this.udpHandlers.has(DHCPV6_SERVER_PORT) && ipv6Equal(b, off, IPV6_ALL_DHCP_AGENTS, 0)) return true;
    for (const a of this.dad.addresses) if (ipv6Equal(a.group, 0, b, off)) return true;
    return false;
  }

  /** The MAC known for a guest IPv6 address (diagnostics and tests). */
  lookupMac(addr: Uint8Array): Uint8Array | undefined {
    return this.neighbors.lookup(ipv6Key(addr, 0));
  }

  /** Whether `b[off..]` is an address on the guest link: link-local, or in our prefix. */
  private onLink(b: Uint8Array, off: number): boolean {
    return ipv6IsLinkLocal(b, off) || ipv6PrefixEqual(b, off, this.config.prefix, 0, this.config.prefixLength);
  }

  /**
   * Sends an IPv6 packet (from its header; checksums done) to a destination on the guest link,
   * resolving it with NDP first; the packet waits (copied) while resolution runs. On failure it is
   * answered as a router would (see unreachable()). A packet larger than the link MTU is cut into
   * fragments when we built it (the NAT re-originates what it relays: that is ours), or answered
   * with packet too big when `forwarded` says it is another node's, passed on unchanged (RFC 8200
   * §5: only the source fragments).
   */
  /** `partial` > 0: a packet we built, transport header right after the IPv6 header, whose
   *  checksum (that far into the transport header) is partial (see Ipv4Layer.sendToGuest). */
  sendToGuest(packet: Uint8Array, tag?: unknown, forwarded = false, partial = 0, segmentSize = 0): boolean {
    if (packet.length < IPV6_HEADER_LEN || !this.onLink(packet, 24) || ipv6IsMulticast(packet, 24) || this.own(packet, 24)) {
      this.s.drop('ipv6.noRouteToGuest');
      return false;
    }
    const key = ipv6Key(packet, 24);
    if (segmentSize > 0) {
      // As Ipv4Layer.sendSegmented: whole, to a resolved neighbour, never queued or fragmented.
      const mac = this.neighbors.lookup(key) && this.neighbors.resolve(key, this.s.now());
      return this.s.sendSegmented(packet, mac, EtherType.IPV6, IPV6_HEADER_LEN, partial, segmentSize);
    }
    if (partial > 0 && (packet.length > this.s.config.mtu || !this.neighbors.lookup(key))) {
      completeChecksum(packet, IPV6_HEADER_LEN, packet.length, partial, packet[6] === IpProtocol.UDP);
      partial = 0;
    }
    const mac = this.neighbors.resolve(key, this.s.now(), packet, forwarded ? new Forwarded(tag) : tag);
    if (!mac) return false;
    if (partial > 0) {
      placePacket(this.s.out, packet);
      return this.frameAndSend(this.s.out, ETHERNET_HEADER_LEN + 24, mac, 0, packet.length, partial);
    }
    return this.sendPacketTo(packet, mac, forwarded);
  }

  /**
   * Resolution of `dst` failed for a queued packet: RFC 4861 §7.2.2 — ICMPv6 destination
   * unreachable, code 3 (address unreachable), to its source, unless we are that source (then the
   * flow is told). That source sits beyond the guest link, so the error goes to the beyond hook.
   */
  private unreachable(packet: Uint8Array, tag: unknown): void {
    this.s.counters.add('ipv6.unresolved');
    if (this.own(packet, 8)) {
      this.s.router.unreachable?.(tag, 6);
      return;
    }
    this.icmp.errorBeyond(packet, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADDRESS, 0);
  }

  /** A TCP segment to us or beyond (upper header at `off`): checked, then the TCP hook's. */
  private tcpv6Input(frame: Uint8Array, ipOff: number, off: number, end: number, hopLimit: number, meta: RxMeta): void {
    const tcp = this.tcp.at(frame, off, end - off);
    if (!tcp.check()) return this.s.drop('tcp6.malformed');
    if (!meta.checksumPartial) {
      // Verified from the device's sum when it has one (headers alone are read: payload left in
      // guest memory stays there), else over the payload.
      const sum = frameSumTo(frame, meta, end);
      if (sum < 0) this.s.loadRxPayload();
      if (!tcp.verifyChecksumV6(frame, ipOff + 8, frame, ipOff + 24, sum, ETHERNET_HEADER_LEN)) {
        return this.s.drop('tcp6.badChecksum');
      }
    }
    this.s.router.tcpInput!(6, this.packetViews.of(frame, ipOff, end), off - ipOff, hopLimit);
  }

  private udpv6Input(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, off: number, len: number, meta: RxMeta): void {
    const udp = this.udp.at(frame, off, len);
    if (!udp.check()) return this.s.drop('udp6.malformed');
    if (
      !meta.checksumPartial &&
      !udp.verifyChecksumV6(frame, ip.srcOffset, frame, ip.dstOffset, frameSumTo(frame, meta, udp.offset + udp.udpLength), ETHERNET_HEADER_LEN)
    )
      return this.s.drop('udp6.badChecksum');
    const handler = this.udpHandlers.get(udp.dstPort);
    if (handler) {
      const d = this.udpInput;
      d.bytes = frame;
      d.srcOffset = ip.srcOffset;
      d.dstOffset = ip.dstOffset;
      d.srcPort = udp.srcPort;
      d.dstPort = udp.dstPort;
      d.srcMacOffset = eth.srcOffset;
      d.payload = this.payloadViews.of(frame, udp.payloadOffset, udp.payloadOffset + udp.payloadLength);
      if (handler(d, this.s.now()) !== false) return;
    }
    const packet = this.packetViews.of(frame, ip.offset, ip.end);
    if (this.s.router.unservedUdp?.(6, packet, udp.offset - ip.offset, ip.hopLimit)) return;
    this.s.counters.add('udp6.noPort');
    this.icmp.error(frame, eth, ip, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT, 0, false);
  }

  // --- output -----------------------------------------------------------------------------

  /** Sends a UDP datagram from `src` (ours) to `dst` at `dstMac`; `payload` is copied. */
  sendUdpV6(src: Uint8Array, srcPort: number, dst: Uint8Array, dstPort: number, dstMac: Uint8Array, payload: Uint8Array): boolean {
    const o = this.s.out;
    const udpOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    if (udpOff + UDP_HEADER_LEN + payload.length > o.length) {
      this.s.drop('udp6.outTooBig');
      return false;
    }
    o.set(payload, udpOff + UDP_HEADER_LEN);
    emitUdpV6(o, udpOff, { srcPort, dstPort, payloadLength: payload.length }, src, dst);
    return this.finishIpv6(src, dst, IpProtocol.UDP, UDP_HEADER_LEN + payload.length, HOP_LIMIT, dstMac, 0);
  }

  /** Sends a router advertisement built by the advertiser (multicast, or resolved unicast). */
  private sendPacket(p: Uint8Array): void {
    if (ipv6IsMulticast(p, 24)) this.sendPacketTo(p, undefined);
    else this.sendToGuest(p);
  }

  /** Frames a whole IPv6 packet to `mac` (or its group MAC when multicast) and sends it. */
  private sendPacketTo(p: Uint8Array, mac: Uint8Array | undefined, forwarded = false): boolean {
    if (p.length <= this.s.config.mtu) {
      placePacket(this.s.out, p);
      return this.frameAndSend(this.s.out, ETHERNET_HEADER_LEN + 24, mac, 0, p.length);
    }
    return this.sendTooBig(p, mac, forwarded);
  }

  /** A packet over the MTU: fragmented, or answered with packet too big when forwarded. Apart
   *  from sendPacketTo(): its fragment callback captures `mac`, and a function with captured
   *  variables allocates their context on every call. */
  private sendTooBig(p: Uint8Array, mac: Uint8Array | undefined, forwarded: boolean): boolean {
    const o = this.s.out;
    const one = (f: Uint8Array): boolean => {
      placePacket(o, f);
      return this.frameAndSend(o, ETHERNET_HEADER_LEN + 24, mac, 0, f.length);
    };
    if (forwarded) {
      // RFC 8200 §5, RFC 4443 §3.2: a router does not fragment; it answers packet too big with the
      // MTU of the next link, to the source beyond the guest link.
      this.s.counters.add('ipv6.packetTooBig');
      this.icmp.errorBeyond(p, Icmpv6Type.PACKET_TOO_BIG, 0, this.s.config.mtu);
      return false;
    }
    // We are the source of what we build (and re-originate for the NAT): we fragment it.
    this.fragIdent = (this.fragIdent + 1) >>> 0;
    if (p[6] === IpProtocol.IPV6_FRAG || !fragmentIpv6(p, this.s.config.mtu, this.fragIdent, this.fragScratch, one)) {
      this.s.drop('ipv6.cannotFragment');
      return false;
    }
    this.s.counters.add('ipv6.fragmentedOut');
    return true;
  }

  /**
   * Writes the IPv6 header in front of a payload at out[54], then the Ethernet header: to the
   * group MAC for a multicast destination, else to `mac[macOff..]`, and sends it.
   */
  private finishIpv6(src: Uint8Array, dst: Uint8Array, next: number, payloadLength: number, hopLimit: number, mac?: Uint8Array, macOff = 0): boolean {
    const ip = this.ipOut;
    ip.src = src;
    ip.dst = dst;
    ip.nextHeader = next;
    ip.hopLimit = hopLimit;
    ip.payloadLength = payloadLength;
    emitIpv6Header(this.s.out, ETHERNET_HEADER_LEN, ip);
    return this.frameAndSend(dst, 0, mac, macOff, IPV6_HEADER_LEN + payloadLength);
  }

  private frameAndSend(dst: Uint8Array, dstOff: number, mac: Uint8Array | undefined, macOff: number, ipLength: number, partial = 0): boolean {
    const o = this.s.out;
    if (ipv6IsMulticast(dst, dstOff)) {
      macFromIpv6Multicast(this.macScratch, 0, dst, dstOff);
    } else if (mac) {
      copyBytes(this.macScratch, 0, mac, macOff, 6);
    } else {
      this.s.drop('ipv6.noNeighbor');
      return false;
    }
    this.ethOut.src = this.s.config.mac;
    emitEthernetHeader(o, 0, this.ethOut);
    return this.s.transmit(ETHERNET_HEADER_LEN + ipLength, partial > 0 ? ETHERNET_HEADER_LEN + IPV6_HEADER_LEN : 0, partial);
  }
}

/** A group MLD reports may name: multicast, scope 2 or wider, not all-nodes (RFC 3810 §6). */
