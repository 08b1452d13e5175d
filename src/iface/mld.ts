// MLD on the guest link (RFC 2710, RFC 3810): our own memberships as a node (the all-routers
// groups, the solicited-node groups of our addresses, DHCPv6's group) and vunet as the link's
// querier, learning which groups the guest listens to. Read RFC 3810 §5 (messages), §6 and §7
// (node and router behaviour) before editing; multicast.ts holds the reporter and querier both MLD
// and IGMP use.
//
// The part of the IPv6 layer that speaks MLD: given the layer's LayerContext and what it needs of
// the layer (MldPort): the groups to report, its source address, and IPv6 framing.
import type { LayerContext } from './layer.js';
import { MembershipReporter, QUERY_INTERVAL, Querier, ROBUSTNESS, recordEffect } from './multicast.js';
import {
  ETHERNET_HEADER_LEN,
  IPV6_ALL_MLDV2_ROUTERS,
  IPV6_ALL_NODES,
  IPV6_HEADER_LEN,
  IPV6_UNSPECIFIED,
  Icmpv6Type,
  IpProtocol,
  MldMessage,
  MldRecordIterator,
  Mldv2Report,
  emitIpv6RouterAlertHopByHop,
  emitMldv1,
  emitMldv2Query,
  emitMldv2Report,
  formatIpv6,
  igmpv3EncodeCode,
  ipv6Equal,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6IsUnspecified,
  mldv2EncodeMaxResponse,
} from '../wire/index.js';
import type { Ipv6Packet } from '../wire/index.js';

/** RFC 3810 §5: MLD messages go with hop limit 1 and a hop-by-hop router alert (RFC 2711). */
const MLD_HOP_LIMIT = 1;

/** What MLD needs of the IPv6 layer. */
export interface MldPort {
  /** The groups we report (see Ipv6Layer). */
  ownGroups(): Uint8Array[];
  /** Our source: fe80::2 once it passed DAD, else :: (RFC 3810 §5.2.13, while tentative). */
  source(): Uint8Array;
  /** Writes the IPv6 header for the payload at out[54, +payloadLength) and sends the frame. */
  finish(src: Uint8Array, dst: Uint8Array, next: number, payloadLength: number, hopLimit: number): boolean;
}

export class Mld {
  /** Our own memberships (host side) and the guest link's querier (router side). */
  readonly reporter: MembershipReporter;
  readonly querier: Querier;
  private querierStarted = false;
  private readonly message = new MldMessage();
  private readonly report = new Mldv2Report();
  private readonly records = new MldRecordIterator();

  constructor(
    private readonly s: LayerContext,
    private readonly port: MldPort,
    private readonly querierAddress: Uint8Array,
  ) {
    this.reporter = new MembershipReporter(
      {
        groups: () => port.ownGroups(),
        sendReport3: (groups, recordType) => this.sendMldv2Report(groups, recordType),
        sendReportOld: (group) => this.sendMldv1Report(group),
      },
      s.random,
    );
    const event = (name: string, detail?: object): void => s.note(`mld.${name}`, detail);
    this.querier = new Querier({ sendQuery: (group, maxRespMs) => this.sendMldQuery(group, maxRespMs) }, querierAddress, event);
  }

  /** The link came up: report our groups (RFC 4862 §5.4.2 / RFC 3810 §6.1: before DAD probes
   *  them); the querier waits for startQuerier(). */
  linkUp(now: number): void {
    this.querierStarted = false;
    this.reporter.start(now);
  }

  get querierRunning(): boolean {
    return this.querierStarted;
  }

  /** Queries come from our link-local address (RFC 3810 §5.1.14): once it passed DAD. */
  startQuerier(now: number): void {
    this.querierStarted = true;
    this.querier.start(now);
  }

  pollAt(): number {
    return Math.min(this.reporter.pollAt(), this.querierStarted ? this.querier.pollAt() : Infinity);
  }

  poll(now: number): void {
    this.reporter.poll(now);
    if (this.querierStarted) this.querier.poll(now);
  }

  /** Whether the guest listens to the IPv6 group at b[off] (all-nodes: always, RFC 4291 §2.7.1). */
  guestJoined(b: Uint8Array, off: number): boolean {
    if (ipv6Equal(b, off, IPV6_ALL_NODES, 0)) return true;
    return this.querier.joined(b, off, this.s.now());
  }

