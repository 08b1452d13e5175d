// ICMPv4 (src/iface/icmpv4.ts) alone, on a test LayerContext and a recording Icmpv4Port: the
// built-in echo reply, echo beyond us through the echo hook, the errors we send (to the guest and
// beyond), the rules of RFC 1122 §3.2.2 / RFC 1812 §4.3.2.7 on what an error may answer, and the
// rate limit (fragmentation needed exempt).
import t from 'tap';
import { Icmpv4 } from '../../src/iface/icmpv4.js';
import type { Icmpv4Port } from '../../src/iface/icmpv4.js';
import {
  EthernetFrame,
  Icmpv4Packet,
  Icmpv4Type,
  Icmpv4UnreachableCode,
  IpProtocol,
  Ipv4OptionsUsage,
  Ipv4Packet,
  emitIpv4Header,
  internetChecksum,
  ipv4,
} from '../../src/wire/index.js';
import { TestLayerContext } from '../support/layer-context.js';
import { DNS_IP, GUEST_IP, GUEST_MAC, GW_IP, echoRequest, ipv4Frame, udpFrame } from '../support/packets.js';

const REMOTE = ipv4(192, 0, 2, 7);

function setup(rate = 10, burst = 3, mtu?: number) {
  const s = new TestLayerContext(mtu !== undefined ? { mtu } : {});
  const framed: { packet: Uint8Array; mac: Uint8Array }[] = [];
  const toGuest: Uint8Array[] = [];
  const optionChecks: Ipv4OptionsUsage[] = [];
  let id = 0;
  const port: Icmpv4Port = {
    isOurs: (a) => a === GW_IP || a === DNS_IP,
    checkOptions: (_f, _e, _ip, usage) => {
      optionChecks.push(usage);
      return true;
    },
    echoOptions: () => new Uint8Array(0),
    emitHeader: (b, src, dst, proto, payloadLength, tos = 0, options) =>
      emitIpv4Header(b, 0, { src, dst, proto, ttl: 64, id: ++id, flags: 0, fragOffset: 0, payloadLength, tos, ...(options ? { options } : {}) }),
    frameAndSend: (packet, mac) => {
      framed.push({ packet: packet.slice(), mac: mac.slice() });
      return true;
    },
    sendToGuest: (packet) => {
      toGuest.push(packet.slice());
      return true;
    },
  };
  const icmp = new Icmpv4(s, port, rate, burst);
  const beyond: Uint8Array[] = [];
  s.router.beyond = (p) => beyond.push(p.slice());
  const eth = new EthernetFrame();
  const ip = new Ipv4Packet();
  /** Points views at a frame from the guest (ip checked) for input() / forward() / error(). */
  const view = (frame: Uint8Array) => {
    const e = eth.at(frame, 0, frame.length);
    const i = ip.at(frame, 14, frame.length - 14);
    if (!e.check() || !i.check()) throw new Error('test frame does not parse');
    return { eth: e, ip: i };
  };
  const portUnreachable = (frame: Uint8Array, broadcast = false): void => {
    const v = view(frame);
    icmp.error(frame, v.eth, v.ip, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PORT, 0, broadcast);
  };
  return { s, icmp, port, framed, toGuest, beyond, optionChecks, view, portUnreachable };
}

/** The IPv4 packet at `b[off..]` and its ICMP message. */
function parse(b: Uint8Array, off = 0): { ip: Ipv4Packet; icmp: Icmpv4Packet } {
  const ip = new Ipv4Packet().at(b, off, b.length - off);
  if (!ip.check()) throw new Error('not IPv4');
  const icmp = new Icmpv4Packet().at(b, ip.payloadOffset, ip.payloadLength);
  if (!icmp.check()) throw new Error('not ICMP');
  return { ip, icmp };
}

t.test('echo to us: the built-in reply, same identifier, sequence and data, from the address asked', async (t) => {
  const { icmp, framed, view } = setup();
  const data = Uint8Array.from({ length: 40 }, (_, i) => i * 3);
  const req = echoRequest(0x4242, 9, data, { dst: DNS_IP });
  const v = view(req);
  icmp.input(req, v.eth, v.ip, false);
  t.equal(framed.length, 1, 'one reply');
  t.same(framed[0]!.mac, GUEST_MAC, 'to the link source of the request');
  const { ip, icmp: m } = parse(framed[0]!.packet);
  t.equal(ip.src, DNS_IP, 'from the address the request went to');
  t.equal(ip.dst, GUEST_IP);
  t.equal(ip.protocol, IpProtocol.ICMP);
  t.equal(m.type, Icmpv4Type.ECHO_REPLY);
  t.equal(m.ident, 0x4242);
  t.equal(m.seq, 9);
  t.ok(m.verifyChecksum());
  t.same(framed[0]!.packet.subarray(m.payloadOffset), data);
});

