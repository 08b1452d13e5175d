// Messages mode: the frontend turned hostile on the vhost-user socket. Each batch is one
// connection carrying QEMU 7.2's message sequence for a virtio-net device, mutated: messages
// dropped, repeated, reordered, moved; unknown requests; payloads cut or grown, size fields that
// disagree with the bytes; fds added, removed or of the wrong kind (pipes, /dev/null, semaphore
// eventfds, memfds that cannot be sealed); queue indices out of range; ring sizes, bases and
// addresses that are wrong (unaligned, outside memory, beyond 2^53); memory tables with bad counts,
// overlapping, empty or oversized regions and offsets beyond the file; REPLY and NEED_REPLY
// flags where they do not belong, bad version bits. When the connection survives the sequence, a
// frame is posted and both queues kicked, then a GET_MAX_MEM_SLOTS tells when everything was
// handled.
// The server may close the connection at any point (that is its answer to a mistake); the next
// batch connects again. A well-behaved frontend must still be served (served()).
import { openSync } from 'node:fs';
import { FLAG_NEED_REPLY, FLAG_REPLY, IMPLEMENTED_PROTOCOL_FEATURES, ProtocolFeature, Request, VERSION, bit } from 'vhost-user-ts';
import { native } from 'vhost-user-ts/testing';
import { DriverQueue, TestFrontend } from 'vhost-user-ts/testing';
import type { TestGuestMemory } from 'vhost-user-ts/testing';
import { NET_HDR_LEN, VirtioNetDevice } from '../../../src/virtio/net-device.js';
import { GW_IP, arpRequest } from '../packets.js';
import { FrontendOffsets } from './ring.js';
import type { Rng } from './rng.js';
import { fromHexString, toHex } from './rng.js';
import { waitDisconnected } from './runner.js';
import type { BatchJson, Runner, RunOutcome } from './runner.js';
import { servedByFreshFrontend } from './served.js';
import type { TargetProcess } from './target-process.js';

/** Where an fd of a message comes from (made for each connection, closed after it). */
export type FdRef = 'mem' | 'mem2' | 'unsealable' | 'kick0' | 'kick1' | 'call0' | 'call1' | 'err0' | 'err1' | 'eventfd' | 'semaphore' | 'pipe' | 'devnull';
const WRONG_FDS: readonly FdRef[] = ['mem', 'mem2', 'unsealable', 'eventfd', 'semaphore', 'pipe', 'devnull', 'kick0', 'call1'];

export interface Msg {
  request: number;
  flags: number;
  payload: Uint8Array;
  /** The header's size field when it is not the payload's length. */
  sizeField?: number;
  fds: FdRef[];
  /** Not a message: the driver posts an RX buffer and a frame and kicks both queues here, so
   *  the messages after it meet running queues. */
  drive?: boolean;
}

export interface MessagesBatch {
  messages: Msg[];
  /** Mutations applied (for humans). */
  ops: string[];
}

const MEMORY = 4 << 20;
const QUEUE = 256;
const UNKNOWN_REQUESTS = [0, 6, 7, 19, 20, 21, 22, 23, 24, 25, 26, 31, 32, 33, 34, 35, 41, 42, 100, 0x7fffffff, 0xffffffff] as const;

const OFFERED_FEATURES = new VirtioNetDevice().features | bit(32) | bit(30) | bit(29) | bit(28);
const OFFERED_PROTOCOL = IMPLEMENTED_PROTOCOL_FEATURES & ~bit(ProtocolFeature.MQ);

function u64(v: bigint | number): Uint8Array {
  const p = new Uint8Array(8);
  new DataView(p.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(v)), true);
  return p;
}
function state(index: number, num: number): Uint8Array {
  const p = new Uint8Array(8);
  const v = new DataView(p.buffer);
  v.setUint32(0, index >>> 0, true);
  v.setUint32(4, num >>> 0, true);
  return p;
}
function region(gpa: number | bigint, size: number | bigint, uva: number | bigint, offset: number | bigint): Uint8Array {
  const p = new Uint8Array(32);
  const v = new DataView(p.buffer);
  v.setBigUint64(0, BigInt.asUintN(64, BigInt(gpa)), true);
  v.setBigUint64(8, BigInt.asUintN(64, BigInt(size)), true);
  v.setBigUint64(16, BigInt.asUintN(64, BigInt(uva)), true);
  v.setBigUint64(24, BigInt.asUintN(64, BigInt(offset)), true);
  return p;
}
function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** The layout every connection of this mode uses (the same for every connection, so a saved
 *  sequence means the same thing when replayed): guest memory as the test frontend makes it,
 *  then both rings. */
