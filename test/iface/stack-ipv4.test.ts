// The IPv4 side of the stack on a frame-in/frame-out device: ARP, echo for our addresses, UDP
// dispatch, ICMP errors and their rules, and malformed input counted and dropped.
import fc from 'fast-check';
import t from 'tap';
import { ArpOp, ArpPacket, EthernetFrame, Icmpv4Packet, IpProtocol, Ipv4Packet, UdpDatagram, bytesEqual, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { DNS_IP, GUEST_IP, GUEST_MAC, GW_IP, GW_MAC, arpRequest, echoRequest, ipv4Frame, parseIpv4Frame, udpFrame } from '../support/packets.js';

const parse = parseIpv4Frame;

t.test('ARP: answers for the gateway and DNS addresses, and only those', async (t) => {
  const { inject, stack } = makeStack();
  for (const target of [GW_IP, DNS_IP]) {
    const [reply] = inject(arpRequest(target));
    t.ok(reply, 'one reply');
    const eth = new EthernetFrame().at(reply!, 0, reply!.length);
    t.ok(eth.dstIs(GUEST_MAC) && bytesEqual(reply!, 6, GW_MAC, 0, 6), 'from our MAC to the asker');
    const arp = new ArpPacket().at(reply!, 14, reply!.length - 14);
    t.ok(arp.check());
    t.equal(arp.operation, ArpOp.REPLY);
    t.equal(arp.senderIp, target);
    t.ok(bytesEqual(reply!, arp.senderMacOffset, GW_MAC, 0, 6));
    t.equal(arp.targetIp, GUEST_IP);
    t.ok(bytesEqual(reply!, arp.targetMacOffset, GUEST_MAC, 0, 6));
  }
  t.same(inject(arpRequest(ipv4(10, 0, 2, 99))), [], 'no answer for an address that is not ours');
  t.same(inject(arpRequest(GW_IP, GW_IP)), [], 'an announcement for our address gets no reply');
  t.ok(stack.lookupMac(GUEST_IP), 'the guest was learnt from its request');
  t.same(stack.guestMac, GUEST_MAC, 'guest MAC learnt');
});

t.test('echo: replies for our addresses with the same id, sequence and data', async (t) => {
  const { inject, stack } = makeStack();
  for (const dst of [GW_IP, DNS_IP]) {
    const data = Uint8Array.from({ length: 56 }, (_, i) => i);
    const [reply] = inject(echoRequest(0xbeef, 7, data, { dst }));
    t.ok(reply, `reply from ${dst}`);
    const { eth, ip } = parse(reply!);
    t.ok(eth.dstIs(GUEST_MAC));
    t.ok(ip.check());
    t.ok(ip.verifyChecksum(), 'IP checksum');
    t.equal(ip.src, dst);
    t.equal(ip.dst, GUEST_IP);
    t.equal(ip.protocol, IpProtocol.ICMP);
    const icmp = new Icmpv4Packet().at(reply!, ip.payloadOffset, ip.payloadLength);
    t.equal(icmp.type, 0);
    t.equal(icmp.ident, 0xbeef);
    t.equal(icmp.seq, 7);
    t.ok(icmp.verifyChecksum(), 'ICMP checksum');
    t.same(reply!.subarray(icmp.payloadOffset), data);
  }
  // A large echo at the default MTU of 65520.
  const big = new Uint8Array(60000).fill(0xa5);
  const [r] = inject(echoRequest(1, 1, big));
  t.equal(r?.length, 14 + 20 + 8 + 60000, 'a 60000-byte echo is answered whole');
  t.equal(stack.counters.get('icmp4.out.0.0'), 3);
});

t.test('malformed IPv4 and ICMP is counted and dropped', async (t) => {
  const { inject, stack } = makeStack();
  const good = echoRequest(1, 1, new Uint8Array(8));
  t.same(inject(good.subarray(0, 14 + 12)), [], 'truncated header');
  t.equal(stack.counters.get('ipv4.truncated'), 1);
  const badSum = good.slice();
  badSum[14 + 10]! ^= 0xff;
  t.same(inject(badSum), [], 'bad header checksum');
  t.equal(stack.counters.get('ipv4.badChecksum'), 1);
  const badIcmp = good.slice();
  badIcmp[14 + 20 + 2]! ^= 0xff;
  t.same(inject(badIcmp), [], 'bad ICMP checksum');
  t.equal(stack.counters.get('icmp4.badChecksum'), 1);
  const badLen = good.slice();
  badLen[14 + 2] = 0xff; // total length beyond the frame
  // (header checksum now wrong too; length is checked first)
  t.same(inject(badLen), [], 'total length beyond the frame');
  t.equal(stack.counters.get('ipv4.badTotalLength'), 1);
  t.same(inject(new Uint8Array(10)), [], 'runt frame');
  t.equal(stack.counters.get('eth.short'), 1);
  // And the stack still answers.
  t.equal(inject(good).length, 1, 'still working');
});

t.test('random frames: every one is counted, what answers them is well-formed and bounded', async (t) => {
  const { stack, link } = makeStack();
  const total = (): number => Object.values(stack.counters.snapshot()).reduce((a, b) => a + b, 0);
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.boolean(), (bytes, partial) => {
      // Point most of them at us as IPv4 so they get past the Ethernet checks.
      if (bytes.length >= 14) {
        bytes.set(GW_MAC, 0);
        bytes[6] = 0x52;
        bytes[12] = 0x08;
        bytes[13] = 0x00;
      }
      const before = total();
      stack.receive(bytes, { checksumPartial: partial });
      const out = link.take();
      // Each frame is accounted for: a counter (a drop's reason, or the message handled) moved.
      if (total() === before) return false;
      // An answer at most (an ICMP error, an echo reply): never a storm.
      if (out.length > 1) return false;
      for (const f of out) {
        // From us: an ARP request (resolving where an answer goes), or IPv4 with a header and
        // (ICMP) message that verify.
        if (!bytesEqual(f, 6, GW_MAC, 0, 6) || f[12] !== 0x08) return false;
        if (f[13] === 0x06) {
          if (!new ArpPacket().at(f, 14, f.length - 14).check()) return false;
          continue;
        }
        if (f[13] !== 0x00) return false;
        const ip = new Ipv4Packet().at(f, 14, f.length - 14);
        if (!ip.check() || !ip.verifyChecksum()) return false;
        if (ip.protocol === IpProtocol.ICMP && !new Icmpv4Packet().at(f, ip.payloadOffset, ip.payloadLength).verifyChecksum()) return false;
      }
      return true;
    }),
    { numRuns: 2000 },
  );
  t.pass('2000 random frames held to those invariants');
});

