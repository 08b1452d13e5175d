// ICMPv6 (src/iface/icmpv6.ts) alone, on a test LayerContext, a recording Icmpv6Port and NDP and
// MLD parts that record what they are handed: dispatch by type (NS/NA to NDP, RS/RA to the router
// advertiser, MLD to mld.ts), the built-in echo reply (from fe80::2 for a group, never from an
// address that is not usable), echo beyond us through the echo hook, errors to the guest from the
// right address, errors beyond, reassembly time exceeded, and the token bucket. The full rules of
// RFC 4443 §2.4 (e) on the stack are in icmp6-rules.test.ts.
import t from 'tap';
import { Icmpv6 } from '../../src/iface/icmpv6.js';
import type { Icmpv6Port } from '../../src/iface/icmpv6.js';
import type { RxMeta } from '../../src/iface/link.js';
import {
  EthernetFrame,
  IPV6_ALL_NODES,
  Icmpv6Packet,
  Icmpv6Type,
  Icmpv6UnreachableCode,
  IpProtocol,
  Ipv6Packet,
  bytesEqual,
  emitIpv6Header,
  parseIpv6,
} from '../../src/wire/index.js';
import { TestLayerContext } from '../support/layer-context.js';
import { GUEST_MAC, echoRequest6, ipv6Frame, udpFrame6 } from '../support/packets.js';

const GUEST = parseIpv6('fec0::5054:ff:fe12:3456')!;
const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const GW6 = parseIpv6('fec0::2')!;
const DNS6 = parseIpv6('fec0::3')!;
const LL = parseIpv6('fe80::2')!;
const FAR = parseIpv6('2001:db8::7')!;
const META: RxMeta = { checksumPartial: false };

interface Finished {
  src: Uint8Array;
  dst: Uint8Array;
  /** The IPv6 packet written at out[14..]. */
  packet: Uint8Array;
  mac: Uint8Array | undefined;
}

function setup(opts: { rate?: number; burst?: number; usable?: Uint8Array[]; advertiser?: boolean; mtu?: number } = {}) {
  const s = new TestLayerContext(opts.mtu !== undefined ? { mtu: opts.mtu } : {});
  const usable = opts.usable ?? [LL, GW6, DNS6];
  const finished: Finished[] = [];
  const whole: Uint8Array[] = [];
  const toGuest: Uint8Array[] = [];
  const calls: string[] = [];
  const port: Icmpv6Port = {
    gateway: GW6,
    linkLocal: LL,
    isOurs: (b, off) => usable.some((a) => bytesEqual(a, 0, b, off, 16)),
    finish: (src, dst, next, payloadLength, hopLimit, mac, macOff = 0) => {
      emitIpv6Header(s.out, 14, { src, dst, nextHeader: next, hopLimit, payloadLength });
      finished.push({ src: src.slice(), dst: dst.slice(), packet: s.out.slice(14, 54 + payloadLength), mac: mac?.slice(macOff, macOff + 6) });
      return true;
    },
    sendPacketTo: (packet) => {
      whole.push(packet.slice());
      return true;
    },
    sendToGuest: (packet) => {
      toGuest.push(packet.slice());
      return true;
    },
    routerSolicitation: () => {
      calls.push('rs');
      return opts.advertiser ?? true;
    },
    routerAdvertisement: () => void calls.push('ra'),
  };
  const ndp = {
    nsInput: () => void calls.push('ns'),
    naInput: () => void calls.push('na'),
    learn: () => void calls.push('learn'),
  };
  const mld = { input: (_f: Uint8Array, _ip: Ipv6Packet, _off: number, _len: number, routerAlert: number) => void calls.push(`mld(${routerAlert})`) };
  const icmp = new Icmpv6(s, ndp, mld, port, opts.rate ?? 10, opts.burst ?? 3);
  const beyond: Uint8Array[] = [];
  s.router.beyond = (p) => beyond.push(p.slice());
  const eth = new EthernetFrame();
  const ip = new Ipv6Packet();
  const view = (frame: Uint8Array) => {
    const e = eth.at(frame, 0, frame.length);
    const i = ip.at(frame, 14, frame.length - 14);
    if (!e.check() || !i.check()) throw new Error('test frame does not parse');
    return { eth: e, ip: i };
  };
  /** Hands a frame whose ICMPv6 message follows the IPv6 header to input(). */
  const input = (frame: Uint8Array, routerAlert = -1): void => {
    const v = view(frame);
    icmp.input(frame, v.eth, v.ip, v.ip.payloadOffset, v.ip.end - v.ip.payloadOffset, META, routerAlert);
  };
  return { s, icmp, finished, whole, toGuest, beyond, calls, view, input };
}

