// The byte helpers the per-frame paths use instead of allocating: copyBytes (native memmove once
// the host addon is loaded) and ViewCache.
import t from 'tap';
import { NATIVE_COPY_MIN, ViewCache, copyBytes, useNativeCopy } from '../../src/wire/bytes.js';
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
