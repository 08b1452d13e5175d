// Named event counters (drops by reason, messages by type). Off the hot path: only drops and
// control messages count here; per-frame totals live in plain fields of their owners.
export class Counters {
  private readonly values = new Map<string, number>();

  add(name: string, n = 1): void {
    this.values.set(name, (this.values.get(name) ?? 0) + n);
  }

  get(name: string): number {
    return this.values.get(name) ?? 0;
  }

  /** A snapshot for logs and status output, sorted by name. */
  snapshot(): Record<string, number> {
    return Object.fromEntries([...this.values.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }
}

/** Event names by number, `${prefix}${n}` for a message type n (0–255), each made once: a counter
 *  per packet by type then builds no string. */
export function numberedNames(prefix: string): (n: number) => string {
  const names: string[] = [];
  return (n) => (names[n] ??= `${prefix}${n}`);
}
