// RateLimitedLogger: one line per key per interval, and an honest count of what was held back.
import t from 'tap';
import { RateLimitedLogger } from '../src/logger.js';
import { CaptureLogger, until } from './helpers.js';

function setup(opts: { maxKeys?: number } = {}) {
  const log = new CaptureLogger();
  let now = 1000;
  const limited = new RateLimitedLogger(log, { intervalMs: 10_000, clock: () => now, autoFlush: false, ...opts });
  return { log, limited, advance: (ms: number) => (now += ms) };
}

t.test('the first line, then one per interval with the count', async (t) => {
  const { log, limited, advance } = setup();
  t.equal(limited.warn({ n: 1 }, 'refused'), true, 'first line written');
  let written = 0;
  for (let i = 2; i <= 1000; i++) if (limited.warn({ n: i }, 'refused')) written++;
  t.equal(written, 0, '999 more held back');
  t.same(log.lines, [{ level: 'warn', obj: { n: 1 }, msg: 'refused' }]);
  advance(9_999);
  limited.warn({ n: 1001 }, 'refused');
  t.equal(log.lines.length, 1, 'still inside the window');
  advance(1);
  limited.warn({ n: 1002 }, 'refused');
  t.same(log.lines[1], { level: 'warn', obj: { n: 1002, suppressed: 1000 }, msg: 'refused (1000 more like this)' });
  advance(10_000);
  limited.warn({ n: 1003 }, 'refused');
  t.same(log.lines[2], { level: 'warn', obj: { n: 1003 }, msg: 'refused' }, 'nothing held back: a plain line');
});

t.test('keys are independent; an explicit key groups varying messages', async (t) => {
  const { log, limited } = setup();
  limited.warn({}, 'a');
  limited.error({}, 'b');
  limited.warn({}, 'a');
  limited.info({ q: 0 }, 'queue 0 hung up', 'hung up');
  limited.info({ q: 1 }, 'queue 1 hung up', 'hung up');
  t.same(
    log.lines.map((l) => `${l.level} ${l.msg}`),
    ['warn a', 'error b', 'info queue 0 hung up'],
  );
});

t.test('flush sums up windows that ended with nothing new', async (t) => {
  const { log, limited, advance } = setup();
  limited.error({ reason: 'x' }, 'dropped');
  limited.error({ reason: 'y' }, 'dropped');
  limited.error({ reason: 'z' }, 'dropped');
  limited.flush();
  t.equal(log.lines.length, 1, 'window not over');
  advance(10_000);
  limited.flush();
  t.same(log.lines[1], { level: 'error', obj: { reason: 'z', suppressed: 2 }, msg: 'dropped (2 more like this)' });
  limited.error({ reason: 'w' }, 'dropped');
  t.equal(log.lines.length, 2, 'a flush opens a new window');
  limited.close();
  t.same(log.lines[2], { level: 'error', obj: { reason: 'w', suppressed: 1 }, msg: 'dropped (1 more like this)' }, 'close flushes all');
});

t.test('memory is bounded: the oldest key is forgotten, its count written first', async (t) => {
  const { log, limited } = setup({ maxKeys: 2 });
  limited.warn({}, 'a');
  limited.warn({}, 'a');
  limited.warn({}, 'b');
  limited.warn({}, 'c'); // forgets a
  t.same(
    log.lines.map((l) => l.msg),
    ['a', 'b', 'a (1 more like this)', 'c'],
  );
  limited.warn({}, 'a');
  t.equal(log.lines.at(-1)?.msg, 'a', 'a forgotten key starts over');
});

t.test('the timer sums up on its own', async (t) => {
  const log = new CaptureLogger();
  const limited = new RateLimitedLogger(log, { intervalMs: 30 });
  limited.warn({}, 'kick');
  limited.warn({}, 'kick');
  limited.warn({}, 'kick');
  await until(() => log.lines.length >= 2, 2000, 'the summary line');
  t.same(
    log.lines.map((l) => l.msg),
    ['kick', 'kick (2 more like this)'],
  );
  limited.close();
});
