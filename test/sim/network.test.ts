// The simulated network on its own: a fake port plays the gateway's guest side and the clock.
// Packets are built as the guest sends them; what comes back is checked field by field, with the
// simulated time it arrives at.
import { readFileSync } from 'node:fs';
import t from 'tap';
import { SimNetwork } from '../../src/sim/network.js';
import type { SimPort } from '../../src/sim/network.js';
import { parseTopology } from '../../src/sim/topology-file.js';
import {
  IpProtocol,
  TcpFlags,
  emitIcmpv4,
  emitIcmpv6,
  emitIpv4Header,
  emitIpv6Header,
  emitTcpV4,
  emitUdpV4,
  formatIpv4,
  formatIpv6,
  ipv4Read,
  parseIpv6,
  verifyChecksum,
} from '../../src/wire/index.js';

const GUEST = 0x0a00020f;
const GUEST6 = parseIpv6('fec0::15')!;
const TARGET = 0xc633640a; // 198.51.100.10
const TARGET6 = parseIpv6('2001:db8:100::10')!;

class Port implements SimPort {
  time = 0;
  got: { at: number; family: 4 | 6; p: Uint8Array }[] = [];
  now(): number {
    return this.time;
  }
  toGuest(family: 4 | 6, p: Uint8Array): void {
    this.got.push({ at: this.time, family, p: p.slice() });
  }
  gatewayAddress(family: 4 | 6): Uint8Array {
    return family === 4 ? Uint8Array.of(10, 0, 2, 2) : parseIpv6('fec0::2')!;
  }
  /** Runs the network's clock to `until`, one ms at a time. */
  run(net: SimNetwork, until: number): void {
    while (this.time < until) {
      this.time = Math.min(until, Math.max(this.time + 0.5, Math.min(net.pollAt(), until)));
      net.poll(this.time);
    }
  }
}

function load(file: string): SimNetwork['topology'] {
  return parseTopology(readFileSync(new URL(`../../examples/topologies/${file}`, import.meta.url), 'utf8'), file);
}

function setup(file = 'three-hops.yaml') {
  const port = new Port();
  const net = new SimNetwork(load(file), port);
  return { port, net };
}

function ping4(dst: number, ttl: number, opts: { size?: number; df?: boolean; seq?: number } = {}): Uint8Array {
  const size = opts.size ?? 56;
  const b = new Uint8Array(28 + size);
  for (let i = 0; i < size; i++) b[28 + i] = i & 0xff;
  emitIcmpv4(b, 20, { type: 8, code: 0, rest: (0x1234 << 16) | (opts.seq ?? 1), payloadLength: size });
  emitIpv4Header(b, 0, {
    src: GUEST,
    dst,
    proto: IpProtocol.ICMP,
    ttl,
    id: 7,
    flags: opts.df === true ? 2 : 0,
    fragOffset: 0,
    payloadLength: 8 + size,
    tos: 0,
  });
  return b;
}

function ping6(dst: Uint8Array, hops: number, size = 56): Uint8Array {
  const b = new Uint8Array(48 + size);
  emitIcmpv6(b, 40, { type: 128, code: 0, rest: (0x1234 << 16) | 1, payloadLength: size }, GUEST6, dst);
  emitIpv6Header(b, 0, { src: GUEST6, dst, nextHeader: IpProtocol.ICMPV6, hopLimit: hops, payloadLength: 8 + size });
  return b;
}

function udp4(dst: number, port: number, ttl: number, payload = 'probe'): Uint8Array {
  const data = new TextEncoder().encode(payload);
  const b = new Uint8Array(28 + data.length);
  b.set(data, 28);
  emitUdpV4(b, 20, { srcPort: 40000, dstPort: port, payloadLength: data.length }, GUEST, dst);
  emitIpv4Header(b, 0, { src: GUEST, dst, proto: IpProtocol.UDP, ttl, id: 9, flags: 0, fragOffset: 0, payloadLength: 8 + data.length, tos: 0 });
  return b;
}

function tcp4(dst: number, port: number, flags: number, seq: number, ack: number, payload = ''): Uint8Array {
  const data = new TextEncoder().encode(payload);
  const b = new Uint8Array(40 + data.length);
  b.set(data, 40);
  emitTcpV4(b, 20, { srcPort: 41000, dstPort: port, seq, ack, flags, window: 65535, payloadLength: data.length }, GUEST, dst);
  emitIpv4Header(b, 0, { src: GUEST, dst, proto: IpProtocol.TCP, ttl: 64, id: 11, flags: 2, fragOffset: 0, payloadLength: 20 + data.length, tos: 0 });
  return b;
}

