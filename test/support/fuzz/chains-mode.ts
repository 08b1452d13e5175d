// Chains mode: the guest driver turned hostile. Descriptor tables and avail rings are written
// directly: loops, `next` out of range, buffers outside memory, in the gap between regions, across
// the end of a region into the next, over the rings themselves, huge and zero lengths, indirect
// tables (misaligned, nested, with NEXT, looping, outside memory, straddling), readable buffers
// after writable ones, heads out of range, avail indices that jump or go back, duplicate heads,
// random flags, on the TX queue and on the RX queue (where vunet writes its answers). Valid frames
// ride along so chains that pass are parsed. vunet must return every chain it can (malformed ones
// with length 0), mark the queue broken when it cannot, and go on once the frontend sets the
// queue up again.
//
// Memory: two regions; after QEMU's sequence the table is sent again with region 1 placed right
// after region 0 in guest-physical space (the file offsets are contiguous already), so a buffer
// can straddle the two. Everything the fuzzer writes lives in region 0, at the same addresses on
// every connection with the same config: a regression file replays with the same meaning.
import { Feature, Request, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, bit } from 'vhost-user-ts';
import { TestFrontend } from 'vhost-user-ts/testing';
import type { DriverQueue } from 'vhost-user-ts/testing';
import { NET_HDR_LEN } from '../../../src/virtio/net-device.js';
import { GW_IP, arpRequest, echoRequest } from '../packets.js';
import { buildCorpus } from './corpus.js';
import type { CorpusEntry } from './corpus.js';
import { FrontendOffsets, Ring } from './ring.js';
import type { Rng } from './rng.js';
import { fromHexString, toHex } from './rng.js';
import { waitDisconnected } from './runner.js';
import type { BatchJson, Runner, RunOutcome } from './runner.js';
import type { TargetProcess } from './target-process.js';

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;
const SCRATCH = 512 * 1024;
/** Where the reserved good frame and good RX buffers sit inside the scratch area. */
const GOOD_TX = SCRATCH - 64 * 1024;
const GOOD_RX = SCRATCH - 32 * 1024;
const GOOD_RX_COUNT = 8;
const GOOD_RX_LEN = 2048;

export interface ChainsConfig {
  memorySize: number;
  rxSize: number;
  txSize: number;
  eventIdx: boolean;
  indirect: boolean;
  mergeable: boolean;
}

export type ChainOp =
  /** Descriptor `i` of queue `q`'s table, or of an indirect table at scratch offset `table`. */
  | { op: 'desc'; q: number; i: number; addr: number; len: number; flags: number; next: number; table?: number }
  /** Bytes at scratch offset `at`. */
  | { op: 'mem'; at: number; data: Uint8Array }
  /** `head` into the next avail slot of queue `q`. */
  | { op: 'avail'; q: number; head: number }
  /** Publishes avail.idx moved by `delta` from where the slots put so far end. */
  | { op: 'jump'; q: number; delta: number }
  | { op: 'flags'; q: number; flags: number }
  /** A well-formed frame on TX through the reserved last descriptor (vunet then answers on RX). */
  | { op: 'send'; frame: Uint8Array };

export interface ChainsBatch {
  config: ChainsConfig;
  ops: ChainOp[];
  /** The generator meant to break a queue (head out of range, index jump). */
  breaks: boolean;
}

const key = (c: ChainsConfig): string => JSON.stringify(c);

/** One connection: the frontend, both rings, the scratch area and the layout facts. */
class Conn {
  readonly rings: [Ring, Ring];
  readonly scratchGpa: number;
  readonly scratchOff: number;
  /** Guest-physical layout the fuzzer aims at. */
  readonly r0: { gpa: number; size: number };
  readonly r1: { gpa: number; size: number };
  readonly ringAreas: number[];

  constructor(
    readonly fe: TestFrontend,
    readonly config: ChainsConfig,
    readonly qs: DriverQueue[],
  ) {
    this.rings = [new Ring(fe.memory, qs[0]!), new Ring(fe.memory, qs[1]!)];
    this.scratchGpa = fe.memory.alloc(SCRATCH, 4096);
    this.scratchOff = fe.memory.offsetOf(this.scratchGpa);
    const regions = fe.memory.regions;
    this.r0 = { gpa: regions[0]!.guestPhysAddr, size: regions[0]!.memorySize };
    this.r1 = { gpa: regions[0]!.guestPhysAddr + regions[0]!.memorySize, size: regions[1]!.memorySize };
    this.ringAreas = qs.flatMap((q) => [q.descGpa, q.availGpa, q.usedGpa]);
  }

