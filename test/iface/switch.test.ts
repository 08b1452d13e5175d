// The learning switch between several guests' devices and the stack: frames find their port once
// the MAC is learnt, group frames reach everyone, a partial checksum is completed for a guest that
// does not take it, the table ages and forgets a port that leaves.
import t from 'tap';
import type { FrameLink, FrameSink, PartialChecksum, RxMeta } from '../../src/iface/link.js';
import { Switch } from '../../src/iface/switch.js';
import { IpProtocol, emitIpv4Header, emitUdpV4, pseudoHeaderSumV4, verifyTransportV4 } from '../../src/wire/index.js';

const STACK = Uint8Array.of(0x52, 0x55, 10, 0, 2, 2);
const A = Uint8Array.of(0x52, 0x54, 0, 0, 0, 0xa);
const B = Uint8Array.of(0x52, 0x54, 0, 0, 0, 0xb);
const BROADCAST = Uint8Array.of(255, 255, 255, 255, 255, 255);
const PLAIN: RxMeta = { checksumPartial: false };

class Link implements FrameLink {
  got: { frame: number[]; partial: PartialChecksum | undefined }[] = [];
  constructor(readonly partialChecksums: boolean) {}
  send(frame: Uint8Array, partial?: PartialChecksum): boolean {
    this.got.push({ frame: [...frame], partial });
    return true;
  }
}

class Stack implements FrameSink {
  got: number[][] = [];
  receive(frame: Uint8Array): void {
    this.got.push([...frame]);
  }
}

function frame(dst: Uint8Array, src: Uint8Array, tag: number): Uint8Array {
  const f = new Uint8Array(60);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = 0x88;
  f[13] = 0xb5; // local experimental ethertype
  f[14] = tag;
  return f;
}

function setup(partialA = true, partialB = true) {
  let now = 0;
  const stack = new Stack();
  const sw = new Switch(STACK, stack, () => now);
  const la = new Link(partialA);
  const lb = new Link(partialB);
  const pa = sw.attach('a', la);
  const pb = sw.attach('b', lb);
  return { sw, stack, la, lb, pa, pb, tick: (ms: number) => (now += ms) };
}

t.test('learning: unknown unicast floods, then frames go to the port the MAC was seen on', async (t) => {
  const { sw, stack, la, lb, pa, pb } = setup();
  pa.receive(frame(B, A, 1), PLAIN);
  t.equal(lb.got.length, 1, 'B unknown: flooded to the other port');
  t.equal(la.got.length, 0, 'never back to where it came from');
  t.equal(stack.got.length, 0, 'not the stack: not its MAC');
  pb.receive(frame(A, B, 2), PLAIN);
  t.equal(la.got.length, 1, 'A was learnt: straight to its port');
  pa.receive(frame(B, A, 3), PLAIN);
  t.equal(lb.got.at(-1)!.frame[14], 3, 'B learnt too');
  t.equal(sw.stats.forwarded, 2);
  // From the stack.
  sw.send(frame(A, STACK, 4));
  t.equal(la.got.at(-1)!.frame[14], 4, "the stack's frame to A goes to A only");
  t.equal(lb.got.length, 2);
  t.equal(sw.portOf(B), pb);
});

t.test('group frames reach the stack and every other port; frames to the stack only the stack', async (t) => {
  const { sw, stack, la, lb, pa } = setup();
  pa.receive(frame(BROADCAST, A, 1), PLAIN);
  t.equal(stack.got.length, 1);
  t.equal(lb.got.length, 1);
  t.equal(la.got.length, 0);
  pa.receive(frame(STACK, A, 2), PLAIN);
  t.equal(stack.got.length, 2);
  t.equal(lb.got.length, 1);
  sw.send(frame(BROADCAST, STACK, 3));
  t.equal(la.got.length, 1);
  t.equal(lb.got.length, 2);
});

t.test('a partial checksum stays partial for a guest that takes it, completed for one that does not', async (t) => {
  const { la, lb, pa, pb } = setup(true, false);
  pb.receive(frame(A, B, 0), PLAIN); // learn B
  // A UDP datagram from A to B with NEEDS_CSUM: the checksum field holds the pseudo-header sum.
  const f = new Uint8Array(14 + 28 + 4);
  f.set(B, 0);
  f.set(A, 6);
  f[12] = 0x08;
  f[13] = 0x00;
  f.set([1, 2, 3, 4], 42);
  const src = 0x0a00020f;
  const dst = 0x0a000210;
  emitUdpV4(f, 34, { srcPort: 1000, dstPort: 2000, payloadLength: 4 }, src, dst, true);
  emitIpv4Header(f, 14, { src, dst, proto: IpProtocol.UDP, ttl: 64, id: 1, flags: 0, fragOffset: 0, payloadLength: 12, tos: 0 });
  t.equal((f[40]! << 8) | f[41]!, pseudoHeaderSumV4(src, dst, IpProtocol.UDP, 12) & 0xffff, 'partial: the pseudo-header sum');
  pa.receive(f, { checksumPartial: true, checksumStart: 34, checksumOffset: 6 });
  const got = Uint8Array.from(lb.got.at(-1)!.frame);
  t.equal(lb.got.at(-1)!.partial, undefined, 'B takes no partial checksums: sent whole');
  t.ok(verifyTransportV4(got, 34, 12, src, dst, IpProtocol.UDP), 'and its checksum is right');
  t.equal((f[40]! << 8) | f[41]!, pseudoHeaderSumV4(src, dst, IpProtocol.UDP, 12) & 0xffff, "A's frame is left as it was");
  // The other way, to a guest that takes partial checksums.
  const g = f.slice();
  g.set(A, 0);
  g.set(B, 6);
  pb.receive(g, { checksumPartial: true, checksumStart: 34, checksumOffset: 6 });
  t.same(la.got.at(-1)!.partial, { start: 34, offset: 6 }, 'A takes them: passed on partial');
});

t.test('what the stack is told: what every port takes; always room', async (t) => {
  t.equal(setup(true, true).sw.partialChecksums, true);
  t.equal(setup(true, false).sw.partialChecksums, false);
  t.equal(setup().sw.hasRoom(), true);
});

t.test('entries age out; a port that leaves takes its entries', async (t) => {
  const { sw, lb, pa, pb, tick } = setup();
  pb.receive(frame(A, B, 0), PLAIN);
  t.equal(sw.portOf(B), pb);
  tick(300_001);
  t.equal(sw.portOf(B), undefined, 'aged out');
  pa.receive(frame(B, A, 1), PLAIN);
  t.equal(lb.got.length, 1, 'flooded again');
  pb.receive(frame(A, B, 2), PLAIN);
  sw.detach(pb);
  t.equal(sw.portOf(B), undefined, 'forgotten with its port');
  pa.receive(frame(B, A, 3), PLAIN);
  t.equal(lb.got.length, 1, 'nothing goes to a detached port');
});
