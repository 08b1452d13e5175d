// Big-endian field access on a Uint8Array, without a DataView.
//
// Network byte order is big-endian (RFC 1700, "Data Notations"). These helpers are the only place in
// src/wire that turns bytes into numbers; every view reads its fields through them. They do no bounds
// checks: a view's check() proves the fields are inside the buffer before any getter runs.

export function get8(b: Uint8Array, o: number): number {
  return b[o]!;
}

export function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function get24(b: Uint8Array, o: number): number {
  return (b[o]! << 16) | (b[o + 1]! << 8) | b[o + 2]!;
}

/** Reads an unsigned 32-bit value (always >= 0). */
export function get32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function set8(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
}

export function set16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}

export function set24(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 16;
  b[o + 1] = v >>> 8;
  b[o + 2] = v;
}

export function set32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}

/**
 * The views of a scatter list: one per span (views[i] holds span i), or the one Uint8Array all
 * the spans lie in. The addon looks a view up per span in the first form (~70 ns each); in the
 * second, once (oneView() makes it when it can).
 */
export type ScatterViews = readonly Uint8Array[] | Uint8Array;

/** The view all of spans [0, count) lie in, when they share one (guest memory in one region, the
 *  usual case), else `views` unchanged (as is one view already). */
export function oneView(views: ScatterViews, count: number): ScatterViews {
  if (views instanceof Uint8Array) return views;
  const v = views[0];
  if (v === undefined) return views;
  for (let i = 1; i < count; i++) if (views[i] !== v) return views;
  return v;
}

/** The view span i of a scatter list lies in. */
export function viewAt(views: ScatterViews, i: number): Uint8Array {
  return views instanceof Uint8Array ? views : views[i]!;
}

/** A memmove of src[srcOff, +len) to dst[dstOff, +len) that makes no view (vhost-user-ts's). */
export type NativeCopy = (src: Uint8Array, srcOff: number, len: number, dst: Uint8Array, dstOff: number) => void;

let nativeCopy: NativeCopy | undefined;

/** Copies of at least this many bytes go to the native memmove when one is installed. */
export const NATIVE_COPY_MIN = 64;

/** Installs the native memmove copyBytes uses for long copies; undefined removes it. Returns the
 *  one it replaces, so that a test can put it back. */
export function useNativeCopy(fn: NativeCopy | undefined): NativeCopy | undefined {
  const was = nativeCopy;
  nativeCopy = fn;
  return was;
}

/**
 * Copies `len` bytes; the ranges may belong to the same buffer and may overlap. Long copies go to
 * the native memmove when one is installed (useNativeCopy), else to set(): either way no view is
 * made per call once the addon is loaded, which is what the per-frame paths need.
 */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): void {
  if (srcOff === 0 && len === src.length && dst !== src) {
    dst.set(src, dstOff); // all of src: no view needed
    return;
  }
  if (len >= NATIVE_COPY_MIN) {
    if (nativeCopy !== undefined) nativeCopy(src, srcOff, len, dst, dstOff);
    else dst.set(src.subarray(srcOff, srcOff + len), dstOff);
    return;
  }
  if (dst === src) {
    dst.copyWithin(dstOff, srcOff, srcOff + len);
    return;
  }
  for (let i = 0; i < len; i++) dst[dstOff + i] = src[srcOff + i]!;
}

export function bytesEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): boolean {
  for (let i = 0; i < len; i++) {
    if (a[aOff + i] !== b[bOff + i]) return false;
  }
  return true;
}

export function fillBytes(b: Uint8Array, off: number, len: number, value: number): void {
  b.fill(value, off, off + len);
}

/** Lower-case hex of a byte range, for logs and tests. */
export function toHex(b: Uint8Array, off = 0, len = b.length - off): string {
  let s = '';
  for (let i = 0; i < len; i++) s += b[off + i]!.toString(16).padStart(2, '0');
  return s;
}

/** Parses hex, ignoring white space, for tests and configuration; returns null on bad input. */
export function fromHex(hex: string): Uint8Array | null {
  const clean = hex.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(clean)) return null;
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** The range [off, off + len) lies inside `b`. Every view's check() starts with this. */
export function rangeOk(b: Uint8Array, off: number, len: number): boolean {
  return off >= 0 && len >= 0 && off + len <= b.length;
}

const EMPTY = new Uint8Array(0);

/**
 * The base of every header view: a window [offset, offset + length) of `bytes`, re-pointed per
 * packet with at() (no allocation). A view's check() must pass before its getters are trusted.
 */
export class WireView {
  bytes: Uint8Array = EMPTY;
  offset = 0;
  length = 0;

  at(bytes: Uint8Array, offset: number, length: number): this {
    this.bytes = bytes;
    this.offset = offset;
    this.length = length;
    return this;
  }
}

