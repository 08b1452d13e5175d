// IP reassembly (RFC 791 §3.2, RFC 8200 §4.5, RFC 5722, RFC 6946) on an injected clock: every
// arrival order rebuilds the exact original packet; duplicates, overlaps, bad lengths, timeouts and
// the memory ceiling; random fragmentations always reassemble and random bytes never throw.
import fc from 'fast-check';
import t from 'tap';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { Reassembler } from '../../src/iface/reassembly.js';
import type { Expired } from '../../src/iface/reassembly.js';
import { IpProtocol, emitIpv4Header, emitIpv6FragmentHeader, emitIpv6Header, emitIpv6RouterAlertHopByHop, verifyChecksum } from '../../src/wire/index.js';

const SRC4 = 0x0a00020f;
const DST4 = 0x08080808;
const SRC6 = Uint8Array.of(0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0f);
const DST6 = Uint8Array.of(0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

const payloadOf = (n: number, seed = 1) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed) & 0xff);

interface V4 {
  id?: number;
  proto?: number;
  src?: number;
  options?: Uint8Array;
}

/** The unfragmented IPv4 packet. */
function v4Whole(payload: Uint8Array, o: V4 = {}): Uint8Array {
  return v4Fragment(payload, 0, payload.length, false, o);
}

/** An IPv4 fragment carrying payload[start, end) of the datagram. */
function v4Fragment(payload: Uint8Array, start: number, end: number, more: boolean, o: V4 = {}): Uint8Array {
  const buf = new Uint8Array(60 + end - start);
  const hl = emitIpv4Header(buf, 0, {
    src: o.src ?? SRC4,
    dst: DST4,
    proto: o.proto ?? IpProtocol.UDP,
    ttl: 64,
    id: o.id ?? 0x1234,
    flags: more ? 1 : 0,
    fragOffset: start,
    payloadLength: end - start,
    tos: 0,
    ...(o.options && start === 0 ? { options: o.options } : {}),
  });
  buf.set(payload.subarray(start, end), hl);
  return buf.slice(0, hl + end - start);
}

/** Cuts `payload` at `cuts` (multiples of 8) into IPv4 fragments. */
function v4Fragments(payload: Uint8Array, cuts: number[], o: V4 = {}): Uint8Array[] {
  const edges = [0, ...cuts, payload.length];
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    out.push(v4Fragment(payload, edges[i]!, edges[i + 1]!, i + 2 < edges.length, o));
  }
  return out;
}

interface V6 {
  id?: number;
  /** Put a Hop-by-Hop and a Destination Options header before the fragment header. */
  ext?: boolean;
  src?: Uint8Array;
}

/** The unfragmentable part's extension headers, the last naming `next`. */
function v6Ext(o: V6, next: number): Uint8Array {
  if (!o.ext) return new Uint8Array(0);
  const b = new Uint8Array(16);
  emitIpv6RouterAlertHopByHop(b, 0, IpProtocol.IPV6_OPTS);
  b.set([next, 0, 1, 4, 0, 0, 0, 0], 8); // Destination Options: one PadN of 4 bytes
  return b;
}

/** The unfragmented IPv6 packet. */
function v6Whole(payload: Uint8Array, o: V6 = {}): Uint8Array {
  const ext = v6Ext(o, IpProtocol.UDP);
  const buf = new Uint8Array(40 + ext.length + payload.length);
  emitIpv6Header(buf, 0, {
    src: o.src ?? SRC6,
    dst: DST6,
    nextHeader: o.ext ? IpProtocol.HOPOPTS : IpProtocol.UDP,
    hopLimit: 64,
    payloadLength: ext.length + payload.length,
  });
  buf.set(ext, 40);
  buf.set(payload, 40 + ext.length);
  return buf;
}

function v6Fragment(payload: Uint8Array, start: number, end: number, more: boolean, o: V6 = {}): Uint8Array {
  const ext = v6Ext(o, IpProtocol.IPV6_FRAG);
  const hl = 40 + ext.length + 8;
  const buf = new Uint8Array(hl + end - start);
  emitIpv6Header(buf, 0, {
    src: o.src ?? SRC6,
    dst: DST6,
    nextHeader: o.ext ? IpProtocol.HOPOPTS : IpProtocol.IPV6_FRAG,
    hopLimit: 64,
    payloadLength: buf.length - 40,
  });
  buf.set(ext, 40);
  emitIpv6FragmentHeader(buf, 40 + ext.length, { nextHeader: IpProtocol.UDP, fragOffset: start, moreFragments: more, ident: o.id ?? 0xdeadbeef });
  buf.set(payload.subarray(start, end), hl);
  return buf;
}

