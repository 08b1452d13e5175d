// The seed corpus: one valid frame (or a deliberately odd one) for every protocol vunet parses,
// as the guest would send it. Captured bytes come from ../captures.ts (the samples the wire tests
// parse and emit, kept there once so the fuzzer, the flip test and any other test can share them);
// the rest is built with the test builders and the wire emitters, then given correct lengths and
// checksums so the mutations start from frames that reach the deepest parsers.
//
// Addresses follow vunet's defaults (10.0.2.0/24, fec0::/64, gateway .2 / ::2, DNS .3 / ::3).
// Destinations "beyond" the gateway are documentation prefixes (192.0.2.0/24, 2001:db8::/32): the
// fuzz target runs where nothing is routed anyway (see target-process.ts), this only keeps the
// corpus itself from naming anybody's real host.
import {
  ArpOp,
  DhcpMessageType,
  DhcpOption,
  Dhcpv6MessageType,
  Dhcpv6Option,
  EtherType,
  IpProtocol,
  MAC_BROADCAST,
  TcpFlags,
  TcpOptions,
  dhcpPutBytes,
  dhcpPutEnd,
  dhcpPutIp,
  dhcpPutU8,
  dhcpv6PutDuidLl,
  dhcpv6PutIaNa,
  dhcpv6PutU16,
  emitArp,
  emitDhcpHeader,
  emitDhcpv6Header,
  emitEthernetHeader,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpOptions,
  ipv4,
  parseIpv6,
  tcpOptionsLength,
} from '../../../src/wire/index.js';
import {
  ARP_REPLY,
  ARP_REQUEST_FRAME,
  DHCPDISCOVER_FRAME,
  DHCPV6_SOLICIT_PACKET,
  ECHO6_PACKET,
  ECHO_REQUEST_FRAME,
  IGMPV1_QUERY,
  IGMPV2_QUERY,
  IGMPV2_REPORT,
  IGMPV3_GSS_QUERY,
  IGMPV3_QUERY,
  IGMPV3_REPORT_FRAME,
  IPV4_WITH_OPTIONS,
  IPV6_DSTOPTS_FRAG,
  MLDV1_REPORT,
  MLDV2_QUERY,
  MLDV2_REPORT_FRAME,
  NDP_NA,
  NDP_RA,
  NDP_REDIRECT,
  NDP_RS,
  NS_FRAME,
  PORT_UNREACHABLE,
  PROBE_UDP,
  TCP6_SACK_SEGMENT,
  TCP_SYN_PACKET,
} from '../captures.js';
import { DNS_IP, GUEST_IP, GUEST_MAC, GW_IP, GW_MAC } from '../packets.js';
import { ETH, fixChecksums } from './layout.js';

// ---- Addresses ----------------------------------------------------------------------------------

const v6 = (s: string): Uint8Array => parseIpv6(s)!;
export const GUEST_LL = v6('fe80::5054:ff:fe12:3456');
export const GUEST_GLOBAL = v6('fec0::5054:ff:fe12:3456');
export const GW6 = v6('fec0::2');
export const GW6_LL = v6('fe80::2');
export const DNS6 = v6('fec0::3');
export const BEYOND6 = v6('2001:db8::9');
export const ALL_NODES = v6('ff02::1');
export const ALL_ROUTERS = v6('ff02::2');
export const ALL_MLDV2 = v6('ff02::16');
export const ALL_DHCP = v6('ff02::1:2');
export const SOLICITED_GW = v6('ff02::1:ff00:2');
export const UNSPEC6 = new Uint8Array(16);
export const BEYOND4 = ipv4(192, 0, 2, 9);
export const BROADCAST4 = 0xffffffff;

/** Interesting addresses for mutations (4 and 16 bytes). */
export const ADDRESSES4: readonly number[] = [
  GUEST_IP,
  GW_IP,
  DNS_IP,
  BEYOND4,
  BROADCAST4,
  ipv4(10, 0, 2, 255),
  ipv4(10, 0, 2, 0),
  0,
  ipv4(127, 0, 0, 1),
  ipv4(224, 0, 0, 1),
  ipv4(224, 0, 0, 22),
  ipv4(239, 1, 2, 3),
  ipv4(169, 254, 1, 1),
  ipv4(10, 0, 2, 1),
  ipv4(240, 0, 0, 1),
];
export const ADDRESSES6: readonly Uint8Array[] = [
  GUEST_LL,
  GUEST_GLOBAL,
  GW6,
  GW6_LL,
  DNS6,
  BEYOND6,
  ALL_NODES,
  ALL_ROUTERS,
  ALL_MLDV2,
  ALL_DHCP,
  SOLICITED_GW,
  UNSPEC6,
  v6('::1'),
  v6('::ffff:10.0.2.2'),
  v6('ff05::1:3'),
  v6('fe80::1'),
];
export const MACS: readonly Uint8Array[] = [
  GUEST_MAC,
  GW_MAC,
  MAC_BROADCAST,
  Uint8Array.of(0x33, 0x33, 0, 0, 0, 1),
  Uint8Array.of(1, 0, 0x5e, 0, 0, 1),
  new Uint8Array(6),
  Uint8Array.of(0x52, 0x54, 0, 0xaa, 0xbb, 0xcc),
];

