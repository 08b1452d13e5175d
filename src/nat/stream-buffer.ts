// A guest connection's send buffer kept in its host socket's receive queue (passt's design): the
// kernel holds what the guest has not acknowledged; a segment's data is peeked from its offset
// (again for a retransmission), and what the guest acknowledged is discarded at the end of the
// batch (settle). No byte of it is held in vunet, so a slow guest costs the kernel's socket
// memory (bounded by tcp_rmem and tcp_mem), not ours, and the host peer sees the window close.
//
// Offsets: the queue's head is `acked` bytes before SND.UNA until settle() discards them.
import type { StreamQueue } from './host.js';
import type { PayloadFill } from '../iface/link.js';
import type { SendBuffer } from '../tcp/endpoint.js';
import type { ScatterViews } from '../wire/bytes.js';

/** Acknowledged bytes settle() leaves at the queue's head, at most, while unacknowledged ones
 *  follow (see settle). */
export const SETTLE_BYTES = 64 * 1024;

export class StreamSendBuffer implements SendBuffer, PayloadFill {
  /** Bytes from SND.UNA on in the queue. */
  length = 0;
  /** Acknowledged bytes still at the head of the queue. */
  private acked = 0;
  /** The socket's queue, once open (see TcpSocket.queue). */
  queue: StreamQueue | undefined;
  /** Where fill() peeks from: a queue offset (see queueOffset). */
  fillFrom = 0;

  /** The queue offset of send-buffer offset `off` (unchanged by consume() until settle()). */
  queueOffset(off: number): number {
    return this.acked + off;
  }

  /** PayloadFill: frames held in guest memory get the queue's bytes from fillFrom on. */
  fill(views: ScatterViews, offsets: Float64Array, lengths: Uint32Array, count: number): number {
    const n = this.queue ? this.queue.peekInto(this.fillFrom, views, offsets, lengths, count) : 0;
    return n > 0 ? n : 0;
  }

  /** The queue holds `queued` bytes now: returns how many are new. */
  grow(queued: number): number {
    const n = queued - this.acked - this.length;
    if (n <= 0) return 0;
    this.length += n;
    return n;
  }

  copyOut(off: number, len: number, dst: Uint8Array, dstOff: number): number {
    const n = this.queue ? this.queue.peek(this.acked + off, dst, dstOff, len) : 0;
    return n > 0 ? n : 0;
  }

  consume(n: number): void {
    this.length -= n;
    this.acked += n;
  }

  /**
   * Discards what the guest acknowledged once it is SETTLE_BYTES or a quarter of what the queue
   * is known to hold, whichever is less, or all there is (the guest acknowledged everything), or
   * `all` is set: a discard is a system call, and a guest that acknowledges every other frame
   * would otherwise cost one per event-loop turn. (The host peer's window stays that much
   * smaller meanwhile: the quarter keeps a small receive buffer's window from halving.) False
   * when the socket failed.
   */
  settle(all = false): boolean {
    if (this.acked === 0 || !this.queue) return true;
    if (!all && this.length > 0 && this.acked < Math.min(SETTLE_BYTES, (this.acked + this.length) / 4)) return true;
    const r = this.queue.discard(this.acked);
    if (r < 0) return false;
    this.acked -= r;
    return true;
  }

  /** Nothing left to send or to discard. */
  get drained(): boolean {
    return this.length === 0 && this.acked === 0;
  }

  release(): void {
    this.queue = undefined;
  }
}
