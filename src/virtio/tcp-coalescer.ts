// Receive coalescing of the guest's TCP segments (Linux's GRO, tcp4_gro_receive and
// tcp6_gro_receive, for frames that arrive without offloads): consecutive segments of one
// connection in a TX batch that differ only in their sequence number, payload and checksums become
// one segment before the stack sees them, so the stack, the NAT and the TCP endpoint run once for
// up to 64 KiB instead of once per MTU-sized frame. vunet terminates TCP: one segment carrying
// the bytes of N in-order segments, with everything else equal, is taken exactly as the N would be
// (the endpoint counts a segment of several MSS as that many for its ACK clock).
//
// What may join (Linux's rules, stricter where vunet gains nothing by being loose):
// - The frame: IPv4 without options, not a fragment, no padding, TTL above 1; or IPv6 with TCP as
//   the first header, no padding, hop limit above 1. (A TTL of 1 is a traceroute probe: it gets
//   its own answer.)
// - Its segment: ACK set; none of SYN, FIN, RST, URG, CWR; payload not empty.
// - With the pending segment: the same link header, the same IP header but for the IPv4 identity,
//   lengths and checksum; the same TCP header but for the sequence number, which continues the
//   pending one, the checksum and PSH; a payload no longer than the first segment's, and the whole
//   within one IP packet (GSO_MAX_PACKET).
// - Both checksums of every segment verify (the IPv4 header's, and the TCP one from the sum of its
//   payload the device took): a segment that fails joins nothing and goes to the stack alone,
//   which drops it.
// A segment that carries PSH, or is shorter than the first, joins and ends the run. The merged
// segment gets correct lengths and checksums (and PSH when its last part had it), and its frame
// sum (RxMeta.frameSum), so the stack verifies it as it does any frame.
//
// Segments whose TCP checksum the guest left partial (virtio NEEDS_CSUM over the TCP checksum
// field: a guest with checksum offload but no TSO, whose kernel cuts its segments itself) join
// too, in runs of their own: their TCP checksum is trusted, as it is alone
// (RxMeta.checksumPartial), so only the IPv4 header's is verified; the merged segment's TCP
// checksum field holds the pseudo-header sum of its new length, as a partial checksum does, and
// it goes on partial.
//
// The coalescer only decides and keeps the merged frame; the device copies each frame's headers
// out of guest memory first (match() reads only that copy) and the payload straight to its place
// here. Or, in place (`inPlace`, for a device whose consumer keeps payload by reference; a run
// that starts with a frame in several buffers, as a Linux guest lays them out): only the headers
// of the run's first segment are copied, and each segment's payload is a span of guest memory
// (spans), summed where it lies, its place in the merged frame left for FramePayload.load(). (A
// frame in one buffer starts a run that is copied: copying it costs little more than summing it,
// and its payload is then one span, where the host socket's writev takes each span at a cost.)
// A guest that rewrites such a payload after it was summed changes only what its own connection
// carries, as it may with any NEEDS_CSUM segment: the headers every decision rests on are copies.
//
// The frames of a batch that start a run (none pending) and continue it are joined by one call
// into the addon (joinBatch; wire/join-run.ts), under these same rules and checksums (its first
// join verifies the pending frame too), each frame's headers copied before they are read; this
// file and the device's coalesce() stay the reference, and the path of every frame where the
// addon is absent.
import { doubleFields } from '../wire/bytes.js';
import { COPY_JOB_BYTES, CopyJobField, foldSum, pseudoHeaderSumV4, pseudoHeaderSumV6, sum16 } from '../wire/checksum.js';
import { RUN_AT, RUN_BYTES, RunField, joinRun } from '../wire/join-run.js';
import { GSO_MAX_PACKET } from '../iface/link.js';
import { TcpFlags } from '../wire/tcp.js';

/** Bytes of a frame's start the device copies for match(): Ethernet, IPv6 and a TCP header with
 *  the most options (114), rounded up to whole words. */
export const COALESCE_HEAD = 116;
/** The 32-bit words of COALESCE_HEAD. */
const HEAD_WORDS = COALESCE_HEAD / 4;

