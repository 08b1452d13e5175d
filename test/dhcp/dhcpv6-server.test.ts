import t from 'tap';
import type { Test } from 'tap';
import fc from 'fast-check';
import { Dhcpv6Server } from '../../src/dhcp/dhcpv6-server.js';
import type { Dhcpv6ServerOptions } from '../../src/dhcp/dhcpv6-server.js';
import { defaultConfig } from '../../src/iface/config.js';
import type { StackConfig } from '../../src/iface/config.js';
import { fromHex, get16, get24, get32, toHex } from '../../src/wire/bytes.js';
import { Dhcpv6Message, Dhcpv6MessageType as T, Dhcpv6Option as O, Dhcpv6Status as S } from '../../src/wire/dhcpv6.js';
import { formatIpv6, Ipv6Packet, parseIpv6 } from '../../src/wire/ipv6.js';
import { decodeDnsNameList } from '../../src/wire/names.js';
import { UdpDatagram } from '../../src/wire/udp.js';

// SOLICIT from systemd-networkd (the packet of test/wire/dhcpv6.test.ts): client id DUID-EN
// (enterprise 43793, 8-byte id), IA_NA IAID 7c3e1a2b with T1 = T2 = 0, elapsed time 0, ORO (DNS,
// domain list, NTP, SOL_MAX_RT), rapid commit, client FQDN "guest".
const NETWORKD_SOLICIT_PACKET = hex(`
  6000 0000 0050 1101 fe80 0000 0000 0000 5054 00ff fe12 3456 ff02 0000 0000 0000
  0000 0000 0001 0002 0222 0223 0050 d88b 015a 1b2c 0001 000e 0002 0000 ab11 1f0e
  2d3c 4b5a 6978 0003 000c 7c3e 1a2b 0000 0000 0000 0000 0008 0002 0000 0006 0008
  0017 0018 0038 0052 000e 0000 0027 0008 0005 6775 6573 7400`);
const NETWORKD_DUID = hex('0002 0000 ab11 1f0e 2d3c 4b5a 6978');
const NETWORKD_IAID = 0x7c3e1a2b;
const SERVER_DUID = hex('0003 0001 5255 0a00 0202');
const GUEST_LL = parseIpv6('fe80::5054:ff:fe12:3456')!;
const GUEST_DUID_LL = hex('0003 0001 5254 0012 3456');

/** The UDP payload of the captured SOLICIT, reached through its IPv6 and UDP headers. */
function networkdSolicit(): Uint8Array {
  const ip = new Ipv6Packet().at(NETWORKD_SOLICIT_PACKET, 0, NETWORKD_SOLICIT_PACKET.length);
  const udp = new UdpDatagram().at(NETWORKD_SOLICIT_PACKET, ip.payloadOffset, ip.payloadLength);
  return NETWORKD_SOLICIT_PACKET.slice(udp.payloadOffset, udp.payloadOffset + udp.payloadLength);
}

// ---- Message builders ----

function u16(v: number): number[] {
  return [v >>> 8, v & 0xff];
}
function u32(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}
function opt(code: number, ...data: (number[] | Uint8Array)[]): Uint8Array {
  const body = data.flatMap((d) => [...d]);
  return Uint8Array.of(...u16(code), ...u16(body.length), ...body);
}
function msg(type: number, xid: number, ...opts: Uint8Array[]): Uint8Array {
  return Uint8Array.of(type, (xid >>> 16) & 0xff, (xid >>> 8) & 0xff, xid & 0xff, ...opts.flatMap((o) => [...o]));
}
function iaNa(iaid: number, ...sub: Uint8Array[]): Uint8Array {
  return opt(O.IA_NA, u32(iaid), u32(0), u32(0), ...sub);
}
function iaAddr(addr: Uint8Array, pref = 0, valid = 0): Uint8Array {
  return opt(O.IAADDR, addr, u32(pref), u32(valid));
}
const clientId = (duid: Uint8Array): Uint8Array => opt(O.CLIENTID, duid);
const serverId = (duid: Uint8Array = SERVER_DUID): Uint8Array => opt(O.SERVERID, duid);
const elapsed = (cs = 0): Uint8Array => opt(O.ELAPSED_TIME, u16(cs));
const oro = (...codes: number[]): Uint8Array => opt(O.ORO, codes.flatMap(u16));

