// VirtQueue.popMany (the addon's walk, native/ring.cc, with pop() for what it leaves) against
// pop() alone, over the same rings: every chain the same, span for span, and every malformed chain
// judged, counted and returned the same. The memory has what the walks must split buffers at: a
// segment boundary inside a region (GuestMemory cuts at SEGMENT_SIZE) and two regions adjacent in
// guest-physical space, with a gap of unmapped space after them.
import fc from 'fast-check';
import t from 'tap';
import type { Test } from 'tap';
import { GuestMemory, SEGMENT_SIZE } from '../src/memory.js';
import { native } from '../src/native.js';
import type { NativeMapping } from '../src/native.js';
import { DescriptorChain, MalformedReason, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VirtQueue } from '../src/virtqueue.js';

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;
const MiB = 1 << 20;
/** Region 0: a segment and 2 MiB more; region 1, right after it in guest-physical space: 2 MiB. */
const SIZE0 = SEGMENT_SIZE + 2 * MiB;
const SIZE1 = 2 * MiB;
const GPA = 0x4000_0000;
const UVA = 0x7f00_0000_0000;
const QUEUE = 64;
/** File offsets of the rings and of the indirect tables' area. */
const DESC_AT = 0x1000;
const AVAIL_AT = 0x3000;
const USED_AT = 0x4000;
const TABLES_AT = 0x8000;
/** Interesting guest-physical addresses for buffers. */
const POINTS = [
  GPA + 0x10000, // plain memory
  GPA + SEGMENT_SIZE - 100, // crossing the segment boundary inside region 0
  GPA + SIZE0 - 64, // crossing from region 0 into region 1
  GPA + SIZE0 + SIZE1 - 32, // running past the end of memory
  GPA - 16, // starting before memory
  0, // nowhere
  2 ** 53 + 4096, // beyond what a double holds exactly
];

interface Rig {
  memory: GuestMemory;
  q: VirtQueue;
  dv: DataView;
  mapping: NativeMapping;
}

function rig(): Rig {
  const fd = native.memfdCreate('native-pop', SIZE0 + SIZE1);
  const memory = new GuestMemory(8);
  memory.add({ guestPhysAddr: GPA, memorySize: SIZE0, userspaceAddr: UVA, mmapOffset: 0 }, fd);
  memory.add({ guestPhysAddr: GPA + SIZE0, memorySize: SIZE1, userspaceAddr: UVA + SIZE0, mmapOffset: SIZE0 }, fd);
  const mapping = native.mmap(fd, 0, SIZE0 + SIZE1, 2 ** 31);
  native.close(fd);
  const dv = new DataView(mapping.chunks[0]!);
  const q = new VirtQueue(1, memory);
  q.size = QUEUE;
  q.addr = { index: 1, flags: 0, descUserAddr: UVA + DESC_AT, availUserAddr: UVA + AVAIL_AT, usedUserAddr: UVA + USED_AT, logGuestAddr: 0 };
  q.started = true;
  q.enabled = true;
  q.indirect = true;
  const err = q.resolve();
  if (err !== undefined) throw new Error(err);
  return { memory, q, dv, mapping };
}

function dispose(r: Rig): void {
  r.memory.clear();
  native.munmap(r.mapping);
}

interface Desc {
  addr: number;
  len: number;
  flags: number;
  next: number;
}

function writeDesc(dv: DataView, at: number, d: Desc): void {
  dv.setUint32(at, d.addr % 2 ** 32, true);
  dv.setUint32(at + 4, Math.floor(d.addr / 2 ** 32), true);
  dv.setUint32(at + 8, d.len, true);
  dv.setUint16(at + 12, d.flags, true);
  dv.setUint16(at + 14, d.next, true);
}

/** A chain as a device sees it: its head and spans (by segment), and the counts. */
function snapshot(memory: GuestMemory, c: DescriptorChain): string {
  const spans: string[] = [];
  for (let i = 0; i < c.count; i++) spans.push(`${memory.segmentIndex(c.bytes[i]!)}:${c.offset[i]}+${c.length[i]}`);
  return `${c.head} r${c.readableLength}/w${c.writableLength} first-writable ${c.firstWritable} [${spans.join(' ')}]`;
}

