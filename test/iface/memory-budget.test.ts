// The memory budget: essential takes up to the limit, growth only while the reserve stays free,
// accounts summing to the total; and the deadline heap the NAT's timers use.
import t from 'tap';
import { DeadlineHeap } from '../../src/iface/deadline-heap.js';
import type { HeapItem } from '../../src/iface/deadline-heap.js';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { prng } from '../tcp/support.js';

t.test('take() up to the limit, grow() up to the reserve, accounts add up', async (t) => {
  const b = new MemoryBudget(8000);
  t.equal(b.reserve, 1000);
  const tcp = b.account('tcp');
  const frag = b.account('reassembly');
  t.ok(tcp.grow(6000), 'growth while the reserve stays free');
  t.notOk(tcp.grow(1001), 'growth into the reserve is refused');
  t.ok(tcp.canGrow(1000) && !tcp.canGrow(1001));
  t.ok(frag.take(1500), 'an essential take may use the reserve');
  t.notOk(frag.take(501), 'but not pass the limit');
  t.ok(frag.take(500));
  t.equal(b.used, 8000);
  t.equal(b.free, 0);
  t.same(b.snapshot().accounts, { tcp: 6000, reassembly: 2000 });
  t.equal(b.snapshot().refused, 2);
  t.ok(b.underPressure);
  tcp.give(6000);
  frag.give(2000);
  t.equal(b.used, 0);
  t.equal(b.peak, 8000, 'the peak stays');
  t.notOk(b.underPressure);
  t.equal(b.account('tcp'), tcp, 'one account per name');
});

interface Item extends HeapItem {
  id: number;
}

t.test('the deadline heap pops in deadline order through inserts, moves and removals', async (t) => {
  const heap = new DeadlineHeap<Item>();
  const rnd = prng(7);
  const items: Item[] = Array.from({ length: 500 }, (_, id) => ({ id, heapIndex: -1, heapDeadline: 0 }));
  const want = new Map<Item, number>();
  for (let round = 0; round < 5000; round++) {
    const it = items[Math.floor(rnd() * items.length)]!;
    const r = rnd();
    const d = r < 0.15 ? Infinity : Math.floor(rnd() * 10_000);
    heap.set(it, d);
    if (d === Infinity) want.delete(it);
    else want.set(it, d);
    if (r > 0.97) {
      heap.remove(it);
      want.delete(it);
    }
  }
  t.equal(heap.size, want.size);
  t.equal(heap.next, Math.min(...want.values()));
  const order: number[] = [];
  for (let it = heap.popDue(Infinity - 1); it; it = heap.popDue(Infinity - 1)) {
    t.equal(it.heapDeadline, want.get(it));
    order.push(it.heapDeadline);
  }
  t.equal(order.length, want.size, 'every item once');
  t.ok(
    order.every((d, i) => i === 0 || order[i - 1]! <= d),
    'in deadline order',
  );
  t.equal(heap.next, Infinity);
  heap.set(items[0]!, 5);
  t.equal(heap.popDue(4), undefined, 'nothing due before its deadline');
  t.equal(heap.popDue(5), items[0]);
});
