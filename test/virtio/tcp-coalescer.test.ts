// Receive coalescing of guest TCP segments (src/virtio/tcp-coalescer.ts) through the device and
// the test frontend: consecutive segments of one connection reach the sink as one segment whose
// bytes, lengths and checksums are what the stack would see had the guest sent it whole; anything
// that differs, or fails a checksum, goes on alone and in order.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { VhostUserServer } from 'vhost-user-ts';
import { TestFrontend } from 'vhost-user-ts/testing';
import type { RxMeta } from '../../src/iface/link.js';
import { MAX_FRAME, NET_HDR_LEN, VirtioNetDevice } from '../../src/virtio/net-device.js';
import { RUN_SPANS } from '../../src/virtio/tcp-coalescer.js';
import type { NetDeviceOptions } from '../../src/virtio/net-device.js';
import { pseudoHeaderSumV4, pseudoHeaderSumV6, sum16 } from '../../src/wire/checksum.js';
import { TcpOptions } from '../../src/wire/index.js';
import { tcpFrame, tcpFrame6, udpFrame } from '../support/packets.js';

const ACK = 0x10;
const PSH = 0x08;
const FIN = 0x01;
const URG = 0x20;
const CWR = 0x80;
const SEQ = 0xfffff000; // runs wrap the sequence space
const ISN_ACK = 5000;

export interface Seen {
  frame: Uint8Array;
  frameSum: number;
  /** Spans of its payload the device left in guest memory (loaded by the sink). */
  leftInGuest: number;
  /** Its transport checksum partial (NEEDS_CSUM): [start, offset]; else undefined. */
  partial?: [number, number];
}

export function setup(t: Test, opts: NetDeviceOptions = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-gro-'));
  const dev = new VirtioNetDevice(opts);
  const seen: Seen[] = [];
  dev.sink = {
    receive(frame: Uint8Array, meta: RxMeta) {
      const p = meta.payload;
      let leftInGuest = 0;
      if (p !== undefined && !p.loaded) for (let i = 0; i < p.count; i++) if (p.views[i]!.buffer !== frame.buffer) leftInGuest++;
      p?.load(); // (in place) as a consumer that reads the payload
      const partial: [number, number] | undefined = meta.checksumPartial ? [meta.checksumStart ?? 0, meta.checksumOffset ?? 0] : undefined;
      seen.push({ frame: frame.slice(), frameSum: meta.frameSum ?? -1, leftInGuest, partial });
    },
  };
  const server = new VhostUserServer(dev);
  server.listen(join(dir, 'sock'));
  const fe = TestFrontend.connect(join(dir, 'sock'), { memorySize: 8 << 20 });
  t.teardown(() => {
    fe.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return { dev, seen, fe };
}

export type TxQueue = NonNullable<Awaited<ReturnType<TestFrontend['handshake']>>[number]>;

/**
 * Sends the frames in one batch (one kick) and waits until the device has used them all. Each in
 * one buffer behind its virtio-net header; with `how` a random generator, laid out at random as
 * drivers do: so, the header in a buffer of its own, the frame's first bytes behind the header and
 * the rest in the next, or the frame cut in three; with `how` a number, its first `how` bytes behind
 * the header and the rest in the next buffer (a Linux guest's headers and payload).
 */
async function sendBatch(txq: TxQueue, frames: Uint8Array[], how?: ((n: number) => number) | number): Promise<void> {
  const rand = typeof how === 'function' ? how : undefined;
  for (const f of frames) {
    // (The layout mod a prime: a linear congruential generator's low bits repeat.)
    const layout = typeof how === 'number' ? 2 : (rand?.(1009) ?? 0) % 4;
    const cut = typeof how === 'number' ? how : rand !== undefined ? 1 + rand(f.length - 1) : 0;
    const cut2 = rand !== undefined ? cut + rand(f.length - cut) : 0;
    if (layout === 1) {
      txq.add([{ data: new Uint8Array(NET_HDR_LEN) }, { data: f }]);
    } else if (layout === 2) {
      const first = new Uint8Array(NET_HDR_LEN + cut);
      first.set(f.subarray(0, cut), NET_HDR_LEN);
      txq.add([{ data: first }, { data: f.subarray(cut) }]);
    } else if (layout === 3 && cut2 > cut && cut2 < f.length) {
      txq.add([{ data: new Uint8Array(NET_HDR_LEN) }, { data: f.subarray(0, cut) }, { data: f.subarray(cut, cut2) }, { data: f.subarray(cut2) }]);
    } else {
      const data = new Uint8Array(NET_HDR_LEN + f.length);
      data.set(f, NET_HDR_LEN);
      txq.add([{ data }]);
    }
  }
  txq.kick();
  await txq.waitUsed(frames.length);
}

const ts = (val: number): TcpOptions => {
  const o = new TcpOptions();
  o.timestamp = true;
  o.tsVal = val;
  o.tsEcr = 77;
  return o;
};

/** A repeatable generator of whole numbers below n (a linear congruential one), from `seed`. */
export function randomFrom(seed: number): (n: number) => number {
  return (n) => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed % n;
  };
}

export const bytes = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 7 + seed * 13 + (i >> 8)) & 0xff);

