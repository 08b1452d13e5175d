import { silentLog } from '../../src/iface/log.js';
import t from 'tap';
import fc from 'fast-check';
import { defaultConfig } from '../../src/iface/config.js';
import type { StackConfig } from '../../src/iface/config.js';
import {
  CUR_HOP_LIMIT,
  MAX_INITIAL_RTR_ADVERT_INTERVAL_MS,
  MAX_RA_DELAY_TIME_MS,
  MIN_DELAY_BETWEEN_RAS_MS,
  RouterAdvertiser,
} from '../../src/ra/router-advertiser.js';
import type { RouterAdvertiserOptions } from '../../src/ra/router-advertiser.js';
import { fromHex, get16, get32, toHex } from '../../src/wire/bytes.js';
import { fillIcmpv6Checksum, Icmpv6Type } from '../../src/wire/icmpv6.js';
import { emitIpv6FragmentHeader, emitIpv6Header, formatIpv6, parseIpv6 } from '../../src/wire/ipv6.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import { emitNdpLinkLayerOption, emitNdpRouterAdvert, NdpOptionType } from '../../src/wire/ndp.js';

// Router Solicitation captured from a Linux guest (fe80::5054:ff:fe12:3456 -> ff02::2, hop limit
// 255) with its source link-layer address option 52:54:00:12:34:56.
const LINUX_RS = hex(`
  6000 0000 0010 3aff fe80 0000 0000 0000 5054 00ff fe12 3456 ff02 0000 0000 0000
  0000 0000 0000 0002 8500 71b5 0000 0000 0101 5254 0012 3456`);
// An RA a guest running radvd would send (fe80::5054:ff:fe12:3456 -> ff02::1): hop limit 64,
// M=0 O=0, lifetime 1800 s; fd00::/64 (L, A, valid 30 d, preferred 7 d), MTU 1500, SLLA,
// RDNSS fd00::3 and DNSSL home.arpa. The ICMPv6 part is the RA of test/wire/ndp.test.ts.
const GUEST_RA_ICMP = hex(`
  8600 0000 4000 0708 0000 0000 0000 0000 0304 40c0 0027 8d00 0009 3a80 0000 0000
  fd00 0000 0000 0000 0000 0000 0000 0000 0501 0000 0000 05dc 0101 5254 0012 3456
  1903 0000 0000 0708 fd00 0000 0000 0000 0000 0000 0000 0003 1f03 0000 0000 0708
  0468 6f6d 6504 6172 7061 0000 0000 0000`);

const OUR_MAC = hex('52550a000202');
const GUEST_MAC = hex('525400123456');
const OUR_LL = parseIpv6('fe80::2')!;
const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const ALL_NODES = parseIpv6('ff02::1')!;
const ALL_ROUTERS = parseIpv6('ff02::2')!;
const UNSPECIFIED = parseIpv6('::')!;

/** A random() that plays back `values` (then repeats the last one). */
function seq(...values: number[]): () => number {
  let i = 0;
  return () => values[Math.min(i++, values.length - 1)]!;
}

function advertiser(opts: Partial<RouterAdvertiserOptions> = {}, cfg: Partial<StackConfig> = {}): RouterAdvertiser {
  return new RouterAdvertiser({ ...defaultConfig(), ...cfg }, { linkLocal: OUR_LL, random: seq(0.5), ...opts });
}

/** Polls at `now` and returns copies of what was emitted. */
function pollAll(ra: RouterAdvertiser, now: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  ra.poll(now, (p) => out.push(p.slice()));
  return out;
}

