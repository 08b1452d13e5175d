// IGMP on the guest link (RFC 1112, RFC 2236, RFC 3376): our own memberships as a host (the
// all-routers groups: we route) and vunet as the link's querier, learning which groups the guest
// listens to. Read RFC 3376 §4 (messages), §5 and §6 (host and router behaviour) before editing;
// multicast.ts holds the reporter and querier both IGMP and MLD use.
//
// The part of the IPv4 layer that speaks IGMP: it is given the layer's LayerContext and starts
// once the gateway address has been probed (RFC 5227 §2.1.1: not a source before).
import type { LayerContext } from './layer.js';
import { MembershipReporter, QUERY_INTERVAL, Querier, ROBUSTNESS, recordEffect } from './multicast.js';
import type { McastLevel } from './multicast.js';
import {
  ETHERNET_HEADER_LEN,
  EtherType,
  IGMP_ALL_ROUTERS,
  IGMP_ALL_SYSTEMS,
  IGMPV3_ALL_ROUTERS,
  IPV4_ROUTER_ALERT_OPTION,
  IgmpGroupRecordIterator,
  IgmpPacket,
  IgmpType,
  IpProtocol,
  emitEthernetHeader,
  emitIgmp,
  emitIgmpV3Query,
  emitIgmpV3Report,
  emitIpv4Header,
  formatIpv4,
  igmpv3EncodeCode,
  ipv4InSubnet,
  ipv4IsMulticast,
  ipv4Read,
  ipv4SubnetBroadcast,
  ipv4Write,
  macFromIpv4Multicast,
} from '../wire/index.js';
import type { Ipv4Packet } from '../wire/index.js';

/** RFC 3376 §4: IGMP messages are sent with TTL 1 and a router alert option. */
const IGMP_TTL = 1;

function groupBytes(addr: number): Uint8Array {
  const b = new Uint8Array(4);
  ipv4Write(b, 0, addr);
  return b;
}

/** Groups we belong to besides all-systems (never reported, RFC 3376 §5): we route, so the
 *  all-routers groups of IGMPv1/v2 (224.0.0.2) and IGMPv3 (224.0.0.22). */
const OWN_GROUPS: readonly Uint8Array[] = [IGMP_ALL_ROUTERS, IGMPV3_ALL_ROUTERS].map(groupBytes);

export class Igmp {
  /** Our own memberships (host side) and the guest link's querier (router side). */
  readonly reporter: MembershipReporter;
  readonly querier: Querier;
  private started = false;
  private ipId = 0;
  private readonly igmp = new IgmpPacket();
  private readonly records = new IgmpGroupRecordIterator();
  private readonly group4 = new Uint8Array(4);
  private readonly macScratch = new Uint8Array(6);

  constructor(private readonly s: LayerContext) {
    const event = (name: string, detail?: object): void => s.note(`igmp.${name}`, detail);
    this.reporter = new MembershipReporter(
      {
        groups: () => OWN_GROUPS as Uint8Array[],
        sendReport3: (groups, recordType) => this.sendIgmpV3Report(groups, recordType),
        sendReportOld: (group, level) => this.sendIgmpOldReport(group, level),
      },
      s.random,
    );
    this.querier = new Querier({ sendQuery: (group, maxRespMs) => this.sendIgmpQuery(group, maxRespMs) }, groupBytes(s.config.ipv4.gateway), event);
  }

  /** The link went down and up: nothing until start() again. */
  stop(): void {
    this.started = false;
  }

  get running(): boolean {
    return this.started;
  }

  /** Our reports (RFC 3376 §5.1) and the querier's startup queries (§6.6.2). */
  start(now: number): void {
    this.started = true;
    this.reporter.start(now);
    this.querier.start(now);
  }

  pollAt(): number {
    return this.started ? Math.min(this.reporter.pollAt(), this.querier.pollAt()) : Infinity;
  }

  poll(now: number): void {
    if (!this.started) return;
    this.reporter.poll(now);
    this.querier.poll(now);
  }

  /** Whether the guest listens to IPv4 group `group` (all-systems: always, RFC 1112 §4). */
  guestJoined(group: number): boolean {
    if (group === IGMP_ALL_SYSTEMS) return true;
    ipv4Write(this.group4, 0, group);
    return this.querier.joined(this.group4, 0, this.s.now());
  }