interface Layout {
  gpa: number;
  uva: number;
  size: number;
  rings: { desc: number; avail: number; used: number }[];
}

function layout(): Layout {
  // TestFrontend defaults: gpa 0x10_0000, uva 0x7f00_0000_0000; DriverQueue allocates desc,
  // avail, used for queue 0 then queue 1 from offset 0.
  const offsets = new FrontendOffsets();
  const gpa = 0x10_0000;
  const uva = 0x7f00_0000_0000;
  const rings = [0, 1].map(() => {
    const { desc, avail, used } = offsets.queue(QUEUE);
    return { desc: uva + desc, avail: uva + avail, used: uva + used };
  });
  return { gpa, uva, size: MEMORY, rings };
}

const LAYOUT = layout();

/** QEMU 7.2's sequence for a virtio-net device with REPLY_ACK (platform notes), plus extras. */
function qemuSequence(rng: Rng): Msg[] {
  const NR = VERSION | FLAG_NEED_REPLY;
  const m = (request: number, payload: Uint8Array = new Uint8Array(0), fds: FdRef[] = [], flags = NR): Msg => ({ request, flags, payload, fds });
  const L = LAYOUT;
  const seq: Msg[] = [
    m(Request.GET_FEATURES, undefined, [], VERSION),
    m(Request.GET_PROTOCOL_FEATURES, undefined, [], VERSION),
    m(Request.SET_PROTOCOL_FEATURES, u64(OFFERED_PROTOCOL), [], VERSION),
    m(Request.SET_OWNER),
    m(Request.GET_FEATURES, undefined, [], VERSION),
    m(Request.SET_VRING_CALL, u64(0), ['call0']),
    m(Request.SET_VRING_ERR, u64(0), ['err0']),
    m(Request.SET_VRING_CALL, u64(1), ['call1']),
    m(Request.SET_VRING_ERR, u64(1), ['err1']),
    m(Request.SET_VRING_ENABLE, state(0, 1)),
    m(Request.SET_VRING_ENABLE, state(1, 1)),
    m(Request.SET_FEATURES, u64(OFFERED_FEATURES)),
    m(Request.SET_MEM_TABLE, concat(state(1, 0), region(L.gpa, L.size, L.uva, 0)), ['mem']),
  ];
  for (const q of [0, 1]) {
    const r = L.rings[q]!;
    seq.push(
      m(Request.SET_VRING_NUM, state(q, QUEUE)),
      m(Request.SET_VRING_BASE, state(q, 0)),
      m(Request.SET_VRING_ADDR, concat(state(q, 0), u64(r.desc), u64(r.used), u64(r.avail), u64(0))),
      m(Request.SET_VRING_KICK, u64(q), [q === 0 ? 'kick0' : 'kick1']),
      m(Request.SET_VRING_CALL, u64(q), [q === 0 ? 'call0' : 'call1']),
    );
  }
  // What else a frontend may send in a valid conversation.
  const extras = [
    m(Request.GET_QUEUE_NUM, undefined, [], VERSION),
    m(Request.ADD_MEM_REG, concat(u64(0), region(0x1000_0000, 64 * 1024, 0x7e00_0000_0000, 0)), ['mem2']),
    m(Request.REM_MEM_REG, concat(u64(0), region(0x1000_0000, 64 * 1024, 0x7e00_0000_0000, 0))),
    m(Request.SET_STATUS, u64(0x0f)),
    m(Request.GET_STATUS, undefined, [], VERSION),
    m(Request.SET_VRING_ENABLE, state(rng.int(2), 0)),
    m(Request.GET_VRING_BASE, state(rng.int(2), 0), [], VERSION),
    m(Request.SET_MEM_TABLE, concat(state(1, 0), region(L.gpa, L.size, L.uva, 0)), ['mem']),
    m(Request.SET_MEM_TABLE, concat(state(2, 0), region(L.gpa, L.size / 2, L.uva, 0), region(L.gpa + L.size / 2, L.size / 2, L.uva + L.size / 2, L.size / 2)), [
      'mem',
      'mem',
    ]),
    m(Request.RESET_OWNER),
    m(Request.SET_VRING_KICK, u64(0x100)),
  ];
  const n = rng.weighted<number>([
    [6, 0],
    [3, 1],
    [1, 3],
  ]);
  for (let i = 0; i < n; i++) seq.splice(rng.range(3, seq.length), 0, rng.pick(extras));
  if (rng.chance(0.3)) seq.push(m(Request.GET_VRING_BASE, state(0, 0), [], VERSION), m(Request.GET_VRING_BASE, state(1, 0), [], VERSION));
  return seq;
}

