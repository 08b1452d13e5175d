import t from 'tap';
import fc from 'fast-check';
import { get16, get32 } from '../../src/wire/bytes.js';
import {
  DHCPV6_CLIENT_PORT,
  DHCPV6_SERVER_PORT,
  dhcpv6BeginOption,
  dhcpv6EndOption,
  Dhcpv6Message,
  Dhcpv6MessageType,
  Dhcpv6Option,
  Dhcpv6OptionIterator,
  Dhcpv6Options,
  dhcpv6PutAddresses,
  dhcpv6PutBytes,
  dhcpv6PutDomainList,
  dhcpv6PutDuidLl,
  dhcpv6PutEmpty,
  dhcpv6PutIaNa,
  dhcpv6PutStatus,
  dhcpv6PutU16,
  dhcpv6PutU32,
  dhcpv6PutU8,
  dhcpv6Requests,
  Dhcpv6Status,
  DuidType,
  emitDhcpv6Header,
} from '../../src/wire/dhcpv6.js';
import { formatIpv6, IPV6_ALL_DHCP_AGENTS, ipv6Equal, Ipv6Packet, parseIpv6 } from '../../src/wire/ipv6.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import { emitUdpV6, UdpDatagram } from '../../src/wire/udp.js';
import { DHCPV6_SOLICIT_PACKET } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const MSG = DHCPV6_SOLICIT_PACKET.subarray(48);
const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const SERVER_MAC = hex('52550a000202');
const CLIENT_DUID = hex('0002 0000 ab11 1f0e 2d3c 4b5a 6978');

t.test('parse a SOLICIT through IPv6 and UDP', async (t) => {
  const ip = new Ipv6Packet().at(DHCPV6_SOLICIT_PACKET, 0, DHCPV6_SOLICIT_PACKET.length);
  t.ok(ip.check());
  t.ok(ipv6Equal(ip.bytes, ip.dstOffset, IPV6_ALL_DHCP_AGENTS, 0));
  const udp = new UdpDatagram().at(DHCPV6_SOLICIT_PACKET, ip.payloadOffset, ip.payloadLength);
  t.ok(udp.check() && udp.verifyChecksumV6(ip.bytes, ip.srcOffset, ip.bytes, ip.dstOffset));
  t.equal(udp.srcPort, DHCPV6_CLIENT_PORT);
  t.equal(udp.dstPort, DHCPV6_SERVER_PORT);
  const m = new Dhcpv6Message().at(DHCPV6_SOLICIT_PACKET, udp.payloadOffset, udp.payloadLength);
  t.ok(m.check());
  t.equal(m.msgType, Dhcpv6MessageType.SOLICIT);
  t.equal(m.transactionId, 0x5a1b2c);
  t.notOk(m.isRelay());
  t.equal(m.optionsOffset, 52);
  t.equal(m.optionsLength, 68);

  const o = new Dhcpv6Options();
  t.ok(m.parseOptions(o));
  t.equal(o.clientIdLength, 14);
  t.equal(get16(DHCPV6_SOLICIT_PACKET, o.clientIdOffset), DuidType.EN);
  t.equal(get32(DHCPV6_SOLICIT_PACKET, o.clientIdOffset + 2), 43793);
  t.equal(o.serverIdOffset, -1);
  t.equal(o.iaNaCount, 1);
  t.equal(o.iaNaLength, 12);
  t.equal(o.elapsedTime, 0);
  t.ok(o.rapidCommit);
  t.equal(o.preference, -1);
  t.equal(o.oroLength, 8);
  for (const code of [23, 24, 56, 82]) t.ok(dhcpv6Requests(DHCPV6_SOLICIT_PACKET, o, code), `requests ${code}`);
  t.notOk(dhcpv6Requests(DHCPV6_SOLICIT_PACKET, o, 32));

  const it = new Dhcpv6OptionIterator().at(DHCPV6_SOLICIT_PACKET, m.optionsOffset, m.optionsLength);
  const codes: number[] = [];
  while (it.next()) {
    codes.push(it.code);
    if (it.code === Dhcpv6Option.IA_NA) {
      t.equal(it.iaid, 0x7c3e1a2b);
      t.equal(it.t1, 0);
      t.equal(it.t2, 0);
      t.equal(it.iaOptionsLength, 0);
    }
    if (it.code === Dhcpv6Option.CLIENT_FQDN) {
      t.equal(it.u8, 0, 'FQDN flags');
      t.same(decodeDnsNameList(DHCPV6_SOLICIT_PACKET, it.offset + 1, it.length - 1, false, false), ['guest']);
    }
  }
  t.same(codes, [1, 3, 8, 6, 14, 39]);
  t.notOk(it.error);
});

