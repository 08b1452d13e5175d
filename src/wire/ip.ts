// Numbers shared by IPv4 and IPv6: the protocol / next-header registry; and the port pair TCP
// and UDP headers both begin with (RFC 768, RFC 9293 §3.1).
//
// Read before editing: the IANA "Assigned Internet Protocol Numbers" registry; RFC 8200 section 4
// for which of these are IPv6 extension headers.

import { get16, set16, WireView } from './bytes.js';

export const IpProtocol = {
  HOPOPTS: 0,
  ICMP: 1,
  IGMP: 2,
  TCP: 6,
  UDP: 17,
  IPV6_ROUTE: 43,
  IPV6_FRAG: 44,
  ESP: 50,
  AH: 51,
  ICMPV6: 58,
  IPV6_NONXT: 59,
  IPV6_OPTS: 60,
} as const;

/** Short protocol name for logs ("tcp", "udp", "proto-132"). */
export function formatIpProtocol(p: number): string {
  switch (p) {
    case IpProtocol.HOPOPTS:
      return 'hopopts';
    case IpProtocol.ICMP:
      return 'icmp';
    case IpProtocol.IGMP:
      return 'igmp';
    case IpProtocol.TCP:
      return 'tcp';
    case IpProtocol.UDP:
      return 'udp';
    case IpProtocol.IPV6_ROUTE:
      return 'ipv6-route';
    case IpProtocol.IPV6_FRAG:
      return 'ipv6-frag';
    case IpProtocol.ESP:
      return 'esp';
    case IpProtocol.AH:
      return 'ah';
    case IpProtocol.ICMPV6:
      return 'icmpv6';
    case IpProtocol.IPV6_NONXT:
      return 'ipv6-nonxt';
    case IpProtocol.IPV6_OPTS:
      return 'ipv6-opts';
    default:
      return `proto-${p}`;
  }
}

/** The source and destination ports at bytes 0 and 2 of a TCP or UDP header: the base of their views. */
export class PortsView extends WireView {
  get srcPort(): number {
    return get16(this.bytes, this.offset);
  }
  set srcPort(v: number) {
    set16(this.bytes, this.offset, v);
  }
  get dstPort(): number {
    return get16(this.bytes, this.offset + 2);
  }
  set dstPort(v: number) {
    set16(this.bytes, this.offset + 2, v);
  }
}
