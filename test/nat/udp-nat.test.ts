// UDP NAT against a fake host: one connected socket per flow, TTL - 1, answers to the guest's
// port, errors quoting the datagram, the gateway mapped to loopback, idle expiry and bounds.
import t from 'tap';
import type { HostUdp, UdpSocketEvents } from '../../src/nat/host.js';
import { ErrOrigin } from '../../src/nat/icmp-errors.js';
import { Fence } from '../../src/nat/fence.js';
import { UdpNat } from '../../src/nat/udp-nat.js';
import { Icmpv4Packet, IpProtocol, Ipv4Packet, UdpDatagram, completeChecksum, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_IP, GW_IP, arpRequest, udpFrame } from '../support/packets.js';

class FakeUdp implements HostUdp {
  sockets: { dst: number[]; port: number; events: UdpSocketEvents; sent: { data: number[]; ttl: number }[]; closed: boolean }[] = [];
  openUdp(_family: 4 | 6, dst: Uint8Array, port: number, events: UdpSocketEvents) {
    const s = { dst: [...dst], port, events, sent: [] as { data: number[]; ttl: number }[], closed: false };
    this.sockets.push(s);
    return {
      send: (data: Uint8Array, ttl: number) => {
        s.sent.push({ data: [...data], ttl });
        return 0;
      },
      close: () => void (s.closed = true),
    };
  }
}

const FAR = ipv4(192, 0, 2, 9);

function setup(opts: ConstructorParameters<typeof UdpNat>[2] = {}, mtu?: number) {
  const env = makeStack({ ipv6: undefined, ...(mtu !== undefined ? { mtu } : {}) });
  const host = new FakeUdp();
  const nat = new UdpNat(env.stack, host, opts);
  env.stack.route({ beyond: (p) => nat.output(4, p, (p[0]! & 15) * 4, p[8]!) });
  env.stack.route({
    unservedUdp: (family, p, off, ttl) => {
      if (!nat.takesGateway(family, p)) return false;
      nat.output(family, p, off, ttl);
      return true;
    },
  });
  env.inject(arpRequest(GW_IP)); // the guest is known on the link
  return { ...env, nat, host };
}

t.test('a flow: TTL - 1 out, answers back to the guest port from the destination', async (t) => {
  const { inject, host, link } = setup();
  t.same(inject(udpFrame(40000, 53, Uint8Array.of(1, 2, 3), { dst: FAR, ttl: 64 })), []);
  t.equal(host.sockets.length, 1);
  t.same(host.sockets[0]!.dst, [192, 0, 2, 9]);
  t.equal(host.sockets[0]!.port, 53);
  t.same(host.sockets[0]!.sent, [{ data: [1, 2, 3], ttl: 63 }]);
  inject(udpFrame(40000, 53, Uint8Array.of(4), { dst: FAR }));
  t.equal(host.sockets.length, 1, 'same flow, same socket');
  host.sockets[0]!.events.datagram(Uint8Array.of(9, 9));
  const [r] = link.take();
  const ip = new Ipv4Packet().at(r!, 14, r!.length - 14);
  t.equal(ip.src, FAR);
  t.equal(ip.dst, GUEST_IP);
  t.equal(ip.protocol, IpProtocol.UDP);
  const udp = new UdpDatagram().at(r!, ip.payloadOffset, ip.payloadLength);
  t.equal(udp.srcPort, 53);
  t.equal(udp.dstPort, 40000);
  t.ok(udp.verifyChecksumV4(ip.src, ip.dst));
  t.same([...r!.subarray(udp.payloadOffset)], [9, 9]);
});

t.test('a datagram larger than the MTU in one frame (a HOST_UFO frame, checksum partial) goes whole to the host socket', async (t) => {
  const { inject, host } = setup({}, 1500);
  const data = Uint8Array.from({ length: 30000 }, (_, i) => (i * 7) & 0xff);
  const f = udpFrame(40000, 5001, data, { dst: FAR });
  f.fill(0, 14 + 20 + 6, 14 + 20 + 8); // the checksum left to the device, as NEEDS_CSUM says
  t.same(inject(f, true), []);
  t.equal(host.sockets.length, 1);
  t.equal(host.sockets[0]!.sent.length, 1, 'one datagram, for the host kernel to fragment');
  t.same(host.sockets[0]!.sent[0]!.data, [...data]);
});

