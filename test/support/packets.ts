// Builders for guest frames in stack tests, on top of the wire emitters, and the views tests read
// the stack's answers with.
import {
  ArpOp,
  DhcpMessageType,
  DhcpOption,
  dhcpPutBytes,
  dhcpPutEnd,
  dhcpPutU8,
  emitDhcpHeader,
  EthernetFrame,
  Icmpv4Packet,
  Ipv4Packet,
  TcpSegment,
  UdpDatagram,
  EtherType,
  IpProtocol,
  MAC_BROADCAST,
  emitArp,
  emitEthernetHeader,
  emitIcmpv4,
  emitIcmpv6,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpV4,
  emitTcpV6,
  emitUdpV4,
  emitUdpV6,
  icmpv4EchoRest,
  icmpv6EchoRest,
  tcpHeaderLength,
  TcpOptions,
  ipv4,
} from '../../src/wire/index.js';

export const GUEST_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
export const GW_MAC = Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02);
export const GUEST_IP = ipv4(10, 0, 2, 15);
export const GW_IP = ipv4(10, 0, 2, 2);
export const DNS_IP = ipv4(10, 0, 2, 3);

/** The guest's ARP reply to vunet (for its probes of the guest's address). */
export function arpReply(senderIp = GUEST_IP, senderMac = GUEST_MAC): Uint8Array {
  const f = new Uint8Array(42);
  emitEthernetHeader(f, 0, { dst: GW_MAC, src: senderMac, etherType: EtherType.ARP });
  emitArp(f, 14, { operation: ArpOp.REPLY, senderMac, senderIp, targetMac: GW_MAC, targetIp: GW_IP });
  return f;
}

export function arpRequest(targetIp: number, senderIp = GUEST_IP, senderMac = GUEST_MAC): Uint8Array {
  const f = new Uint8Array(42);
  emitEthernetHeader(f, 0, { dst: MAC_BROADCAST, src: senderMac, etherType: EtherType.ARP });
  emitArp(f, 14, { operation: ArpOp.REQUEST, senderMac, senderIp, targetMac: new Uint8Array(6), targetIp });
  return f;
}

export interface Ipv4Frame {
  src?: number;
  dst?: number;
  proto: number;
  ttl?: number;
  flags?: number;
  fragOffset?: number;
  dstMac?: Uint8Array;
  /** The sender's MAC (default GUEST_MAC: another guest on the segment sends its own). */
  srcMac?: Uint8Array;
  id?: number;
}

/** An Ethernet + IPv4 frame around `payload` (already a complete transport message). */
export function ipv4Frame(p: Ipv4Frame, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + 20 + payload.length);
  emitEthernetHeader(f, 0, { dst: p.dstMac ?? GW_MAC, src: p.srcMac ?? GUEST_MAC, etherType: EtherType.IPV4 });
  f.set(payload, 34);
  emitIpv4Header(f, 14, {
    src: p.src ?? GUEST_IP,
    dst: p.dst ?? GW_IP,
    proto: p.proto,
    ttl: p.ttl ?? 64,
    id: p.id ?? 0x1234,
    flags: p.flags ?? 2,
    fragOffset: p.fragOffset ?? 0,
    payloadLength: payload.length,
    tos: 0,
  });
  return f;
}

export function echoRequest(ident: number, seq: number, data: Uint8Array, p: Partial<Ipv4Frame> = {}): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitIcmpv4(m, 0, { type: 8, code: 0, rest: icmpv4EchoRest(ident, seq), payloadLength: data.length });
  return ipv4Frame({ proto: IpProtocol.ICMP, ...p }, m);
}

export function udpFrame(srcPort: number, dstPort: number, data: Uint8Array, p: Partial<Ipv4Frame> = {}): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitUdpV4(m, 0, { srcPort, dstPort, payloadLength: data.length }, p.src ?? GUEST_IP, p.dst ?? GW_IP);
  return ipv4Frame({ proto: IpProtocol.UDP, ...p }, m);
}

export interface TcpFrameOptions extends Partial<Ipv4Frame> {
  window?: number;
  /** MSS option (SYNs). */
  mss?: number;
  options?: TcpOptions;
}

/** TCP options with the given fields set (the rest as TcpOptions leaves them: absent). */
export function tcpOptions(p: Partial<Pick<TcpOptions, 'mss' | 'windowScale' | 'sackPermitted' | 'timestamp' | 'tsVal' | 'tsEcr'>>): TcpOptions {
  return Object.assign(new TcpOptions(), p);
}

