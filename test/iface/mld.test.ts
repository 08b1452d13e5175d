// MLD on the frame device with an injected clock and random source: our MLDv2 reports at link-up
// (from :: during DAD) and in answer to the guest's queries (MLDv1 or MLDv2), vunet as the querier
// from fe80::2 once it passed DAD, the guest's listening learnt from MLDv1 and MLDv2 reports and
// expired, done / TO_IN({}) followed by last-listener queries, and the seed's isMLDValid drops.
import t from 'tap';
import { LINK_LOCAL_ADDRESS } from '../../src/iface/ipv6.js';
import { GROUP_MEMBERSHIP_INTERVAL, QUERY_INTERVAL, QuerierState, STARTUP_QUERY_INTERVAL } from '../../src/iface/multicast.js';
import {
  EtherType,
  IPV6_ALL_MLDV2_ROUTERS,
  IPV6_ALL_NODES,
  IPV6_ALL_ROUTERS,
  IPV6_UNSPECIFIED,
  Icmpv6Packet,
  Icmpv6Type,
  IpProtocol,
  Ipv6Packet,
  MldMessage,
  MldRecordIterator,
  MldRecordType,
  bytesEqual,
  emitEthernetHeader,
  emitIpv6Header,
  emitIpv6RouterAlertHopByHop,
  emitMldv1,
  emitMldv2Query,
  emitMldv2Report,
  fillIcmpv6Checksum,
  formatIpv6,
  macFromIpv6Multicast,
  parseIpv6,
} from '../../src/wire/index.js';
import type { MldRecordRepr } from '../../src/wire/index.js';
import { makeStack, runTimers } from '../support/frame-device.js';
import { GUEST_MAC } from '../support/packets.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const GUEST_GLOBAL = parseIpv6('fec0::5054:ff:fe12:3456')!;
const G1 = parseIpv6('ff05::1:3')!;
const G2 = parseIpv6('ff02::fb')!;
const G3 = parseIpv6('ff0e::1')!;
const SN = parseIpv6('ff02::1:ff12:3456')!;
const SN_OURS_2 = parseIpv6('ff02::1:ff00:2')!;
const SN_OURS_3 = parseIpv6('ff02::1:ff00:3')!;

interface MldFrame {
  src?: Uint8Array;
  hopLimit?: number;
  ra?: boolean;
}

/** An MLD message from the guest behind a hop-by-hop router alert; `build` writes it at `off`. */
function mldFrame(dst: Uint8Array, build: (b: Uint8Array, off: number, src: Uint8Array) => number, p: MldFrame = {}): Uint8Array {
  const src = p.src ?? GUEST_LL;
  const b = new Uint8Array(1500);
  const ra = p.ra !== false;
  const off = 54 + (ra ? 8 : 0);
  const len = build(b, off, src);
  if (ra) emitIpv6RouterAlertHopByHop(b, 54, IpProtocol.ICMPV6);
  const mac = new Uint8Array(6);
  macFromIpv6Multicast(mac, 0, dst, 0);
  emitEthernetHeader(b, 0, { dst: mac, src: GUEST_MAC, etherType: EtherType.IPV6 });
  emitIpv6Header(b, 14, { src, dst, nextHeader: ra ? IpProtocol.HOPOPTS : IpProtocol.ICMPV6, hopLimit: p.hopLimit ?? 1, payloadLength: len + (ra ? 8 : 0) });
  return b.slice(0, off + len);
}

const v2Report = (records: MldRecordRepr[], p: MldFrame = {}) =>
  mldFrame(IPV6_ALL_MLDV2_ROUTERS, (b, o, src) => emitMldv2Report(b, o, records, src, IPV6_ALL_MLDV2_ROUTERS), p);
const v1Report = (group: Uint8Array, p: MldFrame = {}) =>
  mldFrame(group, (b, o, src) => emitMldv1(b, o, { type: Icmpv6Type.MLD_REPORT, maxResponseDelay: 0, address: group }, src, group), p);
const done = (group: Uint8Array, p: MldFrame = {}) =>
  mldFrame(IPV6_ALL_ROUTERS, (b, o, src) => emitMldv1(b, o, { type: Icmpv6Type.MLD_DONE, maxResponseDelay: 0, address: group }, src, IPV6_ALL_ROUTERS), p);
const v1Query = (maxResponseDelay: number, p: MldFrame = {}) =>
  mldFrame(IPV6_ALL_NODES, (b, o, src) => emitMldv1(b, o, { type: Icmpv6Type.MLD_QUERY, maxResponseDelay, address: IPV6_UNSPECIFIED }, src, IPV6_ALL_NODES), p);
