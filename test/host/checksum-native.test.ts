// The addon's sum16 against the JavaScript one: any offset, any length (odd ones included), and
// sum16 itself switching to it for long ranges once the addon is loaded.
import fc from 'fast-check';
import t from 'tap';
import { hostnet } from '../../src/host/native.js';
import type { ScatterViews } from '../../src/wire/bytes.js';
import {
  NATIVE_SUM_MIN,
  COPY_JOB_BYTES,
  SUM_IN_PLACE,
  CopyJobField,
  copyJob,
  copySum,
  foldSum,
  sum16,
  sum16js,
  sumFrames,
  useNativeCopyJob,
  useNativeCopySum,
  useNativeSum,
  useNativeSumFrames,
} from '../../src/wire/checksum.js';
import { CUT_FIELDS, CutField, cutFrames, useNativeCutFrames } from '../../src/wire/tcp-cut.js';
import { property } from '../support/wire-helpers.js';

t.test('native sum16 equals the JavaScript one (the best loop for this CPU, and the portable SSE2 one)', async (t) => {
  property(
    t,
    'random bytes, offsets and lengths',
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 70000 }), fc.nat(), fc.nat(), (b, x, y) => {
      const off = b.length === 0 ? 0 : x % b.length;
      const len = b.length - off === 0 ? 0 : y % (b.length - off + 1);
      const want = sum16js(b, off, len);
      return hostnet.sum16(b, off, len) === want && hostnet.sum16Portable(b, off, len) === want;
    }),
    300,
  );
  const ones = new Uint8Array(65536).fill(0xff);
  t.equal(hostnet.sum16(ones, 0, ones.length), sum16js(ones, 0, ones.length), 'all ones, 64 KiB: no carry lost');
  // Past the point where the vector lanes are spilled (2 MiB for AVX2, 256 KiB for SSE2).
  const many = new Uint8Array(5_000_001).fill(0xff);
  for (const off of [0, 1]) {
    const want = sum16js(many, off, many.length - off);
    t.equal(hostnet.sum16(many, off, many.length - off), want, `all ones, 5 MB from ${off}: lanes spilled without loss`);
    t.equal(hostnet.sum16Portable(many, off, many.length - off), want, '... and by the SSE2 loop');
  }
  t.equal(hostnet.sum16(ones, 0, 0), 0, 'an empty range sums to 0');
  t.throws(() => hostnet.sum16(ones, 65530, 10), RangeError, 'a range past the end throws');
});

t.test('sum16 uses the addon for long ranges, JavaScript for short ones', async (t) => {
  const b = Uint8Array.from({ length: 4000 }, (_, i) => (i * 37) & 0xff);
  let calls = 0;
  const was = useNativeSum((buf, off, len) => {
    calls++;
    return hostnet.sum16(buf, off, len);
  });
  t.teardown(() => useNativeSum(was));
  t.equal(sum16(b, 3, 3000, 0x1234), sum16js(b, 3, 3000, 0x1234), 'same result with an initial sum');
  t.equal(calls, 1);
  sum16(b, 0, NATIVE_SUM_MIN - 1);
  t.equal(calls, 1, 'short: not called');
});

