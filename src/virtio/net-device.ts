// The virtio-net device on vhost-user-ts: moves Ethernet frames between the guest's queues and the
// stack. Read virtio 1.2 §5.1 (network device), especially §5.1.6 (the header, checksum offload,
// mergeable RX buffers) before editing.
//
// TX (guest → us): each chain is a 12-byte virtio_net_hdr_v1 then the frame. The frame is copied out
// of guest memory into a private buffer before anything looks at it, and only the copy is parsed:
// the guest may rewrite a queued buffer while we read it (another vCPU can), and a field read twice
// from guest memory could pass a check and then disagree. The chain goes back to the guest right
// after the stack returns. A frame whose handling throws costs that frame only (counted and
// reported); a batch is handled in slices so one kick never holds the event loop for long.
// RX (us → guest): a frame is written after a header into one chain, or into several with
// MRG_RXBUF (num_buffers in the first header). When the guest has posted no buffers the frame
// waits in a bounded queue until the next RX kick. Used entries are published and the guest is
// signalled once per batch: at the end of a TX kick, or at the end of the event-loop turn for frames
// the stack sends on its own (timers, host sockets).
import type { Logger, PoppedChains, QueueStats, RingState, VhostUserDevice, VirtQueue } from 'vhost-user-ts';
import { DescriptorChain, MAX_QUEUE_SIZE, silentLogger } from 'vhost-user-ts';
import type { FrameLink, FrameSink, FramePayload, PartialChecksum, PayloadFill, PayloadSend, RxMeta } from '../iface/link.js';
import type { MemoryAccount } from '../iface/memory-budget.js';
import { EndOfTurn, atEndOfTurn } from '../iface/end-of-turn.js';
import type { ScatterViews } from '../wire/bytes.js';
import { ViewCache, copyBytes, doubleFields, get32, oneView, set16, set32 } from '../wire/bytes.js';
import { CopyJobField, SUM_IN_PLACE, copyJob, copySum, pseudoHeaderSumV4, pseudoHeaderSumV6, sum16, sumFrames } from '../wire/checksum.js';
import { ETHERNET_HEADER_LEN } from '../wire/ethernet.js';
import { CUT_FIELDS, CutField, cutFrames } from '../wire/tcp-cut.js';
import { AckFilter } from './ack-filter.js';
import { COALESCE_HEAD, JOIN_BATCH, JOIN_FRAME_SPANS, RUN_SPANS, TcpCoalescer, coalescible, partialOverTcp } from './tcp-coalescer.js';
import { joinRun } from '../wire/join-run.js';
import { PollTimer } from './poll-timer.js';

/** virtio-net feature bits (virtio 1.2 §5.1.3). */
export const NetFeature = {
  CSUM: 0n,
  GUEST_CSUM: 1n,
  MTU: 3n,
  MAC: 5n,
  GUEST_TSO4: 7n,
  GUEST_TSO6: 8n,
  HOST_TSO4: 11n,
  HOST_TSO6: 12n,
  HOST_ECN: 13n,
  HOST_UFO: 14n,
  MRG_RXBUF: 15n,
  STATUS: 16n,
} as const;

export const NET_HDR_LEN = 12;
/** virtio_net_hdr flags. */
export const NET_HDR_F_NEEDS_CSUM = 1;
export const NET_HDR_F_DATA_VALID = 2;
export const NET_HDR_GSO_NONE = 0;
export const NET_HDR_GSO_TCPV4 = 1;
/** A UDP datagram larger than the MTU, for the device to fragment (HOST_UFO). */
export const NET_HDR_GSO_UDP = 3;
export const NET_HDR_GSO_TCPV6 = 4;
/** Or-ed into gso_type: the segments carry ECN (HOST_ECN). */
export const NET_HDR_GSO_ECN = 0x80;

/** Frames larger than this are not accepted from the guest (64 KiB frame + header). */
export const MAX_FRAME = 65536 + 14;

export type { FrameLink, FrameSink, PartialChecksum, RxMeta } from '../iface/link.js';

export interface NetDeviceStats {
  txFrames: number;
  txBytes: number;
  /** Guest frames refused: bad header, GSO we did not offer, too short or too long. */
  txDropped: number;
  /** Guest TCP segments larger than the MTU (HOST_TSO: the guest left segmentation to us). */
  txGso: number;
  /** ...of which refused: a GSO type we did not offer, no NEEDS_CSUM, or a frame that is not the
   *  TCP packet its type says. */
  txGsoBad: number;
  rxFrames: number;
  rxBytes: number;
  /** Frames to the guest that stand for several TCP segments (GUEST_TSO4/6). */
  rxGso: number;
  /** TCP segments larger than the MTU cut into frames here, for a guest without GUEST_TSO4/6. */
  rxCut: number;
  /** Frames for the guest dropped: backlog full, or larger than its buffers allow. */
  rxDropped: number;
  /** Guest frames whose handling threw (a bug; the frame was dropped, the batch went on). */
  txFailed: number;
  /** Batches that threw outside any one frame's handling (a bug): the rest of the batch was
   *  lost, the queue goes on (see batchFailed). */
  batchesFailed: number;
  /** TX batches cut into slices to give other work a turn. */
  txSlices: number;
  /** TX batches taken by polling the queue, not on a kick (the guest sending in bulk: see
   *  processTx). */
  txPolls: number;
  /** Guest TCP segments joined to the one before them (see tcp-coalescer.ts). */
  txCoalesced: number;
  /** Guest pure ACKs passed over: the next frame, a later ACK of the connection, says all they
   *  say (see ack-filter.ts). */
  txAcksFiltered: number;
}

export interface NetDeviceOptions {
  logger?: Logger;
  /** Frames queued for the guest while it has no RX buffers (default 1024). */
  backlogFrames?: number;
  /** ...and their total size (default 8 MiB). */
  backlogBytes?: number;
  /** The memory budget the backlog is held in (besides backlogBytes). */
  memory?: MemoryAccount;
  /** The guest's driver brought both queues up (true), or one went down (false). */
  onLinkChange?: (up: boolean) => void;
  /** A slice of guest frames is about to be handed to the sink (before its first frame). */
  onBatchStart?: () => void;
  /** True while the owner runs a batch of work at whose end it calls flush(): frames sent then
   *  need no flush of their own (scheduling one allocates). Absent: every turn that sends
   *  schedules its flush. */
  inBatch?: () => boolean;
  /** A slice of guest frames was handed to the sink, taking `ms` (the owner sends what they
   *  caused and re-arms its timers here). */
  onBatchEnd?: (ms: number) => void;
  /** After wantRoom(): the guest posted receive buffers again. */
  onRoom?: () => void;
  /** A guest TCP segment's payload may stay in guest memory (RxMeta.payload): the sink loads it
   *  or keeps it by reference until releasePayloads. */
  payloadsInPlace?: boolean;
  /** Offer HOST_TSO4/6, HOST_ECN and HOST_UFO (default true). Off when the guest's frames may be
   *  switched to another guest, which would have to cut them up. */
  hostOffloads?: boolean;
  /** End of a TX batch, after onBatchEnd: whatever kept payload by reference lets go of it now
   *  (its guest buffers are given back next). */
  releasePayloads?: () => void;
  /** Join consecutive TCP segments of a connection that come without offloads before the stack
   *  sees them (tcp-coalescer.ts; default true). Off when every frame must reach the sink as the
   *  guest sent it: a capture, or a segment switched to another guest. */
  coalesce?: boolean;
  /** Handling a guest frame threw (the frame was dropped), or a batch of frames did outside any
   *  one of them (batchesFailed): count and log it. */
  onFrameError?: (err: unknown) => void;
  /** A slice of a TX batch ends after this many frames (default 256)... */
  txSliceFrames?: number;
  /** ...or after this long, in ms (default 10); the rest follows on a later event-loop turn. */
  txSliceMs?: number;
  /** While the guest sends in bulk (see processTx), kicks stay off and its TX queue is looked at
   *  every other such interval (in ms), or every one while the guest nearly fills its ring between
   *  two or sends fast (TX_POLL_FULL, TX_POLL_FAST_RATE; default 1; 0: a kick starts every
   *  batch). Node's timers count whole ms. */
  txPollMs?: number;
  /** Starts a one-shot timer for `ms` from now; refresh(ms) arms it again (default PollTimer). */
  timer?: (fn: () => void, ms: number) => { refresh(ms: number): unknown };
  /** Runs the rest of a sliced batch on a later turn (default setImmediate: I/O goes first). */
  defer?: (fn: () => void) => void;
  /** Milliseconds, for the slice budget (default performance.now). */
  now?: () => number;
}

/** The global, read once: Node defines globalThis.performance as a getter, which every use of
 *  the name would call. */
const PERFORMANCE = performance;

/** Guest-memory spans one completePayloads() fills (the kernel's UIO_MAXIOV), and frames. */
const MAX_SPANS = 1024;
const MAX_HELD_FRAMES = 512;
/** Frames one large segment is cut into at most (64 KiB at an MSS of 1460 makes 45). */
const MAX_CUT_PIECES = 64;
/** cutFrames()'s offsets for one frame at the start of its view. */
const CUT_AT_ZERO = new Float64Array(1);
/** Spans of one guest frame's payload (a chain has at most 2048 segments). */
const MAX_TX_SPANS = 2048;

/** Guest TCP segments this long or longer may leave their payload in guest memory; the headers
 *  are found in the first HEAD_COPY bytes. */
const PAYLOAD_IN_PLACE_MIN = 512;
const HEAD_COPY = 256;
/** Guest frames shorter than this are never joined (ACKs, interactive data: nothing to gain). */
const COALESCE_MIN = 256;

/**
 * Where a plain TCP segment's payload starts in `frame` (its first `have` bytes copied; `len`
 * long in all), or 0 when it is something else: IPv4 unfragmented without padding, or IPv6 with
 * TCP as the first header; neither SYN nor RST (whose payload gets quoted); headers within
 * `have`, payload after them. The stack checks all of it again; this only picks the frames.
 */
function tcpPayloadAt(frame: Uint8Array, have: number, len: number): number {
  if (have < 54) return 0;
  let tcp: number;
  if (frame[12] === 0x08 && frame[13] === 0x00) {
    const ihl = (frame[14]! & 0x0f) * 4;
    if (frame[14]! >> 4 !== 4 || ihl < 20 || frame[23] !== 6) return 0;
    if ((((frame[20]! << 8) | frame[21]!) & 0x3fff) !== 0) return 0; // MF or an offset: a fragment
    if (((frame[16]! << 8) | frame[17]!) !== len - 14) return 0;
    tcp = 14 + ihl;
  } else if (frame[12] === 0x86 && frame[13] === 0xdd) {
    if (frame[14]! >> 4 !== 6 || frame[20] !== 6 || ((frame[18]! << 8) | frame[19]!) !== len - 54) return 0;
    tcp = 54;
  } else {
    return 0;
  }
  if (tcp + 20 > have) return 0;
  const at = tcp + (frame[tcp + 12]! >> 4) * 4;
  if (at < tcp + 20 || at > have || at >= len || (frame[tcp + 13]! & 0x06) !== 0) return 0;
  return at;
}

/** Copies a payload's spans into its place in its frame (FramePayload.load()). */
function gatherSpans(p: FramePayload): void {
  let at = p.at;
  for (let i = 0; i < p.count; i++) {
    copyBytes(p.frame, at, p.views[i]!, p.offsets[i]!, p.lengths[i]!);
    at += p.lengths[i]!;
  }
}

/** FramePayload for the TX path: reset per frame, loaded into the device's scratch on demand. */
class TxPayload implements FramePayload {
  at = 0;
  length = 0;
  count = 0;
  loaded = true;
  kept = false;
  readonly views: Uint8Array[] = new Array<Uint8Array>(MAX_TX_SPANS).fill(new Uint8Array(0));
  readonly offsets = new Float64Array(MAX_TX_SPANS);
  readonly lengths = new Uint32Array(MAX_TX_SPANS);

  constructor(readonly frame: Uint8Array) {}

  reset(): void {
    this.loaded = true;
    this.count = this.length = this.at = 0;
  }

  leftAt(at: number, length: number, count: number): void {
    this.at = at;
    this.length = length;
    this.count = count;
    this.loaded = false;
  }

  load(): void {
    if (this.loaded) return;
    gatherSpans(this);
    this.loaded = true;
  }
}

/**
 * FramePayload of a segment the coalescer joined: in the frame (the device's own buffer, which it
 * does not reuse before releasePayloads: TcpCoalescer hold()), or, for a run kept in place, in the
 * guest's buffers (which go back only after releasePayloads) until load(). Kept by reference, the
 * TCP NAT writes the batch's joined segments with one writev, not through its connection's
 * receive buffer.
 */