t.test('build the same SOLICIT', async (t) => {
  const b = new Uint8Array(MSG.length);
  const end = b.length;
  let o = emitDhcpv6Header(b, 0, Dhcpv6MessageType.SOLICIT, 0x5a1b2c);
  o = dhcpv6PutBytes(b, o, end, Dhcpv6Option.CLIENTID, CLIENT_DUID, 0, CLIENT_DUID.length);
  o = dhcpv6PutIaNa(b, o, end, { iaid: 0x7c3e1a2b, t1: 0, t2: 0, addresses: [] });
  o = dhcpv6PutU16(b, o, end, Dhcpv6Option.ELAPSED_TIME, 0);
  o = dhcpv6PutBytes(b, o, end, Dhcpv6Option.ORO, hex('0017 0018 0038 0052'), 0, 8);
  o = dhcpv6PutEmpty(b, o, end, Dhcpv6Option.RAPID_COMMIT);
  const fqdn = dhcpv6BeginOption(b, o, end, Dhcpv6Option.CLIENT_FQDN);
  b[fqdn] = 0;
  b.set(hex('05 6775657374 00'), fqdn + 1);
  o = dhcpv6EndOption(b, o, fqdn + 8);
  t.equal(o, MSG.length);
  t.same(b, MSG);
  // And the UDP header with its checksum over the IPv6 pseudo-header.
  const u = new Uint8Array(8 + b.length);
  u.set(b, 8);
  emitUdpV6(u, 0, { srcPort: 546, dstPort: 547, payloadLength: b.length }, GUEST_LL, IPV6_ALL_DHCP_AGENTS);
  t.same(u, DHCPV6_SOLICIT_PACKET.subarray(40));
});

