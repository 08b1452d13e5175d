import t from 'tap';
import fc from 'fast-check';
import { emitIpv4Header, Ipv4Packet } from '../../src/wire/ipv4.js';
import { Ipv6Packet, parseIpv6 } from '../../src/wire/ipv6.js';
import { emitUdpV4, emitUdpV6, UdpDatagram, UDP_HEADER_LEN } from '../../src/wire/udp.js';
import { DHCPV6_SOLICIT_PACKET, PROBE_UDP } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

const GUEST = 0x0a00020f;
const GATEWAY = 0x0a000202;

t.test('parse a UDP datagram over IPv4', async (t) => {
  const u = new UdpDatagram().at(PROBE_UDP, 0, PROBE_UDP.length);
  t.ok(u.check());
  t.equal(u.srcPort, 45000);
  t.equal(u.dstPort, 33434);
  t.equal(u.udpLength, 40);
  t.equal(u.checksum, 0xc025);
  t.ok(u.verifyChecksumV4(GUEST, GATEWAY));
  t.notOk(u.verifyChecksumV4(GATEWAY, GUEST + 1));
  t.equal(u.payloadOffset, 8);
  t.equal(u.payloadLength, 32);
});

t.test('parse a UDP datagram over IPv6, verified against the header in place', async (t) => {
  const ip = new Ipv6Packet().at(DHCPV6_SOLICIT_PACKET, 0, DHCPV6_SOLICIT_PACKET.length);
  t.ok(ip.check());
  const u = new UdpDatagram().at(DHCPV6_SOLICIT_PACKET, ip.payloadOffset, ip.payloadLength);
  t.ok(u.check());
  t.equal(u.srcPort, 546);
  t.equal(u.dstPort, 547);
  t.equal(u.udpLength, 80);
  t.ok(u.verifyChecksumV6(ip.bytes, ip.srcOffset, ip.bytes, ip.dstOffset));
});

t.test('emit the same datagrams', async (t) => {
  const b = new Uint8Array(40);
  b.set(PROBE_UDP.subarray(8), 8);
  t.equal(emitUdpV4(b, 0, { srcPort: 45000, dstPort: 33434, payloadLength: 32 }, GUEST, GATEWAY), 8);
  t.same(b, PROBE_UDP);
  const u6 = DHCPV6_SOLICIT_PACKET.slice(40);
  u6.fill(0, 0, 8);
  t.equal(emitUdpV6(u6, 0, { srcPort: 546, dstPort: 547, payloadLength: 72 }, parseIpv6('fe80::5054:ff:fe12:3456')!, parseIpv6('ff02::1:2')!), 8);
  t.same(u6, DHCPV6_SOLICIT_PACKET.subarray(40));
  t.equal(emitUdpV4(b, 0, { srcPort: 1, dstPort: 2, payloadLength: 33 }, GUEST, GATEWAY), -1);
  t.equal(emitUdpV4(new Uint8Array(70000), 0, { srcPort: 1, dstPort: 2, payloadLength: 65528 }, GUEST, GATEWAY), -1, 'over 65535');
});

t.test('zero checksums: optional over IPv4, invalid over IPv6; a computed 0 is sent as ffff', async (t) => {
  const b = PROBE_UDP.slice();
  const u = new UdpDatagram().at(b, 0, b.length);
  u.checksum = 0;
  t.ok(u.verifyChecksumV4(1, 2), 'IPv4: no checksum');
  t.notOk(u.verifyChecksumV6(new Uint8Array(16), 0, new Uint8Array(16), 0), 'IPv6: mandatory');
  // Find a payload whose checksum computes to zero: adjust one word until it does.
  const z = new Uint8Array(10);
  const v = new UdpDatagram().at(z, 0, 10);
  emitUdpV4(z, 0, { srcPort: 0, dstPort: 0, payloadLength: 2 }, 0, 0);
  const ck = v.checksum; // complement of (17 + 10 + 10) in the pseudo-header and length field
  z[8] = ck >>> 8;
  z[9] = ck & 0xff;
  v.fillChecksumV4(0, 0);
  t.equal(v.checksum, 0xffff, 'transmitted as all ones (RFC 768)');
  t.ok(v.verifyChecksumV4(0, 0));
});