t.test('an echo reply larger than the link MTU is built whole, for the layer to fragment', async (t) => {
  const { icmp, framed, view } = setup(10, 3, 1500);
  const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  const req = echoRequest(5, 6, data);
  const v = view(req);
  icmp.input(req, v.eth, v.ip, false);
  t.equal(framed.length, 1);
  t.equal(framed[0]!.packet.length, 20 + 8 + 3000, 'one whole datagram');
  const { ip, icmp: m } = parse(framed[0]!.packet);
  t.equal(ip.src, GW_IP);
  t.equal(m.type, Icmpv4Type.ECHO_REPLY);
  t.ok(m.verifyChecksum());
  t.same(framed[0]!.packet.subarray(m.payloadOffset), data);
});

t.test('echo to a group or broadcast is not answered (RFC 1122 §3.2.2.6); other types are not answered', async (t) => {
  const { s, icmp, framed, view } = setup();
  const bcast = echoRequest(1, 1, new Uint8Array(8), { dst: ipv4(10, 0, 2, 255) });
  let v = view(bcast);
  icmp.input(bcast, v.eth, v.ip, true);
  const group = echoRequest(1, 2, new Uint8Array(8), { dst: ipv4(224, 0, 0, 1) });
  v = view(group);
  icmp.input(group, v.eth, v.ip, false);
  t.equal(s.counters.get('icmp4.echoToGroup'), 2);
  const timestamp = ipv4Frame({ proto: IpProtocol.ICMP }, checksummed(Uint8Array.of(13, 0, 0, 0, 0, 1, 0, 1, ...new Uint8Array(12))));
  v = view(timestamp);
  icmp.input(timestamp, v.eth, v.ip, false);
  t.equal(s.counters.get('icmp4.in.13'), 1, 'a timestamp request is counted');
  t.equal(framed.length, 0, 'nothing answered');
  const bad = echoRequest(1, 3, new Uint8Array(8));
  corrupt(bad);
  v = view(bad);
  icmp.input(bad, v.eth, v.ip, false);
  t.equal(s.counters.get('icmp4.badChecksum'), 1, 'a bad checksum is dropped');
});

t.test('echo beyond us: the echo hook decides; unsettled requests go on, a reply is from the remote address', async (t) => {
  const { s, icmp, framed, view } = setup();
  const req = echoRequest(7, 1, new Uint8Array(16), { dst: REMOTE });
  let v = view(req);
  t.notOk(icmp.forward(req, v.eth, v.ip), 'no handler: left to the router');
  const seen: number[] = [];
  s.router.echoHandler = (r) => {
    seen.push(r.seq);
    return r.reply();
  };
  const notEcho = ipv4Frame({ proto: IpProtocol.ICMP, dst: REMOTE }, checksummed(Uint8Array.of(3, 3, 0, 0, 0, 0, 0, 0)));
  v = view(notEcho);
  t.notOk(icmp.forward(notEcho, v.eth, v.ip), 'not an echo request: left to the router');
  v = view(req);
  t.ok(icmp.forward(req, v.eth, v.ip), 'the handler replied: settled');
  t.same(seen, [1]);
  t.equal(parse(framed[0]!.packet).ip.src, REMOTE, 'the reply comes from the address the guest pinged');
  const bad = echoRequest(7, 2, new Uint8Array(16), { dst: REMOTE });
  corrupt(bad);
  v = view(bad);
  t.ok(icmp.forward(bad, v.eth, v.ip), 'a bad checksum is settled (dropped)');
  t.same(seen, [1], 'and never shown to the handler');
});

t.test('options: echo requests have theirs processed for the reply, other messages as received', async (t) => {
  const { icmp, optionChecks, view } = setup();
  const withOptions = (frame: Uint8Array): Uint8Array => {
    // The same datagram with an IPv4 header of 24 bytes (one NOP option word).
    const payload = frame.subarray(34);
    const f = new Uint8Array(frame.length + 4);
    f.set(frame.subarray(0, 14));
    f.set(payload, 38);
    emitIpv4Header(f, 14, {
      src: GUEST_IP,
      dst: GW_IP,
      proto: IpProtocol.ICMP,
      ttl: 64,
      id: 1,
      flags: 0,
      fragOffset: 0,
      payloadLength: payload.length,
      tos: 0,
      options: Uint8Array.of(1, 1, 1, 0),
    });
    return f;
  };
  const echo = withOptions(echoRequest(1, 1, new Uint8Array(4)));
  let v = view(echo);
  icmp.input(echo, v.eth, v.ip, false);
  const other = withOptions(ipv4Frame({ proto: IpProtocol.ICMP }, checksummed(Uint8Array.of(13, 0, 0, 0, 0, 1, 0, 1, ...new Uint8Array(12)))));
  v = view(other);
  icmp.input(other, v.eth, v.ip, false);
  t.same(optionChecks, [Ipv4OptionsUsage.ECHO, Ipv4OptionsUsage.RECEIVE]);
});

