// TCP NAT against a fake host: the SYN waits for the host connect; connected → SYN-ACK, refused →
// RST, ICMP errors → the same error quoting the SYN, silence → silence; data both ways with
// backpressure; half-close each way; RSTs passed on; the gateway reaches loopback; port forwards
// open toward the guest.
import { FlowTable } from '../../src/nat/flow-table.js';
import t from 'tap';
import { viewAt } from '../../src/wire/bytes.js';
import type { Test } from 'tap';
import type { AcceptedTcp, HostTcp, StreamQueue, TcpListener, TcpSocket, TcpSocketEvents } from '../../src/nat/host.js';
import { ErrOrigin } from '../../src/nat/icmp-errors.js';
import { Fence } from '../../src/nat/fence.js';
import { TCP_FLOW_COST, TcpNat } from '../../src/nat/tcp-nat.js';
import { SETTLE_BYTES } from '../../src/nat/stream-buffer.js';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { Icmpv4Packet, IpProtocol, Ipv4Packet, TcpFlags, TcpOptions, TcpSegment, completeChecksum, ipv4, pseudoHeaderSumV4 } from '../../src/wire/index.js';
import { FrameDevice, InPlaceFrameDevice, makeStack } from '../support/frame-device.js';
import { DNS_IP, GUEST_IP, GW_IP, arpRequest, tcpFrame } from '../support/packets.js';

const FAR = ipv4(192, 0, 2, 9);
const EAGAIN = 11;

class FakeSocket implements TcpSocket {
  readonly written: number[] = [];
  /** write() calls that took something. */
  writes = 0;
  /** What the host peer sends us, read by read(). */
  inbox: number[] = [];
  eof = false;
  readError = 0;
  /** Bytes write() accepts before answering -EAGAIN. */
  room = Infinity;
  shut = false;
  closed: 'no' | 'fin' | 'rst' = 'no';
  watching = { read: false, write: false };
  /** The receive queue as the connection's send buffer (FakeTcp.streamQueues): `inbox` is the
   *  queue, peeked at offsets and discarded from the head. */
  queue: StreamQueue | undefined;
  peeks: { offset: number; len: number }[] = [];
  discarded = 0;
  /** How often the queue's length was asked for (SIOCINQ, a system call). */
  looks = 0;
  constructor(
    public events: TcpSocketEvents,
    streams = false,
  ) {
    if (!streams) return;
    this.queue = {
      queued: () => {
        this.looks++;
        return this.inbox.length;
      },
      peek: (offset, dst, dstOff, len) => {
        this.peeks.push({ offset, len });
        const n = Math.max(0, Math.min(len, this.inbox.length - offset));
        if (n === 0) return this.eof ? 0 : -EAGAIN;
        dst.set(this.inbox.slice(offset, offset + n), dstOff);
        return n;
      },
      peekInto: (offset, views, offsets, lengths, count) => {
        this.peeks.push({ offset, len: lengths.subarray(0, count).reduce((a, b) => a + b, 0) });
        let at = offset;
        for (let i = 0; i < count && at < this.inbox.length; i++) {
          const n = Math.min(lengths[i]!, this.inbox.length - at);
          viewAt(views, i).set(this.inbox.slice(at, at + n), offsets[i]);
          at += n;
        }
        return at > offset ? at - offset : this.eof ? 0 : -EAGAIN;
      },
      discard: (n) => {
        const k = Math.min(n, this.inbox.length);
        this.inbox.splice(0, k);
        this.discarded += k;
        return k;
      },
      get ended() {
        return socket.eof;
      },
      takeError: () => {
        const e = this.readError;
        this.readError = 0;
        return -e;
      },
    };
    const socket = this; // eslint-disable-line @typescript-eslint/no-this-alias
  }
  read(buf: Uint8Array, off: number, len: number): number {
    if (this.queue) throw new Error('read() on a socket whose queue is the send buffer');
    if (this.inbox.length > 0) {
      const n = Math.min(len, this.inbox.length);
      buf.set(this.inbox.splice(0, n), off);
      return n;
    }
    if (this.readError !== 0) return -this.readError;
    return this.eof ? 0 : -EAGAIN;
  }
  write(buf: Uint8Array, off: number, len: number): number {
    const n = Math.min(len, this.room);
    if (n === 0) return -EAGAIN;
    this.room -= n;
    this.writes++;
    for (let i = 0; i < n; i++) this.written.push(buf[off + i]!);
    return n;
  }
  shutdownWrite(): void {
    this.shut = true;
  }
  /** Each watch() call's `read`. */
  readWatches: boolean[] = [];
  watch(read: boolean, write: boolean): void {
    this.watching = { read, write };
    this.readWatches.push(read);
  }
  close(reset: boolean): void {
    this.closed = reset ? 'rst' : 'fin';
  }
}

