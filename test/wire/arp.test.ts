import t from 'tap';
import fc from 'fast-check';
import { ARP_LEN, ArpOp, ArpPacket, emitArp } from '../../src/wire/arp.js';
import { formatMac, macEqual } from '../../src/wire/ethernet.js';
import { formatIpv4 } from '../../src/wire/ipv4.js';
import { ARP_REPLY, ARP_REQUEST_FRAME } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const GUEST = hex('525400123456');
const GATEWAY = hex('52550a000202');

t.test('parse a request from a Linux guest', async (t) => {
  const a = new ArpPacket().at(ARP_REQUEST_FRAME, 14, ARP_REQUEST_FRAME.length - 14);
  t.ok(a.check());
  t.equal(a.hardwareType, 1);
  t.equal(a.protocolType, 0x0800);
  t.equal(a.hardwareLength, 6);
  t.equal(a.protocolLength, 4);
  t.equal(a.operation, ArpOp.REQUEST);
  t.equal(formatMac(a.bytes, a.senderMacOffset), '52:54:00:12:34:56');
  t.equal(formatIpv4(a.senderIp), '10.0.2.15');
  t.equal(formatMac(a.bytes, a.targetMacOffset), '00:00:00:00:00:00');
  t.equal(formatIpv4(a.targetIp), '10.0.2.2');
  t.notOk(a.isProbe());
  t.notOk(a.isGratuitous());
});

t.test('emit the request and the reply byte for byte', async (t) => {
  const buf = new Uint8Array(ARP_LEN);
  t.equal(emitArp(buf, 0, { operation: ArpOp.REQUEST, senderMac: GUEST, senderIp: 0x0a00020f, targetMac: new Uint8Array(6), targetIp: 0x0a000202 }), 28);
  t.same(buf, ARP_REQUEST_FRAME.subarray(14, 42));
  t.equal(emitArp(buf, 0, { operation: ArpOp.REPLY, senderMac: GATEWAY, senderIp: 0x0a000202, targetMac: GUEST, targetIp: 0x0a00020f }), 28);
  t.same(buf, ARP_REPLY);
  t.equal(emitArp(buf, 1, { operation: 1, senderMac: GUEST, senderIp: 0, targetMac: GUEST, targetIp: 0 }), -1);
});

t.test('turn a request into a reply in place', async (t) => {
  const b = ARP_REQUEST_FRAME.slice(14, 42);
  const a = new ArpPacket().at(b, 0, b.length);
  const asker = a.senderIp;
  a.operation = ArpOp.REPLY;
  a.setTargetMac(b, a.senderMacOffset);
  a.targetIp = asker;
  a.setSenderMac(GATEWAY);
  a.senderIp = 0x0a000202;
  t.same(b, ARP_REPLY);
});

t.test('probes and announcements (RFC 5227)', async (t) => {
  const b = new Uint8Array(28);
  const a = new ArpPacket().at(b, 0, 28);
  emitArp(b, 0, { operation: ArpOp.REQUEST, senderMac: GUEST, senderIp: 0, targetMac: new Uint8Array(6), targetIp: 0x0a00020f });
  t.ok(a.isProbe());
  a.senderIp = 0x0a00020f;
  t.ok(a.isGratuitous());
});

t.test('other hardware or protocol types are refused', async (t) => {
  const b = ARP_REPLY.slice();
  const a = new ArpPacket().at(b, 0, b.length);
  a.hardwareType = 6; // IEEE 802
  t.notOk(a.check());
  a.hardwareType = 1;
  a.protocolType = 0x86dd;
  t.notOk(a.check());
  a.protocolType = 0x0800;
  a.hardwareLength = 8;
  t.notOk(a.check());
  a.hardwareLength = 6;
  a.protocolLength = 16;
  t.notOk(a.check());
  a.protocolLength = 4;
  t.ok(a.check());
});

t.test('every truncation fails check()', async (t) => {
  everyPrefix(ARP_REPLY, (b, len) => {
    t.notOk(new ArpPacket().at(b, 0, len).check(), `prefix ${len}`);
  });
});

t.test('properties', async (t) => {
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 40 }), (bytes) => {
      const a = new ArpPacket().at(strict(bytes), 0, bytes.length);
      if (a.check()) {
        void (a.operation + a.senderIp + a.targetIp);
        a.isProbe();
      }
    }),
  );
  property(
    t,
    'emit then parse round-trips',
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ minLength: 6, maxLength: 6 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ minLength: 6, maxLength: 6 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      (operation, senderMac, senderIp, targetMac, targetIp) => {
        const b = new Uint8Array(28);
        emitArp(b, 0, { operation, senderMac, senderIp, targetMac, targetIp });
        const a = new ArpPacket().at(b, 0, 28);
        return (
          a.check() &&
          a.operation === operation &&
          a.senderIp === senderIp &&
          a.targetIp === targetIp &&
          macEqual(b, a.senderMacOffset, senderMac, 0) &&
          macEqual(b, a.targetMacOffset, targetMac, 0)
        );
      },
    ),
  );
});
