// WorkList: the per-batch list whose slots outlive its emptying (an array emptied with
// `length = 0` allocates a new backing store at the next push).
import t from 'tap';
import { WorkList } from '../../src/iface/work-list.js';

const items = <T>(l: WorkList<T>): T[] => Array.from({ length: l.length }, (_, i) => l.at(i));

t.test('push, at, dropFront, filter and clear keep order', (t) => {
  const l = new WorkList<string>();
  for (const s of ['a', 'b', 'c', 'd', 'e']) l.push(s);
  t.same(items(l), ['a', 'b', 'c', 'd', 'e']);
  l.dropFront(2);
  t.same(items(l), ['c', 'd', 'e'], 'the rest moves to the front');
  l.push('f');
  t.same(items(l), ['c', 'd', 'e', 'f'], 'a push after dropFront goes behind');
  l.filter((s) => s !== 'd');
  t.same(items(l), ['c', 'e', 'f'], 'filter keeps the order of what stays');
  l.dropFront(10);
  t.equal(l.length, 0, 'dropping more than it holds empties it');
  l.push('g');
  t.same(items(l), ['g']);
  l.clear();
  t.equal(l.length, 0);
  t.end();
});

t.test('emptying forgets the items (they can be collected)', (t) => {
  const l = new WorkList<object>();
  const kept = { name: 'kept' };
  l.push({ name: 'gone' });
  l.push(kept);
  l.dropFront(1);
  // The slots past the length hold nothing: the list is the only thing that could keep them.
  const slots = (l as unknown as { items: (object | undefined)[] }).items;
  t.same(slots.slice(0, 2), [kept, undefined]);
  l.clear();
  t.same(slots.slice(0, 2), [undefined, undefined]);
  l.push(kept);
  l.filter(() => false);
  t.equal(slots[0], undefined);
  t.end();
});
