import t from 'tap';
import fc from 'fast-check';
import {
  checksumUpdate16,
  checksumUpdate32,
  checksumUpdateBytes,
  completeChecksum,
  foldSum,
  internetChecksum,
  pseudoHeaderSumV4,
  pseudoHeaderSumV6,
  sum16,
  verifyChecksum,
  verifyTransportV4,
  verifyTransportV6,
} from '../../src/wire/checksum.js';
import { everyPrefix, hex, property } from '../support/wire-helpers.js';

/** Straightforward reference: 16-bit words, end-around carry after each add. */
function reference(b: Uint8Array, off: number, len: number): number {
  let s = 0;
  for (let i = 0; i < len; i += 2) {
    const w = ((b[off + i] ?? 0) << 8) | (i + 1 < len ? (b[off + i + 1] ?? 0) : 0);
    s += w;
    s = (s & 0xffff) + (s >>> 16);
  }
  return ~s & 0xffff;
}

t.test('RFC 1071 section 3 example', async (t) => {
  // 00 01 f2 03 f4 f5 f6 f7: the sum is ddf2, the checksum 220d.
  const b = hex('0001f203f4f5f6f7');
  t.equal(sum16(b, 0, 8), 0xddf2);
  t.equal(internetChecksum(b, 0, 8), 0x220d);
});

t.test('IPv4 header from a real capture verifies, and recomputes to the same value', async (t) => {
  // 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7 (Wikipedia's worked example)
  const h = hex('450000730000400040 11b861c0a80001c0a800c7'.replace(/ /g, ''));
  t.ok(verifyChecksum(h, 0, 20));
  h[10] = 0;
  h[11] = 0;
  t.equal(internetChecksum(h, 0, 20), 0xb861);
});

t.test('odd lengths pad with a zero byte', async (t) => {
  const b = hex('0102030405');
  t.equal(sum16(b, 0, 5), 0x0102 + 0x0304 + 0x0500);
  t.equal(internetChecksum(b, 1, 3), reference(b, 1, 3));
  t.equal(internetChecksum(b, 0, 0), 0xffff);
});

t.test('matches the reference on random data at any offset and length', async (t) => {
  property(
    t,
    'property holds',
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), (b, a, l) => {
      const off = b.length === 0 ? 0 : a % b.length;
      const len = b.length - off === 0 ? 0 : l % (b.length - off + 1);
      return internetChecksum(b, off, len) === reference(b, off, len);
    }),
  );
});

t.test('data with its checksum inserted verifies', async (t) => {
  property(
    t,
    'property holds',
    fc.property(fc.uint8Array({ minLength: 2, maxLength: 400 }), fc.nat(), (data, p) => {
      const b = Uint8Array.from(data);
      const at = (p % (b.length >>> 1)) * 2; // an even position, as in every header
      b[at] = 0;
      b[at + 1] = 0;
      const c = internetChecksum(b, 0, b.length);
      b[at] = c >>> 8;
      b[at + 1] = c & 0xff;
      return verifyChecksum(b, 0, b.length);
    }),
  );
});

t.test('sums chain over even-length pieces', async (t) => {
  property(
    t,
    'property holds',
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 200 }), (a0, b) => {
      const a = a0.length % 2 === 0 ? a0 : a0.subarray(1);
      const joined = new Uint8Array(a.length + b.length);
      joined.set(a, 0);
      joined.set(b, a.length);
      return internetChecksum(b, 0, b.length, sum16(a, 0, a.length)) === internetChecksum(joined, 0, joined.length);
    }),
  );
});

t.test('a 64 KiB frame: no loss of precision', async (t) => {
  const b = new Uint8Array(65536).fill(0xff);
  t.equal(internetChecksum(b, 0, b.length), reference(b, 0, b.length));
  t.equal(foldSum(0xffff * 40000), foldSum(foldSum(0xffff * 20000) + foldSum(0xffff * 20000)));
});

t.test('incremental updates (RFC 1624) agree with recomputation', async (t) => {
  property(
    t,
    'property holds',
    fc.property(fc.uint8Array({ minLength: 8, maxLength: 64 }), fc.nat(), fc.integer({ min: 0, max: 0xffffffff }), (data, p, v) => {
      const b = Uint8Array.from(data.length % 2 === 0 ? data : data.subarray(1));
      const words = b.length >>> 1;
      const at16 = (p % words) * 2;
      const before = internetChecksum(b, 0, b.length);
      const old16 = (b[at16]! << 8) | b[at16 + 1]!;
      const new16 = v & 0xffff;
      b[at16] = new16 >>> 8;
      b[at16 + 1] = new16 & 0xff;
      const after16 = internetChecksum(b, 0, b.length);
      // Ones'-complement has two zeros: compare as sums modulo 0xffff.
      const same = (x: number, y: number) => x % 0xffff === y % 0xffff;
      if (!same(checksumUpdate16(before, old16, new16), after16)) return false;
      if (words < 2) return true;
      const at32 = (p % (words - 1)) * 2;
      const old32 = ((b[at32]! << 24) | (b[at32 + 1]! << 16) | (b[at32 + 2]! << 8) | b[at32 + 3]!) >>> 0;
      const c0 = internetChecksum(b, 0, b.length);
      const saved = b.slice(at32, at32 + 4);
      b[at32] = v >>> 24;
      b[at32 + 1] = v >>> 16;
      b[at32 + 2] = v >>> 8;
      b[at32 + 3] = v;
      const c1 = internetChecksum(b, 0, b.length);
      if (!same(checksumUpdate32(c0, old32, v >>> 0), c1)) return false;
      return same(checksumUpdateBytes(c0, saved, 0, b, at32, 4), c1);
    }),
  );
});

