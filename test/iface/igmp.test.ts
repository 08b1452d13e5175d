// IGMP on the frame device with an injected clock and random source: our reports at link-up and in
// answer to queries (in the querier's version), vunet as the querier (startup and periodic general
// queries, last-member queries after a leave, the election), the guest's memberships learnt from
// IGMPv1/v2/v3 reports and expired, and the validation drops of the seed's isPacketValid.
import t from 'tap';
import {
  EtherType,
  IGMPV3_ALL_ROUTERS,
  IGMP_ALL_ROUTERS,
  IGMP_ALL_SYSTEMS,
  IgmpGroupRecordIterator,
  IgmpPacket,
  IgmpRecordType,
  IgmpType,
  IpProtocol,
  Ipv4Packet,
  emitEthernetHeader,
  emitIgmp,
  emitIgmpV3Query,
  emitIgmpV3Report,
  emitIpv4Header,
  ipv4,
  macFromIpv4Multicast,
} from '../../src/wire/index.js';
import { GROUP_MEMBERSHIP_INTERVAL, QUERY_INTERVAL, STARTUP_QUERY_INTERVAL, OTHER_QUERIER_PRESENT_INTERVAL, QuerierState } from '../../src/iface/multicast.js';
import { makeStack, runTimers } from '../support/frame-device.js';
import { GUEST_IP, GUEST_MAC, GW_IP, udpFrame } from '../support/packets.js';
import type { IgmpGroupRecordRepr } from '../../src/wire/index.js';

const G1 = ipv4(239, 1, 1, 1);
const G2 = ipv4(239, 2, 2, 2);
const G3 = ipv4(239, 3, 3, 3);

interface Sent {
  at: number;
  ip: Ipv4Packet;
  igmp: IgmpPacket;
  frame: Uint8Array;
}

/** An IGMP message from the guest: TTL 1 and router alert unless told otherwise. */
function igmpFrame(msg: Uint8Array, dst: number, p: { src?: number; ttl?: number; ra?: boolean } = {}): Uint8Array {
  const opts = p.ra === false ? undefined : Uint8Array.of(0x94, 4, 0, 0);
  const hl = opts ? 24 : 20;
  const f = new Uint8Array(14 + hl + msg.length);
  const mac = new Uint8Array(6);
  macFromIpv4Multicast(mac, 0, dst);
  emitEthernetHeader(f, 0, { dst: mac, src: GUEST_MAC, etherType: EtherType.IPV4 });
  f.set(msg, 14 + hl);
  emitIpv4Header(f, 14, {
    src: p.src ?? GUEST_IP,
    dst,
    proto: IpProtocol.IGMP,
    ttl: p.ttl ?? 1,
    id: 1,
    flags: 0,
    fragOffset: 0,
    payloadLength: msg.length,
    tos: 0xc0,
    ...(opts ? { options: opts } : {}),
  });
  return f;
}

function oldMessage(type: number, group: number, maxRespTime = 0): Uint8Array {
  const m = new Uint8Array(8);
  emitIgmp(m, 0, { type, maxRespTime, group });
  return m;
}
const v2Report = (group: number, p = {}) => igmpFrame(oldMessage(IgmpType.V2_MEMBERSHIP_REPORT, group), group, p);
const v1Report = (group: number, p = {}) => igmpFrame(oldMessage(IgmpType.V1_MEMBERSHIP_REPORT, group), group, p);
const leave = (group: number, p = {}) => igmpFrame(oldMessage(IgmpType.V2_LEAVE_GROUP, group), IGMP_ALL_ROUTERS, p);

function v3Report(records: IgmpGroupRecordRepr[], p = {}): Uint8Array {
  const m = new Uint8Array(8 + records.reduce((n, r) => n + 8 + 4 * r.sources.length, 0));
  emitIgmpV3Report(m, 0, records);
  return igmpFrame(m, IGMPV3_ALL_ROUTERS, p);
}

function v3Query(group: number, maxRespCode: number, p = {}): Uint8Array {
  const m = new Uint8Array(12);
  emitIgmpV3Query(m, 0, { maxRespCode, group, suppressRouterProcessing: false, qrv: 2, qqic: 125, sources: [] });
  return igmpFrame(m, group !== 0 ? group : IGMP_ALL_SYSTEMS, p);
}