  /**
   * An MLD message (RFC 2710, RFC 3810), validated as gVisor's netstack does
   * (isMLDValid): a hop-by-hop router
   * alert with the MLD value, hop limit 1, a link-local source (RFC 2710 §3, RFC 3810 §5). Queries
   * take part in the querier election and are answered for our groups; reports and dones teach the
   * querier the guest's memberships. Reports about all-nodes or an address of scope 0 or 1 are
   * ignored (RFC 3810 §6: "No MLD messages are ever sent regarding" them), as are records of
   * unknown types.
   */
  input(frame: Uint8Array, ip: Ipv6Packet, off: number, len: number, routerAlert: number): void {
    const type = frame[off]!;
    this.s.counters.add(`mld.in.${type}`);
    if (routerAlert !== 0) return this.s.drop('mld.noRouterAlert');
    if (ip.hopLimit !== MLD_HOP_LIMIT) return this.s.drop('mld.badHopLimit');
    if (!ipv6IsLinkLocal(frame, ip.srcOffset)) return this.s.drop('mld.badSource');
    const now = this.s.now();
    if (type === Icmpv6Type.MLDV2_REPORT) {
      const rep = this.report.at(frame, off, len);
      if (!rep.check()) return this.s.drop('mld.malformed');
      const r = this.records.at(frame, off, len);
      while (r.next()) {
        const a = r.addressOffset;
        if (!reportable(frame, a)) continue;
        const effect = recordEffect(r.recordType, r.sourceCount);
        if (effect === 'join') this.querier.join(now, frame, a, 3);
        else if (effect === 'leave') this.querier.leave(now, frame, a);
      }
      return;
    }
    const m = this.message.at(frame, off, len);
    if (!m.check()) return this.s.drop('mld.malformed');
    const a = m.addressOffset;
    if (type === Icmpv6Type.MLD_QUERY) {
      const general = ipv6IsUnspecified(frame, a);
      if (!general && !ipv6IsMulticast(frame, a)) return this.s.drop('mld.badGroup');
      this.querier.queryHeard(now, frame, ip.srcOffset, general ? undefined : frame, a);
      this.reporter.queryHeard(now, m.queryVersion === 2 ? 3 : 2, general ? undefined : frame, a, m.maxResponseDelay);
      return;
    }
    if (!reportable(frame, a)) return this.s.drop('mld.badGroup');
    if (type === Icmpv6Type.MLD_DONE) return this.querier.leave(now, frame, a);
    this.querier.join(now, frame, a, 2);
    this.reporter.reportHeard(now, frame, a);
  }

  /** An MLDv2 report (RFC 3810 §5.2) with one record of `recordType` per group, to ff02::16. */
  private sendMldv2Report(groups: readonly Uint8Array[], recordType: number): void {
    const src = this.port.source();
    const off = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 8;
    const len = emitMldv2Report(
      this.s.out,
      off,
      groups.map((address) => ({ type: recordType, address, sources: [] })),
      src,
      IPV6_ALL_MLDV2_ROUTERS,
    );
    if (len > 0) this.send(src, IPV6_ALL_MLDV2_ROUTERS, len);
  }

  /** An MLDv1 report for `group`, sent to the group (RFC 2710 §3), for an MLDv1 querier. */
  private sendMldv1Report(group: Uint8Array): void {
    const src = this.port.source();
    const off = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 8;
    const len = emitMldv1(this.s.out, off, { type: Icmpv6Type.MLD_REPORT, maxResponseDelay: 0, address: group }, src, group);
    if (len > 0) this.send(src, group, len);
  }

  /** An MLDv2 query from fe80::2: general to all-nodes, or for `group` to the group (RFC 3810 §5.1.15). */
  private sendMldQuery(group: Uint8Array | undefined, maxRespMs: number): void {
    const dst = group ?? IPV6_ALL_NODES;
    const off = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN + 8;
    const len = emitMldv2Query(
      this.s.out,
      off,
      {
        maxRespCode: mldv2EncodeMaxResponse(maxRespMs),
        address: group ?? IPV6_UNSPECIFIED,
        suppressRouterProcessing: false,
        qrv: ROBUSTNESS,
        qqic: igmpv3EncodeCode(QUERY_INTERVAL / 1000),
        sources: [],
      },
      this.querierAddress,
      dst,
    );
    if (len > 0) this.send(this.querierAddress, dst, len);
  }

  /** Frames the MLD message at out[62] behind a hop-by-hop router alert, hop limit 1. */
  private send(src: Uint8Array, dst: Uint8Array, len: number): void {
    const o = this.s.out;
    const hbhOff = ETHERNET_HEADER_LEN + IPV6_HEADER_LEN;
    emitIpv6RouterAlertHopByHop(o, hbhOff, IpProtocol.ICMPV6);
    const type = o[hbhOff + 8]!;
    this.port.finish(src, dst, IpProtocol.HOPOPTS, 8 + len, MLD_HOP_LIMIT);
    this.s.note(`mld.out.${type}`, { to: formatIpv6(dst) });
    this.s.note(`icmp6.out.${type}.0`);
  }
}

function reportable(b: Uint8Array, off: number): boolean {
  return ipv6IsMulticast(b, off) && (b[off + 1]! & 0x0f) >= 2 && !ipv6Equal(b, off, IPV6_ALL_NODES, 0);
}
