// The guest's virtio-net driver as the fuzzer plays it, on the test frontend: QEMU's message
// sequence with a chosen feature set, then both rings driven directly (ring.ts). TX chains are
// written into fixed slots (header and frame split over up to four descriptors, or through an
// indirect table); RX buffers of mixed sizes are posted once and recycled as vunet uses them, so
// its answers keep flowing (mergeable buffers when negotiated).
import { Feature, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, bit } from 'vhost-user-ts';
import { TestFrontend } from 'vhost-user-ts/testing';
import type { DriverQueue } from 'vhost-user-ts/testing';
import { NET_HDR_LEN, NetFeature } from '../../../src/virtio/net-device.js';
import { Ring } from './ring.js';
import type { Rng } from './rng.js';

/** The most chains one TX batch may hold, and the descriptors each may use. */
export const MAX_BATCH = 64;
export const MAX_SEGMENTS = 4;
/** A TX slot holds the largest frame the mutator makes, with its header. */
const TX_SLOT = 72 * 1024;

export interface DriverConfig {
  memorySize: number;
  regions: number;
  rxSize: number;
  txSize: number;
  eventIdx: boolean;
  mergeable: boolean;
  indirect: boolean;
  csum: boolean;
  /** The length of each RX buffer (rxSize of them; one descriptor each). */
  rxLens: number[];
}

/** A feature set and ring sizes drawn at random (what the next connection negotiates). */
export function randomDriverConfig(rng: Rng): DriverConfig {
  const mergeable = rng.chance(0.85);
  const rxSize = rng.pick([64, 128, 256]);
  // Mergeable: mixed sizes, a few too small for a header. Otherwise each buffer must hold a whole
  // frame (65550 bytes and the header), else vunet drops what does not fit.
  const sizes = mergeable ? [16, 64, 128, 256, 256, 1024, 1526, 1526, 2048, 2048, 4096, 9000, 65562] : rng.chance(0.8) ? [65562] : [1526, 65562];
  return {
    memorySize: 48 << 20,
    regions: rng.chance(0.2) ? 2 : 1,
    rxSize,
    txSize: 256,
    eventIdx: rng.chance(0.7),
    mergeable,
    indirect: rng.chance(0.8),
    csum: rng.chance(0.7),
    rxLens: Array.from({ length: rxSize }, () => rng.pick(sizes)),
  };
}

export function sameConfig(a: DriverConfig, b: DriverConfig): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

export const STANDARD_CONFIG: DriverConfig = {
  memorySize: 48 << 20,
  regions: 1,
  rxSize: 256,
  txSize: 256,
  eventIdx: true,
  mergeable: true,
  indirect: true,
  csum: true,
  rxLens: new Array<number>(256).fill(2048),
};

/** One guest frame as it goes into the TX ring. */
export interface TxItem {
  /** The 12-byte virtio-net header. */
  hdr: Uint8Array;
  frame: Uint8Array;
  /** Lengths of the descriptors the header + frame bytes are cut into (sum = total). */
  split: number[];
  indirect: boolean;
}

/** A random descriptor layout for `total` bytes (header alone first, as Linux does, or not). */
export function randomSplit(rng: Rng, total: number): number[] {
  const kind = rng.weighted<string>([
    [6, 'one'],
    [3, 'header-apart'],
    [2, 'random'],
  ]);
  if (kind === 'one' || total <= NET_HDR_LEN) return [total];
  if (kind === 'header-apart') return [NET_HDR_LEN, total - NET_HDR_LEN];
  const parts = rng.range(2, MAX_SEGMENTS);
  const cuts = new Set<number>();
  for (let i = 1; i < parts; i++) cuts.add(rng.range(1, total - 1));
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: number[] = [];
  let prev = 0;
  for (const c of sorted) {
    out.push(c - prev);
    prev = c;
  }
  out.push(total - prev);
  return out;
}

export interface BatchResult {
  /** Every chain came back. */
  completed: boolean;
  /** Kick to the last used entry, ms. */
  ms: number;
}

