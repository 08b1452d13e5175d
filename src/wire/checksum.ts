// The Internet checksum.
//
// Read before editing: RFC 1071 (computing the checksum; sections 1 and 2 give the properties this
// file relies on: byte-order independence, deferred carries, incremental update), RFC 1624
// (incremental update, equation 3: HC' = ~(~HC + ~m + m')), RFC 768 and RFC 9293 section 3.1 (the
// IPv4 pseudo-header), RFC 8200 section 8.1 (the IPv6 pseudo-header).
//
// Vocabulary: a "sum" is the ones'-complement sum of 16-bit words, folded to 16 bits (0..0xffff); a
// "checksum" is the complement of a sum, the value written into a header. Sums chain: pass the sum
// of the previous range as `initial`, as long as every range but the last has an even length.
import type { ScatterViews } from './bytes.js';
import { copyBytes, viewAt } from './bytes.js';

/** Folds carries above bit 15 back into the low 16 bits (RFC 1071 "deferred carries"). */
export function foldSum(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/** A native sum16 over a range, without `initial`. */
export type NativeSum = (b: Uint8Array, off: number, len: number) => number;

/** The host addon's sum16 once loaded, used for ranges of NATIVE_SUM_MIN bytes or more. */
let nativeSum: NativeSum | undefined;

/** Below this length the JavaScript loop beats a call into the addon (scripts/checksum-bench.ts:
 *  108 vs 81 ns at 256 bytes, 514 vs 139 ns at 1500, 21.9 vs 2.6 µs at 65000). */
export const NATIVE_SUM_MIN = 256;

/** Installs a native implementation of sum16 over a range (without `initial`); undefined removes
 *  it. Returns the one it replaces, so that a test can put it back. */
export function useNativeSum(fn: NativeSum | undefined): NativeSum | undefined {
  const was = nativeSum;
  nativeSum = fn;
  return was;
}

/** A native sumFrames. */
export type FramesSum = typeof sumFrames;
let nativeFramesSum: FramesSum | undefined;

/** Installs the native sumFrames (the hostnet addon's); undefined removes it. Returns the one it
 *  replaces. */
export function useNativeSumFrames(fn: FramesSum | undefined): FramesSum | undefined {
  const was = nativeFramesSum;
  nativeFramesSum = fn;
  return was;
}

/**
 * sum16 of each frame of a batch in a scatter list (frames placed in guest memory): frame k is the
 * concatenation of views[i][offsets[i], +lengths[i]) for i in [starts[k], starts[k + 1]), the last
 * frame's spans ending at spanCount. Its sum, added to sums[k] (the sum of what precedes it, its
 * headers), replaces sums[k], folded, not complemented. `views` holds a view per span, or is the
 * one view all of them lie in. With the addon, one call for the batch.
 */
export function sumFrames(
  views: ScatterViews,
  offsets: Float64Array,
  lengths: Uint32Array,
  starts: Uint32Array,
  sums: Uint32Array,
  frames: number,
  spanCount: number,
): void {
  if (nativeFramesSum !== undefined) {
    nativeFramesSum(views, offsets, lengths, starts, sums, frames, spanCount);
    return;
  }
  for (let k = 0; k < frames; k++) {
    const to = k + 1 < frames ? starts[k + 1]! : spanCount;
    let sum = sums[k]!;
    let at = 0;
    for (let i = starts[k]!; i < to; i++) {
      const s = sum16(viewAt(views, i), offsets[i]!, lengths[i]!);
      // A span starting at an odd position of the frame adds its sum byte-swapped (RFC 1071 §2(B)).
      sum += (at & 1) !== 0 ? ((s & 0xff) << 8) | (s >> 8) : s;
      at += lengths[i]!;
    }
    sums[k] = foldSum(sum);
  }
}

/** A native copySum. */
export type NativeCopySum = (src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, from: number) => number;
let nativeCopySum: NativeCopySum | undefined;

/** Installs the native copySum (the hostnet addon's); undefined removes it. Returns the one it
 *  replaces. */
export function useNativeCopySum(fn: NativeCopySum | undefined): NativeCopySum | undefined {
  const was = nativeCopySum;
  nativeCopySum = fn;
  return was;
}

/**
 * Copies src[srcOff, +len) to dst[dstOff, +len) (ranges not overlapping) and returns sum16 of the
 * copied bytes from `from` on (relative to the range): in one pass with the addon, else a copy and
 * then a sum of the copy. A guest frame's transport checksums are then verified from this sum and
 * their headers alone (Linux's CHECKSUM_COMPLETE; RxMeta.frameSum).
 */
export function copySum(src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number, from: number): number {
  if (nativeCopySum !== undefined) return nativeCopySum(src, srcOff, len, dst, dstOff, from);
  copyBytes(dst, dstOff, src, srcOff, len);
  return sum16(dst, dstOff + from, len - from);
}

/**
 * Where each number of a copyJob lies: Float64s at the start of its work array (COPY_JOB_BYTES),
 * which the caller keeps a Float64Array over. The frame is src[srcOffset, +length); its first
 * headLength bytes go to work[headAt, …), the rest to work[dstAt, …), summed from sumFrom on
 * into `sum`. A dstAt of -1 (SUM_IN_PLACE) copies the head only and sums the rest where it lies.
 * src[prefetchOffset, +prefetchLength) is asked of the CPU first (the next frame; a length of 0
 * asks for nothing).
 */
export const CopyJobField = {
  srcOffset: 0,
  length: 1,
  headAt: 2,
  headLength: 3,
  dstAt: 4,
  sumFrom: 5,
  prefetchOffset: 6,
  prefetchLength: 7,
  sum: 8,
} as const;

/** The bytes of a copyJob's block (the addon's kCopyJobBytes): nothing is copied into them. */
export const COPY_JOB_BYTES = 8 * Object.keys(CopyJobField).length;

/** A copyJob's dstAt that leaves the rest where it lies: summed, not copied. */
export const SUM_IN_PLACE = -1;

/** A native copyJob: it reads the job from work's first bytes. */
export type NativeCopyJob = (src: Uint8Array, work: Uint8Array) => void;
let nativeCopyJob: NativeCopyJob | undefined;

/** Installs the native copyJob (the hostnet addon's); undefined removes it. Returns the one it
 *  replaces. */
export function useNativeCopyJob(fn: NativeCopyJob | undefined): NativeCopyJob | undefined {
  const was = nativeCopyJob;
  nativeCopyJob = fn;
  return was;
}

/** A whole number in [0, max]. */
function whole(x: number, max: number): boolean {
  return Number.isInteger(x) && x >= 0 && x <= max;
}

/**
 * A guest frame copied (and summed) into `work` as the job in its first COPY_JOB_BYTES says
 * (CopyJobField; `job` is the caller's Float64Array over them): its headers to one place, its
 * payload to another (or nowhere: SUM_IN_PLACE), the sum of the payload's bytes from sumFrom on
 * left in job[sum]. With the addon one call, and no number passed as an argument: the frame path
 * of the TCP coalescer, where a call's arguments cost more than the copy. Throws RangeError on a
 * range outside its array or overlapping the block or another range.
 */
export function copyJob(src: Uint8Array, work: Uint8Array, job: Float64Array): void {
  if (nativeCopyJob !== undefined) {
    nativeCopyJob(src, work);
    return;
  }
  if (job.buffer !== work.buffer || job.byteOffset !== work.byteOffset || job.length < COPY_JOB_BYTES / 8)
    throw new RangeError('copyJob: job must be the Float64Array over the start of work');
  const { srcOffset, length, headAt, headLength, dstAt, sumFrom } = CopyJobField;
  const off = job[srcOffset]!;
  const len = job[length]!;
  const headLen = job[headLength]!;
  const rest = len - headLen;
  const h = job[headAt]!;
  const d = job[dstAt]!;
  const from = job[sumFrom]!;
  const copied = d === SUM_IN_PLACE ? 0 : rest;
  if (
    !whole(off, src.length) ||
    !whole(len, src.length - off) ||
    !whole(headLen, len) ||
    !whole(from, rest) ||
    h < COPY_JOB_BYTES ||
    !whole(h, work.length - headLen) ||
    (d !== SUM_IN_PLACE && (d < COPY_JOB_BYTES || !whole(d, work.length - rest))) ||
    (src.buffer === work.buffer && src.byteOffset + off < work.byteOffset + work.length && work.byteOffset < src.byteOffset + off + len) ||
    (h < d + copied && d < h + headLen)
  )
    throw new RangeError('copyJob: offsets and lengths must be integers within the arrays, clear of the job block and of each other');
  copyBytes(work, h, src, off, headLen);
  job[CopyJobField.sum] = d === SUM_IN_PLACE ? sum16(src, off + headLen + from, rest - from) : copySum(src, off + headLen, rest, work, d, from);
}

/**
 * True when a transport checksum verifies from `sum`, the sum16 of bytes[from, end) where the
 * transport message is bytes[at, end) (from ≤ at, at - from even): the bytes in front of it are
 * taken out (ones' complement subtraction, RFC 1624) and the pseudo-header sum `pseudo` added.
 * Only [from, at) is read.
 */
export function verifyFromSum(sum: number, bytes: Uint8Array, from: number, at: number, pseudo: number): boolean {
  const head = sum16(bytes, from, at - from);
  return foldSum(sum + (~head & 0xffff) + pseudo) === 0xffff;
}

/**
 * Ones'-complement sum of `len` bytes starting at `off`, added to `initial`, folded to 16 bits.
 * An odd trailing byte is padded with a zero byte on the right (RFC 1071 section 4.1). Long ranges
 * go to the native implementation when one is installed (useNativeSum).
 */
export function sum16(b: Uint8Array, off: number, len: number, initial = 0): number {
  if (nativeSum !== undefined && len >= NATIVE_SUM_MIN) return foldSum(initial + nativeSum(b, off, len));
  return sum16js(b, off, len, initial);
}

/**
 * sum16 in JavaScript. High and low bytes are summed separately so both accumulators stay small
 * integers (a 64 KiB frame adds at most 32768 * 255 to each), which keeps V8 on its fast integer
 * path.
 */
export function sum16js(b: Uint8Array, off: number, len: number, initial = 0): number {
  let hi = 0;
  let lo = 0;
  let i = off;
  const end = off + len;
  const end8 = off + (len & ~7);
  for (; i < end8; i += 8) {
    hi += b[i]! + b[i + 2]! + b[i + 4]! + b[i + 6]!;
    lo += b[i + 1]! + b[i + 3]! + b[i + 5]! + b[i + 7]!;
  }
  for (; i + 1 < end; i += 2) {
    hi += b[i]!;
    lo += b[i + 1]!;
  }
  if (i < end) hi += b[i]!;
  return foldSum(initial + hi * 256 + lo);
}

/** The checksum to store in a header: the complement of the sum of the range (plus `initial`). */
export function internetChecksum(b: Uint8Array, off: number, len: number, initial = 0): number {
  return ~sum16(b, off, len, initial) & 0xffff;
}

/**
 * True when a range that contains its own checksum field verifies: the sum of everything, checksum
 * included, is 0xffff ("all ones", RFC 1071 section 1).
 */
export function verifyChecksum(b: Uint8Array, off: number, len: number, initial = 0): boolean {
  return sum16(b, off, len, initial) === 0xffff;
}

/** Sum of the IPv4 pseudo-header: source, destination, zero, protocol, transport length. */
export function pseudoHeaderSumV4(src: number, dst: number, protocol: number, length: number): number {
  return foldSum((src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + protocol + length);
}

/**
 * Sum of the IPv6 pseudo-header: source, destination (read in place), upper-layer packet length
 * (32 bits), three zero bytes, next header.
 */
export function pseudoHeaderSumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, nextHeader: number, length: number): number {
  const s = sum16(src, srcOff, 16, sum16(dst, dstOff, 16));
  return foldSum(s + Math.floor(length / 0x10000) + (length & 0xffff) + nextHeader);
}

/** Verifies a TCP/UDP/ICMP-style checksum covering an IPv4 pseudo-header and `len` bytes at `off`. */
export function verifyTransportV4(b: Uint8Array, off: number, len: number, src: number, dst: number, protocol: number): boolean {
  return verifyChecksum(b, off, len, pseudoHeaderSumV4(src, dst, protocol, len));
}

/** Verifies a TCP/UDP/ICMPv6 checksum covering an IPv6 pseudo-header and `len` bytes at `off`. */
export function verifyTransportV6(
  b: Uint8Array,
  off: number,
  len: number,
  src: Uint8Array,
  srcOff: number,
  dst: Uint8Array,
  dstOff: number,
  nextHeader: number,
): boolean {
  return verifyChecksum(b, off, len, pseudoHeaderSumV6(src, srcOff, dst, dstOff, nextHeader, len));
}

/**
 * Completes a partial checksum (virtio NEEDS_CSUM, Linux CHECKSUM_PARTIAL): the field at
 * `start + offset` holds the pseudo-header sum; the checksum of `b[start, end)`, that field included
 * as it stands, replaces it. `udp`: a result of zero is sent as all ones (RFC 768).
 */
export function completeChecksum(b: Uint8Array, start: number, end: number, offset: number, udp = false): void {
  const c = internetChecksum(b, start, end - start);
  const v = c === 0 && udp ? 0xffff : c;
  b[start + offset] = v >> 8;
  b[start + offset + 1] = v & 0xff;
}

/**
 * Checksum after one 16-bit word of the covered data changes from `oldWord` to `newWord`
 * (RFC 1624 equation 3, which never yields the -0 that equation 2 can).
 */
export function checksumUpdate16(checksum: number, oldWord: number, newWord: number): number {
  const s = foldSum((~checksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff));
  return ~s & 0xffff;
}

/** Checksum after a 32-bit value (an IPv4 address, a sequence number) changes: two word updates. */
export function checksumUpdate32(checksum: number, oldValue: number, newValue: number): number {
  const s = foldSum((~checksum & 0xffff) + (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) + (newValue >>> 16) + (newValue & 0xffff));
  return ~s & 0xffff;
}

/**
 * Checksum after `len` bytes (even, at an even position of the covered data) change from the bytes at
 * `oldB[oldOff..]` to those at `newB[newOff..]`, e.g. an IPv6 address rewritten by NAT.
 */
export function checksumUpdateBytes(checksum: number, oldB: Uint8Array, oldOff: number, newB: Uint8Array, newOff: number, len: number): number {
  const removed = ~sum16(oldB, oldOff, len) & 0xffff;
  const s = foldSum((~checksum & 0xffff) + removed + sum16(newB, newOff, len));
  return ~s & 0xffff;
}
