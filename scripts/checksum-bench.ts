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