export class GuestDriver {
  readonly rx: Ring;
  readonly tx: Ring;
  /** RX buffers by head (one descriptor each). */
  private readonly rxGpa: number[] = [];
  private readonly rxLen: number[] = [];
  private readonly txData: number[] = [];
  private readonly txTable: number[] = [];
  /** Frames vunet delivered (counted; kept only while `keepFrames`). */
  rxFrames = 0;
  keepFrames = false;
  readonly received: Uint8Array[] = [];
  private partial: { need: number; parts: Uint8Array[] } | undefined;
  /** RX heads the device holds (made available, not yet used). */
  private readonly rxPosted: boolean[] = [];
  /** What the used rings said that no device may say: a head it was not given, given back twice,
   *  or more bytes written than the buffer holds. Taken by the caller. */
  readonly violations: string[] = [];

  private constructor(
    readonly fe: TestFrontend,
    readonly config: DriverConfig,
    rxq: DriverQueue,
    txq: DriverQueue,
  ) {
    this.rx = new Ring(fe.memory, rxq);
    this.tx = new Ring(fe.memory, txq);
    for (let i = 0; i < config.rxSize; i++) {
      const len = config.rxLens[i] ?? 2048;
      this.rxGpa.push(fe.memory.alloc(len, 8));
      this.rxLen.push(len);
    }
    for (let k = 0; k < MAX_BATCH; k++) {
      this.txData.push(fe.memory.alloc(TX_SLOT, 16));
      this.txTable.push(fe.memory.alloc(16 * MAX_SEGMENTS, 16));
    }
  }

  /** Connects and runs QEMU's sequence with the chosen features; undefined when the server
   *  refused the connection or closed it during the handshake. */
  static async connect(socketPath: string, config: DriverConfig): Promise<GuestDriver | undefined> {
    const fe = TestFrontend.connect(socketPath, { memorySize: config.memorySize, regions: config.regions });
    let qs: DriverQueue[];
    try {
      qs = await fe.handshake({
        queues: [config.rxSize, config.txSize],
        features: (offered) => {
          let f = offered;
          if (!config.eventIdx) f &= ~bit(Feature.RING_EVENT_IDX);
          if (!config.mergeable) f &= ~bit(NetFeature.MRG_RXBUF);
          if (!config.indirect) f &= ~bit(Feature.RING_INDIRECT_DESC);
          if (!config.csum) f &= ~(bit(NetFeature.CSUM) | bit(NetFeature.GUEST_CSUM));
          return f;
        },
      });
    } catch {
      fe.close();
      return undefined;
    }
    if (!fe.isConnected) {
      fe.close();
      return undefined;
    }
    const d = new GuestDriver(fe, config, qs[0]!, qs[1]!);
    d.postAllRx();
    return d;
  }

  get connected(): boolean {
    return this.fe.isConnected;
  }

  private postAllRx(): void {
    for (let i = 0; i < this.config.rxSize; i++) {
      this.rx.writeDesc(i, this.rxGpa[i]!, this.rxLen[i]!, VIRTQ_DESC_F_WRITE, 0);
      this.rx.put(i);
      this.rxPosted[i] = true;
    }
    this.rx.setUsedEvent(this.rx.availIdx);
    this.rx.publish();
    this.rx.kick();
  }

  /** Takes vunet's frames out of the RX ring and posts their buffers again. */
  recycleRx(): number {
    let got = 0;
    const mergeable = this.config.mergeable;
    const reposted: number[] = [];
    const n = this.rx.takeUsed((id, len) => {
      if (id >= this.config.rxSize || !this.rxPosted[id]) {
        this.violations.push(`RX used entry for head ${id}, which the device did not hold (len ${len})`);
        return;
      }
      this.rxPosted[id] = false;
      reposted.push(id);
      if (len > this.rxLen[id]!) this.violations.push(`RX used entry for head ${id} says ${len} bytes written into a buffer of ${this.rxLen[id]}`);
      const gpa = this.rxGpa[id]!;
      if (len >= NET_HDR_LEN || (this.partial && len > 0)) this.collect(gpa, Math.min(len, this.rxLen[id]!), mergeable);
      this.rx.put(id);
      got++;
    });
    for (const id of reposted) this.rxPosted[id] = true;
    if (n > 0) {
      this.rx.publish();
      this.rx.kick();
    }
    return got;
  }