t.test('UDP: handlers by port; unserved ports get port unreachable quoting the datagram', async (t) => {
  const { inject, stack } = makeStack();
  const seen: string[] = [];
  stack.onUdpV4(67, (d) => void seen.push(`${d.srcPort}->${d.dstPort}:${d.payload.length}`));
  t.same(inject(udpFrame(68, 67, new Uint8Array(300), { dst: 0xffffffff, dstMac: new Uint8Array(6).fill(0xff) })), []);
  t.same(seen, ['68->67:300'], 'broadcast datagram to a served port reaches its handler');
  const frame = udpFrame(40000, 9999, Uint8Array.of(1, 2, 3));
  const [err] = inject(frame);
  t.ok(err, 'an ICMP error');
  const { ip } = parse(err!);
  t.equal(ip.src, GW_IP);
  t.equal(ip.dst, GUEST_IP);
  const icmp = new Icmpv4Packet().at(err!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 3, 'port unreachable');
  t.ok(icmp.verifyChecksum());
  t.same(err!.subarray(icmp.payloadOffset), frame.subarray(14), 'quotes the whole (short) datagram');
  const udp = new UdpDatagram().at(err!, icmp.payloadOffset + 20, 11);
  t.equal(udp.dstPort, 9999);
  // No error for a datagram sent to broadcast.
  t.same(inject(udpFrame(40000, 9999, new Uint8Array(4), { dst: ipv4(10, 0, 2, 255) })), [], 'no error for subnet broadcast');
  t.same(inject(udpFrame(40000, 9999, new Uint8Array(4), { dst: 0xffffffff })), [], 'no error for limited broadcast');
  // Bad UDP checksum is dropped, but a partial one (NEEDS_CSUM) is trusted.
  const bad = udpFrame(40000, 67, new Uint8Array(4));
  bad[34 + 6]! ^= 0x55;
  t.same(inject(bad), [], 'bad UDP checksum dropped');
  t.equal(stack.counters.get('udp4.badChecksum'), 1);
  inject(bad, true);
  t.equal(seen.length, 2, 'partial checksum from the guest accepted');
});

t.test('protocol unreachable for transports we do not serve', async (t) => {
  const { inject } = makeStack();
  const [err] = inject(ipv4Frame({ proto: 132 }, new Uint8Array(16)));
  const { ip } = parse(err!);
  const icmp = new Icmpv4Packet().at(err!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 2);
});

