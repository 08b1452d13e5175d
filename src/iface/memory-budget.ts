// One memory budget for everything that grows with what the guest or the host sends: TCP send and
// receive buffers, fragments in reassembly, packets waiting for ARP/NDP, frames waiting for the
// guest's receive buffers. Each user draws from it through a named account, so the status shows
// where the memory is and the sum of all of them never passes the limit.
//
// Two kinds of drawing:
// - take(): what something needs to exist at all (a TCP flow's minimum buffers, a fragment, a
//   queued packet). Refused only at the limit: a new flow is then refused, a fragment dropped.
// - grow(): growth beyond that minimum (a TCP buffer doubling toward its maximum). Refused once
//   less than `reserve` would stay free, so a full budget still has room for new flows, pings and
//   DNS: under pressure windows shrink first, and only at the very limit is anything refused.
// Nothing here allocates: accounts are bookkeeping, the users allocate what they were granted.

export interface MemorySnapshot {
  limit: number;
  used: number;
  peak: number;
  /** take() or grow() calls refused, over the budget's life. */
  refused: number;
  /** Bytes held per account. */
  accounts: Record<string, number>;
}

export class MemoryBudget {
  used = 0;
  peak = 0;
  refused = 0;
  /** Bytes grow() leaves free for take() (an eighth of the limit). */
  readonly reserve: number;
  private readonly accounts = new Map<string, MemoryAccount>();

  constructor(readonly limit: number) {
    this.reserve = Math.floor(limit / 8);
  }

  /** The account named `name` (one per name, made on first use). */
  account(name: string): MemoryAccount {
    let a = this.accounts.get(name);
    if (!a) {
      a = new MemoryAccount(this, name);
      this.accounts.set(name, a);
    }
    return a;
  }

  get free(): number {
    return Math.max(0, this.limit - this.used);
  }

  /** What grow() may still hand out. */
  get growable(): number {
    return Math.max(0, this.limit - this.reserve - this.used);
  }

  /** More than half the limit is in use: idle buffers should give their memory back. */
  get underPressure(): boolean {
    return this.used > this.limit / 2;
  }

  snapshot(): MemorySnapshot {
    const accounts: Record<string, number> = {};
    for (const [name, a] of this.accounts) accounts[name] = a.used;
    return { limit: this.limit, used: this.used, peak: this.peak, refused: this.refused, accounts };
  }
}

export class MemoryAccount {
  used = 0;
  refused = 0;

  constructor(
    readonly budget: MemoryBudget,
    readonly name: string,
  ) {}

  /** Draws `n` bytes something needs to exist; false (nothing drawn) past the limit. */
  take(n: number): boolean {
    const b = this.budget;
    if (n > b.limit - b.used) return this.refuse();
    this.add(n);
    return true;
  }

  /** Draws `n` bytes of growth; false (nothing drawn) when the reserve would be touched. */
  grow(n: number): boolean {
    if (n > this.budget.growable) return this.refuse();
    this.add(n);
    return true;
  }

  /** Whether grow(n) would succeed now. */
  canGrow(n: number): boolean {
    return n <= this.budget.growable;
  }

  /** Gives back `n` bytes drawn earlier. */
  give(n: number): void {
    this.used -= n;
    this.budget.used -= n;
  }

  private add(n: number): void {
    const b = this.budget;
    this.used += n;
    b.used += n;
    if (b.used > b.peak) b.peak = b.used;
  }

  private refuse(): false {
    this.refused++;
    this.budget.refused++;
    return false;
  }
}