function setU32(p: Uint8Array, off: number, v: number): Uint8Array {
  const out = p.length >= off + 4 ? p.slice() : concat(p, new Uint8Array(off + 4 - p.length));
  new DataView(out.buffer).setUint32(off, v >>> 0, true);
  return out;
}
function setU64(p: Uint8Array, off: number, v: bigint | number): Uint8Array {
  const out = p.length >= off + 8 ? p.slice() : concat(p, new Uint8Array(off + 8 - p.length));
  new DataView(out.buffer).setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true);
  return out;
}

const FD_MESSAGES = new Set<number>([Request.SET_VRING_KICK, Request.SET_VRING_CALL, Request.SET_VRING_ERR]);

class SequenceMutator {
  constructor(private readonly rng: Rng) {}

  mutate(seq: Msg[], ops: string[]): void {
    const r = this.rng;
    const n = r.weighted<number>([
      [1, 0],
      [5, 1],
      [3, 2],
      [2, 4],
    ]);
    for (let i = 0; i < n && seq.length > 0; i++) this.once(seq, ops);
  }

  private once(seq: Msg[], ops: string[]): void {
    const r = this.rng;
    const i = r.int(seq.length);
    const m = seq[i]!;
    const kind = r.weighted<string>([
      [2, 'drop'],
      [2, 'dup'],
      [2, 'swap'],
      [1, 'move'],
      [2, 'unknown'],
      [2, 'payload'],
      [2, 'size-field'],
      [3, 'fds'],
      [3, 'index'],
      [3, 'value'],
      [3, 'vring-addr'],
      [4, 'mem-table'],
      [2, 'flags'],
      [1, 'garbage'],
    ]);
    const name = `${kind}@${i}(${Request[m.request] ?? m.request})`;
    switch (kind) {
      case 'drop':
        seq.splice(i, 1);
        break;
      case 'dup':
        seq.splice(i, 0, { ...m, fds: [...m.fds] });
        break;
      case 'swap': {
        const j = r.chance(0.5) ? Math.min(seq.length - 1, i + 1) : r.int(seq.length);
        seq[i] = seq[j]!;
        seq[j] = m;
        break;
      }
      case 'move': {
        seq.splice(i, 1);
        seq.splice(r.int(seq.length + 1), 0, m);
        break;
      }
      case 'unknown':
        seq.splice(i, 0, {
          request: r.pick(UNKNOWN_REQUESTS),
          flags: VERSION | (r.chance(0.5) ? FLAG_NEED_REPLY : 0),
          payload: r.bytes(r.pick([0, 8, 40, 64])),
          fds: r.chance(0.2) ? ['eventfd'] : [],
        });
        break;
      case 'payload': {
        const len = r.pick([0, 1, 4, m.payload.length - 1, m.payload.length + 1, m.payload.length + 8, 40, 264, 4096, 4097]);
        const p = new Uint8Array(Math.max(0, len));
        p.set(m.payload.subarray(0, p.length));
        m.payload = p;
        break;
      }
      case 'size-field':
        m.sizeField = r.pick([0, m.payload.length - 1, m.payload.length + 1, m.payload.length + 12, 4096, 4097, 0x7fffffff, 0xffffffff]) >>> 0;
        break;
      case 'fds': {
        const k = r.int(4);
        if (k === 0) m.fds = [];
        else if (k === 1) m.fds = [...m.fds, r.pick(WRONG_FDS)];
        else if (k === 2 && m.fds.length > 0) m.fds[r.int(m.fds.length)] = r.pick(WRONG_FDS);
        else m.fds = Array.from({ length: r.pick([2, 8, 9, 12]) }, () => r.pick(WRONG_FDS));
        break;
      }
      case 'index': {
        const v = r.pick([1, 2, 3, 255, 256, 0x7fffffff, 0xffffffff]);
        if (FD_MESSAGES.has(m.request))
          m.payload = setU64(m.payload, 0, r.pick([BigInt(v & 0x1ff), 0x100n | BigInt(r.int(2)), 1n << 40n, 0xffff_ffff_ffff_ffffn, BigInt(r.int(512))]));
        else m.payload = setU32(m.payload, 0, v);
        break;
      }
      case 'value':
        this.value(m);
        break;
      case 'vring-addr': {
        const target = seq.find((x) => x.request === Request.SET_VRING_ADDR) ?? m;
        const off = r.pick([4, 8, 16, 24, 32]);
        const L = LAYOUT;
        const base = L.rings[r.int(2)]!;
        const v = r.pick<bigint | number>([
          0,
          1,
          base.desc + 1,
          base.avail + 1,
          base.used + 2,
          base.desc,
          L.uva + L.size - 16,
          L.uva + L.size - 2,
          L.uva + L.size,
          L.uva - 4096,
          2 ** 53,
          0xffff_ffff_ffff_ffffn,
          L.gpa,
          r.int(2 ** 32),
        ]);
        target.payload = setU64(target.payload, off, v);
        break;
      }
      case 'mem-table':
        this.memTable(seq, i);
        break;
      case 'flags':
        m.flags = r.pick([
          VERSION | FLAG_REPLY,
          VERSION | FLAG_REPLY | FLAG_NEED_REPLY,
          VERSION ^ FLAG_NEED_REPLY ^ (m.flags & FLAG_NEED_REPLY),
          0,
          2,
          3,
          VERSION | 0x10,
          VERSION | 0x8000_0000,
          r.u32(),
        ]);
        break;
      default:
        m.payload = r.bytes(Math.max(1, m.payload.length));
    }
    ops.push(name);
  }