function v6Fragments(payload: Uint8Array, cuts: number[], o: V6 = {}): Uint8Array[] {
  const edges = [0, ...cuts, payload.length];
  const out: Uint8Array[] = [];
  for (let i = 0; i + 1 < edges.length; i++) {
    out.push(v6Fragment(payload, edges[i]!, edges[i + 1]!, i + 2 < edges.length, o));
  }
  return out;
}

/** Feeds fragments in order; returns every completed datagram. */
function feed(r: Reassembler, frags: readonly Uint8Array[], now = 0): Uint8Array[] {
  const done: Uint8Array[] = [];
  for (const f of frags) {
    const out = r.add(f, now);
    if (out) done.push(out);
  }
  return done;
}

const v4 = (opts = {}) => new Reassembler(4, { timeoutMs: 30_000, ...opts });
const v6 = (opts = {}) => new Reassembler(6, { timeoutMs: 60_000, ...opts });
const shuffled = <T>(a: readonly T[], order: number[]) => order.map((i) => a[i]!);

t.test('IPv4: in order, reverse and shuffled rebuild the exact datagram', async (t) => {
  const payload = payloadOf(3000);
  const whole = v4Whole(payload);
  const frags = v4Fragments(payload, [1480, 2960]);
  for (const [name, order] of [
    ['in order', [0, 1, 2]],
    ['reverse', [2, 1, 0]],
    ['shuffled', [1, 2, 0]],
    ['last first', [2, 0, 1]],
  ] as const) {
    const r = v4();
    const done = feed(r, shuffled(frags, [...order]));
    t.equal(done.length, 1, name);
    const out = done[0]!;
    t.same(out, whole, `${name}: bytes equal the unfragmented packet`);
    t.equal((out[2]! << 8) | out[3]!, 20 + 3000, `${name}: total length`);
    t.equal(out[6]! & 0x3f, 0, `${name}: MF and offset cleared`);
    t.equal(out[7], 0);
    t.ok(verifyChecksum(out, 0, 20), `${name}: checksum`);
    t.equal(r.size, 0);
    t.equal(r.bytes, 0, `${name}: nothing held afterwards`);
    t.equal(r.stats.reassembled, 1);
  }
});

t.test('IPv4: the first fragment header, options included, becomes the datagram header', async (t) => {
  const payload = payloadOf(100);
  const options = Uint8Array.of(0x94, 4, 0, 0); // router alert (copied)
  const whole = v4Whole(payload, { options });
  const r = v4();
  const done = feed(r, v4Fragments(payload, [48], { options }).reverse());
  t.same(done, [whole]);
  t.equal(done[0]![0], 0x46);
});

t.test('IPv4: fragments of different keys do not mix', async (t) => {
  const a = payloadOf(64, 1);
  const b = payloadOf(64, 2);
  const r = v4();
  const fa = v4Fragments(a, [32], { id: 1 });
  const fb = v4Fragments(b, [32], { id: 1, proto: IpProtocol.TCP });
  const fc2 = v4Fragments(b, [32], { id: 1, src: SRC4 + 1 });
  t.equal(r.add(fa[0]!, 0), undefined);
  t.equal(r.add(fb[0]!, 0), undefined);
  t.equal(r.add(fc2[1]!, 0), undefined);
  t.equal(r.size, 3);
  t.same(r.add(fb[1]!, 0), v4Whole(b, { id: 1, proto: IpProtocol.TCP }));
  t.same(r.add(fa[1]!, 0), v4Whole(a, { id: 1 }));
  t.same(r.add(fc2[0]!, 0), v4Whole(b, { id: 1, src: SRC4 + 1 }));
});

t.test('IPv4: a non-fragment comes back whole, without state', async (t) => {
  const whole = v4Whole(payloadOf(10));
  const r = v4();
  const out = r.add(whole, 0);
  t.same(out, whole);
  t.not(out, whole, 'a copy');
  t.equal(r.size, 0);
});

t.test('IPv4: exact duplicates are ignored, the first copy kept', async (t) => {
  const payload = payloadOf(64);
  const frags = v4Fragments(payload, [16, 40]);
  const r = v4();
  t.equal(r.add(frags[1]!, 0), undefined);
  const dup = frags[1]!.slice();
  dup[dup.length - 1] = dup[dup.length - 1]! ^ 0xff; // same range, other data: still a duplicate
  t.equal(r.add(dup, 0), undefined);
  t.equal(r.add(frags[1]!, 0), undefined);
  t.equal(r.add(frags[0]!, 0), undefined);
  t.same(r.add(frags[2]!, 0), v4Whole(payload));
  t.equal(r.stats.duplicates, 2);
  t.equal(r.stats.overlaps, 0);
});