/** Independent ICMPv6 checksum check: ones'-complement sum over pseudo-header and message. */
function icmpv6ChecksumOk(pkt: Uint8Array): boolean {
  const len = (pkt[4]! << 8) | pkt[5]!;
  let sum = 0;
  for (let i = 8; i < 40; i += 2) sum += (pkt[i]! << 8) | pkt[i + 1]!;
  sum += len + 58;
  for (let i = 40; i < 40 + len; i += 2) sum += (pkt[i]! << 8) | (i + 1 < 40 + len ? pkt[i + 1]! : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

interface RsSpec {
  src?: Uint8Array;
  dst?: Uint8Array;
  hopLimit?: number;
  code?: number;
  /** Raw option bytes after the 8-byte RS header. */
  options?: Uint8Array;
  fragment?: boolean;
  /** Leave the checksum wrong. */
  badChecksum?: boolean;
  type?: number;
}

/** An RS (or another ICMPv6 message) in an IPv6 packet, with a correct checksum unless asked. */
function rs(spec: RsSpec = {}): Uint8Array {
  const src = spec.src ?? GUEST_LL;
  const dst = spec.dst ?? ALL_ROUTERS;
  const opts = spec.options ?? slla(GUEST_MAC);
  const icmpLen = 8 + opts.length;
  const ext = spec.fragment ? 8 : 0;
  const pkt = new Uint8Array(40 + ext + icmpLen);
  emitIpv6Header(pkt, 0, { src, dst, nextHeader: spec.fragment ? 44 : 58, hopLimit: spec.hopLimit ?? 255, payloadLength: ext + icmpLen });
  if (spec.fragment) emitIpv6FragmentHeader(pkt, 40, { nextHeader: 58, fragOffset: 0, moreFragments: false, ident: 7 });
  const icmp = 40 + ext;
  pkt[icmp] = spec.type ?? Icmpv6Type.ROUTER_SOLICIT;
  pkt[icmp + 1] = spec.code ?? 0;
  pkt.set(opts, icmp + 8);
  fillIcmpv6Checksum(pkt, icmp, icmpLen, src, dst);
  if (spec.badChecksum) pkt[icmp + 2]! ^= 0x55;
  return pkt;
}

function slla(mac: Uint8Array): Uint8Array {
  const b = new Uint8Array(8);
  emitNdpLinkLayerOption(b, 0, NdpOptionType.SOURCE_LL_ADDR, mac);
  return b;
}

/** The guest's RA in an IPv6 packet from `src` with `hopLimit`. */
function guestRa(src = GUEST_LL, hopLimit = 255, icmp = GUEST_RA_ICMP): Uint8Array {
  const pkt = new Uint8Array(40 + icmp.length);
  emitIpv6Header(pkt, 0, { src, dst: ALL_NODES, nextHeader: 58, hopLimit, payloadLength: icmp.length });
  pkt.set(icmp, 40);
  fillIcmpv6Checksum(pkt, 40, icmp.length, src, ALL_NODES);
  return pkt;
}

interface ParsedOption {
  type: number;
  offset: number;
  length: number;
}

function options(pkt: Uint8Array): ParsedOption[] {
  const out: ParsedOption[] = [];
  for (let p = 40 + 16; p < pkt.length;) {
    const len = pkt[p + 1]! * 8;
    if (len === 0) throw new Error('zero-length option');
    out.push({ type: pkt[p]!, offset: p, length: len });
    p += len;
  }
  return out;
}

t.test('the captured Linux RS is well formed', async (t) => {
  t.ok(icmpv6ChecksumOk(LINUX_RS), 'its checksum verifies');
  const ra = advertiser();
  ra.linkUp(0);
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 0));
  t.equal(ra.stats.rsReceived, 1);
  t.equal(ra.stats.rsInvalid, 0);
});

