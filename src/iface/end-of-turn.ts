// Work a component leaves for the end of what it is part of: a flush of what it queued.
//
// Inside an owner's batch (`inBatch` true) nothing is scheduled: the owner calls the flush when
// the batch ends (the runtime's BatchClock does). Outside one, the flush runs at the end of this
// turn, in a microtask, once however many times it was asked for. Scheduling is what allocates
// (Node's queueMicrotask makes an AsyncResource and a bound function per call), so a batch that
// sends a thousand frames schedules nothing.
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
    queueMicrotask(this.run);
  }

  private readonly run = (): void => {
    this.scheduled = false;
    this.flush();
  };
}
