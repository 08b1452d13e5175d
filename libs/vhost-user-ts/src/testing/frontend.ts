// A driver-side vhost-user frontend for tests: it plays QEMU and the guest driver at once. It owns
// memfd "guest memory" (optionally cut into several regions, each at its own mmap offset of the one
// memfd), sends the message sequence QEMU 7.2 sends over a real unix socket, lays out split rings
// in that memory, posts buffers, kicks, and reads completions. Raw accessors let tests write
// hostile descriptors and rings.
import { Connection } from '../connection.js';
import type { Message } from '../connection.js';
import type { MemfdSealing, NativeMapping, NativePoller } from '../native.js';
import { native } from '../native.js';
import {
  Feature,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  HEADER_SIZE,
  PayloadSize,
  ProtocolFeature,
  Request,
  VERSION,
  VRING_NOFD_MASK,
  bit,
  encodeHeader,
  writeRegion,
  writeU32,
  writeU64,
} from '../protocol.js';
import type { MemRegionDesc } from '../protocol.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../virtqueue.js';

export interface FrontendOptions {
  /** Total guest memory in bytes (default 4 MiB). */
  memorySize?: number;
  /** Split it into this many regions (default 1). Each is a separate SET_MEM_TABLE entry. */
  regions?: number;
  /** Guest-physical base of the first region (default 0x10_0000). */
  gpaBase?: number;
  /** Frontend-virtual base of the first region (default 0x7f00_0000_0000). */
  uvaBase?: number;
  /** How the memfd is sealed (default 'sealed', as QEMU's memory-backend-memfd: no grow, no
   *  shrink, no more seals). 'sealable' leaves sealing to the backend; 'unsealable' is made
   *  without MFD_ALLOW_SEALING, so it can be truncated under the backend. */
  sealing?: MemfdSealing;
}

export interface Reply {
  request: number;
  flags: number;
  payload: Uint8Array;
}

export interface UsedElem {
  id: number;
  len: number;
}

export interface BufferSpec {
  /** Length in bytes (defaults to data's length). */
  len?: number;
  /** Bytes to place in the buffer (device-readable buffers). */
  data?: Uint8Array;
  /** Device-writable. */
  writable?: boolean;
  /** Place the buffer at this guest-physical address instead of allocating (hostile tests). */
  gpa?: number;
}

export class FrontendError extends Error {}

/** Guest memory of the test frontend: one memfd mapped here, described as regions. */
export class TestGuestMemory {
  readonly fd: number;
  readonly mapping: NativeMapping;
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly regions: MemRegionDesc[] = [];
  private next = 0;

  constructor(
    readonly size: number,
    regionCount: number,
    readonly gpaBase: number,
    uvaBase: number,
    sealing: MemfdSealing = 'sealed',
  ) {
    const pageSize = 4096;
    if (size % (regionCount * pageSize) !== 0) throw new RangeError('memory size must split into page-sized regions');
    this.fd = native.memfdCreate('vhost-user-test-guest', size, sealing);
    this.mapping = native.mmap(this.fd, 0, size, 1 << 30);
    const chunk = this.mapping.chunks[0]!;
    this.bytes = new Uint8Array(chunk);
    this.view = new DataView(chunk);
    const per = size / regionCount;
    for (let i = 0; i < regionCount; i++) {
      // A gap between regions in both address spaces, so translation bugs show.
      this.regions.push({ guestPhysAddr: gpaBase + i * (per + 0x10000), memorySize: per, userspaceAddr: uvaBase + i * (per + 0x20000), mmapOffset: i * per });
    }
  }

  /** File offset of a guest-physical address, or -1. */
  offsetOf(gpa: number): number {
    for (const r of this.regions) {
      if (gpa >= r.guestPhysAddr && gpa < r.guestPhysAddr + r.memorySize) return r.mmapOffset + (gpa - r.guestPhysAddr);
    }
    return -1;
  }

  /** Frontend-virtual address of a guest-physical one. */
  uvaOf(gpa: number): number {
    for (const r of this.regions) {
      if (gpa >= r.guestPhysAddr && gpa < r.guestPhysAddr + r.memorySize) return r.userspaceAddr + (gpa - r.guestPhysAddr);
    }
    throw new FrontendError(`gpa 0x${gpa.toString(16)} not in memory`);
  }