// ---- Builders -----------------------------------------------------------------------------------

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function be(n: number, bytes: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = bytes - 1; i >= 0; i--) {
    out[i] = n & 0xff;
    n = Math.floor(n / 256);
  }
  return out;
}

const u8 = (...v: number[]): Uint8Array => Uint8Array.from(v);

export function eth(dst: Uint8Array, etherType: number, payload: Uint8Array, src: Uint8Array = GUEST_MAC): Uint8Array {
  const f = new Uint8Array(ETH + payload.length);
  emitEthernetHeader(f, 0, { dst, src, etherType });
  f.set(payload, ETH);
  return f;
}

export interface V4 {
  src?: number;
  dst?: number;
  proto: number;
  ttl?: number;
  id?: number;
  flags?: number;
  fragOffset?: number;
  options?: Uint8Array;
  tos?: number;
  dstMac?: Uint8Array;
}

/** Ethernet + IPv4 around a transport message whose checksum is filled here. */
export function ip4(p: V4, payload: Uint8Array): Uint8Array {
  const optLen = p.options ? (p.options.length + 3) & ~3 : 0;
  const ip = new Uint8Array(20 + optLen + payload.length);
  emitIpv4Header(ip, 0, {
    src: p.src ?? GUEST_IP,
    dst: p.dst ?? GW_IP,
    proto: p.proto,
    ttl: p.ttl ?? 64,
    id: p.id ?? 0x4242,
    flags: p.flags ?? 2,
    fragOffset: p.fragOffset ?? 0,
    payloadLength: payload.length,
    tos: p.tos ?? 0,
    ...(p.options ? { options: p.options } : {}),
  });
  ip.set(payload, 20 + optLen);
  return fixChecksums(eth(p.dstMac ?? GW_MAC, EtherType.IPV4, ip));
}

export interface V6 {
  src?: Uint8Array;
  dst?: Uint8Array;
  hop?: number;
  dstMac?: Uint8Array;
}

/** Ethernet + IPv6 around `payload` (extension headers included), checksums filled. */
export function ip6(p: V6, nextHeader: number, payload: Uint8Array): Uint8Array {
  const ip = new Uint8Array(40 + payload.length);
  const dst = p.dst ?? GW6;
  emitIpv6Header(ip, 0, { src: p.src ?? GUEST_GLOBAL, dst, nextHeader, hopLimit: p.hop ?? 64, payloadLength: payload.length });
  ip.set(payload, 40);
  let mac = p.dstMac;
  if (!mac) mac = dst[0] === 0xff ? u8(0x33, 0x33, dst[12]!, dst[13]!, dst[14]!, dst[15]!) : GW_MAC;
  return fixChecksums(eth(mac, EtherType.IPV6, ip));
}

/** An IPv4 packet sample (no Ethernet header) as the guest's frame to the gateway. */
const wrap4 = (packet: Uint8Array, dstMac: Uint8Array = GW_MAC): Uint8Array => eth(dstMac, EtherType.IPV4, packet);
const wrap6 = (packet: Uint8Array, dstMac: Uint8Array = GW_MAC): Uint8Array => eth(dstMac, EtherType.IPV6, packet);

function icmp(type: number, code: number, rest: number, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  return concat(u8(type, code, 0, 0), be(rest >>> 0, 4), body);
}

function udp(srcPort: number, dstPort: number, body: Uint8Array): Uint8Array {
  return concat(be(srcPort, 2), be(dstPort, 2), be(8 + body.length, 2), u8(0, 0), body);
}

export interface Seg {
  sport?: number;
  dport?: number;
  seq?: number;
  ack?: number;
  flags: number;
  window?: number;
  options?: TcpOptions;
  data?: Uint8Array;
  urgent?: number;
}

