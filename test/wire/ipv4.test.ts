import t from 'tap';
import fc from 'fast-check';
import { verifyChecksum } from '../../src/wire/checksum.js';
import { IpProtocol } from '../../src/wire/ip.js';
import {
  checkRecordRoute,
  checkRouterAlert,
  checkTimestamp,
  emitIpv4Header,
  formatIpv4,
  ipv4,
  IPV4_ROUTER_ALERT_OPTION,
  Ipv4Error,
  Ipv4Flags,
  ipv4HeaderLength,
  ipv4InSubnet,
  ipv4IsBroadcast,
  ipv4IsLinkLocal,
  ipv4IsLinkLocalMulticast,
  ipv4IsLoopback,
  ipv4IsMulticast,
  ipv4IsUnspecified,
  Ipv4OptionIterator,
  Ipv4OptionsInfo,
  Ipv4OptionsResult,
  Ipv4OptionsUsage,
  Ipv4OptionType,
  Ipv4Packet,
  ipv4PrefixMask,
  ipv4SubnetBroadcast,
  parseIpv4,
  parseIpv4Options,
  processIpv4Options,
  recordRouteStore,
  timestampStore,
} from '../../src/wire/ipv4.js';
import { ECHO_REQUEST_FRAME, IPV4_WITH_OPTIONS } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const GUEST = ipv4(10, 0, 2, 15);
const GATEWAY = ipv4(10, 0, 2, 2);

t.test('parse the header of a captured echo request', async (t) => {
  const p = new Ipv4Packet().at(ECHO_REQUEST_FRAME, 14, ECHO_REQUEST_FRAME.length - 14);
  t.ok(p.check());
  t.equal(p.version, 4);
  t.equal(p.headerLength, 20);
  t.equal(p.tos, 0);
  t.equal(p.dscp, 0);
  t.equal(p.ecn, 0);
  t.equal(p.totalLength, 84);
  t.equal(p.ident, 0x6d2b);
  t.equal(p.flags, Ipv4Flags.DF);
  t.ok(p.dontFragment);
  t.notOk(p.moreFragments);
  t.equal(p.fragOffset, 0);
  t.notOk(p.isFragment());
  t.equal(p.ttl, 64);
  t.equal(p.protocol, IpProtocol.ICMP);
  t.equal(p.checksum, 0xb56d);
  t.ok(p.verifyChecksum());
  t.equal(formatIpv4(p.src), '10.0.2.15');
  t.equal(formatIpv4(p.dst), '10.0.2.2');
  t.equal(p.optionsLength, 0);
  t.equal(p.payloadOffset, 34);
  t.equal(p.payloadLength, 64);
});

t.test('emit the same header', async (t) => {
  const buf = new Uint8Array(20);
  const repr = {
    src: GUEST,
    dst: GATEWAY,
    proto: IpProtocol.ICMP,
    ttl: 64,
    id: 0x6d2b,
    flags: Ipv4Flags.DF,
    fragOffset: 0,
    payloadLength: 64,
    tos: 0,
  };
  t.equal(ipv4HeaderLength(repr), 20);
  t.equal(emitIpv4Header(buf, 0, repr), 20);
  t.same(buf, ECHO_REQUEST_FRAME.subarray(14, 34));
  t.equal(emitIpv4Header(new Uint8Array(19), 0, repr), -1);
});

t.test('emit a header with options, padded with EOL', async (t) => {
  const buf = new Uint8Array(24);
  const n = emitIpv4Header(buf, 0, {
    src: GUEST,
    dst: ipv4(224, 0, 0, 22),
    proto: IpProtocol.IGMP,
    ttl: 1,
    id: 0,
    flags: Ipv4Flags.DF,
    fragOffset: 0,
    payloadLength: 16,
    tos: 0xc0,
    options: IPV4_ROUTER_ALERT_OPTION,
  });
  t.equal(n, 24);
  // The IP header of Linux's IGMPv3 report (see igmp.test.ts).
  t.same(buf, hex('46c0 0028 0000 4000 0102 f7ea 0a00 020f e000 0016 9404 0000'));
  const odd = new Uint8Array(28);
  t.equal(emitIpv4Header(odd, 0, { ...reprZero(), options: Uint8Array.of(1, 1, 1, 1, 1) }), 28);
  t.same(odd.subarray(20), Uint8Array.of(1, 1, 1, 1, 1, 0, 0, 0));
  t.equal(emitIpv4Header(new Uint8Array(80), 0, { ...reprZero(), options: new Uint8Array(41) }), -1, 'options over 40 bytes');
});