t.test('copySum copies and sums the copy from `from` on, as a copy and sum16 would; ranges checked', async (t) => {
  property(
    t,
    'random bytes, offsets, lengths and starting points',
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 70000 }), fc.nat(), fc.nat(), fc.nat(), fc.nat(100), (b, x, y, z, d) => {
      const off = x % b.length;
      const len = y % (b.length - off + 1);
      const from = len === 0 ? 0 : z % (len + 1);
      const dst = new Uint8Array(len + d);
      const sum = hostnet.copySum(b, off, len, dst, d, from);
      return sum === sum16js(b, off + from, len - from) && Buffer.from(dst.subarray(d)).equals(Buffer.from(b.subarray(off, off + len)));
    }),
    300,
  );
  const ones = new Uint8Array(5_000_001).fill(0xff);
  const out = new Uint8Array(ones.length);
  t.equal(hostnet.copySum(ones, 0, ones.length, out, 0, 1), sum16js(ones, 1, ones.length - 1), 'all ones, 5 MB: no carry lost');
  const b = new Uint8Array(100);
  t.throws(() => hostnet.copySum(b, 0, 60, b, 40, 0), RangeError, 'overlapping ranges refused');
  t.throws(() => hostnet.copySum(b, 50, 60, new Uint8Array(100), 0, 0), RangeError, 'past the source');
  t.throws(() => hostnet.copySum(b, 0, 10, new Uint8Array(100), 0, 11), RangeError, 'from past the length');
  t.equal(hostnet.copySum(b, 0, 50, b, 50, 0), 0, 'adjacent ranges of one buffer are fine');
  // wire's copySum goes to the addon once it is installed, and falls back without it.
  const was = useNativeCopySum(undefined);
  t.teardown(() => useNativeCopySum(was));
  const src = Uint8Array.from({ length: 1500 }, (_, i) => (i * 31) & 0xff);
  const dst = new Uint8Array(1500);
  t.equal(copySum(src, 0, 1500, dst, 0, 14), sum16js(src, 14, 1486), 'the JavaScript fallback');
  t.same(dst, src);
});

