// The backend side of one vhost-user connection: validates each frontend request, applies it to
// guest memory and the virtqueues, replies, and tells the device when queues start and stop.
// Requests dispatch through a table (one handler per request); each message is logged at debug.
//
// Queue lifecycle (vhost-user.rst "Starting and stopping rings"):
//   configured (NUM, ADDR, BASE) --SET_VRING_KICK--> started --GET_VRING_BASE--> stopped
//   enabled is separate: SET_VRING_ENABLE when PROTOCOL_FEATURES is negotiated, else implied.
// A queue is handed to the device while it is started, enabled and resolved in guest memory.
//
// The frontend is untrusted: every size, index and fd is checked before use (RULES, then each
// handler), and a mistake is a ProtocolError that costs the connection. Kick, call and err fds
// must be eventfds, region fds regular files. What goes wrong later, outside a request, is logged
// (rate-limited) and contained: a kick fd that hangs up is no longer polled, a call fd that cannot
// be written is no longer signalled, a broken queue or a malformed chain is reported, truncated
// guest memory drops the frontend (`fail`), and so does an exception in a kick callback instead
// of escaping into the event loop.
//
// Guest RAM that is not shared with us gets the guest no service and QEMU says nothing about it,
// so the backend says it, once per connection (`GuestMemoryNotShared`). What QEMU 7.2 sends then
// (observed with a Linux guest): with no memory backend at all (anonymous RAM: no fd to pass) it
// sends no ADD_MEM_REG and starts the rings anyway, so rings are started with no memory; with a
// memory backend of share=off it passes the backend's memfd, but its own mapping is private: the
// guest writes to copies we never see, the rings read as zeros, and kicks arrive whose avail index
// never moves. A driver kicks only after moving the index (virtio 1.2 §2.7.13), and a Linux
// virtio-net driver posts its receive buffers before the device starts, so on shared memory the
// index of some queue has moved by then; QEMU may kick each ring once as it starts (its host
// notifiers start signalled), so the verdict waits a second for the index to move.
import { getSystemErrorName } from 'node:util';
import type { VhostUserDevice } from './device.js';
import type { Logger } from './logger.js';
import { RateLimitedLogger } from './logger.js';
import { GuestMemory, MemoryError } from './memory.js';
import type { AddedRegion } from './memory.js';
import type { Message } from './connection.js';
import { pollerKicks } from './kicks.js';
import type { KickSource, KickWatch } from './kicks.js';
import { native } from './native.js';
import {
  Feature,
  FLAG_NEED_REPLY,
  FLAG_REPLY,
  HEADER_SIZE,
  IMPLEMENTED_PROTOCOL_FEATURES,
  MEM_TABLE_MAX_REGIONS,
  PayloadReader,
  PayloadSize,
  ProtocolFeature,
  Request,
  VERSION,
  VRING_IDX_MASK,
  VRING_NOFD_MASK,
  bit,
  encodeHeader,
  requestName,
  writeU32,
  writeU64,
} from './protocol.js';
import { MAX_QUEUE_SIZE, VirtQueue } from './virtqueue.js';
import type { VirtQueueListener } from './virtqueue.js';

export interface BackendOptions {
  logger: Logger;
  /** Where repeated lines go; the server passes one it keeps across connections, so a frontend
   *  reconnecting in a loop cannot flood the log. Default: a new one over `logger`. */
  limitedLog?: RateLimitedLogger;
  /** Drops the connection after an error outside a request (a throwing kick callback, guest
   *  memory truncated under us). Default: log the error. */
  fail?: (err: Error) => void;
  /** Memory slots offered with CONFIGURE_MEM_SLOTS (GET_MAX_MEM_SLOTS). */
  maxMemSlots: number;
  /** Offer VIRTIO_RING_F_EVENT_IDX (default true). */
  eventIdx: boolean;
  /** Offer VIRTIO_RING_F_INDIRECT_DESC (default true). */
  indirectDesc: boolean;
  /** Told, at most once per connection, that guest RAM is not shared with the backend (the
   *  guest gets no service). Default: an error line through the rate-limited logger. */
  memoryNotShared?: (problem: GuestMemoryNotShared) => void;
  /** Where kicks are heard (see kicks.ts). Default: a draining poller per kick fd. */
  kicks?: KickSource;
}