function reprZero() {
  return { src: 0, dst: 0, proto: 0, ttl: 0, id: 0, flags: 0, fragOffset: 0, payloadLength: 0, tos: 0 };
}

t.test('fragment fields', async (t) => {
  const b = new Uint8Array(20);
  emitIpv4Header(b, 0, { ...reprZero(), flags: Ipv4Flags.MF, fragOffset: 1480, payloadLength: 0 });
  const p = new Ipv4Packet().at(b, 0, 20);
  t.ok(p.check());
  t.ok(p.moreFragments);
  t.notOk(p.dontFragment);
  t.equal(p.fragOffset, 1480);
  t.ok(p.isFragment());
  p.fragOffset = 8;
  p.flags = 0;
  t.equal(p.fragOffset, 8);
  t.ok(p.isFragment());
  p.fragOffset = 0;
  t.notOk(p.isFragment());
});

t.test('setters, fillChecksum and the TTL decrement', async (t) => {
  const b = ECHO_REQUEST_FRAME.slice(14);
  const p = new Ipv4Packet().at(b, 0, b.length);
  p.decrementTtl();
  t.equal(p.ttl, 63);
  t.ok(p.verifyChecksum(), 'incremental update keeps the checksum valid');
  p.src = ipv4(192, 168, 1, 1);
  p.dst = ipv4(255, 255, 255, 255);
  p.tos = 0xb8;
  p.ident = 7;
  p.protocol = 17;
  p.totalLength = 40;
  p.ttl = 1;
  p.fillChecksum();
  t.ok(p.verifyChecksum());
  t.equal(p.dst, 0xffffffff);
  t.equal(p.dscp, 46);
  p.headerLength = 24;
  t.equal(p.headerLength, 24);
  t.equal(p.version, 4);
});

t.test('check() reports each error', async (t) => {
  const p = new Ipv4Packet();
  const b = ECHO_REQUEST_FRAME.slice(14);
  t.equal(p.at(b, 0, 19).problem(), Ipv4Error.TRUNCATED);
  b[0] = 0x65;
  t.equal(p.at(b, 0, b.length).problem(), Ipv4Error.VERSION);
  b[0] = 0x44;
  t.equal(p.problem(), Ipv4Error.HEADER_LENGTH);
  b[0] = 0x4f;
  t.equal(p.at(b, 0, 59).problem(), Ipv4Error.HEADER_LENGTH);
  b[0] = 0x45;
  t.equal(p.at(b, 0, 83).problem(), Ipv4Error.TOTAL_LENGTH, 'total length beyond the bytes we have');
  b[3] = 19;
  t.equal(p.at(b, 0, b.length).problem(), Ipv4Error.TOTAL_LENGTH, 'total length below the header');
  b[3] = 0x54;
  const padded = new Uint8Array(100);
  padded.set(b);
  t.ok(p.at(padded, 0, 100).check(), 'link padding after the datagram is fine');
  t.equal(p.payloadLength, 64);
});

t.test('every truncation fails check()', async (t) => {
  const pkt = ECHO_REQUEST_FRAME.subarray(14);
  everyPrefix(pkt, (b, len) => {
    t.notOk(new Ipv4Packet().at(b, 0, len).check(), `prefix ${len}`);
  });
  everyPrefix(IPV4_WITH_OPTIONS, (b, len) => {
    const p = new Ipv4Packet().at(b, 0, len);
    t.notOk(p.check());
    // Options parsing of a truncated header reports a problem or stops early, never throws.
    if (len >= 20) parseIpv4Options(b, 0, Math.min(p.headerLength, len), new Ipv4OptionsInfo());
  });
});

