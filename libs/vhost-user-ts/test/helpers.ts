// Shared test helpers: a loopback device (every frame sent on a TX queue comes back on the RX queue
// of its pair) and fd/mapping counters for leak checks.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { VhostUserDevice } from '../src/device.js';
import type { LogFn, Logger, LogLevel } from '../src/logger.js';
import { native } from '../src/native.js';
import { VhostUserServer } from '../src/server.js';
import type { ServerOptions } from '../src/server.js';
import { DescriptorChain, VirtQueue } from '../src/virtqueue.js';

export class LoopbackDevice implements VhostUserDevice {
  readonly features = 0n;
  readonly running = new Set<number>();
  readonly events: string[] = [];
  /** Frames seen on TX queues (copies). */
  readonly frames: Uint8Array[] = [];
  dropped = 0;
  private readonly queues = new Map<number, VirtQueue>();
  private readonly txChain = new DescriptorChain(1024);
  private readonly rxChain = new DescriptorChain(1024);
  private readonly buf = new Uint8Array(1 << 17);

  constructor(readonly queueCount = 2) {}

  queueStarted(q: VirtQueue): void {
    this.running.add(q.index);
    this.queues.set(q.index, q);
    this.events.push(`start ${q.index}`);
  }
  queueStopped(q: VirtQueue): void {
    this.running.delete(q.index);
    this.queues.delete(q.index);
    this.events.push(`stop ${q.index}`);
  }
  connected(): void {
    this.events.push('connected');
  }
  disconnected(): void {
    this.events.push('disconnected');
  }
  queueKicked(q: VirtQueue): void {
    if (q.index % 2 === 0) return; // RX buffers are used when frames arrive
    const rx = this.queues.get(q.index - 1);
    do {
      while (q.pop(this.txChain)) {
        const len = this.txChain.read(0, this.buf, 0, Math.min(this.txChain.readableLength, this.buf.length));
        this.frames.push(this.buf.slice(0, len));
        if (rx && rx.pop(this.rxChain)) {
          const n = this.rxChain.write(0, this.buf, 0, len);
          rx.pushUsed(this.rxChain.head, n);
        } else {
          this.dropped++;
        }
        q.pushUsed(this.txChain.head, 0);
      }
      rx?.flush();
      q.flush();
    } while (q.enableNotification());
  }
}

export function tempSocket(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vhu-test-'));
  return { path: join(dir, 'sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function startServer(device: VhostUserDevice, opts: ServerOptions = {}): { server: VhostUserServer; path: string; stop: () => void } {
  const { path, cleanup } = tempSocket();
  const server = new VhostUserServer(device, opts);
  server.listen(path);
  return {
    server,
    path,
    stop: () => {
      server.close();
      cleanup();
    },
  };
}

export function openFds(): number {
  return readdirSync('/proc/self/fd').length;
}

export function liveMappings(): number {
  return native.liveMappings();
}

export const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Resolves once the event loop has polled its fds at least twice more (three check phases from
 * now: the first may come before this iteration's poll is over). The backend and the frontend of
 * these tests live in this process, and the kernel makes an eventfd or unix socket ready when it
 * is written: a kick, a call or a message sent before settle() has been handled after it, and a
 * level-triggered fd left ready would have been reported again. What checks that something did
 * NOT happen waits for this rather than for a guessed time.
 */
export async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}

/** Waits until `cond` holds (polling), or throws after `timeoutMs`. */
export async function until(cond: () => boolean, timeoutMs = 2000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick(5);
  }
}

export interface LogLine {
  level: LogLevel;
  obj: Record<string, unknown>;
  msg: string;
}

/** A Logger that keeps every line, for tests that check what was logged (and how often). */
export class CaptureLogger implements Logger {
  readonly lines: LogLine[] = [];
  readonly debug = this.at('debug');
  readonly info = this.at('info');
  readonly warn = this.at('warn');
  readonly error = this.at('error');

  private at(level: LogLevel): LogFn {
    return (obj: object | string, msg?: string) => {
      if (typeof obj === 'string') this.lines.push({ level, obj: {}, msg: obj });
      else this.lines.push({ level, obj: obj as Record<string, unknown>, msg: msg ?? '' });
    };
  }

  /** Lines whose message matches. */
  matching(re: RegExp): LogLine[] {
    return this.lines.filter((l) => re.test(l.msg));
  }
}
