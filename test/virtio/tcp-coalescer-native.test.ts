// The TCP coalescer with the addon's joinRun (src/wire/join-run.ts: the frames of a TX batch
// that continue a run, joined with one call): every test of tcp-coalescer.test.ts again, its
// expectations unchanged, and random batches handed to two devices, one joining with the addon
// and one in JavaScript, which must hand the sink the same frames, byte for byte.
import t from 'tap';
import { hostnet } from '../../src/host/native.js';
import { NET_HDR_LEN } from '../../src/virtio/net-device.js';
import { JOIN_FRAME_SPANS } from '../../src/virtio/tcp-coalescer.js';
import { RUN_AT, RUN_BYTES, RunField, useNativeJoinRun } from '../../src/wire/join-run.js';
import type { JoinRun } from '../../src/wire/join-run.js';
import { bytes, partialHeader, randomFrom, seg, seg6, setup } from './tcp-coalescer.test.js';
import type { Seen, TxQueue } from './tcp-coalescer.test.js';
import type { BufferSpec } from 'vhost-user-ts/testing';

// What the addon joined, and the runs it started, counted: the tests must see it do both.
let joined = 0;
let started = 0;
let calls = 0;
const counted: JoinRun = (view, arena) => {
  calls++;
  const run = new Uint32Array(arena.buffer, arena.byteOffset + RUN_AT, RUN_BYTES / 4);
  const from = run[RunField.from]!;
  const end = hostnet.joinRun(view, arena);
  const start = run[RunField.started] !== 0 ? 1 : 0;
  joined += end - from - start;
  started += start;
  return end;
};
useNativeJoinRun(counted);

t.test('the addon joined and started runs in the tests above', async (t) => {
  t.ok(joined > 500, `frames the addon joined: ${joined}`);
  t.ok(started > 50, `runs the addon started: ${started}`);
});

interface Sent {
  header: Uint8Array;
  frame: Uint8Array;
  /** Where the virtio-net header and frame are cut into buffers (increasing, inside). */
  cuts: number[];
  /** A device-writable buffer after the frame's (which pop() allows on a TX queue, and the
   *  addon's walk leaves to it: JavaScript handles such a frame, and joins it to the addon's run
   *  around it). */
  writableTail?: boolean;
}

/** Sends the batch (one kick) and waits until the device has used it all. */
async function send(q: TxQueue, batch: Sent[]): Promise<void> {
  for (const s of batch) {
    const whole = new Uint8Array(NET_HDR_LEN + s.frame.length);
    whole.set(s.header);
    whole.set(s.frame, NET_HDR_LEN);
    const parts: BufferSpec[] = [];
    let from = 0;
    for (const c of s.cuts) {
      parts.push({ data: whole.subarray(from, c) });
      from = c;
    }
    parts.push({ data: whole.subarray(from) });
    if (s.writableTail === true) parts.push({ len: 64, writable: true });
    q.add(parts);
  }
  q.kick();
  await q.waitUsed(batch.length);
}

/** Cuts as drivers lay frames out, and some no driver would: one buffer, the header apart, the
 *  headers apart from the payload, three or more pieces, and more than joinRun takes. `whole`:
 *  mostly the first two (the only ones a device that copies joined payload joins). */
function cutsFor(rand: (n: number) => number, total: number, whole: boolean): number[] {
  let layout = rand(1009) % 6;
  if (whole && layout >= 2 && rand(1013) % 4 > 0) layout &= 1;
  if (layout === 0) return [];
  if (layout === 1) return [NET_HDR_LEN];
  if (layout === 2) return [NET_HDR_LEN + 54 + rand(100)];
  const pieces = layout === 5 ? JOIN_FRAME_SPANS + 2 : 3 + rand(4);
  const set = new Set<number>();
  if (layout === 3) set.add(NET_HDR_LEN);
  while (set.size < pieces - 1) set.add(1 + rand(total - 1));
  return [...set].sort((a, b) => a - b);
}

