// TCP NAT against a fake host: the SYN waits for the host connect; connected → SYN-ACK, refused →
// RST, ICMP errors → the same error quoting the SYN, silence → silence; data both ways with
// backpressure; half-close each way; RSTs passed on; the gateway reaches loopback; port forwards
// open toward the guest.
import t from 'tap';
import type { Test } from 'tap';
import type { AcceptedTcp, HostTcp, TcpListener, TcpSocket, TcpSocketEvents } from '../../src/nat/host.js';
import { ErrOrigin } from '../../src/nat/icmp-errors.js';
import { TcpNat } from '../../src/nat/tcp-nat.js';
import { Icmpv4Packet, IpProtocol, Ipv4Packet, TcpFlags, TcpOptions, TcpSegment, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { DNS_IP, GUEST_IP, GW_IP, arpRequest, tcpFrame } from '../support/packets.js';

const FAR = ipv4(192, 0, 2, 9);
const EAGAIN = 11;

class FakeSocket implements TcpSocket {
  readonly written: number[] = [];
  /** What the host peer sends us, read by read(). */
  inbox: number[] = [];
  eof = false;
  readError = 0;
  /** Bytes write() accepts before answering -EAGAIN. */
  room = Infinity;
  shut = false;
  closed: 'no' | 'fin' | 'rst' = 'no';
  watching = { read: false, write: false };
  constructor(public events: TcpSocketEvents) {}
  read(buf: Uint8Array, off: number, len: number): number {
    if (this.inbox.length > 0) {
      const n = Math.min(len, this.inbox.length);
      buf.set(this.inbox.splice(0, n), off);
      return n;
    }
    if (this.readError) return -this.readError;
    return this.eof ? 0 : -EAGAIN;
  }
  write(buf: Uint8Array, off: number, len: number): number {
    const n = Math.min(len, this.room);
    if (n === 0) return -EAGAIN;
    this.room -= n;
    for (let i = 0; i < n; i++) this.written.push(buf[off + i]!);
    return n;
  }
  shutdownWrite(): void {
    this.shut = true;
  }
  watch(read: boolean, write: boolean): void {
    this.watching = { read, write };
  }
  close(reset: boolean): void {
    this.closed = reset ? 'rst' : 'fin';
  }
}

class FakeTcp implements HostTcp {
  connects: { family: 4 | 6; dst: number[]; port: number; ttl: number; socket: FakeSocket }[] = [];
  listens: { family: 4 | 6; port: number; accepted: (c: AcceptedTcp) => void }[] = [];
  connectTcp(family: 4 | 6, dst: Uint8Array, port: number, ttl: number, events: TcpSocketEvents): TcpSocket {
    const socket = new FakeSocket(events);
    this.connects.push({ family, dst: [...dst], port, ttl, socket });
    return socket;
  }
  listenTcp(family: 4 | 6, _addr: Uint8Array | null, port: number, accepted: (c: AcceptedTcp) => void): TcpListener {
    this.listens.push({ family, port, accepted });
    return { close: () => undefined };
  }
}

interface Seen {
  src: number;
  dst: number;
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  flags: number;
  window: number;
  mss: number;
  data: number[];
}

/** Parses the TCP segments among the frames (checking checksums). */
function segments(t: Test, frames: Uint8Array[]): Seen[] {
  const out: Seen[] = [];
  for (const f of frames) {
    if (f[12] !== 0x08 || f[13] !== 0x00) continue;
    const ip = new Ipv4Packet().at(f, 14, f.length - 14);
    if (ip.protocol !== IpProtocol.TCP) continue;
    const s = new TcpSegment().at(f, ip.payloadOffset, ip.payloadLength);
    t.ok(s.verifyChecksumV4(ip.src, ip.dst), 'segment checksum');
    const o = new TcpOptions();
    s.parseOptions(o);
    out.push({
      src: ip.src,
      dst: ip.dst,
      srcPort: s.srcPort,
      dstPort: s.dstPort,
      seq: s.seq,
      ack: s.ack,
      flags: s.flags,
      window: s.window,
      mss: o.mss,
      data: [...f.subarray(s.payloadOffset, s.payloadOffset + s.payloadLength)],
    });
  }
  return out;
}

function setup(opts: ConstructorParameters<typeof TcpNat>[2] = {}) {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeTcp();
  const nat = new TcpNat(env.stack, host, { random: () => 0.5, guestAddress: () => Uint8Array.of(10, 0, 2, 15), ...opts });
  env.stack.tcpInput = (family, p, off, ttl) => nat.input(family, p, off, ttl);
  env.stack.ipv4.onUnreachable = (tag) => nat.unreachable(tag);
  env.inject(arpRequest(GW_IP)); // the guest is known on the link
  const send = (frame: Uint8Array): Uint8Array[] => {
    env.stack.receive(frame, { checksumPartial: false });
    nat.flush();
    return env.link.take();
  };
  return { ...env, nat, host, send };
}

const { SYN, ACK, FIN, RST, PSH } = TcpFlags;
const GUEST_ISN = 1000;

/** Opens a connection from the guest to FAR:80 and completes the handshake. */
function established(env: ReturnType<typeof setup>, port = 80) {
  const { send, host, link, nat } = env;
  send(tcpFrame(40000, port, GUEST_ISN, 0, SYN, undefined, { dst: FAR, mss: 1460 }));
  const c = host.connects.at(-1)!;
  c.socket.events.connected();
  const [synAck] = segments(t, link.take());
  send(tcpFrame(40000, port, GUEST_ISN + 1, synAck!.seq + 1, ACK, undefined, { dst: FAR }));
  nat.flush();
  return { socket: c.socket, iss: synAck!.seq };
}

t.test('the SYN waits for the host connect; connected gives SYN-ACK', async (t) => {
  const env = setup();
  const { send, host, link } = env;
  t.same(send(tcpFrame(40000, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR, ttl: 9, mss: 1460 })), [], 'nothing before the host answers');
  t.equal(host.connects.length, 1);
  t.same(host.connects[0]!.dst, [192, 0, 2, 9]);
  t.equal(host.connects[0]!.port, 80);
  t.equal(host.connects[0]!.ttl, 8, 'the host SYN carries TTL - 1');
  t.same(send(tcpFrame(40000, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR, mss: 1460 })), [], 'a retransmitted SYN waits too');
  t.equal(host.connects.length, 1, 'one host connect');
  host.connects[0]!.socket.events.connected();
  const [sa] = segments(t, link.take());
  t.ok(sa);
  t.equal(sa!.flags, SYN | ACK);
  t.equal(sa!.src, FAR, 'from the address the guest called');
  t.equal(sa!.dst, GUEST_IP);
  t.equal(sa!.srcPort, 80);
  t.equal(sa!.dstPort, 40000);
  t.equal(sa!.ack, GUEST_ISN + 1);
  t.ok(sa!.mss > 0, 'announces an MSS');
});