  get connected(): boolean {
    return this.fe.isConnected;
  }

  repairs = 0;

  /** GET_VRING_BASE then the ring set up again at index 0, as a driver reset does. */
  async repair(qi: number): Promise<void> {
    this.repairs++;
    const fe = this.fe;
    const q = this.qs[qi]!;
    const ring = this.rings[qi]!;
    await fe.getVringBase(qi);
    ring.reset();
    fe.memory.bytes.fill(0, fe.memory.offsetOf(q.availGpa), fe.memory.offsetOf(q.availGpa) + 6 + 2 * q.size);
    await fe.setVringNum(qi, q.size);
    await fe.setVringBase(qi, 0);
    await fe.setVringAddr(qi, fe.memory.uvaOf(q.descGpa), fe.memory.uvaOf(q.usedGpa), fe.memory.uvaOf(q.availGpa));
    await fe.setVringFd(Request.SET_VRING_KICK, qi, q.kickFd);
  }

  /** Posts good RX buffers on fresh descriptors (after a repair of RX). */
  postGoodRx(): void {
    const rx = this.rings[0];
    for (let i = 0; i < GOOD_RX_COUNT; i++) {
      const idx = rx.size - 1 - i;
      rx.writeDesc(idx, this.scratchGpa + GOOD_RX + i * GOOD_RX_LEN, GOOD_RX_LEN, WRITE, 0);
      rx.put(idx);
    }
    rx.publish();
    rx.kick();
  }

  close(): void {
    this.fe.close();
  }
}

export class ChainsRunner implements Runner<ChainsBatch> {
  readonly mode = 'chains' as const;
  private target: TargetProcess | undefined;
  private conn: Conn | undefined;
  private config: ChainsConfig;
  private connectionLeft = 0;
  private readonly corpus: CorpusEntry[];
  /** Queues found broken when the batch did not mean to break one, by queue (RX: vunet wrote a
   *  frame over the RX ring through a buffer placed there). */
  readonly unexpectedBreaks = [0, 0];
  private repairs = 0;
  private connections = 0;

  constructor(private readonly rng: Rng) {
    this.corpus = buildCorpus();
    this.config = this.randomConfig();
  }

  private randomConfig(): ChainsConfig {
    const r = this.rng;
    return {
      memorySize: 8 << 20,
      rxSize: r.pick([16, 64]),
      txSize: r.pick([16, 64, 256]),
      eventIdx: r.chance(0.7),
      indirect: r.chance(0.85),
      mergeable: r.chance(0.8),
    };
  }

  notes(): string[] {
    return [
      `${this.connections} connections, ${this.repairs + (this.conn?.repairs ?? 0)} queue re-initialisations, ${this.unexpectedBreaks[0]} RX and ${this.unexpectedBreaks[1]} TX queues broken by batches not meant to break one`,
    ];
  }

  async attach(target: TargetProcess): Promise<void> {
    if (this.conn) this.repairs += this.conn.repairs;
    this.conn?.close();
    this.conn = undefined;
    this.target = target;
  }

  private async connect(config: ChainsConfig): Promise<Conn> {
    const target = this.target!;
    if (this.conn) this.repairs += this.conn.repairs;
    this.conn?.close();
    this.conn = undefined;
    for (let attempt = 0; attempt < 10; attempt++) {
      await waitDisconnected(target);
      const fe = TestFrontend.connect(target.socketPath, { memorySize: config.memorySize, regions: 2 });
      try {
        const qs = await fe.handshake({
          queues: [config.rxSize, config.txSize],
          features: (offered) => {
            let f = offered;
            if (!config.eventIdx) f &= ~bit(Feature.RING_EVENT_IDX);
            if (!config.indirect) f &= ~bit(Feature.RING_INDIRECT_DESC);
            if (!config.mergeable) f &= ~bit(15);
            return f;
          },
        });
        // Region 1 right after region 0 in guest-physical space: buffers may straddle them.
        const [a, b] = fe.memory.regions as [(typeof fe.memory.regions)[0], (typeof fe.memory.regions)[0]];
        await fe.setMemTable([a, { ...b, guestPhysAddr: a.guestPhysAddr + a.memorySize }]);
        if (!fe.isConnected) throw new Error('closed');
        const c = new Conn(fe, config, qs);
        this.connections++;
        this.conn = c;
        this.config = config;
        c.postGoodRx();
        return c;
      } catch {
        fe.close();
      }
    }
    throw new Error('chains: the target refused every connection');
  }

