// The native half of the TCP coalescer's joins (src/virtio/tcp-coalescer.ts, joinBatch): the
// frames of a TX batch that start (with none pending) or continue the pending run are read,
// checked and joined by one addon call (the hostnet addon's joinRun, in
// src/host/addon/checksum.cc) instead of by JavaScript and a copy call each. Its rules are the
// coalescer's, which stays the reference: without the addon every frame takes the JavaScript
// path, and the tests compare the two. Each part's checksums are verified from the sums of its
// varying words and its payload (RFC 1071, RFC 1624), as join() does.
//
// Everything the call reads and writes lies in the coalescer's arena; the numbers are Uint32s at
// RUN_AT (RunField), written before the call and read back after it.
import { COPY_JOB_BYTES } from './checksum.js';

/** Where the run's numbers lie in the arena: behind the copy job's block. */
export const RUN_AT = COPY_JOB_BYTES;

/** The run's numbers (Uint32s at RUN_AT), in the addon's order. */
export const RunField = {
  /** The pending frame's length (its headers and the payload joined so far). */
  length: 0,
  segments: 1,
  /** Where its payload starts, and its TCP header. */
  at: 2,
  tcp: 3,
  /** The sequence number the next segment must carry. */
  nextSeq: 4,
  /** The first segment's payload length: no later one may be longer. */
  segmentSize: 5,
  /** 1 when the run is over (PSH, or a short segment, joined). */
  closed: 6,
  /** 1 when the run's TCP checksums are partial (NEEDS_CSUM). */
  partial: 7,
  /** 1 for a run in place (payload spans in guest memory), 0 for one copied into buf. */
  inPlace: 8,
  /** The fixed parts of the IPv4 header's and the TCP header's sums (TcpCoalescer.join). */
  ipFixed: 9,
  tcpFixed: 10,
  /** The joined payload's sum (0 in a partial run); 0xffffffff before the run's first join, which
   *  verifies the pending frame itself first (TcpCoalescer.join) and sets it, ipFixed and
   *  tcpFixed. */
  payloadSum: 11,
  /** 1 when a joined part had PSH. */
  psh: 12,
  /** The run's spans (in place) so far, and how many it may have. */
  spanCount: 13,
  /** The words of the headers match() compares. */
  words: 14,
  /** Where the pending frame is built in the arena, and its room. */
  bufAt: 15,
  bufCap: 16,
  /** Where the mask of the header bits that must repeat lies (`words` Uint32s). */
  sameAt: 17,
  /** The run's span table: offsets (Float64s) and lengths (Uint32s), spanMax of each. */
  spanOffsetsAt: 18,
  spanLengthsAt: 19,
  spanMax: 20,
  /** The batch: frame i's readable spans are pairs [rows[2i], + rows[2i + 1]) of the (offset,
   *  length) pairs (Uint32s) at spansAt, spanSlots of them, in the call's view. */
  rowsAt: 21,
  spansAt: 22,
  spanSlots: 23,
  /** The frames to look at: [from, count). */
  from: 24,
  count: 25,
  /** The pending frame's sum from its IP header on, as its copy computed it (TcpCoalescer.start's
   *  frameSum; any value in a partial run): what the first join verifies its TCP checksum with. */
  firstSum: 26,
  /** Set by the call: the index + 1 of the frame that started the run (none pending before it),
   *  else 0. */
  started: 27,
  /** Set by the call: 1 when the run takes nothing more (closed, or the frame it stopped at does
   *  not fit behind it): the caller hands it on, and may call again from that frame. */
  over: 28,
} as const;

/** The bytes of the run's numbers. */
export const RUN_BYTES = 4 * Object.keys(RunField).length;

/**
 * Joins frames [from, count) of the batch the arena describes, while each continues the run (the
 * first starting it when none is pending), and leaves the run's new numbers in the arena: returns
 * the index of the first frame not joined. Throws on a layout outside the arena or a span outside
 * `view`.
 */
export type JoinRun = (view: Uint8Array, arena: Uint8Array) => number;

let nativeJoinRun: JoinRun | undefined;

/** Installs the native joinRun (the hostnet addon's); undefined removes it. Returns the one it
 *  replaces. */
export function useNativeJoinRun(fn: JoinRun | undefined): JoinRun | undefined {
  const was = nativeJoinRun;
  nativeJoinRun = fn;
  return was;
}

/** The native joinRun, when the addon installed it. */
export function joinRun(): JoinRun | undefined {
  return nativeJoinRun;
}
