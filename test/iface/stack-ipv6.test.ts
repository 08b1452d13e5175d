// The IPv6 side of the stack on a frame-in/frame-out device: DAD (success and both kinds of
// conflict), MLD reports at link-up, NDP answers for our addresses, echo, ICMPv6 errors and the
// RFC 4443 rules, malformed input counted and dropped.
import t from 'tap';
import { AddressState, LINK_LOCAL_ADDRESS } from '../../src/iface/ipv6.js';
import {
  EtherType,
  IPV6_ALL_NODES,
  IPV6_UNSPECIFIED,
  Icmpv6Packet,
  IpProtocol,
  Ipv6Packet,
  NdpNeighborAdvert,
  NdpNeighborSolicit,
  NdpOptionType,
  bytesEqual,
  emitEthernetHeader,
  emitIcmpv6,
  emitIpv6Header,
  emitNdpNeighborAdvert,
  emitNdpNeighborSolicit,
  emitUdpV6,
  icmpv6EchoRest,
  ipv6SolicitedNode,
  macFromIpv6Multicast,
  parseIpv6,
} from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_MAC, GW_MAC } from '../support/packets.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const GUEST_GLOBAL = parseIpv6('fec0::5054:ff:fe12:3456')!;
const GW6 = parseIpv6('fec0::2')!;
const DNS6 = parseIpv6('fec0::3')!;

/** A frame carrying an IPv6 packet whose payload `build` writes at offset 54, returning its length. */
function ipv6Frame(
  src: Uint8Array,
  dst: Uint8Array,
  next: number,
  hopLimit: number,
  build: (buf: Uint8Array, off: number) => number,
  dstMac?: Uint8Array,
): Uint8Array {
  const buf = new Uint8Array(2000);
  const len = build(buf, 54);
  let mac = dstMac;
  if (!mac) {
    mac = new Uint8Array(6);
    if (dst[0] === 0xff) macFromIpv6Multicast(mac, 0, dst, 0);
    else mac.set(GW_MAC);
  }
  emitEthernetHeader(buf, 0, { dst: mac, src: GUEST_MAC, etherType: EtherType.IPV6 });
  emitIpv6Header(buf, 14, { src, dst, nextHeader: next, hopLimit, payloadLength: len });
  return buf.slice(0, 54 + len);
}

const echo = (src: Uint8Array, dst: Uint8Array, data = new Uint8Array(32)) =>
  ipv6Frame(src, dst, IpProtocol.ICMPV6, 64, (b, o) => {
    b.set(data, o + 8);
    emitIcmpv6(b, o, { type: 128, code: 0, rest: icmpv6EchoRest(0x42, 9), payloadLength: data.length }, src, dst);
    return 8 + data.length;
  });

const solicit = (src: Uint8Array, target: Uint8Array, withSll = true) => {
  const group = new Uint8Array(16);
  ipv6SolicitedNode(group, 0, target, 0);
  return ipv6Frame(src, group, IpProtocol.ICMPV6, 255, (b, o) =>
    emitNdpNeighborSolicit(b, o, { target, ...(withSll ? { sourceMac: GUEST_MAC } : {}) }, src, group),
  );
};

/** A stack whose addresses have passed DAD. */
function readyStack() {
  const env = makeStack({}, { random: () => 0.5 });
  env.stack.linkUp();
  for (let i = 0; i < 10; i++) {
    env.clock.advance(500);
    env.stack.poll();
  }
  env.link.take();
  return env;
}

