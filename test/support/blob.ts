// Deterministic noise for transfer tests (xorshift32): compresses to nothing, so nothing on the
// way can cheat, and both ends can make the same bytes from the seed.
export function blob(size: number, seed = 0x9e3779b9): Buffer {
  const b = Buffer.alloc(size);
  let x = seed >>> 0;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}
