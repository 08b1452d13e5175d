// The DHCPv4 server on its own: messages in as UDP payloads, replies checked byte for byte, the lease
// table driven by an injected clock, and malformed input counted and dropped.
import { silentLog } from '../../src/iface/log.js';
import fc from 'fast-check';
import t from 'tap';
import { DECLINE_QUARANTINE_MS, DHCPV4_CHADDR_OFFSET, Dhcpv4Server } from '../../src/dhcp/dhcpv4-server.js';
import type { Dhcpv4Reply, Dhcpv4ServerOptions } from '../../src/dhcp/dhcpv4-server.js';
import { defaultConfig, ipv4ConfigFor } from '../../src/iface/config.js';
import type { StackConfig } from '../../src/iface/config.js';
import { fromHex, toHex } from '../../src/wire/bytes.js';
import {
  DHCP_FLAG_BROADCAST,
  DhcpMessageType,
  DhcpOp,
  DhcpOption,
  DhcpOptionIterator,
  DhcpPacket,
  dhcpPadToMinimum,
  dhcpPutBytes,
  dhcpPutEnd,
  dhcpPutIp,
  dhcpPutString,
  dhcpPutU16,
  dhcpPutU8,
  emitDhcpHeader,
} from '../../src/wire/dhcpv4.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import { formatIpv4, ipv4 } from '../../src/wire/ipv4.js';

const MAC_A = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x56);
const MAC_B = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x57);
const MAC_C = Uint8Array.of(0x52, 0x54, 0x00, 0x12, 0x34, 0x58);
const SERVER = ipv4(10, 0, 2, 2);
const FIRST = ipv4(10, 0, 2, 15);
const LEASE_MS = 86_400_000;

function hex(s: string): Uint8Array {
  const b = fromHex(s);
  if (b === null) throw new Error('bad hex');
  return b;
}

// DHCPDISCOVER from busybox udhcpc 1.36.1 (`udhcpc -x hostname:vm1`) on 52:54:00:12:34:56, UDP
// payload: message type, client id (type 1 + MAC), max message size 576, parameter request list
// (1 3 6 12 15 28 42 51 54 58 59 119: udhcpc's defaults plus lease times and search), host name,
// vendor class "udhcp 1.36.1", end; zero-padded to 300 bytes like udhcpc does.
const UDHCPC_DISCOVER = (() => {
  const fixed =
    '01010600 3903f326 0000 0000 00000000 00000000 00000000 00000000' + '525400123456 00000000000000000000' + '00'.repeat(64) + '00'.repeat(128) + '63825363';
  const options = '350101' + '3d07 01525400123456' + '3902 0240' + '370c 0103060c0f1c2a33363a3b77' + '0c03 766d31' + '3c0c 756468637020312e33362e31' + 'ff';
  const b = new Uint8Array(300);
  b.set(hex(fixed + options));
  return b;
})();

/** The OFFER we owe that DISCOVER, with search domains example.com and lab.example.com. */
const EXPECTED_OFFER = hex(
  // op BOOTREPLY, htype 1, hlen 6, hops 0; xid; secs 0, flags 0; ciaddr 0; yiaddr 10.0.2.15;
  // siaddr 0; giaddr 0; chaddr; sname and file zero; cookie.
  '02010600 3903f326 0000 0000 00000000 0a00020f 00000000 00000000' +
    '525400123456 00000000000000000000' +
    '00'.repeat(64) +
    '00'.repeat(128) +
    '63825363' +
    '350102' + // 53 OFFER
    '3604 0a000202' + // 54 server id
    '3d07 01525400123456' + // 61 echoed (RFC 6842)
    '3304 00015180' + // 51 lease 86400 s
    '3a04 0000a8c0' + // 58 T1 43200 s
    '3b04 00012750' + // 59 T2 75600 s
    '0104 ffffff00' + // 1 mask, then the request list's order: 3, 6, 15, 28, 119
    '0304 0a000202' +
    '0604 0a000203' +
    '0f0b 6578616d706c652e636f6d' + // "example.com"
    '1c04 0a0002ff' +
    '7713 076578616d706c6503636f6d00 036c6162c000' + // example.com, lab + pointer to 0
    '1a02 fff0' + // 26 MTU 65520: not requested, an essential, so after the list's options
    'ff',
);

function config(over: Partial<StackConfig> = {}): StackConfig {
  return { ...defaultConfig(), searchDomains: ['example.com', 'lab.example.com'], ...over };
}

interface Msg {
  type: number;
  mac?: Uint8Array;
  xid?: number;
  flags?: number;
  ciaddr?: number;
  giaddr?: number;
  op?: number;
  clientId?: Uint8Array;
  requestedIp?: number;
  serverId?: number;
  maxSize?: number;
  prl?: number[];
  hostname?: string;
}

