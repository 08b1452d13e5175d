import t from 'tap';
import fc from 'fast-check';
import { formatMac } from '../../src/wire/ethernet.js';
import { Icmpv6Packet, Icmpv6Type } from '../../src/wire/icmpv6.js';
import { formatIpv6, IPV6_ALL_NODES, IPV6_ALL_ROUTERS, Ipv6Packet, parseIpv6 } from '../../src/wire/ipv6.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import {
  emitNdpDnsslOption,
  emitNdpLinkLayerOption,
  emitNdpMtuOption,
  emitNdpNeighborAdvert,
  emitNdpNeighborSolicit,
  emitNdpRdnssOption,
  emitNdpRedirect,
  emitNdpRouterAdvert,
  emitNdpRouterSolicit,
  NdpNeighborAdvert,
  NdpNeighborSolicit,
  NdpOptionError,
  NdpOptionIterator,
  NdpOptionType,
  NdpRedirect,
  NdpRouterAdvert,
  NdpRouterPreference,
  NdpRouterSolicit,
} from '../../src/wire/ndp.js';
import { NDP_NA as NA, NDP_RA as RA, NDP_REDIRECT as REDIRECT, NDP_RS as RS, NS_FRAME } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const GUEST_MAC = hex('525400123456');
const ROUTER_MAC = hex('52550a000202');
const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const ROUTER_LL = parseIpv6('fe80::2')!;

t.test('parse a captured NS', async (t) => {
  const ip = new Ipv6Packet().at(NS_FRAME, 14, NS_FRAME.length - 14);
  t.ok(ip.check());
  const icmp = new Icmpv6Packet().at(NS_FRAME, ip.payloadOffset, ip.payloadLength);
  t.ok(icmp.check() && icmp.verifyChecksum(NS_FRAME, ip.srcOffset, NS_FRAME, ip.dstOffset));
  const ns = new NdpNeighborSolicit().at(NS_FRAME, ip.payloadOffset, ip.payloadLength);
  t.ok(ns.check());
  t.equal(ns.type, Icmpv6Type.NEIGHBOR_SOLICIT);
  t.equal(ns.code, 0);
  t.equal(formatIpv6(NS_FRAME, ns.targetOffset), 'fe80::2');
  t.equal(ns.optionsLength, 8);
  const it = new NdpOptionIterator().at(NS_FRAME, ns.optionsOffset, ns.optionsLength);
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.SOURCE_LL_ADDR);
  t.equal(it.length, 8);
  t.equal(formatMac(NS_FRAME, it.linkAddressOffset), '52:54:00:12:34:56');
  t.notOk(it.next());
  t.equal(it.error, NdpOptionError.OK);
  t.equal(formatMac(NS_FRAME, ns.findLinkAddress(NdpOptionType.SOURCE_LL_ADDR)), '52:54:00:12:34:56');
  t.equal(ns.findLinkAddress(NdpOptionType.TARGET_LL_ADDR), -1);
});

t.test('emit the same NS', async (t) => {
  const buf = new Uint8Array(32);
  const dst = parseIpv6('ff02::1:ff00:2')!;
  t.equal(emitNdpNeighborSolicit(buf, 0, { target: ROUTER_LL, sourceMac: GUEST_MAC }, GUEST_LL, dst), 32);
  t.same(buf, NS_FRAME.subarray(54));
  t.equal(emitNdpNeighborSolicit(new Uint8Array(24), 0, { target: ROUTER_LL }, new Uint8Array(16), dst), 24, 'DAD probe');
  t.equal(emitNdpNeighborSolicit(new Uint8Array(31), 0, { target: ROUTER_LL, sourceMac: GUEST_MAC }, GUEST_LL, dst), -1);
});

