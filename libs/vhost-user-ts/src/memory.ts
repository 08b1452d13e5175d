// Guest memory: the regions the frontend shares with SET_MEM_TABLE / ADD_MEM_REG, mapped into this
// process and cut into segments of at most SEGMENT_SIZE bytes (one external ArrayBuffer each; Node
// caps an ArrayBuffer at 4 GiB).
//
// Two address spaces point into it, both untrusted:
//  - guest-physical addresses (GPA), used by descriptors;
//  - frontend virtual addresses (UVA, QEMU's own mmap of guest RAM), used by SET_VRING_ADDR.
// Every translation checks that [addr, addr + len) lies inside a segment. A buffer that crosses a
// segment (or region) boundary is legal for descriptors: callers ask for the contiguous part and
// continue from the next address (see DescriptorChain).
//
// The region's fd is untrusted too. It must be a regular file (memfd, tmpfs and hugetlbfs files
// are). The file stays the frontend's: if it shrinks, our next access beyond its new end raises
// SIGBUS. So each region is sealed against shrinking where the file allows it (F_SEAL_SHRINK, as
// QEMU's memory-backend-memfd does itself by default), and every mapping sits behind the addon's
// SIGBUS guard, which turns such a fault into a zero page and an `onFault` call (src/guard.ts).
// A region that can be neither sealed nor guarded is refused.
import { getSystemErrorName } from 'node:util';
import { faultMonitor } from './guard.js';
import type { NativeMapping, NativeMemoryTable } from './native.js';
import { native } from './native.js';
import type { MemRegionDesc } from './protocol.js';

/** Segment size: 1 GiB, so a segment offset always fits in 31 bits. Page-aligned by construction. */
export const SEGMENT_SIZE = 1 << 30;

export interface Region extends MemRegionDesc {
  mapping: NativeMapping;
}

/** What add() learnt about the region's file. */
export interface AddedRegion {
  /** Sealed against shrinking (by the frontend or by us): it cannot fault by being truncated. */
  sealed: boolean;
  /** When not sealed, why (the errno name of F_ADD_SEALS / F_GET_SEALS). */
  sealError: string | undefined;
}

/** One contiguous, mapped piece of a region. */
export interface Segment {
  gpa: number;
  uva: number;
  length: number;
  /** Bytes of this segment start at `bytes[base]`. */
  bytes: Uint8Array;
  base: number;
  /** A DataView over the same chunk, created once, for little-endian reads at any alignment. */
  view: DataView;
  /** Its region's mapping, and where in that mapping its first byte is. */
  mapping: NativeMapping;
  mappingOffset: number;
}

export class MemoryError extends Error {}

/** Translation result, reused by the caller to avoid allocating per lookup. */
export interface Span {
  bytes: Uint8Array;
  view: DataView;
  /** Offset of the first byte within `bytes` / `view`. */
  offset: number;
  /** How many bytes are contiguous from there (at most the length asked for). */
  length: number;
}

export function newSpan(): Span {
  return { bytes: EMPTY, view: new DataView(EMPTY.buffer), offset: 0, length: 0 };
}

const EMPTY = new Uint8Array(0);

export class GuestMemory {
  private regions: Region[] = [];
  /** Segments sorted by GPA, and the same segments sorted by UVA. */
  private byGpa: Segment[] = [];
  private byUva: Segment[] = [];
  private lastHit = 0;
  /** Bumped on every change so holders of derived views (rings) know to re-resolve. */
  generation = 0;
  /** The segments in guest-physical order, for the addon's walk (VirtQueue.popSpans): `table`
   *  translates into them, and a span it gives names its segment's bytes here by index. */
  table: NativeMemoryTable = native.memoryTable([], new Float64Array(0));
  segmentBytes: readonly Uint8Array[] = [];
  /** Called (from the event loop) when accesses to a mapped region raised SIGBUS and were
   *  answered with zero pages: the file was truncated under us. */
  onFault: ((faults: number) => void) | undefined;
  private readonly faultListener = (faults: number): void => this.onFault?.(faults);

  constructor(readonly maxRegions: number) {}

  get regionCount(): number {
    return this.regions.length;
  }