  /** Allocates `len` bytes aligned to `align` inside one region; returns the gpa. */
  alloc(len: number, align = 16): number {
    for (;;) {
      this.next = Math.ceil(this.next / align) * align;
      const r = this.regions.find((x) => this.next >= x.mmapOffset && this.next < x.mmapOffset + x.memorySize);
      if (!r) throw new FrontendError('test guest memory exhausted');
      if (this.next + len <= r.mmapOffset + r.memorySize) {
        const gpa = r.guestPhysAddr + (this.next - r.mmapOffset);
        this.next += len;
        return gpa;
      }
      this.next = r.mmapOffset + r.memorySize; // next region
    }
  }

  /** The last address of region `i` minus `before`: for buffers that straddle two regions. */
  regionEnd(i: number): number {
    const r = this.regions[i]!;
    return r.guestPhysAddr + r.memorySize;
  }

  write(gpa: number, data: Uint8Array): void {
    // Contiguous in the file only within a region; cross region by region.
    let done = 0;
    while (done < data.length) {
      const off = this.offsetOf(gpa + done);
      if (off < 0) throw new FrontendError('write outside memory');
      const r = this.regions.find((x) => off >= x.mmapOffset && off < x.mmapOffset + x.memorySize)!;
      const n = Math.min(data.length - done, r.mmapOffset + r.memorySize - off);
      this.bytes.set(data.subarray(done, done + n), off);
      done += n;
    }
  }

  read(gpa: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let done = 0;
    while (done < len) {
      const off = this.offsetOf(gpa + done);
      if (off < 0) throw new FrontendError('read outside memory');
      const r = this.regions.find((x) => off >= x.mmapOffset && off < x.mmapOffset + x.memorySize)!;
      const n = Math.min(len - done, r.mmapOffset + r.memorySize - off);
      out.set(this.bytes.subarray(off, off + n), done);
      done += n;
    }
    return out;
  }

  dispose(): void {
    native.munmap(this.mapping);
    native.close(this.fd);
  }
}

/** The driver's side of one split virtqueue laid out in test guest memory. */
export class DriverQueue {
  readonly descGpa: number;
  readonly availGpa: number;
  readonly usedGpa: number;
  readonly kickFd: number;
  readonly callFd: number;
  private readonly desc: number;
  private readonly avail: number;
  private readonly usedOff: number;
  private freeList: number[];
  private availIdx = 0;
  private lastUsed = 0;
  /** Calls signalled by the backend so far. */
  calls = 0;
  private readonly callPoller: NativePoller;
  private waiters: (() => void)[] = [];
  /** Chain lengths by head, so completed chains free their descriptors. */
  private readonly chainLen = new Map<number, number[]>();

  constructor(
    private readonly mem: TestGuestMemory,
    readonly index: number,
    readonly size: number,
  ) {
    this.descGpa = mem.alloc(16 * size, 16);
    this.availGpa = mem.alloc(6 + 2 * size, 2);
    this.usedGpa = mem.alloc(6 + 8 * size, 4);
    this.desc = mem.offsetOf(this.descGpa);
    this.avail = mem.offsetOf(this.availGpa);
    this.usedOff = mem.offsetOf(this.usedGpa);
    this.freeList = Array.from({ length: size }, (_, i) => i);
    this.kickFd = native.eventfd(0);
    this.callFd = native.eventfd(0);
    this.callPoller = new native.Poller(
      this.callFd,
      (_s, _e, value) => {
        this.calls += value;
        const w = this.waiters;
        this.waiters = [];
        for (const f of w) f();
      },
      true,
    );
    this.callPoller.start(native.POLL_READABLE);
  }

  /** Writes descriptor `i` directly (hostile tests). */
  writeDesc(i: number, addr: number, len: number, flags: number, next: number, table = this.desc): void {
    const v = this.mem.view;
    v.setBigUint64(table + 16 * i, BigInt(addr), true);
    v.setUint32(table + 16 * i + 8, len >>> 0, true);
    v.setUint16(table + 16 * i + 12, flags, true);
    v.setUint16(table + 16 * i + 14, next, true);
  }