t.test('parse and emit an NA', async (t) => {
  const na = new NdpNeighborAdvert().at(NA, 0, NA.length);
  t.ok(na.check());
  t.ok(na.router);
  t.ok(na.solicited);
  t.ok(na.override);
  t.equal(na.flags, 0xe0);
  t.equal(formatIpv6(NA, na.targetOffset), 'fe80::2');
  t.equal(formatMac(NA, na.findLinkAddress(NdpOptionType.TARGET_LL_ADDR)), '52:55:0a:00:02:02');
  t.ok(new Icmpv6Packet().at(NA, 0, NA.length).verifyChecksum(ROUTER_LL, 0, GUEST_LL, 0));
  const buf = new Uint8Array(32);
  const n = emitNdpNeighborAdvert(buf, 0, { target: ROUTER_LL, router: true, solicited: true, override: true, targetMac: ROUTER_MAC }, ROUTER_LL, GUEST_LL);
  t.equal(n, 32);
  t.same(buf, NA);
  const plain = new Uint8Array(24);
  emitNdpNeighborAdvert(plain, 0, { target: ROUTER_LL, router: false, solicited: true, override: false }, ROUTER_LL, GUEST_LL);
  const v = new NdpNeighborAdvert().at(plain, 0, 24);
  t.ok(v.check());
  t.notOk(v.router);
  t.ok(v.solicited);
  t.notOk(v.override);
});

t.test('parse every option of a captured RA', async (t) => {
  const ra = new NdpRouterAdvert().at(RA, 0, RA.length);
  t.ok(ra.check());
  t.ok(new Icmpv6Packet().at(RA, 0, RA.length).verifyChecksum(ROUTER_LL, 0, IPV6_ALL_NODES, 0));
  t.equal(ra.type, Icmpv6Type.ROUTER_ADVERT);
  t.equal(ra.curHopLimit, 64);
  t.notOk(ra.managed);
  t.notOk(ra.other);
  t.equal(ra.preference, NdpRouterPreference.MEDIUM);
  t.equal(ra.routerLifetime, 1800);
  t.equal(ra.reachableTime, 0);
  t.equal(ra.retransTimer, 0);
  const it = new NdpOptionIterator().at(RA, ra.optionsOffset, ra.optionsLength);
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.PREFIX_INFO);
  t.equal(it.prefixLength, 64);
  t.ok(it.onLink);
  t.ok(it.autonomous);
  t.equal(it.validLifetime, 2592000);
  t.equal(it.preferredLifetime, 604800);
  t.equal(formatIpv6(RA, it.prefixOffset), 'fd00::');
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.MTU);
  t.equal(it.mtu, 1500);
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.SOURCE_LL_ADDR);
  t.equal(formatMac(RA, it.linkAddressOffset), '52:55:0a:00:02:02');
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.RDNSS);
  t.equal(it.lifetime, 1800);
  t.equal(it.serverCount, 1);
  t.equal(formatIpv6(RA, it.serverOffset(0)), 'fd00::3');
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.DNSSL);
  t.equal(it.lifetime, 1800);
  t.same(decodeDnsNameList(RA, it.dataOffset, it.dataLength, false, true), ['home.arpa']);
  t.notOk(it.next());
  t.equal(it.error, NdpOptionError.OK);
});