t.test('a REPLY with everything a server sends, parsed back', async (t) => {
  const b = new Uint8Array(400);
  const end = b.length;
  let o = emitDhcpv6Header(b, 0, Dhcpv6MessageType.REPLY, 0x5a1b2c);
  o = dhcpv6PutDuidLl(b, o, end, Dhcpv6Option.SERVERID, SERVER_MAC);
  o = dhcpv6PutBytes(b, o, end, Dhcpv6Option.CLIENTID, CLIENT_DUID, 0, CLIENT_DUID.length);
  o = dhcpv6PutIaNa(b, o, end, {
    iaid: 0x7c3e1a2b,
    t1: 1800,
    t2: 2880,
    addresses: [{ address: parseIpv6('fd00::15')!, preferredLifetime: 3600, validLifetime: 7200 }],
    status: { code: Dhcpv6Status.SUCCESS, message: 'ok' },
  });
  o = dhcpv6PutAddresses(b, o, end, Dhcpv6Option.DNS_SERVERS, [parseIpv6('fd00::3')!, parseIpv6('2001:4860:4860::8888')!]);
  o = dhcpv6PutDomainList(b, o, end, ['vunet.internal', 'example.com']);
  o = dhcpv6PutU8(b, o, end, Dhcpv6Option.PREFERENCE, 255);
  o = dhcpv6PutU32(b, o, end, Dhcpv6Option.INFORMATION_REFRESH_TIME, 86400);
  o = dhcpv6PutEmpty(b, o, end, Dhcpv6Option.RAPID_COMMIT);
  t.ok(o > 0);
  const m = new Dhcpv6Message().at(b, 0, o);
  t.ok(m.check());
  const opts = new Dhcpv6Options();
  t.ok(m.parseOptions(opts));
  t.equal(opts.serverIdLength, 10);
  t.equal(get16(b, opts.serverIdOffset), DuidType.LL);
  t.equal(get16(b, opts.serverIdOffset + 2), 1, 'hardware type Ethernet');
  t.equal(opts.preference, 255);
  t.ok(opts.rapidCommit);
  t.equal(opts.clientIdLength, CLIENT_DUID.length);

  const it = new Dhcpv6OptionIterator().at(b, m.optionsOffset, m.optionsLength);
  const inner = new Dhcpv6OptionIterator();
  let sawAddr = false;
  let sawStatus = false;
  while (it.next()) {
    switch (it.code) {
      case Dhcpv6Option.IA_NA:
        t.equal(it.iaid, 0x7c3e1a2b);
        t.equal(it.t1, 1800);
        t.equal(it.t2, 2880);
        inner.at(b, it.iaOptionsOffset, it.iaOptionsLength);
        while (inner.next()) {
          if (inner.code === Dhcpv6Option.IAADDR) {
            sawAddr = true;
            t.equal(formatIpv6(b, inner.addressOffset), 'fd00::15');
            t.equal(inner.preferredLifetime, 3600);
            t.equal(inner.validLifetime, 7200);
            t.equal(inner.iaAddrOptionsLength, 0);
          } else if (inner.code === Dhcpv6Option.STATUS_CODE) {
            sawStatus = true;
            t.equal(inner.u16, Dhcpv6Status.SUCCESS);
            t.equal(new TextDecoder().decode(b.subarray(inner.offset + 2, inner.offset + inner.length)), 'ok');
          }
        }
        t.notOk(inner.error);
        break;
      case Dhcpv6Option.DNS_SERVERS:
        t.equal(it.length, 32);
        t.equal(formatIpv6(b, it.offset), 'fd00::3');
        t.equal(formatIpv6(b, it.offset + 16), '2001:4860:4860::8888');
        break;
      case Dhcpv6Option.DOMAIN_LIST:
        t.same(decodeDnsNameList(b, it.offset, it.length, false, false), ['vunet.internal', 'example.com']);
        break;
      case Dhcpv6Option.INFORMATION_REFRESH_TIME:
        t.equal(it.u32, 86400);
        break;
    }
  }
  t.ok(sawAddr && sawStatus);
});

t.test('relay messages', async (t) => {
  const b = new Uint8Array(34 + 4 + MSG.length);
  b[0] = Dhcpv6MessageType.RELAY_FORW;
  b[1] = 0;
  b.set(parseIpv6('fd00::1')!, 2);
  b.set(GUEST_LL, 18);
  const end = dhcpv6PutBytes(b, 34, b.length, Dhcpv6Option.RELAY_MSG, MSG, 0, MSG.length);
  t.equal(end, b.length);
  const m = new Dhcpv6Message().at(b, 0, b.length);
  t.ok(m.check());
  t.ok(m.isRelay());
  t.equal(m.hopCount, 0);
  t.equal(formatIpv6(b, m.linkAddressOffset), 'fd00::1');
  t.equal(formatIpv6(b, m.peerAddressOffset), 'fe80::5054:ff:fe12:3456');
  const it = new Dhcpv6OptionIterator().at(b, m.optionsOffset, m.optionsLength);
  t.ok(it.next());
  t.equal(it.code, Dhcpv6Option.RELAY_MSG);
  const inner = new Dhcpv6Message().at(b, it.offset, it.length);
  t.ok(inner.check());
  t.equal(inner.msgType, Dhcpv6MessageType.SOLICIT);
  t.notOk(new Dhcpv6Message().at(b, 0, 33).check(), 'relay header cut');
});