  private value(m: Msg): void {
    const r = this.rng;
    switch (m.request) {
      case Request.SET_VRING_NUM:
        m.payload = setU32(m.payload, 4, r.pick([0, 1, 2, 3, 255, 1024, 32768, 65536, 0xffffffff]));
        break;
      case Request.SET_VRING_BASE:
        m.payload = setU32(m.payload, 4, r.pick([1, 255, 256, 0x7fff, 0xffff, 0x10000, 0xffffffff]));
        break;
      case Request.SET_VRING_ENABLE:
        m.payload = setU32(m.payload, 4, r.pick([0, 2, 0xffffffff]));
        break;
      case Request.SET_FEATURES:
        m.payload = u64(
          r.pick([
            0n,
            OFFERED_FEATURES | bit(34),
            OFFERED_FEATURES & ~bit(32),
            OFFERED_FEATURES | bit(r.int(64)),
            0xffff_ffff_ffff_ffffn,
            OFFERED_FEATURES & ~bit(30),
          ]),
        );
        break;
      case Request.SET_PROTOCOL_FEATURES:
        m.payload = u64(
          r.pick([
            0n,
            OFFERED_PROTOCOL | bit(ProtocolFeature.MQ),
            OFFERED_PROTOCOL | bit(r.int(64)),
            0xffff_ffff_ffff_ffffn,
            OFFERED_PROTOCOL & ~bit(ProtocolFeature.REPLY_ACK),
          ]),
        );
        break;
      case Request.SET_STATUS:
        m.payload = u64(r.pick([0, 0xff, 0x100, 2 ** 53, r.int(256)]));
        break;
      default:
        // Any u32 or u64 field of any message.
        if (m.payload.length >= 4) m.payload = setU32(m.payload, r.int(m.payload.length - 3), r.pick([0, 1, 0xffff, 0x10000, 0xffffffff]));
    }
  }

