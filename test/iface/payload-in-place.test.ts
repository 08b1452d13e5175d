// A guest TCP segment whose payload the device left in guest memory, with a complete checksum:
// the stack verifies it from the device's sum of the payload (FramePayload.sum) and the header it
// copied, without loading the payload; a wrong sum drops the segment unread.
import t from 'tap';
import type { FramePayload } from '../../src/iface/link.js';
import { parseIpv6 } from '../../src/wire/index.js';
import { sum16 } from '../../src/wire/checksum.js';
import { makeStack } from '../support/frame-device.js';
import { GW_IP, tcpFrame, tcpFrame6 } from '../support/packets.js';

const GUEST6 = parseIpv6('fec0::5054:ff:fe12:3456')!;
const FAR6 = parseIpv6('2001:db8::1')!;
const ACK_PSH = 0x18;

/** The frame as the device hands it over: headers copied, the payload's place zero, the payload
 *  in `memory` in two spans (split at an odd place), summed there unless `sum` says otherwise. */
function inPlace(frame: Uint8Array, at: number, memory: Uint8Array, sum?: number): { frame: Uint8Array; payload: FramePayload & { loads: number } } {
  const len = frame.length - at;
  memory.set(frame.subarray(at), 3);
  const copy = frame.slice();
  copy.fill(0, at);
  const cut = 77;
  const payload = {
    frame: copy,
    at,
    length: len,
    views: [memory, memory],
    offsets: Float64Array.of(3, 3 + cut),
    lengths: Uint32Array.of(cut, len - cut),
    count: 2,
    loaded: false,
    kept: false,
    sum: sum ?? sum16(memory, 3, len),
    loads: 0,
    load() {
      copy.set(memory.subarray(3, 3 + len), at);
      this.loaded = true;
      this.loads++;
    },
  };
  return { frame: copy, payload };
}

for (const family of [4, 6] as const) {
  t.test(`IPv${family}: a complete checksum is verified from the payload's sum in guest memory, the payload unread`, (t) => {
    const env = makeStack();
    const got: { payloadLeft: boolean; length: number }[] = [];
    env.stack.route({ tcpInput: (_f, packet) => got.push({ payloadLeft: env.stack.rxPayload !== undefined, length: packet.length }) });
    const data = Uint8Array.from({ length: 1400 }, (_, i) => (i * 7 + 1) & 0xff);
    const frame =
      family === 4 ? tcpFrame(40000, 80, 1, 1, ACK_PSH, data, { dst: GW_IP }) : tcpFrame6(40000, 80, 1, 1, ACK_PSH, { src: GUEST6, dst: FAR6, data });
    const at = frame.length - data.length;
    const memory = new Uint8Array(4096);

    const good = inPlace(frame, at, memory);
    env.stack.receive(good.frame, { checksumPartial: false, payload: good.payload });
    t.same(got, [{ payloadLeft: true, length: frame.length - 14 }], 'verified and handed on with the payload still in guest memory');
    t.equal(good.payload.loads, 0, 'never copied out');

    // The guest changed its buffer: the sum the device read does not match the checksum.
    const bad = inPlace(frame, at, memory, (sum16(memory, 3, data.length) + 1) % 0xffff);
    env.stack.receive(bad.frame, { checksumPartial: false, payload: bad.payload });
    t.equal(got.length, 1, 'a wrong sum: dropped');
    t.equal(env.stack.counters.get(`tcp${family}.badChecksum`), 1, 'counted as a bad checksum');
    t.equal(bad.payload.loads, 0, 'and its payload never read');

    // Without the device's sum the payload is loaded and summed in the frame, as before.
    const unsummed = inPlace(frame, at, memory, -1);
    env.stack.receive(unsummed.frame, { checksumPartial: false, payload: unsummed.payload });
    t.equal(unsummed.payload.loads, 1, 'no sum: loaded first');
    t.same(got[1], { payloadLeft: false, length: frame.length - 14 }, 'then verified in the frame');
    t.end();
  });
}