class FakeTcp implements HostTcp {
  connects: { family: 4 | 6; dst: number[]; port: number; ttl: number; socket: FakeSocket }[] = [];
  listens: { family: 4 | 6; port: number; accepted: (c: AcceptedTcp) => void }[] = [];
  constructor(readonly streamQueues = false) {}
  connectTcp(family: 4 | 6, dst: Uint8Array, port: number, ttl: number, events: TcpSocketEvents): TcpSocket {
    const socket = new FakeSocket(events, this.streamQueues);
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

function setup(opts: ConstructorParameters<typeof TcpNat>[2] = {}, mtu?: number, streams = false, device?: FrameDevice) {
  const env = makeStack({ ipv6: undefined, ...(mtu !== undefined ? { mtu } : {}) }, {}, device);
  const host = new FakeTcp(streams);
  const nat = new TcpNat(env.stack, host, { random: () => 0.5, guestAddress: () => Uint8Array.of(10, 0, 2, 15), ...opts });
  env.stack.route({ tcpInput: (family, p, off, ttl) => nat.input(family, p, off, ttl) });
  env.stack.route({ unreachable: (tag) => nat.unreachable(tag) });
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
    host.connects[0]!.socket.events.connectFailed(113, {
      origin: ErrOrigin.ICMP,
      type: 11,
      code: 0,
      errno: 113,
      info: 0,
      offender: router,
      offenderValid: true,
    });
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
  const now = send(tcpFrame(40000, 80, GUEST_ISN + 4, iss + 1, ACK | PSH, Uint8Array.of(4, 5, 6, 7, 8), { dst: FAR }));
  t.same(socket.written, [1, 2, 3, 4, 5]);
  t.ok(socket.watching.write, 'waits for the host socket to drain');
  env.clock.advance(500);
  env.stack.poll();
  nat.poll(env.clock.t);
  // At once (the write freed window worth announcing) or after the delayed-ACK time.
  const after = segments(t, [...now, ...link.take()]).at(-1);
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
  t.same(
    more.flatMap((s) => s.data),
    [9, 9],
    'host data after the guest FIN still arrives',
  );
  // the host ends: our FIN
  socket.eof = true;
  socket.events.readable();
  const fin = segments(t, link.take()).find((s) => (s.flags & FIN) !== 0);
  t.ok(fin, 'host EOF → FIN to the guest');
  t.equal(socket.closed, 'fin', 'both directions done: the host socket closes');
  send(tcpFrame(40000, 80, GUEST_ISN + 10, (fin!.seq + 1) >>> 0, ACK, undefined, { dst: FAR }));
  t.equal(nat.flowCount, 0, 'LAST_ACK acknowledged: the flow is gone');
});

t.test("the host socket's queue as the send buffer: peeked, re-peeked after a loss, discarded when acknowledged", async (t) => {
  const env = setup({}, undefined, true);
  const { send, link, nat } = env;
  const { socket, iss } = established(env);
  const bytes = Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff);
  socket.inbox.push(...bytes);
  socket.events.readable();
  const first = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.same(
    first.flatMap((s) => s.data),
    bytes,
    'all of it peeked into segments',
  );
  t.same(
    socket.peeks.map((p) => p.offset),
    [0, 1460, 2920],
    'each segment peeked from its offset',
  );
  t.equal(socket.inbox.length, 3000, 'nothing taken off the queue: the kernel holds it until the guest acknowledges');
  // The first segment is lost: the guest acknowledges nothing (SACKing nothing either).
  send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK, undefined, { dst: FAR }));
  t.equal(socket.discarded, 0);
  socket.peeks.length = 0;
  env.clock.advance(1500);
  env.stack.poll();
  nat.poll(env.clock.t);
  const again = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.ok(again.length >= 1, 'the retransmission timer fired');
  t.equal(again[0]!.seq, (iss + 1) >>> 0, 'from the first lost byte');
  t.same(again[0]!.data, bytes.slice(0, again[0]!.data.length), 'the same bytes, peeked again');
  t.equal(socket.peeks[0]!.offset, 0, 're-peeked from offset 0');
  // The guest acknowledges 500 bytes: under a quarter of the queue (and SETTLE_BYTES), with more
  // unacknowledged, they stay at its head (a discard per ACK would be a system call per ACK).
  send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + 500) >>> 0, ACK, undefined, { dst: FAR }));
  t.equal(socket.discarded, 0, 'the acknowledged bytes wait at the head of the queue');
  t.equal(socket.inbox.length, 3000, '... all of it still queued');
  // 2000: a quarter of the queue or more, they leave it; later peeks count from the new head.
  send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + 2000) >>> 0, ACK, undefined, { dst: FAR }));
  t.equal(socket.discarded, 2000, 'the acknowledged bytes discarded');
  t.same(socket.inbox, bytes.slice(2000), 'the rest still queued');
  link.take();
  socket.peeks.length = 0;
  env.clock.advance(3000);
  env.stack.poll();
  nat.poll(env.clock.t);
  const rest = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.equal(rest[0]!.seq, (iss + 1 + 2000) >>> 0, 'a later retransmission starts at the new SND.UNA');
  t.same(rest[0]!.data, bytes.slice(2000, 2000 + rest[0]!.data.length));
  t.equal(socket.peeks[0]!.offset, 0, '... which is the head of the queue now');
  // The host ends: our FIN follows the data; the socket stays open until the guest has it all.
  socket.eof = true;
  socket.events.readable();
  const fin = segments(t, link.take()).find((s) => (s.flags & FIN) !== 0);
  send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK | FIN, undefined, { dst: FAR }));
  t.ok(socket.shut, 'guest FIN → shutdown(SHUT_WR)');
  t.equal(socket.closed, 'no', 'not closed while the guest has not acknowledged all the data');
  t.ok(fin, 'host EOF → FIN to the guest, after the data');
  t.equal(fin!.seq, (iss + 1 + 3000) >>> 0);
  send(tcpFrame(40000, 80, GUEST_ISN + 2, (iss + 1 + 3001) >>> 0, ACK, undefined, { dst: FAR }));
  t.equal(socket.inbox.length, 0, 'all acknowledged: all of it discarded');
  t.equal(socket.closed, 'fin', 'drained: the host socket closes with a FIN');
  env.clock.advance(5000);
  nat.poll(env.clock.t);
  t.equal(nat.flowCount, 0, 'gone after TIME_WAIT');
});

