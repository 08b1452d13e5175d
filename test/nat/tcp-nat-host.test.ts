// The TCP NAT over real host sockets (NodeHostNet, a server on loopback) with the host socket's
// receive queue as the connection's send buffer (SO_PEEK_OFF): a guest that loses the first
// flight gets it again peeked from the kernel, byte for byte; what it acknowledges leaves the
// queue; our FIN follows the last byte. Run over the copy path (peeked into the output frame)
// and the zero-copy one (peeked straight into "guest memory" spans, one fill per run of segments),
// for a guest that takes partial checksums and for one that does not. And guest → host: data
// kept by reference (left in guest memory, or joined in the device's buffer) goes out with one
// writev per flow, and what the socket refuses is copied back before the buffer is reused. A host
// peer's reset reaches the guest at once even while the flow is not reading (stalled).
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import type { Test } from 'tap';
import { NodeHostNet } from '../../src/host/host-net.js';
import { silentLog } from '../../src/iface/log.js';
import type { FramePayload } from '../../src/iface/link.js';
import { TcpNat } from '../../src/nat/tcp-nat.js';
import { IpProtocol, Ipv4Packet, TcpFlags, TcpSegment, completeChecksum } from '../../src/wire/index.js';
import { FrameDevice, InPlaceFrameDevice, makeStack } from '../support/frame-device.js';
import { arpRequest, GUEST_IP, GUEST_MAC, GW_IP, tcpFrame } from '../support/packets.js';

const { SYN, ACK, FIN } = TcpFlags;
const GUEST_ISN = 5000;
const SIZE = 40_000;
const pattern = Uint8Array.from({ length: SIZE }, (_, i) => (i * 31 + (i >> 8)) & 0xff);
/** The guest's MAC after it moves mid-stream (a new NIC behind the same address). */
const MOVED_MAC = Uint8Array.of(0x52, 0x54, 0x00, 0xab, 0xcd, 0xef);

interface Seg {
  seq: number;
  ack: number;
  flags: number;
  window: number;
  data: Uint8Array;
  /** The frame's destination MAC, as hex. */
  dst: string;
}

/** Resolves once the event loop has polled again: what was ready on the host sockets then (the
 *  kernel's loopback delivery is done when the writer's call returns) has been handled. */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
};

function segmentsOf(t: Test, link: FrameDevice): Seg[] {
  const out: Seg[] = [];
  for (const { frame, partial } of link.takeWithPartial()) {
    if (frame[12] !== 0x08 || frame[13] !== 0x00) continue;
    if (partial) completeChecksum(frame, partial.start, frame.length, partial.offset);
    const ip = new Ipv4Packet().at(frame, 14, frame.length - 14);
    if (ip.protocol !== IpProtocol.TCP) continue;
    const s = new TcpSegment().at(frame, ip.payloadOffset, ip.payloadLength);
    if (!s.verifyChecksumV4(ip.src, ip.dst)) t.fail('bad TCP checksum');
    out.push({
      seq: s.seq,
      ack: s.ack,
      flags: s.flags,
      window: s.window,
      data: frame.slice(s.payloadOffset, s.payloadOffset + s.payloadLength),
      dst: Buffer.from(frame.subarray(0, 6)).toString('hex'),
    });
  }
  return out;
}

/** The stack on `device`, its TCP NAT over real host sockets (closed with the test), the gateway's
 *  address already learnt by the guest. */
function natOverHost(t: Test, device: FrameDevice) {
  const env = makeStack({ ipv6: undefined }, {}, device);
  const host = new NodeHostNet(silentLog);
  const nat = new TcpNat(env.stack, host, { random: () => 0.5, guestAddress: () => Uint8Array.of(10, 0, 2, 15) });
  env.stack.route({ tcpInput: (family, p, off, ttl) => nat.input(family, p, off, ttl) });
  t.teardown(() => nat.closeAll());
  env.inject(arpRequest(GW_IP));
  return { ...env, host, nat };
}

