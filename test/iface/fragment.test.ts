// Fragmentation on output: offsets, MF, sizes within the MTU, copied options, checksums, and the
// pieces put back together give the original.
import t from 'tap';
import { fragmentIpv4, fragmentIpv6 } from '../../src/iface/fragment.js';
import { IpProtocol, Ipv4Packet, Ipv6FragmentHeader, emitIpv4Header, emitIpv6Header, parseIpv6 } from '../../src/wire/index.js';

t.test('IPv4: a 4000-byte datagram at MTU 1500', async (t) => {
  const payload = Uint8Array.from({ length: 4000 }, (_, i) => (i * 13) & 0xff);
  const p = new Uint8Array(20 + 4000);
  p.set(payload, 20);
  emitIpv4Header(p, 0, { src: 0xc0000209, dst: 0x0a00020f, proto: IpProtocol.UDP, ttl: 63, id: 77, flags: 0, fragOffset: 0, payloadLength: 4000, tos: 0 });
  const frags: Uint8Array[] = [];
  t.ok(fragmentIpv4(p, 1500, new Uint8Array(1500), (f) => frags.push(f.slice())));
  t.same(
    frags.map((f) => f.length),
    [1500, 1500, 1060],
  );
  const back = new Uint8Array(4000);
  frags.forEach((f, i) => {
    const ip = new Ipv4Packet().at(f, 0, f.length);
    t.ok(ip.check());
    t.ok(ip.verifyChecksum(), `fragment ${i} checksum`);
    t.equal(ip.ident, 77);
    t.equal(ip.moreFragments, i < 2, 'MF on all but the last');
    t.equal(ip.fragOffset, i * 1480, 'offsets in 8-byte units');
    back.set(f.subarray(20), ip.fragOffset);
  });
  t.same(back, payload, 'pieces give the original payload');
  const df = p.slice();
  df[6] = 0x40;
  t.notOk(
    fragmentIpv4(df, 1500, new Uint8Array(1500), () => undefined),
    'DF set: refused',
  );
});

t.test('IPv4: only options with the copy bit go into later fragments', async (t) => {
  const opts = Uint8Array.of(0x94, 4, 0, 0, 7, 7, 0, 0); // router alert (copied), record route (not)
  const p = new Uint8Array(28 + 3000);
  emitIpv4Header(p, 0, { src: 1, dst: 2, proto: 17, ttl: 9, id: 5, flags: 0, fragOffset: 0, payloadLength: 3000, tos: 0, options: opts });
  const frags: Uint8Array[] = [];
  fragmentIpv4(p, 1500, new Uint8Array(1500), (f) => frags.push(f.slice()));
  t.equal((frags[0]![0]! & 15) * 4, 28, 'first fragment keeps every option');
  t.equal((frags[1]![0]! & 15) * 4, 24, 'later ones keep the copied option only');
  t.same([...frags[1]!.subarray(20, 24)], [0x94, 4, 0, 0]);
});

t.test('IPv6: we fragment what we originate, with a fragment header', async (t) => {
  const src = parseIpv6('2001:db8::9')!;
  const dst = parseIpv6('fec0::15')!;
  const payload = Uint8Array.from({ length: 4000 }, (_, i) => i & 0xff);
  const p = new Uint8Array(40 + 4000);
  p.set(payload, 40);
  emitIpv6Header(p, 0, { src, dst, nextHeader: IpProtocol.UDP, hopLimit: 63, payloadLength: 4000 });
  const frags: Uint8Array[] = [];
  t.ok(fragmentIpv6(p, 1500, 0xabcdef, new Uint8Array(1500), (f) => frags.push(f.slice())));
  t.ok(frags.every((f) => f.length <= 1500));
  const back = new Uint8Array(4000);
  for (const f of frags) {
    t.equal(f[6], 44, 'next header: fragment');
    t.equal((f[4]! << 8) | f[5]!, f.length - 40, 'payload length');
    const fh = new Ipv6FragmentHeader().at(f, 40, 8);
    t.equal(fh.nextHeader, IpProtocol.UDP);
    t.equal(fh.ident, 0xabcdef);
    back.set(f.subarray(48), fh.fragOffset);
  }
  t.notOk(new Ipv6FragmentHeader().at(frags.at(-1)!, 40, 8).moreFragments);
  t.same(back, payload);
});
