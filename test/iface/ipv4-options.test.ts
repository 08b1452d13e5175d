// IPv4 options on the frame device, as seed ipv4.go (the newer version) processes them: each
// option type in echo replies (record route and timestamp updated with our address and the
// injected wall clock, router alert kept, unknown options dropped), malformed options answered
// with parameter problem at the seed's pointer on every path (to us, beyond, fragments), and
// fragmentation needed to a source beyond the guest link.
import t from 'tap';
import { fragmentIpv4 } from '../../src/iface/fragment.js';
import {
  EtherType,
  Icmpv4Packet,
  IpProtocol,
  Ipv4Packet,
  emitEthernetHeader,
  emitIcmpv4,
  emitIpv4Header,
  emitUdpV4,
  icmpv4EchoRest,
  ipv4,
  ipv4Read,
} from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { DNS_IP, GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, arpRequest, udpFrame, parseIpv4Frame } from '../support/packets.js';
import type { Ipv4Frame } from '../support/packets.js';

/** 01:02:03.456 UTC: 3 723 456 ms since midnight. */
const WALL = Date.UTC(2026, 10, 5, 1, 2, 3, 456);
const REMOTE = ipv4(192, 0, 2, 7);

/** An Ethernet + IPv4 frame with options `opts` (padded with EOL) around `payload`. */
function optFrame(opts: number[], payload: Uint8Array, p: Ipv4Frame): Uint8Array {
  const hl = 20 + ((opts.length + 3) & ~3);
  const f = new Uint8Array(14 + hl + payload.length);
  emitEthernetHeader(f, 0, { dst: p.dstMac ?? GW_MAC, src: GUEST_MAC, etherType: EtherType.IPV4 });
  f.set(payload, 14 + hl);
  emitIpv4Header(f, 14, {
    src: p.src ?? GUEST_IP,
    dst: p.dst ?? GW_IP,
    proto: p.proto,
    ttl: p.ttl ?? 64,
    id: 0x4242,
    flags: p.flags ?? 0,
    fragOffset: p.fragOffset ?? 0,
    payloadLength: payload.length,
    tos: 0,
    ...(opts.length !== 0 ? { options: Uint8Array.from(opts) } : {}),
  });
  return f;
}

function echoMessage(data: Uint8Array, seq = 1): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitIcmpv4(m, 0, { type: 8, code: 0, rest: icmpv4EchoRest(0x77, seq), payloadLength: data.length });
  return m;
}

function udpMessage(src: number, dst: number, dstPort: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m.set(data, 8);
  emitUdpV4(m, 0, { srcPort: 4000, dstPort, payloadLength: data.length }, src, dst);
  return m;
}

function parse(frame: Uint8Array) {
  const { ip, icmp } = parseIpv4Frame(frame);
  return { ip, icmp, options: frame.subarray(ip.optionsOffset, ip.optionsOffset + ip.optionsLength) };
}

const stackWithClock = () => makeStack({ ipv6: undefined }, { wallClock: () => WALL });

