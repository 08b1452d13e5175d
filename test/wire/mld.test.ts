import t from 'tap';
import fc from 'fast-check';
import { Icmpv6Packet, Icmpv6Type } from '../../src/wire/icmpv6.js';
import { IpProtocol } from '../../src/wire/ip.js';
import {
  formatIpv6,
  IPV6_ALL_MLDV2_ROUTERS,
  IPV6_ALL_NODES,
  Ipv6ChainResult,
  ipv6Equal,
  Ipv6HeaderChain,
  ipv6IsLinkLocal,
  Ipv6Packet,
  parseIpv6,
  walkIpv6Headers,
} from '../../src/wire/ipv6.js';
import {
  emitMldv1,
  emitMldv2Query,
  emitMldv2Report,
  MldMessage,
  MldRecordIterator,
  MldRecordType,
  MLDV1_LEN,
  Mldv2Report,
  mldv2DecodeMaxResponse,
  mldv2EncodeMaxResponse,
} from '../../src/wire/mld.js';
import { MLDV1_REPORT, MLDV2_QUERY, MLDV2_REPORT_FRAME } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const ROUTER_LL = parseIpv6('fe80::2')!;

t.test('parse an MLDv2 report as the stack sees it', async (t) => {
  const ip = new Ipv6Packet().at(MLDV2_REPORT_FRAME, 14, MLDV2_REPORT_FRAME.length - 14);
  t.ok(ip.check());
  t.equal(ip.hopLimit, 1);
  t.ok(ipv6IsLinkLocal(ip.bytes, ip.srcOffset));
  t.ok(ipv6Equal(ip.bytes, ip.dstOffset, IPV6_ALL_MLDV2_ROUTERS, 0));
  const chain = new Ipv6HeaderChain();
  t.equal(walkIpv6Headers(MLDV2_REPORT_FRAME, 14, chain), Ipv6ChainResult.OK);
  t.equal(chain.routerAlert, 0);
  t.equal(chain.upperProtocol, IpProtocol.ICMPV6);
  const len = ip.end - chain.upperOffset;
  const icmp = new Icmpv6Packet().at(MLDV2_REPORT_FRAME, chain.upperOffset, len);
  t.ok(icmp.check() && icmp.verifyChecksum(MLDV2_REPORT_FRAME, ip.srcOffset, MLDV2_REPORT_FRAME, ip.dstOffset));
  t.equal(icmp.type, Icmpv6Type.MLDV2_REPORT);
  const r = new Mldv2Report().at(MLDV2_REPORT_FRAME, chain.upperOffset, len);
  t.ok(r.check());
  t.equal(r.recordCount, 1);
  const it = new MldRecordIterator().at(MLDV2_REPORT_FRAME, chain.upperOffset, len);
  t.ok(it.next());
  t.equal(it.recordType, MldRecordType.CHANGE_TO_EXCLUDE);
  t.equal(it.auxDataLength, 0);
  t.equal(it.sourceCount, 0);
  t.equal(formatIpv6(MLDV2_REPORT_FRAME, it.addressOffset), 'ff02::1:ff12:3456');
  t.notOk(it.next());
  t.notOk(it.error);
});

t.test('emit the same report', async (t) => {
  const buf = new Uint8Array(28);
  const n = emitMldv2Report(
    buf,
    0,
    [{ type: MldRecordType.CHANGE_TO_EXCLUDE, address: parseIpv6('ff02::1:ff12:3456')!, sources: [] }],
    GUEST_LL,
    IPV6_ALL_MLDV2_ROUTERS,
  );
  t.equal(n, 28);
  t.same(buf, MLDV2_REPORT_FRAME.subarray(62));
  t.equal(emitMldv2Report(new Uint8Array(27), 0, [{ type: 4, address: GUEST_LL, sources: [] }], GUEST_LL, IPV6_ALL_MLDV2_ROUTERS), -1);
});

t.test('parse and emit an MLDv2 general query', async (t) => {
  const q = new MldMessage().at(MLDV2_QUERY, 0, MLDV2_QUERY.length);
  t.ok(q.check());
  t.ok(new Icmpv6Packet().at(MLDV2_QUERY, 0, 28).verifyChecksum(ROUTER_LL, 0, IPV6_ALL_NODES, 0));
  t.equal(q.type, Icmpv6Type.MLD_QUERY);
  t.equal(q.code, 0);
  t.equal(q.queryVersion, 2);
  t.equal(q.maxRespCode, 10000);
  t.equal(q.maxResponseDelay, 10000);
  t.equal(formatIpv6(MLDV2_QUERY, q.addressOffset), '::');
  t.notOk(q.suppressRouterProcessing);
  t.equal(q.qrv, 2);
  t.equal(q.qqic, 125);
  t.equal(q.queryInterval, 125);
  t.equal(q.sourceCount, 0);
  const buf = new Uint8Array(60);
  t.equal(
    emitMldv2Query(
      buf,
      0,
      { maxRespCode: 10000, address: new Uint8Array(16), suppressRouterProcessing: false, qrv: 2, qqic: 125, sources: [] },
      ROUTER_LL,
      IPV6_ALL_NODES,
    ),
    28,
  );
  t.same(buf.subarray(0, 28), MLDV2_QUERY);
  const src = parseIpv6('2001:db8::1')!;
  const n = emitMldv2Query(
    buf,
    0,
    { maxRespCode: 0x8000, address: parseIpv6('ff3e::1234')!, suppressRouterProcessing: true, qrv: 7, qqic: 0x80, sources: [src] },
    ROUTER_LL,
    IPV6_ALL_NODES,
  );
  t.equal(n, 44);
  t.ok(q.at(buf, 0, n).check());
  t.ok(q.suppressRouterProcessing);
  t.equal(q.qrv, 7);
  t.equal(q.queryInterval, 128);
  t.equal(q.maxResponseDelay, 32768);
  t.equal(formatIpv6(buf, q.sourceOffset(0)), '2001:db8::1');
  t.notOk(q.at(buf, 0, n - 1).check(), 'a source past the end');
});