/** How guest RAM fails to be shared with the backend: 'no-memory', rings started while the
 *  frontend has passed no memory (QEMU without a memory backend: anonymous RAM has no fd);
 *  'not-shared', memory passed but the guest's writes never show in it (QEMU's share=off). */
export type MemoryNotSharedKind = 'no-memory' | 'not-shared';

/** Guest RAM is not shared with the backend, so no queue can work. */
export interface GuestMemoryNotShared {
  kind: MemoryNotSharedKind;
  /** Bytes of guest memory the frontend passed (0 for 'no-memory'). */
  memoryBytes: number;
  /** What to do, for a person: the QEMU options that share guest RAM. */
  message: string;
}

/** How long rings may show no sign of shared memory before the backend says so. */
export const MEMORY_NOT_SHARED_DELAY_MS = 1000;

/** The QEMU options that give the guest RAM a vhost-user backend can map: `size` as `-m` says. */
export function sharedMemoryOptions(memoryBytes: number): string {
  const mib = memoryBytes / 2 ** 20;
  const size = memoryBytes > 0 && Number.isInteger(mib) ? `${mib}M` : '<as -m>';
  return `-object memory-backend-memfd,id=mem,size=${size},share=on -numa node,memdev=mem`;
}

function memoryNotShared(kind: MemoryNotSharedKind, memoryBytes: number): GuestMemoryNotShared {
  const why =
    kind === 'no-memory'
      ? 'the frontend started the rings without passing any guest memory (QEMU without -object memory-backend-*)'
      : "the guest's writes never show in the memory the frontend passed (QEMU's memory backend has share=off)";
  return {
    kind,
    memoryBytes,
    message: `guest RAM must be a shared memory backend: ${why}, so the guest gets no network; start QEMU with ${sharedMemoryOptions(memoryBytes)}`,
  };
}

/** A request the frontend got wrong: the connection is closed. */
export class ProtocolError extends Error {}

/** The frontend truncated (or otherwise lost) guest memory we had mapped: the connection is closed. */
export class GuestMemoryFault extends Error {}

type Reply = Uint8Array | undefined;
type Handler = (msg: Message, p: PayloadReader) => Reply;

interface Rule {
  /** Exact payload size, or a validator. */
  size: number | ((size: number, msg: Message) => boolean);
  /** How many fds may accompany it. */
  fds: [min: number, max: number];
}

const U64 = PayloadSize.U64;
const STATE = PayloadSize.VRING_STATE;

/** Payload and fd rules per request; a request absent here is not supported. */
const RULES: Partial<Record<Request, Rule>> = {
  [Request.GET_FEATURES]: { size: 0, fds: [0, 0] },
  [Request.SET_FEATURES]: { size: U64, fds: [0, 0] },
  [Request.GET_PROTOCOL_FEATURES]: { size: 0, fds: [0, 0] },
  [Request.SET_PROTOCOL_FEATURES]: { size: U64, fds: [0, 0] },
  [Request.SET_OWNER]: { size: 0, fds: [0, 0] },
  [Request.RESET_OWNER]: { size: 0, fds: [0, 0] },
  [Request.GET_QUEUE_NUM]: { size: 0, fds: [0, 0] },
  [Request.SET_MEM_TABLE]: {
    size: (size, msg) => size === PayloadSize.MEM_TABLE_HEADER + PayloadSize.MEM_REGION * msg.fds.length,
    // An empty table (no fds) is what a frontend without shared memory has to give.
    fds: [0, MEM_TABLE_MAX_REGIONS],
  },
  [Request.GET_MAX_MEM_SLOTS]: { size: 0, fds: [0, 0] },
  [Request.ADD_MEM_REG]: { size: PayloadSize.SINGLE_MEM_REGION, fds: [1, 1] },
  // The spec says no fd; older QEMU sent one. Accept it and close it.
  [Request.REM_MEM_REG]: { size: PayloadSize.SINGLE_MEM_REGION, fds: [0, 1] },
  [Request.SET_VRING_NUM]: { size: STATE, fds: [0, 0] },
  [Request.SET_VRING_ADDR]: { size: PayloadSize.VRING_ADDR, fds: [0, 0] },
  [Request.SET_VRING_BASE]: { size: STATE, fds: [0, 0] },
  [Request.GET_VRING_BASE]: { size: STATE, fds: [0, 0] },
  [Request.SET_VRING_KICK]: { size: U64, fds: [0, 1] },
  [Request.SET_VRING_CALL]: { size: U64, fds: [0, 1] },
  [Request.SET_VRING_ERR]: { size: U64, fds: [0, 1] },
  [Request.SET_VRING_ENABLE]: { size: STATE, fds: [0, 0] },
  [Request.SET_STATUS]: { size: U64, fds: [0, 0] },
  [Request.GET_STATUS]: { size: 0, fds: [0, 0] },
};

