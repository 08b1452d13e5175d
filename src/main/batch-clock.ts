// The runtime's clock: performance.now(), read once per batch of work.
//
// A batch is what one event-loop callback does (a slice of guest frames, a host socket event, a
// timer run). Inside it every now() returns the time the batch began, so the stack, the NAT and
// the TCP endpoints read the clock per frame at no cost: performance.now() boxes a fresh number
// on each call, the last allocation left per frame on the data paths. A batch is short (a TX
// slice ends after a few milliseconds), which is all the staleness this adds; TCP's timestamps
// and timers count milliseconds. The batch's time is whole milliseconds: a small integer, which
// V8 passes around unboxed (a fraction would be a heap number at every call it crosses). Outside
// a batch now() reads the time itself.
import { performance } from 'node:perf_hooks';
import type { Clock } from '../iface/stack.js';

export class BatchClock implements Clock {
  private depth = 0;
  private at = 0;

  /** `ended` runs when the outermost batch ends: the work a batch leaves for its end (publishing
   *  the frames it sent to the guest, the datagrams it queued for the host). */
  constructor(private readonly ended: () => void = () => undefined) {}

  /** Inside a batch (its end will come). */
  get inBatch(): boolean {
    return this.depth > 0;
  }

  /** A batch begins (batches nest: the outermost one reads the time). */
  begin(): void {
    if (this.depth++ === 0) this.at = Math.floor(performance.now());
  }

  /** The batch begun last ends. */
  end(): void {
    if (this.depth === 0) return;
    if (--this.depth === 0) this.ended();
  }

  now(): number {
    return this.depth > 0 ? this.at : performance.now();
  }
}
