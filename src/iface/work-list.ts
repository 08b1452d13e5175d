// A list filled during a batch and emptied at its end (the flows a batch dirtied, say), whose
// storage is kept from batch to batch.
//
// An array emptied with `length = 0` loses its backing store in V8, so the next push allocates a
// new one: an allocation per batch on the data paths, which is most of what a batch of a few
// frames allocates. Here emptying only forgets the items (so they can be collected) and keeps
// the slots.
export class WorkList<T> {
  private readonly items: (T | undefined)[] = [];
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    this.items[this.count++] = item;
  }

  /** The item at `i` (0 ≤ i < length). */
  at(i: number): T {
    return this.items[i] as T;
  }

  /** Forgets the first `n` items; the rest move to the front, in order. */
  dropFront(n: number): void {
    const keep = this.count - n;
    for (let i = 0; i < keep; i++) this.items[i] = this.items[i + n];
    for (let i = Math.max(keep, 0); i < this.count; i++) this.items[i] = undefined;
    this.count = Math.max(keep, 0);
  }

  /** Keeps only the items `keep` says yes to, in order. */
  filter(keep: (item: T) => boolean): void {
    let n = 0;
    for (let i = 0; i < this.count; i++) {
      const item = this.items[i] as T;
      if (keep(item)) this.items[n++] = item;
    }
    for (let i = n; i < this.count; i++) this.items[i] = undefined;
    this.count = n;
  }

  clear(): void {
    this.dropFront(this.count);
  }
}