/**
 * The base of the option walkers (DHCPv4's type-length-value, DHCPv6's): the current option's code
 * and the absolute offset and length of its value, read-ahead position `pos` up to `end`, and
 * `error` once an option ran past its area. A subclass's next() positions on the next option.
 */
export abstract class OptionCursor {
  bytes: Uint8Array = EMPTY;
  protected pos = 0;
  protected end = 0;
  /** Current option: its code, and the absolute offset and length of its value. */
  code = 0;
  offset = 0;
  length = 0;
  error = false;

  /** Moves to the next option: true there, false at the end or with `error` set. */
  abstract next(): boolean;

  /** Walks the rest: whether every option is well-formed. */
  validate(): boolean {
    while (this.next()) {
      // next() checks each option
    }
    return !this.error;
  }

  // Value accessors for the current option.
  get u8(): number {
    return get8(this.bytes, this.offset);
  }
  get u16(): number {
    return get16(this.bytes, this.offset);
  }
  get u32(): number {
    return get32(this.bytes, this.offset);
  }

  protected fail(): boolean {
    this.error = true;
    return false;
  }
}

/**
 * Views by [start, end) of whatever buffer they are asked of, each made once while it stays in the
 * cache: the hot paths cut the same ranges frame after frame (a full-sized segment, a pure ACK),
 * and `subarray` would allocate a view for each. Keep one per call site. A view is only as lasting
 * as the buffer's contents; it is never to be kept past the frame it was asked for. It holds on to
 * the buffers of the views it keeps (a bounded set).
 *
 * Two-way set-associative, sets chosen by the range and where the base starts in its buffer: a
 * site that sees many lengths (segments the device joined, `size` 128), or the same range of
 * several bases (frames in the slots of one arena), keeps a view per length and base, and a lookup
 * stays two comparisons.
 */
export class ViewCache {
  private readonly bases: (Uint8Array | undefined)[];
  private readonly starts: Int32Array;
  private readonly ends: Int32Array;
  private readonly views: (Uint8Array | undefined)[];
  /** Per set: the way the next miss replaces (the one not used last). */
  private readonly victim: Uint8Array;
  /** The set of a range: the top bits of its Fibonacci hash (lengths that differ by a multiple
   *  of an MSS spread over all sets, where a modulus could fold them onto a few). */
  private readonly shift: number;
  private readonly mask: number;

  /** `size`: views kept, rounded up to a power of two (at least 2). */
  constructor(size = 8) {
    const bits = Math.max(0, Math.ceil(Math.log2(Math.max(2, size))) - 1);
    const sets = 1 << bits;
    this.shift = bits === 0 ? 0 : 32 - bits;
    this.mask = sets - 1;
    const ways = sets * 2;
    this.bases = new Array<Uint8Array | undefined>(ways).fill(undefined);
    this.views = new Array<Uint8Array | undefined>(ways).fill(undefined);
    this.starts = new Int32Array(ways);
    this.ends = new Int32Array(ways);
    this.victim = new Uint8Array(sets);
  }

  /** base.subarray(start, end), from the cache when it holds that range of that buffer. */
  of(base: Uint8Array, start: number, end: number): Uint8Array {
    const set = (Math.imul((end - start) ^ (start << 16) ^ base.byteOffset, 0x9e3779b1) >>> this.shift) & this.mask;
    const i = set * 2;
    if (this.bases[i] === base && this.starts[i] === start && this.ends[i] === end) {
      this.victim[set] = 1;
      return this.views[i]!;
    }
    if (this.bases[i + 1] === base && this.starts[i + 1] === start && this.ends[i + 1] === end) {
      this.victim[set] = 0;
      return this.views[i + 1]!;
    }
    const way = this.victim[set]!;
    const k = i + way;
    const view = base.subarray(start, end);
    this.bases[k] = base;
    this.starts[k] = start;
    this.ends[k] = end;
    this.views[k] = view;
    this.victim[set] = 1 - way;
    return view;
  }
}

/**
 * Stores the named number fields of `o` as doubles from the start, each at 0, and returns `o`. V8
 * keeps a field that has held only small integers as one (a Smi: 31 bits and a sign), and optimized
 * code relies on it. The first value past 2^31 to land in such a field — a byte counter a couple
 * of GB into a transfer, an unsigned 32-bit sequence number or timestamp half the time — then
 * changes the field's representation: all optimized code that relied on it is thrown away, to be
 * recompiled in the middle of the traffic. A field that has held a fraction is a double for good.
 * For counters and unsigned 32-bit fields of objects the data path uses; names not a number field
 * of `o` throw.
 */
export function doubleFields<T extends object>(o: T, ...names: string[]): T {
  const fields = o as Record<string, unknown>;
  for (const name of names) {
    if (typeof fields[name] !== 'number') throw new TypeError(`doubleFields: ${name} is not a number field`);
    fields[name] = 0.5;
    fields[name] = 0;
  }
  return o;
}
