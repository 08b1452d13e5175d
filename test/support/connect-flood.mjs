// Opens COUNT TCP connections to HOST:PORT, CONCURRENCY at a time, each reset as soon as it is up
// (a flood of handshakes toward a forwarded port); prints one JSON line with what happened.
// Usage: node connect-flood.mjs HOST PORT COUNT CONCURRENCY
import { connect } from 'node:net';

const [host, port, count, concurrency] = process.argv.slice(2);
const total = Number(count);
let started = 0;
let connected = 0;
let failed = 0;
let active = 0;
const t0 = performance.now();
const next = () => {
  while (active < Number(concurrency) && started < total) {
    started++;
    active++;
    const s = connect({ host, port: Number(port) });
    s.setTimeout(5000);
    const done = () => {
      active--;
      if (started < total) next();
      else if (active === 0) {
        process.stdout.write(`${JSON.stringify({ connected, failed, seconds: (performance.now() - t0) / 1000 })}\n`);
      }
    };
    s.once('connect', () => {
      connected++;
      s.resetAndDestroy();
    });
    s.once('timeout', () => s.resetAndDestroy());
    s.once('error', () => failed++);
    s.once('close', done);
  }
};
next();