  /** Bad memory tables: counts, regions and offsets, and regions that overlap or are empty. */
  private memTable(seq: Msg[], i: number): void {
    const r = this.rng;
    let target = seq.find((x) => x.request === Request.SET_MEM_TABLE || x.request === Request.ADD_MEM_REG);
    if (!target) {
      target = {
        request: Request.SET_MEM_TABLE,
        flags: VERSION | FLAG_NEED_REPLY,
        payload: concat(state(1, 0), region(LAYOUT.gpa, LAYOUT.size, LAYOUT.uva, 0)),
        fds: ['mem'],
      };
      seq.splice(i, 0, target);
    }
    const L = LAYOUT;
    const kind = r.int(7);
    const regionAt = target.request === Request.SET_MEM_TABLE ? 8 : 8;
    if (kind === 0) {
      target.payload = setU32(target.payload, 0, r.pick([0, 2, 8, 9, 0xffffffff]));
    } else if (kind === 1) {
      const field = r.pick([0, 8, 16, 24]);
      const v = r.pick<bigint | number>([0, 1, 4095, 4096, L.size + 4096, 2 ** 40, 2 ** 53, 0xffff_ffff_ffff_ffffn, L.size - 1, r.int(2 ** 32)]);
      target.payload = setU64(target.payload, regionAt + field, v);
    } else if (kind === 2) {
      // Two regions over the same guest-physical range.
      target.payload = concat(state(2, 0), region(L.gpa, L.size, L.uva, 0), region(L.gpa + 4096, 4096, L.uva + L.size, 0));
      target.fds = ['mem', 'mem'];
    } else if (kind === 3) {
      // A region larger than its file.
      target.payload = concat(state(1, 0), region(L.gpa, L.size * 2, L.uva, 0));
    } else if (kind === 4) {
      // The region of a file that can be truncated (accepted behind the SIGBUS guard).
      target.fds = ['unsealable'];
      target.payload = concat(state(1, 0), region(L.gpa, 1 << 20, L.uva, 0));
    } else if (kind === 5) {
      // Eight regions, each one page of mem2.
      const regions = Array.from({ length: 8 }, (_, k) => region(L.gpa + k * 0x10000, 4096, L.uva + k * 0x10000, r.pick([0, 4096, k * 4096])));
      target.payload = concat(state(8, 0), ...regions);
      target.fds = new Array<FdRef>(8).fill('mem2');
    } else {
      // The memory table mid-run, with the rings moved out of it.
      target.payload = concat(state(1, 0), region(L.gpa + 0x100000, L.size, L.uva + 0x10_0000_0000, 0));
    }
  }
}

/** The bytes of a message as sent (header with its size field, then the payload). */
function encode(m: Msg): Uint8Array {
  const out = new Uint8Array(12 + m.payload.length);
  const v = new DataView(out.buffer);
  v.setUint32(0, m.request >>> 0, true);
  v.setUint32(4, m.flags >>> 0, true);
  v.setUint32(8, (m.sizeField ?? m.payload.length) >>> 0, true);
  out.set(m.payload, 12);
  return out;
}

/** The fds of one connection, made on first use and closed afterwards. */
class Fds {
  private readonly made = new Map<FdRef, number>();
  private readonly extra: number[] = [];

  constructor(
    private readonly memory: TestGuestMemory,
    private readonly queues: DriverQueue[],
  ) {}

  get(ref: FdRef): number {
    switch (ref) {
      case 'mem':
        return this.memory.fd;
      case 'kick0':
        return this.queues[0]!.kickFd;
      case 'kick1':
        return this.queues[1]!.kickFd;
      case 'call0':
        return this.queues[0]!.callFd;
      case 'call1':
        return this.queues[1]!.callFd;
      case 'eventfd':
      case 'semaphore':
      case 'pipe': {
        // A fresh one each time (the backend keeps what it accepts).
        const fd = ref === 'pipe' ? this.pipe() : native.eventfd(0, ref === 'semaphore');
        this.extra.push(fd);
        return fd;
      }
      default: {
        let fd = this.made.get(ref);
        if (fd === undefined) {
          if (ref === 'mem2') fd = native.memfdCreate('fuzz-mem2', 64 * 1024, 'sealed');
          else if (ref === 'unsealable') fd = native.memfdCreate('fuzz-unsealable', 1 << 20, 'unsealable');
          else if (ref === 'devnull') fd = openSync('/dev/null', 'r');
          else fd = native.eventfd(0);
          this.made.set(ref, fd);
        }
        return fd;
      }
    }
  }

  private pipe(): number {
    const [rd, wr] = native.pipe();
    this.extra.push(wr);
    return rd;
  }

  close(): void {
    for (const fd of this.made.values()) native.close(fd);
    for (const fd of this.extra) native.close(fd);
    this.made.clear();
    this.extra.length = 0;
  }
}

export class MessagesRunner implements Runner<MessagesBatch> {
  readonly mode = 'messages' as const;
  private target: TargetProcess | undefined;
  private readonly mutator: SequenceMutator;
  private readonly ends = { answered: 0, closed: 0, quiet: 0 };

  constructor(private readonly rng: Rng) {
    this.mutator = new SequenceMutator(rng);
  }

  async attach(target: TargetProcess): Promise<void> {
    this.target = target;
  }

  generate(_iteration: number): MessagesBatch {
    const seq = qemuSequence(this.rng);
    const ops: string[] = [];
    this.mutator.mutate(seq, ops);
    if (this.rng.chance(0.4)) {
      const at = this.rng.range(Math.min(seq.length, 12), seq.length);
      seq.splice(at, 0, { request: 0, flags: 0, payload: new Uint8Array(0), fds: [], drive: true });
      ops.push(`drive@${at}`);
    }
    return { messages: seq, ops };
  }