t.test('an error to the guest quotes its datagram, from the address it was sent to', async (t) => {
  const { s, portUnreachable } = setup();
  const dgram = udpFrame(5000, 9, new Uint8Array(10), { dst: DNS_IP });
  portUnreachable(dgram);
  t.equal(s.sent.length, 1);
  const f = s.sent[0]!;
  t.same(f.subarray(0, 6), GUEST_MAC, 'to the guest');
  const { ip, icmp } = parse(f, 14);
  t.equal(ip.src, DNS_IP);
  t.equal(ip.dst, GUEST_IP);
  t.equal(icmp.type, Icmpv4Type.DEST_UNREACHABLE);
  t.equal(icmp.code, Icmpv4UnreachableCode.PORT);
  t.ok(icmp.verifyChecksum());
  t.same(f.subarray(icmp.payloadOffset), dgram.subarray(14), 'the whole datagram quoted');
  const beyondUs = udpFrame(5000, 9, new Uint8Array(10), { dst: REMOTE });
  portUnreachable(beyondUs);
  t.equal(parse(s.sent[1]!, 14).ip.src, GW_IP, 'about a datagram beyond us: from the gateway');
});

t.test('RFC 1122 §3.2.2: never about an error, a group or broadcast, a source naming no single host, a later fragment', async (t) => {
  const { s, icmp, view, portUnreachable } = setup(10, 1);
  const cases: [string, Uint8Array, string, boolean?][] = [
    ['about an ICMP error', ipv4Frame({ proto: IpProtocol.ICMP }, Uint8Array.of(3, 1, 0, 0, 0, 0, 0, 0)), 'icmp4.errorForError'],
    ['about an ICMP type we do not know', ipv4Frame({ proto: IpProtocol.ICMP }, Uint8Array.of(99, 0, 0, 0, 0, 0, 0, 0)), 'icmp4.errorForError'],
    ['to a broadcast address', udpFrame(1, 2, new Uint8Array(4), { dst: ipv4(10, 0, 2, 255) }), 'icmp4.errorForGroup', true],
    ['to a multicast address', udpFrame(1, 2, new Uint8Array(4), { dst: ipv4(239, 1, 2, 3) }), 'icmp4.errorForGroup'],
    ['as link-layer multicast', udpFrame(1, 2, new Uint8Array(4), { dstMac: Uint8Array.of(0xff, 0xff, 0xff, 0xff, 0xff, 0xff) }), 'icmp4.errorForGroup'],
    ['from 0.0.0.0', udpFrame(1, 2, new Uint8Array(4), { src: 0 }), 'icmp4.errorForBadSource'],
    ['from the subnet broadcast', udpFrame(1, 2, new Uint8Array(4), { src: ipv4(10, 0, 2, 255) }), 'icmp4.errorForBadSource'],
    ['from a multicast address', udpFrame(1, 2, new Uint8Array(4), { src: ipv4(224, 0, 0, 5) }), 'icmp4.errorForBadSource'],
    ['about a later fragment', ipv4Frame({ proto: 132, flags: 0, fragOffset: 8 }, new Uint8Array(16)), 'icmp4.errorForFragment'],
  ];
  for (const [what, frame, reason, broadcast] of cases) {
    const before = s.counters.get(reason);
    portUnreachable(frame, broadcast ?? false);
    t.equal(s.counters.get(reason), before + 1, `${what}: ${reason}`);
  }
  t.equal(s.sent.length, 0, 'none sent');
  t.equal(s.counters.get('icmp4.rateLimited'), 0, 'and none took a token');
  const echo = echoRequest(1, 1, new Uint8Array(4));
  const v = view(echo);
  icmp.error(echo, v.eth, v.ip, Icmpv4Type.PARAM_PROBLEM, 0, 0, false);
  t.equal(s.sent.length, 1, 'an informational message (echo request) may draw an error');
});

t.test('rate limit: a burst, then one per token as time passes; fragmentation needed is never limited', async (t) => {
  const { s, icmp, beyond, portUnreachable } = setup(10, 3);
  const dgram = udpFrame(1, 9999, new Uint8Array(4));
  for (let i = 0; i < 6; i++) portUnreachable(dgram);
  t.equal(s.sent.length, 3, 'the burst of 3');
  t.equal(s.counters.get('icmp4.rateLimited'), 3);
  s.t += 100; // 10 a second: one token
  portUnreachable(dgram);
  portUnreachable(dgram);
  t.equal(s.sent.length, 4, 'one more after 100 ms');
  const big = remotePacket(1400, true);
  for (let i = 0; i < 5; i++) icmp.errorBeyond(big, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.FRAG_NEEDED, 1280);
  t.equal(beyond.length, 5, 'fragmentation needed: every one sent (path MTU discovery depends on it)');
  icmp.errorBeyond(big, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.HOST, 0);
  t.equal(beyond.length, 5, 'host unreachable beyond waits for a token');
});