class JoinedPayload implements FramePayload {
  frame: Uint8Array = new Uint8Array(0);
  at = 0;
  length = 0;
  count = 1;
  loaded = true;
  kept = false;
  readonly views: Uint8Array[] = new Array<Uint8Array>(RUN_SPANS).fill(new Uint8Array(0));
  readonly offsets = new Float64Array(RUN_SPANS);
  readonly lengths = new Uint32Array(RUN_SPANS);

  /** The coalescer's pending frame, `frame` (a view of its arena). */
  set(g: TcpCoalescer, frame: Uint8Array): void {
    const at = g.payloadAt;
    this.frame = frame;
    this.at = at;
    this.length = frame.length - at;
    this.kept = false;
    this.loaded = !g.runInPlace;
    if (this.loaded) {
      this.views[0] = g.arena;
      this.offsets[0] = frame.byteOffset - g.arena.byteOffset + at;
      this.lengths[0] = this.length;
      this.count = 1;
      return;
    }
    const n = g.spanCount;
    for (let i = 0; i < n; i++) {
      this.views[i] = g.spanViews[i]!;
      this.offsets[i] = g.spanOffsets[i]!;
      this.lengths[i] = g.spanLengths[i]!;
    }
    this.count = n;
  }

  load(): void {
    if (this.loaded) return;
    gatherSpans(this);
    this.loaded = true;
  }
}

/** Merged segments the TCP NAT may keep by reference in one TX slice before the device has them
 *  written (a slice of 256 MTU 1500 frames makes six). */
const COALESCE_SLOTS = 8;

/** How much of the next guest frame processTx asks the CPU for ahead of time: an MTU 1500 frame
 *  whole, the headers and first part of a larger one. */
const TX_PREFETCH_BYTES = 2048;

/** The guest sends in bulk (its TX queue is polled, see processTx) while its frames come at this
 *  many bytes per ms or more (32 KiB/ms: about 270 Mbit/s)... */
const TX_POLL_RATE = 32 * 1024;
/** ...and are this large on average: data, MTU-sized segments or TSO ones, not ACKs. */
const TX_POLL_FRAME = 1024;
/** ...and the guest has taken a TX interrupt this recently (ms): it waits for completions. */
const TX_CALL_RECENT_MS = 1000;
/** Polls come every 2 × txPollMs: each costs a turn of the event loop, a wake-up, a writev, an
 *  ACK and two calls, whatever it finds. A poll that finds the TX ring over this share full (in
 *  chains: a fast guest without TSO, that would fill it before the next), or bytes that came
 *  faster than TX_POLL_FAST_RATE, makes them come every txPollMs... */
const TX_POLL_FULL = 3 / 4;
/** ...until one finds it at most this share full, and its bytes come at TX_POLL_SLOW_RATE or
 *  slower. (Between the bounds, one interval's frames fit either way: a guest whose batches
 *  straddle one bound does not flip between the two intervals.) */
const TX_POLL_ROOMY = 1 / 4;
/** Bytes per ms (about 1.5 Gbit/s) over which polls come every txPollMs. A guest's TCP lets only
 *  so much of its data wait for completion in the driver's queue (TSQ: about a millisecond of its
 *  pacing rate, which is above its sending rate): a 3 ms poll slowed a TCG guest at 0.5 Gbit/s to
 *  0.73×, where 2 ms did not. A fast guest is not to wait 2 ms for its completions; at this rate a
 *  1 ms poll's costs are spread over 192 KiB anyway. */
const TX_POLL_FAST_RATE = 192 * 1024;
/** The rate (bytes per ms, about 1 Gbit/s) at or under which polls come every 2 × txPollMs again. */
const TX_POLL_SLOW_RATE = 128 * 1024;

/** How often (in frames) a TX slice looks at the clock. */
const SLICE_CHECK_FRAMES = 32;

/** Zeroes a virtio-net header byte by byte: fill(0) is a call into V8's C++ builtins, ~3× as long
 *  for 12 bytes, and this runs per frame to the guest. */
function clearNetHeader(hdr: Uint8Array): void {
  hdr[0] = hdr[1] = hdr[2] = hdr[3] = hdr[4] = hdr[5] = 0;
  hdr[6] = hdr[7] = hdr[8] = hdr[9] = hdr[10] = hdr[11] = 0;
}

/** Which of a TX chain's readable spans (`count` of them, the first two `first` and `second`
 *  bytes long) holds the frame's first `len` bytes after the virtio-net header (with the frame's
 *  length, all of it): 0 when they follow the header there, 1 when the header has a buffer of its
 *  own; else -1. */
function frameSpan(count: number, first: number, second: number, len: number): number {
  if (count >= 1 && first >= NET_HDR_LEN + len) return 0;
  if (count >= 2 && first === NET_HDR_LEN && second >= len) return 1;
  return -1;
}

/** NEEDS_CSUM in a virtio-net header, with csum_start and csum_offset (little-endian). */
function setNeedsCsum(hdr: Uint8Array, start: number, offset: number): void {
  hdr[0] = NET_HDR_F_NEEDS_CSUM;
  hdr[6] = start & 0xff;
  hdr[7] = start >> 8;
  hdr[8] = offset & 0xff;
  hdr[9] = offset >> 8;
}

/** What the device waits on now (status output: a stalled queue says which side holds it). */
export interface DeviceWaits {
  /** Frames copied for the guest, waiting for its receive buffers. */
  backlogFrames: number;
  /** Receive chains holding frames whose payload is still to be filled (completePayloads). */
  heldChains: number;
  /** A sender waits for receive buffers (onRoom). */
  roomWanted: boolean;
  /** TX is polled on a timer rather than kicked, and the timer is armed. */
  txPolling: boolean;
  txPollArmed: boolean;
}

export class VirtioNetDevice implements VhostUserDevice, FrameLink {
  // HOST_TSO4/6 and HOST_ECN: the guest may hand over TCP segments up to 64 KiB whatever its MTU;
  // vunet terminates TCP, so a large segment is simply one segment (nothing is cut up). HOST_UFO
  // likewise: a UDP datagram of up to 64 KiB in one frame is one datagram for the host socket,
  // whose kernel fragments it if the path needs it. (Linux guests stopped sending UFO in 4.14;
  // the feature is for the guests that still do. Its successor HOST_USO, bit 56, is unknown to
  // QEMU 7.2, which would mask it.)
  readonly features: bigint;
  readonly queueCount = 2;
  readonly stats: NetDeviceStats = doubleFields(
    {
      txFrames: 0,
      txBytes: 0,
      txDropped: 0,
      txGso: 0,
      txGsoBad: 0,
      rxGso: 0,
      rxCut: 0,
      rxFrames: 0,
      rxBytes: 0,
      rxDropped: 0,
      txFailed: 0,
      batchesFailed: 0,
      txSlices: 0,
      txPolls: 0,
      txCoalesced: 0,
      txAcksFiltered: 0,
    },
    'txBytes',
    'rxBytes',
  );
  sink: FrameSink | undefined;

  private rx: VirtQueue | undefined;
  private tx: VirtQueue | undefined;
  private mergeable = false;
  private guestCsum = false;
  /** GSO types the guest may send (HOST_TSO4/6 negotiated), and whether with ECN. */
  private hostTso4 = false;
  private hostTso6 = false;
  private hostEcn = false;
  private hostUfo = false;
  /** The guest takes GSO frames (GUEST_TSO4/6 negotiated). */
  private guestTso4 = false;
  private guestTso6 = false;
  /** The chains of a TX batch, popped JOIN_BATCH at a time (see processTx); and the view the
   *  frames popBatch() described for the coalescer's joinBatch() lie in, when there are any. */
  private readonly txBatch: DescriptorChain[] = [];
  private txBatchView: Uint8Array | undefined;
  /** txBatchView's segment of guest memory (PoppedChains.segment). */
  private txBatchSegment = -1;
  /** The spans popBatch() has described in the coalescer's batchSpans. */
  private txSpansUsed = 0;
  /** Each chain's head and readable bytes; and whether its DescriptorChain is still to be made
   *  from its description (txChain): a frame the addon joins never needs one. */
  private readonly txHeads = new Uint32Array(JOIN_BATCH);
  private readonly txLengths = new Uint32Array(JOIN_BATCH);
  private readonly txUnfilled = new Uint8Array(JOIN_BATCH);
  /** What the frames joinFrames() just took read (their readable bytes). */
  private txJoinedBytes = 0;
  /** The next frame of the batch, while the one before it is handled: its first bytes are asked
   *  for once (prefetchNext), with that frame's copy when they can be. */
  private txPrefetch: DescriptorChain | undefined;
  private readonly rxChain = new DescriptorChain(2048);
  private readonly rxNext = new DescriptorChain(2048);
  /** Heads and lengths of a mergeable frame's chains after the first (bounded by the queue). */
  private readonly moreHeads = new Uint32Array(4096);
  private readonly moreLens = new Uint32Array(4096);
  /** The writable bytes of the last receive chain writeFrame() took first: how many chains it asks
   *  the addon's walk for at once. */
  private rxChainBytes = 2048;
  private readonly scratch = new Uint8Array(NET_HDR_LEN + MAX_FRAME);
  /** The payload of the TX frame being handled when it was left in guest memory, and the heads
   *  of the chains whose payload the stack kept (returned after the batch's releasePayloads). */
  private readonly txPayload = new TxPayload(this.scratch);
  private readonly joinedPayload = new JoinedPayload();
  /** sumFrames()'s tables for the payload of one scattered segment joining a run. */
  private readonly spanStarts = new Uint32Array(1);
  private readonly spanSums = new Uint32Array(1);
  private readonly txHeldHeads = new Uint32Array(MAX_QUEUE_SIZE); // a chain is popped once
  private txHeld = 0;
  // Frames sent with sendHeaders(), held until completePayloads(): their chains (heads, used
  // lengths), and the guest memory their payload goes to as spans.
  private readonly heldHeads = new Uint32Array(1024);
  private readonly heldLens = new Uint32Array(1024);
  private held = 0;
  private heldFrames = 0;
  private heldBytes = 0;
  private heldQueue: VirtQueue | undefined;
  private readonly spanViews: Uint8Array[] = new Array<Uint8Array>(MAX_SPANS).fill(new Uint8Array(0));
  private readonly spanOffsets = new Float64Array(MAX_SPANS);
  private readonly spanLengths = new Uint32Array(MAX_SPANS);
  private spanCount = 0;
  private spansFull = false;
  // Per held frame: its first payload span, its first checksum-field span, and (for a guest
  // without GUEST_CSUM) the sum of its headers; the checksum fields' spans; the field's offset
  // in the frame being written (-1: none to locate).
  private readonly frameSpanStart = new Uint32Array(MAX_HELD_FRAMES);
  private readonly frameCsumStart = new Uint32Array(MAX_HELD_FRAMES);
  private readonly frameSum = new Uint32Array(MAX_HELD_FRAMES);
  private readonly csumViews: Uint8Array[] = new Array<Uint8Array>(2 * MAX_HELD_FRAMES).fill(new Uint8Array(0));
  private readonly csumOffsets = new Float64Array(2 * MAX_HELD_FRAMES);
  private readonly csumLengths = new Uint32Array(2 * MAX_HELD_FRAMES);
  private csumCount = 0;
  private csumAt = -1;
  /** Large segments cut for a guest that takes no GSO frames (sendCut): its frames' beginning
   *  (virtio-net header, then the segment's headers with the fields each frame has its own
   *  zeroed), and the partial checksum of a frame sent the usual way. rxWhole: the last frame to
   *  the guest fit one chain; cutRefused: a segment came that sendCut cannot cut (none will be
   *  again). */
  private readonly cutHeaders = new Uint8Array(NET_HDR_LEN + 256);
  private readonly cutViews = new ViewCache(4);
  private readonly cutPartial: PartialChecksum = { start: 0, offset: 0, segmentSize: 0 };
  /** The segment's layout for cutFrames(), and the buffers its frames go to (one chain's first
   *  writable buffer each). */
  private readonly cutLayout = new Uint32Array(CUT_FIELDS);
  private readonly cutDst: Uint8Array[] = new Array<Uint8Array>(MAX_CUT_PIECES).fill(new Uint8Array(0));
  private readonly cutAt = new Float64Array(MAX_CUT_PIECES);
  /** A frame of the segment sent the usual way (sendHeld), as cutFrames() writes it, and its
   *  header sum. */
  private readonly cutOne = new Uint8Array(NET_HDR_LEN + 256);
  private readonly cutSum = new Uint32Array(1);
  private rxWhole = true;
  private cutRefused = false;
  /** After a cut that did not fit (the frames one by one ran out of chains or table room): how
   *  many of its frames did, and the ring as it was then (next chain, avail.idx). cutBudget asks
   *  for no more while the ring is unchanged, so the sender's next try fits: without it, a ring
   *  whose chains are many but too small for a frame each makes the same segment fail forever. */
  private cutFit = MAX_CUT_PIECES;
  private cutFitNext = -1;
  private cutFitAvail = -1;
  /** While rxKicked offers room (onRoom): the next chain then, else -1. A wantRoom() meanwhile
   *  with chains there, none of them taken, comes from a sender that could not use them: it is
   *  offered room again on a later turn, not by a microtask. */
  private offeredAt = -1;
  /** Guest TCP segments being joined (absent: coalesce off). */
  private readonly coalescer: TcpCoalescer | undefined;
  /** Pure ACKs a later one supersedes, passed over where segments are joined. */
  private readonly acks = new AckFilter(NET_HDR_LEN);
  /** The frame's view of scratch or of the joined segment, one per length and slot: joined
   *  segments come in as many lengths as a run has parts (up to 45) in each of the coalescer's
   *  slots, so the cache keeps that many (8 × 45) and more. */
  private readonly frameViews = new ViewCache(512);
  private readonly header = new Uint8Array(NET_HDR_LEN);
  private readonly meta: RxMeta = { checksumPartial: false, checksumStart: 0, checksumOffset: 0 };
  /** Frames waiting for receive buffers, each with its partial checksum (or undefined). */
  private readonly backlog: Uint8Array[] = [];
  private readonly backlogPartial: (PartialChecksum | undefined)[] = [];
  private backlogSize = 0;
  /** The flush of frames sent outside the owner's batches (see inBatch). */
  private readonly flushLater: EndOfTurn;
  private roomWanted = false;
  private rxCheckScheduled = false;
  private readonly log: Logger;
  private readonly backlogFrames: number;
  private readonly backlogBytes: number;
  private wasUp = false;
  private readonly txSliceFrames: number;
  private readonly txSliceMs: number;
  private readonly defer: (fn: () => void) => void;
  private readonly now: () => number;
  /** The rest of a sliced TX batch is scheduled. */
  private txContinues = false;
  /** The queue whose sliced batch continues (it may be gone by then). */
  private continuing: VirtQueue | undefined;
  private readonly txPollMs: number;
  /** The TX queue is polled: kicks are off, the poll timer runs (see processTx). */
  private txPolling = false;
  private txPollArmed = false;
  /** Between runTx's onBatchStart and onBatchEnd (a batch that throws still ends: see recoverTx). */
  private txBatchOpen = false;
  /** The poll timer, made once and re-armed with refresh(): no allocation per poll. */
  private txPollTimer: { refresh(ms: number): unknown } | undefined;
  /** The poll interval now (ms): 2 × txPollMs, or txPollMs (TX_POLL_FULL, TX_POLL_FAST_RATE). */
  private txPollEvery: number;
  private readonly timer: (fn: () => void, ms: number) => { refresh(ms: number): unknown };
  /** When the last TX batch that had frames began (ms), for the guest's sending rate. */
  private txLastBatch = -Infinity;
  /** The TX queue's calls as last seen, and when they were seen to grow (ms): whether the guest
   *  takes TX interrupts (see processTx). */
  private txCallsSeen = 0;
  private txCallAt = -Infinity;