for (const mode of ['copied into the frame', 'peeked into guest memory', 'peeked into guest memory, checksum completed'] as const) {
  t.test(`real host socket, ${mode}: a lost flight is peeked again from the kernel; ACKed bytes are discarded`, async (t) => {
    let written!: () => void;
    let closed!: () => void;
    const allWritten = new Promise<void>((r) => (written = r));
    const hostClosed = new Promise<void>((r) => (closed = r));
    const server = net.createServer((c) => {
      c.on('error', () => undefined);
      c.on('close', closed);
      c.end(pattern, written);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.teardown(() => server.close());
    const port = (server.address() as net.AddressInfo).port;

    const inPlace = mode !== 'copied into the frame';
    const device = inPlace ? new InPlaceFrameDevice() : new FrameDevice();
    device.partialChecksums = mode === 'peeked into guest memory';
    const env = natOverHost(t, device);
    const { host, nat } = env;
    t.ok(host.streamQueues, 'this kernel has SO_PEEK_OFF for TCP (Linux 6.9+)');
    const { link, clock } = env;
    const send = (seq: number, ack: number, flags: number, opts: { mss?: number } = {}): void => {
      env.stack.receive(tcpFrame(41000, port, seq, ack, flags, undefined, { dst: GW_IP, window: 65535, ...opts }), { checksumPartial: false });
      nat.flush();
    };
    const waitFor = async (what: string, ok: (s: Seg[]) => boolean): Promise<Seg[]> => {
      const got: Seg[] = [];
      const deadline = Date.now() + 2000;
      for (;;) {
        got.push(...segmentsOf(t, link));
        if (ok(got)) return got;
        if (Date.now() > deadline) break;
        await link.nextSend(deadline - Date.now());
      }
      t.fail(`timed out waiting for ${what}`);
      return got;
    };

    send(GUEST_ISN, 0, SYN, { mss: 1460 });
    const [synAck] = await waitFor('the SYN-ACK', (s) => s.some((x) => (x.flags & (SYN | ACK)) === (SYN | ACK)));
    const iss = synAck!.seq;
    send(GUEST_ISN + 1, iss + 1, ACK);
    // The first flight: lost on the way (the guest acknowledges none of it).
    const flight = (await waitFor('the first flight', (s) => s.some((x) => x.data.length > 0))).filter((s) => s.data.length > 0);
    // All of it in the kernel queue (the server wrote it), then the rest of the flight (as the
    // window allows) out on the socket's event.
    await allWritten;
    await settle();
    flight.push(...segmentsOf(t, link).filter((s) => s.data.length > 0));
    t.equal(flight[0]!.seq, (iss + 1) >>> 0);
    // In place, a run's headers are built once and only the sequence number rewritten.
    t.ok(
      flight.every((s, i) => i === 0 || s.seq === (flight[i - 1]!.seq + flight[i - 1]!.data.length) >>> 0),
      'each segment of the flight begins where the one before ended',
    );
    const flightBytes = flight.reduce((n, s) => n + s.data.length, 0);
    t.same(Buffer.concat(flight.map((s) => s.data)), Buffer.from(pattern.subarray(0, flightBytes)), 'the first flight is the stream from its start');
    clock.advance(1500);
    env.stack.poll();
    nat.poll(clock.t);
    const again = segmentsOf(t, link).filter((s) => s.data.length > 0);
    t.ok(again.length >= 1, 'a retransmission after the timeout');
    t.equal(again[0]!.seq, (iss + 1) >>> 0, 'from the first lost byte');
    t.same(Buffer.from(again[0]!.data), Buffer.from(pattern.subarray(0, again[0]!.data.length)), 'the same bytes, peeked again from the kernel');

    // The guest now takes everything in order, acknowledging as it goes, until our FIN.
    const got = new Uint8Array(SIZE);
    let next = 0;
    let fin = false;
    // Mid-stream the guest's address moves to another MAC (it says so in an ARP request): the
    // segments after it go there, not to the old one (in place, the Ethernet header is written
    // once per run of segments and the MAC looked up once per flush of the flow).
    let moved = false;
    let seqBreaks = 0;
    const macs = { before: new Set<string>(), after: new Set<string>() };
    for (const s of again) {
      const off = (s.seq - (iss + 1)) >>> 0;
      if (off <= next && off + s.data.length > next) {
        got.set(s.data.subarray(next - off), next);
        next = off + s.data.length;
      }
    }
    for (let round = 0; round < 2000 && !fin; round++) {
      if (round === 3) {
        env.inject(arpRequest(GW_IP, GUEST_IP, MOVED_MAC));
        moved = true;
      }
      send(GUEST_ISN + 1, (iss + 1 + next) >>> 0, ACK);
      let segs = segmentsOf(t, link);
      if (segs.length === 0) {
        await link.nextSend(2); // data from the host, else (after 2 ms) our timers: moved below
        clock.advance(250);
        nat.poll(clock.t);
        segs = segmentsOf(t, link);
      }
      let end = -1;
      for (const s of segs) {
        if (s.data.length > 0) {
          (moved ? macs.after : macs.before).add(s.dst);
          if (end >= 0 && s.seq !== end) seqBreaks++;
          end = (s.seq + s.data.length) >>> 0;
        }
        const off = (s.seq - (iss + 1)) >>> 0;
        if (s.data.length > 0 && off <= next && off + s.data.length > next) {
          got.set(s.data.subarray(next - off), next);
          next = off + s.data.length;
        }
        if ((s.flags & FIN) !== 0 && off + s.data.length === next) fin = true;
      }
    }
    t.equal(next, SIZE, 'every byte arrived');
    t.equal(seqBreaks, 0, 'the data segments of each output follow each other');
    t.same(Buffer.from(got), Buffer.from(pattern), 'the stream intact');
    t.ok(fin, 'our FIN after the last byte');
    const hex = (m: Uint8Array): string => Buffer.from(m).toString('hex');
    t.same([...macs.before], [hex(GUEST_MAC)], 'data went to the guest’s MAC');
    t.same([...macs.after], [hex(MOVED_MAC)], 'after the guest moved, to its new MAC only');
    if (inPlace) {
      const d = device as InPlaceFrameDevice;
      t.ok(d.framesInPlace > 0, 'data segments went in place');
      t.ok(d.fills < d.framesInPlace, 'runs of segments filled with one peek each');
    }
    t.equal(nat.stats.payloadsShort, 0);
    send(GUEST_ISN + 1, (iss + 1 + SIZE + 1) >>> 0, ACK | FIN);
    await hostClosed; // our FIN reached the server
    await settle();
    t.equal(nat.stats.resetsToGuest, 0, 'no reset: the queue was empty when the socket closed');
  });
}

/** A guest frame as the device hands it over with its payload left in guest memory: the headers
 *  in the frame (the payload's place filled with junk), the payload in `memory` as two spans. */
function leftInGuestMemory(frame: Uint8Array, memory: Uint8Array): { frame: Uint8Array; payload: FramePayload } {
  const at = 14 + 20 + ((frame[14 + 20 + 12]! >> 4) << 2);
  const len = frame.length - at;
  memory.set(frame.subarray(at), 5);
  const copy = frame.slice();
  copy.fill(0xee, at);
  const cut = Math.min(len, 333);
  const payload: FramePayload = {
    frame: copy,
    at,
    length: len,
    views: [memory, memory],
    offsets: Float64Array.of(5, 5 + cut),
    lengths: Uint32Array.of(cut, len - cut),
    count: len - cut > 0 ? 2 : 1,
    loaded: false,
    kept: false,
    load() {
      copy.set(memory.subarray(5, 5 + len), at);
      (this as { loaded: boolean }).loaded = true;
    },
  };
  return { frame: copy, payload };
}

/** A guest frame as the device hands over a segment it joined: the payload in the frame, which is
 *  the device's own buffer (kept by reference all the same, until the batch's release). */
function inFrame(frame: Uint8Array): { frame: Uint8Array; payload: FramePayload } {
  const at = 14 + 20 + ((frame[14 + 20 + 12]! >> 4) << 2);
  const copy = frame.slice();
  const payload: FramePayload = {
    frame: copy,
    at,
    length: frame.length - at,
    views: [copy],
    offsets: Float64Array.of(at),
    lengths: Uint32Array.of(frame.length - at),
    count: 1,
    loaded: true,
    kept: false,
    load() {},
  };
  return { frame: copy, payload };
}

t.test('real host socket: guest data left in guest memory goes out by one writev per flow; what the socket refuses is copied back', (t) =>
  keptByReference(t, leftInGuestMemory),
);

t.test('real host socket: joined segments, in the device’s buffer, go out by one writev per flow; what the socket refuses is copied back', (t) =>
  keptByReference(t, (frame) => inFrame(frame)),
);

/** Guest data whose payload the device hands over to be kept by reference (`hand`: left in guest
 *  memory, or in the device's own buffer), to a host peer that reads nothing at first. */
async function keptByReference(t: Test, hand: (frame: Uint8Array, memory: Uint8Array) => { frame: Uint8Array; payload: FramePayload }): Promise<void> {
  // More than the kernel's buffers hold between the two sockets (tcp_rmem's maximum and
  // tcp_wmem's), so the paused host peer makes our socket refuse.
  const sysMax = (name: string): number => Number(readFileSync(`/proc/sys/net/ipv4/${name}`, 'utf8').trim().split(/\s+/)[2]);
  const buffered = sysMax('tcp_rmem') + sysMax('tcp_wmem');
  const refuses = buffered < 120_000_000;
  const TOTAL = refuses ? buffered + 8_000_000 : 16_000_000;
  const data = Uint8Array.from({ length: TOTAL }, (_, i) => (i * 13 + (i >> 9)) & 0xff);
  const received: Buffer[] = [];
  let receivedBytes = 0;
  let paused: net.Socket | undefined;
  let listening!: () => void;
  const listened = new Promise<void>((r) => (listening = r));
  const ended = new Promise<void>((resolve) => {
    const server = net.createServer((c) => {
      c.pause(); // the host peer reads nothing at first: the socket fills and refuses
      paused = c;
      c.on('data', (b: Buffer) => {
        received.push(b);
        receivedBytes += b.length;
      });
      c.on('end', () => {
        c.end();
        resolve();
      });
    });
    server.listen(0, '127.0.0.1', listening);
    t.teardown(() => server.close());
    servers.push(server);
  });
  await listened;
  const port = (servers.at(-1)!.address() as net.AddressInfo).port;
  const env = natOverHost(t, new FrameDevice());
  const { nat } = env;
  const { link } = env;
  const memory = new Uint8Array(70_000);
  let kept = 0;
  const receive = (frame: Uint8Array, partialChecksum: boolean): void => {
    const left = hand(frame, memory);
    env.stack.receive(left.frame, { checksumPartial: partialChecksum, payload: left.payload });
    if (left.payload.kept) kept++;
    // End of the device's batch (one frame here): output, then the guest's buffer goes back, and
    // the device's, and are reused at once (junk written over them): nothing may read them later.
    nat.flush();
    nat.releaseTaken();
    memory.fill(0xdd);
    left.frame.fill(0xdd);
  };
  const syn = tcpFrame(42000, port, GUEST_ISN, 0, SYN, undefined, { dst: GW_IP, mss: 1460, window: 65535 });
  env.stack.receive(syn, { checksumPartial: false });
  let iss = -1;
  for (const deadline = Date.now() + 2000; iss < 0 && Date.now() < deadline;) {
    await link.nextSend(deadline - Date.now());
    const sa = segmentsOf(t, link).find((s) => (s.flags & (SYN | ACK)) === (SYN | ACK));
    if (sa) iss = sa.seq;
  }
  t.ok(iss >= 0, 'connected');
  env.stack.receive(tcpFrame(42000, port, GUEST_ISN + 1, iss + 1, ACK, undefined, { dst: GW_IP, window: 65535 }), { checksumPartial: false });
  nat.flush();
  // The guest sends in 1400-byte segments within the window we offer; one segment is held back
  // and sent after the next (out of order, then the hole filled), and every fourth round goes
  // with verified checksums. Both go through the connection's receive buffer, so only once the
  // host peer reads: the socket's first refusal must fall on data kept by reference, which is
  // then put back (what this test is about). Had it fallen on data of the receive buffer, the
  // buffer would have stayed non-empty, all later data been copied behind it, nothing put back,
  // and the peer resumed only after 50,000 rounds (a 160 s run).
  let acked = 0;
  let sent = 0;
  let rounds = 0;
  let resumed = false;
  while (acked < TOTAL && rounds++ < 100_000) {
    const window = segmentsOf(t, link).reduce((w, s) => {
      const a = (s.ack - (GUEST_ISN + 1)) >>> 0;
      if ((s.flags & ACK) !== 0 && a >= acked && a <= TOTAL) {
        acked = a;
        return s.window;
      }
      return w;
    }, -1);
    if (sent < acked) sent = acked;
    const limit = Math.min(TOTAL, acked + (window >= 0 ? window : 65535));
    const frames: { off: number; len: number }[] = [];
    for (let off = sent; off < limit && frames.length < 8; off += 1400) frames.push({ off, len: Math.min(1400, limit - off) });
    if (resumed && frames.length >= 3 && rounds % 5 === 0) frames.splice(2, 0, frames.splice(1, 1)[0]!); // out of order
    for (const { off, len } of frames) {
      const f = tcpFrame(42000, port, GUEST_ISN + 1 + off, iss + 1, ACK, data.subarray(off, off + len), { dst: GW_IP, window: 65535 });
      // Mostly with a partial checksum; every fourth round verified (its payload loaded first).
      receive(f, !resumed || rounds % 4 !== 0);
      sent = Math.max(sent, off + len);
    }
    if (frames.length === 0) {
      // Nothing to send within the window: once the host socket has refused data (copied back,
      // the window closing), let the host peer read; meanwhile our timers run (delayed ACKs).
      if (!resumed && (nat.stats.bytesPutBack > 0 || !refuses || rounds > 50_000)) {
        resumed = true;
        paused?.resume();
      }
      await link.nextSend(5); // the window reopening as the socket drains, else (after 5 ms) timers
      env.clock.advance(50);
      nat.poll(env.clock.t);
      sent = acked; // what was not acknowledged is sent again
    }
  }
  if (!resumed) paused?.resume();
  t.equal(acked, TOTAL, 'all of it acknowledged');
  env.stack.receive(tcpFrame(42000, port, GUEST_ISN + 1 + TOTAL, iss + 1, ACK | FIN, undefined, { dst: GW_IP, window: 65535 }), { checksumPartial: false });
  nat.flush();
  let timer: NodeJS.Timeout | undefined;
  const fin = await Promise.race([ended.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))]);
  clearTimeout(timer);
  t.ok(fin, "the guest's FIN reached the host peer after the data");
  t.equal(receivedBytes, TOTAL, 'the host peer got every byte');
  t.ok(Buffer.concat(received).equals(Buffer.from(data)), 'in order, none from reused guest memory');
  t.ok(kept > 100, `payload kept by reference (${kept} segments)`);
  t.ok(nat.stats.bytesByReference > TOTAL / 2, 'most of it written by reference');
  if (refuses) t.ok(nat.stats.bytesPutBack > 0, 'some refused by the host socket and copied back');
  else t.comment(`the kernel buffers ${buffered} bytes between two sockets: no refusal forced`);
  t.equal(nat.stats.resetsToGuest, 0);
}