interface Outcome {
  chains: string[];
  malformed: string[];
  broken: string | undefined;
  lastAvail: number;
  popped: number;
  /** Chains the addon's walk took (popMany only). */
  native: number;
}

/** Publishes `heads` from the queue's current avail slot, then pops them all, either way. */
function popAll(r: Rig, heads: number[], how: 'many' | 'one', writable: boolean, batch: number): Outcome {
  const { q, dv, memory } = r;
  const start = q.lastAvail;
  heads.forEach((h, i) => dv.setUint16(AVAIL_AT + 4 + 2 * ((start + i) % QUEUE), h, true));
  dv.setUint16(AVAIL_AT + 2, (start + heads.length) & 0xffff, true);
  const malformed: string[] = [];
  q.listener = { malformed: (_q, reason: MalformedReason) => malformed.push(reason) };
  const popped0 = q.stats.popped;
  const chains = Array.from({ length: batch }, () => new DescriptorChain(64));
  const out: string[] = [];
  let viaPop = 0;
  const pop = q.pop.bind(q);
  q.pop = (c: DescriptorChain): boolean => {
    const ok = pop(c);
    if (ok) viaPop++;
    return ok;
  };
  try {
    if (how === 'one') {
      for (const c = chains[0]!; q.pop(c);) out.push(snapshot(memory, c));
    } else {
      for (;;) {
        const n = q.popMany(chains, 0, batch, writable);
        for (let i = 0; i < n; i++) out.push(snapshot(memory, chains[i]!));
        if (n < batch) break;
      }
    }
  } finally {
    q.pop = pop;
  }
  return {
    chains: out,
    malformed,
    broken: q.broken,
    lastAvail: q.lastAvail,
    popped: q.stats.popped - popped0,
    native: how === 'many' ? out.length - viaPop : 0,
  };
}

/** Pops `heads` both ways from the same slot, and says whether they agree. */
function compare(r: Rig, heads: number[], writable: boolean, batch: number): { many: Outcome; one: Outcome } {
  const start = r.q.lastAvail;
  const many = popAll(r, heads, 'many', writable, batch);
  r.q.setBase(start); // (and a broken queue works again)
  const one = popAll(r, heads, 'one', writable, batch);
  return { many, one };
}

function same(t: Test, r: Rig, heads: number[], writable: boolean, batch: number, what: string): Outcome {
  const { many, one } = compare(r, heads, writable, batch);
  t.same({ ...many, native: 0 }, one, what);
  if (r.q.broken !== undefined) r.q.setBase(r.q.lastAvail);
  return many;
}

