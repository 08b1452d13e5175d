// The echo proxy against a fake host: identifier mapping, TTL minus one, real replies only, errors
// from the reporting hop quoting the guest's request, gateway mapped to loopback, no socket → no
// reply and one warning.
import t from 'tap';
import { silentLog } from '../../src/iface/log.js';
import type { EchoSocketEvents, HostNet } from '../../src/nat/host.js';
import { EchoProxy } from '../../src/nat/echo-proxy.js';
import { Fence } from '../../src/nat/fence.js';
import { ErrOrigin, Errno } from '../../src/nat/icmp-errors.js';
import { Icmpv4Packet, Ipv4Packet, bytesEqual, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_IP, GUEST_MAC, GW_IP, arpRequest, echoRequest } from '../support/packets.js';

interface Sent {
  family: 4 | 6;
  dst: number[];
  seq: number;
  data: number[];
  ttl: number;
}

class FakeHost implements HostNet {
  echoMode: 'ping' | 'raw' | 'none' = 'ping';
  sent: Sent[] = [];
  sockets: { family: 4 | 6; events: EchoSocketEvents; closed: boolean }[] = [];
  openEcho(family: 4 | 6, events: EchoSocketEvents) {
    if (this.echoMode === 'none') throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    const s = { family, events, closed: false };
    this.sockets.push(s);
    return {
      send: (dst: Uint8Array, seq: number, data: Uint8Array, ttl: number) => {
        this.sent.push({ family, dst: [...dst], seq, data: [...data], ttl });
        return 0;
      },
      close: () => void (s.closed = true),
    };
  }
}

const FAR = ipv4(192, 0, 2, 9);
const FAR_BYTES = Uint8Array.of(192, 0, 2, 9);
const ROUTER = Uint8Array.of(198, 51, 100, 1, ...new Array<number>(12).fill(0));

function setup(host = new FakeHost(), warns: string[] = []) {
  const env = makeStack({ ipv6: undefined });
  const proxy = new EchoProxy(env.stack, host, { log: { ...silentLog, warn: (_o: object, m?: string) => void warns.push(m ?? '') } });
  env.stack.route({ echoHandler: proxy.handle });
  // The guest is known on the link (its ARP request), so replies go out at once.
  env.inject(arpRequest(GW_IP));
  return { ...env, proxy, host };
}

t.test('requests leave with TTL - 1; replies come back with the guest identifier', async (t) => {
  const { inject, host, link } = setup();
  const data = Uint8Array.from({ length: 56 }, (_, i) => i);
  t.same(inject(echoRequest(0x1111, 1, data, { dst: FAR, ttl: 64 })), [], 'nothing faked');
  t.same(host.sent, [{ family: 4, dst: [192, 0, 2, 9], seq: 1, data: [...data], ttl: 63 }]);
  host.sockets[0]!.events.reply(FAR_BYTES, 1, data, 60);
  const [r] = link.take();
  t.ok(r, 'reply delivered');
  t.ok(bytesEqual(r!, 0, GUEST_MAC, 0, 6));
  const ip = new Ipv4Packet().at(r!, 14, r!.length - 14);
  t.equal(ip.src, FAR);
  t.equal(ip.dst, GUEST_IP);
  t.equal(ip.ttl, 59, 'one hop older');
  t.ok(ip.verifyChecksum());
  const icmp = new Icmpv4Packet().at(r!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 0);
  t.equal(icmp.ident, 0x1111, "the guest's identifier");
  t.equal(icmp.seq, 1);
  t.ok(icmp.verifyChecksum());
  t.same(r!.subarray(icmp.payloadOffset), data);
  inject(echoRequest(0x1111, 2, data, { dst: FAR }));
  inject(echoRequest(0x2222, 1, data, { dst: FAR }));
  t.equal(host.sockets.length, 2, 'one socket per guest identifier');
});