// ---- Reply parsing (independent of src/wire's parser) ----

interface Reply {
  type: number;
  xid: number;
  /** Top-level options by code, values in order. */
  opts: Map<number, Uint8Array[]>;
}

function parseOpts(b: Uint8Array): Map<number, Uint8Array[]> {
  const m = new Map<number, Uint8Array[]>();
  for (let p = 0; p < b.length;) {
    if (p + 4 > b.length) throw new Error('truncated option header');
    const code = get16(b, p);
    const len = get16(b, p + 2);
    if (p + 4 + len > b.length) throw new Error('option overruns');
    const list = m.get(code) ?? [];
    list.push(b.subarray(p + 4, p + 4 + len));
    m.set(code, list);
    p += 4 + len;
  }
  return m;
}

function parseReply(out: Uint8Array, n: number): Reply {
  const b = out.subarray(0, n);
  return { type: b[0]!, xid: get24(b, 1), opts: parseOpts(b.subarray(4)) };
}

function one(m: Map<number, Uint8Array[]>, code: number): Uint8Array {
  const v = m.get(code);
  if (v === undefined || v.length !== 1) throw new Error(`expected one option ${code}, got ${v?.length ?? 0}`);
  return v[0]!;
}

interface IaNa {
  iaid: number;
  t1: number;
  t2: number;
  addrs: { addr: string; pref: number; valid: number }[];
  status: number | undefined;
}

function parseIaNa(v: Uint8Array): IaNa {
  const sub = parseOpts(v.subarray(12));
  return {
    iaid: get32(v, 0),
    t1: get32(v, 4),
    t2: get32(v, 8),
    addrs: (sub.get(O.IAADDR) ?? []).map((a) => ({ addr: formatIpv6(a, 0), pref: get32(a, 16), valid: get32(a, 20) })),
    status: sub.has(O.STATUS_CODE) ? get16(one(sub, O.STATUS_CODE), 0) : undefined,
  };
}

function status(r: Reply): number | undefined {
  return r.opts.has(O.STATUS_CODE) ? get16(one(r.opts, O.STATUS_CODE), 0) : undefined;
}

function cfgWith(over: Partial<StackConfig> = {}): StackConfig {
  return { ...defaultConfig(), searchDomains: ['example.com', 'corp.test'], ...over };
}

function server(opts: Dhcpv6ServerOptions = {}, cfg = cfgWith()): Dhcpv6Server {
  return new Dhcpv6Server(cfg, opts);
}

const out = new Uint8Array(1500);

/** Runs a message through the server and parses the answer (undefined when there is none). */
function ask(s: Dhcpv6Server, m: Uint8Array, now = 0, src = GUEST_LL): Reply | undefined {
  out.fill(0xee);
  const n = s.handle(m, src, out, now);
  if (n === 0) return undefined;
  const view = new Dhcpv6Message().at(out, 0, n);
  if (!view.check()) throw new Error('answer does not parse');
  return parseReply(out, n);
}

/** The common part of every answer: transaction id, our DUID-LL, the client's DUID echoed. */
function checkIds(t: Test, r: Reply, xid: number, duid: Uint8Array | undefined): void {
  t.equal(r.xid, xid, 'transaction id echoed');
  t.equal(toHex(one(r.opts, O.SERVERID)), toHex(SERVER_DUID), 'server id: DUID-LL of our MAC');
  if (duid) t.equal(toHex(one(r.opts, O.CLIENTID)), toHex(duid), 'client id echoed');
  else t.notOk(r.opts.has(O.CLIENTID), 'no client id');
}