t.test('the host socket as the send buffer: acknowledged bytes leave a large queue SETTLE_BYTES at a time while more are unacknowledged', async (t) => {
  const env = setup({}, undefined, true);
  const { send, link } = env;
  const { socket, iss } = established(env);
  // More than four times SETTLE_BYTES: the quarter of the queue does not come first.
  const bytes = Array.from({ length: 300_000 }, (_, i) => (i * 13 + 5) & 0xff);
  for (const b of bytes) socket.inbox.push(b);
  socket.events.readable();
  let sent = 0;
  let acked = 0;
  let intact = true;
  let out = link.take();
  for (let round = 0; round < 100 && socket.discarded === 0; round++) {
    for (const s of segments(t, out)) {
      const at = (s.seq - iss - 1) >>> 0;
      if (s.data.length > 0 && !s.data.every((b, i) => b === bytes[at + i])) intact = false;
      sent = Math.max(sent, at + s.data.length);
    }
    t.equal(socket.discarded, 0, `${acked} bytes acknowledged: none discarded yet`);
    // All but the last segment acknowledged: some always remain unacknowledged.
    acked = Math.max(acked, sent - 1460);
    out = send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + acked) >>> 0, ACK, undefined, { dst: FAR }));
  }
  t.ok(intact, 'every segment carried the bytes at its offset (peeks past the acknowledged ones)');
  t.ok(acked >= SETTLE_BYTES, `${SETTLE_BYTES} bytes or more acknowledged`);
  t.equal(socket.discarded, acked, '... then all the acknowledged bytes discarded at once');
  t.equal(socket.inbox.length, bytes.length - acked, 'the rest still queued');
  t.equal(socket.looks, 1, 'the queue looked at once: what it was known to hold always filled the window the ACKs opened');
  // Everything acknowledged as it comes: once the window opens past what is known, the queue
  // is looked at again, and bytes that arrived without an event (the flow was not reading) go.
  for (let i = 0; i < 1000; i++) socket.inbox.push(7);
  for (let round = 0; round < 200 && sent < bytes.length + 1000; round++) {
    out = send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + sent) >>> 0, ACK, undefined, { dst: FAR }));
    for (const s of segments(t, out)) sent = Math.max(sent, ((s.seq - iss - 1) >>> 0) + s.data.length);
  }
  t.equal(sent, bytes.length + 1000, 'the bytes that came later were found and sent');
  t.ok(socket.looks > 1, '... the queue looked at again');
});

t.test("the host socket's queue as the send buffer: while data waits unsent, reads are off and each output looks at the queue", async (t) => {
  const env = setup({}, undefined, true);
  const { send, link } = env;
  const { socket, iss } = established(env);
  t.equal(socket.watching.read, true, 'established, nothing waiting: reads on');
  const got: number[] = [];
  let fin: Seen | undefined;
  const take = (frames: Uint8Array[]): void => {
    for (const s of segments(t, frames)) {
      if (s.data.length > 0) {
        t.equal(s.seq, (iss + 1 + got.length) >>> 0, 'in order');
        got.push(...s.data);
      }
      if ((s.flags & FIN) !== 0) fin = s;
    }
  };
  // What the window takes at once leaves reads on throughout (no turning off and on per arrival).
  const small = Array.from({ length: 3000 }, (_, i) => (i * 3) & 0xff);
  socket.inbox.push(...small);
  socket.readWatches.length = 0;
  socket.events.readable();
  take(link.take());
  t.same(got, small, 'all sent at once');
  t.notOk(socket.readWatches.includes(false), 'reads stayed on');
  take(send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + got.length) >>> 0, ACK, undefined, { dst: FAR })));
  const bytes = [...small, ...Array.from({ length: 30000 }, (_, i) => (i * 13) & 0xff)];
  socket.inbox.push(...bytes.slice(small.length));
  socket.events.readable();
  take(link.take());
  t.ok(got.length < bytes.length, `the first flight (${got.length} bytes) leaves data unsent`);
  t.equal(socket.watching.read, false, 'data waits (the congestion window): reads off, arrivals would wake us for nothing');
  // More data and the host's FIN arrive, unheard (no event: reads are off).
  const more = Array.from({ length: 2000 }, (_, i) => (i * 5 + 1) & 0xff);
  socket.inbox.push(...more);
  socket.eof = true;
  // The guest acknowledges what it has, flight after flight: each output looks at the queue.
  for (let i = 0; i < 20 && !fin; i++) {
    take(send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + got.length) >>> 0, ACK, undefined, { dst: FAR })));
  }
  t.same(got, [...bytes, ...more], 'everything, what arrived unheard included');
  t.ok(fin, 'the FIN that arrived unheard follows the data');
  t.equal(fin ? (fin.seq + fin.data.length) >>> 0 : -1, (iss + 1 + bytes.length + more.length) >>> 0, 'the FIN after the last byte');
  t.equal(socket.watching.read, false, 'the host side ended: no more reads');
});