t.test('IPv4: an overlap drops the whole datagram (Linux, later gVisor)', async (t) => {
  const payload = payloadOf(64);
  const r = v4();
  t.equal(r.add(v4Fragment(payload, 0, 24, true), 0), undefined);
  t.equal(r.add(v4Fragment(payload, 16, 40, true), 0), undefined, 'overlaps the first');
  t.equal(r.stats.overlaps, 1);
  t.equal(r.size, 0);
  t.equal(r.bytes, 0);
  // What follows starts over and never completes on its own.
  t.equal(r.add(v4Fragment(payload, 24, 64, false), 0), undefined);
  t.equal(r.size, 1);
  // Overlapping the next segment, and one containing another.
  const r2 = v4();
  r2.add(v4Fragment(payload, 16, 32, true), 0);
  t.equal(r2.add(v4Fragment(payload, 8, 24, true), 0), undefined);
  t.equal(r2.stats.overlaps, 1);
  const r3 = v4();
  r3.add(v4Fragment(payload, 16, 24, true), 0);
  r3.add(v4Fragment(payload, 0, 40, true), 0);
  t.equal(r3.stats.overlaps, 1);
  t.equal(r3.size, 0);
});

t.test('IPv4: last fragments that disagree drop the datagram', async (t) => {
  const payload = payloadOf(64);
  const r = v4();
  r.add(v4Fragment(payload, 0, 16, true), 0);
  r.add(v4Fragment(payload, 32, 64, false), 0);
  t.equal(r.add(v4Fragment(payload, 16, 48, false), 0), undefined, 'a second last fragment, shorter');
  t.equal(r.stats.overlaps + r.stats.malformed, 1);
  t.equal(r.size, 0);
  const r2 = v4();
  r2.add(v4Fragment(payload, 40, 48, true), 0);
  t.equal(r2.add(v4Fragment(payload, 16, 32, false), 0), undefined, 'data beyond the end');
  t.equal(r2.stats.malformed, 1);
  t.equal(r2.size, 0);
  const r3 = v4();
  r3.add(v4Fragment(payload, 16, 32, false), 0);
  t.equal(r3.add(v4Fragment(payload, 40, 48, true), 0), undefined, 'a fragment past the known end');
  t.equal(r3.stats.malformed, 1);
  t.equal(r3.size, 0);
});

t.test('IPv4: misaligned, empty and too-big fragments', async (t) => {
  const payload = payloadOf(100);
  const r = v4();
  t.equal(r.add(v4Fragment(payload, 0, 13, true), 0), undefined, 'non-last of 13 bytes');
  t.equal(r.add(v4Fragment(payload, 8, 8, true), 0), undefined, 'empty');
  t.equal(r.stats.malformed, 2);
  t.equal(r.size, 0);
  // A last fragment may be any length.
  t.equal(r.add(v4Fragment(payload, 16, 29, false), 0), undefined);
  t.equal(r.size, 1);
  // Offset 65528 (the largest) with 8 bytes: 20 + 65536 > 65535.
  const big = new Uint8Array(65536);
  t.equal(r.add(v4Fragment(big, 65528, 65536, false), 0), undefined);
  t.equal(r.stats.tooBig, 1);
  // 65512 + 3 + 20 = 65535: fits.
  t.equal(r.add(v4Fragment(big, 65512, 65515, false, { id: 9 }), 0), undefined);
  t.equal(r.stats.tooBig, 1);
  // Truncated or not IPv4.
  t.equal(r.add(new Uint8Array(10), 0), undefined);
  t.equal(r.add(v6Whole(payload), 0), undefined);
  t.equal(r.stats.malformed, 4);
  // A smaller configured limit.
  const r2 = v4({ maxDatagramBytes: 1500 });
  t.equal(r2.add(v4Fragment(new Uint8Array(2000), 1472, 1480, true), 0), undefined, '20 + 1480 fits');
  t.equal(r2.stats.tooBig, 0);
  t.equal(r2.add(v4Fragment(new Uint8Array(2000), 1480, 1488, true, { id: 2 }), 0), undefined, '20 + 1488 does not');
  t.equal(r2.stats.tooBig, 1);
});

