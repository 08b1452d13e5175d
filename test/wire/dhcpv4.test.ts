import t from 'tap';
import fc from 'fast-check';
import {
  DHCP_FIXED_LEN,
  DHCP_FLAG_BROADCAST,
  DHCP_MAGIC_COOKIE,
  dhcpChaddrIs,
  DhcpError,
  DhcpMessageType,
  DhcpOp,
  DhcpOption,
  DhcpOptionIterator,
  DhcpOptions,
  DhcpPacket,
  dhcpPadToMinimum,
  dhcpPutBytes,
  dhcpPutDomainSearch,
  dhcpPutEmpty,
  dhcpPutEnd,
  dhcpPutIp,
  dhcpPutIps,
  dhcpPutString,
  dhcpPutU16,
  dhcpPutU32,
  dhcpPutU8,
  dhcpRequests,
  emitDhcpHeader,
} from '../../src/wire/dhcpv4.js';
import { EthernetFrame, emitEthernetHeader, MAC_BROADCAST } from '../../src/wire/ethernet.js';
import { emitIpv4Header, formatIpv4, ipv4, Ipv4Packet } from '../../src/wire/ipv4.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import { emitUdpV4, UdpDatagram } from '../../src/wire/udp.js';
import { DHCPDISCOVER_FRAME } from '../support/captures.js';
import { everyPrefix, hex, property, strict } from '../support/wire-helpers.js';

const DHCP_OFFSET = 42;
const GUEST_MAC = hex('525400123456');

t.test('parse the DISCOVER through every layer', async (t) => {
  const eth = new EthernetFrame().at(DHCPDISCOVER_FRAME, 0, DHCPDISCOVER_FRAME.length);
  t.ok(eth.check() && eth.isBroadcast());
  const ip = new Ipv4Packet().at(DHCPDISCOVER_FRAME, eth.payloadOffset, eth.payloadLength);
  t.ok(ip.check());
  t.ok(ip.verifyChecksum());
  t.equal(ip.src, 0);
  t.equal(ip.dst, 0xffffffff);
  const udp = new UdpDatagram().at(DHCPDISCOVER_FRAME, ip.payloadOffset, ip.payloadLength);
  t.ok(udp.check() && udp.verifyChecksumV4(ip.src, ip.dst));
  t.equal(udp.srcPort, 68);
  t.equal(udp.dstPort, 67);
  const d = new DhcpPacket().at(DHCPDISCOVER_FRAME, udp.payloadOffset, udp.payloadLength);
  t.ok(d.check());
  t.equal(d.op, DhcpOp.BOOTREQUEST);
  t.equal(d.htype, 1);
  t.equal(d.hlen, 6);
  t.ok(d.hasEthernetChaddr());
  t.equal(d.hops, 0);
  t.equal(d.xid, 0x3903f326);
  t.equal(d.secs, 0);
  t.equal(d.flags, 0);
  t.notOk(d.broadcast);
  t.equal(d.ciaddr + d.yiaddr + d.siaddr + d.giaddr, 0);
  t.ok(dhcpChaddrIs(DHCPDISCOVER_FRAME, d.offset, GUEST_MAC));
  t.equal(d.chaddrOffset, DHCP_OFFSET + 28);
  t.equal(d.snameOffset, DHCP_OFFSET + 44);
  t.equal(d.fileOffset, DHCP_OFFSET + 108);
  t.equal(d.cookie, DHCP_MAGIC_COOKIE);
  t.equal(d.optionsOffset, DHCP_OFFSET + 240);
  t.equal(d.length, 300);

  const it = new DhcpOptionIterator().at(DHCPDISCOVER_FRAME, d.offset, d.length);
  const codes: number[] = [];
  while (it.next()) codes.push(it.code);
  t.same(codes, [53, 61, 57, 55, 60]);
  t.notOk(it.error);

  const o = new DhcpOptions();
  t.ok(d.parseOptions(o));
  t.equal(o.messageType, DhcpMessageType.DISCOVER);
  t.equal(o.maxMessageSize, 576);
  t.equal(o.requestedIp, -1);
  t.equal(o.serverId, -1);
  t.equal(o.clientIdLength, 7);
  t.equal(DHCPDISCOVER_FRAME[o.clientIdOffset], 1, 'client id type 1: Ethernet');
  t.ok(dhcpChaddrIs(DHCPDISCOVER_FRAME, o.clientIdOffset + 1 - 28, GUEST_MAC));
  t.equal(o.paramRequestLength, 7);
  for (const code of [1, 3, 6, 12, 15, 28, 42]) t.ok(dhcpRequests(DHCPDISCOVER_FRAME, o, code), `requests ${code}`);
  t.notOk(dhcpRequests(DHCPDISCOVER_FRAME, o, DhcpOption.DOMAIN_SEARCH));
  t.equal(new TextDecoder().decode(DHCPDISCOVER_FRAME.subarray(o.vendorClassOffset, o.vendorClassOffset + o.vendorClassLength)), 'udhcp 1.36.1');
  t.equal(o.hostnameOffset, -1);
  t.notOk(o.rapidCommit);
});

