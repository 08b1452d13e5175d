// The log rate limit: a few lines per message and interval, then one carrying how many were held
// back; fields given as a function are built only for lines that pass.
import t from 'tap';
import { LogLimiter, rateLimitedLog } from '../../src/iface/log.js';
import type { Log } from '../../src/iface/log.js';

function capture(): { log: Log; lines: { level: string; obj: object; msg: string }[] } {
  const lines: { level: string; obj: object; msg: string }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg = '') =>
      void lines.push({ level, obj, msg });
  return { log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }, lines };
}

t.test('three lines per message per interval, then one with the count held back', async (t) => {
  let now = 0;
  const { log, lines } = capture();
  const limiter = new LogLimiter(log, () => now, 1000, 3);
  let built = 0;
  for (let i = 0; i < 100; i++) limiter.warn(() => ({ i, built: ++built }), 'SYN dropped');
  limiter.warn({}, 'another message');
  t.equal(lines.length, 4, 'three of the first, one of the other');
  t.equal(built, 3, 'fields built only for lines that passed');
  now += 1000;
  limiter.warn(() => ({ i: 100 }), 'SYN dropped');
  t.same(lines.at(-1), { level: 'warn', obj: { i: 100, suppressed: 97 }, msg: 'SYN dropped' });
});

t.test('rateLimitedLog: a Log whose info, warn and error are limited and debug is not', async (t) => {
  const { log, lines } = capture();
  const limited = rateLimitedLog(log, () => 0, 10_000, 2);
  for (let i = 0; i < 10; i++) {
    limited.debug({ i }, 'frame dropped');
    limited.warn({ i }, 'dhcp: address pool exhausted, no offer');
  }
  t.equal(lines.filter((l) => l.level === 'debug').length, 10);
  t.equal(lines.filter((l) => l.level === 'warn').length, 2);
});