t.test('an RA carries every field and option, with a valid checksum', async (t) => {
  const ra = advertiser({}, { searchDomains: ['example.com', 'corp.test'] });
  ra.linkUp(5000);
  t.equal(ra.pollAt(), 5000, 'the first RA is due at linkUp');
  const [pkt] = pollAll(ra, 5000);
  if (pkt === undefined) throw new Error('no RA');

  // IPv6 header.
  t.equal(pkt[0]! >> 4, 6);
  t.equal(get32(pkt, 0) & 0x0fffffff, 0, 'traffic class and flow label 0');
  t.equal(get16(pkt, 4), pkt.length - 40, 'payload length');
  t.equal(pkt[6], 58, 'next header ICMPv6');
  t.equal(pkt[7], 255, 'hop limit 255');
  t.equal(formatIpv6(pkt, 8), 'fe80::2', 'source: our link-local');
  t.equal(formatIpv6(pkt, 24), 'ff02::1', 'destination: all nodes');

  // ICMPv6 / RA header.
  t.equal(pkt[40], Icmpv6Type.ROUTER_ADVERT);
  t.equal(pkt[41], 0, 'code 0');
  t.ok(icmpv6ChecksumOk(pkt), 'ICMPv6 checksum verifies');
  t.equal(pkt[44], CUR_HOP_LIMIT, 'cur hop limit 64');
  t.equal(pkt[45], 0x40, 'M=0 O=1, preference medium');
  t.equal(get16(pkt, 46), 1800, 'router lifetime');
  t.equal(get32(pkt, 48), 0, 'reachable time');
  t.equal(get32(pkt, 52), 0, 'retrans timer');

  const opts = options(pkt);
  t.same(
    opts.map((o) => o.type),
    [NdpOptionType.PREFIX_INFO, NdpOptionType.MTU, NdpOptionType.SOURCE_LL_ADDR, NdpOptionType.RDNSS, NdpOptionType.DNSSL],
  );
  const [pio, mtu, sl, rdnss, dnssl] = opts as [ParsedOption, ParsedOption, ParsedOption, ParsedOption, ParsedOption];
  t.equal(pio.length, 32);
  t.equal(pkt[pio.offset + 2], 64, 'prefix length');
  t.equal(pkt[pio.offset + 3], 0xc0, 'L and A');
  t.equal(get32(pkt, pio.offset + 4), 86400, 'valid lifetime');
  t.equal(get32(pkt, pio.offset + 8), 14400, 'preferred lifetime');
  t.equal(get32(pkt, pio.offset + 12), 0, 'reserved2');
  t.equal(formatIpv6(pkt, pio.offset + 16), 'fec0::', 'prefix');

  t.equal(mtu.length, 8);
  t.equal(get32(pkt, mtu.offset + 4), 65520, 'MTU option = config.mtu');

  t.equal(sl.length, 8);
  t.equal(toHex(pkt, sl.offset + 2, 6), '52550a000202', 'source link-layer = our MAC');

  t.equal(rdnss.length, 24, 'one server');
  t.equal(get32(pkt, rdnss.offset + 4), 1800, 'RDNSS lifetime 3 * MaxRtrAdvInterval');
  t.equal(formatIpv6(pkt, rdnss.offset + 8), 'fec0::3');

  t.equal(dnssl.length % 8, 0);
  t.equal(get32(pkt, dnssl.offset + 4), 1800, 'DNSSL lifetime');
  t.same(decodeDnsNameList(pkt, dnssl.offset + 8, dnssl.length - 8, false, true), ['example.com', 'corp.test']);
  t.equal(dnssl.offset + dnssl.length, pkt.length, 'nothing after the options');
  t.equal(ra.stats.raSent, 1);
});

t.test('the RA matches what the wire emitter builds for the same content', async (t) => {
  const ra = advertiser();
  ra.linkUp(0);
  const [pkt] = pollAll(ra, 0);
  const cfg = defaultConfig();
  const icmp = new Uint8Array(200);
  const n = emitNdpRouterAdvert(
    icmp,
    0,
    {
      curHopLimit: 64,
      managed: false,
      other: true,
      routerLifetime: 1800,
      reachableTime: 0,
      retransTimer: 0,
      sourceMac: OUR_MAC,
      mtu: cfg.mtu,
      prefixes: [{ prefix: cfg.ipv6!.prefix, prefixLength: 64, onLink: true, autonomous: true, validLifetime: 86400, preferredLifetime: 14400 }],
      rdnss: { lifetime: 1800, servers: [cfg.ipv6!.dns] },
    },
    OUR_LL,
    ALL_NODES,
  );
  t.equal(toHex(pkt!, 40), toHex(icmp, 0, n));
  t.equal(pkt!.length, 40 + 16 + 32 + 8 + 8 + 24, 'no DNSSL without search domains');
});