function same(a: Seen[], b: Seen[]): string | undefined {
  if (a.length !== b.length) return `${a.length} frames against ${b.length}`;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x.frameSum !== y.frameSum) return `frame ${i}: frame sum ${x.frameSum} against ${y.frameSum}`;
    if (String(x.partial) !== String(y.partial)) return `frame ${i}: partial ${String(x.partial)} against ${String(y.partial)}`;
    if (x.leftInGuest !== y.leftInGuest) return `frame ${i}: ${x.leftInGuest} spans in guest memory against ${y.leftInGuest}`;
    if (x.frame.length !== y.frame.length || x.frame.some((v, j) => v !== y.frame[j])) return `frame ${i}: bytes differ`;
  }
  return undefined;
}

for (const inPlace of [false, true]) {
  t.test(`random batches: the addon joins what JavaScript joins, frame for frame${inPlace ? ' (in place)' : ''}`, async (t) => {
    // (No slice may end a batch early: on a busy machine it would end them at different frames.)
    const withAddon = setup(t, { payloadsInPlace: inPlace, txSliceMs: 60_000 });
    const withoutAddon = setup(t, { payloadsInPlace: inPlace, txSliceMs: 60_000 });
    const qa = (await withAddon.fe.handshake())[1]!;
    const qb = (await withoutAddon.fe.handshake())[1]!;
    t.teardown(() => useNativeJoinRun(counted));
    const rand = randomFrom(inPlace ? 91 : 19);
    const data = bytes(1 << 20, 5);
    const before = joined;
    const startedBefore = started;
    // Two connections (ports 40000 and 40001; IPv6 has one), each where it left off.
    const next = [0, 0, 0];
    for (let round = 0; round < 80; round++) {
      const v6 = round % 4 === 3;
      const partial = round % 5 === 2; // (the guest's NEEDS_CSUM over the TCP checksum)
      const mss = [1448, 1448, 1000, 536, 1440][round % 5]!;
      const batch: Sent[] = [];
      for (let i = 0; i < 48; i++) {
        const what = rand(1021) % 40;
        const flow = v6 ? 2 : what === 4 ? 1 : 0;
        let at = next[flow]!;
        if (what === 5) at += mss; // a gap
        if (what === 6) at = Math.max(0, at - mss); // a retransmission
        let len = mss;
        if (what === 7) len = 300 + rand(mss - 300); // short
        if (what === 8) len = 100; // too short to join
        if (at + len > data.length) at = 0;
        const flags = 0x10 | (what === 9 ? 0x08 : 0) | (what === 10 ? 0x01 : 0);
        const frame = v6
          ? seg6(data, at, len, flags)
          : seg(data, at, len, { flags, port: 40000 + flow, ttl: what === 11 ? 1 : 64, window: what === 12 ? 999 : 1000, tsVal: what === 13 ? 2 : 1 });
        if (what === 14) {
          const k = 14 + rand(frame.length - 14); // one bit anywhere past the link header
          frame[k] = frame[k]! ^ (1 << rand(8));
        }
        next[flow] = at + len;
        const tcp = v6 ? 54 : 34;
        const header = partial && what !== 15 ? partialHeader(tcp, what === 16 ? 6 : 16) : new Uint8Array(NET_HDR_LEN);
        batch.push({ header, frame, cuts: cutsFor(rand, NET_HDR_LEN + frame.length, !inPlace), writableTail: what === 17 });
      }
      useNativeJoinRun(counted);
      await send(qa, batch);
      useNativeJoinRun(undefined);
      await send(qb, batch);
      const differ = same(withAddon.seen, withoutAddon.seen);
      if (differ !== undefined) {
        t.fail(`round ${round}: ${differ}`);
        return;
      }
      withAddon.seen.length = 0;
      withoutAddon.seen.length = 0;
    }
    const a = withAddon.dev.stats;
    const b = withoutAddon.dev.stats;
    t.same([a.txFrames, a.txBytes, a.txCoalesced, a.txDropped], [b.txFrames, b.txBytes, b.txCoalesced, b.txDropped], 'the same counts');
    t.ok(joined - before > 400, `the addon joined ${joined - before} of the ${a.txCoalesced} frames joined`);
    t.ok(started - startedBefore > 100, `the addon started ${started - startedBefore} runs`);
  });
}