/** Builds a client message with the wire emitters. */
function build(m: Msg): Uint8Array {
  const b = new Uint8Array(1024);
  emitDhcpHeader(b, 0, {
    op: m.op ?? DhcpOp.BOOTREQUEST,
    xid: m.xid ?? 0x11223344,
    secs: 0,
    flags: m.flags ?? 0,
    ciaddr: m.ciaddr ?? 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: m.giaddr ?? 0,
    chaddr: m.mac ?? MAC_A,
  });
  const end = b.length;
  let o = dhcpPutU8(b, 240, end, DhcpOption.MESSAGE_TYPE, m.type);
  if (m.clientId) o = dhcpPutBytes(b, o, end, DhcpOption.CLIENT_ID, m.clientId, 0, m.clientId.length);
  if (m.requestedIp !== undefined) o = dhcpPutIp(b, o, end, DhcpOption.REQUESTED_IP, m.requestedIp);
  if (m.serverId !== undefined) o = dhcpPutIp(b, o, end, DhcpOption.SERVER_ID, m.serverId);
  if (m.maxSize !== undefined) o = dhcpPutU16(b, o, end, DhcpOption.MAX_MESSAGE_SIZE, m.maxSize);
  if (m.prl) o = dhcpPutBytes(b, o, end, DhcpOption.PARAMETER_REQUEST_LIST, Uint8Array.from(m.prl), 0, m.prl.length);
  if (m.hostname) o = dhcpPutString(b, o, end, DhcpOption.HOSTNAME, m.hostname);
  o = dhcpPutEnd(b, o, end);
  o = dhcpPadToMinimum(b, 0, o, end);
  return b.slice(0, o);
}

interface Parsed {
  type: number;
  yiaddr: number;
  ciaddr: number;
  xid: number;
  flags: number;
  chaddr: string;
  /** Option code -> value bytes (option 119 concatenated over its parts, RFC 3396). */
  options: Map<number, Uint8Array>;
  codes: number[];
}

function parse(out: Uint8Array, r: Dhcpv4Reply): Parsed {
  const p = new DhcpPacket().at(out, 0, r.length);
  if (!p.check()) throw new Error('reply does not parse');
  const options = new Map<number, Uint8Array>();
  const codes: number[] = [];
  const it = new DhcpOptionIterator().at(out, 0, r.length);
  while (it.next()) {
    codes.push(it.code);
    const v = out.slice(it.offset, it.offset + it.length);
    const prev = options.get(it.code);
    options.set(it.code, prev ? Uint8Array.from([...prev, ...v]) : v);
  }
  return {
    type: options.get(DhcpOption.MESSAGE_TYPE)?.[0] ?? -1,
    yiaddr: p.yiaddr,
    ciaddr: p.ciaddr,
    xid: p.xid,
    flags: p.flags,
    chaddr: toHex(out, p.chaddrOffset, 6),
    options,
    codes,
  };
}

/** A server with a clock and an output buffer. */
function rig(cfg: StackConfig = config(), opts: Dhcpv4ServerOptions = {}) {
  const server = new Dhcpv4Server(cfg, opts);
  const out = new Uint8Array(cfg.mtu - 28);
  let now = 1_000_000;
  const send = (payload: Uint8Array, srcIp = 0) => {
    const r = server.handle(payload, srcIp, out, now);
    return r ? { r, p: parse(out, r) } : undefined;
  };
  /** DISCOVER then REQUEST: the address bound. */
  const bind = (mac: Uint8Array, extra: Partial<Msg> = {}): number => {
    const offer = send(build({ type: DhcpMessageType.DISCOVER, mac, ...extra }));
    if (!offer) return -1;
    const ack = send(build({ type: DhcpMessageType.REQUEST, mac, serverId: cfg.ipv4.gateway, requestedIp: offer.p.yiaddr, ...extra }));
    return ack?.p.type === DhcpMessageType.ACK ? ack.p.yiaddr : -1;
  };
  return {
    server,
    out,
    send,
    bind,
    advance: (ms: number) => {
      now += ms;
    },
    now: () => now,
  };
}

t.test('udhcpc DISCOVER gets an OFFER of 10.0.2.15, byte for byte', async (t) => {
  const { server, out } = rig();
  const r = server.handle(UDHCPC_DISCOVER, 0, out, 5000);
  t.ok(r);
  t.equal(toHex(out, 0, r!.length), toHex(EXPECTED_OFFER), 'every field and option');
  t.same(r, { length: EXPECTED_OFFER.length, dstIp: FIRST, dstMac: 'client' }, 'unicast to yiaddr at chaddr');
  t.equal(toHex(out, DHCPV4_CHADDR_OFFSET, 6), '525400123456');
  t.same(server.leases(), [{ mac: '52:54:00:12:34:56', ip: FIRST, expires: 5000 + 60_000, hostname: 'vm1', state: 'offered' }]);
  t.equal(server.stats.received, 1);
  t.equal(server.stats.offers, 1);
  // The search list decodes back (RFC 3397 compression).
  const p = parse(out, r!);
  const v = p.options.get(DhcpOption.DOMAIN_SEARCH)!;
  t.same(decodeDnsNameList(v, 0, v.length, true, false), ['example.com', 'lab.example.com']);
});