  async run(batch: MessagesBatch): Promise<RunOutcome> {
    const target = this.target!;
    await waitDisconnected(target);
    const fe = TestFrontend.connect(target.socketPath, { memorySize: MEMORY });
    const queues = [new DriverQueue(fe.memory, 0, QUEUE), new DriverQueue(fe.memory, 1, QUEUE)];
    const fds = new Fds(fe.memory, queues);
    const start = performance.now();
    let completed = true;
    try {
      // Whatever state the queues are in, give them work.
      const drive = (): void => {
        const gpa = fe.memory.alloc(2048);
        queues[0]!.add([{ gpa, len: 2048, writable: true }]);
        const frame = arpRequest(GW_IP);
        const data = new Uint8Array(NET_HDR_LEN + frame.length);
        data.set(frame, NET_HDR_LEN);
        queues[1]!.add([{ data }]);
        queues[0]!.kick();
        queues[1]!.kick();
      };
      for (const m of batch.messages) {
        if (!fe.isConnected) break;
        if (m.drive) drive();
        else
          fe.sendRaw(
            encode(m),
            m.fds.map((f) => fds.get(f)),
          );
      }
      if (fe.isConnected) drive();
      completed = await this.settle(fe);
    } finally {
      fe.close();
      for (const q of queues) q.dispose();
      fds.close();
    }
    // A connection left waiting for promised bytes took our timeout, not the target's time.
    return { inputs: batch.messages.filter((m) => !m.drive).length, ms: this.quiet ? 0 : performance.now() - start, completed };
  }

  /** Whether the last settle() ended with the server waiting for bytes (its time is ours). */
  private quiet = false;

  /** Waits until the server answered a GET_MAX_MEM_SLOTS sent last (no sequence holds that
   *  request, so its reply is the end; replies to earlier requests come first and are skipped)
   *  or closed the connection. A size field promising more bytes than were sent leaves the
   *  server waiting for them: that is the protocol's answer too, so a quiet connection after
   *  300 ms counts as settled. */
  private async settle(fe: TestFrontend): Promise<boolean> {
    this.quiet = false;
    const deadline = performance.now() + 300;
    while (fe.isConnected && performance.now() < deadline) {
      const left = deadline - performance.now();
      let timer: NodeJS.Timeout | undefined;
      const reply = await Promise.race([
        fe.request(Request.GET_MAX_MEM_SLOTS, new Uint8Array(0), [], { expectReply: true }).then(
          (r) => (r ? 'end' : 'closed'),
          () => 'other',
        ),
        new Promise<string>((res) => (timer = setTimeout(() => res('timeout'), left))),
      ]);
      clearTimeout(timer);
      if (reply === 'end') {
        this.ends.answered++;
        return true;
      }
      if (reply === 'closed') break;
      if (reply === 'timeout') break;
    }
    if (!fe.isConnected) {
      this.ends.closed++;
    } else {
      this.ends.quiet++;
      this.quiet = true;
    }
    return true;
  }

  notes(): string[] {
    const e = this.ends;
    return [`sequences: ${e.closed} closed by the server, ${e.answered} answered to the end, ${e.quiet} left waiting (a size field promising more bytes)`];
  }

  async served(): Promise<boolean> {
    const target = this.target!;
    return servedByFreshFrontend(target.socketPath, () => waitDisconnected(target));
  }

  toJson(b: MessagesBatch): BatchJson {
    return {
      ops: b.ops,
      messages: b.messages.map((m) => (m.drive ? { drive: true } : { request: Request[m.request] ?? m.request, hex: toHex(encode(m)), fds: m.fds })),
    };
  }

  fromJson(j: BatchJson): MessagesBatch {
    const messages = (j.messages as { hex: string; fds: FdRef[]; drive?: boolean }[]).map((x): Msg => {
      if (x.drive) return { request: 0, flags: 0, payload: new Uint8Array(0), fds: [], drive: true };
      const bytes = fromHexString(x.hex);
      const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const payload = bytes.slice(12);
      const size = v.getUint32(8, true);
      return { request: v.getUint32(0, true), flags: v.getUint32(4, true), payload, ...(size !== payload.length ? { sizeField: size } : {}), fds: x.fds };
    });
    return { messages, ops: (j.ops as string[] | undefined) ?? [] };
  }

  async close(): Promise<void> {
    // Nothing held between batches.
  }
}