/** An ICMPv6 message of `type` (8 bytes, checksum filled) from `src` to `dst`. */
function message(type: number, src: Uint8Array, dst: Uint8Array, hopLimit = 255): Uint8Array {
  const f = echoRequest6(0, 0, new Uint8Array(0), { src, dst, hopLimit });
  f[54] = type;
  return withChecksum(f);
}

function parse(packet: Uint8Array): { ip: Ipv6Packet; icmp: Icmpv6Packet } {
  const ip = new Ipv6Packet().at(packet, 0, packet.length);
  if (!ip.check()) throw new Error('not IPv6');
  const icmp = new Icmpv6Packet().at(packet, 40, packet.length - 40);
  if (!icmp.check()) throw new Error('not ICMPv6');
  return { ip, icmp };
}

t.test('dispatch by type: NS and NA to NDP, RS and RA to the advertiser, MLD to mld.ts with the router alert', async (t) => {
  const { s, calls, input } = setup();
  input(message(Icmpv6Type.NEIGHBOR_SOLICIT, GUEST_LL, GW6));
  input(message(Icmpv6Type.NEIGHBOR_ADVERT, GUEST_LL, GW6));
  input(message(Icmpv6Type.ROUTER_ADVERT, GUEST_LL, IPV6_ALL_NODES));
  for (const type of [Icmpv6Type.MLD_QUERY, Icmpv6Type.MLD_REPORT, Icmpv6Type.MLD_DONE, Icmpv6Type.MLDV2_REPORT])
    input(message(type, GUEST_LL, IPV6_ALL_NODES, 1), 0);
  input(message(Icmpv6Type.DEST_UNREACHABLE, GUEST_LL, GW6));
  t.same(calls, ['ns', 'na', 'ra', 'mld(0)', 'mld(0)', 'mld(0)', 'mld(0)'], 'an error from the guest is counted, nothing else');
  t.equal(s.counters.get('icmp6.in.1'), 1);
  const bad = message(Icmpv6Type.NEIGHBOR_SOLICIT, GUEST_LL, GW6);
  bad[57] = (bad[57] ?? 0) ^ 1;
  input(bad);
  t.equal(s.counters.get('icmp6.badChecksum'), 1, 'a bad checksum is dropped before dispatch');
  t.equal(calls.length, 7);
});

t.test('router solicitations: the advertiser takes them, then the source link address is learnt', async (t) => {
  const rs = (): Uint8Array => {
    // RS with a source link-layer address option (RFC 4861 §4.1).
    const m = new Uint8Array(16);
    m[0] = Icmpv6Type.ROUTER_SOLICIT;
    m.set([1, 1, ...GUEST_MAC], 8);
    return withChecksum(ipv6Frame({ src: GUEST_LL, dst: IPV6_ALL_NODES, hopLimit: 255 }, IpProtocol.ICMPV6, m));
  };
  const taken = setup();
  taken.input(rs());
  t.same(taken.calls, ['rs', 'learn']);
  const refused = setup({ advertiser: false });
  refused.input(rs());
  t.same(refused.calls, ['rs'], 'not taken: nothing learnt');
  t.equal(refused.s.counters.get('ndp.rsUnanswered'), 1);
});