t.test('emit the same RA', async (t) => {
  const buf = new Uint8Array(200);
  const n = emitNdpRouterAdvert(
    buf,
    0,
    {
      curHopLimit: 64,
      managed: false,
      other: false,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
      sourceMac: ROUTER_MAC,
      mtu: 1500,
      prefixes: [{ prefix: parseIpv6('fd00::')!, prefixLength: 64, onLink: true, autonomous: true, validLifetime: 2592000, preferredLifetime: 604800 }],
      rdnss: { lifetime: 1800, servers: [parseIpv6('fd00::3')!] },
      dnssl: { lifetime: 1800, domains: ['home.arpa'] },
    },
    ROUTER_LL,
    IPV6_ALL_NODES,
  );
  t.equal(n, RA.length);
  t.same(buf.subarray(0, n), RA);
  t.equal(
    emitNdpRouterAdvert(
      new Uint8Array(RA.length - 1),
      0,
      {
        curHopLimit: 64,
        managed: false,
        other: false,
        routerLifetime: 0,
        reachableTime: 0,
        retransTimer: 0,
        mtu: 1,
        sourceMac: ROUTER_MAC,
        prefixes: [{ prefix: ROUTER_LL, prefixLength: 64, onLink: true, autonomous: true, validLifetime: 1, preferredLifetime: 1 }],
        rdnss: { lifetime: 1, servers: [ROUTER_LL] },
        dnssl: { lifetime: 1, domains: ['home.arpa'] },
      },
      ROUTER_LL,
      IPV6_ALL_NODES,
    ),
    -1,
  );
  const flags = new Uint8Array(16);
  emitNdpRouterAdvert(
    flags,
    0,
    { curHopLimit: 0, managed: true, other: true, preference: NdpRouterPreference.HIGH, routerLifetime: 0, reachableTime: 30000, retransTimer: 1000 },
    ROUTER_LL,
    IPV6_ALL_NODES,
  );
  const ra = new NdpRouterAdvert().at(flags, 0, 16);
  t.ok(ra.check());
  t.ok(ra.managed && ra.other);
  t.equal(ra.preference, NdpRouterPreference.HIGH);
  t.equal(ra.reachableTime, 30000);
  t.equal(ra.retransTimer, 1000);
});

t.test('RS and redirect', async (t) => {
  const rs = new NdpRouterSolicit().at(RS, 0, RS.length);
  t.ok(rs.check());
  t.equal(formatMac(RS, rs.findLinkAddress(NdpOptionType.SOURCE_LL_ADDR)), '52:54:00:12:34:56');
  const buf = new Uint8Array(64);
  t.equal(emitNdpRouterSolicit(buf, 0, { sourceMac: GUEST_MAC }, GUEST_LL, IPV6_ALL_ROUTERS), 16);
  t.same(buf.subarray(0, 16), RS);

  const rd = new NdpRedirect().at(REDIRECT, 0, REDIRECT.length);
  t.ok(rd.check());
  t.equal(formatIpv6(REDIRECT, rd.targetOffset), 'fe80::3');
  t.equal(formatIpv6(REDIRECT, rd.destinationOffset), 'fd00::99');
  t.equal(formatMac(REDIRECT, rd.findLinkAddress(NdpOptionType.TARGET_LL_ADDR)), '52:55:0a:00:02:03');
  const n = emitNdpRedirect(
    buf,
    0,
    { target: parseIpv6('fe80::3')!, destination: parseIpv6('fd00::99')!, targetMac: hex('52550a000203') },
    ROUTER_LL,
    GUEST_LL,
  );
  t.equal(n, 48);
  t.same(buf.subarray(0, 48), REDIRECT);
});

t.test('redirect with a redirected header option', async (t) => {
  const orig = new Uint8Array(61).fill(0xab);
  const buf = new Uint8Array(200);
  const n = emitNdpRedirect(buf, 0, { target: ROUTER_LL, destination: GUEST_LL, redirected: { bytes: orig, offset: 0, length: 61 } }, ROUTER_LL, GUEST_LL);
  t.equal(n, 40 + 8 + 64, 'quoted data padded to 8');
  const rd = new NdpRedirect().at(buf, 0, n);
  t.ok(rd.check());
  const it = new NdpOptionIterator().at(buf, rd.optionsOffset, rd.optionsLength);
  t.ok(it.next());
  t.equal(it.type, NdpOptionType.REDIRECTED_HEADER);
  t.equal(it.dataLength, 64);
  t.equal(buf[it.dataOffset + 60], 0xab);
  t.equal(buf[it.dataOffset + 61], 0);
  const small = emitNdpRedirect(
    buf,
    0,
    { target: ROUTER_LL, destination: GUEST_LL, redirected: { bytes: orig, offset: 0, length: 61 } },
    ROUTER_LL,
    GUEST_LL,
    80,
  );
  t.equal(small, 80, 'bounded by maxLength');
});

