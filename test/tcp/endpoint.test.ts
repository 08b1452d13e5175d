// The TCP endpoint on crafted segments, smoltcp style: each transition, RST and SYN validation,
// window scaling, zero windows, half-close, retransmission and recovery.
import t from 'tap';
import { TcpConnection, TcpState } from '../../src/tcp/endpoint.js';
import { TcpFlags } from '../../src/wire/index.js';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { Recorder, makeConn, newLog, recordingEvents, segment } from './support.js';

const { SYN, ACK, FIN, RST, PSH } = TcpFlags;
const ISS = 1000;
const PEER = 5000;

/** A passive connection in ESTABLISHED (the peer's SYN without options unless given). */
function established(config = {}, synOptions = {}) {
  const c = makeConn(config, ISS);
  c.conn.acceptSyn(segment({ seq: PEER, flags: SYN, options: { mss: 1460, ...synOptions } }));
  c.conn.synAck(0);
  c.rec.take();
  c.conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK }), 1);
  c.conn.output(1);
  return c;
}

t.test('passive open: LISTEN → SYN_RECEIVED → ESTABLISHED, options answered only when offered', async (t) => {
  const { conn, rec, log } = makeConn({}, ISS);
  t.ok(conn.acceptSyn(segment({ seq: PEER, flags: SYN, options: { mss: 1400, windowScale: 7, sackPermitted: true, timestamp: true, tsVal: 77 } })));
  t.equal(conn.state, TcpState.LISTEN, 'nothing sent before synAck');
  t.same(rec.take(), []);
  conn.synAck(0);
  t.equal(conn.state, TcpState.SYN_RECEIVED);
  const [sa] = rec.take();
  t.equal(sa!.flags, SYN | ACK);
  t.equal(sa!.seq, ISS);
  t.equal(sa!.ack, PEER + 1);
  t.equal(sa!.mss, 1460);
  t.ok(sa!.wscale >= 0, 'window scale answered');
  t.ok(sa!.sackPermitted);
  t.ok(sa!.ts && sa!.tsEcr === 77, 'timestamp echoes the peer');
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, options: { timestamp: true, tsVal: 78, tsEcr: sa!.tsVal } }), 5);
  t.equal(conn.state, TcpState.ESTABLISHED);
  t.equal(log.established, 1);

  const plain = makeConn({}, ISS);
  plain.conn.acceptSyn(segment({ seq: PEER, flags: SYN }));
  plain.conn.synAck(0);
  const [p] = plain.rec.take();
  t.equal(p!.wscale, -1, 'no window scale when the peer offered none');
  t.notOk(p!.ts, 'no timestamps when the peer offered none');
  t.notOk(p!.sackPermitted);
});

t.test('active open, and simultaneous open', async (t) => {
  {
    const { conn, rec, log } = makeConn({}, ISS);
    conn.connect(0);
    const [syn] = rec.take();
    t.equal(syn!.flags, SYN);
    t.ok(syn!.wscale >= 0 && syn!.sackPermitted && syn!.ts, 'offers everything');
    conn.input(segment({ seq: PEER, ack: ISS + 1, flags: SYN | ACK, options: { mss: 1000 } }), 10);
    t.equal(conn.state, TcpState.ESTABLISHED);
    t.equal(log.established, 1);
    conn.output(10);
    const [a] = rec.take();
    t.same([a!.flags, a!.seq, a!.ack], [ACK, ISS + 1, PEER + 1]);
    t.notOk(a!.ts, 'timestamps off: the SYN-ACK had none');
  }
  {
    const { conn, rec, log } = makeConn({}, ISS);
    conn.connect(0);
    rec.take();
    conn.input(segment({ seq: PEER, flags: SYN }), 1);
    t.equal(conn.state, TcpState.SYN_RECEIVED, 'SYN crossing ours');
    conn.output(1);
    const [sa] = rec.take();
    t.same([sa!.flags, sa!.seq, sa!.ack], [SYN | ACK, ISS, PEER + 1]);
    conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK }), 2);
    t.equal(conn.state, TcpState.ESTABLISHED);
    t.equal(log.established, 1);
  }
  {
    const { conn, rec, log } = makeConn({}, ISS);
    conn.connect(0);
    rec.take();
    conn.input(segment({ seq: 0, ack: ISS + 1, flags: RST | ACK }), 1);
    t.same(log.aborted, ['refused'], 'RST with an acceptable ACK: refused');
    t.equal(conn.state, TcpState.CLOSED);
  }
  {
    const { conn, rec } = makeConn({}, ISS);
    conn.connect(0);
    rec.take();
    conn.input(segment({ seq: PEER, ack: ISS + 77, flags: SYN | ACK }), 1);
    conn.output(1);
    const [r] = rec.take();
    t.same([r!.flags, r!.seq], [RST, ISS + 77], 'unacceptable ACK in SYN_SENT: RST');
    t.equal(conn.state, TcpState.SYN_SENT);
  }
});

