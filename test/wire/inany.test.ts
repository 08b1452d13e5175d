// The one address type: IPv4 held IPv4-mapped, IPv6 as is; read and written in place.
import t from 'tap';
import {
  INANY_LOOPBACK4,
  INANY_LOOPBACK6,
  formatInany,
  inany,
  inanyBytes,
  inanyEqual,
  inanyFamily,
  inanyFrom,
  inanyIsLoopback,
  inanyMatches,
  inanyOf,
  inanyOfIpv4,
  inanySet,
  inanyV4,
  inanyWrite,
  ipFamily,
  parseIpv6,
} from '../../src/wire/index.js';

t.test('IPv4 is held IPv4-mapped and comes back out unchanged', async (t) => {
  const packet = Uint8Array.of(0xaa, 10, 0, 2, 15, 0xbb);
  const a = inanyOf(4, packet, 1);
  t.same([...a], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 2, 15]);
  t.equal(inanyFamily(a), 4);
  t.equal(inanyV4(a), 0x0a00020f);
  t.same([...inanyBytes(a)], [10, 0, 2, 15]);
  t.equal(formatInany(a), '10.0.2.15');
  t.ok(inanyEqual(a, inanyOfIpv4(0x0a00020f)));
  t.ok(inanyEqual(a, inanyFrom(Uint8Array.of(10, 0, 2, 15))));
  const out = new Uint8Array(6);
  inanyWrite(a, out, 1);
  t.same([...out], [0, 10, 0, 2, 15, 0], 'written as its 4 bytes');
  t.ok(inanyMatches(a, 4, packet, 1));
  t.notOk(inanyMatches(a, 4, Uint8Array.of(10, 0, 2, 16), 0));
});

t.test('IPv6 is held as is; an IPv4 address never matches an IPv6 one with the same low bytes', async (t) => {
  const v6 = parseIpv6('fec0::15')!;
  const a = inanyOf(6, v6);
  t.equal(inanyFamily(a), 6);
  t.equal(formatInany(a), 'fec0::15');
  t.same([...inanyBytes(a)], [...v6]);
  const out = new Uint8Array(16);
  inanyWrite(a, out, 0);
  t.same([...out], [...v6]);
  const four = inanyOfIpv4(0x15);
  t.notOk(inanyMatches(four, 6, parseIpv6('::15')!, 0), 'IPv4 0.0.0.21 is not ::21');
  t.notOk(inanyMatches(a, 4, v6, 12), 'an IPv6 Inany never matches IPv4 bytes');
  const mapped = parseIpv6('::ffff:10.0.2.15')!;
  t.equal(inanyFamily(inanyOf(6, mapped)), 4, 'an IPv4-mapped IPv6 address is the IPv4 address');
  t.ok(inanyEqual(inanySet(inany(), 6, v6), a), 'set in place');
});

t.test('loopback: one constant per family; 127/8 and ::1 are loopback', async (t) => {
  t.equal(formatInany(INANY_LOOPBACK4), '127.0.0.1');
  t.equal(formatInany(INANY_LOOPBACK6), '::1');
  t.ok(inanyIsLoopback(inanyOfIpv4(0x7f000203)));
  t.ok(inanyIsLoopback(INANY_LOOPBACK6));
  t.notOk(inanyIsLoopback(inanyOfIpv4(0x0a000202)));
  t.notOk(inanyIsLoopback(inanyOf(6, parseIpv6('::2')!)));
});

t.test('the header layout of each family', async (t) => {
  t.same({ ...ipFamily(4) }, { family: 4, alen: 4, srcOff: 12, dstOff: 16, headerLen: 20, errorMax: 556 });
  t.same({ ...ipFamily(6) }, { family: 6, alen: 16, srcOff: 8, dstOff: 24, headerLen: 40, errorMax: 1240 });
});