t.test('well-formed chains: the addon walks every one, and gives what pop() gives', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  const { dv } = r;
  const desc = (i: number, d: Desc): void => writeDesc(dv, DESC_AT + 16 * i, d);
  // 0: one buffer. 1-3: three buffers, the middle one across the segment boundary. 4: across the
  // two regions. 5: an indirect table of two buffers. 6: a zero-length buffer then one more.
  desc(0, { addr: GPA + 0x10000, len: 1514, flags: 0, next: 0 });
  desc(1, { addr: GPA + 0x11000, len: 12, flags: NEXT, next: 2 });
  desc(2, { addr: GPA + SEGMENT_SIZE - 100, len: 300, flags: NEXT, next: 3 });
  desc(3, { addr: GPA + 0x12000, len: 4000, flags: 0, next: 0 });
  desc(4, { addr: GPA + SIZE0 - 64, len: 128, flags: 0, next: 0 });
  desc(5, { addr: GPA + TABLES_AT, len: 32, flags: INDIRECT, next: 0 });
  writeDesc(dv, TABLES_AT, { addr: GPA + 0x20000, len: 66, flags: NEXT, next: 1 });
  writeDesc(dv, TABLES_AT + 16, { addr: GPA + 0x21000, len: 1448, flags: 0, next: 0 });
  desc(6, { addr: GPA + 0x13000, len: 0, flags: NEXT, next: 7 });
  desc(7, { addr: GPA + 0x14000, len: 60, flags: 0, next: 0 });
  const heads = [0, 1, 4, 5, 6, 0, 1, 4, 5, 6];
  for (const batch of [1, 3, 16]) {
    const out = same(t, r, heads, false, batch, `readable chains, batches of ${batch}`);
    t.equal(out.native, heads.length, `batches of ${batch}: the addon walked all ${heads.length}`);
    t.equal(out.malformed.length, 0, 'none malformed');
  }
  t.match(compare(r, [1], false, 4).one.chains[0], /\[0:\d+\+12 0:\d+\+100 1:0\+200 0:\d+\+4000\]/, 'the buffer across the segment boundary is two spans');
  t.match(compare(r, [4], false, 4).one.chains[0], /\[1:\d+\+64 2:\d+\+64\]/, 'the buffer across the regions is two spans');

  // Writable chains (an RX queue's): the addon takes them when asked for writable ones only.
  desc(8, { addr: GPA + 0x30000, len: 2048, flags: WRITE | NEXT, next: 9 });
  desc(9, { addr: GPA + 0x31000, len: 2048, flags: WRITE, next: 0 });
  const wout = same(t, r, [8, 8, 8], true, 4, 'writable chains');
  t.equal(wout.native, 3, 'the addon walked the writable chains');
  const rout = same(t, r, [8, 0, 8], false, 4, 'writable chains on a readable pop');
  t.equal(rout.native, 1, 'only the readable chain was the addon’s');
  const mixed = same(t, r, [0, 8, 0], true, 4, 'a readable chain on a writable pop');
  t.equal(mixed.native, 1, 'the writable chain was the addon’s (pop() took the one after the first too)');
  // A chain with more spans than a DescriptorChain holds (64) is pop()'s, which calls it malformed.
  for (let i = 10; i < 10 + 40; i++) desc(i, { addr: GPA + SEGMENT_SIZE - 8, len: 16, flags: i < 49 ? NEXT : 0, next: i + 1 });
  const long = same(t, r, [0, 10, 0], false, 4, 'a chain of 80 spans');
  t.equal(long.native, 1, 'the chain before it was the addon’s (pop() took the one after it too)');
  t.same(long.malformed, [MalformedReason.TooManySegments]);
});

t.test('popSpans: the addon’s chains as spans, next to each other in the ring (rewind un-pops them)', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  const { dv, q, memory } = r;
  const desc = (i: number, d: Desc): void => writeDesc(dv, DESC_AT + 16 * i, d);
  desc(0, { addr: GPA + 0x30000, len: 1600, flags: WRITE, next: 0 });
  desc(1, { addr: GPA + SEGMENT_SIZE - 10, len: 30, flags: WRITE | NEXT, next: 2 }); // two spans, then one
  desc(2, { addr: GPA + 0x31000, len: 100, flags: WRITE, next: 0 });
  desc(3, { addr: GPA + 0x32000, len: 0, flags: WRITE, next: 0 }); // no span at all
  desc(4, { addr: GPA + 0x33000, len: 64, flags: 0, next: 0 }); // readable: pop()'s
  const heads = [0, 1, 3, 4, 0];
  const start = q.lastAvail;
  heads.forEach((h, i) => dv.setUint16(AVAIL_AT + 4 + 2 * ((start + i) % QUEUE), h, true));
  dv.setUint16(AVAIL_AT + 2, (start + heads.length) & 0xffff, true);
  t.equal(q.popSpans(10, true, 64), 3, 'three chains, then one the addon leaves');
  t.equal(q.leftToPop, true);
  const p = q.popped;
  const spans = (i: number): string[] => {
    const out: string[] = [];
    for (let k = p.spanStart(i); k < p.spanEnd(i); k++) out.push(`${memory.segmentIndex(p.bytes(k))}:${p.offset(k)}+${p.length(k)}`);
    return out;
  };
  t.same([p.head(0), p.head(1), p.head(2)], [0, 1, 3]);
  t.same(spans(0), ['0:196608+1600']);
  t.same(spans(1), [`0:${SEGMENT_SIZE - 10}+10`, '1:0+20', '0:200704+100']);
  t.same(spans(2), [], 'a chain of one empty buffer has no span');
  const chain = new DescriptorChain(8);
  t.ok(p.fill(1, chain, true));
  t.equal(chain.writableLength, 130, 'fill() makes the DescriptorChain');
  t.notOk(p.fill(1, new DescriptorChain(2), true), 'fill() says when the chain is too small');
  q.rewind(2);
  t.equal(q.lastAvail, (start + 1) & 0xffff, 'rewind(2) un-pops the last two');
  t.equal(q.popSpans(10, true, 2), 0, 'a chain of more spans than asked is left to pop()');
  t.equal(q.leftToPop, true);
  t.ok(q.pop(chain) && chain.head === 1 && chain.writableLength === 130, 'pop() then takes it');
  t.equal(q.popSpans(10, true, 64), 1, 'the empty chain again');
  t.equal(q.leftToPop, true, 'then a readable chain on a writable pop: left to pop()');
  t.ok(q.pop(chain) && chain.head === 4 && chain.readableLength === 64);
  t.equal(q.popSpans(10, true, 64), 1);
  t.equal(q.leftToPop, false);
  t.equal(q.popSpans(10, true, 64), 0, 'nothing left');
  t.equal(q.leftToPop, false, 'and nothing left to pop()');
});