  generate(_iteration: number): ChainsBatch {
    const r = this.rng;
    if (this.connectionLeft-- <= 0) {
      this.config = this.randomConfig();
      this.connectionLeft = r.range(300, 3000);
    }
    const c = this.config;
    const ops: ChainOp[] = [];
    let breaks = false;
    const chains = r.weighted<number>([
      [5, r.range(1, 4)],
      [3, r.range(5, 12)],
      [1, r.range(13, 24)],
    ]);
    let rxTouched = false;
    for (let k = 0; k < chains; k++) {
      const q = r.chance(0.25) ? 0 : 1;
      // More heads than the ring holds is an index jump; keep those to the 'jump' scenario.
      const size = q === 0 ? c.rxSize : c.txSize;
      const heads = ops.filter((o) => o.op === 'avail' && o.q === q).length;
      if (heads + 3 > size - GOOD_RX_COUNT) continue;
      if (q === 0) rxTouched = true;
      breaks = this.hostileChain(ops, q, size) || breaks;
    }
    // A writable RX buffer over the RX rings lets vunet's answer overwrite them: the queue may
    // end up broken, which is then what the input asked for.
    const [rs, re] = this.ringArea(0);
    if (ops.some((o) => o.op === 'desc' && o.q === 0 && o.addr < 0x10_0000 + re && o.addr + o.len > 0x10_0000 + rs)) breaks = true;
    if (r.chance(0.1)) ops.push({ op: 'flags', q: r.int(2), flags: r.pick([0, 1, 0xffff]) });
    // Something for vunet to answer, so RX chains are taken.
    if (rxTouched || r.chance(0.3))
      ops.push({ op: 'send', frame: r.chance(0.5) ? arpRequest(GW_IP) : echoRequest(0x4444, r.int(0x10000), new Uint8Array(r.pick([8, 1400, 3000]))) });
    return { config: c, ops, breaks };
  }

  /** Guest-physical addresses the generator aims at: mostly the scratch area, sometimes the ends
   *  of the regions, the rings of queue `q` (only its own: a frame vunet writes over the other
   *  queue's ring would confuse this driver, not vunet), nowhere, or anywhere. */
  private addr(q: number, len: number): number {
    const r = this.rng;
    const [ringStart, ringEnd] = this.ringArea(q);
    // Offsets as the connection will lay them out: region 0 starts at the frontend's default base.
    const gpaBase = 0x10_0000;
    const per = this.config.memorySize / 2;
    const scratch = gpaBase + this.scratchOffsetGuess();
    return r.weighted<number>([
      [10, scratch + r.int(SCRATCH - 64 * 1024 - Math.min(len, 4096))],
      [2, gpaBase + per - r.range(1, 64)], // across the end of region 0 into region 1
      [1, gpaBase + 2 * per - r.range(1, 64)], // across the end of memory
      [1, gpaBase + ringStart + r.int(ringEnd - ringStart)], // this queue's rings
      [1, r.pick([0, 0x1000, gpaBase - 1, gpaBase + 2 * per, 0x1_0000_0000, 2 ** 52, 2 ** 53 - 1, 2 ** 53, 2 ** 63])],
      [1, r.int(2 ** 32)],
    ]);
  }

  /** Offsets in the file on a connection with the current config, as the test frontend allocates
   *  them: RX rings, TX rings (three areas each, aligned), then the scratch area (page aligned). */
  private layout(): { rx: [number, number]; tx: [number, number]; scratch: number } {
    const offsets = new FrontendOffsets();
    const rx = offsets.queue(this.config.rxSize);
    const tx = offsets.queue(this.config.txSize);
    return { rx: [rx.desc, rx.end], tx: [tx.desc, tx.end], scratch: offsets.alloc(SCRATCH, 4096) };
  }

