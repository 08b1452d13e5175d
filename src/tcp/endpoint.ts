// One TCP connection facing the guest: the RFC 9293 state machine and its companions — RFC 5961
// (RST and SYN validation, challenge ACKs), RFC 7323 (window scale, timestamps, PAWS), RFC 2018
// (SACK blocks as receiver), RFC 6298 (retransmission timer, Karn's rule), RFC 5681 + RFC 6582
// (slow start, congestion avoidance, fast retransmit, NewReno recovery; the window grows by the
// bytes each ACK covers, RFC 3465, see newAck), RFC 6928 (IW10), RFC 9293
// §3.8.6 (zero-window probing, silly-window avoidance) and RFC 1122 §4.2.3.2 (delayed ACKs).
//
// Read before editing: RFC 9293 §3.10.7 (SEGMENT ARRIVES) — input() follows its steps in order.
//
// Pure: segments, the application's calls and `now` (ms) come in; segments go out through the
// transmitter, only from output() (and abort()). No timers inside: pollAt() says when poll() has
// work. Nothing here imports node:*.
//
// State machine (every transition happens in transition(), which takes one of the TcpInput
// causes below, picks the edge, enters the new state and tells the application):
//
//   LISTEN       acceptSyn + synAck()            → SYN_RECEIVED            §3.10.7.2
//   SYN_SENT     SYN+ACK acceptable              → ESTABLISHED             §3.10.7.3
//                SYN without ACK (simultaneous)  → SYN_RECEIVED            §3.10.7.3
//                RST with acceptable ACK         → CLOSED ('refused')
//   SYN_RECEIVED ACK of our SYN                  → ESTABLISHED             §3.10.7.4 fifth
//                close()                         → FIN_WAIT_1
//   ESTABLISHED  close()                         → FIN_WAIT_1              §3.10.4
//                FIN in sequence                 → CLOSE_WAIT              §3.10.7.4 eighth
//   FIN_WAIT_1   ACK of our FIN                  → FIN_WAIT_2
//                FIN (ours not acked)            → CLOSING
//                FIN (ours acked)                → TIME_WAIT
//   FIN_WAIT_2   FIN                             → TIME_WAIT
//   CLOSE_WAIT   close()                         → LAST_ACK
//   CLOSING      ACK of our FIN                  → TIME_WAIT
//   LAST_ACK     ACK of our FIN                  → CLOSED ('closed' event)
//   TIME_WAIT    timeWaitMs without a new FIN    → CLOSED ('closed' event)
//   any synchronized: RST at RCV.NXT → CLOSED ('reset'); retransmissions exhausted → CLOSED
//   ('timeout'); abort() → RST, CLOSED (no event).
//   LISTEN       close()                         → CLOSED (no event)
import type { MemoryAccount } from '../iface/memory-budget.js';
import { TcpFlags, TcpOptions, doubleFields, parseTcpOptions } from '../wire/index.js';
import type { TcpRepr, TcpSegment } from '../wire/index.js';
import { ByteRing } from './byte-ring.js';

export const TcpState = {
  CLOSED: 0,
  LISTEN: 1,
  SYN_SENT: 2,
  SYN_RECEIVED: 3,
  ESTABLISHED: 4,
  FIN_WAIT_1: 5,
  FIN_WAIT_2: 6,
  CLOSE_WAIT: 7,
  CLOSING: 8,
  LAST_ACK: 9,
  TIME_WAIT: 10,
} as const;
export type TcpState = (typeof TcpState)[keyof typeof TcpState];

const STATE_NAMES = Object.keys(TcpState);
export function tcpStateName(s: TcpState): string {
  return STATE_NAMES[s] ?? String(s);
}

/** What moves a connection between states: the causes of the table at the top of the file. */
const TcpInput = {
  /** synAck(): we answer the guest's SYN. */
  PASSIVE_OPEN: 0,
  /** connect(): we send a SYN. */
  ACTIVE_OPEN: 1,
  /** An acceptable SYN+ACK in SYN_SENT. */
  SYN_ACK: 2,
  /** A SYN without ACK in SYN_SENT (simultaneous open). */
  SIMULTANEOUS_SYN: 3,
  /** The ACK of our SYN in SYN_RECEIVED. */
  ACK_OF_SYN: 4,
  /** close(). */
  CLOSE: 5,
  /** The peer's FIN, in sequence. */
  FIN: 6,
  /** The ACK of our FIN. */
  ACK_OF_FIN: 7,
  /** TIME_WAIT ran out. */
  TIME_WAIT_OVER: 8,
  /** An acceptable RST ('reset'), retransmissions exhausted ('timeout'), a RST answering our SYN
   *  ('refused'): closed, and the application told why. */
  RESET: 9,
  TIMEOUT: 10,
  REFUSED: 11,
  /** abort(): closed, nobody told. */
  ABORT: 12,
} as const;
type TcpInput = (typeof TcpInput)[keyof typeof TcpInput];

export interface TcpConfig {
  mss: number;
  sendBufferMax?: number;
  recvBufferMax?: number;
  /** What each buffer holds before growing (the owner drew it from the budget already). */
  sendBufferInitial?: number;
  recvBufferInitial?: number;
  /** Growth of the buffers beyond their initial size draws from this account (the memory budget):
   *  under pressure the receive window shrinks and reading ahead of the peer stops. */
  memory?: MemoryAccount;
  timeWaitMs?: number;
  rtoInitialMs?: number;
  rtoMinMs?: number;
  rtoMaxMs?: number;
  synRetries?: number;
  dataRetries?: number;
  delayedAckMs?: number;
  windowScaling?: boolean;
  timestamps?: boolean;
  sack?: boolean;
  maxOooRanges?: number;
}

/**
 * The bytes a connection sends from: SND.UNA on, `length` of them. By default a ByteRing the
 * application fills (send(), sendReserve()); the NAT passes its host socket's receive queue
 * instead (KernelSendBuffer), which it fills itself: then the send methods take nothing.
 */
export interface SendBuffer {
  readonly length: number;
  /** Copies [off, off + len) from SND.UNA on into dst at dstOff: the count copied (fewer: the
   *  bytes could not be had, and the segment is not sent). */
  copyOut(off: number, len: number, dst: Uint8Array, dstOff: number): number;
  /** The first n bytes were acknowledged. */
  consume(n: number): void;
  /** The connection is gone. */
  release(): void;
}

export interface OutSegment {
  flags: number;
  seq: number;
  ack: number;
  window: number;
  readonly options: TcpOptions;
  /** Payload: `dataLength` bytes from `dataOffset` of the send buffer (conn.copySendData). */
  dataOffset: number;
  dataLength: number;
  /** When the payload is longer than one segment may be (TSO: maxSegment allowed it), the
   *  payload of each segment it stands for; 0 otherwise. */
  segmentSize: number;
}

/** Fills `r` with an outgoing segment's header fields, from `srcPort` to `dstPort` (the payload
 *  length is the segment's data; the transmitter puts the data after the header). */
export function fillTcpRepr(r: TcpRepr, seg: OutSegment, srcPort: number, dstPort: number): TcpRepr {
  r.srcPort = srcPort;
  r.dstPort = dstPort;
  r.seq = seg.seq;
  r.ack = seg.ack;
  r.flags = seg.flags;
  r.window = seg.window;
  r.options = seg.options;
  r.payloadLength = seg.dataLength;
  return r;
}

export interface TcpTransmitter<Owner = unknown> {
  /** Sends one segment; false when it could not go now (nothing was sent). */
  transmit(conn: TcpConnection<Owner>, seg: OutSegment): boolean;
  /** The largest payload one transmit() may carry (segmentation offload: the link cuts it into
   *  MSS-sized segments); absent or below the MSS: one MSS. Asked once per output(). */
  maxSegment?(conn: TcpConnection<Owner>): number;
}

