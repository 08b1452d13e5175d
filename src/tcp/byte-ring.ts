// A byte ring that grows on demand up to a bound: the send buffer of a connection (bytes from
// SND.UNA on) and its receive buffer (bytes taken in order but not yet by the application, with
// out-of-order data parked further on at its place). Offsets are relative to the first byte held.
//
// Memory: nothing is allocated until the ring is first used; then `initial` bytes, which the owner
// has already drawn from the memory budget (a flow's minimum). Growth beyond `initial` doubles and
// draws from the budget with grow(): under memory pressure it is refused and the ring stays as it
// is (room() says so beforehand, so callers never promise what they cannot hold). release() and
// trim() give the memory back. Never allocation per segment.
import type { MemoryAccount } from '../iface/memory-budget.js';
import { copyBytes } from '../wire/bytes.js';

const EMPTY = new Uint8Array(0);
/** Growth that doubling cannot get falls back to steps of this size. */
const STEP = 4096;

export class ByteRing {
  private buf: Uint8Array = EMPTY;
  private head = 0;
  /** Bytes held from the head on (contiguous data). */
  length = 0;
  /** Capacity beyond `initial`, drawn from the account. */
  private grown = 0;

  constructor(
    readonly max: number,
    readonly initial = 16 * 1024,
    private readonly account?: MemoryAccount,
  ) {
    this.initial = Math.min(max, initial);
  }

  get capacity(): number {
    return this.buf.length;
  }

  /**
   * How many bytes the ring could hold from the head on, up to `limit`, without a refusal: its
   * capacity (at least `initial`, already paid for) plus the growth the budget grants now, in
   * the steps ensure() falls back to.
   */
  reachable(limit = this.max): number {
    const target = Math.min(limit, this.max);
    const base = Math.max(this.buf.length, this.initial);
    if (target <= base || !this.account) return target;
    return Math.min(target, base + Math.floor(this.account.budget.growable / STEP) * STEP);
  }

  /** Free bytes after the held ones, up to a fill of `limit` (see reachable()). */
  room(limit = this.max): number {
    return Math.max(0, this.reachable(limit) - this.length);
  }

  /** Makes the ring hold at least `n` bytes from the head (false beyond the bound or the budget). */
  ensure(n: number): boolean {
    if (n <= this.buf.length) return true;
    if (n > this.max) return false;
    const base = Math.max(this.buf.length, this.initial);
    let cap = base;
    while (cap < n) cap = Math.min(this.max, cap * 2);
    if (!this.charge(cap)) {
      // Doubling is refused: the least that holds `n`, in whole steps.
      cap = Math.min(this.max, base + Math.ceil((n - base) / STEP) * STEP);
      if (!this.charge(cap)) return false;
    }
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

  /** Draws what a capacity of `cap` needs beyond what is drawn; false when refused. */
  private charge(cap: number): boolean {
    const extra = Math.max(0, cap - this.initial) - this.grown;
    if (extra <= 0) return true;
    if (this.account && !this.account.grow(extra)) return false;
    this.grown += extra;
    return true;
  }

  /** Copies `src` to offset `off` (may lie beyond `length`: out-of-order data). False (nothing
   *  copied) when the ring cannot hold it. */
  writeAt(off: number, src: Uint8Array, srcOff: number, len: number): boolean {
    if (!this.ensure(off + len)) return false;
    const cap = this.buf.length;
    let p = (this.head + off) % cap;
    let done = 0;
    while (done < len) {
      const n = Math.min(len - done, cap - p);
      copyBytes(this.buf, p, src, srcOff + done, n);
      done += n;
      p = (p + n) % cap;
    }
    return true;
  }

  /** Appends up to `len` bytes, as many as room() allows; returns how many. */
  append(src: Uint8Array, srcOff: number, len: number, limit = this.max): number {
    const n = Math.min(len, this.room(limit));
    if (n <= 0 || !this.writeAt(this.length, src, srcOff, n)) return 0;
    this.length += n;
    return n;
  }

  /** Copies `len` bytes from offset `off` into dst[dstOff..]; returns `len`. */
  copyOut(off: number, len: number, dst: Uint8Array, dstOff: number): number {
    const cap = this.buf.length;
    let p = (this.head + off) % cap;
    let done = 0;
    while (done < len) {
      const n = Math.min(len - done, cap - p);
      copyBytes(dst, dstOff + done, this.buf, p, n);
      done += n;
      p = (p + n) % cap;
    }
    return len;
  }

  /** The ring's storage, in which runAt() and runLength() give the contiguous runs of held bytes
   *  (valid until the ring changes): a reader takes them in place, with no view made per call. */
  get storage(): Uint8Array {
    return this.buf;
  }

  /** Where offset `off` lies in storage. */
  runAt(off: number): number {
    const cap = this.buf.length;
    return cap === 0 ? 0 : (this.head + off) % cap;
  }

  /** How many of `len` bytes from offset `off` lie contiguous in storage from runAt(off) on. */
  runLength(off: number, len: number): number {
    const cap = this.buf.length;
    return cap === 0 ? 0 : Math.min(len, cap - this.runAt(off));
  }

  /**
   * Makes room for `n` bytes in front of the head (data given back: see TcpConnection.settleTaken)
   * while `extent` bytes from the head on are in use (held and out-of-order data); they become
   * the first `n` held bytes, for writeAt() to fill. False when the ring cannot grow to hold all.
   */
  unshift(n: number, extent: number): boolean {
    if (n === 0) return true;
    if (!this.ensure(extent + n)) return false;
    const cap = this.buf.length;
    this.head = (this.head - n + cap) % cap;
    this.length += n;
    return true;
  }

  /**
   * Drops `n` bytes from the head. `rewind`: nothing is parked beyond the held bytes (no
   * out-of-order data), so an emptied ring starts again at its beginning (what is written next
   * lands where the last writes did, still in cache); out-of-order data keeps its place.
   */
  consume(n: number, rewind = false): void {
    n = Math.min(n, this.length);
    this.length -= n;
    if (this.buf.length === 0) return;
    this.head = this.length === 0 && rewind ? 0 : (this.head + n) % this.buf.length;
  }

  /** A view of free space right after the held bytes (contiguous), up to a fill of `limit`
   *  (empty when there is no room). The ring grows (doubling) only once it is full. */
  reserve(limit = this.max): Uint8Array {
    const room = this.room(limit);
    if (room <= 0) return EMPTY;
    if (this.length === this.buf.length && !this.ensure(this.length + 1)) return EMPTY;
    const cap = this.buf.length;
    const tail = (this.head + this.length) % cap;
    return this.buf.subarray(tail, tail + Math.min(room, cap - this.length, cap - tail));
  }

  /** Counts `n` bytes written into the last reserve() as held. */
  commit(n: number): void {
    this.length += n;
  }

  /** Frees the memory of an empty ring when the budget is under pressure (the caller knows no
   *  out-of-order data lies beyond `length`); the next use allocates `initial` again. */
  trim(): void {
    if (this.length === 0 && this.buf.length > 0 && this.account?.budget.underPressure) this.release();
  }

  /** Frees everything (the connection is gone). */
  release(): void {
    this.buf = EMPTY;
    this.head = 0;
    this.length = 0;
    if (this.grown > 0) this.account?.give(this.grown);
    this.grown = 0;
  }
}