const v2Query = (group: Uint8Array | undefined, maxRespCode: number, p: MldFrame = {}) =>
  mldFrame(
    group ?? IPV6_ALL_NODES,
    (b, o, src) =>
      emitMldv2Query(
        b,
        o,
        { maxRespCode, address: group ?? IPV6_UNSPECIFIED, suppressRouterProcessing: false, qrv: 2, qqic: 125, sources: [] },
        src,
        group ?? IPV6_ALL_NODES,
      ),
    p,
  );

interface Sent {
  at: number;
  frame: Uint8Array;
  ip: Ipv6Packet;
  /** The ICMPv6 message behind the hop-by-hop header. */
  off: number;
  type: number;
}

/** A stack after link-up (random 0.5): reports at 0 and 0.5 s, DAD done and the querier started
 *  at 1.5 s. */
function started() {
  const env = makeStack({}, { random: () => 0.5 });
  const sent: Sent[] = [];
  const collect = (): void => {
    for (const f of env.link.take()) {
      if (f[12] !== 0x86 || f[13] !== 0xdd) continue;
      const ip = new Ipv6Packet().at(f, 14, f.length - 14);
      if (ip.nextHeader !== IpProtocol.HOPOPTS || f[54] !== IpProtocol.ICMPV6) continue;
      sent.push({ at: env.clock.now(), frame: f, ip, off: 62, type: f[62]! });
    }
  };
  const runTo = (until: number): void => runTimers(env.stack, env.clock, until, collect);
  const inject = (f: Uint8Array): void => {
    env.stack.receive(f, { checksumPartial: false });
    collect();
  };
  const t0 = env.clock.now();
  env.stack.linkUp();
  runTo(t0 + 1500);
  return { ...env, sent, runTo, inject, t0, v6: env.stack.ipv6! };
}

function recordsOf(s: Sent): Array<[number, string]> {
  const out: Array<[number, string]> = [];
  const it = new MldRecordIterator().at(s.frame, s.off, s.frame.length - s.off);
  while (it.next()) out.push([it.recordType, formatIpv6(s.frame, it.addressOffset)]);
  return out;
}

t.test('link-up: MLDv2 reports from :: during DAD, then queries from fe80::2', async (t) => {
  const { sent, runTo, t0, stack } = started();
  const reports = sent.filter((s) => s.type === Icmpv6Type.MLDV2_REPORT);
  t.same(
    reports.map((r) => r.at - t0),
    [0, 500],
    'Robustness (2) reports, the second after a random part of 1 s',
  );
  for (const r of reports) {
    t.ok(bytesEqual(r.frame, r.ip.srcOffset, IPV6_UNSPECIFIED, 0, 16), 'from :: while fe80::2 is tentative');
    t.ok(bytesEqual(r.frame, r.ip.dstOffset, IPV6_ALL_MLDV2_ROUTERS, 0, 16), 'to ff02::16');
    t.equal(r.ip.hopLimit, 1);
    t.same([...r.frame.subarray(56, 60)], [5, 2, 0, 0], 'hop-by-hop router alert, MLD value');
    t.same(
      recordsOf(r),
      [
        [MldRecordType.CHANGE_TO_EXCLUDE, 'ff02::2'],
        [MldRecordType.CHANGE_TO_EXCLUDE, 'ff02::16'],
        [MldRecordType.CHANGE_TO_EXCLUDE, formatIpv6(SN_OURS_2)],
        [MldRecordType.CHANGE_TO_EXCLUDE, formatIpv6(SN_OURS_3)],
      ],
      'all-routers, MLDv2 routers and our solicited-node groups; all-nodes never',
    );
    t.ok(new Icmpv6Packet().at(r.frame, 62, r.frame.length - 62).verifyChecksum(r.frame, r.ip.srcOffset, r.frame, r.ip.dstOffset));
  }
  const queries = () => sent.filter((s) => s.type === Icmpv6Type.MLD_QUERY);
  t.same(
    queries().map((q) => q.at - t0),
    [1500],
    'the first query once fe80::2 passed DAD',
  );
  const q = queries()[0]!;
  t.ok(bytesEqual(q.frame, q.ip.srcOffset, LINK_LOCAL_ADDRESS, 0, 16), 'from fe80::2');
  t.ok(bytesEqual(q.frame, q.ip.dstOffset, IPV6_ALL_NODES, 0, 16), 'to ff02::1');
  t.same([...q.frame.subarray(0, 6)], [0x33, 0x33, 0, 0, 0, 1]);
  t.equal(q.ip.hopLimit, 1);
  t.same([...q.frame.subarray(56, 60)], [5, 2, 0, 0], 'router alert');
  const m = new MldMessage().at(q.frame, 62, q.frame.length - 62);
  t.ok(m.check());
  t.equal(m.length, 28, 'MLDv2 query');
  t.equal(m.queryVersion, 2);
  t.equal(m.maxResponseDelay, 10_000);
  t.equal(m.qrv, 2);
  t.equal(m.queryInterval, 125);
  t.ok(bytesEqual(q.frame, m.addressOffset, IPV6_UNSPECIFIED, 0, 16), 'general');
  t.ok(new Icmpv6Packet().at(q.frame, 62, q.frame.length - 62).verifyChecksum(q.frame, q.ip.srcOffset, q.frame, q.ip.dstOffset));
  runTo(t0 + 1500 + STARTUP_QUERY_INTERVAL + QUERY_INTERVAL);
  t.same(
    queries().map((x) => x.at - t0 - 1500),
    [0, STARTUP_QUERY_INTERVAL, STARTUP_QUERY_INTERVAL + QUERY_INTERVAL],
  );
  t.equal(stack.counters.get('mld.out.130'), 3);
  t.equal(stack.counters.get('icmp6.out.130.0'), 3);
  t.equal(stack.counters.get('mld.out.143'), 2);
});

