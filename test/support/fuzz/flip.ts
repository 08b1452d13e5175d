// The main-thread side of the second writer (flip-worker.ts): which header fields of a frame it
// rewrites, with which values, and how the worker is started.
import { Worker } from 'node:worker_threads';
import { layoutOf } from './layout.js';

/** One field of one queued frame: its place in the memfd, its width, the value the frame was
 *  built with, and the values the second writer puts there instead. */
export interface FlipField {
  off: number;
  width: 1 | 2;
  orig: number;
  values: number[];
}

const W = (a: number[]): number[] => a;

/** The fields a parser trusts most in `frame`, which starts at file offset `base`. */
export function flipFields(frame: Uint8Array, base: number): FlipField[] {
  const out: FlipField[] = [];
  const l = layoutOf(frame);
  const add = (at: number, width: 1 | 2, values: number[]): void => {
    if (at < 0 || at + width > frame.length) return;
    const orig = width === 1 ? frame[at]! : (frame[at]! << 8) | frame[at + 1]!;
    out.push({ off: base + at, width, orig, values });
  };
  add(12, 2, W([0x0800, 0x86dd, 0x0806, 0x8100]));
  if (l.etherType === 0x0806) {
    add(l.l3 + 6, 2, W([1, 2, 3, 0xffff]));
    add(l.l3 + 4, 1, W([0, 6, 0xff]));
  }
  if (l.family === 4) {
    const total = (frame[l.l3 + 2]! << 8) | frame[l.l3 + 3]!;
    add(l.l3, 1, W([0x40, 0x44, 0x45, 0x46, 0x4f, 0x55, 0x65]));
    add(l.l3 + 2, 2, W([0, 19, 20, total - 1, total + 1, 0xffff, 576]));
    add(l.l3 + 6, 2, W([0, 0x2000, 0x4000, 0x2001, 0x00b9, 0x1fff, 0x3fff]));
    add(l.l3 + 8, 1, W([0, 1, 255]));
    add(l.l3 + 9, 1, W([1, 2, 6, 17, 58, 0, 255]));
  } else if (l.family === 6) {
    const plen = (frame[l.l3 + 4]! << 8) | frame[l.l3 + 5]!;
    add(l.l3 + 4, 2, W([0, 1, 8, plen - 1, plen + 1, 0xffff]));
    add(l.l3 + 6, 1, W([0, 6, 17, 43, 44, 58, 59, 60]));
    add(l.l3 + 7, 1, W([0, 1, 255]));
    for (const e of l.ext) {
      add(e, 1, W([0, 6, 17, 44, 58, 60]));
      if (e === l.ipv6Frag) add(e + 2, 2, W([0, 1, 8, 0xfff9, 0x0009]));
      else add(e + 1, 1, W([0, 1, 255]));
    }
  }
  if (l.l4 >= 0) {
    const t = l.l4;
    if (l.proto === 17) {
      const len = (frame[t + 4]! << 8) | frame[t + 5]!;
      add(t + 4, 2, W([0, 7, 8, len - 1, len + 1, 0xffff]));
      add(t + 2, 2, W([53, 67, 547, 7, 0]));
    } else if (l.proto === 6) {
      add(t + 12, 1, W([0x00, 0x40, 0x50, 0x60, 0xa0, 0xf0]));
      add(t + 13, 1, W([0x02, 0x12, 0x10, 0x04, 0x01, 0x3f, 0x00]));
    } else if (l.proto === 1 || l.proto === 58 || l.proto === 2) {
      add(t, 1, W([0, 3, 8, 11, 12, 1, 2, 4, 128, 129, 130, 133, 134, 135, 136, 137, 143, 0x11, 0x22]));
      add(t + 1, 1, W([0, 1, 4, 255]));
    }
  }
  return out.map((f) => ({ ...f, values: f.values.map((v) => v & (f.width === 1 ? 0xff : 0xffff)) }));
}

export interface FlipWorker {
  /** Writes so far. */
  writes(): number;
  stop(): Promise<number>;
}

/** Starts the second writer over the memfd `fd` of `size` bytes. Workers do not inherit the
 *  tsx loader (Node 20), so the worker is an eval'd stub that imports the TypeScript file
 *  through tsx's API. */
export function startFlipWorker(fd: number, size: number, fields: FlipField[], seed: number): FlipWorker {
  const control = new SharedArrayBuffer(8);
  const ctl = new Int32Array(control);
  const file = new URL('./flip-worker.ts', import.meta.url).href;
  const tsx = import.meta.resolve('tsx/esm/api');
  const code = `import(${JSON.stringify(tsx)}).then((api) => api.tsImport(${JSON.stringify(file)}, ${JSON.stringify(file)}))`;
  const worker = new Worker(code, { eval: true, workerData: { fd, size, control, fields, seed } });
  let failed: Error | undefined;
  worker.on('error', (err) => (failed = err));
  const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
  return {
    writes: () => {
      if (failed) throw failed;
      return Atomics.load(ctl, 1);
    },
    stop: async () => {
      Atomics.store(ctl, 0, 1);
      await exited;
      if (failed) throw failed;
      return Atomics.load(ctl, 1);
    },
  };
}
