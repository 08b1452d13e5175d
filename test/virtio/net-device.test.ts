// The virtio-net device against the test frontend: the 12-byte header both ways, frames handed to
// the stack as private copies, NEEDS_CSUM passed on, mergeable RX buffers, the RX backlog while
// the guest has no buffers, bad frames counted, a throwing handler costing one frame, sliced TX
// batches, the TX queue polled while the guest sends large segments in bulk, and malformed RX
// chains met while gathering buffers for a frame.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { get32, viewAt } from '../../src/wire/bytes.js';
import type { Test } from 'tap';
import { Feature, VhostUserServer, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, bit } from 'vhost-user-ts';
import { TestFrontend } from 'vhost-user-ts/testing';
import type { RxMeta } from '../../src/iface/link.js';
import { NET_HDR_LEN, NetFeature, VirtioNetDevice } from '../../src/virtio/net-device.js';
import { completeChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6, sum16, useNativeCopySum } from '../../src/wire/checksum.js';
import { IpProtocol } from '../../src/wire/index.js';
import { GUEST_MAC, ipv6Frame, tcpFrame, tcpFrame6, udpFrame } from '../support/packets.js';
import { settle, until } from '../support/wait.js';
import type { NetDeviceOptions } from '../../src/virtio/net-device.js';

interface Seen {
  frame: Uint8Array;
  partial: boolean;
  /** The view handed over lies in guest memory (a memfd chunk, far larger than the device's
   *  private buffer). */
  inGuestMemory: boolean;
}

function setup(t: Test, opts: NetDeviceOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-net-'));
  const dev = new VirtioNetDevice(opts);
  const seen: Seen[] = [];
  dev.sink = {
    receive(frame: Uint8Array, meta: RxMeta) {
      meta.payload?.load(); // (with payloadsInPlace) the whole frame, as a consumer that reads it
      seen.push({ frame: frame.slice(), partial: meta.checksumPartial, inGuestMemory: frame.buffer.byteLength >= 1 << 20 });
    },
  };
  const server = new VhostUserServer(dev);
  server.listen(join(dir, 'sock'));
  const fe = TestFrontend.connect(join(dir, 'sock'));
  t.teardown(() => {
    fe.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dev, seen, fe };
}

/** Posts `count` receive buffers of `size` bytes and kicks; returns their guest addresses. */
function postRx(fe: TestFrontend, rxq: NonNullable<Awaited<ReturnType<TestFrontend['handshake']>>[number]>, count: number, size: number): number[] {
  const bufs: number[] = [];
  for (let i = 0; i < count; i++) {
    const gpa = fe.memory.alloc(size);
    bufs.push(gpa);
    rxq.add([{ gpa, len: size, writable: true }]);
  }
  rxq.kick();
  return bufs;
}

/** Where a test posted each receive chain's buffers, by head. */
type PostedBuffers = Map<number, { gpa: number; len: number }[]>;

/** The frames the used entries carry, each across its num_buffers chains (without the virtio-net
 *  header), and the entries of each. */
function usedFrames(fe: TestFrontend, bufs: PostedBuffers, used: readonly { id: number; len: number }[]): { frame: Uint8Array; ids: number[] }[] {
  const read = (u: { id: number; len: number }): Uint8Array => {
    const out = new Uint8Array(u.len);
    let at = 0;
    for (const part of bufs.get(u.id)!) {
      const n = Math.min(part.len, u.len - at);
      out.set(fe.memory.read(part.gpa, n), at);
      at += n;
    }
    return out;
  };
  const frames: { frame: Uint8Array; ids: number[] }[] = [];
  for (let i = 0; i < used.length;) {
    const head = read(used[i]!);
    const n = Math.max(1, head[10]! | (head[11]! << 8));
    const parts = used.slice(i, i + n);
    frames.push({ frame: new Uint8Array(Buffer.concat(parts.map(read)).subarray(NET_HDR_LEN)), ids: parts.map((u) => u.id) });
    i += n;
  }
  return frames;
}

const hdr = (flags = 0, gso = 0): Uint8Array => {
  const h = new Uint8Array(NET_HDR_LEN);
  h[0] = flags;
  h[1] = gso;
  return h;
};
const frame = (len: number, seed = 1): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (i * seed + 3) & 0xff);

t.test('TX: frames reach the stack as private copies, contiguous or scattered', async (t) => {
  const { dev, seen, fe } = setup(t);
  const [, txq] = await fe.handshake();
  const f1 = frame(60);
  const one = new Uint8Array(NET_HDR_LEN + 60);
  one.set(f1, NET_HDR_LEN);
  txq!.add([{ data: one }]); // header and frame in one buffer (ANY_LAYOUT style)
  const f2 = frame(1500, 3);
  txq!.add([{ data: hdr() }, { data: f2 }]); // header apart, frame in one buffer
  const f3 = frame(3000, 5);
  txq!.add([{ data: hdr(1) }, { data: f3.subarray(0, 1000) }, { data: f3.subarray(1000) }]); // scattered
  txq!.kick();
  await txq!.waitUsed(3);
  t.equal(seen.length, 3);
  t.same(seen[0]!.frame, f1);
  t.same(seen[1]!.frame, f2);
  t.same(seen[2]!.frame, f3, 'scattered frame gathered');
  t.notOk(
    seen.some((s) => s.inGuestMemory),
    'nothing is parsed in guest memory (the guest may rewrite it meanwhile)',
  );
  t.ok(seen[2]!.partial && !seen[1]!.partial, 'NEEDS_CSUM passed on as checksumPartial');
  t.equal(dev.stats.txFrames, 3);
});

t.test('TX: bad frames are counted and returned', async (t) => {
  const { dev, seen, fe } = setup(t);
  const [, txq] = await fe.handshake();
  txq!.add([{ data: hdr() }]); // header only
  txq!.add([{ data: hdr(0, 1) }, { data: frame(100) }]); // GSO we did not offer
  txq!.add([{ data: hdr() }, { len: 100, writable: true }]); // no readable frame
  txq!.kick();
  const used = await txq!.waitUsed(3);
  t.equal(used.length, 3, 'every chain returned');
  t.equal(seen.length, 0);
  t.equal(dev.stats.txDropped, 3);
});

t.test('RX: mergeable buffers carry a 64 KiB frame with num_buffers', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  t.ok(fe.features & bit(NetFeature.MRG_RXBUF), 'MRG_RXBUF negotiated');
  const bufs = postRx(fe, rxq!, 24, 4096);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const big = frame(65000, 7);
  t.ok(dev.send(big), 'accepted');
  const used = await rxq!.waitUsed(16);
  const total = NET_HDR_LEN + big.length;
  t.equal(used.length, Math.ceil(total / 4096), 'as many buffers as needed');
  const first = fe.memory.read(bufs[used[0]!.id]!, NET_HDR_LEN);
  t.equal(first[10]! | (first[11]! << 8), used.length, 'num_buffers in the first header');
  t.equal(first[0], 2, 'DATA_VALID: our checksums need no checking (GUEST_CSUM negotiated)');
  const joined = new Uint8Array(total);
  let at = 0;
  for (const u of used) {
    joined.set(fe.memory.read(bufs[u.id]!, u.len), at);
    at += u.len;
  }
  t.equal(at, total);
  t.same(joined.subarray(NET_HDR_LEN), big, 'frame intact across buffers');
  t.equal(dev.stats.rxFrames, 1);
});

for (const inPlace of [false, true]) {
  t.test(
    `RX${inPlace ? ' in place' : ''}: mergeable chains of mixed sizes: each frame takes the chains it needs, in ring order, and the next frame the ones after`,
    async (t) => {
      const { dev, fe } = setup(t);
      const [rxq] = await fe.handshake();
      // The chains after a frame's first are taken a batch at a time, as many as the first one's
      // size suggests: a small first chain asks for too many (the rest are un-popped), a large one
      // for too few (asked again); a chain of two buffers, and one through an indirect table, lie
      // among them. In place, the chains after the first take payload only.
      const sizes = [1024, 4096, 4096, 4096, 8192, 512, 512, 512, 512, 512, 512, 4096, 512, 512, 512, 512, 512, 512, 512, 512, 4096];
      const bufs: PostedBuffers = new Map();
      const order: number[] = [];
      for (const [i, size] of sizes.entries()) {
        const gpa = fe.memory.alloc(size);
        const parts =
          size === 8192
            ? [
                { gpa, len: 4096, writable: true },
                { gpa: gpa + 4096, len: 4096, writable: true },
              ]
            : [{ gpa, len: size, writable: true }];
        const head = rxq!.add(parts, { indirect: i === 10 });
        bufs.set(head, parts);
        order.push(head);
      }
      rxq!.kick();
      await until(() => dev.hasRoom(), 'the device to see the RX buffers');
      // Frame lengths (headers included, 54 of them in place): the chains each takes after its first.
      const frames = [
        9000, // 1024 + 4096 + 4096: asks for 8 after the first, takes 2
        9000, // 4096 + the two buffers of 8192: asks for 2, takes 1
        2988, // 512 × 6, the last through an indirect table: asks for 5, takes 5
        6000, // 4096 + 512 × 4: asks for 1 four times
      ].map((len, k) => (inPlace ? partialTcpFrame(len - 54) : frame(len, k + 3)));
      if (inPlace) {
        for (const f of frames) t.equal(dev.sendHeaders(f.subarray(0, 54), f.length - 54, { start: 34, offset: 16, segmentSize: 1460 }), 'sent');
        const payload = Buffer.concat(frames.map((f) => f.subarray(54)));
        let at = 0;
        t.ok(
          dev.completePayloads({
            fill(views, offsets, lengths, count) {
              for (let i = 0; i < count; i++) {
                viewAt(views, i).set(payload.subarray(at, at + lengths[i]!), offsets[i]);
                at += lengths[i]!;
              }
              return at;
            },
          }),
          'payload filled',
        );
        t.equal(at, payload.length, 'every payload byte had a place');
      } else {
        for (const f of frames) t.ok(dev.send(f), 'accepted');
      }
      await until(() => dev.stats.rxFrames === frames.length, 'the frames');
      await settle();
      const used = rxq!.used();
      t.same(
        used.map((u) => u.id),
        order.slice(0, 3 + 2 + 6 + 5),
        'the chains in ring order, none skipped or taken twice',
      );
      const arrived = usedFrames(fe, bufs, used);
      for (const [k, f] of frames.entries()) t.same(arrived[k]?.frame, f, `frame ${k} intact in its ${arrived[k]?.ids.length} buffers`);
      t.equal(arrived.length, frames.length, 'num_buffers accounts for every chain used');
      t.equal(dev.stats.rxDropped, 0);
    },
  );
}

t.test('RX: frames wait for buffers (bounded backlog) and go out on the RX kick', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  for (let i = 0; i < 5; i++) t.ok(dev.send(frame(100, i + 1)), `frame ${i} queued`);
  await settle();
  t.equal(rxq!.usedIdx, 0, 'nothing delivered without buffers');
  const bufs = postRx(fe, rxq!, 5, 2048);
  const used = await rxq!.waitUsed(5);
  used.forEach((u, i) => t.same(fe.memory.read(bufs[u.id]! + NET_HDR_LEN, u.len - NET_HDR_LEN), frame(100, i + 1), `frame ${i} in order`));
  const small = new VirtioNetDevice({ backlogFrames: 2 });
  t.notOk(small.send(frame(60)), 'no driver: dropped at once');
  t.equal(small.stats.rxDropped, 1);
});