t.test('copyJob copies a head to one place and the rest, summed from sumFrom, to another, as its block says; ranges checked', async (t) => {
  const F = CopyJobField;
  /** A work array of `size` bytes after the job block, and the job over it. */
  const workOf = (size: number): { work: Uint8Array; job: Float64Array } => {
    const work = new Uint8Array(COPY_JOB_BYTES + size);
    return { work, job: new Float64Array(work.buffer, 0, COPY_JOB_BYTES / 8) };
  };
  const set = (
    job: Float64Array,
    v: { off: number; len: number; headAt: number; headLen: number; dstAt: number; from: number; pf?: [number, number] },
  ): void => {
    job[F.srcOffset] = v.off;
    job[F.length] = v.len;
    job[F.headAt] = v.headAt;
    job[F.headLength] = v.headLen;
    job[F.dstAt] = v.dstAt;
    job[F.sumFrom] = v.from;
    job[F.prefetchOffset] = v.pf?.[0] ?? 0;
    job[F.prefetchLength] = v.pf?.[1] ?? 0;
  };
  const was = useNativeCopyJob(undefined);
  t.teardown(() => useNativeCopyJob(was));
  property(
    t,
    'random bytes, offsets, head lengths, sum starts, places (or the rest summed in place) and prefetches: the addon and the fallback agree with a copy and sum16',
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 70000 }),
      fc.tuple(fc.nat(), fc.nat(), fc.nat(120), fc.nat(), fc.nat(100)),
      fc.tuple(fc.integer({ min: -1, max: 80000 }), fc.nat(5000)),
      fc.boolean(),
      (b, [x, y, h, z, gap], pf, inPlace) => {
        const off = x % b.length;
        const len = y % (b.length - off + 1);
        const headLen = Math.min(h, len);
        const rest = len - headLen;
        const from = rest === 0 ? 0 : z % (rest + 1);
        const v = {
          off,
          len,
          headAt: COPY_JOB_BYTES,
          headLen,
          dstAt: inPlace ? SUM_IN_PLACE : COPY_JOB_BYTES + headLen + gap,
          from,
          pf: [Math.max(0, pf[0]), pf[1]] as [number, number],
        };
        const results = [was!, undefined].map((fn) => {
          useNativeCopyJob(fn);
          const { work, job } = workOf(headLen + gap + rest);
          set(job, v);
          copyJob(b, work, job);
          // (In place, nothing past the head is written.)
          const restAt = COPY_JOB_BYTES + headLen + gap;
          return { sum: job[F.sum], head: Buffer.from(work.subarray(v.headAt, v.headAt + headLen)), rest: Buffer.from(work.subarray(restAt, restAt + rest)) };
        });
        const want = {
          sum: sum16js(b, off + headLen + from, rest - from),
          head: Buffer.from(b.subarray(off, off + headLen)),
          rest: inPlace ? Buffer.alloc(rest) : Buffer.from(b.subarray(off + headLen, off + len)),
        };
        return results.every((r) => r.sum === want.sum && r.head.equals(want.head) && r.rest.equals(want.rest));
      },
    ),
    300,
  );
  const b = new Uint8Array(200);
  const ok = { off: 0, len: 100, headAt: COPY_JOB_BYTES, headLen: 10, dstAt: COPY_JOB_BYTES + 10, from: 0 };
  for (const fn of [was!, undefined]) {
    useNativeCopyJob(fn);
    const which = fn === undefined ? 'the fallback' : 'the addon';
    const { work, job } = workOf(100);
    const refused = (v: typeof ok, why: string): void => {
      set(job, v);
      t.throws(() => copyJob(b, work, job), RangeError, `${which}: ${why}`);
    };
    set(job, ok);
    copyJob(b, work, job);
    t.equal(job[F.sum], 0, `${which}: a job that fits exactly`);
    refused({ ...ok, off: 150 }, 'past the source');
    refused({ ...ok, headLen: 101 }, 'a head longer than the frame');
    refused({ ...ok, dstAt: COPY_JOB_BYTES + 11 }, 'past the work array');
    refused({ ...ok, headAt: COPY_JOB_BYTES - 8 }, 'a head over the job block');
    refused({ ...ok, dstAt: 0, headAt: COPY_JOB_BYTES + 90 }, 'a payload over the job block');
    refused({ ...ok, dstAt: COPY_JOB_BYTES + 5 }, 'a payload over the head');
    refused({ ...ok, from: 91 }, 'a sum starting past the payload');
    refused({ ...ok, dstAt: -2 }, 'a negative place but SUM_IN_PLACE');
    refused({ ...ok, dstAt: SUM_IN_PLACE, from: 91 }, 'in place, a sum starting past the payload');
    refused({ ...ok, dstAt: SUM_IN_PLACE, len: 201 }, 'in place, past the source');
    refused({ ...ok, off: 0.5 }, 'not an integer');
    refused({ ...ok, len: Number.NaN }, 'not a number');
    set(job, ok);
    t.throws(() => copyJob(work, work, job), RangeError, `${which}: a source overlapping the work array`);
  }
  useNativeCopyJob(undefined);
  const { work } = workOf(100);
  t.throws(() => copyJob(b, work, new Float64Array(9)), RangeError, 'the fallback: a job that is not over the work array');
  useNativeCopyJob(was);
  t.throws(() => hostnet.copyJob(b, new Uint8Array(COPY_JOB_BYTES - 1)), TypeError, 'the addon: a work array shorter than the job block');
});

