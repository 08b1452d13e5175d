import t from 'tap';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import * as wire from '../../src/wire/index.js';

const dir = fileURLToPath(new URL('../../src/wire/', import.meta.url));

t.test('src/wire imports nothing from node:* and nothing outside itself', async (t) => {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(dir + f, 'utf8');
    const imports = [...text.matchAll(/^import[^;]*from '([^']+)';/gm)].map((m) => m[1]!);
    for (const spec of imports) t.match(spec, /^\.\/[a-z0-9-]+\.js$/, `${f} imports ${spec}`);
    t.notMatch(text, /\bBuffer\b/, `${f} does not use Buffer`);
  }
});

t.test('every wire file opens with a comment naming what to read', async (t) => {
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
    const text = readFileSync(dir + f, 'utf8');
    t.ok(text.startsWith('//'), `${f} opens with a comment`);
    if (!['bytes.ts', 'index.ts', 'ip.ts'].includes(f)) t.match(text.slice(0, 1200), /RFC \d+/, `${f} names its RFCs`);
  }
});

t.test('index re-exports every protocol module and not names.ts', async (t) => {
  for (const name of [
    'sum16',
    'internetChecksum',
    'EthernetFrame',
    'ArpPacket',
    'IpProtocol',
    'Ipv4Packet',
    'Ipv6Packet',
    'walkIpv6Headers',
    'Icmpv4Packet',
    'Icmpv6Packet',
    'NdpRouterAdvert',
    'IgmpPacket',
    'MldMessage',
    'UdpDatagram',
    'TcpSegment',
    'DhcpPacket',
    'Dhcpv6Message',
    'emitIpv4Header',
    'emitUdpV4',
    'dhcpPutDomainSearch',
    'dhcpv6PutIaNa',
  ]) {
    t.ok(name in wire, name);
  }
  t.notOk('encodeDnsName' in wire, 'names.ts stays internal');
});