/** Requests that have a reply of their own (others get the REPLY_ACK u64 when asked). */
const HAS_REPLY = new Set<number>([
  Request.GET_FEATURES,
  Request.GET_PROTOCOL_FEATURES,
  Request.GET_QUEUE_NUM,
  Request.GET_MAX_MEM_SLOTS,
  Request.GET_VRING_BASE,
  Request.GET_STATUS,
]);

interface QueueSlot {
  queue: VirtQueue;
  kickWatch: KickWatch | undefined;
  /** Handed to the device (queueStarted called, queueStopped not yet). */
  running: boolean;
  /** The avail index when the queue was last handed to the device. */
  startAvail: number;
}

export class Backend {
  readonly memory: GuestMemory;
  private readonly slots: QueueSlot[];
  private readonly offered: bigint;
  private readonly offeredProtocol: bigint;
  private acked = 0n;
  private ackedProtocol = 0n;
  private owned = false;
  private status = 0;
  private readonly replyBuf = new Uint8Array(HEADER_SIZE + 64);
  private readonly handlers: Partial<Record<Request, Handler>>;
  private readonly limited: RateLimitedLogger;
  private readonly fail: (err: Error) => void;
  private isShutDown = false;
  /** Some ring's avail index has moved since it started: guest memory is shared. */
  private memoryShown = false;
  private notSharedReported = false;
  /** Kicks that found a queue's avail index where it started (before memory was shown shared). */
  private emptyKicks = 0;
  private notSharedTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly device: VhostUserDevice,
    private readonly send: (data: Uint8Array) => void,
    private readonly opts: BackendOptions,
  ) {
    const log = opts.logger;
    if (!Number.isInteger(device.queueCount) || device.queueCount < 1 || device.queueCount > 256) {
      throw new RangeError('device.queueCount must be 1..256');
    }
    this.limited = opts.limitedLog ?? new RateLimitedLogger(log);
    this.fail = opts.fail ?? ((err) => this.limited.error({ reason: err.message }, 'vhost-user backend error'));
    this.memory = new GuestMemory(Math.max(opts.maxMemSlots, MEM_TABLE_MAX_REGIONS));
    this.memory.onFault = (faults) => this.memoryFaulted(faults);
    const listener: VirtQueueListener = {
      malformed: (q, reason) => {
        this.limited.warn({ queue: q.index, reason, malformed: q.stats.malformed }, 'malformed chain returned to the guest');
      },
      broken: (q, reason) => {
        this.limited.warn({ queue: q.index, reason }, 'queue marked broken: it stops until the frontend sets it up again');
      },
      callFailed: (q, fd, errno) => {
        native.close(fd);
        this.limited.warn({ queue: q.index, error: getSystemErrorName(-errno) }, 'call fd cannot be written: the guest is no longer signalled');
      },
    };
    this.slots = Array.from({ length: device.queueCount }, (_, i) => {
      const queue = new VirtQueue(i, this.memory);
      queue.listener = listener;
      return { queue, kickWatch: undefined, running: false, startAvail: 0 };
    });
    let transport = bit(Feature.VERSION_1) | bit(Feature.PROTOCOL_FEATURES);
    if (opts.eventIdx) transport |= bit(Feature.RING_EVENT_IDX);
    if (opts.indirectDesc) transport |= bit(Feature.RING_INDIRECT_DESC);
    this.offered = device.features | transport;
    let protocol = IMPLEMENTED_PROTOCOL_FEATURES | (device.protocolFeatures ?? 0n);
    if (device.queueCount <= 2) protocol &= ~bit(ProtocolFeature.MQ);
    this.offeredProtocol = protocol;
    log.debug({ features: this.offered.toString(16), protocol: protocol.toString(16) }, 'vhost-user backend ready');

    this.handlers = {
      [Request.GET_FEATURES]: () => this.replyU64(Request.GET_FEATURES, this.offered),
      [Request.SET_FEATURES]: (_m, p) => this.setFeatures(p.u64big(0)),
      [Request.GET_PROTOCOL_FEATURES]: () => this.replyU64(Request.GET_PROTOCOL_FEATURES, this.offeredProtocol),
      [Request.SET_PROTOCOL_FEATURES]: (_m, p) => this.setProtocolFeatures(p.u64big(0)),
      [Request.SET_OWNER]: () => {
        this.owned = true;
        return undefined;
      },
      [Request.RESET_OWNER]: () => {
        this.resetDevice();
        return undefined;
      },
      [Request.GET_QUEUE_NUM]: () => this.replyU64(Request.GET_QUEUE_NUM, BigInt(device.queueCount)),
      [Request.SET_MEM_TABLE]: (m, p) => this.setMemTable(m, p),
      [Request.GET_MAX_MEM_SLOTS]: () => this.replyU64(Request.GET_MAX_MEM_SLOTS, BigInt(this.memory.maxRegions)),
      [Request.ADD_MEM_REG]: (m, p) => this.addMemReg(m, p),
      [Request.REM_MEM_REG]: (_m, p) => this.remMemReg(p),
      [Request.SET_VRING_NUM]: (_m, p) => this.setVringNum(p),
      [Request.SET_VRING_ADDR]: (_m, p) => this.setVringAddr(p),
      [Request.SET_VRING_BASE]: (_m, p) => this.setVringBase(p),
      [Request.GET_VRING_BASE]: (_m, p) => this.getVringBase(p),
      [Request.SET_VRING_KICK]: (m, p) => this.setVringFd(m, p, 'kick'),
      [Request.SET_VRING_CALL]: (m, p) => this.setVringFd(m, p, 'call'),
      [Request.SET_VRING_ERR]: (m, p) => this.setVringFd(m, p, 'err'),
      [Request.SET_VRING_ENABLE]: (_m, p) => this.setVringEnable(p),
      [Request.SET_STATUS]: (_m, p) => this.setStatus(p.u64(0)),
      [Request.GET_STATUS]: () => this.replyU64(Request.GET_STATUS, BigInt(this.status)),
    };
  }

  get queues(): readonly VirtQueue[] {
    return this.slots.map((s) => s.queue);
  }

  get ackedFeatures(): bigint {
    return this.acked;
  }

  get ackedProtocolFeatures(): bigint {
    return this.ackedProtocol;
  }

  /** Queues handed to the device right now. */
  get runningQueues(): number {
    let n = 0;
    for (const slot of this.slots) if (slot.running) n++;
    return n;
  }

  /** Handles one message. Throws ProtocolError for an invalid one (the caller closes the
   *  connection). The fds of the message are always consumed: kept or closed. */
  handle(msg: Message): void {
    const fds = msg.fds;
    try {
      this.dispatch(msg);
    } finally {
      // Whatever a handler did not take (it sets the entry to -1) is closed here.
      for (const fd of fds) if (fd >= 0) native.close(fd);
    }
  }

  private dispatch(msg: Message): void {
    const req = msg.request as Request;
    const name = requestName(req);
    this.opts.logger.debug({ request: name, size: msg.size, fds: msg.fds.length, flags: msg.flags }, 'vhost-user request');
    if ((msg.flags & FLAG_REPLY) !== 0) throw new ProtocolError(`${name}: reply flag set on a request`);
    const rule = RULES[req];
    const handler = this.handlers[req];
    if (!rule || !handler) throw new ProtocolError(`unsupported request ${name}`);
    const sizeOk = typeof rule.size === 'number' ? msg.size === rule.size : rule.size(msg.size, msg);
    if (!sizeOk) throw new ProtocolError(`${name}: bad payload size ${msg.size}`);
    if (msg.fds.length < rule.fds[0] || msg.fds.length > rule.fds[1]) {
      throw new ProtocolError(`${name}: ${msg.fds.length} fds, expected ${rule.fds[0]}..${rule.fds[1]}`);
    }
    const reply = handler(msg, new PayloadReader(msg.buf, msg.size));
    if (reply) {
      this.send(reply);
    } else if ((msg.flags & FLAG_NEED_REPLY) !== 0 && (this.ackedProtocol & bit(ProtocolFeature.REPLY_ACK)) !== 0n && !HAS_REPLY.has(req)) {
      // REPLY_ACK: success is 0 (failures throw and close the connection instead).
      this.send(this.replyU64(req, 0n));
    }
  }

  /**
   * Stops every queue and releases all fds and mappings (disconnect). Every step runs even when
   * an earlier one throws (a device callback, a flush): a poller or mapping left behind would
   * leak its fd and keep the process's event loop alive. The first exception is rethrown after.
   */
  shutdown(): void {
    this.isShutDown = true;
    if (this.notSharedTimer !== undefined) clearTimeout(this.notSharedTimer);
    this.notSharedTimer = undefined;
    let failure: unknown;
    const attempt = (step: () => void): void => {
      try {
        step();
      } catch (err) {
        failure ??= err;
      }
    };
    for (const slot of this.slots) {
      attempt(() => this.stopQueue(slot));
      attempt(() => this.closeQueueFds(slot));
      attempt(() => slot.queue.reset());
    }
    attempt(() => this.memory.clear());
    this.acked = 0n;
    this.ackedProtocol = 0n;
    this.owned = false;
    if (failure !== undefined) throw failure instanceof Error ? failure : new Error('teardown failed', { cause: failure });
  }

  // --- features ---------------------------------------------------------------------------

  private setFeatures(features: bigint): Reply {
    const unknown = features & ~this.offered;
    if (unknown !== 0n) throw new ProtocolError(`SET_FEATURES acks bits never offered: 0x${unknown.toString(16)}`);
    this.acked = features;
    const eventIdx = (features & bit(Feature.RING_EVENT_IDX)) !== 0n;
    const indirect = (features & bit(Feature.RING_INDIRECT_DESC)) !== 0n;
    for (const { queue } of this.slots) {
      queue.eventIdx = eventIdx;
      queue.indirect = indirect;
    }
    this.device.featuresNegotiated?.(features);
    return undefined;
  }

  private setProtocolFeatures(features: bigint): Reply {
    const unknown = features & ~this.offeredProtocol;
    if (unknown !== 0n) throw new ProtocolError(`SET_PROTOCOL_FEATURES acks bits never offered: 0x${unknown.toString(16)}`);
    this.ackedProtocol = features;
    return undefined;
  }

  private get protocolFeaturesNegotiated(): boolean {
    return (this.acked & bit(Feature.PROTOCOL_FEATURES)) !== 0n;
  }

  // --- memory -----------------------------------------------------------------------------

  private setMemTable(msg: Message, p: PayloadReader): Reply {
    const n = p.u32(0);
    if (n !== msg.fds.length || n > MEM_TABLE_MAX_REGIONS) {
      throw new ProtocolError(`SET_MEM_TABLE: ${n} regions with ${msg.fds.length} fds`);
    }
    // Rings keep running on the old table until the new one is in: QEMU sends a new table while
    // the device runs when guest RAM changes. Stop the device's use, swap, re-resolve, restart.
    this.forEachRunning((slot) => this.stopQueue(slot));
    this.memory.clear();
    try {
      for (let i = 0; i < n; i++) {
        const desc = p.region(PayloadSize.MEM_TABLE_HEADER + i * PayloadSize.MEM_REGION);
        this.regionAdded(desc.guestPhysAddr, this.memory.add(desc, msg.fds[i]!));
      }
    } catch (err) {
      this.memory.clear();
      throw new ProtocolError(`SET_MEM_TABLE: ${(err as Error).message}`);
    }
    this.opts.logger.debug({ regions: this.memory.describe() }, 'guest memory table set');
    this.memoryChanged();
    return undefined;
  }

  private addMemReg(msg: Message, p: PayloadReader): Reply {
    this.forEachRunning((slot) => this.stopQueue(slot));
    try {
      const desc = p.region(8);
      this.regionAdded(desc.guestPhysAddr, this.memory.add(desc, msg.fds[0]!));
    } catch (err) {
      if (err instanceof MemoryError) throw new ProtocolError(`ADD_MEM_REG: ${err.message}`);
      throw err;
    }
    this.memoryChanged();
    return undefined;
  }

  private remMemReg(p: PayloadReader): Reply {
    this.forEachRunning((slot) => this.stopQueue(slot));
    if (!this.memory.remove(p.region(8))) throw new ProtocolError('REM_MEM_REG: no such region');
    this.memoryChanged();
    return undefined;
  }

  private regionAdded(gpa: number, added: AddedRegion): void {
    if (added.sealed) return;
    this.limited.warn(
      { gpa: `0x${gpa.toString(16)}`, error: added.sealError },
      'guest memory region cannot be sealed against shrinking: accepted behind the SIGBUS guard (a truncation drops the frontend)',
    );
  }

  /** Accesses to guest memory faulted and were answered with zero pages (native/guard.cc): the
   *  frontend truncated a region's file. Nothing it shares can be trusted to stay mapped. */
  private memoryFaulted(faults: number): void {
    if (this.isShutDown) return;
    this.limited.error({ faults }, 'the frontend truncated guest memory: disconnected');
    this.fail(new GuestMemoryFault(`guest memory truncated under us (${faults} faults)`));
  }

  /** Re-resolves configured rings against the new memory and restarts the ready ones. */
  private memoryChanged(): void {
    for (const slot of this.slots) {
      const q = slot.queue;
      if (!q.addr) continue;
      const err = q.resolve();
      if (err !== undefined && q.started) {
        this.limited.warn({ queue: q.index, reason: err }, 'ring not in guest memory after a memory change');
      }
      this.updateQueue(slot);
    }
  }

  // --- rings ------------------------------------------------------------------------------

  private slot(index: number, req: Request): QueueSlot {
    const slot = this.slots[index];
    if (!slot) throw new ProtocolError(`${requestName(req)}: queue ${index} out of range (device has ${this.slots.length})`);
    return slot;
  }

  private setVringNum(p: PayloadReader): Reply {
    const slot = this.slot(p.u32(0), Request.SET_VRING_NUM);
    const num = p.u32(4);
    // Split queues are a power of 2 in size (virtio 1.2 §2.7), at most 32768.
    if (num === 0 || num > MAX_QUEUE_SIZE || (num & (num - 1)) !== 0) {
      throw new ProtocolError(`SET_VRING_NUM: bad size ${num}`);
    }
    if (slot.running) throw new ProtocolError('SET_VRING_NUM on a running queue');
    slot.queue.size = num;
    return undefined;
  }

  private setVringAddr(p: PayloadReader): Reply {
    const addr = p.vringAddr();
    const slot = this.slot(addr.index, Request.SET_VRING_ADDR);
    for (const v of [addr.descUserAddr, addr.usedUserAddr, addr.availUserAddr]) {
      if (!Number.isSafeInteger(v)) throw new ProtocolError('SET_VRING_ADDR: address beyond 2^53');
    }
    this.stopQueue(slot);
    slot.queue.addr = addr;
    // Resolved now when memory is known, else by the memory change that brings it.
    if (this.memory.regionCount > 0) {
      const err = slot.queue.resolve();
      if (err !== undefined) throw new ProtocolError(`SET_VRING_ADDR queue ${addr.index}: ${err}`);
    }
    this.updateQueue(slot);
    return undefined;
  }

  private setVringBase(p: PayloadReader): Reply {
    const slot = this.slot(p.u32(0), Request.SET_VRING_BASE);
    const base = p.u32(4);
    if (base > 0xffff) throw new ProtocolError(`SET_VRING_BASE: ${base} is not a u16`);
    if (slot.running) throw new ProtocolError('SET_VRING_BASE on a running queue');
    slot.queue.setBase(base);
    return undefined;
  }

  private getVringBase(p: PayloadReader): Reply {
    const index = p.u32(0);
    const slot = this.slot(index, Request.GET_VRING_BASE);
    // Stops the ring (vhost-user.rst): no more kicks are processed and the device lets go of it.
    this.stopQueue(slot);
    slot.queue.started = false;
    this.closeFd(slot, 'kick');
    const reply = this.header(Request.GET_VRING_BASE, STATE);
    writeU32(reply, HEADER_SIZE, index);
    writeU32(reply, HEADER_SIZE + 4, slot.queue.lastAvail);
    return reply.subarray(0, HEADER_SIZE + STATE);
  }

  private setVringFd(msg: Message, p: PayloadReader, which: 'kick' | 'call' | 'err'): Reply {
    const v = p.u64(0);
    if (!Number.isSafeInteger(v) || v > (VRING_IDX_MASK | VRING_NOFD_MASK)) {
      throw new ProtocolError(`SET_VRING_${which.toUpperCase()}: bad payload`);
    }
    const req = which === 'kick' ? Request.SET_VRING_KICK : which === 'call' ? Request.SET_VRING_CALL : Request.SET_VRING_ERR;
    const slot = this.slot(v & VRING_IDX_MASK, req);
    const noFd = (v & VRING_NOFD_MASK) !== 0;
    if (noFd !== (msg.fds.length === 0)) throw new ProtocolError(`SET_VRING_${which.toUpperCase()}: fd flag and fds disagree`);
    if (!noFd) {
      // vhost-user.rst: "Set the event file descriptor for adding buffers to the vring" (KICK; CALL
      // and ERR likewise), the equivalents of VHOST_SET_VRING_KICK/CALL/ERR, for which the kernel
      // takes nothing but an eventfd (eventfd_fget in drivers/vhost/vhost.c). We read and write
      // 8-byte counters; any other fd would be polled or written to no purpose, or written into.
      const kind = native.fdKind(msg.fds[0]!);
      if (kind !== 'eventfd') throw new ProtocolError(`SET_VRING_${which.toUpperCase()}: the fd is a ${kind}, not an eventfd`);
    }
    const fd = noFd ? -1 : msg.fds[0]!;
    if (!noFd) msg.fds[0] = -1; // taken
    const q = slot.queue;
    if (which === 'kick') {
      this.stopQueue(slot);
      this.closeFd(slot, 'kick');
      q.kickFd = fd;
      if (this.memory.regionCount === 0) this.suspectUnsharedMemory();
      if (fd >= 0) {
        slot.kickWatch = this.watchKicks(slot, fd);
      } else {
        this.limited.warn({ queue: q.index }, 'queue started without a kick fd: it is processed only when the device polls it');
      }
      // SET_VRING_KICK starts the ring; without PROTOCOL_FEATURES it is enabled at once.
      q.started = true;
      if (!this.protocolFeaturesNegotiated) q.enabled = true;
      this.updateQueue(slot);
    } else {
      this.closeFd(slot, which);
      if (which === 'call') q.callFd = fd;
      else q.errFd = fd;
    }
    return undefined;
  }

  private setVringEnable(p: PayloadReader): Reply {
    const slot = this.slot(p.u32(0), Request.SET_VRING_ENABLE);
    const enable = p.u32(4);
    if (enable > 1) throw new ProtocolError(`SET_VRING_ENABLE: ${enable}`);
    slot.queue.enabled = enable === 1;
    this.updateQueue(slot);
    return undefined;
  }

  private setStatus(status: number): Reply {
    if (!Number.isInteger(status) || status > 0xff) throw new ProtocolError(`SET_STATUS: ${status}`);
    this.status = status;
    this.device.statusChanged?.(status);
    return undefined;
  }

  private resetDevice(): void {
    for (const slot of this.slots) {
      this.stopQueue(slot);
      this.closeQueueFds(slot);
      slot.queue.reset();
    }
    this.acked = 0n;
    this.status = 0;
  }

  /** Watches the queue's kick fd: in the application's source, else (or if that cannot take
   *  it) with a poller of its own. */
  private watchKicks(slot: QueueSlot, fd: number): KickWatch {
    const kicked = (): void => this.onKick(slot);
    const lost = (reason: string): void => this.kickLost(slot, reason);
    const source = this.opts.kicks;
    if (source) {
      try {
        return source.watch(fd, kicked, lost);
      } catch (err) {
        this.limited.warn(
          { queue: slot.queue.index, error: String(err) },
          'the kick source cannot watch a kick fd: it gets a poller of its own',
          'kick source failed',
        );
      }
    }
    return pollerKicks.watch(fd, kicked, lost);
  }

  /** A kick: nothing may escape (it would be an uncaught exception). */
  private onKick(slot: QueueSlot): void {
    try {
      if (!slot.running) return;
      slot.queue.stats.kicks++;
      if (!this.memoryShown && !this.availMoved(slot)) {
        this.emptyKicks++;
        this.suspectUnsharedMemory();
      }
      this.device.queueKicked(slot.queue);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The kick fd hung up (end of file, an error): it will never kick again. */
  private kickLost(slot: QueueSlot, error: string): void {
    slot.kickWatch?.close();
    slot.kickWatch = undefined;
    this.limited.warn({ queue: slot.queue.index, error }, `kick fd of queue ${slot.queue.index} hung up: queue no longer kicked`, 'kick fd hung up');
  }

  /** Whether the queue's avail index has moved since it started (then memory is shared). */
  private availMoved(slot: QueueSlot): boolean {
    const idx = slot.queue.availIndex;
    if (idx !== undefined && idx !== slot.startAvail) this.memoryShown = true;
    return this.memoryShown;
  }

  /** A ring started with no memory, or a kick that moved nothing: a verdict in a moment, if
   *  nothing shows the memory is shared meanwhile. */
  private suspectUnsharedMemory(): void {
    if (this.notSharedReported || this.notSharedTimer !== undefined) return;
    this.notSharedTimer = setTimeout(() => {
      this.notSharedTimer = undefined;
      try {
        this.judgeMemorySharing();
      } catch (err) {
        this.fail(err instanceof Error ? err : new Error(String(err)));
      }
    }, MEMORY_NOT_SHARED_DELAY_MS);
    this.notSharedTimer.unref();
  }

  private judgeMemorySharing(): void {
    if (this.isShutDown || this.notSharedReported) return;
    let kind: MemoryNotSharedKind;
    if (this.memory.regionCount === 0) {
      if (!this.slots.some((s) => s.queue.started)) return;
      kind = 'no-memory';
    } else {
      // Memory that came after the rings started is judged by kicks, as any.
      const running = this.slots.filter((s) => s.running);
      if (this.emptyKicks === 0 || running.length === 0 || running.some((s) => this.availMoved(s))) return;
      kind = 'not-shared';
    }
    this.notSharedReported = true;
    const problem = memoryNotShared(kind, kind === 'no-memory' ? 0 : this.memory.describe().reduce((n, r) => n + r.memorySize, 0));
    if (this.opts.memoryNotShared) this.opts.memoryNotShared(problem);
    else this.limited.error({ kind, memoryBytes: problem.memoryBytes }, problem.message);
  }

  /** Hands a queue to the device or takes it back, according to its state. */
  private updateQueue(slot: QueueSlot): void {
    const ready = slot.queue.ready;
    if (ready && !slot.running) {
      slot.running = true;
      slot.startAvail = slot.queue.lastAvail;
      if (!this.memoryShown) this.availMoved(slot);
      this.opts.logger.debug({ queue: slot.queue.index, size: slot.queue.size }, 'queue started');
      this.device.queueStarted(slot.queue);
      // Buffers posted before the kick fd arrived would otherwise wait for the next kick.
      if (slot.running) this.device.queueKicked(slot.queue);
    } else if (!ready && slot.running) {
      this.stopQueue(slot);
    }
  }

  private stopQueue(slot: QueueSlot): void {
    if (!slot.running) return;
    slot.running = false;
    slot.queue.flush();
    this.opts.logger.debug({ queue: slot.queue.index, ...slot.queue.stats }, 'queue stopped');
    this.device.queueStopped(slot.queue);
  }

  private forEachRunning(fn: (slot: QueueSlot) => void): void {
    for (const slot of this.slots) if (slot.running) fn(slot);
  }

  private closeFd(slot: QueueSlot, which: 'kick' | 'call' | 'err'): void {
    const q = slot.queue;
    if (which === 'kick') {
      slot.kickWatch?.close();
      slot.kickWatch = undefined;
      if (q.kickFd >= 0) native.close(q.kickFd);
      q.kickFd = -1;
    } else if (which === 'call') {
      if (q.callFd >= 0) native.close(q.callFd);
      q.callFd = -1;
    } else {
      if (q.errFd >= 0) native.close(q.errFd);
      q.errFd = -1;
    }
  }

  private closeQueueFds(slot: QueueSlot): void {
    this.closeFd(slot, 'kick');
    this.closeFd(slot, 'call');
    this.closeFd(slot, 'err');
  }

  // --- replies ----------------------------------------------------------------------------

  private header(request: Request, size: number): Uint8Array {
    encodeHeader(this.replyBuf, request, VERSION | FLAG_REPLY, size);
    return this.replyBuf;
  }

  private replyU64(request: Request, value: bigint): Uint8Array {
    const buf = this.header(request, U64);
    writeU64(buf, HEADER_SIZE, value);
    return buf.subarray(0, HEADER_SIZE + U64);
  }

  /** Whether SET_OWNER has been seen (for diagnostics). */
  get hasOwner(): boolean {
    return this.owned;
  }
}