t.test('ICMP error rules: not for errors, fragments, group sources; rate limited', async (t) => {
  const { inject, stack, clock } = makeStack({}, { icmpRate: 10, icmpBurst: 3 });
  // An ICMP error from the guest to us never draws an error (it is not echo; nothing answers it).
  const unreachable = ipv4Frame({ proto: IpProtocol.ICMP }, Uint8Array.of(3, 3, 0xfc, 0xfc, 0, 0, 0, 0));
  t.same(inject(unreachable), []);
  t.same(inject(udpFrame(1, 9999, new Uint8Array(4), { src: 0 })), [], 'not to 0.0.0.0');
  t.same(inject(ipv4Frame({ proto: 132, fragOffset: 8, flags: 0 }, new Uint8Array(16))), [], 'not for a non-first fragment');
  let sent = 0;
  for (let i = 0; i < 10; i++) sent += inject(udpFrame(1, 9999, new Uint8Array(4))).length;
  t.equal(sent, 3, 'burst of 3, then rate limited');
  t.ok(stack.counters.get('icmp4.rateLimited') >= 7);
  clock.advance(1000);
  t.equal(inject(udpFrame(1, 9999, new Uint8Array(4))).length, 1, 'tokens refill with time');
});

t.test('RFC 5227: probes then announcements for our addresses at link-up; a guest claiming one is a conflict', async (t) => {
  const { stack, link, clock } = makeStack({ ipv6: undefined }, { random: () => 0.5 });
  stack.linkUp();
  const times: { at: number; probe: boolean; target: number }[] = [];
  const start = clock.now();
  // (IGMP starts after the probes and keeps timers running: the ARP schedule is over by 10 s.)
  for (let i = 0; i < 200 && stack.pollAt() <= start + 10_000; i++) {
    clock.t = Math.max(clock.t, stack.pollAt());
    stack.poll();
    for (const f of link.take().filter((x) => x[12] === 0x08 && x[13] === 0x06)) {
      const arp = new ArpPacket().at(f, 14, f.length - 14);
      t.ok(arp.check() && arp.operation === ArpOp.REQUEST && new EthernetFrame().at(f, 0, f.length).isBroadcast(), 'broadcast ARP request');
      times.push({ at: clock.now() - start, probe: arp.senderIp === 0, target: arp.targetIp });
    }
  }
  const gw = times.filter((x) => x.target === GW_IP);
  t.same(
    gw.map((x) => x.probe),
    [true, true, true, false, false],
    'three probes, then two announcements',
  );
  t.same(
    gw.map((x) => x.at),
    [500, 2000, 3500, 5500, 7500],
    'PROBE_WAIT, PROBE_MIN..MAX, ANNOUNCE_WAIT, ANNOUNCE_INTERVAL',
  );
  t.equal(times.filter((x) => x.target === DNS_IP).length, 5, 'the DNS address too');

  const second = makeStack({ ipv6: undefined }, { random: () => 0.5 });
  second.stack.linkUp();
  second.inject(arpRequest(GUEST_IP, GW_IP)); // the guest says it is 10.0.2.2
  t.equal(second.stack.counters.get('arp.conflict'), 1, 'conflict counted (and logged)');
  // Answering ARP for the address continues: we are the guest's configured gateway.
  t.equal(second.inject(arpRequest(GW_IP)).length, 1);
});

/** An IPv4 packet (no link header) from `src` to `dst` carrying a UDP datagram. */
function forwarded(src: number, dst: number): Uint8Array {
  const f = udpFrame(5353, 4444, Uint8Array.of(9, 9, 9), { src, dst });
  return f.slice(14);
}

t.test('ARP resolution for packets to the guest: queued, sent on the reply', async (t) => {
  const { stack, link, clock, inject } = makeStack({ ipv6: undefined });
  const remote = ipv4(192, 0, 2, 1);
  t.notOk(stack.ipv4.sendToGuest(forwarded(remote, GUEST_IP)), 'waits for resolution');
  const [req] = link.take();
  const arp = new ArpPacket().at(req!, 14, req!.length - 14);
  t.ok(arp.check() && arp.operation === ArpOp.REQUEST && arp.targetIp === GUEST_IP && arp.senderIp === GW_IP, 'ARP request from the gateway');
  clock.advance(300);
  const reply = arpRequest(GW_IP, GUEST_IP); // build a reply by flipping the op
  reply[21] = 2;
  reply.set(GW_MAC, 0);
  const out = inject(reply);
  t.equal(out.length, 1, 'the queued packet goes out');
  t.ok(bytesEqual(out[0]!, 0, GUEST_MAC, 0, 6), 'to the resolved MAC');
  t.equal(new Ipv4Packet().at(out[0]!, 14, out[0]!.length - 14).src, remote);
  t.equal(stack.ipv4.neighbors.state(GUEST_IP), 'REACHABLE');
  t.ok(stack.ipv4.sendToGuest(forwarded(remote, GUEST_IP)), 'sent at once while REACHABLE');
});