  constructor(private readonly opts: NetDeviceOptions = {}) {
    this.log = opts.logger ?? silentLogger;
    this.backlogFrames = opts.backlogFrames ?? 1024;
    this.backlogBytes = opts.backlogBytes ?? 8 << 20;
    this.txSliceFrames = opts.txSliceFrames ?? 256;
    this.txSliceMs = opts.txSliceMs ?? 10;
    this.txPollMs = opts.txPollMs ?? 1;
    this.txPollEvery = 2 * this.txPollMs;
    this.timer = opts.timer ?? ((fn, ms) => new PollTimer(fn, ms));
    this.defer = opts.defer ?? ((fn) => void setImmediate(fn));
    this.now = opts.now ?? (() => PERFORMANCE.now());
    this.flushLater = new EndOfTurn(() => this.flush(), opts.inBatch);
    const inPlace = opts.payloadsInPlace === true;
    this.coalescer = opts.coalesce === false ? undefined : new TcpCoalescer(inPlace ? COALESCE_SLOTS : 1, inPlace);
    for (let i = 0; i < JOIN_BATCH; i++) this.txBatch.push(new DescriptorChain(2048));
    const hostGso =
      opts.hostOffloads === false
        ? 0n
        : (1n << NetFeature.HOST_TSO4) | (1n << NetFeature.HOST_TSO6) | (1n << NetFeature.HOST_ECN) | (1n << NetFeature.HOST_UFO);
    this.features =
      (1n << NetFeature.CSUM) |
      (1n << NetFeature.GUEST_CSUM) |
      (1n << NetFeature.MTU) |
      (1n << NetFeature.MRG_RXBUF) |
      hostGso |
      (1n << NetFeature.GUEST_TSO4) |
      (1n << NetFeature.GUEST_TSO6);
  }

  /** The guest takes frames whose checksum is partial (it negotiated GUEST_CSUM). */
  get partialChecksums(): boolean {
    return this.guestCsum;
  }

  /** The queues' own counters (chains, guest notifications sent and suppressed), while up. */
  queueStats(): { rx?: QueueStats & { ring: RingState }; tx?: QueueStats & { ring: RingState }; waits: DeviceWaits } {
    return {
      ...(this.rx ? { rx: { ...this.rx.stats, ring: this.rx.ringState() } } : {}),
      ...(this.tx ? { tx: { ...this.tx.stats, ring: this.tx.ringState() } } : {}),
      waits: {
        backlogFrames: this.backlog.length,
        heldChains: this.held,
        roomWanted: this.roomWanted,
        txPolling: this.txPolling,
        txPollArmed: this.txPollArmed,
      },
    };
  }

  /** The guest's driver has its queues up. */
  get linkUp(): boolean {
    return this.rx !== undefined && this.tx !== undefined;
  }

  featuresNegotiated(features: bigint): void {
    this.mergeable = (features & (1n << NetFeature.MRG_RXBUF)) !== 0n;
    this.guestCsum = (features & (1n << NetFeature.GUEST_CSUM)) !== 0n;
    this.hostTso4 = (features & (1n << NetFeature.HOST_TSO4)) !== 0n;
    this.hostTso6 = (features & (1n << NetFeature.HOST_TSO6)) !== 0n;
    this.hostEcn = (features & (1n << NetFeature.HOST_ECN)) !== 0n;
    this.hostUfo = (features & (1n << NetFeature.HOST_UFO)) !== 0n;
    this.guestTso4 = (features & (1n << NetFeature.GUEST_TSO4)) !== 0n;
    this.guestTso6 = (features & (1n << NetFeature.GUEST_TSO6)) !== 0n;
  }

  queueStarted(q: VirtQueue): void {
    if (q.index === 0) this.rx = q;
    else if (q.index === 1) {
      this.tx = q;
      this.txPolling = false;
      this.txLastBatch = -Infinity;
      this.txCallsSeen = q.stats.calls;
      this.txCallAt = -Infinity;
    }
    this.linkChanged();
  }

  queueStopped(q: VirtQueue): void {
    if (q === this.heldQueue) this.forgetHeld();
    if (q === this.rx) this.rx = undefined;
    if (q === this.tx) this.tx = undefined;
    this.linkChanged();
  }

  /** The negotiated features that shape the data path, for the log (what a slow guest lacks). */
  private featureNames(): string[] {
    const names: string[] = [];
    if (this.mergeable) names.push('MRG_RXBUF');
    if (this.guestCsum) names.push('GUEST_CSUM');
    if (this.guestTso4) names.push('GUEST_TSO4');
    if (this.guestTso6) names.push('GUEST_TSO6');
    if (this.hostTso4) names.push('HOST_TSO4');
    if (this.hostTso6) names.push('HOST_TSO6');
    if (this.hostEcn) names.push('HOST_ECN');
    if (this.hostUfo) names.push('HOST_UFO');
    return names;
  }

  private linkChanged(): void {
    const up = this.linkUp;
    if (up === this.wasUp) return;
    this.wasUp = up;
    if (up) this.log.info({ up, features: this.featureNames() }, 'guest link up');
    else this.log.info({ up }, 'guest link down');
    this.opts.onLinkChange?.(up);
  }

  disconnected(): void {
    this.coalescer?.reset();
    this.cutFit = MAX_CUT_PIECES;
    this.forgetHeld();
    this.backlog.length = 0;
    this.backlogPartial.length = 0;
    this.opts.memory?.give(this.backlogSize);
    this.backlogSize = 0;
  }

  queueKicked(q: VirtQueue): void {
    if (q === this.tx) this.processTx(q);
    else if (q === this.rx) this.rxKicked();
  }

  /** The guest posted receive buffers: drain the backlog, then tell who waits for room. Kicks
   *  then go off again unless someone still waits (vhost-net's discipline): a driver without
   *  EVENT_IDX (DPDK's) would otherwise kick on every refill for as long as it runs, each kick a
   *  VM exit for it and a wake-up for us. With EVENT_IDX the kick asked for was one already. */
  private rxKicked(): void {
    try {
      this.offerRoom();
      if (!this.roomWanted && this.backlog.length === 0) this.rx?.disableNotification();
    } catch (err) {
      // A bug (the owner's onRoom, when it does not guard it itself): counted, and the next
      // buffers the guest posts try again. Thrown from here, it would drop the guest's
      // connection (a kick) or the process (a deferred check).
      this.batchFailed(err);
      this.roomWanted = true;
      this.armRxKick();
    }
  }

  /** rxKicked's work: the backlog first, then whoever waits for room. */
  private offerRoom(): void {
    this.drainBacklog();
    if (!this.roomWanted) return;
    if (this.hasRoom()) {
      this.roomWanted = false;
      this.offeredAt = this.rx!.lastAvail; // (hasRoom: rx is there)
      try {
        this.opts.onRoom?.();
      } finally {
        this.offeredAt = -1;
      }
    } else {
      this.armRxKick(); // still none: wait for the next buffers
    }
  }

  /**
   * Asks the guest to kick on new receive buffers. When some arrived meanwhile no kick will come
   * for them (the race of §2.7.10), so they are looked at on this turn's microtask instead.
   */
  private armRxKick(): void {
    if (this.rx?.enableNotificationOnMore()) this.checkRxSoon();
  }

  /** rxKicked() at the end of this turn, with a function made once (see atEndOfTurn): a
   *  host→guest stream comes here after most batches (its flows wait for room the guest has
   *  posted since). */
  private checkRxSoon(): void {
    if (this.rxCheckScheduled) return;
    this.rxCheckScheduled = true;
    atEndOfTurn(this.rxCheck);
  }

  /** rxKicked() on a later turn: for a sender that was offered room and could not use it. A
   *  microtask would offer it again before anything else ran, and a sender that fails the same
   *  way each time would hold the event loop for good. */
  private checkRxLater(): void {
    if (this.rxCheckScheduled) return;
    this.rxCheckScheduled = true;
    this.defer(this.rxCheck);
  }

  private readonly rxCheck = (): void => {
    this.rxCheckScheduled = false;
    this.rxKicked();
  };

  /** The poll timer fired: the batch the guest queued since the last one (see processTx). */
  private readonly txPoll = (): void => {
    this.txPollArmed = false;
    const q = this.tx;
    if (q === undefined || !this.txPolling) return;
    this.stats.txPolls++;
    this.processTx(q);
  };

  /** Whether the guest took a TX interrupt (a call on its TX queue) in the last
   *  TX_CALL_RECENT_MS, looked at as each TX batch starts. */
  private takesTxInterrupts(q: VirtQueue, now: number): boolean {
    if (q.stats.calls !== this.txCallsSeen) {
      this.txCallsSeen = q.stats.calls;
      this.txCallAt = now;
    }
    return now - this.txCallAt <= TX_CALL_RECENT_MS;
  }

  /** The rest of a sliced TX batch (made once: a closure per slice would be garbage per slice). */
  private readonly continueTx = (): void => {
    const q = this.continuing;
    this.txContinues = false;
    this.continuing = undefined;
    if (q !== undefined && q === this.tx) this.processTx(q);
  };

  /** Whether a frame sent now goes straight into the guest's receive buffers (no backlog). */
  hasRoom(): boolean {
    return this.backlog.length === 0 && this.rx !== undefined && this.rx.availableCount() > 0;
  }

  /** Calls onRoom once the guest posts receive buffers (a kick, which this enables). */
  wantRoom(): void {
    this.roomWanted = true;
    if (!this.hasRoom()) this.armRxKick();
    else if (this.offeredAt === this.rx!.lastAvail) this.checkRxLater();
    else this.checkRxSoon(); // (chains arrived as the sender took the last ones: it goes on)
  }