function checkInformation(t: Test, r: Reply): void {
  const dns = one(r.opts, O.DNS_SERVERS);
  t.equal(dns.length, 16);
  t.equal(formatIpv6(dns, 0), 'fec0::3', 'DNS server: config.ipv6.dns');
  const dl = one(r.opts, O.DOMAIN_LIST);
  t.same(decodeDnsNameList(dl, 0, dl.length, false, false), ['example.com', 'corp.test'], 'domain list');
}

t.test('systemd-networkd SOLICIT with Rapid Commit gets a committed REPLY (stateful)', async (t) => {
  const s = server({ stateful: true });
  const r = ask(s, networkdSolicit(), 1000)!;
  t.ok(r);
  t.equal(r.type, T.REPLY, 'REPLY, not ADVERTISE');
  checkIds(t, r, 0x5a1b2c, NETWORKD_DUID);
  t.equal(one(r.opts, O.RAPID_COMMIT).length, 0, 'rapid commit option');
  t.notOk(r.opts.has(O.PREFERENCE));
  const ia = parseIaNa(one(r.opts, O.IA_NA));
  t.equal(ia.iaid, NETWORKD_IAID);
  t.equal(ia.t1, 43200, 'T1 = 0.5 * preferred');
  t.equal(ia.t2, 69120, 'T2 = 0.8 * preferred');
  t.equal(ia.status, undefined);
  t.equal(ia.addrs.length, 1);
  const a = ia.addrs[0]!;
  t.match(a.addr, /^fec0::[0-9a-f]{3,4}$/, `an address from the prefix (${a.addr})`);
  const host = get16(parseIpv6(a.addr)!, 14);
  t.ok(host >= 0x100, 'prefix::100 + n');
  t.equal(a.pref, 86400);
  t.equal(a.valid, 86400, 'valid lifetime: config.leaseTime');
  checkInformation(t, r);
  t.notOk(r.opts.has(O.STATUS_CODE), 'no top-level status on success');
  t.equal(s.leaseCount, 1);
  t.equal(formatIpv6(s.leaseFor(NETWORKD_DUID, NETWORKD_IAID)!), a.addr);
  t.equal(s.stats.replySent, 1);
  t.equal(s.stats.solicit, 1);
});

t.test('without Rapid Commit: ADVERTISE (preference 255), then REQUEST binds the same address', async (t) => {
  const s = server({ stateful: true, rapidCommit: false });
  const adv = ask(s, networkdSolicit(), 0)!;
  t.equal(adv.type, T.ADVERTISE);
  checkIds(t, adv, 0x5a1b2c, NETWORKD_DUID);
  t.same([...one(adv.opts, O.PREFERENCE)], [255]);
  t.notOk(adv.opts.has(O.RAPID_COMMIT));
  const offered = parseIaNa(one(adv.opts, O.IA_NA)).addrs[0]!.addr;
  checkInformation(t, adv);

  const req = msg(T.REQUEST, 0x0a0b0c, clientId(NETWORKD_DUID), serverId(), iaNa(NETWORKD_IAID, iaAddr(parseIpv6(offered)!)), elapsed(), oro(23, 24));
  const rep = ask(s, req, 5000)!;
  t.equal(rep.type, T.REPLY);
  checkIds(t, rep, 0x0a0b0c, NETWORKD_DUID);
  const ia = parseIaNa(one(rep.opts, O.IA_NA));
  t.same(ia.addrs, [{ addr: offered, pref: 86400, valid: 86400 }], 'the offered address, bound');
  checkInformation(t, rep);
  t.equal(s.stats.advertiseSent, 1);
  t.equal(s.stats.replySent, 1);

  // A REQUEST for another server is not ours to answer.
  const other = msg(T.REQUEST, 1, clientId(NETWORKD_DUID), serverId(hex('0003 0001 0200 0000 0001')), iaNa(NETWORKD_IAID));
  t.equal(ask(s, other), undefined);
  t.equal(s.stats.notForUs, 1);
});