t.test('errors about datagrams from beyond go to the router, from the gateway; reassembly time exceeded to the guest', async (t) => {
  const { s, icmp, beyond, toGuest } = setup();
  const p = remotePacket(100, true);
  icmp.errorBeyond(p, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.FRAG_NEEDED, 1280);
  t.equal(beyond.length, 1);
  const { ip, icmp: m } = parse(beyond[0]!);
  t.equal(ip.src, GW_IP, 'we are the router that failed it');
  t.equal(ip.dst, REMOTE);
  t.equal(m.type, Icmpv4Type.DEST_UNREACHABLE);
  t.equal(m.code, Icmpv4UnreachableCode.FRAG_NEEDED);
  t.equal(m.mtu, 1280);
  t.ok(m.verifyChecksum());
  t.same(beyond[0]!.subarray(m.payloadOffset), p, 'quotes the datagram');
  icmp.errorBeyond(new Uint8Array(10), Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.HOST, 0);
  t.equal(beyond.length, 1, 'not about what is not an IPv4 datagram');

  const first = udpFrame(1, 2, new Uint8Array(64), { dst: DNS_IP }).subarray(14);
  icmp.reassemblyTimeout(first);
  t.equal(toGuest.length, 1);
  const r = parse(toGuest[0]!);
  t.equal(r.ip.src, DNS_IP, 'from the address the datagram went to');
  t.equal(r.ip.dst, GUEST_IP);
  t.equal(r.icmp.type, Icmpv4Type.TIME_EXCEEDED);
  t.equal(r.icmp.code, 1, 'fragment reassembly time exceeded');
  t.equal(s.notes.filter((n) => n === 'icmp4.out.11.1').length, 1);
});

t.test('errors about guest datagrams we cannot carry: to the guest, from the gateway; never about ICMP errors or broadcasts', async (t) => {
  const { icmp, toGuest, beyond } = setup();
  const gre = ipv4Frame({ proto: 47, dst: REMOTE }, new Uint8Array(24)).subarray(14);
  icmp.errorToGuest(gre, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.ADMIN_PROHIBITED, 0);
  t.equal(toGuest.length, 1, 'to the guest');
  t.equal(beyond.length, 0, 'not beyond');
  const { ip, icmp: m } = parse(toGuest[0]!);
  t.equal(ip.src, GW_IP, 'from the gateway');
  t.equal(ip.dst, GUEST_IP);
  t.equal(m.type, Icmpv4Type.DEST_UNREACHABLE);
  t.equal(m.code, Icmpv4UnreachableCode.ADMIN_PROHIBITED);
  t.ok(m.verifyChecksum());
  t.same(toGuest[0]!.subarray(m.payloadOffset), gre, 'quotes the datagram');
  const error = ipv4Frame({ proto: IpProtocol.ICMP, dst: REMOTE }, Uint8Array.of(3, 3, 0, 0, 0, 0, 0, 0)).subarray(14);
  icmp.errorToGuest(error, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.ADMIN_PROHIBITED, 0);
  const broadcast = ipv4Frame({ proto: 47, dst: 0xffffffff }, new Uint8Array(24)).subarray(14);
  icmp.errorToGuest(broadcast, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.ADMIN_PROHIBITED, 0);
  t.equal(toGuest.length, 1, 'never about an ICMP error, nor a broadcast');
});

/** An IPv4 datagram of `size` bytes from REMOTE to the guest, DF set or not. */
function remotePacket(size: number, df: boolean): Uint8Array {
  const p = new Uint8Array(size);
  emitIpv4Header(p, 0, {
    src: REMOTE,
    dst: GUEST_IP,
    proto: IpProtocol.UDP,
    ttl: 60,
    id: 5,
    flags: df ? 2 : 0,
    fragOffset: 0,
    payloadLength: size - 20,
    tos: 0,
  });
  return p;
}

/** Flips a bit of the frame's last byte (the checksum no longer matches). */
function corrupt(frame: Uint8Array): void {
  frame[frame.length - 1] = (frame[frame.length - 1] ?? 0) ^ 1;
}

/** An ICMP message with its checksum filled. */
function checksummed(m: Uint8Array): Uint8Array {
  const c = internetChecksum(m, 0, m.length);
  m[2] = c >>> 8;
  m[3] = c & 0xff;
  return m;
}
