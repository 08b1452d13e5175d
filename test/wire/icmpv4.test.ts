import t from 'tap';
import fc from 'fast-check';
import {
  emitIcmpv4,
  emitIcmpv4Error,
  ICMPV4_HEADER_LEN,
  icmpv4EchoRest,
  icmpv4IsError,
  Icmpv4Packet,
  Icmpv4Type,
  Icmpv4UnreachableCode,
} from '../../src/wire/icmpv4.js';
import { emitIpv4Header, Ipv4Error, Ipv4Packet } from '../../src/wire/ipv4.js';
import { UdpDatagram } from '../../src/wire/udp.js';
import { ECHO_REQUEST_FRAME, PORT_UNREACHABLE } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

const ICMP = ECHO_REQUEST_FRAME.subarray(34);

t.test('parse an echo request', async (t) => {
  const m = new Icmpv4Packet().at(ICMP, 0, ICMP.length);
  t.ok(m.check());
  t.equal(m.type, Icmpv4Type.ECHO_REQUEST);
  t.equal(m.code, 0);
  t.equal(m.checksum, 0x0f56);
  t.ok(m.verifyChecksum());
  t.equal(m.ident, 0x0a3f);
  t.equal(m.seq, 1);
  t.equal(m.rest, 0x0a3f0001);
  t.equal(m.payloadOffset, 8);
  t.equal(m.payloadLength, 56);
  t.notOk(m.isError());
});

t.test('emit the same echo request', async (t) => {
  const buf = new Uint8Array(64);
  buf.set(ICMP.subarray(8), 8);
  t.equal(emitIcmpv4(buf, 0, { type: Icmpv4Type.ECHO_REQUEST, code: 0, rest: icmpv4EchoRest(0x0a3f, 1), payloadLength: 56 }), 8);
  t.same(buf, ICMP);
  t.equal(emitIcmpv4(buf, 0, { type: 8, code: 0, rest: 0, payloadLength: 57 }), -1, 'payload past the buffer');
});

t.test('answer in place: echo reply', async (t) => {
  const frame = ECHO_REQUEST_FRAME.slice();
  const ip = new Ipv4Packet().at(frame, 14, frame.length - 14);
  t.ok(ip.check());
  const m = new Icmpv4Packet().at(frame, ip.payloadOffset, ip.payloadLength);
  t.ok(m.check() && m.verifyChecksum());
  m.type = Icmpv4Type.ECHO_REPLY;
  m.fillChecksum();
  t.ok(m.verifyChecksum());
  t.equal(m.checksum, 0x1756, 'type 8 -> 0 adds 0x0800 to the checksum');
  const src = ip.src;
  ip.src = ip.dst;
  ip.dst = src;
  ip.fillChecksum();
  t.ok(ip.verifyChecksum());
});

t.test('parse a port unreachable and the datagram it quotes', async (t) => {
  const ip = new Ipv4Packet().at(PORT_UNREACHABLE, 0, PORT_UNREACHABLE.length);
  t.ok(ip.check());
  t.ok(ip.verifyChecksum());
  t.equal(ip.tos, 0xc0);
  const m = new Icmpv4Packet().at(PORT_UNREACHABLE, ip.payloadOffset, ip.payloadLength);
  t.ok(m.check());
  t.ok(m.verifyChecksum());
  t.equal(m.type, Icmpv4Type.DEST_UNREACHABLE);
  t.equal(m.code, Icmpv4UnreachableCode.PORT);
  t.equal(m.rest, 0);
  t.ok(m.isError());
  const inner = new Ipv4Packet().at(PORT_UNREACHABLE, m.payloadOffset, m.payloadLength);
  // The quoted header says 60 bytes but only 28 are here: check() refuses, the caller reads the header.
  t.equal(inner.problem(), Ipv4Error.TOTAL_LENGTH);
  t.equal(inner.headerLength, 20);
  t.equal(inner.protocol, 17);
  t.equal(inner.ttl, 1);
  const udp = new UdpDatagram().at(PORT_UNREACHABLE, m.payloadOffset + 20, 8);
  t.equal(udp.srcPort, 45000);
  t.equal(udp.dstPort, 33434);
});

t.test('emit the same error from the original datagram', async (t) => {
  const orig = new Uint8Array(60);
  emitIpv4Header(orig, 0, { src: 0x0a00020f, dst: 0x0a000202, proto: 17, ttl: 1, id: 0x1234, flags: 0, fragOffset: 0, payloadLength: 40, tos: 0 });
  orig.set(PORT_UNREACHABLE.subarray(48, 56), 20);
  const buf = new Uint8Array(56);
  const n = emitIcmpv4Error(buf, 20, Icmpv4Type.DEST_UNREACHABLE, Icmpv4UnreachableCode.PORT, 0, orig, 0, 60, 36);
  t.equal(n, 36, 'quotes what maxLength allows: IP header + 8 bytes');
  emitIpv4Header(buf, 0, { src: 0x0a000202, dst: 0x0a00020f, proto: 1, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: n, tos: 0xc0 });
  t.same(buf, PORT_UNREACHABLE);
  // Quoting is bounded by the buffer too.
  t.equal(emitIcmpv4Error(new Uint8Array(20), 0, 3, 3, 0, orig, 0, 60, 548), 20);
  t.equal(emitIcmpv4Error(new Uint8Array(7), 0, 3, 3, 0, orig, 0, 60, 548), -1);
});

t.test('fragmentation needed carries the next-hop MTU', async (t) => {
  const b = new Uint8Array(8);
  const m = new Icmpv4Packet().at(b, 0, 8);
  m.type = Icmpv4Type.DEST_UNREACHABLE;
  m.code = Icmpv4UnreachableCode.FRAG_NEEDED;
  m.mtu = 1400;
  t.equal(m.rest, 1400);
  m.rest = 0;
  m.pointer = 9;
  t.equal(m.pointer, 9);
  t.equal(m.rest, 0x09000000);
  m.gateway = 0x0a000203;
  t.equal(m.gateway, 0x0a000203);
  m.ident = 1;
  m.seq = 2;
  t.equal(m.rest, 0x00010002);
});

t.test('error types', async (t) => {
  for (const type of [3, 4, 5, 11, 12]) t.ok(icmpv4IsError(type), `type ${type}`);
  for (const type of [0, 8, 9, 10, 13, 14]) t.notOk(icmpv4IsError(type), `type ${type}`);
});

t.test('every truncation fails check()', async (t) => {
  let ok = 0;
  everyPrefix(ICMP, (b, len) => {
    const m = new Icmpv4Packet().at(b, 0, len);
    if (m.check()) {
      ok++;
      m.verifyChecksum();
      void [m.type, m.code, m.rest, m.ident, m.seq, m.mtu, m.pointer, m.gateway];
    }
  });
  t.equal(ok, ICMP.length - ICMPV4_HEADER_LEN, 'only prefixes holding the 8-byte header pass');
});

t.test('properties', async (t) => {
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const m = new Icmpv4Packet().at(strict(bytes), 0, bytes.length);
      if (m.check()) {
        m.verifyChecksum();
        void [m.type, m.code, m.rest, m.ident, m.seq, m.mtu, m.pointer, m.gateway, m.payloadLength];
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
      (type, code, rest, payload) => {
        const b = new Uint8Array(8 + payload.length);
        b.set(payload, 8);
        emitIcmpv4(b, 0, { type, code, rest, payloadLength: payload.length });
        const m = new Icmpv4Packet().at(b, 0, b.length);
        return m.check() && m.verifyChecksum() && m.type === type && m.code === code && m.rest === rest;
      },
    ),
  );
});