t.test('without search domains there is no option 15 or 119; short replies are padded to 300 bytes', async (t) => {
  const { server, out } = rig(config({ searchDomains: [] }));
  const r = server.handle(UDHCPC_DISCOVER, 0, out, 0)!;
  t.same(parse(out, r).codes, [53, 54, 61, 51, 58, 59, 1, 3, 6, 28, 26]);
  t.equal(r.length, 305, 'END is byte 304');
  t.equal(toHex(out, 300, 5), '1a02fff0ff', 'MTU last, then END');
  const r2 = server.handle(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B }), 0, out, 0)!;
  t.same(parse(out, r2).codes, [53, 54, 51, 58, 59, 1, 3, 6, 28, 26]);
  t.equal(r2.length, 300, 'BOOTP minimum (RFC 1542)');
  t.equal(out[295], 255, 'END');
  t.ok(
    out.subarray(296, 300).every((b) => b === 0),
    'zeros after END',
  );
});

t.test('REQUEST (SELECTING) → ACK, then the lease is bound', async (t) => {
  const lines: { fields: object; msg: string }[] = [];
  const logger = { ...silentLog, info: (fields: object, msg?: string) => void lines.push({ fields, msg: msg ?? '' }) };
  const { server, send, now } = rig(config(), { logger });
  const offer = send(UDHCPC_DISCOVER)!;
  t.equal(offer.p.yiaddr, FIRST);
  const req = build({
    type: DhcpMessageType.REQUEST,
    xid: 0x3903f327,
    clientId: hex('01525400123456'),
    serverId: SERVER,
    requestedIp: FIRST,
    maxSize: 576,
    prl: [1, 3, 6, 12, 15, 28, 42, 51, 54, 58, 59, 119],
    hostname: 'vm1',
  });
  const ack = send(req)!;
  t.equal(ack.p.type, DhcpMessageType.ACK);
  t.equal(ack.p.yiaddr, FIRST);
  t.equal(ack.p.ciaddr, 0);
  t.equal(ack.p.xid, 0x3903f327, 'xid copied');
  t.equal(ack.p.chaddr, '525400123456');
  t.same(ack.p.codes, [53, 54, 61, 51, 58, 59, 1, 3, 6, 15, 28, 119, 26]);
  t.same(ack.r, { length: ack.r.length, dstIp: FIRST, dstMac: 'client' });
  t.same(server.leases(), [{ mac: '52:54:00:12:34:56', ip: FIRST, expires: now() + LEASE_MS, hostname: 'vm1', state: 'bound' }]);
  t.equal(server.stats.acks, 1);
  t.same(
    lines.filter((l) => l.msg.startsWith('dhcp: lease')),
    [{ fields: { mac: '52:54:00:12:34:56', ip: '10.0.2.15', hostname: 'vm1', leaseSeconds: LEASE_MS / 1000 }, msg: 'dhcp: lease bound' }],
    'one line for the lease, its length in seconds',
  );
});

t.test('the parameter request list decides the order; the essentials always come', async (t) => {
  const { send } = rig();
  const a = send(build({ type: DhcpMessageType.DISCOVER, prl: [119, 26, 6, 15] }))!;
  t.same(a.p.codes, [53, 54, 51, 58, 59, 119, 26, 6, 15, 1, 3, 28]);
  t.equal(toHex(a.p.options.get(DhcpOption.INTERFACE_MTU)!), 'fff0', 'MTU 65520');
  const b = send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B }))!;
  t.same(b.p.codes, [53, 54, 51, 58, 59, 1, 3, 6, 28, 26], 'no list: the essentials');
  t.equal(toHex(b.p.options.get(DhcpOption.INTERFACE_MTU)!), 'fff0', 'MTU 65520 without asking for option 26');
});

t.test('a second client gets 10.0.2.16', async (t) => {
  const { bind, server } = rig();
  t.equal(bind(MAC_A), FIRST);
  t.equal(bind(MAC_B), FIRST + 1);
  t.same(
    server.leases().map((l) => [l.mac, formatIpv4(l.ip)]),
    [
      ['52:54:00:12:34:56', '10.0.2.15'],
      ['52:54:00:12:34:57', '10.0.2.16'],
    ],
  );
});