t.test(
  'in place to a guest without segmentation offload: each segment as large as the link would cut now (its budget), none larger; refused, the flow waits for room',
  async (t) => {
    const device = new InPlaceFrameDevice();
    const env = setup({}, undefined, true, device);
    const { link, nat } = env;
    const { socket, iss } = established(env);
    const mss = 1460;
    const bytes = Array.from({ length: 100000 }, (_, i) => (i * 7) & 0xff);
    // Budget 6, asked per segment: one segment of 6 MSS takes it all, then the rest of the initial
    // window (10 MSS) goes as segments of one MSS; all of it filled with one peek.
    device.cut = 6;
    socket.inbox.push(...bytes);
    socket.peeks.length = 0;
    socket.events.readable();
    t.same(device.cutSegments, [{ payload: 6 * mss, size: mss }], 'one segment cut: 6 MSS');
    let out = segments(t, link.take()).filter((s) => s.data.length > 0);
    t.same(
      out.map((s) => [(s.seq - iss - 1) >>> 0, s.data.length]),
      [
        [0, 6 * mss],
        [6 * mss, mss],
        [7 * mss, mss],
        [8 * mss, mss],
        [9 * mss, mss],
      ],
      'then segments of one MSS',
    );
    t.equal(socket.peeks.length, 1, 'one peek for the run');
    t.notOk(nat.wantsRoom);
    // A link whose budget says more than it then takes (its frames took more chains than it
    // thought): the segment is refused, and waits for room rather than take the copy path (which
    // refuses a large segment to such a link).
    device.cut = 2;
    device.cutOverstated = 30;
    env.clock.advance(5);
    let acked = env.send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + 10 * mss) >>> 0, ACK, undefined, { dst: FAR, window: 65535 }));
    t.same(
      segments(t, acked).filter((s) => s.data.length > 0),
      [],
      'nothing sent',
    );
    t.ok(nat.wantsRoom, 'the flow waits for room');
    // Room: the budget is right again. Everything acknowledged goes, in segments within the budget.
    device.cutOverstated = 0;
    device.cut = 30;
    nat.linkRoom();
    out = [...out, ...segments(t, link.take()).filter((s) => s.data.length > 0)];
    t.ok(out.length > 5, 'more went once room came');
    t.ok(
      device.cutSegments.slice(1).every((c) => c.payload <= 30 * mss && c.size === mss),
      'no segment over the budget',
    );
    const sent = out.reduce((n, s) => n + s.data.length, 0);
    t.same(
      out.flatMap((s) => s.data),
      bytes.slice(0, sent),
      'the stream, in order',
    );
    // Without a budget: segments of one MSS.
    device.cut = 0;
    device.cutSegments.length = 0;
    env.clock.advance(5);
    acked = env.send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + sent) >>> 0, ACK, undefined, { dst: FAR, window: 65535 }));
    socket.events.readable();
    const plain = segments(t, [...acked, ...link.take()]).filter((s) => s.data.length > 0);
    t.ok(plain.length > 0 && plain.every((s) => s.data.length <= mss), 'segments of one MSS');
    t.same(device.cutSegments, [], 'nothing to cut');
  },
);

t.test('in place, a run of segments: its headers are built once, each with its own sequence number and flags', async (t) => {
  // 5 × 1460 bytes: the last segment is as long as the others, and only its PSH differs.
  const device = new InPlaceFrameDevice();
  const env = setup({}, undefined, true, device);
  const { link } = env;
  const { socket, iss } = established(env);
  const bytes = Array.from({ length: 5 * 1460 }, (_, i) => (i * 13) & 0xff);
  socket.inbox.push(...bytes);
  socket.peeks.length = 0;
  socket.events.readable();
  const out = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.equal(device.framesInPlace, 5, 'all five went in place');
  t.same(
    socket.peeks.map((p) => p.offset),
    [0],
    'filled with one peek',
  );
  t.same(
    out.map((s) => (s.seq - iss - 1) >>> 0),
    [0, 1460, 2920, 4380, 5840],
    'each segment where the one before ended',
  );
  t.same(
    out.map((s) => s.flags),
    [ACK, ACK, ACK, ACK, ACK | PSH],
    'PSH on the last only',
  );
  t.same(
    out.flatMap((s) => s.data),
    bytes,
    'the stream',
  );
  // The next run (the guest's ACK moved the window and the clock): fields taken afresh.
  const more = Array.from({ length: 2 * 1460 + 100 }, (_, i) => (i * 5) & 0xff);
  socket.inbox.push(...more);
  env.clock.advance(10);
  env.send(tcpFrame(40000, 80, GUEST_ISN + 1, (iss + 1 + bytes.length) >>> 0, ACK, undefined, { dst: FAR, window: 40000 }));
  socket.events.readable();
  const next = segments(t, link.take()).filter((s) => s.data.length > 0);
  t.same(
    next.map((s) => [(s.seq - iss - 1) >>> 0, s.flags, s.data.length]),
    [
      [7300, ACK, 1460],
      [8760, ACK, 1460],
      [10220, ACK | PSH, 100],
    ],
    'a shorter last segment',
  );
  t.ok(
    next.every((s) => s.ack === GUEST_ISN + 1),
    'acknowledging the guest',
  );
  t.same(
    next.flatMap((s) => s.data),
    more,
  );
});