t.test('iterate options', async (t) => {
  const p = new Ipv4Packet().at(IPV4_WITH_OPTIONS, 0, IPV4_WITH_OPTIONS.length);
  t.ok(p.check());
  t.ok(p.verifyChecksum());
  t.equal(p.headerLength, 60);
  t.equal(p.optionsLength, 40);
  const it = new Ipv4OptionIterator().at(p.bytes, p.offset, p.headerLength);
  const seen: Array<[number, number, number]> = [];
  while (it.next()) seen.push([it.type, it.offset, it.length]);
  t.same(seen, [
    [Ipv4OptionType.RECORD_ROUTE, 20, 15],
    [Ipv4OptionType.NOP, 35, 1],
    [Ipv4OptionType.TIMESTAMP, 36, 20],
    [Ipv4OptionType.ROUTER_ALERT, 56, 4],
  ]);
  t.equal(it.errorPointer, -1);
});

t.test('EOL ends the list; malformed lengths give the pointer', async (t) => {
  const h = (opts: number[]) => {
    const b = new Uint8Array(20 + opts.length);
    b[0] = 0x40 | ((20 + opts.length) >>> 2);
    b.set(opts, 20);
    return b;
  };
  const it = new Ipv4OptionIterator();
  let b = h([1, 0, 7, 0]);
  it.at(b, 0, b.length);
  t.ok(it.next());
  t.notOk(it.next(), 'EOL stops');
  t.equal(it.errorPointer, -1);
  b = h([1, 1, 1, 0x44]);
  it.at(b, 0, b.length);
  while (it.next());
  t.equal(it.errorPointer, 23, 'no room for a length byte: points at the type');
  b = h([0x44, 1, 0, 0]);
  it.at(b, 0, b.length);
  t.notOk(it.next());
  t.equal(it.errorPointer, 20, 'length below 2: points at the option (as Linux and gVisor)');
  b = h([0x44, 8, 5, 0]);
  it.at(b, 0, b.length);
  t.notOk(it.next());
  t.equal(it.errorPointer, 20, 'length past the header: points at the option');
});

t.test('parseIpv4Options finds and validates the known options', async (t) => {
  const info = new Ipv4OptionsInfo();
  t.equal(parseIpv4Options(IPV4_WITH_OPTIONS, 0, 60, info), -1);
  t.equal(info.recordRoute, 20);
  t.equal(info.timestamp, 36);
  t.equal(info.routerAlert, 56);
  t.equal(info.unknown, 0);

  const dup = hex('4800 0020 0000 0000 4001 0000 0000 0000 0000 0000 9404 0000 0194 0400 0000 0000');
  t.equal(parseIpv4Options(dup, 0, 32, info), 25, 'duplicate option: pointer at its type');
  t.equal(info.routerAlert, -1, 'nothing reported on error');

  const badRa = IPV4_WITH_OPTIONS.slice();
  badRa[59] = 1;
  t.equal(parseIpv4Options(badRa, 0, 60, info), 58, 'router alert value must be 0');

  const unknown = hex('4600 0018 0000 0000 4001 0000 0000 0000 0000 0000 8204 0000');
  t.equal(parseIpv4Options(unknown, 0, 24, info), -1);
  t.equal(info.unknown, 1);
});

t.test('record route: validation and storing addresses', async (t) => {
  const opt = Uint8Array.of(7, 11, 4, 0, 0, 0, 0, 0, 0, 0, 0);
  t.equal(checkRecordRoute(opt, 0, 11), -1);
  t.ok(recordRouteStore(opt, 0, GUEST));
  t.equal(opt[2], 8);
  t.ok(recordRouteStore(opt, 0, GATEWAY));
  t.equal(opt[2], 12);
  t.same(opt, Uint8Array.of(7, 11, 12, 10, 0, 2, 15, 10, 0, 2, 2));
  t.equal(checkRecordRoute(opt, 0, 11), -1, 'full is fine: forwarded without recording');
  t.notOk(recordRouteStore(opt, 0, GUEST));
  t.equal(checkRecordRoute(Uint8Array.of(7, 6, 4, 0, 0, 0), 0, 6), 1, 'too short for one address: length');
  t.equal(checkRecordRoute(Uint8Array.of(7, 7, 3, 0, 0, 0, 0), 0, 7), 2, 'pointer below 4');
  t.equal(checkRecordRoute(Uint8Array.of(7, 9, 8, 0, 0, 0, 0, 0, 0), 0, 9), 2, 'room for part of an address');
});