t.test('time exceeded from a router comes from that router, quoting the request', async (t) => {
  const { inject, host, link } = setup();
  inject(echoRequest(0x3333, 7, new Uint8Array(32), { dst: FAR, ttl: 2 }));
  t.equal(host.sent[0]!.ttl, 1);
  host.sockets[0]!.events.error(
    { origin: ErrOrigin.ICMP, type: 11, code: 0, errno: 113, info: 0, offender: ROUTER, offenderValid: true },
    7,
    new Uint8Array(32),
  );
  const [e] = link.take();
  const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
  t.equal(ip.src, ipv4(198, 51, 100, 1), 'from the reporting hop');
  const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 11);
  t.ok(icmp.verifyChecksum());
  const quoted = new Ipv4Packet().at(e!, icmp.payloadOffset, icmp.payloadLength);
  t.equal(quoted.src, GUEST_IP);
  t.equal(quoted.dst, FAR);
  const qicmp = new Icmpv4Packet().at(e!, icmp.payloadOffset + 20, 8);
  t.equal(qicmp.ident, 0x3333, 'quoted identifier is the guest one (traceroute -I matches on it)');
  t.equal(qicmp.seq, 7);
});

t.test('the host failing to resolve the next hop: host unreachable from the gateway', async (t) => {
  const { inject, host, link } = setup();
  inject(echoRequest(1, 1, new Uint8Array(8), { dst: FAR }));
  host.sockets[0]!.events.error(
    { origin: ErrOrigin.LOCAL, type: 0, code: 0, errno: Errno.EHOSTUNREACH, info: 0, offender: new Uint8Array(16), offenderValid: false },
    1,
    new Uint8Array(8),
  );
  const [e] = link.take();
  const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
  t.equal(ip.src, GW_IP);
  const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
  t.equal(icmp.type, 3);
  t.equal(icmp.code, 1);
});

t.test('the gateway maps to the host loopback; replies come from the gateway address', async (t) => {
  const { inject, host, link } = setup();
  t.same(inject(echoRequest(5, 1, new Uint8Array(4))), [], 'not answered by the stack itself');
  t.same(host.sent[0]!.dst, [127, 0, 0, 1]);
  host.sockets[0]!.events.reply(Uint8Array.of(127, 0, 0, 1), 1, new Uint8Array(4), 64);
  const [r] = link.take();
  t.equal(new Ipv4Packet().at(r!, 14, r!.length - 14).src, GW_IP);
});

t.test('no echo socket: no reply, one warning naming the fix', async (t) => {
  const host = new FakeHost();
  host.echoMode = 'none';
  const warns: string[] = [];
  const { inject, proxy } = setup(host, warns);
  t.same(inject(echoRequest(1, 1, new Uint8Array(4), { dst: FAR })), []);
  t.same(inject(echoRequest(1, 2, new Uint8Array(4), { dst: FAR })), []);
  t.equal(warns.length, 1, 'warned once');
  t.match(warns[0], /ping_group_range/);
  t.equal(proxy.stats.unanswerable, 2);
});

t.test('flows expire when idle and the table is bounded', async (t) => {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeHost();
  const proxy = new EchoProxy(env.stack, host, { maxFlows: 3, idleMs: 1000 });
  env.stack.route({ echoHandler: proxy.handle });
  for (let id = 1; id <= 5; id++) env.inject(echoRequest(id, 1, new Uint8Array(4), { dst: FAR }));
  t.equal(proxy.flowCount, 3, 'bounded');
  t.equal(host.sockets.filter((s) => s.closed).length, 2, 'evicted sockets closed');
  env.clock.advance(1000);
  proxy.poll(env.clock.now());
  t.equal(proxy.flowCount, 0, 'idle flows expired');
});

