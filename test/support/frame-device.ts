// A frame-in/frame-out link for stack tests: frames the stack sends are captured (copied), frames
// are injected as the guest would send them, and time is a number the test moves.
import { Stack } from '../../src/iface/stack.js';
import type { StackOptions } from '../../src/iface/stack.js';
import type { StackConfig } from '../../src/iface/config.js';
import { defaultConfig } from '../../src/iface/config.js';
import type { FrameLink, PartialChecksum, PayloadFill, PayloadSend } from '../../src/iface/link.js';
import { completeChecksum } from '../../src/wire/checksum.js';

export class FrameDevice implements FrameLink {
  readonly sent: Uint8Array[] = [];
  /** For each frame in `sent`: its partial checksum (a copy), if it was sent with one. */
  readonly partials: (PartialChecksum | undefined)[] = [];
  accept = true;
  /** What the link says of partial checksums (a guest with GUEST_CSUM: true). */
  partialChecksums = false;
  /** What the link says of segmentation offload (a guest with GUEST_TSO4/6: true). */
  gso = false;
  segmentationOffload(): boolean {
    return this.gso;
  }
  /** What hasRoom() answers (bulk senders stop while false). */
  room = true;
  hasRoom(): boolean {
    return this.room;
  }
  send(frame: Uint8Array, partial?: PartialChecksum): boolean {
    if (!this.accept) return false;
    if (partial && !this.partialChecksums) throw new Error('a partial checksum over a link that did not allow it');
    this.sent.push(frame.slice());
    if ((partial?.segmentSize ?? 0) !== 0 && !this.gso) throw new Error('a segmentation-offload frame over a link that did not allow it');
    this.partials.push(partial ? { ...partial } : undefined);
    this.wake();
    return true;
  }
  private waiters: (() => void)[] = [];
  /** Resolves once a frame is sent (at once when some wait in `sent`), or after `ms` (what the
   *  stack sends next may wait for a timer, which only the test's clock moves). For stacks driven
   *  by real host sockets: a wait on the event rather than a guessed time. */
  nextSend(ms: number): Promise<void> {
    if (this.sent.length > 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.push(done);
    });
  }
  protected wake(): void {
    for (const w of [...this.waiters]) w();
  }
  /** Returns and forgets what was sent. */
  take(): Uint8Array[] {
    this.partials.length = 0;
    return this.sent.splice(0, this.sent.length);
  }
  /** As take(), each frame with its partial checksum. */
  takeWithPartial(): { frame: Uint8Array; partial: PartialChecksum | undefined }[] {
    const out = this.sent.map((frame, i) => ({ frame, partial: this.partials[i] }));
    this.take();
    return out;
  }
}

/**
 * A FrameDevice with the zero-copy path (FrameLink.sendHeaders): frames wait for their payload
 * until completePayloads(), which hands the filler each frame's payload as two spans of one
 * "guest memory" buffer (a scatter list), then sends the whole frames.
 */
export class InPlaceFrameDevice extends FrameDevice {
  private held: { headers: Uint8Array; payload: number; partial: PartialChecksum }[] = [];
  /** completePayloads() calls that had frames to fill, and frames sent through them. */
  fills = 0;
  framesInPlace = 0;
  /** For a link without segmentation offload: the frames it would cut large segments into
   *  (FrameLink.cutBudget; 0: it cuts none). Each segment cut takes its frames from it. */
  cut = 0;
  /** Frames cutBudget() claims beyond `cut` (a budget the link then does not honour). */
  cutOverstated = 0;
  /** Segments larger than one frame it took to cut: their payload and segment size. */
  readonly cutSegments: { payload: number; size: number }[] = [];
  cutBudget(): number {
    return this.cut + this.cutOverstated;
  }
  sendHeaders(headers: Uint8Array, payloadLength: number, partial: PartialChecksum): PayloadSend {
    if (!this.accept || !this.room) return 'noRoom';
    const size = partial.segmentSize ?? 0;
    if (size > 0 && !this.gso) {
      const pieces = Math.ceil(payloadLength / size);
      if (pieces > this.cut) return 'noRoom';
      this.cut -= pieces;
      this.cutSegments.push({ payload: payloadLength, size });
    }
    this.held.push({ headers: headers.slice(), payload: payloadLength, partial: { ...partial } });
    return 'sent';
  }
  completePayloads(fill: PayloadFill): boolean {
    const held = this.held;
    if (held.length === 0) return true;
    this.held = [];
    this.fills++;
    const total = held.reduce((n, h) => n + h.payload, 0);
    const memory = new Uint8Array(total + 8 * held.length);
    const views: Uint8Array[] = [];
    const offsets: number[] = [];
    const lengths: number[] = [];
    let at = 3;
    for (const h of held) {
      const first = Math.min(h.payload, 7);
      for (const len of [first, h.payload - first]) {
        if (len === 0) continue;
        views.push(memory);
        offsets.push(at);
        lengths.push(len);
        at += len;
      }
      at += 5; // a gap: the spans are not contiguous
    }
    const n = fill.fill(views, Float64Array.from(offsets), Uint32Array.from(lengths), views.length);
    if (n !== total) return false;
    let span = 0;
    for (const h of held) {
      const frame = new Uint8Array(h.headers.length + h.payload);
      frame.set(h.headers, 0);
      let put = h.headers.length;
      while (put < frame.length) {
        frame.set(memory.subarray(offsets[span], offsets[span]! + lengths[span]!), put);
        put += lengths[span]!;
        span++;
      }
      // A guest without partial checksums gets the checksum completed (as the virtio device does).
      if (!this.partialChecksums) completeChecksum(frame, h.partial.start, frame.length, h.partial.offset);
      this.sent.push(frame);
      this.partials.push(this.partialChecksums ? h.partial : undefined);
      this.framesInPlace++;
    }
    this.wake();
    return true;
  }
}

export class TestClock {
  constructor(public t = 1_000_000) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

export function makeStack(config: Partial<StackConfig> = {}, opts: StackOptions = {}, link: FrameDevice = new FrameDevice()) {
  const clock = new TestClock();
  const stack = new Stack({ ...defaultConfig(), ...config }, link, { clock, ...opts });
  const inject = (frame: Uint8Array, checksumPartial = false): Uint8Array[] => {
    stack.receive(frame, { checksumPartial });
    return link.take();
  };
  return { stack, link, clock, inject };
}

/**
 * Runs the stack's timers up to `until` (the clock jumps from deadline to deadline), calling
 * `after` once each poll so the caller can collect what was sent; ends with the clock at `until`.
 */
export function runTimers(stack: Stack, clock: TestClock, until: number, after: () => void): void {
  for (let i = 0; i < 10_000 && stack.pollAt() <= until; i++) {
    clock.t = Math.max(clock.t, stack.pollAt());
    stack.poll();
    after();
  }
  clock.t = Math.max(clock.t, until);
}
