// The addon's sum16 and gatherSum against the JavaScript ones: any offset, any length (odd ones
// included), and sum16 itself switching to it for long ranges once the addon is loaded; sumWithin.
import fc from 'fast-check';
import t from 'tap';
import { hostnet } from '../../src/host/native.js';
import { NATIVE_SUM_MIN, gatherSum, sum16, sum16js, sumWithin, useNativeGatherSum, useNativeSum } from '../../src/wire/checksum.js';
import { property } from '../support/wire-helpers.js';

t.test('native sum16 equals the JavaScript one', async (t) => {
  property(
    t,
    'random bytes, offsets and lengths',
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 70000 }), fc.nat(), fc.nat(), (b, x, y) => {
      const off = b.length === 0 ? 0 : x % b.length;
      const len = b.length - off === 0 ? 0 : y % (b.length - off + 1);
      return hostnet.sum16(b, off, len) === sum16js(b, off, len);
    }),
    300,
  );
  const ones = new Uint8Array(65536).fill(0xff);
  t.equal(hostnet.sum16(ones, 0, ones.length), sum16js(ones, 0, ones.length), 'all ones, 64 KiB: no carry lost');
  t.equal(hostnet.sum16(ones, 0, 0), 0, 'an empty range sums to 0');
  t.throws(() => hostnet.sum16(ones, 65530, 10), RangeError, 'a range past the end throws');
});

t.test('sum16 uses the addon for long ranges, JavaScript for short ones', async (t) => {
  const b = Uint8Array.from({ length: 4000 }, (_, i) => (i * 37) & 0xff);
  let calls = 0;
  useNativeSum((buf, off, len) => {
    calls++;
    return hostnet.sum16(buf, off, len);
  });
  t.teardown(() => useNativeSum(hostnet.sum16));
  t.equal(sum16(b, 3, 3000, 0x1234), sum16js(b, 3, 3000, 0x1234), 'same result with an initial sum');
  t.equal(calls, 1);
  sum16(b, 0, NATIVE_SUM_MIN - 1);
  t.equal(calls, 1, 'short: not called');
});

t.test('native gatherSum copies a scatter list and returns its sum, as the JavaScript one does', async (t) => {
  const scatter = fc.array(fc.uint8Array({ minLength: 0, maxLength: 3000 }), { minLength: 1, maxLength: 6 });
  property(
    t,
    'random spans (odd lengths and offsets included) into a destination at any offset',
    fc.property(scatter, fc.nat(7), fc.nat(7), (parts, lead, dstOff) => {
      // Each span sits at `lead` bytes into a larger view, as guest buffers do.
      const views = parts.map((p) => {
        const v = new Uint8Array(p.length + lead + 3).fill(0xee);
        v.set(p, lead);
        return v;
      });
      const offsets = Float64Array.from(parts.map(() => lead));
      const lengths = Uint32Array.from(parts.map((p) => p.length));
      const total = parts.reduce((a, p) => a + p.length, 0);
      const a = new Uint8Array(dstOff + total + 5).fill(0x55);
      const b = a.slice();
      const sumA = hostnet.gatherSum(views, offsets, lengths, 0, parts.length, a, dstOff);
      useNativeGatherSum(undefined);
      try {
        const sumB = gatherSum(views, offsets, lengths, 0, parts.length, b, dstOff);
        const whole = Uint8Array.from(parts.flatMap((p) => [...p]));
        return sumA === sumB && sumA === sum16js(whole, 0, whole.length) && bytesSame(a, b) && bytesSame(a.subarray(dstOff, dstOff + total), whole) && a[dstOff + total] === 0x55;
      } finally {
        useNativeGatherSum(hostnet.gatherSum);
      }
    }),
    200,
  );
  const v = new Uint8Array(100);
  t.throws(() => hostnet.gatherSum([v], Float64Array.of(0), Uint32Array.of(100), 0, 1, new Uint8Array(99), 0), RangeError, 'a destination too small throws');
  t.throws(() => hostnet.gatherSum([v], Float64Array.of(10), Uint32Array.of(100), 0, 1, new Uint8Array(200), 0), RangeError, 'a span past its view throws');
});

t.test('sumWithin: the sum of a range from the sum of the whole, its head and its tail', async (t) => {
  property(
    t,
    'any range of any buffer: congruent to sum16 modulo 0xffff',
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 4000 }), fc.nat(), fc.nat(), (b, x, y) => {
      const off = b.length === 0 ? 0 : x % (b.length + 1);
      const len = y % (b.length - off + 1);
      const got = sumWithin(sum16js(b, 0, b.length), b, off, len);
      const want = sum16js(b, off, len);
      return got === want || (got % 0xffff === 0 && want % 0xffff === 0);
    }),
    500,
  );
});

function bytesSame(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
