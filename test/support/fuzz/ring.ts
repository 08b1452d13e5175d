// Direct access to one split ring the test frontend laid out (DriverQueue), for drivers that manage
// descriptors themselves: the fuzzer writes any descriptor, puts any head in the avail ring and
// publishes any index, and the fast paths recycle buffers without the DriverQueue's free list.
// Layout and memory order as in virtio 1.2 §2.7: plain writes of descriptors and ring entries, then
// Atomics.store of avail.idx; Atomics.load of used.idx before reading used entries.
// Also where the test frontend will put its rings (FrontendOffsets), known before it connects.
import { native } from 'vhost-user-ts/testing';
import type { DriverQueue, TestGuestMemory } from 'vhost-user-ts/testing';

export class Ring {
  readonly size: number;
  /** avail: flags, idx, ring[size], used_event. */
  private readonly avail: Uint16Array;
  /** used: flags, idx (as u16), then ring entries (as u32 pairs), avail_event. */
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly descOff: number;
  private readonly view: DataView;
  /** avail.idx as we will publish it (free-running u16). */
  availIdx = 0;
  /** Next used entry to read. */
  lastUsed = 0;

  constructor(
    readonly mem: TestGuestMemory,
    readonly q: DriverQueue,
  ) {
    this.size = q.size;
    const buf = mem.bytes.buffer;
    const n = q.size;
    this.avail = new Uint16Array(buf, mem.offsetOf(q.availGpa), 3 + n);
    const usedOff = mem.offsetOf(q.usedGpa);
    this.used16 = new Uint16Array(buf, usedOff, 2 + 4 * n + 1);
    this.used32 = new Uint32Array(buf, usedOff, 1 + 2 * n);
    this.descOff = mem.offsetOf(q.descGpa);
    this.view = mem.view;
    this.availIdx = Atomics.load(this.avail, 1);
    this.lastUsed = Atomics.load(this.used16, 1);
  }

  /** Writes descriptor `i` of the ring's table (or of an indirect table at file offset `table`). */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number, table = this.descOff): void {
    const v = this.view;
    const d = table + 16 * i;
    // Addresses up to 2^64 - 1 (hostile ones too): a double at or past 2^64 is all ones.
    v.setBigUint64(d, addr >= 2 ** 64 ? 0xffff_ffff_ffff_ffffn : BigInt(Math.max(0, Math.floor(addr))), true);
    v.setUint32(d + 8, len >>> 0, true);
    v.setUint16(d + 12, flags, true);
    v.setUint16(d + 14, next, true);
  }

  /** Puts `head` in the next avail slot without publishing it. */
  put(head: number): void {
    this.avail[2 + (this.availIdx % this.size)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Publishes every slot put so far. */
  publish(): void {
    Atomics.store(this.avail, 1, this.availIdx);
  }

  /** Publishes any avail index (hostile drivers); later puts continue from it. */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(this.avail, 1, this.availIdx);
  }

  setAvailFlags(flags: number): void {
    Atomics.store(this.avail, 0, flags);
  }

  setUsedEvent(idx: number): void {
    Atomics.store(this.avail, 2 + this.size, idx & 0xffff);
  }

  get usedIdx(): number {
    return Atomics.load(this.used16, 1);
  }

  get availEvent(): number {
    return Atomics.load(this.used16, 2 + 4 * this.size);
  }

  /** Entries published since the last call, in order. */
  takeUsed(fn: (id: number, len: number) => void): number {
    const idx = this.usedIdx;
    let n = 0;
    while (this.lastUsed !== idx) {
      const slot = this.lastUsed % this.size;
      fn(this.used32[1 + 2 * slot]!, this.used32[2 + 2 * slot]!);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
      n++;
    }
    return n;
  }

  /** Used entries waiting to be taken. */
  get pendingUsed(): number {
    return (this.usedIdx - this.lastUsed) & 0xffff;
  }

  kick(): void {
    native.eventfdWrite(this.q.kickFd, 1);
  }

  /** Resolves when `done()` holds, waiting for calls (or polling every 5 ms, for drivers that
   *  suppress them); false after `timeoutMs`. */
  async until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (done()) return true;
      const left = deadline - performance.now();
      if (left <= 0) return done();
      await Promise.race([this.q.waitCall(left).catch(() => undefined), new Promise((r) => setTimeout(r, Math.min(5, left)))]);
    }
  }

  /** Starts the ring over at index 0 (after the frontend re-initialised it with base 0). */
  reset(): void {
    this.availIdx = 0;
    this.lastUsed = 0;
    Atomics.store(this.avail, 1, 0);
    Atomics.store(this.avail, 0, 0);
    Atomics.store(this.used16, 1, 0);
    Atomics.store(this.used16, 0, 0);
  }
}

/** File offsets as the test frontend's guest memory hands them out on a fresh connection
 *  (TestGuestMemory.alloc: one area after the other from offset 0, each aligned; areas that fit in
 *  the first region, as these do). A generator knows from it where the rings and its buffers will
 *  sit before the connection exists, so a saved input means the same on every connection. */
export class FrontendOffsets {
  private next = 0;

  /** The offset of the next `len` bytes aligned to `align`. */
  alloc(len: number, align: number): number {
    this.next = Math.ceil(this.next / align) * align;
    const at = this.next;
    this.next += len;
    return at;
  }

  /** A DriverQueue of `size` entries: its descriptor table, avail ring and used ring, allocated in
   *  that order and with those alignments as DriverQueue does; `end` is where the used ring ends. */
  queue(size: number): { desc: number; avail: number; used: number; end: number } {
    const desc = this.alloc(16 * size, 16);
    const avail = this.alloc(6 + 2 * size, 2);
    const used = this.alloc(6 + 8 * size, 4);
    return { desc, avail, used, end: this.next };
  }
}
