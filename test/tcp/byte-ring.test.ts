// The byte ring under a memory budget: lazy allocation, doubling, growth refused past the
// reserve (and room() saying so first), out-of-order data beyond the held bytes, release.
import t from 'tap';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { ByteRing } from '../../src/tcp/byte-ring.js';

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * seed + 7) & 0xff);

t.test('allocates nothing until used, then initial, then doubles', async (t) => {
  const b = new MemoryBudget(1 << 20);
  const ring = new ByteRing(64 * 1024, 4096, b.account('r'));
  t.equal(ring.capacity, 0);
  t.equal(ring.append(bytes(100), 0, 100), 100);
  t.equal(ring.capacity, 4096, 'initial size, already paid for by the owner');
  t.equal(b.used, 0);
  t.equal(ring.append(bytes(10_000), 0, 10_000), 10_000);
  t.equal(ring.capacity, 16384, 'doubled twice');
  t.equal(b.used, 16384 - 4096, 'growth beyond initial drawn from the budget');
  const out = new Uint8Array(100);
  ring.copyOut(0, 100, out, 0);
  t.same(out, bytes(100));
  ring.consume(10_100);
  ring.release();
  t.equal(b.used, 0, 'released');
  t.equal(ring.capacity, 0);
});

t.test('growth stops at the reserve; room() promises only what ensure() can do', async (t) => {
  const b = new MemoryBudget(64 * 1024); // reserve 8 KiB: 56 KiB growable
  const other = b.account('other');
  t.ok(other.take(40 * 1024));
  const ring = new ByteRing(1 << 20, 4096, b.account('r'));
  const room = ring.room();
  t.equal(room, 4096 + 16 * 1024, 'initial plus what may grow (16 KiB), in whole steps');
  t.equal(ring.append(bytes(room + 5000), 0, room + 5000), room, 'appends what room() promised');
  t.equal(ring.room(), 0);
  t.equal(ring.reserve().length, 0, 'no view when there is no room');
  t.notOk(ring.writeAt(ring.length + 10, bytes(10), 0, 10), 'out-of-order data beyond the room refused');
  other.give(40 * 1024);
  t.ok(ring.room() > 0, 'room again once memory is free');
  t.ok(ring.writeAt(ring.length + 10, bytes(10, 3), 0, 10), 'out-of-order data placed');
  ring.length += 20;
  const out = new Uint8Array(10);
  ring.copyOut(ring.length - 10, 10, out, 0);
  t.same(out, bytes(10, 3));
});

t.test('reserve() and commit() fill the ring up to a limit; trim() frees an idle ring under pressure', async (t) => {
  const b = new MemoryBudget(1 << 20);
  const acct = b.account('r');
  const ring = new ByteRing(1 << 20, 16 * 1024, acct);
  let held = 0;
  for (;;) {
    const v = ring.reserve(100_000);
    if (v.length === 0) break;
    v.fill(9);
    ring.commit(v.length);
    held += v.length;
  }
  t.equal(held, 100_000, 'stops at the limit given');
  ring.consume(held);
  ring.trim();
  t.ok(ring.capacity > 0, 'kept while the budget is relaxed');
  const hog = b.account('hog');
  hog.take(700 * 1024);
  ring.trim();
  t.equal(ring.capacity, 0, 'given back under pressure');
  t.equal(acct.used, 0);
});

t.test('out-of-order data keeps its place when the held bytes before it are consumed', async (t) => {
  const ring = new ByteRing(1 << 20, 4096);
  t.equal(ring.append(bytes(100, 1), 0, 100), 100, 'in order: 100 bytes');
  t.ok(ring.writeAt(300, bytes(50, 5), 0, 50), 'out of order: 50 bytes after a hole of 200');
  ring.consume(100); // the in-order bytes go on; the out-of-order ones must stay 200 bytes on
  t.ok(ring.writeAt(0, bytes(200, 3), 0, 200), 'the hole filled');
  ring.length += 250;
  const out = new Uint8Array(250);
  ring.copyOut(0, 250, out, 0);
  t.same(out, Uint8Array.from([...bytes(200, 3), ...bytes(50, 5)]), 'the hole, then the parked bytes');
  // With nothing parked, an emptied ring may start again at its beginning.
  ring.consume(250, true);
  t.equal(ring.append(bytes(10, 7), 0, 10), 10);
  t.equal(ring.runAt(0), 0, 'from the beginning');
  t.equal(ring.runLength(0, 10), 10);
  t.same(ring.storage.subarray(0, 10), bytes(10, 7));
});

t.test('runs in place: a wrapped span reads as two runs of storage', async (t) => {
  const ring = new ByteRing(4096, 4096);
  t.equal(ring.runLength(0, 10), 0, 'nothing allocated: no run');
  t.equal(ring.append(bytes(3000), 0, 3000), 3000);
  ring.consume(2500); // the head is 2500 bytes in
  t.equal(ring.append(bytes(2000, 3), 0, 2000), 2000); // 1596 to the end, 404 from the start
  t.equal(ring.length, 2500);
  const first = ring.runLength(0, ring.length);
  t.equal(ring.runAt(0), 2500);
  t.equal(first, 1596, 'the first run ends at the physical end');
  t.equal(ring.runAt(first), 0, 'the rest starts at the beginning');
  t.equal(ring.runLength(first, ring.length - first), 904);
  const joined = Uint8Array.from([...ring.storage.subarray(ring.runAt(0), ring.runAt(0) + first), ...ring.storage.subarray(0, ring.length - first)]);
  t.same(joined, Uint8Array.from([...bytes(3000).subarray(2500), ...bytes(2000, 3)]), 'both runs, in order');
});
