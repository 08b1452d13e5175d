// Split virtqueues, device side. Read virtio 1.2 §2.7 ("Split Virtqueues"), especially 2.7.5
// (descriptor table), 2.7.6 (available ring), 2.7.7-2.7.8 (used ring), 2.7.10 (notification
// suppression) and 2.7.13 (indirect descriptors), before editing.
//
// Everything the guest wrote is untrusted: the avail index may jump, a head or `next` may be out of
// range, a chain may loop, be longer than the queue, put readable buffers after writable ones, or
// point outside guest memory. A chain with a valid head that is malformed is returned to the guest
// with length 0 and counted (the guest keeps working); an inconsistency we cannot answer (an avail
// index that moved by more than the queue size, a head out of range, ring areas outside memory)
// marks the queue broken: it stops processing until the frontend sets it up again.
//
// Memory order (x86 and the JS memory model): the avail index is read with Atomics.load before the
// ring entries and descriptors it publishes; used entries are written plainly and published with
// Atomics.store of the used index. With EVENT_IDX a seq_cst store followed by a load gives the full
// barrier needed between publishing and reading used_event (and between writing avail_event and
// re-reading the avail index).
import { endianness } from 'node:os';
import type { GuestMemory, Span } from './memory.js';
import { newSpan } from './memory.js';
import { native } from './native.js';
import type { VringAddr } from './protocol.js';

if (endianness() !== 'LE') throw new Error('vhost-user-ts: only little-endian hosts are supported');

export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** The largest split queue virtio allows. */
export const MAX_QUEUE_SIZE = 32768;
const DESC_SIZE = 16;

/** Copies up to this many bytes byte by byte; longer copies go through the addon's memmove. */
const SHORT_COPY = 64;
/** Short copies index as int32 below this offset (above it, through the addon). */
const SHORT_COPY_MAX_OFFSET = 0x7fffffff - SHORT_COPY;

/** src[srcOff, +n) → dst[dstOff, +n), allocating nothing (dst.set(src.subarray()) makes a view per
 *  call, per segment of every frame). A range outside either array throws RangeError, as set() does. */
function copyBytes(src: Uint8Array, srcOff: number, n: number, dst: Uint8Array, dstOff: number): void {
  if (srcOff === 0 && n === src.length) {
    dst.set(src, dstOff); // all of src (a frame into one buffer): no view needed, and the fastest
  } else if (n <= SHORT_COPY && srcOff <= SHORT_COPY_MAX_OFFSET && dstOff <= SHORT_COPY_MAX_OFFSET) {
    if (srcOff < 0 || dstOff < 0 || srcOff + n > src.length || dstOff + n > dst.length) throw new RangeError('offset is out of bounds');
    // Indices as int32: a guest-memory offset is a double (regions may pass 2 GiB), and indexing
    // with `srcOff + k` converts and checks a double per byte (most of a header copy's time).
    let s = srcOff | 0;
    let d = dstOff | 0;
    const end = s + n;
    while (s < end) dst[d++] = src[s++]!;
  } else {
    native.copy(src, srcOff, n, dst, dstOff);
  }
}

/** popChains' exchange array (native/ring.cc): these fields, then POP_CHAINS chains (head, where
 *  its spans end), then POP_SPANS spans (segment index, offset in its chunk, length). */
const enum PopField {
  table = 0,
  size = 1,
  lastAvail = 2,
  availIdx = 3,
  flags = 4,
  maxChains = 5,
  maxSpans = 6,
  descSegment = 7,
  descOffset = 8,
  availSegment = 9,
  availOffset = 10,
  chainCapacity = 11,
  /** Out: 1 when the walk stopped before a chain it leaves to pop(). */
  left = 12,
  /** Out: 1 when a chain taken went through an indirect table. */
  indirect = 13,
  /** Where the chains start. */
  chains = 16,
}
/** The most chains one popSpans() takes. */
export const POP_CHAINS = 64;
const POP_INDIRECT = 1;
const POP_WRITABLE = 2;
const POP_PREFETCH = 4;
/** The spans one popSpans() may take in all. */
const POP_SPANS = 1024;
const POP_SPANS_AT = PopField.chains + 2 * POP_CHAINS;

