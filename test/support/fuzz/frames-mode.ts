// Frames mode: batches of mutated guest frames through the TX ring of a well-formed queue, with RX
// buffers recycled so vunet's answers flow. Between them a guest peer (guest-peer.ts) answers
// vunet's ARP and NDP and keeps TCP connections to the target's loopback services going, so the
// stateful paths run too. The connection (and its feature set) is replaced now and then, so
// attach, detach and the flow resets on disconnect are exercised as well.
import { buildCorpus } from './corpus.js';
import type { CorpusEntry } from './corpus.js';
import { GuestDriver, MAX_BATCH, randomDriverConfig, randomSplit, sameConfig } from './driver.js';
import type { DriverConfig, TxItem } from './driver.js';
import { GuestPeer } from './guest-peer.js';
import { FrameMutator, mutateNetHeader } from './mutate.js';
import type { Rng } from './rng.js';
import { fromHexString, toHex } from './rng.js';
import { waitDisconnected } from './runner.js';
import type { BatchJson, Runner, RunOutcome } from './runner.js';
import { arpAnswered } from './served.js';
import type { TargetProcess } from './target-process.js';
import { NET_HDR_LEN } from '../../../src/virtio/net-device.js';

export interface FramesBatch {
  /** The connection these frames went to (a batch with another config reconnects first). */
  config: DriverConfig;
  items: (TxItem & { base?: string; ops?: string[] })[];
}

export const BATCH_TIMEOUT_MS = 5000;

export class FramesRunner implements Runner<FramesBatch> {
  readonly mode = 'frames' as const;
  private target: TargetProcess | undefined;
  private driver: GuestDriver | undefined;
  private readonly mutator: FrameMutator;
  private readonly corpus: CorpusEntry[];
  private config: DriverConfig;
  /** Batches left before the connection is replaced. */
  private connectionLeft = 0;
  private connections = 0;
  private incomplete = 0;
  private rxFramesBefore = 0;

  private readonly peer: GuestPeer;

  constructor(private readonly rng: Rng) {
    this.corpus = buildCorpus();
    this.mutator = new FrameMutator(rng, this.corpus);
    this.peer = new GuestPeer(rng, this.mutator);
    this.config = randomDriverConfig(rng);
  }

  async attach(target: TargetProcess): Promise<void> {
    this.driver?.close();
    this.driver = undefined;
    this.target = target;
  }

  private async connect(config: DriverConfig): Promise<GuestDriver> {
    const target = this.target!;
    this.rxFramesBefore += this.driver?.rxFrames ?? 0;
    this.driver?.close();
    this.driver = undefined;
    for (let attempt = 0; attempt < 10; attempt++) {
      await waitDisconnected(target);
      const d = await GuestDriver.connect(target.socketPath, config);
      if (d) {
        this.connections++;
        d.keepFrames = true;
        this.peer.reset();
        this.driver = d;
        this.config = config;
        return d;
      }
    }
    throw new Error('frames: the target refused every connection');
  }

  generate(_iteration: number): FramesBatch {
    const r = this.rng;
    if (this.connectionLeft-- <= 0) {
      this.config = randomDriverConfig(r);
      this.connectionLeft = r.range(200, 3000);
    }
    const n = r.weighted<number>([
      [4, r.range(1, 4)],
      [3, r.range(5, 16)],
      [2, r.range(17, MAX_BATCH)],
    ]);
    const items: FramesBatch['items'] = [];
    const item = (frame: Uint8Array, hdr: Uint8Array, base: string, ops: string[] | undefined): void =>
      void items.push({
        hdr,
        frame,
        split: randomSplit(r, NET_HDR_LEN + frame.length),
        indirect: this.config.indirect && r.chance(0.2),
        base,
        ...(ops ? { ops } : {}),
      });
    for (const p of this.peer.frames().slice(0, MAX_BATCH / 2)) item(p.frame, new Uint8Array(NET_HDR_LEN), p.base, p.ops);
    const total = Math.min(MAX_BATCH, Math.max(n, items.length + 1));
    while (items.length < total) {
      const m = this.mutator.next();
      item(m.frame, mutateNetHeader(r, m.frame.length), m.base, m.ops);
    }
    // The peer's frames among the others, not always first.
    for (let i = items.length - 1; i > 0; i--) {
      const j = r.int(i + 1);
      [items[i], items[j]] = [items[j]!, items[i]!];
    }
    return { config: this.config, items };
  }

  async run(batch: FramesBatch): Promise<RunOutcome> {
    let d = this.driver;
    if (!d || !d.connected || !sameConfig(d.config, batch.config)) d = await this.connect(batch.config);
    const res = await d.sendBatch(batch.items, BATCH_TIMEOUT_MS);
    d.recycleRx();
    for (const f of d.received) this.peer.observe(f);
    d.received.length = 0;
    if (!res.completed) {
      this.incomplete++;
      // The next batch starts over on a new connection.
      d.close();
      this.driver = undefined;
    }
    const violation = d.violations.splice(0, d.violations.length).slice(0, 5).join('; ');
    return {
      inputs: batch.items.length,
      ms: res.ms,
      completed: res.completed,
      ...(violation ? { violation } : {}),
      ...(res.completed
        ? {}
        : { note: d.connected ? `${batch.items.length} chains not all returned within ${BATCH_TIMEOUT_MS} ms` : 'the target closed the connection' }),
    };
  }

  notes(): string[] {
    return [`${this.connections} connections, ${this.rxFramesBefore + (this.driver?.rxFrames ?? 0)} frames received from vunet`];
  }

  async served(): Promise<boolean> {
    const d = this.driver && this.driver.connected ? this.driver : await this.connect(this.config);
    return arpAnswered(d);
  }

  toJson(b: FramesBatch): BatchJson {
    return {
      config: b.config,
      frames: b.items.map((it) => ({
        hdr: toHex(it.hdr),
        frame: toHex(it.frame),
        split: it.split,
        indirect: it.indirect,
        ...(it.base ? { base: it.base } : {}),
        ...(it.ops ? { ops: it.ops } : {}),
      })),
    };
  }

  fromJson(j: BatchJson): FramesBatch {
    const frames = j.frames as { hdr: string; frame: string; split: number[]; indirect: boolean; base?: string; ops?: string[] }[];
    return {
      config: j.config as DriverConfig,
      items: frames.map((f) => ({
        hdr: fromHexString(f.hdr),
        frame: fromHexString(f.frame),
        split: f.split,
        indirect: f.indirect,
        ...(f.base ? { base: f.base } : {}),
        ...(f.ops ? { ops: f.ops } : {}),
      })),
    };
  }

  async close(): Promise<void> {
    this.driver?.close();
    this.driver = undefined;
  }
}