t.test('IA_PD and IA_TA are refused in the IA, IA_NA served next to them', async (t) => {
  const s = server({ stateful: true, rapidCommit: false });
  const m = msg(T.SOLICIT, 7, clientId(GUEST_DUID_LL), iaNa(1), opt(O.IA_PD, u32(9), u32(0), u32(0)), opt(O.IA_TA, u32(3)), elapsed());
  const r = ask(s, m)!;
  t.equal(r.type, T.ADVERTISE);
  t.equal(parseIaNa(one(r.opts, O.IA_NA)).addrs.length, 1);
  const pd = parseIaNa(one(r.opts, O.IA_PD));
  t.equal(pd.iaid, 9);
  t.equal(pd.status, S.NO_PREFIX_AVAIL);
  const ta = one(r.opts, O.IA_TA);
  t.equal(get32(ta, 0), 3);
  t.equal(get16(parseOpts(ta.subarray(4)).get(O.STATUS_CODE)![0]!, 0), S.NO_ADDRS_AVAIL);
});

t.test('addresses are stable per DUID and IAID, distinct across IAs and clients', async (t) => {
  const a = server({ stateful: true });
  const b = server({ stateful: true });
  const first = parseIaNa(one(ask(a, networkdSolicit())!.opts, O.IA_NA)).addrs[0]!.addr;
  const again = parseIaNa(one(ask(b, networkdSolicit(), 99_999)!.opts, O.IA_NA)).addrs[0]!.addr;
  t.equal(again, first, 'a restarted server hands out the same address');
  t.equal(parseIaNa(one(ask(a, networkdSolicit())!.opts, O.IA_NA)).addrs[0]!.addr, first, 'and so does a repeat');

  // systemd-networkd configured for DUID-LL, two IAs in one message.
  const m = msg(T.SOLICIT, 0x123456, clientId(GUEST_DUID_LL), iaNa(1), iaNa(2), elapsed(), opt(O.RAPID_COMMIT));
  const r = ask(a, m)!;
  const ias = r.opts.get(O.IA_NA)!.map(parseIaNa);
  t.same(
    ias.map((i) => i.iaid),
    [1, 2],
  );
  const addrs = new Set([first, ...ias.map((i) => i.addrs[0]!.addr)]);
  t.equal(addrs.size, 3, 'three IAs, three addresses');
  t.equal(a.leaseCount, 3);
});

t.test('RENEW and REBIND extend the binding; stale addresses come back with lifetime 0', async (t) => {
  const s = server({ stateful: true });
  const bound = parseIaNa(one(ask(s, networkdSolicit(), 0)!.opts, O.IA_NA)).addrs[0]!.addr;
  const stale = parseIpv6('2001:db8::1')!;

  const renew = msg(T.RENEW, 0x111111, clientId(NETWORKD_DUID), serverId(), iaNa(NETWORKD_IAID, iaAddr(parseIpv6(bound)!), iaAddr(stale)), elapsed());
  const r = ask(s, renew, 40_000_000)!;
  t.equal(r.type, T.REPLY);
  checkIds(t, r, 0x111111, NETWORKD_DUID);
  t.same(parseIaNa(one(r.opts, O.IA_NA)).addrs, [
    { addr: bound, pref: 86400, valid: 86400 },
    { addr: '2001:db8::1', pref: 0, valid: 0 },
  ]);
  checkInformation(t, r);

  // Past the original lifetime but within the renewed one: REBIND still finds the binding.
  const rebind = msg(T.REBIND, 0x222222, clientId(NETWORKD_DUID), iaNa(NETWORKD_IAID, iaAddr(parseIpv6(bound)!)), elapsed());
  const rb = ask(s, rebind, 100_000_000)!;
  t.equal(rb.type, T.REPLY);
  t.same(parseIaNa(one(rb.opts, O.IA_NA)).addrs, [{ addr: bound, pref: 86400, valid: 86400 }]);
  t.equal(s.stats.renew, 1);
  t.equal(s.stats.rebind, 1);

  // A server that lost its state (restart) re-creates the binding from REBIND, keeping the
  // client's address when it is one of ours and free.
  const fresh = server({ stateful: true });
  const hint = parseIpv6('fec0::1234')!;
  const rr = ask(fresh, msg(T.REBIND, 3, clientId(GUEST_DUID_LL), iaNa(5, iaAddr(hint)), elapsed()))!;
  t.same(parseIaNa(one(rr.opts, O.IA_NA)).addrs, [{ addr: 'fec0::1234', pref: 86400, valid: 86400 }]);
});