t.test('data in order: delivered, acknowledged every second full segment or after the delay', async (t) => {
  const { conn, rec, log } = established({ delayedAckMs: 40 });
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK | PSH, data: [1, 2, 3] }), 10);
  t.same(log.data, [1, 2, 3]);
  conn.output(10);
  t.same(rec.take(), [], 'a short segment: ACK delayed');
  t.equal(conn.pollAt(), 50);
  conn.poll(50);
  const [a] = rec.take();
  t.equal(a!.ack, PEER + 4);
  const full = new Array<number>(1460).fill(9);
  conn.input(segment({ seq: PEER + 4, ack: ISS + 1, flags: ACK, data: full }), 60);
  conn.output(60);
  t.same(rec.take(), [], 'one full segment: delayed');
  conn.input(segment({ seq: PEER + 4 + 1460, ack: ISS + 1, flags: ACK, data: full }), 61);
  conn.output(61);
  const [b] = rec.take();
  t.equal(b!.ack, PEER + 4 + 2920, 'the second full segment: ACK at once');
});

t.test('out of order: held, SACKed, duplicate ACK at once, merged when the hole fills; bounded', async (t) => {
  const { conn, rec, log } = established({ maxOooRanges: 2 }, { sackPermitted: true });
  conn.input(segment({ seq: PEER + 11, ack: ISS + 1, flags: ACK, data: [11, 12] }), 5);
  conn.output(5);
  const [d] = rec.take();
  t.equal(d!.ack, PEER + 1, 'duplicate ACK');
  t.same(d!.sack, [PEER + 11, PEER + 13], 'SACK block');
  conn.input(segment({ seq: PEER + 21, ack: ISS + 1, flags: ACK, data: [21] }), 6);
  conn.output(6);
  t.same(rec.take()[0]!.sack, [PEER + 21, PEER + 22, PEER + 11, PEER + 13], 'most recent block first');
  conn.input(segment({ seq: PEER + 31, ack: ISS + 1, flags: ACK, data: [31] }), 7);
  conn.output(7);
  t.same(rec.take()[0]!.sack.length, 4, 'a third range is beyond the bound: dropped');
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, data: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] }), 8);
  conn.output(8);
  t.equal(rec.take()[0]!.ack, PEER + 13, 'the hole filled: ACK covers the held range');
  t.equal(conn.recvBuffered, 12, 'the filler and the held range wait in the buffer, in order');
  conn.deliver((buf, off, len) => {
    log.data.push(...buf.subarray(off, off + len));
    return len;
  });
  t.same(log.data, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 'delivered in order');
});

