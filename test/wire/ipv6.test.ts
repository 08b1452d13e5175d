import t from 'tap';
import fc from 'fast-check';
import { IpProtocol } from '../../src/wire/ip.js';
import {
  emitIpv6FragmentHeader,
  emitIpv6Header,
  emitIpv6RouterAlertHopByHop,
  formatIpv6,
  IPV6_ALL_MLDV2_ROUTERS,
  IPV6_ALL_NODES,
  Ipv6ChainResult,
  ipv6Copy,
  ipv6Equal,
  Ipv6Error,
  Ipv6FragmentHeader,
  Ipv6HeaderChain,
  ipv6IsLinkLocal,
  ipv6IsLoopback,
  ipv6IsMulticast,
  ipv6IsSolicitedNode,
  ipv6IsUnspecified,
  ipv6IsV4Mapped,
  ipv6LinkLocalFromMac,
  ipv6MulticastScope,
  Ipv6OptionIterator,
  Ipv6Packet,
  ipv6PrefixEqual,
  Ipv6ProblemCode,
  ipv6SolicitedNode,
  parseIpv6,
  walkIpv6Headers,
  walkIpv6HeadersFrom,
} from '../../src/wire/ipv6.js';
import { ECHO6_PACKET, IPV6_DSTOPTS_FRAG, MLDV2_REPORT_FRAME, NS_FRAME } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;

t.test('parse the IPv6 header of a captured NS', async (t) => {
  const p = new Ipv6Packet().at(NS_FRAME, 14, NS_FRAME.length - 14);
  t.ok(p.check());
  t.equal(p.version, 6);
  t.equal(p.trafficClass, 0);
  t.equal(p.flowLabel, 0);
  t.equal(p.payloadLength, 32);
  t.equal(p.nextHeader, IpProtocol.ICMPV6);
  t.equal(p.hopLimit, 255);
  t.equal(formatIpv6(p.bytes, p.srcOffset), 'fe80::5054:ff:fe12:3456');
  t.equal(formatIpv6(p.bytes, p.dstOffset), 'ff02::1:ff00:2');
  t.ok(ipv6Equal(p.bytes, p.srcOffset, GUEST_LL, 0));
  t.equal(p.payloadOffset, 54);
  t.equal(p.end, NS_FRAME.length);
});

t.test('traffic class and flow label', async (t) => {
  const p = new Ipv6Packet().at(ECHO6_PACKET.slice(), 0, ECHO6_PACKET.length);
  t.ok(p.check());
  t.equal(p.flowLabel, 0x5a1b3);
  t.equal(p.trafficClass, 0);
  p.trafficClass = 0xb8;
  t.equal(p.trafficClass, 0xb8);
  t.equal(p.flowLabel, 0x5a1b3);
  t.equal(p.version, 6);
  p.flowLabel = 0xfffff;
  t.equal(p.trafficClass, 0xb8);
  t.equal(p.flowLabel, 0xfffff);
  p.hopLimit = 1;
  p.payloadLength = 0;
  p.nextHeader = 59;
  t.equal(p.hopLimit + p.payloadLength + p.nextHeader, 60);
  p.setSrc(IPV6_ALL_NODES);
  p.setDst(GUEST_LL);
  t.equal(formatIpv6(p.bytes, p.srcOffset), 'ff02::1');
  t.ok(ipv6Equal(p.bytes, p.dstOffset, GUEST_LL, 0));
});

t.test('emit the same headers', async (t) => {
  const buf = new Uint8Array(40);
  const repr = {
    src: GUEST_LL,
    dst: parseIpv6('ff02::1:ff00:2')!,
    nextHeader: IpProtocol.ICMPV6,
    hopLimit: 255,
    payloadLength: 32,
  };
  t.equal(emitIpv6Header(buf, 0, repr), 40);
  t.same(buf, NS_FRAME.subarray(14, 54));
  t.equal(
    emitIpv6Header(buf, 0, {
      src: parseIpv6('fd00::5054:ff:fe12:3456')!,
      dst: parseIpv6('fd00::2')!,
      nextHeader: 58,
      hopLimit: 64,
      payloadLength: 24,
      flowLabel: 0x5a1b3,
    }),
    40,
  );
  t.same(buf, ECHO6_PACKET.subarray(0, 40));
  t.equal(emitIpv6Header(buf, 1, repr), -1);
  const hbh = new Uint8Array(8);
  t.equal(emitIpv6RouterAlertHopByHop(hbh, 0, IpProtocol.ICMPV6), 8);
  t.same(hbh, MLDV2_REPORT_FRAME.subarray(54, 62));
});