  /** Puts `head` in the avail ring and publishes it (no kick). */
  pushAvail(head: number): void {
    const v = this.mem.view;
    v.setUint16(this.avail + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    Atomics.store(new Uint16Array(this.mem.bytes.buffer, this.avail, 2), 1, this.availIdx);
  }

  /** Sets avail.idx to any value (hostile tests). */
  setAvailIdx(idx: number): void {
    this.availIdx = idx & 0xffff;
    Atomics.store(new Uint16Array(this.mem.bytes.buffer, this.avail, 2), 1, this.availIdx);
  }

  /** Sets avail.flags (VIRTQ_AVAIL_F_NO_INTERRUPT). */
  setAvailFlags(flags: number): void {
    this.mem.view.setUint16(this.avail, flags, true);
  }

  /** Sets used_event (EVENT_IDX): the backend signals once used.idx passes it. */
  setUsedEvent(value: number): void {
    this.mem.view.setUint16(this.avail + 4 + 2 * this.size, value & 0xffff, true);
  }

  /** avail_event written by the backend (EVENT_IDX). */
  get availEvent(): number {
    return this.mem.view.getUint16(this.usedOff + 4 + 8 * this.size, true);
  }

  get usedFlags(): number {
    return this.mem.view.getUint16(this.usedOff, true);
  }

  get usedIdx(): number {
    return Atomics.load(new Uint16Array(this.mem.bytes.buffer, this.usedOff, 2), 1);
  }

  /** Builds a chain from `bufs` (readable first, then writable), optionally through an indirect
   *  table, makes it available, and returns its head. */
  add(bufs: BufferSpec[], opts: { indirect?: boolean; publish?: boolean } = {}): number {
    const gpas = bufs.map((b) => {
      const len = b.len ?? b.data?.length ?? 0;
      const gpa = b.gpa ?? this.mem.alloc(Math.max(len, 1), 8);
      if (b.data) this.mem.write(gpa, b.data);
      return { gpa, len, writable: b.writable ?? false };
    });
    let head: number;
    if (opts.indirect) {
      const tableGpa = this.mem.alloc(16 * gpas.length, 16);
      const table = this.mem.offsetOf(tableGpa);
      gpas.forEach((b, i) => {
        const last = i === gpas.length - 1;
        this.writeDesc(i, b.gpa, b.len, (b.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : i + 1, table);
      });
      head = this.take(1)[0]!;
      this.writeDesc(head, tableGpa, 16 * gpas.length, VIRTQ_DESC_F_INDIRECT, 0);
      this.chainLen.set(head, [head]);
    } else {
      const ids = this.take(gpas.length);
      gpas.forEach((b, i) => {
        const last = i === gpas.length - 1;
        this.writeDesc(ids[i]!, b.gpa, b.len, (b.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : ids[i + 1]!);
      });
      head = ids[0]!;
      this.chainLen.set(head, ids);
    }
    if (opts.publish ?? true) this.pushAvail(head);
    return head;
  }

  private take(n: number): number[] {
    if (this.freeList.length < n) throw new FrontendError('no free descriptors');
    return this.freeList.splice(0, n);
  }

  /** Returns descriptors of a chain to the free list (done by used()). */
  private release(head: number): void {
    const ids = this.chainLen.get(head);
    if (!ids) return;
    this.chainLen.delete(head);
    this.freeList.push(...ids);
  }

  kick(): void {
    native.eventfdWrite(this.kickFd, 1);
  }

  /**
   * Kicks only when the device asked for it, as a driver does (§2.7.10): with EVENT_IDX when
   * avail.idx moved past avail_event since `oldIdx` (vring_need_event), else unless the device
   * set VIRTQ_USED_F_NO_NOTIFY. Returns whether it kicked.
   */
  kickIfNeeded(oldIdx: number, eventIdx: boolean): boolean {
    const need = eventIdx ? ((this.availIdx - this.availEvent - 1) & 0xffff) < ((this.availIdx - oldIdx) & 0xffff) : (this.usedFlags & 1) === 0;
    if (need) this.kick();
    return need;
  }

  /** avail.idx as the driver last published it. */
  get availIndex(): number {
    return this.availIdx;
  }

  /** Used elements published since the last call. */
  used(): UsedElem[] {
    const out: UsedElem[] = [];
    const idx = this.usedIdx;
    while (this.lastUsed !== idx) {
      const slot = this.lastUsed % this.size;
      const id = this.mem.view.getUint32(this.usedOff + 4 + 8 * slot, true);
      const len = this.mem.view.getUint32(this.usedOff + 8 + 8 * slot, true);
      out.push({ id, len });
      this.release(id);
      this.lastUsed = (this.lastUsed + 1) & 0xffff;
    }
    return out;
  }

  /** Resolves at the next call from the backend (or rejects after `timeoutMs`). */
  waitCall(timeoutMs = 2000): Promise<void> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done);
        reject(new FrontendError(`queue ${this.index}: no call within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.waiters.push(done);
    });
  }

  /** Collects used elements until `count` have arrived (waiting for calls or polling). */
  async waitUsed(count: number, timeoutMs = 2000): Promise<UsedElem[]> {
    const out: UsedElem[] = [];
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      out.push(...this.used());
      if (out.length >= count) return out;
      const left = deadline - Date.now();
      if (left <= 0) throw new FrontendError(`queue ${this.index}: ${out.length}/${count} used within ${timeoutMs} ms`);
      // Poll as well as wait for calls: a test may suppress interrupts.
      await Promise.race([this.waitCall(left).catch(() => undefined), new Promise((r) => setTimeout(r, 20))]);
    }
  }

  /** Bytes of a buffer in guest memory. */
  read(gpa: number, len: number): Uint8Array {
    return this.mem.read(gpa, len);
  }

  dispose(): void {
    this.callPoller.close();
    native.close(this.kickFd);
    native.close(this.callFd);
  }
}

export interface HandshakeOptions {
  /** Virtio features to acknowledge (default: all offered). */
  features?: (offered: bigint) => bigint;
  /** Protocol features to acknowledge (default: all offered). */
  protocolFeatures?: (offered: bigint) => bigint;
  /** Queue sizes to set up (default: two queues of 256). */
  queues?: number[];
  /** Enable every queue with SET_VRING_ENABLE (default true). */
  enable?: boolean;
  /** How guest memory is passed, as QEMU passes it for each kind of guest RAM: 'shared' (the
   *  default: a shared memory backend), 'private' (share=off: the backend gets a memfd of the
   *  right size that this frontend never writes, as QEMU's private mapping keeps the guest's
   *  writes from the file), 'none' (no memory backend: QEMU 7.2 passes no memory at all and
   *  starts the rings anyway) or 'empty' (a SET_MEM_TABLE with no regions). */
  memory?: 'shared' | 'private' | 'none' | 'empty';
}

/** The test frontend: a connection, guest memory and driver queues. */
export class TestFrontend {
  readonly memory: TestGuestMemory;
  readonly queues: DriverQueue[] = [];
  private readonly conn: Connection;
  private readonly replies: Reply[] = [];
  private replyWaiters: ((r: Reply | undefined) => void)[] = [];
  private readonly txBuf = new Uint8Array(HEADER_SIZE + 512);
  /** Resolves when the backend closes the connection. */
  readonly closed: Promise<Error | undefined>;
  private isClosed = false;
  features = 0n;
  protocolFeatures = 0n;

  private constructor(fd: number, opts: FrontendOptions) {
    this.memory = new TestGuestMemory(opts.memorySize ?? 4 << 20, opts.regions ?? 1, opts.gpaBase ?? 0x10_0000, opts.uvaBase ?? 0x7f00_0000_0000, opts.sealing);
    let onClosed!: (e: Error | undefined) => void;
    this.closed = new Promise((r) => (onClosed = r));
    this.conn = new Connection(fd, {
      message: (msg) => this.onMessage(msg),
      closed: (err) => {
        this.isClosed = true;
        const w = this.replyWaiters;
        this.replyWaiters = [];
        for (const f of w) f(undefined);
        onClosed(err);
      },
    });
  }

  static connect(path: string, opts: FrontendOptions = {}): TestFrontend {
    return new TestFrontend(native.unixConnect(path), opts);
  }

  get isConnected(): boolean {
    return !this.isClosed;
  }

  private onMessage(msg: Message): void {
    for (const fd of msg.fds) native.close(fd);
    const reply = { request: msg.request, flags: msg.flags, payload: msg.buf.slice(HEADER_SIZE, HEADER_SIZE + msg.size) };
    const w = this.replyWaiters.shift();
    if (w) w(reply);
    else this.replies.push(reply);
  }

  /** Sends a raw message (any bytes: hostile tests use it). */
  sendRaw(data: Uint8Array, fds: number[] = []): void {
    this.conn.send(data, fds);
  }

  /** Sends a request; waits for its reply when `expectReply`. Resolves undefined if the backend
   *  closed the connection instead. */
  async request(
    request: Request,
    payload: Uint8Array = new Uint8Array(0),
    fds: number[] = [],
    opts: { expectReply?: boolean; needReply?: boolean } = {},
  ): Promise<Reply | undefined> {
    const flags = VERSION | (opts.needReply ? FLAG_NEED_REPLY : 0);
    encodeHeader(this.txBuf, request, flags, payload.length);
    this.txBuf.set(payload, HEADER_SIZE);
    this.conn.send(this.txBuf.subarray(0, HEADER_SIZE + payload.length), fds);
    if (!opts.expectReply && !opts.needReply) return undefined;
    const queued = this.replies.shift();
    const reply = queued ?? (this.isClosed ? undefined : await new Promise<Reply | undefined>((r) => this.replyWaiters.push(r)));
    if (reply && (reply.request !== (request as number) || (reply.flags & FLAG_REPLY) === 0)) {
      throw new FrontendError(`reply to ${request} was ${reply.request} flags ${reply.flags}`);
    }
    return reply;
  }

  private async getU64(request: Request): Promise<bigint> {
    const r = await this.request(request, undefined, [], { expectReply: true });
    if (!r || r.payload.length !== 8) throw new FrontendError(`no u64 reply to ${request}`);
    return new DataView(r.payload.buffer, r.payload.byteOffset).getBigUint64(0, true);
  }

  /** Sends a request carrying a u64 and, with REPLY_ACK negotiated, waits for the ack. */
  private async setU64(request: Request, value: bigint | number, fds: number[] = []): Promise<void> {
    const p = new Uint8Array(8);
    writeU64(p, 0, value);
    await this.sendAcked(request, p, fds);
  }

  private get replyAck(): boolean {
    return (this.protocolFeatures & bit(ProtocolFeature.REPLY_ACK)) !== 0n;
  }

  /** Sends with NEED_REPLY when REPLY_ACK is negotiated and checks the ack is 0. */
  async sendAcked(request: Request, payload: Uint8Array, fds: number[] = []): Promise<void> {
    const r = await this.request(request, payload, fds, { needReply: this.replyAck });
    if (this.replyAck) {
      if (!r) throw new FrontendError(`backend closed the connection on request ${request}`);
      if (new DataView(r.payload.buffer, r.payload.byteOffset).getBigUint64(0, true) !== 0n) {
        throw new FrontendError(`request ${request} nacked`);
      }
    }
  }

  getFeatures(): Promise<bigint> {
    return this.getU64(Request.GET_FEATURES);
  }
  async setFeatures(f: bigint): Promise<void> {
    this.features = f;
    await this.setU64(Request.SET_FEATURES, f);
  }
  getProtocolFeatures(): Promise<bigint> {
    return this.getU64(Request.GET_PROTOCOL_FEATURES);
  }
  async setProtocolFeatures(f: bigint): Promise<void> {
    await this.setU64(Request.SET_PROTOCOL_FEATURES, f);
    this.protocolFeatures = f;
  }
  getQueueNum(): Promise<bigint> {
    return this.getU64(Request.GET_QUEUE_NUM);
  }
  getMaxMemSlots(): Promise<bigint> {
    return this.getU64(Request.GET_MAX_MEM_SLOTS);
  }
  getStatus(): Promise<bigint> {
    return this.getU64(Request.GET_STATUS);
  }
  setStatus(s: number): Promise<void> {
    return this.setU64(Request.SET_STATUS, s);
  }
  setOwner(): Promise<void> {
    return this.sendAcked(Request.SET_OWNER, new Uint8Array(0));
  }

  /** SET_MEM_TABLE with every region of the test memory (the memfd once per region, or `fd`). */
  setMemTable(regions: MemRegionDesc[] = this.memory.regions, fd = this.memory.fd): Promise<void> {
    const p = new Uint8Array(PayloadSize.MEM_TABLE_HEADER + PayloadSize.MEM_REGION * regions.length);
    writeU32(p, 0, regions.length);
    regions.forEach((r, i) => writeRegion(p, PayloadSize.MEM_TABLE_HEADER + i * PayloadSize.MEM_REGION, r));
    return this.sendAcked(
      Request.SET_MEM_TABLE,
      p,
      regions.map(() => fd),
    );
  }

  /** The memory table as a frontend with private guest RAM sends it: the regions of the test
   *  memory, over a memfd of the same size that nothing here writes. */
  async setPrivateMemTable(): Promise<void> {
    const fd = native.memfdCreate('vhost-user-test-private', this.memory.size, 'sealed');
    try {
      await this.setMemTable(this.memory.regions, fd);
    } finally {
      native.close(fd);
    }
  }

  addMemReg(r: MemRegionDesc): Promise<void> {
    const p = new Uint8Array(PayloadSize.SINGLE_MEM_REGION);
    writeRegion(p, 8, r);
    return this.sendAcked(Request.ADD_MEM_REG, p, [this.memory.fd]);
  }

  remMemReg(r: MemRegionDesc): Promise<void> {
    const p = new Uint8Array(PayloadSize.SINGLE_MEM_REGION);
    writeRegion(p, 8, r);
    return this.sendAcked(Request.REM_MEM_REG, p);
  }

  private state(request: Request, index: number, num: number): Promise<void> {
    const p = new Uint8Array(8);
    writeU32(p, 0, index);
    writeU32(p, 4, num);
    return this.sendAcked(request, p);
  }

  setVringNum(index: number, num: number): Promise<void> {
    return this.state(Request.SET_VRING_NUM, index, num);
  }
  setVringBase(index: number, base: number): Promise<void> {
    return this.state(Request.SET_VRING_BASE, index, base);
  }
  setVringEnable(index: number, enable: boolean): Promise<void> {
    return this.state(Request.SET_VRING_ENABLE, index, enable ? 1 : 0);
  }

  async getVringBase(index: number): Promise<number> {
    const p = new Uint8Array(8);
    writeU32(p, 0, index);
    const r = await this.request(Request.GET_VRING_BASE, p, [], { expectReply: true });
    if (!r || r.payload.length !== 8) throw new FrontendError('no GET_VRING_BASE reply');
    return new DataView(r.payload.buffer, r.payload.byteOffset).getUint32(4, true);
  }

  setVringAddr(index: number, desc: number, used: number, avail: number): Promise<void> {
    const p = new Uint8Array(PayloadSize.VRING_ADDR);
    writeU32(p, 0, index);
    writeU64(p, 8, desc);
    writeU64(p, 16, used);
    writeU64(p, 24, avail);
    return this.sendAcked(Request.SET_VRING_ADDR, p);
  }

  setVringFd(request: Request.SET_VRING_KICK | Request.SET_VRING_CALL | Request.SET_VRING_ERR, index: number, fd: number | undefined): Promise<void> {
    return this.setU64(request, index | (fd === undefined ? VRING_NOFD_MASK : 0), fd === undefined ? [] : [fd]);
  }

  /** Lays out queue `index` in guest memory and configures it (NUM, BASE, ADDR, KICK, CALL). */
  async setupQueue(index: number, size: number): Promise<DriverQueue> {
    const q = new DriverQueue(this.memory, index, size);
    this.queues[index]?.dispose();
    this.queues[index] = q;
    await this.setVringNum(index, size);
    await this.setVringBase(index, 0);
    await this.setVringAddr(index, this.memory.uvaOf(q.descGpa), this.memory.uvaOf(q.usedGpa), this.memory.uvaOf(q.availGpa));
    await this.setVringFd(Request.SET_VRING_KICK, index, q.kickFd);
    await this.setVringFd(Request.SET_VRING_CALL, index, q.callFd);
    return q;
  }

  /** The sequence QEMU 7.2 sends for a virtio-net device (platform notes), ending with every
   *  queue started and enabled. */
  async handshake(opts: HandshakeOptions = {}): Promise<DriverQueue[]> {
    const offered = await this.getFeatures();
    const offeredProto = (offered & bit(Feature.PROTOCOL_FEATURES)) !== 0n ? await this.getProtocolFeatures() : 0n;
    if (offeredProto !== 0n || (offered & bit(Feature.PROTOCOL_FEATURES)) !== 0n) {
      await this.setProtocolFeatures(opts.protocolFeatures ? opts.protocolFeatures(offeredProto) : offeredProto);
    }
    await this.setOwner();
    await this.setFeatures(opts.features ? opts.features(offered) : offered);
    const memory = opts.memory ?? 'shared';
    if (memory === 'shared') await this.setMemTable();
    else if (memory === 'private') await this.setPrivateMemTable();
    else if (memory === 'empty') await this.setMemTable([]);
    const sizes = opts.queues ?? [256, 256];
    const qs: DriverQueue[] = [];
    for (let i = 0; i < sizes.length; i++) qs.push(await this.setupQueue(i, sizes[i]!));
    if (opts.enable ?? true) {
      for (let i = 0; i < sizes.length; i++) await this.setVringEnable(i, true);
    }
    return qs;
  }

  /** Closes the connection and releases memory, queues and fds. */
  close(): void {
    this.conn.close();
    for (const q of this.queues) q?.dispose();
    this.memory.dispose();
  }
}
