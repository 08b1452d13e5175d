import t from 'tap';
import fc from 'fast-check';
import { IpProtocol } from '../../src/wire/ip.js';
import { emitIpv4Header, formatIpv4, Ipv4Flags, Ipv4Packet } from '../../src/wire/ipv4.js';
import { parseIpv6 } from '../../src/wire/ipv6.js';
import {
  emitTcpOptions,
  emitTcpV4,
  emitTcpV6,
  formatTcpFlags,
  parseTcpOptions,
  TcpError,
  TcpFlags,
  tcpHeaderLength,
  TcpOptions,
  tcpOptionsLength,
  TcpSegment,
} from '../../src/wire/tcp.js';
import { TCP6_SACK_SEGMENT, TCP_SYN_PACKET } from '../support/captures.js';
import { everyPrefix, property, strict } from '../support/wire-helpers.js';

const SRC6 = parseIpv6('fd00::2')!;
const DST6 = parseIpv6('fe80::5054:ff:fe12:3456')!;

t.test('parse a captured SYN', async (t) => {
  const ip = new Ipv4Packet().at(TCP_SYN_PACKET, 0, TCP_SYN_PACKET.length);
  t.ok(ip.check());
  t.equal(ip.protocol, IpProtocol.TCP);
  t.equal(formatIpv4(ip.dst), '93.184.216.34');
  const s = new TcpSegment().at(TCP_SYN_PACKET, ip.payloadOffset, ip.payloadLength);
  t.ok(s.check());
  t.equal(s.srcPort, 45678);
  t.equal(s.dstPort, 80);
  t.equal(s.seq, 0x6b8b4567);
  t.equal(s.ack, 0);
  t.equal(s.headerLength, 40);
  t.equal(s.flags, TcpFlags.SYN);
  t.ok(s.syn);
  t.notOk(s.hasAck || s.fin || s.rst || s.psh || s.urg || s.ece || s.cwr);
  t.equal(s.window, 64240);
  t.equal(s.checksum, 0x0b46);
  t.equal(s.urgentPointer, 0);
  t.ok(s.verifyChecksumV4(ip.src, ip.dst));
  t.equal(s.optionsOffset, 40);
  t.equal(s.optionsLength, 20);
  t.equal(s.payloadLength, 0);
  t.equal(s.segmentLength, 1, 'SYN takes one sequence number');
  const o = new TcpOptions();
  t.ok(s.parseOptions(o));
  t.equal(o.mss, 1460);
  t.ok(o.sackPermitted);
  t.ok(o.timestamp);
  t.equal(o.tsVal, 0x9a3c01f2);
  t.equal(o.tsEcr, 0);
  t.equal(o.windowScale, 7);
  t.equal(o.sackCount, 0);
  t.equal(formatTcpFlags(s.flags), 'S');
});

t.test('emit the same SYN, options in Linux layout', async (t) => {
  const o = new TcpOptions();
  o.mss = 1460;
  o.sackPermitted = true;
  o.timestamp = true;
  o.tsVal = 0x9a3c01f2;
  o.windowScale = 7;
  t.equal(tcpOptionsLength(o), 20);
  const repr = { srcPort: 45678, dstPort: 80, seq: 0x6b8b4567, ack: 0, flags: TcpFlags.SYN, window: 64240, options: o, payloadLength: 0 };
  t.equal(tcpHeaderLength(repr), 40);
  const b = new Uint8Array(60);
  t.equal(emitTcpV4(b, 20, repr, 0x0a00020f, 0x5db8d822), 40);
  emitIpv4Header(b, 0, { src: 0x0a00020f, dst: 0x5db8d822, proto: 6, ttl: 64, id: 0x3e1f, flags: Ipv4Flags.DF, fragOffset: 0, payloadLength: 40, tos: 0 });
  t.same(b, TCP_SYN_PACKET);
  t.equal(emitTcpV4(new Uint8Array(39), 0, repr, 0, 0), -1);
});