export interface TcpEvents<Owner = unknown> {
  established(conn: TcpConnection<Owner>): void;
  /** In-order data for the application: it returns how much it took (the rest stays buffered).
   *  Called with each segment's data while nothing is buffered, unless `buffered`. */
  data(conn: TcpConnection<Owner>, data: Uint8Array): number;
  /** The application takes data only through deliver() (the TCP NAT, once per batch): in-order
   *  data always goes to the receive buffer, and data() is called with no bytes only to say some
   *  is there (nothing is allocated per segment). */
  readonly buffered?: boolean;
  /**
   * A `buffered` application's first look at in-order data that arrives while nothing is
   * buffered: true when it took all `len` bytes of bytes[off..] by reference (the TCP NAT keeps
   * them in guest memory for one writev). It settles them (settleTaken) before that memory is
   * reused; until then the connection counts them as taken, not buffered.
   */
  takeData?(conn: TcpConnection<Owner>, bytes: Uint8Array, off: number, len: number): boolean;
  /** A segment's payload is about to be read (copied into the receive buffer or handed to
   *  data()): make it readable (the TCP NAT loads a payload left in guest memory). */
  readingPayload?(): void;
  peerClosed(conn: TcpConnection<Owner>): void;
  /** The peer acknowledged data: the send buffer has room again. Raised once input() has
   *  finished with the segment (its window taken, its data buffered), never in the middle. */
  sendSpace(conn: TcpConnection<Owner>): void;
  aborted(conn: TcpConnection<Owner>, reason: 'reset' | 'timeout' | 'refused'): void;
  closed(conn: TcpConnection<Owner>): void;
}

// ---- sequence arithmetic (RFC 9293 §3.4: modulo 2^32) ----
// Sequence numbers are kept as signed 32-bit integers: V8 holds those as small integers, while an
// unsigned value of 2^31 or more is a heap number, allocated whenever it crosses a call (half the
// sequence space, so half the segments). Segments' fields are made signed on the way in (`| 0`)
// and unsigned again on the way out (OutSegment, `>>> 0`); only the bits matter on the wire.
const sub = (a: number, b: number): number => (a - b) | 0;
const lt = (a: number, b: number): boolean => sub(a, b) < 0;
const le = (a: number, b: number): boolean => sub(a, b) <= 0;
const add = (a: number, n: number): number => (a + n) | 0;

const { FIN, SYN, RST, PSH, ACK } = TcpFlags;
/** RFC 9293 §3.7.1: the MSS assumed when the peer sends none. */
const DEFAULT_MSS = 536;
const TS_OPTION_LEN = 12;
/** RFC 5961 §7: at most this many challenge ACKs per second. */
const CHALLENGE_ACKS_PER_SECOND = 10;
/** No bytes: an empty reservation, and the data of TcpEvents.data for a `buffered` application. */
const NOTHING = new Uint8Array(0);
/** The send buffer reads ahead at most twice the largest window the peer offered, and at least
 *  this much: data beyond that waits in the host socket, not in our memory. */
const MIN_READ_AHEAD = 64 * 1024;
/** Defaults of the buffers' initial sizes. */
export const SEND_BUFFER_INITIAL = 16 * 1024;
export const RECV_BUFFER_INITIAL = 4 * 1024;

/** Removes arr[i], keeping the order (no array made, unlike splice). */
function removeAt<T>(arr: T[], i: number): void {
  for (let j = i; j + 1 < arr.length; j++) arr[j] = arr[j + 1]!;
  arr.pop();
}

/** Inserts `v` at arr[i], keeping the order (no array made, unlike splice). */
function insertAt<T>(arr: T[], i: number, v: T): void {
  arr.push(v);
  for (let j = arr.length - 1; j > i; j--) arr[j] = arr[j - 1]!;
  arr[i] = v;
}

interface OooRange {
  start: number;
  end: number;
  /** For SACK ordering: the most recently changed block goes first (RFC 2018 §4). */
  touched: number;
}

export class TcpConnection<Owner = unknown> {
  state: TcpState = TcpState.LISTEN;
  /** Whose connection this is (the NAT's flow): set by the owner right after construction,
   *  before any segment or event. */
  owner!: Owner;
  readonly stats = {
    segmentsIn: 0,
    segmentsOut: 0,
    retransmits: 0,
    fastRetransmits: 0,
    timeouts: 0,
    dupAcks: 0,
    oooSegments: 0,
    challengeAcks: 0,
    zeroWindowProbes: 0,
    badSegments: 0,
    pawsDropped: 0,
    /** In-window data dropped because the memory budget refused the buffer room for it. */
    memoryDropped: 0,
  };

  // configuration
  private readonly mss: number;
  private readonly timeWaitMs: number;
  private readonly rtoMin: number;
  private readonly rtoMax: number;
  private readonly synRetries: number;
  private readonly dataRetries: number;
  private readonly delayedAckMs: number;
  private readonly maxOoo: number;
  /** fillOptions' marks of the out-of-order ranges already given as SACK blocks. */
  private readonly sackPicked: Uint8Array;
  private readonly wantWscale: boolean;
  private readonly wantTs: boolean;
  private readonly wantSack: boolean;

  // send side (RFC 9293 §3.3.1)
  private readonly iss: number;
  private sndUna: number;
  private sndNxt: number;
  /** Highest sequence number sent (SND.NXT moves back on a timeout; this does not). */
  private sndMax: number;
  private sndWnd = 0;
  private maxSndWnd = 0;
  private sndWl1 = 0;
  private sndWl2 = 0;
  private sndWscale = 0;
  private peerMss = DEFAULT_MSS;
  private readonly sndBuf: SendBuffer;
  /** The send buffer when it is ours to fill (absent when the application brought its own). */
  private readonly sndRing: ByteRing | undefined;
  /** Sequence number of the send buffer's first byte (ISS + 1, then SND.UNA). */
  private sndBufSeq: number;
  private synAcked = false;
  private finQueued = false;
  private synPending = false;

  // receive side
  private irs = 0;
  private rcvNxt = 0;
  /** RCV.NXT + the window last advertised: the right edge never moves left (§3.8.6.2.2). */
  private rcvAdv = 0;
  private rcvWscale = 0;
  /** The window our last SYN or SYN-ACK offered. */
  private synWindow = 0;
  private readonly rcvBuf: ByteRing;
  private readonly ooo: OooRange[] = [];
  private peerFin = false;
  private peerClosedFired = false;
  /** In-order bytes the application took by reference (takeData), not settled yet. */
  private taken = 0;
  private fullSegmentsUnacked = 0;

  // options in use
  private tsOn = false;
  private wscaleOn = false;
  private sackOn = false;
  private tsRecent = 0;
  /** Our timestamp when the retransmission timer last fired (timedOut: until an echo from after
   *  it comes): older echoes give no RTT sample (see newAck). */
  private tsAtTimeout = 0;
  private timedOut = false;
  private lastAckSent = 0;
  private readonly tsOffset: number = 0;

  // timers and congestion control
  private srtt = 0;
  private rttvar = 0;
  private rto: number;
  private rtoAt = Infinity;
  private retries = 0;
  /** Karn: a sample is only taken for a segment sent once (without timestamps). */
  private rttSeq = 0;
  private rttTime = -1;
  private delayedAckAt = Infinity;
  private ackNow = false;
  private persistAt = Infinity;
  private persistBackoff = 0;
  private timeWaitAt = Infinity;
  private cwnd = 0;
  /** Bytes acknowledged in congestion avoidance since cwnd last grew (RFC 3465 §2.1). */
  private bytesAcked = 0;
  private ssthresh = 0x7fffffff;
  private dupAcks = 0;
  private recover = 0;
  private inRecovery = false;
  private retransmitOne = false;
  /** The segment being input freed send-buffer room: sendSpace is raised when it is done. */
  private sendSpaceDue = false;
  /** deliver()'s taker for in-order data: the application's data event (made once). */
  private readonly toApplication = (buf: Uint8Array, off: number, len: number): number => this.events.data(this, buf.subarray(off, off + len));
  private challengeWindowStart = 0;
  private challengeCount = 0;
  private sendRst = false;