t.test('reads stay inside the given range', async (t) => {
  const rs = hex('850071b5000000000101525400123456');
  everyPrefix(rs, (b, len) => {
    internetChecksum(b, 0, len);
    if (len > 3) internetChecksum(b, 3, len - 3);
  });
  t.pass('no read outside any prefix');
});

t.test('pseudo-headers', async (t) => {
  // 10.0.2.15 -> 10.0.2.2, UDP, 40 bytes: 0a00 + 020f + 0a00 + 0202 + 0011 + 0028
  t.equal(pseudoHeaderSumV4(0x0a00020f, 0x0a000202, 17, 40), 0x0a00 + 0x020f + 0x0a00 + 0x0202 + 0x11 + 0x28);
  const src = new Uint8Array(16);
  const dst = new Uint8Array(16);
  src[0] = 0xfe;
  src[1] = 0x80;
  src[15] = 1;
  dst[0] = 0xff;
  dst[1] = 0x02;
  dst[15] = 2;
  t.equal(pseudoHeaderSumV6(src, 0, dst, 0, 58, 0x10020), foldSum(0xfe80 + 1 + 0xff02 + 2 + 1 + 0x20 + 58));
});

t.test('transport verification over pseudo-headers', async (t) => {
  // The UDP datagram quoted in an ICMP port unreachable from a traceroute (see icmpv4.test.ts).
  const udp = hex('afc8829a0028c025' + '404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f');
  t.ok(verifyTransportV4(udp, 0, udp.length, 0x0a00020f, 0x0a000202, 17));
  t.notOk(verifyTransportV4(udp, 0, udp.length, 0x0a00020f, 0x0a000203, 17));
  // ICMPv6 router solicitation from fe80::5054:ff:fe12:3456 to ff02::2.
  const rs = hex('850071b5000000000101525400123456');
  const src = hex('fe80000000000000505400fffe123456');
  const dst = hex('ff020000000000000000000000000002');
  t.ok(verifyTransportV6(rs, 0, rs.length, src, 0, dst, 0, 58));
  rs[15] = rs[15]! ^ 1;
  t.notOk(verifyTransportV6(rs, 0, rs.length, src, 0, dst, 0, 58));
});

t.test('a partial checksum (pseudo-header sum in the field) completes to the full one', async (t) => {
  property(
    t,
    'TCP over IPv4: completed == computed whole, and it verifies',
    fc.property(fc.uint8Array({ minLength: 20, maxLength: 3000 }), fc.integer({ min: 0, max: 7 }), (body, at) => {
      const src = 0x0a000202;
      const dst = 0x0a00020f;
      const b = new Uint8Array(at + body.length);
      b.set(body, at);
      b[at + 16] = 0;
      b[at + 17] = 0;
      const pseudo = pseudoHeaderSumV4(src, dst, 6, body.length);
      const whole = internetChecksum(b, at, body.length, pseudo);
      b[at + 16] = pseudo >> 8;
      b[at + 17] = pseudo & 0xff;
      completeChecksum(b, at, b.length, 16);
      return ((b[at + 16]! << 8) | b[at + 17]!) === whole && verifyTransportV4(b, at, body.length, src, dst, 6);
    }),
  );
  // UDP: a checksum that comes out as zero is sent as all ones (RFC 768); TCP keeps the zero.
  // A datagram whose words (pseudo-header sum in the field included) sum to 0xffff.
  const udp = Uint8Array.of(0x12, 0x34, 0x00, 0x35, 0x00, 0x0a, 0x00, 0x00, 0x00, 0x00);
  const sum = foldSum(0x1234 + 0x0035 + 0x000a);
  udp[8] = (0xffff - sum) >> 8;
  udp[9] = (0xffff - sum) & 0xff;
  const asTcp = udp.slice();
  completeChecksum(udp, 0, udp.length, 6, true);
  t.same([udp[6], udp[7]], [0xff, 0xff], 'UDP: zero becomes 0xffff');
  completeChecksum(asTcp, 0, asTcp.length, 6, false);
  t.same([asTcp[6], asTcp[7]], [0, 0], 'otherwise zero stays');
});