t.test('build the same DISCOVER with the emitters', async (t) => {
  const f = new Uint8Array(DHCPDISCOVER_FRAME.length);
  const d = DHCP_OFFSET;
  t.equal(
    emitDhcpHeader(f, d, { op: DhcpOp.BOOTREQUEST, xid: 0x3903f326, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC }),
    DHCP_FIXED_LEN,
  );
  const end = f.length;
  let o = d + DHCP_FIXED_LEN;
  o = dhcpPutU8(f, o, end, DhcpOption.MESSAGE_TYPE, DhcpMessageType.DISCOVER);
  const cid = new Uint8Array(7);
  cid[0] = 1;
  cid.set(GUEST_MAC, 1);
  o = dhcpPutBytes(f, o, end, DhcpOption.CLIENT_ID, cid, 0, 7);
  o = dhcpPutU16(f, o, end, DhcpOption.MAX_MESSAGE_SIZE, 576);
  o = dhcpPutBytes(f, o, end, DhcpOption.PARAMETER_REQUEST_LIST, Uint8Array.of(1, 3, 6, 12, 15, 28, 42), 0, 7);
  o = dhcpPutString(f, o, end, DhcpOption.VENDOR_CLASS_ID, 'udhcp 1.36.1');
  o = dhcpPutEnd(f, o, end);
  o = dhcpPadToMinimum(f, d, o, end);
  t.equal(o, d + 300);
  t.equal(emitUdpV4(f, 34, { srcPort: 68, dstPort: 67, payloadLength: 300 }, 0, 0xffffffff), 8);
  t.equal(emitIpv4Header(f, 14, { src: 0, dst: 0xffffffff, proto: 17, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: 308, tos: 0 }), 20);
  t.equal(emitEthernetHeader(f, 0, { dst: MAC_BROADCAST, src: GUEST_MAC, etherType: 0x0800 }), 14);
  t.same(f, DHCPDISCOVER_FRAME);
});