t.test('hostile chains: the addon leaves each to pop(), which judges it as always', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  const { dv } = r;
  const desc = (i: number, d: Desc): void => writeDesc(dv, DESC_AT + 16 * i, d);
  const good = { addr: GPA + 0x10000, len: 100, flags: 0, next: 0 };
  const cases: [string, () => number][] = [
    ['a loop', () => (desc(10, { ...good, flags: NEXT, next: 11 }), desc(11, { ...good, flags: NEXT, next: 10 }), 10)],
    ['next out of range', () => (desc(10, { ...good, flags: NEXT, next: QUEUE }), 10)],
    ['outside memory', () => (desc(10, { ...good, addr: GPA + SIZE0 + SIZE1 + 0x1000 }), 10)],
    ['running past the end', () => (desc(10, { ...good, addr: GPA + SIZE0 + SIZE1 - 32, len: 64 }), 10)],
    ['beyond 2^53, length 0', () => (desc(10, { ...good, addr: 2 ** 60, len: 0 }), 10)],
    ['readable after writable', () => (desc(10, { ...good, flags: WRITE | NEXT, next: 11 }), desc(11, good), 10)],
    ['indirect with NEXT', () => (desc(10, { addr: GPA + TABLES_AT, len: 32, flags: INDIRECT | NEXT, next: 11 }), desc(11, good), 10)],
    ['indirect of 40 bytes', () => (desc(10, { addr: GPA + TABLES_AT, len: 40, flags: INDIRECT, next: 0 }), 10)],
    ['indirect of 0 bytes', () => (desc(10, { addr: GPA + TABLES_AT, len: 0, flags: INDIRECT, next: 0 }), 10)],
    [
      'nested indirect',
      () => (
        writeDesc(dv, TABLES_AT, { addr: GPA + TABLES_AT, len: 16, flags: INDIRECT, next: 0 }),
        desc(10, { addr: GPA + TABLES_AT, len: 16, flags: INDIRECT, next: 0 }),
        10
      ),
    ],
    [
      'indirect not at the head',
      () => (desc(10, { ...good, flags: NEXT, next: 11 }), desc(11, { addr: GPA + TABLES_AT, len: 16, flags: INDIRECT, next: 0 }), 10),
    ],
    [
      'a loop inside a table',
      () => (
        writeDesc(dv, TABLES_AT, { ...good, flags: NEXT, next: 1 }),
        writeDesc(dv, TABLES_AT + 16, { ...good, flags: NEXT, next: 0 }),
        desc(10, { addr: GPA + TABLES_AT, len: 32, flags: INDIRECT, next: 0 }),
        10
      ),
    ],
    ['a table across the regions', () => (desc(10, { addr: GPA + SIZE0 - 16, len: 32, flags: INDIRECT, next: 0 }), 10)],
    ['a table outside memory', () => (desc(10, { addr: 0x10, len: 64, flags: INDIRECT, next: 0 }), 10)],
    ['a head out of range', () => QUEUE + 5],
  ];
  desc(0, good);
  // An indirect chain first: the addon's walk then asks for the descriptors and tables of each
  // batch before walking it (its prefetch reads the hostile ones too, and must judge nothing).
  desc(1, { addr: GPA + TABLES_AT + 0x100, len: 16, flags: INDIRECT, next: 0 });
  writeDesc(dv, TABLES_AT + 0x100, good);
  t.equal(same(t, r, [1], false, 8, 'an indirect chain').native, 1);
  for (const [name, build] of cases) {
    const head = build();
    const out = same(t, r, [0, head, 0, 0], false, 8, name);
    t.ok(out.malformed.length === 1 || out.broken !== undefined, `${name}: judged by pop()`);
    t.ok(out.native >= 1, `${name}: the good chain before it was the addon's`);
    r.q.indirect = true;
  }
  // Without the feature an indirect head is malformed.
  r.q.indirect = false;
  desc(10, { addr: GPA + TABLES_AT, len: 16, flags: INDIRECT, next: 0 });
  writeDesc(dv, TABLES_AT, good);
  t.same(same(t, r, [10, 0], false, 8, 'indirect without the feature').malformed, [MalformedReason.BadIndirect]);
  r.q.indirect = true;
  // An avail index that moved by more than the queue size breaks the queue, either way.
  const start = r.q.lastAvail;
  dv.setUint16(AVAIL_AT + 2, (start + QUEUE + 1) & 0xffff, true);
  t.equal(r.q.popMany([new DescriptorChain(8)], 0, 1, false), 0, 'nothing popped past a jumped index');
  t.match(r.q.broken, /avail index moved by 65/);
});