t.test('IPv4: a long first header counts against the limit at completion', async (t) => {
  const options = new Uint8Array(40).fill(1); // 40 bytes of NOP
  const big = new Uint8Array(65515);
  const r = v4();
  t.equal(r.add(v4Fragment(big, 8, 65515, false, { options }), 0), undefined, '20 + 65515 fits');
  t.equal(r.add(v4Fragment(big, 0, 8, true, { options }), 0), undefined, 'but the first has a 60-byte header');
  t.equal(r.stats.tooBig, 1);
  t.equal(r.size, 0);
});

t.test('IPv6: in order, reverse and shuffled rebuild the exact packet', async (t) => {
  for (const ext of [false, true]) {
    const payload = payloadOf(4000);
    const whole = v6Whole(payload, { ext });
    const frags = v6Fragments(payload, [1232, 2464, 3696], { ext });
    for (const [name, order] of [
      ['in order', [0, 1, 2, 3]],
      ['reverse', [3, 2, 1, 0]],
      ['shuffled', [2, 0, 3, 1]],
    ] as const) {
      const label = `${ext ? 'with extension headers, ' : ''}${name}`;
      const r = v6();
      const done = feed(r, shuffled(frags, [...order]));
      t.equal(done.length, 1, label);
      const out = done[0]!;
      t.same(out, whole, `${label}: bytes equal the unfragmented packet`);
      const unfrag = ext ? 16 : 0;
      t.equal((out[4]! << 8) | out[5]!, unfrag + 4000, `${label}: payload length`);
      if (ext) {
        t.equal(out[6], IpProtocol.HOPOPTS, `${label}: IPv6 next header`);
        t.equal(out[40], IpProtocol.IPV6_OPTS, `${label}: hop-by-hop next header unchanged`);
        t.equal(out[48], IpProtocol.UDP, `${label}: destination options names the upper layer`);
      } else {
        t.equal(out[6], IpProtocol.UDP, `${label}: next header from the fragment header`);
      }
      t.equal(r.size, 0);
      t.equal(r.bytes, 0);
    }
  }
});

t.test('IPv6: an atomic fragment is a whole packet at once (RFC 6946)', async (t) => {
  const payload = payloadOf(50);
  for (const ext of [false, true]) {
    const r = v6();
    // A datagram in progress with the same identification is left alone.
    r.add(v6Fragment(payload, 8, 16, true, { ext }), 0);
    const atomic = v6Fragment(payload, 0, 50, false, { ext });
    t.same(r.add(atomic, 0), v6Whole(payload, { ext }));
    t.equal(r.stats.atomic, 1);
    t.equal(r.size, 1);
  }
});

t.test('IPv6: exact duplicates are ignored, overlaps drop the datagram (RFC 5722)', async (t) => {
  const payload = payloadOf(64);
  const frags = v6Fragments(payload, [24]);
  const r = v6();
  r.add(frags[0]!, 0);
  t.equal(r.add(frags[0]!, 0), undefined);
  t.equal(r.stats.duplicates, 1);
  t.same(r.add(frags[1]!, 0), v6Whole(payload));

  const r2 = v6();
  r2.add(v6Fragment(payload, 0, 24, true), 0);
  t.equal(r2.add(v6Fragment(payload, 16, 64, false), 0), undefined);
  t.equal(r2.stats.overlaps, 1);
  t.equal(r2.size, 0, 'the whole datagram is gone');
  // Fragments still in flight cannot complete it.
  t.equal(r2.add(v6Fragment(payload, 24, 64, false), 0), undefined);
  t.equal(r2.size, 1);
});

t.test('IPv6: misaligned, too-big and malformed fragments', async (t) => {
  const payload = payloadOf(100);
  const r = v6();
  t.equal(r.add(v6Fragment(payload, 0, 20, true), 0), undefined, 'non-last of 20 bytes');
  t.equal(r.stats.malformed, 1);
  // Offset 65528 + 8 bytes: payload 65536 > 65535.
  const big = new Uint8Array(65536);
  t.equal(r.add(v6Fragment(big, 65528, 65536, false), 0), undefined);
  t.equal(r.stats.tooBig, 1);
  t.equal(r.add(v6Fragment(big, 65520, 65527, false), 0), undefined, '65527 fits');
  t.equal(r.stats.tooBig, 1);
  // No fragment header at all, a truncated fragment header, or not IPv6.
  t.equal(r.add(v6Whole(payload), 0), undefined);
  const cut = v6Fragment(payload, 8, 16, true).slice(0, 44);
  cut[5] = 4;
  t.equal(r.add(cut, 0), undefined);
  t.equal(r.add(v4Whole(payload), 0), undefined);
  t.equal(r.stats.malformed, 4);
  t.equal(r.size, 1);
});