t.test('RX without MRG_RXBUF: one chain per frame; a frame too big for the buffer is dropped', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~bit(NetFeature.MRG_RXBUF) });
  const gpa = fe.memory.alloc(1600);
  rxq!.add([{ gpa, len: 1600, writable: true }]);
  const gpa2 = fe.memory.alloc(1600);
  rxq!.add([{ gpa: gpa2, len: 1600, writable: true }]);
  rxq!.kick();
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  dev.send(frame(3000));
  dev.send(frame(1000, 9));
  const used = await rxq!.waitUsed(2);
  t.equal(used[0]!.len, 0, 'too big: buffer returned empty');
  t.equal(used[1]!.len, NET_HDR_LEN + 1000);
  const h = fe.memory.read(gpa2, NET_HDR_LEN);
  t.equal(h[10], 1, 'num_buffers 1');
  t.equal(h[0], 2, 'DATA_VALID');
  t.same(fe.memory.read(gpa2 + NET_HDR_LEN, 1000), frame(1000, 9));
  t.equal(dev.stats.rxDropped, 1);
});

t.test('RX: a frame larger than the posted buffers waits for more, and the device asks for the kick', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  const eventIdx = (fe.features & bit(29)) !== 0n;
  const post = (n: number): void => {
    const old = rxq!.availIndex;
    for (let i = 0; i < n; i++) rxq!.add([{ gpa: fe.memory.alloc(4096), len: 4096, writable: true }]);
    rxq!.kickIfNeeded(old, eventIdx);
  };
  post(4);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  let room = 0;
  t.ok(dev.send(frame(65000, 3)), 'accepted into the backlog: 4 buffers cannot hold it');
  t.equal(rxq!.usedIdx, 0);
  t.notOk(dev.hasRoom(), 'no room while the backlog holds a frame');
  (dev as unknown as { opts: { onRoom: () => void } }).opts.onRoom = () => room++;
  dev.wantRoom();
  // Status output says what the RX queue waits for: the backlog's frame, and the kick it asked for
  // (with EVENT_IDX, avail_event at the driver's avail.idx: a kick on the next buffer).
  const waiting = dev.queueStats();
  t.match(waiting.waits, { backlogFrames: 1, heldChains: 0, roomWanted: true }, 'status: a frame in the backlog, a sender waiting for room');
  t.match(waiting.rx?.ring, { lastAvail: 0, availIdx: 4, usedIdx: 0, broken: null, signals: true }, 'status: the ring as the device sees it (nothing taken)');
  if (eventIdx) t.equal(waiting.rx?.ring.availEvent, 4, 'status: avail_event asks for a kick on the next buffer');
  // The driver adds buffers a few at a time, kicking only when asked (EVENT_IDX: avail_event).
  for (let i = 0; i < 4; i++) {
    post(4);
    await settle(); // the kick, if one was due, handled
  }
  t.ok(rxq!.usedIdx > 0, 'the frame went out once enough buffers were there');
  t.equal(dev.stats.rxFrames, 1);
  t.equal(room, 1, 'and whoever waited for room was told');
});

t.test('RX without EVENT_IDX: the guest kicks only while the device waits for buffers (NO_NOTIFY otherwise)', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~bit(Feature.RING_EVENT_IDX) });
  const rx = rxq!;
  let room = 0;
  (dev as unknown as { opts: { onRoom: () => void } }).opts.onRoom = () => room++;
  // A DPDK driver refills its ring and kicks unless the device set NO_NOTIFY.
  const refill = (n: number): boolean => {
    const old = rx.availIndex;
    for (let i = 0; i < n; i++) rx.add([{ gpa: fe.memory.alloc(2048), len: 2048, writable: true }]);
    return rx.kickIfNeeded(old, false);
  };
  await settle();
  t.equal(rx.usedFlags & 1, 1, 'nobody waits for room: kicks are off from the start');
  t.notOk(refill(4), 'so the first buffers are not kicked');
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  t.notOk(refill(4), 'nor the next ones');
  const kicks = dev.queueStats().rx!.kicks;
  for (let i = 0; i < 8; i++) t.ok(dev.send(frame(1000, i + 1)));
  await rx.waitUsed(8);
  t.notOk(dev.hasRoom(), 'the eight buffers are used');
  t.equal(rx.usedFlags & 1, 1, 'still off: nothing waits');
  dev.wantRoom();
  t.ok(dev.send(frame(1000, 9)), 'a frame waits in the backlog');
  t.equal(rx.usedFlags & 1, 0, 'a sender and a frame wait: kicks are on');
  t.ok(refill(2), 'the refill is kicked');
  await rx.waitUsed(1);
  await until(() => room === 1, 'the sender to be offered room');
  t.equal(rx.usedFlags & 1, 1, 'the frame went out and the sender was told: kicks are off again');
  t.equal(dev.queueStats().rx!.kicks, kicks + 1, 'that kick was heard');
  t.notOk(refill(4), 'and the next refill is not kicked');
});

t.test('RX: an onRoom that throws is counted, keeps the connection, and is offered room again on the next buffers', async (t) => {
  const errors: unknown[] = [];
  let offers = 0;
  const { dev, fe } = setup(t, {
    onFrameError: (err) => errors.push(err),
    onRoom: () => {
      if (offers++ === 0) throw new RangeError('a bug in the sender');
    },
  });
  const [rxq] = await fe.handshake();
  const eventIdx = (fe.features & bit(29)) !== 0n;
  const post = (): void => {
    const old = rxq!.availIndex;
    rxq!.add([{ gpa: fe.memory.alloc(2048), len: 2048, writable: true }]);
    rxq!.kickIfNeeded(old, eventIdx);
  };
  dev.wantRoom(); // no buffers yet: the device asks for a kick
  post();
  await until(() => offers === 1, 'the first offer');
  t.equal(dev.stats.batchesFailed, 1, 'its exception counted');
  t.equal(errors.length, 1, 'and reported');
  post();
  await until(() => offers === 2, 'room offered again on the next buffers');
  t.ok(fe.isConnected, 'the connection stays');
});

/** Three frames in one kick, the second of which fails: every chain comes back, the first and
 *  third are handled, the failure counted and reported once. */
async function secondOfThreeFails(t: Test, { dev, seen, fe }: ReturnType<typeof setup>, errors: unknown[]): Promise<void> {
  const [, txq] = await fe.handshake();
  for (let i = 0; i < 3; i++) txq!.add([{ data: hdr() }, { data: frame(80, i + 1) }]);
  txq!.kick();
  const used = await txq!.waitUsed(3);
  t.equal(used.length, 3, 'every chain returned');
  t.same(
    seen.map((s) => s.frame),
    [frame(80, 1), frame(80, 3)],
    'the frames around it were handled',
  );
  t.equal(dev.stats.txFailed, 1);
  t.equal(errors.length, 1, 'reported once');
}

t.test('TX: a frame whose handler throws costs that frame only', async (t) => {
  const errors: unknown[] = [];
  const { dev, seen, fe } = setup(t, { onFrameError: (err) => errors.push(err) });
  const sink = dev.sink!;
  let calls = 0;
  dev.sink = {
    receive(f, meta) {
      if (calls++ === 1) throw new RangeError('a bug in the stack');
      sink.receive(f, meta);
    },
  };
  await secondOfThreeFails(t, { dev, seen, fe }, errors);
});

t.test("TX: a bug in the device's own handling of a frame costs that frame only", async (t) => {
  const errors: unknown[] = [];
  const { dev, seen, fe } = setup(t, { onFrameError: (err) => errors.push(err) });
  let calls = 0;
  // The frame's copy out of guest memory throws once (as a native call given a bad range would).
  const was = useNativeCopySum((src, srcOff, len, dst, dstOff, from) => {
    if (calls++ === 1) throw new RangeError('offset is out of bounds');
    dst.set(src.subarray(srcOff, srcOff + len), dstOff);
    return sum16(dst, dstOff + from, len - from);
  });
  t.teardown(() => void useNativeCopySum(was));
  await secondOfThreeFails(t, { dev, seen, fe }, errors);
  t.ok(fe.isConnected, 'the connection stays');
});

t.test('TX: a batch that throws outside any frame is counted, keeps the connection, and the ring is taken on a later turn', async (t) => {
  const errors: unknown[] = [];
  let starts = 0;
  let ends = 0;
  const { dev, seen, fe } = setup(t, {
    onFrameError: (err) => errors.push(err),
    // The owner's start of a batch throws once: before any chain is popped.
    onBatchStart: () => {
      if (starts++ === 0) throw new RangeError('a bug at the start of a batch');
    },
    onBatchEnd: () => ends++,
  });
  const [, txq] = await fe.handshake();
  for (let i = 0; i < 3; i++) txq!.add([{ data: hdr() }, { data: frame(80, i + 1) }]);
  txq!.kick();
  const used = await txq!.waitUsed(3);
  t.equal(used.length, 3, 'every chain back');
  t.same(
    seen.map((s) => s.frame),
    [frame(80, 1), frame(80, 2), frame(80, 3)],
    'every frame handled, on the poll that followed',
  );
  t.equal(dev.stats.batchesFailed, 1, 'the failed batch counted');
  t.equal(errors.length, 1, 'and reported once');
  t.ok(fe.isConnected, 'the connection stays');
  t.ok(ends >= 1, 'the batches ended');
});

t.test('TX: a batch that throws mid-way gives back the buffers it held, and the queue goes on', async (t) => {
  const errors: unknown[] = [];
  let ends = 0;
  const { dev, seen, fe } = setup(t, {
    onFrameError: (err) => errors.push(err),
    onBatchEnd: () => {
      if (ends++ === 0) throw new RangeError('a bug at the end of a batch');
    },
  });
  const [, txq] = await fe.handshake();
  txq!.add([{ data: hdr() }, { data: frame(80, 1) }]);
  txq!.kick();
  await txq!.waitUsed(1);
  t.equal(dev.stats.batchesFailed, 1, 'the failed batch counted');
  txq!.add([{ data: hdr() }, { data: frame(80, 2) }]);
  txq!.kick();
  await txq!.waitUsed(1);
  t.same(
    seen.map((s) => s.frame),
    [frame(80, 1), frame(80, 2)],
    'the next batch is handled',
  );
  t.ok(fe.isConnected, 'the connection stays');
});

t.test('RX: a frame in the backlog whose writing throws is dropped, counted, and the frames behind it go out', async (t) => {
  const errors: unknown[] = [];
  const { dev, fe } = setup(t, { onFrameError: (err) => errors.push(err) });
  const [rxq] = await fe.handshake();
  t.ok(dev.send(frame(100, 1)), 'queued: no receive buffers yet');
  t.ok(dev.send(frame(100, 2)));
  const d = dev as unknown as { writeFrame: (...a: unknown[]) => boolean };
  const write = d.writeFrame.bind(dev);
  let calls = 0;
  d.writeFrame = (...a: unknown[]) => {
    if (calls++ === 0) throw new RangeError('a bug writing a frame');
    return write(...a);
  };
  const gpa = fe.memory.alloc(2048);
  rxq!.add([{ gpa, len: 2048, writable: true }]);
  rxq!.add([{ gpa: fe.memory.alloc(2048), len: 2048, writable: true }]);
  rxq!.kick();
  const used = await rxq!.waitUsed(1);
  t.equal(used[0]!.len, NET_HDR_LEN + 100, 'the frame behind it went out');
  t.same(fe.memory.read(gpa + NET_HDR_LEN, 100), frame(100, 2), 'into the first buffer');
  t.equal(dev.stats.batchesFailed, 1, 'counted');
  t.equal(dev.stats.rxDropped, 1, 'the frame dropped');
  t.equal(errors.length, 1, 'reported');
  t.ok(fe.isConnected, 'the connection stays');
});

