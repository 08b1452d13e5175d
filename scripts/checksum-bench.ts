// `npx tsx scripts/checksum-bench.ts`: the Internet checksum in JavaScript (sum16js) and through the
// host addon (hostnet.sum16), per length, in ns per call and GB/s; where they cross sets
// NATIVE_SUM_MIN in src/wire/checksum.ts.
import { hostnet } from '../src/host/native.js';
import { sum16js } from '../src/wire/checksum.js';

const buf = Uint8Array.from({ length: 65536 }, (_, i) => (i * 2654435761) >>> 24);
const time = (fn: () => number, len: number): number => {
  const rounds = Math.max(2000, Math.floor(2e8 / Math.max(len, 64)));
  let sink = 0;
  for (let i = 0; i < rounds / 10; i++) sink += fn(); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) sink += fn();
  const ns = Number(process.hrtime.bigint() - t0) / rounds;
  if (sink === -1) console.log(sink);
  return ns;
};
console.log('bytes   js ns   native ns   js GB/s   native GB/s');
for (const len of [20, 40, 64, 128, 256, 512, 1500, 9000, 65000]) {
  const js = time(() => sum16js(buf, 1, len), len);
  const nat = time(() => hostnet.sum16(buf, 1, len), len);
  if (sum16js(buf, 1, len) !== hostnet.sum16(buf, 1, len)) throw new Error(`mismatch at ${len}`);
  console.log(
    `${String(len).padStart(5)} ${js.toFixed(0).padStart(7)} ${nat.toFixed(0).padStart(11)} ${(len / js).toFixed(2).padStart(9)} ${(len / nat).toFixed(2).padStart(13)}`,
  );
}

// A guest's frame is usually not in this core's caches: another CPU (the guest's, or the kernel's
// for a TAP) just wrote it. Frames of a 256 MiB region, visited in a scattered order after the
// whole region was rewritten, stand for that: the sum (with the addon's prefetch, AVX2 where the
// CPU has it, and the portable SSE2 loop) against copying the same bytes out.
const FRAME = 1514;
const PAYLOAD = 1448;
const region = new Uint8Array(256 << 20);
const frames = Math.floor(region.length / FRAME) - 1;
const scratch = new Uint8Array(FRAME);
const copy = (b: Uint8Array, off: number, len: number): number => {
  scratch.set(b.subarray(off, off + len));
  return scratch[0]!;
};
console.log(`\n${PAYLOAD} bytes not in this core's caches   ns per frame`);
for (const [name, fn] of [
  ['sum16', hostnet.sum16],
  ['sum16Portable (SSE2)', hostnet.sum16Portable],
  ['copy (TypedArray set)', copy],
] as const) {
  for (let i = 0; i < region.length; i += 64) region[i] = i & 0xff; // out of this core's L1 and L2
  const count = 100_000;
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let k = 0; k < count; k++) sink += fn(region, ((k * 3011) % frames) * FRAME + 66, PAYLOAD);
  const ns = Number(process.hrtime.bigint() - t0) / count;
  if (sink === -1) console.log(sink);
  console.log(`${name.padEnd(30)} ${ns.toFixed(0).padStart(10)}`);
}