/** A TCP segment from the guest in an Ethernet + IPv4 frame, checksum filled. */
export function tcpFrame(
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  data: Uint8Array = new Uint8Array(0),
  p: TcpFrameOptions = {},
): Uint8Array {
  let options = p.options;
  if (!options && p.mss !== undefined) {
    options = new TcpOptions();
    options.mss = p.mss;
  }
  const repr = {
    srcPort,
    dstPort,
    seq: seq >>> 0,
    ack: ack >>> 0,
    flags,
    window: p.window ?? 65535,
    payloadLength: data.length,
    ...(options ? { options } : {}),
  };
  const hl = tcpHeaderLength(repr);
  const m = new Uint8Array(hl + data.length);
  m.set(data, hl);
  emitTcpV4(m, 0, repr, p.src ?? GUEST_IP, p.dst ?? GW_IP);
  return ipv4Frame({ proto: IpProtocol.TCP, ...p }, m);
}

export interface Ipv6Frame {
  src: Uint8Array;
  dst: Uint8Array;
  hopLimit?: number;
  srcMac?: Uint8Array;
  dstMac?: Uint8Array;
}

/** An Ethernet + IPv6 frame around `payload` (a complete transport message). */
export function ipv6Frame(p: Ipv6Frame, nextHeader: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + 40 + payload.length);
  emitEthernetHeader(f, 0, { dst: p.dstMac ?? GW_MAC, src: p.srcMac ?? GUEST_MAC, etherType: EtherType.IPV6 });
  emitIpv6Header(f, 14, { src: p.src, dst: p.dst, nextHeader, hopLimit: p.hopLimit ?? 64, payloadLength: payload.length });
  f.set(payload, 54);
  return f;
}

export function echoRequest6(ident: number, seq: number, data: Uint8Array, p: Ipv6Frame): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitIcmpv6(m, 0, { type: 128, code: 0, rest: icmpv6EchoRest(ident, seq), payloadLength: data.length }, p.src, p.dst);
  return ipv6Frame(p, IpProtocol.ICMPV6, m);
}

export function udpFrame6(srcPort: number, dstPort: number, data: Uint8Array, p: Ipv6Frame): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitUdpV6(m, 0, { srcPort, dstPort, payloadLength: data.length }, p.src, p.dst);
  return ipv6Frame(p, IpProtocol.UDP, m);
}

export function tcpFrame6(
  srcPort: number,
  dstPort: number,
  seq: number,
  ack: number,
  flags: number,
  p: Ipv6Frame & { mss?: number; data?: Uint8Array },
): Uint8Array {
  let options: TcpOptions | undefined;
  if (p.mss !== undefined) {
    options = new TcpOptions();
    options.mss = p.mss;
  }
  const data = p.data ?? new Uint8Array(0);
  const repr = { srcPort, dstPort, seq: seq >>> 0, ack: ack >>> 0, flags, window: 65535, payloadLength: data.length, ...(options ? { options } : {}) };
  const m = new Uint8Array(tcpHeaderLength(repr) + data.length);
  m.set(data, m.length - data.length);
  emitTcpV6(m, 0, repr, p.src, p.dst);
  return ipv6Frame(p, IpProtocol.TCP, m);
}

/** Views of an Ethernet + IPv4 frame the stack sent: the Ethernet header, the IP header, and the
 *  payload read as ICMP, UDP and TCP (use the one the protocol says). */
export function parseIpv4Frame(frame: Uint8Array): { eth: EthernetFrame; ip: Ipv4Packet; icmp: Icmpv4Packet; udp: UdpDatagram; tcp: TcpSegment } {
  const eth = new EthernetFrame().at(frame, 0, frame.length);
  const ip = new Ipv4Packet().at(frame, 14, frame.length - 14);
  return {
    eth,
    ip,
    icmp: new Icmpv4Packet().at(frame, ip.payloadOffset, ip.payloadLength),
    udp: new UdpDatagram().at(frame, ip.payloadOffset, ip.payloadLength),
    tcp: new TcpSegment().at(frame, ip.payloadOffset, ip.payloadLength),
  };
}

/** A DHCPDISCOVER from the guest, broadcast, asking for subnet mask, router and DNS (as udhcpc). */
export function dhcpDiscover(): Uint8Array {
  const f = new Uint8Array(14 + 20 + 8 + 300);
  const p = 42;
  emitDhcpHeader(f, p, { op: 1, xid: 0x1234abcd, secs: 0, flags: 0x8000, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC });
  let o = p + 240;
  o = dhcpPutU8(f, o, f.length, DhcpOption.MESSAGE_TYPE, DhcpMessageType.DISCOVER);
  o = dhcpPutBytes(f, o, f.length, DhcpOption.PARAMETER_REQUEST_LIST, Uint8Array.of(1, 3, 6), 0, 3);
  dhcpPutEnd(f, o, f.length);
  emitUdpV4(f, 34, { srcPort: 68, dstPort: 67, payloadLength: 300 }, 0, 0xffffffff);
  emitIpv4Header(f, 14, { src: 0, dst: 0xffffffff, proto: IpProtocol.UDP, ttl: 64, id: 1, flags: 0, fragOffset: 0, payloadLength: 308, tos: 0x10 });
  emitEthernetHeader(f, 0, { dst: MAC_BROADCAST, src: GUEST_MAC, etherType: EtherType.IPV4 });
  return f;
}