t.test('TX: a long batch is handled in slices, each followed by its answers', async (t) => {
  let batches = 0;
  const { dev, seen, fe } = setup(t, { txSliceFrames: 32, onBatchEnd: () => batches++ });
  const [, txq] = await fe.handshake({ queues: [256, 256] });
  for (let i = 0; i < 200; i++) {
    const one = new Uint8Array(NET_HDR_LEN + 60);
    one.set(frame(60, i + 1), NET_HDR_LEN);
    txq!.add([{ data: one }]);
  }
  txq!.kick();
  await txq!.waitUsed(200);
  t.equal(seen.length, 200, 'every frame handled, in order');
  t.same(seen[199]!.frame, frame(60, 200));
  t.ok(dev.stats.txSlices >= 5, `cut into slices (${dev.stats.txSlices})`);
  t.ok(batches >= 6, 'the owner ran after each slice');
});

t.test("TX: a batch's completions are visible at once, and its call comes at its end, next to its answers'", async (t) => {
  // A guest receiving in bulk sends ACKs; each batch of them is answered with data frames in the
  // batch's end (the NAT's flush). The TX call goes with those frames' call: made before the
  // answers were built, each queue's call would wake the frontend on its own.
  let usedAtEnd = -1;
  let callsAtEnd = -1;
  let answered = false;
  let txq: Awaited<ReturnType<TestFrontend['handshake']>>[number] | undefined;
  const { dev, fe } = setup(t, {
    onBatchEnd: () => {
      if (answered || txq === undefined || txq.usedIdx === 0) return; // (the batch that took them)
      usedAtEnd = txq.usedIdx;
      callsAtEnd = dev.queueStats().tx!.calls;
      answered = dev.send(frame(1000, 7));
    },
  });
  const [rxq, q] = await fe.handshake();
  txq = q!;
  postRx(fe, rxq!, 4, 2048);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const calls = { tx: dev.queueStats().tx!.calls, rx: dev.queueStats().rx!.calls };
  for (let i = 0; i < 3; i++) {
    const one = new Uint8Array(NET_HDR_LEN + 60);
    one.set(frame(60, i + 1), NET_HDR_LEN);
    txq.add([{ data: one }]);
  }
  txq.kick();
  await txq.waitUsed(3);
  await rxq!.waitUsed(1);
  t.ok(answered, 'the batch was answered');
  t.equal(usedAtEnd, 3, 'the completions were visible as the answers were built');
  t.equal(callsAtEnd, calls.tx, 'but not called for yet');
  t.equal(txq.usedIdx, 3);
  t.equal(dev.queueStats().tx!.calls - calls.tx, 1, 'one call on the TX queue');
  t.equal(dev.queueStats().rx!.calls - calls.rx, 1, 'and one on the RX queue');
});

/** A poll timer the test fires (NetDeviceOptions.timer). */
class ManualTimer {
  fn: (() => void) | undefined;
  armed = false;
  /** The delay it was last armed with (ms). */
  ms = 0;
  readonly start = (fn: () => void, ms: number): { refresh(ms: number): void } => {
    this.fn = fn;
    this.armed = true;
    this.ms = ms;
    return {
      refresh: (next) => {
        this.armed = true;
        this.ms = next;
      },
    };
  };
  fire(): void {
    if (!this.armed) throw new Error('the poll timer is not armed');
    this.armed = false;
    this.fn!();
  }
}

/** A device on a clock and a poll timer the test drives, its TX queue, and bulk(): two 64 kB
 *  frames kicked 0.5 ms apart, after which a poll is due. */
async function pollingSetup(t: Test, eventIdx = true, opts: NetDeviceOptions = {}) {
  const clock = { ms: 0 };
  const timer = new ManualTimer();
  const { dev, seen, fe } = setup(t, { now: () => clock.ms, timer: timer.start, ...opts });
  const [, txq] = await fe.handshake({ features: (f) => (eventIdx ? f : f & ~bit(Feature.RING_EVENT_IDX)) });
  const q = txq!;
  const bulk = async (): Promise<void> => {
    for (let i = 0; i < 2; i++) {
      q.add([{ data: new Uint8Array(NET_HDR_LEN + 64_000) }]);
      q.kick();
      await q.waitUsed(1);
      clock.ms += 0.5;
    }
    t.ok(timer.armed, 'bulk: a poll is due');
  };
  return { dev, seen, fe, q, clock, timer, bulk };
}

for (const eventIdx of [true, false]) {
  t.test(
    `TX polling${eventIdx ? '' : ' (no EVENT_IDX)'}: a guest sending in bulk is polled with kicks off; the first slow batch turns them back on`,
    async (t) => {
      const { dev, seen, q, clock, timer } = await pollingSetup(t, eventIdx);
      const big = (seed: number): Uint8Array => {
        const b = new Uint8Array(NET_HDR_LEN + 40_000);
        b.set(frame(40_000, seed), NET_HDR_LEN);
        return b;
      };
      /** Adds a frame as a driver does: kicks only when the device asks for it. */
      const send = (data: Uint8Array): boolean => {
        const old = q.availIndex;
        q.add([{ data }]);
        return q.kickIfNeeded(old, eventIdx);
      };
      t.ok(send(big(1)), 'the first frame is kicked');
      await q.waitUsed(1);
      t.notOk(timer.armed, 'a first batch has no rate: no poll');
      clock.ms = 0.5; // 40 kB 0.5 ms after the batch before
      t.ok(send(big(2)), 'the second is kicked');
      await q.waitUsed(1);
      t.ok(timer.armed, 'the guest sends in bulk: a poll is due');
      clock.ms = 1.5;
      t.notOk(send(big(3)), 'kicks are off');
      t.notOk(send(big(4)), 'still off');
      timer.fire();
      t.same(
        (await q.waitUsed(2)).map((u) => u.len),
        [0, 0],
        'the poll took both, and the guest has them back',
      );
      t.equal(dev.stats.txPolls, 1);
      t.ok(timer.armed, '80 kB in 1 ms: the next poll is due');
      t.notOk(send(big(5)), 'kicks are still off');
      clock.ms = 3.5;
      timer.fire();
      await q.waitUsed(1);
      t.notOk(timer.armed, '40 kB in 2 ms is not bulk: no poll is due');
      t.ok(send(big(6)), 'and the guest kicks again');
      await q.waitUsed(1);
      t.equal(dev.stats.txPolls, 2, 'that frame came on its kick');
      t.same(
        seen.map((s) => s.frame.length),
        [40_000, 40_000, 40_000, 40_000, 40_000, 40_000],
        'every frame handled once',
      );
      t.same(seen[3]!.frame, frame(40_000, 4));
    },
  );
}

t.test("TX polling: a poll that finds nothing turns kicks back on; so does one that finds less than a poll is worth, whatever the frames' size", async (t) => {
  const { dev, q, clock, timer, bulk } = await pollingSetup(t);
  await bulk();
  clock.ms += 1;
  timer.fire(); // nothing there
  t.notOk(timer.armed, 'an empty poll: none is due');
  const old = q.availIndex;
  q.add([{ data: new Uint8Array(NET_HDR_LEN + 100) }]);
  t.ok(q.kickIfNeeded(old, true), 'kicks are on');
  await q.waitUsed(1);
  clock.ms += 10;
  await bulk();
  for (let i = 0; i < 40; i++) q.add([{ data: new Uint8Array(NET_HDR_LEN + 1514) }]);
  clock.ms += 1;
  timer.fire();
  await q.waitUsed(40);
  t.ok(timer.armed, 'small frames at the rate keep it polling (61 kB in 1.5 ms)');
  q.add([{ data: new Uint8Array(NET_HDR_LEN + 20_000) }]);
  clock.ms += 1;
  timer.fire();
  await q.waitUsed(1);
  t.notOk(timer.armed, '20 kB in a poll: none is due');
  t.equal(dev.stats.txPolls, 3);
});

t.test('TX polling: small frames, however many, or large ones far apart, are never polled', async (t) => {
  const { dev, seen, q, clock, timer } = await pollingSetup(t);
  for (let round = 0; round < 5; round++) {
    // 100 ACK-sized frames 0.1 ms after the batch before: 8 kB, under one poll's worth.
    for (let i = 0; i < 100; i++) {
      const one = new Uint8Array(NET_HDR_LEN + 66);
      one.set(frame(66, i + 1), NET_HDR_LEN);
      q.add([{ data: one }]);
    }
    q.kick();
    await q.waitUsed(100);
    clock.ms += 0.1;
  }
  for (let round = 0; round < 3; round++) {
    // 64 kB frames 10 ms apart: 6.4 kB a ms.
    clock.ms += 10;
    const b = new Uint8Array(NET_HDR_LEN + 64_000);
    const old = q.availIndex;
    q.add([{ data: b }]);
    t.ok(q.kickIfNeeded(old, true), `large frame ${round} is kicked`);
    await q.waitUsed(1);
  }
  t.equal(seen.length, 503);
  t.notOk(timer.armed, 'no poll was ever due');
  t.equal(dev.stats.txPolls, 0);
});

/** Adds `n` MTU-sized frames to the TX queue (no kick). */
function addMtuFrames(q: Awaited<ReturnType<typeof pollingSetup>>['q'], n: number): void {
  for (let i = 0; i < n; i++) q.add([{ data: new Uint8Array(NET_HDR_LEN + 1514) }]);
}

t.test('TX polling: MTU-sized frames at a high rate (a guest without TSO) are polled; ACKs among them do not stop it', async (t) => {
  const { dev, seen, q, clock, timer } = await pollingSetup(t);
  for (let round = 0; round < 2; round++) {
    // 40 MTU-sized frames on a kick, twice, 0.2 ms apart: 61 kB in less than a poll interval.
    addMtuFrames(q, 40);
    q.kick();
    await q.waitUsed(40);
    t.equal(timer.armed, round === 1, round === 0 ? 'a first batch has no rate: no poll' : 'the guest sends in bulk: a poll is due');
    clock.ms += 0.2;
  }
  const old = q.availIndex;
  addMtuFrames(q, 1);
  t.notOk(q.kickIfNeeded(old, true), 'kicks are off');
  addMtuFrames(q, 39);
  for (let i = 0; i < 5; i++) q.add([{ data: new Uint8Array(NET_HDR_LEN + 66) }]);
  clock.ms += 1;
  timer.fire();
  await q.waitUsed(45);
  t.ok(timer.armed, '40 MTU-sized frames and 5 ACKs in 1 ms: the next poll is due');
  clock.ms += 1;
  timer.fire();
  t.notOk(timer.armed, 'an empty poll turns kicks back on');
  t.equal(dev.stats.txPolls, 2);
  t.equal(seen.length, 125, 'every frame handled once');
});

