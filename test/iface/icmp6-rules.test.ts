// The ICMPv6 error rules (RFC 4443 §2.4 (e), (f), as gVisor's returnError) on the frame device:
// never about errors or redirects, never to sources that name no single node, not about packets to
// groups or sent as link-layer multicast except packet too big and parameter problem code 2 for an
// option of action 10, not about later fragments, the token bucket; packet too big for forwarded
// packets through the beyond hook; per-type counters and their debug log.
import t from 'tap';
import {
  EtherType,
  IPV6_ALL_NODES,
  IPV6_UNSPECIFIED,
  Icmpv6Packet,
  IpProtocol,
  Ipv6Packet,
  bytesEqual,
  emitEthernetHeader,
  emitIcmpv6,
  emitIpv6FragmentHeader,
  emitIpv6Header,
  emitNdpNeighborAdvert,
  emitUdpV6,
  icmpv6EchoRest,
  macFromIpv6Multicast,
  parseIpv6,
} from '../../src/wire/index.js';
import type { Log } from '../../src/iface/log.js';
import type { StackOptions } from '../../src/iface/stack.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_MAC, GW_MAC } from '../support/packets.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const GUEST = parseIpv6('fec0::5054:ff:fe12:3456')!;
const GW6 = parseIpv6('fec0::2')!;
const FAR = parseIpv6('2001:db8::7')!;

function frame(
  src: Uint8Array,
  dst: Uint8Array,
  next: number,
  hopLimit: number,
  build: (b: Uint8Array, off: number) => number,
  linkMulticast = false,
): Uint8Array {
  const b = new Uint8Array(3000);
  const len = build(b, 54);
  const mac = new Uint8Array(6);
  if (dst[0] === 0xff || linkMulticast) macFromIpv6Multicast(mac, 0, dst[0] === 0xff ? dst : IPV6_ALL_NODES, 0);
  else mac.set(GW_MAC);
  emitEthernetHeader(b, 0, { dst: mac, src: GUEST_MAC, etherType: EtherType.IPV6 });
  emitIpv6Header(b, 14, { src, dst, nextHeader: next, hopLimit, payloadLength: len });
  return b.slice(0, 54 + len);
}

const udp = (src: Uint8Array, dst: Uint8Array, hopLimit = 64, linkMulticast = false) =>
  frame(
    src,
    dst,
    IpProtocol.UDP,
    hopLimit,
    (b, o) => {
      emitUdpV6(b, o, { srcPort: 4000, dstPort: 9999, payloadLength: 4 }, src, dst);
      return 12;
    },
    linkMulticast,
  );

const icmp = (src: Uint8Array, dst: Uint8Array, type: number, hopLimit = 64) =>
  frame(src, dst, IpProtocol.ICMPV6, hopLimit, (b, o) => emitIcmpv6(b, o, { type, code: 0, rest: icmpv6EchoRest(1, 1), payloadLength: 8 }, src, dst) + 8);

/** A destination options header with one unknown option of type `optType`, then No Next Header. */
const badOption = (src: Uint8Array, dst: Uint8Array, optType: number) =>
  frame(src, dst, IpProtocol.IPV6_OPTS, 64, (b, o) => {
    b.set([59, 0, optType, 4, 0, 0, 0, 0], o);
    return 8;
  });

function ready(opts: StackOptions = {}) {
  const env = makeStack({ mtu: 1500 }, { random: () => 0.5, ...opts });
  env.stack.linkUp();
  for (let i = 0; i < 12; i++) {
    env.clock.advance(500);
    env.stack.poll();
  }
  env.link.take();
  return env;
}

const errorsIn = (frames: Uint8Array[]) => frames.filter((f) => f[12] === 0x86 && f[20] === IpProtocol.ICMPV6 && f[54]! < 128);