t.test('sumFrames: the native sum of each frame of a batch equals the JavaScript one, in both view forms', async (t) => {
  const mem = Uint8Array.from({ length: 65536 }, (_, i) => (i * 37 + 11) & 0xff);
  const other = Uint8Array.from({ length: 4096 }, (_, i) => (i * 13 + 5) & 0xff);
  property(
    t,
    'random batches of frames in random spans (odd lengths and offsets included), some in a second view',
    fc.property(
      fc.array(fc.array(fc.record({ off: fc.nat(60000), len: fc.nat(3000), second: fc.boolean() }), { minLength: 0, maxLength: 5 }), {
        minLength: 1,
        maxLength: 8,
      }),
      fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }),
      (frames, headerSums) => {
        const spans = frames.flat();
        const views = spans.map((s) => (s.second ? other : mem));
        const offsets = Float64Array.from(spans, (s) => (s.second ? s.off % 1000 : s.off));
        const lengths = Uint32Array.from(spans, (s) => s.len);
        const starts = new Uint32Array(frames.length);
        let n = 0;
        frames.forEach((f, k) => {
          starts[k] = n;
          n += f.length;
        });
        // What each frame sums to: its spans copied out end to end, summed as one range.
        const want = frames.map((f, k) => {
          const whole = new Uint8Array(f.reduce((a, s) => a + s.len, 0));
          let at = 0;
          for (let i = starts[k]!; i < starts[k]! + f.length; i++) {
            whole.set(views[i]!.subarray(offsets[i], offsets[i]! + lengths[i]!), at);
            at += lengths[i]!;
          }
          return foldSum(headerSums[k]! + sum16js(whole, 0, whole.length));
        });
        const run = (fn: (v: ScatterViews, sums: Uint32Array) => void, v: ScatterViews): number[] => {
          const sums = Uint32Array.from(frames, (_, k) => headerSums[k]!);
          fn(v, sums);
          return [...sums];
        };
        const native = (v: ScatterViews, sums: Uint32Array): void => hostnet.sumFrames(v, offsets, lengths, starts, sums, frames.length, n);
        const js = (v: ScatterViews, sums: Uint32Array): void => {
          const was = useNativeSumFrames(undefined);
          try {
            sumFrames(v, offsets, lengths, starts, sums, frames.length, n);
          } finally {
            useNativeSumFrames(was);
          }
        };
        const same = (a: number[]): boolean => a.every((x, k) => x === want[k]);
        const allInMem = spans.every((s) => !s.second);
        return same(run(native, views)) && same(run(js, views)) && (!allInMem || (same(run(native, mem)) && same(run(js, mem))));
      },
    ),
    200,
  );
});

t.test('sumFrames refuses spans outside their view, frames out of order and arrays too short', async (t) => {
  const mem = new Uint8Array(4096).fill(1);
  const offsets = Float64Array.of(3, 1000, 2001, 4000);
  const lengths = Uint32Array.of(777, 5, 1500, 96);
  const sums = new Uint32Array(2);
  hostnet.sumFrames(mem, offsets, lengths, Uint32Array.of(0, 2), sums, 2, 4);
  const ones = new Uint8Array(1596).fill(1);
  t.same([...sums], [sum16js(ones, 0, 782), sum16js(ones, 0, 1596)], 'a batch of two frames: each summed over its spans');
  t.throws(() => hostnet.sumFrames(mem, offsets, Uint32Array.of(777, 5, 1500, 97), Uint32Array.of(0, 2), sums, 2, 4), RangeError, 'a span past the view');
  t.throws(() => hostnet.sumFrames(mem, offsets, lengths, Uint32Array.of(2, 1), sums, 2, 4), RangeError, 'frames out of order');
  t.throws(() => hostnet.sumFrames(mem, offsets, lengths, Uint32Array.of(0, 5), sums, 2, 4), RangeError, 'a frame past spanCount');
  t.throws(() => hostnet.sumFrames(mem, offsets, lengths, Uint32Array.of(0, 2), sums, 2, 5), RangeError, 'spanCount past the span arrays');
  t.throws(() => hostnet.sumFrames(mem, offsets, lengths, Uint32Array.of(0, 2), new Uint32Array(1), 2, 4), RangeError, 'sums shorter than the frames');
  t.throws(
    () => hostnet.sumFrames(new Float64Array(4) as unknown as Uint8Array, offsets, lengths, Uint32Array.of(0), sums, 1, 4),
    TypeError,
    'not a Uint8Array',
  );
  t.throws(() => hostnet.sumFrames(mem, offsets, lengths, new Int32Array(2) as unknown as Uint32Array, sums, 2, 4), TypeError, 'starts not a Uint32Array');
});

/** A segment's layout for cutFrames: Ethernet, IPv4 (20) or IPv6 (40), TCP of `tcpLen`, after a
 *  virtio-net header of 12 bytes. */