t.test('the broadcast bit makes the OFFER and ACK broadcast', async (t) => {
  const { send } = rig();
  const o = send(build({ type: DhcpMessageType.DISCOVER, flags: DHCP_FLAG_BROADCAST }))!;
  t.same(o.r, { length: o.r.length, dstIp: 0xffffffff, dstMac: 'broadcast' });
  t.equal(o.p.flags, DHCP_FLAG_BROADCAST, 'flags copied');
  const a = send(build({ type: DhcpMessageType.REQUEST, flags: DHCP_FLAG_BROADCAST, serverId: SERVER, requestedIp: FIRST }))!;
  t.same(a.r, { length: a.r.length, dstIp: 0xffffffff, dstMac: 'broadcast' });
});

t.test('RENEWING is unicast to ciaddr and extends the lease; REBINDING too', async (t) => {
  const { bind, send, server, advance, now } = rig();
  t.equal(bind(MAC_A), FIRST);
  advance(LEASE_MS / 2);
  const renew = send(build({ type: DhcpMessageType.REQUEST, ciaddr: FIRST }), FIRST)!;
  t.equal(renew.p.type, DhcpMessageType.ACK);
  t.equal(renew.p.ciaddr, FIRST, 'ciaddr echoed');
  t.equal(renew.p.yiaddr, FIRST);
  t.same(renew.r, { length: renew.r.length, dstIp: FIRST, dstMac: 'client' });
  t.equal(server.leases()[0]!.expires, now() + LEASE_MS, 'extended');
  advance(LEASE_MS * 0.4);
  const rebind = send(build({ type: DhcpMessageType.REQUEST, ciaddr: FIRST, flags: DHCP_FLAG_BROADCAST }))!;
  t.equal(rebind.p.type, DhcpMessageType.ACK);
  t.same(rebind.r, { length: rebind.r.length, dstIp: FIRST, dstMac: 'client' }, 'ciaddr wins over the broadcast bit');
  // Renewing someone else's address is refused.
  const other = send(build({ type: DhcpMessageType.REQUEST, ciaddr: FIRST, mac: MAC_B }))!;
  t.equal(other.p.type, DhcpMessageType.NAK);
});

t.test('INIT-REBOOT: the right address is ACKed, a wrong one NAKed (broadcast)', async (t) => {
  const { bind, send, server } = rig();
  t.equal(bind(MAC_A), FIRST);
  const wrong = send(build({ type: DhcpMessageType.REQUEST, requestedIp: ipv4(10, 0, 2, 99), flags: 0 }))!;
  t.equal(wrong.p.type, DhcpMessageType.NAK);
  t.same(wrong.r, { length: wrong.r.length, dstIp: 0xffffffff, dstMac: 'broadcast' });
  t.equal(wrong.p.yiaddr, 0);
  t.equal(wrong.p.ciaddr, 0);
  t.same(wrong.p.codes, [53, 54, 56], 'type, server id, message; no lease, no configuration');
  t.equal(new TextDecoder().decode(wrong.p.options.get(DhcpOption.MESSAGE)), 'requested address not available');
  const net = send(build({ type: DhcpMessageType.REQUEST, requestedIp: ipv4(192, 168, 1, 5), mac: MAC_B, clientId: hex('01aabbccddeeff') }))!;
  t.equal(net.p.type, DhcpMessageType.NAK, 'wrong network, even from a client we do not know');
  t.equal(toHex(net.p.options.get(DhcpOption.CLIENT_ID)!), '01aabbccddeeff', 'client id echoed in the NAK');
  const gw = send(build({ type: DhcpMessageType.REQUEST, requestedIp: SERVER, mac: MAC_B }))!;
  t.equal(gw.p.type, DhcpMessageType.NAK, 'our own address is not in the pool');
  const right = send(build({ type: DhcpMessageType.REQUEST, requestedIp: FIRST }))!;
  t.equal(right.p.type, DhcpMessageType.ACK);
  t.equal(right.p.yiaddr, FIRST);
  t.equal(server.stats.naks, 3);
});

t.test('INIT-REBOOT from a client we do not know (vunet restarted): free address ACKed, taken one NAKed', async (t) => {
  const { bind, send } = rig();
  t.equal(bind(MAC_A), FIRST);
  const taken = send(build({ type: DhcpMessageType.REQUEST, mac: MAC_B, requestedIp: FIRST }))!;
  t.equal(taken.p.type, DhcpMessageType.NAK);
  const free = send(build({ type: DhcpMessageType.REQUEST, mac: MAC_B, requestedIp: ipv4(10, 0, 2, 40) }))!;
  t.equal(free.p.type, DhcpMessageType.ACK);
  t.equal(free.p.yiaddr, ipv4(10, 0, 2, 40));
  const renewUnknown = send(build({ type: DhcpMessageType.REQUEST, mac: MAC_C, ciaddr: ipv4(10, 0, 2, 41) }))!;
  t.equal(renewUnknown.p.type, DhcpMessageType.ACK, 'RENEWING too');
  t.equal(bind(hex('525400000001')), FIRST + 1, 'the next new client gets the next never-used address');
});

