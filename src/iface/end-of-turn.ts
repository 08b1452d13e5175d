// Work a component leaves for the end of what it is part of: a flush of what it queued.
//
// Inside an owner's batch (`inBatch` true) nothing is scheduled: the owner calls the flush when
// the batch ends (the runtime's BatchClock does). Outside one, the flush runs at the end of this
// turn, in a microtask, once however many times it was asked for. Scheduling is what allocates,
// so a batch that sends a thousand frames schedules nothing.
//
// The microtask is a reaction to a promise resolved once (`atEndOfTurn`): V8's builtins queue it
// (two small objects) and Node runs it from C++ when the callback that queued it returns. Node's
// queueMicrotask makes an AsyncResource and a bound function per call, and process.nextTick an
// object literal with symbol keys, which V8 builds in its runtime (~1 µs), then a turn of
// processTicksAndRejections in JavaScript.

const RESOLVED = Promise.resolve();

/** Runs `fn` at the end of this turn (a microtask; what it throws is an uncaught exception, as
 *  from queueMicrotask). `fn` should be made once: this allocates only the reaction. */
export function atEndOfTurn(fn: () => void): void {
  void RESOLVED.then(fn);
}

export class EndOfTurn {
  private scheduled = false;

  constructor(
    private readonly flush: () => void,
    private readonly inBatch?: () => boolean,
  ) {}

  /** The flush is due: at the end of the owner's batch, else at the end of this turn. */
  request(): void {
    if (this.scheduled || this.inBatch?.() === true) return;
    this.scheduled = true;
    atEndOfTurn(this.run);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    this.flush();
  };
}