t.test('random rings: popMany and pop() agree', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  const { dv } = r;
  const descArb = fc.record({
    addr: fc.oneof(fc.constantFrom(...POINTS), fc.integer({ min: GPA, max: GPA + SIZE0 + SIZE1 })),
    len: fc.oneof(fc.integer({ min: 0, max: 512 }), fc.constantFrom(16, 32, 48, 4096, 0xffff_ffff)),
    flags: fc.oneof(fc.constantFrom(0, NEXT, WRITE, WRITE | NEXT), fc.integer({ min: 0, max: 7 })),
    next: fc.integer({ min: 0, max: 20 }),
  });
  let walked = 0;
  let judged = 0;
  fc.assert(
    fc.property(
      fc.array(descArb, { minLength: 24, maxLength: 24 }),
      fc.array(descArb, { minLength: 8, maxLength: 8 }),
      fc.array(fc.integer({ min: 0, max: 23 }), { minLength: 1, maxLength: 20 }),
      fc.boolean(),
      fc.integer({ min: 1, max: 8 }),
      (descs, table, heads, writable, batch) => {
        // Descriptors 20-23 point at the table (some as indirect heads); the table's entries chain.
        descs.forEach((d, i) => writeDesc(dv, DESC_AT + 16 * i, i >= 20 ? { ...d, addr: GPA + TABLES_AT, len: 16 * (1 + (d.len % 8)), flags: INDIRECT } : d));
        table.forEach((d, i) => writeDesc(dv, TABLES_AT + 16 * i, { ...d, next: d.next % 9 }));
        const { many, one } = compare(r, heads, writable, batch);
        walked += many.native;
        judged += many.malformed.length;
        if (r.q.broken !== undefined) r.q.setBase(r.q.lastAvail);
        return JSON.stringify({ ...many, native: 0 }) === JSON.stringify(one);
      },
    ),
    { numRuns: 2000 },
  );
  t.ok(walked > 500, `the addon walked ${walked} of the chains`);
  t.ok(judged > 500, `pop() judged ${judged} malformed ones`);
});

t.test('a table outlived by its memory translates nothing', async (t) => {
  const r = rig();
  writeDesc(r.dv, DESC_AT, { addr: GPA + 0x10000, len: 100, flags: 0, next: 0 });
  const table = r.memory.table;
  t.equal(compare(r, [0], false, 4).many.native, 1, 'walked while mapped');
  dispose(r);
  // (The queue is not ready now; call the addon as a stale queue would.)
  const x = new Uint32Array(16 + 2 * 4 + 3 * 16);
  x.set([table.id, QUEUE, 0, 1, 0, 4, 8, 0, DESC_AT, 0, AVAIL_AT, 4]);
  t.equal(native.popChains(x), 0, 'no chain from unmapped memory');
  t.equal(x[12], 1, 'left to pop()');
  x[0] = 0xffff_fff0;
  t.equal(native.popChains(x), 0, 'no chain from a table that does not exist');
  t.throws(() => native.popChains(new Uint32Array(4)), TypeError, 'an exchange too short for its fields');
  x[11] = 1000;
  t.throws(() => native.popChains(x), RangeError, 'an exchange too short for its chains');
  t.throws(() => native.memoryTable([], new Float64Array([0, 10, 0, 0, 0])), RangeError, 'a row naming no mapping');
});

