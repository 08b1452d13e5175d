// The structured log the stack and its services write to: one line per event, an object of fields
// then a message. pino's Logger satisfies it; tests pass silentLog.
export interface Log {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  /** Whether lines of `level` are written (pino's): per-packet detail is made only for a log that
   *  writes it. Absent: assumed written. */
  isLevelEnabled?(level: string): boolean;
}

const nothing = (): void => undefined;
export const silentLog: Log = { debug: nothing, info: nothing, warn: nothing, error: nothing, isLevelEnabled: () => false };

/**
 * Rate-limits log lines by key (the message, usually): in each interval the first `burst` lines
 * of a key pass, the rest are counted, and the next line that passes carries `suppressed` — so a
 * flood of refused SYNs or DHCP DISCOVERs costs a few lines, not one per packet. Keys are bounded
 * (they come from the code, not from packets).
 */
export class LogLimiter {
  private readonly keys = new Map<string, { windowStart: number; passed: number; suppressed: number }>();

  constructor(
    private readonly log: Log,
    private readonly now: () => number,
    private readonly intervalMs = 10_000,
    private readonly burst = 3,
  ) {}

  /** A warning; `fields` may be a function, called only for a line that passes (a line held back
   *  then costs no formatting: floods call this per packet). */
  warn(fields: Fields, msg: string, key = msg): void {
    const f = this.pass(key, fields);
    if (f) this.log.warn(f, msg);
  }

  info(fields: Fields, msg: string, key = msg): void {
    const f = this.pass(key, fields);
    if (f) this.log.info(f, msg);
  }

  error(fields: Fields, msg: string, key = msg): void {
    const f = this.pass(key, fields);
    if (f) this.log.error(f, msg);
  }

  /** The fields to log when the line passes (with `suppressed` when lines were held back). */
  private pass(key: string, fields: Fields): object | undefined {
    const now = this.now();
    let k = this.keys.get(key);
    if (!k) {
      if (this.keys.size >= 1024) this.keys.clear();
      k = { windowStart: now, passed: 0, suppressed: 0 };
      this.keys.set(key, k);
    }
    if (now - k.windowStart >= this.intervalMs) {
      k.windowStart = now;
      k.passed = 0;
    }
    if (k.passed >= this.burst) {
      k.suppressed++;
      return undefined;
    }
    k.passed++;
    const obj: object = typeof fields === 'function' ? (fields as () => object)() : fields;
    const out = k.suppressed > 0 ? { ...obj, suppressed: k.suppressed } : obj;
    k.suppressed = 0;
    return out;
  }
}

type Fields = object | (() => object);

/** `log` with its info, warn and error lines rate-limited per message (debug lines, off in
 *  production, pass as they are): what the runtime hands the stack, services and NAT, so that no
 *  guest can make them write a line per packet. */
export function rateLimitedLog(log: Log, now: () => number, intervalMs?: number, burst?: number): Log {
  const limiter = new LogLimiter(log, now, intervalMs, burst);
  return {
    debug: (obj, msg) => log.debug(obj, msg),
    info: (obj, msg = '') => limiter.info(obj, msg),
    warn: (obj, msg = '') => limiter.warn(obj, msg),
    error: (obj, msg = '') => limiter.error(obj, msg),
    isLevelEnabled: (level) => log.isLevelEnabled?.(level) ?? true,
  };
}