t.test('stateful sets M and O; bad or oversized search domains are left out', async (t) => {
  const ra = advertiser({ stateful: true }, { searchDomains: ['bad..name', 'ok.test', 'x'.repeat(64) + '.test'] });
  ra.linkUp(0);
  const [pkt] = pollAll(ra, 0);
  t.equal(pkt![45], 0xc0, 'M=1 O=1');
  const dnssl = options(pkt!).find((o) => o.type === NdpOptionType.DNSSL)!;
  t.same(decodeDnsNameList(pkt!, dnssl.offset + 8, dnssl.length - 8, false, true), ['ok.test']);

  const many = Array.from({ length: 200 }, (_, i) => `domain${i}.example.org`);
  const big = advertiser({}, { searchDomains: many });
  big.linkUp(0);
  const [p2] = pollAll(big, 0);
  t.ok(p2!.length <= 1280, `an RA with many domains stays within 1280 bytes (${p2!.length})`);
  t.ok(icmpv6ChecksumOk(p2!));
});

t.test('a unicast RA can be built for a caller that wants one', async (t) => {
  const ra = advertiser();
  const buf = new Uint8Array(1500);
  const n = ra.writeAdvertisement(buf, 10, GUEST_LL);
  t.ok(n > 0);
  const pkt = buf.subarray(10, 10 + n);
  t.equal(formatIpv6(pkt, 24), 'fe80::5054:ff:fe12:3456');
  t.ok(icmpv6ChecksumOk(pkt));
  t.equal(ra.writeAdvertisement(new Uint8Array(60), 0, GUEST_LL), -1, 'too small a buffer: -1');
});

t.test('unsolicited schedule: three initial RAs at most 16 s apart, then [Min, Max]', async (t) => {
  // random(): 0.5 for every interval: 200 + 0.5 * 400 = 400 s.
  const ra = advertiser({ random: seq(0.5) });
  t.equal(ra.pollAt(), Infinity, 'nothing before linkUp');
  t.same(pollAll(ra, 0), []);
  ra.linkUp(1000);
  t.same(pollAll(ra, 999), [], 'not before the deadline');
  t.equal(pollAll(ra, 1000).length, 1);
  t.equal(ra.pollAt(), 1000 + MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
  t.equal(pollAll(ra, 16_999).length, 0);
  t.equal(pollAll(ra, 17_000).length, 1);
  t.equal(ra.pollAt(), 33_000);
  t.equal(pollAll(ra, 33_000).length, 1, 'third initial RA');
  t.equal(ra.pollAt(), 33_000 + 400_000, 'after the initial ones: Min + r * (Max - Min)');
  t.equal(pollAll(ra, 433_000).length, 1);
  t.equal(ra.stats.raSent, 4);
  t.equal(ra.stats.raSolicited, 0);

  // Interval bounds with random at both ends, and a late poll does not send twice.
  const lo = advertiser({ random: seq(0) });
  lo.linkUp(0);
  for (let i = 0; i < 3; i++) pollAll(lo, lo.pollAt());
  t.equal(lo.pollAt(), 32_000 + 200_000, 'r = 0: MinRtrAdvInterval');
  const hi = advertiser({ random: seq(0.999999) });
  hi.linkUp(0);
  for (let i = 0; i < 3; i++) pollAll(hi, hi.pollAt());
  t.ok(hi.pollAt() - 32_000 < 600_000 && hi.pollAt() - 32_000 > 599_000, 'r -> 1: MaxRtrAdvInterval');
  t.equal(pollAll(hi, 10_000_000).length, 1, 'one RA however late the poll');
});

t.test('custom intervals are validated', async (t) => {
  t.throws(() => advertiser({ maxRtrAdvInterval: 3 }));
  t.throws(() => advertiser({ maxRtrAdvInterval: 1801 }));
  t.throws(() => advertiser({ maxRtrAdvInterval: 10, minRtrAdvInterval: 8 }), 'min > 0.75 max');
  t.throws(() => advertiser({ minRtrAdvInterval: 2 }));
  t.throws(() => advertiser({ linkLocal: parseIpv6('fec0::2')! }), 'source must be link-local');
  t.throws(() => new RouterAdvertiser({ ...defaultConfig(), ipv6: undefined }, { linkLocal: OUR_LL }));
  const ra = advertiser({ maxRtrAdvInterval: 4, minRtrAdvInterval: 3, random: seq(0) });
  ra.linkUp(0);
  pollAll(ra, 0);
  t.equal(ra.pollAt(), 3000, 'short intervals are not capped up');
});

t.test('a solicited RA is delayed by random [0, MAX_RA_DELAY_TIME] and resets the interval', async (t) => {
  // Interval draws 0.5; the RS delay draw 0.25 -> 125 ms.
  const ra = advertiser({ random: seq(0.5, 0.5, 0.5, 0.25, 0.5) });
  ra.linkUp(0);
  for (let i = 0; i < 3; i++) pollAll(ra, ra.pollAt()); // 0, 16 s, 32 s
  t.equal(ra.pollAt(), 432_000);
  const now = 100_000;
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, now));
  t.equal(ra.pollAt(), now + 0.25 * MAX_RA_DELAY_TIME_MS);
  t.same(pollAll(ra, now + 124), []);
  const sent = pollAll(ra, now + 125);
  t.equal(sent.length, 1);
  t.equal(formatIpv6(sent[0]!, 24), 'ff02::1', 'answered by multicast');
  t.equal(ra.stats.raSolicited, 1);
  t.equal(ra.pollAt(), now + 125 + 400_000, 'the unsolicited timer restarts from the solicited RA');
});

