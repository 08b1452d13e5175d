// NDP for our addresses on the guest link (RFC 4861): neighbor solicitations and advertisements
// in (validated as §7.1 says, answered for our addresses as §7.2.3-§7.2.4 say, and what they teach
// the neighbour cache, §7.2.3 and §7.2.5), our solicitations out (address resolution and NUD
// probes), and the DAD probes and conflicts of RFC 4862 §5.4 for dad.ts. Router solicitations and
// advertisements are the router advertiser's (src/ra). Read RFC 4861 §7 before editing.
import type { AddressDad, OwnAddress } from './dad.js';
import { AddressState } from './dad.js';
import type { LayerContext } from './layer.js';
import type { NeighborCache } from './neighbor.js';
import { ipv6Key } from './neighbor.js';
import {
  ETHERNET_HEADER_LEN,
  IPV6_ALL_NODES,
  IPV6_HEADER_LEN,
  IPV6_UNSPECIFIED,
  IpProtocol,
  NdpNeighborAdvert,
  NdpNeighborSolicit,
  NdpOptionType,
  copyBytes,
  emitNdpNeighborAdvert,
  emitNdpNeighborSolicit,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6IsUnspecified,
  ipv6SolicitedNode,
} from '../wire/index.js';
import type { EthernetFrame, Ipv6Packet } from '../wire/index.js';

/** RFC 4861 §7.1: NDP messages go, and must arrive, with hop limit 255 (never routed). */
export const NDP_HOP_LIMIT = 255;

/** What NDP needs of the IPv6 layer. */
export interface NdpPort {
  /** Our global gateway address (the source of solicitations for global addresses). */
  readonly gateway: Uint8Array;
  /** Our link-local address (the source of solicitations for link-local addresses). */
  readonly linkLocal: Uint8Array;
  /** Writes the IPv6 header for the payload at out[54, +payloadLength) and sends the frame, to the
   *  MAC at mac[macOff] when given. */
  finish(src: Uint8Array, dst: Uint8Array, next: number, payloadLength: number, hopLimit: number, mac?: Uint8Array, macOff?: number): boolean;
}

export class Ndp {
  private readonly ns = new NdpNeighborSolicit();
  private readonly na = new NdpNeighborAdvert();
  private readonly dstScratch = new Uint8Array(16);

  constructor(
    private readonly s: LayerContext,
    private readonly dad: AddressDad,
    private readonly neighbors: NeighborCache<string>,
    private readonly port: NdpPort,
  ) {}

  /** A DAD probe for `a` (RFC 4862 §5.4.2): an NS from :: to the address's solicited-node group. */
  sendDadProbe(a: OwnAddress): void {
    const o = this.s.out;
    const icmpOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    const len = emitNdpNeighborSolicit(o, icmpOff, { target: a.addr }, IPV6_UNSPECIFIED, a.group);
    this.port.finish(IPV6_UNSPECIFIED, a.group, IpProtocol.ICMPV6, len, NDP_HOP_LIMIT);
    this.s.counters.add('ndp.dadProbe');
    this.s.note('icmp6.out.135.0');
  }

