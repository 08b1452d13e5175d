// PollTimer (src/virtio/poll-timer.ts): a one-shot timer re-armed between its firings, on Node's
// real timers.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { PollTimer } from '../../src/virtio/poll-timer.js';

t.test('fires once per arming, and stops when a firing was not re-armed', async (t) => {
  let fired = 0;
  const timer = new PollTimer(() => fired++, 1);
  t.ok(timer.running, 'armed at once');
  await sleep(30);
  t.equal(fired, 1, 'one arming, one firing');
  t.notOk(timer.running, 'the firing that found it not re-armed stopped the interval');
  timer.refresh(1);
  t.ok(timer.running, 'armed again');
  await sleep(30);
  t.equal(fired, 2);
  t.notOk(timer.running);
});

t.test('re-armed from its callback, it fires again until it is not', async (t) => {
  const times: number[] = [];
  const timer: PollTimer = new PollTimer(() => {
    times.push(performance.now());
    if (times.length < 5) timer.refresh(5);
  }, 5);
  await sleep(100);
  t.equal(times.length, 5, 'five armings, five firings');
  // (Node reckons in whole milliseconds of its loop's clock, which lags: a firing may come up to
  // a millisecond before the delay is over.)
  for (let i = 1; i < times.length; i++) t.ok(times[i]! - times[i - 1]! >= 3.5, `firing ${i}: about the delay after the last`);
  t.notOk(timer.running, 'stopped after the last');
});

t.test('a new delay starts a new interval', async (t) => {
  const times: number[] = [];
  const start = performance.now();
  const timer: PollTimer = new PollTimer(() => {
    times.push(performance.now() - start);
    if (times.length < 3) timer.refresh(20);
  }, 1);
  await sleep(100);
  t.equal(times.length, 3);
  t.ok(times[0]! < 15, 'the first in about 1 ms');
  t.ok(times[1]! - times[0]! >= 18.5 && times[2]! - times[1]! >= 18.5, 'then about 20 ms apart');
  t.notOk(timer.running);
});

t.test('refresh() while armed does not push the firing back', async (t) => {
  let fired = 0;
  const timer = new PollTimer(() => fired++, 20);
  const start = performance.now();
  // Re-armed every 5 ms: a Timeout's refresh() would never let a 20 ms delay end.
  while (fired === 0 && performance.now() - start < 200) {
    timer.refresh(1);
    await sleep(5);
  }
  t.equal(fired, 1, 'fired while being re-armed');
  t.ok(performance.now() - start < 60, 'about one delay after the first arming');
  await sleep(60);
  t.notOk(timer.running);
});