  private collect(gpa: number, len: number, mergeable: boolean): void {
    if (this.partial) {
      this.partial.parts.push(this.keepFrames ? this.fe.memory.read(gpa, len) : new Uint8Array(0));
      if (--this.partial.need === 0) this.finish();
      return;
    }
    const hdr = this.fe.memory.read(gpa, NET_HDR_LEN);
    const buffers = mergeable ? hdr[10]! | (hdr[11]! << 8) : 1;
    this.partial = { need: Math.max(1, buffers) - 1, parts: [this.keepFrames ? this.fe.memory.read(gpa + NET_HDR_LEN, len - NET_HDR_LEN) : new Uint8Array(0)] };
    if (this.partial.need === 0) this.finish();
  }

  private finish(): void {
    const p = this.partial!;
    this.partial = undefined;
    this.rxFrames++;
    if (!this.keepFrames) return;
    const total = p.parts.reduce((a, b) => a + b.length, 0);
    const f = new Uint8Array(total);
    let o = 0;
    for (const part of p.parts) {
      f.set(part, o);
      o += part.length;
    }
    if (this.received.length < 4096) this.received.push(f);
  }

  /** Writes a batch into the TX ring, kicks, and waits until every chain is back. */
  async sendBatch(items: readonly TxItem[], timeoutMs: number): Promise<BatchResult> {
    const tx = this.tx;
    const mem = this.fe.memory;
    if (items.length > MAX_BATCH) throw new RangeError('batch too large');
    items.forEach((it, k) => {
      const data = this.txData[k]!;
      const total = NET_HDR_LEN + it.frame.length;
      const bytes = mem.bytes;
      const off = mem.offsetOf(data);
      bytes.set(it.hdr.subarray(0, NET_HDR_LEN), off);
      bytes.set(it.frame.subarray(0, Math.min(it.frame.length, TX_SLOT - NET_HDR_LEN)), off + NET_HDR_LEN);
      const split = it.split.length > 0 && it.split.length <= MAX_SEGMENTS ? it.split : [total];
      const base = k * MAX_SEGMENTS;
      const indirect = it.indirect && this.config.indirect;
      const table = indirect ? mem.offsetOf(this.txTable[k]!) : undefined;
      let at = data;
      split.forEach((len, i) => {
        const last = i === split.length - 1;
        const idx = indirect ? i : base + i;
        const next = indirect ? i + 1 : base + i + 1;
        tx.writeDesc(idx, at, Math.min(len, TX_SLOT), last ? 0 : VIRTQ_DESC_F_NEXT, last ? 0 : next, table);
        at += len;
      });
      if (indirect) tx.writeDesc(base, this.txTable[k]!, 16 * split.length, VIRTQ_DESC_F_INDIRECT, 0);
      tx.put(base);
    });
    const target = tx.availIdx;
    tx.setUsedEvent(target - 1);
    const start = performance.now();
    tx.publish();
    tx.kick();
    // A closed connection (the target died or dropped us) ends the wait early.
    await tx.until(() => tx.usedIdx === target || !this.fe.isConnected, timeoutMs);
    const completed = tx.usedIdx === target;
    const ms = performance.now() - start;
    // Every head exactly once: the heads of this batch are k * MAX_SEGMENTS.
    const seen = new Set<number>();
    tx.takeUsed((id, len) => {
      if (id % MAX_SEGMENTS !== 0 || id / MAX_SEGMENTS >= items.length || seen.has(id))
        this.violations.push(`TX used entry for head ${id}, which the device did not hold`);
      else if (len !== 0) this.violations.push(`TX used entry for head ${id} with length ${len} (nothing is written into TX buffers)`);
      seen.add(id);
    });
    return { completed, ms };
  }

  close(): void {
    this.fe.close();
  }
}