t.test('echo to us: the reply from the address asked, or from fe80::2 for a group; never from an unusable address', async (t) => {
  const { s, finished, input } = setup({ usable: [LL, GW6] });
  const data = Uint8Array.from({ length: 32 }, (_, i) => i);
  input(echoRequest6(0x77, 3, data, { src: GUEST, dst: GW6 }));
  t.equal(finished.length, 1);
  const r = finished[0]!;
  t.same(r.src, GW6, 'from the address the request went to');
  t.same(r.dst, GUEST);
  t.same(r.mac, GUEST_MAC, 'to the link source of the request');
  const { icmp } = parse(r.packet);
  t.equal(icmp.type, Icmpv6Type.ECHO_REPLY);
  t.equal(icmp.ident, 0x77);
  t.equal(icmp.seq, 3);
  t.ok(icmp.verifyChecksum(r.packet, 8, r.packet, 24));
  t.same(r.packet.subarray(icmp.payloadOffset), data);
  input(echoRequest6(1, 1, data, { src: GUEST_LL, dst: IPV6_ALL_NODES }));
  t.same(finished[1]!.src, LL, 'to all-nodes: from fe80::2');
  input(echoRequest6(1, 2, data, { src: GUEST, dst: DNS6 }));
  t.equal(finished.length, 2, 'DNS6 not usable (tentative): no reply');
  t.equal(s.counters.get('icmp6.echoToUnusableAddress'), 1);
  input(echoRequest6(1, 3, data, { src: new Uint8Array(16), dst: GW6 }));
  t.equal(s.counters.get('icmp6.echoFromUnspecified'), 1, 'not to ::');
  t.equal(finished.length, 2);
});

t.test('an echo reply larger than the link MTU is built whole, for the layer to fragment', async (t) => {
  const { finished, whole, input } = setup({ mtu: 1280 });
  const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  input(echoRequest6(5, 6, data, { src: GUEST, dst: GW6 }));
  t.equal(finished.length, 0, 'not framed in place');
  t.equal(whole.length, 1);
  const { ip, icmp } = parse(whole[0]!);
  t.equal(whole[0]!.length, 40 + 8 + 3000);
  t.ok(bytesEqual(whole[0]!, ip.srcOffset, GW6, 0, 16) && bytesEqual(whole[0]!, ip.dstOffset, GUEST, 0, 16));
  t.equal(icmp.type, Icmpv6Type.ECHO_REPLY);
  t.ok(icmp.verifyChecksum(whole[0]!, 8, whole[0]!, 24));
  t.same(whole[0]!.subarray(48), data);
});

t.test('echo beyond us: the echo hook decides; no handler leaves it to the router', async (t) => {
  const { s, icmp, finished, view } = setup();
  const req = echoRequest6(9, 1, new Uint8Array(8), { src: GUEST, dst: FAR });
  let v = view(req);
  t.notOk(icmp.forward(req, v.eth, v.ip, META), 'no handler: left to the router');
  s.router.echoHandler = (r) => r.reply();
  t.ok(icmp.forward(req, v.eth, v.ip, META), 'the handler replied: settled');
  t.same(finished[0]!.src, FAR, 'from the address the guest pinged');
  const udp = udpFrame6(1, 2, new Uint8Array(4), { src: GUEST, dst: FAR });
  v = view(udp);
  t.notOk(icmp.forward(udp, v.eth, v.ip, META), 'not ICMPv6: not ours to settle');
});

t.test('errors to the guest: from the address asked if ours, else the one on its side; rate limited', async (t) => {
  const { s, icmp, finished, view } = setup({ rate: 10, burst: 2 });
  const unreachable = (frame: Uint8Array): void => {
    const v = view(frame);
    icmp.error(frame, v.eth, v.ip, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.PORT, 0, false);
  };
  const toUs = udpFrame6(1, 9999, new Uint8Array(4), { src: GUEST, dst: DNS6 });
  unreachable(toUs);
  t.same(finished[0]!.src, DNS6);
  t.same(finished[0]!.dst, GUEST);
  const { icmp: m } = parse(finished[0]!.packet);
  t.equal(m.type, Icmpv6Type.DEST_UNREACHABLE);
  t.equal(m.code, Icmpv6UnreachableCode.PORT);
  t.same(finished[0]!.packet.subarray(m.payloadOffset), toUs.subarray(14), 'quotes the packet');
  unreachable(udpFrame6(1, 9999, new Uint8Array(4), { src: GUEST_LL, dst: FAR }));
  t.same(finished[1]!.src, LL, 'beyond us, from a link-local source: from fe80::2');
  unreachable(udpFrame6(1, 9999, new Uint8Array(4), { src: GUEST, dst: FAR }));
  t.equal(finished.length, 2, 'the burst of 2 is spent');
  t.equal(s.counters.get('icmp6.rateLimited'), 1);
  s.t += 100;
  unreachable(udpFrame6(1, 9999, new Uint8Array(4), { src: GUEST, dst: FAR }));
  t.same(finished[2]!.src, GW6, 'a token after 100 ms; from the gateway address');
  const err = message(Icmpv6Type.DEST_UNREACHABLE, GUEST, GW6);
  s.t += 1000;
  unreachable(err);
  t.equal(s.counters.get('icmp6.errorForError'), 1, 'never about an error (e.1)');
  t.equal(finished.length, 3);
});

