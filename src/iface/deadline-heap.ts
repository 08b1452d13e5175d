// A binary min-heap of items by deadline, with each item's position stored in the item so that
// changing or removing one deadline is O(log n): the per-flow timers of the NAT (a flow's next
// retransmission, delayed ACK, persist probe or TIME_WAIT end) without walking every flow to find
// the earliest. Items with an infinite deadline are not held.

export interface HeapItem {
  /** Position in the heap, -1 when absent. Owned by the heap. */
  heapIndex: number;
  /** The deadline the heap orders by. Owned by the heap: change it through set(). */
  heapDeadline: number;
}

export class DeadlineHeap<T extends HeapItem> {
  private readonly items: T[] = [];

  get size(): number {
    return this.items.length;
  }

  /** The earliest deadline, or Infinity. */
  get next(): number {
    return this.items[0]?.heapDeadline ?? Infinity;
  }

  /** Puts `item` at `deadline` (inserting, moving or, for Infinity, removing it). */
  set(item: T, deadline: number): void {
    if (deadline === Infinity) return this.remove(item);
    const i = item.heapIndex;
    if (i < 0) {
      item.heapDeadline = deadline;
      item.heapIndex = this.items.length;
      this.items.push(item);
      this.up(item.heapIndex);
      return;
    }
    const earlier = deadline < item.heapDeadline;
    item.heapDeadline = deadline;
    if (earlier) this.up(i);
    else this.down(i);
  }

  remove(item: T): void {
    const i = item.heapIndex;
    if (i < 0) return;
    const last = this.items.pop()!;
    item.heapIndex = -1;
    if (last === item) return;
    this.items[i] = last;
    last.heapIndex = i;
    this.down(i);
    this.up(last.heapIndex);
  }

  /** Removes and returns the earliest item if its deadline is at or before `now`. */
  popDue(now: number): T | undefined {
    const top = this.items[0];
    if (!top || top.heapDeadline > now) return undefined;
    this.remove(top);
    return top;
  }

  clear(): void {
    for (const it of this.items) it.heapIndex = -1;
    this.items.length = 0;
  }

  private up(i: number): void {
    const a = this.items;
    const it = a[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = a[p]!;
      if (parent.heapDeadline <= it.heapDeadline) break;
      a[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    a[i] = it;
    it.heapIndex = i;
  }

  private down(i: number): void {
    const a = this.items;
    const n = a.length;
    const it = a[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && a[r]!.heapDeadline < a[l]!.heapDeadline ? r : l;
      const child = a[c]!;
      if (child.heapDeadline >= it.heapDeadline) break;
      a[i] = child;
      child.heapIndex = i;
      i = c;
    }
    a[i] = it;
    it.heapIndex = i;
  }
}