t.test('an OFFER with every option a server sends, parsed back', async (t) => {
  const b = new Uint8Array(600);
  const server = ipv4(10, 0, 2, 2);
  emitDhcpHeader(b, 0, {
    op: DhcpOp.BOOTREPLY,
    xid: 0x3903f326,
    secs: 0,
    flags: DHCP_FLAG_BROADCAST,
    ciaddr: 0,
    yiaddr: ipv4(10, 0, 2, 15),
    siaddr: server,
    giaddr: 0,
    chaddr: GUEST_MAC,
  });
  const end = 576;
  let o = DHCP_FIXED_LEN;
  o = dhcpPutU8(b, o, end, DhcpOption.MESSAGE_TYPE, DhcpMessageType.OFFER);
  o = dhcpPutIp(b, o, end, DhcpOption.SERVER_ID, server);
  o = dhcpPutU32(b, o, end, DhcpOption.LEASE_TIME, 86400);
  o = dhcpPutU32(b, o, end, DhcpOption.RENEWAL_TIME, 43200);
  o = dhcpPutU32(b, o, end, DhcpOption.REBINDING_TIME, 75600);
  o = dhcpPutIp(b, o, end, DhcpOption.SUBNET_MASK, ipv4(255, 255, 255, 0));
  o = dhcpPutIps(b, o, end, DhcpOption.ROUTER, [server]);
  o = dhcpPutIps(b, o, end, DhcpOption.DNS_SERVERS, [ipv4(10, 0, 2, 3), ipv4(1, 1, 1, 1)]);
  o = dhcpPutString(b, o, end, DhcpOption.DOMAIN_NAME, 'vunet.internal');
  o = dhcpPutDomainSearch(b, o, end, ['vunet.internal', 'corp.vunet.internal', 'example.com']);
  o = dhcpPutU16(b, o, end, DhcpOption.INTERFACE_MTU, 1500);
  o = dhcpPutString(b, o, end, DhcpOption.HOSTNAME, 'guest');
  o = dhcpPutIp(b, o, end, DhcpOption.BROADCAST_ADDRESS, ipv4(10, 0, 2, 255));
  o = dhcpPutEmpty(b, o, end, DhcpOption.RAPID_COMMIT);
  o = dhcpPutEnd(b, o, end);
  t.ok(o > 0 && o < end);
  const d = new DhcpPacket().at(b, 0, o);
  t.ok(d.check());
  t.ok(d.broadcast);
  t.equal(formatIpv4(d.yiaddr), '10.0.2.15');
  const opts = new DhcpOptions();
  t.ok(d.parseOptions(opts));
  t.equal(opts.messageType, DhcpMessageType.OFFER);
  t.equal(opts.serverId, server);
  t.equal(opts.leaseTime, 86400);
  t.ok(opts.rapidCommit);
  t.equal(new TextDecoder().decode(b.subarray(opts.hostnameOffset, opts.hostnameOffset + opts.hostnameLength)), 'guest');
  const it = new DhcpOptionIterator().at(b, 0, o);
  const seen = new Map<number, number[]>();
  while (it.next()) {
    switch (it.code) {
      case DhcpOption.RENEWAL_TIME:
      case DhcpOption.REBINDING_TIME:
        seen.set(it.code, [it.u32]);
        break;
      case DhcpOption.SUBNET_MASK:
      case DhcpOption.BROADCAST_ADDRESS:
        seen.set(it.code, [it.ip()]);
        break;
      case DhcpOption.ROUTER:
      case DhcpOption.DNS_SERVERS:
        seen.set(
          it.code,
          Array.from({ length: it.length / 4 }, (_, i) => it.ip(i)),
        );
        break;
      case DhcpOption.INTERFACE_MTU:
        seen.set(it.code, [it.u16]);
        break;
      case DhcpOption.DOMAIN_SEARCH:
        t.same(decodeDnsNameList(b, it.offset, it.length, true, false), ['vunet.internal', 'corp.vunet.internal', 'example.com']);
        // vunet.internal (16) + corp + pointer (7) + example.com (13): the suffix is compressed.
        t.equal(it.length, 36);
        break;
      case DhcpOption.DOMAIN_NAME:
        t.equal(new TextDecoder().decode(b.subarray(it.offset, it.offset + it.length)), 'vunet.internal');
        break;
    }
  }
  t.same(seen.get(DhcpOption.RENEWAL_TIME), [43200]);
  t.same(seen.get(DhcpOption.REBINDING_TIME), [75600]);
  t.same(seen.get(DhcpOption.SUBNET_MASK), [ipv4(255, 255, 255, 0)]);
  t.same(seen.get(DhcpOption.BROADCAST_ADDRESS), [ipv4(10, 0, 2, 255)]);
  t.same(seen.get(DhcpOption.ROUTER), [server]);
  t.same(seen.get(DhcpOption.DNS_SERVERS), [ipv4(10, 0, 2, 3), ipv4(1, 1, 1, 1)]);
  t.same(seen.get(DhcpOption.INTERFACE_MTU), [1500]);
});