t.test('a REQUEST naming another server is ignored and releases our offer', async (t) => {
  const cfg = config({ ipv4: { ...defaultConfig().ipv4, dhcpCount: 1 } });
  const { send, server } = rig(cfg);
  t.equal(send(build({ type: DhcpMessageType.DISCOVER }))!.p.yiaddr, FIRST);
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B })), 'pool of one is held by the offer');
  t.notOk(send(build({ type: DhcpMessageType.REQUEST, serverId: ipv4(10, 0, 2, 1), requestedIp: ipv4(10, 0, 2, 200) })));
  t.equal(server.stats.ignored, 1);
  t.same(server.leases(), []);
  t.equal(send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B }))!.p.yiaddr, FIRST, 'the address is free again');
});

t.test('RELEASE frees the lease; the client gets the same address back', async (t) => {
  const { bind, send, server } = rig();
  t.equal(bind(MAC_A), FIRST);
  t.notOk(send(build({ type: DhcpMessageType.RELEASE, ciaddr: FIRST, serverId: SERVER })), 'no reply to a RELEASE');
  t.equal(server.stats.releases, 1);
  t.same(server.leases(), []);
  t.equal(bind(MAC_B), FIRST + 1, 'a new client gets a never-used address, not the remembered one');
  t.equal(bind(MAC_A), FIRST, 'sticky');
  // A RELEASE for an address the client does not hold changes nothing.
  send(build({ type: DhcpMessageType.RELEASE, ciaddr: FIRST, mac: MAC_C }));
  t.equal(server.leases().length, 2);
});

t.test('DECLINE quarantines the address for ten minutes', async (t) => {
  const logs: string[] = [];
  const logger = { ...silentLog, warn: (_o: object, m?: string) => void logs.push(m ?? '') };
  const { bind, send, server, advance } = rig(config(), { logger });
  t.equal(bind(MAC_A), FIRST);
  t.notOk(send(build({ type: DhcpMessageType.DECLINE, requestedIp: FIRST, serverId: SERVER })));
  t.equal(server.stats.declines, 1);
  t.match(logs, [/declined/]);
  t.same(server.leases(), []);
  t.equal(bind(MAC_A), FIRST + 1, 'the decliner gets another address');
  t.equal(bind(MAC_B), FIRST + 2, 'nobody gets the declined one');
  t.equal(send(build({ type: DhcpMessageType.REQUEST, mac: MAC_C, requestedIp: FIRST }))!.p.type, DhcpMessageType.NAK);
  advance(DECLINE_QUARANTINE_MS);
  t.equal(bind(MAC_C), FIRST, 'back in the pool');
  // A DECLINE for an address the client does not hold is ignored.
  send(build({ type: DhcpMessageType.DECLINE, requestedIp: FIRST + 1, serverId: SERVER, mac: MAC_C }));
  t.equal(server.leases().length, 3);
});

t.test('INFORM gets an ACK without lease or yiaddr, unicast to ciaddr', async (t) => {
  const { send, server } = rig();
  const addr = ipv4(10, 0, 2, 50);
  const a = send(build({ type: DhcpMessageType.INFORM, ciaddr: addr, prl: [6, 15, 119] }), addr)!;
  t.equal(a.p.type, DhcpMessageType.ACK);
  t.equal(a.p.yiaddr, 0);
  t.equal(a.p.ciaddr, addr);
  t.same(a.p.codes, [53, 54, 6, 15, 119, 1, 3, 28, 26]);
  t.same(a.r, { length: a.r.length, dstIp: addr, dstMac: 'client' });
  t.equal(server.stats.informs, 1);
  t.same(server.leases(), [], 'no lease');
  t.notOk(send(build({ type: DhcpMessageType.INFORM, ciaddr: ipv4(192, 168, 0, 9) })), 'not from our network');
});