t.test(
  'TX polling: polls come every 2 ms, every 1 ms after one that finds the ring over three quarters full or its frames at over 192 KiB/ms, until one finds it a quarter full and them at 128 KiB/ms',
  async (t) => {
    const { dev, seen, q, clock, timer } = await pollingSetup(t);
    for (let round = 0; round < 2; round++) {
      addMtuFrames(q, 40);
      q.kick();
      await q.waitUsed(40);
      clock.ms += 0.2;
    }
    t.ok(timer.armed, 'the guest sends in bulk: a poll is due');
    t.equal(timer.ms, 2, 'the first poll in 2 ms');
    let taken = 80;
    // What each poll finds (MTU-sized frames of 1526 bytes with their virtio-net header, or
    // 64 kB ones), in the interval the poll before it armed, and the delay it arms the next with.
    for (const [frames, size, next] of [
      [60, 1514, 2], // 46 KB/ms, a quarter of the ring
      [180, 1514, 2], // 137 KB/ms, 70 % of the ring: between the bounds, as it was
      [193, 1514, 1], // over three quarters of the ring
      [60, 1514, 2], // 92 KB/ms in 1 ms, a quarter of the ring
      [7, 64_000, 1], // 224 KB/ms: over the fast rate
      [3, 64_000, 1], // 192 kB/ms in 1 ms: between the rates, as it was
      [1, 64_000, 2], // 64 kB/ms
    ] as const) {
      for (let i = 0; i < frames; i++) q.add([{ data: new Uint8Array(NET_HDR_LEN + size) }]);
      clock.ms += timer.ms;
      timer.fire();
      taken += frames;
      await q.waitUsed(frames);
      t.ok(timer.armed, `${frames} frames in ${timer.ms} ms: still bulk`);
      t.equal(timer.ms, next, `${frames} frames of ${size} bytes: the next poll in ${next} ms`);
    }
    t.equal(dev.stats.txPolls, 7);
    t.equal(seen.length, taken, 'every frame handled once');
  },
);

t.test('TX polling: a driver that takes no TX interrupts is not polled (it polls its ring itself, and drops what does not fit)', async (t) => {
  // A poll-mode driver (DPDK's): NO_INTERRUPT on its TX ring, no call ever.
  const { dev, seen, q, clock, timer } = await pollingSetup(t, false);
  q.setAvailFlags(1);
  for (let round = 0; round < 5; round++) {
    addMtuFrames(q, 40);
    q.kick();
    await q.waitUsed(40);
    clock.ms += 0.2;
    // (64 kB frames too: the rule is the driver's, whatever the frames' size.)
    q.add([{ data: new Uint8Array(NET_HDR_LEN + 64_000) }]);
    q.kick();
    await q.waitUsed(1);
    clock.ms += 0.2;
  }
  t.notOk(timer.armed, 'no poll was ever due');
  t.equal(dev.stats.txPolls, 0);
  t.equal(q.usedFlags & 1, 0, 'kicks are on');
  t.equal(seen.length, 5 * 41);
  // It asks for interrupts again: its bulk is polled.
  q.setAvailFlags(0);
  addMtuFrames(q, 1);
  q.kick();
  await q.waitCall();
  await q.waitUsed(1);
  clock.ms += 0.2;
  addMtuFrames(q, 40);
  q.kick();
  await q.waitUsed(40);
  t.ok(timer.armed, 'a driver that took an interrupt is polled');
});

for (const eventIdx of [true, false]) {
  t.test(
    `TX polling${eventIdx ? '' : ' (no EVENT_IDX)'}: a driver that takes TX interrupts stays polled with its ring nearly full (it waits for the completions)`,
    async (t) => {
      const { dev, seen, q, clock, timer, bulk } = await pollingSetup(t, eventIdx);
      await bulk();
      // As Linux's driver does once it has cleaned its ring: a call for the next completion.
      if (eventIdx) q.setUsedEvent(q.usedIdx);
      addMtuFrames(q, 40);
      clock.ms += 1;
      timer.fire();
      await q.waitCall();
      await q.waitUsed(40);
      for (let poll = 0; poll < 3; poll++) {
        // (Fewer than a slice's 256: a whole ring would end in a slice, whose mode is the next's.)
        addMtuFrames(q, 224);
        clock.ms += 1;
        timer.fire();
        await q.waitUsed(224);
        t.ok(timer.armed, `a poll that found 224 of 256 (${poll + 1}): the next poll is due`);
      }
      t.equal(dev.stats.txPolls, 4);
      t.equal(seen.length, 2 + 40 + 3 * 224);
    },
  );
}

t.test('TX polling, with the real timer: a guest that kicks only when asked has every frame taken', async (t) => {
  let clock = 0;
  const { dev, seen, fe } = setup(t, { now: () => clock });
  const [, txq] = await fe.handshake();
  const q = txq!;
  let kicks = 0;
  for (let i = 0; i < 40; i++) {
    // However the poll timer and these sends interleave, nothing may be left without a kick.
    const old = q.availIndex;
    q.add([{ data: new Uint8Array(NET_HDR_LEN + 64_000) }]);
    if (q.kickIfNeeded(old, true)) kicks++;
    if (i % 3 === 0) await q.waitUsed(1);
    else await new Promise((r) => setImmediate(r));
    clock += 0.5;
  }
  await until(() => seen.length === 40, 'every frame taken');
  t.ok(dev.stats.txPolls > 0, `some came on polls (${dev.stats.txPolls}), the others on ${kicks} kicks`);
});

t.test('TX polling: a poll that takes a sliced batch goes on polling when the slices come at the rate', async (t) => {
  const { dev, seen, q, clock, timer, bulk } = await pollingSetup(t, true, { txSliceFrames: 32 });
  await bulk();
  for (let i = 0; i < 60; i++) q.add([{ data: new Uint8Array(NET_HDR_LEN + 1514) }]);
  clock.ms += 1;
  timer.fire();
  t.notOk(timer.armed, 'the first slice ends with the next one due, not a poll');
  await q.waitUsed(60);
  t.equal(dev.stats.txSlices, 1);
  t.ok(timer.armed, 'the last slice (28 frames, 43 kB, at once) keeps the queue polled');
  t.equal(seen.length, 62);
});

t.test('TX polling: a poll due when the queue stopped does nothing', async (t) => {
  const { dev, seen, fe, q, timer, bulk } = await pollingSetup(t);
  await bulk();
  q.add([{ data: new Uint8Array(NET_HDR_LEN + 64_000) }]); // for it, but the queue stops first
  await fe.setVringEnable(1, false);
  await until(() => !dev.linkUp, 'the TX queue stopped');
  timer.fire();
  t.equal(dev.stats.txPolls, 0, 'no poll');
  t.equal(seen.length, 2, 'the last frame was not taken');
});

t.test('RX: a malformed chain among the buffers of a mergeable frame is returned once, the good ones are not lost', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  const a = fe.memory.alloc(4096);
  const headA = rxq!.add([{ gpa: a, len: 4096, writable: true }]);
  // A chain whose descriptor points outside guest memory: malformed, returned with length 0.
  const headBad = rxq!.add([{ gpa: fe.memory.alloc(64), len: 64, writable: true }]);
  rxq!.writeDesc(headBad, 0x7_0000_0000, 64, 2, 0);
  rxq!.kick();
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const big = frame(10000, 5);
  t.ok(dev.send(big), 'waits: one good 4 KiB buffer cannot hold it');
  await settle();
  const bufs = new Map<number, number>([[headA, a]]);
  for (let i = 0; i < 4; i++) {
    const gpa = fe.memory.alloc(4096);
    bufs.set(rxq!.add([{ gpa, len: 4096, writable: true }]), gpa);
  }
  rxq!.kick();
  await until(() => dev.stats.rxFrames === 1, 'the frame');
  const used = rxq!.used();
  const heads = used.map((u) => u.id);
  t.equal(new Set(heads).size, heads.length, 'no chain comes back twice');
  t.equal(heads.filter((h) => h === headBad).length, 1, 'the malformed chain once');
  t.ok(heads.includes(headA), 'the good chain before it came back too');
  const data = used.filter((u) => u.id !== headBad && u.len > 0);
  const joined = new Uint8Array(data.reduce((n, u) => n + u.len, 0));
  let at = 0;
  for (const u of data) {
    joined.set(fe.memory.read(bufs.get(u.id)!, u.len), at);
    at += u.len;
  }
  t.same(joined.subarray(NET_HDR_LEN), big, 'the frame arrived whole');
  t.equal(dev.stats.rxFrames, 1);
});

/** A TCP/IPv4 frame (34-byte headers before TCP) whose checksum field holds only the pseudo-header
 *  sum, as the stack writes it for a guest that completes checksums. */
function partialTcpFrame(len: number): Uint8Array {
  const f = tcpFrame(80, 40000, 1, 1, 0x18, frame(len, 5), { src: 0x0a000202, dst: 0x0a00020f });
  const pseudo = pseudoHeaderSumV4(0x0a000202, 0x0a00020f, 6, f.length - 34);
  f[34 + 16] = pseudo >> 8;
  f[34 + 17] = pseudo & 0xff;
  return f;
}

t.test('RX: a partial checksum goes as NEEDS_CSUM, directly or after waiting in the backlog', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  t.ok(dev.partialChecksums, 'GUEST_CSUM negotiated: partial checksums allowed');
  const f = partialTcpFrame(1400);
  // No buffers yet: this one waits in the backlog, completed.
  t.ok(dev.send(f, { start: 34, offset: 16 }), 'queued');
  const bufs = postRx(fe, rxq!, 2, 2048);
  await rxq!.waitUsed(1);
  t.ok(dev.send(f, { start: 34, offset: 16 }), 'sent at once');
  const used = [...(await rxq!.waitUsed(1))];
  t.equal(used.length, 1);
  const read = (i: number): { h: Uint8Array; f: Uint8Array } => {
    const b = fe.memory.read(bufs[i]!, NET_HDR_LEN + f.length);
    return { h: b.subarray(0, NET_HDR_LEN), f: b.subarray(NET_HDR_LEN) };
  };
  const queued = read(0);
  t.equal(queued.h[0], 1, 'from the backlog: NEEDS_CSUM');
  t.same(queued.f, f, 'the frame as given');
  const direct = read(1);
  t.equal(direct.h[0], 1, 'direct: NEEDS_CSUM');
  t.equal(direct.h[6]! | (direct.h[7]! << 8), 34, 'csum_start: the TCP header');
  t.equal(direct.h[8]! | (direct.h[9]! << 8), 16, 'csum_offset: its checksum field');
  t.same(direct.f, f, 'the frame as given (pseudo-header sum in the field)');
  t.notOk(dev.send(f, { start: f.length - 1, offset: 16 }), 'a checksum field past the end: refused');
});

t.test('RX: no partial checksums to a guest without GUEST_CSUM', async (t) => {
  const { dev, fe } = setup(t);
  await fe.handshake({ features: (f) => f & ~bit(NetFeature.GUEST_CSUM) });
  t.notOk(dev.partialChecksums);
  t.notOk(dev.send(partialTcpFrame(100), { start: 34, offset: 16 }), 'refused (the stack never asks)');
});