t.test("the guest's listening: learnt from MLDv1 and MLDv2 reports, expired after 260 s", async (t) => {
  const { inject, runTo, v6, clock, stack } = started();
  const t1 = clock.now();
  inject(
    v2Report([
      { type: MldRecordType.MODE_IS_EXCLUDE, address: G1, sources: [] },
      { type: MldRecordType.CHANGE_TO_EXCLUDE, address: G2, sources: [] },
      { type: MldRecordType.ALLOW_NEW_SOURCES, address: G3, sources: [parseIpv6('2001:db8::1')!] },
      { type: MldRecordType.MODE_IS_INCLUDE, address: parseIpv6('ff05::5')!, sources: [] },
      { type: MldRecordType.BLOCK_OLD_SOURCES, address: parseIpv6('ff05::6')!, sources: [parseIpv6('2001:db8::1')!] },
      { type: MldRecordType.CHANGE_TO_EXCLUDE, address: parseIpv6('ff01::7')!, sources: [] },
      { type: MldRecordType.CHANGE_TO_EXCLUDE, address: IPV6_ALL_NODES, sources: [] },
    ]),
  );
  // An MLDv1 report goes to the group it names, one we do not listen to: heard all the same.
  inject(v1Report(SN));
  for (const g of [G1, G2, G3, SN]) t.ok(v6.guestJoined(g, 0), `joined ${formatIpv6(g)}`);
  for (const g of ['ff05::5', 'ff05::6', 'ff01::7', 'ff05::9']) t.notOk(v6.guestJoined(parseIpv6(g)!, 0), `not joined ${g}`);
  t.ok(v6.guestJoined(IPV6_ALL_NODES, 0), 'all-nodes: always');
  t.equal(v6.mld.querier.guestGroups().length, 4, 'interface-local scope and all-nodes ignored');
  t.equal(stack.counters.get('mld.in.143'), 1);
  t.equal(stack.counters.get('mld.in.131'), 1);
  t.equal(stack.counters.get('icmp6.in.143'), 1);
  runTo(t1 + 100_000);
  inject(v1Report(SN));
  runTo(t1 + GROUP_MEMBERSHIP_INTERVAL);
  t.notOk(v6.guestJoined(G1, 0), 'expired after the Multicast Address Listening Interval');
  t.ok(v6.guestJoined(SN, 0), 'the refreshed one stays');
  runTo(t1 + 100_000 + GROUP_MEMBERSHIP_INTERVAL);
  t.notOk(v6.guestJoined(SN, 0));
  t.equal(stack.counters.get('mld.guestLeft'), 4);
});

t.test('done and TO_IN({}): last-listener queries to the group, then it is gone', async (t) => {
  const { inject, runTo, v6, clock, sent } = started();
  inject(v1Report(G2));
  const t1 = clock.now();
  sent.length = 0;
  inject(done(G2));
  runTo(t1 + 1999);
  const qs = sent.filter((s) => s.type === Icmpv6Type.MLD_QUERY);
  t.same(
    qs.map((q) => q.at - t1),
    [0, 1000],
    'two queries, 1 s apart',
  );
  for (const q of qs) {
    t.ok(bytesEqual(q.frame, q.ip.dstOffset, G2, 0, 16), 'to the group');
    const m = new MldMessage().at(q.frame, 62, q.frame.length - 62);
    t.ok(bytesEqual(q.frame, m.addressOffset, G2, 0, 16), 'about the group');
    t.equal(m.maxResponseDelay, 1000, 'Last Listener Query Interval');
  }
  t.ok(v6.guestJoined(G2, 0));
  runTo(t1 + 2000);
  t.notOk(v6.guestJoined(G2, 0), 'gone after the Last Listener Query Time');

  inject(v2Report([{ type: MldRecordType.CHANGE_TO_EXCLUDE, address: G1, sources: [] }]));
  inject(v2Report([{ type: MldRecordType.CHANGE_TO_INCLUDE, address: G1, sources: [] }]));
  const t2 = clock.now();
  runTo(t2 + 500);
  inject(v2Report([{ type: MldRecordType.MODE_IS_EXCLUDE, address: G1, sources: [] }]));
  runTo(t2 + 5000);
  t.ok(v6.guestJoined(G1, 0), 'a report after the first query keeps the group');
});