t.test('RST and SYN validation (RFC 5961), old duplicates, PAWS', async (t) => {
  {
    const { conn, rec, log } = established();
    conn.input(segment({ seq: PEER + 100, flags: RST }), 5);
    conn.output(5);
    t.equal(conn.state, TcpState.ESTABLISHED, 'RST in window but not exact: kept');
    t.equal(rec.take()[0]!.flags, ACK, 'challenge ACK');
    conn.input(segment({ seq: PEER + 10_000_000, flags: RST }), 6);
    conn.output(6);
    t.same(rec.take(), [], 'RST out of window: ignored silently');
    conn.input(segment({ seq: PEER + 1, flags: RST }), 7);
    t.same(log.aborted, ['reset'], 'exact RST resets');
  }
  {
    const { conn, rec } = established();
    conn.input(segment({ seq: PEER + 1, flags: SYN }), 5);
    conn.output(5);
    t.equal(conn.state, TcpState.ESTABLISHED);
    t.equal(rec.take()[0]!.flags, ACK, 'SYN in ESTABLISHED: challenge ACK');
    conn.input(segment({ seq: PEER - 100, ack: ISS + 1, flags: ACK, data: [1] }), 6);
    conn.output(6);
    t.equal(rec.take()[0]!.ack, PEER + 1, 'old duplicate: ACK');
    conn.input(segment({ seq: PEER + 1, ack: ISS + 99, flags: ACK }), 7);
    conn.output(7);
    t.equal(rec.take()[0]!.flags, ACK, 'ACK of unsent data: ACK back, dropped');
  }
  {
    const { conn, rec, log } = established({}, { timestamp: true, tsVal: 1000 });
    conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, data: [1], options: { timestamp: true, tsVal: 1005, tsEcr: 0 } }), 5);
    conn.input(segment({ seq: PEER + 2, ack: ISS + 1, flags: ACK, data: [2], options: { timestamp: true, tsVal: 900, tsEcr: 0 } }), 6);
    t.same(log.data, [1], 'PAWS: an older timestamp is dropped');
    t.equal(conn.stats.pawsDropped, 1);
    rec.take();
  }
});

t.test('window scaling both ways, zero window and persist probes', async (t) => {
  const { conn, rec } = established({ recvBufferMax: 1 << 20 }, { windowScale: 2 });
  conn.output(2);
  rec.take();
  // Our window: 1 MiB at a scale of 5 → 32768 in the field.
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, data: [1] }), 3);
  conn.output(3);
  conn.poll(100);
  const [w] = rec.take();
  t.ok(w!.window >= 32000 && w!.window <= 32768, `scaled window field ${w!.window}`);
  // The peer's window is scaled by 2: 10 << 2 = 40 bytes.
  conn.input(segment({ seq: PEER + 2, ack: ISS + 1, flags: ACK, window: 10 }), 4);
  conn.send(new Uint8Array(100).fill(5));
  conn.output(5);
  const sent = rec.take();
  t.equal(
    sent.reduce((n, s) => n + s.data.length, 0),
    40,
    'sends exactly the scaled window',
  );
  // The peer acknowledges with a zero window: the persist timer probes with one byte.
  conn.input(segment({ seq: PEER + 2, ack: ISS + 41, flags: ACK, window: 0 }), 6);
  conn.output(6);
  t.same(rec.take(), []);
  const at1 = conn.pollAt();
  t.ok(at1 < Infinity, 'persist timer armed');
  conn.poll(at1);
  const [p1] = rec.take();
  t.equal(p1!.data.length, 1, 'a 1-byte probe');
  const at2 = conn.pollAt();
  conn.poll(at2);
  rec.take();
  t.ok(conn.pollAt() - at2 > at2 - at1, 'probe interval backs off');
  conn.input(segment({ seq: PEER + 2, ack: ISS + 41, flags: ACK, window: 100 }), at2 + 1);
  conn.output(at2 + 1);
  t.equal(
    rec.take().reduce((n, s) => n + s.data.length, 0),
    60,
    'window reopened: the rest goes',
  );
});

