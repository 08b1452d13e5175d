// DNS forwarding against a fake host: a query leaves with our identifier, the answer comes back
// with the guest's, a silent resolver is skipped for the next, and only the DNS address answers.
import t from 'tap';
import type { HostUdp, UdpSocketEvents } from '../../src/nat/host.js';
import { DnsForwarder } from '../../src/nat/dns.js';
import { Ipv4Packet, UdpDatagram, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_IP, arpRequest, udpFrame } from '../support/packets.js';

class FakeUdp implements HostUdp {
  sockets: { dst: number[]; events: UdpSocketEvents; sent: Uint8Array[] }[] = [];
  openUdp(_f: 4 | 6, dst: Uint8Array, _port: number, events: UdpSocketEvents) {
    const s = { dst: [...dst], events, sent: [] as Uint8Array[] };
    this.sockets.push(s);
    return { send: (d: Uint8Array) => (s.sent.push(d.slice()), 0), close: () => undefined };
  }
}

const query = (id: number) => Uint8Array.of(id >> 8, id & 0xff, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1);

function setup() {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeUdp();
  const dns = new DnsForwarder(
    env.stack,
    host,
    [
      { family: 4, addr: Uint8Array.of(192, 0, 2, 53) },
      { family: 4, addr: Uint8Array.of(198, 51, 100, 53) },
    ],
    { timeoutMs: 2000 },
    () => 0.5,
  );
  dns.attach();
  env.inject(arpRequest(ipv4(10, 0, 2, 2)));
  return { ...env, dns, host };
}

t.test('query out with our id, answer back with the guest id', async (t) => {
  const { inject, host, link } = setup();
  t.same(inject(udpFrame(5353, 53, query(0x1234), { dst: ipv4(10, 0, 2, 3) })), []);
  t.equal(host.sockets.length, 1);
  t.same(host.sockets[0]!.dst, [192, 0, 2, 53]);
  const sent = host.sockets[0]!.sent[0]!;
  const ourId = (sent[0]! << 8) | sent[1]!;
  const answer = sent.slice();
  answer[2]! |= 0x80;
  host.sockets[0]!.events.datagram(answer);
  const [r] = link.take();
  const ip = new Ipv4Packet().at(r!, 14, r!.length - 14);
  t.equal(ip.src, ipv4(10, 0, 2, 3), 'from the DNS address');
  t.equal(ip.dst, GUEST_IP);
  const udp = new UdpDatagram().at(r!, ip.payloadOffset, ip.payloadLength);
  t.equal(udp.srcPort, 53);
  t.equal(udp.dstPort, 5353);
  t.equal((r![udp.payloadOffset]! << 8) | r![udp.payloadOffset + 1]!, 0x1234, "the guest's identifier");
  t.ok(ourId >= 0 && ourId <= 0xffff, 'our identifier on the wire');
  host.sockets[0]!.events.datagram(answer);
  t.same(link.take(), [], 'a second answer to the same query is not forwarded');
});

t.test('a silent resolver is skipped; the last one gives up', async (t) => {
  const { inject, host, dns, clock } = setup();
  inject(udpFrame(5353, 53, query(7), { dst: ipv4(10, 0, 2, 3) }));
  clock.advance(2000);
  dns.poll(clock.now());
  t.equal(host.sockets.length, 2, 'retried on the next resolver');
  t.same(host.sockets[1]!.dst, [198, 51, 100, 53]);
  clock.advance(2000);
  dns.poll(clock.now());
  t.equal(dns.stats.timeouts, 1);
  t.equal(dns.pollAt(), Infinity, 'nothing pending');
});

t.test('port 53 of the gateway is not a resolver; responses from the guest are not forwarded', async (t) => {
  const { inject, host } = setup();
  const [err] = inject(udpFrame(5353, 53, query(1)));
  t.ok(err && err[34] === 3, 'to 10.0.2.2:53: port unreachable');
  const response = query(2);
  response[2] = 0x81;
  inject(udpFrame(5353, 53, response, { dst: ipv4(10, 0, 2, 3) }));
  t.equal(host.sockets.length, 0, 'nothing forwarded');
});

t.test('a query larger than 4 KiB is not forwarded (each pending query holds a copy)', async (t) => {
  const { inject, host, dns } = setup();
  const big = new Uint8Array(5000);
  big.set(query(0x4242));
  inject(udpFrame(5353, 53, big, { dst: ipv4(10, 0, 2, 3) }));
  t.equal(host.sockets.length, 0, 'nothing sent');
  t.equal(dns.stats.dropped, 1);
});