t.test('never about an error message or a redirect (e.1, e.2); informational messages are fine', async (t) => {
  const { inject, stack } = ready();
  // Hop limit 1 beyond us would draw time exceeded: not for an error or a redirect.
  t.same(errorsIn(inject(icmp(GUEST, FAR, 1, 1))), [], 'destination unreachable');
  t.same(errorsIn(inject(icmp(GUEST, FAR, 137, 1))), [], 'redirect');
  t.same(errorsIn(inject(icmp(GUEST, FAR, 100, 1))), [], 'an unknown error type (below 128)');
  t.equal(stack.counters.get('icmp6.errorForError'), 3);
  const [te] = errorsIn(inject(icmp(GUEST, FAR, 128, 1)));
  t.equal(te?.[54], 3, 'an echo request gets time exceeded');
});

t.test('never to a source that names no single node (e.6)', async (t) => {
  const { inject, stack } = ready();
  t.same(errorsIn(inject(udp(IPV6_UNSPECIFIED, GW6))), [], 'from ::');
  t.equal(stack.counters.get('icmp6.errorForBadSource'), 1);
});

t.test('packets to groups (e.3) and link-layer multicast (e.4): only the two exceptions', async (t) => {
  const { inject, stack } = ready();
  t.same(errorsIn(inject(udp(GUEST_LL, IPV6_ALL_NODES))), [], 'port unreachable for a group: no');
  t.same(errorsIn(inject(udp(GUEST, GW6, 64, true))), [], 'to our address inside a multicast frame: no');
  t.equal(stack.counters.get('icmp6.errorForGroup'), 2);
  // Parameter problem code 2 for an unrecognized option: action 10 answers even a group, action
  // 11 does not (RFC 8200 §4.2).
  const [pp] = errorsIn(inject(badOption(GUEST_LL, IPV6_ALL_NODES, 0x80)));
  t.ok(pp, 'action 10 to all-nodes: answered');
  const p = new Icmpv6Packet().at(pp!, 54, pp!.length - 54);
  t.equal(p.type, 4);
  t.equal(p.code, 2);
  t.equal(p.pointer, 42, 'points at the option');
  const ip = new Ipv6Packet().at(pp!, 14, pp!.length - 14);
  t.ok(bytesEqual(pp!, ip.srcOffset, parseIpv6('fe80::2')!, 0, 16), 'from fe80::2, never from the group');
  t.same(errorsIn(inject(badOption(GUEST_LL, IPV6_ALL_NODES, 0xc0))), [], 'action 11 to a group: no');
  t.equal(errorsIn(inject(badOption(GUEST, GW6, 0xc0))).length, 1, 'action 11 to us: answered');
});

t.test('the token bucket (f): a burst, then one per token', async (t) => {
  const { inject, stack, clock } = ready({ icmpRate: 2, icmpBurst: 3 });
  let n = 0;
  for (let i = 0; i < 10; i++) n += errorsIn(inject(udp(GUEST, GW6))).length;
  t.equal(n, 3, 'burst of 3');
  t.equal(stack.counters.get('icmp6.rateLimited'), 7);
  clock.advance(500);
  t.equal(errorsIn(inject(udp(GUEST, GW6))).length, 1, 'one token after 0.5 s at 2/s');
  t.equal(errorsIn(inject(udp(GUEST, GW6))).length, 0);
  t.equal(stack.counters.get('icmp6.out.1.4'), 4);
  // Echo replies are not errors: never limited.
  let replies = 0;
  for (let i = 0; i < 10; i++) replies += inject(icmp(GUEST, GW6, 128)).length;
  t.equal(replies, 10);
});

t.test('errors towards sources beyond the link: address unreachable, not for later fragments', async (t) => {
  const { stack, clock } = ready();
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const nobody = parseIpv6('fec0::99')!;
  const whole = udp(FAR, nobody).slice(14);
  // A later fragment of a datagram from FAR (offset 8), as a forwarder would hand it on.
  const frag = new Uint8Array(40 + 8 + 16);
  emitIpv6Header(frag, 0, { src: FAR, dst: nobody, nextHeader: IpProtocol.IPV6_FRAG, hopLimit: 60, payloadLength: 24 });
  emitIpv6FragmentHeader(frag, 40, { nextHeader: IpProtocol.UDP, fragOffset: 8, moreFragments: false, ident: 7 });
  stack.ipv6!.sendToGuest(whole);
  stack.ipv6!.sendToGuest(frag);
  for (let i = 0; i < 5; i++) {
    clock.advance(1000);
    stack.poll();
  }
  t.equal(beyond.length, 1, 'one error: the whole datagram; none for the later fragment');
  t.equal(beyond[0]![40], 1);
  t.equal(beyond[0]![41], 3, 'address unreachable');
  t.equal(stack.counters.get('icmp6.errorForFragment'), 1);
});