t.test('multicast RAs are rate limited to one per MIN_DELAY_BETWEEN_RAS', async (t) => {
  const ra = advertiser({ random: seq(0.5, 0.5, 0.5, 0.5, 0.5, 0.1) });
  ra.linkUp(0);
  for (let i = 0; i < 3; i++) pollAll(ra, ra.pollAt());
  // Last RA at 32 s. An RS one second later is answered MIN_DELAY_BETWEEN_RAS + delay after it.
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 33_000));
  t.equal(ra.pollAt(), 32_000 + MIN_DELAY_BETWEEN_RAS_MS + 0.5 * MAX_RA_DELAY_TIME_MS);
  // More RSs while the answer is pending share it.
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 33_500));
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 34_000));
  t.equal(ra.stats.rsCoalesced, 2);
  t.equal(ra.pollAt(), 35_250);
  t.same(pollAll(ra, 35_249), []);
  t.equal(pollAll(ra, 35_250).length, 1);
  // A flood of RSs: never two multicast RAs within 3 s.
  const times: number[] = [];
  for (let now = 35_250; now < 60_000; now += 100) {
    ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, now);
    if (pollAll(ra, now).length > 0) times.push(now);
  }
  t.ok(times.length >= 7, `answers keep coming (${times.length})`);
  let prev = 35_250;
  for (const at of times) {
    t.ok(at - prev >= MIN_DELAY_BETWEEN_RAS_MS, `gap ${at - prev} ms`);
    prev = at;
  }
});

t.test('an RS just before a scheduled RA is answered by that RA', async (t) => {
  const ra = advertiser({ random: seq(0.9) });
  ra.linkUp(0);
  pollAll(ra, 0);
  const next = ra.pollAt(); // 16 s
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, next - 100));
  t.equal(ra.pollAt(), next, 'the delay (450 ms) would land later: the scheduled RA answers');
  t.equal(pollAll(ra, next).length, 1);
  t.equal(ra.stats.raSolicited, 1);
  t.equal(ra.stats.raSent, 2);
  t.ok(ra.pollAt() > next + 3000, 'and nothing else is pending');
});

t.test('RSs before linkUp and after linkDown are valid but not answered', async (t) => {
  const ra = advertiser();
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 0));
  t.equal(ra.stats.rsIgnored, 1);
  t.equal(ra.pollAt(), Infinity);
  ra.linkUp(10);
  pollAll(ra, 10);
  ra.linkDown();
  t.equal(ra.pollAt(), Infinity);
  t.ok(ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, 20));
  t.same(pollAll(ra, 100_000), []);
  // Back up within 3 s of the last RA: the first one waits for the rate limit.
  ra.linkUp(1000);
  t.equal(ra.pollAt(), 10 + MIN_DELAY_BETWEEN_RAS_MS);
});