  /**
   * Hands the guest's frames to the stack, a slice at a time: after txSliceFrames frames or
   * txSliceMs the slice ends (its answers go out) and the rest of the batch follows on a later
   * turn, so host sockets and timers are served in between however fast the guest sends.
   *
   * A batch starts on a kick, or, while the guest sends in bulk, on a poll: TX interrupt
   * moderation, as a NIC's. A guest that hands over large segments (TSO) does so about one per
   * kick: it makes them more slowly than we take them. Each of them would then cost an
   * event-loop turn of its own, the guest an interrupt, and both a wake-up. A guest without TSO
   * brings a few dozen MTU-sized segments per kick, and each batch still costs its turn, its
   * interrupts, a write to the host socket and an ACK. So when a batch's frames are data (at
   * least TX_POLL_FRAME on average) and came at TX_POLL_RATE or more (its bytes over the time
   * since the batch before with frames began), kicks stay off and the queue is looked at again
   * 2 × txPollMs later (txPollMs while the guest nearly fills its ring between two polls, or
   * sends faster than about 1.5 Gbit/s: TX_POLL_FULL, TX_POLL_FAST_RATE); the guest gets the
   * batch's completions at once, and queues its next frames meanwhile. Polls go on while batches
   * come at that rate, whatever their frames' size (a sender's small ones, ACKs and the ends of
   * its writes, come between the others); the first batch that comes slower turns kicks back on
   * (taking what came as it did). Frames wait at most that interval longer, and only in bulk
   * transfers; small frames (ACKs, requests and answers, pings) never get there. (Measured, QEMU
   * guest→host, polls every 2 ms rather than every 1: 0.81× the CPU per GB at MTU 1500 without
   * TSO, 0.82× at MTU 65520, at the same throughput.)
   *
   * Only a guest that takes TX interrupts is polled (TX_CALL_RECENT_MS): its ring may fill
   * before a poll (Node's timers fire late under load), and a driver that takes interrupts
   * (Linux's) then stops its queue until the completions the next poll publishes. One that takes
   * none polls its own ring (DPDK's): it gains no interrupts from polling, and drops what does
   * not fit.
   */
  private processTx(q: VirtQueue): void {
    try {
      this.runTx(q);
    } catch (err) {
      this.batchFailed(err);
      this.recoverTx(q);
    }
  }

  /**
   * A TX batch threw outside any one frame's handling (a bug). The batch still ends (its owner's
   * onBatchEnd), payload kept by reference is let go of and its buffers go back; the chains the
   * batch had popped but not reached are lost to the guest (a few buffers of its ring), and so is
   * the run the coalescer was joining (the guest's TCP sends it again). The queue is polled once
   * on a later turn, since the guest may have been told not to kick. Left to the vhost-user
   * library, the exception would close the guest's connection: its network gone until QEMU
   * reconnects.
   */
  private recoverTx(q: VirtQueue): void {
    this.txContinues = false;
    this.continuing = undefined;
    try {
      if (this.txBatchOpen) {
        this.txBatchOpen = false;
        this.opts.onBatchEnd?.(0);
      }
      this.releaseHeld();
    } catch (err) {
      this.batchFailed(err);
    }
    this.coalescer?.reset();
    const running = q === this.tx; // (a queue stopped meanwhile is the frontend's again)
    if (running) for (let i = 0; i < this.txHeld; i++) q.pushUsed(this.txHeldHeads[i]!, 0);
    this.txHeld = 0;
    if (running) q.flush();
    this.flush();
    if (!running) return;
    this.txPolling = true;
    this.armTxPoll();
  }

  /** A batch threw outside any one frame's handling: counted and reported as frame errors are. */
  private batchFailed(err: unknown): void {
    this.stats.batchesFailed++;
    this.reportBug(err, 'a batch of guest frames could not be handled');
  }

  /** A bug caught in the device: to the owner (onFrameError), else logged with `message`. */
  private reportBug(err: unknown, message: string): void {
    if (this.opts.onFrameError) this.opts.onFrameError(err);
    else this.log.error({ err }, message);
  }

  /** processTx's batch. */
  private runTx(q: VirtQueue): void {
    if (this.txContinues) return; // the scheduled slice will see these buffers
    const start = this.now();
    const waits = this.takesTxInterrupts(q, start);
    this.opts.onBatchStart?.();
    this.txBatchOpen = true;
    let frames = 0;
    let bytes = 0;
    let sliced = false;
    let poll = false;
    let checked = 0;
    /** The time the batch's frames came in (ms; at least a poll interval). */
    const span = Math.max(start - this.txLastBatch, this.txPollMs);
    const g = this.coalescer;
    outer: do {
      q.disableNotification();
      // The chains are popped JOIN_BATCH at a time, then handled in order; a slice ends only
      // between such groups (nothing popped is left for the next one).
      for (let n = this.popBatch(q); n > 0; n = this.popBatch(q)) {
        for (let i = 0; i < n; i++) {
          if (g !== undefined && this.txBatchView !== undefined) {
            const end = this.joinFrames(q, g, this.txBatchView, i, n);
            bytes += this.txJoinedBytes;
            i = end;
            if (i === n) break;
          }
          const chain = this.txChain(i);
          bytes += chain.readableLength;
          // The next frame's bytes are asked for as this one is copied (prefetchNext), so that
          // they arrive while this one is handled (the guest's CPU wrote them; read cold, a
          // frame's copy waits on every line).
          this.txPrefetch = i + 1 < n ? this.txChain(i + 1) : undefined;
          const p = this.txPayload;
          p.kept = false;
          try {
            // A pure ACK the next frame (txPrefetch) supersedes goes back unread (see ack-filter.ts).
            if (g !== undefined && this.txPrefetch !== undefined && this.acks.supersedes(chain, this.txPrefetch)) {
              this.stats.txFrames++;
              this.stats.txBytes += chain.readableLength - NET_HDR_LEN;
              this.stats.txAcksFiltered++;
            } else {
              this.receiveChain(chain);
            }
          } catch (err) {
            // A bug in the device's own handling (the sink's are caught in deliver) costs this
            // frame: the chain still goes back, the batch goes on, the connection stays.
            this.frameFailed(err);
          }
          this.txPrefetch = undefined;
          // A chain whose payload the stack kept by reference goes back after the batch's writes.
          if (p.kept) this.txHeldHeads[this.txHeld++] = chain.head;
          else q.pushUsed(chain.head, 0);
          // (A queue stopped meanwhile would leave the popped chains pointing at memory that may
          // be gone: nothing in a frame's handling stops it, but they are not read then.)
          if (q !== this.tx) break outer;
        }
        frames += n;
        if (frames - checked >= SLICE_CHECK_FRAMES) {
          checked = frames;
          if (frames >= this.txSliceFrames || this.now() - start >= this.txSliceMs) {
            sliced = true;
            break outer;
          }
        }
      }
      // The completions are visible at once (a driver reclaiming its buffers finds them); the
      // call waits for the slice's end (see below).
      q.publish();
      // Bulk (see above): kicks stay off, the poll timer takes the next batch.
      if (this.txPollMs > 0 && waits && (this.txPolling || bytes >= TX_POLL_FRAME * frames) && bytes >= TX_POLL_RATE * span) {
        poll = true;
        break;
      }
    } while (q.enableNotification());
    q.publish(); // (a slice that ended mid-loop)
    if (frames > 0) this.txLastBatch = start;
    // (A sliced batch leaves kicks off and its mode as it was: the next slice decides.)
    if (!sliced) this.txPolling = poll;
    if (poll) {
      const rate = bytes / span;
      if (frames > q.size * TX_POLL_FULL || rate > TX_POLL_FAST_RATE) this.txPollEvery = this.txPollMs;
      else if (frames <= q.size * TX_POLL_ROOMY && rate <= TX_POLL_SLOW_RATE) this.txPollEvery = 2 * this.txPollMs;
      this.armTxPoll();
    }
    // The slice's last segments, joined, go before its output.
    if (this.coalescer !== undefined && this.coalescer.length > 0) this.deliverJoined();
    if (sliced) {
      // Kicks stay off: the next slice looks at the ring anyway.
      this.stats.txSlices++;
      this.txContinues = true;
      this.continuing = q;
      this.defer(this.continueTx);
    }
    // The batch's output (the NAT's flush), then everything it and the slice produced goes out
    // with one used-ring publish and at most one call.
    this.txBatchOpen = false;
    this.opts.onBatchEnd?.(this.now() - start);
    if (this.txHeld > 0 || (this.coalescer !== undefined && this.coalescer.held > 0)) {
      // Payload kept by reference is written (or copied) now; then its buffers go back.
      this.releaseHeld();
      for (let i = 0; i < this.txHeld; i++) q.pushUsed(this.txHeldHeads[i]!, 0);
      this.txHeld = 0;
    }
    // The slice's call, only now and next to its answers': made before the NAT's flush, it would
    // wake the frontend once, and the answers' call again after it.
    q.flush();
    this.flush();
  }

  /**
   * Pops up to JOIN_BATCH chains for a TX group: returns how many. The addon's walk takes them a
   * run at a time (VirtQueue.popSpans), pop() the chains it leaves. With a coalescer and the
   * addon's joinRun, each frame that could join a run (long enough, in at most JOIN_FRAME_SPANS
   * readable spans of one view, the first such frame's; in one buffer unless payload stays in
   * place) is described for joinBatch(), and gets its DescriptorChain only if JavaScript handles
   * it after all (txChain); any other, and any chain pop() took, gets a count of 0 (JavaScript
   * handles it, and joins it where it continues a run), and its chain at once.
   */
  private popBatch(q: VirtQueue): number {
    const chains = this.txBatch;
    const g = this.coalescer;
    const describe = g !== undefined && joinRun() !== undefined;
    const p = q.popped;
    this.txBatchView = undefined;
    this.txSpansUsed = 0;
    let n = 0;
    while (n < JOIN_BATCH) {
      const got = q.popSpans(JOIN_BATCH - n, false, chains[n]!.capacity);
      for (let c = 0; c < got; c++, n++) {
        this.txHeads[n] = p.head(c);
        this.txUnfilled[n] = describe && this.describeSpans(g, p, c, n) ? 1 : 0;
        if (this.txUnfilled[n] === 0) {
          p.fill(c, chains[n]!, false);
          this.txLengths[n] = chains[n]!.readableLength;
        }
      }
      if (!q.leftToPop) {
        if (got === 0) break;
      } else if (n < JOIN_BATCH) {
        const chain = chains[n]!;
        if (!q.pop(chain)) break;
        this.txHeads[n] = chain.head;
        this.txLengths[n] = chain.readableLength;
        this.txUnfilled[n] = 0;
        if (describe) g.batchRows[2 * n + 1] = 0; // (rare: JavaScript joins it, as any frame it handles)
        n++;
      }
    }
    return n;
  }

  /** Describes the chain popSpans() took as its `c`th for joinBatch() as frame `i` (its rows,
   *  its spans in batchSpans), and sets its readable bytes; false (nothing described) when it
   *  cannot join (see popBatch). */
  private describeSpans(g: TcpCoalescer, p: PoppedChains, c: number, i: number): boolean {
    const first = p.spanStart(c);
    const end = p.spanEnd(c);
    const count = end - first;
    const rows = g.batchRows;
    const at = this.txSpansUsed;
    rows[2 * i] = at;
    rows[2 * i + 1] = 0;
    if (count === 0 || count > JOIN_FRAME_SPANS) return false;
    // All its spans in one segment, the group's (the first described frame's): written to the
    // table as they are looked at, counted only if the frame qualifies.
    const seg = p.segment(first);
    if (this.txBatchView !== undefined && seg !== this.txBatchSegment) return false;
    const spans = g.batchSpans;
    let len = 0;
    for (let k = first, j = 2 * at; k < end; k++, j += 2) {
      if (p.segment(k) !== seg) return false;
      const l = p.length(k);
      spans[j] = p.offset(k);
      spans[j + 1] = l;
      len += l;
    }
    if (len < NET_HDR_LEN + COALESCE_MIN) return false;
    // (A device that copies joined payload joins only frames in one buffer, as coalesce().)
    if (!g.inPlace && frameSpan(count, p.length(first), count >= 2 ? p.length(first + 1) : 0, len - NET_HDR_LEN) < 0) return false;
    if (this.txBatchView === undefined) {
      this.txBatchView = p.bytes(first);
      this.txBatchSegment = seg;
    }
    rows[2 * i + 1] = count;
    this.txSpansUsed = at + count;
    this.txLengths[i] = len;
    return true;
  }