/** An IPv4 segment of the test connection: `len` bytes at offset `at` of `data`. */
export function seg(
  data: Uint8Array,
  at: number,
  len: number,
  o: { flags?: number; tsVal?: number; port?: number; ack?: number; window?: number; ttl?: number } = {},
): Uint8Array {
  return tcpFrame(o.port ?? 40000, 80, SEQ + at, o.ack ?? ISN_ACK, o.flags ?? ACK, data.subarray(at, at + len), {
    options: ts(o.tsVal ?? 1),
    window: o.window ?? 1000,
    ttl: o.ttl ?? 64,
  });
}

/** A virtio-net header with NEEDS_CSUM over [start, end), the field `offset` further. */
export function partialHeader(start: number, offset: number): Uint8Array {
  const h = new Uint8Array(NET_HDR_LEN);
  h[0] = 1;
  h[6] = start & 0xff;
  h[7] = start >> 8;
  h[8] = offset & 0xff;
  h[9] = offset >> 8;
  return h;
}

const get32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;

const SRC6 = Uint8Array.from([0xfe, 0xc0, ...new Array<number>(13).fill(0), 0x15]);
const DST6 = Uint8Array.from([0xfe, 0xc0, ...new Array<number>(13).fill(0), 0x02]);
export function seg6(data: Uint8Array, at: number, len: number, flags = ACK): Uint8Array {
  return tcpFrame6(40000, 80, SEQ + at, ISN_ACK, flags, { src: SRC6, dst: DST6, data: data.subarray(at, at + len) });
}

/** The frame's TCP segment: where it starts, its sequence number, flags and payload. */
function tcpOf(f: Uint8Array): { at: number; seq: number; flags: number; payload: Uint8Array } {
  const tcp = f[12] === 0x08 ? 14 + (f[14]! & 0x0f) * 4 : 54;
  const at = tcp + (f[tcp + 12]! >> 4) * 4;
  const seq = ((f[tcp + 4]! << 24) | (f[tcp + 5]! << 16) | (f[tcp + 6]! << 8) | f[tcp + 7]!) >>> 0;
  return { at: tcp, seq, flags: f[tcp + 13]!, payload: f.subarray(at) };
}

/** Every check the stack makes of lengths and checksums, done in full (no sum from the copy). */
function checkFrame(t: Test, s: Seen, what: string, mayLackSum = false): void {
  const f = s.frame;
  const v4 = f[12] === 0x08;
  const tcp = tcpOf(f).at;
  const tcpLen = f.length - tcp;
  if (v4) {
    t.equal((f[16]! << 8) | f[17]!, f.length - 14, `${what}: IPv4 total length`);
    t.equal(sum16(f, 14, 20), 0xffff, `${what}: IPv4 header checksum`);
    const src = ((f[26]! << 24) | (f[27]! << 16) | (f[28]! << 8) | f[29]!) >>> 0;
    const dst = ((f[30]! << 24) | (f[31]! << 16) | (f[32]! << 8) | f[33]!) >>> 0;
    t.equal(sum16(f, tcp, tcpLen, pseudoHeaderSumV4(src, dst, 6, tcpLen)), 0xffff, `${what}: TCP checksum`);
  } else {
    t.equal((f[18]! << 8) | f[19]!, f.length - 54, `${what}: IPv6 payload length`);
    t.equal(sum16(f, tcp, tcpLen, pseudoHeaderSumV6(f, 22, f, 38, 6, tcpLen)), 0xffff, `${what}: TCP checksum`);
  }
  // (A frame the device did not join, copied from several buffers, may come without one, -1:
  // the stack then sums it itself.)
  const sum = s.frameSum === -1 && mayLackSum ? -1 : sum16(f, 14, f.length - 14);
  t.equal(s.frameSum, sum, `${what}: the frame sum handed on is the frame's`);
}