for (const inPlace of [false, true]) {
  t.test(
    `TX: GSO TCP frames (HOST_TSO4/6) pass as one large segment; ones whose header lies are refused${inPlace ? ' (payload left in guest memory)' : ''}`,
    async (t) => {
      const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
      const [, txq] = await fe.handshake();
      t.ok(
        (fe.features & bit(NetFeature.HOST_TSO4)) !== 0n && (fe.features & bit(NetFeature.HOST_TSO6)) !== 0n && (fe.features & bit(NetFeature.HOST_ECN)) !== 0n,
        'HOST_TSO4, HOST_TSO6 and HOST_ECN negotiated',
      );
      const gsoHdr = (gso: number, flags = 1): Uint8Array => {
        const h = hdr(flags, gso);
        h[4] = 1448 & 0xff; // gso_size
        h[5] = 1448 >> 8;
        return h;
      };
      const big4 = tcpFrame(40000, 80, 1, 1, 0x18, frame(60000, 3));
      const tcp6 = new Uint8Array(20 + 30000);
      tcp6[12] = 5 << 4;
      const big6 = ipv6Frame({ src: new Uint8Array(16).fill(1), dst: new Uint8Array(16).fill(2), srcMac: GUEST_MAC }, IpProtocol.TCP, tcp6);
      const send = (h: Uint8Array, f: Uint8Array): void => void txq!.add([{ data: h }, { data: f }]);
      send(gsoHdr(1), big4); // TCPV4
      send(gsoHdr(4 | 0x80), big6); // TCPV6 with ECN
      send(gsoHdr(1, 0), big4); // no NEEDS_CSUM
      send(gsoHdr(4), big4); // says IPv6, is IPv4
      send(gsoHdr(1), udpFrame(1, 2, frame(3000))); // says TCP, is UDP
      send(gsoHdr(5), udpFrame(1, 2, frame(3000))); // UDP_L4 (HOST_USO): not offered
      send(gsoHdr(3), big4); // says UDP, is TCP
      send(gsoHdr(3 | 0x80), udpFrame(1, 2, frame(3000))); // UDP with ECN
      send(gsoHdr(3, 0), udpFrame(1, 2, frame(3000))); // UDP without NEEDS_CSUM
      txq!.kick();
      await txq!.waitUsed(9);
      t.equal(seen.length, 2, 'the two honest ones reach the stack');
      t.same(seen[0]!.frame, big4, 'whole, as one frame');
      t.same(seen[1]!.frame, big6);
      t.equal(dev.stats.txGso, 2);
      t.equal(dev.stats.txGsoBad, 7, 'the others counted and dropped');
    },
  );
}

t.test('TX: a UDP datagram larger than the MTU (HOST_UFO) passes whole over IPv4 and IPv6', async (t) => {
  const { dev, seen, fe } = setup(t);
  const [, txq] = await fe.handshake();
  t.ok(fe.features & bit(NetFeature.HOST_UFO), 'HOST_UFO negotiated');
  const big4 = udpFrame(1, 2, frame(30000, 7));
  const udp6 = new Uint8Array(8 + 20000);
  udp6[5] = 8; // (length: the stack checks it; the device only the protocol)
  const big6 = ipv6Frame({ src: new Uint8Array(16).fill(1), dst: new Uint8Array(16).fill(2), srcMac: GUEST_MAC }, IpProtocol.UDP, udp6);
  txq!.add([{ data: hdr(1, 3) }, { data: big4 }]);
  txq!.add([{ data: hdr(1, 3) }, { data: big6 }]);
  txq!.kick();
  await txq!.waitUsed(2);
  t.equal(seen.length, 2);
  t.same(seen[0]!.frame, big4, 'one datagram, not cut');
  t.same(seen[1]!.frame, big6);
  t.ok(seen[0]!.partial && seen[1]!.partial, 'its checksum partial, as NEEDS_CSUM said');
  t.equal(dev.stats.txGso, 2);
});

t.test('TX: without HOST_UFO negotiated, a UFO frame is refused', async (t) => {
  const { dev, seen, fe } = setup(t);
  const [, txq] = await fe.handshake({ features: (f) => f & ~bit(NetFeature.HOST_UFO) });
  txq!.add([{ data: hdr(1, 3) }, { data: udpFrame(1, 2, frame(3000)) }]);
  txq!.kick();
  await txq!.waitUsed(1);
  t.equal(seen.length, 0);
  t.equal(dev.stats.txGsoBad, 1);
});

t.test('TX: without HOST_TSO4 or HOST_ECN negotiated, such GSO frames are refused', async (t) => {
  const { dev, seen, fe } = setup(t);
  const [, txq] = await fe.handshake({ features: (f) => f & ~bit(NetFeature.HOST_TSO4) & ~bit(NetFeature.HOST_ECN) });
  txq!.add([{ data: hdr(1, 1) }, { data: tcpFrame(40000, 80, 1, 1, 0x18, frame(3000)) }]);
  txq!.add([{ data: hdr(1, 4 | 0x80) }, { data: tcpFrame(40000, 80, 1, 1, 0x18, frame(3000)) }]);
  txq!.kick();
  await txq!.waitUsed(2);
  t.equal(seen.length, 0);
  t.equal(dev.stats.txGsoBad, 2);
});

t.test('RX: a segment larger than the MTU goes as GSO (GUEST_TSO4) with its segment size and header length', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  t.ok(dev.segmentationOffload(4) && dev.segmentationOffload(6), 'GUEST_TSO4/6 negotiated');
  const bufs = postRx(fe, rxq!, 20, 4096);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const f = partialTcpFrame(60000);
  t.ok(dev.send(f, { start: 34, offset: 16, segmentSize: 1448 }));
  const used = await rxq!.waitUsed(15);
  const h = fe.memory.read(bufs[used[0]!.id]!, NET_HDR_LEN);
  t.equal(h[0], 1, 'NEEDS_CSUM');
  t.equal(h[1], 1, 'gso_type TCPV4');
  t.equal(h[2]! | (h[3]! << 8), 34 + 20, 'hdr_len: through the TCP header');
  t.equal(h[4]! | (h[5]! << 8), 1448, 'gso_size');
  t.equal(dev.stats.rxGso, 1);
  t.notOk(dev.send(f, { start: 34, offset: 16, segmentSize: 70000 }), 'a segment size over 16 bits: refused');
});

t.test('RX: no GSO to a guest without GUEST_TSO4', async (t) => {
  const { dev, fe } = setup(t);
  await fe.handshake({ features: (f) => f & ~bit(NetFeature.GUEST_TSO4) });
  t.notOk(dev.segmentationOffload(4));
  t.ok(dev.segmentationOffload(6));
  t.notOk(dev.send(partialTcpFrame(3000), { start: 34, offset: 16, segmentSize: 1448 }), 'refused (the stack never asks)');
});

for (const start of [12345, 7, 99, 2026]) {
  t.test(
    `RX, mergeable buffers of random sizes posted a few at a time (seed ${start}): every frame arrives whole, in order, no chain lost or used twice`,
    async (t) => {
      const { dev, fe } = setup(t);
      const [rxq] = await fe.handshake();
      let seed = start;
      const rand = (n: number): number => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      const bufs: PostedBuffers = new Map();
      /** Chains posted and not yet used: a chain comes back once (its id is reused after). */
      const posted = new Set<number>();
      const post = (count: number): void => {
        for (let i = 0; i < count && posted.size < 120; i++) {
          const len = [512, 1536, 4096, 4096, 4096, 8192][rand(6)]!;
          const gpa = fe.memory.alloc(len);
          const parts =
            rand(5) === 0 && len >= 1024
              ? [
                  { gpa, len: len / 2, writable: true },
                  { gpa: gpa + len / 2, len: len / 2, writable: true },
                ]
              : [{ gpa, len, writable: true }];
          const id = rxq!.add(parts, { indirect: rand(6) === 0 });
          bufs.set(id, parts);
          posted.add(id);
        }
        rxq!.kick();
      };
      const sent: Uint8Array[] = [];
      const got: Uint8Array[] = [];
      let pending: { frame: Uint8Array; inPlace: boolean } | undefined;
      for (let round = 0; round < 200; round++) {
        post(1 + rand(12));
        await until(() => dev.hasRoom(), 'the device to see the RX buffers');
        // Frames until one does not fit; it waits for the next round's buffers.
        for (let tries = 0; tries < 8; tries++) {
          const len = 60 + rand(3) * rand(29900); // (under 60000 bytes: 118 chains of 512 at most, of the 120 posted)
          pending ??= { frame: partialTcpFrame(len), inPlace: rand(2) === 0 };
          const f = pending.frame;
          let ok: boolean;
          if (pending.inPlace) {
            ok = dev.sendHeaders(f.subarray(0, 54), f.length - 54, { start: 34, offset: 16, segmentSize: 1460 }) === 'sent';
            if (ok) {
              let at = 54;
              t.ok(
                dev.completePayloads({
                  fill(views, offsets, lengths, count) {
                    let n = 0;
                    for (let i = 0; i < count; i++) {
                      viewAt(views, i).set(f.subarray(at, at + lengths[i]!), offsets[i]);
                      at += lengths[i]!;
                      n += lengths[i]!;
                    }
                    return n;
                  },
                }) || f.length === 54,
                'payload filled',
              );
            }
          } else {
            ok = dev.send(f);
          }
          if (!ok) break;
          sent.push(f);
          pending = undefined;
        }
        await settle();
        for (const { frame, ids } of usedFrames(fe, bufs, rxq!.used())) {
          for (const id of ids) if (!posted.delete(id)) t.fail(`chain ${id} used while not posted`);
          got.push(frame);
        }
      }
      t.ok(sent.length > 100, `${sent.length} frames sent`);
      t.equal(got.length, sent.length, 'as many frames arrived');
      let same = 0;
      for (let i = 0; i < sent.length; i++) if (got[i] !== undefined && Buffer.compare(got[i]!, sent[i]!) === 0) same++;
      t.equal(same, sent.length, 'each intact, in order');
      t.equal(dev.stats.rxDropped, 0, 'none dropped');
    },
  );
}

t.test('RX in place: headers now, the payload of several frames filled by one call, then published', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  const bufs = postRx(fe, rxq!, 40, 4096);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  // Two frames: one of 1400 bytes of payload (one buffer), one GSO frame of 20000 (several).
  const frames = [partialTcpFrame(1400), partialTcpFrame(20000)];
  const sizes = [1400, 20000];
  for (let i = 0; i < 2; i++) {
    const headers = frames[i]!.subarray(0, 54);
    t.equal(dev.sendHeaders(headers, sizes[i]!, { start: 34, offset: 16, segmentSize: i === 1 ? 1460 : 0 }), 'sent');
  }
  t.ok(dev.payloadsPending, 'held for their payload');
  await settle();
  t.equal(rxq!.usedIdx, 0, 'nothing published before the payload is filled');
  // The filler sees the payload's guest-memory spans, in order, and fills them at once.
  const payload = new Uint8Array(21400);
  payload.set(frames[0]!.subarray(54), 0);
  payload.set(frames[1]!.subarray(54), 1400);
  let calls = 0;
  const ok = dev.completePayloads({
    fill(views, offsets, lengths, count) {
      calls++;
      let at = 0;
      for (let i = 0; i < count; i++) {
        viewAt(views, i).set(payload.subarray(at, at + lengths[i]!), offsets[i]);
        at += lengths[i]!;
      }
      return at;
    },
  });
  t.ok(ok);
  t.equal(calls, 1, 'one fill for both frames');
  const used = await rxq!.waitUsed(1 + Math.ceil((NET_HDR_LEN + 20054) / 4096));
  let u = 0;
  for (let i = 0; i < 2; i++) {
    const first = fe.memory.read(bufs[used[u]!.id]!, NET_HDR_LEN);
    const n = first[10]! | (first[11]! << 8);
    const joined: number[] = [];
    for (let k = 0; k < n; k++, u++) joined.push(...fe.memory.read(bufs[used[u]!.id]!, used[u]!.len));
    t.equal(joined[0], 1, `frame ${i}: NEEDS_CSUM`);
    t.same(Uint8Array.from(joined.slice(NET_HDR_LEN)), frames[i], `frame ${i}: headers and payload intact`);
  }
  t.equal(dev.stats.rxGso, 1);
});

