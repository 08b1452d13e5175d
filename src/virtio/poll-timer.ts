// The device's default TX poll timer (VirtioNetDevice's `timer` option): a one-shot timer armed
// again and again, every millisecond or two while a guest sends in bulk.
//
// Node keeps its timers in one list per delay and drops a list once it is empty. A setTimeout, or
// a Timeout's refresh(), made after the only timer of its delay fired therefore makes the list
// anew each time (an object, a store into a dictionary keyed by the delay, a priority-queue
// insert), and the firing deletes it again: 1–2 % of vunet's CPU in a guest→host transfer at MTU
// 1500. Here one Node interval runs instead while the poll is re-armed between its firings, so the
// list stays; the first firing that finds the poll not re-armed stops it.
//
// refresh() while the interval runs does not push the next firing back (as a Timeout's refresh()
// would): it is at most the delay away. A new delay starts a new interval.
export class PollTimer {
  private interval: NodeJS.Timeout | undefined;
  /** Whether the next firing runs the poll: refresh() since the last one. */
  private armed = false;

  /** Armed at once: `fn` runs in `ms`. */
  constructor(
    private readonly fn: () => void,
    private ms: number,
  ) {
    this.refresh(ms);
  }

  /** Runs `fn` once more, `ms` from now at the latest (Node's timers count whole milliseconds). */
  refresh(ms: number): this {
    this.armed = true;
    if (this.interval !== undefined && ms !== this.ms) {
      clearInterval(this.interval);
      this.interval = undefined;
    }
    this.ms = ms;
    if (this.interval === undefined) this.interval = setInterval(this.fire, ms);
    return this;
  }

  /** Whether Node's interval is running (armed, or waiting for the firing that stops it). */
  get running(): boolean {
    return this.interval !== undefined;
  }

  private readonly fire = (): void => {
    if (!this.armed) {
      clearInterval(this.interval);
      this.interval = undefined;
      return;
    }
    this.armed = false;
    this.fn();
  };
}