t.test('receive backpressure: the window shrinks while the application takes nothing', async (t) => {
  const { conn, rec, log } = established({ recvBufferMax: 4096, delayedAckMs: 1 });
  log.accept = 0;
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, data: new Array<number>(1000).fill(1) }), 5);
  conn.poll(10);
  const [a] = rec.take();
  t.equal(a!.ack, PEER + 1001);
  t.equal(a!.window, 3096, 'the window shrank by what waits (the right edge stays)');
  conn.input(segment({ seq: PEER + 1001, ack: ISS + 1, flags: ACK, data: new Array<number>(3096).fill(2) }), 11);
  conn.poll(20);
  t.equal(rec.take()[0]!.window, 0, 'buffer full: zero window');
  t.equal(conn.recvBuffered, 4096);
  log.accept = Infinity;
  conn.deliver((_buf, _off, len) => len);
  conn.output(21);
  const [u] = rec.take();
  t.equal(u!.window, 4096, 'window update after the application took it');
});

t.test('half-close each way and the closing states', async (t) => {
  {
    // We close first: FIN_WAIT_1 → FIN_WAIT_2 → TIME_WAIT → CLOSED; data still arrives meanwhile.
    const { conn, rec, log } = established({ timeWaitMs: 500 });
    conn.close();
    t.equal(conn.state, TcpState.FIN_WAIT_1);
    conn.output(2);
    const [f] = rec.take();
    t.same([f!.flags & FIN, f!.seq], [FIN, ISS + 1]);
    conn.input(segment({ seq: PEER + 1, ack: ISS + 2, flags: ACK }), 3);
    t.equal(conn.state, TcpState.FIN_WAIT_2);
    conn.input(segment({ seq: PEER + 1, ack: ISS + 2, flags: ACK, data: [7] }), 4);
    t.same(log.data, [7], 'data toward the half-closed side');
    conn.input(segment({ seq: PEER + 2, ack: ISS + 2, flags: ACK | FIN }), 5);
    t.equal(conn.state, TcpState.TIME_WAIT);
    t.equal(log.peerClosed, 1);
    conn.output(5);
    t.equal(rec.take()[0]!.ack, PEER + 3);
    conn.poll(505);
    t.equal(conn.state, TcpState.CLOSED);
    t.equal(log.closed, 1);
  }
  {
    // The peer closes first: CLOSE_WAIT (we keep sending) → LAST_ACK → CLOSED.
    const { conn, rec, log } = established();
    conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK | FIN }), 2);
    t.equal(conn.state, TcpState.CLOSE_WAIT);
    t.equal(log.peerClosed, 1);
    conn.send(Uint8Array.of(1, 2));
    conn.close();
    t.equal(conn.state, TcpState.LAST_ACK);
    conn.output(3);
    const out = rec.take();
    const last = out.at(-1)!;
    t.same(last.data, [1, 2]);
    t.ok(last.flags & FIN, 'FIN rides with the data');
    conn.input(segment({ seq: PEER + 2, ack: ISS + 4, flags: ACK }), 4);
    t.equal(conn.state, TcpState.CLOSED);
    t.equal(log.closed, 1);
  }
  {
    // Simultaneous close: FIN_WAIT_1 → CLOSING → TIME_WAIT.
    const { conn } = established();
    conn.close();
    conn.output(2);
    conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK | FIN }), 3);
    t.equal(conn.state, TcpState.CLOSING);
    conn.input(segment({ seq: PEER + 2, ack: ISS + 2, flags: ACK }), 4);
    t.equal(conn.state, TcpState.TIME_WAIT);
  }
});

t.test('retransmission timeout: Karn, backoff, abort after the retries', async (t) => {
  const { conn, rec, log } = established({ rtoInitialMs: 1000, rtoMinMs: 200, dataRetries: 3 });
  conn.send(Uint8Array.of(1, 2, 3));
  conn.output(10);
  rec.take();
  const t1 = conn.pollAt();
  t.equal(t1, 210, 'RTO from the handshake sample (1 ms), at the 200 ms floor');
  conn.poll(t1);
  const [r1] = rec.take();
  t.same(r1!.data, [1, 2, 3], 'retransmitted');
  const t2 = conn.pollAt();
  t.equal(t2 - t1, 400, 'backed off ×2');
  conn.poll(t2);
  conn.poll(conn.pollAt());
  conn.poll(conn.pollAt());
  t.same(log.aborted, ['timeout'], 'gives up after the retries');
  t.equal(conn.state, TcpState.CLOSED);
});