  /** RFC 4861 §7.1.1 validation, then §7.2.3 (answer for our addresses) and RFC 4862 §5.4.3 (DAD). */
  nsInput(frame: Uint8Array, eth: EthernetFrame, ip: Ipv6Packet, off: number, len: number): void {
    const ns = this.ns.at(frame, off, len);
    if (ip.hopLimit !== NDP_HOP_LIMIT || !ns.check() || ipv6IsMulticast(frame, ns.targetOffset)) return this.s.drop('ndp.badNs');
    const fromUnspecified = ipv6IsUnspecified(frame, ip.srcOffset);
    const sll = ns.findLinkAddress(NdpOptionType.SOURCE_LL_ADDR);
    if (fromUnspecified && (sll >= 0 || !isSolicitedNodeGroup(frame, ip.dstOffset))) return this.s.drop('ndp.badNs');
    if (!fromUnspecified && sll >= 0) this.learn(frame, ip.srcOffset, sll);
    const a = this.dad.own(frame, ns.targetOffset);
    if (!a) return this.s.counters.add('ndp.nsNotForUs');
    if (a.state !== AddressState.Preferred) {
      // Someone else probes the address we are probing: neither may use it. (Tentative, we do
      // not answer; duplicate, it is not ours to answer for.)
      if (fromUnspecified) this.dad.conflict(a, 'probe');
      return;
    }
    // Answer: to the solicitor, or to all nodes when it was a DAD probe (it then learns the
    // address is taken). S only for a unicast answer (§7.2.4); R because we route; O as the owner.
    const dst = fromUnspecified ? IPV6_ALL_NODES : frame.subarray(ip.srcOffset, ip.srcOffset + 16);
    copyBytes(this.dstScratch, 0, dst, 0, 16);
    const o = this.s.out;
    const icmpOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    const n = emitNdpNeighborAdvert(
      o,
      icmpOff,
      { target: a.addr, router: true, solicited: !fromUnspecified, override: true, targetMac: this.s.config.mac },
      a.addr,
      this.dstScratch,
    );
    const macOff = sll >= 0 ? sll : eth.srcOffset;
    this.port.finish(a.addr, this.dstScratch, IpProtocol.ICMPV6, n, NDP_HOP_LIMIT, fromUnspecified ? undefined : frame, macOff);
    this.s.counters.add('ndp.naOut');
    this.s.note('icmp6.out.136.0');
  }

  /** RFC 4861 §7.1.2 validation; an NA for one of our addresses is a conflict (RFC 4862 §5.4.4). */
  naInput(frame: Uint8Array, ip: Ipv6Packet, off: number, len: number): void {
    const na = this.na.at(frame, off, len);
    if (ip.hopLimit !== NDP_HOP_LIMIT || !na.check() || ipv6IsMulticast(frame, na.targetOffset)) return this.s.drop('ndp.badNa');
    if (ipv6IsMulticast(frame, ip.dstOffset) && na.solicited) return this.s.drop('ndp.badNa');
    const a = this.dad.own(frame, na.targetOffset);
    if (a) {
      this.dad.conflict(a, 'advert');
      return;
    }
    const tll = na.findLinkAddress(NdpOptionType.TARGET_LL_ADDR);
    const mac = tll >= 0 ? frame.subarray(tll, tll + 6) : undefined;
    this.neighbors.confirm(ipv6Key(frame, na.targetOffset), mac, this.s.now(), { solicited: na.solicited, override: na.override });
  }

  /** Unsolicited link-layer information from the guest (RFC 4861 §7.2.3). */
  learn(b: Uint8Array, addrOff: number, macOff: number): void {
    if (ipv6IsUnspecified(b, addrOff)) return;
    this.neighbors.learn(ipv6Key(b, addrOff), b.subarray(macOff, macOff + 6), this.s.now());
  }

  /** NS for `target`: multicast to its solicited-node group, or unicast when probing `mac`. */
  sendSolicitation(target: Uint8Array, mac: Uint8Array | undefined): void {
    const src = ipv6IsLinkLocal(target, 0) ? this.port.linkLocal : this.port.gateway;
    if (mac) copyBytes(this.dstScratch, 0, target, 0, 16);
    else ipv6SolicitedNode(this.dstScratch, 0, target, 0);
    const o = this.s.out;
    const icmpOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    const n = emitNdpNeighborSolicit(o, icmpOff, { target, sourceMac: this.s.config.mac }, src, this.dstScratch);
    this.port.finish(src, this.dstScratch, IpProtocol.ICMPV6, n, NDP_HOP_LIMIT, mac, 0);
    this.s.counters.add('ndp.nsOut');
    this.s.note('icmp6.out.135.0');
  }
}

function isSolicitedNodeGroup(b: Uint8Array, off: number): boolean {
  return b[off] === 0xff && b[off + 1] === 0x02 && b[off + 11] === 0x01 && b[off + 12] === 0xff;
}