/**
 * The chains VirtQueue.popSpans() took, as the addon's walk described them (until the queue's next
 * pop): chain i's head, and its spans [spanStart(i), spanEnd(i)), each a range of one segment of
 * guest memory, all of the one direction popSpans() was asked for.
 */
export class PoppedChains {
  count = 0;

  constructor(
    private readonly x: Uint32Array,
    private readonly memory: GuestMemory,
  ) {}

  head(i: number): number {
    return this.x[PopField.chains + 2 * i]!;
  }

  spanStart(i: number): number {
    return i === 0 ? 0 : this.x[PopField.chains + 2 * i - 1]!;
  }

  spanEnd(i: number): number {
    return this.x[PopField.chains + 2 * i + 1]!;
  }

  /** Span k's segment (an index into GuestMemory.segmentBytes). */
  segment(k: number): number {
    return this.x[POP_SPANS_AT + 3 * k]!;
  }

  /** Span k's segment's bytes, and its place and length there. */
  bytes(k: number): Uint8Array {
    return this.memory.segmentBytes[this.segment(k)]!;
  }

  offset(k: number): number {
    return this.x[POP_SPANS_AT + 3 * k + 1]!;
  }

  length(k: number): number {
    return this.x[POP_SPANS_AT + 3 * k + 2]!;
  }

  /** Chain i as a DescriptorChain (its spans readable or writable, as popped). False when the
   *  chain's capacity is short of its spans. */
  fill(i: number, chain: DescriptorChain, writable: boolean): boolean {
    chain.reset(this.head(i));
    const bytes = this.memory.segmentBytes;
    const x = this.x;
    const end = POP_SPANS_AT + 3 * this.spanEnd(i);
    for (let k = POP_SPANS_AT + 3 * this.spanStart(i); k < end; k += 3) {
      if (!chain.push(bytes[x[k]!]!, x[k + 1]!, x[k + 2]!, writable)) return false;
    }
    return true;
  }
}

