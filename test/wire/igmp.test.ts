import t from 'tap';
import fc from 'fast-check';
import {
  emitIgmp,
  emitIgmpV3Query,
  emitIgmpV3Report,
  IGMP_ALL_SYSTEMS,
  IgmpGroupRecordIterator,
  IgmpPacket,
  IgmpRecordType,
  IgmpType,
  IGMPV3_ALL_ROUTERS,
  igmpv3DecodeCode,
  igmpv3EncodeCode,
} from '../../src/wire/igmp.js';
import { IpProtocol } from '../../src/wire/ip.js';
import { formatIpv4, ipv4, Ipv4OptionsInfo, Ipv4Packet, parseIpv4Options } from '../../src/wire/ipv4.js';
import { IGMPV1_QUERY, IGMPV2_QUERY, IGMPV2_REPORT, IGMPV3_GSS_QUERY, IGMPV3_QUERY, IGMPV3_REPORT_FRAME } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

t.test('parse Linux IGMPv3 report with its IP header', async (t) => {
  const ip = new Ipv4Packet().at(IGMPV3_REPORT_FRAME, 14, IGMPV3_REPORT_FRAME.length - 14);
  t.ok(ip.check());
  t.ok(ip.verifyChecksum());
  t.equal(ip.protocol, IpProtocol.IGMP);
  t.equal(ip.ttl, 1);
  t.equal(ip.dst, IGMPV3_ALL_ROUTERS);
  const info = new Ipv4OptionsInfo();
  t.equal(parseIpv4Options(IGMPV3_REPORT_FRAME, 14, ip.headerLength, info), -1);
  t.equal(info.routerAlert, 34);
  const m = new IgmpPacket().at(IGMPV3_REPORT_FRAME, ip.payloadOffset, ip.payloadLength);
  t.ok(m.check());
  t.ok(m.verifyChecksum());
  t.equal(m.type, IgmpType.V3_MEMBERSHIP_REPORT);
  t.equal(m.recordCount, 1);
  const it = new IgmpGroupRecordIterator().at(IGMPV3_REPORT_FRAME, ip.payloadOffset, ip.payloadLength);
  t.ok(it.next());
  t.equal(it.recordType, IgmpRecordType.CHANGE_TO_EXCLUDE);
  t.equal(it.auxDataLength, 0);
  t.equal(it.sourceCount, 0);
  t.equal(formatIpv4(it.group), '224.0.0.251');
  t.notOk(it.next());
  t.notOk(it.error);
});

t.test('emit the same report', async (t) => {
  const buf = new Uint8Array(16);
  t.equal(emitIgmpV3Report(buf, 0, [{ type: IgmpRecordType.CHANGE_TO_EXCLUDE, group: ipv4(224, 0, 0, 251), sources: [] }]), 16);
  t.same(buf, IGMPV3_REPORT_FRAME.subarray(38));
  t.equal(emitIgmpV3Report(new Uint8Array(15), 0, [{ type: 4, group: 0, sources: [] }]), -1);
});

t.test('queries: versions by length, codes, sources', async (t) => {
  const q = new IgmpPacket();
  t.ok(q.at(IGMPV3_QUERY, 0, 12).check());
  t.ok(q.verifyChecksum());
  t.equal(q.queryVersion, 3);
  t.equal(q.maxResponseTime, 100);
  t.equal(q.group, 0);
  t.notOk(q.suppressRouterProcessing);
  t.equal(q.qrv, 2);
  t.equal(q.queryInterval, 125);
  t.equal(q.sourceCount, 0);

  t.ok(q.at(IGMPV3_GSS_QUERY, 0, IGMPV3_GSS_QUERY.length).check());
  t.ok(q.verifyChecksum());
  t.equal(q.maxRespCode, 0x8a);
  t.equal(q.maxResponseTime, (0x0a | 0x10) << 3, 'exponential form: (mant | 0x10) << (exp + 3)');
  t.equal(formatIpv4(q.group), '232.1.1.1');
  t.ok(q.suppressRouterProcessing);
  t.equal(q.qrv, 2);
  t.equal(q.qqic, 0x90);
  t.equal(q.queryInterval, 256, '0x90: exponent 1, mantissa 0');
  t.equal(q.sourceCount, 2);
  t.equal(formatIpv4(q.source(0)), '10.0.0.1');
  t.equal(formatIpv4(q.source(1)), '10.0.0.2');

  t.ok(q.at(IGMPV2_QUERY, 0, 8).check());
  t.equal(q.queryVersion, 2);
  t.equal(q.maxResponseTime, 100);
  t.ok(q.at(IGMPV1_QUERY, 0, 8).check());
  t.equal(q.queryVersion, 1);
  t.equal(q.maxResponseTime, 100, 'v1 queries imply 10 s');
  t.ok(q.verifyChecksum());

  const eleven = new Uint8Array(11);
  eleven.set(IGMPV3_QUERY.subarray(0, 11));
  t.notOk(q.at(eleven, 0, 11).check(), 'queries of 9 to 11 bytes are ignored (RFC 3376 7.1)');
  t.notOk(q.at(IGMPV3_GSS_QUERY, 0, 19).check(), 'sources past the end');
});