t.test('RELEASE and DECLINE', async (t) => {
  const s = server({ stateful: true });
  const bound = parseIpv6(parseIaNa(one(ask(s, networkdSolicit(), 0)!.opts, O.IA_NA)).addrs[0]!.addr)!;

  const release = msg(T.RELEASE, 0x333333, clientId(NETWORKD_DUID), serverId(), iaNa(NETWORKD_IAID, iaAddr(bound)), elapsed());
  const r = ask(s, release, 1000)!;
  t.equal(r.type, T.REPLY);
  checkIds(t, r, 0x333333, NETWORKD_DUID);
  t.equal(status(r), S.SUCCESS);
  t.notOk(r.opts.has(O.IA_NA), 'nothing to say about a released IA');
  t.equal(s.leaseCount, 0);

  const again = ask(s, release, 2000)!;
  t.equal(status(again), S.SUCCESS);
  const ia = parseIaNa(one(again.opts, O.IA_NA));
  t.equal(ia.iaid, NETWORKD_IAID);
  t.equal(ia.status, S.NO_BINDING, 'an IA without binding: NoBinding');
  t.same(ia.addrs, []);

  // Bind again, then decline: the address is kept out of the pool and the client gets another.
  const rebound = parseIpv6(parseIaNa(one(ask(s, networkdSolicit(), 3000)!.opts, O.IA_NA)).addrs[0]!.addr)!;
  t.equal(toHex(rebound), toHex(bound), 'the hashed slot again');
  const decline = msg(T.DECLINE, 0x444444, clientId(NETWORKD_DUID), serverId(), iaNa(NETWORKD_IAID, iaAddr(bound)), elapsed());
  const d = ask(s, decline, 4000)!;
  t.equal(status(d), S.SUCCESS);
  t.notOk(d.opts.has(O.IA_NA));
  const next = parseIaNa(one(ask(s, networkdSolicit(), 5000)!.opts, O.IA_NA)).addrs[0]!.addr;
  t.not(next, formatIpv6(bound), `a declined address is not handed out again (${next})`);
  t.equal(s.stats.release, 2);
  t.equal(s.stats.decline, 1);
});

t.test('CONFIRM: Success on link, NotOnLink off it, silence without addresses', async (t) => {
  const s = server({ stateful: true });
  const on = msg(T.CONFIRM, 1, clientId(GUEST_DUID_LL), iaNa(1, iaAddr(parseIpv6('fec0::1:2:3:4')!)), elapsed());
  const r = ask(s, on)!;
  t.equal(r.type, T.REPLY);
  checkIds(t, r, 1, GUEST_DUID_LL);
  t.equal(status(r), S.SUCCESS);
  const off = msg(T.CONFIRM, 2, clientId(GUEST_DUID_LL), iaNa(1, iaAddr(parseIpv6('fec0::5')!), iaAddr(parseIpv6('2001:db8::5')!)));
  t.equal(status(ask(s, off)!), S.NOT_ON_LINK);
  t.equal(ask(s, msg(T.CONFIRM, 3, clientId(GUEST_DUID_LL), iaNa(1))), undefined);
  t.equal(s.stats.unanswered, 1);
  // Stateless, the prefix is still known: CONFIRM is answered the same way.
  t.equal(status(ask(server(), on)!), S.SUCCESS);
});