const ETH = 14;
const IPV4 = 0x0800;
const IPV6 = 0x86dd;
const { FIN, SYN, RST, PSH, ACK, URG, CWR } = TcpFlags;

/**
 * The payload offset of `head` (a frame's first `have` bytes, `len` long in all) when the frame
 * is a segment that may start or join a merge (see the rules above), else 0.
 */
export function coalescible(head: Uint8Array, have: number, len: number): number {
  if (have < ETH + 40) return 0;
  const type = (head[12]! << 8) | head[13]!;
  let tcp: number;
  if (type === IPV4) {
    if (head[14] !== 0x45 || head[23] !== 6 || head[22]! <= 1) return 0;
    if ((((head[20]! << 8) | head[21]!) & 0x3fff) !== 0) return 0; // MF or an offset: a fragment
    if (((head[16]! << 8) | head[17]!) !== len - ETH) return 0;
    tcp = ETH + 20;
  } else if (type === IPV6) {
    if (head[14]! >> 4 !== 6 || head[20] !== 6 || head[21]! <= 1) return 0;
    if (((head[18]! << 8) | head[19]!) !== len - ETH - 40) return 0;
    tcp = ETH + 40;
  } else {
    return 0;
  }
  if (tcp + 20 > have) return 0;
  const at = tcp + (head[tcp + 12]! >> 4) * 4;
  const flags = head[tcp + 13]!;
  if (at < tcp + 20 || at > have || at >= len) return 0;
  if ((flags & ACK) === 0 || (flags & (SYN | FIN | RST | URG | CWR)) !== 0) return 0;
  return at;
}

/** Whether a segment coalescible() took, whose headers are `head`, has its partial checksum
 *  (NEEDS_CSUM's csum_start and csum_offset) over its TCP checksum field: else it does not join. */
export function partialOverTcp(head: Uint8Array, start: number, offset: number): boolean {
  return offset === 16 && start === (head[12] === 0x08 ? ETH + 20 : ETH + 40);
}

/** A slot of the coalescer's arena: the largest frame it builds, in whole words. */
const SLOT_BYTES = (ETH + GSO_MAX_PACKET + 3) & ~3;
/** Segments joined in place to one run at most (a run at an MSS of 1448 has 45; a shorter MSS ends
 *  its run here). */
export const RUN_SPANS = 64;
/** The frames a batch for joinBatch() describes at most, and the readable spans each may have (a
 *  Linux guest's: its headers in one, its payload in the one or two pages behind). */
export const JOIN_BATCH = 16;
export const JOIN_FRAME_SPANS = 8;
const JOIN_SPANS = JOIN_BATCH * JOIN_FRAME_SPANS;
// The arena (see `arena`): the copy job's block, the run's numbers (wire/join-run.ts), `head`, the
// mask `same`, the run's span table, the batch for joinBatch(), then the slots, each on a word
// (the span offsets, Float64s, and the slots on eight bytes).
const HEAD_AT = RUN_AT + RUN_BYTES;
const SAME_AT = HEAD_AT + COALESCE_HEAD;
const SPAN_OFFSETS_AT = (SAME_AT + COALESCE_HEAD + 7) & ~7;
const SPAN_LENGTHS_AT = SPAN_OFFSETS_AT + 8 * RUN_SPANS;
const ROWS_AT = SPAN_LENGTHS_AT + 4 * RUN_SPANS;
const BATCH_SPANS_AT = ROWS_AT + 8 * JOIN_BATCH;
const SLOTS_AT = (BATCH_SPANS_AT + 8 * JOIN_SPANS + 7) & ~7;