  /** The index in segmentBytes of the segment whose bytes `bytes` are (a Span's), or -1. */
  segmentIndex(bytes: Uint8Array): number {
    return this.segmentBytes.indexOf(bytes);
  }

  /** Maps a region from `fd` (which the caller still owns and closes afterwards). Throws
   *  MemoryError for an invalid or overlapping description or an unusable fd; nothing is left
   *  mapped then. */
  add(desc: MemRegionDesc, fd: number): AddedRegion {
    const { guestPhysAddr: gpa, memorySize: size, userspaceAddr: uva, mmapOffset: off } = desc;
    for (const v of [gpa, size, uva, off]) {
      if (!Number.isSafeInteger(v) || v < 0) throw new MemoryError('region field out of range');
    }
    if (size === 0) throw new MemoryError('empty region');
    if (!Number.isSafeInteger(gpa + size) || !Number.isSafeInteger(uva + size) || !Number.isSafeInteger(off + size)) {
      throw new MemoryError('region wraps');
    }
    if (this.regions.length >= this.maxRegions) throw new MemoryError(`more than ${this.maxRegions} regions`);
    for (const r of this.regions) {
      if (gpa < r.guestPhysAddr + r.memorySize && r.guestPhysAddr < gpa + size) {
        throw new MemoryError('region overlaps another in guest-physical space');
      }
    }
    const kind = native.fdKind(fd);
    if (kind !== 'regular') throw new MemoryError(`region fd is a ${kind}, not a regular file`);
    // Sealed before mmap checks the file's size, so the size cannot shrink after the check.
    const seal = native.sealShrink(fd);
    const unsealed = seal === 0 ? undefined : getSystemErrorName(seal);
    // Map from file offset 0 so mmap_offset needs no particular alignment (libvhost-user does the
    // same); the region's bytes start at `off` within the mapping.
    let mapping: NativeMapping;
    try {
      mapping = native.mmap(fd, 0, off + size, SEGMENT_SIZE);
    } catch (err) {
      throw new MemoryError(`mmap failed: ${(err as Error).message}`);
    }
    if (unsealed !== undefined && !native.mappingGuarded(mapping)) {
      native.munmap(mapping);
      throw new MemoryError(`region cannot be sealed (${unsealed}) and the SIGBUS guard is unavailable`);
    }
    // Sealed regions are watched too: shared tmpfs memory also faults when the filesystem is full.
    faultMonitor().watch(mapping, this.faultListener);
    this.regions.push({ ...desc, mapping });
    this.rebuild();
    return { sealed: unsealed === undefined, sealError: unsealed };
  }

  /** Removes the region matching `desc` (by GPA, UVA and size; the offset is ignored as the
   *  spec says). Returns false when none matches. */
  remove(desc: MemRegionDesc): boolean {
    const i = this.regions.findIndex(
      (r) => r.guestPhysAddr === desc.guestPhysAddr && r.userspaceAddr === desc.userspaceAddr && r.memorySize === desc.memorySize,
    );
    if (i < 0) return false;
    const [r] = this.regions.splice(i, 1);
    if (r) this.unmap(r);
    this.rebuild();
    return true;
  }

  /** Unmaps everything. Views handed out earlier drop to length 0 (their buffers are detached). */
  clear(): void {
    // Every region is released even if one unmap throws (the first error is rethrown after).
    let failure: unknown;
    for (const r of this.regions) {
      try {
        this.unmap(r);
      } catch (err) {
        failure ??= err;
      }
    }
    this.regions = [];
    this.rebuild();
    if (failure !== undefined) throw failure instanceof Error ? failure : new Error('teardown failed', { cause: failure });
  }

  private unmap(r: Region): void {
    try {
      faultMonitor().unwatch(r.mapping);
    } finally {
      native.munmap(r.mapping);
    }
  }

  describe(): MemRegionDesc[] {
    return this.regions.map(({ guestPhysAddr, memorySize, userspaceAddr, mmapOffset }) => ({
      guestPhysAddr,
      memorySize,
      userspaceAddr,
      mmapOffset,
    }));
  }

