// The frame-in/frame-out boundary between the stack and a link: the virtio-net device in
// production, a test device in stack tests.
import { ETHERNET_HEADER_LEN } from '../wire/index.js';
import type { ScatterViews } from '../wire/bytes.js';

/** What a link tells the stack about a frame from the guest. */
export interface RxMeta {
  /** The guest left the transport checksum partial (virtio NEEDS_CSUM): its data is trusted as is,
   *  as over any offloading link; there is no wire between us to corrupt it. */
  checksumPartial: boolean;
  /** With checksumPartial: where the checksummed range starts in the frame, and where the
   *  checksum field is from there (virtio csum_start, csum_offset; for a capture to complete). */
  checksumStart?: number;
  checksumOffset?: number;
  /** sum16 of frame[14, frame.length) (the IP packet and any padding), as the link computed it
   *  while copying the frame out of guest memory (Linux's CHECKSUM_COMPLETE): a transport checksum
   *  is then verified from it and the headers alone. Absent or -1: not computed. */
  frameSum?: number;
  /** Set when the frame's payload may be kept by reference (see FramePayload). */
  payload?: FramePayload | undefined;
}

/**
 * A guest frame whose payload a consumer may keep by reference until the batch's
 * releasePayloads: a TCP segment's data, frame bytes [at, at + length), lies in the scatter list
 * views[i][offsets[i], +lengths[i]) for i < count. Either the device left it in guest memory,
 * having copied only the headers, and it is not in the frame until load() copies it there
 * (whatever reads those bytes loads them first); or it is already in the frame (`loaded`: a segment
 * the device joined in its own buffer, which it does not reuse before releasePayloads). A consumer
 * that hands the bytes to the kernel by reference (the TCP NAT's writev) sets `kept`; the device
 * then gives the guest its buffer back, or reuses its own, only after releasePayloads.
 */
export interface FramePayload {
  /** The frame (whose bytes from `at` on are the payload's place). */
  readonly frame: Uint8Array;
  readonly at: number;
  readonly length: number;
  readonly views: readonly Uint8Array[];
  readonly offsets: Float64Array;
  readonly lengths: Uint32Array;
  readonly count: number;
  /** The payload is in the frame (load() ran). */
  readonly loaded: boolean;
  load(): void;
  kept: boolean;
}

/**
 * A frame for the guest whose transport checksum is left partial (virtio NEEDS_CSUM, offered when
 * the guest negotiated GUEST_CSUM): the field at `start + offset` holds the pseudo-header sum, and
 * the ones' complement sum of the frame from `start` to its end, complemented, belongs there. The
 * guest's stack completes it only if the packet leaves the guest (CHECKSUM_PARTIAL), else trusts it
 * as written by us; no pass over the payload here. See completeChecksum() for what it stands for.
 */
export interface PartialChecksum {
  start: number;
  offset: number;
  /** A TCP segment larger than the MTU for the guest to take as several (virtio GUEST_TSO4/6):
   *  the payload of each; absent or 0: one segment. */
  segmentSize?: number;
}

/** The link's sum of the frame from its IP header (RxMeta.frameSum) when it covers exactly up to
 *  `end` (the transport message ends the frame: no padding after it), else -1. */
export function frameSumTo(frame: Uint8Array, meta: RxMeta, end: number): number {
  const sum = meta.frameSum;
  return sum !== undefined && sum >= 0 && end === frame.length ? sum : -1;
}

/** The largest IP packet a segmentation-offload frame holds (IPv4 total length, 16 bits; IPv6
 *  packets are kept to the same so every frame fits a 64 KiB buffer). */
export const GSO_MAX_PACKET = 65535;

/** The stack side: gets every frame the guest sends. `frame` is valid only during the call. */
export interface FrameSink {
  receive(frame: Uint8Array, meta: RxMeta): void;
}

/** What the stack sends through. */
export interface FrameLink {
  /** Copies `frame` towards the guest; false when it had to be dropped. With `partial`, its
   *  transport checksum is left for the guest (only when partialChecksums says it may be). */
  send(frame: Uint8Array, partial?: PartialChecksum): boolean;
  /** The guest takes frames with a partial checksum (virtio GUEST_CSUM). Absent: no. */
  readonly partialChecksums?: boolean;
  /** The guest takes TCP segments larger than the MTU over this IP version (virtio GUEST_TSO4/6,
   *  always with partial checksums). Absent: no. */
  segmentationOffload?(family: 4 | 6): boolean;
  /** Whether a frame sent now reaches the guest's buffers at once (bulk senders such as TCP stop
   *  when it is false, and resume on the link's room callback). Absent: always. */
  hasRoom?(): boolean;
  /**
   * Zero-copy sends (the TCP NAT's host→guest data, peeked from the host socket straight into
   * guest memory): `headers` is the frame up to its payload, whose `payloadLength` bytes are left
   * in the guest's buffers; completePayloads() fills those of every frame sent so since, with one
   * call, and only then are the frames published. `partial` says where the transport checksum
   * is (its field holds the pseudo-header sum): left to a guest that takes partial checksums,
   * completed over the payload where it landed for another. 'noRoom': not sent (no buffers now,
   * frames wait in a backlog, or the guest's buffers cannot hold it); 'full': not sent, complete
   * the ones held first. Absent: the link has no zero-copy path.
   */
  sendHeaders?(headers: Uint8Array, payloadLength: number, partial: PartialChecksum): PayloadSend;
  completePayloads?(fill: PayloadFill): boolean;
  /**
   * For a guest that takes no TCP segments larger than the MTU over this IP version: how many
   * frames of one MSS the link would cut one such segment sent through sendHeaders() into now
   * (as a NIC's TSO does; `partial.segmentSize` gives the MSS). 0 or absent: send segments of one
   * MSS. The segment must fit what it says: a larger one is 'noRoom'.
   */
  cutBudget?(family: 4 | 6): number;
}

export type PayloadSend = 'sent' | 'noRoom' | 'full';

/** What fills held payload (FrameLink.completePayloads): copies the next bytes into the scatter
 *  list views[i][offsets[i], +lengths[i]) for i < count (`views` a view per span, or the one all
 *  of them lie in), all of them in order; returns how many bytes it copied (short: the frames held
 *  go to the guest empty). */
export interface PayloadFill {
  fill(views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number;
}

/** Link header bytes the reassemblers leave in front of a whole datagram (Ethernet's 14). */
export const LINK_HEADROOM = ETHERNET_HEADER_LEN;

/**
 * The frame of a reassembled datagram: `whole` (returned with LINK_HEADROOM bytes free before it)
 * behind a copy of the link header of `frame`, the fragment that completed it. No payload copy.
 */
export function reassembledFrame(frame: Uint8Array, whole: Uint8Array): Uint8Array {
  const f = new Uint8Array(whole.buffer, whole.byteOffset - LINK_HEADROOM, LINK_HEADROOM + whole.length);
  f.set(frame.subarray(0, LINK_HEADROOM), 0);
  return f;
}

/** Metadata of a reassembled datagram: its transport checksum was computed whole by the guest. */
export const REASSEMBLED: RxMeta = { checksumPartial: false };

/** Puts IP packet `p` after the link header in `out`, unless it was built there already (the
 *  bulk path: TCP segments are built in place, so their payload is not copied again). */
export function placePacket(out: Uint8Array, p: Uint8Array): void {
  if (p.buffer === out.buffer && p.byteOffset === out.byteOffset + LINK_HEADROOM) return;
  out.set(p, LINK_HEADROOM);
}
