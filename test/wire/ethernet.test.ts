import t from 'tap';
import fc from 'fast-check';
import {
  EtherType,
  EthernetFrame,
  ETHERNET_HEADER_LEN,
  emitEthernetHeader,
  formatMac,
  MAC_BROADCAST,
  macCopy,
  macEqual,
  macFromIpv4Multicast,
  macFromIpv6Multicast,
  macIsBroadcast,
  macIsLocal,
  macIsMulticast,
  macIsUnicast,
  parseMac,
} from '../../src/wire/ethernet.js';
import { ARP_REQUEST_FRAME } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const GUEST = hex('525400123456');

t.test('parse the Ethernet header of a captured frame', async (t) => {
  const f = new EthernetFrame().at(ARP_REQUEST_FRAME, 0, ARP_REQUEST_FRAME.length);
  t.ok(f.check());
  t.ok(f.isBroadcast());
  t.ok(f.isMulticast());
  t.equal(formatMac(f.bytes, f.srcOffset), '52:54:00:12:34:56');
  t.equal(formatMac(f.bytes, f.dstOffset), 'ff:ff:ff:ff:ff:ff');
  t.ok(f.dstIs(MAC_BROADCAST));
  t.equal(f.etherType, EtherType.ARP);
  t.equal(f.payloadOffset, 14);
  t.equal(f.payloadLength, 46);
});

t.test('emit the same header', async (t) => {
  const buf = new Uint8Array(ETHERNET_HEADER_LEN);
  t.equal(emitEthernetHeader(buf, 0, { dst: MAC_BROADCAST, src: GUEST, etherType: EtherType.ARP }), 14);
  t.same(buf, ARP_REQUEST_FRAME.subarray(0, 14));
  t.equal(emitEthernetHeader(buf, 1, { dst: MAC_BROADCAST, src: GUEST, etherType: EtherType.ARP }), -1);
});

t.test('setters rewrite in place', async (t) => {
  const b = ARP_REQUEST_FRAME.slice();
  const f = new EthernetFrame().at(b, 0, b.length);
  f.setDst(GUEST);
  f.setSrc(MAC_BROADCAST);
  f.etherType = EtherType.IPV6;
  t.equal(formatMac(b, 0), '52:54:00:12:34:56');
  t.ok(macIsBroadcast(b, 6));
  t.equal(f.etherType, 0x86dd);
  t.notOk(f.isMulticast());
});

t.test('truncated frames fail check() without reading out of bounds', async (t) => {
  let passed = 0;
  everyPrefix(ARP_REQUEST_FRAME, (b, len) => {
    const f = new EthernetFrame().at(b, 0, len);
    if (f.check()) {
      passed++;
      void f.etherType;
      f.isBroadcast();
    } else {
      t.ok(len < 14, `prefix ${len} refused`);
    }
  });
  t.equal(passed, ARP_REQUEST_FRAME.length - 14);
  t.notOk(new EthernetFrame().at(ARP_REQUEST_FRAME, 50, 14).check(), 'range past the buffer');
});

t.test('MAC helpers', async (t) => {
  t.ok(macIsUnicast(GUEST, 0));
  t.notOk(macIsMulticast(GUEST, 0));
  t.ok(macIsLocal(GUEST, 0), 'QEMU 52:54:00 MACs are locally administered');
  t.ok(macIsLocal(hex('020000000001'), 0));
  t.notOk(macIsUnicast(new Uint8Array(6), 0), 'all zeros is not a station');
  t.notOk(macIsUnicast(MAC_BROADCAST, 0));
  const m = new Uint8Array(8);
  macFromIpv4Multicast(m, 1, 0xe00000fb); // 224.0.0.251
  t.equal(formatMac(m, 1), '01:00:5e:00:00:fb');
  macFromIpv4Multicast(m, 0, 0xefffffff); // high group bit dropped: only 23 bits map
  t.equal(formatMac(m, 0), '01:00:5e:7f:ff:ff');
  const a6 = hex('ff0200000000000000000001ff123456');
  macFromIpv6Multicast(m, 0, a6, 0);
  t.equal(formatMac(m, 0), '33:33:ff:12:34:56');
  t.ok(macIsMulticast(m, 0));
  const c = new Uint8Array(6);
  macCopy(c, 0, GUEST, 0);
  t.ok(macEqual(c, 0, GUEST, 0));
  t.same(parseMac('52:54:00:12:34:56'), GUEST);
  t.same(parseMac('52-54-00-12-34-56'), GUEST);
  t.equal(parseMac('52:54:00:12:34'), null);
  t.equal(parseMac('52:54:00:12:34:5g'), null);
});

t.test('properties', async (t) => {
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const f = new EthernetFrame().at(strict(bytes), 0, bytes.length);
      if (f.check()) {
        void f.etherType;
        f.isMulticast();
        f.isBroadcast();
      }
    }),
  );
  property(
    t,
    'emit then parse round-trips',
    fc.property(
      fc.uint8Array({ minLength: 6, maxLength: 6 }),
      fc.uint8Array({ minLength: 6, maxLength: 6 }),
      fc.integer({ min: 0, max: 0xffff }),
      (dst, src, type) => {
        const buf = new Uint8Array(14);
        emitEthernetHeader(buf, 0, { dst, src, etherType: type });
        const f = new EthernetFrame().at(buf, 0, 14);
        return (
          f.check() && f.etherType === type && macEqual(buf, f.dstOffset, dst, 0) && macEqual(buf, f.srcOffset, src, 0) && formatMac(buf, 0) === formatMac(dst)
        );
      },
    ),
  );
  property(
    t,
    'formatMac and parseMac are inverse',
    fc.property(fc.uint8Array({ minLength: 6, maxLength: 6 }), (mac) => macEqual(parseMac(formatMac(mac))!, 0, mac, 0)),
  );
});