export class TcpCoalescer {
  /**
   * Everything the device copies frames into, with one call each (copyJob), and everything
   * joinBatch()'s native call reads and writes: the copy job's block (`job`), the run's numbers
   * (`run`), `head`, the mask `same`, the span table, the batch (`batchRows`, `batchSpans`), then
   * the slots pending frames are built in, one after another. A merged frame the stack keeps by
   * reference (FramePayload.kept: the TCP NAT writes it with the batch's writev) holds its slot
   * until the device's releasePayloads; the next frame is built in the next slot.
   */
  readonly arena: Uint8Array;
  /** The copy job's numbers (src/wire/checksum.ts's CopyJobField), over the arena's start. */
  readonly job: Float64Array;
  /** The pending frame, merged so far: buf[0, length); length 0 when there is none. buf is the
   *  arena's slot `slot`, at `offset` in the arena. */
  buf: Uint8Array;
  offset = SLOTS_AT;
  /** Where the device copies a frame's headers for match() and join() (the job's headAt). */
  readonly head: Uint8Array;
  length = 0;
  /** Slots holding frames kept by reference (the current one never is). */
  held = 0;
  private slot = 0;
  private readonly slots: Uint8Array[] = [];
  private readonly slotWords: Uint32Array[] = [];
  // head and buf's headers as words (both views start on a word of the arena, so word i is their
  // bytes 4i..4i+3 in both), and which of the pending frame's header bits a frame that joins repeats.
  private readonly headWords: Uint32Array;
  private bufWords: Uint32Array;
  private readonly same: Uint32Array;
  /** The run's numbers for joinBatch()'s native call (RunField). */
  private readonly run: Uint32Array;
  /**
   * The batch joinBatch() looks at, which the device describes: frame i's readable spans (its
   * virtio-net header first) are the (offset, length) pairs [batchRows[2i], + batchRows[2i + 1])
   * of batchSpans, in one view; a count of 0 leaves the frame to the caller.
   */
  readonly batchRows: Uint32Array;
  readonly batchSpans: Uint32Array;
  private words = 0;
  /** Segments in the pending frame. */
  segments = 0;
  /** Where its payload starts (its headers' length). */
  private at = 0;
  private tcp = 0;
  /** The sequence number the next segment must carry. */
  private nextSeq = 0;
  /** The first segment's payload length: no later one may be longer. */
  private segmentSize = 0;
  /** A segment with PSH, or a short one, joined: the run is over. */
  private closed = false;
  /**
   * A run in place: where its payload lies (guest memory, views[i][offsets[i], +lengths[i]) for
   * i < spanCount), in order; its place in buf, from the payload's start on, is not written.
   */
  readonly spanViews: Uint8Array[] = [];
  readonly spanOffsets: Float64Array;
  readonly spanLengths: Uint32Array;
  spanCount = 0;
  /** The pending frame's sum from its IP header on, as the copy computed it (frameSum). */
  private firstSum = 0;
  /** After joinBatch(): the index of the frame that started the run there (none was pending),
   *  else -1; and whether the run takes nothing more (its caller hands it on). */
  startedAt = -1;
  over = false;
  /** Once a segment joined: the payload's sum, as it lies in the merged frame. */
  private payloadSum = 0;
  private psh = false;
  /** The run's TCP checksums are partial (NEEDS_CSUM): not verified, not summed. */
  partial = false;
  /** The run is kept in place: every segment's payload in spans, none in buf (see start()). */
  runInPlace = false;
  /** Once a segment joined: the sums of the IPv4 header and of the TCP header with its
   *  pseudo-header, less the words a later part may change (see join). */
  private ipFixed = 0;
  private tcpFixed = 0;