t.test('stateless (default): SOLICIT gets only NoAddrsAvail; INFORMATION-REQUEST gets DNS', async (t) => {
  const s = server();
  const adv = ask(s, networkdSolicit())!;
  t.equal(adv.type, T.ADVERTISE, 'never a Rapid Commit REPLY without addresses');
  checkIds(t, adv, 0x5a1b2c, NETWORKD_DUID);
  t.equal(status(adv), S.NO_ADDRS_AVAIL);
  t.same(
    [...adv.opts.keys()].sort((a, b) => a - b),
    [O.CLIENTID, O.SERVERID, O.STATUS_CODE],
    'and nothing else',
  );
  t.equal(s.leaseCount, 0);

  // odhcp6c: client id DUID-LL, ORO with DNS, domains, refresh time, NTP; elapsed time.
  const odhcp6c = msg(T.INFORMATION_REQUEST, 0xabcdef, opt(O.ELAPSED_TIME, u16(0)), clientId(GUEST_DUID_LL), oro(23, 24, 32, 56), opt(O.RECONF_ACCEPT));
  const r = ask(s, odhcp6c)!;
  t.equal(r.type, T.REPLY);
  checkIds(t, r, 0xabcdef, GUEST_DUID_LL);
  checkInformation(t, r);
  t.equal(get32(one(r.opts, O.INFORMATION_REFRESH_TIME), 0), 86400, 'refresh time when asked');
  t.notOk(r.opts.has(O.IA_NA));

  // busybox udhcpc6 style, without a client id and without asking for the refresh time; and a
  // server without search domains sends no option 24.
  const plain = server({}, cfgWith({ searchDomains: [] }));
  const bb = ask(plain, msg(T.INFORMATION_REQUEST, 0x010203, oro(23, 24), elapsed(5)))!;
  checkIds(t, bb, 0x010203, undefined);
  t.equal(formatIpv6(one(bb.opts, O.DNS_SERVERS), 0), 'fec0::3');
  t.notOk(bb.opts.has(O.DOMAIN_LIST));
  t.notOk(bb.opts.has(O.INFORMATION_REFRESH_TIME));

  // An INFORMATION-REQUEST naming us is fine.
  t.ok(ask(s, msg(T.INFORMATION_REQUEST, 4, clientId(GUEST_DUID_LL), serverId())));

  // Binding messages without bindings.
  const renew = ask(s, msg(T.RENEW, 5, clientId(GUEST_DUID_LL), serverId(), iaNa(1, iaAddr(parseIpv6('fec0::100')!))))!;
  t.equal(parseIaNa(one(renew.opts, O.IA_NA)).status, S.NO_BINDING);
  const req = ask(s, msg(T.REQUEST, 6, clientId(GUEST_DUID_LL), serverId(), iaNa(1)))!;
  t.equal(parseIaNa(one(req.opts, O.IA_NA)).status, S.NO_ADDRS_AVAIL);
  t.equal(ask(s, msg(T.REBIND, 7, clientId(GUEST_DUID_LL), iaNa(1, iaAddr(parseIpv6('fec0::100')!)))), undefined, 'REBIND: no answer');
  t.equal(s.stats.informationRequest, 2);
});