t.test('pool exhaustion with a /28: eleven offers, then none', async (t) => {
  const v4 = ipv4ConfigFor(ipv4(192, 168, 7, 0), 28);
  t.equal(v4.dhcpFirst, ipv4(192, 168, 7, 4));
  t.equal(v4.dhcpCount, 11);
  const logs: string[] = [];
  const logger = { ...silentLog, warn: (_o: object, m?: string) => void logs.push(m ?? '') };
  const { send, server } = rig(config({ ipv4: v4 }), { logger });
  const got: number[] = [];
  for (let i = 0; i < 11; i++) got.push(send(build({ type: DhcpMessageType.DISCOVER, mac: Uint8Array.of(2, 0, 0, 0, 0, i) }))!.p.yiaddr);
  t.same(
    got.map(formatIpv4),
    Array.from({ length: 11 }, (_, i) => `192.168.7.${4 + i}`),
  );
  const o = send(build({ type: DhcpMessageType.DISCOVER, mac: Uint8Array.of(2, 0, 0, 0, 0, 99) }));
  t.equal(o, undefined, 'no offer');
  t.equal(server.stats.poolExhausted, 1);
  t.match(logs, [/exhausted/]);
  // The OFFER carries the /28's mask and broadcast.
  const again = send(build({ type: DhcpMessageType.DISCOVER, mac: Uint8Array.of(2, 0, 0, 0, 0, 0) }))!;
  t.equal(toHex(again.p.options.get(DhcpOption.SUBNET_MASK)!), 'fffffff0');
  t.equal(toHex(again.p.options.get(DhcpOption.BROADCAST_ADDRESS)!), 'c0a8070f');
  t.equal(toHex(again.p.options.get(DhcpOption.ROUTER)!), 'c0a80702');
});

t.test('leases expire on the injected clock and free addresses for others', async (t) => {
  const v4 = ipv4ConfigFor(ipv4(192, 168, 7, 0), 28);
  const { bind, send, server, advance } = rig(config({ ipv4: v4, leaseTime: 600 }));
  for (let i = 0; i < 11; i++) t.equal(bind(Uint8Array.of(2, 0, 0, 0, 0, i)), ipv4(192, 168, 7, 4 + i));
  const late = Uint8Array.of(2, 0, 0, 0, 0, 99);
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: late })));
  advance(600_000 - 1);
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: late })), 'one millisecond early');
  advance(1);
  t.equal(bind(late), ipv4(192, 168, 7, 4), 'the oldest expired address');
  t.equal(server.leases().length, 1);
  t.equal(bind(Uint8Array.of(2, 0, 0, 0, 0, 5)), ipv4(192, 168, 7, 9), 'others still get their own back');
  t.equal(bind(Uint8Array.of(2, 0, 0, 0, 0, 0)), ipv4(192, 168, 7, 5), 'the one whose address was taken gets another');
});

t.test('an OFFER holds its address for a minute only', async (t) => {
  const cfg = config({ ipv4: { ...defaultConfig().ipv4, dhcpCount: 1 } });
  const { send, advance, server } = rig(cfg);
  t.equal(send(build({ type: DhcpMessageType.DISCOVER }))!.p.yiaddr, FIRST);
  advance(59_999);
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B })));
  advance(1);
  t.equal(send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_B }))!.p.yiaddr, FIRST);
  t.equal(send(build({ type: DhcpMessageType.REQUEST, serverId: SERVER, requestedIp: FIRST }))!.p.type, DhcpMessageType.NAK, 'the first client was too slow');
  t.equal(server.stats.poolExhausted, 1);
});

t.test('the lease table is bounded: the oldest free binding makes room', async (t) => {
  const { bind, send, server, advance } = rig(config(), { maxLeases: 2 });
  t.equal(bind(MAC_A), FIRST);
  advance(1);
  t.equal(bind(MAC_B), FIRST + 1);
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: MAC_C })), 'two bound leases fill it');
  t.equal(server.stats.poolExhausted, 1);
  send(build({ type: DhcpMessageType.RELEASE, ciaddr: FIRST + 1, mac: MAC_B }));
  advance(1);
  send(build({ type: DhcpMessageType.RELEASE, ciaddr: FIRST, mac: MAC_A }));
  t.equal(bind(MAC_C), FIRST + 2, 'B (released first) evicted; C gets a never-used address');
  t.equal(bind(MAC_A), FIRST, 'A is still remembered');
  t.equal(bind(MAC_B), -1, 'table full of bound leases again');
});

t.test('client identifier keys the lease, not chaddr', async (t) => {
  const { bind } = rig();
  const cid = hex('ff00000001000100000000');
  t.equal(bind(MAC_A, { clientId: cid }), FIRST);
  t.equal(bind(MAC_B, { clientId: cid }), FIRST, 'same client id on a new NIC: same lease');
  t.equal(bind(MAC_A), FIRST + 1, 'same chaddr without the id: another client');
});