  private scratchOffsetGuess(): number {
    return this.layout().scratch;
  }

  private ringArea(q: number): [number, number] {
    const l = this.layout();
    return q === 0 ? l.rx : l.tx;
  }

  /** A writable RX buffer must not cover the TX rings (see addr()). */
  private overTxRings(addr: number, len: number): boolean {
    const [s, e] = this.layout().tx;
    return addr < 0x10_0000 + e && addr + len > 0x10_0000 + s;
  }

  private len(): number {
    const r = this.rng;
    return r.weighted<number>([
      [8, r.range(NET_HDR_LEN + 14, 200)],
      [2, r.range(0, NET_HDR_LEN + 14)],
      [2, r.range(200, 70000)],
      [2, r.pick([0, 1, 11, 12, 13, 0xffff, 0x10000, 0x7fffffff, 0xffffffff, 4 << 20, 8 << 20])],
    ]);
  }

  /** Appends one hostile (or, sometimes, good) chain for queue `q` of `size`; true when it is
   *  meant to break the queue. */
  private hostileChain(ops: ChainOp[], q: number, size: number): boolean {
    const r = this.rng;
    // The last descriptor of TX is reserved for 'send'; chains use the rest.
    const idx = (): number => r.int(size - 1);
    const dirFlag = (): number => (q === 0 ? WRITE : 0);
    const desc = (i: number, addr: number, len: number, flags: number, next: number, table?: number): void => {
      if (q === 0 && this.overTxRings(addr, len)) addr = this.scratchBase();
      ops.push({ op: 'desc', q, i, addr, len, flags, next, ...(table !== undefined ? { table } : {}) });
    };
    const data = (len: number): number => {
      // A real frame in the buffer so a chain that is valid is parsed too.
      const at = r.int(SCRATCH - 64 * 1024 - 2048);
      const frame = r.pick(this.corpus).frame;
      const bytes = new Uint8Array(Math.min(len, NET_HDR_LEN + frame.length, 2048));
      bytes.set(frame.subarray(0, Math.max(0, bytes.length - NET_HDR_LEN)), NET_HDR_LEN);
      ops.push({ op: 'mem', at, data: bytes });
      return this.scratchBase() + at;
    };
    const scenario = r.weighted<string>([
      [6, 'random'],
      [3, 'valid'],
      [2, 'loop'],
      [2, 'next-oob'],
      [2, 'address'],
      [2, 'straddle'],
      [4, 'indirect'],
      [2, 'rw-order'],
      [2, 'length'],
      [1, 'long'],
      [1, 'rings'],
      [1, 'dup-head'],
      [1, 'head-oob'],
      [1, 'jump'],
      [1, 'flags'],
    ]);
    const head = idx();
    switch (scenario) {
      case 'random': {
        const n = r.range(1, Math.min(8, size - 1));
        const ids = Array.from({ length: n }, idx);
        for (const i of ids) desc(i, this.addr(q, 64), this.len(), r.int(8), r.chance(0.8) ? r.pick(ids) : r.int(size + 4), undefined);
        ops.push({ op: 'avail', q, head: r.pick(ids) });
        return false;
      }
      case 'valid': {
        const len = r.range(NET_HDR_LEN + 14, 1600);
        desc(head, data(len), len, dirFlag(), 0);
        ops.push({ op: 'avail', q, head });
        return false;
      }
      case 'loop': {
        const a = head;
        const b = idx();
        const kind = r.int(3);
        desc(a, data(64), 64, dirFlag() | NEXT, kind === 0 ? a : b);
        if (kind > 0) desc(b, data(64), 64, dirFlag() | NEXT, kind === 1 ? a : idx());
        ops.push({ op: 'avail', q, head: a });
        return false;
      }
      case 'next-oob':
        desc(head, data(64), 64, dirFlag() | NEXT, r.pick([size, size + 1, 0xffff, 32768]));
        ops.push({ op: 'avail', q, head });
        return false;
      case 'address':
        desc(head, r.pick([0, 0x10, 2 ** 32, 2 ** 53, 2 ** 63, 2 ** 64 - 1, this.addr(q, 64)]), this.len(), dirFlag(), 0);
        ops.push({ op: 'avail', q, head });
        return false;
      case 'straddle': {
        const per = this.config.memorySize / 2;
        const end = 0x10_0000 + r.pick([per, 2 * per]);
        const before = r.range(1, 200);
        desc(head, end - before, before + r.range(0, 2000), dirFlag(), 0);
        ops.push({ op: 'avail', q, head });
        return false;
      }
      case 'indirect': {
        const n = r.range(1, 6);
        const table = r.int(SCRATCH / 2) & ~15;
        const kind = r.weighted<string>([
          [4, 'good'],
          [1, 'misaligned-len'],
          [1, 'zero-len'],
          [1, 'nested'],
          [1, 'with-next'],
          [1, 'loop'],
          [1, 'outside'],
          [1, 'straddle'],
          [1, 'huge'],
          [1, 'next-oob'],
          [1, 'rw-order'],
        ]);
        for (let i = 0; i < n; i++) {
          const last = i === n - 1;
          const next = kind === 'loop' ? 0 : kind === 'next-oob' && last ? n + 3 : i + 1;
          let flags = dirFlag() | (last && kind !== 'loop' && kind !== 'next-oob' ? 0 : NEXT);
          if (kind === 'rw-order') flags = (i === 0 ? WRITE : 0) | (last ? 0 : NEXT);
          if (kind === 'nested' && i === 0) flags |= INDIRECT;
          desc(i, kind === 'nested' && i === 0 ? this.scratchBase() + table : data(128), 128, flags, next, table);
        }
        const tlen =
          kind === 'misaligned-len'
            ? 16 * n + r.range(1, 15)
            : kind === 'zero-len'
              ? 0
              : kind === 'huge'
                ? r.pick([16 * 40000, 0xfffffff0, 16 * 32768])
                : 16 * n;
        const taddr =
          kind === 'outside'
            ? r.pick([0, 2 ** 40, 0x10_0000 + this.config.memorySize])
            : kind === 'straddle'
              ? 0x10_0000 + this.config.memorySize / 2 - 16
              : this.scratchBase() + table;
        desc(head, taddr, tlen, INDIRECT | (kind === 'with-next' ? NEXT : 0) | (r.chance(0.1) ? WRITE : 0), kind === 'with-next' ? idx() : 0);
        ops.push({ op: 'avail', q, head });
        return false;
      }
      case 'rw-order': {
        const b = idx();
        desc(head, data(64), 64, WRITE | NEXT, b);
        desc(b, data(64), 64, 0, 0);
        ops.push({ op: 'avail', q, head });
        return false;
      }
      case 'length': {
        const n = r.range(1, 4);
        const ids = Array.from({ length: n }, (_, i) => (head + i) % (size - 1));
        ids.forEach((id, i) =>
          desc(id, this.addr(q, 64), r.pick([0, 0, 1, 11, 12, 0xffffffff, 65550, 65551, 70000]), dirFlag() | (i < n - 1 ? NEXT : 0), ids[i + 1] ?? 0),
        );
        ops.push({ op: 'avail', q, head: ids[0]! });
        return false;
      }
      case 'long': {
        // Every descriptor of the table in one chain, tiny buffers: many segments.
        const n = size - 1;
        const base = data(2048);
        for (let i = 0; i < n; i++) desc(i, base + (i % 64), r.pick([1, 2, 16]), dirFlag() | (i < n - 1 ? NEXT : 0), i + 1);
        ops.push({ op: 'avail', q, head: 0 });
        return false;
      }
      case 'rings': {
        // A buffer over the queue's own rings: on RX vunet writes a frame over them.
        const [s0, e0] = this.ringArea(q);
        const area = 0x10_0000 + s0 + r.int(e0 - s0);
        desc(head, area, r.pick([16, 64, 256, 2048]), dirFlag(), 0);
        ops.push({ op: 'avail', q, head });
        return false;
      }
      case 'dup-head': {
        const len = r.range(NET_HDR_LEN + 14, 400);
        desc(head, data(len), len, dirFlag(), 0);
        ops.push({ op: 'avail', q, head }, { op: 'avail', q, head });
        return false;
      }
      case 'head-oob':
        ops.push({ op: 'avail', q, head: r.pick([size, size + 1, 0xffff, 32768]) });
        return true;
      case 'jump': {
        const delta = r.pick([size + 1, 0x8000, 0xffff, -1, -size]);
        ops.push({ op: 'jump', q, delta });
        return true;
      }
      default: {
        // Flag bits virtio does not define, on an otherwise good buffer.
        const len = r.range(NET_HDR_LEN + 14, 400);
        desc(head, data(len), len, dirFlag() | r.pick([0x8, 0x10, 0x8000, 0xfff8]), r.int(size));
        ops.push({ op: 'avail', q, head });
        return false;
      }
    }
  }