  private readonly seg: OutSegment = doubleFields(
    { flags: 0, seq: 0, ack: 0, window: 0, options: new TcpOptions(), dataOffset: 0, dataLength: 0, segmentSize: 0 },
    'seq',
    'ack',
  );
  private readonly inOpts = new TcpOptions();

  constructor(
    config: TcpConfig,
    private readonly events: TcpEvents<Owner>,
    private readonly tx: TcpTransmitter<Owner>,
    init: { iss: number; tsOffset: number; sendBuffer?: SendBuffer },
  ) {
    this.mss = config.mss;
    this.timeWaitMs = config.timeWaitMs ?? 2000;
    this.rtoMin = config.rtoMinMs ?? 200;
    this.rtoMax = config.rtoMaxMs ?? 60_000;
    this.rto = config.rtoInitialMs ?? 1000;
    this.synRetries = config.synRetries ?? 6;
    this.dataRetries = config.dataRetries ?? 12;
    this.delayedAckMs = config.delayedAckMs ?? 40;
    this.maxOoo = config.maxOooRanges ?? 16;
    this.sackPicked = new Uint8Array(this.maxOoo);
    this.wantWscale = config.windowScaling ?? true;
    this.wantTs = config.timestamps ?? true;
    this.wantSack = config.sack ?? true;
    this.sndRing = init.sendBuffer ? undefined : new ByteRing(config.sendBufferMax ?? 1 << 20, config.sendBufferInitial ?? SEND_BUFFER_INITIAL, config.memory);
    this.sndBuf = init.sendBuffer ?? this.sndRing!;
    this.rcvBuf = new ByteRing(config.recvBufferMax ?? 1 << 20, config.recvBufferInitial ?? RECV_BUFFER_INITIAL, config.memory);
    this.iss = init.iss | 0;
    this.sndUna = this.sndNxt = this.sndMax = this.iss;
    this.sndBufSeq = add(this.iss, 1);
    doubleFields(this, 'tsRecent', 'tsOffset', 'tsAtTimeout'); // timestamps: unsigned 32-bit
    this.tsOffset = init.tsOffset >>> 0;
    // Our window scale: the smallest shift that lets the receive buffer be advertised (§2.2).
    while (this.rcvWscale < 14 && this.rcvBuf.max >> this.rcvWscale > 0xffff) this.rcvWscale++;
  }

  // ---------------------------------------------------------------- opening

  acceptSyn(syn: TcpSegment): boolean {
    if (this.state !== TcpState.LISTEN || !syn.syn || syn.hasAck || syn.rst) return false;
    this.takeSynOptions(syn);
    this.irs = syn.seq | 0;
    this.rcvNxt = add(syn.seq | 0, 1);
    this.rcvAdv = this.rcvNxt;
    this.sndWnd = syn.window; // never scaled in a SYN (RFC 7323 §2.2)
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = syn.seq | 0;
    this.sndWl2 = this.iss;
    return true;
  }

  synAck(now: number): void {
    if (this.state !== TcpState.LISTEN) return;
    this.transition(TcpInput.PASSIVE_OPEN, now);
    this.synPending = true;
    this.output(now);
  }

  connect(now: number): void {
    if (this.state !== TcpState.LISTEN) return;
    // Active open: offer everything; the peer's SYN-ACK decides what is used.
    this.rcvWscale = this.wantWscale ? this.rcvWscale : 0;
    this.transition(TcpInput.ACTIVE_OPEN, now);
    this.synPending = true;
    this.output(now);
  }

  /** The peer's SYN options (RFC 7323 §2.2, §3.2; RFC 2018 §2): each used only when both offer. */
  private takeSynOptions(syn: TcpSegment): void {
    const o = this.inOpts;
    parseTcpOptions(syn.bytes, syn.optionsOffset, syn.optionsLength, o);
    this.peerMss = o.mss > 0 ? o.mss : DEFAULT_MSS;
    this.wscaleOn = this.wantWscale && o.windowScale >= 0;
    if (this.wscaleOn) {
      this.sndWscale = Math.min(14, o.windowScale);
    } else {
      this.sndWscale = 0;
      this.rcvWscale = 0;
    }
    this.tsOn = this.wantTs && o.timestamp;
    if (this.tsOn) this.tsRecent = o.tsVal;
    this.sackOn = this.wantSack && o.sackPermitted;
  }

  // ---------------------------------------------------------------- application side

  /** Bytes the application may queue now: up to the read-ahead limit, as the budget allows (0
   *  with a send buffer the application brought). */
  get sendSpace(): number {
    return this.canSend() && this.sndRing ? this.sndRing.room(this.readAhead()) : 0;
  }

  /** Bytes of the send buffer not sent yet. Right after output() they wait for the peer's window,
   *  the congestion window or room on the link: more from the application would wait too. */
  get unsent(): number {
    return Math.max(0, sub(add(this.sndBufSeq, this.sndBuf.length), this.sndNxt));
  }

  /** Bytes output() could send now beyond those in flight, had it them: the peer's window or the
   *  congestion window, whichever is smaller, less what is in flight. While unsent covers it,
   *  more data from the application would only wait. */
  get usableWindow(): number {
    return Math.max(0, Math.min(this.sndWnd, this.cwnd) - sub(this.sndNxt, this.sndUna));
  }

  private canSend(): boolean {
    return !this.finQueued && this.state !== TcpState.CLOSED && this.state !== TcpState.TIME_WAIT;
  }

  /** How full the send buffer may get: twice the largest window the peer offered (what can be in
   *  flight, and as much again ready to go), at least MIN_READ_AHEAD. */
  private readAhead(): number {
    return Math.max(MIN_READ_AHEAD, 2 * this.maxSndWnd);
  }

  send(data: Uint8Array): number {
    if (!this.canSend() || !this.sndRing) return 0;
    return this.sndRing.append(data, 0, data.length, this.readAhead());
  }

  sendReserve(): Uint8Array {
    return this.canSend() && this.sndRing ? this.sndRing.reserve(this.readAhead()) : NOTHING;
  }

  sendCommit(n: number): void {
    this.sndRing?.commit(n);
  }

  /** The transmitter's copy of a segment's data (OutSegment.dataOffset, dataLength): the count
   *  copied (see SendBuffer.copyOut). */
  copySendData(offset: number, len: number, dst: Uint8Array, dstOff: number): number {
    return this.sndBuf.copyOut(offset, len, dst, dstOff);
  }

  get recvBuffered(): number {
    return this.rcvBuf.length;
  }

  /** Hands the buffered in-order data to `take`, a contiguous run at a time, in place in the
   *  receive buffer (buf[off, off + len)); it returns how many bytes it took. Returns the total. */
  deliver(take: (buf: Uint8Array, off: number, len: number) => number): number {
    let total = 0;
    const ring = this.rcvBuf;
    while (ring.length > 0) {
      const run = ring.runLength(0, ring.length);
      const n = Math.max(0, Math.min(run, take(ring.storage, ring.runAt(0), run)));
      ring.consume(n, this.ooo.length === 0); // (out-of-order data keeps its place)
      total += n;
      if (n < run) break;
    }
    if (total > 0 && this.windowUpdateWorthIt()) this.ackNow = true;
    if (this.ooo.length === 0) this.rcvBuf.trim();
    this.firePeerClosed();
    return total;
  }

  /** In-order bytes taken by reference (TcpEvents.takeData) and not settled yet. */
  get takenBytes(): number {
    return this.taken;
  }