  /** Frame i of the TX group as a DescriptorChain, made from its description now if popBatch()
   *  left it undone. */
  private txChain(i: number): DescriptorChain {
    const chain = this.txBatch[i]!;
    if (this.txUnfilled[i] === 1) {
      this.txUnfilled[i] = 0;
      const g = this.coalescer!;
      const view = this.txBatchView!;
      const rows = g.batchRows;
      const spans = g.batchSpans;
      chain.reset(this.txHeads[i]!);
      for (let k = rows[2 * i]!, end = k + rows[2 * i + 1]!; k < end; k++) chain.push(view, spans[2 * k]!, spans[2 * k + 1]!, false);
    }
    return chain;
  }

  private armTxPoll(): void {
    if (this.txPollArmed) return; // (a timer's refresh() may push a due poll back by an interval)
    this.txPollArmed = true;
    if (this.txPollTimer === undefined) this.txPollTimer = this.timer(this.txPoll, this.txPollEvery);
    else this.txPollTimer.refresh(this.txPollEvery);
  }

  private receiveChain(chain: DescriptorChain): void {
    const total = chain.readableLength;
    if (total < NET_HDR_LEN + 14 || total > NET_HDR_LEN + MAX_FRAME) {
      this.stats.txDropped++;
      this.log.debug({ len: total }, 'guest frame of bad length dropped');
      return;
    }
    chain.read(0, this.header, 0, NET_HDR_LEN);
    const flags = this.header[0]!;
    const gso = this.header[1]!;
    const len = total - NET_HDR_LEN;
    const g = this.coalescer;
    if (g !== undefined) {
      if ((flags & ~NET_HDR_F_NEEDS_CSUM) === 0 && gso === NET_HDR_GSO_NONE && len >= COALESCE_MIN && len <= g.buf.length && this.coalesce(g, chain, len)) {
        return;
      }
      if (g.length > 0) this.deliverJoined(); // what was joined goes first
    }
    this.prefetchNext(undefined, undefined);
    // The private copy: from here on nothing reads this frame's headers from guest memory. A
    // TCP segment's payload may stay there (FramePayload): the kernel reads it, or load().
    const p = this.txPayload;
    p.reset();
    let frameSum = -1;
    // Only with NEEDS_CSUM: nothing then reads the payload (a checksum to verify would read it
    // from guest memory anyway, and then a copy costs little more).
    if (this.opts.payloadsInPlace === true && (flags & NET_HDR_F_NEEDS_CSUM) !== 0 && len >= PAYLOAD_IN_PLACE_MIN) {
      const head = chain.read(NET_HDR_LEN, this.scratch, 0, HEAD_COPY);
      const at = tcpPayloadAt(this.scratch, head, len);
      if (at > 0) {
        const count = chain.readableSpans(NET_HDR_LEN + at, len - at, p.views, p.offsets, p.lengths, 0);
        if (count > 0) p.leftAt(at, len - at, count);
      }
      if (p.loaded) chain.read(NET_HDR_LEN + head, this.scratch, head, len - head);
    } else {
      frameSum = this.copyFrame(chain, len);
    }
    const frame = this.frameViews.of(this.scratch, 0, len);
    if (gso !== NET_HDR_GSO_NONE) {
      if (!this.gsoOk(gso, flags, frame)) {
        this.stats.txGsoBad++;
        this.stats.txDropped++;
        this.log.debug({ gso, flags }, 'guest GSO frame refused');
        return;
      }
      this.stats.txGso++;
    }
    this.meta.payload = p.loaded ? undefined : p;
    this.stats.txFrames++;
    this.stats.txBytes += frame.length;
    this.deliverAsSent(frame, frameSum);
  }

  /** Hands the guest frame whose virtio-net header is this.header (its private copy) to the sink;
   *  with NEEDS_CSUM the checksum's place comes from that header. */
  private deliverAsSent(frame: Uint8Array, frameSum: number): void {
    if ((this.header[0]! & NET_HDR_F_NEEDS_CSUM) === 0) this.deliver(frame, frameSum, false, 0, 0);
    else this.deliver(frame, frameSum, true, this.csumStart, this.csumOffset);
  }

  /** NEEDS_CSUM's csum_start and csum_offset in this.header (little-endian). */
  private get csumStart(): number {
    return this.header[6]! | (this.header[7]! << 8);
  }

  private get csumOffset(): number {
    return this.header[8]! | (this.header[9]! << 8);
  }

  /** Hands a guest frame (a private copy) to the sink; with `partial` its transport checksum is
   *  partial (NEEDS_CSUM), from `checksumStart`, its field `checksumOffset` further. */
  private deliver(frame: Uint8Array, frameSum: number, partial: boolean, checksumStart: number, checksumOffset: number): void {
    this.meta.frameSum = frameSum;
    this.meta.checksumPartial = partial;
    this.meta.checksumStart = checksumStart;
    this.meta.checksumOffset = checksumOffset;
    try {
      this.sink?.receive(frame, this.meta);
    } catch (err) {
      this.frameFailed(err); // a bug costs this frame, never the batch or the process
    }
  }

  private frameFailed(err: unknown): void {
    this.stats.txFailed++;
    this.reportBug(err, 'a guest frame could not be handled: dropped');
  }

  /**
   * A frame without segmentation offload that may be a TCP segment to join (tcp-coalescer.ts):
   * while a run is open, its headers are copied and its payload summed (in place, where it lies;
   * else as it is copied straight behind the pending payload; with NEEDS_CSUM not at all), and it
   * joins if its headers say it continues the run. Any other is copied whole into the coalescer,
   * after what was pending goes to the sink: a segment that may start a run stays there; the rest
   * goes to the sink from that copy. False (nothing done) for a frame in several buffers when
   * payload is not kept in place: the caller copies it.
   */
  private coalesce(g: TcpCoalescer, chain: DescriptorChain, len: number): boolean {
    const seg = this.frameSegment(chain, len);
    if (seg < 0) return g.inPlace && this.coalesceScattered(g, chain, len);
    const src = chain.bytes[seg]!;
    const job = g.job;
    job[CopyJobField.srcOffset] = this.frameOffset(chain, seg);
    job[CopyJobField.length] = len;
    this.prefetchNext(src, job);
    // NEEDS_CSUM: a partial TCP checksum, trusted (nothing summed), joined only where it says the
    // TCP checksum field is.
    const partial = this.header[0] !== 0;
    // While a run is open, the frame is taken to continue it (as nearly every frame of a stream
    // does): its headers go to g.head and its payload, summed, straight behind the pending
    // payload, in one call; match() and join() then decide on those copies. A frame that does
    // not continue the run has only cost a copy it gets again below. In a run in place, the
    // payload is only summed (with NEEDS_CSUM not even that): it stays in the guest's buffer,
    // which goes back after the batch's writes.
    let at = g.continuesAt(len);
    if (at > 0) {
      job[CopyJobField.headLength] = at;
      job[CopyJobField.dstAt] = g.runInPlace ? SUM_IN_PLACE : g.offset + g.length;
      job[CopyJobField.sumFrom] = partial ? len - at : 0;
      copyJob(src, g.arena, job);
      job[CopyJobField.prefetchLength] = 0; // (asked for)
      const sum = job[CopyJobField.sum]!;
      if (coalescible(g.head, at, len) === at && (!partial || this.partialOverTcp(g.head)) && g.match(at, len, partial) && g.join(len, sum)) {
        if (g.runInPlace) {
          g.joinedAt(src, job[CopyJobField.srcOffset]! + at, len - at);
          this.txPayload.kept = true; // (processTx holds the chain)
        }
        return this.joinedOne(len);
      }
    }
    if (g.length > 0) this.deliverJoined();
    job[CopyJobField.headLength] = 0;
    job[CopyJobField.dstAt] = g.offset;
    job[CopyJobField.sumFrom] = partial ? len : ETHERNET_HEADER_LEN;
    copyJob(src, g.arena, job);
    const frameSum = partial ? -1 : job[CopyJobField.sum]!;
    this.stats.txFrames++;
    this.stats.txBytes += len;
    // Decided on the copy (the guest may change its buffer meanwhile).
    at = coalescible(g.buf, Math.min(len, COALESCE_HEAD), len);
    if (at > 0 && (!partial || this.partialOverTcp(g.buf))) {
      g.start(len, at, frameSum, partial);
      return true;
    }
    this.meta.payload = undefined;
    this.deliverAsSent(this.frameViews.of(g.arena, g.offset, g.offset + len), frameSum);
    return true;
  }

  /**
   * coalesce() for a frame in several buffers (a Linux guest's: its headers in one, its payload in
   * the pages behind): the headers are read into g.head; in a run in place the payload's spans go
   * straight into the run's, summed there unless NEEDS_CSUM, else the payload is copied (and
   * summed) behind the pending one. A frame that does not join may start a run in place; any other
   * is copied whole, as in coalesce().
   */
  private coalesceScattered(g: TcpCoalescer, chain: DescriptorChain, len: number): boolean {
    const partial = this.header[0] !== 0;
    let at = g.continuesAt(len);
    if (
      at > 0 &&
      this.readHead(g, chain, at) &&
      coalescible(g.head, at, len) === at &&
      (!partial || this.partialOverTcp(g.head)) &&
      g.match(at, len, partial)
    ) {
      if (g.runInPlace) {
        const first = g.spanCount;
        const end = chain.readableSpans(NET_HDR_LEN + at, len - at, g.spanViews, g.spanOffsets, g.spanLengths, first);
        if (end > first && g.join(len, partial ? 0 : this.sumSpans(g, first, end, 0))) {
          g.spanCount = end;
          this.txPayload.kept = true; // (processTx holds the chain)
          return this.joinedOne(len);
        }
      } else {
        chain.read(NET_HDR_LEN + at, g.buf, g.length, len - at);
        if (g.join(len, partial ? 0 : sum16(g.buf, g.length, len - at))) return this.joinedOne(len);
      }
    }
    if (at === 0) this.prefetchNext(undefined, undefined); // (else readHead asked)
    if (g.length > 0) this.deliverJoined();
    this.stats.txFrames++;
    this.stats.txBytes += len;
    // Its headers read first: a segment that may start a run leaves its payload where it is too.
    const have = chain.read(NET_HDR_LEN, g.buf, 0, Math.min(len, COALESCE_HEAD));
    at = coalescible(g.buf, have, len);
    if (at > 0 && (!partial || this.partialOverTcp(g.buf))) {
      const end = chain.readableSpans(NET_HDR_LEN + at, len - at, g.spanViews, g.spanOffsets, g.spanLengths, 0);
      if (end > 0) {
        const frameSum = partial ? -1 : this.sumSpans(g, 0, end, sum16(g.buf, ETHERNET_HEADER_LEN, at - ETHERNET_HEADER_LEN));
        g.spanCount = end;
        g.start(len, at, frameSum, partial, false);
        this.txPayload.kept = true; // (processTx holds the chain)
        return true;
      }
    }
    chain.read(NET_HDR_LEN + have, g.buf, have, len - have);
    const frameSum = partial ? -1 : sum16(g.buf, ETHERNET_HEADER_LEN, len - ETHERNET_HEADER_LEN);
    this.meta.payload = undefined;
    this.deliverAsSent(this.frameViews.of(g.arena, g.offset, g.offset + len), frameSum);
    return true;
  }

  /** The sum of the run's spans [first, end) (one payload) added to `initial`, folded: one call. */
  private sumSpans(g: TcpCoalescer, first: number, end: number, initial: number): number {
    this.spanStarts[0] = first;
    this.spanSums[0] = initial;
    sumFrames(g.spanViews, g.spanOffsets, g.spanLengths, this.spanStarts, this.spanSums, 1, end);
    return this.spanSums[0];
  }

  /**
   * The frames [i, n) of the batch that start or continue a run, from frame i on: one native call
   * for each run (joinBatch), which is handed on once it takes nothing more (the next call may
   * start the next one there). Returns the first frame not taken; txJoinedBytes is what the
   * taken ones read.
   */
  private joinFrames(q: VirtQueue, g: TcpCoalescer, view: Uint8Array, i: number, n: number): number {
    let bytes = 0;
    for (;;) {
      const end = g.joinBatch(view, i, n);
      // Counted once per call: every frame it took, all but the one that started a run joined.
      const from = i;
      const started = g.startedAt;
      const lengths = this.txLengths;
      const heads = this.txHeads;
      let took = 0;
      if (g.runInPlace) {
        // A run in place holds its buffers until the batch's writes (as kept payload does).
        const held = this.txHeldHeads;
        let h = this.txHeld;
        for (; i < end; i++) {
          took += lengths[i]!;
          held[h++] = heads[i]!;
        }
        this.txHeld = h;
      } else {
        for (; i < end; i++) {
          took += lengths[i]!;
          q.pushUsed(heads[i]!, 0);
        }
      }
      const frames = end - from;
      const stats = this.stats;
      stats.txFrames += frames;
      stats.txBytes += took - frames * NET_HDR_LEN;
      stats.txCoalesced += started >= from && started < end ? frames - 1 : frames;
      bytes += took;
      if (i === n || !g.over) break;
      this.deliverJoined();
    }
    this.txJoinedBytes = bytes;
    return i;
  }
  /** Counts a frame that joined the pending run. */
  private joinedOne(len: number): true {
    this.stats.txCoalesced++;
    this.stats.txFrames++;
    this.stats.txBytes += len;
    return true;
  }