  private scratchBase(): number {
    return 0x10_0000 + this.scratchOffsetGuess();
  }

  async run(batch: ChainsBatch): Promise<RunOutcome> {
    let c = this.conn;
    if (!c || !c.connected || key(c.config) !== key(batch.config)) c = await this.connect(batch.config);
    if (c.scratchGpa !== this.scratchBase()) throw new Error('chains: the scratch area is not where the generator aims');
    const mem = c.fe.memory;
    const [rx, tx] = c.rings;
    // A hostile RX chain lets vunet write a frame anywhere the guest points it, the TX rings
    // included: such a batch is not checked against the TX used ring, and RX starts over after it.
    // So does a jump of RX's avail index: vunet reads that index only when it has a frame for the
    // guest, maybe batches later, and the break it then finds belongs to this batch.
    const rxTouched = batch.ops.some((o) => (o.op === 'avail' || o.op === 'jump') && o.q === 0);
    // Jumps that add up to a small step forward publish slots this batch never wrote: the device
    // rightly returns whatever heads those held.
    const txJumped = batch.ops.some((o) => o.op === 'jump' && o.q === 1);
    const txStart = tx.availIdx;
    /** TX heads made available in this batch, with multiplicity: what may come back. */
    const txHeads = new Map<number, number>();
    const txPut = (head: number): void => void txHeads.set(head, (txHeads.get(head) ?? 0) + 1);
    let inputs = 0;
    for (const o of batch.ops) {
      switch (o.op) {
        case 'desc': {
          const ring = c.rings[o.q]!;
          const table = o.table !== undefined ? c.scratchOff + o.table : undefined;
          ring.writeDesc(o.i, o.addr, o.len, o.flags, o.next, table);
          break;
        }
        case 'mem':
          mem.bytes.set(o.data.subarray(0, Math.max(0, SCRATCH - o.at)), c.scratchOff + o.at);
          break;
        case 'avail':
          c.rings[o.q]!.put(o.head);
          if (o.q === 1) txPut(o.head);
          inputs++;
          break;
        case 'jump': {
          const ring = c.rings[o.q]!;
          ring.setAvailIdx(ring.availIdx + o.delta);
          inputs++;
          break;
        }
        case 'flags':
          c.rings[o.q]!.setAvailFlags(o.flags);
          break;
        case 'send': {
          const at = GOOD_TX;
          const bytes = new Uint8Array(NET_HDR_LEN + o.frame.length);
          bytes.set(o.frame, NET_HDR_LEN);
          mem.bytes.set(bytes, c.scratchOff + at);
          tx.writeDesc(tx.size - 1, c.scratchGpa + at, bytes.length, 0, 0);
          tx.put(tx.size - 1);
          txPut(tx.size - 1);
          inputs++;
          break;
        }
      }
    }
    const txTarget = tx.availIdx;
    tx.setUsedEvent(txTarget - 1);
    rx.publish();
    tx.publish();
    const start = performance.now();
    rx.kick();
    tx.kick();
    const txExpected = (txTarget - txStart) & 0xffff;
    const txDone = (): boolean => ((tx.usedIdx - txStart) & 0xffff) >= txExpected;
    // Done when every TX chain is back, or when a queue is broken (the target says so: a broken
    // queue returns nothing more). A batch meant to break one asks at once, others now and then.
    const deadline = start + 5000;
    let done = false;
    let broken = false;
    let probes = 0;
    for (;;) {
      done = await tx.until(() => txDone() || !c.connected, batch.breaks ? 1 : 20);
      done = txDone();
      if (done || !c.connected || performance.now() > deadline) break;
      probes++;
      if (batch.breaks || probes % 5 === 0) {
        const p = await this.target!.probe();
        if (p.queues.some((q) => q.broken !== null)) {
          broken = true;
          break;
        }
      }
    }
    const ms = performance.now() - start;
    // Each head made available comes back at most as often as it was made available, with
    // length 0 (vunet writes nothing into TX buffers).
    const violations: string[] = [];
    tx.takeUsed((id, len) => {
      if (rxTouched || txJumped) return;
      const left = txHeads.get(id) ?? 0;
      if (left === 0) violations.push(`TX used entry for head ${id}, which the device did not hold`);
      else txHeads.set(id, left - 1);
      if (len !== 0) violations.push(`TX used entry for head ${id} with length ${len}`);
    });
    if (rxTouched) {
      await c.repair(0);
      c.postGoodRx();
    } else {
      // Only the good RX buffers are out: post them again as vunet fills them.
      if (rx.takeUsed((id) => (id >= rx.size - GOOD_RX_COUNT ? rx.put(id) : undefined)) > 0) {
        rx.publish();
        rx.kick();
      }
    }
    // A queue the input broke stops until set up again; so does one broken by accident.
    const p = await this.target!.probe();
    for (const qs of p.queues) {
      if (qs.broken === null || qs.index > 1) continue;
      if (!batch.breaks) this.unexpectedBreaks[qs.index]!++;
      await c.repair(qs.index);
      if (qs.index === 0) c.postGoodRx();
      broken = true;
    }
    const completed = done || broken;
    const violation = violations.slice(0, 5).join('; ');
    return {
      inputs,
      ms: broken ? 0 : ms,
      completed,
      ...(completed ? {} : { note: c.connected ? 'TX chains not all returned within 5 s and no queue broken' : 'the target closed the connection' }),
      ...(violation ? { violation } : {}),
    };
  }