t.test('option validation (RFC 4861 section 4.6, RFC 8106 section 5)', async (t) => {
  const it = new NdpOptionIterator();
  const run = (opts: number[]) => {
    const b = Uint8Array.from(opts);
    it.at(b, 0, b.length);
    return it.validate() ? NdpOptionError.OK : it.error;
  };
  t.equal(run([1, 0, 0, 0, 0, 0, 0, 0]), NdpOptionError.ZERO_LENGTH);
  t.equal(run([1, 2, 0, 0, 0, 0, 0, 0]), NdpOptionError.TRUNCATED);
  t.equal(run([1]), NdpOptionError.TRUNCATED);
  t.equal(run([3, 1, 0, 0, 0, 0, 0, 0]), NdpOptionError.BAD_LENGTH, 'prefix info must be 32 bytes');
  t.equal(run([5, 2, ...new Array<number>(14).fill(0)]), NdpOptionError.BAD_LENGTH, 'MTU must be 8 bytes');
  t.equal(run([25, 1, 0, 0, 0, 0, 0, 0]), NdpOptionError.BAD_LENGTH, 'RDNSS without an address');
  t.equal(run([25, 4, ...new Array<number>(30).fill(0)]), NdpOptionError.BAD_LENGTH, 'RDNSS length must be odd');
  t.equal(run([31, 1, 0, 0, 0, 0, 0, 0]), NdpOptionError.BAD_LENGTH, 'DNSSL without a name');
  t.equal(run([200, 1, 0, 0, 0, 0, 0, 0]), NdpOptionError.OK, 'unknown options are skipped');
  const ns = NS_FRAME.slice(54);
  ns[25] = 0;
  t.notOk(new NdpNeighborSolicit().at(ns, 0, ns.length).check(), 'a zero-length option invalidates the message');
  const bad = NA.slice();
  bad[1] = 1;
  t.notOk(new NdpNeighborAdvert().at(bad, 0, bad.length).check(), 'code must be 0');
});

t.test('option emitters refuse what does not fit', async (t) => {
  const b = new Uint8Array(8);
  t.equal(emitNdpLinkLayerOption(b, 1, 1, GUEST_MAC), -1);
  t.equal(emitNdpMtuOption(b, 0, 1500), 8);
  t.equal(emitNdpRdnssOption(new Uint8Array(64), 0, 1, []), -1);
  t.equal(emitNdpRdnssOption(new Uint8Array(24), 0, 1, [ROUTER_LL]), 24);
  t.equal(emitNdpRdnssOption(new Uint8Array(23), 0, 1, [ROUTER_LL]), -1);
  t.equal(emitNdpDnsslOption(new Uint8Array(64), 0, 1, ['bad..name']), -1);
  const d = new Uint8Array(64);
  const n = emitNdpDnsslOption(d, 0, 600, ['example.com', 'corp.example.com']);
  t.equal(n, 40);
  t.same(decodeDnsNameList(d, 8, n - 8, false, true), ['example.com', 'corp.example.com']);
});

t.test('every truncation fails check() or stays in bounds', async (t) => {
  const views = [
    [new NdpNeighborSolicit(), NS_FRAME.subarray(54)],
    [new NdpNeighborAdvert(), NA],
    [new NdpRouterAdvert(), RA],
    [new NdpRouterSolicit(), RS],
    [new NdpRedirect(), REDIRECT],
  ] as const;
  for (const [v, pkt] of views) {
    everyPrefix(pkt, (b, len) => {
      v.at(b, 0, len);
      // Options end on 8-byte boundaries, so a prefix may be a valid shorter message.
      if (v.check()) {
        t.equal((len - v.optionsOffset) % 8, 0, `prefix ${len} of type ${pkt[0]} ends on an option boundary`);
        const it = new NdpOptionIterator().at(b, v.optionsOffset, v.optionsLength);
        while (it.next());
      }
    });
  }
  t.notOk(new NdpRouterAdvert().at(RA, 0, 15).check());
});