t.test('errors beyond: to the router from the gateway; packet too big even about multicast; reassembly time exceeded', async (t) => {
  const { icmp, beyond, toGuest } = setup();
  const p = new Uint8Array(1400);
  emitIpv6Header(p, 0, { src: FAR, dst: GUEST, nextHeader: IpProtocol.UDP, hopLimit: 60, payloadLength: 1360 });
  icmp.errorBeyond(p, Icmpv6Type.PACKET_TOO_BIG, 0, 1280);
  t.equal(beyond.length, 1);
  const { ip, icmp: m } = parse(beyond[0]!);
  t.ok(bytesEqual(beyond[0]!, ip.srcOffset, GW6, 0, 16), 'from the gateway');
  t.ok(bytesEqual(beyond[0]!, ip.dstOffset, FAR, 0, 16), 'to the source beyond');
  t.equal(m.type, Icmpv6Type.PACKET_TOO_BIG);
  t.equal(beyond[0]!.length, 1280, 'quotes what fits in the minimum MTU (RFC 4443 §2.4 (c))');
  const group = p.slice();
  group.set(parseIpv6('ff0e::1')!, 24);
  icmp.errorBeyond(group, Icmpv6Type.PACKET_TOO_BIG, 0, 1280);
  t.equal(beyond.length, 2, 'packet too big about a packet to a group (e.3)');
  icmp.errorBeyond(group, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADDRESS, 0);
  t.equal(beyond.length, 2, 'but no other error');

  const first = udpFrame6(1, 2, new Uint8Array(16), { src: GUEST_LL, dst: GW6 }).subarray(14);
  icmp.reassemblyTimeout(first);
  t.equal(toGuest.length, 1);
  const r = parse(toGuest[0]!);
  t.ok(bytesEqual(toGuest[0]!, r.ip.srcOffset, LL, 0, 16), 'to a link-local source: from fe80::2');
  t.equal(r.icmp.type, Icmpv6Type.TIME_EXCEEDED);
  t.equal(r.icmp.code, 1, 'fragment reassembly time exceeded');
});

t.test('errors about guest packets we cannot carry: to the guest, from the gateway; never about ICMPv6 errors or groups', async (t) => {
  const { icmp, toGuest, beyond } = setup();
  const sctp = ipv6Frame({ src: GUEST, dst: FAR }, 132, new Uint8Array(32)).subarray(14);
  icmp.errorToGuest(sctp, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADMIN_PROHIBITED, 0);
  t.equal(toGuest.length, 1, 'to the guest');
  t.equal(beyond.length, 0, 'not beyond');
  const { ip, icmp: m } = parse(toGuest[0]!);
  t.ok(bytesEqual(toGuest[0]!, ip.srcOffset, GW6, 0, 16), 'from the gateway');
  t.ok(bytesEqual(toGuest[0]!, ip.dstOffset, GUEST, 0, 16), 'to the guest');
  t.equal(m.type, Icmpv6Type.DEST_UNREACHABLE);
  t.equal(m.code, Icmpv6UnreachableCode.ADMIN_PROHIBITED);
  const error = message(Icmpv6Type.DEST_UNREACHABLE, GUEST, FAR).subarray(14);
  icmp.errorToGuest(error, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADMIN_PROHIBITED, 0);
  const group = ipv6Frame({ src: GUEST, dst: parseIpv6('ff0e::1')! }, 132, new Uint8Array(32)).subarray(14);
  icmp.errorToGuest(group, Icmpv6Type.DEST_UNREACHABLE, Icmpv6UnreachableCode.ADMIN_PROHIBITED, 0);
  t.equal(toGuest.length, 1, 'never about an ICMPv6 error, nor a packet to a group');
});

/** Fills the ICMPv6 checksum of a frame whose message follows the IPv6 header. */
function withChecksum(f: Uint8Array): Uint8Array {
  const m = new Icmpv6Packet().at(f, 54, f.length - 54);
  m.fillChecksum(f, 22, f, 38);
  return f;
}