  private rebuild(): void {
    const segs: Segment[] = [];
    for (const r of this.regions) {
      // Cut [mmapOffset, mmapOffset + size) of the mapping at chunk boundaries.
      let pos = r.mmapOffset;
      const end = r.mmapOffset + r.memorySize;
      while (pos < end) {
        const chunkIndex = Math.floor(pos / r.mapping.chunkSize);
        const chunk = r.mapping.chunks[chunkIndex];
        if (!chunk) throw new MemoryError('mapping shorter than region');
        const base = pos - chunkIndex * r.mapping.chunkSize;
        const length = Math.min(end - pos, chunk.byteLength - base);
        const delta = pos - r.mmapOffset;
        segs.push({
          gpa: r.guestPhysAddr + delta,
          uva: r.userspaceAddr + delta,
          length,
          bytes: new Uint8Array(chunk),
          base,
          view: new DataView(chunk),
          mapping: r.mapping,
          mappingOffset: pos,
        });
        pos += length;
      }
    }
    this.byGpa = [...segs].sort((a, b) => a.gpa - b.gpa);
    this.byUva = [...segs].sort((a, b) => a.uva - b.uva);
    const mappings = this.regions.map((r) => r.mapping);
    this.table = native.memoryTable(
      mappings,
      Float64Array.from(this.byGpa.flatMap((s) => [s.gpa, s.length, mappings.indexOf(s.mapping), s.mappingOffset, s.base])),
    );
    this.segmentBytes = this.byGpa.map((s) => s.bytes);
    this.lastHit = 0;
    this.generation++;
  }

  /** Finds the segment holding `gpa` (a recent hit first, then binary search), or undefined. */
  private findGpa(gpa: number): Segment | undefined {
    const segs = this.byGpa;
    const hit = segs[this.lastHit];
    if (hit && gpa >= hit.gpa && gpa < hit.gpa + hit.length) return hit;
    let lo = 0;
    let hi = segs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const s = segs[mid]!;
      if (gpa < s.gpa) hi = mid - 1;
      else if (gpa >= s.gpa + s.length) lo = mid + 1;
      else {
        this.lastHit = mid;
        return s;
      }
    }
    return undefined;
  }

  /** Translates the start of [gpa, gpa+len) into `out`; `out.length` is the contiguous part
   *  (≤ len). Returns false when gpa is not mapped or len is not a sane number. */
  translateGpa(gpa: number, len: number, out: Span): boolean {
    if (!(len > 0) || !Number.isSafeInteger(gpa)) return false;
    const s = this.findGpa(gpa);
    if (!s) return false;
    const within = gpa - s.gpa;
    out.bytes = s.bytes;
    out.view = s.view;
    out.offset = s.base + within;
    out.length = Math.min(len, s.length - within);
    return true;
  }

  /** Translates a frontend virtual range that must be contiguous (a ring area). */
  translateUva(uva: number, len: number, out: Span): boolean {
    if (!(len > 0) || !Number.isSafeInteger(uva)) return false;
    for (const s of this.byUva) {
      if (uva >= s.uva && uva < s.uva + s.length) {
        const within = uva - s.uva;
        if (len > s.length - within) return false;
        out.bytes = s.bytes;
        out.view = s.view;
        out.offset = s.base + within;
        out.length = len;
        return true;
      }
    }
    return false;
  }

  /** Copies guest memory [gpa, gpa+len) into dst (crossing segments as needed). */
  read(gpa: number, dst: Uint8Array, len = dst.length): boolean {
    const span = newSpan();
    let done = 0;
    while (done < len) {
      if (!this.translateGpa(gpa + done, len - done, span)) return false;
      dst.set(span.bytes.subarray(span.offset, span.offset + span.length), done);
      done += span.length;
    }
    return true;
  }

  /** Copies src into guest memory at gpa (crossing segments as needed). */
  write(gpa: number, src: Uint8Array): boolean {
    const span = newSpan();
    let done = 0;
    while (done < src.length) {
      if (!this.translateGpa(gpa + done, src.length - done, span)) return false;
      span.bytes.set(src.subarray(done, done + span.length), span.offset);
      done += span.length;
    }
    return true;
  }
}