t.test('fast retransmit on three duplicate ACKs, NewReno partial ACK', async (t) => {
  const { conn, rec } = established({ rtoInitialMs: 1000 });
  const data = new Uint8Array(5 * 1460).map((_, i) => i & 0xff);
  conn.send(data);
  conn.output(10);
  const first = rec.take();
  t.equal(first.length, 5);
  for (let i = 0; i < 3; i++) conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK }), 20 + i);
  conn.output(25);
  const [fr] = rec.take();
  t.equal(fr!.seq, ISS + 1, 'fast retransmit of the first segment');
  t.equal(conn.stats.fastRetransmits, 1);
  // A partial ACK (the first segment only): the next hole goes at once.
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1 + 1460, flags: ACK }), 30);
  conn.output(30);
  const [pr] = rec.take();
  t.equal(pr!.seq, ISS + 1 + 1460, 'NewReno: partial ACK retransmits the next segment');
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1 + 5 * 1460, flags: ACK }), 40);
  t.equal(conn.pollAt(), Infinity, 'all acknowledged: no timer');
});

t.test('the congestion window grows by the bytes ACKs cover, however many ACKs cover them (RFC 3465)', async (t) => {
  const MSS = 1460;
  /** A connection with `flight` segments sent and the window at IW10; ssthresh as given. */
  const start = (ssthresh?: number) => {
    const c = established({ rtoInitialMs: 1000 });
    if (ssthresh !== undefined) (c.conn as unknown as { ssthresh: number }).ssthresh = ssthresh;
    c.conn.send(new Uint8Array(40 * MSS));
    c.conn.output(10);
    t.equal(c.rec.take().length, 10, 'IW10: ten segments');
    return c;
  };
  /** Segments sent once `acks` ACKs, evenly spaced, have covered the ten in flight. */
  const sentAfter = (ssthresh: number | undefined, acks: number): number => {
    const { conn, rec } = start(ssthresh);
    for (let i = 1; i <= acks; i++) conn.input(segment({ seq: PEER + 1, ack: ISS + 1 + Math.round((10 * MSS * i) / acks), flags: ACK }), 20 + i);
    conn.output(40);
    return rec.take().length;
  };
  t.equal(sentAfter(undefined, 10), 20, 'slow start, an ACK per segment: the window doubles');
  t.equal(sentAfter(undefined, 1), 20, 'slow start, one ACK for all ten: the same');
  t.equal(sentAfter(undefined, 2), 20, 'or two');
  t.equal(sentAfter(10 * MSS, 10), 11, 'congestion avoidance, an ACK per segment: one segment more per window');
  t.equal(sentAfter(10 * MSS, 1), 11, 'congestion avoidance, one ACK for the window: the same');
  t.equal(sentAfter(15 * MSS, 1), 15, 'slow start up to ssthresh, the rest counted toward avoidance');
});

t.test('an echo older than the last timeout gives no RTT sample (Karn, with timestamps): the timer does not feed on itself', async (t) => {
  /** The RTO after `timeouts` rounds of: a segment, its timeout, an ACK echoing the first copy's
   *  time (it had arrived; the ACK was lost); then a segment acknowledged 1 ms later. */
  const rtoAfter = (timeouts: number): number => {
    const { conn, rec } = established({ rtoInitialMs: 1000, rtoMinMs: 10 }, { timestamp: true, tsVal: 1000 });
    let now = 10;
    let una = ISS + 1;
    let peerTs = 1001;
    for (let i = 0; i < timeouts; i++) {
      conn.send(Uint8Array.of(i));
      conn.output(now);
      rec.take();
      const sentAt = now;
      now = conn.pollAt();
      conn.poll(now); // the retransmission
      rec.take();
      now += 1;
      una += 1;
      conn.input(segment({ seq: PEER + 1, ack: una, flags: ACK, options: { timestamp: true, tsVal: peerTs++, tsEcr: sentAt } }), now);
      now += 5;
    }
    conn.send(Uint8Array.of(9));
    conn.output(now);
    rec.take();
    conn.input(segment({ seq: PEER + 1, ack: una + 1, flags: ACK, options: { timestamp: true, tsVal: peerTs, tsEcr: now } }), now + 1);
    conn.send(Uint8Array.of(10));
    conn.output(now + 2);
    return conn.pollAt() - (now + 2);
  };
  const clean = rtoAfter(0);
  t.equal(rtoAfter(1), clean, 'after one such timeout, the RTO a clean connection has');
  t.equal(rtoAfter(6), clean, 'after six');
});