/** A stack whose IGMP has started (random 0.5: the gateway's last probe at 3.5 s, the first
 *  announcement — and IGMP — at 5.5 s). Returns helpers to run time and read what was sent. */
function started() {
  const env = makeStack({ ipv6: undefined }, { random: () => 0.5 });
  const sent: Sent[] = [];
  const collect = (): void => {
    for (const f of env.link.take()) {
      if (f[12] !== 0x08 || f[13] !== 0x00) continue;
      const ip = new Ipv4Packet().at(f, 14, f.length - 14);
      if (!ip.check() || ip.protocol !== IpProtocol.IGMP) continue;
      sent.push({ at: env.clock.now(), ip, igmp: new IgmpPacket().at(f, ip.payloadOffset, ip.payloadLength), frame: f });
    }
  };
  const runTo = (until: number): void => runTimers(env.stack, env.clock, until, collect);
  const inject = (f: Uint8Array): void => {
    env.stack.receive(f, { checksumPartial: false });
    collect();
  };
  const t0 = env.clock.now();
  env.stack.linkUp();
  runTo(t0 + 5500);
  return { ...env, sent, runTo, inject, t0, start: t0 + 5500 };
}

function records(s: Sent): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  const it = new IgmpGroupRecordIterator().at(s.igmp.bytes, s.igmp.offset, s.igmp.length);
  while (it.next()) out.push([it.recordType, it.group]);
  return out;
}

t.test('link-up: our reports, then the startup queries and the periodic ones', async (t) => {
  const { sent, runTo, start, stack } = started();
  const reports = () => sent.filter((s) => s.igmp.type === IgmpType.V3_MEMBERSHIP_REPORT);
  const queries = () => sent.filter((s) => s.igmp.type === IgmpType.MEMBERSHIP_QUERY);
  t.equal(reports().length, 1, 'a state-change report with the first announcement');
  t.equal(queries().length, 1, 'and the first general query');
  runTo(start + 1000);
  t.same(
    reports().map((r) => r.at - start),
    [0, 500],
    'the report is sent Robustness (2) times, the second after a random part of 1 s',
  );
  for (const r of reports()) {
    t.equal(r.ip.dst, IGMPV3_ALL_ROUTERS, 'to 224.0.0.22');
    t.equal(r.ip.src, GW_IP);
    t.equal(r.ip.ttl, 1, 'TTL 1');
    t.same([...r.frame.subarray(14 + 20, 14 + 24)], [0x94, 4, 0, 0], 'router alert');
    t.ok(r.ip.verifyChecksum() && r.igmp.verifyChecksum());
    t.same(
      records(r),
      [
        [IgmpRecordType.CHANGE_TO_EXCLUDE, IGMP_ALL_ROUTERS],
        [IgmpRecordType.CHANGE_TO_EXCLUDE, IGMPV3_ALL_ROUTERS],
      ],
      'all-routers groups; all-systems never reported',
    );
    t.same([...r.frame.subarray(0, 6)], [1, 0, 0x5e, 0, 0, 0x16], 'group MAC');
  }
  const q = queries()[0]!;
  t.equal(q.ip.dst, IGMP_ALL_SYSTEMS, 'general query to 224.0.0.1');
  t.equal(q.ip.ttl, 1);
  t.same([...q.frame.subarray(34, 38)], [0x94, 4, 0, 0], 'router alert');
  t.equal(q.igmp.length, 12, 'IGMPv3 query');
  t.equal(q.igmp.group, 0);
  t.equal(q.igmp.maxResponseTime, 100, 'Query Response Interval 10 s');
  t.equal(q.igmp.qrv, 2, 'Robustness 2');
  t.equal(q.igmp.queryInterval, 125, 'Query Interval 125 s');
  t.notOk(q.igmp.suppressRouterProcessing);
  t.ok(q.igmp.verifyChecksum());
  runTo(start + STARTUP_QUERY_INTERVAL + 3 * QUERY_INTERVAL);
  t.same(
    queries().map((x) => x.at - start),
    [
      0,
      STARTUP_QUERY_INTERVAL,
      STARTUP_QUERY_INTERVAL + QUERY_INTERVAL,
      STARTUP_QUERY_INTERVAL + 2 * QUERY_INTERVAL,
      STARTUP_QUERY_INTERVAL + 3 * QUERY_INTERVAL,
    ],
    'Startup Query Count (2) a quarter interval apart, then every 125 s',
  );
  t.equal(stack.counters.get('igmp.out.17'), 5);
  t.equal(stack.counters.get('igmp.out.34'), 2);
  t.equal(stack.ipv4.igmp.querier.state, QuerierState.Querier);
});