  /** `slots`: how many merged frames may be kept by reference at once (at least 1); `inPlace`: a
   *  run may be kept in place (see above). */
  constructor(
    slots = 1,
    readonly inPlace = false,
  ) {
    doubleFields(this, 'nextSeq'); // unsigned 32-bit
    const n = Math.max(1, Math.floor(slots));
    this.arena = new Uint8Array(SLOTS_AT + n * SLOT_BYTES);
    this.job = new Float64Array(this.arena.buffer, 0, COPY_JOB_BYTES / 8);
    this.job[CopyJobField.headAt] = HEAD_AT; // (for good: every frame's headers go there)
    this.head = this.arena.subarray(HEAD_AT, HEAD_AT + COALESCE_HEAD);
    this.headWords = new Uint32Array(this.arena.buffer, HEAD_AT, HEAD_WORDS);
    this.same = new Uint32Array(this.arena.buffer, SAME_AT, HEAD_WORDS);
    this.spanOffsets = new Float64Array(this.arena.buffer, SPAN_OFFSETS_AT, RUN_SPANS);
    this.spanLengths = new Uint32Array(this.arena.buffer, SPAN_LENGTHS_AT, RUN_SPANS);
    this.batchRows = new Uint32Array(this.arena.buffer, ROWS_AT, 2 * JOIN_BATCH);
    this.batchSpans = new Uint32Array(this.arena.buffer, BATCH_SPANS_AT, 2 * JOIN_SPANS);
    const run = (this.run = new Uint32Array(this.arena.buffer, RUN_AT, RUN_BYTES / 4));
    run[RunField.sameAt] = SAME_AT;
    run[RunField.spanOffsetsAt] = SPAN_OFFSETS_AT;
    run[RunField.spanLengthsAt] = SPAN_LENGTHS_AT;
    run[RunField.spanMax] = inPlace ? RUN_SPANS : 0;
    run[RunField.rowsAt] = ROWS_AT;
    run[RunField.spansAt] = BATCH_SPANS_AT;
    run[RunField.spanSlots] = JOIN_SPANS;
    for (let i = 0; i < n; i++) {
      const at = SLOTS_AT + i * SLOT_BYTES;
      this.slots.push(this.arena.subarray(at, at + ETH + GSO_MAX_PACKET));
      this.slotWords.push(new Uint32Array(this.arena.buffer, at, HEAD_WORDS));
    }
    this.buf = this.slots[0]!;
    this.bufWords = this.slotWords[0]!;
    if (inPlace) for (let i = 0; i < RUN_SPANS; i++) this.spanViews.push(this.arena);
  }

  /**
   * The frame just handed on from the current slot is kept by reference: later frames are built
   * in the next slot. False when every slot is now held: the caller has them written
   * (releasePayloads) and calls released() before the next frame.
   */
  hold(): boolean {
    this.held++;
    this.moveTo((this.slot + 1) % this.slots.length);
    return this.held < this.slots.length;
  }

  /** Where the pending frame's payload starts. */
  get payloadAt(): number {
    return this.at;
  }

  /** Where the pending frame's TCP header starts (a partial run's checksum start). */
  get tcpAt(): number {
    return this.tcp;
  }

  /**
   * Where a frame `len` bytes long that continues the pending one has its payload: the pending
   * frame's payload offset, when one is pending, its run still open and the frame's payload fits
   * behind it (and, in a run in place, a span is left for it); else 0. The device then copies the
   * frame's first bytes that far to `head` and the rest to buf[length, …) (in a run in place: only
   * sums the rest) in one call, before match() and join() look at them.
   */
  continuesAt(len: number): number {
    if (this.length === 0 || this.closed || len <= this.at || this.length + len - this.at > this.buf.length) return 0;
    if (this.runInPlace && this.spanCount === RUN_SPANS) return 0;
    return this.at;
  }

  /** What the held slots kept was written or copied: they are free again. */
  released(): void {
    this.held = 0;
  }

  private moveTo(slot: number): void {
    this.slot = slot;
    this.buf = this.slots[slot]!;
    this.bufWords = this.slotWords[slot]!;
    this.offset = SLOTS_AT + slot * SLOT_BYTES;
  }