t.test('in place with segmentation offload: a shorter segment of many MSS in a run has its own lengths', async (t) => {
  const device = new InPlaceFrameDevice();
  const env = setup({}, 1500, true, device);
  const { send, host, link } = env;
  const syn = new TcpOptions();
  syn.mss = 1460;
  syn.windowScale = 7;
  send(tcpFrame(40000, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR, options: syn }));
  host.connects.at(-1)!.socket.events.connected();
  const [synAck] = segments(t, link.take());
  const iss = synAck!.seq;
  device.partialChecksums = true;
  device.gso = true;
  // A window of 800 << 7 = 102 400 bytes, and a connection past slow start (its congestion window
  // opened wide): 44 MSS (64 240 bytes, the most under 64 KiB), then the 38 160 left.
  send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK, undefined, { dst: FAR, window: 800 }));
  const socket = host.connects.at(-1)!.socket;
  const flow = [...(env.nat as unknown as { table: FlowTable }).table.flows()][0] as unknown as { conn: { cwnd: number } };
  flow.conn.cwnd = 1 << 20;
  const data = Array.from({ length: 200_000 }, (_, i) => (i * 3) & 0xff);
  socket.inbox = data.slice();
  socket.events.readable();
  const sent = link.takeWithPartial().filter(({ frame }) => frame.length > 54);
  t.equal(device.framesInPlace, 2, 'both went in place');
  t.same(
    sent.map(({ frame }) => [(frame[16]! << 8) | frame[17]!, frame[14 + 20 + 13]]),
    [
      [20 + 20 + 64240, ACK],
      [20 + 20 + 38160, ACK],
    ],
    'IPv4 total lengths and flags',
  );
  for (const { frame, partial } of sent) {
    completeChecksum(frame, partial!.start, frame.length, partial!.offset);
    t.equal(partial!.segmentSize, 1460);
  }
  const segs = segments(
    t,
    sent.map(({ frame }) => frame),
  ); // checksums verified there
  t.same(
    segs.map((s) => (s.seq - iss - 1) >>> 0),
    [0, 64240],
  );
  t.same(
    segs.flatMap((s) => s.data),
    data.slice(0, 102400),
    'the stream',
  );
});

t.test('the host socket failing while its queue is the send buffer resets the guest connection', async (t) => {
  const env = setup({}, undefined, true);
  const { link } = env;
  const { socket } = established(env);
  socket.inbox.push(1, 2, 3);
  socket.readError = 104; // ECONNRESET
  socket.events.readable();
  const out = segments(t, link.take());
  t.ok(
    out.some((s) => (s.flags & RST) !== 0),
    'the guest gets a RST',
  );
  t.equal(env.nat.flowCount, 0);
});

t.test('guest data of one batch goes to the host in one write per flow', async (t) => {
  const env = setup();
  const { nat } = env;
  const { socket, iss } = established(env);
  // Four segments in one TX batch (no flush in between), as the device hands them over.
  for (let i = 0; i < 4; i++) {
    const data = Uint8Array.from({ length: 100 }, (_, k) => (i * 100 + k) & 0xff);
    env.stack.receive(tcpFrame(40000, 80, GUEST_ISN + 1 + i * 100, iss + 1, ACK | PSH, data, { dst: FAR }), { checksumPartial: false });
  }
  t.equal(socket.writes, 0, 'nothing written during the batch');
  nat.flush();
  t.equal(socket.writes, 1, 'one write at its end');
  t.same(
    socket.written,
    Array.from({ length: 400 }, (_, k) => k & 0xff),
    'all of it, in order',
  );
  const acks = segments(t, env.link.take());
  t.ok(acks.length >= 1 && acks.length <= 2, `one or two ACKs for four segments (${acks.length})`);
  t.equal(acks.at(-1)!.ack, GUEST_ISN + 401, 'the last ACK covers everything');
  // A FIN in the same batch as data goes to the host after the data.
  env.stack.receive(tcpFrame(40000, 80, GUEST_ISN + 401, iss + 1, ACK | PSH, Uint8Array.of(7), { dst: FAR }), { checksumPartial: false });
  env.stack.receive(tcpFrame(40000, 80, GUEST_ISN + 402, iss + 1, ACK | FIN, undefined, { dst: FAR }), { checksumPartial: false });
  t.notOk(socket.shut, 'no shutdown before the data is written');
  nat.flush();
  t.equal(socket.written.at(-1), 7);
  t.ok(socket.shut, 'then the FIN: shutdown(SHUT_WR)');
});

t.test('a segment of many MSS (the guest used TSO) goes to the host in one write and is ACKed at once', async (t) => {
  const env = setup({}, 1500);
  const { nat } = env;
  const { socket, iss } = established(env);
  const data = Uint8Array.from({ length: 40000 }, (_, i) => (i * 11) & 0xff);
  env.stack.receive(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK | PSH, data, { dst: FAR }), { checksumPartial: true });
  nat.flush();
  t.equal(socket.writes, 1, 'one write');
  t.equal(socket.written.length, 40000, 'all of it');
  const acks = segments(t, env.link.take());
  t.equal(acks.length, 1, "one ACK, at once (no delayed ACK for 27 segments' worth)");
  t.equal(acks[0]!.ack, GUEST_ISN + 40001);
});

t.test('a guest with segmentation offload gets segments of many MSS, each standing for MSS-sized ones', async (t) => {
  const env = setup({}, 1500);
  const { socket } = established(env);
  env.link.partialChecksums = true;
  env.link.gso = true;
  env.link.take();
  const data = Array.from({ length: 200_000 }, (_, i) => (i * 13) & 0xff);
  socket.inbox = data.slice();
  socket.events.readable();
  const sent = env.link.takeWithPartial().filter(({ frame }) => frame.length > 54);
  const big = sent.filter(({ partial }) => (partial?.segmentSize ?? 0) > 0);
  t.ok(big.length >= 1, `${big.length} large segments (of ${sent.length})`);
  for (const { frame, partial } of big) {
    t.ok(frame.length > 1514 && frame.length <= 14 + 65535, `larger than the MTU, a 64 KiB packet at most (${frame.length})`);
    t.equal(partial!.segmentSize, 1460, 'segment size: the MSS');
    t.equal((frame.length - 54) % 1460, 0, 'a whole number of segments');
    t.equal((frame[16]! << 8) | frame[17]!, frame.length - 14, 'IPv4 total length: the whole packet');
  }
  // What arrived, in order, is what the host sent.
  const got: number[] = [];
  for (const { frame } of sent) got.push(...frame.subarray(54));
  t.same(got, data.slice(0, got.length), 'the payload in order');
  // Without the guest's link address known, no offload (such a segment is never queued for ARP).
  env.stack.ipv4.neighbors.remove(GUEST_IP);
  const nat = env.nat;
  const conn = ([...(nat as unknown as { table: FlowTable }).table.flows()][0] as unknown as { conn: unknown }).conn;
  t.equal(nat.maxSegment(conn as Parameters<typeof nat.maxSegment>[0]), 0, 'unresolved: one MSS at a time');
});