t.test('refused: RST at once; ICMP errors quote the SYN; local failure: unreachable from the gateway; timeout: silence', async (t) => {
  {
    const { send, host, link, nat } = setup();
    send(tcpFrame(40000, 9, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
    host.connects[0]!.socket.events.connectFailed(111, undefined);
    const [r] = segments(t, link.take());
    t.equal(r!.flags, RST | ACK, 'refused → RST');
    t.equal(r!.ack, GUEST_ISN + 1);
    t.equal(r!.seq, 0);
    t.equal(nat.flowCount, 0);
  }
  {
    const { send, host, link } = setup();
    send(tcpFrame(40001, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR, ttl: 3 }));
    const router = Uint8Array.of(198, 51, 100, 7, ...new Array<number>(12).fill(0));
    host.connects[0]!.socket.events.connectFailed(113, { origin: ErrOrigin.ICMP, type: 11, code: 0, errno: 113, info: 0, offender: router, offenderValid: true });
    const [e] = link.take();
    const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
    t.equal(ip.protocol, IpProtocol.ICMP);
    t.equal(ip.src, ipv4(198, 51, 100, 7), 'time exceeded from the router');
    const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
    t.equal(icmp.type, 11);
    const q = new TcpSegment().at(e!, icmp.payloadOffset + 20, 20);
    t.equal(q.srcPort, 40001, 'quotes the guest SYN (traceroute -T matches it)');
    t.equal(q.seq, GUEST_ISN);
  }
  {
    const { send, host, link } = setup();
    send(tcpFrame(40002, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
    host.connects[0]!.socket.events.connectFailed(113, undefined);
    const [e] = link.take();
    const ip = new Ipv4Packet().at(e!, 14, e!.length - 14);
    t.equal(ip.src, GW_IP);
    const icmp = new Icmpv4Packet().at(e!, ip.payloadOffset, ip.payloadLength);
    t.same([icmp.type, icmp.code], [3, 1], 'host unreachable: "No route to host"');
  }
  {
    const { send, host, link, nat } = setup();
    send(tcpFrame(40003, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
    host.connects[0]!.socket.events.connectFailed(110, undefined);
    t.same(link.take(), [], 'silence');
    t.equal(nat.flowCount, 0);
  }
});

t.test('segments for no connection get RSTs; our addresses: gateway → loopback, others refused', async (t) => {
  const { send, host } = setup();
  const [r1] = segments(t, send(tcpFrame(40000, 80, 5, 77, ACK, undefined, { dst: FAR })));
  t.same([r1!.flags, r1!.seq], [RST, 77], 'ACK for nothing → RST with its ack as seq');
  t.same(send(tcpFrame(40000, 80, 5, 77, RST, undefined, { dst: FAR })), [], 'never a RST for a RST');
  send(tcpFrame(40000, 22, GUEST_ISN, 0, SYN, undefined, { dst: GW_IP }));
  t.same(host.connects[0]!.dst, [127, 0, 0, 1], 'the gateway is the host loopback');
  t.equal(host.connects[0]!.ttl, -1, 'with the default TTL');
  const [r2] = segments(t, send(tcpFrame(40000, 80, GUEST_ISN, 0, SYN, undefined, { dst: DNS_IP })));
  t.equal(r2!.flags, RST | ACK, 'the DNS address on port 80: refused');
});

t.test('data both ways, backpressure, half-close each way', async (t) => {
  const env = setup();
  const { send, link, nat } = env;
  const { socket, iss } = established(env);
  // guest → host, straight through
  const acks = segments(t, send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK | PSH, Uint8Array.of(1, 2, 3), { dst: FAR })));
  t.same(socket.written, [1, 2, 3]);
  void acks;
  // the host socket fills: the rest is held and the window shrinks
  socket.room = 2;
  send(tcpFrame(40000, 80, GUEST_ISN + 4, iss + 1, ACK | PSH, Uint8Array.of(4, 5, 6, 7, 8), { dst: FAR }));
  t.same(socket.written, [1, 2, 3, 4, 5]);
  t.ok(socket.watching.write, 'waits for the host socket to drain');
  env.clock.advance(500);
  env.stack.poll();
  nat.poll(env.clock.t);
  const after = segments(t, link.take()).at(-1);
  t.ok(after, 'the data was acknowledged');
  t.equal(after!.ack, GUEST_ISN + 9, 'all 5 bytes acknowledged (3 of them buffered)');
  socket.room = Infinity;
  socket.events.writable();
  t.same(socket.written, [1, 2, 3, 4, 5, 6, 7, 8], 'drained when writable');
  link.take();
  // host → guest
  socket.inbox.push(...Array.from({ length: 3000 }, (_, i) => i & 0xff));
  socket.events.readable();
  const data = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.ok(data.length >= 3, 'cut to the guest MSS (1460)');
  t.ok(data.every((s) => s.data.length <= 1460));
  t.same(
    data.flatMap((s) => s.data),
    Array.from({ length: 3000 }, (_, i) => i & 0xff),
  );
  const last = data.at(-1)!;
  send(tcpFrame(40000, 80, GUEST_ISN + 9, (last.seq + last.data.length) >>> 0, ACK, undefined, { dst: FAR }));
  // the guest half-closes: the host side is shut for writing; data still flows toward the guest
  send(tcpFrame(40000, 80, GUEST_ISN + 9, (last.seq + last.data.length) >>> 0, ACK | FIN, undefined, { dst: FAR }));
  t.ok(socket.shut, 'guest FIN → shutdown(SHUT_WR)');
  socket.inbox.push(9, 9);
  socket.events.readable();
  const more = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.same(more.flatMap((s) => s.data), [9, 9], 'host data after the guest FIN still arrives');
  // the host ends: our FIN
  socket.eof = true;
  socket.events.readable();
  const fin = segments(t, link.take()).find((s) => s.flags & FIN);
  t.ok(fin, 'host EOF → FIN to the guest');
  t.equal(socket.closed, 'fin', 'both directions done: the host socket closes');
  send(tcpFrame(40000, 80, GUEST_ISN + 10, (fin!.seq + 1) >>> 0, ACK, undefined, { dst: FAR }));
  t.equal(nat.flowCount, 0, 'LAST_ACK acknowledged: the flow is gone');
});

t.test('RSTs both ways', async (t) => {
  {
    const env = setup();
    const { socket, iss } = established(env);
    env.send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, RST, undefined, { dst: FAR }));
    t.equal(socket.closed, 'rst', 'guest RST → host RST');
    t.equal(env.nat.flowCount, 0);
  }
  {
    const env = setup();
    const { socket } = established(env);
    socket.readError = 104;
    socket.events.readable();
    const [r] = segments(t, env.link.take());
    t.ok(r && r.flags & RST, 'host reset → RST to the guest');
    t.equal(env.nat.flowCount, 0);
  }
});

t.test('port forward: SYN to the guest, handshake, data, guest RST resets the host side', async (t) => {
  const env = setup();
  const { nat, host, link, send } = env;
  nat.listen([{ family: 4, addr: null, hostPort: 2222, guestPort: 22 }]);
  t.equal(host.listens.length, 1);
  let attached: FakeSocket | undefined;
  host.listens[0]!.accepted({
    family: 4,
    peer: Uint8Array.of(127, 0, 0, 1),
    peerPort: 51000,
    localPort: 2222,
    attach: (events) => (attached = new FakeSocket(events)),
    reject: () => t.fail('rejected'),
  });
  const [syn] = segments(t, link.take());
  t.equal(syn!.flags, SYN);
  t.equal(syn!.dst, GUEST_IP);
  t.equal(syn!.dstPort, 22);
  t.equal(syn!.src, GW_IP, 'a loopback client appears as the gateway');
  t.equal(syn!.srcPort, 51000);
  const [ack] = segments(t, send(tcpFrame(22, 51000, 5000, syn!.seq + 1, SYN | ACK, undefined, { src: GUEST_IP, dst: GW_IP, mss: 1460 })));
  t.equal(ack!.flags & (SYN | ACK), ACK, 'handshake completed');
  send(tcpFrame(22, 51000, 5001, syn!.seq + 1, ACK | PSH, new TextEncoder().encode('SSH-2.0-x\r\n'), { dst: GW_IP }));
  t.equal(Buffer.from(attached!.written).toString(), 'SSH-2.0-x\r\n', 'guest data reaches the host client');
  send(tcpFrame(22, 51000, 5012, syn!.seq + 1, RST, undefined, { dst: GW_IP }));
  t.equal(attached!.closed, 'rst', 'guest RST → host RST');
});

t.test('port forward to a guest that does not answer ARP: the host connection closes', async (t) => {
  const env = makeStack({ ipv6: undefined });
  const host = new FakeTcp();
  const nat = new TcpNat(env.stack, host, { guestAddress: () => Uint8Array.of(10, 0, 2, 99) });
  env.stack.ipv4.onUnreachable = (tag) => nat.unreachable(tag);
  nat.listen([{ family: 4, addr: null, hostPort: 2222, guestPort: 22 }]);
  let attached: FakeSocket | undefined;
  host.listens[0]!.accepted({ family: 4, peer: Uint8Array.of(127, 0, 0, 1), peerPort: 51000, localPort: 2222, attach: (e) => (attached = new FakeSocket(e)), reject: () => undefined });
  for (let i = 0; i < 10; i++) {
    env.clock.advance(1000);
    env.stack.poll();
  }
  t.equal(attached!.closed, 'rst', 'resolution failed: host connection closed');
  t.equal(nat.flowCount, 0);
});

t.test('no guest receive buffers: data waits, and goes when the link has room', async (t) => {
  let wanted = 0;
  const env = setup({ wantRoom: () => wanted++ });
  const { socket } = established(env);
  env.link.take();
  env.link.room = false;
  socket.inbox.push(...new Array<number>(3000).fill(4));
  socket.events.readable();
  t.same(segments(t, env.link.take()).filter((s) => s.data.length > 0), [], 'nothing while the guest has no buffers');
  t.ok(env.nat.wantsRoom && wanted > 0, 'the link is asked for room');
  env.link.room = true;
  env.nat.linkRoom();
  const data = segments(t, env.link.take()).filter((s) => s.data.length > 0);
  t.equal(data.reduce((n, s) => n + s.data.length, 0), 3000, 'all of it once there is room');
});
