// A guest frame whose link summed it while copying it (RxMeta.frameSum, Linux's
// CHECKSUM_COMPLETE): the stack verifies TCP and UDP checksums from that sum and the headers
// alone, and accepts exactly what a full verification accepts; with padding after the packet, or
// without a sum, it verifies the whole message as before.
import fc from 'fast-check';
import t from 'tap';
import { sum16 } from '../../src/wire/checksum.js';
import { parseIpv6 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GW_IP, tcpFrame, tcpFrame6, udpFrame, udpFrame6 } from '../support/packets.js';
import { property } from '../support/wire-helpers.js';

const GUEST6 = parseIpv6('fec0::5054:ff:fe12:3456')!;
const FAR6 = parseIpv6('2001:db8::1')!;
const ACK_PSH = 0x18;

function setup() {
  const env = makeStack();
  let got = 0;
  env.stack.route({ tcpInput: () => void got++, beyond: () => void got++ });
  /** Whether the stack handed the frame to TCP, given `frameSum` (undefined: none). */
  const accepts = (frame: Uint8Array, frameSum?: number): boolean => {
    const before = got;
    env.stack.receive(frame, { checksumPartial: false, ...(frameSum !== undefined ? { frameSum } : {}) });
    return got > before;
  };
  return { env, accepts };
}

const honest = (f: Uint8Array): number => sum16(f, 14, f.length - 14);

for (const family of [4, 6] as const) {
  const frameOf = (data: Uint8Array): Uint8Array =>
    family === 4 ? tcpFrame(40000, 80, 1, 1, ACK_PSH, data, { dst: GW_IP }) : tcpFrame6(40000, 80, 1, 1, ACK_PSH, { src: GUEST6, dst: FAR6, data });

  t.test(`IPv${family}: verified from the frame's sum exactly when a full verification passes`, async (t) => {
    const { accepts } = setup();
    property(
      t,
      'random payloads, a byte flipped or not',
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (data, at, flip) => {
        const f = frameOf(data);
        if (flip !== 0) f[14 + (at % (f.length - 14))]! ^= flip; // anywhere from the IP header on
        return accepts(f, honest(f)) === accepts(f.slice());
      }),
      300,
    );
    const good = frameOf(Uint8Array.from({ length: 1448 }, (_, i) => i & 0xff));
    t.ok(accepts(good, honest(good)), 'a good segment passes');
    t.notOk(accepts(good, (honest(good) + 1) % 0xffff), 'the sum is what is checked: a wrong one fails a good segment');
    const padded = new Uint8Array(good.length + 6);
    padded.set(good);
    padded.fill(0xab, good.length);
    t.ok(accepts(padded, 0x1234), 'padding after the packet: the sum is not used (the whole segment is verified)');
  });
}

for (const family of [4, 6] as const) {
  const frameOf = (data: Uint8Array): Uint8Array =>
    family === 4 ? udpFrame(40000, 53, data, { dst: 0xc6336401 }) : udpFrame6(40000, 53, data, { src: GUEST6, dst: FAR6 });

  t.test(`IPv${family} UDP beyond us: verified from the frame's sum exactly when a full verification passes`, async (t) => {
    const { accepts } = setup();
    property(
      t,
      'random payloads, a byte flipped or not',
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), fc.nat(), fc.integer({ min: 0, max: 255 }), (data, at, flip) => {
        const f = frameOf(data);
        if (flip !== 0) f[14 + (at % (f.length - 14))]! ^= flip;
        return accepts(f, honest(f)) === accepts(f.slice());
      }),
      300,
    );
    const good = frameOf(Uint8Array.from({ length: 1400 }, (_, i) => i & 0xff));
    t.ok(accepts(good, honest(good)), 'a good datagram passes');
    t.notOk(accepts(good, (honest(good) + 1) % 0xffff), 'a wrong sum fails it');
    if (family === 4) {
      const none = good.slice();
      const udpOff = 14 + 20;
      none[udpOff + 6] = 0;
      none[udpOff + 7] = 0;
      t.ok(accepts(none, 0x1234), 'IPv4 checksum zero: none to verify, whatever the sum');
    }
  });
}