/** Source, TTL, ICMP type/code of an IPv4 packet the guest got, and its checksums' validity. */
function icmp4(p: Uint8Array) {
  return {
    from: formatIpv4(ipv4Read(p, 12)),
    ttl: p[8],
    type: p[20],
    code: p[21],
    ipOk: verifyChecksum(p, 0, 20),
    icmpOk: verifyChecksum(p, 20, p.length - 20),
  };
}

t.test('the example file loads; errors name the line', async (t) => {
  const topo = load('three-hops.yaml');
  t.equal(topo.nodes.length, 4);
  t.equal(topo.nat, false);
  t.throws(() => parseTopology('routers:\n  r1:\n    addresses: [10.0.0.1]\n    colour: red\n', 'f.yaml'), /^f\.yaml:4: routers\.r1\.colour: unknown key/);
  t.throws(
    () => parseTopology('routers:\n  r1:\n    addresses:\n      - 10.0.0.300\n', 'f.yaml'),
    /^f\.yaml:4: .*10\.0\.0\.300 is not an IPv4 or IPv6 address/,
  );
  t.throws(
    () => parseTopology('routers:\n  r1: { addresses: [10.0.0.1] }\nlinks:\n  - { between: [gateway, r9] }\n', 'f.yaml'),
    /^f\.yaml:4: links\.0\.between\.1: no node is named r9/,
  );
  t.throws(() => parseTopology('routers:\n  r1: { addresses: [10.0.0.1] }\n', 'f.yaml'), /r1 has no link/);
  t.throws(() => parseTopology('links: [\n', 'f.yaml'), /^f\.yaml:\d+: /);
  t.throws(() => parseTopology('hosts:\n  h: { addresses: [10.0.0.1, 10.0.0.1] }\n', 'f.yaml'), /already h's/);
});

t.test('an http body from a file, read through the loader; a file without one is an error', async (t) => {
  const text =
    'hosts:\n  h:\n    addresses: [198.51.100.1]\n    services:\n      - { tcp: 80, serve: http, file: page.html }\nlinks:\n  - { between: [gateway, h] }\n';
  const asked: string[] = [];
  const topo = parseTopology(text, 'f.yaml', (path) => {
    asked.push(path);
    return Uint8Array.of(0x3c, 0x70, 0x3e);
  });
  t.same(asked, ['page.html']);
  t.same([...topo.nodes[1]!.services[0]!.body], [0x3c, 0x70, 0x3e]);
  t.throws(() => parseTopology(text, 'f.yaml'), /^f\.yaml:5: .*file: files are read only for a topology file/);
  t.throws(
    () =>
      parseTopology(text, 'f.yaml', () => {
        throw new Error('ENOENT');
      }),
    /cannot read page\.html: ENOENT/,
  );
});

t.test('ping the target: the reply comes from it after the round trip, three routers older', async (t) => {
  const { port, net } = setup();
  t.ok(net.claims(4, ping4(TARGET, 64), 16));
  net.input(4, ping4(TARGET, 64));
  port.run(net, 100);
  t.equal(port.got.length, 1);
  const r = port.got[0]!;
  t.equal(r.at, 30, '5 ms each way on three links');
  t.same(icmp4(r.p), { from: '198.51.100.10', ttl: 61, type: 0, code: 0, ipOk: true, icmpOk: true }, 'TTL 64 less r2, r1 and the gateway');
  t.equal(r.p[24] === 0x12 && r.p[25] === 0x34 && r.p[27] === 1, true, 'identifier and sequence kept');
});

t.test('traceroute: each TTL dies at the next router, which answers from its address', async (t) => {
  const { port, net } = setup();
  for (const ttl of [2, 3, 4]) net.input(4, ping4(TARGET, ttl, { seq: ttl }));
  port.run(net, 100);
  const seen = port.got.map((g) => ({ at: g.at, ...icmp4(g.p) }));
  t.same(
    seen.map((s) => [s.at, s.from, s.type]),
    [
      [10, '203.0.113.1', 11],
      [20, '203.0.113.2', 11],
      [30, '198.51.100.10', 0],
    ],
  );
  t.ok(seen.every((s) => s.ipOk && s.icmpOk));
  const quote = port.got[0]!.p.subarray(28);
  t.equal(quote[8], 1, 'the quoted header shows the TTL it arrived with');
  t.ok(verifyChecksum(quote, 0, 20), 'and a valid header checksum');
});

t.test('UDP: port unreachable from the target for a closed port; echo on port 7; TTL as for ICMP', async (t) => {
  const { port, net } = setup();
  net.input(4, udp4(TARGET, 33434, 64));
  net.input(4, udp4(TARGET, 7, 64, 'hello'));
  net.input(4, udp4(TARGET, 33435, 3));
  port.run(net, 100);
  const [te, unreach, echo] = [port.got[0]!, port.got[1]!, port.got[2]!];
  t.same([te.at, icmp4(te.p).from, icmp4(te.p).type], [20, '203.0.113.2', 11]);
  t.same([unreach.at, icmp4(unreach.p).from, icmp4(unreach.p).type, icmp4(unreach.p).code], [30, '198.51.100.10', 3, 3]);
  t.equal(echo.p[9], IpProtocol.UDP);
  t.equal(new TextDecoder().decode(echo.p.subarray(28)), 'hello');
  t.ok(verifyChecksum(echo.p, 0, 20));
});

t.test('DF too big for the last link: fragmentation needed from r2 with its MTU; without DF it goes', async (t) => {
  const { port, net } = setup();
  net.input(4, ping4(TARGET, 64, { size: 3972, df: true }));
  net.input(4, ping4(TARGET, 64, { size: 3972, df: false, seq: 2 }));
  port.run(net, 100);
  const e = icmp4(port.got[0]!.p);
  t.same([port.got[0]!.at, e.from, e.type, e.code], [20, '203.0.113.2', 3, 4]);
  t.equal((port.got[0]!.p[26]! << 8) | port.got[0]!.p[27]!, 1400, 'next-hop MTU');
  t.equal(icmp4(port.got[1]!.p).type, 0, 'without DF: fragmented on the link, answered');
});

t.test('TCP: closed port refused with RST; port 80 serves HTTP', async (t) => {
  const { port, net } = setup();
  net.input(4, tcp4(TARGET, 81, TcpFlags.SYN, 1000, 0));
  net.input(4, tcp4(TARGET, 80, TcpFlags.SYN, 5000, 0));
  port.run(net, 50);
  const rst = port.got[0]!.p;
  t.equal(rst[33]! & 0x14, 0x14, 'RST+ACK for the SYN to 81');
  const synAck = port.got[1]!.p;
  t.equal(synAck[33]! & 0x12, 0x12, 'SYN-ACK from 80');
  t.equal(port.got[1]!.at, 30);
  const iss = ((synAck[24]! << 24) | (synAck[25]! << 16) | (synAck[26]! << 8) | synAck[27]!) >>> 0;
  net.input(4, tcp4(TARGET, 80, TcpFlags.ACK, 5001, iss + 1));
  net.input(4, tcp4(TARGET, 80, TcpFlags.ACK | TcpFlags.PSH, 5001, iss + 1, 'GET / HTTP/1.0\r\n\r\n'));
  port.run(net, 200);
  const text = port.got
    .slice(2)
    .map((g) => new TextDecoder().decode(g.p.subarray(20 + (g.p[32]! >> 4) * 4)))
    .join('');
  t.match(text, /^HTTP\/1\.0 200 OK\r\n/);
  t.match(text, /\r\n\r\nhello from target\n$/);
  t.ok(
    port.got.slice(2).some((g) => (g.p[33]! & TcpFlags.FIN) !== 0),
    'the server closes after its answer',
  );
});

t.test('IPv6: echo, hop limit exceeded at r1, packet too big from r2', async (t) => {
  const { port, net } = setup();
  net.input(6, ping6(TARGET6, 64));
  net.input(6, ping6(TARGET6, 2));
  net.input(6, ping6(TARGET6, 64, 1500));
  port.run(net, 100);
  const by = port.got.map((g) => [g.at, formatIpv6(g.p, 8), g.p[40], g.p[7]]);
  t.same(by, [
    [10, '2001:db8:1::1', 3, 63],
    [20, '2001:db8:2::1', 2, 62],
    [30, '2001:db8:100::10', 129, 61],
  ]);
  const ptb = port.got[1]!.p;
  t.equal(((ptb[44]! << 24) | (ptb[45]! << 16) | (ptb[46]! << 8) | ptb[47]!) >>> 0, 1400);
});

t.test('nat off: what the topology does not claim is net unreachable from the gateway', async (t) => {
  const { port, net } = setup();
  const p = ping4(0x08080808, 64);
  t.ok(net.claims(4, p, 16));
  net.input(4, p);
  port.run(net, 10);
  t.same([icmp4(port.got[0]!.p).from, icmp4(port.got[0]!.p).type, icmp4(port.got[0]!.p).code], ['10.0.2.2', 3, 0]);
});

t.test('ICMP errors are rate limited per destination as Linux does (a burst of six, then one a second)', async (t) => {
  const topo = parseTopology(
    'nat: off\nrouters:\n  r1: { addresses: [203.0.113.1] }\nhosts:\n  h: { addresses: [198.51.100.1] }\nlinks:\n  - { between: [gateway, r1] }\n  - { between: [r1, h] }\n',
  );
  const port = new Port();
  const net = new SimNetwork(topo, port);
  for (let i = 0; i < 10; i++) net.input(4, ping4(0xc6336401, 2, { seq: i }));
  port.run(net, 5);
  t.equal(port.got.length, 6, 'six at once');
  port.time = 1000;
  for (let i = 0; i < 3; i++) net.input(4, ping4(0xc6336401, 2, { seq: i }));
  port.run(net, 1005);
  t.equal(port.got.length, 7, 'then one a second');
  t.equal(net.stats.rateLimited, 6);
});

t.test('loss and jitter are drawn from the seed: the same packets meet the same fate', async (t) => {
  const runs = [0, 1].map(() => {
    const { port, net } = setup('lossy.yaml');
    for (let i = 0; i < 200; i++) net.input(4, ping4(TARGET, 64, { seq: i }));
    port.run(net, 500);
    return port.got.map((g) => `${(g.p[26]! << 8) | g.p[27]!}@${g.at.toFixed(3)}`);
  });
  t.same(runs[0], runs[1]);
  const n = runs[0]!.length;
  t.ok(n > 160 && n < 198, `about 10 % lost (${200 - n} of 200)`);
});

t.test('what a file says: filtered, silent, a host that is down, routes to nowhere, a link rate', async (t) => {
  const topo = parseTopology(
    [
      'nat: off',
      'resolve-ms: 100',
      'routers:',
      '  r1: { addresses: [203.0.113.1], unreachable: [192.0.2.0/24] }',
      'hosts:',
      '  h:',
      '    addresses: [198.51.100.1]',
      '    filtered: [{ tcp: 22 }, { udp: 53 }]',
      '    silent: [{ tcp: 23 }, { udp: 9 }]',
      '  gone: { addresses: [198.51.100.2], down: true }',
      'links:',
      '  - { between: [gateway, r1], rate: 8mbit }',
      '  - { between: [r1, h] }',
      '  - { between: [r1, gone] }',
    ].join('\n'),
    'f.yaml',
  );
  const port = new Port();
  const net = new SimNetwork(topo, port);
  const H = 0xc6336401;
  net.input(4, tcp4(H, 22, TcpFlags.SYN, 1, 0));
  net.input(4, udp4(H, 53, 64));
  net.input(4, tcp4(H, 23, TcpFlags.SYN, 1, 0));
  net.input(4, udp4(H, 9, 64));
  port.run(net, 10);
  t.same(
    port.got.map((g) => [icmp4(g.p).from, icmp4(g.p).type, icmp4(g.p).code]),
    [
      ['198.51.100.1', 3, 13],
      ['198.51.100.1', 3, 13],
    ],
    'filtered ports: administratively prohibited from the host; silent ports: nothing',
  );
  port.got = [];
  const sent = port.time;
  net.input(4, ping4(0xc6336402, 64));
  port.run(net, sent + 50);
  t.equal(port.got.length, 0, 'a host that is down: nothing until resolution gives up');
  port.run(net, sent + 200);
  t.same(
    [icmp4(port.got[0]!.p).from, icmp4(port.got[0]!.p).type, icmp4(port.got[0]!.p).code],
    ['203.0.113.1', 3, 1],
    'then host unreachable from the router before it',
  );
  t.ok(port.got[0]!.at - sent >= 100, `after resolve-ms (${(port.got[0]!.at - sent).toFixed(1)} ms)`);
  port.got = [];
  net.input(4, ping4(0xc0000263, 64));
  port.run(net, 300);
  t.same(
    [icmp4(port.got[0]!.p).from, icmp4(port.got[0]!.p).type, icmp4(port.got[0]!.p).code],
    ['203.0.113.1', 3, 0],
    'a route to nowhere: net unreachable from its router',
  );
  // 8 Mbit/s: a 1000-byte packet takes 1 ms to send; ten sent at once queue behind each other.
  port.got = [];
  const start = port.time;
  for (let i = 0; i < 10; i++) net.input(4, ping4(H, 64, { size: 972, seq: i }));
  port.run(net, start + 100);
  const last = port.got.at(-1)!.at - start;
  t.ok(last >= 10 && last < 13, `ten 1000-byte packets queue at the link's rate both ways (the last back after ${last} ms)`);
});

t.test('never an ICMP error about an ICMP error', async (t) => {
  const { port, net } = setup();
  // The guest's port unreachable toward the target, with a TTL that dies at r1.
  const b = new Uint8Array(20 + 8 + 28);
  emitIcmpv4(b, 20, { type: 3, code: 3, rest: 0, payloadLength: 28 });
  emitIpv4Header(b, 0, { src: GUEST, dst: TARGET, proto: IpProtocol.ICMP, ttl: 2, id: 1, flags: 0, fragOffset: 0, payloadLength: 36, tos: 0 });
  net.input(4, b);
  net.input(4, ping4(TARGET, 2));
  port.run(net, 50);
  t.equal(port.got.length, 1, 'only the echo request got its time exceeded');
  t.equal(icmp4(port.got[0]!.p).type, 11);
});