t.test("the guest's memberships: learnt from v1, v2 and v3 reports, expired after 260 s", async (t) => {
  const { inject, runTo, stack, clock } = started();
  const v4 = stack.ipv4;
  const t1 = clock.now();
  inject(v3Report([{ type: IgmpRecordType.MODE_IS_EXCLUDE, group: G1, sources: [] }]));
  inject(v2Report(G2));
  inject(v1Report(G3));
  inject(
    v3Report([
      { type: IgmpRecordType.ALLOW_NEW_SOURCES, group: ipv4(232, 1, 1, 1), sources: [ipv4(192, 0, 2, 1)] },
      { type: IgmpRecordType.MODE_IS_INCLUDE, group: ipv4(239, 5, 5, 5), sources: [] },
      { type: IgmpRecordType.BLOCK_OLD_SOURCES, group: ipv4(239, 6, 6, 6), sources: [ipv4(192, 0, 2, 1)] },
      { type: IgmpRecordType.CHANGE_TO_INCLUDE, group: ipv4(239, 7, 7, 7), sources: [ipv4(192, 0, 2, 1)] },
      { type: 99, group: ipv4(239, 8, 8, 8), sources: [] },
    ]),
  );
  for (const g of [G1, G2, G3, ipv4(232, 1, 1, 1), ipv4(239, 7, 7, 7)]) t.ok(v4.guestJoined(g), `joined ${g.toString(16)}`);
  for (const g of [ipv4(239, 5, 5, 5), ipv4(239, 6, 6, 6), ipv4(239, 8, 8, 8), ipv4(239, 9, 9, 9)]) t.notOk(v4.guestJoined(g), `not joined ${g.toString(16)}`);
  t.ok(v4.guestJoined(IGMP_ALL_SYSTEMS), 'all-systems: always');
  t.equal(stack.counters.get('igmp.in.34'), 2);
  t.equal(stack.counters.get('igmp.in.22'), 1);
  t.equal(stack.counters.get('igmp.in.18'), 1);
  // G1 is refreshed at 200 s (an answer to a query), the others are not.
  runTo(t1 + 200_000);
  inject(v3Report([{ type: IgmpRecordType.MODE_IS_EXCLUDE, group: G1, sources: [] }]));
  runTo(t1 + GROUP_MEMBERSHIP_INTERVAL - 1);
  t.ok(v4.guestJoined(G2), 'still there just before the Group Membership Interval');
  runTo(t1 + GROUP_MEMBERSHIP_INTERVAL);
  t.notOk(v4.guestJoined(G2), 'expired at 260 s');
  t.notOk(v4.guestJoined(G3));
  t.ok(v4.guestJoined(G1), 'the refreshed group stays');
  runTo(t1 + 200_000 + GROUP_MEMBERSHIP_INTERVAL);
  t.notOk(v4.guestJoined(G1));
  t.equal(stack.counters.get('igmp.guestLeft'), 5);
  t.equal(v4.igmp.querier.guestGroups().length, 0);
});