t.test('errors and length rules', async (t) => {
  const b = MSG.slice();
  b[7] = 0xff; // client id length 255: past the end
  t.notOk(new Dhcpv6Message().at(b, 0, b.length).check());
  t.notOk(new Dhcpv6Message().at(b, 0, b.length).parseOptions(new Dhcpv6Options()));
  const odd = new Uint8Array(4 + 4 + 3);
  emitDhcpv6Header(odd, 0, 1, 1);
  dhcpv6PutBytes(odd, 4, odd.length, Dhcpv6Option.ORO, Uint8Array.of(0, 23, 0), 0, 3);
  const o = new Dhcpv6Options();
  t.ok(new Dhcpv6Message().at(odd, 0, odd.length).parseOptions(o));
  t.equal(o.oroOffset, -1, 'an ORO of odd length is ignored');
  t.equal(dhcpv6PutIaNa(new Uint8Array(20), 0, 20, { iaid: 1, t1: 0, t2: 0, addresses: [{ address: GUEST_LL, preferredLifetime: 1, validLifetime: 1 }] }), -1);
  t.equal(dhcpv6PutStatus(new Uint8Array(8), 0, 8, 0, 'too long'), -1);
  t.equal(dhcpv6PutDomainList(new Uint8Array(100), 0, 100, ['bad..name']), -1);
  t.equal(emitDhcpv6Header(new Uint8Array(3), 0, 1, 1), -1);
  t.equal(dhcpv6EndOption(new Uint8Array(8), 0, -1), -1);
});

t.test('every truncation fails check() or parses safely', async (t) => {
  const o = new Dhcpv6Options();
  let ok = 0;
  everyPrefix(MSG, (b, len) => {
    const m = new Dhcpv6Message().at(b, 0, len);
    if (m.check()) {
      ok++;
      m.parseOptions(o);
    }
  });
  // Prefixes that end exactly between options are valid shorter messages.
  t.equal(ok, 6, 'header only, and after each of the first five options');
});

t.test('properties', async (t) => {
  const o = new Dhcpv6Options();
  const it = new Dhcpv6OptionIterator();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 120 }), (bytes) => {
      const s = strict(bytes);
      const m = new Dhcpv6Message().at(s, 0, bytes.length);
      if (!m.check()) return;
      m.parseOptions(o);
      if (o.oroOffset >= 0) dhcpv6Requests(s, o, 23);
      it.at(s, m.optionsOffset, m.optionsLength);
      while (it.next()) {
        if (it.code === Dhcpv6Option.IA_NA && it.length >= 12) {
          void [it.iaid, it.t1, it.t2];
          const inner = new Dhcpv6OptionIterator().at(s, it.iaOptionsOffset, it.iaOptionsLength);
          while (inner.next()) if (inner.code === Dhcpv6Option.IAADDR && inner.length >= 24) void inner.validLifetime;
        }
      }
    }),
  );
  property(
    t,
    'IA_NA emit then parse round-trips',
    fc.property(
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.integer({ min: 0, max: 0xffffffff }),
      fc.array(
        fc.record({
          address: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          preferredLifetime: fc.integer({ min: 0, max: 0xffffffff }),
          validLifetime: fc.integer({ min: 0, max: 0xffffffff }),
        }),
        { maxLength: 3 },
      ),
      (iaid, t1, t2, addresses) => {
        const b = new Uint8Array(4 + 16 + 28 * 3);
        const n = dhcpv6PutIaNa(b, 4, b.length, { iaid, t1, t2, addresses });
        emitDhcpv6Header(b, 0, Dhcpv6MessageType.ADVERTISE, 0xabcdef);
        const m = new Dhcpv6Message().at(b, 0, n);
        if (!m.check() || m.transactionId !== 0xabcdef || !m.parseOptions(o) || o.iaNaCount !== 1) return false;
        it.at(b, m.optionsOffset, m.optionsLength);
        if (!it.next() || it.iaid !== iaid || it.t1 !== t1 || it.t2 !== t2) return false;
        const inner = new Dhcpv6OptionIterator().at(b, it.iaOptionsOffset, it.iaOptionsLength);
        for (const a of addresses) {
          if (!inner.next() || inner.code !== Dhcpv6Option.IAADDR) return false;
          if (!ipv6Equal(b, inner.addressOffset, a.address, 0)) return false;
          if (inner.preferredLifetime !== a.preferredLifetime || inner.validLifetime !== a.validLifetime) return false;
        }
        return !inner.next() && !inner.error;
      },
    ),
  );
});
