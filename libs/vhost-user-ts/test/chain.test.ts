// DescriptorChain's copies in and out of its segments: short ones byte by byte, long ones through
// the addon's memmove, both across segment boundaries and from any offset.
import t from 'tap';
import { DescriptorChain } from '../src/virtqueue.js';

/** A chain over `memory`: readable segments then writable ones, as [offset, length] pairs. */
function chainOver(memory: Uint8Array, readable: [number, number][], writable: [number, number][]): DescriptorChain {
  const c = new DescriptorChain(16);
  c.reset(0);
  for (const [off, len] of readable) c.push(memory, off, len, false);
  for (const [off, len] of writable) c.push(memory, off, len, true);
  return c;
}

t.test('read gathers the readable segments from any offset, short and long', async (t) => {
  const memory = Uint8Array.from({ length: 4096 }, (_, i) => (i * 7) & 0xff);
  // 10 bytes, 300 bytes, 3 bytes, 1000 bytes
  const segs: [number, number][] = [
    [100, 10],
    [1000, 300],
    [50, 3],
    [2000, 1000],
  ];
  const c = chainOver(memory, segs, [[3500, 500]]);
  const whole = new Uint8Array(1313);
  let at = 0;
  for (const [off, len] of segs) whole.set(memory.subarray(off, off + len), (at += len) - len);
  t.equal(c.readableLength, 1313);
  for (const [from, len] of [
    [0, 1313],
    [5, 20],
    [9, 400],
    [310, 4],
    [312, 1001],
    [1300, 50],
    [1313, 10],
  ] as const) {
    const dst = new Uint8Array(len + 8).fill(0xee);
    const n = c.read(from, dst, 4, len);
    const want = Math.max(0, Math.min(len, 1313 - from));
    t.equal(n, want, `read(${from}, ${len}) copies ${want}`);
    t.same(dst.subarray(4, 4 + n), whole.subarray(from, from + n), `read(${from}, ${len}): the bytes`);
    t.equal(dst[3], 0xee, 'nothing before');
    t.equal(dst[4 + n], 0xee, 'nothing after');
  }
  t.throws(() => c.read(0, new Uint8Array(8), 0, 20), RangeError, 'a short destination throws (short copy)');
  t.throws(() => c.read(0, new Uint8Array(200), 0, 400), RangeError, 'a short destination throws (long copy)');
});

t.test('write scatters into the writable segments from any offset, short and long', async (t) => {
  const memory = new Uint8Array(4096);
  const segs: [number, number][] = [
    [0, 12],
    [100, 500],
    [700, 2],
    [1000, 2000],
  ];
  const c = chainOver(memory, [[3900, 10]], segs);
  t.equal(c.writableLength, 2514);
  const src = Uint8Array.from({ length: 3000 }, (_, i) => (i * 13 + 1) & 0xff);
  t.equal(c.write(0, src, 0, 2514), 2514);
  const back = new Uint8Array(2514);
  let at = 0;
  for (const [off, len] of segs) back.set(memory.subarray(off, off + len), (at += len) - len);
  t.same(back, src.subarray(0, 2514), 'the whole frame, across four segments');
  memory.fill(0);
  t.equal(c.write(11, src, 100, 3), 3, 'across the first boundary');
  t.same([memory[11], memory[100], memory[101]], [src[100], src[101], src[102]]);
  t.equal(c.write(2500, src, 0, 100), 14, 'only what fits');
  t.equal(memory[3000], 0, 'nothing past the last segment');
});