t.test('resolution failure: host unreachable to a remote source; our own flows are told', async (t) => {
  const { stack, link, clock } = makeStack({ ipv6: undefined });
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  const told: unknown[] = [];
  stack.route({ unreachable: (tag) => told.push(tag) });
  const nobody = ipv4(10, 0, 2, 99);
  const remote = ipv4(192, 0, 2, 1);
  const pkt = forwarded(remote, nobody);
  stack.ipv4.sendToGuest(pkt, 'flow-a');
  stack.ipv4.sendToGuest(forwarded(GW_IP, nobody), 'flow-b');
  for (let i = 0; i < 4; i++) {
    clock.advance(1000);
    stack.poll();
  }
  const requests = link.take().filter((f) => f[12] === 0x08 && f[13] === 0x06);
  t.equal(requests.length, 3, 'three ARP requests, a second apart');
  t.equal(beyond.length, 1, 'one ICMP error for the remote source');
  const ip = new Ipv4Packet().at(beyond[0]!, 0, beyond[0]!.length);
  t.equal(ip.src, GW_IP);
  t.equal(ip.dst, remote);
  const icmp = new Icmpv4Packet().at(beyond[0]!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 1, 'host unreachable');
  t.ok(icmp.verifyChecksum());
  t.same(beyond[0]!.subarray(icmp.payloadOffset), pkt, 'quotes the undeliverable packet');
  t.same(told, ['flow-b'], 'the flow we originated is told instead');
});

t.test('TTL 1 beyond us: time exceeded from the gateway (first traceroute hop); otherwise handed on', async (t) => {
  const { stack, inject } = makeStack({ ipv6: undefined });
  const target = ipv4(192, 0, 2, 7);
  const probe = udpFrame(40000, 33434, new Uint8Array(12), { dst: target, ttl: 1 });
  const [err] = inject(probe);
  t.ok(err, 'an ICMP error');
  const ip = new Ipv4Packet().at(err!, 14, err!.length - 14);
  t.equal(ip.src, GW_IP, 'from the gateway');
  t.equal(ip.dst, GUEST_IP);
  const icmp = new Icmpv4Packet().at(err!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 11);
  t.equal(icmp.code, 0, 'TTL exceeded in transit');
  t.same(err!.subarray(icmp.payloadOffset), probe.subarray(14), 'quotes the probe');
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  t.same(inject(udpFrame(40000, 33435, new Uint8Array(12), { dst: target, ttl: 2 })), [], 'TTL 2: nothing back from us');
  t.equal(beyond.length, 1, 'handed to the NAT with its TTL (the NAT sends it with TTL - 1)');
  t.equal(new Ipv4Packet().at(beyond[0]!, 0, beyond[0]!.length).ttl, 2);
});

t.test('reassembly: a fragmented echo request is answered whole; a lone first fragment times out with time exceeded', async (t) => {
  const { fragmentIpv4 } = await import('../../src/iface/fragment.js');
  const { stack, inject, clock, link } = makeStack({ ipv6: undefined });
  const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
  const whole = echoRequest(9, 1, data, { flags: 0 });
  const frames: Uint8Array[] = [];
  fragmentIpv4(whole.subarray(14), 1500, new Uint8Array(1500), (f) => {
    const fr = new Uint8Array(14 + f.length);
    fr.set(whole.subarray(0, 14));
    fr.set(f, 14);
    frames.push(fr);
  });
  t.equal(frames.length, 3);
  t.same(inject(frames[2]!), [], 'nothing until the datagram is whole');
  t.same(inject(frames[0]!), []);
  const [r] = inject(frames[1]!);
  t.ok(r, 'answered once whole');
  const icmp = new Icmpv4Packet().at(r!, 34, r!.length - 34);
  t.equal(icmp.type, 0);
  t.same(r!.subarray(icmp.payloadOffset), data);
  t.equal(stack.counters.get('ipv4.reassembled'), 1);
  inject(arpRequest(GW_IP)); // the guest known on the link: the error needs no resolution first
  inject(frames[0]!);
  clock.advance(30_000);
  stack.poll();
  const [te] = link.take();
  const ip = new Ipv4Packet().at(te!, 14, te!.length - 14);
  const err = new Icmpv4Packet().at(te!, ip.payloadOffset, ip.payloadLength);
  t.equal(err.type, 11);
  t.equal(err.code, 1, 'fragment reassembly time exceeded');
  t.equal(ip.dst, GUEST_IP);
});
