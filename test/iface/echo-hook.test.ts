// The echo hook (gVisor PR 13413's contract): the handler sees each echo request, valid only during
// the call; true consumes it; reply() asks for the built-in reply, once.
import t from 'tap';
import type { EchoRequest } from '../../src/iface/echo.js';
import { Icmpv4Packet, Ipv4Packet, ipv4 } from '../../src/wire/index.js';
import { makeStack } from '../support/frame-device.js';
import { GUEST_IP, GW_IP, echoRequest } from '../support/packets.js';

const FAR = ipv4(192, 0, 2, 9);

t.test('no handler: ours answered, others go beyond', async (t) => {
  const { stack, inject } = makeStack({ ipv6: undefined });
  const beyond: Uint8Array[] = [];
  stack.route({ beyond: (p) => beyond.push(p.slice()) });
  t.equal(inject(echoRequest(1, 1, new Uint8Array(4))).length, 1, 'gateway answers');
  t.same(inject(echoRequest(1, 1, new Uint8Array(4), { dst: FAR })), [], 'never a faked reply');
  t.equal(beyond.length, 1, 'handed on to the NAT');
});

t.test('the handler sees both, and decides', async (t) => {
  const { stack, inject } = makeStack({ ipv6: undefined });
  const seen: { toUs: boolean; ident: number; seq: number; ttl: number; dst: number; data: number }[] = [];
  let saved: EchoRequest | undefined;
  let mode: 'consume' | 'reply-false' | 'reply-twice' | 'leave' = 'consume';
  stack.route({
    echoHandler: (r) => {
      saved = r;
      const v = new DataView(r.packet.buffer, r.packet.byteOffset);
      seen.push({ toUs: r.toUs, ident: r.ident, seq: r.seq, ttl: r.ttl, dst: v.getUint32(r.dstOffset), data: r.data.length });
      if (mode === 'consume') return true;
      if (mode === 'reply-false') {
        r.reply();
        return false;
      }
      if (mode === 'reply-twice') {
        t.ok(r.reply(), 'reply() sends');
        t.ok(r.reply(), 'reply() again reports the earlier reply');
        return true;
      }
      return false;
    },
  });
  t.same(inject(echoRequest(7, 3, new Uint8Array(20), { ttl: 9 })), [], 'consumed: no built-in reply');
  t.same(seen[0], { toUs: true, ident: 7, seq: 3, ttl: 9, dst: GW_IP, data: 20 });
  t.notOk(saved!.reply(), 'a saved request cannot reply after the call');
  mode = 'reply-false';
  t.equal(inject(echoRequest(7, 4, new Uint8Array(8))).length, 1, 'reply() then false: exactly one reply');
  mode = 'reply-twice';
  const [r] = inject(echoRequest(7, 5, new Uint8Array(8), { dst: FAR }));
  t.ok(r, 'an explicit reply for another address (the embedder asked for it)');
  const ip = new Ipv4Packet().at(r!, 14, r!.length - 14);
  t.equal(ip.src, FAR, 'from the address the request was sent to');
  t.equal(ip.dst, GUEST_IP);
  t.equal(new Icmpv4Packet().at(r!, ip.payloadOffset, ip.payloadLength).seq, 5);
  mode = 'leave';
  t.equal(inject(echoRequest(7, 6, new Uint8Array(8))).length, 1, 'left alone: ours still answered');
  t.same(inject(echoRequest(7, 7, new Uint8Array(8), { dst: FAR })), [], 'left alone: others not answered');
});