t.test('parse and emit a segment with SACK blocks over IPv6', async (t) => {
  const s = new TcpSegment().at(TCP6_SACK_SEGMENT, 0, TCP6_SACK_SEGMENT.length);
  t.ok(s.check());
  t.ok(s.verifyChecksumV6(SRC6, 0, DST6, 0));
  t.equal(s.flags, TcpFlags.PSH | TcpFlags.ACK);
  t.equal(formatTcpFlags(s.flags), 'P.');
  t.equal(s.ack, 0x0a0b0c0d);
  t.equal(s.window, 501);
  t.equal(s.payloadLength, 5);
  t.equal(s.segmentLength, 5);
  t.equal(new TextDecoder().decode(TCP6_SACK_SEGMENT.subarray(s.payloadOffset)), 'hello');
  const o = new TcpOptions();
  t.ok(s.parseOptions(o));
  t.ok(o.timestamp);
  t.equal(o.tsVal, 1000);
  t.equal(o.tsEcr, 2000);
  t.equal(o.mss, -1);
  t.equal(o.windowScale, -1);
  t.notOk(o.sackPermitted);
  t.equal(o.sackCount, 2);
  t.same(Array.from(o.sackBlocks.subarray(0, 4)), [100, 200, 300, 400]);
  const b = new Uint8Array(TCP6_SACK_SEGMENT.length);
  b.set(TCP6_SACK_SEGMENT.subarray(52), 52);
  const n = emitTcpV6(
    b,
    0,
    { srcPort: 443, dstPort: 50000, seq: 0x01020304, ack: 0x0a0b0c0d, flags: TcpFlags.PSH | TcpFlags.ACK, window: 501, options: o, payloadLength: 5 },
    SRC6,
    DST6,
  );
  t.equal(n, 52);
  t.same(b, TCP6_SACK_SEGMENT);
});

t.test('option parsing edge cases', async (t) => {
  const o = new TcpOptions();
  const p = (bytes: number[]) => parseTcpOptions(Uint8Array.from(bytes), 0, bytes.length, o);
  t.ok(p([1, 1, 0, 2, 4, 5, 0xb4]), 'EOL stops parsing');
  t.equal(o.mss, -1);
  t.notOk(p([2, 1, 5, 0xb4]), 'length below 2');
  t.notOk(p([8, 10, 0, 0]), 'option past the end');
  t.notOk(p([1, 3]), 'no length byte');
  t.ok(p([2, 3, 5, 4, 2]), 'wrong-length MSS is ignored, the list goes on');
  t.equal(o.mss, -1);
  t.ok(o.sackPermitted);
  t.ok(p([3, 3, 15]));
  t.equal(o.windowScale, 14, 'shift counts above 14 are clamped (RFC 7323 section 2.3)');
  t.ok(p([5, 12, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0]), 'SACK length not 2 + 8n is ignored');
  t.equal(o.sackCount, 0);
  t.ok(p([254, 4, 0xf9, 0x89, 4, 2]), 'experimental option skipped');
  t.ok(o.sackPermitted);
  t.ok(p([5, 34, ...new Array<number>(32).fill(1)]));
  t.equal(o.sackCount, 4);
  t.notOk(o.addSackBlock(1, 2), 'at most four blocks');
});

t.test('option emit layouts', async (t) => {
  const o = new TcpOptions();
  const b = new Uint8Array(40);
  o.sackPermitted = true;
  t.equal(emitTcpOptions(b, 0, o), 4);
  t.same(b.subarray(0, 4), Uint8Array.of(1, 1, 4, 2));
  o.reset();
  o.timestamp = true;
  o.tsVal = 1;
  o.tsEcr = 2;
  t.equal(emitTcpOptions(b, 0, o), 12);
  t.same(b.subarray(0, 12), Uint8Array.of(1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2));
  o.reset();
  o.windowScale = 0;
  t.equal(emitTcpOptions(b, 0, o), 4);
  t.same(b.subarray(0, 4), Uint8Array.of(1, 3, 3, 0));
  o.reset();
  o.timestamp = true;
  for (let i = 0; i < 4; i++) o.addSackBlock(i, i + 1);
  t.equal(tcpOptionsLength(o), 48);
  t.equal(emitTcpOptions(b, 0, o), -1, 'over 40 bytes');
  t.equal(emitTcpV4(new Uint8Array(100), 0, { srcPort: 1, dstPort: 2, seq: 0, ack: 0, flags: 0, window: 0, options: o, payloadLength: 0 }, 0, 0), -1);
});

