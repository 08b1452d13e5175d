// Checksum checks of frames the device summed as it copied them (RxMeta.frameSum): the stack
// reads only the head and tail around the transport range, and reaches the same verdicts as a
// full sum: good segments and datagrams pass, a flipped payload byte is dropped, over IPv4 and
// IPv6, with Ethernet padding after the packet and with odd lengths.
import t from 'tap';
import type { RxMeta } from '../../src/iface/link.js';
import { IpProtocol, emitTcpV6, emitUdpV6, ipv4, parseIpv6, sum16js } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_MAC, GW_MAC, ipv6Frame, tcpFrame, udpFrame } from '../support/packets.js';

const FAR4 = ipv4(192, 0, 2, 9);
const GUEST6 = parseIpv6('fec0::5054:ff:fe12:3456')!;
const FAR6 = parseIpv6('2001:db8::9')!;

function readyStack() {
  const env = makeStack({}, { random: () => 0.5 });
  env.stack.linkUp();
  for (let i = 0; i < 10; i++) {
    env.clock.advance(500);
    env.stack.poll();
  }
  env.link.take();
  let tcp = 0;
  let udp = 0;
  env.stack.route({ tcpInput: () => void tcp++ });
  env.stack.route({ beyond: (p) => {
    if ((p[0]! >> 4 === 4 ? p[9] : p[6]) === IpProtocol.UDP) udp++;
  } });
  return { ...env, passed: () => ({ tcp, udp }) };
}

/** As the device hands it over: the frame, with the sum of all of it. */
function summed(frame: Uint8Array): RxMeta {
  return { checksumPartial: false, summed: frame, frameSum: sum16js(frame, 0, frame.length) };
}

const data = (n: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 13 + 5) & 0xff);

function padded(f: Uint8Array, pad: number): Uint8Array {
  const p = new Uint8Array(f.length + pad).fill(0xa5);
  p.set(f);
  return p;
}

function tcp6(n: number): Uint8Array {
  const m = new Uint8Array(20 + n);
  m.set(data(n), 20);
  emitTcpV6(m, 0, { srcPort: 40000, dstPort: 80, seq: 1, ack: 1, flags: 0x18, window: 65535, payloadLength: n }, GUEST6, FAR6);
  return ipv6Frame({ src: GUEST6, dst: FAR6, srcMac: GUEST_MAC, dstMac: GW_MAC }, IpProtocol.TCP, m);
}

function udp6(n: number): Uint8Array {
  const m = new Uint8Array(8 + n);
  m.set(data(n), 8);
  emitUdpV6(m, 0, { srcPort: 40000, dstPort: 5001, payloadLength: n }, GUEST6, FAR6);
  return ipv6Frame({ src: GUEST6, dst: FAR6, srcMac: GUEST_MAC, dstMac: GW_MAC }, IpProtocol.UDP, m);
}

const cases: [string, (n: number) => Uint8Array, 'tcp' | 'udp'][] = [
  ['TCP/IPv4', (n) => tcpFrame(40000, 80, 1, 1, 0x18, data(n), { dst: FAR4 }), 'tcp'],
  ['UDP/IPv4', (n) => udpFrame(40000, 5001, data(n), { dst: FAR4 }), 'udp'],
  ['TCP/IPv6', tcp6, 'tcp'],
  ['UDP/IPv6', udp6, 'udp'],
];

for (const [name, build, kind] of cases) {
  t.test(`${name}: a summed frame is checked from its head and tail, with the verdicts of a full sum`, async (t) => {
    const { stack, passed } = readyStack();
    let want = 0;
    for (const n of [1000, 1001, 1448]) {
      for (const pad of [0, 1, 7]) {
        const good = padded(build(n), pad);
        stack.receive(good, summed(good));
        t.equal(passed()[kind], ++want, `${n} bytes, ${pad} bytes of padding: passes`);
        const bad = good.slice();
        bad[bad.length - pad - 100]! ^= 0x10;
        stack.receive(bad, summed(bad));
        t.equal(passed()[kind], want, 'a flipped payload byte: dropped');
        // A stale sum (of another frame) is never trusted for this one.
        stack.receive(bad, { checksumPartial: false, summed: good, frameSum: sum16js(good, 0, good.length) });
        t.equal(passed()[kind], want, 'the sum of another buffer is not used');
        // The whole's sum is what is checked: the good frame with a wrong one is dropped.
        stack.receive(good, { checksumPartial: false, summed: good, frameSum: (sum16js(good, 0, good.length) + 1) & 0xffff });
        t.equal(passed()[kind], want, 'a wrong whole sum: dropped (the payload was not read again)');
      }
    }
    const drops = Object.entries(stack.counters.snapshot()).filter(([k]) => k.endsWith('badChecksum')).reduce((a, [, v]) => a + v, 0);
    t.equal(drops, 27, 'each counted as a bad checksum');
  });
}
