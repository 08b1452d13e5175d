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
    return Object.fromEntries([...this.values.entries()].sort(([a], [b]) => compareNames(a, b)));
  }
}

/** Orders names by their UTF-16 code units. (Not localeCompare: its first call in a process builds
 *  ICU's collator, ~10 ms of CPU, and counter names are ASCII identifiers, not words.) */
export function compareNames(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Event names by number, `${prefix}${n}` for a message type n (0–255), each made once: a counter
 *  per packet by type then builds no string. */
export function numberedNames(prefix: string): (n: number) => string {
  const names: string[] = [];
  return (n) => (names[n] ??= `${prefix}${n}`);
}