t.test('DAD: MLD report and one probe per address, then the addresses are ready', async (t) => {
  const { stack, link, clock } = makeStack({}, { random: () => 0.5 });
  const v6 = stack.ipv6!;
  stack.linkUp();
  t.equal(v6.addressState(GW6), AddressState.Tentative);
  t.equal(stack.pollAt(), clock.now(), 'first MLD report due at once');
  stack.poll();
  const [report] = link.take().filter((f) => f[12] === 0x86);
  t.ok(report, 'MLD report sent');
  const rip = new Ipv6Packet().at(report!, 14, report!.length - 14);
  t.equal(rip.hopLimit, 1, 'hop limit 1');
  t.equal(rip.nextHeader, IpProtocol.HOPOPTS, 'hop-by-hop (router alert) first');
  t.ok(bytesEqual(report!, rip.srcOffset, IPV6_UNSPECIFIED, 0, 16), 'from :: while the link-local address is tentative');
  t.equal(report![14 + 40 + 8], 143, 'MLDv2 report');
  clock.advance(500); // the random delay (0.5 × 1 s)
  stack.poll();
  const probes = link.take().filter((f) => f[14 + 40] === 135);
  t.equal(probes.length, 3, 'one NS probe per address');
  for (const p of probes) {
    const ip = new Ipv6Packet().at(p, 14, p.length - 14);
    t.ok(bytesEqual(p, ip.srcOffset, IPV6_UNSPECIFIED, 0, 16), 'probe from ::');
    t.equal(ip.hopLimit, 255);
    const ns = new NdpNeighborSolicit().at(p, 54, p.length - 54);
    t.ok(ns.check());
    t.equal(ns.findLinkAddress(NdpOptionType.SOURCE_LL_ADDR), -1, 'no source link-layer option');
  }
  t.same(echo(GUEST_LL, LINK_LOCAL_ADDRESS).length > 0, true);
  t.same(link.sent.length, 0);
  clock.advance(1000);
  stack.poll();
  for (const a of [LINK_LOCAL_ADDRESS, GW6, DNS6]) t.equal(v6.addressState(a), AddressState.Preferred);
  t.equal(stack.counters.get('mld.out.143'), 2, 'report sent twice (robustness)');
});

t.test('DAD conflict: the guest probes or advertises the address we are probing', async (t) => {
  const { stack, clock, inject, link } = makeStack({}, { random: () => 0 });
  stack.linkUp();
  stack.poll();
  link.take();
  // The guest probes fec0::2 from :: while we do.
  inject(solicit(IPV6_UNSPECIFIED, GW6, false));
  // The guest advertises fec0::3.
  inject(
    ipv6Frame(GUEST_LL, IPV6_ALL_NODES, IpProtocol.ICMPV6, 255, (b, o) =>
      emitNdpNeighborAdvert(b, o, { target: DNS6, router: false, solicited: false, override: true, targetMac: GUEST_MAC }, GUEST_LL, IPV6_ALL_NODES),
    ),
  );
  clock.advance(2000);
  stack.poll();
  link.take();
  t.equal(stack.ipv6!.addressState(GW6), AddressState.Duplicate, 'probed address not used');
  t.equal(stack.ipv6!.addressState(DNS6), AddressState.Duplicate, 'advertised address not used');
  t.equal(stack.ipv6!.addressState(LINK_LOCAL_ADDRESS), AddressState.Preferred, 'the others are fine');
  t.equal(stack.counters.get('ndp.dadFailed'), 2);
  t.same(inject(echo(GUEST_LL, GW6)), [], 'a duplicate address answers nothing');
});

t.test('NDP: neighbour solicitations for our addresses get advertisements', async (t) => {
  const { inject, stack } = readyStack();
  const [na] = inject(solicit(GUEST_GLOBAL, GW6));
  t.ok(na, 'answered');
  t.ok(bytesEqual(na!, 0, GUEST_MAC, 0, 6), 'to the solicitor');
  const ip = new Ipv6Packet().at(na!, 14, na!.length - 14);
  t.equal(ip.hopLimit, 255);
  t.ok(bytesEqual(na!, ip.srcOffset, GW6, 0, 16), 'from the target address');
  t.ok(bytesEqual(na!, ip.dstOffset, GUEST_GLOBAL, 0, 16));
  const adv = new NdpNeighborAdvert().at(na!, 54, na!.length - 54);
  t.ok(adv.check());
  t.ok(adv.solicited && adv.router && adv.override, 'S, R and O set');
  const tll = adv.findLinkAddress(NdpOptionType.TARGET_LL_ADDR);
  t.ok(tll >= 0 && bytesEqual(na!, tll, GW_MAC, 0, 6), 'target link-layer option is our MAC');
  const icmp = new Icmpv6Packet().at(na!, 54, na!.length - 54);
  t.ok(icmp.verifyChecksum(na!, ip.srcOffset, na!, ip.dstOffset), 'checksum');
  t.same(stack.ipv6!.lookupMac(GUEST_GLOBAL), GUEST_MAC, 'solicitor learnt from its source link-layer option');
  // The guest's DAD probe for our address: answered to all nodes, not solicited.
  const [defend] = inject(solicit(IPV6_UNSPECIFIED, GW6, false));
  const dip = new Ipv6Packet().at(defend!, 14, defend!.length - 14);
  t.ok(bytesEqual(defend!, dip.dstOffset, IPV6_ALL_NODES, 0, 16), 'defended to all nodes');
  t.notOk(new NdpNeighborAdvert().at(defend!, 54, defend!.length - 54).solicited);
  // Invalid solicitations: hop limit, multicast target, SLLA from ::.
  const bad = solicit(GUEST_GLOBAL, GW6);
  bad[14 + 7] = 64;
  t.same(inject(bad), [], 'hop limit other than 255 dropped');
  t.same(inject(solicit(IPV6_UNSPECIFIED, GW6, true)), [], 'source link-layer option from :: dropped');
  t.same(inject(solicit(GUEST_GLOBAL, parseIpv6('fec0::99')!)), [], 'not our address: no answer');
  t.equal(stack.counters.get('ndp.badNs'), 2);
});