t.test('RX in place: a fill that falls short sends the held frames empty; without buffers, noRoom', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  t.equal(dev.sendHeaders(partialTcpFrame(100).subarray(0, 54), 100, { start: 34, offset: 16 }), 'noRoom', 'no buffers posted');
  postRx(fe, rxq!, 4, 2048);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  t.equal(dev.sendHeaders(partialTcpFrame(100).subarray(0, 54), 100, { start: 34, offset: 16 }), 'sent');
  t.notOk(dev.completePayloads({ fill: () => 40 }), 'short');
  const used = await rxq!.waitUsed(1);
  t.equal(used[0]!.len, 0, 'given back empty: the guest drops it');
  t.equal(dev.stats.rxDropped, 1);
  t.notOk(dev.payloadsPending);
});

t.test('RX in place: a fill that throws still gives the held chains back (empty), and the next frames go out', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  postRx(fe, rxq!, 4, 2048);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  t.equal(dev.sendHeaders(partialTcpFrame(100).subarray(0, 54), 100, { start: 34, offset: 16 }), 'sent');
  t.throws(
    () =>
      dev.completePayloads({
        fill: () => {
          throw new RangeError('a bug in the fill');
        },
      }),
    RangeError,
    "the fill's exception is the caller's",
  );
  t.notOk(dev.payloadsPending, 'nothing held any more');
  const used = await rxq!.waitUsed(1);
  t.equal(used[0]!.len, 0, 'the chain given back empty');
  t.equal(dev.sendHeaders(partialTcpFrame(100).subarray(0, 54), 100, { start: 34, offset: 16 }), 'sent', 'the next frame is taken');
  t.ok(dev.completePayloads({ fill: () => 100 }));
  t.equal((await rxq!.waitUsed(1))[0]!.len, NET_HDR_LEN + 154, 'and goes out whole');
});

t.test('RX in place to a guest without GUEST_CSUM: the checksum is completed over the payload where it landed', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~(bit(NetFeature.GUEST_CSUM) | bit(NetFeature.GUEST_TSO4) | bit(NetFeature.GUEST_TSO6)) });
  t.notOk(dev.partialChecksums);
  // Buffers of 600 bytes: a frame spans several, and its payload starts at an odd place in one.
  const bufs = postRx(fe, rxq!, 40, 600);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const sizes = [1, 1401, 1460];
  const frames = sizes.map((n) => partialTcpFrame(n));
  for (const f of frames) t.equal(dev.sendHeaders(f.subarray(0, 54), f.length - 54, { start: 34, offset: 16 }), 'sent');
  const payload = Buffer.concat(frames.map((f) => f.subarray(54)));
  t.ok(
    dev.completePayloads({
      fill(views, offsets, lengths, count) {
        let at = 0;
        for (let i = 0; i < count; i++) {
          viewAt(views, i).set(payload.subarray(at, at + lengths[i]!), offsets[i]);
          at += lengths[i]!;
        }
        return at;
      },
    }),
  );
  const used = await rxq!.waitUsed(sizes.reduce((n, s) => n + Math.ceil((NET_HDR_LEN + 54 + s) / 600), 0));
  let u = 0;
  for (let i = 0; i < frames.length; i++) {
    const first = fe.memory.read(bufs[used[u]!.id]!, NET_HDR_LEN);
    const n = first[10]! | (first[11]! << 8);
    const joined: number[] = [];
    for (let k = 0; k < n; k++, u++) joined.push(...fe.memory.read(bufs[used[u]!.id]!, used[u]!.len));
    t.equal(joined[0], 0, `frame ${i}: no NEEDS_CSUM, no DATA_VALID`);
    const got = Uint8Array.from(joined.slice(NET_HDR_LEN));
    const want = frames[i]!.slice();
    completeChecksum(want, 34, want.length, 16);
    t.same(got, want, `frame ${i}: the checksum complete and right, the payload intact`);
  }
});

/** The frame's transport checksum field set to its pseudo-header sum, as the TCP NAT leaves it for
 *  the device (a copy). */
function withPseudoSum(f: Uint8Array): Uint8Array {
  const out = f.slice();
  const v4 = f[12] === 0x08;
  const tcp = v4 ? 34 : 54;
  const pseudo = v4
    ? pseudoHeaderSumV4((f[26]! << 24) | (f[27]! << 16) | (f[28]! << 8) | f[29]!, (f[30]! << 24) | (f[31]! << 16) | (f[32]! << 8) | f[33]!, 6, f.length - tcp)
    : pseudoHeaderSumV6(f, 22, f, 38, 6, f.length - tcp);
  out[tcp + 16] = pseudo >> 8;
  out[tcp + 17] = pseudo & 0xff;
  return out;
}

/** A fill that copies `payload` into the spans in order. */
const fillWith = (payload: Uint8Array) => ({
  fill(views: Parameters<typeof viewAt>[0], offsets: Float64Array, lengths: Uint32Array, count: number): number {
    let at = 0;
    for (let i = 0; i < count; i++) {
      viewAt(views, i).set(payload.subarray(at, at + lengths[i]!), offsets[i]);
      at += lengths[i]!;
    }
    return at;
  },
});

/** The frames the guest got, each with its virtio-net header, from `count` used chains. */
async function receivedFrames(fe: TestFrontend, rxq: NonNullable<Awaited<ReturnType<TestFrontend['handshake']>>[number]>, bufs: number[], count: number) {
  const used = await rxq.waitUsed(count);
  const out: { hdr: Uint8Array; frame: Uint8Array }[] = [];
  for (let u = 0; u < used.length;) {
    const first = fe.memory.read(bufs[used[u]!.id]!, NET_HDR_LEN);
    const n = first[10]! | (first[11]! << 8);
    const joined: number[] = [];
    for (let k = 0; k < n; k++, u++) joined.push(...fe.memory.read(bufs[used[u]!.id]!, used[u]!.len));
    out.push({ hdr: Uint8Array.from(joined.slice(0, NET_HDR_LEN)), frame: Uint8Array.from(joined.slice(NET_HDR_LEN)) });
  }
  return out;
}

const NO_GUEST_OFFLOADS = bit(NetFeature.GUEST_CSUM) | bit(NetFeature.GUEST_TSO4) | bit(NetFeature.GUEST_TSO6);

t.test(
  'RX in place, a guest without GUEST_TSO: a large segment is cut into frames of one MSS, each with its own lengths, sequence number, flags and complete checksums',
  async (t) => {
    const { dev, fe } = setup(t);
    const [rxq] = await fe.handshake({ features: (f) => f & ~NO_GUEST_OFFLOADS });
    t.equal(dev.cutBudget(4), 0, 'no buffers: nothing to cut into');
    const bufs = postRx(fe, rxq!, 100, 2048);
    await until(() => dev.hasRoom(), 'the device to see the RX buffers');
    t.equal(dev.cutBudget(4), 64, 'as many frames as chains posted, up to 64');
    t.equal(dev.cutBudget(6), 64);
    // FIN, PSH and CWR on the segment; its sequence number wraps in the third frame; a TCP header
    // with an option (24 bytes); 4000 bytes of payload at an MSS of 1448: 1448 + 1448 + 1104.
    const payload = frame(4000, 9);
    const seq = 0xffffffff - 2000;
    const opts = { src: 0x0a000202, dst: 0x0a00020f, mss: 1460 };
    const big = withPseudoSum(tcpFrame(80, 40000, seq, 77, 0x80 | 0x18 | 0x01, payload, opts));
    const hl = 14 + 20 + 24;
    t.equal(dev.sendHeaders(big.subarray(0, hl), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'sent');
    t.equal(dev.stats.rxCut, 1);
    t.ok(dev.completePayloads(fillWith(payload)));
    const got = await receivedFrames(fe, rxq!, bufs, 3);
    const flags = [0x80 | 0x10, 0x10, 0x18 | 0x01];
    for (let i = 0; i < 3; i++) {
      const want = tcpFrame(80, 40000, seq + i * 1448, 77, flags[i]!, payload.subarray(i * 1448, Math.min(4000, (i + 1) * 1448)), opts);
      t.equal(got[i]!.hdr[0], 0, `frame ${i}: no NEEDS_CSUM (the guest did not negotiate it)`);
      t.equal(got[i]!.hdr[1], 0, `frame ${i}: not GSO`);
      t.same(got[i]!.frame, want, `frame ${i}: the segment it would be had it been sent alone`);
    }
    t.equal(dev.stats.rxFrames, 3);
    t.equal(dev.stats.rxGso, 0);
  },
);

t.test('RX in place, cutting: frames whose chain is too small for them whole go the usual way, across chains, and come out the same', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~NO_GUEST_OFFLOADS });
  // The first frame fits its chain whole (one native call writes it); the next two each take two
  // chains of 1024 bytes (mergeable buffers), written one by one.
  const bufs = [...postRx(fe, rxq!, 1, 2048), ...postRx(fe, rxq!, 4, 1024)];
  await until(() => dev.cutBudget(4) === 5, 'the device to see the RX buffers');
  const payload = frame(4000, 5);
  const seq = 0xffffffff - 2000;
  const opts = { src: 0x0a000202, dst: 0x0a00020f, mss: 1460 };
  const big = withPseudoSum(tcpFrame(80, 40000, seq, 77, 0x80 | 0x18 | 0x01, payload, opts));
  t.equal(dev.sendHeaders(big.subarray(0, 58), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'sent');
  t.equal(dev.stats.rxCut, 1);
  t.ok(dev.completePayloads(fillWith(payload)));
  const got = await receivedFrames(fe, rxq!, bufs, 5);
  t.equal(got.length, 3, 'three frames in five chains');
  const flags = [0x80 | 0x10, 0x10, 0x18 | 0x01];
  for (let i = 0; i < 3; i++) {
    const want = tcpFrame(80, 40000, seq + i * 1448, 77, flags[i]!, payload.subarray(i * 1448, Math.min(4000, (i + 1) * 1448)), opts);
    t.same(got[i]!.frame, want, `frame ${i}: the segment it would be had it been sent alone`);
  }
  t.equal(dev.stats.rxFrames, 3);
});