t.test('a guest that takes partial checksums gets them; a segment that waits for ARP is completed', async (t) => {
  const env = setup();
  const { socket } = established(env);
  env.link.partialChecksums = true;
  env.link.take();
  // The guest's neighbour entry is gone: the first segment waits for ARP, in the queue, complete.
  env.stack.ipv4.neighbors.remove(GUEST_IP);
  socket.inbox.push(1, 2, 3);
  socket.events.readable();
  const arp = env.link.takeWithPartial();
  t.ok(arp.length > 0 && arp.every(({ frame, partial }) => partial === undefined && frame[12] === 0x08 && frame[13] === 0x06), 'only an ARP request meanwhile');
  env.stack.receive(arpRequest(GW_IP), { checksumPartial: false });
  const queued = env.link.takeWithPartial().filter(({ frame }) => frame[13] === 0x00 && frame.length > 54);
  t.equal(queued.length, 1, 'the queued segment, once the guest answers');
  t.equal(queued[0]!.partial, undefined, 'sent whole');
  const [seg] = segments(t, [queued[0]!.frame]); // its checksum verified there
  t.same(seg!.data, [1, 2, 3]);
  env.inject(tcpFrame(40000, 80, GUEST_ISN + 1, (seg!.seq + 3) >>> 0, ACK, undefined, { dst: FAR }));
  env.link.take();
  // Resolved: partial checksums.
  socket.inbox.push(...Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff));
  socket.events.readable();
  const sent = env.link.takeWithPartial().filter(({ frame }) => frame.length > 54);
  t.ok(sent.length >= 3, `${sent.length} data segments`);
  for (const { frame, partial } of sent) {
    t.same(partial, { start: 34, offset: 16, segmentSize: 0 }, 'partial: the TCP header, its checksum field');
    const tcpLen = frame.length - 34;
    t.equal((frame[50]! << 8) | frame[51]!, pseudoHeaderSumV4(FAR, GUEST_IP, IpProtocol.TCP, tcpLen), 'the field holds the pseudo-header sum');
    const done = frame.slice();
    completeChecksum(done, 34, done.length, 16);
    t.ok(new TcpSegment().at(done, 34, tcpLen).verifyChecksumV4(FAR, GUEST_IP), 'completed, it verifies');
  }
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
  env.stack.route({ unreachable: (tag) => nat.unreachable(tag) });
  nat.listen([{ family: 4, addr: null, hostPort: 2222, guestPort: 22 }]);
  let attached: FakeSocket | undefined;
  host.listens[0]!.accepted({
    family: 4,
    peer: Uint8Array.of(127, 0, 0, 1),
    peerPort: 51000,
    localPort: 2222,
    attach: (e) => (attached = new FakeSocket(e)),
    reject: () => undefined,
  });
  for (let i = 0; i < 10; i++) {
    env.clock.advance(1000);
    env.stack.poll();
  }
  t.equal(attached!.closed, 'rst', 'resolution failed: host connection closed');
  t.equal(nat.flowCount, 0);
});

/** The host sends `n` bytes to the guest while the guest has no receive buffers. */
function sendWithoutRoom(env: ReturnType<typeof setup>, socket: FakeSocket, n: number): void {
  env.link.take();
  env.link.room = false;
  socket.inbox.push(...new Array<number>(n).fill(4));
  socket.events.readable();
}

/** The guest posts receive buffers: the data bytes that go out then. */
function roomPosted(t: Test, env: ReturnType<typeof setup>): number {
  env.link.room = true;
  env.nat.linkRoom();
  return segments(t, env.link.take()).reduce((n, s) => n + s.data.length, 0);
}

t.test('no guest receive buffers: data waits, and goes when the link has room', async (t) => {
  let wanted = 0;
  const env = setup({ wantRoom: () => wanted++ });
  const { socket } = established(env);
  sendWithoutRoom(env, socket, 3000);
  t.same(
    segments(t, env.link.take()).filter((s) => s.data.length > 0),
    [],
    'nothing while the guest has no buffers',
  );
  t.ok(env.nat.wantsRoom && wanted > 0, 'the link is asked for room');
  t.equal(roomPosted(t, env), 3000, 'all of it once there is room');
});

t.test('a connection that waited for room and ended no longer asks for it', async (t) => {
  let wanted = 0;
  const env = setup({ wantRoom: () => wanted++ });
  const { socket } = established(env);
  sendWithoutRoom(env, socket, 3000);
  t.ok(env.nat.wantsRoom, 'it waits for room');
  socket.readError = 104; // ECONNRESET: the flow goes (its RST needs no receive buffer)
  socket.events.readable();
  t.equal(env.nat.flowCount, 0);
  t.notOk(env.nat.wantsRoom, 'nothing waits any more');
  wanted = 0;
  t.equal(roomPosted(t, env), 0, 'room: nothing to send');
  env.nat.flush();
  t.equal(wanted, 0, 'the link is not asked again');
  const second = established(env);
  sendWithoutRoom(env, second.socket, 2000);
  t.ok(env.nat.wantsRoom, 'a new connection waits');
  t.equal(roomPosted(t, env), 2000, 'and is sent once there is room');
});