t.test('timestamp: validation, storing, overflow', async (t) => {
  // flags 1 (address + timestamp), one slot used of two, from the captured options.
  const ts = IPV4_WITH_OPTIONS.slice(36, 56);
  t.equal(checkTimestamp(ts, 0, 20), -1);
  timestampStore(ts, 0, GATEWAY, 0x89abcdef);
  t.equal(ts[2], 21);
  t.same(ts.subarray(12, 20), hex('0a000202 89abcdef'));
  t.equal(checkTimestamp(ts, 0, 20), -1, 'full');
  timestampStore(ts, 0, GATEWAY, 1);
  t.equal(ts[3], 0x21, 'full: overflow count incremented');
  ts[3] = 0xf1;
  t.equal(checkTimestamp(ts, 0, 20), 3, 'overflow count would overflow');

  const only = Uint8Array.of(68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  t.equal(checkTimestamp(only, 0, 12), -1);
  timestampStore(only, 0, GUEST, 0x01020304);
  t.same(only.subarray(2, 8), Uint8Array.of(9, 0, 1, 2, 3, 4));

  const pre = Uint8Array.of(68, 12, 5, 3, 10, 0, 2, 2, 0, 0, 0, 0);
  timestampStore(pre, 0, GUEST, 7);
  t.equal(pre[2], 5, 'prespecified: another address does not fill the slot');
  timestampStore(pre, 0, GATEWAY, 7);
  t.equal(pre[2], 13);
  t.equal(pre[11], 7);

  t.equal(checkTimestamp(Uint8Array.of(68, 3, 5), 0, 3), 1, 'length below 4');
  t.equal(checkTimestamp(Uint8Array.of(68, 8, 5, 2, 0, 0, 0, 0), 0, 8), 3, 'flag 2 is undefined');
  t.equal(checkTimestamp(Uint8Array.of(68, 8, 4, 0, 0, 0, 0, 0), 0, 8), 2, 'pointer below 5');
  t.equal(checkTimestamp(Uint8Array.of(68, 10, 5, 1, 0, 0, 0, 0, 0, 0), 0, 10), 2, 'no room for address + timestamp');
});

t.test('router alert', async (t) => {
  t.equal(checkRouterAlert(IPV4_ROUTER_ALERT_OPTION, 0, 4), -1);
  t.equal(checkRouterAlert(Uint8Array.of(0x94, 4, 0, 1), 0, 4), 2);
  t.equal(checkRouterAlert(Uint8Array.of(0x94, 6, 0, 0, 0, 0), 0, 6), 1);
});

/** An IPv4 header (no payload) with `opts` padded to a multiple of 4. */
function withOptions(opts: number[]): Uint8Array {
  const n = (opts.length + 3) & ~3;
  const b = new Uint8Array(20 + n);
  b[0] = 0x40 | ((20 + n) >>> 2);
  b.set(opts, 20);
  return b;
}

t.test('processIpv4Options: the seed usages on the captured options', async (t) => {
  const out = new Uint8Array(40);
  const r = new Ipv4OptionsResult();
  const orig = IPV4_WITH_OPTIONS.slice();
  t.ok(processIpv4Options(orig, 0, 60, Ipv4OptionsUsage.ECHO, GATEWAY, 0x89abcdef, out, r));
  t.same(orig, IPV4_WITH_OPTIONS, 'the packet itself is not written');
  t.equal(r.length, 40);
  t.ok(r.recordRoute && r.timestamp && r.routerAlert);
  t.same(out.subarray(0, 15), hex('070f 0c0a 0002 0f0a 0002 0200 0000 00'), 'record route: our address stored, pointer 12');
  t.equal(out[15], 1, 'NOP kept');
  t.same(out.subarray(16, 36), hex('4414 1511 0a00 020f 0123 4567 0a00 0202 89ab cdef'), 'timestamp: address and time, pointer 21');
  t.same(out.subarray(36, 40), IPV4_ROUTER_ALERT_OPTION, 'router alert kept');

  t.ok(processIpv4Options(orig, 0, 60, Ipv4OptionsUsage.VERIFY, GATEWAY, 1, out, r));
  t.same(out.subarray(0, 40), IPV4_WITH_OPTIONS.subarray(20, 60), 'verify: checked, unchanged');

  // An unknown option (security, 130): kept when received or forwarded, dropped from echo replies.
  const unk = withOptions([0x82, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0]);
  t.ok(processIpv4Options(unk, 0, unk.length, Ipv4OptionsUsage.RECEIVE, GUEST, 0, out, r));
  t.equal(r.length, 12);
  t.same(out.subarray(0, 11), Uint8Array.of(0x82, 4, 0, 0, 7, 7, 8, 10, 0, 2, 15));
  t.ok(processIpv4Options(unk, 0, unk.length, Ipv4OptionsUsage.FORWARD, GUEST, 0, out, r));
  t.equal(r.length, 12);
  t.ok(processIpv4Options(unk, 0, unk.length, Ipv4OptionsUsage.ECHO, GUEST, 0, out, r));
  t.equal(r.length, 8, 'echo: unknown option dropped, list padded to 8');
  t.same(out.subarray(0, 8), Uint8Array.of(7, 7, 8, 10, 0, 2, 15, 0));

  // EOL ends processing; what follows is padding, never looked at.
  const eol = withOptions([1, 0, 0xff, 0xff]);
  t.ok(processIpv4Options(eol, 0, eol.length, Ipv4OptionsUsage.RECEIVE, GUEST, 0, out, r));
  t.equal(r.length, 4);
  t.same(out.subarray(0, 4), Uint8Array.of(1, 0, 0, 0));
});

t.test('processIpv4Options: timestamp flag variants and the overflow count', async (t) => {
  const out = new Uint8Array(40);
  const r = new Ipv4OptionsResult();
  // Timestamps only, room for two.
  let b = withOptions([68, 12, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  t.ok(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.RECEIVE, GATEWAY, 1234, out, r));
  t.same(out.subarray(0, 12), Uint8Array.of(68, 12, 9, 0, 0, 0, 4, 210, 0, 0, 0, 0));
  // Prespecified addresses: only ours is stamped.
  b = withOptions([68, 20, 5, 3, 10, 0, 2, 2, 0, 0, 0, 0, 10, 0, 2, 9, 0, 0, 0, 0]);
  t.ok(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.ECHO, GATEWAY, 7, out, r));
  t.same(out.subarray(0, 20), Uint8Array.of(68, 20, 13, 3, 10, 0, 2, 2, 0, 0, 0, 7, 10, 0, 2, 9, 0, 0, 0, 0));
  b = withOptions([68, 12, 5, 3, 10, 0, 2, 9, 0, 0, 0, 0]);
  t.ok(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.ECHO, GATEWAY, 7, out, r));
  t.equal(out[2], 5, 'another address named: pointer unchanged');
  // Full: the overflow count goes up (not for prespecified, "by definition nothing to do").
  b = withOptions([68, 12, 13, 0x21, 10, 0, 2, 15, 0, 0, 0, 1]);
  t.ok(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.RECEIVE, GATEWAY, 7, out, r));
  t.equal(out[3], 0x31, 'overflow 2 → 3, flags kept');
  b = withOptions([68, 12, 13, 0x33, 10, 0, 2, 15, 0, 0, 0, 1]);
  t.ok(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.RECEIVE, GATEWAY, 7, out, r));
  t.equal(out[3], 0x33, 'prespecified and full: untouched');
  b = withOptions([68, 12, 13, 0xf1, 10, 0, 2, 15, 0, 0, 0, 1]);
  t.notOk(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.RECEIVE, GATEWAY, 7, out, r));
  t.equal(r.problem, 23, 'overflow count would overflow: pointer at oflw/flg');
});