  /**
   * Settles what the application took by reference: the first `passed` bytes went on; the rest
   * (takenBytes - passed) go back in front of the receive buffer, where the caller copies them
   * at once with putBack() (offsets from 0, in order); they count against the window like any
   * buffered data. False when the buffer cannot hold them (the budget refused growth): nothing
   * changed, and the caller resets the connection.
   */
  settleTaken(passed: number): boolean {
    const back = this.taken - Math.min(passed, this.taken);
    if (back > 0) {
      let extent = this.rcvBuf.length;
      for (const r of this.ooo) extent = Math.max(extent, this.rcvBuf.length + sub(r.end, this.rcvNxt));
      if (!this.rcvBuf.unshift(back, extent)) return false;
    }
    this.taken = 0;
    this.firePeerClosed();
    return true;
  }

  /** Copies given-back bytes into the front of the receive buffer (see settleTaken). */
  putBack(at: number, src: Uint8Array, srcOff: number, len: number): void {
    this.rcvBuf.writeAt(at, src, srcOff, len);
  }

  /** Frees the buffers (the connection is gone: the owner calls it once it forgets it). */
  release(): void {
    this.sndBuf.release();
    this.rcvBuf.release();
  }

  close(): void {
    switch (this.state) {
      case TcpState.LISTEN:
        this.transition(TcpInput.CLOSE, 0);
        return;
      case TcpState.SYN_SENT:
        // §3.10.4 lets a CLOSE wait for ESTABLISHED when data is queued: the FIN follows the
        // handshake and the data (a forwarded client may send and half-close at once).
        this.finQueued = true;
        return;
      case TcpState.SYN_RECEIVED:
      case TcpState.ESTABLISHED:
      case TcpState.CLOSE_WAIT:
        this.finQueued = true;
        this.transition(TcpInput.CLOSE, 0);
        return;
      default:
        return;
    }
  }

  abort(): void {
    if (this.synchronized() || this.state === TcpState.SYN_RECEIVED) {
      const s = this.seg;
      s.flags = RST | ACK;
      s.seq = this.sndMax >>> 0;
      s.ack = this.rcvNxt >>> 0;
      s.window = 0;
      s.options.reset();
      s.dataOffset = s.dataLength = 0;
      this.tx.transmit(this, s);
      this.stats.segmentsOut++;
    }
    this.transition(TcpInput.ABORT, 0);
  }

  private synchronized(): boolean {
    return this.state >= TcpState.ESTABLISHED;
  }

  // ---------------------------------------------------------------- input

  input(seg: TcpSegment, now: number): void {
    this.stats.segmentsIn++;
    switch (this.state) {
      case TcpState.CLOSED:
      case TcpState.LISTEN:
        return;
      case TcpState.SYN_SENT:
        this.inputSynSent(seg, now);
        break;
      default:
        this.inputSynchronized(seg, now);
    }
    // An application that sends from sendSpace sees the segment whole: its ACK and its window
    // (an output from the middle of the ACK step would use the old window at the new SND.UNA,
    // past the right edge the peer offered).
    if (this.sendSpaceDue) {
      this.sendSpaceDue = false;
      if (this.canSend()) this.events.sendSpace(this);
    }
  }

  /** §3.10.7.3: SYN-SENT. */
  private inputSynSent(seg: TcpSegment, now: number): void {
    const ackOk = seg.hasAck && lt(this.iss, seg.ackI32) && le(seg.ackI32, this.sndMax);
    if (seg.hasAck && !ackOk) {
      if (!seg.rst) this.queueRst(seg.ackI32);
      return;
    }
    if (seg.rst) {
      if (ackOk) this.transition(TcpInput.REFUSED, now);
      return;
    }
    if (!seg.syn) return;
    this.takeSynOptions(seg);
    this.irs = seg.seqI32;
    this.rcvNxt = add(seg.seqI32, 1);
    this.rcvAdv = add(this.rcvNxt, this.synWindow); // what our SYN offered
    this.sndWnd = seg.window;
    this.maxSndWnd = this.sndWnd;
    this.sndWl1 = seg.seqI32;
    this.sndWl2 = seg.ackI32;
    if (ackOk) {
      this.ackOfSyn(seg.ackI32, now);
      this.ackNow = true;
      this.transition(TcpInput.SYN_ACK, now);
    } else {
      // Simultaneous open: answer with SYN-ACK (§3.10.7.3, "fourth").
      this.transition(TcpInput.SIMULTANEOUS_SYN, now);
      this.synPending = true;
    }
  }

  /** §3.10.7.4: every state from SYN-RECEIVED on. */
  private inputSynchronized(seg: TcpSegment, now: number): void {
    const o = this.inOpts;
    parseTcpOptions(seg.bytes, seg.optionsOffset, seg.optionsLength, o);
    let seq = seg.seqI32;
    let dataOff = seg.payloadOffset;
    let dataLen = seg.payloadLength;
    let syn = seg.syn;
    let fin = seg.fin;
    const segLen = dataLen + (syn ? 1 : 0) + (fin ? 1 : 0);

    // RFC 7323 §5.3 PAWS: an old timestamp means an old duplicate (not for RSTs).
    if (this.tsOn && o.timestamp && !seg.rst && lt(o.tsVal, this.tsRecent)) {
      this.stats.pawsDropped++;
      this.ackNow = true;
      return;
    }

    // first: sequence number acceptability (§3.10.7.4 table)
    const wnd = sub(this.rcvAdv, this.rcvNxt);
    let ok: boolean;
    if (segLen === 0) ok = wnd === 0 ? seq === this.rcvNxt : le(this.rcvNxt, seq) && lt(seq, add(this.rcvNxt, wnd));
    else {
      const last = add(seq, segLen - 1);
      ok = wnd > 0 && ((le(this.rcvNxt, seq) && lt(seq, add(this.rcvNxt, wnd))) || (le(this.rcvNxt, last) && lt(last, add(this.rcvNxt, wnd))));
    }
    if (!ok) {
      if (this.state === TcpState.TIME_WAIT && fin) this.timeWaitAt = now + this.timeWaitMs;
      if (!seg.rst) this.ackNow = true;
      this.stats.badSegments++;
      return;
    }

    // second: RST (RFC 5961 §3.2)
    if (seg.rst) {
      if (seq === this.rcvNxt) this.transition(TcpInput.RESET, now);
      else this.challengeAck(now);
      return;
    }

    // Trim what was received before (a retransmission overlapping new data).
    if (lt(seq, this.rcvNxt)) {
      let cut = sub(this.rcvNxt, seq);
      if (syn) {
        syn = false;
        cut--;
      }
      const d = Math.min(cut, dataLen);
      dataOff += d;
      dataLen -= d;
      cut -= d;
      seq = this.rcvNxt;
      if (cut > 0 && fin) fin = false;
    }
    // ...and what lies beyond the window.
    const room = sub(add(this.rcvNxt, wnd), seq);
    if (dataLen > room) {
      dataLen = Math.max(0, room);
      fin = false;
    }

    // fourth: SYN in a synchronized state (RFC 5961 §4): challenge ACK.
    if (syn) {
      if (this.state === TcpState.SYN_RECEIVED && seg.seqI32 === this.irs && !seg.hasAck) {
        this.synPending = true; // the peer lost our SYN-ACK: send it again
        return;
      }
      this.challengeAck(now);
      return;
    }

    // fifth: ACK
    if (!seg.hasAck) return;
    // RFC 7323 §4.3: TS.Recent from a segment covering the last ACK we sent (PAWS passed above).
    if (this.tsOn && o.timestamp && le(seq, this.lastAckSent)) this.tsRecent = o.tsVal;
    if (this.state === TcpState.SYN_RECEIVED) {
      if (!(lt(this.sndUna, seg.ackI32) && le(seg.ackI32, this.sndMax))) {
        this.queueRst(seg.ackI32);
        return;
      }
      this.ackOfSyn(seg.ackI32, now);
      this.sndWnd = seg.window << this.sndWscale;
      this.maxSndWnd = Math.max(this.maxSndWnd, this.sndWnd);
      this.sndWl1 = seq;
      this.sndWl2 = seg.ackI32;
      this.transition(TcpInput.ACK_OF_SYN, now);
      if ((this.state as TcpState) === TcpState.CLOSED) return;
    }
    if (!this.processAck(seg, seq, dataLen, o, now)) return;

    // seventh: data
    if (dataLen > 0 && (this.state === TcpState.ESTABLISHED || this.state === TcpState.FIN_WAIT_1 || this.state === TcpState.FIN_WAIT_2)) {
      if (seq === this.rcvNxt) this.inOrder(seg.bytes, dataOff, dataLen, now);
      else this.outOfOrder(seg.bytes, seq, dataOff, dataLen, now);
    }

    // eighth: FIN, once everything before it is in
    if (fin && add(seq, dataLen) === this.rcvNxt && this.state !== TcpState.CLOSED) this.finReceived(now);
  }