t.test('fences: a SYN to host loopback or an unspecified address gets a RST, no host connect', async (t) => {
  const fence = new Fence({ deny: [{ family: 4, addr: Uint8Array.of(198, 18, 0, 0), prefixLength: 15 }] });
  const { send, host, nat } = setup({ fence });
  for (const [i, dst] of [ipv4(127, 0, 0, 1), ipv4(127, 9, 9, 9), ipv4(0, 0, 0, 0), ipv4(198, 19, 1, 1)].entries()) {
    const [r] = segments(t, send(tcpFrame(41000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst })));
    t.equal(r!.flags, RST | ACK, `refused (${dst >>> 24}.x)`);
  }
  t.equal(host.connects.length, 0, 'the host never connects');
  t.equal(nat.stats.fenced, 4);
  t.same([fence.stats.loopback, fence.stats.unspecified, fence.stats.denied], [2, 1, 1]);
  send(tcpFrame(41010, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
  t.equal(host.connects.length, 1, 'an allowed destination connects');
});

t.test('flood: connections being set up are bounded per destination and in all; the oldest goes', async (t) => {
  const { send, host, nat } = setup({ limits: { maxConnecting: 300, maxConnectingPerDestination: 100 } });
  // A black-holed destination: the host connect never ends.
  for (let i = 0; i < 250; i++) send(tcpFrame(20000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
  t.equal(host.connects.length, 100, 'at most 100 waiting for one destination');
  t.equal(nat.stats.synsDropped, 150, 'the rest dropped (the guest sends them again)');
  // Other destinations are unaffected...
  for (let i = 0; i < 250; i++) send(tcpFrame(30000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: ipv4(192, 0, 2, 10 + (i % 50)) }));
  t.equal(host.connects.length, 350);
  t.equal(nat.stats.connectingEvicted, 50, 'the oldest attempts evicted beyond 300');
  t.equal(host.connects[0]!.socket.closed, 'rst', 'the first (oldest) host connect was given up');
  t.equal(host.connects[349]!.socket.closed, 'no');
  t.equal(nat.flowCount, 300);
  // ...and a connection that completes leaves the set.
  host.connects[349]!.socket.events.connected();
  send(tcpFrame(30000 + 249, 80, GUEST_ISN, 0, SYN, undefined, { dst: ipv4(192, 0, 2, 59) }));
  for (let i = 0; i < 5; i++) send(tcpFrame(50000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: ipv4(192, 0, 2, 200) }));
  t.equal(nat.stats.connectingEvicted, 54, 'one slot was freed by the completed connection');
});

t.test('flood: new connections per guest address are rate-limited (a token bucket)', async (t) => {
  const env = setup({ limits: { connectRate: 100, connectBurst: 50, destinationRate: 1e6, destinationBurst: 1e6 } });
  for (let i = 0; i < 80; i++) env.send(tcpFrame(20000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: ipv4(192, 0, 2, 1 + i) }));
  t.equal(env.host.connects.length, 50, 'the burst');
  env.clock.advance(100);
  for (let i = 0; i < 20; i++) env.send(tcpFrame(21000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: ipv4(192, 0, 2, 1 + i) }));
  t.equal(env.host.connects.length, 60, '100 a second');
});