// Each test twice: payload copied into the device's buffer, and left in guest memory (a device
// whose consumer keeps payload by reference: the sink loads it).
for (const inPlace of [false, true]) {
  const mode = inPlace ? ' (in place)' : '';

  t.test(`consecutive IPv4 segments become one: payload, lengths, checksums, PSH${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const data = bytes(20 * 1448, 1);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 20; i++) frames.push(seg(data, i * 1448, 1448, { flags: i === 19 ? ACK | PSH : ACK }));
    await sendBatch(txq, frames);
    t.equal(seen.length, 1, 'one segment reaches the sink');
    const s = seen[0]!;
    checkFrame(t, s, 'joined');
    const tcp = tcpOf(s.frame);
    t.equal(tcp.seq, SEQ, 'the first segment’s sequence number');
    t.equal(tcp.flags, ACK | PSH, 'PSH from the last part');
    t.same(tcp.payload, data, 'the payload, whole and in order');
    const first = frames[0]!;
    const kept = (f: Uint8Array): number[] => [
      ...f.subarray(0, 16),
      ...f.subarray(20, 24),
      ...f.subarray(26, 38),
      ...f.subarray(42, 47),
      ...f.subarray(48, 50),
      ...f.subarray(52, 66),
    ];
    t.same(kept(s.frame), kept(first), 'headers as the first segment’s but for lengths, checksums and PSH');
    t.equal(dev.stats.txFrames, 20, 'every guest frame counted');
    t.equal(dev.stats.txCoalesced, 19);
  });

  t.test(`IPv6 segments join; odd-sized parts sum at their place${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const data = bytes(5 * 301, 2);
    const frames: Uint8Array[] = [];
    for (let i = 0; i < 5; i++) frames.push(seg6(data, i * 301, 301));
    await sendBatch(txq, frames);
    t.equal(seen.length, 1);
    checkFrame(t, seen[0]!, 'joined IPv6');
    t.same(tcpOf(seen[0]!.frame).payload, data);
    t.equal(dev.stats.txCoalesced, 4);
    // The same over IPv4, 301-byte parts (at odd offsets every other one).
    const v4 = bytes(6 * 301, 3);
    seen.length = 0;
    await sendBatch(
      txq,
      Array.from({ length: 6 }, (_, i) => seg(v4, i * 301, 301)),
    );
    t.equal(seen.length, 1);
    checkFrame(t, seen[0]!, 'joined IPv4, odd parts');
    t.same(tcpOf(seen[0]!.frame).payload, v4);
  });

  t.test(`a run ends at a short segment, at PSH, and at the IP packet’s limit${mode}`, async (t) => {
    const { seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const data = bytes(100 * 1448, 4);
    // 3 full, a short one (ends the run), then 2 full: two segments.
    const frames = [seg(data, 0, 1448), seg(data, 1448, 1448), seg(data, 2896, 1448), seg(data, 4344, 700), seg(data, 5044, 1448), seg(data, 6492, 1448)];
    await sendBatch(txq, frames);
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [3 * 1448 + 700, 2 * 1448],
    );
    // PSH ends a run too.
    seen.length = 0;
    await sendBatch(txq, [seg(data, 0, 1448), seg(data, 1448, 1448, { flags: ACK | PSH }), seg(data, 2896, 1448)]);
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [2 * 1448, 1448],
    );
    // 50 full segments: as many as one IP packet holds (45 of 1448 with these headers), then the rest.
    seen.length = 0;
    await sendBatch(
      txq,
      Array.from({ length: 50 }, (_, i) => seg(data, i * 1448, 1448)),
    );
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [45 * 1448, 5 * 1448],
    );
    for (const s of seen) checkFrame(t, s, 'at the limit');
    t.ok(seen[0]!.frame.length - 14 <= 65535);
    // A longer segment after a run's first is not joined.
    seen.length = 0;
    await sendBatch(txq, [seg(data, 0, 1000), seg(data, 1000, 1448)]);
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [1000, 1448],
    );
  });

  t.test(`small segments: a run holds ${RUN_SPANS} at most in place, as many as fit one IP packet otherwise${mode}`, async (t) => {
    const { seen, fe } = setup(t, { payloadsInPlace: inPlace, txSliceMs: 1000 });
    const txq = (await fe.handshake())[1]!;
    // (One batch, never sliced by time: a slice's end ends a run. In place, laid out as a Linux
    // guest does, so that the run is kept in place.)
    const data = bytes(120 * 300, 6);
    await sendBatch(
      txq,
      Array.from({ length: 120 }, (_, i) => seg(data, i * 300, 300)),
      inPlace ? 66 : undefined,
    );
    // (One IP packet holds 218 parts of 300 bytes with these headers.)
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      inPlace ? [RUN_SPANS * 300, (120 - RUN_SPANS) * 300] : [120 * 300],
    );
    t.same(Uint8Array.from(seen.flatMap((s) => [...tcpOf(s.frame).payload])), data, 'every byte, in order');
    for (const s of seen) checkFrame(t, s, 'small segments');
  });

  t.test(`what differs is not joined, and order is kept${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const data = bytes(4 * 1448, 5);
    const cases: [string, Uint8Array][] = [
      ['a gap in sequence', seg(data, 2 * 1448, 1448)],
      ['another connection', seg(data, 1448, 1448, { port: 40001 })],
      ['another acknowledgment', seg(data, 1448, 1448, { ack: ISN_ACK + 1 })],
      ['another window', seg(data, 1448, 1448, { window: 999 })],
      ['other options (a new timestamp)', seg(data, 1448, 1448, { tsVal: 2 })],
      ['FIN', seg(data, 1448, 1448, { flags: ACK | FIN })],
      ['URG', seg(data, 1448, 1448, { flags: ACK | URG })],
      ['CWR', seg(data, 1448, 1448, { flags: ACK | CWR })],
      ['no ACK', seg(data, 1448, 1448, { flags: PSH })],
      ['another TTL', seg(data, 1448, 1448, { ttl: 63 })],
    ];
    for (const [what, second] of cases) {
      seen.length = 0;
      const first = seg(data, 0, 1448);
      await sendBatch(txq, [first, second]);
      t.same(
        seen.map((s) => s.frame),
        [first, second],
        `${what}: both as sent, in order`,
      );
    }
    t.equal(dev.stats.txCoalesced, 0);
    // TTL 1 (a traceroute probe) never starts or joins a run; nor does a short frame or a
    // datagram, which also ends a run before it.
    seen.length = 0;
    const probe = [seg(data, 0, 1448, { ttl: 1 }), seg(data, 1448, 1448, { ttl: 1 })];
    await sendBatch(txq, probe);
    t.same(
      seen.map((s) => s.frame),
      probe,
      'TTL 1: alone',
    );
    seen.length = 0;
    const udp = udpFrame(5000, 53, bytes(600, 6));
    const small = seg(data, 2896, 100);
    await sendBatch(txq, [seg(data, 0, 1448), seg(data, 1448, 1448), udp, small, seg(data, 2996, 1448)]);
    t.same(
      seen.map((s) => s.frame.length),
      [14 + 20 + 32 + 2 * 1448, udp.length, small.length, 14 + 20 + 32 + 1448],
      'run, datagram, short segment, next run: in order',
    );
  });

  t.test(`a segment whose checksum fails goes on alone, unchanged; the run goes on around it${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const data = bytes(5 * 1448, 7);
    const frames = Array.from({ length: 5 }, (_, i) => seg(data, i * 1448, 1448));
    const bad = frames[2]!.slice();
    bad[bad.length - 1] = bad[bad.length - 1]! ^ 0x40; // a payload bit: the TCP checksum fails
    await sendBatch(txq, [frames[0]!, frames[1]!, bad, frames[3]!, frames[4]!]);
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [2 * 1448, 1448, 2 * 1448],
      'the run, the bad segment, a new run',
    );
    t.same(seen[1]!.frame, bad, 'the bad segment as the guest sent it (the stack drops it)');
    checkFrame(t, seen[0]!, 'before');
    checkFrame(t, seen[2]!, 'after');
    // A first segment whose checksum fails is found when the second would join.
    seen.length = 0;
    const badFirst = frames[0]!.slice();
    badFirst[100] = badFirst[100]! ^ 1;
    await sendBatch(txq, [badFirst, frames[1]!, frames[2]!]);
    t.same(seen[0]!.frame, badFirst, 'the bad first segment alone');
    t.same(
      seen.map((s) => tcpOf(s.frame).payload.length),
      [1448, 2 * 1448],
      'then a run of the others',
    );
    checkFrame(t, seen[1]!, 'the run after it');
    // An IPv4 header checksum that fails, the rest equal.
    seen.length = 0;
    const ipBad = frames[1]!.slice();
    ipBad[14 + 4] = ipBad[14 + 4]! ^ 0xff; // the identity (may differ) with the header checksum left as it was
    await sendBatch(txq, [frames[0]!, ipBad]);
    t.same(
      seen.map((s) => s.frame),
      [frames[0]!, ipBad],
    );
    t.ok(dev.stats.txCoalesced >= 2);
  });

  t.test(`frames with a partial checksum elsewhere, or with coalesce off, are handed on as sent; in several buffers, they join in place${mode}`, async (t) => {
    const data = bytes(3 * 1448, 8);
    const frames = Array.from({ length: 3 }, (_, i) => seg(data, i * 1448, 1448));
    {
      const { seen, fe } = setup(t, { coalesce: false, payloadsInPlace: inPlace });
      const txq = (await fe.handshake())[1]!;
      await sendBatch(txq, frames);
      t.same(
        seen.map((s) => s.frame),
        frames,
        'coalesce off',
      );
    }
    {
      const { seen, fe } = setup(t, { payloadsInPlace: inPlace });
      const [, txq] = await fe.handshake();
      // NEEDS_CSUM whose range is not the TCP segment's, or whose field is not its checksum's.
      for (const [start, offset] of [
        [14, 16],
        [34, 6],
        [20, 30],
      ]) {
        txq!.add([{ data: partialHeader(start!, offset!) }, { data: frames[0]! }]);
      }
      // Scattered over two buffers.
      for (const f of frames) txq!.add([{ data: new Uint8Array(NET_HDR_LEN) }, { data: f.subarray(0, 100) }, { data: f.subarray(100) }]);
      txq!.kick();
      await txq!.waitUsed(6);
      t.same(
        seen.slice(0, 3).map((s) => s.frame),
        [frames[0]!, frames[0]!, frames[0]!],
        'NEEDS_CSUM not over the TCP checksum: as sent',
      );
      t.same(
        seen.slice(0, 3).map((s) => s.partial),
        [
          [14, 16],
          [34, 6],
          [20, 30],
        ],
        'passed on partial, as they said',
      );
      if (inPlace) {
        // Their payload is left where it is: a frame in several buffers joins as any.
        t.equal(seen.length, 4, 'scattered: joined');
        t.same(tcpOf(seen[3]!.frame).payload, data, 'every byte, in order');
        checkFrame(t, seen[3]!, 'scattered');
      } else {
        t.same(
          seen.slice(3).map((s) => s.frame),
          frames,
          'scattered: as sent (copied, a frame joins only from one buffer)',
        );
      }
    }
  });

  t.test(`segments with a partial TCP checksum (NEEDS_CSUM, no TSO) join in runs of their own; the merged one goes on partial${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const [, txq] = await fe.handshake();
    const data = bytes(8 * 1448, 11);
    /** As a guest with checksum offload sends it: the TCP checksum field holds the pseudo-header sum. */
    const partialSeg = (f: Uint8Array): Uint8Array => {
      const tcp = f[12] === 0x08 ? 34 : 54;
      const len = f.length - tcp;
      const pseudo = tcp === 34 ? pseudoHeaderSumV4(get32(f, 26), get32(f, 30), 6, len) : pseudoHeaderSumV6(f, 22, f, 38, 6, len);
      const g = f.slice();
      g[tcp + 16] = pseudo >> 8;
      g[tcp + 17] = pseudo & 0xff;
      return g;
    };
    // (In place, the IPv6 ones as a Linux guest lays them out: headers in one buffer, the
    // payload in the next two.)
    const send = (f: Uint8Array, partial: boolean): void => {
      const tcp = f[12] === 0x08 ? 34 : 54;
      const h = partial ? partialHeader(tcp, 16) : new Uint8Array(NET_HDR_LEN);
      if (inPlace && tcp === 54) txq!.add([{ data: h }, { data: f.subarray(0, 86) }, { data: f.subarray(86, 600) }, { data: f.subarray(600) }]);
      else txq!.add([{ data: h }, { data: f }]);
    };
    // Three partial, then two complete (a run of their own), then two partial again, the first
    // with a damaged IPv4 header checksum (alone, as sent), then three partial IPv6 ones.
    for (let i = 0; i < 3; i++) send(partialSeg(seg(data, i * 1448, 1448)), true);
    for (let i = 3; i < 5; i++) send(seg(data, i * 1448, 1448), false);
    const damaged = partialSeg(seg(data, 5 * 1448, 1448));
    damaged[24] = damaged[24]! ^ 0x40;
    send(damaged, true);
    send(partialSeg(seg(data, 6 * 1448, 1448)), true);
    for (let i = 0; i < 3; i++) send(partialSeg(seg6(data, i * 1448, 1448)), true);
    txq!.kick();
    await txq!.waitUsed(10);
    t.same(
      seen.map((s) => [tcpOf(s.frame).payload.length, s.partial]),
      [
        [3 * 1448, [34, 16]],
        [2 * 1448, undefined],
        [1448, [34, 16]],
        [1448, [34, 16]],
        [3 * 1448, [54, 16]],
      ],
      'runs: partial, complete, the damaged one alone, one, IPv6',
    );
    t.same(seen[2]!.frame, damaged, 'the damaged one as sent');
    t.same(tcpOf(seen[0]!.frame).payload, data.subarray(0, 3 * 1448), 'every byte, in order');
    t.same(tcpOf(seen[4]!.frame).payload, data.subarray(0, 3 * 1448));
    for (const i of [0, 4]) {
      // Completed as the checksum's consumer would: the segment's sum over its field's pseudo-header sum.
      const f = seen[i]!.frame.slice();
      const tcp = seen[i]!.partial![0];
      const v4 = tcp === 34;
      const len = f.length - tcp;
      const pseudo = v4 ? pseudoHeaderSumV4(get32(f, 26), get32(f, 30), 6, len) : pseudoHeaderSumV6(f, 22, f, 38, 6, len);
      t.equal((f[tcp + 16]! << 8) | f[tcp + 17]!, pseudo, 'its field holds the pseudo-header sum of its new length');
      const c = ~sum16(f, tcp, len) & 0xffff;
      f[tcp + 16] = c >> 8;
      f[tcp + 17] = c & 0xff;
      checkFrame(t, { ...seen[i]!, frame: f, frameSum: sum16(f, 14, f.length - 14) }, 'completed');
    }
    t.equal(seen[0]!.frameSum, -1, 'no frame sum: nothing verifies a partial checksum');
    t.equal(dev.stats.txCoalesced, 2 + 1 + 2);
  });

  t.test(`a frame larger than any IP packet, without offloads, goes on as sent${mode}`, async (t) => {
    const { seen, fe, dev } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const big = new Uint8Array(MAX_FRAME);
    big.set(seg(bytes(1448, 1), 0, 1448).subarray(0, 66));
    await sendBatch(txq, [seg(bytes(1448, 1), 0, 1448), big]);
    t.same(
      seen.map((s) => s.frame.length),
      [14 + 20 + 32 + 1448, MAX_FRAME],
    );
    t.equal(dev.stats.txFailed, 0);
  });

  for (const layouts of [false, true]) {
    t.test(`random runs${layouts ? ' in random buffer layouts' : ''}: whatever joins, the sink gets the same bytes, each segment valid${mode}`, async (t) => {
      const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
      const txq = (await fe.handshake())[1]!;
      const rand = randomFrom(layouts ? 4242 : 12345);
      let left = 0;
      const data = bytes(400 * 1448, 9);
      for (let round = 0; round < 20; round++) {
        seen.length = 0;
        const frames: Uint8Array[] = [];
        const sent: { seq: number; payload: Uint8Array }[] = [];
        let at = 0;
        const size = 200 + rand(1300);
        const n = 1 + rand(40);
        for (let i = 0; i < n && at + size <= data.length; i++) {
          const len = rand(8) === 0 ? 1 + rand(size) : size;
          const v6 = round % 2 === 1;
          const f = v6
            ? seg6(data, at, len, rand(10) === 0 ? ACK | PSH : ACK)
            : seg(data, at, len, { flags: rand(10) === 0 ? ACK | PSH : ACK, tsVal: rand(6) === 0 ? 2 : 1 });
          frames.push(f);
          sent.push({ seq: (SEQ + at) >>> 0, payload: data.subarray(at, at + len) });
          at += len;
        }
        await sendBatch(txq, frames, layouts ? rand : undefined);
        const got = seen.map((s) => ({ seq: tcpOf(s.frame).seq, payload: tcpOf(s.frame).payload }));
        const joined = (list: { seq: number; payload: Uint8Array }[]): number[] => list.flatMap((x) => [...x.payload]);
        t.same(joined(got), joined(sent), `round ${round}: the same bytes, in order`);
        t.ok(got.length <= sent.length);
        // (Copied from several buffers without joining, a frame may come without a frame sum.)
        for (const s of seen) checkFrame(t, s, `round ${round}`, layouts && (!inPlace || s.frame.length < 256));
        left += seen.reduce((n, s) => n + s.leftInGuest, 0);
      }
      if (!layouts) {
        t.ok(dev.stats.txCoalesced > 20, `segments joined (${dev.stats.txCoalesced})`);
        t.equal(left, 0, 'frames in one buffer: copied, nothing left in guest memory');
      } else {
        t.ok(dev.stats.txCoalesced > (inPlace ? 20 : 5), `segments joined (${dev.stats.txCoalesced})`);
        if (inPlace) t.ok(left > 0, `in place, runs that start in several buffers left there (${left} spans)`);
        else t.equal(left, 0, 'nothing left in guest memory');
      }
    });
  }

  t.test(`random runs with damaged frames: a damaged frame reaches the sink alone and as sent, the others whole${mode}`, async (t) => {
    const { dev, seen, fe } = setup(t, { payloadsInPlace: inPlace });
    const txq = (await fe.handshake())[1]!;
    const rand = randomFrom(777);
    const data = bytes(60 * 1448, 10);
    let damagedSeen = 0;
    for (let round = 0; round < 40; round++) {
      seen.length = 0;
      const v6 = round % 2 === 1;
      const frames: Uint8Array[] = [];
      const damaged = new Set<number>();
      const good: number[] = [];
      for (let i = 0; i < 30; i++) {
        const f = v6 ? seg6(data, i * 1448, 1448) : seg(data, i * 1448, 1448);
        if (rand(6) === 0) {
          // One bit anywhere after the link header: a header field, a checksum, or the payload.
          const k = 14 + rand(f.length - 14);
          f[k] = f[k]! ^ (1 << rand(8));
          damaged.add(frames.length);
        } else {
          good.push(...data.subarray(i * 1448, (i + 1) * 1448));
        }
        frames.push(f);
      }
      await sendBatch(txq, frames, rand);
      const sentDamaged = [...damaged].map((i) => frames[i]!);
      const out: number[] = [];
      for (const s of seen) {
        const asSent = sentDamaged.findIndex((f) => f.length === s.frame.length && f.every((b, j) => b === s.frame[j]));
        if (asSent >= 0) {
          damagedSeen++;
          continue;
        }
        // Not a damaged frame: it verifies, and its payload is the next good bytes.
        checkFrame(t, s, `round ${round}`, !inPlace);
        out.push(...tcpOf(s.frame).payload);
      }
      t.same(out, good, `round ${round}: the undamaged segments' bytes, in order, and nothing else`);
    }
    t.ok(damagedSeen > 50, `damaged frames reached the sink as sent (${damagedSeen})`);
    t.ok(dev.stats.txCoalesced > (inPlace ? 200 : 50), `the others joined (${dev.stats.txCoalesced})`);
  });
}

