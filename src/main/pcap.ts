// Frame capture in classic libpcap format (what tcpdump -w writes): a 24-byte global header, then
// per frame a 16-byte record header and the bytes. Both directions go into one file, in the order
// record() is called.
//
// record() never touches the disk: it copies the frame into the current buffer from a small pool.
// A full buffer (or the current one after flushIntervalMs) is handed to fs.write; one write is in
// flight at a time, so the file keeps the call order. Memory is bounded by the pool: when every
// buffer is full or being written (the disk is behind), records are dropped and counted.
//
// File layout (little-endian; readers detect the byte order from the magic):
//   global: magic a1b2c3d4, version 2.4, thiszone 0, sigfigs 0, snaplen, network 1 (Ethernet)
//   record: ts_sec, ts_usec, incl_len (≤ snaplen), orig_len
import type { PartialChecksum } from '../iface/link.js';
import { doubleFields } from '../wire/bytes.js';
import { completeChecksum } from '../wire/checksum.js';
import { UDP_CHECKSUM_OFFSET } from '../wire/udp.js';
import { open as openFile, type FileHandle } from 'node:fs/promises';

export const PCAP_MAGIC = 0xa1b2c3d4;
export const PCAP_VERSION_MAJOR = 2;
export const PCAP_VERSION_MINOR = 4;
export const PCAP_SNAPLEN = 262144;
export const LINKTYPE_ETHERNET = 1;
export const PCAP_GLOBAL_HEADER_LEN = 24;
export const PCAP_RECORD_HEADER_LEN = 16;

export interface PcapWriterOptions {
  /** Frames longer than this are cut (orig_len keeps the real length). Default 262144. */
  snaplen?: number;
  /** Size of each buffer; at least 16 + snaplen. Default 512 KiB. */
  bufferSize?: number;
  /** Buffers in the pool (the memory bound is bufferSize × maxBuffers). Default 8. */
  maxBuffers?: number;
  /** A partly filled buffer is written after this long. Default 200 ms. */
  flushIntervalMs?: number;
  /** Called once, on the first failed write; later records are dropped. */
  onError?: (err: PcapError) => void;
}

/** records + dropped = record() calls. */
export interface PcapStats {
  /** Records written or waiting to be written. */
  records: number;
  /** Their frame bytes (incl_len summed). */
  bytes: number;
  /** Records lost: the disk was behind (every buffer full), a write failed, or record() after close(). */
  dropped: number;
}

export class PcapError extends Error {
  override readonly name = 'PcapError';
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

interface Filled {
  buf: Buffer;
  len: number;
}

const errnoCode = (err: unknown): string | undefined =>
  typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string' ? (err as { code: string }).code : undefined;

/** The 24-byte global header. */
export function pcapGlobalHeader(snaplen = PCAP_SNAPLEN): Buffer {
  const h = Buffer.alloc(PCAP_GLOBAL_HEADER_LEN);
  h.writeUInt32LE(PCAP_MAGIC, 0);
  h.writeUInt16LE(PCAP_VERSION_MAJOR, 4);
  h.writeUInt16LE(PCAP_VERSION_MINOR, 6);
  h.writeInt32LE(0, 8); // thiszone: timestamps are UTC
  h.writeUInt32LE(0, 12); // sigfigs
  h.writeUInt32LE(snaplen, 16);
  h.writeUInt32LE(LINKTYPE_ETHERNET, 20);
  return h;
}

export class PcapWriter {
  readonly path: string;
  private readonly fh: FileHandle;
  private readonly snaplen: number;
  private readonly bufferSize: number;
  private readonly maxBuffers: number;
  private readonly flushIntervalMs: number;
  private readonly onError: ((err: PcapError) => void) | undefined;