t.test('leaves: two last-member queries a second apart, then the group is gone unless reported', async (t) => {
  const { inject, runTo, stack, clock, sent } = started();
  const v4 = stack.ipv4;
  inject(v2Report(G1));
  const t1 = clock.now();
  sent.length = 0;
  inject(leave(G1));
  runTo(t1 + 1999);
  const gq = sent.filter((s) => s.igmp.type === IgmpType.MEMBERSHIP_QUERY);
  t.same(
    gq.map((q) => q.at - t1),
    [0, 1000],
    'Last Member Query Count (2), 1 s apart',
  );
  for (const q of gq) {
    t.equal(q.ip.dst, G1, 'to the group');
    t.equal(q.igmp.group, G1);
    t.equal(q.igmp.maxResponseTime, 10, 'Last Member Query Interval (1 s)');
  }
  t.ok(v4.guestJoined(G1), 'still joined during the queries');
  runTo(t1 + 2000);
  t.notOk(v4.guestJoined(G1), 'gone after the Last Member Query Time');

  // A report after the first query keeps it, and stops the queries.
  inject(v2Report(G2));
  const t2 = clock.now();
  sent.length = 0;
  inject(v3Report([{ type: IgmpRecordType.CHANGE_TO_INCLUDE, group: G2, sources: [] }])); // TO_IN({}): a leave
  runTo(t2 + 500);
  inject(v2Report(G2));
  runTo(t2 + 10_000);
  t.equal(sent.filter((s) => s.igmp.type === IgmpType.MEMBERSHIP_QUERY).length, 1, 'one query only');
  t.ok(v4.guestJoined(G2), 'kept');

  // An IGMPv1 member of the group: leaves are ignored (RFC 3376 §7.3.2).
  inject(v1Report(G3));
  inject(leave(G3));
  runTo(clock.now() + 5000);
  t.ok(v4.guestJoined(G3));
  t.equal(stack.counters.get('igmp.leaveIgnoredV1Host'), 1);
});

t.test('validation as the seed: TTL 1, router alert, an on-link source, the checksum', async (t) => {
  const { inject, stack } = started();
  const v4 = stack.ipv4;
  const c = stack.counters;
  inject(v2Report(G1, { ttl: 2 }));
  t.equal(c.get('igmp.badTtl'), 1);
  inject(v2Report(G1, { ra: false }));
  t.equal(c.get('igmp.noRouterAlert'), 1);
  inject(v2Report(G1, { src: ipv4(192, 0, 2, 9) }));
  t.equal(c.get('igmp.badSource'), 1);
  inject(v2Report(IGMP_ALL_SYSTEMS));
  t.equal(c.get('igmp.badGroup'), 1, 'all-systems is never reported');
  const bad = v2Report(G1);
  bad[bad.length - 5]! ^= 0xff;
  inject(bad);
  t.equal(c.get('igmp.badChecksum'), 1);
  t.notOk(v4.guestJoined(G1), 'none of these joined');
  inject(v1Report(G2, { ra: false }));
  t.ok(v4.guestJoined(G2), 'an IGMPv1 report needs no router alert (RFC 1112 predates it)');
  inject(v3Report([{ type: IgmpRecordType.CHANGE_TO_EXCLUDE, group: G3, sources: [] }], { src: 0 }));
  t.ok(v4.guestJoined(G3), 'a v3 report may come from 0.0.0.0 (RFC 3376 §4.2.13)');
  const short = igmpFrame(Uint8Array.of(0x11, 0, 0xee, 0xff, 0, 0, 0, 0, 0, 0), IGMP_ALL_SYSTEMS);
  inject(short);
  t.equal(c.get('igmp.malformed'), 1, 'a 10-byte query is invalid (RFC 3376 §7.1)');
  // Multicast other than IGMP to a group we are not in is not ours.
  stack.receive(udpFrame(5000, 5000, Uint8Array.of(1), { dst: G1 }), { checksumPartial: false });
  t.equal(c.get('ipv4.groupNotJoined'), 1);
});