t.test('once an echo newer than the timeout comes, the timeout is forgotten: 2^31 ms later, echoes still give samples', async (t) => {
  const { conn, rec } = established({ rtoInitialMs: 1000, rtoMinMs: 10 }, { timestamp: true, tsVal: 1000 });
  let now = 10;
  conn.send(Uint8Array.of(1));
  conn.output(now);
  rec.take();
  now = conn.pollAt();
  conn.poll(now); // the timeout and its retransmission
  rec.take();
  now += 1;
  conn.input(segment({ seq: PEER + 1, ack: ISS + 2, flags: ACK, options: { timestamp: true, tsVal: 1001, tsEcr: now - 1 } }), now);
  /** The RTO armed for a segment sent at `at` and acknowledged `rtt` ms later, echoing its time. */
  const rtoAfterSample = (at: number, rtt: number, una: number, tsVal: number): number => {
    conn.send(Uint8Array.of(2));
    conn.output(at);
    rec.take();
    conn.input(segment({ seq: PEER + 1, ack: una, flags: ACK, options: { timestamp: true, tsVal, tsEcr: at } }), at + rtt);
    conn.send(Uint8Array.of(3));
    conn.output(at + rtt);
    const rto = conn.pollAt() - (at + rtt);
    conn.input(segment({ seq: PEER + 1, ack: una + 1, flags: ACK, options: { timestamp: true, tsVal: tsVal + 1, tsEcr: at + rtt } }), at + rtt + 1);
    return rto;
  };
  const before = rtoAfterSample(now + 5, 1, ISS + 3, 1002);
  // 2^31 ms on (about 25 days: an idle SSH session), the timeout's time is "after" every echo in
  // 32-bit serial arithmetic; a 400 ms sample must still move the RTO.
  const after = rtoAfterSample(now + 2 ** 31 + 100, 400, ISS + 5, 2000);
  t.ok(after > before + 100, `the 400 ms sample counted (RTO ${before} → ${after} ms)`);
});

t.test('a transmitter that cannot send keeps the segment for the next output', async (t) => {
  const { conn, rec } = established();
  rec.refuse = true;
  conn.send(Uint8Array.of(1, 2, 3));
  conn.output(5);
  t.same(rec.take(), []);
  rec.refuse = false;
  conn.output(6);
  const [s] = rec.take();
  t.same([s!.seq, s!.data], [ISS + 1, [1, 2, 3]], 'sent as new data later');
  t.equal(conn.stats.retransmits, 0);
});