t.test('properties', async (t) => {
  const it = new NdpOptionIterator();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
      const s = strict(bytes);
      for (const v of [new NdpNeighborSolicit(), new NdpNeighborAdvert(), new NdpRouterAdvert(), new NdpRouterSolicit(), new NdpRedirect()]) {
        if (!v.at(s, 0, bytes.length).check()) continue;
        it.at(s, v.optionsOffset, v.optionsLength);
        while (it.next()) {
          switch (it.type) {
            case NdpOptionType.PREFIX_INFO:
              void [it.prefixLength, it.validLifetime, it.preferredLifetime, s[it.prefixOffset + 15]];
              break;
            case NdpOptionType.MTU:
              void it.mtu;
              break;
            case NdpOptionType.RDNSS:
              void [it.lifetime, s[it.serverOffset(it.serverCount - 1) + 15]];
              break;
            case NdpOptionType.DNSSL:
              decodeDnsNameList(s, it.dataOffset, it.dataLength, false, true);
              break;
            default:
              void s[it.linkAddressOffset + 5];
          }
        }
      }
    }),
  );
  property(
    t,
    'NA emit then parse round-trips',
    fc.property(
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.boolean(),
      fc.boolean(),
      fc.boolean(),
      fc.option(fc.uint8Array({ minLength: 6, maxLength: 6 }), { nil: undefined }),
      (target, router, solicited, override, targetMac) => {
        const b = new Uint8Array(32);
        const n = emitNdpNeighborAdvert(b, 0, { target, router, solicited, override, targetMac }, ROUTER_LL, GUEST_LL);
        const na = new NdpNeighborAdvert().at(b, 0, n);
        const mac = na.findLinkAddress(NdpOptionType.TARGET_LL_ADDR);
        return (
          na.check() &&
          new Icmpv6Packet().at(b, 0, n).verifyChecksum(ROUTER_LL, 0, GUEST_LL, 0) &&
          na.router === router &&
          na.solicited === solicited &&
          na.override === override &&
          formatIpv6(b, na.targetOffset) === formatIpv6(target) &&
          (targetMac === undefined ? mac === -1 : formatMac(b, mac) === formatMac(targetMac))
        );
      },
    ),
  );
  property(
    t,
    'RA emit then parse round-trips',
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 1280, max: 0xffffffff }),
      fc.array(
        fc.record({
          prefix: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          prefixLength: fc.integer({ min: 0, max: 128 }),
          onLink: fc.boolean(),
          autonomous: fc.boolean(),
          validLifetime: fc.integer({ min: 0, max: 0xffffffff }),
          preferredLifetime: fc.integer({ min: 0, max: 0xffffffff }),
        }),
        { maxLength: 3 },
      ),
      (curHopLimit, routerLifetime, mtu, prefixes) => {
        const b = new Uint8Array(256);
        const n = emitNdpRouterAdvert(
          b,
          0,
          { curHopLimit, managed: false, other: true, routerLifetime, reachableTime: 0, retransTimer: 0, mtu, prefixes },
          ROUTER_LL,
          IPV6_ALL_NODES,
        );
        const ra = new NdpRouterAdvert().at(b, 0, n);
        if (!ra.check() || ra.curHopLimit !== curHopLimit || ra.routerLifetime !== routerLifetime || !ra.other) return false;
        it.at(b, ra.optionsOffset, ra.optionsLength);
        let i = 0;
        let sawMtu = false;
        while (it.next()) {
          if (it.type === NdpOptionType.MTU) sawMtu = it.mtu === mtu;
          if (it.type !== NdpOptionType.PREFIX_INFO) continue;
          const p = prefixes[i++]!;
          if (it.prefixLength !== p.prefixLength || it.onLink !== p.onLink || it.autonomous !== p.autonomous) return false;
          if (it.validLifetime !== p.validLifetime || it.preferredLifetime !== p.preferredLifetime) return false;
          if (formatIpv6(b, it.prefixOffset) !== formatIpv6(p.prefix)) return false;
        }
        return i === prefixes.length && sawMtu;
      },
    ),
  );
});