const servers: net.Server[] = [];

t.test('real host socket: the host peer resetting a connection that is not reading (its data waits for the guest) resets the guest at once', async (t) => {
  let reset!: () => void;
  const hostReset = new Promise<void>((r) => (reset = r));
  const server = net.createServer((c) => {
    c.on('error', () => undefined);
    c.write(pattern, () => setTimeout(() => (c.resetAndDestroy(), reset()), 50));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.teardown(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const device = new InPlaceFrameDevice();
  device.partialChecksums = true;
  const env = natOverHost(t, device);
  const { nat } = env;
  const send = (seq: number, ack: number, flags: number, opts: { mss?: number } = {}): void => {
    env.stack.receive(tcpFrame(41001, port, seq, ack, flags, undefined, { dst: GW_IP, window: 65535, ...opts }), { checksumPartial: false });
    nat.flush();
  };
  const seen: Seg[] = [];
  const waitFor = async (what: string, ok: (s: Seg[]) => boolean): Promise<boolean> => {
    const deadline = Date.now() + 2000;
    for (;;) {
      seen.push(...segmentsOf(t, env.link));
      if (ok(seen)) return true;
      if (Date.now() > deadline) break;
      await env.link.nextSend(deadline - Date.now());
    }
    t.fail(`timed out waiting for ${what}`);
    return false;
  };
  send(GUEST_ISN, 0, SYN, { mss: 1460 });
  await waitFor('the SYN-ACK', (s) => s.some((x) => (x.flags & (SYN | ACK)) === (SYN | ACK)));
  const iss = seen.find((x) => (x.flags & SYN) !== 0)!.seq;
  send(GUEST_ISN + 1, iss + 1, ACK);
  // The guest acknowledges nothing: the first flight leaves data unsent, and the flow stops
  // reading. (No timer runs here: only the socket's error can bring the RST.)
  await waitFor('the first flight', (s) => s.some((x) => x.data.length > 0));
  await hostReset;
  t.ok(
    await waitFor('a RST to the guest', (s) => s.some((x) => (x.flags & TcpFlags.RST) !== 0)),
    "the host's reset reached the guest without the guest or a timer doing anything",
  );
  t.equal(nat.flowCount, 0, 'the flow is gone');
});

// A host peer's urgent byte (MSG_OOB, as telnet and rlogin send) mid-stream. Without SO_OOBINLINE
// the kernel's SIOCINQ stops at the urgent mark, and once the guest has acknowledged the bytes
// before it, reports 0 for good: the rest of the stream would never reach the guest, and the
// peer's FIN would close it early, the data cut short. Inline, the urgent byte is an ordinary
// byte of the stream (the guest's TCP has no other way to get it: this NAT sends no URG).
t.test('real host socket: an urgent byte mid-stream goes inline; the stream after it still arrives', async (t) => {
  // Perl is in every Debian (perl-base); Node's net cannot send MSG_OOB.
  const server = spawn('perl', [
    '-MIO::Socket::INET',
    '-MSocket',
    '-e',
    `$| = 1; my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1, ReuseAddr => 1) or die;
     print $l->sockport, "\\n"; my $c = $l->accept or die;
     $c->send('A' x 1000); select(undef, undef, undef, 0.05); $c->send('U', MSG_OOB); select(undef, undef, undef, 0.05);
     $c->send('B' x 1000); select(undef, undef, undef, 0.05); close $c;`,
  ]);
  t.teardown(() => server.kill());
  const port = await new Promise<number>((resolve, reject) => {
    server.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    server.once('error', reject);
  });
  const env = natOverHost(t, new InPlaceFrameDevice());
  const { nat } = env;
  const { link, clock } = env;
  const send = (seq: number, ack: number, flags: number): void => {
    env.stack.receive(tcpFrame(41001, port, seq, ack, flags, undefined, { dst: GW_IP, window: 65535, mss: 1460 }), { checksumPartial: false });
    nat.flush();
  };
  send(GUEST_ISN, 0, SYN);
  await link.nextSend(2000);
  const synAck = segmentsOf(t, link).find((x) => (x.flags & (SYN | ACK)) === (SYN | ACK));
  const iss = synAck!.seq;
  send(GUEST_ISN + 1, iss + 1, ACK);
  const got: Uint8Array[] = [];
  let next = 0;
  let fin = false;
  const deadline = Date.now() + 3000;
  while (!fin && Date.now() < deadline) {
    await link.nextSend(20);
    clock.advance(50);
    nat.poll(clock.t);
    for (const s of segmentsOf(t, link)) {
      const off = (s.seq - (iss + 1)) >>> 0;
      if (s.data.length > 0 && off <= next && off + s.data.length > next) {
        got.push(s.data.subarray(next - off));
        next = off + s.data.length;
      }
      if ((s.flags & FIN) !== 0 && off + s.data.length === next) fin = true;
    }
    send(GUEST_ISN + 1, (iss + 1 + next + (fin ? 1 : 0)) >>> 0, ACK);
  }
  t.equal(Buffer.concat(got).toString(), 'A'.repeat(1000) + 'U' + 'B'.repeat(1000), 'the whole stream, the urgent byte in its place');
  t.ok(fin, 'the FIN after the last byte');
});