t.test('v2 messages', async (t) => {
  const m = new IgmpPacket().at(IGMPV2_REPORT, 0, 8);
  t.ok(m.check() && m.verifyChecksum());
  t.equal(m.type, IgmpType.V2_MEMBERSHIP_REPORT);
  t.equal(formatIpv4(m.group), '239.255.255.250');
  const buf = new Uint8Array(8);
  t.equal(emitIgmp(buf, 0, { type: IgmpType.V2_MEMBERSHIP_REPORT, maxRespTime: 0, group: ipv4(239, 255, 255, 250) }), 8);
  t.same(buf, IGMPV2_REPORT);
  emitIgmp(buf, 0, { type: IgmpType.MEMBERSHIP_QUERY, maxRespTime: 100, group: 0 });
  t.same(buf, IGMPV2_QUERY);
  emitIgmp(buf, 0, { type: IgmpType.MEMBERSHIP_QUERY, maxRespTime: 0, group: 0 });
  t.same(buf, IGMPV1_QUERY);
  t.equal(emitIgmp(buf, 1, { type: 0x17, maxRespTime: 0, group: IGMP_ALL_SYSTEMS }), -1);
  m.at(buf, 0, 8);
  m.type = IgmpType.V2_LEAVE_GROUP;
  m.group = ipv4(239, 1, 2, 3);
  m.maxRespCode = 0;
  m.fillChecksum();
  t.ok(m.verifyChecksum());
});

t.test('emit v3 queries byte for byte', async (t) => {
  const buf = new Uint8Array(20);
  t.equal(emitIgmpV3Query(buf, 0, { maxRespCode: 100, group: 0, suppressRouterProcessing: false, qrv: 2, qqic: 125, sources: [] }), 12);
  t.same(buf.subarray(0, 12), IGMPV3_QUERY);
  t.equal(
    emitIgmpV3Query(buf, 0, {
      maxRespCode: 0x8a,
      group: ipv4(232, 1, 1, 1),
      suppressRouterProcessing: true,
      qrv: 2,
      qqic: 0x90,
      sources: [ipv4(10, 0, 0, 1), ipv4(10, 0, 0, 2)],
    }),
    20,
  );
  t.same(buf, IGMPV3_GSS_QUERY);
});

t.test('group records with sources and auxiliary data', async (t) => {
  const buf = new Uint8Array(64);
  const n = emitIgmpV3Report(buf, 0, [
    { type: IgmpRecordType.ALLOW_NEW_SOURCES, group: ipv4(232, 1, 1, 1), sources: [ipv4(10, 0, 0, 1), ipv4(10, 0, 0, 2)] },
    { type: IgmpRecordType.MODE_IS_EXCLUDE, group: ipv4(239, 0, 0, 1), sources: [] },
  ]);
  t.equal(n, 8 + 16 + 8);
  const it = new IgmpGroupRecordIterator().at(buf, 0, n);
  t.ok(it.next());
  t.equal(it.recordType, IgmpRecordType.ALLOW_NEW_SOURCES);
  t.equal(it.sourceCount, 2);
  t.equal(formatIpv4(it.source(1)), '10.0.0.2');
  t.ok(it.next());
  t.equal(formatIpv4(it.group), '239.0.0.1');
  t.notOk(it.next());
  t.ok(new IgmpPacket().at(buf, 0, n).check());
  // Aux data length counts 32-bit words and makes the record longer.
  buf[9] = 1;
  t.notOk(new IgmpPacket().at(buf, 0, n).check(), 'aux data runs past the end');
  const one = new Uint8Array(20);
  emitIgmpV3Report(one, 0, [{ type: IgmpRecordType.MODE_IS_INCLUDE, group: ipv4(239, 0, 0, 1), sources: [] }]);
  one[9] = 1;
  const aux = new IgmpGroupRecordIterator().at(one, 0, 20);
  t.ok(aux.next(), 'a record with one word of aux data');
  t.equal(aux.length, 12);
  t.equal(aux.auxDataLength, 4);
  // More records announced than present.
  buf[9] = 0;
  buf[7] = 3;
  t.notOk(new IgmpPacket().at(buf, 0, n).check());
});