t.test('RX in place, cutting: a malformed chain among the chains goes back empty, and the frames take the chains around it', async (t) => {
  // The addon's walk takes the well-formed chains; it leaves the one whose `next` points out of
  // the queue to pop(), which returns it with length 0, and the cut goes on after it.
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~NO_GUEST_OFFLOADS });
  const gpaOf = new Map<number, number>();
  const post = (): void => {
    const gpa = fe.memory.alloc(2048);
    gpaOf.set(rxq!.add([{ gpa, len: 2048, writable: true }]), gpa);
  };
  post();
  rxq!.writeDesc(200, fe.memory.alloc(2048), 2048, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 999);
  rxq!.pushAvail(200);
  post();
  post();
  post();
  rxq!.kick();
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  const payload = frame(4000, 3);
  const opts = { src: 0x0a000202, dst: 0x0a00020f };
  const big = withPseudoSum(tcpFrame(80, 40000, 1, 1, 0x18, payload, opts));
  t.equal(dev.sendHeaders(big.subarray(0, 54), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'sent');
  t.equal(dev.stats.rxCut, 1, 'cut in one go');
  t.ok(dev.completePayloads(fillWith(payload)));
  const used = await rxq!.waitUsed(4);
  t.same(
    used.filter((u) => u.id === 200),
    [{ id: 200, len: 0 }],
    'the malformed chain came back empty',
  );
  const good = used.filter((u) => u.id !== 200);
  t.same(
    good.map((u) => u.id),
    [...gpaOf.keys()].slice(0, 3),
    'the frames took the good chains in order',
  );
  good.forEach((u, i) => {
    const want = tcpFrame(80, 40000, 1 + i * 1448, 1, i === 2 ? 0x18 : 0x10, payload.subarray(i * 1448, Math.min(4000, (i + 1) * 1448)), opts);
    t.same(fe.memory.read(gpaOf.get(u.id)! + NET_HDR_LEN, u.len - NET_HDR_LEN), want, `frame ${i}`);
  });
});

t.test('RX in place, cutting: after a cut the chains could not take, the budget is what they took, and that fits', async (t) => {
  // The fuzzer's frames-mode hang: chains many enough for every frame by count, too small for a
  // frame each. The frames one by one ran out of chains after the last had fit one whole, so the
  // budget stayed at the chain count, the sender asked for the same cut, and it failed again,
  // from a microtask, for good.
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~NO_GUEST_OFFLOADS });
  // Frame 0 fits the first chain whole; frame 1 takes twelve chains of 128 bytes; frame 2 fits
  // the last chain whole; frame 3 finds none.
  const bufs = [...postRx(fe, rxq!, 1, 2048), ...postRx(fe, rxq!, 12, 128), ...postRx(fe, rxq!, 1, 2048)];
  await until(() => dev.cutBudget(4) === 14, 'the device to see the RX buffers');
  const payload = frame(5000, 7);
  const opts = { src: 0x0a000202, dst: 0x0a00020f };
  const big = withPseudoSum(tcpFrame(80, 40000, 1, 1, 0x18, payload, opts));
  const cut = { start: 34, offset: 16, segmentSize: 1448 };
  t.equal(dev.sendHeaders(big.subarray(0, 54), 5000, cut), 'noRoom', 'four frames, room for three');
  t.notOk(dev.payloadsPending, 'none held');
  t.equal(dev.cutBudget(4), 3, 'the three frames that fit');
  t.equal(dev.cutBudget(4), 3, 'asked again, the same (the ring is unchanged)');
  // What a sender asks for now goes.
  const three = withPseudoSum(tcpFrame(80, 40000, 1, 1, 0x18, payload.subarray(0, 3 * 1448), opts));
  t.equal(dev.sendHeaders(three.subarray(0, 54), 3 * 1448, cut), 'sent');
  t.ok(dev.completePayloads(fillWith(payload)));
  const got = await receivedFrames(fe, rxq!, bufs, 14);
  t.equal(got.length, 3);
  for (let i = 0; i < 3; i++) {
    const want = tcpFrame(80, 40000, 1 + i * 1448, 1, i === 2 ? 0x18 : 0x10, payload.subarray(i * 1448, (i + 1) * 1448), opts);
    t.same(got[i]!.frame, want, `frame ${i}: the segment it would be alone`);
  }
  // New chains: the ring changed, the budget is the chain count again.
  postRx(fe, rxq!, 5, 2048);
  await until(() => dev.cutBudget(4) === 5, 'the device to see the new buffers');
});

t.test('RX: a sender offered room that cannot use it is offered it again on a later turn, not by a microtask', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake();
  postRx(fe, rxq!, 2, 4096);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  let offers = 0;
  let microtasks = 0;
  // A sender that always fails with chains there (as a cut that does not fit did) and asks again.
  (dev as unknown as { opts: { onRoom: () => void } }).opts.onRoom = () => {
    offers++;
    queueMicrotask(() => microtasks++);
    if (offers < 1000) dev.wantRoom(); // (bounded: a device that offers by microtask fails, not hangs)
  };
  dev.wantRoom();
  await Promise.resolve();
  await Promise.resolve();
  t.equal(offers, 1, 'offered once on this turn');
  // Ten turns of the event loop, counted by an immediate that schedules itself: an offer on
  // each at most (and one for the kick that posted the buffers).
  let turns = 0;
  await new Promise<void>((resolve) => {
    const turn = (): void => {
      if (++turns < 10) setImmediate(turn);
      else resolve();
    };
    setImmediate(turn);
  });
  t.ok(offers >= 2, 'and again on later turns');
  t.ok(offers <= turns + 2, `once a turn at most (${offers} offers in ${turns} turns)`);
  t.equal(microtasks, offers, "each offer let the turn's other microtasks run");
  (dev as unknown as { opts: { onRoom: () => void } }).opts.onRoom = () => undefined;
});

t.test('RX in place, a guest with GUEST_CSUM but not GUEST_TSO6: the frames cut from an IPv6 segment leave their checksum partial', async (t) => {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~bit(NetFeature.GUEST_TSO6) });
  const bufs = postRx(fe, rxq!, 10, 4096);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  t.equal(dev.cutBudget(4), 0, 'IPv4 segments go whole (GUEST_TSO4)');
  t.equal(dev.cutBudget(6), 10);
  const src = new Uint8Array(16).fill(0x20);
  const dst = new Uint8Array(16).fill(0x30);
  const payload = frame(3001, 3);
  const big = withPseudoSum(tcpFrame6(80, 40000, 1000, 5, 0x18, { src, dst, data: payload }));
  t.equal(dev.sendHeaders(big.subarray(0, 74), 3001, { start: 54, offset: 16, segmentSize: 1440 }), 'sent');
  t.ok(dev.completePayloads(fillWith(payload)));
  const got = await receivedFrames(fe, rxq!, bufs, 3);
  for (let i = 0; i < 3; i++) {
    const h = got[i]!.hdr;
    t.equal(h[0], 1, `frame ${i}: NEEDS_CSUM`);
    t.equal(h[1], 0, `frame ${i}: not GSO`);
    t.equal(h[6]! | (h[7]! << 8), 54, 'csum_start');
    t.equal(h[8]! | (h[9]! << 8), 16, 'csum_offset');
    const f = got[i]!.frame.slice();
    completeChecksum(f, 54, f.length, 16); // what the guest's stack does with NEEDS_CSUM
    const want = tcpFrame6(80, 40000, 1000 + i * 1440, 5, i === 2 ? 0x18 : 0x10, {
      src,
      dst,
      data: payload.subarray(i * 1440, Math.min(3001, (i + 1) * 1440)),
    });
    t.same(f, want, `frame ${i}: once completed, the segment it would be alone`);
  }
});

/** A device whose guest takes no offloads, and a segment of 4000 bytes for it: its headers (the
 *  first 54 bytes, the checksum field partial), and a segment of one MSS from the same data. */
async function cutSetup(t: Test) {
  const { dev, fe } = setup(t);
  const [rxq] = await fe.handshake({ features: (f) => f & ~NO_GUEST_OFFLOADS });
  const opts = { src: 0x0a000202, dst: 0x0a00020f };
  const payload = frame(4000, 1);
  const big = withPseudoSum(tcpFrame(80, 40000, 1, 1, 0x18, payload, opts));
  const oneMss = tcpFrame(80, 40000, 1, 1, 0x18, payload.subarray(0, 1448), opts);
  return { dev, fe, rxq: rxq!, payload, big, oneMss, one: withPseudoSum(oneMss) };
}