t.test('processIpv4Options: parameter problem pointers as the seed computes them', async (t) => {
  const out = new Uint8Array(40);
  const r = new Ipv4OptionsResult();
  const cases: Array<[number[], number, string]> = [
    [[0x44], 20, 'no room for a length byte: the option'],
    [[0x44, 1, 0, 0], 20, 'length below 2: the option'],
    [[0x82, 9, 0, 0], 20, 'length past the options: the option'],
    [[68, 3, 5, 0], 21, 'timestamp shorter than its header: the length'],
    [[7, 2, 0, 0], 21, 'record route shorter than its header: the length'],
    [[148, 6, 0, 0, 0, 0, 0, 0], 21, 'router alert not 4 long: the length'],
    [[148, 4, 0, 0, 148, 4, 0, 0], 24, 'a repeated option: the second one'],
    [[1, 7, 7, 4, 0, 0, 0, 0, 7, 2], 29, 'a repeated option too short: its length first (the iterator)'],
    [[7, 6, 4, 0, 0, 0], 21, 'record route without room for one address: the length'],
    [[7, 7, 3, 0, 0, 0, 0], 22, 'record route pointer below 4'],
    [[7, 9, 8, 0, 0, 0, 0, 0, 0], 22, 'record route with room for part of an address: the pointer'],
    [[68, 8, 5, 2, 0, 0, 0, 0], 23, 'timestamp flag 2: oflw/flg'],
    [[68, 8, 4, 0, 0, 0, 0, 0], 22, 'timestamp pointer below 5'],
    [[68, 10, 5, 1, 0, 0, 0, 0, 0, 0], 22, 'no room for address + timestamp: the pointer'],
    [[148, 4, 0, 1], 22, 'router alert value not 0'],
  ];
  for (const [opts, pointer, why] of cases) {
    const b = withOptions(opts);
    t.notOk(processIpv4Options(b, 0, b.length, Ipv4OptionsUsage.RECEIVE, GATEWAY, 0, out, r), why);
    t.equal(r.problem, pointer, why);
    t.equal(r.length, 0);
    // parseIpv4Options agrees.
    t.equal(parseIpv4Options(b, 0, b.length, new Ipv4OptionsInfo()), pointer, `parse: ${why}`);
  }
  // A full record route is fine (forwarded without recording).
  const full = withOptions([7, 7, 8, 10, 0, 2, 15]);
  t.ok(processIpv4Options(full, 0, full.length, Ipv4OptionsUsage.ECHO, GATEWAY, 0, out, r));
  t.same(out.subarray(0, 7), Uint8Array.of(7, 7, 8, 10, 0, 2, 15));
});