t.test('messages RFC 8415 section 16 says to discard are dropped and counted', async (t) => {
  const s = server({ stateful: true });
  const cases: [string, Uint8Array][] = [
    ['SOLICIT without client id', msg(T.SOLICIT, 1, iaNa(1), elapsed())],
    ['SOLICIT with a server id', msg(T.SOLICIT, 1, clientId(GUEST_DUID_LL), serverId(), iaNa(1))],
    ['REQUEST without server id', msg(T.REQUEST, 1, clientId(GUEST_DUID_LL), iaNa(1))],
    ['REQUEST without client id', msg(T.REQUEST, 1, serverId(), iaNa(1))],
    ['RENEW without server id', msg(T.RENEW, 1, clientId(GUEST_DUID_LL), iaNa(1))],
    ['RELEASE without client id', msg(T.RELEASE, 1, serverId(), iaNa(1))],
    ['DECLINE without server id', msg(T.DECLINE, 1, clientId(GUEST_DUID_LL), iaNa(1))],
    ['REBIND with a server id', msg(T.REBIND, 1, clientId(GUEST_DUID_LL), serverId(), iaNa(1))],
    ['CONFIRM with a server id', msg(T.CONFIRM, 1, clientId(GUEST_DUID_LL), serverId(), iaNa(1))],
    ['CONFIRM without client id', msg(T.CONFIRM, 1, iaNa(1))],
    ['INFORMATION-REQUEST with IA_NA', msg(T.INFORMATION_REQUEST, 1, clientId(GUEST_DUID_LL), iaNa(1))],
    ['INFORMATION-REQUEST with IA_PD', msg(T.INFORMATION_REQUEST, 1, opt(O.IA_PD, u32(1), u32(0), u32(0)))],
    ['option running past the message', Uint8Array.of(...msg(T.SOLICIT, 1, clientId(GUEST_DUID_LL)), 0, 8, 0, 9, 1)],
    ['header only, 3 bytes', Uint8Array.of(T.SOLICIT, 0, 0)],
    ['client DUID of 131 bytes', msg(T.SOLICIT, 1, clientId(new Uint8Array(131).fill(7)), iaNa(1))],
  ];
  for (const [name, m] of cases) t.equal(ask(s, m), undefined, name);
  t.equal(s.stats.invalid, cases.length);
  t.equal(ask(s, msg(T.INFORMATION_REQUEST, 1, serverId(hex('0003 0001 0200 0000 0001')))), undefined, 'another server id');
  t.equal(s.stats.notForUs, 1);
  for (const type of [T.ADVERTISE, T.REPLY, T.RECONFIGURE, T.RELAY_FORW, T.RELAY_REPL, 0, 200]) {
    t.equal(ask(s, Uint8Array.of(...msg(type, 1, clientId(GUEST_DUID_LL), serverId()), ...new Uint8Array(40))), undefined, `type ${type}`);
  }
  t.equal(s.stats.unexpectedType, 7);
  t.equal(ask(s, networkdSolicit(), 0, parseIpv6('ff02::1:2')!), undefined, 'multicast source');
  t.equal(ask(s, networkdSolicit(), 0, parseIpv6('::')!), undefined, 'unspecified source');
  t.equal(s.leaseCount, 0, 'nothing bound by any of them');
  t.equal(s.stats.replySent + s.stats.advertiseSent, 0);
});

t.test('the lease table is bounded; expired leases and held offers make room', async (t) => {
  const s = server({ stateful: true, maxLeases: 3 });
  const duid = (i: number): Uint8Array => Uint8Array.of(0, 3, 0, 1, 2, 0, 0, 0, 0, i);
  const solicit = (i: number, rapid: boolean): Uint8Array => msg(T.SOLICIT, i, clientId(duid(i)), iaNa(1), elapsed(), ...(rapid ? [opt(O.RAPID_COMMIT)] : []));
  for (let i = 0; i < 3; i++) t.equal(ask(s, solicit(i, true), 0)!.type, T.REPLY, `client ${i} bound`);
  t.equal(s.leaseCount, 3);
  const full = ask(s, solicit(3, true), 1000)!;
  t.equal(full.type, T.ADVERTISE);
  t.equal(status(full), S.NO_ADDRS_AVAIL, 'table full of live bindings: NoAddrsAvail');
  t.equal(s.leaseCount, 3);
  const req = ask(s, msg(T.REQUEST, 9, clientId(duid(3)), serverId(), iaNa(1)), 1000)!;
  t.equal(parseIaNa(one(req.opts, O.IA_NA)).status, S.NO_ADDRS_AVAIL, 'a REQUEST gets NoAddrsAvail in the IA');

  // Client 0 releases: room for client 3.
  const a0 = parseIaNa(one(ask(s, solicit(0, true), 2000)!.opts, O.IA_NA)).addrs[0]!.addr;
  ask(s, msg(T.RELEASE, 1, clientId(duid(0)), serverId(), iaNa(1, iaAddr(parseIpv6(a0)!))), 2000);
  t.equal(s.leaseCount, 2);
  t.equal(ask(s, solicit(3, true), 3000)!.type, T.REPLY);

  // After the valid lifetime, leases expire and are replaced.
  const later = 86_400_000 + 10_000;
  t.equal(parseIaNa(one(ask(s, solicit(4, true), later)!.opts, O.IA_NA)).addrs.length, 1, 'an expired lease gave way');
  t.equal(s.leaseCount, 3);

  // Held offers (ADVERTISE without commit) give way to new clients too.
  const o = server({ stateful: true, maxLeases: 2, rapidCommit: false });
  for (let i = 0; i < 5; i++) t.equal(parseIaNa(one(ask(o, solicit(i, false), i)!.opts, O.IA_NA)).addrs.length, 1, `offer ${i}`);
  t.equal(o.leaseCount, 2);
});