t.test('echo replies carry record route and timestamp updated with our address and time', async (t) => {
  const { inject, stack } = stackWithClock();
  const data = Uint8Array.from({ length: 24 }, (_, i) => i);
  const cases: Array<[string, number[], number, number[]]> = [
    ['record route: our address in the next slot', [7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0], GW_IP, [7, 11, 8, 10, 0, 2, 2, 0, 0, 0, 0, 0]],
    ['timestamp only (flag 0)', [68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0], GW_IP, [68, 12, 9, 0, 0, 0x38, 0xd0, 0xc0, 0, 0, 0, 0]],
    ['timestamp with address (flag 1)', [68, 12, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0], GW_IP, [68, 12, 13, 1, 10, 0, 2, 2, 0, 0x38, 0xd0, 0xc0]],
    [
      'prespecified (flag 3): the address pinged, 10.0.2.3, stamps its slot',
      [68, 20, 5, 3, 10, 0, 2, 3, 0, 0, 0, 0, 10, 0, 2, 2, 0, 0, 0, 0],
      DNS_IP,
      [68, 20, 13, 3, 10, 0, 2, 3, 0, 0x38, 0xd0, 0xc0, 10, 0, 2, 2, 0, 0, 0, 0],
    ],
    ['prespecified for another address: unchanged', [68, 12, 5, 3, 10, 0, 2, 9, 0, 0, 0, 0], GW_IP, [68, 12, 5, 3, 10, 0, 2, 9, 0, 0, 0, 0]],
    ['full timestamp: the overflow count goes up', [68, 8, 9, 0x10, 0, 0, 0, 1], GW_IP, [68, 8, 9, 0x20, 0, 0, 0, 1]],
    ['full record route: returned as it came', [7, 7, 8, 10, 0, 2, 15], GW_IP, [7, 7, 8, 10, 0, 2, 15, 0]],
    ['router alert kept, an unknown option (security) dropped', [0x82, 4, 0, 0, 0x94, 4, 0, 0], GW_IP, [0x94, 4, 0, 0]],
    ['NOPs kept', [1, 1, 1, 0x94, 4, 0, 0], GW_IP, [1, 1, 1, 0x94, 4, 0, 0, 0]],
  ];
  for (const [why, opts, dst, expected] of cases) {
    const [r] = inject(optFrame(opts, echoMessage(data), { proto: IpProtocol.ICMP, dst }));
    t.ok(r, `${why}: answered`);
    const { ip, icmp, options } = parse(r!);
    t.ok(ip.verifyChecksum(), 'header checksum over the options');
    t.equal(ip.src, dst);
    t.equal(ip.dst, GUEST_IP);
    t.same([...options], expected, why);
    t.equal(icmp.type, 0);
    t.ok(icmp.verifyChecksum());
    t.same(r!.subarray(icmp.payloadOffset), data, 'data echoed');
  }
  t.ok(stack.counters.get('ipv4.option.recordRoute') >= 2);
  t.ok(stack.counters.get('ipv4.option.timestamp') >= 5);
  t.equal(stack.counters.get('icmp4.out.0.0'), cases.length);
  t.equal(stack.counters.get('icmp4.in.8'), cases.length);
});

t.test('malformed options: parameter problem pointing where the seed points', async (t) => {
  const { inject, stack } = stackWithClock();
  const cases: Array<[string, number[], number]> = [
    ['length below 2: the option', [0x44, 1, 0, 0], 20],
    ['length past the header: the option', [1, 1, 0x82, 9], 22],
    ['record route pointer below 4', [7, 7, 3, 0, 0, 0, 0], 22],
    ['record route with room for part of an address', [7, 9, 8, 0, 0, 0, 0, 0, 0], 22],
    ['record route too short for one address: the length', [7, 6, 4, 0, 0, 0], 21],
    ['timestamp flag 2', [68, 8, 5, 2, 0, 0, 0, 0], 23],
    ['timestamp pointer below 5', [68, 8, 4, 0, 0, 0, 0, 0], 22],
    ['timestamp overflow count full', [68, 8, 9, 0xf0, 0, 0, 0, 0], 23],
    ['router alert value', [0x94, 4, 0, 1], 22],
    ['router alert length', [0x94, 6, 0, 0, 0, 0], 21],
    ['a repeated option', [0x94, 4, 0, 0, 0x94, 4, 0, 0], 24],
  ];
  for (const [why, opts, pointer] of cases) {
    const req = optFrame(opts, echoMessage(new Uint8Array(8)), { proto: IpProtocol.ICMP });
    const [e] = inject(req);
    t.ok(e, `${why}: answered`);
    const { ip, icmp } = parse(e!);
    t.equal(icmp.type, 12, 'parameter problem');
    t.equal(icmp.code, 0);
    t.equal(icmp.pointer, pointer, why);
    t.ok(icmp.verifyChecksum());
    t.equal(ip.src, GW_IP);
    t.same(e!.subarray(icmp.payloadOffset), req.subarray(14), 'quotes the datagram as received');
  }
  t.equal(stack.counters.get('icmp4.out.12.0'), cases.length);
  t.equal(stack.counters.get('ipv4.badOption'), cases.length);
  t.equal(stack.counters.get('icmp4.out.0.0'), 0, 'no echo reply to any');
});