t.test('memoryTable: what running JavaScript while it reads its arguments can do', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  // A getter that throws: the error comes back (it used to abort the process: a second throw
  // while one was pending).
  const throwing: NativeMapping[] = [];
  Object.defineProperty(throwing, 0, {
    get() {
      throw new Error('getter');
    },
  });
  throwing.length = 1;
  t.throws(() => native.memoryTable(throwing, new Float64Array(0)), { message: 'getter' }, 'a throwing getter: its error');
  // A getter that takes the rows' buffer away: the rows are what they were when the call began
  // (copied before the mappings are read), so a bad row is refused, not read from freed memory.
  const rows = new Float64Array([GPA, 0, 0, 0, 0]); // length 0: not a range
  const detaching: NativeMapping[] = [];
  Object.defineProperty(detaching, 0, {
    get() {
      const moved = structuredClone(rows.buffer, { transfer: [rows.buffer] });
      new Float64Array(moved).set([GPA, 4096, 0, 0, 0]); // a good row, where the old one was
      return r.mapping;
    },
  });
  detaching.length = 1;
  t.throws(() => native.memoryTable(detaching, rows), RangeError, 'the row as passed is judged');
  t.equal(rows.length, 0, 'the getter did detach the rows');
});

t.test('popChains takes avail slots as pop() does: the free-running index wraps at 2^16 first', async (t) => {
  // Only power-of-two sizes reach the addon (the backend refuses others), where the two agree
  // anyway; with size 3, slot 65536 is slot 0 to pop() (the index wraps to 0) and was 1 here.
  const r = rig();
  t.teardown(() => dispose(r));
  writeDesc(r.dv, DESC_AT, { addr: GPA + 0x10000, len: 100, flags: 0, next: 0 });
  writeDesc(r.dv, DESC_AT + 16, { addr: GPA + 0x20000, len: 200, flags: 0, next: 0 });
  r.dv.setUint16(AVAIL_AT + 4, 0, true); // slot 0: head 0
  r.dv.setUint16(AVAIL_AT + 6, 1, true); // slot 1: head 1
  const x = new Uint32Array(16 + 2 * 4 + 3 * 16);
  x.set([r.memory.table.id, 3, 0xffff, 1, 0, 4, 8, 0, DESC_AT, 0, AVAIL_AT, 4]);
  t.equal(native.popChains(x), 2, 'two chains (avail.idx 1, from 65535)');
  t.same([x[16], x[18]], [0, 0], 'slots 65535 and 0 (65536): both head 0');
});

t.test('popMany: the addon walks within the smallest capacity among the chains', async (t) => {
  const r = rig();
  t.teardown(() => dispose(r));
  writeDesc(r.dv, DESC_AT, { addr: GPA + 0x10000, len: 100, flags: 0, next: 0 });
  // Head 1: ten buffers, more than the second chain holds.
  for (let i = 0; i < 10; i++) writeDesc(r.dv, DESC_AT + 16 * (1 + i), { addr: GPA + 0x20000 + 0x100 * i, len: 64, flags: i < 9 ? NEXT : 0, next: 2 + i });
  r.dv.setUint16(AVAIL_AT + 4, 0, true);
  r.dv.setUint16(AVAIL_AT + 6, 1, true);
  r.dv.setUint16(AVAIL_AT + 2, 2, true);
  const malformed: string[] = [];
  r.q.listener = { malformed: (_q, reason: MalformedReason) => malformed.push(reason) };
  const chains = [new DescriptorChain(64), new DescriptorChain(4)];
  t.equal(r.q.popMany(chains, 0, 2, false), 1, 'the first chain');
  t.same(malformed, [MalformedReason.TooManySegments], 'the second judged by pop(): too many segments for its chain');
  t.equal(r.q.lastAvail, 2, 'both slots taken');
});