  /** The ACK field (§3.10.7.4 fifth, RFC 5961 §5). Returns false when the segment is dropped. */
  private processAck(seg: TcpSegment, seq: number, dataLen: number, o: TcpOptions, now: number): boolean {
    const ack = seg.ackI32;
    // RFC 5961 §5.2: acceptable ACKs lie in [SND.UNA - MAX.SND.WND, SND.MAX].
    if (lt(this.sndMax, ack)) {
      this.ackNow = true;
      return false;
    }
    if (lt(ack, add(this.sndUna, -Math.max(this.maxSndWnd, 1)))) {
      this.challengeAck(now);
      return false;
    }
    const window = seg.window << this.sndWscale;
    const flight = sub(this.sndMax, this.sndUna);
    if (lt(this.sndUna, ack)) {
      this.newAck(ack, o, now);
    } else if (ack === this.sndUna && dataLen === 0 && !seg.fin && window === this.sndWnd && flight > 0) {
      this.duplicateAck();
    }
    // Window update (§3.10.7.4: SND.WL1 / SND.WL2 keep old segments from shrinking it).
    if (lt(this.sndWl1, seq) || (this.sndWl1 === seq && le(this.sndWl2, ack))) {
      this.sndWnd = window;
      this.maxSndWnd = Math.max(this.maxSndWnd, window);
      this.sndWl1 = seq;
      this.sndWl2 = ack;
      if (window > 0) {
        this.persistAt = Infinity;
        this.persistBackoff = 0;
      }
    }
    // Our FIN acknowledged?
    const finAcked = this.finQueued && this.sndBuf.length === 0 && ack === add(this.sndBufSeq, 1) && this.finSent();
    switch (this.state) {
      case TcpState.FIN_WAIT_1:
      case TcpState.CLOSING:
        if (finAcked) this.transition(TcpInput.ACK_OF_FIN, now);
        break;
      case TcpState.LAST_ACK:
        if (finAcked) {
          this.transition(TcpInput.ACK_OF_FIN, now);
          return false;
        }
        break;
      case TcpState.TIME_WAIT:
        this.ackNow = true;
        this.timeWaitAt = now + this.timeWaitMs;
        break;
    }
    return true;
  }

  /** Whether our FIN (right after the send buffer's data) went out. */
  private finSent(): boolean {
    return lt(add(this.sndBufSeq, this.sndBuf.length), this.sndMax);
  }

  /** The ACK of our SYN: the first RTT sample, and the send buffer starts at ISS + 1. */
  private ackOfSyn(ack: number, now: number): void {
    this.synAcked = true;
    this.synPending = false;
    if (this.retries === 0 && this.rttTime >= 0) this.rttSample(now - this.rttTime);
    this.rttTime = -1;
    this.sndUna = add(this.iss, 1);
    if (lt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
    this.retries = 0;
    this.rtoAt = Infinity;
    // RFC 6928: initial window min(10 MSS, max(2 MSS, 14600)).
    const smss = this.effectiveMss();
    this.cwnd = Math.min(10 * smss, Math.max(2 * smss, 14600));
    if (lt(this.sndUna, ack)) this.newAck(ack, this.inOpts, now);
  }

  /** ACK of new data (RFC 5681 §3.1, RFC 6582 §3.2, RFC 6298 §5). */
  private newAck(ack: number, o: TcpOptions, now: number): void {
    const acked = sub(ack, this.sndUna);
    const smss = this.effectiveMss();
    // RTT: from the timestamp echo (RFC 7323 §4), else the timed segment (Karn: not retransmitted).
    // An echo older than the last timeout's retransmission is Karn's ambiguity again: the
    // receiver echoes what it last took in order (RFC 7323 §4.3), so an ACK the retransmission
    // drew (its first copy had arrived, the ACK had been lost) echoes the first copy's time, and
    // the sample would be the timeout's length; the RTO would feed on itself. The first echo from
    // after the timeout ends that: echoes never go back (PAWS), and a timeout remembered for good
    // would, 2^31 ms on, look later than every echo in serial arithmetic.
    if (this.tsOn && o.timestamp && o.tsEcr !== 0) {
      const rtt = sub((now + this.tsOffset) >>> 0, o.tsEcr);
      if (rtt >= 0 && rtt < 600_000 && !(this.timedOut && lt(o.tsEcr, this.tsAtTimeout))) {
        this.timedOut = false;
        this.rttSample(Math.max(rtt, 1));
      }
    } else if (this.rttTime >= 0 && lt(this.rttSeq, ack)) {
      this.rttSample(now - this.rttTime);
      this.rttTime = -1;
    }
    // Data acknowledged frees the send buffer (the FIN's sequence number is not data).
    const dataAcked = Math.min(sub(ack, this.sndBufSeq), this.sndBuf.length);
    if (dataAcked > 0) {
      // (Nothing lies beyond a send ring's bytes: emptied, it starts again at its beginning.)
      if (this.sndRing) this.sndRing.consume(dataAcked, true);
      else this.sndBuf.consume(dataAcked);
      this.sndBufSeq = add(this.sndBufSeq, dataAcked);
    }
    this.sndUna = ack;
    if (lt(this.sndNxt, this.sndUna)) this.sndNxt = this.sndUna;
    this.retries = 0;
    this.dupAcks = 0;
    if (this.inRecovery) {
      if (le(this.recover, ack)) {
        // Full acknowledgment: leave recovery (RFC 6582 §3.2 step 3).
        this.inRecovery = false;
        this.cwnd = Math.min(this.ssthresh, Math.max(sub(this.sndMax, this.sndUna), smss) + smss);
      } else {
        // Partial acknowledgment: the next hole is lost too (step 4).
        this.retransmitOne = true;
        this.cwnd = Math.max(smss, this.cwnd - acked + smss);
      }
    } else {
      this.grow(acked, smss);
    }
    this.cwnd = Math.min(this.cwnd, 0x3fffffff);
    // RFC 6298 §5.2/5.3: stop the timer when all is acknowledged, else restart it.
    this.rtoAt = this.sndUna === this.sndMax ? Infinity : now + this.rto;
    if (dataAcked > 0) this.sendSpaceDue = true;
  }

  /**
   * Slow start and congestion avoidance by the bytes an ACK covers (RFC 3465's appropriate byte
   * counting), not by the number of ACKs: a guest's ACK covers several segments (delayed ACKs,
   * GRO), and the device passes on only the last of a batch's redundant ACKs (virtio/ack-filter.ts).
   * Counted per ACK (RFC 5681's min(N, SMSS) and SMSS*SMSS/cwnd), the window would grow a fraction
   * as fast as the data moved. Slow start takes all the bytes, up to ssthresh, without RFC 3465's
   * per-ACK limit L (as Linux's tcp_slow_start): the link to the guest has no queue to
   * overflow, vunet writes only into buffers the guest posted; the rest goes to congestion
   * avoidance, which grows by SMSS for each cwnd of bytes acknowledged.
   */
  private grow(acked: number, smss: number): void {
    if (this.cwnd < this.ssthresh) {
      const room = this.ssthresh - this.cwnd;
      if (acked <= room) {
        this.cwnd += acked;
        return;
      }
      this.cwnd = this.ssthresh;
      acked -= room;
    }
    this.bytesAcked += acked;
    if (this.bytesAcked >= this.cwnd) {
      const steps = Math.floor(this.bytesAcked / this.cwnd);
      this.bytesAcked -= steps * this.cwnd;
      this.cwnd += steps * smss;
    }
  }

  /** RFC 5681 §3.2 / RFC 6582 §3.2: three duplicate ACKs start fast retransmit and recovery. */
  private duplicateAck(): void {
    this.stats.dupAcks++;
    this.dupAcks++;
    const smss = this.effectiveMss();
    if (this.inRecovery) {
      this.cwnd += smss; // inflation for each further segment that left the network
      return;
    }
    if (this.dupAcks !== 3) return;
    // RFC 6582 §4.1: only when the cumulative ACK covers more than `recover`.
    if (!lt(this.recover, this.sndUna) && this.recover !== 0) return;
    const flight = sub(this.sndMax, this.sndUna);
    this.ssthresh = Math.max(flight >> 1, 2 * smss);
    this.bytesAcked = 0;
    this.recover = this.sndMax;
    this.inRecovery = true;
    this.cwnd = this.ssthresh + 3 * smss;
    this.retransmitOne = true;
    this.stats.fastRetransmits++;
  }

  private rttSample(r: number): void {
    // RFC 6298 §2.
    if (this.srtt === 0) {
      this.srtt = r;
      this.rttvar = r / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - r);
      this.srtt = 0.875 * this.srtt + 0.125 * r;
    }
    this.rto = Math.min(this.rtoMax, Math.max(this.rtoMin, this.srtt + Math.max(1, 4 * this.rttvar)));
  }