t.test('check() errors and truncation', async (t) => {
  const b = NS_FRAME.slice(14);
  const p = new Ipv6Packet();
  t.equal(p.at(b, 0, 39).problem(), Ipv6Error.TRUNCATED);
  b[0] = 0x40;
  t.equal(p.at(b, 0, b.length).problem(), Ipv6Error.VERSION);
  b[0] = 0x60;
  t.equal(p.at(b, 0, b.length - 1).problem(), Ipv6Error.PAYLOAD_LENGTH);
  everyPrefix(NS_FRAME.subarray(14), (s, len) => t.notOk(new Ipv6Packet().at(s, 0, len).check()));
});

t.test('walk: no extension headers', async (t) => {
  const chain = new Ipv6HeaderChain();
  t.equal(walkIpv6Headers(NS_FRAME, 14, chain), Ipv6ChainResult.OK);
  t.equal(chain.upperProtocol, IpProtocol.ICMPV6);
  t.equal(chain.upperOffset, 54);
  t.equal(chain.nextHeaderPointer, 6);
  t.equal(chain.hopByHopOffset, -1);
  t.equal(chain.fragmentOffset, -1);
  t.equal(chain.routerAlert, -1);
});

t.test('walk: Hop-by-Hop with router alert', async (t) => {
  const chain = new Ipv6HeaderChain();
  t.equal(walkIpv6Headers(MLDV2_REPORT_FRAME, 14, chain), Ipv6ChainResult.OK);
  t.equal(chain.hopByHopOffset, 54);
  t.equal(chain.routerAlert, 0);
  t.equal(chain.upperProtocol, IpProtocol.ICMPV6);
  t.equal(chain.upperOffset, 62);
  t.equal(chain.nextHeaderPointer, 40);
  const it = new Ipv6OptionIterator().at(MLDV2_REPORT_FRAME, 54, 8);
  t.ok(it.next());
  t.equal(it.type, 5);
  t.equal(it.dataLength, 2);
  t.equal(it.offset, 56);
  t.notOk(it.next(), 'PadN is skipped');
  t.notOk(it.error);
});

t.test('walk: destination options then a fragment header', async (t) => {
  const chain = new Ipv6HeaderChain();
  t.equal(walkIpv6Headers(IPV6_DSTOPTS_FRAG, 0, chain), Ipv6ChainResult.OK);
  t.equal(chain.destOptionsOffset, 40);
  t.equal(chain.fragmentOffset, 48);
  t.equal(chain.upperProtocol, IpProtocol.UDP);
  t.equal(chain.upperOffset, 56);
  const f = new Ipv6FragmentHeader().at(IPV6_DSTOPTS_FRAG, chain.fragmentOffset, 8);
  t.ok(f.check());
  t.equal(f.nextHeader, 17);
  t.equal(f.fragOffset, 0);
  t.ok(f.moreFragments);
  t.equal(f.ident, 0xdeadbeef);
  t.notOk(f.isAtomic());
  const buf = new Uint8Array(8);
  t.equal(emitIpv6FragmentHeader(buf, 0, { nextHeader: 17, fragOffset: 0, moreFragments: true, ident: 0xdeadbeef }), 8);
  t.same(buf, IPV6_DSTOPTS_FRAG.subarray(48, 56));
  const v = new Ipv6FragmentHeader().at(buf, 0, 8);
  v.fragOffset = 1448;
  v.moreFragments = false;
  v.nextHeader = 6;
  v.ident = 1;
  t.equal(v.fragOffset, 1448);
  t.notOk(v.moreFragments);
  t.same(buf, hex('0600 05a8 0000 0001'));
  v.fragOffset = 0;
  t.ok(v.isAtomic());
});

/** An IPv6 packet with `ext` after the header, first named by `nh`, then 8 bytes of UDP. */
function withExt(nh: number, ext: number[]): Uint8Array {
  const b = new Uint8Array(40 + ext.length + 8);
  emitIpv6Header(b, 0, { src: GUEST_LL, dst: IPV6_ALL_NODES, nextHeader: nh, hopLimit: 1, payloadLength: ext.length + 8 });
  b.set(ext, 40);
  return b;
}