  /** Whether the partial checksum this.header asks for (NEEDS_CSUM) is the TCP one of the segment
   *  whose headers are `head` (see partialOverTcp). */
  private partialOverTcp(head: Uint8Array): boolean {
    return partialOverTcp(head, this.csumStart, this.csumOffset);
  }

  /**
   * Copies the frame's first `at` bytes to g.head (and asks for the next frame's first bytes):
   * when they lie in one buffer (a Linux guest's headers do), with one call (copyJob, the
   * prefetch riding in it). False when the chain holds fewer.
   */
  private readHead(g: TcpCoalescer, chain: DescriptorChain, at: number): boolean {
    const seg = this.frameSegment(chain, at);
    if (seg < 0) {
      this.prefetchNext(undefined, undefined);
      return chain.read(NET_HDR_LEN, g.head, 0, at) === at;
    }
    const src = chain.bytes[seg]!;
    const job = g.job;
    job[CopyJobField.srcOffset] = this.frameOffset(chain, seg);
    job[CopyJobField.length] = at;
    job[CopyJobField.headLength] = at;
    job[CopyJobField.dstAt] = SUM_IN_PLACE;
    job[CopyJobField.sumFrom] = 0;
    this.prefetchNext(src, job);
    copyJob(src, g.arena, job);
    job[CopyJobField.prefetchLength] = 0; // (asked for)
    return true;
  }

  /** The pending joined segment goes to the sink (its frames were counted as they came). Its
   *  payload may be kept by reference: its slot is then held until releasePayloads. */
  private deliverJoined(): void {
    const g = this.coalescer!;
    const frameSum = g.finish();
    const frame = this.frameViews.of(g.arena, g.offset, g.offset + g.length);
    const p = this.joinedPayload;
    p.set(g, frame);
    const partial = g.partial;
    const csumStart = partial ? g.tcpAt : 0;
    g.clear();
    this.meta.payload = this.opts.payloadsInPlace === true ? p : undefined;
    this.deliver(frame, frameSum, partial, csumStart, partial ? 16 : 0);
    if (p.kept && !g.hold()) this.releaseHeld(); // every slot held: written now, mid-slice
  }

  /** Whatever kept payload by reference (guest memory, the coalescer's slots) lets go of it:
   *  written to the host, or copied. The guest chains go back after this (processTx). */
  private releaseHeld(): void {
    this.opts.releasePayloads?.();
    this.coalescer?.released();
  }

  /**
   * Copies the frame (len bytes after the virtio-net header) into the private buffer. When it lies
   * in one buffer (after the header in the same one, or in the next after a buffer holding just the
   * header: the layouts drivers use), the copy also sums it from its IP header on (RxMeta.frameSum:
   * the stack then verifies transport checksums from that sum and the headers, with no second pass
   * over the payload); returns that sum, else -1.
   */
  private copyFrame(chain: DescriptorChain, len: number): number {
    const seg = this.frameSegment(chain, len);
    if (seg < 0) {
      chain.read(NET_HDR_LEN, this.scratch, 0, len);
      return -1;
    }
    return copySum(chain.bytes[seg]!, this.frameOffset(chain, seg), len, this.scratch, 0, ETHERNET_HEADER_LEN);
  }

  /** The readable segment that holds the frame's first `len` bytes (frameSpan). */
  private frameSegment(chain: DescriptorChain, len: number): number {
    return frameSpan(chain.firstWritable, chain.length[0]!, chain.length[1]!, len);
  }

  /** Where the frame starts in the segment frameSegment() found. */
  private frameOffset(chain: DescriptorChain, seg: number): number {
    return chain.offset[seg]! + (seg === 0 ? NET_HDR_LEN : 0);
  }

  /**
   * Asks the CPU for the next frame's first bytes (TX_PREFETCH_BYTES of the buffer that holds its
   * frame, past a virtio-net header alone in its own), once per frame: memory the guest's CPU
   * just wrote then arrives while this frame is handled, not line by line as its copy reads it.
   * With a copy job over the same guest memory the job asks (one call, see copyJob); else now.
   */
  private prefetchNext(view: Uint8Array | undefined, job: Float64Array | undefined): void {
    const next = this.txPrefetch;
    this.txPrefetch = undefined;
    if (job !== undefined) job[CopyJobField.prefetchLength] = 0;
    if (next === undefined || next.firstWritable === 0) return;
    const i = next.length[0]! <= NET_HDR_LEN && next.firstWritable > 1 ? 1 : 0;
    if (job !== undefined && next.bytes[i] === view) {
      job[CopyJobField.prefetchOffset] = next.offset[i]!;
      job[CopyJobField.prefetchLength] = Math.min(next.length[i]!, TX_PREFETCH_BYTES);
    } else {
      next.prefetchReadable(TX_PREFETCH_BYTES);
    }
  }

  /** A partial checksum (and segmentation) we may ask of the guest for this frame. */
  private partialOk(frame: Uint8Array, p: PartialChecksum): boolean {
    if (!this.guestCsum || p.start + p.offset + 2 > frame.length) return false;
    const size = p.segmentSize ?? 0;
    if (size === 0) return true;
    const v4 = frame[12] === 0x08 && frame[13] === 0x00;
    return size > 0 && size <= 0xffff && p.start + 20 <= frame.length && (v4 ? this.guestTso4 : this.guestTso6);
  }

  /** The guest takes TCP segments larger than the MTU over IPv4 or IPv6 (GUEST_TSO4/6). */
  segmentationOffload(family: 4 | 6): boolean {
    return this.guestCsum && (family === 4 ? this.guestTso4 : this.guestTso6);
  }

  /**
   * Whether a GSO frame is what we offered (§5.1.6.2): TCP over IPv4 (TCPV4) or IPv6 (TCPV6), ECN
   * only with HOST_ECN and only on TCP, a UDP datagram over either (UDP, with HOST_UFO), NEEDS_CSUM
   * set (the driver must), and the frame really that packet. Its hdr_len and gso_size are hints
   * for a device that cuts segments or fragments; we do not cut, so neither is trusted or needed.
   * The stack then checks the packet like any other.
   */
  private gsoOk(gso: number, flags: number, frame: Uint8Array): boolean {
    if ((flags & NET_HDR_F_NEEDS_CSUM) === 0) return false;
    if ((gso & NET_HDR_GSO_ECN) !== 0 && !this.hostEcn) return false;
    const type = gso & ~NET_HDR_GSO_ECN;
    const etherType = (frame[12]! << 8) | frame[13]!;
    if (type === NET_HDR_GSO_TCPV4) return this.hostTso4 && etherType === 0x0800 && frame.length >= 14 + 20 + 20 && frame[14 + 9] === 6;
    if (type === NET_HDR_GSO_TCPV6) return this.hostTso6 && etherType === 0x86dd && frame.length >= 14 + 40 + 20 && frame[14 + 6] === 6;
    if (type === NET_HDR_GSO_UDP && this.hostUfo && type === gso) {
      if (etherType === 0x0800) return frame.length >= 14 + 20 + 8 && frame[14 + 9] === 17;
      if (etherType === 0x86dd) return frame.length >= 14 + 40 + 8 && frame[14 + 6] === 17;
    }
    return false;
  }

  /**
   * Sends a frame to the guest (copied). Published at the end of this event-loop turn. `partial`
   * (only when partialChecksums): its transport checksum goes as NEEDS_CSUM for the guest to
   * complete (§5.1.6.4.1 as seen from the driver).
   */
  send(frame: Uint8Array, partial?: PartialChecksum): boolean {
    if (frame.length > MAX_FRAME || (partial && !this.partialOk(frame, partial))) {
      this.stats.rxDropped++;
      return false;
    }
    if (this.backlog.length === 0 && this.rx && this.writeFrame(this.rx, frame, partial)) {
      this.flushLater.request();
      return true;
    }
    if (!this.rx && !this.tx) {
      // No driver: nobody will ever read it.
      this.stats.rxDropped++;
      return false;
    }
    if (this.backlog.length >= this.backlogFrames || this.backlogSize + frame.length > this.backlogBytes || this.opts.memory?.take(frame.length) === false) {
      this.stats.rxDropped++;
      return false;
    }
    this.backlog.push(frame.slice());
    this.backlogPartial.push(partial ? { start: partial.start, offset: partial.offset, segmentSize: partial.segmentSize ?? 0 } : undefined);
    this.backlogSize += frame.length;
    this.armRxKick();
    return true;
  }

  /**
   * Zero-copy send (FrameLink.sendHeaders): `headers` is a frame's beginning; its last
   * `payloadLength` bytes are left in the guest's buffers for completePayloads() to fill, all of
   * the batch's with one call. The frame is published only then. A guest that takes partial
   * checksums gets NEEDS_CSUM; for another, completePayloads() sums the payload where it landed
   * (native, still in cache) and writes the checksum into the header in its buffer.
   */
  sendHeaders(headers: Uint8Array, payloadLength: number, partial: PartialChecksum): PayloadSend {
    const rx = this.rx;
    if (!rx || this.backlog.length > 0 || headers.length + payloadLength > MAX_FRAME || partial.start + partial.offset + 2 > headers.length) return 'noRoom';
    if (this.held > 0 && rx !== this.heldQueue) return 'noRoom';
    const size = partial.segmentSize ?? 0;
    // A segment larger than the MTU for a guest that takes none: cut here (see cutBudget).
    if (size > 0 && !this.segmentationOffload(headers[12] === 0x08 ? 4 : 6)) return this.sendCut(rx, headers, payloadLength, partial, size);
    if (this.guestCsum && !this.partialOk(headers, partial)) return 'noRoom';
    if (this.heldFrames >= MAX_HELD_FRAMES) return 'full';
    return this.sendHeld(rx, headers, payloadLength, partial);
  }

  /** sendHeaders() once the frame is known to be one the guest takes. */
  private sendHeld(rx: VirtQueue, headers: Uint8Array, payloadLength: number, partial: PartialChecksum, headerSum = -1): PayloadSend {
    this.spansFull = false;
    const k = this.heldFrames;
    this.frameSpanStart[k] = this.spanCount;
    this.frameCsumStart[k] = this.csumCount;
    if (this.guestCsum) {
      this.csumAt = -1;
    } else {
      // The sum of the headers from the checksum's start (the field holds the pseudo-header's;
      // `headerSum` when the caller knows it); the payload's is added once it is there.
      this.csumAt = partial.start + partial.offset;
      this.frameSum[k] = headerSum >= 0 ? headerSum : sum16(headers, partial.start, headers.length - partial.start);
    }
    const written = this.writeFrame(rx, headers, this.guestCsum ? partial : undefined, payloadLength);
    this.csumAt = -1;
    if (this.heldFrames > k) return 'sent';
    // Not held: no buffers, full tables, or dropped (buffers too small: the copy path drops it
    // too) — a run of held payload never has a hole.
    this.csumCount = this.frameCsumStart[k]!;
    return !written && this.spansFull ? 'full' : 'noRoom';
  }

  /**
   * How many frames of one MTU a large TCP segment sent now through sendHeaders() may be cut into
   * here, for a guest that does not take it whole (no GUEST_TSO4/6 for this IP version): as many
   * as the guest has posted receive chains, while its frames fit one chain each (up to
   * MAX_CUT_PIECES). 0: send segments of one MSS. The sender's per-segment work (its TCP
   * endpoint, its headers) is then done once per 64 KiB, as for a guest that takes GSO frames.
   */
  cutBudget(family: 4 | 6): number {
    const rx = this.rx;
    if (!rx || !this.rxWhole || this.cutRefused || this.backlog.length > 0 || this.segmentationOffload(family)) return 0;
    const n = Math.min(rx.availableCount(), MAX_CUT_PIECES);
    if (this.cutFit === MAX_CUT_PIECES) return n;
    if (rx.lastAvail === this.cutFitNext && rx.availIndex === this.cutFitAvail) return Math.min(n, this.cutFit);
    this.cutFit = MAX_CUT_PIECES; // the ring changed since: chains taken, or posted
    return n;
  }