t.test('echo: unicast to each address, and to all-nodes from our link-local', async (t) => {
  const { inject } = readyStack();
  for (const [src, dst] of [
    [GUEST_LL, LINK_LOCAL_ADDRESS],
    [GUEST_GLOBAL, GW6],
    [GUEST_GLOBAL, DNS6],
  ] as const) {
    const data = Uint8Array.from({ length: 100 }, (_, i) => i);
    const [r] = inject(echo(src, dst, data));
    t.ok(r, 'reply');
    const ip = new Ipv6Packet().at(r!, 14, r!.length - 14);
    t.ok(bytesEqual(r!, ip.srcOffset, dst, 0, 16) && bytesEqual(r!, ip.dstOffset, src, 0, 16), 'addresses swapped');
    const icmp = new Icmpv6Packet().at(r!, 54, r!.length - 54);
    t.equal(icmp.type, 129);
    t.equal(icmp.ident, 0x42);
    t.equal(icmp.seq, 9);
    t.ok(icmp.verifyChecksum(r!, ip.srcOffset, r!, ip.dstOffset));
    t.same(r!.subarray(icmp.payloadOffset), data);
  }
  const [m] = inject(echo(GUEST_LL, IPV6_ALL_NODES));
  const mip = new Ipv6Packet().at(m!, 14, m!.length - 14);
  t.ok(bytesEqual(m!, mip.srcOffset, LINK_LOCAL_ADDRESS, 0, 16), 'multicast echo answered from fe80::2');
});

t.test('ICMPv6 errors: port unreachable, unknown next header, never for multicast', async (t) => {
  const { inject, stack } = readyStack();
  const udp = ipv6Frame(GUEST_GLOBAL, GW6, IpProtocol.UDP, 64, (b, o) => {
    b.set([1, 2, 3, 4], o + 8);
    return 8 + emitUdpV6(b, o, { srcPort: 5000, dstPort: 7777, payloadLength: 4 }, GUEST_GLOBAL, GW6) - 8 + 4;
  });
  const [err] = inject(udp);
  t.ok(err);
  const ip = new Ipv6Packet().at(err!, 14, err!.length - 14);
  const icmp = new Icmpv6Packet().at(err!, 54, err!.length - 54);
  t.equal(icmp.type, 1);
  t.equal(icmp.code, 4, 'port unreachable');
  t.ok(icmp.verifyChecksum(err!, ip.srcOffset, err!, ip.dstOffset));
  t.same(err!.subarray(icmp.payloadOffset), udp.subarray(14), 'quotes the packet');
  const [pp] = inject(ipv6Frame(GUEST_GLOBAL, GW6, 253, 64, () => 8));
  const ppi = new Icmpv6Packet().at(pp!, 54, pp!.length - 54);
  t.equal(ppi.type, 4, 'parameter problem');
  t.equal(ppi.code, 1, 'unrecognized next header');
  t.equal(ppi.pointer, 6, 'points at the Next Header field');
  t.same(inject(ipv6Frame(GUEST_LL, IPV6_ALL_NODES, 253, 64, () => 8)), [], 'no error for a multicast destination');
  t.equal(stack.counters.get('icmp6.errorForGroup'), 1);
});