/** True when an event at `newIdx` crosses `eventIdx` since `oldIdx` (virtio's vring_need_event). */
export function vringNeedEvent(eventIdx: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - eventIdx - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

/** A popped descriptor chain as a scatter list of guest-memory spans, reused across pops (no
 *  allocation per descriptor). Device-readable segments come first, then device-writable ones. */
export class DescriptorChain {
  /** Head descriptor index: what pushUsed() takes back. */
  head = 0;
  /** Number of segments. */
  count = 0;
  /** Index of the first writable segment (=== count when there is none). */
  firstWritable = 0;
  readableLength = 0;
  writableLength = 0;
  readonly bytes: Uint8Array[];
  readonly offset: Float64Array;
  readonly length: Uint32Array;

  constructor(readonly capacity: number) {
    const empty = new Uint8Array(0);
    this.bytes = new Array<Uint8Array>(capacity).fill(empty);
    this.offset = new Float64Array(capacity);
    this.length = new Uint32Array(capacity);
  }

  reset(head: number): void {
    this.head = head;
    this.count = 0;
    this.firstWritable = 0;
    this.readableLength = 0;
    this.writableLength = 0;
  }

  /** The chain's readable bytes as one view when they sit in a single segment, else undefined. */
  readableView(): Uint8Array | undefined {
    if (this.firstWritable !== 1) return undefined;
    const off = this.offset[0]!;
    return this.bytes[0]!.subarray(off, off + this.length[0]!);
  }

  /** Asks the CPU for the first `max` readable bytes (the next frame, while this one is handled:
   *  memory another CPU wrote arrives in parallel instead of line by line as read()
   *  reaches it). A hint: nothing is read, and nothing fails. */
  prefetchReadable(max: number): void {
    for (let i = 0; i < this.firstWritable && max > 0; i++) {
      const n = Math.min(this.length[i]!, max);
      native.prefetch(this.bytes[i]!, this.offset[i]!, n);
      max -= n;
    }
  }

  /** Copies readable bytes [from, from+len) into dst at dstOff; returns the count copied. */
  read(from: number, dst: Uint8Array, dstOff: number, len: number): number {
    let copied = 0;
    let skip = from;
    for (let i = 0; i < this.firstWritable && copied < len; i++) {
      const segLen = this.length[i]!;
      if (skip >= segLen) {
        skip -= segLen;
        continue;
      }
      const start = this.offset[i]! + skip;
      const n = Math.min(segLen - skip, len - copied);
      copyBytes(this.bytes[i]!, start, n, dst, dstOff + copied);
      copied += n;
      skip = 0;
    }
    return copied;
  }

  /** Copies src[srcOff, srcOff+len) into the writable part at `at`; returns the count written. */
  write(at: number, src: Uint8Array, srcOff: number, len: number): number {
    let written = 0;
    let skip = at;
    for (let i = this.firstWritable; i < this.count && written < len; i++) {
      const segLen = this.length[i]!;
      if (skip >= segLen) {
        skip -= segLen;
        continue;
      }
      const start = this.offset[i]! + skip;
      const n = Math.min(segLen - skip, len - written);
      copyBytes(src, srcOff + written, n, this.bytes[i]!, start);
      written += n;
      skip = 0;
    }
    return written;
  }

  /**
   * The writable part [at, at + len) as a scatter list: appends (view, offset, length) spans to
   * the arrays from index `i` (for a native readv into guest memory). Returns the index after the
   * last span appended, or -1 when the arrays filled up first (what was appended is then void).
   */
  spans(at: number, len: number, views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, i: number): number {
    return this.spansOf(this.firstWritable, this.count, at, len, views, offsets, lengths, i);
  }

  /** As spans(), over the readable part (for a native writev from guest memory). */
  readableSpans(at: number, len: number, views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, i: number): number {
    return this.spansOf(0, this.firstWritable, at, len, views, offsets, lengths, i);
  }

  private spansOf(first: number, end: number, at: number, len: number, views: Uint8Array[], offsets: Float64Array, lengths: Uint32Array, i: number): number {
    let left = len;
    let skip = at;
    for (let s = first; s < end && left > 0; s++) {
      const segLen = this.length[s]!;
      if (skip >= segLen) {
        skip -= segLen;
        continue;
      }
      if (i >= lengths.length || i >= offsets.length) return -1;
      const n = Math.min(segLen - skip, left);
      views[i] = this.bytes[s]!;
      offsets[i] = this.offset[s]! + skip;
      lengths[i] = n;
      i++;
      left -= n;
      skip = 0;
    }
    return i;
  }

  /** Adds a segment; false when the chain's capacity is exhausted. */
  push(bytes: Uint8Array, offset: number, length: number, writable: boolean): boolean {
    const i = this.count;
    if (i >= this.capacity) return false;
    this.bytes[i] = bytes;
    this.offset[i] = offset;
    this.length[i] = length;
    this.count = i + 1;
    if (writable) this.writableLength += length;
    else {
      this.readableLength += length;
      this.firstWritable = this.count;
    }
    return true;
  }
}

export interface QueueStats {
  /** Chains popped and handed to the device. */
  popped: number;
  /** Chains returned malformed (length 0). */
  malformed: number;
  /** Calls signalled to the guest. */
  calls: number;
  /** Calls suppressed by NO_INTERRUPT or EVENT_IDX. */
  suppressed: number;
  /** Kicks heard from the guest (several it made before they were looked at count as one). */
  kicks: number;
}

/** Where a queue's ring stands, as status output shows it (free-running u16 indexes). */
export interface RingState {
  /** The next avail slot the device takes. */
  lastAvail: number;
  /** The driver's avail.idx now (null: the ring is not resolved in guest memory). */
  availIdx: number | null;
  /** The used index published or about to be. */
  usedIdx: number;
  /** With EVENT_IDX: the driver's used_event and the device's avail_event, as the rings hold them. */
  usedEvent: number | null;
  availEvent: number | null;
  /** Why the queue stopped (a malformed ring), if it did. */
  broken: string | null;
  /** The guest is signalled through a call fd. */
  signals: boolean;
}

/** What the owner of a queue (the backend) is told about the guest's and the frontend's mistakes,
 *  to log them. Called synchronously from the queue's methods: keep it cheap, never throw. */
export interface VirtQueueListener {
  /** A chain was returned to the guest with length 0 (each time). */
  malformed?(queue: VirtQueue, reason: MalformedReason): void;
  /** The queue was marked broken (once per breakage, until setBase() repairs it). */
  broken?(queue: VirtQueue, reason: string): void;
  /** Writing the call fd failed with `errno`: the queue stopped signalling it (its callFd is now
   *  -1) and the listener owns `fd` (closes it). */
  callFailed?(queue: VirtQueue, fd: number, errno: number): void;
}

export enum MalformedReason {
  TooLong = 'chain longer than the queue (loop?)',
  NextOutOfRange = 'next out of range',
  BadIndirect = 'bad indirect descriptor',
  ReadableAfterWritable = 'readable descriptor after a writable one',
  BadAddress = 'buffer outside guest memory',
  TooManySegments = 'too many segments',
}

/** One split virtqueue. The backend configures it from SET_VRING_* messages; the device pops
 *  chains, pushes used entries and flushes once per batch. */
export class VirtQueue {
  size = 0;
  /** Next avail ring slot to consume (free-running u16). */
  lastAvail = 0;
  /** avail.idx as last read (availableCount): pop() reads it again only once it has taken every
   *  chain up to it, as a driver's shadow index does (one atomic load per run of chains). */
  private shadowAvail = 0;
  /** Shadow of used.idx (free-running u16), published by flush(). */
  private usedIdx = 0;
  private signalledUsed = 0;
  private signalledUsedValid = false;
  private pendingUsed = 0;
  /** Used entries were published (publish()) that no flush() has decided on a call for yet. */
  private unnotified = false;

  addr: VringAddr | undefined;
  kickFd = -1;
  callFd = -1;
  errFd = -1;
  /** Started by SET_VRING_KICK, stopped by GET_VRING_BASE. */
  started = false;
  /** SET_VRING_ENABLE (or implied when PROTOCOL_FEATURES is not negotiated). */
  enabled = false;
  eventIdx = false;
  indirect = false;
  broken: string | undefined;

  readonly stats: QueueStats = { popped: 0, malformed: 0, calls: 0, suppressed: 0, kicks: 0 };
  /** Told of malformed chains, breakage and call fd failures (the backend logs them). */
  listener: VirtQueueListener | undefined;
  /** Reason of the last malformed chain, for logs. */
  lastMalformed: MalformedReason | undefined;

  // Ring areas, resolved against guest memory.
  private descView: DataView = new DataView(new ArrayBuffer(0));
  private descBase = 0;
  private avail: Uint16Array = new Uint16Array(0);
  private used16: Uint16Array = new Uint16Array(0);
  private used32: Uint32Array = new Uint32Array(0);
  private memGeneration = -1;
  private readonly span: Span = newSpan();
  private readonly tableSpan: Span = newSpan();
  /** A chain through an indirect table was popped on this queue: popSpans' walk then asks for
   *  the batch's descriptors and tables before walking (native/ring.cc's Prefetch). A dpdk
   *  guest's direct descriptors lie one after another, where the CPU's own prefetcher finds
   *  them; a Linux guest's TX chains each have a table of their own, scattered. */
  private indirectSeen = false;
  /** popSpans()'s exchange with the addon's walk (PopField). */
  private readonly popExchange = new Uint32Array(POP_SPANS_AT + 3 * POP_SPANS);
  /** What the last popSpans() took. */
  readonly popped: PoppedChains;
  /** The last popSpans() stopped before a chain the addon's walk leaves to pop(). */
  leftToPop = false;

  constructor(
    readonly index: number,
    private readonly memory: GuestMemory,
  ) {
    this.popped = new PoppedChains(this.popExchange, memory);
  }

  /** Started, enabled and with its ring areas resolved in guest memory. */
  get ready(): boolean {
    return this.started && this.enabled && this.broken === undefined && this.memGeneration === this.memory.generation;
  }

  /** Resolves the ring areas from `addr` in current guest memory. Returns an error or undefined. */
  resolve(): string | undefined {
    this.memGeneration = -1;
    const a = this.addr;
    if (!a || this.size === 0) return 'ring not configured';
    const n = this.size;
    const extra = this.eventIdx ? 2 : 0;
    const desc = newSpan();
    const avail = newSpan();
    const used = newSpan();
    if (!this.memory.translateUva(a.descUserAddr, DESC_SIZE * n, desc)) return 'descriptor table outside memory';
    if (!this.memory.translateUva(a.availUserAddr, 4 + 2 * n + extra, avail)) return 'avail ring outside memory';
    if (!this.memory.translateUva(a.usedUserAddr, 4 + 8 * n + extra, used)) return 'used ring outside memory';
    // Alignment (virtio 1.2 §2.7): 16 for descriptors, 2 for avail, 4 for used. Typed arrays need it
    // too; chunks start page-aligned so absolute and offset alignment agree.
    if (desc.offset % 16 !== 0 || avail.offset % 2 !== 0 || used.offset % 4 !== 0) return 'misaligned ring';
    this.descView = desc.view;
    this.descBase = desc.offset;
    const x = this.popExchange;
    x[PopField.descSegment] = this.memory.segmentIndex(desc.bytes);
    x[PopField.descOffset] = desc.offset;
    x[PopField.availSegment] = this.memory.segmentIndex(avail.bytes);
    x[PopField.availOffset] = avail.offset;
    this.avail = new Uint16Array(avail.bytes.buffer, avail.offset, 2 + n + 1);
    this.used16 = new Uint16Array(used.bytes.buffer, used.offset, 2 + 4 * n + 1);
    this.used32 = new Uint32Array(used.bytes.buffer, used.offset, 1 + 2 * n);
    // The guest's used index is the truth when a ring (re)starts (libvhost-user reads it here too).
    this.usedIdx = Atomics.load(this.used16, 1);
    this.shadowAvail = this.lastAvail; // (a new ring: its avail.idx not read yet)
    this.pendingUsed = 0;
    this.unnotified = false;
    this.signalledUsedValid = false;
    this.memGeneration = this.memory.generation;
    return undefined;
  }

  /** The driver's avail.idx as guest memory shows it now; undefined while the ring is not
   *  resolved in guest memory. */
  get availIndex(): number | undefined {
    if (this.memGeneration !== this.memory.generation) return undefined;
    return Atomics.load(this.avail, 1);
  }

  /** Reset to the state of a fresh connection (fds are closed by the backend). */
  reset(): void {
    this.size = 0;
    this.lastAvail = 0;
    this.shadowAvail = 0;
    this.usedIdx = 0;
    this.signalledUsedValid = false;
    this.pendingUsed = 0;
    this.unnotified = false;
    this.addr = undefined;
    this.kickFd = this.callFd = this.errFd = -1;
    this.started = false;
    this.enabled = false;
    this.broken = undefined;
    this.memGeneration = -1;
    this.indirectSeen = false;
  }

  /** Sets the next avail index to process (SET_VRING_BASE). */
  setBase(base: number): void {
    // Re-initialising a ring is how a frontend recovers a broken one.
    this.broken = undefined;
    this.lastAvail = base & 0xffff;
    this.shadowAvail = this.lastAvail;
    this.signalledUsedValid = false;
  }

  markBroken(reason: string): void {
    if (this.broken !== undefined) return;
    this.broken = reason;
    this.listener?.broken?.(this, reason);
  }

  /** How many chains the guest has made available and we have not popped. */
  availableCount(): number {
    if (!this.ready) return 0;
    const idx = Atomics.load(this.avail, 1);
    const n = (idx - this.lastAvail) & 0xffff;
    this.shadowAvail = idx;
    if (n > this.size) {
      this.markBroken(`avail index moved by ${n} on a queue of ${this.size}`);
      return 0;
    }
    return n;
  }

  /** Pops the next well-formed chain into `chain`. Malformed chains are returned to the guest with
   *  length 0 and counted on the way. Returns false when nothing (valid) is available. */
  pop(chain: DescriptorChain): boolean {
    for (;;) {
      // Chains known to be there need no new look at avail.idx (their entries were published
      // before it, and we read them after); the last one known taken, look again.
      const known = (this.shadowAvail - this.lastAvail) & 0xffff;
      if (known === 0 || known > this.size || !this.ready) {
        if (this.availableCount() === 0) return false;
      }
      const head = this.avail[2 + (this.lastAvail % this.size)]!;
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
      if (head >= this.size) {
        this.markBroken(`head ${head} out of range`);
        return false;
      }
      const bad = this.walk(head, chain);
      if (bad === undefined) {
        this.stats.popped++;
        return true;
      }
      this.stats.malformed++;
      this.lastMalformed = bad;
      this.listener?.malformed?.(this, bad);
      this.pushUsed(head, 0);
    }
  }

  /**
   * The addon's walk alone (native/ring.cc): takes up to `max` (at most POP_CHAINS) chains from
   * the next avail slot while each is plainly well formed (direct or through one indirect table,
   * every buffer in guest memory), all of the direction asked for (device-writable buffers, an
   * RX queue's, or device-readable ones) and has at most `maxSpans` spans; describes them in
   * `popped` and returns how many. It stops before any other chain and sets `leftToPop`: pop()
   * takes that one, and is the only walk that judges, counts and returns a malformed chain. The
   * chains taken lie next to each other in the ring, so rewind() can un-pop the last of them.
   */
  popSpans(max: number, writable: boolean, maxSpans: number): number {
    this.leftToPop = false;
    this.popped.count = 0;
    if (max <= 0 || this.availableCount() === 0) return 0;
    const x = this.popExchange;
    x[PopField.table] = this.memory.table.id;
    x[PopField.size] = this.size;
    x[PopField.lastAvail] = this.lastAvail;
    x[PopField.availIdx] = this.shadowAvail;
    x[PopField.flags] = (this.indirect ? POP_INDIRECT : 0) | (writable ? POP_WRITABLE : 0) | (this.indirectSeen ? POP_PREFETCH : 0);
    x[PopField.maxChains] = Math.min(max, POP_CHAINS);
    x[PopField.maxSpans] = maxSpans;
    x[PopField.chainCapacity] = POP_CHAINS;
    const got = native.popChains(x);
    this.lastAvail = (this.lastAvail + got) & 0xffff;
    this.stats.popped += got;
    if (x[PopField.indirect] === 1) this.indirectSeen = true;
    this.leftToPop = x[PopField.left] === 1;
    this.popped.count = got;
    return got;
  }

  /**
   * Pops up to `max` chains into chains[from], chains[from + 1]…, as pop() would one at a time,
   * and returns how many: the addon's walk (popSpans) takes the plainly well-formed ones of the
   * direction asked for, pop() any other. The addon's limit is the smallest capacity among the
   * chains, so no chain it walks is cut short where pop() would have called it too long.
   */
  popMany(chains: readonly DescriptorChain[], from: number, max: number, writable: boolean): number {
    let n = 0;
    let capacity = Infinity; // (the smallest among the chains; with max 0 nothing is popped)
    for (let i = 0; i < max; i++) capacity = Math.min(capacity, chains[from + i]?.capacity ?? 0);
    const p = this.popped;
    while (n < max) {
      const got = this.popSpans(max - n, writable, capacity);
      for (let c = 0; c < got; c++) p.fill(c, chains[from + n + c]!, writable);
      n += got;
      if (!this.leftToPop) {
        if (got === 0) break;
      } else if (n < max) {
        if (!this.pop(chains[from + n]!)) break;
        n++;
      }
    }
    return n;
  }

  /** Un-pops the last `count` chains (e.g. not enough RX buffers for a whole frame). */
  rewind(count: number): void {
    this.lastAvail = (this.lastAvail - count) & 0xffff;
    this.stats.popped -= count;
  }

  private walk(head: number, chain: DescriptorChain): MalformedReason | undefined {
    chain.reset(head);
    let view = this.descView;
    let base = this.descBase;
    let tableSize = this.size;
    let idx = head;
    let walked = 0;
    let indirect = false;
    for (;;) {
      if (walked++ >= tableSize) return MalformedReason.TooLong;
      const d = base + idx * DESC_SIZE;
      const lo = view.getUint32(d, true);
      const hi = view.getUint32(d + 4, true);
      const len = view.getUint32(d + 8, true);
      const flags = view.getUint16(d + 12, true);
      const next = view.getUint16(d + 14, true);
      if (hi >= 0x200000) return MalformedReason.BadAddress;
      const addr = hi * 0x1_0000_0000 + lo;
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // §2.7.5.3.1: only with the feature, not nested, not combined with NEXT, a whole number of
        // descriptors. We accept it as the head of a chain only, as QEMU does.
        if (!this.indirect || indirect || walked !== 1 || (flags & VIRTQ_DESC_F_NEXT) !== 0) return MalformedReason.BadIndirect;
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > MAX_QUEUE_SIZE) return MalformedReason.BadIndirect;
        if (!this.memory.translateGpa(addr, len, this.tableSpan) || this.tableSpan.length !== len) {
          return MalformedReason.BadIndirect;
        }
        view = this.tableSpan.view;
        base = this.tableSpan.offset;
        this.indirectSeen = true;
        tableSize = len / DESC_SIZE;
        idx = 0;
        walked = 0;
        indirect = true;
        continue;
      }
      const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!writable && chain.count > chain.firstWritable) return MalformedReason.ReadableAfterWritable;
      const bad = this.addBuffer(chain, addr, len, writable);
      if (bad !== undefined) return bad;
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return undefined;
      if (next >= tableSize) return MalformedReason.NextOutOfRange;
      idx = next;
    }
  }

  private addBuffer(chain: DescriptorChain, addr: number, len: number, writable: boolean): MalformedReason | undefined {
    const span = this.span;
    while (len > 0) {
      if (!this.memory.translateGpa(addr, len, span)) return MalformedReason.BadAddress;
      if (!chain.push(span.bytes, span.offset, span.length, writable)) return MalformedReason.TooManySegments;
      addr += span.length;
      len -= span.length;
    }
    return undefined;
  }

  /** Returns a chain to the guest with `len` bytes written. Published by publish() or flush(). */
  pushUsed(head: number, len: number): void {
    if (this.memGeneration !== this.memory.generation) return;
    const slot = this.usedIdx % this.size;
    this.used32[1 + 2 * slot] = head;
    this.used32[2 + 2 * slot] = len;
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    this.pendingUsed++;
  }

  /**
   * Makes the used entries pushed since they were last published visible to the driver, without
   * a call: the next flush() decides on one for them (with EVENT_IDX, for every entry since the
   * last call). vhost's add_used and signal, apart: a driver that looks at its ring (a poll-mode
   * one, or Linux's TX queue reclaiming buffers as it sends) finds them at once, and the call can
   * wait for more work to end (one call for a batch and what answers it).
   */
  publish(): void {
    if (this.pendingUsed === 0 || this.memGeneration !== this.memory.generation) return;
    this.pendingUsed = 0;
    Atomics.store(this.used16, 1, this.usedIdx);
    this.unnotified = true;
  }

  /** Publishes the used entries pushed since the last publish and signals the guest once for
   *  everything published since the last flush, when the driver asked for it (NO_INTERRUPT, or
   *  used_event with EVENT_IDX). */
  flush(): void {
    this.publish();
    if (!this.unnotified || this.memGeneration !== this.memory.generation) return;
    this.unnotified = false;
    let need: boolean;
    if (this.eventIdx) {
      const usedEvent = Atomics.load(this.avail, 2 + this.size);
      need = !this.signalledUsedValid || vringNeedEvent(usedEvent, this.usedIdx, this.signalledUsed);
      this.signalledUsed = this.usedIdx;
      this.signalledUsedValid = true;
    } else {
      need = (Atomics.load(this.avail, 0) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    }
    if (need && this.callFd >= 0) {
      if (this.signal()) this.stats.calls++;
    } else {
      this.stats.suppressed++;
    }
  }

  /** Writes the call fd. EAGAIN means its counter is about to overflow, so the guest has a
   *  notification pending anyway; any other failure (the fd cannot take eventfd writes) ends
   *  signalling on this fd rather than failing on every flush. */
  private signal(): boolean {
    const r = native.eventfdWrite(this.callFd, 1);
    if (r === 0 || r === -native.EAGAIN) return true;
    const fd = this.callFd;
    this.callFd = -1;
    this.listener?.callFailed?.(this, fd, -r);
    return false;
  }

  /** Asks the guest to kick again on new buffers; returns true when buffers arrived meanwhile, in
   *  which case the caller should keep processing (the race of §2.7.10). */
  enableNotification(): boolean {
    if (!this.ready) return false;
    if (this.eventIdx) {
      Atomics.store(this.used16, 2 + 4 * this.size, this.lastAvail);
    } else {
      Atomics.store(this.used16, 0, Atomics.load(this.used16, 0) & ~VIRTQ_USED_F_NO_NOTIFY);
    }
    return this.availableCount() > 0;
  }

  /**
   * Asks the guest to kick when it adds buffers beyond those it has published now — for a device
   * that holds a frame the available buffers cannot take (enableNotification() would not do: with
   * EVENT_IDX it asks for a kick on buffers already there, which never comes). Returns true when
   * the guest published more meanwhile (look again; no kick will come for those).
   */
  enableNotificationOnMore(): boolean {
    if (!this.ready) return false;
    const idx = Atomics.load(this.avail, 1);
    if (this.eventIdx) {
      Atomics.store(this.used16, 2 + 4 * this.size, idx);
    } else {
      Atomics.store(this.used16, 0, Atomics.load(this.used16, 0) & ~VIRTQ_USED_F_NO_NOTIFY);
    }
    return Atomics.load(this.avail, 1) !== idx;
  }

  /** Tells the guest kicks are not needed while we are processing (no-op with EVENT_IDX, where
   *  avail_event simply stays behind). */
  disableNotification(): void {
    if (!this.ready || this.eventIdx) return;
    Atomics.store(this.used16, 0, Atomics.load(this.used16, 0) | VIRTQ_USED_F_NO_NOTIFY);
  }

  /** Where the ring stands (status output; off the hot path). */
  ringState(): RingState {
    const resolved = this.memGeneration === this.memory.generation;
    return {
      lastAvail: this.lastAvail,
      availIdx: resolved ? Atomics.load(this.avail, 1) : null,
      usedIdx: this.usedIdx,
      usedEvent: resolved && this.eventIdx ? Atomics.load(this.avail, 2 + this.size) : null,
      availEvent: resolved && this.eventIdx ? Atomics.load(this.used16, 2 + 4 * this.size) : null,
      broken: this.broken ?? null,
      signals: this.callFd >= 0,
    };
  }

  /** The used index as we have published or are about to publish it. */
  get usedIndex(): number {
    return this.usedIdx;
  }
}