function cutLayout(v4: boolean, tcpLen: number, size: number, payload: number, seq: number, flags: number, sums: number[], first = 0): Uint32Array {
  const l = new Uint32Array(CUT_FIELDS);
  const ip = 12 + 14;
  l[CutField.ip] = ip;
  l[CutField.tcp] = ip + (v4 ? 20 : 40);
  l[CutField.headLen] = l[CutField.tcp]! + tcpLen;
  l[CutField.v4] = v4 ? 1 : 0;
  l[CutField.tcpLen] = tcpLen;
  l[CutField.size] = size;
  l[CutField.payload] = payload;
  l[CutField.seq] = seq;
  l[CutField.flags] = flags;
  l[CutField.ipSum] = sums[0]!;
  l[CutField.tcpSum] = sums[1]!;
  l[CutField.pseudoBase] = sums[2]!;
  l[CutField.first] = first;
  return l;
}

t.test('cutFrames: the native headers and sums equal the JavaScript ones, in both view forms', async (t) => {
  property(
    t,
    'random layouts, lengths, sequence numbers (wrapping), flags and sums, frames in one view or several',
    fc.property(
      fc.boolean(),
      fc.constantFrom(20, 32, 40, 60),
      fc.integer({ min: 1, max: 9000 }),
      fc.integer({ min: 1, max: 64 }),
      fc.nat(0xffffffff),
      fc.nat(0xff),
      fc.array(fc.nat(0xffffffff), { minLength: 3, maxLength: 3 }),
      fc.boolean(),
      fc.nat(),
      (v4, tcpLen, size, pieces, seq, flags, sums, summed, x) => {
        const payload = Math.min((pieces - 1) * size + 1 + (x % size), 0xffffffff);
        // Frames from piece `first` on (0: the segment's first, as the fast path writes them).
        const first = (x >>> 7) % 2 === 0 ? 0 : (x >>> 8) % pieces;
        const count = 1 + (x % (pieces - first));
        const layout = cutLayout(v4, tcpLen, size, payload, seq, flags, sums, first);
        const headLen = layout[CutField.headLen]!;
        const template = Uint8Array.from({ length: headLen + 7 }, (_, i) => (i * 29 + x) & 0xff);
        const offsets = Float64Array.from({ length: count }, (_, j) => 3 + j * (headLen + 5));
        const run = (native: boolean, several: boolean): [Uint8Array[], number[]] => {
          const mem = new Uint8Array(3 + count * (headLen + 5));
          const views = several ? Array.from({ length: count }, () => mem) : mem;
          const out = new Uint32Array(count + 2).fill(7);
          if (native) hostnet.cutFrames(views, offsets, count, template, layout, out, summed ? 1 : -1);
          else {
            const was = useNativeCutFrames(undefined);
            try {
              cutFrames(views, offsets, count, template, layout, out, summed ? 1 : -1);
            } finally {
              useNativeCutFrames(was);
            }
          }
          return [[mem], [...out]];
        };
        const want = run(false, false);
        return [run(true, false), run(true, true), run(false, true)].every((got) => JSON.stringify(got) === JSON.stringify(want));
      },
    ),
    300,
  );
});

