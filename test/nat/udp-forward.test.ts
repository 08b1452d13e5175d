// UDP port forwards against a fake host: a client's datagram reaches the guest port from the
// client (the gateway for a loopback client); the guest's answer goes back to the client from the
// bound socket; sessions expire when idle.
import t from 'tap';
import type { BoundUdpEvents, BoundUdpSocket, HostUdpListen } from '../../src/nat/host.js';
import { UdpForwarder } from '../../src/nat/udp-forward.js';
import { IpProtocol, Ipv4Packet, UdpDatagram, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_IP, GW_IP, arpRequest, udpFrame } from '../support/packets.js';

class FakeListen implements HostUdpListen {
  bound: { family: 4 | 6; port: number; events: BoundUdpEvents; sent: { data: number[]; addr: number[]; port: number }[] }[] = [];
  bindUdp(family: 4 | 6, _addr: Uint8Array | null, port: number, events: BoundUdpEvents): BoundUdpSocket {
    const b = { family, port, events, sent: [] as { data: number[]; addr: number[]; port: number }[] };
    this.bound.push(b);
    return {
      sendTo: (data, addr, p) => {
        b.sent.push({ data: [...data], addr: [...addr], port: p });
        return data.length;
      },
      close: () => undefined,
    };
  }
}

function setup() {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeListen();
  const fwd = new UdpForwarder(env.stack, host, { guestAddress: () => Uint8Array.of(10, 0, 2, 15), idleMs: 1000 });
  env.stack.route({ unservedUdp: (family, p, off) => fwd.fromGuest(family, p, off) });
  env.stack.route({ beyond: (p) => void fwd.fromGuest(4, p, 20) });
  env.inject(arpRequest(GW_IP));
  fwd.listen([{ family: 4, addr: null, hostPort: 5353, guestPort: 53 }]);
  return { ...env, host, fwd };
}

t.test('client → guest port, and the answer back to the client', async (t) => {
  const { host, link, inject, fwd } = setup();
  host.bound[0]!.events.datagram(Uint8Array.of(1, 2), Uint8Array.of(127, 0, 0, 1), 40000);
  const [f] = link.take();
  const ip = new Ipv4Packet().at(f!, 14, f!.length - 14);
  t.equal(ip.protocol, IpProtocol.UDP);
  t.equal(ip.src, GW_IP, 'a loopback client appears as the gateway');
  t.equal(ip.dst, GUEST_IP);
  const udp = new UdpDatagram().at(f!, ip.payloadOffset, ip.payloadLength);
  t.same([udp.srcPort, udp.dstPort], [40000, 53]);
  t.ok(udp.verifyChecksumV4(ip.src, ip.dst));
  inject(udpFrame(53, 40000, Uint8Array.of(7, 7, 7), { dst: GW_IP }));
  t.same(host.bound[0]!.sent, [{ data: [7, 7, 7], addr: [127, 0, 0, 1], port: 40000 }], 'answer to the client');
  // a remote client keeps its address
  host.bound[0]!.events.datagram(Uint8Array.of(3), Uint8Array.of(192, 0, 2, 50), 41000);
  const [g] = link.take();
  t.equal(new Ipv4Packet().at(g!, 14, g!.length - 14).src, ipv4(192, 0, 2, 50));
  inject(udpFrame(53, 41000, Uint8Array.of(8), { dst: ipv4(192, 0, 2, 50) }));
  t.same(host.bound[0]!.sent.at(-1), { data: [8], addr: [192, 0, 2, 50], port: 41000 });
  t.equal(fwd.sessionCount, 2);
});

t.test('sessions expire when idle; unrelated datagrams are not taken', async (t) => {
  const { host, clock, fwd, link } = setup();
  host.bound[0]!.events.datagram(Uint8Array.of(1), Uint8Array.of(127, 0, 0, 1), 40000);
  link.take();
  t.equal(fwd.sessionCount, 1);
  const p = udpFrame(53, 40001, Uint8Array.of(1), { dst: GW_IP }).subarray(14);
  t.notOk(fwd.fromGuest(4, p, 20), 'another port: not a session');
  clock.advance(1500);
  fwd.poll(clock.t);
  t.equal(fwd.sessionCount, 0);
});

t.test('stopListening: that socket closed and its sessions forgotten; the other forwards go on', async (t) => {
  const { host, fwd, link, inject } = setup();
  let closed = 0;
  const base = host.bindUdp.bind(host);
  host.bindUdp = (family, addr, port, events) => {
    const s = base(family, addr, port, events);
    return { sendTo: (data, to, p) => s.sendTo(data, to, p), close: () => void closed++ };
  };
  const [second] = fwd.listen([{ family: 4, addr: null, hostPort: 6000, guestPort: 60 }]);
  host.bound[0]!.events.datagram(Uint8Array.of(1), Uint8Array.of(127, 0, 0, 1), 40000);
  host.bound[1]!.events.datagram(Uint8Array.of(2), Uint8Array.of(127, 0, 0, 1), 40001);
  link.take();
  t.equal(fwd.sessionCount, 2);
  t.match(fwd.describeFlows(0), [
    { proto: 'udp-forward', direction: 'inbound', guestPort: 53, hostPort: 40000 },
    { proto: 'udp-forward', direction: 'inbound', guestPort: 60, hostPort: 40001 },
  ]);
  fwd.stopListening(second!);
  t.equal(closed, 1, 'its socket closed');
  t.equal(fwd.sessionCount, 1, 'its session forgotten');
  fwd.stopListening(second!);
  t.equal(closed, 1, 'a second stop closes nothing');
  // The first forward (slot 0) still works; its index did not move.
  host.bound[0]!.events.datagram(Uint8Array.of(3), Uint8Array.of(127, 0, 0, 1), 40000);
  t.equal(link.take().length, 1, 'the first forward still reaches the guest');
  inject(udpFrame(53, 40000, Uint8Array.of(9), { dst: GW_IP }));
  t.same(host.bound[0]!.sent.at(-1), { data: [9], addr: [127, 0, 0, 1], port: 40000 }, 'and answers go back');
  fwd.closeAll();
  t.equal(closed, 1, 'closeAll does not close the stopped socket again');
});