t.test('an RS from the unspecified address without SLLA is valid', async (t) => {
  const ra = advertiser();
  ra.linkUp(0);
  const p = rs({ src: UNSPECIFIED, options: new Uint8Array(0) });
  t.ok(ra.handleRouterSolicitation(p, 0, p.length, 0));
  // And one with an unknown option next to the SLLA, at an offset inside a larger buffer.
  const unknown = Uint8Array.of(...slla(GUEST_MAC), 0xfe, 1, 0, 0, 0, 0, 0, 0);
  const q = rs({ options: unknown });
  const buf = new Uint8Array(q.length + 20);
  buf.set(q, 7);
  t.ok(ra.handleRouterSolicitation(buf, 7, q.length, 0));
  t.equal(ra.stats.rsInvalid, 0);
});

t.test('invalid RSs are rejected and counted (RFC 4861 section 6.1.1)', async (t) => {
  const cases: [string, Uint8Array][] = [
    ['hop limit 64', rs({ hopLimit: 64 })],
    ['code 1', rs({ code: 1 })],
    ['option with length 0', rs({ options: Uint8Array.of(1, 0, 0x52, 0x54, 0, 0x12, 0x34, 0x56) })],
    ['option running past the message', rs({ options: Uint8Array.of(1, 2, 0x52, 0x54, 0, 0x12, 0x34, 0x56) })],
    ['unspecified source with SLLA', rs({ src: UNSPECIFIED })],
    ['two SLLAs', rs({ options: Uint8Array.of(...slla(GUEST_MAC), ...slla(GUEST_MAC)) })],
    ['bad checksum', rs({ badChecksum: true })],
    ['fragmented (RFC 6980)', rs({ fragment: true })],
    ['multicast source', rs({ src: ALL_NODES })],
    ['not an RS', rs({ type: Icmpv6Type.ROUTER_ADVERT })],
  ];
  // ICMPv6 shorter than 8 bytes: a 4-byte message.
  const short = new Uint8Array(44);
  emitIpv6Header(short, 0, { src: GUEST_LL, dst: ALL_ROUTERS, nextHeader: 58, hopLimit: 255, payloadLength: 4 });
  short[40] = Icmpv6Type.ROUTER_SOLICIT;
  cases.push(['ICMPv6 length 4', short]);
  cases.push(['truncated IPv6 packet', LINUX_RS.subarray(0, 50)]);
  cases.push(['not IPv6', Uint8Array.of(0x45, ...LINUX_RS.subarray(1))]);

  const ra = advertiser();
  ra.linkUp(0);
  pollAll(ra, 0);
  const before = ra.pollAt();
  for (const [name, p] of cases) t.notOk(ra.handleRouterSolicitation(p, 0, p.length, 1000), name);
  t.equal(ra.stats.rsInvalid, cases.length);
  t.equal(ra.stats.rsReceived, cases.length);
  t.equal(ra.pollAt(), before, 'no answer scheduled');
  t.notOk(ra.handleRouterSolicitation(LINUX_RS, 30, 10, 0), 'a range outside the buffer');
});