t.test('options on every path: UDP to us, beyond, fragments, broadcast', async (t) => {
  const { inject, stack } = stackWithClock();
  const seen: Uint8Array[] = [];
  stack.onUdpV4(5555, (d) => {
    seen.push(d.payload.slice());
  });
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const rr = [7, 7, 4, 0, 0, 0, 0];
  const bad = [7, 7, 3, 0, 0, 0, 0];

  t.same(inject(optFrame(rr, udpMessage(GUEST_IP, GW_IP, 5555, Uint8Array.of(1)), { proto: IpProtocol.UDP })), [], 'UDP with record route: delivered');
  t.same(seen, [Uint8Array.of(1)]);
  const [e1] = inject(optFrame(bad, udpMessage(GUEST_IP, GW_IP, 5555, Uint8Array.of(2)), { proto: IpProtocol.UDP }));
  t.equal(parse(e1!).icmp.type, 12, 'malformed: parameter problem, not delivered');
  t.equal(seen.length, 1);

  // Beyond us: checked as the forwarding path does; the NAT gets the datagram as it came.
  const out = optFrame(rr, udpMessage(GUEST_IP, REMOTE, 53, Uint8Array.of(3)), { proto: IpProtocol.UDP, dst: REMOTE });
  t.same(inject(out), []);
  t.same(beyond, [out.subarray(14)], 'valid options: handed to the NAT unchanged');
  const [e2] = inject(optFrame(bad, udpMessage(GUEST_IP, REMOTE, 53, Uint8Array.of(3)), { proto: IpProtocol.UDP, dst: REMOTE }));
  const p2 = parse(e2!);
  t.equal(p2.icmp.type, 12);
  t.equal(p2.icmp.pointer, 22);
  t.equal(p2.ip.src, GW_IP, 'from the gateway');
  t.equal(beyond.length, 1, 'malformed: not handed on');

  // TTL 1 beyond us wins over a bad option (the seed checks the TTL first).
  const [e3] = inject(optFrame(bad, udpMessage(GUEST_IP, REMOTE, 53, Uint8Array.of(3)), { proto: IpProtocol.UDP, dst: REMOTE, ttl: 1 }));
  t.equal(parse(e3!).icmp.type, 11);

  // A first fragment with a bad option: answered at once, never held.
  const [e4] = inject(optFrame(bad, new Uint8Array(16), { proto: IpProtocol.UDP, flags: 1 }));
  t.equal(parse(e4!).icmp.type, 12, 'first fragment: parameter problem');
  // A later fragment: dropped without an error (RFC 1812 §4.3.2.7).
  t.same(inject(optFrame(bad, new Uint8Array(16), { proto: IpProtocol.UDP, flags: 1, fragOffset: 16 })), []);
  t.equal(stack.counters.get('icmp4.errorForFragment'), 1);

  // To the subnet broadcast: no error (RFC 1122 §3.2.2).
  const bcast = ipv4(10, 0, 2, 255);
  t.same(
    inject(optFrame(bad, udpMessage(GUEST_IP, bcast, 5555, Uint8Array.of(4)), { proto: IpProtocol.UDP, dst: bcast, dstMac: new Uint8Array(6).fill(0xff) })),
    [],
  );
  t.equal(stack.counters.get('icmp4.errorForGroup'), 1);
});