  /**
   * An IGMP message (RFC 1112 App. I, RFC 2236 §2, RFC 3376 §4), validated as gVisor's netstack
   * does (isPacketValid): TTL 1 and a router alert option (RFC 2236 §2, RFC 3376 §4), and for reports and
   * leaves a source in the guest's subnet (RFC 2236 §6; RFC 3376 §4.2.13 lets a v3 report come
   * from 0.0.0.0). IGMPv1 messages are taken without router alert: RFC 1112 predates RFC 2113 (gVisor
   * would drop them; the RFC wins). Queries take part in the querier election and are answered
   * for our groups; reports teach the querier the guest's memberships.
   */
  input(frame: Uint8Array, ip: Ipv4Packet, routerAlert: boolean): void {
    const m = this.igmp.at(frame, ip.payloadOffset, ip.payloadLength);
    if (!m.check()) return this.s.drop('igmp.malformed');
    if (!m.verifyChecksum()) return this.s.drop('igmp.badChecksum');
    const type = m.type;
    const src = ip.src;
    this.s.note(`igmp.in.${type}`, { from: formatIpv4(src), group: formatIpv4(m.group) });
    if (ip.ttl !== IGMP_TTL) return this.s.drop('igmp.badTtl');
    const v1 = type === IgmpType.V1_MEMBERSHIP_REPORT || (type === IgmpType.MEMBERSHIP_QUERY && m.queryVersion === 1);
    if (!routerAlert && !v1) return this.s.drop('igmp.noRouterAlert');
    const cfg = this.s.config.ipv4;
    const onLink = ipv4InSubnet(src, cfg.network, cfg.prefixLength) && src !== cfg.network && src !== ipv4SubnetBroadcast(cfg.network, cfg.prefixLength);
    const now = this.s.now();
    const g = this.group4;
    switch (type) {
      case IgmpType.MEMBERSHIP_QUERY: {
        const group = m.group;
        if (group !== 0 && !ipv4IsMulticast(group)) return this.s.drop('igmp.badGroup');
        ipv4Write(g, 0, group);
        // A querier at 0.0.0.0 (a snooping switch's) takes no part in the election.
        if (src !== 0) this.querier.queryHeard(now, frame, ip.offset + 12, group !== 0 ? g : undefined, 0);
        if (this.started) this.reporter.queryHeard(now, m.queryVersion as McastLevel, group !== 0 ? g : undefined, 0, m.maxResponseTime * 100);
        return;
      }
      case IgmpType.V1_MEMBERSHIP_REPORT:
      case IgmpType.V2_MEMBERSHIP_REPORT:
      case IgmpType.V2_LEAVE_GROUP: {
        if (!onLink) return this.s.drop('igmp.badSource');
        const group = m.group;
        // All-systems membership is implicit and never reported (RFC 3376 §5).
        if (!ipv4IsMulticast(group) || group === IGMP_ALL_SYSTEMS) return this.s.drop('igmp.badGroup');
        ipv4Write(g, 0, group);
        if (type === IgmpType.V2_LEAVE_GROUP) return this.querier.leave(now, g, 0);
        this.querier.join(now, g, 0, type === IgmpType.V1_MEMBERSHIP_REPORT ? 1 : 2);
        this.reporter.reportHeard(now, g, 0);
        return;
      }
      case IgmpType.V3_MEMBERSHIP_REPORT: {
        if (src !== 0 && !onLink) return this.s.drop('igmp.badSource');
        const r = this.records.at(frame, m.offset, m.length);
        while (r.next()) {
          const group = r.group;
          if (!ipv4IsMulticast(group) || group === IGMP_ALL_SYSTEMS) continue;
          ipv4Write(g, 0, group);
          const effect = recordEffect(r.recordType, r.sourceCount);
          if (effect === 'join') this.querier.join(now, g, 0, 3);
          else if (effect === 'leave') this.querier.leave(now, g, 0);
        }
        return;
      }
      default:
        return this.s.drop('igmp.unknownType'); // RFC 3376 §4: ignored
    }
  }

  /** An IGMPv3 query from the gateway: general to all-systems, or for `group` (RFC 3376 §4.1). */
  private sendIgmpQuery(group: Uint8Array | undefined, maxRespMs: number): void {
    const o = this.s.out;
    const off = ETHERNET_HEADER_LEN + 24;
    const g = group ? ipv4Read(group, 0) : 0;
    const n = emitIgmpV3Query(o, off, {
      maxRespCode: igmpv3EncodeCode(maxRespMs / 100),
      group: g,
      suppressRouterProcessing: false,
      qrv: ROBUSTNESS,
      qqic: igmpv3EncodeCode(QUERY_INTERVAL / 1000),
      sources: [],
    });
    this.sendIgmp(g === 0 ? IGMP_ALL_SYSTEMS : g, n);
  }

  /** Our state-change or current-state report (RFC 3376 §4.2) to 224.0.0.22. */
  private sendIgmpV3Report(groups: readonly Uint8Array[], recordType: number): void {
    const o = this.s.out;
    const n = emitIgmpV3Report(
      o,
      ETHERNET_HEADER_LEN + 24,
      groups.map((x) => ({ type: recordType, group: ipv4Read(x, 0), sources: [] })),
    );
    if (n > 0) this.sendIgmp(IGMPV3_ALL_ROUTERS, n);
  }

  /** An IGMPv1 or v2 report for `group`, sent to the group (RFC 2236 §2, RFC 1112 App. I). */
  private sendIgmpOldReport(group: Uint8Array, level: 1 | 2): void {
    const g = ipv4Read(group, 0);
    const type = level === 1 ? IgmpType.V1_MEMBERSHIP_REPORT : IgmpType.V2_MEMBERSHIP_REPORT;
    const n = emitIgmp(this.s.out, ETHERNET_HEADER_LEN + 24, { type, maxRespTime: 0, group: g });
    this.sendIgmp(g, n);
  }

  /** Frames the IGMP message at out[38] from the gateway to `dst`: TTL 1, router alert, the TOS of
   *  internetwork control as Linux uses. */
  private sendIgmp(dst: number, igmpLength: number): void {
    const o = this.s.out;
    this.ipId = (this.ipId + 1) & 0xffff; // (atomic datagrams: any identification, RFC 6864)
    emitIpv4Header(o, ETHERNET_HEADER_LEN, {
      src: this.s.config.ipv4.gateway,
      dst,
      proto: IpProtocol.IGMP,
      ttl: IGMP_TTL,
      id: this.ipId,
      flags: 0,
      fragOffset: 0,
      payloadLength: igmpLength,
      tos: 0xc0,
      options: IPV4_ROUTER_ALERT_OPTION,
    });
    macFromIpv4Multicast(this.macScratch, 0, dst);
    emitEthernetHeader(o, 0, { dst: this.macScratch, src: this.s.config.mac, etherType: EtherType.IPV4 });
    this.s.note(`igmp.out.${o[ETHERNET_HEADER_LEN + 24]}`, { to: formatIpv4(dst) });
    this.s.transmit(ETHERNET_HEADER_LEN + 24 + igmpLength);
  }
}