t.test('random segments: what the connection answers stays within what it was sent and sent', async (t) => {
  const { conn, rec } = established();
  let x = 12345;
  const rnd = () => ((x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 8) & 0xff;
  let received = 0; // payload bytes offered, an upper bound on what may be acknowledged
  const bad: string[] = [];
  for (let i = 0; i < 2000 && bad.length === 0; i++) {
    const data = Array.from({ length: rnd() % 40 }, rnd);
    received += data.length + 1; // (+1: a FIN)
    const s = segment({ seq: (rnd() << 24) | (rnd() << 16) | (rnd() << 8) | rnd(), ack: ISS + (rnd() % 4), flags: rnd(), window: rnd() * 256, data });
    conn.input(s, i);
    conn.output(i);
    const out = rec.take();
    // An answer at most (an ACK, a challenge ACK or a RST; challenge ACKs are rate-limited).
    if (out.length > 1) bad.push(`segment ${i}: ${out.length} answers`);
    for (const o of out) {
      // We had nothing to send: no data, no SYN; our sequence numbers stay ISS + 1 (+1 after a FIN).
      if (o.data.length !== 0 || (o.flags & SYN) !== 0) bad.push(`segment ${i}: sent data or SYN`);
      if ((o.flags & RST) === 0 && (o.seq < ISS + 1 || o.seq > ISS + 2)) bad.push(`segment ${i}: seq ${o.seq}`);
      // What we acknowledge was received: from PEER + 1, at most what arrived.
      if ((o.flags & ACK) !== 0 && (o.flags & RST) === 0 && (o.ack < PEER + 1 || o.ack > PEER + 1 + received)) bad.push(`segment ${i}: ack ${o.ack}`);
    }
    if (conn.state === TcpState.CLOSED) break;
  }
  t.same(bad, [], '2000 random segments held to those invariants');
});

t.test('a close before the handshake completes: the FIN follows the handshake and the data', async (t) => {
  const { conn, rec } = makeConn({}, ISS);
  conn.connect(0);
  rec.take();
  conn.close();
  t.equal(conn.state, TcpState.SYN_SENT, 'still opening');
  conn.input(segment({ seq: PEER, ack: ISS + 1, flags: SYN | ACK }), 5);
  t.equal(conn.state, TcpState.FIN_WAIT_1);
  conn.output(5);
  const out = rec.take();
  t.ok(
    out.some((s) => (s.flags & FIN) !== 0 && s.seq === ISS + 1),
    'FIN after the handshake',
  );
});

t.test('memory budget: the window offered is what the budget lets the buffer reach; in-window data it cannot hold is dropped and counted', async (t) => {
  const budget = new MemoryBudget(64 * 1024); // reserve 8 KiB
  const hog = budget.account('hog');
  hog.take(48 * 1024); // 8 KiB left to grow into
  const { conn, rec, log } = established({ recvBufferMax: 1 << 20, recvBufferInitial: 4096, memory: budget.account('tcp'), delayedAckMs: 1 });
  log.accept = 0; // the application (host socket) takes nothing
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, data: [1] }), 2);
  conn.poll(10);
  const [a] = rec.take();
  t.equal(a!.window, 4096 + 8192 - 1, 'the SYN-ACK offered the initial buffer plus what may grow; less what waits');
  // The budget shrinks meanwhile (another user takes the rest): data inside the advertised window
  // that no longer fits is dropped, not stored in memory we do not have.
  hog.take(8 * 1024);
  conn.input(segment({ seq: PEER + 2, ack: ISS + 1, flags: ACK, data: new Array<number>(6000).fill(2) }), 11);
  t.equal(conn.stats.memoryDropped, 1);
  t.equal(conn.recvBuffered, 1, 'nothing past what the buffer could hold');
  conn.output(12);
  t.equal(rec.take()[0]!.ack, PEER + 2, 'the ACK says what was kept: the peer sends the rest again');
  hog.give(56 * 1024);
  conn.input(segment({ seq: PEER + 2, ack: ISS + 1, flags: ACK, data: new Array<number>(6000).fill(2) }), 13);
  t.equal(conn.recvBuffered, 6001, 'taken once memory is there');
  conn.release();
  t.equal(budget.account('tcp').used, 0, 'released with the connection');
});

t.test("the send buffer reads ahead at most twice the peer's largest window (64 KiB at least)", async (t) => {
  const { conn } = makeConn({ sendBufferMax: 1 << 20 }, ISS);
  conn.acceptSyn(segment({ seq: PEER, flags: SYN, window: 1000, options: { mss: 1460 } }));
  conn.synAck(0);
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, window: 1000 }), 1);
  t.equal(conn.sendSpace, 64 * 1024, 'a small window: 64 KiB ahead');
  const big = new Uint8Array(200 * 1024);
  t.equal(conn.send(big), 64 * 1024);
  t.equal(conn.sendSpace, 0);
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, window: 60000 }), 2);
  t.equal(conn.sendSpace, 120000 - 64 * 1024, 'the window grew: more may wait');
});