  /** In-order data: to the application, or the buffer; then out-of-order data that now fits. */
  private inOrder(bytes: Uint8Array, off: number, len: number, now: number): void {
    let taken = 0;
    if (this.rcvBuf.length === 0 && this.ooo.length === 0) {
      if (this.events.buffered !== true) {
        this.events.readingPayload?.();
        taken = Math.max(0, Math.min(len, this.events.data(this, bytes.subarray(off, off + len))));
      } else if (this.events.takeData?.(this, bytes, off, len) === true) {
        taken = len;
        this.taken += len;
      }
    }
    if (taken < len) this.events.readingPayload?.();
    if (taken < len && !this.rcvBuf.writeAt(this.rcvBuf.length, bytes, off + taken, len - taken)) {
      // The window we advertised was what the buffer could reach then; the budget has shrunk
      // since: keep what the application took, drop the rest (the peer sends it again).
      this.stats.memoryDropped++;
      len = taken;
      this.ackNow = true;
      if (len === 0) return;
    } else if (taken < len) {
      this.rcvBuf.length += len - taken;
    }
    this.rcvNxt = add(this.rcvNxt, len);
    // Out-of-order ranges the new data reaches join the in-order part.
    let merged = false;
    for (let i = 0; i < this.ooo.length;) {
      const r = this.ooo[i]!;
      if (le(r.start, this.rcvNxt)) {
        if (lt(this.rcvNxt, r.end)) {
          const extra = sub(r.end, this.rcvNxt);
          this.rcvBuf.length += extra;
          this.rcvNxt = r.end;
        }
        removeAt(this.ooo, i);
        merged = true;
        i = 0;
      } else i++;
    }
    // What waited in the buffer (a filled hole, or what the application left) is offered now.
    if (this.rcvBuf.length > 0 && this.ooo.length === 0) {
      if (this.events.buffered === true) this.events.data(this, NOTHING);
      else this.deliver(this.toApplication);
    }
    // RFC 5681 §4.2: ACK at once for every second full segment, when a hole was filled, else
    // within the delayed-ACK time. A segment of several MSS (a guest's TSO, HOST_TSO) counts as
    // that many.
    if (merged || this.ooo.length > 0) this.ackNow = true;
    else if (len >= this.effectiveMss()) {
      this.fullSegmentsUnacked += Math.floor(len / this.effectiveMss());
      if (this.fullSegmentsUnacked >= 2) this.ackNow = true;
    }
    if (!this.ackNow && this.delayedAckAt === Infinity) this.delayedAckAt = now + this.delayedAckMs;
  }

  /** Out-of-order data: parked at its place in the receive buffer, bounded; ACK at once. */
  private outOfOrder(bytes: Uint8Array, seq: number, off: number, len: number, now: number): void {
    this.stats.oooSegments++;
    this.ackNow = true; // RFC 5681 §4.2: a duplicate ACK (with SACK blocks) at once
    const end = add(seq, len);
    // The ranges stay sorted by start and disjoint; the first that the segment touches takes it.
    const ooo = this.ooo;
    let merged: OooRange | undefined;
    let at = 0;
    for (; at < ooo.length; at++) {
      const r = ooo[at]!;
      if (le(r.start, end) && le(seq, r.end)) {
        merged = r;
        break;
      }
      if (lt(end, r.start)) break; // the segment lies before this range: a new one goes here
    }
    if (!merged && ooo.length >= this.maxOoo) return; // the bound: the peer will send it again
    this.events.readingPayload?.();
    if (!this.rcvBuf.writeAt(this.rcvBuf.length + sub(seq, this.rcvNxt), bytes, off, len)) {
      this.stats.memoryDropped++; // no room in the budget: the peer sends it again
      return;
    }
    if (merged) {
      // No range before it touches the segment, so an earlier start keeps the order.
      if (lt(seq, merged.start)) merged.start = seq;
      if (lt(merged.end, end)) merged.end = end;
      merged.touched = now;
      // A later end may reach the ranges after it: they join it.
      while (at + 1 < ooo.length && le(ooo[at + 1]!.start, merged.end)) {
        const b = ooo[at + 1]!;
        if (lt(merged.end, b.end)) merged.end = b.end;
        removeAt(ooo, at + 1);
      }
    } else {
      insertAt(ooo, at, { start: seq, end, touched: now });
    }
  }

  /** The peer's FIN, in sequence (§3.10.7.4 eighth). */
  private finReceived(now: number): void {
    this.rcvNxt = add(this.rcvNxt, 1);
    this.peerFin = true;
    this.ackNow = true;
    this.transition(TcpInput.FIN, now);
    this.firePeerClosed();
  }

  private firePeerClosed(): void {
    if (!this.peerFin || this.peerClosedFired || this.rcvBuf.length > 0 || this.taken > 0) return;
    this.peerClosedFired = true;
    this.events.peerClosed(this);
  }

  private challengeAck(now: number): void {
    // RFC 5961 §7: rate-limited.
    if (now - this.challengeWindowStart >= 1000) {
      this.challengeWindowStart = now;
      this.challengeCount = 0;
    }
    if (this.challengeCount >= CHALLENGE_ACKS_PER_SECOND) return;
    this.challengeCount++;
    this.stats.challengeAcks++;
    this.ackNow = true;
  }

  private rstSeq = 0;
  /** A RST answering an unacceptable ACK (<SEQ=SEG.ACK><CTL=RST>), sent on output(). */
  private queueRst(seq: number): void {
    this.sendRst = true;
    this.rstSeq = seq;
  }