t.test('processIpv4Options never reads out of bounds; results are padded and bounded', async (t) => {
  property(
    t,
    'random options',
    fc.property(fc.uint8Array({ minLength: 0, maxLength: 40 }), fc.integer({ min: 0, max: 3 }), (opts, usage) => {
      const b = withOptions([...opts]);
      const out = new Uint8Array(40);
      const r = new Ipv4OptionsResult();
      if (processIpv4Options(strict(b), 0, b.length, usage as Ipv4OptionsUsage, GATEWAY, 5, out, r)) {
        return r.length % 4 === 0 && r.length <= b.length - 20;
      }
      return r.problem >= 20 && r.problem < b.length;
    }),
  );
});

t.test('address helpers', async (t) => {
  t.equal(parseIpv4('10.0.2.15'), GUEST);
  t.equal(parseIpv4('255.255.255.255'), 0xffffffff);
  t.equal(parseIpv4('256.0.0.1'), null);
  t.equal(parseIpv4('1.2.3'), null);
  t.equal(parseIpv4('1.2.3.x'), null);
  t.equal(formatIpv4(0xffffffff), '255.255.255.255');
  t.ok(ipv4IsBroadcast(0xffffffff));
  t.ok(ipv4IsUnspecified(0));
  t.ok(ipv4IsMulticast(ipv4(224, 0, 0, 251)));
  t.ok(ipv4IsMulticast(ipv4(239, 255, 255, 250)));
  t.notOk(ipv4IsMulticast(ipv4(240, 0, 0, 1)));
  t.ok(ipv4IsLinkLocalMulticast(ipv4(224, 0, 0, 22)));
  t.notOk(ipv4IsLinkLocalMulticast(ipv4(224, 0, 1, 22)));
  t.ok(ipv4IsLoopback(ipv4(127, 0, 0, 1)));
  t.ok(ipv4IsLinkLocal(ipv4(169, 254, 1, 2)));
  t.equal(ipv4PrefixMask(24), ipv4(255, 255, 255, 0));
  t.equal(ipv4PrefixMask(0), 0);
  t.equal(ipv4PrefixMask(32), 0xffffffff);
  t.ok(ipv4InSubnet(GUEST, ipv4(10, 0, 2, 0), 24));
  t.notOk(ipv4InSubnet(ipv4(10, 0, 3, 1), ipv4(10, 0, 2, 0), 24));
  t.ok(ipv4InSubnet(ipv4(1, 2, 3, 4), 0, 0));
  t.equal(ipv4SubnetBroadcast(ipv4(10, 0, 2, 0), 24), ipv4(10, 0, 2, 255));
  // Addresses from 2^31 up (the masks are signed inside).
  t.ok(ipv4InSubnet(ipv4(192, 168, 1, 5), ipv4(192, 168, 1, 0), 24));
  t.notOk(ipv4InSubnet(ipv4(192, 168, 2, 5), ipv4(192, 168, 1, 0), 24));
  t.ok(ipv4InSubnet(ipv4(203, 0, 113, 9), ipv4(203, 0, 113, 9), 32));
  t.notOk(ipv4InSubnet(ipv4(203, 0, 113, 9), ipv4(203, 0, 113, 8), 32));
  t.ok(ipv4InSubnet(ipv4(255, 255, 255, 255), ipv4(128, 0, 0, 0), 1));
  t.equal(ipv4SubnetBroadcast(ipv4(192, 168, 1, 0), 24), ipv4(192, 168, 1, 255), 'unsigned');
  t.equal(ipv4SubnetBroadcast(0, 0), 0xffffffff);
});