t.test('memory budget: each flow draws its minimum; spent → RST; closing gives it back', async (t) => {
  const budget = new MemoryBudget(TCP_FLOW_COST * 3);
  const memory = budget.account('tcp');
  const env = setup({ memory });
  const { socket, iss } = established(env, 80);
  env.send(tcpFrame(40001, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
  env.send(tcpFrame(40002, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
  const [r] = segments(t, env.send(tcpFrame(40003, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR })));
  t.equal(r!.flags, RST | ACK, 'a fourth flow does not fit');
  t.equal(env.nat.stats.noMemory, 1);
  // Host data beyond the budget's reach waits in the host socket.
  for (let i = 0; i < 200_000; i++) socket.inbox.push(1);
  socket.events.readable();
  t.ok(socket.inbox.length > 0, 'reading stopped where the budget ends');
  t.ok(budget.used <= budget.limit);
  env.send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, RST, undefined, { dst: FAR }));
  for (const c of env.host.connects.slice(1)) c.socket.events.connectFailed(111, undefined);
  env.link.take();
  t.equal(env.nat.flowCount, 0);
  t.equal(memory.used, 0, 'all of it given back');
});

t.test('timers: only due flows are polled, a bounded number per poll', async (t) => {
  const env = setup({ limits: { maxConnecting: 1e6, maxConnectingPerDestination: 1e6, connectBurst: 1e6, destinationBurst: 1e6 } });
  const flows = [];
  for (let i = 0; i < 3000; i++) {
    env.send(tcpFrame(10000 + i, 80, GUEST_ISN, 0, SYN, undefined, { dst: FAR }));
    env.host.connects[i]!.socket.events.connected();
    flows.push(i);
  }
  env.link.take();
  const first = env.nat.pollAt();
  t.ok(first < Infinity, 'SYN-ACK retransmission timers armed');
  env.clock.advance(first - env.clock.t);
  env.nat.poll(env.clock.t);
  const resent = segments(t, env.link.take()).filter((s) => s.flags === (SYN | ACK)).length;
  t.equal(resent, 2048, 'one bounded batch');
  t.ok(env.nat.pollAt() <= env.clock.t, 'the rest are still due');
  env.nat.poll(env.clock.t);
  t.equal(segments(t, env.link.take()).filter((s) => s.flags === (SYN | ACK)).length, 952);
  t.ok(env.nat.pollAt() > env.clock.t, 'nothing due any more');
});

t.test('a guest that stops answering ARP keeps its connections', async (t) => {
  const env = setup();
  const { socket, iss } = established(env);
  env.link.take();
  // The guest pauses: our data goes unanswered, its ARP entry goes stale, is probed and dropped.
  socket.inbox.push(...new Array<number>(3000).fill(7));
  socket.events.readable();
  for (let i = 0; i < 60; i++) {
    env.clock.advance(1000);
    env.stack.poll();
    env.nat.poll(env.clock.t);
    env.nat.flush();
  }
  env.link.take();
  t.ok(env.stack.counters.get('ipv4.unresolved') > 0, 'ARP for the guest failed meanwhile');
  t.equal(env.nat.flowCount, 1, 'still there after a minute without ARP answers');
  t.equal(socket.closed, 'no', 'the host side was not closed');
  // The guest resumes: it answers ARP and ACKs; the data arrives.
  env.inject(arpRequest(GW_IP));
  env.clock.advance(60_000);
  env.nat.poll(env.clock.t);
  const data = segments(t, env.link.take()).filter((s) => s.data.length > 0);
  t.ok(data.length > 0 && data[0]!.seq === iss + 1, 'retransmitted from where it stopped');
});

t.test('forwards: per-client rate, share of the table, waiting connections bounded', async (t) => {
  const env = setup({ maxFlows: 40, limits: { acceptRate: 10, acceptBurst: 20, maxAccepting: 8 } });
  env.nat.listen([{ family: 4, addr: null, hostPort: 2222, guestPort: 22 }]);
  const sockets: FakeSocket[] = [];
  let rejected = 0;
  const connect = (client: number, port: number): void =>
    env.host.listens[0]!.accepted({
      family: 4,
      peer: Uint8Array.of(203, 0, 113, client),
      peerPort: port,
      localPort: 2222,
      attach: (events) => {
        const s = new FakeSocket(events);
        sockets.push(s);
        return s;
      },
      reject: () => void rejected++,
    });
  for (let i = 0; i < 25; i++) connect(1, 50000 + i);
  t.equal(rejected, 5, 'one client: its burst of 20, then refused');
  t.equal(env.nat.stats.acceptsEvicted, 12, 'at most 8 wait for the guest: the oldest reset');
  t.equal(sockets.filter((s) => s.closed === 'rst').length, 12);
  for (let c = 2; c < 10; c++) for (let i = 0; i < 5; i++) connect(c, 50000 + i);
  t.ok(env.nat.flowCount <= 30, `forwarded connections hold at most 3/4 of the table (${env.nat.flowCount})`);
  env.link.take();
});

t.test('the device detached: every connection is reset, the memory given back', async (t) => {
  const budget = new MemoryBudget(1 << 24);
  const env = setup({ memory: budget.account('tcp') });
  const a = established(env, 80);
  const b = established(env, 81);
  env.nat.resetAll();
  t.same([a.socket.closed, b.socket.closed], ['rst', 'rst']);
  t.equal(env.nat.flowCount, 0);
  t.equal(budget.used, 0);
});

t.test('describeFlows: each connection, its ends, state, bytes without SYN and FIN, age; stopListening', async (t) => {
  const env = setup();
  const { send, nat, host, clock } = env;
  const opened = clock.t;
  const { socket, iss } = established(env);
  send(tcpFrame(40000, 80, GUEST_ISN + 1, iss + 1, ACK | PSH, Uint8Array.of(1, 2, 3), { dst: FAR }));
  socket.inbox.push(9, 9, 9, 9, 9);
  socket.events.readable();
  send(tcpFrame(40000, 80, GUEST_ISN + 4, iss + 6, ACK, undefined, { dst: FAR }));
  clock.advance(1500);
  t.match(nat.describeFlows(clock.t), [
    {
      proto: 'tcp',
      family: 4,
      direction: 'outbound',
      guestPort: 40000,
      remotePort: 80,
      hostPort: 80,
      state: 'ESTABLISHED',
      bytesFromGuest: 3,
      bytesToGuest: 5,
      ageMs: clock.t - opened,
    },
  ]);
  const [flow] = nat.describeFlows(clock.t);
  t.same([...flow!.guest], [10, 0, 2, 15]);
  t.same([...flow!.host!], [...flow!.remote], 'an address beyond the gateway: the host socket goes there');
  // The guest closes: its FIN is not a byte.
  send(tcpFrame(40000, 80, GUEST_ISN + 4, iss + 6, ACK | FIN, undefined, { dst: FAR }));
  t.match(nat.describeFlows(clock.t), [{ state: 'CLOSE_WAIT', bytesFromGuest: 3 }]);

  let closed = 0;
  host.listenTcp = (family, _addr, port, accepted) => {
    host.listens.push({ family, port, accepted });
    return { close: () => void closed++ };
  };
  const [a, b] = nat.listen([
    { family: 4, addr: null, hostPort: 2222, guestPort: 22 },
    { family: 4, addr: null, hostPort: 2223, guestPort: 23 },
  ]);
  nat.stopListening(a!);
  nat.stopListening(a!);
  t.equal(closed, 1, 'closed once');
  nat.closeAll();
  t.equal(closed, 2, 'closeAll closes the other, not the stopped one again');
  void b;
});
