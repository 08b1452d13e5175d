// The byte helpers the per-frame paths use instead of allocating: copyBytes (native memmove once
// the host addon is loaded) and ViewCache; and doubleFields.
import t from 'tap';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { NATIVE_COPY_MIN, ViewCache, copyBytes, doubleFields, useNativeCopy } from '../../src/wire/bytes.js';
import { native } from 'vhost-user-ts/testing';

t.test('copyBytes: short and long, across buffers and within one, with and without the addon', async (t) => {
  const was = useNativeCopy(undefined);
  t.teardown(() => useNativeCopy(was)); // as it was: other files may share this process
  for (const withNative of [false, true]) {
    useNativeCopy(withNative ? native.copy.bind(native) : undefined);
    for (const len of [0, 1, NATIVE_COPY_MIN - 1, NATIVE_COPY_MIN, 1500]) {
      const src = Uint8Array.from({ length: 2000 }, (_, i) => (i * 3) & 0xff);
      const dst = new Uint8Array(2000);
      copyBytes(dst, 7, src, 11, len);
      t.same(dst.subarray(7, 7 + len), src.subarray(11, 11 + len), `${len} bytes (${withNative ? 'native' : 'js'})`);
      t.equal(dst[7 + len], 0, 'nothing after');
      copyBytes(src, 5, src, 0, len); // overlapping, forwards
      t.same(
        src.subarray(5, 5 + len),
        Uint8Array.from({ length: len }, (_, i) => (i * 3) & 0xff),
        `${len} bytes within one buffer`,
      );
    }
  }
});

t.test('ViewCache: the same view for the same range of the same buffer, a new one otherwise', async (t) => {
  const a = new Uint8Array(100);
  const b = new Uint8Array(100);
  const views = new ViewCache(2);
  const v1 = views.of(a, 0, 60);
  t.equal(v1.byteOffset, 0);
  t.equal(v1.length, 60);
  t.equal(views.of(a, 0, 60), v1, 'cached');
  const v2 = views.of(a, 14, 60);
  t.equal(v2.byteOffset, 14);
  t.equal(v2.length, 46);
  t.not(views.of(b, 0, 60), v1, 'another buffer, another view');
  t.not(views.of(a, 0, 60), v1, 'evicted after two others (a bounded cache)');
  const v3 = views.of(a, 0, 60);
  a[5] = 9;
  t.equal(v3[5], 9, 'a view of the buffer, not a copy');
  const sub = a.subarray(10);
  t.equal(views.of(sub, 2, 4).byteOffset, 12, 'ranges are relative to the buffer asked of');
  t.same(views.of(a, 90, 200).length, 10, 'clamped as subarray clamps');
});

t.test('doubleFields: zeros, the same object, and no map change when a value passes 2^31', async (t) => {
  const o = { frames: 7, bytes: 9, name: 'x' };
  t.equal(doubleFields(o, 'bytes'), o, 'returns the object');
  t.same(o, { frames: 7, bytes: 0, name: 'x' }, 'the named field is 0, the others as they were');
  t.ok(Object.is(o.bytes, 0), '+0, not -0');
  t.throws(() => doubleFields(o, 'name'), TypeError, 'a field that is not a number');
  t.throws(() => doubleFields(o, 'missing'), TypeError, 'a field that is not there');

  // What it is for, seen by V8 itself (natives syntax, in a child): two objects of one shape stay of
  // one shape (map) when one's counter passes 2^31, where plain ones part (the field's
  // representation changes, and optimized code relying on it is thrown away).
  const bytesModule = fileURLToPath(new URL('../../src/wire/bytes.ts', import.meta.url));
  const script = `
    const { doubleFields } = await import(${JSON.stringify(bytesModule)});
    const plain = () => ({ frames: 0, bytes: 0 });
    const wide = () => doubleFields({ frames: 0, bytes: 0 }, 'bytes');
    const p = [plain(), plain()];
    const w = [wide(), wide()];
    const sameBefore = [%HaveSameMap(p[0], p[1]), %HaveSameMap(w[0], w[1])];
    p[0].bytes += 2 ** 31 + 5;
    w[0].bytes += 2 ** 31 + 5;
    console.log(JSON.stringify({ sameBefore, plain: %HaveSameMap(p[0], p[1]), wide: %HaveSameMap(w[0], w[1]), value: w[0].bytes }));
  `;
  const out = execFileSync(process.execPath, ['--allow-natives-syntax', '--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  const r = JSON.parse(out.trim()) as { sameBefore: boolean[]; plain: boolean; wide: boolean; value: number };
  t.same(r.sameBefore, [true, true], 'each pair starts with one map');
  t.equal(r.plain, false, 'plain fields: the object that passed 2^31 changed map');
  t.equal(r.wide, true, 'double fields: no map change');
  t.equal(r.value, 2 ** 31 + 5, 'the value is exact');
});
