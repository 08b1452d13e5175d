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

/** Copies `len` bytes; the ranges may belong to the same buffer and may overlap. */
export function copyBytes(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number, len: number): void {
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