t.test('domain search: the RFC 3397 example and splitting past 255 bytes', async (t) => {
  // RFC 3397 section 3: eng.apple.com and marketing.apple.com.
  const b = new Uint8Array(64);
  const n = dhcpPutDomainSearch(b, 0, 64, ['eng.apple.com.', 'marketing.apple.com.']);
  t.same(
    b.subarray(0, n),
    Uint8Array.of(119, 27, 3, ...Buffer.from('eng'), 5, ...Buffer.from('apple'), 3, ...Buffer.from('com'), 0, 9, ...Buffer.from('marketing'), 0xc0, 0x04),
  );
  const names = Array.from({ length: 12 }, (_, i) => `host${i}.lab${i}.example${i}.test`);
  const big = new Uint8Array(1000);
  const m = dhcpPutDomainSearch(big, 0, 1000, names);
  t.ok(m > 0);
  const it = new DhcpOptionIterator();
  // Wrap in a DHCP message to iterate: concatenate the data of all option-119 instances.
  const pkt = new Uint8Array(DHCP_FIXED_LEN + m + 1);
  emitDhcpHeader(pkt, 0, { op: 2, xid: 0, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC });
  pkt.set(big.subarray(0, m), DHCP_FIXED_LEN);
  pkt[DHCP_FIXED_LEN + m] = 255;
  it.at(pkt, 0, pkt.length);
  const parts: number[] = [];
  const data: number[] = [];
  while (it.next()) {
    t.equal(it.code, 119);
    parts.push(it.length);
    data.push(...pkt.subarray(it.offset, it.offset + it.length));
  }
  t.ok(parts.length >= 2, `split into ${parts.length} options`);
  t.ok(parts.slice(0, -1).every((l) => l === 255));
  t.same(decodeDnsNameList(Uint8Array.from(data), 0, data.length, true, false), names);
  t.equal(dhcpPutDomainSearch(big, 0, m - 1, names), -1, 'one byte short');
  t.equal(dhcpPutDomainSearch(big, 0, 100, ['a..b']), -1);
});

t.test('option overload: options continue in file, then sname', async (t) => {
  const b = new Uint8Array(DHCP_FIXED_LEN + 8);
  emitDhcpHeader(b, 0, { op: 1, xid: 1, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC });
  const o = dhcpPutU8(b, DHCP_FIXED_LEN, b.length, DhcpOption.OVERLOAD, 3);
  dhcpPutEnd(b, o, b.length);
  dhcpPutEnd(b, dhcpPutU8(b, 108, 236, DhcpOption.MESSAGE_TYPE, DhcpMessageType.REQUEST), 236);
  dhcpPutEnd(b, dhcpPutIp(b, 44, 108, DhcpOption.REQUESTED_IP, ipv4(10, 0, 2, 15)), 108);
  const d = new DhcpPacket().at(b, 0, b.length);
  t.ok(d.check());
  const it = new DhcpOptionIterator().at(b, 0, b.length);
  const codes: number[] = [];
  while (it.next()) codes.push(it.code);
  t.same(codes, [52, 53, 50]);
  const opts = new DhcpOptions();
  t.ok(d.parseOptions(opts));
  t.equal(opts.messageType, DhcpMessageType.REQUEST);
  t.equal(opts.requestedIp, ipv4(10, 0, 2, 15));
});

t.test('check() errors', async (t) => {
  const b = DHCPDISCOVER_FRAME.slice(DHCP_OFFSET);
  const d = new DhcpPacket().at(b, 0, b.length);
  t.equal(d.at(b, 0, 239).problem(), DhcpError.TRUNCATED);
  b[236] = 0;
  t.equal(d.at(b, 0, b.length).problem(), DhcpError.COOKIE);
  b[236] = 0x63;
  b[279] = 0x33; // END replaced: a garbage option whose length runs past the end
  b[280] = 200;
  t.equal(d.problem(), DhcpError.OPTIONS);
  t.notOk(d.parseOptions(new DhcpOptions()));
});

t.test('every truncation fails check() or parses safely', async (t) => {
  const msg = DHCPDISCOVER_FRAME.subarray(DHCP_OFFSET);
  const o = new DhcpOptions();
  everyPrefix(msg, (b, len) => {
    const d = new DhcpPacket().at(b, 0, len);
    const r = d.problem();
    // Without END the list just stops; a cut inside an option is an error.
    if (r === DhcpError.OK) d.parseOptions(o);
    else t.ok(len < 240 || (len > 240 && len < 280), `prefix ${len}: ${r}`);
  });
});

