// The guest's kicks heard in the process's edge-triggered epoll set (host/edge-poller.ts's
// edgeKicks, vhost-user-ts's KickSource): every write to a kick eventfd wakes it though its counter
// is never read, a turn's kicks come inside one batch of the set's hooks, and a watch that ended
// hears nothing more. The vhost-user side (the backend handing its kick fds to a source) is the
// library's test; the runtime runs on this source in every end-to-end test.
import t from 'tap';
import { native } from 'vhost-user-ts/testing';
import { EdgePoller, edgeKicks } from '../../src/host/edge-poller.js';

/** Three turns of the event loop: an eventfd written before it has been polled and handled. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise<void>((r) => setImmediate(r));
}

t.test('every kick wakes the set; the counter is never read; a closed watch hears nothing', async (t) => {
  const fd = native.eventfd(0);
  t.teardown(() => native.close(fd));
  const size0 = EdgePoller.get().size;
  let kicks = 0;
  const lost: string[] = [];
  const watch = edgeKicks.watch(
    fd,
    () => kicks++,
    (reason) => lost.push(reason),
  );
  t.equal(EdgePoller.get().size, size0 + 1, 'the fd joined the set');
  await settle();
  t.equal(kicks, 0, 'nothing pending, no kick');
  for (let round = 1; round <= 5; round++) {
    native.eventfdWrite(fd, 1);
    await settle();
    t.equal(kicks, round, `kick ${round} heard, though the counter holds ${round}`);
  }
  const { wakes, events } = EdgePoller.get().stats;
  native.eventfdWrite(fd, 1);
  native.eventfdWrite(fd, 1);
  await settle();
  t.equal(kicks, 6, 'two kicks in one turn are one wake-up');
  t.same(EdgePoller.get().stats, { wakes: wakes + 1, events: events + 1 }, 'counted as one wake-up and one event');
  watch.close();
  watch.close();
  t.equal(EdgePoller.get().size, size0, 'closed (twice): the fd left the set once');
  native.eventfdWrite(fd, 1);
  await settle();
  t.equal(kicks, 6, 'a closed watch hears nothing');
  t.equal(native.eventfdRead(fd), 8, 'the counter was never read: every write is still in it');
  t.same(lost, [], 'an eventfd never hangs up');
});

t.test('a kick pending when the watch starts comes at once', async (t) => {
  const fd = native.eventfd(0);
  t.teardown(() => native.close(fd));
  native.eventfdWrite(fd, 1);
  let kicks = 0;
  const watch = edgeKicks.watch(
    fd,
    () => kicks++,
    () => undefined,
  );
  t.teardown(() => watch.close());
  await settle();
  t.equal(kicks, 1);
});

t.test("a turn's kicks come inside one batch of the set's hooks", async (t) => {
  const fds = [native.eventfd(0), native.eventfd(0)];
  t.teardown(() => fds.forEach((fd) => native.close(fd)));
  const seen: string[] = [];
  const unhook = EdgePoller.get().aroundBatch({ begin: () => seen.push('begin'), end: () => seen.push('end') });
  const watches = fds.map((fd, i) =>
    edgeKicks.watch(
      fd,
      () => seen.push(`kick ${i}`),
      () => undefined,
    ),
  );
  t.teardown(() => watches.forEach((w) => w.close()));
  const { wakes, events } = EdgePoller.get().stats;
  for (const fd of fds) native.eventfdWrite(fd, 1);
  await settle();
  t.same(seen.slice().sort(), ['begin', 'end', 'kick 0', 'kick 1'], 'both kicks, one batch');
  t.same(EdgePoller.get().stats, { wakes: wakes + 1, events: events + 2 }, 'one wake-up, two events');
  t.equal(seen[0], 'begin', 'the batch begins first');
  t.equal(seen.at(-1), 'end', 'and ends last');
  unhook();
  seen.length = 0;
  native.eventfdWrite(fds[0]!, 1);
  await settle();
  t.same(seen, ['kick 0'], 'unhooked: no batch around it');
});

t.test('a fd the set cannot take is refused with its errno', async (t) => {
  const fd = native.eventfd(0);
  native.close(fd);
  let error: unknown;
  try {
    edgeKicks.watch(
      fd,
      () => undefined,
      () => undefined,
    );
  } catch (err) {
    error = err;
  }
  t.match(error, { errno: -9 }, 'EBADF');
});