t.test('setters, flags and checksum refill (NAT rewrite)', async (t) => {
  const b = TCP_SYN_PACKET.slice(20);
  const s = new TcpSegment().at(b, 0, b.length);
  s.srcPort = 1024;
  s.dstPort = 8080;
  s.seq = 0xffffffff;
  s.ack = 1;
  s.flags = TcpFlags.SYN | TcpFlags.ACK | TcpFlags.ECE;
  s.window = 65535;
  s.urgentPointer = 3;
  s.fillChecksumV4(0x0a000202, 0x0a00020f);
  t.ok(s.verifyChecksumV4(0x0a000202, 0x0a00020f));
  t.equal(s.seq, 0xffffffff);
  t.ok(s.syn && s.hasAck && s.ece);
  t.equal(formatTcpFlags(s.flags), 'SE.');
  s.fillChecksumV6(SRC6, 0, DST6, 0);
  t.ok(s.verifyChecksumV6(SRC6, 0, DST6, 0));
  s.headerLength = 20;
  t.equal(s.headerLength, 20);
  t.equal(s.payloadLength, 20);
  s.flags = TcpFlags.FIN | TcpFlags.RST | TcpFlags.URG | TcpFlags.CWR;
  t.ok(s.fin && s.rst && s.urg && s.cwr);
  t.equal(formatTcpFlags(0), 'none');
});

t.test('check() errors; every truncation fails', async (t) => {
  const b = TCP_SYN_PACKET.slice(20);
  const s = new TcpSegment().at(b, 0, b.length);
  b[12] = 0x40;
  t.equal(s.problem(), TcpError.HEADER_LENGTH);
  b[12] = 0xf0;
  t.equal(s.problem(), TcpError.HEADER_LENGTH, 'header longer than the segment');
  everyPrefix(TCP_SYN_PACKET.subarray(20), (p, len) => t.notOk(new TcpSegment().at(p, 0, len).check(), `prefix ${len}`));
});

t.test('properties', async (t) => {
  const o = new TcpOptions();
  property(
    t,
    'random bytes never throw',
    fc.property(fc.uint8Array({ maxLength: 80 }), (bytes) => {
      const s = new TcpSegment().at(strict(bytes), 0, bytes.length);
      if (s.check()) {
        s.parseOptions(o);
        s.verifyChecksumV4(1, 2);
        void [s.seq, s.ack, s.flags, s.window, s.urgentPointer, s.segmentLength];
      }
    }),
  );
  property(
    t,
    'emit then parse round-trips (header, options, checksum)',
    fc.property(
      fc.record({
        srcPort: fc.integer({ min: 0, max: 0xffff }),
        dstPort: fc.integer({ min: 0, max: 0xffff }),
        seq: fc.integer({ min: 0, max: 0xffffffff }),
        ack: fc.integer({ min: 0, max: 0xffffffff }),
        flags: fc.integer({ min: 0, max: 255 }),
        window: fc.integer({ min: 0, max: 0xffff }),
      }),
      fc.option(fc.integer({ min: 0, max: 0xffff }), { nil: -1 }),
      fc.option(fc.integer({ min: 0, max: 14 }), { nil: -1 }),
      fc.boolean(),
      fc.option(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })), { nil: null }),
      fc.array(fc.tuple(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 3 }),
      fc.uint8Array({ maxLength: 50 }),
      (h, mss, ws, sackPermitted, ts, sacks, payload) => {
        const opts = new TcpOptions();
        opts.mss = mss;
        opts.windowScale = ws;
        opts.sackPermitted = sackPermitted;
        if (ts) {
          opts.timestamp = true;
          opts.tsVal = ts[0];
          opts.tsEcr = ts[1];
        }
        for (const [l, r] of sacks) opts.addSackBlock(l, r);
        const repr = { ...h, options: opts, payloadLength: payload.length };
        const hl = tcpHeaderLength(repr);
        const b = new Uint8Array(hl + payload.length);
        b.set(payload, hl);
        const n = emitTcpV4(b, 0, repr, 0x0a00020f, 0x0a000202);
        if (hl > 60) return n === -1;
        const s = new TcpSegment().at(b, 0, b.length);
        if (n !== hl || !s.check() || !s.verifyChecksumV4(0x0a00020f, 0x0a000202)) return false;
        if (s.srcPort !== h.srcPort || s.dstPort !== h.dstPort || s.seq !== h.seq || s.ack !== h.ack) return false;
        if (s.flags !== h.flags || s.window !== h.window || s.payloadLength !== payload.length) return false;
        if (!s.parseOptions(o)) return false;
        if (o.mss !== mss || o.windowScale !== ws || o.sackPermitted !== sackPermitted || o.timestamp !== !!ts) return false;
        if (ts && (o.tsVal !== ts[0] || o.tsEcr !== ts[1])) return false;
        if (o.sackCount !== sacks.length) return false;
        return sacks.every(([l, r], i) => o.sackBlocks[2 * i] === l && o.sackBlocks[2 * i + 1] === r);
      },
    ),
  );
});