t.test('cutFrames refuses fields outside the headers, frames outside their view and sums outside their array', async (t) => {
  const layout = cutLayout(true, 20, 1000, 2500, 1, 0x19, [0, 0, 0]);
  const template = new Uint8Array(80);
  const mem = new Uint8Array(4096);
  const at = Float64Array.of(0, 2048, 4050);
  const sums = new Uint32Array(3);
  hostnet.cutFrames(mem, at, 2, template, layout, sums, 0);
  t.equal((mem[26 + 2]! << 8) | mem[26 + 3]!, 1040, 'the first frame written: its IP length');
  t.equal(mem[46 + 13], 0x10, '... its flags: FIN and PSH only on the last');
  t.equal((mem[2048 + 46 + 6]! << 8) | mem[2048 + 46 + 7]!, 1001, 'the second frame: its sequence number');
  t.throws(() => hostnet.cutFrames(mem, at, 3, template, layout, sums, 0), RangeError, 'a frame past its view');
  t.throws(() => hostnet.cutFrames(mem, at, 2, template, layout, sums, 2), RangeError, 'sums past their array');
  t.throws(() => hostnet.cutFrames(mem, at, 4, template, layout, new Uint32Array(4), 0), RangeError, 'more frames than the segment has');
  const last = layout.slice();
  last[CutField.first] = 2;
  hostnet.cutFrames(mem, at, 1, template, last, sums, 0);
  t.equal(mem[46 + 13], 0x19, 'the last piece alone: FIN and PSH on it');
  t.equal((mem[26 + 2]! << 8) | mem[26 + 3]!, 540, '... its IP length (500 bytes of payload)');
  t.throws(() => hostnet.cutFrames(mem, at, 2, template, last, sums, 0), RangeError, 'frames past the last piece');
  t.throws(() => hostnet.cutFrames(mem, at, 2, template.subarray(0, 60), layout, sums, -1), RangeError, 'headers longer than the template');
  const short = layout.slice();
  short[CutField.tcpLen] = 20;
  short[CutField.tcp] = 60;
  t.throws(() => hostnet.cutFrames(mem, at, 1, template, short, sums, -1), RangeError, 'the TCP header past the headers');
  const ip6 = layout.slice();
  ip6[CutField.v4] = 0; // its 40 bytes from 30 end past the 66 of headers
  ip6[CutField.ip] = 30;
  t.throws(() => hostnet.cutFrames(mem, at, 1, template, ip6, sums, -1), RangeError, 'an IPv6 header past the headers');
  const none = layout.slice();
  none[CutField.size] = 0;
  t.throws(() => hostnet.cutFrames(mem, at, 1, template, none, sums, -1), RangeError, 'frames of no size');
  t.throws(() => hostnet.cutFrames(mem, at, 1, template, layout.subarray(0, 11), sums, -1), RangeError, 'a layout too short');
  t.throws(() => hostnet.cutFrames(mem, at, 1, template, new Int32Array(12) as unknown as Uint32Array, sums, -1), TypeError, 'a layout not a Uint32Array');
  t.throws(() => hostnet.cutFrames(mem, at, 1, new Uint16Array(40) as unknown as Uint8Array, layout, sums, -1), TypeError, 'a template not a Uint8Array');
});

t.test('evictLines drops a range from the caches and changes none of its bytes; a bad range throws', async (t) => {
  const buf = Uint8Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff);
  const copy = buf.slice();
  hostnet.evictLines(buf, 3, 4990);
  hostnet.evictLines(buf, 0, 0);
  t.same(buf, copy, 'the bytes as they were');
  t.throws(() => hostnet.evictLines(buf, 4999, 2), RangeError, 'past the end');
  t.throws(() => hostnet.evictLines(buf, -1, 2), RangeError, 'a negative offset');
  t.throws(() => hostnet.evictLines(buf, 0.5, 2), RangeError, 'a fraction');
});

t.test("threadCpuNs counts this thread's CPU time, not the time it waits", async (t) => {
  const a = hostnet.threadCpuNs();
  await new Promise((r) => setTimeout(r, 100));
  const waited = hostnet.threadCpuNs() - a;
  // Spinning until the process has used 40 ms of CPU (however busy the machine): nearly all of
  // it this thread's (the process's other threads are idle but for a little GC).
  const b = hostnet.threadCpuNs();
  const start = process.cpuUsage();
  let x = 0;
  for (;;) {
    for (let i = 0; i < 1e5; i++) x++;
    const used = process.cpuUsage(start);
    if (used.user + used.system >= 40_000) break;
  }
  const busy = hostnet.threadCpuNs() - b;
  t.ok(x > 0);
  t.ok(busy >= 20e6, `40 ms of spinning counts (${(busy / 1e6).toFixed(1)} ms)`);
  t.ok(waited < 50e6, `100 ms of waiting mostly does not (${(waited / 1e6).toFixed(1)} ms)`);
});