t.test('RX in place, cutting: all the frames or none; buffers that take a frame in several chains stop the cutting', async (t) => {
  const { dev, fe, rxq, payload, big, oneMss, one } = await cutSetup(t);
  const bufs = postRx(fe, rxq, 2, 2048);
  await until(() => dev.hasRoom(), 'the device to see the RX buffers');
  t.equal(dev.cutBudget(4), 2);
  t.equal(dev.sendHeaders(big.subarray(0, 54), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'noRoom', 'three frames, two chains');
  // Two chains that take a whole frame, then small ones: the third frame fails after two were
  // written. Those two are given back, unpublished.
  for (let i = 0; i < 5; i++) bufs.push(...postRx(fe, rxq, 1, 128));
  await until(() => dev.cutBudget(4) === 7, 'the device to see the small buffers');
  t.equal(dev.sendHeaders(big.subarray(0, 54), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'noRoom');
  t.equal(dev.stats.rxCut, 0);
  t.equal(dev.stats.rxFrames, 0, 'no frame counted');
  t.notOk(dev.payloadsPending, 'none held');
  t.equal(dev.cutBudget(4), 0, 'frames take several chains here: no more cutting');
  // The chains are all there: a frame of one MSS takes the first.
  t.equal(dev.sendHeaders(one.subarray(0, 54), 1448, { start: 34, offset: 16 }), 'sent');
  t.ok(dev.completePayloads(fillWith(payload)));
  const used = await rxq.waitUsed(1);
  t.equal(used[0]!.id, 0, 'the first chain posted');
  t.same(fe.memory.read(bufs[0]!, NET_HDR_LEN + one.length).subarray(NET_HDR_LEN), oneMss);
  t.equal(dev.cutBudget(4), 6, 'a frame in one chain again: cutting resumes');
  // Headers the device cannot cut (an IPv4 header with options, which the TCP NAT never builds):
  // refused, and no segment will be cut again.
  const odd = big.slice(0, 58);
  odd[14] = 0x46;
  t.equal(dev.sendHeaders(odd, 4000, { start: 38, offset: 16, segmentSize: 1448 }), 'noRoom', 'IPv4 options: not cut');
  t.equal(dev.cutBudget(4), 0, 'cutting stops');
  t.equal(dev.stats.rxFrames, 1, 'nothing sent');
});

t.test('RX in place, cutting: a frame that uses up a chain too small for it (dropped) gives the ones before it back used, empty, never twice', async (t) => {
  const { dev, fe, rxq, payload, big, oneMss, one } = await cutSetup(t);
  // Two chains that take a frame, one of 8 bytes (less than a virtio-net header: the frame for
  // it is dropped, the chain used up), then more.
  const bufs = postRx(fe, rxq, 2, 2048);
  bufs.push(...postRx(fe, rxq, 1, 8));
  bufs.push(...postRx(fe, rxq, 3, 2048));
  await until(() => dev.cutBudget(4) === 6, 'the device to see the buffers');
  t.equal(dev.sendHeaders(big.subarray(0, 54), 4000, { start: 34, offset: 16, segmentSize: 1448 }), 'noRoom');
  t.equal(dev.stats.rxCut, 0);
  t.equal(dev.stats.rxDropped, 1, 'the frame for the small chain');
  t.notOk(dev.payloadsPending, 'none held');
  t.equal(dev.sendHeaders(one.subarray(0, 54), 1448, { start: 34, offset: 16 }), 'sent');
  t.ok(dev.completePayloads(fillWith(payload)));
  const used = await rxq.waitUsed(4);
  t.same(
    used.map((u) => [u.id, u.len]),
    [
      [2, 0],
      [0, 0],
      [1, 0],
      [3, NET_HDR_LEN + one.length],
    ],
    'the small chain used up, the two before it given back empty, the frame in the next',
  );
  t.same(fe.memory.read(bufs[3]!, NET_HDR_LEN + one.length).subarray(NET_HDR_LEN), oneMss);
});

t.test('TX: a frame in one buffer (alone or after a header buffer) comes with its sum from the IP header on; a scattered one without', async (t) => {
  const { dev, fe } = setup(t);
  const sums: (number | undefined)[] = [];
  const frames: Uint8Array[] = [];
  dev.sink = {
    receive(frame: Uint8Array, meta: RxMeta) {
      sums.push(meta.frameSum);
      frames.push(frame.slice());
    },
  };
  const [, txq] = await fe.handshake();
  const seg = tcpFrame(40000, 80, 1, 1, 0x18, frame(1401, 5)); // an odd length
  const both = new Uint8Array(NET_HDR_LEN + seg.length);
  both.set(hdr(0), 0);
  both.set(seg, NET_HDR_LEN);
  txq!.add([{ data: both }]); // header and frame in one buffer
  txq!.add([{ data: hdr(0) }, { data: seg }]); // header, then the frame
  txq!.add([{ data: hdr(0) }, { data: seg.subarray(0, 700) }, { data: seg.subarray(700) }]); // scattered
  txq!.kick();
  await txq!.waitUsed(3);
  const want = sum16(seg, 14, seg.length - 14);
  t.same(sums, [want, want, -1], 'summed in the copy where the frame is in one buffer');
  for (const f of frames) t.same(f, seg, 'and copied whole');
});

t.test('TX: a TCP segment with NEEDS_CSUM leaves its payload in guest memory; kept, its buffer goes back after releasePayloads', async (t) => {
  let released = 0;
  const { dev, fe } = setup(t, { payloadsInPlace: true, releasePayloads: () => released++ });
  const got: { headers: Uint8Array; payload: Uint8Array | undefined; loaded: boolean | undefined; loadedPayload: Uint8Array }[] = [];
  let keep = true;
  dev.sink = {
    receive(frame: Uint8Array, meta: RxMeta) {
      const p = meta.payload;
      let payload: Uint8Array | undefined;
      if (p) {
        // What the spans hold, read straight from guest memory.
        const parts: number[] = [];
        for (let i = 0; i < p.count; i++) parts.push(...p.views[i]!.subarray(p.offsets[i], p.offsets[i]! + p.lengths[i]!));
        payload = Uint8Array.from(parts);
        p.kept = keep;
      }
      const headers = frame.slice(0, p ? p.at : frame.length);
      const loaded = p?.loaded;
      p?.load();
      got.push({ headers, payload, loaded, loadedPayload: frame.slice(p ? p.at : frame.length) });
    },
  };
  const [, txq] = await fe.handshake();
  const seg = tcpFrame(40000, 80, 1, 1, 0x18, frame(1400, 9));
  const small = tcpFrame(40000, 80, 1, 1, 0x18, frame(100, 9));
  // Scattered over three buffers, the payload split between two of them; NEEDS_CSUM over the TCP
  // segment, as a guest with checksum offload sends it.
  const needsCsum = hdr(1);
  needsCsum[6] = 34;
  needsCsum[8] = 16;
  txq!.add([{ data: needsCsum }, { data: seg.subarray(0, 60) }, { data: seg.subarray(60, 700) }, { data: seg.subarray(700) }]);
  txq!.add([{ data: hdr(0) }, { data: seg }]); // no NEEDS_CSUM: copied whole
  txq!.add([{ data: hdr(1) }, { data: small }]); // short: copied whole
  txq!.kick();
  await txq!.waitUsed(3);
  t.equal(got.length, 3);
  t.equal(got[0]!.loaded, false, 'with NEEDS_CSUM the payload is left in guest memory');
  t.same(got[0]!.headers, seg.subarray(0, 54), 'the headers copied');
  t.same(got[0]!.payload, seg.subarray(54), 'the payload where the spans say, in guest memory');
  t.same(got[0]!.loadedPayload, seg.subarray(54), 'load() copies it into the frame');
  // Without NEEDS_CSUM the frame is copied whole (a segment that may be joined: into the device's
  // own buffer, whose payload may be kept by reference all the same).
  t.equal(got[1]!.loaded, true, 'without NEEDS_CSUM the frame comes whole');
  t.same([...got[1]!.headers, ...got[1]!.loadedPayload], seg);
  t.same(got[1]!.payload, seg.subarray(54), 'its payload spans point at its copy');
  t.equal(got[2]!.payload, undefined, 'a short segment comes whole');
  t.equal(released, 1, 'releasePayloads ran before the kept buffer went back');
  keep = false;
  txq!.add([{ data: hdr(1) }, { data: seg }]);
  txq!.kick();
  await txq!.waitUsed(1);
  t.equal(released, 1, 'nothing kept: nothing to release');
});

t.test(
  'TX: segments in several buffers join in place; kept, slots and buffers wait for releasePayloads, mid-batch when every slot is held; in one buffer, they are copied',
  async (t) => {
    const kept: { view: Uint8Array; offset: number; bytes: Uint8Array }[] = [];
    const releases: { spans: number; used: number }[] = [];
    let intact = true;
    let txq: Awaited<ReturnType<TestFrontend['handshake']>>[1] | undefined;
    const { dev, fe } = setup(t, {
      payloadsInPlace: true,
      releasePayloads: () => {
        // Every payload kept since the last release is still where its span says; how many
        // buffers have gone back to the guest.
        for (const k of kept) if (!k.view.subarray(k.offset, k.offset + k.bytes.length).every((b, i) => b === k.bytes[i])) intact = false;
        releases.push({ spans: kept.length, used: txq!.usedIdx });
        kept.length = 0;
      },
    });
    const payloads: Uint8Array[] = [];
    const shapes: string[] = [];
    dev.sink = {
      receive(frame: Uint8Array, meta: RxMeta) {
        const p = meta.payload!;
        // In the device's buffer (the frame), or in the guest's.
        const places = Array.from({ length: p.count }, (_, i) => (p.views[i]!.buffer === frame.buffer ? 'frame' : 'guest'));
        shapes.push(`${String(p.loaded)} ${places.join(',')}`);
        const spans = Array.from({ length: p.count }, (_, i) => p.views[i]!.slice(p.offsets[i], p.offsets[i]! + p.lengths[i]!));
        for (let i = 0; i < p.count; i++) kept.push({ view: p.views[i]!, offset: p.offsets[i]!, bytes: spans[i]! });
        payloads.push(Uint8Array.from(spans.flatMap((b) => [...b])));
        p.kept = true;
      },
    };
    [, txq] = await fe.handshake();
    // Ten runs of three segments (the third with PSH, which ends a run), in one batch, laid out as a
    // Linux guest does: the virtio-net header and the segment's headers in one buffer, its payload in
    // the next.
    const runs = 10;
    const data = frame(runs * 3 * 1000, 7);
    const segment = (k: number): Uint8Array => tcpFrame(40000, 80, 1 + k * 1000, 1, 0x10 | (k % 3 === 2 ? 0x08 : 0), data.subarray(k * 1000, (k + 1) * 1000));
    for (let k = 0; k < runs * 3; k++) {
      const f = segment(k);
      txq!.add([{ data: Uint8Array.from([...hdr(0), ...f.subarray(0, 54)]) }, { data: f.subarray(54) }]);
    }
    txq!.kick();
    await txq!.waitUsed(runs * 3);
    t.equal(payloads.length, runs, 'each run joined into one segment');
    t.same(shapes, new Array<string>(runs).fill('false guest,guest,guest'), 'every part left in guest memory, not loaded');
    t.same(Uint8Array.from(payloads.flatMap((p) => [...p])), data, 'every byte, in order, where the spans say');
    t.same(
      releases,
      [
        { spans: 24, used: 0 },
        { spans: 6, used: 0 },
      ],
      'released when all eight slots were held, then at the end of the batch; no buffer went back before either',
    );
    t.ok(intact, 'no kept payload was overwritten before its release');
    t.equal(dev.stats.txCoalesced, runs * 2);
    // The same in one buffer each: copied, the payload one span in the device's buffer.
    shapes.length = 0;
    for (let k = 0; k < 3; k++) txq!.add([{ data: hdr(0) }, { data: segment(k) }]);
    txq!.kick();
    await txq!.waitUsed(3);
    t.same(shapes, ['true frame'], 'in one buffer: copied');
  },
);

t.test('TX: a segment joined in place whose payload is read (not kept) is loaded whole from guest memory; its checksums verify', async (t) => {
  const seen: Uint8Array[] = [];
  const { dev, fe } = setup(t, { payloadsInPlace: true });
  dev.sink = {
    receive(frame: Uint8Array, meta: RxMeta) {
      const p = meta.payload!;
      t.equal(p.loaded, false);
      p.load();
      t.equal(p.loaded, true);
      seen.push(frame.slice());
    },
  };
  const [, txq] = await fe.handshake();
  const data = frame(4 * 1001, 5); // odd-sized parts: each at an odd place of the next
  const segs = [0, 1, 2, 3].map((k) => tcpFrame(40000, 80, 7 + k * 1001, 1, k === 3 ? 0x18 : 0x10, data.subarray(k * 1001, (k + 1) * 1001)));
  // (Headers and payload in buffers of their own, the payload cut once more: a run in place.)
  for (const f of segs) txq!.add([{ data: hdr(0) }, { data: f.subarray(0, 54) }, { data: f.subarray(54, 500) }, { data: f.subarray(500) }]);
  txq!.kick();
  await txq!.waitUsed(4);
  t.equal(seen.length, 1, 'one segment');
  const f = seen[0]!;
  const want = tcpFrame(40000, 80, 7, 1, 0x18, data);
  t.same(f.subarray(54), data, 'its payload loaded whole, in order');
  t.equal(sum16(f, 14, 20), 0xffff, 'its IPv4 header checksum verifies');
  t.equal(sum16(f, 34, f.length - 34, pseudoHeaderSumV4(get32(f, 26), get32(f, 30), 6, f.length - 34)), 0xffff, 'its TCP checksum verifies');
  t.same(f.subarray(0, 54), want.subarray(0, 54), 'its headers those of the segment sent whole');
});

t.test('the guest link up log line names the negotiated features that shape the data path', async (t) => {
  const lines: { obj: Record<string, unknown>; msg: string }[] = [];
  const record = (obj: unknown, msg?: string): void => void lines.push({ obj: obj as Record<string, unknown>, msg: msg ?? '' });
  const logger = { debug: () => undefined, info: record, warn: record, error: record };
  const { fe } = setup(t, { logger });
  // A driver without receive checksum offload (and so without GUEST_TSO, which needs it).
  await fe.handshake({ features: (f) => f & ~(bit(NetFeature.GUEST_CSUM) | bit(NetFeature.GUEST_TSO4) | bit(NetFeature.GUEST_TSO6)) });
  await until(() => lines.some((l) => l.msg === 'guest link up'), 'the link up line');
  const up = lines.find((l) => l.msg === 'guest link up')!;
  const features = up.obj.features as string[];
  t.ok(features.includes('MRG_RXBUF') && features.includes('HOST_TSO4') && features.includes('HOST_TSO6'), `negotiated: ${features.join(' ')}`);
  t.notOk(
    features.some((f) => f.startsWith('GUEST_')),
    'not what the driver declined',
  );
});