t.test('timeout: with and without the first fragment', async (t) => {
  const payload = payloadOf(64);
  const r = v4();
  t.equal(r.pollAt(), Infinity);
  const first = v4Fragment(payload, 0, 32, true, { id: 1 });
  r.add(first, 1000);
  r.add(v4Fragment(payload, 32, 64, false, { id: 2 }), 5000);
  r.add(v4Fragment(payload, 40, 64, false, { id: 1 }), 20_000); // does not restart the timer
  t.equal(r.pollAt(), 31_000);
  const seen: Expired[] = [];
  r.poll(30_999, (e) => seen.push(e));
  t.equal(seen.length, 0);
  r.poll(31_000, (e) => seen.push(e));
  t.equal(seen.length, 1);
  t.same(seen[0]!.firstFragment, first, 'quotes the first fragment as received');
  t.equal(r.pollAt(), 35_000);
  r.poll(100_000, (e) => seen.push(e));
  t.equal(seen.length, 2);
  t.equal(seen[1]!.firstFragment, undefined, 'no first fragment, no ICMP');
  t.equal(r.stats.timeouts, 2);
  t.equal(r.size, 0);
  t.equal(r.bytes, 0);
  t.equal(r.pollAt(), Infinity);
  // The missing piece after expiry starts a new datagram.
  t.equal(r.add(v4Fragment(payload, 32, 64, true, { id: 1 }), 100_000), undefined);
  t.equal(r.size, 1);

  const r6 = v6();
  const f6 = v6Fragment(payload, 0, 32, true, { ext: true });
  r6.add(f6, 0);
  t.equal(r6.pollAt(), 60_000);
  r6.poll(60_000, (e) => seen.push(e));
  t.same(seen[2]!.firstFragment, f6);
});

t.test('memory ceiling: a flood of incomplete datagrams stays bounded, oldest evicted', async (t) => {
  const maxBytes = 64 * 1024;
  const r = v4({ maxBytes });
  const payload = payloadOf(2000);
  let peak = 0;
  for (let id = 0; id < 1000; id++) {
    r.add(v4Fragment(payload, 0, 1480, true, { id }), id);
    peak = Math.max(peak, r.bytes);
  }
  t.ok(peak <= maxBytes, `never over the ceiling (peak ${peak})`);
  t.ok(r.stats.evictedForMemory > 900);
  const kept = r.size;
  t.ok(kept > 0 && kept < 50);
  // The newest survived: completing it works; the oldest are gone.
  t.same(r.add(v4Fragment(payload, 1480, 2000, false, { id: 999 }), 1000), v4Whole(payload, { id: 999 }));
  t.equal(r.add(v4Fragment(payload, 1480, 2000, false, { id: 0 }), 1000), undefined);
  // The timer queue still works after evictions.
  const expired: Expired[] = [];
  r.poll(1_000_000, (e) => expired.push(e));
  t.equal(expired.length, kept); // kept - 1 (completed) + 1 (id 0 restarted)
  t.equal(r.bytes, 0);

  const rc = v6({ maxDatagrams: 4 });
  for (let id = 0; id < 10; id++) rc.add(v6Fragment(payload, 0, 8, true, { id }), id);
  t.equal(rc.size, 4);
  t.equal(rc.stats.evictedForMemory, 6);
  t.same(rc.add(v6Fragment(payload.subarray(0, 16), 8, 16, false, { id: 9 }), 10), v6Whole(payload.subarray(0, 16), { id: 9 }));

  // One datagram larger than the ceiling is dropped rather than held.
  const tiny = v4({ maxBytes: 3000 });
  t.equal(tiny.add(v4Fragment(payload, 0, 1480, true), 0), undefined);
  t.equal(tiny.add(v4Fragment(payload, 1480, 2000, true), 0), undefined);
  t.equal(tiny.add(v4Fragment(payload, 2000, 2000 + 1480, false), 0), undefined);
  t.ok(tiny.bytes <= 3000);
  t.ok(tiny.stats.evictedForMemory >= 1);
});