  /**
   * Makes buf[0, len) — a frame just copied there whose copy summed it from its IP header on
   * (`frameSum`; with `partial`, its TCP checksum partial, none) and whose payload starts at `at`
   * (coalescible()) — the pending frame, whose later parts are copied behind it. In place, with
   * `copied` false, only its headers are in buf: its payload lies where the spans the caller has
   * just put in the span table say, and so will its later parts' (a run in place).
   */
  start(len: number, at: number, frameSum: number, partial: boolean, copied = true): void {
    this.length = len;
    this.runInPlace = this.inPlace && !copied;
    this.segments = 1;
    this.at = at;
    this.tcp = this.buf[12] === 0x08 ? ETH + 20 : ETH + 40;
    this.nextSeq = (readU32(this.buf, this.tcp + 4) + len - at) >>> 0;
    this.segmentSize = len - at;
    this.closed = (this.buf[this.tcp + 13]! & PSH) !== 0;
    this.firstSum = frameSum;
    this.payloadSum = -1;
    this.psh = false;
    this.partial = partial;
    // Every header bit must repeat but for: IPv4 total length, identity and checksum (IPv6
    // payload length); the TCP sequence number (compared on its own), checksum and PSH.
    const tcp = this.tcp;
    this.words = (at + 3) >> 2;
    this.same.fill(0xffffffff, 0, this.words);
    this.same.fill(0, this.words);
    for (let k = at; k < this.words * 4; k++) this.differs(k, 0xff);
    if (tcp === ETH + 20) {
      for (let k = ETH + 2; k < ETH + 6; k++) this.differs(k, 0xff);
      this.differs(ETH + 10, 0xff);
      this.differs(ETH + 11, 0xff);
    } else {
      this.differs(ETH + 4, 0xff);
      this.differs(ETH + 5, 0xff);
    }
    for (let k = tcp + 4; k < tcp + 8; k++) this.differs(k, 0xff);
    this.differs(tcp + 13, PSH);
    this.differs(tcp + 16, 0xff);
    this.differs(tcp + 17, 0xff);
  }

  /** Bits `bits` of header byte k may differ in a frame that joins (words are little-endian). */
  private differs(k: number, bits: number): void {
    this.same[k >> 2] = this.same[k >> 2]! & ~(bits << ((k & 3) * 8));
  }

  /**
   * Whether the frame whose headers are in `head` (its payload starting at `at`, `len` bytes long
   * in all; its TCP checksum `partial` or not) may join the pending one, checksums aside: where its
   * payload goes then is `length`.
   */
  match(at: number, len: number, partial: boolean): boolean {
    const head = this.head;
    if (this.length === 0 || this.closed || at !== this.at || partial !== this.partial) return false;
    const n = len - at;
    if (n > this.segmentSize || this.length - ETH + n > GSO_MAX_PACKET) return false;
    const h = this.headWords;
    const b = this.bufWords;
    const same = this.same;
    for (let i = 0; i < this.words; i++) if (((h[i]! ^ b[i]!) & same[i]!) !== 0) return false;
    return readU32(head, this.tcp + 4) === this.nextSeq;
  }