/** A pure ACK of the test connection (timestamps, as Linux sends them), or of another port. */
function pureAck(ack: number, o: { port?: number; window?: number; flags?: number; ttl?: number; sack?: boolean } = {}): Uint8Array {
  const options = ts(1);
  if (o.sack === true) {
    options.sackCount = 1;
    options.sackBlocks[0] = ack + 1000;
    options.sackBlocks[1] = ack + 2000;
  }
  return tcpFrame(o.port ?? 40000, 80, SEQ, ack, o.flags ?? ACK, new Uint8Array(0), { options, window: o.window ?? 1000, ttl: o.ttl ?? 64 });
}

const ackOf = (f: Uint8Array): number => {
  const tcp = tcpOf(f).at;
  return ((f[tcp + 8]! << 24) | (f[tcp + 9]! << 16) | (f[tcp + 10]! << 8) | f[tcp + 11]!) >>> 0;
};

for (const [layout, how] of [
  ['', undefined],
  [', in buffers cut at random', randomFrom(11)],
] as const)
  t.test(`a pure ACK the next frame supersedes is passed over; duplicates, window updates and anything else are not${layout}`, async (t) => {
    const { dev, seen, fe } = setup(t);
    const txq = (await fe.handshake())[1]!;
    const ack6 = (ack: number): Uint8Array => tcpFrame6(40000, 80, SEQ, ack, ACK, { src: SRC6, dst: DST6 });
    const frames: [Uint8Array, boolean][] = [
      [pureAck(100), false], // superseded by the next
      [pureAck(200), true], // the next one is a duplicate
      [pureAck(200), true], // the next one updates the window only
      [pureAck(200, { window: 2000 }), false], // superseded: its window is replaced
      [pureAck(300), true], // the next one is another connection's
      [pureAck(400, { port: 40001 }), true], // the next one has PSH
      [pureAck(500, { port: 40001, flags: ACK | PSH }), true], // not a pure ACK
      [pureAck(600, { port: 40001, sack: true }), true], // SACK blocks the next may not repeat
      [pureAck(700, { port: 40001 }), true], // the next one has TTL 1
      [pureAck(800, { port: 40001, ttl: 1 }), true], // TTL 1
      [pureAck(0xffffff00, { port: 40001 }), false], // superseded across 2^32
      [pureAck(0x100, { port: 40001 }), true], // the next one carries data
      [seg(bytes(100, 3), 0, 100, { port: 40001, ack: 0x200 }), true],
      [ack6(100), false], // IPv6, superseded
      [ack6(200), true], // the last of the batch
    ];
    await sendBatch(
      txq,
      frames.map(([f]) => f),
      how,
    );
    const kept = frames.filter(([, k]) => k).map(([f]) => f);
    t.equal(seen.length, kept.length, 'the frames passed over are those expected');
    t.same(
      seen.map((s) => ackOf(s.frame)),
      kept.map(ackOf),
      'the rest reach the sink in order',
    );
    t.same(
      seen.map((s) => [...s.frame]),
      kept.map((f) => [...f]),
      'as sent',
    );
    t.equal(dev.stats.txAcksFiltered, frames.length - kept.length, 'counted');
    t.equal(dev.stats.txFrames, frames.length, 'every guest frame counted');
  });

t.test('ACKs are not filtered without coalescing (a capture, several guests)', async (t) => {
  const { dev, seen, fe } = setup(t, { coalesce: false });
  const txq = (await fe.handshake())[1]!;
  await sendBatch(txq, [pureAck(100), pureAck(200), pureAck(300)]);
  t.equal(seen.length, 3, 'each reaches the sink');
  t.equal(dev.stats.txAcksFiltered, 0);
});
