// Hostile rings: every index, address, length and `next` the guest writes is checked. A malformed
// chain with a valid head comes back with length 0 and the queue keeps working; an inconsistency
// that cannot be answered marks the queue broken. Nothing crashes, hangs or spins.
import fc from 'fast-check';
import t from 'tap';
import type { Test } from 'tap';
import { TestFrontend } from '../src/testing/frontend.js';
import type { DriverQueue } from '../src/testing/frontend.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../src/virtqueue.js';
import { LoopbackDevice, settle, startServer, until } from './helpers.js';

const NEXT = VIRTQ_DESC_F_NEXT;
const WRITE = VIRTQ_DESC_F_WRITE;
const INDIRECT = VIRTQ_DESC_F_INDIRECT;

async function setup(t: Test, size = 16) {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  const fe = TestFrontend.connect(path);
  t.teardown(() => {
    fe.close();
    stop();
  });
  const [rxq, txq] = await fe.handshake({ queues: [size, size] });
  return { dev, server, fe, rxq: rxq!, txq: txq! };
}

/** After a hostile chain, a good frame must still loop back. */
async function stillWorks(t: Test, fe: TestFrontend, rxq: DriverQueue, txq: DriverQueue, what: string) {
  const gpa = fe.memory.alloc(256);
  rxq.add([{ gpa, len: 256, writable: true }]);
  const data = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
  txq.add([{ data }]);
  txq.kick();
  const [u] = await rxq.waitUsed(1);
  t.same(fe.memory.read(gpa, u!.len), data, `${what}: queue still works`);
}

