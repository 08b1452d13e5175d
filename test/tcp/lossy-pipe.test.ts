// Two endpoints joined by a simulated link that drops, reorders and duplicates segments
// (deterministically, from a seed) on an injected clock: megabytes each way arrive intact and in
// order, and both sides close cleanly — retransmission, fast recovery, SACK-receiver and
// reassembly under fault injection.
import t from 'tap';
import { TcpConnection, TcpState } from '../../src/tcp/endpoint.js';
import type { OutSegment, TcpEvents, TcpTransmitter } from '../../src/tcp/endpoint.js';
import { TcpSegment, emitTcpV4, tcpHeaderLength } from '../../src/wire/index.js';
import { A, B, prng } from './support.js';

interface InFlight {
  at: number;
  to: Side;
  bytes: Uint8Array;
}

interface Side {
  conn: TcpConnection;
  received: Uint8Array;
  got: number;
  toSend: Uint8Array;
  sent: number;
  peerClosed: boolean;
  closed: boolean;
}

function run(loss: number, reorder: number, dup: number, seed: number, size: number) {
  const rnd = prng(seed);
  let now = 0;
  const queue: InFlight[] = [];
  const view = new TcpSegment();
  const sides: Side[] = [];
  const link = (from: () => Side): TcpTransmitter => ({
    transmit(conn: TcpConnection, s: OutSegment): boolean {
      const repr = { srcPort: 1, dstPort: 2, seq: s.seq, ack: s.ack, flags: s.flags, window: s.window, options: s.options, payloadLength: s.dataLength };
      const hl = tcpHeaderLength(repr);
      const b = new Uint8Array(hl + s.dataLength);
      conn.copySendData(s.dataOffset, s.dataLength, b, hl);
      emitTcpV4(b, 0, repr, A, B);
      const to = sides[0] === from() ? sides[1]! : sides[0]!;
      if (rnd() < loss) return true;
      const delay = 1 + (rnd() < reorder ? rnd() * 5 : 0);
      queue.push({ at: now + delay, to, bytes: b });
      if (rnd() < dup) queue.push({ at: now + delay + rnd() * 3, to, bytes: b });
      return true;
    },
  });
  const events = (side: () => Side): TcpEvents => ({
    established: () => undefined,
    data: (_c, d) => {
      const s = side();
      s.received.set(d, s.got);
      s.got += d.length;
      return d.length;
    },
    peerClosed: () => {
      const s = side();
      s.peerClosed = true;
    },
    sendSpace: () => undefined,
    aborted: (_c, r) => {
      throw new Error(`aborted: ${r}`);
    },
    closed: () => {
      side().closed = true;
    },
  });
  const mk = (iss: number, index: number): Side => {
    const s: Side = {
      conn: undefined as unknown as TcpConnection,
      received: new Uint8Array(size),
      got: 0,
      toSend: new Uint8Array(size).map((_, i) => (i * (index + 7)) & 0xff),
      sent: 0,
      peerClosed: false,
      closed: false,
    };
    s.conn = new TcpConnection(
      // TIME_WAIT as long as two of the longest retransmission timeouts (RFC 9293's 2 MSL): with
      // less, one side could close while the other's FIN, its ACK lost, still comes again.
      { mss: 1460, sendBufferMax: 256 * 1024, recvBufferMax: 256 * 1024, timeWaitMs: 120_000 },
      events(() => s),
      link(() => s),
      { iss, tsOffset: iss },
    );
    return s;
  };
  const a = mk(111, 0);
  const b = mk(999_999_000, 1);
  sides.push(a, b);
  a.conn.connect(now);
  // B is passive: it accepts A's SYN once it arrives.
  let bOpen = false;
  const feed = (s: Side): void => {
    while (s.sent < size && s.conn.sendSpace > 0) {
      const n = s.conn.send(s.toSend.subarray(s.sent, Math.min(size, s.sent + 65536)));
      if (n === 0) break;
      s.sent += n;
    }
    if (s.sent === size && (s.conn.state === TcpState.ESTABLISHED || s.conn.state === TcpState.CLOSE_WAIT)) s.conn.close();
  };
  let steps = 0;
  while (!(a.closed && b.closed) && steps++ < 2_000_000) {
    const next = Math.min(
      queue.reduce((m, q) => Math.min(m, q.at), Infinity),
      a.conn.pollAt(),
      b.conn.pollAt(),
    );
    if (next === Infinity) break;
    now = Math.max(now, next);
    for (let i = 0; i < queue.length;) {
      const q = queue[i]!;
      if (q.at > now) {
        i++;
        continue;
      }
      queue.splice(i, 1);
      view.at(q.bytes, 0, q.bytes.length);
      if (q.to === b && !bOpen) {
        if (view.syn && !view.hasAck && b.conn.acceptSyn(view)) {
          bOpen = true;
          b.conn.synAck(now);
        }
        continue;
      }
      q.to.conn.input(view, now);
    }
    for (const s of sides) {
      if (s.conn.pollAt() <= now) s.conn.poll(now);
      if (s === a || bOpen) {
        if (s.conn.state >= TcpState.ESTABLISHED) feed(s);
        s.conn.output(now);
      }
    }
  }
  return { a, b, now, steps };
}

for (const [loss, reorder, dup] of [
  [0, 0, 0],
  [0.01, 0.05, 0.01],
  [0.05, 0.1, 0.05],
  [0.2, 0.2, 0.1],
] as const) {
  // The harshest link with ten seeds: each a different sequence of losses and timeouts.
  for (const seed of loss >= 0.2 ? [42, 1, 2, 3, 4, 5, 6, 7, 8, 9] : [42])
    t.test(`loss ${loss * 100}%, reorder ${reorder * 100}%, duplicates ${dup * 100}%, seed ${seed}`, async (t) => {
      const size = loss >= 0.2 ? 256 * 1024 : 2 * 1024 * 1024;
      const { a, b, now } = run(loss, reorder, dup, seed, size);
      t.equal(b.got, size, `A → B: all ${size} bytes`);
      t.ok(Buffer.from(b.received).equals(Buffer.from(a.toSend)), 'A → B: intact, in order');
      t.equal(a.got, size, 'B → A: all bytes');
      t.ok(Buffer.from(a.received).equals(Buffer.from(b.toSend)), 'B → A: intact, in order');
      t.ok(a.peerClosed && b.peerClosed, 'both saw the other FIN');
      t.ok(a.closed && b.closed, `both closed cleanly (simulated ${Math.round(now)} ms, TIME_WAIT included)`);
      if (loss > 0) t.ok(a.conn.stats.retransmits + b.conn.stats.retransmits > 0, 'losses were repaired by retransmission');
    });
}
