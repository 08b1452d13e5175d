// The library logs through this interface; pino's Logger satisfies it, and the default is silent.
export interface LogFn {
  (obj: object, msg?: string): void;
  (msg: string): void;
}

export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
  isLevelEnabled?(level: string): boolean;
}

const noop: LogFn = () => undefined;
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface RateLimitOptions {
  /** Least time between two lines with the same key, in ms (default 10 000). */
  intervalMs?: number;
  /** Milliseconds from any origin that never goes back (default performance.now). */
  clock?: () => number;
  /** Distinct keys remembered; the least recently logged is forgotten first (default 256). */
  maxKeys?: number;
  /** Log the count of suppressed lines when a window ends even if no new line comes, from an
   *  unref'd timer (default true). Without it, call flush(). */
  autoFlush?: boolean;
}

interface Window {
  level: LogLevel;
  msg: string;
  /** No line with this key is written before this time. */
  until: number;
  suppressed: number;
  /** The fields of the last suppressed line, for the summary. */
  last: object;
}

/**
 * Rate-limited logging keyed by message. The first line with a key is written at once; more in
 * the next `intervalMs` are counted, not written. The first one after the window is written with
 * " (K more like this)" and a `suppressed: K` field, and opens a new window; a window that ends
 * with suppressed lines and no new one is summed up the same way by flush() (or its timer). A peer
 * retrying in a loop thus costs one line per key per interval, and the count says how bad it was.
 *
 * Keys are messages: put what varies (queue, errno, reason) in the fields, not in the text.
 */
export class RateLimitedLogger {
  readonly intervalMs: number;
  private readonly clock: () => number;
  private readonly maxKeys: number;
  private readonly autoFlush: boolean;
  private readonly windows = new Map<string, Window>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    readonly logger: Logger,
    opts: RateLimitOptions = {},
  ) {
    this.intervalMs = opts.intervalMs ?? 10_000;
    this.clock = opts.clock ?? (() => performance.now());
    this.maxKeys = opts.maxKeys ?? 256;
    this.autoFlush = opts.autoFlush ?? true;
  }

  debug(obj: object, msg: string, key?: string): boolean {
    return this.log('debug', obj, msg, key);
  }
  info(obj: object, msg: string, key?: string): boolean {
    return this.log('info', obj, msg, key);
  }
  warn(obj: object, msg: string, key?: string): boolean {
    return this.log('warn', obj, msg, key);
  }
  error(obj: object, msg: string, key?: string): boolean {
    return this.log('error', obj, msg, key);
  }

  /** Writes the line unless its key (default: the message) was written less than `intervalMs`
   *  ago; returns whether it was written. */
  log(level: LogLevel, obj: object, msg: string, key = msg): boolean {
    const now = this.clock();
    const w = this.windows.get(key);
    if (w && now < w.until) {
      w.suppressed++;
      w.last = obj;
      this.armFlush();
      return false;
    }
    const suppressed = w?.suppressed ?? 0;
    // Re-inserted below so the Map's order is least recently written first.
    if (w) this.windows.delete(key);
    else if (this.windows.size >= this.maxKeys) this.forgetOldest();
    this.write(level, suppressed > 0 ? { ...obj, suppressed } : obj, suppressed > 0 ? `${msg} (${suppressed} more like this)` : msg);
    this.windows.set(key, { level, msg, until: now + this.intervalMs, suppressed: 0, last: obj });
    return true;
  }

  /** Sums up every window that has ended with suppressed lines (all of them with `all`). */
  flush(all = false): void {
    const now = this.clock();
    for (const w of this.windows.values()) {
      if (w.suppressed === 0 || (!all && now < w.until)) continue;
      this.summarize(w);
      w.until = now + this.intervalMs;
    }
  }

  /** Sums up everything pending and stops the timer. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush(true);
  }

  private summarize(w: Window): void {
    this.write(w.level, { ...w.last, suppressed: w.suppressed }, `${w.msg} (${w.suppressed} more like this)`);
    w.suppressed = 0;
  }

  private forgetOldest(): void {
    for (const [key, w] of this.windows) {
      if (w.suppressed > 0) this.summarize(w);
      this.windows.delete(key);
      return;
    }
  }

  private armFlush(): void {
    if (!this.autoFlush || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
      for (const w of this.windows.values()) {
        if (w.suppressed > 0) return this.armFlush();
      }
    }, this.intervalMs);
    this.timer.unref();
  }

  private write(level: LogLevel, obj: object, msg: string): void {
    this.logger[level](obj, msg);
  }
}