  /**
   * The one place where the state changes: picks the edge for `input` from the current state
   * (the table at the top of the file), enters the new state (its timers) and tells the
   * application. An opening or closing-handshake input with no edge from the current state
   * changes nothing (a FIN again in CLOSE_WAIT, say).
   */
  private transition(input: TcpInput, now: number): void {
    const from = this.state;
    const S = TcpState;
    let to: TcpState = from;
    switch (input) {
      case TcpInput.PASSIVE_OPEN:
        if (from === S.LISTEN) to = S.SYN_RECEIVED;
        break;
      case TcpInput.ACTIVE_OPEN:
        if (from === S.LISTEN) to = S.SYN_SENT;
        break;
      case TcpInput.SYN_ACK:
        if (from === S.SYN_SENT) to = this.finQueued ? S.FIN_WAIT_1 : S.ESTABLISHED;
        break;
      case TcpInput.SIMULTANEOUS_SYN:
        if (from === S.SYN_SENT) to = S.SYN_RECEIVED;
        break;
      case TcpInput.ACK_OF_SYN:
        if (from === S.SYN_RECEIVED) to = this.finQueued ? S.FIN_WAIT_1 : S.ESTABLISHED;
        break;
      case TcpInput.CLOSE:
        if (from === S.LISTEN) to = S.CLOSED;
        else if (from === S.SYN_RECEIVED || from === S.ESTABLISHED) to = S.FIN_WAIT_1;
        else if (from === S.CLOSE_WAIT) to = S.LAST_ACK;
        break;
      case TcpInput.FIN:
        if (from === S.SYN_RECEIVED || from === S.ESTABLISHED) to = S.CLOSE_WAIT;
        // Ours acknowledged already (everything we sent, FIN included): straight to TIME_WAIT.
        else if (from === S.FIN_WAIT_1) to = this.finSent() && this.sndUna === this.sndMax ? S.TIME_WAIT : S.CLOSING;
        else if (from === S.FIN_WAIT_2) to = S.TIME_WAIT;
        break;
      case TcpInput.ACK_OF_FIN:
        if (from === S.FIN_WAIT_1) to = S.FIN_WAIT_2;
        else if (from === S.CLOSING) to = S.TIME_WAIT;
        else if (from === S.LAST_ACK) to = S.CLOSED;
        break;
      case TcpInput.TIME_WAIT_OVER:
        if (from === S.TIME_WAIT) to = S.CLOSED;
        break;
      case TcpInput.RESET:
      case TcpInput.TIMEOUT:
      case TcpInput.REFUSED:
      case TcpInput.ABORT:
        to = S.CLOSED;
        break;
    }
    // (The closing inputs always close: the application hears why even of an edge from CLOSED.)
    if (to === from && input < TcpInput.RESET) return;
    this.state = to;
    // Entering the state: its timers.
    if (to === S.CLOSED) {
      this.rtoAt = this.delayedAckAt = this.persistAt = this.timeWaitAt = Infinity;
      this.ackNow = false;
    } else if (to === S.TIME_WAIT) {
      this.timeWaitAt = now + this.timeWaitMs;
      this.rtoAt = Infinity;
      this.persistAt = Infinity;
    }
    // What the application hears of it.
    switch (input) {
      case TcpInput.SYN_ACK:
      case TcpInput.ACK_OF_SYN:
        this.events.established(this);
        break;
      case TcpInput.ACK_OF_FIN:
      case TcpInput.TIME_WAIT_OVER:
        if (to === S.CLOSED) this.events.closed(this);
        break;
      case TcpInput.RESET:
        this.events.aborted(this, 'reset');
        break;
      case TcpInput.TIMEOUT:
        this.events.aborted(this, 'timeout');
        break;
      case TcpInput.REFUSED:
        this.events.aborted(this, 'refused');
        break;
    }
  }

  // ---------------------------------------------------------------- output

  /** The payload of one segment sent (effective MSS): what a transmitter's maxSegment is counted in. */
  get sendMss(): number {
    return this.effectiveMss();
  }

  /** Sending MSS: the smaller MSS less the timestamp option (RFC 9293 §3.7.1, RFC 7323 §3). */
  private effectiveMss(): number {
    return Math.max(64, Math.min(this.peerMss, this.mss) - (this.tsOn ? TS_OPTION_LEN : 0));
  }

  /** The window to advertise, never moving the right edge left; receiver SWS avoidance. */
  private advertise(): number {
    const free = this.rcvBuf.room();
    const current = Math.max(0, sub(this.rcvAdv, this.rcvNxt));
    let wnd = current;
    // §3.8.6.2.2: move the right edge only by at least min(buffer / 2, MSS).
    if (free - current >= Math.min(this.rcvBuf.max >> 1, this.mss) || free <= 0) wnd = Math.max(current, free);
    const field = Math.min(0xffff, wnd >> this.rcvWscale);
    this.rcvAdv = add(this.rcvNxt, Math.max(current, field << this.rcvWscale));
    return field;
  }

  private windowUpdateWorthIt(): boolean {
    const free = this.rcvBuf.room();
    const current = Math.max(0, sub(this.rcvAdv, this.rcvNxt));
    return free - current >= Math.min(this.rcvBuf.max >> 1, 2 * this.mss);
  }

  /** Fills the options of a segment (SYN options, timestamps, SACK blocks). */
  private fillOptions(syn: boolean, now: number): void {
    const o = this.seg.options.reset();
    if (syn) {
      o.mss = this.mss;
      const active = this.state === TcpState.SYN_SENT;
      if (active ? this.wantWscale : this.wscaleOn) o.windowScale = this.rcvWscale;
      if (active ? this.wantSack : this.sackOn) o.sackPermitted = true;
      if (active ? this.wantTs : this.tsOn) {
        o.timestamp = true;
        o.tsVal = (now + this.tsOffset) >>> 0;
        o.tsEcr = active ? 0 : this.tsRecent;
      }
      return;
    }
    if (this.tsOn) {
      o.timestamp = true;
      o.tsVal = (now + this.tsOffset) >>> 0;
      o.tsEcr = this.tsRecent;
    }
    if (this.sackOn && this.ooo.length > 0) {
      // The most recently changed blocks first (RFC 2018 §4), picked without sorting a copy.
      const ooo = this.ooo;
      const max = Math.min(ooo.length, this.tsOn ? 3 : 4);
      const picked = this.sackPicked;
      picked.fill(0, 0, ooo.length);
      for (let k = 0; k < max; k++) {
        let best = -1;
        for (let i = 0; i < ooo.length; i++) {
          if (picked[i] === 0 && (best < 0 || ooo[i]!.touched > ooo[best]!.touched)) best = i;
        }
        picked[best] = 1;
        o.addSackBlock(ooo[best]!.start, ooo[best]!.end);
      }
    }
  }

  private emit(flags: number, seq: number, dataOffset: number, dataLength: number, now: number, segmentSize = 0): boolean {
    const s = this.seg;
    s.segmentSize = segmentSize;
    s.flags = flags;
    s.seq = seq >>> 0;
    const synFlag = (flags & SYN) !== 0;
    s.ack = (flags & ACK) !== 0 ? this.rcvNxt >>> 0 : 0;
    this.fillOptions(synFlag, now);
    const prevAdv = this.rcvAdv;
    // Window in a SYN is never scaled (RFC 7323 §2.2); it offers what the buffer can reach now.
    if (synFlag) this.synWindow = Math.min(0xffff, this.rcvBuf.room());
    s.window = synFlag ? this.synWindow : this.advertise();
    if (synFlag) this.rcvAdv = add(this.rcvNxt, s.window);
    s.dataOffset = dataOffset;
    s.dataLength = dataLength;
    if (!this.tx.transmit(this, s)) {
      this.rcvAdv = prevAdv;
      return false;
    }
    this.stats.segmentsOut++;
    if ((flags & ACK) !== 0) {
      this.lastAckSent = this.rcvNxt;
      this.ackNow = false;
      this.delayedAckAt = Infinity;
      this.fullSegmentsUnacked = 0;
    }
    return true;
  }