/** A TCP header (+ options, data) with its checksum left for ip4()/ip6() to fill. */
export function tcp(s: Seg): Uint8Array {
  const optLen = s.options ? tcpOptionsLength(s.options) : 0;
  const hl = 20 + optLen;
  const data = s.data ?? new Uint8Array(0);
  const m = new Uint8Array(hl + data.length);
  m.set(be(s.sport ?? 40000, 2), 0);
  m.set(be(s.dport ?? 80, 2), 2);
  m.set(be((s.seq ?? 1000) >>> 0, 4), 4);
  m.set(be((s.ack ?? 0) >>> 0, 4), 8);
  m[12] = (hl / 4) << 4;
  m[13] = s.flags;
  m.set(be(s.window ?? 64240, 2), 14);
  m.set(be(s.urgent ?? 0, 2), 18);
  if (s.options) emitTcpOptions(m, 20, s.options);
  m.set(data, hl);
  return m;
}

export function synOptions(): TcpOptions {
  const o = new TcpOptions();
  o.mss = 1460;
  o.windowScale = 7;
  o.sackPermitted = true;
  o.timestamp = true;
  o.tsVal = 0x01020304;
  return o;
}

function dnsQuery(id: number, name: string, qtype: number): Uint8Array {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return concat(be(id, 2), u8(0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0), Uint8Array.from(labels), u8(0), be(qtype, 2), u8(0, 1));
}

function dhcp4(type: number, extra: (f: Uint8Array, o: number, end: number) => number = (_f, o) => o): Uint8Array {
  const body = new Uint8Array(300);
  emitDhcpHeader(body, 0, { op: 1, xid: 0x3903f326, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC });
  let o = dhcpPutU8(body, 240, body.length, DhcpOption.MESSAGE_TYPE, type);
  o = extra(body, o, body.length);
  dhcpPutEnd(body, o, body.length);
  return ip4({ src: 0, dst: BROADCAST4, proto: IpProtocol.UDP, dstMac: MAC_BROADCAST, flags: 0 }, udp(68, 67, body));
}

function dhcp6(type: number, withIa: boolean): Uint8Array {
  const body = new Uint8Array(200);
  let o = emitDhcpv6Header(body, 0, type, 0x00abcd);
  o = dhcpv6PutDuidLl(body, o, body.length, Dhcpv6Option.CLIENTID, GUEST_MAC);
  if (withIa) o = dhcpv6PutIaNa(body, o, body.length, { iaid: 1, t1: 0, t2: 0, addresses: [] });
  o = dhcpv6PutU16(body, o, body.length, Dhcpv6Option.ELAPSED_TIME, 0);
  return ip6({ src: GUEST_LL, dst: ALL_DHCP, hop: 1 }, IpProtocol.UDP, udp(546, 547, body.slice(0, o)));
}

/** Hop-by-hop header with a router alert (MLD) or padding, in front of `next`. */
function hopByHop(next: number, routerAlert: boolean): Uint8Array {
  return routerAlert ? u8(next, 0, 5, 2, 0, 0, 1, 0) : u8(next, 0, 1, 4, 0, 0, 0, 0);
}

/** An ARP packet from the guest. */
export function arp(op: number, senderIp: number, targetIp: number, targetMac: Uint8Array = new Uint8Array(6), dst: Uint8Array = MAC_BROADCAST): Uint8Array {
  const f = new Uint8Array(42);
  emitEthernetHeader(f, 0, { dst, src: GUEST_MAC, etherType: EtherType.ARP });
  emitArp(f, ETH, { operation: op, senderMac: GUEST_MAC, senderIp, targetMac, targetIp });
  return f;
}

/** Cuts a whole IPv4 frame (checksums done) into fragments carrying `size` bytes each. */
export function fragment4(frame: Uint8Array, size: number): Uint8Array[] {
  const hl = (frame[ETH]! & 0x0f) * 4;
  const header = frame.subarray(ETH, ETH + hl);
  const payload = frame.subarray(ETH + hl);
  const out: Uint8Array[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, Math.min(payload.length, off + size));
    const ip = concat(header, part);
    const total = ip.length;
    ip[2] = total >> 8;
    ip[3] = total & 0xff;
    const mf = off + size < payload.length ? 0x2000 : 0;
    const fo = mf | (off >> 3);
    ip[6] = fo >> 8;
    ip[7] = fo & 0xff;
    out.push(fixChecksums(eth(frame.subarray(0, 6), EtherType.IPV4, ip)));
  }
  return out;
}