t.test('answers to a guest that completes checksums: partial, except when they must be fragmented', async (t) => {
  const { inject, host, link } = setup({}, 1500);
  link.partialChecksums = true;
  inject(udpFrame(40000, 53, Uint8Array.of(1), { dst: FAR }));
  host.sockets[0]!.events.datagram(Uint8Array.from({ length: 1000 }, (_, i) => i & 0xff));
  const [small] = link.takeWithPartial();
  t.same(small!.partial, { start: 34, offset: 6, segmentSize: 0 }, 'partial: the UDP header, its checksum field');
  const done = small!.frame.slice();
  completeChecksum(done, 34, done.length, 6, true);
  t.ok(new UdpDatagram().at(done, 34, done.length - 34).verifyChecksumV4(FAR, GUEST_IP), 'completed, it verifies');
  // Larger than the MTU: fragments carry the checksum, complete.
  host.sockets[0]!.events.datagram(Uint8Array.from({ length: 3000 }, (_, i) => (i * 3) & 0xff));
  const frags = link.takeWithPartial();
  t.ok(frags.length >= 3 && frags.every((f) => f.partial === undefined), 'fragments: no partial checksum');
  const first = new Ipv4Packet().at(frags[0]!.frame, 14, frags[0]!.frame.length - 14);
  t.equal(first.fragOffset, 0);
  const whole = new Uint8Array(8 + 3000);
  for (const f of frags) {
    const ip = new Ipv4Packet().at(f.frame, 14, f.frame.length - 14);
    whole.set(f.frame.subarray(ip.payloadOffset, ip.payloadOffset + ip.payloadLength), ip.fragOffset);
  }
  t.ok(new UdpDatagram().at(whole, 0, whole.length).verifyChecksumV4(FAR, GUEST_IP), 'the reassembled datagram verifies');
});

t.test('errors quote the datagram as the guest sent it, from the reporting hop', async (t) => {
  const { inject, host, link } = setup();
  const sent = udpFrame(40001, 33434, new Uint8Array(10), { dst: FAR, ttl: 3 });
  inject(sent);
  const router = Uint8Array.of(198, 51, 100, 7, ...new Array<number>(12).fill(0));
  host.sockets[0]!.events.error({ origin: ErrOrigin.ICMP, type: 11, code: 0, errno: 113, info: 0, offender: router, offenderValid: true }, new Uint8Array(10));
  const [e] = link.take();
  const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
  t.equal(ip.src, ipv4(198, 51, 100, 7));
  const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 11);
  t.ok(icmp.verifyChecksum());
  const q = new UdpDatagram().at(e!, icmp.payloadOffset + 20, 8);
  t.equal(q.srcPort, 40001, 'quoted ports are the guest ones (traceroute matches on them)');
  t.equal(q.dstPort, 33434);
});

t.test('the gateway maps to loopback; the DNS address does not', async (t) => {
  const { inject, host } = setup();
  t.same(inject(udpFrame(40002, 7, Uint8Array.of(1))), [], 'to 10.0.2.2:7: taken by the NAT');
  t.same(host.sockets[0]!.dst, [127, 0, 0, 1]);
  const [unreach] = inject(udpFrame(40002, 7, Uint8Array.of(1), { dst: ipv4(10, 0, 2, 3) }));
  t.equal(new Icmpv4Packet().at(unreach!, 34, unreach!.length - 34).code, 3, '10.0.2.3:7: port unreachable');
  const off = setup({ mapGateway: false });
  const [r] = off.inject(udpFrame(40002, 7, Uint8Array.of(1)));
  t.equal(new Icmpv4Packet().at(r!, 34, r!.length - 34).code, 3, '--no-map-gw: port unreachable');
});

t.test('idle expiry and the flow bound', async (t) => {
  const { inject, host, nat, clock } = setup({ maxFlows: 2, idleMs: 5000 });
  for (let p = 1; p <= 3; p++) inject(udpFrame(40000 + p, 9, Uint8Array.of(p), { dst: FAR }));
  t.equal(nat.flowCount, 2);
  t.ok(host.sockets[0]!.closed, 'the least recently used flow closed');
  clock.advance(5000);
  nat.poll(clock.now());
  t.equal(nat.flowCount, 0);
});

