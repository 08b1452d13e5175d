// A LayerContext for testing one part of a layer alone (icmpv4.ts, icmpv6.ts, ...): the output
// frame, what was transmitted (copied), the counters and the router hooks the test sets, and a
// clock the test moves.
import { Counters } from '../../src/iface/counters.js';
import { defaultConfig } from '../../src/iface/config.js';
import type { StackConfig } from '../../src/iface/config.js';
import type { LayerContext, Router } from '../../src/iface/layer.js';
import { silentLog } from '../../src/iface/log.js';
import { MemoryBudget } from '../../src/iface/memory-budget.js';

export class TestLayerContext implements LayerContext {
  readonly config: StackConfig;
  readonly counters = new Counters();
  readonly log = silentLog;
  readonly random = (): number => 0.5;
  readonly wallClock = (): number => 0;
  readonly memory = new MemoryBudget(1 << 20);
  readonly out: Uint8Array;
  readonly router: Router = {};
  /** Frames transmitted (copies of out[0, len)). */
  readonly sent: Uint8Array[] = [];
  /** Control-plane events noted and drop reasons, in order. */
  readonly notes: string[] = [];
  readonly drops: string[] = [];
  t = 1_000_000;

  constructor(config: Partial<StackConfig> = {}) {
    this.config = { ...defaultConfig(), ...config };
    this.out = new Uint8Array(14 + this.config.mtu);
  }

  now(): number {
    return this.t;
  }
  transmit(len: number): boolean {
    this.sent.push(this.out.slice(0, len));
    return true;
  }
  sendSegmented(): boolean {
    throw new Error('no segmentation offload in a layer test');
  }
  loadRxPayload(): void {}
  /** Per-packet detail is made (as under --log-level debug), so the tests run that code too. */
  readonly debugging = true;
  note(name: string): void {
    this.counters.add(name);
    this.notes.push(name);
  }
  drop(reason: string): void {
    this.counters.add(reason);
    this.drops.push(reason);
  }
}