/** Random cut points: sorted distinct multiples of 8 strictly inside the payload. */
const fragmentation = fc
  .integer({ min: 1, max: 3000 })
  .chain((n) =>
    fc.tuple(
      fc.uint8Array({ minLength: n, maxLength: n }),
      fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, Math.ceil(n / 8) - 1) }), { maxLength: 40 }),
      fc.integer(),
    ),
  )
  .map(([payload, units, seed]) => ({
    payload,
    cuts: units
      .map((u) => u * 8)
      .filter((c) => c < payload.length)
      .sort((a, b) => a - b),
    seed,
  }));

function permute<T>(a: readonly T[], seed: number): T[] {
  const out = [...a];
  let s = seed | 0;
  for (let i = out.length - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) | 0;
    const j = (s >>> 8) % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

t.test('property: random fragmentations in random order reassemble to the original', async (t) => {
  fc.assert(
    fc.property(fragmentation, fc.boolean(), ({ payload, cuts, seed }, dup) => {
      for (const family of [4, 6] as const) {
        const r = family === 4 ? v4() : v6();
        const frags = family === 4 ? v4Fragments(payload, cuts) : v6Fragments(payload, cuts, { ext: seed % 2 === 0 });
        const order = permute(frags, seed);
        if (dup) order.splice((seed & 3) % (order.length + 1), 0, order[(seed >>> 3) % order.length]!);
        const done = feed(r, order);
        const whole = family === 4 ? v4Whole(payload) : v6Whole(payload, { ext: seed % 2 === 0 });
        // A single "fragment" is a whole packet: its duplicate is a second packet.
        if (done.length !== (dup && frags.length === 1 ? 2 : 1)) return false;
        if (done.some((d) => Buffer.compare(d, whole) !== 0)) return false;
        if (r.bytes !== 0 && !(dup && r.size === 1)) return false;
      }
      return true;
    }),
    { numRuns: 300 },
  );
  t.pass('reassembled');
});

t.test('property: random bytes and mangled fragments never throw and stay bounded', async (t) => {
  const maxBytes = 16 * 1024;
  const r4 = v4({ maxBytes, maxDatagrams: 8 });
  const r6 = v6({ maxBytes, maxDatagrams: 8 });
  let now = 0;
  const mangled = fc
    .tuple(fragmentation, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat())
    .map(([{ payload, cuts }, flips, which]) => {
      const frags = which % 2 !== 0 ? v4Fragments(payload, cuts) : v6Fragments(payload, cuts, { ext: which % 4 === 0 });
      const f = frags[which % frags.length]!.slice();
      for (const [at, v] of flips) f[at % f.length] = v;
      return f.subarray(0, Math.max(0, f.length - (which % 5)));
    });
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), mangled), (bytes) => {
      now += 1000;
      r4.add(bytes, now);
      r6.add(bytes, now);
      r4.poll(now, () => {});
      r6.poll(now, () => {});
      return r4.bytes <= maxBytes && r6.bytes <= maxBytes && r4.size <= 8 && r6.size <= 8;
    }),
    { numRuns: 1000 },
  );
  t.pass('no throw');
});

t.test('headroom: the whole datagram comes back with room in front of it', async (t) => {
  const r = new Reassembler(4, { timeoutMs: 30_000, headroom: 14 });
  const p = new Uint8Array(28);
  p[0] = 0x45;
  p[3] = 28;
  p[8] = 64;
  p[9] = 17;
  const whole = r.add(p, 0)!;
  t.equal(whole.byteOffset, 14);
  t.equal(whole.buffer.byteLength, 14 + 28);
  t.same(whole, p);
});

t.test('memory budget: fragments are held in it; refused, the oldest datagrams go; all given back', async (t) => {
  // Room for one datagram of two fragments (3296 bytes with the bookkeeping), not for two first
  // fragments (2 × 1692).
  const budget = new MemoryBudget(3300);
  const memory = budget.account('reassembly');
  const r = v4({ memory });
  const a = v4Fragments(payloadOf(3000), [1480], { id: 1 });
  const b = v4Fragments(payloadOf(3000), [1480], { id: 2 });
  t.equal(r.add(a[0]!, 0), undefined);
  t.ok(memory.used > 1480 && memory.used === r.bytes, 'the first fragment is charged');
  t.equal(r.add(b[0]!, 1), undefined);
  t.equal(r.stats.evictedForMemory, 1, 'no room for two: the oldest datagram went');
  t.equal(r.size, 1);
  t.same(r.add(b[1]!, 2), v4Whole(payloadOf(3000), { id: 2 }), 'the newer one completes');
  t.equal(memory.used, 0, 'nothing held, nothing charged');
});