t.test('fenced destinations: admin prohibited from the gateway, no host socket; the gateway mapping still works', async (t) => {
  const fence = new Fence({ denyHost: true, hostAddresses: () => [Uint8Array.of(192, 0, 2, 77)] });
  const { inject, host, nat } = setup({ fence });
  for (const dst of [ipv4(127, 0, 0, 1), ipv4(0, 0, 0, 0), ipv4(192, 0, 2, 77)]) {
    const [e] = inject(udpFrame(40000, 53, Uint8Array.of(1), { dst }));
    t.ok(e, 'answered');
    const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
    t.equal(ip.src, GW_IP, 'from the gateway');
    const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
    t.same([icmp.type, icmp.code], [3, 13], 'communication administratively prohibited');
  }
  t.equal(host.sockets.length, 0, 'no host socket');
  t.same([fence.stats.loopback, fence.stats.unspecified, fence.stats.host], [1, 1, 1]);
  inject(udpFrame(40000, 5000, Uint8Array.of(1), { dst: GW_IP }));
  t.same(host.sockets[0]!.dst, [127, 0, 0, 1], 'the gateway still maps to loopback');
  void nat;
});

t.test('idle flows expire oldest first; a used flow moves to the back', async (t) => {
  const { inject, host, nat, clock } = setup({ idleMs: 1000, maxFlows: 2 });
  const t0 = clock.t;
  inject(udpFrame(40000, 53, Uint8Array.of(1), { dst: FAR }));
  clock.advance(100);
  inject(udpFrame(40001, 53, Uint8Array.of(1), { dst: FAR }));
  clock.advance(100);
  inject(udpFrame(40000, 53, Uint8Array.of(2), { dst: FAR })); // the first is used again
  inject(udpFrame(40002, 53, Uint8Array.of(1), { dst: FAR })); // full: the least recently used goes
  t.same(
    host.sockets.map((s) => s.closed),
    [false, true, false],
    'the second flow was the least recently used',
  );
  t.equal(nat.pollAt(), t0 + 200 + 1000);
  clock.advance(1000);
  nat.poll(clock.t);
  t.equal(nat.flowCount, 0);
});

/** A host whose sockets take datagrams in batches (sendmmsg), accepting `accept` of each call. */
class BatchingUdp implements HostUdp {
  sockets: { port: number; calls: number[]; sent: { data: number[]; ttl: number; how: 'many' | 'one' }[]; failOne: number }[] = [];
  accept = Infinity;
  openUdp(_family: 4 | 6, _dst: Uint8Array, port: number) {
    const s = { port, calls: [] as number[], sent: [] as { data: number[]; ttl: number; how: 'many' | 'one' }[], failOne: 0 };
    this.sockets.push(s);
    return {
      send: (data: Uint8Array, ttl: number) => {
        if (s.failOne !== 0) return s.failOne;
        s.sent.push({ data: [...data], ttl, how: 'one' });
        return 0;
      },
      sendMany: (buf: Uint8Array, offsets: Int32Array, lengths: Int32Array, ttls: Int32Array, start: number, count: number) => {
        s.calls.push(count);
        const n = Math.min(count, this.accept);
        for (let i = start; i < start + n; i++) s.sent.push({ data: [...buf.subarray(offsets[i], offsets[i]! + lengths[i]!)], ttl: ttls[i]!, how: 'many' });
        return n;
      },
      close: () => undefined,
    };
  }
}

/** A UDP NAT on a batching host, the guest known on the link. */
function batchingSetup() {
  const env = makeStack({ ipv6: undefined });
  const host = new BatchingUdp();
  const nat = new UdpNat(env.stack, host);
  env.stack.route({ beyond: (p) => nat.output(4, p, (p[0]! & 15) * 4, p[8]!) });
  env.inject(arpRequest(GW_IP));
  return { env, host, nat };
}