  /**
   * Cuts a TCP segment larger than the MTU (`headers` as the TCP NAT builds them: Ethernet, IPv4
   * without options or IPv6 without extension headers, TCP, its checksum field holding the
   * pseudo-header sum) into frames of `size` payload, as a NIC's TSO does: the IP length (and
   * IPv4 checksum), the sequence number and the pseudo-header sum are each frame's; FIN and PSH
   * only on the last, CWR only on the first. Each frame is then held as sendHeaders() holds one;
   * all of them or none ('noRoom', 'full': the chains taken are given back).
   */
  private sendCut(rx: VirtQueue, headers: Uint8Array, payloadLength: number, partial: PartialChecksum, size: number): PayloadSend {
    const ip = ETHERNET_HEADER_LEN;
    const v4 = headers[12] === 0x08 && headers[13] === 0x00;
    const tcp = partial.start;
    const hl = headers.length - tcp;
    if (
      tcp !== ip + (v4 ? 20 : 40) ||
      (v4 ? headers[ip] !== 0x45 || headers[ip + 9] !== 6 : headers[12] !== 0x86 || headers[13] !== 0xdd || headers[ip + 6] !== 6) ||
      partial.offset !== 16 ||
      hl < 20 ||
      hl !== (headers[tcp + 12]! >> 4) * 4 ||
      headers.length > this.cutHeaders.length - NET_HDR_LEN
    ) {
      // Not what the TCP NAT builds (a bug): cut nothing more (cutBudget 0), so its sender goes
      // back to segments of one MSS rather than ask again.
      if (!this.cutRefused)
        this.log.warn(
          { headers: headers.length, start: tcp, offset: partial.offset },
          'a large TCP segment the device cannot cut: segments of one MSS from now on',
        );
      this.cutRefused = true;
      return 'noRoom';
    }
    const pieces = Math.ceil(payloadLength / size);
    if (pieces > MAX_CUT_PIECES || pieces > rx.availableCount()) return 'noRoom';
    if (this.heldFrames + pieces > MAX_HELD_FRAMES) return 'full';
    // The frames as they go into chains, virtio-net header first; the fields each frame has its
    // own are zero, and the sums that stay are taken once: the IPv4 header's without its length
    // and checksum, the pseudo-header's without its length, the TCP header's without its
    // sequence number, flags and checksum.
    const cut = this.cutHeaders;
    const h = NET_HDR_LEN;
    const headLen = h + headers.length;
    clearNetHeader(cut);
    if (this.guestCsum) setNeedsCsum(cut, tcp, 16);
    cut[10] = 1; // num_buffers
    copyBytes(cut, h, headers, 0, headers.length);
    const cip = h + ip;
    const ctcp = h + tcp;
    const l = this.cutLayout;
    l[CutField.headLen] = headLen;
    l[CutField.ip] = cip;
    l[CutField.tcp] = ctcp;
    l[CutField.v4] = v4 ? 1 : 0;
    l[CutField.tcpLen] = hl;
    l[CutField.size] = size;
    l[CutField.payload] = payloadLength;
    l[CutField.seq] = get32(cut, ctcp + 4);
    l[CutField.flags] = cut[ctcp + 13]!;
    l[CutField.pseudoBase] = v4 ? pseudoHeaderSumV4(get32(cut, cip + 12), get32(cut, cip + 16), 6, 0) : pseudoHeaderSumV6(cut, cip + 8, cut, cip + 24, 6, 0);
    if (v4) {
      set16(cut, cip + 2, 0);
      set16(cut, cip + 10, 0);
      l[CutField.ipSum] = sum16(cut, cip, 20);
    }
    set32(cut, ctcp + 4, 0);
    cut[ctcp + 13] = 0;
    set16(cut, ctcp + 16, 0);
    l[CutField.tcpSum] = sum16(cut, ctcp, hl);
    const held = this.held;
    const heldFrames = this.heldFrames;
    const heldBytes = this.heldBytes;
    const spans = this.spanCount;
    const csums = this.csumCount;
    const rxFrames = this.stats.rxFrames;
    const rxBytes = this.stats.rxBytes;
    const malformed = rx.stats.malformed;
    const popped = rx.stats.popped;
    // The frames that fit their chain's first writable buffer (the usual case: cutBudget asks
    // for that), from the first: their chains, then their headers with one call.
    const fast = this.takeWholeChains(rx, headLen, size, payloadLength, pieces);
    if (fast > 0) this.holdCut(rx, fast, headLen, size, payloadLength, ctcp + 16);
    // The rest (a chain too small, or the tables full) one by one, as sendHeaders() sends a frame:
    // each written by cutFrames() into cutOne first.
    const p = this.cutPartial;
    p.start = tcp;
    p.offset = 16;
    const one = this.cutOne;
    const frame = this.cutViews.of(one, h, headLen);
    for (let i = fast; i < pieces; i++) {
      l[CutField.first] = i;
      cutFrames(one, CUT_AT_ZERO, 1, cut, l, this.cutSum, 0);
      const r = this.sendHeld(rx, frame, Math.min(size, payloadLength - i * size), p, this.cutSum[0]);
      if (r === 'sent') continue;
      // Give back what the frames before this one took. Un-popped when they are the last chains
      // popped; not when this frame used one up (dropped: buffers too small) or pop() skipped
      // malformed ones: then they go back used, empty (see giveBack).
      const taken = this.held - held;
      if (rx.stats.malformed === malformed && rx.stats.popped - popped === taken) rx.rewind(taken);
      else for (let j = held; j < this.held; j++) rx.pushUsed(this.heldHeads[j]!, 0);
      this.held = held;
      this.heldFrames = heldFrames;
      this.heldBytes = heldBytes;
      this.spanCount = spans;
      this.csumCount = csums;
      this.stats.rxFrames = rxFrames;
      this.stats.rxBytes = rxBytes;
      if (held === 0) this.heldQueue = undefined;
      this.cutFit = i;
      this.cutFitNext = rx.lastAvail;
      this.cutFitAvail = rx.availIndex ?? -1;
      return r;
    }
    this.stats.rxCut++;
    return 'sent';
  }

  /**
   * Pops chains for the segment's frames from the first while each one's first writable buffer
   * takes its frame whole (`headLen` of headers, then its payload) and the held tables have room;
   * notes where each frame goes (cutDst, cutAt). Returns how many; a chain that does not fit is
   * un-popped (the next frame takes it the usual way). The addon's walk takes the chains a batch
   * at a time (popSpans: only their first span is needed here); one it leaves is pop()'s.
   */
  private takeWholeChains(rx: VirtQueue, headLen: number, size: number, payloadLength: number, pieces: number): number {
    const room = Math.min(this.heldHeads.length - this.held, MAX_SPANS - this.spanCount, this.csumOffsets.length - this.csumCount);
    const most = Math.min(pieces, room);
    const p = rx.popped;
    let n = 0;
    while (n < most) {
      const got = rx.popSpans(most - n, true, this.rxChain.capacity);
      for (let j = 0; j < got; j++, n++) {
        const k = p.spanStart(j);
        if (k === p.spanEnd(j) || !this.cutInto(n, p.head(j), p.bytes(k), p.offset(k), p.length(k), headLen, size, payloadLength)) {
          rx.rewind(got - j); // (the addon's chains lie next to each other in the ring)
          return n;
        }
      }
      if (!rx.leftToPop) {
        if (got === 0) break;
      } else if (!this.takeWholeChain(rx, headLen, size, payloadLength, n)) {
        break;
      } else {
        n++;
      }
    }
    return n;
  }

  /** takeWholeChains() for a chain the addon's walk leaves to pop(): frame `n`'s, if it fits
   *  whole in the chain's first writable buffer (else un-popped). */
  private takeWholeChain(rx: VirtQueue, headLen: number, size: number, payloadLength: number, n: number): boolean {
    const chain = this.rxChain;
    if (!rx.pop(chain)) return false;
    const w = chain.firstWritable;
    if (w >= chain.count || !this.cutInto(n, chain.head, chain.bytes[w]!, chain.offset[w]!, chain.length[w]!, headLen, size, payloadLength)) {
      rx.rewind(1);
      return false;
    }
    return true;
  }

  /** Frame `n` of the cut goes to the chain at `head`, whose first writable buffer is `length`
   *  bytes at view[at]: noted (cutDst, cutAt, heldHeads) when the frame fits there whole; false
   *  (nothing noted) when it does not. */
  private cutInto(n: number, head: number, view: Uint8Array, at: number, length: number, headLen: number, size: number, payloadLength: number): boolean {
    if (length < headLen + Math.min(size, payloadLength - n * size)) return false;
    this.heldHeads[this.held + n] = head;
    this.cutDst[n] = view;
    this.cutAt[n] = at;
    return true;
  }

  /** Writes the headers of the segment's first `n` frames into the chains takeWholeChains()
   *  took (one call), and holds those chains for their payload as sendHeld() holds one. */
  private holdCut(rx: VirtQueue, n: number, headLen: number, size: number, payloadLength: number, csumField: number): void {
    const summed = !this.guestCsum;
    const k0 = this.heldFrames;
    const dst = oneView(this.cutDst, n);
    this.cutLayout[CutField.first] = 0;
    cutFrames(dst, this.cutAt, n, this.cutHeaders, this.cutLayout, this.frameSum, summed ? k0 : -1);
    for (let j = 0; j < n; j++) {
      const view = this.cutDst[j]!;
      const at = this.cutAt[j]!;
      const len = Math.min(size, payloadLength - j * size);
      const k = k0 + j;
      this.frameSpanStart[k] = this.spanCount;
      this.frameCsumStart[k] = this.csumCount;
      if (summed) {
        const c = this.csumCount++;
        this.csumViews[c] = view;
        this.csumOffsets[c] = at + csumField;
        this.csumLengths[c] = 2;
      }
      const i = this.spanCount++;
      this.spanViews[i] = view;
      this.spanOffsets[i] = at + headLen;
      this.spanLengths[i] = len;
      this.heldLens[this.held + j] = headLen + len;
    }
    const bytes = Math.min(payloadLength, n * size);
    this.held += n;
    this.heldFrames = k0 + n;
    this.heldBytes += bytes;
    this.stats.rxFrames += n;
    this.stats.rxBytes += n * (headLen - NET_HDR_LEN) + bytes;
    this.heldQueue = rx;
    this.spansFull = false;
  }

  /** FrameLink.completePayloads: fills what sendHeaders() left, publishing those frames; when the
   *  fill falls short, they go to the guest empty (length 0: it drops them). */
  completePayloads(fill: PayloadFill): boolean {
    const rx = this.heldQueue;
    if (this.held === 0 || !rx) return true;
    // The spans' one view (guest memory in one region, the usual case), found once for the fill
    // and the sums.
    let ok = false;
    try {
      const views = oneView(this.spanViews, this.spanCount);
      const n = this.spanCount > 0 ? fill.fill(views, this.spanOffsets, this.spanLengths, this.spanCount) : 0;
      ok = n === this.heldBytes;
      if (ok && !this.guestCsum) this.completeChecksums(views);
    } finally {
      // (Whatever happened, the held chains go back: a fill that threw leaves them empty. Kept,
      // they would be lost to the guest, and sendHeaders() full for good.)
      for (let i = 0; i < this.held; i++) rx.pushUsed(this.heldHeads[i]!, ok ? this.heldLens[i]! : 0);
      if (!ok) this.stats.rxDropped += this.heldFrames;
      this.forgetHeld();
      this.flushLater.request();
    }
    return ok;
  }

  /** For a guest without GUEST_CSUM: each held frame's transport checksum, over its headers
   *  (summed at sendHeaders) and its payload in guest memory (summed for all of them with one
   *  call), written into the field there. */
  private completeChecksums(views: ScatterViews): void {
    const frames = this.heldFrames;
    sumFrames(views, this.spanOffsets, this.spanLengths, this.frameSpanStart, this.frameSum, frames, this.spanCount);
    for (let k = 0; k < frames; k++) {
      const csum = ~this.frameSum[k]! & 0xffff;
      // The field's two bytes, where the headers were written (one span, or two across buffers).
      const end = k + 1 < frames ? this.frameCsumStart[k + 1]! : this.csumCount;
      let byte = 0;
      for (let c = this.frameCsumStart[k]!; c < end; c++) {
        const v = this.csumViews[c]!;
        const o = this.csumOffsets[c]!;
        for (let j = 0; j < this.csumLengths[c]!; j++, byte++) v[o + j] = byte === 0 ? csum >> 8 : csum & 0xff;
      }
    }
  }

  /** The queue holding frames went away (their chains with it). */
  private forgetHeld(): void {
    this.held = this.heldFrames = this.heldBytes = this.spanCount = this.csumCount = 0;
    this.heldQueue = undefined;
  }

  /** Frames sent with sendHeaders() not yet completed. */
  get payloadsPending(): boolean {
    return this.held > 0;
  }