t.test('max resp code encoding', async (t) => {
  t.equal(igmpv3DecodeCode(127), 127);
  t.equal(igmpv3DecodeCode(0x80), 128);
  t.equal(igmpv3DecodeCode(0xff), 31744);
  t.equal(igmpv3EncodeCode(100), 100);
  t.equal(igmpv3EncodeCode(128), 0x80);
  t.equal(igmpv3EncodeCode(1e9), 0xff);
  property(
    t,
    'encode is the largest code not above the value',
    fc.property(fc.integer({ min: 0, max: 31744 }), (v) => {
      const c = igmpv3EncodeCode(v);
      return c >= 0 && c <= 255 && igmpv3DecodeCode(c) <= v && (c === 255 || igmpv3DecodeCode(c + 1) > v);
    }),
  );
  property(
    t,
    'decode then encode is the identity',
    fc.property(fc.integer({ min: 0, max: 255 }), (c) => igmpv3EncodeCode(igmpv3DecodeCode(c)) === c),
  );
});

t.test('every truncation fails check() or stays in bounds', async (t) => {
  for (const pkt of [IGMPV3_REPORT_FRAME.subarray(38), IGMPV3_QUERY, IGMPV3_GSS_QUERY, IGMPV2_REPORT]) {
    everyPrefix(pkt, (b, len) => {
      const m = new IgmpPacket().at(b, 0, len);
      // The first 8 bytes of a v3 query are a valid v2 query (RFC 3376 section 7.1).
      const shorterQuery = len === 8 && pkt[0] === IgmpType.MEMBERSHIP_QUERY;
      t.equal(m.check(), shorterQuery, `prefix ${len} of ${pkt.length}`);
    });
  }
});

t.test('properties', async (t) => {
  const it = new IgmpGroupRecordIterator();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.constantFrom(0x11, 0x12, 0x16, 0x17, 0x22), (bytes, type) => {
      if (bytes.length > 0) bytes[0] = type;
      const s = strict(bytes);
      const m = new IgmpPacket().at(s, 0, bytes.length);
      if (!m.check()) return;
      m.verifyChecksum();
      // v3 fields read as 0 on 8-byte messages instead of past the end.
      void [m.type, m.maxRespCode, m.group, m.qrv, m.qqic, m.queryInterval, m.suppressRouterProcessing, m.sourceCount];
      if (m.type === IgmpType.MEMBERSHIP_QUERY) {
        void m.maxResponseTime;
        if (m.queryVersion === 3) for (let i = 0; i < m.sourceCount; i++) m.source(i);
      }
      if (m.type === IgmpType.V3_MEMBERSHIP_REPORT) {
        it.at(s, 0, bytes.length);
        while (it.next()) for (let i = 0; i < it.sourceCount; i++) it.source(i);
      }
    }),
  );
  property(
    t,
    'report emit then parse round-trips',
    fc.property(
      fc.array(
        fc.record({
          type: fc.integer({ min: 1, max: 6 }),
          group: fc.integer({ min: 0, max: 0xffffffff }),
          sources: fc.array(fc.integer({ min: 0, max: 0xffffffff }), { maxLength: 4 }),
        }),
        { maxLength: 5 },
      ),
      (records) => {
        const b = new Uint8Array(8 + 5 * 24);
        const n = emitIgmpV3Report(b, 0, records);
        const m = new IgmpPacket().at(b, 0, n);
        if (!m.check() || !m.verifyChecksum() || m.recordCount !== records.length) return false;
        it.at(b, 0, n);
        for (const r of records) {
          if (!it.next() || it.recordType !== r.type || it.group !== r.group || it.sourceCount !== r.sources.length) return false;
          for (let i = 0; i < r.sources.length; i++) if (it.source(i) !== r.sources[i]) return false;
        }
        return !it.next() && !it.error;
      },
    ),
  );
});