t.test('rewrite in place (NAT) and refill', async (t) => {
  const b = PROBE_UDP.slice();
  const u = new UdpDatagram().at(b, 0, b.length);
  u.srcPort = 40000;
  u.dstPort = 53;
  u.fillChecksumV4(0xc0a80001, 0x08080808);
  t.ok(u.verifyChecksumV4(0xc0a80001, 0x08080808));
  const src = parseIpv6('fd00::1')!;
  const dst = parseIpv6('2001:db8::53')!;
  u.fillChecksumV6(src, 0, dst, 0);
  t.ok(u.verifyChecksumV6(src, 0, dst, 0));
  u.udpLength = 8;
  t.equal(u.payloadLength, 0);
});

t.test('check() refuses bad lengths; every truncation fails', async (t) => {
  const b = PROBE_UDP.slice();
  const u = new UdpDatagram().at(b, 0, b.length);
  u.udpLength = 7;
  t.notOk(u.check());
  u.udpLength = 41;
  t.notOk(u.check());
  u.udpLength = 40;
  t.ok(u.check());
  everyPrefix(PROBE_UDP, (s, len) => t.notOk(new UdpDatagram().at(s, 0, len).check(), `prefix ${len}`));
  const padded = new Uint8Array(60);
  padded.set(PROBE_UDP);
  t.ok(new UdpDatagram().at(padded, 0, 60).check(), 'trailing bytes beyond the UDP length are allowed');
});

t.test('a whole IPv4 + UDP packet', async (t) => {
  const b = new Uint8Array(20 + 8 + 4);
  b.set([1, 2, 3, 4], 28);
  emitUdpV4(b, 20, { srcPort: 68, dstPort: 67, payloadLength: 4 }, 0, 0xffffffff);
  emitIpv4Header(b, 0, { src: 0, dst: 0xffffffff, proto: 17, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: 12, tos: 0 });
  const ip = new Ipv4Packet().at(b, 0, b.length);
  t.ok(ip.check());
  const u = new UdpDatagram().at(b, ip.payloadOffset, ip.payloadLength);
  t.ok(u.check() && u.verifyChecksumV4(ip.src, ip.dst));
  t.equal(UDP_HEADER_LEN, 8);
});

t.test('properties', async (t) => {
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
      const u = new UdpDatagram().at(strict(bytes), 0, bytes.length);
      if (u.check()) {
        u.verifyChecksumV4(1, 2);
        u.verifyChecksumV6(new Uint8Array(16), 0, new Uint8Array(16), 0);
        void [u.srcPort, u.dstPort, u.payloadLength];
      }
    }),
  );
  property(
    t,
    'emit then parse round-trips and verifies (v4 and v6)',
    fc.property(
      fc.integer({ min: 0, max: 0xffff }),
      fc.integer({ min: 0, max: 0xffff }),
      fc.uint8Array({ maxLength: 200 }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      fc.uint8Array({ minLength: 16, maxLength: 16 }),
      (srcPort, dstPort, payload, s4, d4, s6, d6) => {
        const b = new Uint8Array(8 + payload.length);
        b.set(payload, 8);
        const repr = { srcPort, dstPort, payloadLength: payload.length };
        emitUdpV4(b, 0, repr, s4, d4);
        const u = new UdpDatagram().at(b, 0, b.length);
        if (!u.check() || !u.verifyChecksumV4(s4, d4) || u.checksum === 0) return false;
        if (u.srcPort !== srcPort || u.dstPort !== dstPort || u.payloadLength !== payload.length) return false;
        emitUdpV6(b, 0, repr, s6, d6);
        return u.verifyChecksumV6(s6, 0, d6, 0) && u.checksum !== 0;
      },
    ),
  );
});