t.test('MLDv1', async (t) => {
  const m = new MldMessage().at(MLDV1_REPORT, 0, MLDV1_LEN);
  t.ok(m.check());
  t.equal(m.type, Icmpv6Type.MLD_REPORT);
  t.equal(m.maxRespCode, 0);
  t.equal(formatIpv6(MLDV1_REPORT, m.addressOffset), 'ff02::fb');
  const group = parseIpv6('ff02::fb')!;
  const buf = new Uint8Array(24);
  t.equal(emitMldv1(buf, 0, { type: Icmpv6Type.MLD_REPORT, maxResponseDelay: 0, address: group }, GUEST_LL, group), 24);
  t.same(buf, MLDV1_REPORT);
  emitMldv1(buf, 0, { type: Icmpv6Type.MLD_QUERY, maxResponseDelay: 10000, address: new Uint8Array(16) }, ROUTER_LL, IPV6_ALL_NODES);
  t.ok(m.at(buf, 0, 24).check());
  t.equal(m.queryVersion, 1);
  t.equal(m.maxResponseDelay, 10000);
  const long = new Uint8Array(26);
  long.set(buf);
  t.notOk(m.at(long, 0, 26).check(), 'a query of 25 to 27 bytes is invalid (RFC 3810 section 8.1)');
  t.equal(emitMldv1(buf, 1, { type: 132, maxResponseDelay: 0, address: group }, GUEST_LL, group), -1);
});

t.test('max response code encoding (RFC 3810 section 5.1.3)', async (t) => {
  t.equal(mldv2DecodeMaxResponse(32767), 32767);
  t.equal(mldv2DecodeMaxResponse(0x8000), 32768);
  t.equal(mldv2DecodeMaxResponse(0xffff), 0x1fff << 10);
  t.equal(mldv2EncodeMaxResponse(1e12), 0xffff);
  property(
    t,
    'encode is the largest code not above the value',
    fc.property(fc.integer({ min: 0, max: 0x1fff << 10 }), (v) => {
      const c = mldv2EncodeMaxResponse(v);
      return mldv2DecodeMaxResponse(c) <= v && (c === 0xffff || mldv2DecodeMaxResponse(c + 1) > v);
    }),
  );
});

t.test('every truncation fails check()', async (t) => {
  const report = MLDV2_REPORT_FRAME.subarray(62);
  everyPrefix(report, (b, len) => t.notOk(new Mldv2Report().at(b, 0, len).check(), `report prefix ${len}`));
  everyPrefix(MLDV2_QUERY, (b, len) => t.equal(new MldMessage().at(b, 0, len).check(), len === 24, `query prefix ${len}`));
  everyPrefix(MLDV1_REPORT, (b, len) => t.notOk(new MldMessage().at(b, 0, len).check()));
});

t.test('properties', async (t) => {
  const it = new MldRecordIterator();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(130, 131, 132, 143), (bytes, type) => {
      if (bytes.length > 0) bytes[0] = type;
      const s = strict(bytes);
      const m = new MldMessage().at(s, 0, bytes.length);
      if (type !== 143 && m.check()) {
        void [m.maxResponseDelay, s[m.addressOffset + 15], m.qrv, m.qqic, m.queryInterval, m.suppressRouterProcessing, m.sourceCount];
        if (m.queryVersion === 2) for (let i = 0; i < m.sourceCount; i++) void s[m.sourceOffset(i) + 15];
      }
      const r = new Mldv2Report().at(s, 0, bytes.length);
      if (r.check()) {
        it.at(s, 0, bytes.length);
        while (it.next()) for (let i = 0; i < it.sourceCount; i++) void s[it.sourceOffset(i) + 15];
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
          address: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          sources: fc.array(fc.uint8Array({ minLength: 16, maxLength: 16 }), { maxLength: 3 }),
        }),
        { maxLength: 4 },
      ),
      (records) => {
        const b = new Uint8Array(8 + 4 * 68);
        const n = emitMldv2Report(b, 0, records, GUEST_LL, IPV6_ALL_MLDV2_ROUTERS);
        if (!new Mldv2Report().at(b, 0, n).check()) return false;
        if (!new Icmpv6Packet().at(b, 0, n).verifyChecksum(GUEST_LL, 0, IPV6_ALL_MLDV2_ROUTERS, 0)) return false;
        it.at(b, 0, n);
        for (const r of records) {
          if (!it.next() || it.recordType !== r.type || !ipv6Equal(b, it.addressOffset, r.address, 0) || it.sourceCount !== r.sources.length) return false;
          for (let i = 0; i < r.sources.length; i++) if (!ipv6Equal(b, it.sourceOffset(i), r.sources[i]!, 0)) return false;
        }
        return !it.next();
      },
    ),
  );
});