t.test('echo to a reassembled request with options: the reply fragments copy only copied options', async (t) => {
  const { inject } = makeStack({ ipv6: undefined, mtu: 1500 }, { wallClock: () => WALL });
  const data = new Uint8Array(3000).fill(0x5a);
  const whole = optFrame([7, 7, 4, 0, 0, 0, 0, 0x94, 4, 0, 0], echoMessage(data), { proto: IpProtocol.ICMP }).slice(14);
  const frags: Uint8Array[] = [];
  fragmentIpv4(whole, 1500, new Uint8Array(1500), (f) => {
    const fr = new Uint8Array(14 + f.length);
    emitEthernetHeader(fr, 0, { dst: GW_MAC, src: GUEST_MAC, etherType: EtherType.IPV4 });
    fr.set(f, 14);
    frags.push(fr);
  });
  t.equal(frags.length, 3);
  t.equal(new Ipv4Packet().at(frags[1]!, 14, frags[1]!.length - 14).headerLength, 24, 'the request fragments carry the router alert on');
  const replies = frags.flatMap((f) => inject(f));
  t.equal(replies.length, 3, 'answered in three fragments');
  const first = parse(replies[0]!);
  t.same([...first.options], [7, 7, 8, 10, 0, 2, 2, 0x94, 4, 0, 0, 0], 'first fragment: record route (with our address) and router alert');
  for (const r of replies.slice(1)) t.same([...parse(r).options], [0x94, 4, 0, 0], 'later fragments: only the copied option');
  const bytes = replies.reduce((n, r) => n + parse(r).ip.payloadLength, 0);
  t.equal(bytes, 8 + 3000, 'the whole reply');
});

t.test('fragmentation needed: a DF datagram from beyond, larger than the MTU', async (t) => {
  const { stack, inject, link } = makeStack({ ipv6: undefined, mtu: 1500 }, { icmpBurst: 1, icmpRate: 1 });
  inject(arpRequest(GW_IP)); // the guest is learnt
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const big = (src: number, df: boolean) => udpFrame(53, 4000, new Uint8Array(2000).fill(7), { src, dst: GUEST_IP, flags: df ? 2 : 0 }).slice(14);

  const dfPacket = big(REMOTE, true);
  t.notOk(stack.ipv4.sendToGuest(dfPacket), 'not sent');
  t.same(link.take(), [], 'nothing to the guest');
  t.equal(beyond.length, 1, 'an error towards its source, through the NAT');
  const ip = new Ipv4Packet().at(beyond[0]!, 0, beyond[0]!.length);
  t.equal(ip.src, GW_IP, 'from the gateway');
  t.equal(ip.dst, REMOTE);
  t.ok(ip.verifyChecksum());
  const icmp = new Icmpv4Packet().at(beyond[0]!, 20, beyond[0]!.length - 20);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 4, 'fragmentation needed');
  t.equal(icmp.mtu, 1500, 'next-hop MTU (RFC 1191)');
  t.ok(icmp.verifyChecksum());
  t.same(beyond[0]!.subarray(28, 28 + 28), dfPacket.subarray(0, 28), 'quotes the datagram');
  t.ok(beyond[0]!.length <= 576, 'within 576 bytes');

  // Never rate limited (the seed, as Linux: path MTU discovery must work): the bucket of one
  // token is spent by the first, yet all are answered.
  for (let i = 0; i < 4; i++) stack.ipv4.sendToGuest(big(REMOTE, true));
  t.equal(beyond.length, 5);
  t.equal(stack.counters.get('icmp4.out.3.4'), 5);
  t.equal(stack.counters.get('ipv4.fragNeeded'), 5);

  // Without DF: fragmented to the guest.
  t.ok(stack.ipv4.sendToGuest(big(REMOTE, false)));
  const frags = link.take();
  t.equal(frags.length, 2, 'two fragments');
  t.ok(frags.every((f) => f.length <= 14 + 1500));
  // Our own DF datagram too big is our bug: counted, no error anywhere.
  t.notOk(stack.ipv4.sendToGuest(big(GW_IP, true)));
  t.equal(stack.counters.get('ipv4.cannotFragment'), 1);
  t.equal(beyond.length, 5);
  // About an ICMP error: never (the rules).
  const relayed = new Uint8Array(2000);
  emitIcmpv4(relayed, 20, { type: 3, code: 1, rest: 0, payloadLength: 1972 });
  emitIpv4Header(relayed, 0, { src: REMOTE, dst: GUEST_IP, proto: IpProtocol.ICMP, ttl: 60, id: 1, flags: 2, fragOffset: 0, payloadLength: 1980, tos: 0 });
  stack.ipv4.sendToGuest(relayed);
  t.equal(beyond.length, 5);
  t.equal(stack.counters.get('icmp4.errorForError'), 1);
  t.equal(ipv4Read(beyond[0]!, 16), REMOTE);
});