  async served(): Promise<boolean> {
    let c = this.conn;
    if (!c || !c.connected) c = await this.connect(this.config);
    await c.repair(0);
    await c.repair(1);
    c.postGoodRx();
    const [rx, tx] = c.rings;
    const mem = c.fe.memory;
    const frame = arpRequest(GW_IP);
    const bytes = new Uint8Array(NET_HDR_LEN + frame.length);
    bytes.set(frame, NET_HDR_LEN);
    mem.bytes.set(bytes, c.scratchOff + GOOD_TX);
    tx.writeDesc(tx.size - 1, c.scratchGpa + GOOD_TX, bytes.length, 0, 0);
    tx.put(tx.size - 1);
    tx.publish();
    tx.kick();
    // Answers that waited for RX buffers (the backlog) come first: keep recycling the buffers
    // until the ARP reply shows up.
    const found = await rx.until(() => {
      let ok = false;
      const n = rx.takeUsed((id, len) => {
        const i = rx.size - 1 - id;
        if (i < 0 || i >= GOOD_RX_COUNT) return;
        if (len >= NET_HDR_LEN + 42) {
          const f = mem.read(c.scratchGpa + GOOD_RX + i * GOOD_RX_LEN + NET_HDR_LEN, 42);
          if (f[12] === 0x08 && f[13] === 0x06 && f[21] === 2) ok = true;
        }
        rx.put(id);
      });
      if (n > 0) {
        rx.publish();
        rx.kick();
      }
      return ok;
    }, 3000);
    tx.takeUsed(() => undefined);
    return found;
  }

  toJson(b: ChainsBatch): BatchJson {
    return {
      config: b.config,
      breaks: b.breaks,
      ops: b.ops.map((o) =>
        o.op === 'mem' || o.op === 'send' ? { ...o, data: undefined, hex: toHex(o.op === 'mem' ? o.data : o.frame), frame: undefined } : o,
      ),
    };
  }

  fromJson(j: BatchJson): ChainsBatch {
    const ops = (j.ops as (Record<string, unknown> & { op: string })[]).map((o): ChainOp => {
      if (o.op === 'mem') return { op: 'mem', at: o.at as number, data: fromHexString(o.hex as string) };
      if (o.op === 'send') return { op: 'send', frame: fromHexString(o.hex as string) };
      return o as unknown as ChainOp;
    });
    return { config: j.config as ChainsConfig, ops, breaks: j.breaks as boolean };
  }

  async close(): Promise<void> {
    this.conn?.close();
    this.conn = undefined;
  }
}
