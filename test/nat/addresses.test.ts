// The address rules every NAT part shares (addresses.ts): which of our addresses a destination is,
// where the gateway maps, and who a forwarded client appears to be.
import t from 'tap';
import { defaultConfig } from '../../src/iface/config.js';
import { clientAsSeen, isLoopback, loopback, serviceAddress } from '../../src/nat/addresses.js';
import { ipv4, parseIpv6 } from '../../src/wire/index.js';

const c = defaultConfig();
const v4 = (a: number): Uint8Array => Uint8Array.of(a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff);

t.test('service addresses: the gateway (IPv6: and fe80::2) and the DNS address, nothing else', async (t) => {
  t.equal(serviceAddress(c, 4, v4(c.ipv4.gateway)), 'gateway');
  t.equal(serviceAddress(c, 4, v4(c.ipv4.dns)), 'dns');
  t.equal(serviceAddress(c, 4, v4(ipv4(10, 0, 2, 15))), undefined, 'the guest');
  t.equal(serviceAddress(c, 4, v4(ipv4(192, 0, 2, 1))), undefined, 'beyond');
  const packet = new Uint8Array(40);
  packet.set(v4(c.ipv4.gateway), 16);
  t.equal(serviceAddress(c, 4, packet, 16), 'gateway', 'read in place');
  t.ok(c.ipv6, 'IPv6 on by default');
  t.equal(serviceAddress(c, 6, c.ipv6!.gateway), 'gateway');
  t.equal(serviceAddress(c, 6, parseIpv6('fe80::2')!), 'gateway', 'the router our advertisements name');
  t.equal(serviceAddress(c, 6, c.ipv6!.dns), 'dns');
  t.equal(serviceAddress(c, 6, parseIpv6('2001:db8::1')!), undefined);
  t.equal(serviceAddress({ ...c, ipv6: undefined }, 6, parseIpv6('fe80::2')!), undefined, 'no IPv6: none of ours');
});

t.test('the gateway maps to loopback; loopback and clients as the guest sees them', async (t) => {
  t.same([...loopback(4)], [127, 0, 0, 1]);
  t.same([...loopback(6)], [...parseIpv6('::1')!]);
  t.ok(isLoopback(Uint8Array.of(127, 9, 9, 9)));
  t.ok(isLoopback(parseIpv6('::ffff:127.0.0.1')!));
  t.notOk(isLoopback(parseIpv6('::2')!));
  t.same([...clientAsSeen(c, 4, Uint8Array.of(127, 0, 0, 1))], [...v4(c.ipv4.gateway)], 'a loopback client appears as the gateway');
  t.same([...clientAsSeen(c, 4, Uint8Array.of(192, 0, 2, 7))], [192, 0, 2, 7], 'a remote client as itself');
});