  /**
   * Joins the frame match() accepted, whose payload the device has copied to buf[length, +n)
   * summing it (`sum`), or in a run in place only summed where it lies (the device then puts its
   * spans in the table: joinedAt()); `head` holds its headers. False when a checksum of its, or
   * (on the first join) of the pending frame's, does not verify: nothing joined; the caller hands
   * the pending frame on as it is, and this one after it.
   */
  join(len: number, sum: number): boolean {
    const at = this.at;
    const n = len - at;
    const tcp = this.tcp;
    const v4 = tcp === ETH + 20;
    if (this.payloadSum < 0) {
      // The pending frame's own checksums, verified now that it will not go alone (alone, the
      // stack verifies it); its payload's sum is the frame's less the headers'.
      const b = this.buf;
      const ipSum = sum16(b, ETH, tcp - ETH);
      if (v4 && ipSum !== 0xffff) return false;
      // What every later part repeats (match() saw to it): its headers' sums but for the words
      // that may differ, taken out here (adding a word's complement subtracts it, RFC 1624) and
      // put back from each part's own headers below.
      this.ipFixed = v4 ? foldSum(ipSum + notWord(b, ETH + 2) + notWord(b, ETH + 4) + notWord(b, ETH + 10)) : 0;
      if (this.partial) {
        this.payloadSum = 0; // (not summed: nothing verifies it)
      } else {
        const pseudo = v4 ? pseudoHeaderSumV4(readU32(b, ETH + 12), readU32(b, ETH + 16), 6, 0) : pseudoHeaderSumV6(b, ETH + 8, b, ETH + 24, 6, 0);
        const tcpSum = sum16(b, tcp, at - tcp);
        const payload = foldSum(this.firstSum + (~foldSum(ipSum + tcpSum) & 0xffff));
        if (foldSum(tcpSum + pseudo + (this.length - tcp) + payload) !== 0xffff) return false;
        this.payloadSum = payload;
        this.tcpFixed = foldSum(tcpSum + pseudo + notWord(b, tcp + 4) + notWord(b, tcp + 6) + notWord(b, tcp + 12) + notWord(b, tcp + 16));
      }
    }
    // This part's checksums from its varying words alone (lengths, identity, sequence number,
    // flags, checksums) and the payload's sum the copy made.
    const h = this.head;
    if (v4 && foldSum(this.ipFixed + word(h, ETH + 2) + word(h, ETH + 4) + word(h, ETH + 10)) !== 0xffff) return false;
    if (!this.partial) {
      if (foldSum(this.tcpFixed + word(h, tcp + 4) + word(h, tcp + 6) + word(h, tcp + 12) + word(h, tcp + 16) + (len - tcp) + sum) !== 0xffff) return false;
      // A part at an odd offset of the payload adds its sum byte-swapped (RFC 1071 §2(B)).
      const place = this.length - at;
      this.payloadSum = foldSum(this.payloadSum + ((place & 1) !== 0 ? ((sum & 0xff) << 8) | (sum >> 8) : sum));
    }
    this.length += n;
    this.segments++;
    this.nextSeq = (this.nextSeq + n) >>> 0;
    const psh = (h[tcp + 13]! & PSH) !== 0;
    this.psh ||= psh;
    if (psh || n < this.segmentSize) this.closed = true;
    return true;
  }

  /**
   * Ends the pending frame: with several segments its lengths, PSH and checksums are written.
   * Returns its sum from the IP header on (RxMeta.frameSum) for buf[0, length), or -1 for a
   * partial run (none taken); the caller hands it on, then calls clear().
   */
  finish(): number {
    if (this.segments < 2) return this.partial ? -1 : this.firstSum;
    const b = this.buf;
    const tcp = this.tcp;
    const ipLen = this.length - ETH;
    const tcpLen = this.length - tcp;
    if (tcp === ETH + 20) {
      writeU16(b, ETH + 2, ipLen);
      writeU16(b, ETH + 10, 0);
      writeU16(b, ETH + 10, ~sum16(b, ETH, 20) & 0xffff);
    } else {
      writeU16(b, ETH + 4, tcpLen);
    }
    if (this.psh) b[tcp + 13] = b[tcp + 13]! | PSH;
    writeU16(b, tcp + 16, 0);
    const pseudo =
      tcp === ETH + 20 ? pseudoHeaderSumV4(readU32(b, ETH + 12), readU32(b, ETH + 16), 6, tcpLen) : pseudoHeaderSumV6(b, ETH + 8, b, ETH + 24, 6, tcpLen);
    if (this.partial) {
      writeU16(b, tcp + 16, pseudo); // (a partial checksum's field: the pseudo-header sum)
      return -1;
    }
    const tcpSum = sum16(b, tcp, this.at - tcp, foldSum(this.payloadSum + pseudo));
    writeU16(b, tcp + 16, ~tcpSum & 0xffff);
    return sum16(b, ETH, this.at - ETH, this.payloadSum);
  }

  /** A run in place: the payload of the segment that just joined is view[offset, +length)
   *  (continuesAt left room for its span). The caller keeps that memory as it is until the merged
   *  frame is written or loaded (FramePayload). */
  joinedAt(view: Uint8Array, offset: number, length: number): void {
    const k = this.spanCount++;
    this.spanViews[k] = view;
    this.spanOffsets[k] = offset;
    this.spanLengths[k] = length;
  }