t.test('the options writer never writes past end', async (t) => {
  property(
    t,
    'bounded writes',
    fc.property(fc.integer({ min: 0, max: 80 }), fc.integer({ min: 0, max: 80 }), (start, end) => {
      const b = new Uint8Array(100);
      let o = start;
      o = dhcpPutU8(b, o, end, 53, 1);
      o = dhcpPutU32(b, o, end, 51, 3600);
      o = dhcpPutIps(b, o, end, 6, [1, 2, 3]);
      o = dhcpPutString(b, o, end, 12, 'host');
      o = dhcpPutDomainSearch(b, o, end, ['a.example', 'b.example']);
      o = dhcpPutEnd(b, o, end);
      const dirty = b.findLastIndex((x) => x !== 0);
      return (o === -1 || o <= end) && dirty < Math.max(end, start);
    }),
  );
  t.equal(dhcpPutIps(new Uint8Array(10), 0, 10, 3, []), -1);
  t.equal(dhcpPutString(new Uint8Array(10), 0, 10, 12, ''), -1);
  t.equal(dhcpPutU8(new Uint8Array(10), -1, 10, 53, 1), -1, '-1 passes through');
});

t.test('properties', async (t) => {
  const o = new DhcpOptions();
  property(
    t,
    'random option areas never throw',
    fc.property(fc.uint8Array({ maxLength: 120 }), fc.integer({ min: 0, max: 3 }), (opts, overload) => {
      const b = new Uint8Array(DHCP_FIXED_LEN + 3 + opts.length);
      emitDhcpHeader(b, 0, { op: 1, xid: 1, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: GUEST_MAC });
      dhcpPutU8(b, DHCP_FIXED_LEN, b.length, DhcpOption.OVERLOAD, overload);
      b.set(opts, DHCP_FIXED_LEN + 3);
      b.set(opts.subarray(0, 64), 44); // garbage in sname/file too
      const s = strict(b);
      const d = new DhcpPacket().at(s, 0, b.length);
      if (d.check()) {
        d.parseOptions(o);
        if (o.paramRequestOffset >= 0) dhcpRequests(s, o, 6);
      }
    }),
  );
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const d = new DhcpPacket().at(strict(bytes), 0, bytes.length);
      if (d.check()) {
        d.parseOptions(o);
        void [d.xid, d.flags, d.yiaddr, d.giaddr];
      }
    }),
    50,
  );
  property(
    t,
    'header emit then parse round-trips',
    fc.property(
      fc.record({
        op: fc.constantFrom(1, 2),
        xid: fc.integer({ min: 0, max: 0xffffffff }),
        secs: fc.integer({ min: 0, max: 0xffff }),
        flags: fc.constantFrom(0, DHCP_FLAG_BROADCAST),
        ciaddr: fc.integer({ min: 0, max: 0xffffffff }),
        yiaddr: fc.integer({ min: 0, max: 0xffffffff }),
        siaddr: fc.integer({ min: 0, max: 0xffffffff }),
        giaddr: fc.integer({ min: 0, max: 0xffffffff }),
        chaddr: fc.uint8Array({ minLength: 6, maxLength: 6 }),
      }),
      (r) => {
        const b = new Uint8Array(DHCP_FIXED_LEN + 1);
        emitDhcpHeader(b, 0, r);
        dhcpPutEnd(b, DHCP_FIXED_LEN, b.length);
        const d = new DhcpPacket().at(b, 0, b.length);
        return (
          d.check() &&
          d.op === r.op &&
          d.xid === r.xid &&
          d.secs === r.secs &&
          d.flags === r.flags &&
          d.ciaddr === r.ciaddr &&
          d.yiaddr === r.yiaddr &&
          d.siaddr === r.siaddr &&
          d.giaddr === r.giaddr &&
          dhcpChaddrIs(b, 0, r.chaddr)
        );
      },
    ),
  );
  property(
    t,
    'domain search round-trips',
    fc.property(
      fc.array(
        fc.array(fc.constantFrom('a', 'b', 'example', 'corp', 'x1', 'test'), { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
        { minLength: 1, maxLength: 30 },
      ),
      (names) => {
        const b = new Uint8Array(2000);
        const n = dhcpPutDomainSearch(b, 0, b.length, names);
        if (n < 0) return false;
        const data: number[] = [];
        for (let p = 0; p < n; p += 2 + b[p + 1]!) data.push(...b.subarray(p + 2, p + 2 + b[p + 1]!));
        const back = decodeDnsNameList(Uint8Array.from(data), 0, data.length, true, false);
        return back !== null && back.join() === names.join();
      },
    ),
  );
});
