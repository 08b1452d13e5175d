// The second writer (a worker thread): maps the same guest memory as the frontend (the memfd) and
// keeps rewriting header fields of frames queued in the TX ring while vunet reads them, the way
// another vCPU of the guest could. Each write puts either a hostile value or the original back,
// so the frames stay mostly valid and every field flips often. Stops when control[0] becomes 1;
// control[1] counts writes.
import { parentPort, workerData } from 'node:worker_threads';
import { native } from 'vhost-user-ts/testing';
import type { FlipField } from './flip.js';

interface FlipWorkerData {
  fd: number;
  size: number;
  control: SharedArrayBuffer;
  fields: FlipField[];
  seed: number;
}

const data = workerData as FlipWorkerData;
const mapping = native.mmap(data.fd, 0, data.size, 1 << 30);
const bytes = new Uint8Array(mapping.chunks[0]!);
const control = new Int32Array(data.control);
const fields = data.fields;
let x = data.seed >>> 0 !== 0 ? data.seed >>> 0 : 1;
const rand = (): number => {
  // xorshift32: cheap, and the worker's choices need not be reproducible.
  x ^= x << 13;
  x >>>= 0;
  x ^= x >>> 17;
  x ^= x << 5;
  x >>>= 0;
  return x;
};

let writes = 0;
while (Atomics.load(control, 0) === 0) {
  for (let i = 0; i < 1024; i++) {
    const f = fields[rand() % fields.length]!;
    const r = rand();
    // Mostly the original value: most frames are whole at any moment, and every field still
    // flips thousands of times while vunet reads.
    const v = (r & 7) !== 0 ? f.orig : f.values[(r >>> 3) % f.values.length]!;
    if (f.width === 1) {
      bytes[f.off] = v;
    } else {
      bytes[f.off] = v >> 8;
      bytes[f.off + 1] = v & 0xff;
    }
  }
  writes += 1024;
  Atomics.store(control, 1, writes);
}
native.munmap(mapping);
parentPort?.postMessage({ writes });