t.test('an answer that does not fit is dropped and counted', async (t) => {
  const s = server({ stateful: true });
  t.equal(s.handle(networkdSolicit(), GUEST_LL, new Uint8Array(40), 0), 0);
  t.equal(s.stats.replyTooLarge, 1);
  t.equal(s.handle(networkdSolicit(), GUEST_LL, new Uint8Array(0), 0), 0);
});

t.test('configuration: invalid search domains are left out; no IPv6 is refused', async (t) => {
  const s = server({}, cfgWith({ searchDomains: ['good.test', 'bad..name', ''] }));
  const r = ask(s, msg(T.INFORMATION_REQUEST, 1, oro(24)))!;
  const dl = one(r.opts, O.DOMAIN_LIST);
  t.same(decodeDnsNameList(dl, 0, dl.length, false, false), ['good.test']);
  t.throws(() => new Dhcpv6Server({ ...defaultConfig(), ipv6: undefined }));
  t.throws(() => server({ maxLeases: 0 }));
});

t.test('random payloads never throw, and every answer parses', async (t) => {
  const s = server({ stateful: true, maxLeases: 8 });
  const reply = new Uint8Array(600);
  const check = (payload: Uint8Array, now: number): void => {
    const n = s.handle(payload, GUEST_LL, reply, now);
    if (n < 0 || n > reply.length) throw new Error(`bad length ${n}`);
    if (n > 0 && !new Dhcpv6Message().at(reply, 0, n).check()) throw new Error('answer does not parse');
    if (s.leaseCount > 8) throw new Error('lease table over its bound');
  };
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(1e9), (bytes, now) => check(bytes, now)),
    { numRuns: 3000 },
  );
  // Structured: valid headers with random options, including IAs with random contents.
  const anyOpt = fc.oneof(
    fc.tuple(fc.integer({ min: 0, max: 40 }), fc.uint8Array({ maxLength: 40 })).map(([c, d]) => opt(c, d)),
    fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 30 })).map(([iaid, d]) => opt(O.IA_NA, u32(iaid), u32(0), u32(0), d)),
    fc.uint8Array({ minLength: 16, maxLength: 16 }).map((a) => iaNa(1, iaAddr(a))),
    fc.constant(clientId(GUEST_DUID_LL)),
    fc.constant(serverId()),
    fc.constant(opt(O.RAPID_COMMIT)),
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 15 }), fc.array(anyOpt, { maxLength: 8 }), fc.nat(1e9), (type, opts, now) => check(msg(type, 42, ...opts), now)),
    { numRuns: 3000 },
  );
  t.pass();
});

function hex(s: string): Uint8Array {
  const b = fromHex(s);
  if (!b) throw new Error('bad hex');
  return b;
}