  /** Uses a chain: at once, or held until completePayloads() when the frame has payload to come. */
  private useChain(rx: VirtQueue, head: number, len: number, hold: boolean): void {
    if (!hold) {
      rx.pushUsed(head, len);
      return;
    }
    this.heldHeads[this.held] = head;
    this.heldLens[this.held] = len;
    this.held++;
  }

  /**
   * Writes frame bytes [from, from + n) at `at` in the chain's writable part: those below the
   * headers' end from `frame`, the rest (payload to come) as spans. False: the span table is full.
   */
  private place(chain: DescriptorChain, at: number, frame: Uint8Array, from: number, n: number): boolean {
    const fromFrame = Math.max(0, Math.min(n, frame.length - from));
    if (fromFrame > 0) chain.write(at, frame, from, fromFrame);
    const c = this.csumAt;
    if (c >= 0 && c + 2 > from && c < from + fromFrame) {
      // Where the checksum field landed, for completeChecksums().
      const lo = Math.max(c, from);
      const hi = Math.min(c + 2, from + fromFrame);
      const i = chain.spans(at + (lo - from), hi - lo, this.csumViews, this.csumOffsets, this.csumLengths, this.csumCount);
      if (i < 0) return false;
      this.csumCount = i;
    }
    if (fromFrame === n) return true;
    const i = chain.spans(at + fromFrame, n - fromFrame, this.spanViews, this.spanOffsets, this.spanLengths, this.spanCount);
    if (i < 0) return false;
    this.spanCount = i;
    return true;
  }

  /**
   * Writes header + frame into RX chains. False (nothing consumed) when buffers are short, or
   * (spansFull) the span table for held payload is. `payload` > 0: the frame is `frame` and as
   * many bytes more, left for completePayloads() (its chains are held until then).
   */
  private writeFrame(rx: VirtQueue, frame: Uint8Array, partial?: PartialChecksum, payload = 0): boolean {
    const chain = this.rxChain;
    const frameLen = frame.length + payload;
    const need = NET_HDR_LEN + frameLen;
    const hold = payload > 0;
    const spansBefore = this.spanCount;
    if (hold && this.held + 1 > this.heldHeads.length) {
      this.spansFull = true;
      return false;
    }
    const hdr = this.header;
    clearNetHeader(hdr);
    if (partial) {
      // NEEDS_CSUM rather than DATA_VALID over an unwritten checksum (which passt does): a guest
      // that forwards the packet (a router, a bridge, a container host) then completes it on the
      // way out instead of forwarding a wrong one.
      setNeedsCsum(hdr, partial.start, partial.offset);
      const size = partial.segmentSize ?? 0;
      if (size > 0) {
        // GSO (§5.1.6.4): the guest takes it as segments of `size` payload; hdr_len covers the
        // headers through TCP's.
        hdr[1] = frame[12] === 0x08 ? NET_HDR_GSO_TCPV4 : NET_HDR_GSO_TCPV6;
        const hdrLen = partial.start + ((frame[partial.start + 12]! >> 4) << 2);
        hdr[2] = hdrLen & 0xff;
        hdr[3] = hdrLen >> 8;
        hdr[4] = size & 0xff;
        hdr[5] = size >> 8;
      }
    } else if (this.guestCsum) {
      // Every other checksum we write is complete and correct, so with GUEST_CSUM the guest may
      // skip verifying it (§5.1.6.4.1: DATA_VALID).
      hdr[0] = NET_HDR_F_DATA_VALID;
    }
    // The chains come from the addon's walk, as many at a time as the frame looks to need after the
    // last frame's first chain (a driver posts buffers of one size: a Linux guest's 64 KiB frame
    // takes about 17), and pop() takes a chain the walk leaves; those taken beyond the frame's
    // need are un-popped (they are the last popped).
    // (A frame that looks to fit one chain takes it with pop(): for a chain of one buffer, the
    // walk in JavaScript costs less than the call into the addon.)
    const p = rx.popped;
    const want = this.mergeable ? Math.min(Math.ceil(need / this.rxChainBytes), this.moreHeads.length + 1) : 1;
    let got = want > 1 ? rx.popSpans(want, true, chain.capacity) : 0;
    let k = 0;
    if (got > 0) {
      p.fill(k++, chain, true); // (the walk's chains have at most chain.capacity spans)
    } else if ((want > 1 && !rx.leftToPop) || !rx.pop(chain)) {
      return false;
    }
    this.rxChainBytes = Math.max(chain.writableLength, NET_HDR_LEN + 1);
    const w = chain.firstWritable;
    if (w < chain.count && chain.length[w]! >= need) {
      rx.rewind(got - k);
      return this.writeWhole(rx, chain, w, frame, payload);
    }
    this.rxWhole = false; // (cutBudget: frames take more than a chain each)
    if (!this.mergeable) {
      if (chain.writableLength < need) {
        // The guest's buffers can never hold it: drop rather than wedge the queue.
        rx.pushUsed(chain.head, 0);
        this.stats.rxDropped++;
        return true;
      }
      hdr[10] = 1; // num_buffers (VERSION_1 header)
      chain.write(0, hdr, 0, NET_HDR_LEN);
      if (!this.place(chain, NET_HDR_LEN, frame, 0, frameLen)) {
        rx.rewind(1);
        this.spanCount = spansBefore;
        this.spansFull = true;
        return false;
      }
      this.useChain(rx, chain.head, need, hold);
      this.countRx(frameLen, hdr[1] !== NET_HDR_GSO_NONE, payload, rx);
      return true;
    }
    // Mergeable buffers (§5.1.6.3.2): fill chains until the frame fits; num_buffers, in the first
    // chain's header, is known only at the end, so that chain is held in its own scatter list.
    const first = chain;
    const firstLen = Math.min(first.writableLength, need);
    if (firstLen < NET_HDR_LEN) {
      rx.rewind(got - k);
      rx.pushUsed(first.head, 0);
      this.stats.rxDropped++;
      return true;
    }
    // Malformed chains pop() skips from here on lie between the chains we hold (see giveBack).
    const malformedBefore = rx.stats.malformed;
    let fits = this.place(first, NET_HDR_LEN, frame, 0, firstLen - NET_HDR_LEN);
    let written = firstLen - NET_HDR_LEN;
    let more = 0;
    const next = this.rxNext;
    while (fits && written < frameLen) {
      if (more === this.moreHeads.length) {
        // Buffers so small the frame could never fit: drop it rather than wedge the queue.
        this.giveBack(rx, first.head, more, malformedBefore, got - k);
        this.spanCount = spansBefore;
        this.stats.rxDropped++;
        return true;
      }
      if (k === got) {
        const want = Math.min(Math.ceil((frameLen - written) / this.rxChainBytes), this.moreHeads.length - more);
        got = rx.popSpans(want, true, next.capacity);
        k = 0;
        // (None from the walk: pop() takes the chain it left into `next`, if any.)
        if (got === 0 && (!rx.leftToPop || !rx.pop(next))) {
          this.giveBack(rx, first.head, more, malformedBefore, 0);
          this.spanCount = spansBefore;
          return false;
        }
      }
      let head: number;
      let n = 0;
      if (k < got && written >= frame.length) {
        // Payload to come only (a held frame's headers, checksum field included, lie in the
        // first chain): its places straight from the walk's spans, as place() would note them.
        head = p.head(k);
        let left = frameLen - written;
        for (let sp = p.spanStart(k), end = p.spanEnd(k); sp < end && left > 0; sp++) {
          const len = Math.min(p.length(sp), left);
          if (len === 0) continue;
          if (this.spanCount >= MAX_SPANS) {
            fits = false;
            break;
          }
          const i = this.spanCount++;
          this.spanViews[i] = p.bytes(sp);
          this.spanOffsets[i] = p.offset(sp);
          this.spanLengths[i] = len;
          n += len;
          left -= len;
        }
        k++;
      } else {
        if (k < got) p.fill(k++, next, true); // (the walk's chains have at most next.capacity spans)
        head = next.head;
        n = Math.min(next.writableLength, frameLen - written);
        fits = this.place(next, 0, frame, written, n);
      }
      this.moreHeads[more] = head;
      this.moreLens[more] = n;
      more++;
      written += n;
    }
    if (!fits || (hold && this.held + 1 + more > this.heldHeads.length)) {
      // The held payload's tables are full: this frame waits for the next batch.
      this.giveBack(rx, first.head, more, malformedBefore, got - k);
      this.spanCount = spansBefore;
      this.spansFull = true;
      return false;
    }
    rx.rewind(got - k);
    const buffers = more + 1;
    hdr[10] = buffers & 0xff;
    hdr[11] = buffers >> 8;
    first.write(0, hdr, 0, NET_HDR_LEN);
    this.useChain(rx, first.head, firstLen, hold);
    for (let i = 0; i < more; i++) this.useChain(rx, this.moreHeads[i]!, this.moreLens[i]!, hold);
    this.countRx(frameLen, hdr[1] !== NET_HDR_GSO_NONE, payload, rx);
    return true;
  }

  /**
   * writeFrame's usual case: the whole frame, header included, fits the chain's first writable
   * buffer (`w`), so num_buffers is 1 with mergeable buffers or without. Written there directly:
   * the header, the frame's bytes, and for a held frame its checksum field's and its payload's
   * places, each one span. False (the chain un-popped) when the span tables are full.
   */
  private writeWhole(rx: VirtQueue, chain: DescriptorChain, w: number, frame: Uint8Array, payload: number): boolean {
    const view = chain.bytes[w]!;
    const at = chain.offset[w]!;
    const hold = payload > 0;
    const csum = this.csumAt;
    if (hold && (this.spanCount >= MAX_SPANS || (csum >= 0 && this.csumCount >= this.csumOffsets.length))) {
      rx.rewind(1);
      this.spansFull = true;
      return false;
    }
    const hdr = this.header;
    hdr[10] = 1;
    this.rxWhole = true;
    view.set(hdr, at);
    view.set(frame, at + NET_HDR_LEN);
    if (csum >= 0) {
      const c = this.csumCount++;
      this.csumViews[c] = view;
      this.csumOffsets[c] = at + NET_HDR_LEN + csum;
      this.csumLengths[c] = 2;
    }
    if (hold) {
      const i = this.spanCount++;
      this.spanViews[i] = view;
      this.spanOffsets[i] = at + NET_HDR_LEN + frame.length;
      this.spanLengths[i] = payload;
    }
    const frameLen = frame.length + payload;
    this.useChain(rx, chain.head, NET_HDR_LEN + frameLen, hold);
    this.countRx(frameLen, hdr[1] !== NET_HDR_GSO_NONE, payload, rx);
    return true;
  }

  /**
   * Returns the chains popped for a frame that did not fit (the first and `more` after it). When
   * they sit next to each other in the avail ring they are un-popped, to be used for the next
   * frame. When pop() returned malformed chains between them (already given back, length 0),
   * un-popping would walk back over those and hand the guest a malformed chain twice while its
   * first good one is never used: then the good ones go back used, unwritten (length 0), and the
   * driver posts them again. `unused`: chains popped after those, not taken for the frame (the
   * last popped, always un-popped).
   */
  private giveBack(rx: VirtQueue, firstHead: number, more: number, malformedBefore: number, unused: number): void {
    rx.rewind(unused);
    if (rx.stats.malformed === malformedBefore) {
      rx.rewind(more + 1);
      return;
    }
    rx.pushUsed(firstHead, 0);
    for (let i = 0; i < more; i++) rx.pushUsed(this.moreHeads[i]!, 0);
  }

  private countRx(frameLen: number, gso: boolean, payload: number, rx: VirtQueue): void {
    if (gso) this.stats.rxGso++;
    this.stats.rxFrames++;
    this.stats.rxBytes += frameLen;
    if (payload > 0) {
      this.heldFrames++;
      this.heldBytes += payload;
      this.heldQueue = rx;
    }
  }

  private drainBacklog(): void {
    const rx = this.rx;
    if (!rx) return;
    for (;;) {
      while (this.backlog.length > 0) {
        const f = this.backlog[0]!;
        let written: boolean;
        try {
          written = this.writeFrame(rx, f, this.backlogPartial[0]);
        } catch (err) {
          // A bug: the frame is dropped (it would throw again on every kick), with any chains it
          // had taken.
          this.batchFailed(err);
          this.stats.rxDropped++;
          written = true;
        }
        if (!written) break;
        this.backlog.shift();
        this.backlogPartial.shift();
        this.backlogSize -= f.length;
        this.opts.memory?.give(f.length);
      }
      // What is left waits for more buffers than the guest has posted now.
      if (this.backlog.length === 0 || !rx.enableNotificationOnMore()) break;
    }
    rx.flush();
  }

  /** Publishes the frames sent so far to the guest, with at most one call (what a batch's owner
   *  does at its end; see inBatch). */
  flush(): void {
    this.rx?.flush();
  }
}