t.test('properties', async (t) => {
  const info = new Ipv4OptionsInfo();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const s = strict(bytes);
      const p = new Ipv4Packet().at(s, 0, bytes.length);
      if (p.check()) {
        void [p.tos, p.totalLength, p.ident, p.flags, p.fragOffset, p.ttl, p.protocol, p.src, p.dst, p.payloadLength];
        p.verifyChecksum();
        parseIpv4Options(s, 0, p.headerLength, info);
      }
    }),
  );
  property(
    t,
    'random options never throw and pointers stay inside the header',
    fc.property(fc.uint8Array({ maxLength: 40 }), (opts) => {
      const n = (opts.length + 3) & ~3;
      const b = new Uint8Array(20 + n);
      b[0] = 0x40 | ((20 + n) >>> 2);
      b.set(opts, 20);
      const r = parseIpv4Options(strict(b), 0, b.length, info);
      return r === -1 || (r >= 20 && r < b.length);
    }),
  );
  property(
    t,
    'emit then parse round-trips',
    fc.property(
      fc.record({
        src: fc.integer({ min: 0, max: 0xffffffff }),
        dst: fc.integer({ min: 0, max: 0xffffffff }),
        proto: fc.integer({ min: 0, max: 255 }),
        ttl: fc.integer({ min: 0, max: 255 }),
        id: fc.integer({ min: 0, max: 0xffff }),
        flags: fc.integer({ min: 0, max: 3 }),
        fragOffset: fc.integer({ min: 0, max: 0x1fff }).map((x) => x * 8),
        payloadLength: fc.integer({ min: 0, max: 100 }),
        tos: fc.integer({ min: 0, max: 255 }),
      }),
      (r) => {
        const b = new Uint8Array(20 + r.payloadLength);
        if (emitIpv4Header(b, 0, r) !== 20) return false;
        const p = new Ipv4Packet().at(b, 0, b.length);
        return (
          p.check() &&
          p.verifyChecksum() &&
          verifyChecksum(b, 0, 20) &&
          p.src === r.src &&
          p.dst === r.dst &&
          p.protocol === r.proto &&
          p.ttl === r.ttl &&
          p.ident === r.id &&
          p.flags === r.flags &&
          p.fragOffset === r.fragOffset &&
          p.payloadLength === r.payloadLength &&
          p.tos === r.tos
        );
      },
    ),
  );
  property(
    t,
    'parseIpv4 inverts formatIpv4',
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), (a) => parseIpv4(formatIpv4(a)) === a),
  );
});