  output(now: number): void {
    if (this.state === TcpState.CLOSED || this.state === TcpState.LISTEN) return;
    if (this.sendRst) {
      this.sendRst = false;
      const s = this.seg;
      s.flags = RST;
      s.seq = this.rstSeq >>> 0;
      s.ack = 0;
      s.window = 0;
      s.options.reset();
      s.dataOffset = s.dataLength = 0;
      if (this.tx.transmit(this, s)) this.stats.segmentsOut++;
    }
    // The SYN (active open) or SYN-ACK.
    if (this.synPending && (this.state === TcpState.SYN_SENT || this.state === TcpState.SYN_RECEIVED)) {
      const flags = this.state === TcpState.SYN_SENT ? SYN : SYN | ACK;
      if (!this.emit(flags, this.iss, 0, 0, now)) return;
      this.synPending = false;
      this.sndNxt = add(this.iss, 1);
      if (lt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      if (this.retries === 0) this.rttTime = now;
      if (this.rtoAt === Infinity) this.rtoAt = now + this.rto;
      return;
    }
    if (!this.synAcked) {
      if (this.ackNow && this.state === TcpState.SYN_RECEIVED) this.emit(ACK, this.sndMax, 0, 0, now);
      return;
    }
    const smss = this.effectiveMss();
    // Fast retransmit / NewReno partial ACK: the first unacknowledged segment once.
    if (this.retransmitOne) {
      const len = Math.min(smss, this.sndBuf.length - sub(this.sndUna, this.sndBufSeq));
      if (len > 0) {
        if (!this.emit(ACK | PSH, this.sndUna, sub(this.sndUna, this.sndBufSeq), len, now)) return;
        this.stats.retransmits++;
        this.rttTime = -1;
      }
      this.retransmitOne = false;
      this.rtoAt = now + this.rto;
    }
    const dataEnd = add(this.sndBufSeq, this.sndBuf.length);
    const wnd = Math.min(this.sndWnd, this.cwnd);
    let sentData = false;
    for (;;) {
      const avail = sub(dataEnd, this.sndNxt);
      const inFlight = sub(this.sndNxt, this.sndUna);
      const usable = wnd - inFlight;
      if (avail <= 0 || usable <= 0) break;
      // With segmentation offload one transmit carries up to a whole number of segments. Asked
      // per segment: what the transmitter takes may shrink as it goes (a link that cuts large
      // segments has the guest's buffers the ones before took fewer).
      const limit = this.tx.maxSegment?.(this) ?? 0;
      const most = limit > smss ? Math.floor(limit / smss) * smss : smss;
      const len = Math.min(avail, usable, most);
      // Sender SWS avoidance (§3.8.6.2.1): a short segment only when it is all there is, the
      // window is at least half the largest the peer offered, or nothing is in flight (no ACK
      // will come to improve it: the override timeout, taken at once).
      if (len < smss && len < avail && usable < this.maxSndWnd / 2 && inFlight > 0) break;
      const last = len === avail;
      const fin = last && this.finQueued;
      const flags = ACK | (last ? PSH : 0) | (fin ? FIN : 0);
      const retransmission = lt(this.sndNxt, this.sndMax);
      if (!this.emit(flags, this.sndNxt, sub(this.sndNxt, this.sndBufSeq), len, now, len > smss ? smss : 0)) return;
      if (retransmission) this.stats.retransmits++;
      else if (this.rttTime < 0 && !this.tsOn) {
        this.rttSeq = this.sndNxt;
        this.rttTime = now;
      }
      this.sndNxt = add(this.sndNxt, len + (fin ? 1 : 0));
      if (lt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      if (this.rtoAt === Infinity) this.rtoAt = now + this.rto;
      sentData = true;
      if (fin) break;
    }
    // A FIN with no data left to carry it.
    if (this.finQueued && this.state !== TcpState.TIME_WAIT && this.sndNxt === dataEnd && !this.finSent()) {
      if (!this.emit(ACK | FIN, dataEnd, 0, 0, now)) return;
      this.sndNxt = add(dataEnd, 1);
      if (lt(this.sndMax, this.sndNxt)) this.sndMax = this.sndNxt;
      if (this.rtoAt === Infinity) this.rtoAt = now + this.rto;
      sentData = true;
    }
    // Zero window with data waiting and nothing in flight: the persist timer (§3.8.6.1).
    if (this.sndWnd === 0 && sub(dataEnd, this.sndNxt) > 0 && this.sndNxt === this.sndUna) {
      if (this.persistAt === Infinity) this.persistAt = now + Math.min(this.rtoMax, this.rto * 2 ** this.persistBackoff);
    }
    // A pure ACK carries SND.MAX, not a rewound SND.NXT: the peer has seen everything up to
    // there, and a sequence number below its RCV.NXT would make it drop the ACK (as BSD does).
    if (!sentData && this.ackNow) this.emit(ACK, this.sndMax, 0, 0, now);
  }

  // ---------------------------------------------------------------- timers

  pollAt(): number {
    return Math.min(this.rtoAt, this.delayedAckAt, this.persistAt, this.timeWaitAt);
  }

  poll(now: number): void {
    if (now >= this.timeWaitAt) {
      this.transition(TcpInput.TIME_WAIT_OVER, now);
      return;
    }
    if (now >= this.rtoAt) this.retransmissionTimeout(now);
    if (this.state === TcpState.CLOSED) return;
    if (now >= this.persistAt) this.zeroWindowProbe(now);
    if (now >= this.delayedAckAt) {
      this.delayedAckAt = Infinity;
      this.ackNow = true;
    }
    this.output(now);
  }

  /** RFC 6298 §5.4-5.7 and RFC 5681 §3.1: back off, go back to SND.UNA, one segment of cwnd. */
  private retransmissionTimeout(now: number): void {
    this.stats.timeouts++;
    this.retries++;
    const limit = this.synAcked ? this.dataRetries : this.synRetries;
    if (this.retries > limit) return this.transition(TcpInput.TIMEOUT, now);
    this.rto = Math.min(this.rtoMax, this.rto * 2);
    this.rttTime = -1; // Karn
    if (!this.synAcked) {
      this.synPending = true;
      this.rtoAt = Infinity;
      this.stats.retransmits++;
      return;
    }
    const smss = this.effectiveMss();
    this.ssthresh = Math.max(sub(this.sndMax, this.sndUna) >> 1, 2 * smss);
    this.cwnd = smss;
    this.bytesAcked = 0;
    this.tsAtTimeout = (now + this.tsOffset) >>> 0;
    this.timedOut = true;
    this.inRecovery = false;
    this.dupAcks = 0;
    this.recover = this.sndMax;
    this.sndNxt = this.sndUna;
    this.rtoAt = now + this.rto;
    // A FIN alone (no data) goes again through output's FIN path: make it look unsent.
    if (this.finQueued && this.sndBuf.length === 0 && this.sndUna === this.sndBufSeq) this.sndMax = this.sndUna;
  }

  /** A 1-byte probe into the closed window, not counted as sent; the interval backs off. */
  private zeroWindowProbe(now: number): void {
    this.stats.zeroWindowProbes++;
    this.persistBackoff = Math.min(this.persistBackoff + 1, 16);
    this.persistAt = now + Math.min(this.rtoMax, this.rto * 2 ** this.persistBackoff);
    if (this.sndBuf.length - sub(this.sndNxt, this.sndBufSeq) <= 0) return;
    this.emit(ACK, this.sndNxt, sub(this.sndNxt, this.sndBufSeq), 1, now);
  }

  /** Payload bytes so far, from the sequence numbers (so modulo 2^32): sent and acknowledged by
   *  the peer, received in order. SYN and FIN are not counted. For status output. */
  get dataBytes(): { sent: number; received: number } {
    if (!this.synAcked && this.irs === 0 && this.rcvNxt === 0) return { sent: 0, received: 0 };
    const dataEnd = add(this.sndBufSeq, this.sndBuf.length);
    const ackedData = lt(this.sndUna, dataEnd) ? this.sndUna : dataEnd;
    const sent = this.synAcked ? sub(ackedData, add(this.iss, 1)) >>> 0 : 0;
    const received = this.rcvNxt === this.irs ? 0 : (sub(this.rcvNxt, add(this.irs, 1)) >>> 0) - (this.peerFin ? 1 : 0);
    return { sent, received: Math.max(0, received) };
  }
}