t.test('RAs from the guest are validated, counted, and never change what we send', async (t) => {
  const warnings: object[] = [];
  const ra = advertiser({ logger: { ...silentLog, warn: (o) => void warnings.push(o) } });
  ra.linkUp(0);
  const [first] = pollAll(ra, 0);
  const at = ra.pollAt();

  const p = guestRa();
  t.ok(icmpv6ChecksumOk(p));
  t.ok(ra.handleRouterAdvertisement(p, 0, p.length, 100));
  t.ok(ra.handleRouterAdvertisement(p, 0, p.length, 200));
  t.equal(ra.stats.guestRaReceived, 2);
  t.equal(ra.stats.guestRaInvalid, 0);
  t.equal(ra.stats.guestRaInconsistent, 2, 'O flag and MTU differ from ours (RFC 4861 section 6.2.7)');
  t.equal(warnings.length, 1, 'warned once');
  t.same((warnings[0] as { inconsistent: string[] }).inconsistent, ['other', 'mtu']);

  // An RA for our own prefix with other lifetimes, and one that agrees with us.
  const ours = new Uint8Array(200);
  const cfg = defaultConfig();
  const n = emitNdpRouterAdvert(
    ours,
    0,
    {
      curHopLimit: 64,
      managed: false,
      other: true,
      routerLifetime: 0,
      reachableTime: 30000,
      retransTimer: 1000,
      mtu: cfg.mtu,
      prefixes: [{ prefix: cfg.ipv6!.prefix, prefixLength: 64, onLink: true, autonomous: true, validLifetime: 86400, preferredLifetime: 14400 }],
    },
    GUEST_LL,
    ALL_NODES,
  );
  t.ok(ra.handleRouterAdvertisement(guestRa(GUEST_LL, 255, ours.subarray(0, n)), 0, 40 + n, 300));
  t.equal(ra.stats.guestRaInconsistent, 2, 'a consistent RA is not counted as inconsistent');
  ours[16 + 4 + 3]! ^= 1; // valid lifetime of the prefix option
  t.ok(ra.handleRouterAdvertisement(guestRa(GUEST_LL, 255, ours.subarray(0, n)), 0, 40 + n, 300));
  t.equal(ra.stats.guestRaInconsistent, 3, 'prefix lifetimes differ');

  const invalid: [string, Uint8Array][] = [
    ['hop limit 64', guestRa(GUEST_LL, 64)],
    ['global source', guestRa(parseIpv6('fec0::99')!)],
    ['too short', guestRa(GUEST_LL, 255, GUEST_RA_ICMP.subarray(0, 12))],
    ['zero-length option', guestRa(GUEST_LL, 255, Uint8Array.of(...GUEST_RA_ICMP.subarray(0, 16), 5, 0, 0, 0, 0, 0, 0, 0))],
    ['code 1', guestRa(GUEST_LL, 255, Uint8Array.of(0x86, 1, ...GUEST_RA_ICMP.subarray(2)))],
  ];
  for (const [name, q] of invalid) t.notOk(ra.handleRouterAdvertisement(q, 0, q.length, 400), name);
  t.equal(ra.stats.guestRaInvalid, invalid.length);
  t.notOk(ra.handleRouterAdvertisement(LINUX_RS, 0, LINUX_RS.length, 400), 'an RS is not an RA');

  t.equal(ra.pollAt(), at, 'schedule unchanged');
  t.equal(ra.stats.rsReceived, 0, 'RAs are not solicitations');
  const [next] = pollAll(ra, at);
  t.equal(toHex(next!), toHex(first!), 'the next RA is byte for byte the same');
});

t.test('random packets never throw', async (t) => {
  const ra = advertiser();
  ra.linkUp(0);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(300), fc.integer({ min: -10, max: 300 }), (bytes, off, len) => {
      ra.handleRouterSolicitation(bytes, off, len, 0);
      ra.handleRouterAdvertisement(bytes, off, len, 0);
    }),
    { numRuns: 2000 },
  );
  // Valid packets with random bytes flipped: a check may fail, nothing may throw, and a packet
  // that is still accepted has hop limit 255 and a valid checksum.
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.nat(LINUX_RS.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), (edits) => {
      const p = LINUX_RS.slice();
      for (const [i, v] of edits) p[i] = v;
      if (ra.handleRouterSolicitation(p, 0, p.length, 0)) {
        if (p[7] !== 255 || !icmpv6ChecksumOk(p)) throw new Error('accepted an invalid RS');
      }
    }),
    { numRuns: 2000 },
  );
  let now = 1;
  fc.assert(
    fc.property(fc.nat(10_000), (dt) => {
      now += dt;
      ra.handleRouterSolicitation(LINUX_RS, 0, LINUX_RS.length, now);
      ra.poll(now, (p) => {
        if (!icmpv6ChecksumOk(p)) throw new Error('bad RA checksum');
      });
      return ra.pollAt() > now;
    }),
  );
  t.pass();
});

function hex(s: string): Uint8Array {
  const b = fromHex(s);
  if (!b) throw new Error('bad hex');
  return b;
}