t.test('frames no run takes (pure ACKs) cost no addon call, in a batch with one that does', async (t) => {
  const { seen, fe } = setup(t, { payloadsInPlace: true });
  const q = (await fe.handshake())[1]!;
  useNativeJoinRun(counted);
  const before = calls;
  const data = bytes(4096, 3);
  const batch: Sent[] = [{ header: new Uint8Array(NET_HDR_LEN), frame: seg(data, 0, 1448), cuts: [] }];
  for (let i = 0; i < 40; i++) batch.push({ header: new Uint8Array(NET_HDR_LEN), frame: seg(data, 1448, 0, { ack: 1 + i, port: 41000 + i }), cuts: [] });
  await send(q, batch);
  t.equal(seen.length, 41, 'every frame reached the sink');
  t.equal(calls - before, 1, 'the addon was called for the segment only');
});

t.test('joinRun refuses a layout outside its arena, and a span outside its view', async (t) => {
  const view = new Uint8Array(4096);
  t.throws(() => hostnet.joinRun(view, new Uint8Array(16)), /arena at least/);
  const arena = new Uint8Array(8192);
  const run = new Uint32Array(arena.buffer, RUN_AT, RUN_BYTES / 4);
  const base = RUN_AT + RUN_BYTES;
  // A run of IPv4 segments whose headers end at 66, pending at 4096, one frame of 1500 bytes.
  const good: [number, number][] = [
    [RunField.length, 100],
    [RunField.at, 66],
    [RunField.tcp, 34],
    [RunField.words, 17],
    [RunField.bufAt, 4096],
    [RunField.bufCap, 2048],
    [RunField.sameAt, base],
    [RunField.spanOffsetsAt, 1024],
    [RunField.spanLengthsAt, 1536],
    [RunField.spanMax, 64],
    [RunField.rowsAt, 1792],
    [RunField.spansAt, 1856],
    [RunField.spanSlots, 128],
    [RunField.count, 1],
  ];
  const layout = (): void => {
    run.fill(0);
    for (const [field, value] of good) run[field] = value;
    const rows = new Uint32Array(arena.buffer, 1792, 2);
    rows[0] = 0;
    rows[1] = 1;
    const spans = new Uint32Array(arena.buffer, 1856, 2);
    spans[0] = 0;
    spans[1] = 1500;
  };
  layout();
  t.equal(hostnet.joinRun(view, arena), 0, 'a good layout: the frame (zeros) does not join');
  layout();
  run[RunField.length] = 0;
  t.equal(hostnet.joinRun(view, arena), 0, 'nothing pending: the frame (zeros) starts no run');
  t.equal(run[RunField.started], 0, 'and none is said to have started');
  const bad: [string, () => void, RegExp][] = [
    ['the pending frame past the arena', () => (run[RunField.bufAt] = 8000), /outside the arena/],
    ['more header words than the headers have', () => (run[RunField.words] = 30), /outside the arena/],
    ['more spans than the table', () => (run[RunField.spanCount] = 65), /outside the arena/],
    ["room for less than a run's headers", () => ((run[RunField.length] = 0), (run[RunField.bufCap] = 100)), /outside the arena/],
    ['rows off their word', () => (run[RunField.rowsAt] = 1793), /on their words/],
    ['a span past the view', () => (new Uint32Array(arena.buffer, 1856, 2)[1] = 4097), /outside the view/],
    ['a frame past the span table', () => (new Uint32Array(arena.buffer, 1792, 2)[0] = 128), /span table/],
  ];
  for (const [what, spoil, error] of bad) {
    layout();
    spoil();
    t.throws(() => hostnet.joinRun(view, arena), error, what);
  }
  t.throws(() => hostnet.joinRun(arena.subarray(0, 100), arena), /outside the arena/, 'a view inside the arena');
});