const cases: { name: string; build: (fe: TestFrontend, q: DriverQueue) => void }[] = [
  {
    name: 'descriptor loop',
    build: (fe, q) => {
      const a = fe.memory.alloc(64);
      q.writeDesc(10, a, 64, NEXT, 11);
      q.writeDesc(11, a, 64, NEXT, 10);
      q.pushAvail(10);
    },
  },
  {
    name: 'next out of range',
    build: (fe, q) => {
      q.writeDesc(10, fe.memory.alloc(64), 64, NEXT, 999);
      q.pushAvail(10);
    },
  },
  {
    name: 'address outside guest memory',
    build: (_fe, q) => {
      q.writeDesc(10, 0x1_0000_0000, 64, 0, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'length running past the end of memory',
    build: (fe, q) => {
      q.writeDesc(10, fe.memory.regionEnd(0) - 16, 0xffff_ffff, 0, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'address beyond 2^53',
    build: (_fe, q) => {
      q.writeDesc(10, 0, 64, 0, 0);
      // Patch the high word directly.
      q.writeDesc(10, 2 ** 60, 64, 0, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'readable after writable (wrong direction)',
    build: (fe, q) => {
      q.writeDesc(10, fe.memory.alloc(64), 64, WRITE | NEXT, 11);
      q.writeDesc(11, fe.memory.alloc(64), 64, 0, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'indirect with NEXT',
    build: (fe, q) => {
      const table = fe.memory.alloc(32, 16);
      q.writeDesc(10, table, 32, INDIRECT | NEXT, 11);
      q.pushAvail(10);
    },
  },
  {
    name: 'indirect table length not a multiple of 16',
    build: (fe, q) => {
      q.writeDesc(10, fe.memory.alloc(40, 16), 40, INDIRECT, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'nested indirect',
    build: (fe, q) => {
      const table = fe.memory.alloc(16, 16);
      q.writeDesc(0, table, 16, INDIRECT, 0, fe.memory.offsetOf(table));
      q.writeDesc(10, table, 16, INDIRECT, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'loop inside an indirect table',
    build: (fe, q) => {
      const table = fe.memory.alloc(32, 16);
      const off = fe.memory.offsetOf(table);
      const buf = fe.memory.alloc(8);
      q.writeDesc(0, buf, 8, NEXT, 1, off);
      q.writeDesc(1, buf, 8, NEXT, 0, off);
      q.writeDesc(10, table, 32, INDIRECT, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'indirect table running past the end of memory',
    build: (fe, q) => {
      q.writeDesc(10, fe.memory.regionEnd(0) - 8, 32, INDIRECT, 0);
      q.pushAvail(10);
    },
  },
  {
    name: 'indirect table outside memory',
    build: (_fe, q) => {
      q.writeDesc(10, 0x10, 64, INDIRECT, 0);
      q.pushAvail(10);
    },
  },
];

for (const c of cases) {
  t.test(c.name, async (t) => {
    const { fe, rxq, txq, server } = await setup(t);
    c.build(fe, txq);
    txq.kick();
    const [u] = await txq.waitUsed(1);
    t.same(u, { id: 10, len: 0 }, 'chain returned with length 0');
    const q = server.backend!.queues[1]!;
    t.equal(q.stats.malformed, 1, `counted (${q.lastMalformed})`);
    t.equal(q.broken, undefined, 'queue not broken');
    await stillWorks(t, fe, rxq, txq, c.name);
  });
}

t.test('head out of range marks the queue broken', async (t) => {
  const { fe, txq, rxq, server, dev } = await setup(t);
  txq.pushAvail(500);
  txq.kick();
  await until(() => server.backend!.queues[1]!.broken !== undefined, 2000, 'broken');
  t.match(server.backend!.queues[1]!.broken, /head 500/);
  txq.add([{ data: new Uint8Array(10) }]);
  txq.kick();
  await settle();
  t.equal(txq.usedIdx, 0, 'a broken queue processes nothing');
  t.equal(dev.frames.length, 0);
  // The frontend re-initialising the ring repairs it.
  await fe.getVringBase(1);
  const q2 = await fe.setupQueue(1, 16);
  t.equal(server.backend!.queues[1]!.broken, undefined, 'reset by reconfiguration');
  await stillWorks(t, fe, rxq, q2, 'after reconfiguration');
});

t.test('avail index jumping past the queue size marks the queue broken', async (t) => {
  const { txq, server } = await setup(t);
  txq.setAvailIdx(1000);
  txq.kick();
  await until(() => server.backend!.queues[1]!.broken !== undefined, 2000, 'broken');
  t.match(server.backend!.queues[1]!.broken, /avail index moved by 1000/);
});

t.test('random descriptor tables never crash, hang or leak', async (t) => {
  const { fe, rxq, txq, server } = await setup(t, 16);
  const memStart = fe.memory.regions[0]!.guestPhysAddr;
  const memSize = fe.memory.regions[0]!.memorySize;
  const descArb = fc.record({
    addr: fc.oneof(fc.integer({ min: memStart, max: memStart + memSize }), fc.integer({ min: 0, max: 2 ** 40 })),
    len: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.constant(0xffff_ffff)),
    flags: fc.integer({ min: 0, max: 7 }),
    next: fc.integer({ min: 0, max: 20 }),
  });
  let rounds = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(descArb, { minLength: 16, maxLength: 16 }), fc.integer({ min: 0, max: 15 }), async (descs, head) => {
      rounds++;
      descs.forEach((d, i) => txq.writeDesc(i, d.addr, d.len, d.flags, d.next));
      const before = txq.usedIdx;
      txq.pushAvail(head);
      txq.kick();
      await until(() => txq.usedIdx !== before || server.backend!.queues[1]!.broken !== undefined, 2000, 'answer');
      txq.used();
      return server.backend!.queues[1]!.broken === undefined;
    }),
    { numRuns: 200 },
  );
  t.equal(rounds, 200);
  // Descriptor table contents were random: rebuild the driver's view with a fresh queue.
  await fe.getVringBase(1);
  const q2 = await fe.setupQueue(1, 16);
  await stillWorks(t, fe, rxq, q2, 'after 200 random chains');
});