t.test('IPv6: requests leave with hop limit - 1; replies and errors come back', async (t) => {
  const { EtherType, IpProtocol, Icmpv6Packet, Ipv6Packet, emitEthernetHeader, emitIcmpv6, emitIpv6Header, icmpv6EchoRest, parseIpv6 } =
    await import('../../src/wire/index.js');
  const env = makeStack({}, { random: () => 0.5 });
  const host = new FakeHost();
  const proxy = new EchoProxy(env.stack, host);
  env.stack.route({ echoHandler: proxy.handle });
  env.stack.linkUp();
  for (let i = 0; i < 6; i++) {
    env.clock.advance(500);
    env.stack.poll();
  }
  env.link.take();
  const guest = parseIpv6('fec0::5054:ff:fe12:3456')!;
  const far = parseIpv6('2001:db8::9')!;
  const f = new Uint8Array(14 + 40 + 8 + 16);
  emitEthernetHeader(f, 0, { dst: Uint8Array.of(0x52, 0x55, 0x0a, 0, 2, 2), src: GUEST_MAC, etherType: EtherType.IPV6 });
  emitIcmpv6(f, 54, { type: 128, code: 0, rest: icmpv6EchoRest(0x4444, 3), payloadLength: 16 }, guest, far);
  emitIpv6Header(f, 14, { src: guest, dst: far, nextHeader: IpProtocol.ICMPV6, hopLimit: 64, payloadLength: 24 });
  t.same(env.inject(f), [], 'not answered by us');
  t.equal(host.sent[0]!.ttl, 63);
  t.same(host.sent[0]!.dst, [...far]);
  // The guest must be resolvable: it answers our NS when the reply needs its MAC.
  host.sockets[0]!.events.reply(far, 3, new Uint8Array(16), 50);
  const [ns] = env.link.take();
  t.equal(ns![14 + 40], 135, 'neighbour solicitation for the guest');
  env.stack.ipv6!.neighbors.confirm((await import('../../src/iface/neighbor.js')).ipv6Key(guest, 0), GUEST_MAC, env.clock.now(), {
    solicited: true,
    override: true,
  });
  const [r] = env.link.take();
  const ip = new Ipv6Packet().at(r!, 14, r!.length - 14);
  t.ok(bytesEqual(r!, ip.srcOffset, far, 0, 16) && bytesEqual(r!, ip.dstOffset, guest, 0, 16));
  t.equal(ip.hopLimit, 49);
  const icmp = new Icmpv6Packet().at(r!, 54, r!.length - 54);
  t.equal(icmp.type, 129);
  t.equal(icmp.ident, 0x4444);
  t.ok(icmp.verifyChecksum(r!, ip.srcOffset, r!, ip.dstOffset));
  const router6 = parseIpv6('2001:db8:ffff::1')!;
  host.sockets[0]!.events.error(
    { origin: ErrOrigin.ICMP6, type: 3, code: 0, errno: 113, info: 0, offender: router6, offenderValid: true },
    3,
    new Uint8Array(16),
  );
  const [e] = env.link.take();
  const eip = new Ipv6Packet().at(e!, 14, e!.length - 14);
  t.ok(bytesEqual(e!, eip.srcOffset, router6, 0, 16), 'from the reporting hop');
  const eicmp = new Icmpv6Packet().at(e!, 54, e!.length - 54);
  t.equal(eicmp.type, 3);
  t.ok(eicmp.verifyChecksum(e!, eip.srcOffset, e!, eip.dstOffset));
  t.equal(new Icmpv6Packet().at(e!, 54 + 8 + 40, 8).ident, 0x4444, 'quoted request carries the guest identifier');
});

t.test('pings to fenced destinations get admin prohibited; none leaves the host', async (t) => {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeHost();
  const fence = new Fence();
  const proxy = new EchoProxy(env.stack, host, { fence });
  env.stack.route({ echoHandler: proxy.handle });
  env.inject(arpRequest(GW_IP));
  const [e] = env.inject(echoRequest(1, 1, Uint8Array.of(1, 2), { dst: ipv4(127, 0, 0, 1) }));
  const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
  const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
  t.same([ip.src, icmp.type, icmp.code], [GW_IP, 3, 13]);
  t.same(host.sent, [], 'not sent');
  env.inject(echoRequest(1, 2, Uint8Array.of(1, 2), { dst: GW_IP }));
  t.same(host.sent[0]?.dst, [127, 0, 0, 1], 'the gateway still maps to loopback');
});

t.test('describeFlows: one per guest identifier and destination, the gateway as the host loopback', async (t) => {
  const { inject, proxy, clock } = setup();
  inject(echoRequest(0x1111, 1, Uint8Array.of(1), { dst: FAR }));
  inject(echoRequest(0x2222, 1, Uint8Array.of(1), { dst: GW_IP }));
  clock.advance(250);
  const flows = proxy.describeFlows(clock.now());
  t.match(flows, [
    { proto: 'icmp', family: 4, direction: 'outbound', guestPort: 0x1111, state: 'active', idleMs: 250 },
    { proto: 'icmp', family: 4, direction: 'outbound', guestPort: 0x2222, idleMs: 250 },
  ]);
  t.same([...flows[0]!.remote, ...flows[0]!.host!], [...FAR_BYTES, ...FAR_BYTES]);
  t.same([...flows[1]!.remote, ...flows[1]!.host!], [10, 0, 2, 2, 127, 0, 0, 1], 'the gateway, as the host loopback');
});