/** Cuts a whole IPv6 frame (no extension headers, checksums done) into fragments. */
export function fragment6(frame: Uint8Array, size: number, ident = 0x1234abcd): Uint8Array[] {
  const nh = frame[ETH + 6]!;
  const payload = frame.subarray(ETH + 40);
  const out: Uint8Array[] = [];
  for (let off = 0; off < payload.length; off += size) {
    const part = payload.subarray(off, Math.min(payload.length, off + size));
    const more = off + size < payload.length;
    const fh = concat(u8(nh, 0), be((off & 0xfff8) | (more ? 1 : 0), 2), be(ident, 4));
    const ip = concat(frame.subarray(ETH, ETH + 40), fh, part);
    ip[6] = 44;
    const plen = ip.length - 40;
    ip[4] = plen >> 8;
    ip[5] = plen & 0xff;
    out.push(eth(frame.subarray(0, 6), EtherType.IPV6, ip));
  }
  return out;
}

const seq = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => i & 0xff);

export interface CorpusEntry {
  name: string;
  frame: Uint8Array;
}

/** Every seed frame, named. */
export function buildCorpus(): CorpusEntry[] {
  const c: CorpusEntry[] = [];
  const add = (name: string, frame: Uint8Array): void => void c.push({ name, frame });

  // Ethernet and ARP
  add('arp.request.captured', ARP_REQUEST_FRAME);
  add('arp.reply.captured', eth(GW_MAC, EtherType.ARP, ARP_REPLY));
  add('arp.reply.guest', arp(ArpOp.REPLY, GUEST_IP, GW_IP, GW_MAC, GW_MAC));
  add('arp.probe', arp(ArpOp.REQUEST, 0, GUEST_IP));
  add('arp.announce', arp(ArpOp.REQUEST, GUEST_IP, GUEST_IP));
  add('arp.claims-gateway', arp(ArpOp.REPLY, GW_IP, GW_IP, MAC_BROADCAST));
  add('arp.request.dns', arp(ArpOp.REQUEST, GUEST_IP, DNS_IP));
  add('eth.vlan', concat(u8(...GW_MAC, ...GUEST_MAC, 0x81, 0x00, 0x00, 0x05), ECHO_REQUEST_FRAME.subarray(12)));
  add('eth.unknown-type', eth(GW_MAC, 0x88b5, seq(46)));
  add('eth.runt', ECHO_REQUEST_FRAME.slice(0, 14));
  add('eth.from-multicast', eth(GW_MAC, EtherType.IPV4, ECHO_REQUEST_FRAME.subarray(14), u8(1, 0, 0x5e, 0, 0, 1)));

  // IPv4 and ICMPv4
  add('ipv4.echo.captured', ECHO_REQUEST_FRAME);
  add('ipv4.options.captured', wrap4(IPV4_WITH_OPTIONS));
  const echo4 = (dst: number, ttl = 64, data = seq(56), options?: Uint8Array): Uint8Array =>
    ip4({ dst, proto: IpProtocol.ICMP, ttl, ...(options ? { options } : {}) }, icmp(8, 0, 0x0a3f0001, data));
  add('ipv4.echo.dns', echo4(DNS_IP));
  add('ipv4.echo.beyond', echo4(BEYOND4));
  add('ipv4.echo.beyond.ttl1', echo4(BEYOND4, 1));
  add('ipv4.echo.broadcast', ip4({ dst: BROADCAST4, dstMac: MAC_BROADCAST, proto: IpProtocol.ICMP }, icmp(8, 0, 0x77770001, seq(16))));
  add('ipv4.echo.big', echo4(GW_IP, 64, seq(4000)));
  add('ipv4.option.rr', echo4(GW_IP, 64, seq(8), u8(7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0)));
  add('ipv4.option.ts', echo4(GW_IP, 64, seq(8), u8(68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0)));
  add('ipv4.option.ts-addr', echo4(GW_IP, 64, seq(8), u8(68, 20, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)));
  add('ipv4.option.lsrr', echo4(GW_IP, 64, seq(8), u8(0x83, 7, 4, 10, 0, 2, 3)));
  add('ipv4.option.unknown', echo4(GW_IP, 64, seq(8), u8(0x82, 4, 0, 0, 1, 0)));
  const whole = ip4({ dst: GW_IP, proto: IpProtocol.ICMP, flags: 0, id: 0x5151 }, icmp(8, 0, 0x0b0b0001, seq(3000)));
  const frags = fragment4(whole, 1480);
  frags.forEach((f, i) => add(`ipv4.fragment.${i}`, f));
  const tiny = fragment4(ip4({ dst: BEYOND4, proto: IpProtocol.UDP, flags: 0, id: 0x5252 }, udp(5000, 53, seq(40))), 8);
  add('ipv4.fragment.tiny-first', tiny[0]!);
  add('ipv4.fragment.tiny-second', tiny[1]!);
  add('ipv4.fragment.overlap', fragment4(whole, 1024)[1]!);
  add('icmp4.echo-reply', ip4({ proto: IpProtocol.ICMP }, icmp(0, 0, 0x12340001, seq(32))));
  add('icmp4.port-unreachable.captured', wrap4(PORT_UNREACHABLE));
  const quoted4 = ip4({ src: GW_IP, dst: GUEST_IP, proto: IpProtocol.UDP, ttl: 1 }, udp(53, 33434, seq(8))).subarray(ETH);
  add('icmp4.unreachable', ip4({ proto: IpProtocol.ICMP }, icmp(3, 3, 0, quoted4.subarray(0, 28))));
  add('icmp4.frag-needed', ip4({ proto: IpProtocol.ICMP }, icmp(3, 4, 576, quoted4.subarray(0, 28))));
  add('icmp4.time-exceeded', ip4({ dst: BEYOND4, proto: IpProtocol.ICMP }, icmp(11, 0, 0, quoted4.subarray(0, 28))));
  add('icmp4.param-problem', ip4({ proto: IpProtocol.ICMP }, icmp(12, 0, 0x14000000, quoted4.subarray(0, 28))));
  add('icmp4.redirect', ip4({ proto: IpProtocol.ICMP }, icmp(5, 1, GW_IP, quoted4.subarray(0, 28))));
  add('icmp4.timestamp', ip4({ proto: IpProtocol.ICMP }, icmp(13, 0, 0x00010001, new Uint8Array(12))));

  // IGMP
  const ra = u8(0x94, 4, 0, 0);
  add('igmp.v3-report.captured', IGMPV3_REPORT_FRAME);
  const igmp = (dst: number, body: Uint8Array, src = GUEST_IP): Uint8Array =>
    ip4(
      { src, dst, proto: IpProtocol.IGMP, ttl: 1, tos: 0xc0, options: ra, dstMac: u8(1, 0, 0x5e, (dst >>> 16) & 0x7f, (dst >>> 8) & 0xff, dst & 0xff) },
      body,
    );
  add('igmp.v2-report', igmp(ipv4(239, 255, 255, 250), IGMPV2_REPORT));
  add('igmp.v1-report', igmp(ipv4(239, 1, 2, 3), u8(0x12, 0, 0, 0, 239, 1, 2, 3)));
  add('igmp.v2-leave', igmp(ipv4(224, 0, 0, 2), u8(0x17, 0, 0, 0, 239, 255, 255, 250)));
  add('igmp.v1-query', igmp(ipv4(224, 0, 0, 1), IGMPV1_QUERY, ipv4(10, 0, 2, 1)));
  add('igmp.v2-query', igmp(ipv4(224, 0, 0, 1), IGMPV2_QUERY, ipv4(10, 0, 2, 1)));
  add('igmp.v3-query', igmp(ipv4(224, 0, 0, 1), IGMPV3_QUERY, ipv4(10, 0, 2, 1)));
  add('igmp.v3-gss-query', igmp(ipv4(232, 1, 1, 1), IGMPV3_GSS_QUERY));
  add(
    'igmp.v3-report.sources',
    igmp(ipv4(224, 0, 0, 22), concat(u8(0x22, 0, 0, 0, 0, 0, 0, 2), u8(1, 0, 0, 2, 232, 1, 1, 1, 10, 0, 2, 9, 10, 0, 2, 10), u8(6, 0, 0, 0, 239, 9, 9, 9))),
  );

  // UDP over IPv4: DHCP, DNS, the NAT
  add('dhcp4.discover.captured', DHCPDISCOVER_FRAME);
  add(
    'dhcp4.request',
    dhcp4(DhcpMessageType.REQUEST, (f, o, end) => {
      o = dhcpPutIp(f, o, end, DhcpOption.REQUESTED_IP, ipv4(10, 0, 2, 15));
      o = dhcpPutIp(f, o, end, DhcpOption.SERVER_ID, GW_IP);
      return dhcpPutBytes(f, o, end, DhcpOption.PARAMETER_REQUEST_LIST, u8(1, 3, 6, 15, 26, 119), 0, 6);
    }),
  );
  add(
    'dhcp4.release',
    dhcp4(DhcpMessageType.RELEASE, (f, o, end) => dhcpPutIp(f, o, end, DhcpOption.SERVER_ID, GW_IP)),
  );
  add('dhcp4.inform', dhcp4(DhcpMessageType.INFORM));
  add(
    'dhcp4.decline',
    dhcp4(DhcpMessageType.DECLINE, (f, o, end) => dhcpPutIp(f, o, end, DhcpOption.REQUESTED_IP, ipv4(10, 0, 2, 15))),
  );
  add('dns4.query', ip4({ dst: DNS_IP, proto: IpProtocol.UDP }, udp(40001, 53, dnsQuery(0x1234, 'example.com', 1))));
  add('dns4.query.aaaa', ip4({ dst: DNS_IP, proto: IpProtocol.UDP }, udp(40002, 53, dnsQuery(0x1235, 'a.b.example', 28))));
  add('udp4.gateway', ip4({ dst: GW_IP, proto: IpProtocol.UDP }, udp(40003, 9, seq(32))));
  add('udp4.beyond', ip4({ dst: BEYOND4, proto: IpProtocol.UDP }, udp(40004, 53, seq(32))));
  add('udp4.probe', ip4({ dst: BEYOND4, proto: IpProtocol.UDP, ttl: 1 }, PROBE_UDP));
  add('udp4.broadcast', ip4({ dst: BROADCAST4, dstMac: MAC_BROADCAST, proto: IpProtocol.UDP }, udp(40005, 1234, seq(16))));
  const zeroSum = ip4({ dst: BEYOND4, proto: IpProtocol.UDP }, udp(40006, 7, seq(16)));
  zeroSum[ETH + 20 + 6] = 0;
  zeroSum[ETH + 20 + 7] = 0;
  add('udp4.no-checksum', zeroSum);
  add('udp4.multicast', ip4({ dst: ipv4(239, 1, 2, 3), dstMac: u8(1, 0, 0x5e, 1, 2, 3), proto: IpProtocol.UDP }, udp(5353, 5353, seq(24))));

  // TCP over IPv4
  const syn = TCP_SYN_PACKET.slice();
  syn.set(u8(192, 0, 2, 34), 16); // a documentation address instead of the captured host
  add('tcp4.syn.captured', fixChecksums(wrap4(syn)));
  const flow = (flags: number, seqNo: number, ack: number, data?: Uint8Array, options?: TcpOptions, dst = GW_IP, dport = 80): Uint8Array =>
    ip4({ dst, proto: IpProtocol.TCP }, tcp({ sport: 41000, dport, seq: seqNo, ack, flags, ...(data ? { data } : {}), ...(options ? { options } : {}) }));
  add('tcp4.syn', flow(TcpFlags.SYN, 1000, 0, undefined, synOptions()));
  add('tcp4.ack', flow(TcpFlags.ACK, 1001, 1));
  add('tcp4.data', flow(TcpFlags.ACK | TcpFlags.PSH, 1001, 1, Buffer.from('GET / HTTP/1.0\r\n\r\n')));
  add('tcp4.fin', flow(TcpFlags.ACK | TcpFlags.FIN, 1019, 1));
  add('tcp4.rst', flow(TcpFlags.RST, 1001, 0));
  add('tcp4.syn.dns', flow(TcpFlags.SYN, 5000, 0, undefined, synOptions(), DNS_IP, 53));
  add('tcp4.syn.beyond', flow(TcpFlags.SYN, 7000, 0, undefined, synOptions(), BEYOND4, 443));
  add('tcp4.syn.gateway-other', flow(TcpFlags.SYN, 9000, 0, undefined, undefined, GW_IP, 22));
  add('tcp4.urgent', ip4({ proto: IpProtocol.TCP }, tcp({ sport: 41000, seq: 1001, ack: 1, flags: TcpFlags.ACK | TcpFlags.URG, urgent: 3, data: seq(10) })));

  // IPv6, extension headers and fragments
  add('ipv6.ns.captured', NS_FRAME);
  add('ipv6.mldv2-report.captured', MLDV2_REPORT_FRAME);
  add('ipv6.dstopts-frag.captured', wrap6(IPV6_DSTOPTS_FRAG, u8(0x33, 0x33, 0, 0, 0, 0xfb)));
  add('ipv6.echo.captured', wrap6(ECHO6_PACKET));
  const echo6 = (dst: Uint8Array, hop = 64, data = seq(56), src = GUEST_GLOBAL): Uint8Array =>
    ip6({ src, dst, hop }, IpProtocol.ICMPV6, icmp(128, 0, 0x1c2d0001, data));
  add('icmp6.echo.gateway', echo6(GW6));
  add('icmp6.echo.link-local', echo6(GW6_LL, 64, seq(16), GUEST_LL));
  add('icmp6.echo.dns', echo6(DNS6));
  add('icmp6.echo.beyond', echo6(BEYOND6));
  add('icmp6.echo.beyond.hop1', echo6(BEYOND6, 1));
  add('icmp6.echo.all-nodes', echo6(ALL_NODES, 64, seq(8), GUEST_LL));
  const echoBody = icmp(128, 0, 0x1c2d0002, seq(24));
  add('ipv6.hop-by-hop', ip6({}, 0, concat(hopByHop(58, false), echoBody)));
  add('ipv6.dstopts.unknown-skip', ip6({}, 60, concat(u8(58, 0, 0x1e, 4, 0, 0, 0, 0), echoBody)));
  add('ipv6.dstopts.unknown-discard-icmp', ip6({}, 60, concat(u8(58, 0, 0x9e, 4, 0, 0, 0, 0), echoBody)));
  add('ipv6.routing.type0', ip6({}, 43, concat(u8(58, 2, 0, 1, 0, 0, 0, 0), GW6, echoBody)));
  add('ipv6.routing.type2', ip6({}, 43, concat(u8(58, 2, 2, 1, 0, 0, 0, 0), GW6, echoBody)));
  add('ipv6.routing.type4-done', ip6({}, 43, concat(u8(58, 2, 4, 0, 0, 0, 0, 0), GW6, echoBody)));
  add('ipv6.no-next-header', ip6({}, 59, seq(8)));
  add('ipv6.chain', ip6({}, 0, concat(hopByHop(60, false), u8(43, 0, 1, 4, 0, 0, 0, 0), u8(58, 2, 0, 0, 0, 0, 0, 0), GW6, echoBody)));
  const big6 = echo6(GW6, 64, seq(3000));
  fragment6(big6, 1448).forEach((f, i) => add(`ipv6.fragment.${i}`, f));
  add('ipv6.fragment.atomic', fragment6(echo6(GW6, 64, seq(24)), 4096, 0x77)[0]!);
  add('ipv6.fragment.udp-beyond', fragment6(ip6({ dst: BEYOND6 }, IpProtocol.UDP, udp(40010, 53, seq(100))), 64, 0x99)[0]!);

  // ICMPv6 errors from the guest
  const quoted6 = ip6({ src: GW6, dst: GUEST_GLOBAL }, IpProtocol.UDP, udp(53, 33434, seq(8))).subarray(ETH);
  add('icmp6.unreachable', ip6({}, IpProtocol.ICMPV6, icmp(1, 4, 0, quoted6)));
  add('icmp6.packet-too-big', ip6({}, IpProtocol.ICMPV6, icmp(2, 0, 1280, quoted6)));
  add('icmp6.time-exceeded', ip6({ dst: BEYOND6 }, IpProtocol.ICMPV6, icmp(3, 0, 0, quoted6)));
  add('icmp6.param-problem', ip6({}, IpProtocol.ICMPV6, icmp(4, 1, 40, quoted6)));
  add('icmp6.echo-reply', ip6({}, IpProtocol.ICMPV6, icmp(129, 0, 0x00010001, seq(16))));

  // NDP
  const nd = (body: Uint8Array, src: Uint8Array, dst: Uint8Array): Uint8Array => ip6({ src, dst, hop: 255 }, IpProtocol.ICMPV6, body);
  add('ndp.rs', nd(NDP_RS, GUEST_LL, ALL_ROUTERS));
  add('ndp.rs.unspecified', nd(icmp(133, 0, 0), UNSPEC6, ALL_ROUTERS));
  add('ndp.ns.global', nd(concat(icmp(135, 0, 0), GW6, u8(1, 1, ...GUEST_MAC)), GUEST_GLOBAL, SOLICITED_GW));
  add('ndp.ns.dad', nd(concat(icmp(135, 0, 0), GUEST_GLOBAL), UNSPEC6, v6('ff02::1:ff12:3456')));
  add('ndp.ns.unicast', nd(concat(icmp(135, 0, 0), GW6_LL), GUEST_LL, GW6_LL));
  add('ndp.na.solicited', nd(concat(icmp(136, 0, 0x60000000), GUEST_LL, u8(2, 1, ...GUEST_MAC)), GUEST_LL, GW6_LL));
  add('ndp.na.unsolicited', nd(concat(icmp(136, 0, 0x20000000), GUEST_GLOBAL, u8(2, 1, ...GUEST_MAC)), GUEST_GLOBAL, ALL_NODES));
  add('ndp.na.captured', nd(NDP_NA, GUEST_LL, GUEST_LL));
  add('ndp.ra.from-guest', nd(NDP_RA, GUEST_LL, ALL_NODES));
  add('ndp.redirect', nd(NDP_REDIRECT, GUEST_LL, GW6_LL));
  add('ndp.ns.hop64', ip6({ src: GUEST_LL, dst: SOLICITED_GW, hop: 64 }, IpProtocol.ICMPV6, concat(icmp(135, 0, 0), GW6_LL)));
  add('ndp.ns.bad-option', nd(concat(icmp(135, 0, 0), GW6_LL, u8(1, 0, 0, 0, 0, 0, 0, 0)), GUEST_LL, SOLICITED_GW));

  // MLD (with the hop-by-hop router alert)
  const mld = (body: Uint8Array, dst: Uint8Array, src = GUEST_LL): Uint8Array => ip6({ src, dst, hop: 1 }, 0, concat(hopByHop(58, true), body));
  add('mld.v1-report', mld(MLDV1_REPORT, v6('ff02::fb')));
  add('mld.v1-done', mld(concat(u8(132, 0, 0, 0, 0, 0, 0, 0), v6('ff02::fb')), ALL_ROUTERS));
  add('mld.v1-query', mld(concat(u8(130, 0, 0, 0, 0x27, 0x10, 0, 0), UNSPEC6), ALL_NODES, v6('fe80::1')));
  add('mld.v2-query', mld(MLDV2_QUERY, ALL_NODES, v6('fe80::1')));
  add('mld.v2-report.sources', mld(concat(u8(143, 0, 0, 0, 0, 0, 0, 2), u8(1, 0, 0, 1), v6('ff3e::1234'), BEYOND6, u8(4, 0, 0, 0), v6('ff02::fb')), ALL_MLDV2));

  // DHCPv6, UDP and TCP over IPv6
  add('dhcp6.solicit.captured', wrap6(DHCPV6_SOLICIT_PACKET, u8(0x33, 0x33, 0, 1, 0, 2)));
  add('dhcp6.solicit', dhcp6(Dhcpv6MessageType.SOLICIT, true));
  add('dhcp6.request', dhcp6(Dhcpv6MessageType.REQUEST, true));
  add('dhcp6.information-request', dhcp6(Dhcpv6MessageType.INFORMATION_REQUEST, false));
  add('dns6.query', ip6({ dst: DNS6 }, IpProtocol.UDP, udp(40020, 53, dnsQuery(0x2222, 'example.org', 28))));
  add('udp6.gateway', ip6({}, IpProtocol.UDP, udp(40021, 9, seq(32))));
  add('udp6.beyond', ip6({ dst: BEYOND6 }, IpProtocol.UDP, udp(40022, 123, seq(48))));
  add('udp6.probe', ip6({ dst: BEYOND6, hop: 1 }, IpProtocol.UDP, PROBE_UDP));
  const flow6 = (flags: number, seqNo: number, ack: number, data?: Uint8Array, options?: TcpOptions, dst = GW6, dport = 80): Uint8Array =>
    ip6({ dst }, IpProtocol.TCP, tcp({ sport: 42000, dport, seq: seqNo, ack, flags, ...(data ? { data } : {}), ...(options ? { options } : {}) }));
  add('tcp6.syn', flow6(TcpFlags.SYN, 2000, 0, undefined, synOptions()));
  add('tcp6.ack', flow6(TcpFlags.ACK, 2001, 1));
  add('tcp6.data', flow6(TcpFlags.ACK | TcpFlags.PSH, 2001, 1, Buffer.from('hello')));
  add('tcp6.fin', flow6(TcpFlags.ACK | TcpFlags.FIN, 2006, 1));
  add('tcp6.rst', flow6(TcpFlags.RST | TcpFlags.ACK, 2006, 1));
  add('tcp6.syn.beyond', flow6(TcpFlags.SYN, 3000, 0, undefined, synOptions(), BEYOND6, 443));
  add('tcp6.sack.captured', ip6({}, IpProtocol.TCP, TCP6_SACK_SEGMENT));

  return c;
}