t.test('malformed IPv6 is counted and dropped', async (t) => {
  const { inject, stack } = readyStack();
  const good = echo(GUEST_GLOBAL, GW6);
  t.same(inject(good.subarray(0, 14 + 30)), [], 'truncated header');
  const badLen = good.slice();
  badLen[14 + 4] = 0x7f; // payload length beyond the frame
  t.same(inject(badLen), [], 'payload length beyond the frame');
  t.equal(stack.counters.get('ipv6.malformed'), 2);
  const badSum = good.slice();
  badSum[54 + 2]! ^= 0xff;
  t.same(inject(badSum), [], 'bad ICMPv6 checksum');
  t.equal(stack.counters.get('icmp6.badChecksum'), 1);
  t.equal(inject(good).length, 1, 'still answering');
});

t.test('NDP resolution for packets to the guest; failure gives address unreachable', async (t) => {
  const { stack, link, clock, inject } = readyStack();
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const remote = parseIpv6('2001:db8::1')!;
  const toGuest = (dst: Uint8Array) =>
    ipv6Frame(remote, dst, IpProtocol.UDP, 60, (b, o) => {
      b.set([7, 7], o + 8);
      emitUdpV6(b, o, { srcPort: 1, dstPort: 2, payloadLength: 2 }, remote, dst);
      return 10;
    }).slice(14);
  stack.ipv6!.sendToGuest(toGuest(GUEST_GLOBAL));
  const [ns] = link.take();
  const nip = new Ipv6Packet().at(ns!, 14, ns!.length - 14);
  t.ok(bytesEqual(ns!, nip.srcOffset, GW6, 0, 16), 'NS from our address in the prefix');
  t.equal(ns![14 + 40], 135);
  // The guest answers with a solicited NA.
  const sent = inject(
    ipv6Frame(GUEST_GLOBAL, GW6, IpProtocol.ICMPV6, 255, (b, o) =>
      emitNdpNeighborAdvert(b, o, { target: GUEST_GLOBAL, router: false, solicited: true, override: true, targetMac: GUEST_MAC }, GUEST_GLOBAL, GW6),
    ),
  );
  t.equal(sent.length, 1, 'queued packet delivered');
  t.ok(bytesEqual(sent[0]!, 0, GUEST_MAC, 0, 6));
  const nobody = parseIpv6('fec0::99')!;
  const lost = toGuest(nobody);
  stack.ipv6!.sendToGuest(lost);
  for (let i = 0; i < 4; i++) {
    clock.advance(1000);
    stack.poll();
  }
  t.equal(link.take().filter((f) => f[14 + 40] === 135).length, 3, 'three solicitations');
  t.equal(beyond.length, 1, 'an ICMPv6 error towards the remote source');
  const eip = new Ipv6Packet().at(beyond[0]!, 0, beyond[0]!.length);
  t.ok(bytesEqual(beyond[0]!, eip.dstOffset, remote, 0, 16));
  const icmp = new Icmpv6Packet().at(beyond[0]!, 40, beyond[0]!.length - 40);
  t.equal(icmp.type, 1);
  t.equal(icmp.code, 3, 'address unreachable');
  t.ok(icmp.verifyChecksum(beyond[0]!, eip.srcOffset, beyond[0]!, eip.dstOffset));
});

t.test('hop limit 1 beyond us: time exceeded from our address (first traceroute6 hop)', async (t) => {
  const { inject } = readyStack();
  const far = parseIpv6('2001:db8::7')!;
  const probe = ipv6Frame(GUEST_GLOBAL, far, IpProtocol.UDP, 1, (b, o) => {
    emitUdpV6(b, o, { srcPort: 40000, dstPort: 33434, payloadLength: 0 }, GUEST_GLOBAL, far);
    return 8;
  });
  const [err] = inject(probe);
  t.ok(err);
  const ip = new Ipv6Packet().at(err!, 14, err!.length - 14);
  t.ok(bytesEqual(err!, ip.srcOffset, GW6, 0, 16), 'from fec0::2');
  const icmp = new Icmpv6Packet().at(err!, 54, err!.length - 54);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 0);
  t.ok(icmp.verifyChecksum(err!, ip.srcOffset, err!, ip.dstOffset));
});