  /** Buffers ready for reuse, and how many exist in all. */
  private readonly free: Buffer[] = [];
  private allocated = 0;
  /** The buffer records go into, or undefined when none is free. */
  private current: Buffer | undefined;
  private used = 0;
  /** Full buffers waiting to be written, oldest first; the head is being written when writing. */
  private readonly queue: Filled[] = [];
  private writing = false;
  private timer: NodeJS.Timeout | undefined;
  private failure: PcapError | undefined;
  private closing: Promise<void> | undefined;
  /** Resolved when the queue is empty and no write is in flight. */
  private idleWaiters: Array<() => void> = [];
  private readonly counters: PcapStats = doubleFields({ records: 0, bytes: 0, dropped: 0 }, 'bytes');

  private constructor(path: string, fh: FileHandle, options: PcapWriterOptions) {
    this.path = path;
    this.fh = fh;
    this.snaplen = options.snaplen ?? PCAP_SNAPLEN;
    this.bufferSize = options.bufferSize ?? 512 * 1024;
    this.maxBuffers = options.maxBuffers ?? 8;
    this.flushIntervalMs = options.flushIntervalMs ?? 200;
    this.onError = options.onError;
    this.current = this.take();
  }

  /**
   * Creates (or truncates) the file and writes the global header. Fails with a PcapError such as
   * "cannot write pcap file /x/y.pcap: EACCES".
   */
  static async open(path: string, options: PcapWriterOptions = {}): Promise<PcapWriter> {
    const snaplen = options.snaplen ?? PCAP_SNAPLEN;
    const bufferSize = options.bufferSize ?? 512 * 1024;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > 0x7fffffff) {
      throw new RangeError(`pcap snaplen must be a positive integer (got ${snaplen})`);
    }
    if (!Number.isInteger(bufferSize) || bufferSize < PCAP_RECORD_HEADER_LEN + snaplen) {
      throw new RangeError(`pcap bufferSize must hold one whole record (${PCAP_RECORD_HEADER_LEN + snaplen} bytes)`);
    }
    if (options.maxBuffers !== undefined && (!Number.isInteger(options.maxBuffers) || options.maxBuffers < 1)) {
      throw new RangeError('pcap maxBuffers must be at least 1');
    }
    let fh: FileHandle | undefined;
    try {
      fh = await openFile(path, 'w');
      const header = pcapGlobalHeader(snaplen);
      const { bytesWritten } = await fh.write(header, 0, header.length);
      if (bytesWritten !== header.length) throw Object.assign(new Error('short write'), { code: 'EIO' });
    } catch (err) {
      await fh?.close().catch(() => {});
      const code = errnoCode(err);
      throw new PcapError(`cannot write pcap file ${path}: ${code ?? (err as Error).message}`, code);
    }
    return new PcapWriter(path, fh, options);
  }

  get stats(): Readonly<PcapStats> {
    return { ...this.counters };
  }

  /** The first write error, if any (writing stopped there). */
  get error(): PcapError | undefined {
    return this.failure;
  }