  /**
   * Joins the frames [from, count) of the batch in batchRows and batchSpans (spans of `view`) that
   * continue the pending run, as continuesAt(), coalescible(), match() and join() would one after
   * another, with one native call (wire/join-run.ts): each frame's virtio-net header and headers
   * copied first, its payload copied behind the pending one and summed (a run in place: summed
   * where it lies, its spans appended; the run's first join verifies the pending frame first, as
   * join()). With none pending, the first frame starts the run as the device's coalesce() and
   * start() would (startedAt: copied to buf when it lies in one buffer, else a run in place).
   * Returns the index of the first frame not joined: `from` when none was, and always without the
   * addon. The caller counts and keeps the frames that joined (a run in place holds their
   * buffers); with `over` it hands the run on and may call again from there, else it hands the
   * next frame on as usual.
   */
  joinBatch(view: Uint8Array, from: number, count: number): number {
    const native = joinRun();
    this.startedAt = -1;
    this.over = this.length > 0 && this.closed;
    // (A frame the device did not describe, a pure ACK say, is the caller's: no call for it.)
    if (native === undefined || this.over || from >= count || this.batchRows[2 * from + 1] === 0) return from;
    const run = this.run;
    run[RunField.length] = this.length;
    run[RunField.segments] = this.segments;
    run[RunField.at] = this.at;
    run[RunField.tcp] = this.tcp;
    run[RunField.nextSeq] = this.nextSeq;
    run[RunField.segmentSize] = this.segmentSize;
    run[RunField.closed] = 0;
    run[RunField.partial] = this.partial ? 1 : 0;
    run[RunField.inPlace] = this.runInPlace ? 1 : 0;
    run[RunField.ipFixed] = this.ipFixed;
    run[RunField.tcpFixed] = this.tcpFixed;
    run[RunField.payloadSum] = this.payloadSum; // (-1, unset, is 0xffffffff there)
    run[RunField.firstSum] = this.firstSum;
    run[RunField.psh] = this.psh ? 1 : 0;
    run[RunField.spanCount] = this.spanCount;
    run[RunField.words] = this.words;
    run[RunField.bufAt] = this.offset;
    run[RunField.bufCap] = this.buf.length;
    run[RunField.from] = from;
    run[RunField.count] = count;
    const end = native(view, this.arena);
    if (run[RunField.started] !== 0) {
      // The run the call started: its numbers (`same` it wrote in the arena).
      this.startedAt = run[RunField.started]! - 1;
      this.runInPlace = run[RunField.inPlace] !== 0;
      this.at = run[RunField.at]!;
      this.tcp = run[RunField.tcp]!;
      this.words = run[RunField.words]!;
      this.segmentSize = run[RunField.segmentSize]!;
      this.partial = run[RunField.partial] !== 0;
      this.firstSum = this.partial ? -1 : run[RunField.firstSum]!;
    }
    this.over = run[RunField.over] !== 0;
    if (end === from) return from;
    this.length = run[RunField.length]!;
    this.segments = run[RunField.segments]!;
    this.nextSeq = run[RunField.nextSeq]!;
    const sum = run[RunField.payloadSum]!;
    this.payloadSum = sum === 0xffffffff ? -1 : sum;
    this.ipFixed = run[RunField.ipFixed]!;
    this.tcpFixed = run[RunField.tcpFixed]!;
    this.psh = run[RunField.psh] !== 0;
    this.closed = run[RunField.closed] !== 0;
    const spans = run[RunField.spanCount]!;
    for (let k = this.spanCount; k < spans; k++) this.spanViews[k] = view;
    this.spanCount = spans;
    return end;
  }

  /** Forgets the pending frame. */
  clear(): void {
    this.length = 0;
    this.segments = 0;
    for (let i = 0; i < this.spanCount; i++) this.spanViews[i] = this.arena; // (no guest memory kept alive)
    this.spanCount = 0;
  }

  /** Forgets everything, held slots included (the connection is gone). */
  reset(): void {
    this.clear();
    this.released();
  }
}

function readU32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

function word(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

/** The ones' complement of the 16-bit word at `o`: added to a sum, it takes the word out. */
function notWord(b: Uint8Array, o: number): number {
  return ~word(b, o) & 0xffff;
}

function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >> 8;
  b[o + 1] = v & 0xff;
}