t.test("validation as the seed's isMLDValid: router alert, hop limit 1, link-local source", async (t) => {
  const { inject, v6, stack } = started();
  const c = stack.counters;
  const rec = [{ type: MldRecordType.CHANGE_TO_EXCLUDE, address: G1, sources: [] }];
  inject(v2Report(rec, { hopLimit: 255 }));
  t.equal(c.get('mld.badHopLimit'), 1);
  inject(v2Report(rec, { ra: false }));
  t.equal(c.get('mld.noRouterAlert'), 1);
  inject(v2Report(rec, { src: GUEST_GLOBAL }));
  inject(v2Report(rec, { src: IPV6_UNSPECIFIED }));
  t.equal(c.get('mld.badSource'), 2, 'a global source, and :: (the seed takes only link-local)');
  t.notOk(v6.guestJoined(G1, 0), 'none joined');
  // A 25-byte query: neither MLDv1 (24) nor MLDv2 (28 or more), invalid (RFC 3810 §8.1).
  inject(
    mldFrame(IPV6_ALL_NODES, (b, o, src) => {
      emitMldv1(b, o, { type: Icmpv6Type.MLD_QUERY, maxResponseDelay: 1000, address: IPV6_UNSPECIFIED }, src, IPV6_ALL_NODES);
      b[o + 24] = 0;
      fillIcmpv6Checksum(b, o, 25, src, IPV6_ALL_NODES);
      return 25;
    }),
  );
  t.equal(c.get('mld.malformed'), 1, 'a 25-byte query is dropped');
  inject(v1Report(IPV6_ALL_NODES));
  t.equal(c.get('mld.badGroup'), 1, 'a report for all-nodes');
  // Without router alert an MLDv1 report to an unjoined group is not even ours.
  inject(v1Report(SN, { ra: false }));
  t.equal(c.get('ipv6.groupNotJoined'), 1);
});

t.test("the guest's queries: answered in its MLD version after a random delay", async (t) => {
  const { inject, runTo, sent, clock, v6 } = started();
  sent.length = 0;
  const t1 = clock.now();
  inject(v2Query(undefined, 10_000));
  runTo(t1 + 10_000);
  const ours = () => sent.filter((s) => s.type !== Icmpv6Type.MLD_QUERY);
  t.same(
    ours().map((s) => [s.at - t1, s.type]),
    [[5000, Icmpv6Type.MLDV2_REPORT]],
    'one current-state report after random × 10 s',
  );
  const r = ours()[0]!;
  t.ok(bytesEqual(r.frame, r.ip.srcOffset, LINK_LOCAL_ADDRESS, 0, 16), 'from fe80::2 now');
  t.same(
    recordsOf(r).map((x) => x[0]),
    [2, 2, 2, 2],
    'MODE_IS_EXCLUDE records',
  );
  t.equal(v6.mld.querier.state, QuerierState.Querier, 'fe80::2 stays querier against the guest');

  // MLDv1 querier: MLDv1 reports to each group; the guest's report for ff02::2 suppresses ours.
  sent.length = 0;
  const t2 = clock.now();
  inject(v1Query(4000));
  inject(v1Report(IPV6_ALL_ROUTERS));
  runTo(t2 + 4000);
  const v1 = ours();
  t.same(
    v1.map((s) => [s.at - t2, s.type]),
    [
      [2000, Icmpv6Type.MLD_REPORT],
      [2000, Icmpv6Type.MLD_REPORT],
      [2000, Icmpv6Type.MLD_REPORT],
    ],
    'three MLDv1 reports (ff02::16 and our two solicited-node groups)',
  );
  for (const s of v1) {
    const m = new MldMessage().at(s.frame, 62, s.frame.length - 62);
    t.ok(bytesEqual(s.frame, s.ip.dstOffset, s.frame, m.addressOffset, 16), 'sent to the group it reports');
    t.notOk(bytesEqual(s.frame, m.addressOffset, IPV6_ALL_ROUTERS, 0, 16), 'not ff02::2 (suppressed)');
  }
  t.equal(v6.mld.reporter.level(clock.now()), 2, 'MLDv1 compatibility mode');

  // A querier with a lower address wins the election.
  inject(v2Query(undefined, 10_000, { src: parseIpv6('fe80::1')! }));
  t.equal(v6.mld.querier.state, QuerierState.NonQuerier);
});