t.test('what does not fit is dropped, search list first, within the client maximum', async (t) => {
  const long = Array.from({ length: 12 }, (_, i) => `d${i}-${'x'.repeat(40)}.example.org`);
  const { send, server } = rig(config({ searchDomains: long }));
  const prl = [1, 3, 6, 15, 26, 28, 119];
  const small = send(build({ type: DhcpMessageType.DISCOVER, maxSize: 576, prl }))!;
  t.ok(small.r.length <= 548, `${small.r.length} bytes fit 576 - 28`);
  t.same(small.p.codes, [53, 54, 51, 58, 59, 1, 3, 6, 15, 26, 28], '119 dropped');

  const big = send(build({ type: DhcpMessageType.DISCOVER, maxSize: 1500, prl, mac: MAC_B }))!;
  t.ok(big.r.length <= 1472);
  const parts = big.p.codes.filter((c) => c === 119).length;
  t.equal(parts, 3, 'the search list split over three options (RFC 3396)');
  const v = big.p.options.get(DhcpOption.DOMAIN_SEARCH)!;
  t.same(decodeDnsNameList(v, 0, v.length, true, false), long);

  // A long client id and a long domain name: 15 goes too, the essentials stay.
  const longName = `${'a'.repeat(60)}.${'b'.repeat(60)}.${'c'.repeat(60)}.${'d'.repeat(60)}`;
  const s2 = new Dhcpv4Server(config({ searchDomains: [longName] }));
  const out = new Uint8Array(1500);
  const cid = new Uint8Array(200).fill(7);
  cid[0] = 0;
  const r = s2.handle(build({ type: DhcpMessageType.DISCOVER, clientId: cid, prl }), 0, out, 0)!;
  const p = parse(out, r);
  t.ok(r.length <= 548);
  t.same(p.codes, [53, 54, 61, 51, 58, 59, 1, 3, 6, 26, 28]);
  t.equal(server.stats.replyTooLarge, 0);

  // A buffer smaller than the client's maximum bounds the reply too.
  const tight = new Uint8Array(300);
  const r2 = s2.handle(build({ type: DhcpMessageType.DISCOVER, maxSize: 1500, prl, mac: MAC_C }), 0, tight, 0)!;
  t.equal(r2.length, 300, 'fits a 300-byte buffer');
  t.same(parse(tight, r2).codes, [53, 54, 51, 58, 59, 1, 3, 6, 26, 28]);
});

t.test('malformed messages are counted and dropped', async (t) => {
  const { server, out } = rig();
  let expectMalformed = 0;
  const drop = (payload: Uint8Array, what: string) => {
    t.equal(server.handle(payload, 0, out, 0), undefined, what);
    t.equal(server.stats.malformed, ++expectMalformed, `${what}: counted`);
  };
  // Truncated at every length: before 240, or inside an option, it is malformed; at an option
  // boundary after the message type it is a valid message without END.
  const body = UDHCPC_DISCOVER.slice(0, 240 + 3 + 9 + 4 + 14 + 5 + 14);
  const boundaries = new Set([240, 243, 252, 256, 270, 275]);
  for (let n = 0; n < body.length; n++) {
    const cut = body.slice(0, n);
    if (boundaries.has(n) && n > 240) {
      t.ok(server.handle(cut, 0, out, 0), `cut at option boundary ${n} answers`);
    } else if (n === 240) {
      drop(cut, 'no options at all: no message type');
    } else {
      const before = server.stats.malformed;
      t.equal(server.handle(cut, 0, out, 0), undefined);
      t.equal(server.stats.malformed, before + 1, `cut at ${n} counted`);
      expectMalformed++;
    }
  }
  const bad = (f: (b: Uint8Array) => void) => {
    const b = UDHCPC_DISCOVER.slice();
    f(b);
    return b;
  };
  drop(
    bad((b) => (b[236] = 0x64)),
    'bad cookie',
  );
  drop(
    bad((b) => (b[0] = DhcpOp.BOOTREPLY)),
    'BOOTREPLY',
  );
  drop(
    bad((b) => (b[1] = 6)),
    'htype 6',
  );
  drop(
    bad((b) => (b[2] = 16)),
    'hlen 16',
  );
  drop(
    bad((b) => (b[240] = 0)),
    'option 53 replaced by a PAD: no message type (then 01 01 is a bogus option)',
  );
  drop(
    bad((b) => (b[241] = 2)),
    'option 53 of length 2',
  );
  drop(
    bad((b) => (b[242] = 0)),
    'message type 0',
  );
  drop(
    bad((b) => (b[242] = 9)),
    'message type 9',
  );
  drop(build({ type: DhcpMessageType.OFFER }), 'a server message type');
  drop(build({ type: DhcpMessageType.ACK }), 'ACK from a client');
  drop(
    bad((b) => (b[244] = 250)),
    'client id longer than the message',
  );
  drop(
    bad((b) => b.fill(0x37, 288)),
    'trailing garbage where END was: an option runs off the end',
  );
  const noType = build({ type: 1 });
  noType[240] = DhcpOption.HOSTNAME;
  drop(noType, 'no option 53');
  t.equal(server.stats.offers, 5, 'only the five boundary cuts were answered');
});

