// A byte ring that grows on demand up to a bound: the send buffer of a connection (bytes from
// SND.UNA on) and its receive buffer (bytes taken in order but not yet by the application, with
// out-of-order data parked further on at its place). Offsets are relative to the first byte held.
// Memory is allocated only when the ring grows (doubling), never per segment.

export class ByteRing {
  private buf: Uint8Array;
  private head = 0;
  /** Bytes held from the head on (contiguous data). */
  length = 0;

  constructor(
    readonly max: number,
    initial = 16 * 1024,
  ) {
    this.buf = new Uint8Array(Math.min(max, initial));
  }

  get capacity(): number {
    return this.buf.length;
  }

  /** Free bytes before reaching the bound. */
  get space(): number {
    return this.max - this.length;
  }

  /** Makes the ring hold at least `n` bytes from the head (false beyond the bound). */
  ensure(n: number): boolean {
    if (n <= this.buf.length) return true;
    if (n > this.max) return false;
    let cap = this.buf.length;
    while (cap < n) cap = Math.min(this.max, cap * 2);
    const next = new Uint8Array(cap);
    // Copy everything up to the old capacity (out-of-order data beyond `length` too).
    const old = this.buf;
    const first = old.length - this.head;
    next.set(old.subarray(this.head), 0);
    next.set(old.subarray(0, this.head), first);
    this.buf = next;
    this.head = 0;
    return true;
  }

  /** Copies `src` to offset `off` (may lie beyond `length`: out-of-order data). */
  writeAt(off: number, src: Uint8Array, srcOff: number, len: number): boolean {
    if (!this.ensure(off + len)) return false;
    const cap = this.buf.length;
    let p = (this.head + off) % cap;
    let done = 0;
    while (done < len) {
      const n = Math.min(len - done, cap - p);
      this.buf.set(src.subarray(srcOff + done, srcOff + done + n), p);
      done += n;
      p = (p + n) % cap;
    }
    return true;
  }

  /** Appends up to `len` bytes; returns how many fit. */
  append(src: Uint8Array, srcOff: number, len: number): number {
    const n = Math.min(len, this.space);
    if (n <= 0 || !this.writeAt(this.length, src, srcOff, n)) return 0;
    this.length += n;
    return n;
  }

  /** Copies `len` bytes from offset `off` into dst[dstOff..]. */
  copyOut(off: number, len: number, dst: Uint8Array, dstOff: number): void {
    const cap = this.buf.length;
    let p = (this.head + off) % cap;
    let done = 0;
    while (done < len) {
      const n = Math.min(len - done, cap - p);
      dst.set(this.buf.subarray(p, p + n), dstOff + done);
      done += n;
      p = (p + n) % cap;
    }
  }

  /** The contiguous run of held bytes from offset `off` (up to the ring's physical end). */
  viewAt(off: number, len: number): Uint8Array {
    const cap = this.buf.length;
    const p = (this.head + off) % cap;
    return this.buf.subarray(p, p + Math.min(len, cap - p));
  }

  /** Drops `n` bytes from the head. */
  consume(n: number): void {
    n = Math.min(n, this.length);
    this.length -= n;
    this.head = this.length === 0 ? 0 : (this.head + n) % this.buf.length;
  }

  /** A view of free space right after the held bytes (contiguous; empty when at the bound). */
  reserve(): Uint8Array {
    if (this.length >= this.max) return this.buf.subarray(0, 0);
    if (this.length === this.buf.length) this.ensure(this.length + 1);
    const cap = this.buf.length;
    const tail = (this.head + this.length) % cap;
    const free = Math.min(cap - this.length, this.max - this.length);
    return this.buf.subarray(tail, tail + Math.min(free, cap - tail));
  }

  /** Counts `n` bytes written into the last reserve() as held. */
  commit(n: number): void {
    this.length += n;
  }
}