t.test('walk: errors give ICMPv6 parameter problem code and pointer', async (t) => {
  const chain = new Ipv6HeaderChain();
  // Hop-by-Hop after a Destination Options header.
  let b = withExt(60, [0, 0, 1, 4, 0, 0, 0, 0, 17, 0, 1, 4, 0, 0, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.PARAM_PROBLEM);
  t.equal(chain.problemCode, Ipv6ProblemCode.UNRECOGNIZED_NEXT_HEADER);
  t.equal(chain.problemPointer, 40, 'the Next Header field that named it');

  // Unknown option types by action bits (RFC 8200 section 4.2).
  b = withExt(60, [17, 0, 0x1e, 1, 0, 1, 1, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.OK, '00: skip');
  t.equal(chain.upperProtocol, 17);
  b = withExt(60, [17, 0, 0x5e, 1, 0, 1, 1, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.DISCARD, '01: discard');
  b = withExt(0, [17, 0, 1, 0, 0x9e, 1, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.PARAM_PROBLEM, '10: problem');
  t.equal(chain.problemCode, Ipv6ProblemCode.UNRECOGNIZED_OPTION);
  t.equal(chain.problemPointer, 44, 'points at the option type');
  b = withExt(60, [17, 0, 0xde, 1, 0, 1, 1, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.PARAM_PROBLEM_UNLESS_MULTICAST, '11: problem unless multicast');
  t.equal(chain.problemPointer, 42);

  // An option running past its header.
  b = withExt(0, [17, 0, 1, 7, 0, 0, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.PARAM_PROBLEM);
  t.equal(chain.problemCode, Ipv6ProblemCode.ERRONEOUS_HEADER_FIELD);
  t.equal(chain.problemPointer, 42);

  // Routing header with segments left: "pointing to the unrecognized Routing Type".
  b = withExt(43, [17, 0, 4, 1, 0, 0, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.PARAM_PROBLEM);
  t.equal(chain.problemCode, Ipv6ProblemCode.ERRONEOUS_HEADER_FIELD);
  t.equal(chain.problemPointer, 42);
  b = withExt(43, [17, 0, 4, 0, 0, 0, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.OK, 'segments left 0: ignored');
  t.equal(chain.routingOffset, 40);
  t.equal(chain.upperProtocol, 17);

  // A header that claims more bytes than the packet has.
  b = withExt(60, [17, 2, 1, 4, 0, 0, 0, 0]);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.TRUNCATED);
  // No Next Header.
  b = withExt(59, []);
  t.equal(walkIpv6Headers(b, 0, chain), Ipv6ChainResult.OK);
  t.equal(chain.upperProtocol, 59);
});

t.test('walk from the middle (after reassembly)', async (t) => {
  const chain = new Ipv6HeaderChain();
  const payload = withExt(60, [17, 0, 1, 4, 0, 0, 0, 0]);
  t.equal(walkIpv6HeadersFrom(payload, 0, 40, payload.length, 60, 6, chain), Ipv6ChainResult.OK);
  t.equal(chain.upperProtocol, 17);
  t.equal(chain.upperOffset, 48);
  t.equal(chain.nextHeaderPointer, 40);
});

t.test('every truncation of the walked packets is safe', async (t) => {
  const chain = new Ipv6HeaderChain();
  for (const pkt of [MLDV2_REPORT_FRAME.subarray(14), IPV6_DSTOPTS_FRAG]) {
    everyPrefix(pkt, (b, len) => {
      if (new Ipv6Packet().at(b, 0, len).check()) {
        t.fail('truncated packet passed check()');
        return;
      }
      // Walking with a packet end past the bytes must not read out of bounds either.
      if (len >= 40) walkIpv6HeadersFrom(b, 0, 40, 40 + (pkt[5] ?? 0), pkt[6] ?? 0, 6, chain);
    });
  }
  t.pass('no reads out of bounds');
});

t.test('address helpers', async (t) => {
  const a = parseIpv6('fe80::5054:ff:fe12:3456')!;
  t.ok(ipv6IsLinkLocal(a, 0));
  t.notOk(ipv6IsMulticast(a, 0));
  t.ok(ipv6IsMulticast(IPV6_ALL_MLDV2_ROUTERS, 0));
  t.equal(ipv6MulticastScope(IPV6_ALL_MLDV2_ROUTERS, 0), 2);
  t.ok(ipv6IsUnspecified(new Uint8Array(16), 0));
  t.notOk(ipv6IsUnspecified(a, 0));
  t.ok(ipv6IsLoopback(parseIpv6('::1')!, 0));
  t.ok(ipv6IsV4Mapped(parseIpv6('::ffff:10.0.2.15')!, 0));
  const sn = new Uint8Array(16);
  ipv6SolicitedNode(sn, 0, a, 0);
  t.equal(formatIpv6(sn), 'ff02::1:ff12:3456');
  t.ok(ipv6IsSolicitedNode(sn, 0));
  t.notOk(ipv6IsSolicitedNode(IPV6_ALL_NODES, 0));
  const ll = new Uint8Array(16);
  ipv6LinkLocalFromMac(ll, 0, hex('525400123456'), 0);
  t.ok(ipv6Equal(ll, 0, a, 0), 'modified EUI-64');
  const c = new Uint8Array(20);
  ipv6Copy(c, 4, a, 0);
  t.ok(ipv6Equal(c, 4, a, 0));
  t.ok(ipv6PrefixEqual(parseIpv6('fd00::1')!, 0, parseIpv6('fd00::ffff')!, 0, 64));
  t.ok(ipv6PrefixEqual(parseIpv6('fd00:0:0:7f::')!, 0, parseIpv6('fd00:0:0:40::')!, 0, 58));
  t.notOk(ipv6PrefixEqual(parseIpv6('fd00:0:0:7f::')!, 0, parseIpv6('fd00:0:0:40::')!, 0, 59));
  t.ok(ipv6PrefixEqual(a, 0, IPV6_ALL_NODES, 0, 0));
});

t.test('text form (RFC 5952)', async (t) => {
  const cases: Array<[string, string]> = [
    ['::', '::'],
    ['::1', '::1'],
    ['2001:db8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0001:0000:0000:0001', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['fe80::', 'fe80::'],
    ['FF02::1:FF00:2', 'ff02::1:ff00:2'],
    ['::ffff:10.0.2.15', '::ffff:10.0.2.15'],
    ['1:0:0:2:0:0:0:3', '1:0:0:2::3'],
  ];
  for (const [input, text] of cases) t.equal(formatIpv6(parseIpv6(input)!), text, input);
  for (const bad of ['', ':::', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', 'g::1', '12345::', '1:2:3:4:5:6:7::8']) {
    t.equal(parseIpv6(bad), null, `rejects ${JSON.stringify(bad)}`);
  }
});

t.test('properties', async (t) => {
  const chain = new Ipv6HeaderChain();
  property(
    t,
    'random packets never throw, walks stay in bounds',
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 120 }), fc.integer({ min: 0, max: 255 }), (tail, nh) => {
      const b = new Uint8Array(40 + tail.length);
      emitIpv6Header(b, 0, { src: GUEST_LL, dst: IPV6_ALL_NODES, nextHeader: nh, hopLimit: 1, payloadLength: tail.length });
      b.set(tail, 40);
      const s = strict(b);
      const p = new Ipv6Packet().at(s, 0, b.length);
      if (!p.check()) return false;
      const r = walkIpv6Headers(s, 0, chain);
      if (r === Ipv6ChainResult.OK) return chain.upperOffset <= b.length;
      if (r === Ipv6ChainResult.PARAM_PROBLEM) return chain.problemPointer >= 0 && chain.problemPointer < b.length;
      return true;
    }),
  );
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 100 }), (bytes) => {
      const p = new Ipv6Packet().at(strict(bytes), 0, bytes.length);
      if (p.check()) void [p.trafficClass, p.flowLabel, p.hopLimit, p.nextHeader];
    }),
  );
  property(
    t,
    'emit then parse round-trips',
    fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 0xfffff }),
      (src, dst, nextHeader, hopLimit, payloadLength, trafficClass, flowLabel) => {
        const b = new Uint8Array(40 + payloadLength);
        emitIpv6Header(b, 0, { src, dst, nextHeader, hopLimit, payloadLength, trafficClass, flowLabel });
        const p = new Ipv6Packet().at(b, 0, b.length);
        return (
          p.check() &&
          ipv6Equal(b, p.srcOffset, src, 0) &&
          ipv6Equal(b, p.dstOffset, dst, 0) &&
          p.nextHeader === nextHeader &&
          p.hopLimit === hopLimit &&
          p.payloadLength === payloadLength &&
          p.trafficClass === trafficClass &&
          p.flowLabel === flowLabel
        );
      },
    ),
  );
  property(
    t,
    'parseIpv6 inverts formatIpv6',
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat(7), fc.nat(8), (a, z, n) => {
      a.fill(0, 2 * z, Math.min(16, 2 * (z + n))); // make zero runs common
      const back = parseIpv6(formatIpv6(a));
      return back !== null && ipv6Equal(back, 0, a, 0);
    }),
  );
});