t.test('queries from the guest: answered for our groups after a random delay, in its version', async (t) => {
  const { inject, runTo, sent, clock, stack } = started();
  runTo(clock.now() + 2000);
  // IGMPv3 general query, max resp 10 s: one current-state report at random × 10 s = 5 s.
  sent.length = 0;
  const t1 = clock.now();
  inject(v3Query(0, 100));
  runTo(t1 + 10_000);
  let reports = sent.filter((s) => s.ip.src === GW_IP && s.igmp.type === IgmpType.V3_MEMBERSHIP_REPORT);
  t.same(
    reports.map((r) => r.at - t1),
    [5000],
  );
  t.same(records(reports[0]!), [
    [IgmpRecordType.MODE_IS_EXCLUDE, IGMP_ALL_ROUTERS],
    [IgmpRecordType.MODE_IS_EXCLUDE, IGMPV3_ALL_ROUTERS],
  ]);
  t.equal(stack.ipv4.igmp.querier.state, QuerierState.Querier, 'the guest (10.0.2.15) does not win the election');
  // A group-specific query for one of ours: a report for that group; for another group: nothing.
  sent.length = 0;
  const t2 = clock.now();
  inject(v3Query(IGMP_ALL_ROUTERS, 40));
  inject(v3Query(G1, 40));
  runTo(t2 + 4000);
  reports = sent.filter((s) => s.igmp.type === IgmpType.V3_MEMBERSHIP_REPORT);
  t.same(
    reports.map((r) => [r.at - t2, records(r)]),
    [[2000, [[IgmpRecordType.MODE_IS_EXCLUDE, IGMP_ALL_ROUTERS]]]],
  );

  // IGMPv2 querier: v2 reports to each group; another member's report suppresses ours.
  sent.length = 0;
  const t3 = clock.now();
  inject(igmpFrame(oldMessage(IgmpType.MEMBERSHIP_QUERY, 0, 50), IGMP_ALL_SYSTEMS));
  inject(v2Report(IGMP_ALL_ROUTERS));
  runTo(t3 + 5000);
  const v2 = sent.filter((s) => s.ip.src === GW_IP && s.igmp.type !== IgmpType.MEMBERSHIP_QUERY);
  t.same(
    v2.map((r) => [r.at - t3, r.igmp.type, r.ip.dst, r.igmp.group]),
    [[2500, IgmpType.V2_MEMBERSHIP_REPORT, IGMPV3_ALL_ROUTERS, IGMPV3_ALL_ROUTERS]],
    'v2 report to the group; 224.0.0.2 suppressed',
  );
  t.equal(stack.ipv4.igmp.reporter.level(clock.now()), 2, 'host compatibility mode: v2');

  // IGMPv1 querier: v1 reports within 10 s.
  sent.length = 0;
  const t4 = clock.now();
  inject(igmpFrame(oldMessage(IgmpType.MEMBERSHIP_QUERY, 0, 0), IGMP_ALL_SYSTEMS, { ra: false }));
  runTo(t4 + 10_000);
  const v1 = sent.filter((s) => s.ip.src === GW_IP && s.igmp.type !== IgmpType.MEMBERSHIP_QUERY);
  t.same(
    v1.map((r) => [r.at - t4, r.igmp.type]),
    [
      [5000, IgmpType.V1_MEMBERSHIP_REPORT],
      [5000, IgmpType.V1_MEMBERSHIP_REPORT],
    ],
  );
  // The older querier falls silent: back to v3 after the Older Version Querier Present Timeout.
  runTo(t4 + 260_001);
  t.equal(stack.ipv4.igmp.reporter.level(clock.now()), 3);
});

t.test('querier election: a lower address takes over; we resume when it falls silent', async (t) => {
  const { inject, runTo, sent, clock, stack } = started();
  const q = stack.ipv4.igmp.querier;
  inject(v3Query(0, 100, { src: ipv4(10, 0, 2, 1) }));
  t.equal(q.state, QuerierState.NonQuerier);
  const t1 = clock.now();
  sent.length = 0;
  inject(v2Report(G1));
  inject(leave(G1));
  runTo(t1 + OTHER_QUERIER_PRESENT_INTERVAL - 1);
  t.equal(sent.filter((s) => s.igmp.type === IgmpType.MEMBERSHIP_QUERY && s.ip.src === GW_IP).length, 0, 'silent as a non-querier, even after a leave');
  runTo(t1 + OTHER_QUERIER_PRESENT_INTERVAL);
  t.equal(q.state, QuerierState.Querier, 'querier again after the Other Querier Present Interval');
  const general = sent.filter((s) => s.igmp.type === IgmpType.MEMBERSHIP_QUERY);
  t.same(
    general.map((s) => s.at - t1),
    [OTHER_QUERIER_PRESENT_INTERVAL],
    'a general query at once',
  );
  t.equal(stack.counters.get('igmp.querier'), 3, 'idle → querier → non-querier → querier');
});

t.test('the membership table is bounded', async (t) => {
  const { inject, stack } = started();
  for (let i = 0; i < 300; i++) inject(v2Report(ipv4(239, 0, i >> 8, i & 0xff)));
  t.equal(stack.ipv4.igmp.querier.guestGroups().length, 256);
  t.equal(stack.counters.get('igmp.tableFull'), 44);
  t.ok(stack.ipv4.guestJoined(ipv4(239, 0, 0, 255)));
  t.notOk(stack.ipv4.guestJoined(ipv4(239, 0, 1, 0x2b)));
});