t.test('an application that sends from sendSpace never sends past the right edge the ACK offered', async (t) => {
  // The TCP NAT refills from the host socket when the guest's ACK frees room; an output from
  // inside the ACK step once used the old window at the new SND.UNA and overran the guest's
  // window (it dropped the overrun, and the transfer stalled on retransmission timeouts).
  const rec = new Recorder();
  const log = newLog();
  let conn!: TcpConnection;
  const events = { ...recordingEvents(log), sendSpace: () => conn.output(5) };
  conn = new TcpConnection({ mss: 1460 }, events, rec, { iss: ISS, tsOffset: 0 });
  conn.acceptSyn(segment({ seq: PEER, flags: SYN, window: 8760, options: { mss: 1460 } }));
  conn.synAck(0);
  conn.input(segment({ seq: PEER + 1, ack: ISS + 1, flags: ACK, window: 8760 }), 1);
  rec.take();
  t.equal(conn.send(new Uint8Array(40_000)), 40_000);
  conn.output(2);
  const first = rec.take();
  t.equal(
    first.reduce((n, s) => n + s.data.length, 0),
    8760,
    'a window of data goes out',
  );
  // Four segments acknowledged, but the receiver's buffer filled: the right edge stays put.
  const ack = ISS + 1 + 4 * 1460;
  const edge = ISS + 1 + 8760;
  conn.input(segment({ seq: PEER + 1, ack, flags: ACK, window: edge - ack }), 3);
  conn.output(4);
  const after = rec.take();
  const overrun = after.filter((s) => s.data.length > 0 && s.seq + s.data.length - edge > 0);
  t.same(
    overrun.map((s) => [s.seq, s.data.length]),
    [],
    'nothing beyond the right edge',
  );
  t.equal(log.sendSpace, 0, 'sendSpace went to the application');
});

t.test('sequence numbers across 2^31 and 2^32: segments carry them unsigned, ACKs match', async (t) => {
  for (const iss of [0x7ffff000, 0xfffff000]) {
    const { conn, rec } = makeConn({ mss: 1000 }, iss);
    const peer = 0xffffff00;
    conn.acceptSyn(segment({ seq: peer, flags: SYN, window: 65535, options: { mss: 1000 } }));
    conn.synAck(0);
    const [synAck] = rec.take();
    t.equal(synAck!.seq, iss, `SYN-ACK: ISS ${iss.toString(16)}, unsigned`);
    t.equal(synAck!.ack, (peer + 1) >>> 0);
    conn.input(segment({ seq: peer + 1, ack: iss + 1, flags: ACK, window: 65535 }), 1);
    t.equal(conn.send(new Uint8Array(8000).fill(7)), 8000);
    conn.output(2);
    const sent = rec.take().filter((s) => s.data.length > 0);
    t.same(
      sent.map((s) => s.seq),
      Array.from({ length: 8 }, (_, i) => (iss + 1 + i * 1000) >>> 0),
      'eight segments, numbered across the boundary',
    );
    t.ok(
      sent.every((s) => s.seq >= 0 && s.ack >= 0),
      'never negative',
    );
    // The peer acknowledges everything (its ACK wrapped too) and sends data over its own wrap.
    conn.input(segment({ seq: peer + 1, ack: (iss + 8001) >>> 0, flags: ACK | PSH, window: 65535, data: new Uint8Array(300).fill(1) }), 3);
    conn.poll(conn.pollAt()); // the delayed ACK
    const ack = rec.take().pop();
    t.equal(ack!.seq, (iss + 8001) >>> 0, 'our next sequence number, unsigned');
    t.equal(ack!.ack, (peer + 301) >>> 0, "the peer's data acknowledged across its wrap");
  }
});