  /**
   * Appends one frame. `timestampMs` is milliseconds since the Unix epoch (fractions kept to the
   * microsecond). `partial`: its transport checksum was left partial (virtio NEEDS_CSUM, either
   * way); the capture gets it completed, as it would be on a wire, and the frame is left alone.
   * Copies the frame; never blocks. Returns false when the record was dropped.
   */
  record(frame: Uint8Array, timestampMs: number, partial?: PartialChecksum): boolean {
    if (this.closing !== undefined || this.failure !== undefined) {
      this.counters.dropped++;
      return false;
    }
    const incl = Math.min(frame.length, this.snaplen);
    const need = PCAP_RECORD_HEADER_LEN + incl;
    if (this.current !== undefined && this.used + need > this.bufferSize) this.seal();
    if (this.current === undefined) {
      this.current = this.take();
      if (this.current === undefined) {
        this.counters.dropped++;
        return false;
      }
    }
    const buf = this.current;
    let at = this.used;
    const ms = Number.isFinite(timestampMs) && timestampMs > 0 ? timestampMs : 0;
    let sec = Math.floor(ms / 1000);
    let usec = Math.round((ms - sec * 1000) * 1000);
    if (usec >= 1_000_000) {
      sec += 1;
      usec -= 1_000_000;
    }
    buf.writeUInt32LE(sec >>> 0, at);
    buf.writeUInt32LE(usec, at + 4);
    buf.writeUInt32LE(incl, at + 8);
    buf.writeUInt32LE(frame.length, at + 12);
    at += PCAP_RECORD_HEADER_LEN;
    buf.set(incl === frame.length ? frame : frame.subarray(0, incl), at);
    if (partial && incl === frame.length && partial.start + partial.offset + 2 <= incl) {
      // UDP's field is the one 6 bytes in (TCP's is 16): a zero result is sent as all ones.
      completeChecksum(buf, at + partial.start, at + incl, partial.offset, partial.offset === UDP_CHECKSUM_OFFSET);
    }
    this.used = at + incl;
    this.counters.records++;
    this.counters.bytes += incl;
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.seal();
      }, this.flushIntervalMs);
      this.timer.unref();
    }
    return true;
  }

  /** Writes everything recorded so far; resolves when it is on disk (in the kernel's hands). */
  flush(): Promise<void> {
    this.seal();
    return this.idle();
  }

  /** Flushes and closes the file. Rejects with the write error if writing had failed. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.flush();
      await this.fh.close();
      if (this.failure !== undefined) throw this.failure;
    })();
    return this.closing;
  }

  // ---------- internals ----------

  private take(): Buffer | undefined {
    this.used = 0;
    const b = this.free.pop();
    if (b !== undefined) return b;
    if (this.allocated >= this.maxBuffers) return undefined;
    this.allocated++;
    return Buffer.allocUnsafe(this.bufferSize);
  }

  /** Moves the current buffer, if it holds anything, to the write queue. */
  private seal(): void {
    if (this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.current === undefined || this.used === 0) return;
    this.queue.push({ buf: this.current, len: this.used });
    this.current = undefined;
    this.used = 0;
    this.pump();
  }

  private pump(): void {
    if (this.writing) return;
    const head = this.queue[0];
    if (head === undefined) {
      this.wakeIdle();
      return;
    }
    if (this.failure !== undefined) {
      // Nothing more is written: what is queued moves from accepted to dropped.
      for (const f of this.queue.splice(0)) this.discard(f);
      this.wakeIdle();
      return;
    }
    this.writing = true;
    void this.writeAll(head).then(
      () => {
        this.writing = false;
        this.queue.shift();
        this.free.push(head.buf);
        this.pump();
      },
      (err: unknown) => {
        this.writing = false;
        const code = errnoCode(err);
        this.failure = new PcapError(`cannot write pcap file ${this.path}: ${code ?? (err as Error).message}`, code);
        this.queue.shift();
        this.discard(head);
        this.onError?.(this.failure);
        this.pump();
      },
    );
  }

  private discard(f: Filled): void {
    const lost = contents(f);
    this.counters.records -= lost.records;
    this.counters.bytes -= lost.bytes;
    this.counters.dropped += lost.records;
    this.free.push(f.buf);
  }

  private async writeAll(f: Filled): Promise<void> {
    let off = 0;
    while (off < f.len) {
      const { bytesWritten } = await this.fh.write(f.buf, off, f.len - off);
      if (bytesWritten <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
      off += bytesWritten;
    }
  }

  private idle(): Promise<void> {
    if (!this.writing && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private wakeIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/** Records and frame bytes in a filled buffer (walks the record headers). */
function contents(f: Filled): { records: number; bytes: number } {
  let records = 0;
  let bytes = 0;
  for (let at = 0; at + PCAP_RECORD_HEADER_LEN <= f.len;) {
    const incl = f.buf.readUInt32LE(at + 8);
    records++;
    bytes += incl;
    at += PCAP_RECORD_HEADER_LEN + incl;
  }
  return { records, bytes };
}