t.test('a batch of guest datagrams leaves with one sendmmsg per socket, in order, at the end of the batch', async (t) => {
  const { env, host, nat } = batchingSetup();
  for (let i = 0; i < 5; i++) {
    env.inject(udpFrame(40000, 53, Uint8Array.of(i), { dst: FAR, ttl: 64 }));
    if (i < 3) env.inject(udpFrame(40001, 53, Uint8Array.of(100 + i, 7), { dst: FAR, ttl: 10 }));
  }
  t.same(
    host.sockets.map((s) => s.sent.length),
    [0, 0],
    'nothing sent during the batch',
  );
  await Promise.resolve(); // the batch ends: the scheduled flush runs
  t.same(
    host.sockets.map((s) => s.calls),
    [[5], [3]],
    'one call per socket',
  );
  t.same(
    host.sockets[0]!.sent.map((d) => d.data[0]),
    [0, 1, 2, 3, 4],
    'first flow, in order',
  );
  t.same(
    host.sockets[1]!.sent.map((d) => d.data),
    [
      [100, 7],
      [101, 7],
      [102, 7],
    ],
    'second flow, in order',
  );
  t.same([...new Set(host.sockets[0]!.sent.map((d) => d.ttl))], [63], 'TTL - 1 on each');
  t.same([...new Set(host.sockets[1]!.sent.map((d) => d.ttl))], [9]);
  t.equal(nat.stats.sendBatches, 2);
  t.equal(nat.stats.datagramsOut, 8);
});

t.test('a datagram the batch could not send goes alone; its error reaches the guest; the rest follow', async (t) => {
  const { env, host, nat } = batchingSetup();
  env.link.take();
  host.accept = 2;
  for (let i = 0; i < 6; i++) env.inject(udpFrame(40000, 53, Uint8Array.of(i), { dst: FAR }));
  host.sockets[0]!.failOne = -101; // ENETUNREACH for what is sent alone
  nat.flushSends();
  const s = host.sockets[0]!;
  t.same(
    s.sent.map((d) => [d.data[0], d.how]),
    [
      [0, 'many'],
      [1, 'many'],
      [3, 'many'],
      [4, 'many'],
    ],
    'the refused ones (2, 5) went alone and failed; the others were sent',
  );
  const errors = env.link.take().map((f) => new Icmpv4Packet().at(f, 34, f.length - 34));
  t.same(
    errors.map((e) => [e.type, e.code]),
    [
      [3, 0],
      [3, 0],
    ],
    'network unreachable for each refused datagram',
  );
  t.same(s.calls, [6, 3], 'the batch resumed after each refused datagram');
});

t.test('answers received in place (landing): the frame is built around them, nothing copied', async (t) => {
  const { inject, host, link } = setup();
  inject(udpFrame(40000, 53, Uint8Array.of(1), { dst: FAR }));
  const events = host.sockets[0]!.events;
  const land = events.landing!;
  t.ok(land !== undefined, 'the NAT says where datagrams should land');
  land.set([7, 8, 9, 10], 0);
  events.datagram(land.subarray(0, 4)); // as the host delivers it: already in place
  const [r] = link.take();
  const ip = new Ipv4Packet().at(r!, 14, r!.length - 14);
  const udp = new UdpDatagram().at(r!, ip.payloadOffset, ip.payloadLength);
  t.same([...r!.subarray(udp.payloadOffset)], [7, 8, 9, 10], 'the payload');
  t.equal(udp.dstPort, 40000);
  t.ok(udp.verifyChecksumV4(ip.src, ip.dst), 'the checksum covers it');
  events.datagram(Uint8Array.of(5, 6)); // from elsewhere: copied into place
  const [r2] = link.take();
  t.same([...r2!.subarray(r2!.length - 2)], [5, 6]);
});

t.test('describeFlows: each flow, its ends (the gateway as the host loopback), idle time', async (t) => {
  const { inject, nat, clock } = setup();
  inject(udpFrame(40000, 53, Uint8Array.of(1), { dst: FAR }));
  inject(udpFrame(40001, 7, Uint8Array.of(1)));
  clock.advance(700);
  const flows = nat.describeFlows(clock.now());
  t.match(flows, [
    { proto: 'udp', family: 4, direction: 'outbound', guestPort: 40000, remotePort: 53, hostPort: 53, state: 'active', idleMs: 700 },
    { proto: 'udp', family: 4, direction: 'outbound', guestPort: 40001, remotePort: 7, hostPort: 7, idleMs: 700 },
  ]);
  t.same([...flows[0]!.guest], [10, 0, 2, 15]);
  t.same([...flows[0]!.remote, ...flows[0]!.host!], [192, 0, 2, 9, 192, 0, 2, 9]);
  t.same([...flows[1]!.remote, ...flows[1]!.host!], [10, 0, 2, 2, 127, 0, 0, 1], 'the gateway, as the host loopback');
});