t.test('valid messages we do not answer are counted as ignored', async (t) => {
  const { server, send } = rig();
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, giaddr: ipv4(10, 0, 2, 1) })), 'relayed');
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: Uint8Array.of(1, 0, 0x5e, 0, 0, 1) })), 'multicast chaddr');
  t.notOk(send(build({ type: DhcpMessageType.DISCOVER, mac: new Uint8Array(6) })), 'zero chaddr');
  t.notOk(send(build({ type: DhcpMessageType.REQUEST })), 'REQUEST naming no address');
  t.notOk(send(build({ type: DhcpMessageType.RELEASE, ciaddr: FIRST, serverId: ipv4(1, 2, 3, 4) })), 'RELEASE for another server');
  t.equal(server.stats.ignored, 5);
  t.equal(server.stats.malformed, 0);
  t.equal(server.stats.received, 5);
});

t.test('fast-check: random input never throws and never writes past `out`', async (t) => {
  const GUARD = 64;
  const arena = new Uint8Array(GUARD + 576 + GUARD);
  const out = arena.subarray(GUARD, GUARD + 576);
  const server = new Dhcpv4Server(config({ searchDomains: ['a.example', 'b.example'] }), { maxLeases: 4 });
  let now = 0;
  const check = (payload: Uint8Array): boolean => {
    arena.fill(0xa5);
    now += 7_000;
    const r = server.handle(payload, 0, out, now);
    for (let i = 0; i < GUARD; i++) if (arena[i] !== 0xa5 || arena[arena.length - 1 - i] !== 0xa5) return false;
    if (r === undefined) return true;
    if (r.length < 240 || r.length > out.length) return false;
    const p = new DhcpPacket().at(out, 0, r.length);
    if (!p.check() || p.op !== DhcpOp.BOOTREPLY) return false;
    return [2, 5, 6].includes(parse(out, r).type);
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), check), { numRuns: 500 });
  // Structured: a valid fixed part and well-formed options with random values (the addresses
  // mostly ours, so that every message type reaches its lease logic), sometimes junk after them.
  const header = UDHCPC_DISCOVER.slice(0, 240);
  const addr = fc.oneof(
    fc.integer({ min: 13, max: 20 }).map((h) => ipv4(10, 0, 2, h)),
    fc.constant(0),
    fc.integer({ min: 0, max: 0xffffffff }),
  );
  const ipBytes = addr.map((a) => Uint8Array.of(a >>> 24, a >>> 16, a >>> 8, a));
  const option = fc.oneof(
    fc.record({ code: fc.constantFrom(50, 54), value: fc.oneof(ipBytes, fc.constant(Uint8Array.of(10, 0, 2, 2))) }),
    fc.record({ code: fc.constant(57), value: fc.uint8Array({ minLength: 2, maxLength: 2 }) }),
    fc.record({ code: fc.constant(55), value: fc.uint8Array({ maxLength: 30 }) }),
    fc.record({ code: fc.constant(61), value: fc.uint8Array({ maxLength: 12 }) }),
    fc.record({ code: fc.integer({ min: 1, max: 254 }), value: fc.uint8Array({ maxLength: 16 }) }),
  );
  let answered = 0;
  fc.assert(
    fc.property(
      fc.oneof({ weight: 4, arbitrary: fc.constantFrom(1, 3, 4, 7, 8) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 9 }) }),
      fc.array(option, { maxLength: 8 }),
      fc.oneof({ weight: 4, arbitrary: fc.constant(new Uint8Array(0)) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 6 }) }),
      addr,
      fc.uint8Array({ minLength: 4, maxLength: 4 }),
      (type, options, junk, ciaddr, fields) => {
        const parts = [Uint8Array.of(53, 1, type), ...options.map((o) => Uint8Array.of(o.code, o.value.length, ...o.value)), junk];
        const b = new Uint8Array(240 + parts.reduce((n, p) => n + p.length, 0));
        b.set(header);
        let at = 240;
        for (const p of parts) {
          b.set(p, at);
          at += p.length;
        }
        b[10] = fields[0]! & 0x80; // broadcast flag
        b.set([ciaddr >>> 24, ciaddr >>> 16, ciaddr >>> 8, ciaddr], 12);
        b[28 + 5] = fields[1]! & 7; // a few distinct clients
        if ((fields[2]! & 15) === 0) b[27] = 1; // giaddr, sometimes
        const before = server.stats.offers + server.stats.acks + server.stats.naks;
        const ok = check(b);
        if (server.stats.offers + server.stats.acks + server.stats.naks > before) answered++;
        return ok;
      },
    ),
    { numRuns: 3000 },
  );
  t.ok(answered > 300, `${answered} of the structured messages were answered`);
  t.ok(server.stats.received > 0);
  t.pass('properties hold');
});
