import t from 'tap';
import fc from 'fast-check';
import {
  emitIcmpv6,
  emitIcmpv6Error,
  icmpv6EchoRest,
  icmpv6IsError,
  Icmpv6Packet,
  Icmpv6ParamProblemCode,
  Icmpv6Type,
  Icmpv6UnreachableCode,
} from '../../src/wire/icmpv6.js';
import { IPV6_MIN_MTU, Ipv6Packet, parseIpv6 } from '../../src/wire/ipv6.js';
import { ECHO6_PACKET } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

const GUEST = parseIpv6('fd00::5054:ff:fe12:3456')!;
const GATEWAY = parseIpv6('fd00::2')!;

t.test('parse an echo request and verify it against the IPv6 header in place', async (t) => {
  const ip = new Ipv6Packet().at(ECHO6_PACKET, 0, ECHO6_PACKET.length);
  t.ok(ip.check());
  const m = new Icmpv6Packet().at(ECHO6_PACKET, ip.payloadOffset, ip.payloadLength);
  t.ok(m.check());
  t.equal(m.type, Icmpv6Type.ECHO_REQUEST);
  t.equal(m.code, 0);
  t.equal(m.checksum, 0xad7c);
  t.ok(m.verifyChecksum(ip.bytes, ip.srcOffset, ip.bytes, ip.dstOffset));
  t.notOk(m.verifyChecksum(ip.bytes, ip.dstOffset, ip.bytes, ip.dstOffset), 'wrong pseudo-header');
  t.equal(m.ident, 0x1c2d);
  t.equal(m.seq, 3);
  t.equal(m.payloadOffset, 48);
  t.equal(m.payloadLength, 16);
  t.notOk(m.isError());
});

t.test('emit the same echo request', async (t) => {
  const buf = new Uint8Array(24);
  buf.set(ECHO6_PACKET.subarray(48), 8);
  t.equal(emitIcmpv6(buf, 0, { type: Icmpv6Type.ECHO_REQUEST, code: 0, rest: icmpv6EchoRest(0x1c2d, 3), payloadLength: 16 }, GUEST, GATEWAY), 8);
  t.same(buf, ECHO6_PACKET.subarray(40));
  t.equal(emitIcmpv6(buf, 1, { type: 128, code: 0, rest: 0, payloadLength: 16 }, GUEST, GATEWAY), -1);
});

t.test('answer in place: echo reply', async (t) => {
  const b = ECHO6_PACKET.slice();
  const ip = new Ipv6Packet().at(b, 0, b.length);
  const m = new Icmpv6Packet().at(b, 40, 24);
  const tmp = new Uint8Array(16);
  tmp.set(b.subarray(8, 24));
  ip.setSrc(b, ip.dstOffset);
  ip.setDst(tmp);
  m.type = Icmpv6Type.ECHO_REPLY;
  m.fillChecksum(b, ip.srcOffset, b, ip.dstOffset);
  t.ok(m.verifyChecksum(b, ip.srcOffset, b, ip.dstOffset));
  t.ok(m.verifyChecksum(GATEWAY, 0, GUEST, 0));
});

t.test('errors: port unreachable quoting the invoking packet', async (t) => {
  const buf = new Uint8Array(8 + ECHO6_PACKET.length);
  const n = emitIcmpv6Error(
    buf,
    0,
    Icmpv6Type.DEST_UNREACHABLE,
    Icmpv6UnreachableCode.PORT,
    0,
    ECHO6_PACKET,
    0,
    ECHO6_PACKET.length,
    IPV6_MIN_MTU - 40,
    GATEWAY,
    GUEST,
  );
  t.equal(n, 72);
  const m = new Icmpv6Packet().at(buf, 0, n);
  t.ok(m.check() && m.verifyChecksum(GATEWAY, 0, GUEST, 0));
  t.ok(m.isError());
  t.same(buf.subarray(8), ECHO6_PACKET);
  // Limited by maxLength, and by the buffer.
  t.equal(emitIcmpv6Error(buf, 0, 1, 4, 0, ECHO6_PACKET, 0, 64, 48, GATEWAY, GUEST), 48);
  t.equal(emitIcmpv6Error(new Uint8Array(20), 0, 1, 4, 0, ECHO6_PACKET, 0, 64, 1240, GATEWAY, GUEST), 20);
  t.equal(emitIcmpv6Error(new Uint8Array(7), 0, 1, 4, 0, ECHO6_PACKET, 0, 64, 1240, GATEWAY, GUEST), -1);
});

t.test('packet too big and parameter problem fields', async (t) => {
  const b = new Uint8Array(8);
  const m = new Icmpv6Packet().at(b, 0, 8);
  m.type = Icmpv6Type.PACKET_TOO_BIG;
  m.mtu = 1280;
  t.equal(m.rest, 1280);
  m.type = Icmpv6Type.PARAM_PROBLEM;
  m.code = Icmpv6ParamProblemCode.UNRECOGNIZED_NEXT_HEADER;
  m.pointer = 40;
  t.equal(m.pointer, 40);
  t.equal(m.code, 1);
  m.rest = 0xdeadbeef;
  t.equal(m.mtu, 0xdeadbeef);
  m.ident = 7;
  m.seq = 9;
  t.equal(m.rest, 0x00070009);
});

t.test('error types are those below 128', async (t) => {
  t.ok(icmpv6IsError(1));
  t.ok(icmpv6IsError(4));
  t.ok(icmpv6IsError(127));
  t.notOk(icmpv6IsError(128));
  t.notOk(icmpv6IsError(135));
});

t.test('every truncation: check() fails below 8 bytes, nothing reads out of bounds', async (t) => {
  const msg = ECHO6_PACKET.subarray(40);
  everyPrefix(msg, (b, len) => {
    const m = new Icmpv6Packet().at(b, 0, len);
    t.equal(m.check(), len >= 8, `prefix ${len}`);
    if (m.check()) m.verifyChecksum(GUEST, 0, GATEWAY, 0);
  });
});

t.test('properties', async (t) => {
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const m = new Icmpv6Packet().at(strict(bytes), 0, bytes.length);
      if (m.check()) {
        m.verifyChecksum(GUEST, 0, GATEWAY, 0);
        void [m.type, m.code, m.rest, m.ident, m.seq, m.mtu, m.pointer];
      }
    }),
  );
  property(
    t,
    'emit then parse round-trips and verifies',
    fc.property(
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 255 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ maxLength: 100 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      (type, code, rest, payload, src, dst) => {
        const b = new Uint8Array(8 + payload.length);
        b.set(payload, 8);
        emitIcmpv6(b, 0, { type, code, rest, payloadLength: payload.length }, src, dst);
        const m = new Icmpv6Packet().at(b, 0, b.length);
        return m.check() && m.verifyChecksum(src, 0, dst, 0) && m.type === type && m.code === code && m.rest === rest;
      },
    ),
  );
});