t.test('packet too big for a forwarded packet; what we build is fragmented', async (t) => {
  const { stack, link, inject } = ready({ icmpBurst: 1 });
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const big = frame(FAR, GUEST, IpProtocol.UDP, 60, (b, o) => {
    emitUdpV6(b, o, { srcPort: 7, dstPort: 4000, payloadLength: 2000 }, FAR, GUEST);
    return 2008;
  }).slice(14);
  // Forwarded while the guest's address is being resolved: it waits, then gets packet too big.
  t.notOk(stack.ipv6!.sendToGuest(big, undefined, true), 'forwarded: waits for resolution');
  t.equal(link.take()[0]?.[54], 135, 'neighbour solicitation');
  const afterNa = inject(
    frame(GUEST, GW6, IpProtocol.ICMPV6, 255, (b, o) =>
      emitNdpNeighborAdvert(b, o, { target: GUEST, router: false, solicited: true, override: true, targetMac: GUEST_MAC }, GUEST, GW6),
    ),
  );
  t.same(afterNa, [], 'resolved: still nothing to the guest');
  t.equal(beyond.length, 1);
  const e = beyond[0]!;
  const ip = new Ipv6Packet().at(e, 0, e.length);
  t.ok(bytesEqual(e, ip.srcOffset, GW6, 0, 16), 'from the gateway');
  t.ok(bytesEqual(e, ip.dstOffset, FAR, 0, 16), 'to the source');
  const m = new Icmpv6Packet().at(e, 40, e.length - 40);
  t.equal(m.type, 2, 'packet too big');
  t.equal(m.mtu, 1500, 'the link MTU');
  t.ok(m.verifyChecksum(e, ip.srcOffset, e, ip.dstOffset));
  t.ok(e.length <= 1280, 'within the minimum MTU');
  t.same(e.subarray(48, 88), big.subarray(0, 40), 'quotes the packet');
  // Rate limited like every error in the seed: the bucket of one is spent.
  t.notOk(stack.ipv6!.sendToGuest(big, undefined, true));
  t.same(link.take(), []);
  t.equal(beyond.length, 1);
  t.equal(stack.counters.get('icmp6.rateLimited'), 1);
  // Ours (the NAT re-originates): fragmented.
  t.ok(stack.ipv6!.sendToGuest(big));
  const frags = link.take();
  t.equal(frags.length, 2);
  t.ok(frags.every((f) => f[14 + 6] === IpProtocol.IPV6_FRAG && f.length <= 14 + 1500));
  t.equal(stack.counters.get('ipv6.packetTooBig'), 2);
});

t.test('per-type counters for both families, each event in the debug log', async (t) => {
  const events: string[] = [];
  const log: Log = { debug: (o) => events.push(String((o as { event?: string }).event)), info: () => {}, warn: () => {}, error: () => {} };
  const { inject, stack } = ready({ logger: log });
  inject(icmp(GUEST, GW6, 128));
  inject(udp(GUEST, GW6));
  const snap = stack.counters.snapshot();
  t.equal(snap['icmp6.in.128'], 1);
  t.equal(snap['icmp6.out.129.0'], 1);
  t.equal(snap['icmp6.out.1.4'], 1);
  t.ok(snap['icmp6.out.135.0']! >= 3, 'our DAD probes');
  t.ok(snap['mld.out.143']! >= 2 && snap['icmp6.out.143.0']! >= 2, 'our MLD reports');
  t.ok(snap['mld.out.130']! >= 1, 'our MLD queries');
  for (const e of ['icmp6.in.128', 'icmp6.out.129.0', 'icmp6.out.1.4', 'mld.out.143', 'mld.out.130', 'igmp.out.17', 'igmp.out.34'])
    t.ok(events.includes(e), `${e} logged`);
});
