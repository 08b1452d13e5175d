// Tests of the native addon (native/*.cc) through its TypeScript interface: unix sockets with fd
// passing, eventfd, memfd + chunked mmap, and the uv_poll_t Poller. Also checks that nothing
// leaks: fds (counted in /proc/self/fd) and mappings (liveMappings()), including through GC.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext, runInThisContext } from 'node:vm';
import { faultMonitor } from '../src/guard.js';
import type { NativeMapping } from '../src/native.js';
import { binding, native } from '../src/native.js';
import { DescriptorChain } from '../src/virtqueue.js';
import { settle } from './helpers.js';

setFlagsFromString('--expose-gc');
setFlagsFromString('--allow-natives-syntax');
const gc = runInNewContext('gc') as () => void;
/** Whether V8 keeps `o`'s properties in fast mode (a map with fixed slots), not in a dictionary. */
const hasFastProperties = runInThisContext('(o) => %HasFastProperties(o)') as (o: object) => boolean;

const ADDON = fileURLToPath(new URL('../build/Release/vhost_user_native.node', import.meta.url));
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const KiB = 1024;

const fdCount = (): number => readdirSync('/proc/self/fd').length;
const fdsAtStart = fdCount();
const mappingsAtStart = native.liveMappings();

const dir = mkdtempSync(join(tmpdir(), 'vhost-native-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/** The open-file flags of `fd`, from /proc/self/fdinfo (octal). */
function fdFlags(fd: number): number {
  const m = /flags:\s*([0-7]+)/.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
  if (!m?.[1]) throw new Error(`no flags for fd ${fd}`);
  return parseInt(m[1], 8);
}

function chunk(m: NativeMapping, i: number): ArrayBuffer {
  const c = m.chunks[i];
  if (!c) throw new Error(`no chunk ${i}`);
  return c;
}

/** Runs GC and the immediates that carry N-API finalizers, a few rounds. */
async function collect(): Promise<void> {
  for (let i = 0; i < 6; i++) {
    gc();
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

async function until(cond: () => boolean, what: string, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

let socketCounter = 0;
/** A connected pair over a real unix socket: `a` connected to `b`, accepted from `listen`. */
function socketPair(): { path: string; listen: number; a: number; b: number; closeAll(): void } {
  const path = join(dir, `s${socketCounter++}.sock`);
  const listen = native.unixListen(path, 4);
  const a = native.unixConnect(path);
  const b = native.accept(listen);
  if (b < 0) throw new Error(`accept: ${b}`);
  return {
    path,
    listen,
    a,
    b,
    closeAll() {
      for (const fd of [a, b, listen]) native.close(fd);
    },
  };
}

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

t.test('constants', async (t) => {
  t.equal(native.POLL_READABLE, 1);
  t.equal(native.POLL_WRITABLE, 2);
  t.equal(native.EAGAIN, 11);
  t.equal(native.EINTR, 4);
  t.equal(native.EPIPE, 32);
  t.equal(native.ECONNRESET, 104);
});

t.test('the functions are read from a fast-mode object, also once the fault monitor is kept', (t) => {
  // The addon's exports object is a dictionary (its properties were added one by one), where
  // optimized code reads each function with a generic property load.
  t.equal(hasFastProperties(binding), false, 'the addon exports a dictionary-mode object');
  t.equal(hasFastProperties(native), true);
  t.same(Object.keys(native), Object.keys(binding), 'every export copied');
  const monitor = faultMonitor();
  t.equal(faultMonitor(), monitor, 'one monitor per addon instance');
  t.equal(hasFastProperties(native), true, 'the monitor is kept on the exports object, not on the copy');
  t.end();
});

t.test('listen, connect, accept', async (t) => {
  const path = join(dir, 'lca.sock');
  const listen = native.unixListen(path, 4);
  t.equal(native.accept(listen), -native.EAGAIN, 'accept with nothing pending');
  const a = native.unixConnect(path);
  const b = native.accept(listen);
  t.ok(b >= 0, 'accepted');
  for (const fd of [listen, a, b]) {
    t.equal(fdFlags(fd) & O_NONBLOCK, O_NONBLOCK, `fd ${fd} non-blocking`);
    t.equal(fdFlags(fd) & O_CLOEXEC, O_CLOEXEC, `fd ${fd} close-on-exec`);
  }
  t.equal(native.accept(listen), -native.EAGAIN, 'only one pending');

  t.throws(() => native.unixListen(path, 4), { code: 'EADDRINUSE', errno: -98, syscall: 'bind', path });
  for (const fd of [a, b, listen]) t.equal(native.close(fd), 0);
  t.equal(native.close(b), -9, 'closing twice gives -EBADF');

  t.throws(() => native.unixConnect(path), { code: 'ECONNREFUSED', syscall: 'connect' }, 'stale socket file');
  t.throws(() => native.unixConnect(join(dir, 'absent.sock')), { code: 'ENOENT' });
  t.throws(() => native.unixListen(join(dir, 'x'.repeat(120)), 1), { code: 'ENAMETOOLONG' });
  t.throws(() => native.unixConnect(join(dir, 'x'.repeat(120))), { code: 'ENAMETOOLONG' });
  t.throws(() => native.unixListen('', 1), { code: 'EINVAL' });
  t.throws(() => native.accept(-1), RangeError);
  t.throws(() => native.accept('3' as unknown as number), TypeError);
});

t.test('send a message with an eventfd and a memfd', async (t) => {
  const p = socketPair();
  const efd = native.eventfd(0);
  const mfd = native.memfdCreate('vhost-test', 64 * KiB);

  const header = bytes('HEADER-12byt');
  const payload = bytes('payload after the header');
  const msg = new Uint8Array(header.length + payload.length + 4);
  msg.set(header, 2);
  msg.set(payload, 2 + header.length);
  t.equal(native.sendMsg(p.a, msg, 2, header.length, [efd, mfd]), 12);
  t.equal(native.sendMsg(p.a, msg, 2 + header.length, payload.length, []), payload.length);

  const rx = new Uint8Array(128);
  const r1 = native.recvMsg(p.b, rx, 0, 12, 8);
  t.equal(r1.n, 12);
  t.equal(r1.truncated, false);
  t.equal(r1.fds.length, 2, 'both fds arrive with the header');
  t.same(rx.subarray(0, 12), header);
  const r2 = native.recvMsg(p.b, rx, 12, 100, 8);
  t.equal(r2.n, payload.length);
  t.same(r2.fds, []);
  t.same(rx.subarray(12, 12 + payload.length), payload);

  const [efd2, mfd2] = r1.fds as [number, number];
  for (const fd of [efd2, mfd2]) t.equal(fdFlags(fd) & O_CLOEXEC, O_CLOEXEC, 'received fd is close-on-exec');
  t.equal(native.eventfdWrite(efd, 3), 0);
  t.equal(native.eventfdRead(efd2), 3, 'eventfd written on one side, read on the other');
  t.equal(native.eventfdWrite(efd2, 4), 0);
  t.equal(native.eventfdRead(efd), 4);

  const m1 = native.mmap(mfd, 0, 64 * KiB, 64 * KiB);
  const m2 = native.mmap(mfd2, 0, 64 * KiB, 64 * KiB);
  new Uint8Array(chunk(m1, 0))[1000] = 0x5a;
  t.equal(new Uint8Array(chunk(m2, 0))[1000], 0x5a, 'memfd shared across the socket');
  new DataView(chunk(m2, 0)).setUint32(4, 0xdeadbeef, true);
  t.equal(new DataView(chunk(m1, 0)).getUint32(4, true), 0xdeadbeef);
  native.munmap(m1);
  native.munmap(m2);

  t.equal(native.recvMsg(p.b, rx, 0, 10, 8).n, -native.EAGAIN, 'nothing left');
  for (const fd of [efd, mfd, efd2, mfd2]) native.close(fd);
  p.closeAll();
});

t.test('fds belong to the message they were sent with', async (t) => {
  const p = socketPair();
  const e1 = native.eventfd(1);
  const e2 = native.eventfd(2);
  t.equal(native.sendMsg(p.a, bytes('one!'), 0, 4, [e1]), 4);
  t.equal(native.sendMsg(p.a, bytes('two!'), 0, 4, [e2]), 4);
  const rx = new Uint8Array(64);
  const r1 = native.recvMsg(p.b, rx, 0, 64, 8);
  t.equal(r1.n, 4, 'recvmsg stops at the message that carries fds');
  t.equal(r1.fds.length, 1);
  const r2 = native.recvMsg(p.b, rx, 0, 64, 8);
  t.equal(r2.n, 4);
  t.equal(r2.fds.length, 1);
  t.equal(native.eventfdRead(r1.fds[0]!), 1);
  t.equal(native.eventfdRead(r2.fds[0]!), 2);
  for (const fd of [e1, e2, ...r1.fds, ...r2.fds]) native.close(fd);
  p.closeAll();
});

t.test('truncated control data loses no fd', async (t) => {
  const p = socketPair();
  const sent = [native.eventfd(0), native.eventfd(0), native.eventfd(0), native.eventfd(0)];
  const before = fdCount();
  const rx = new Uint8Array(16);

  t.equal(native.sendMsg(p.a, bytes('four'), 0, 4, sent), 4);
  const r = native.recvMsg(p.b, rx, 0, 16, 2);
  t.equal(r.n, 4);
  t.equal(r.truncated, true, 'MSG_CTRUNC reported');
  t.equal(r.fds.length, 2, 'the fds that fit are returned');
  for (const fd of r.fds) native.close(fd);
  t.equal(fdCount(), before, 'the others were dropped by the kernel, none installed');

  t.equal(native.sendMsg(p.a, bytes('none'), 0, 4, sent), 4);
  const r0 = native.recvMsg(p.b, rx, 0, 16, 0);
  t.same([r0.n, r0.fds, r0.truncated], [4, [], true], 'maxFds 0');
  t.equal(fdCount(), before);

  t.equal(native.sendMsg(p.a, bytes('odd!'), 0, 4, sent.slice(0, 2)), 4);
  const r1 = native.recvMsg(p.b, rx, 0, 16, 1);
  t.same([r1.fds.length, r1.truncated], [1, true], 'maxFds is exact even when odd');
  for (const fd of r1.fds) native.close(fd);
  t.equal(fdCount(), before);

  for (const fd of sent) native.close(fd);
  p.closeAll();
});

t.test('EAGAIN, EOF, EPIPE, ECONNRESET', async (t) => {
  const rx = new Uint8Array(64);
  {
    const p = socketPair();
    t.same(native.recvMsg(p.b, rx, 0, 64, 8), { n: -native.EAGAIN, fds: [], truncated: false });
    native.close(p.a);
    t.equal(native.recvMsg(p.b, rx, 0, 64, 8).n, 0, 'EOF after the peer closes');
    t.equal(native.sendMsg(p.b, rx, 0, 8, []), -native.EPIPE, 'no SIGPIPE, -EPIPE');
    native.close(p.b);
    native.close(p.listen);
  }
  {
    const p = socketPair();
    native.sendMsg(p.a, rx, 0, 8, []);
    native.close(p.b); // with unread data
    t.equal(native.recvMsg(p.a, rx, 0, 64, 8).n, -native.ECONNRESET);
    native.close(p.a);
    native.close(p.listen);
  }
  {
    const p = socketPair();
    const big = new Uint8Array(64 * KiB);
    let n = 0;
    let i = 0;
    for (; i < 1000 && (n = native.sendMsg(p.a, big, 0, big.length, [])) > 0; i++);
    t.equal(n, -native.EAGAIN, 'a full socket gives -EAGAIN, never blocks');
    p.closeAll();
  }
});

t.test('argument checks', async (t) => {
  const p = socketPair();
  const buf = new Uint8Array(8);
  t.throws(() => native.recvMsg(p.b, buf, 4, 5, 8), RangeError);
  t.throws(() => native.recvMsg(p.b, buf, 0, 0, 8), RangeError);
  t.throws(() => native.recvMsg(p.b, buf, 0, 8, 254), RangeError);
  t.throws(() => native.recvMsg(p.b, new Uint16Array(4) as unknown as Uint8Array, 0, 8, 8), TypeError);
  t.throws(() => native.sendMsg(p.a, buf, 7, 2, []), RangeError);
  t.throws(() => native.sendMsg(p.a, buf, 0, 1, new Array<number>(254).fill(0)), RangeError);
  t.throws(() => native.sendMsg(p.a, buf, 0, 1, [-1]), TypeError);
  t.throws(() => native.sendMsg(p.a, buf, 0, 1, [1.5]), TypeError);
  t.equal(native.sendMsg(p.a, buf, 0, 1, [999_999]), -9, 'a bad fd is -EBADF');
  t.equal(native.sendMsg(p.a, Buffer.from('x'), 0, 1, []), 1, 'a Buffer is a Uint8Array');
  p.closeAll();
});

t.test('eventfd', async (t) => {
  const efd = native.eventfd(0);
  t.equal(fdFlags(efd) & (O_NONBLOCK | O_CLOEXEC), O_NONBLOCK | O_CLOEXEC);
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'zero counter');
  t.equal(native.eventfdWrite(efd, 3), 0);
  t.equal(native.eventfdWrite(efd, 4), 0);
  t.equal(native.eventfdRead(efd), 7, 'sum of the writes');
  t.equal(native.eventfdRead(efd), -native.EAGAIN, 'read resets');
  t.equal(native.eventfdWrite(efd, 2 ** 40), 0);
  t.equal(native.eventfdRead(efd), 2 ** 40, 'large values');
  t.throws(() => native.eventfdWrite(efd, -1), RangeError);
  native.close(efd);
  const e5 = native.eventfd(5);
  t.equal(native.eventfdRead(e5), 5, 'initial value');
  native.close(e5);
  t.throws(() => native.eventfd(-1), RangeError);
});

t.test('mmap in chunks', async (t) => {
  const base = native.liveMappings();
  const fd = native.memfdCreate('chunks', 256 * KiB);
  t.equal(fdFlags(fd) & O_CLOEXEC, O_CLOEXEC);

  const whole = native.mmap(fd, 0, 256 * KiB, 64 * KiB);
  t.equal(whole.chunks.length, 4);
  t.same(
    whole.chunks.map((c) => c.byteLength),
    [64 * KiB, 64 * KiB, 64 * KiB, 64 * KiB],
  );
  t.equal(whole.chunkSize, 64 * KiB);
  t.equal(whole.length, 256 * KiB);
  t.ok(Object.isFrozen(whole) && Object.isFrozen(whole.chunks), 'frozen');
  t.same(Object.keys(whole), ['chunks', 'chunkSize', 'length'], 'the native handle is hidden');

  const tail = native.mmap(fd, 64 * KiB, 192 * KiB, 64 * KiB);
  t.equal(tail.chunks.length, 3);
  const uneven = native.mmap(fd, 0, 100 * KiB, 64 * KiB);
  t.same(
    uneven.chunks.map((c) => c.byteLength),
    [64 * KiB, 36 * KiB],
    'last chunk shorter',
  );
  t.equal(native.liveMappings(), base + 3);
  native.close(fd);

  new Uint8Array(chunk(whole, 1))[5] = 0xab;
  t.equal(new Uint8Array(chunk(tail, 0))[5], 0xab, 'offset mapping sees the write (fd closed meanwhile)');
  new Uint8Array(chunk(tail, 2))[64 * KiB - 1] = 0xcd;
  t.equal(new Uint8Array(chunk(whole, 3))[64 * KiB - 1], 0xcd);
  t.equal(new Uint8Array(chunk(uneven, 1))[5], 0xab);
  t.ok(Atomics.load(new Uint16Array(chunk(whole, 0)), 0) === 0, 'Atomics work on chunks');

  const view = new Uint8Array(chunk(whole, 1));
  const data = new DataView(chunk(whole, 2), 8);
  native.munmap(whole);
  t.equal(view.length, 0, 'views drop to length 0');
  t.throws(() => data.getUint8(0), TypeError, 'a DataView over a detached chunk throws');
  t.ok(
    whole.chunks.every((c) => c.byteLength === 0),
    'every chunk detached',
  );
  t.equal(native.liveMappings(), base + 2);
  native.munmap(whole);
  t.equal(native.liveMappings(), base + 2, 'munmap is idempotent');
  t.equal(new Uint8Array(chunk(tail, 0))[5], 0xab, 'other mappings unaffected');

  native.munmap(tail);
  native.munmap(uneven);
  t.equal(native.liveMappings(), base);
});

t.test('mmap argument checks', async (t) => {
  const base = native.liveMappings();
  const fd = native.memfdCreate('bad', 64 * KiB);
  t.throws(() => native.mmap(fd, 100, 4096, 4096), { code: 'EINVAL', syscall: 'mmap' }, 'unaligned offset');
  t.throws(() => native.mmap(fd, 0, 0, 4096), { code: 'EINVAL' }, 'zero length');
  t.throws(() => native.mmap(fd, 0, 8192, 1000), { code: 'EINVAL' }, 'chunk not a page multiple');
  t.throws(() => native.mmap(fd, 0, 8192, 0), { code: 'EINVAL' }, 'zero chunk');
  t.throws(() => native.mmap(fd, 0, 128 * KiB, 4096), { code: 'EINVAL' }, 'past the end of the file');
  t.throws(() => native.mmap(fd, 2 ** 54, 4096, 4096), RangeError);
  t.throws(() => native.mmap(999_999, 0, 4096, 4096), { code: 'EBADF' });
  t.throws(() => native.munmap({ chunks: [], chunkSize: 1, length: 1 }), TypeError);
  const m = native.mmap(fd, 0, 4096, 4096);
  t.throws(() => native.munmap({ ...m }), TypeError, 'a copy is not the mapping');
  native.munmap(m);
  native.close(fd);
  t.equal(native.liveMappings(), base);
});

t.test('mappings are unmapped when collected, not before', async (t) => {
  const base = native.liveMappings();
  const fd = native.memfdCreate('gc', 128 * KiB);
  (() => {
    native.mmap(fd, 0, 128 * KiB, 64 * KiB);
  })();
  t.equal(native.liveMappings(), base + 1);
  await collect();
  t.equal(native.liveMappings(), base, 'collected mapping unmapped by its finalizer');

  let kept: Uint8Array | undefined = (() => new Uint8Array(chunk(native.mmap(fd, 0, 128 * KiB, 64 * KiB), 1)))();
  await collect();
  t.equal(native.liveMappings(), base + 1, 'a live chunk keeps the memory mapped');
  kept[7] = 9;
  t.equal(kept[7], 9);
  kept = undefined;
  await collect();
  t.equal(native.liveMappings(), base, 'unmapped once the chunk is gone too');

  (() => {
    native.munmap(native.mmap(fd, 0, 128 * KiB, 64 * KiB));
  })();
  await collect();
  t.equal(native.liveMappings(), base, 'munmap then GC: unmapped once');
  native.close(fd);
});

t.test('Poller on a readable socket', async (t) => {
  const p = socketPair();
  const calls: [number, number, number][] = [];
  const rx = new Uint8Array(64);
  let got = '';
  const poller = new native.Poller(
    p.b,
    (status, events, value) => {
      calls.push([status, events, value]);
      for (let r = native.recvMsg(p.b, rx, 0, 64, 0); r.n > 0; r = native.recvMsg(p.b, rx, 0, 64, 0)) {
        got += new TextDecoder().decode(rx.subarray(0, r.n));
      }
    },
    false,
  );
  poller.start(native.POLL_READABLE);
  await settle();
  t.equal(calls.length, 0, 'quiet until data arrives');
  native.sendMsg(p.a, bytes('hello'), 0, 5, []);
  await until(() => calls.length > 0, 'readable');
  t.same(calls[0], [0, native.POLL_READABLE, 0]);
  t.equal(got, 'hello');

  poller.stop();
  const n = calls.length;
  native.sendMsg(p.a, bytes('again'), 0, 5, []);
  await settle();
  t.equal(calls.length, n, 'stopped: no callback');
  poller.start(native.POLL_READABLE);
  await until(() => got === 'helloagain', 'readable after restart');

  poller.start(native.POLL_READABLE | native.POLL_WRITABLE);
  await until(() => calls.some(([, ev]) => (ev & native.POLL_WRITABLE) !== 0), 'writable');
  poller.close();
  poller.close();
  poller.stop();
  t.throws(() => poller.start(native.POLL_READABLE), { code: 'EBADF' }, 'start after close throws');
  const m = calls.length;
  native.sendMsg(p.a, bytes('late'), 0, 4, []);
  await settle();
  t.equal(calls.length, m, 'closed: no callback');
  p.closeAll();
});

t.test('Poller drains an eventfd', async (t) => {
  const efd = native.eventfd(0);
  const values: number[] = [];
  const poller = new native.Poller(
    efd,
    (status, events, value) => {
      t.equal(status, 0);
      t.equal(events, native.POLL_READABLE);
      values.push(value);
    },
    true,
  );
  poller.start(native.POLL_READABLE);
  native.eventfdWrite(efd, 5);
  await until(() => values.length > 0, 'kick');
  await settle();
  t.same(values, [5], 'drained: fires once per kick');
  native.eventfdWrite(efd, 1);
  native.eventfdWrite(efd, 1);
  await until(() => values.length > 1, 'second kick');
  t.same(values, [5, 2]);

  poller.stop();
  native.eventfdWrite(efd, 3);
  await settle();
  t.same(values, [5, 2], 'stopped');
  t.equal(native.eventfdRead(efd), 3, 'counter untouched while stopped');
  poller.start(0);
  native.eventfdWrite(efd, 1);
  await settle();
  t.same(values, [5, 2], 'start(0) is stop');
  poller.close();
  native.close(efd);
});

t.test('Poller callback may close its own poller', async (t) => {
  const efd = native.eventfd(1);
  let calls = 0;
  const poller = new native.Poller(
    efd,
    () => {
      calls++;
      poller.close();
    },
    false,
  );
  poller.start(native.POLL_READABLE);
  await settle();
  t.equal(calls, 1, 'level-triggered fd not drained, yet one call: closed inside the callback');
  native.close(efd);
});

t.test('Poller reports a socket error and stops', async (t) => {
  const p = socketPair();
  const calls: [number, number][] = [];
  const poller = new native.Poller(p.a, (status, events) => calls.push([status, events]), false);
  native.sendMsg(p.a, bytes('unread'), 0, 6, []);
  native.close(p.b); // with unread data: ECONNRESET pending on p.a, so POLLERR
  poller.start(native.POLL_READABLE);
  await until(() => calls.length > 0, 'error');
  await settle();
  t.same(calls, [[-9, 0]], 'UV_EBADF once: libuv stopped the handle');
  poller.start(native.POLL_READABLE);
  await until(() => calls.length > 1, 'error again after restart');
  poller.close();
  native.close(p.a);
  native.close(p.listen);
});

t.test('Poller start on a closed fd throws instead of aborting in libuv', async (t) => {
  const efd = native.eventfd(0);
  const poller = new native.Poller(efd, () => {}, true);
  native.close(efd);
  t.throws(() => poller.start(native.POLL_READABLE), { code: 'EBADF' });
  const ffd = openSync(join(dir, 'reuse'), 'w'); // likely the same number, now a regular file
  t.throws(() => poller.start(native.POLL_READABLE), { code: 'EBADF' });
  closeSync(ffd);
  poller.close();
});

t.test('Poller construction errors', async (t) => {
  const efd = native.eventfd(0);
  native.close(efd);
  t.throws(() => new native.Poller(efd, () => {}, false), { code: 'EBADF', syscall: 'uv_poll_init' });
  const file = join(dir, 'regular');
  const ffd = openSync(file, 'w');
  t.throws(() => new native.Poller(ffd, () => {}, false), { code: 'EPERM' }, 'regular files cannot be polled');
  closeSync(ffd);
  t.throws(() => new native.Poller(0, 'x' as unknown as () => void, false), TypeError);

  const e2 = native.eventfd(0);
  const first = new native.Poller(e2, () => {}, false);
  first.start(native.POLL_READABLE);
  t.throws(() => new native.Poller(e2, () => {}, false), { code: 'EEXIST' }, 'one active poller per fd');
  first.close();
  native.close(e2);
});

t.test('Poller lifetime under GC', async () => {
  const efd = native.eventfd(0);
  (() => {
    new native.Poller(efd, () => {}, true);
  })();
  await collect(); // never started: finalized and closed without calling JS

  let value = 0;
  (() => {
    const p: { poller?: InstanceType<typeof native.Poller> } = {};
    p.poller = new native.Poller(
      efd,
      (_s, _e, v) => {
        value = v;
        p.poller?.close(); // the callback refers back to its poller: a cycle the GC must handle
      },
      true,
    );
    p.poller.start(native.POLL_READABLE);
  })();
  await collect();
  native.eventfdWrite(efd, 4);
  await until(() => value === 4, 'a started poller without JS references keeps working');

  (() => {
    const p = new native.Poller(efd, () => p.stop(), true);
    p.start(native.POLL_READABLE);
    p.stop();
  })();
  await collect(); // stopped, not closed, in a reference cycle: collectable
  native.close(efd);
});

t.test('a draining Poller stops on a pipe whose writer closed (no spin)', async (t) => {
  const [r, w] = native.pipe();
  t.equal(fdFlags(r) & (O_NONBLOCK | O_CLOEXEC), O_NONBLOCK | O_CLOEXEC, 'pipe ends are non-blocking, close-on-exec');
  const calls: [number, number, number][] = [];
  const poller = new native.Poller(r, (status, events, value) => calls.push([status, events, value]), true);
  poller.start(native.POLL_READABLE);
  native.eventfdWrite(w, 1); // 8 bytes, as QEMU's pipe notifier writes
  await until(() => calls.length === 1, 'notification');
  t.same(calls[0], [0, native.POLL_READABLE, 1], 'a notification through a pipe');
  native.close(w);
  await until(() => calls.length === 2, 'hang-up');
  await sleep(300); // time passing is the point: a poller spinning on the hung-up pipe would call back
  t.same(calls[1], [native.UV_EOF, native.POLL_READABLE, 0], 'end of file reported once as UV_EOF');
  t.equal(calls.length, 2, 'stopped: no further callback');
  poller.start(native.POLL_READABLE);
  await until(() => calls.length === 3, 'hang-up after restart');
  t.equal(calls[2]![0], native.UV_EOF, 'restarting reports it again, once');
  poller.close();
  native.close(r);
});

t.test('a draining Poller stops on UV_DISCONNECT and on read errors', async (t) => {
  const p = socketPair();
  const statuses: number[] = [];
  const poller = new native.Poller(p.a, (status) => statuses.push(status), true);
  poller.start(native.POLL_READABLE | native.POLL_DISCONNECT);
  native.close(p.b);
  await until(() => statuses.length > 0, 'disconnect');
  await settle();
  t.same(statuses, [native.UV_EOF], 'peer gone: UV_EOF once');
  poller.close();

  // A listening socket is readable when a connection is pending, and read() fails on it.
  const errors: number[] = [];
  const lp = new native.Poller(p.listen, (status) => errors.push(status), true);
  lp.start(native.POLL_READABLE);
  const c = native.unixConnect(p.path);
  await until(() => errors.length > 0, 'read error');
  await settle();
  t.equal(errors.length, 1, 'reported once');
  t.ok(errors[0]! < 0 && errors[0] !== native.UV_EOF, `a -errno status (${errors[0]})`);
  lp.close();
  for (const fd of [c, p.a, p.listen]) native.close(fd);
});

t.test('fdKind', async (t) => {
  const efd = native.eventfd(0);
  const sem = native.eventfd(0, true);
  const mfd = native.memfdCreate('kind', 4096);
  const [r, w] = native.pipe();
  const p = socketPair();
  const file = join(dir, 'kind-file');
  const ffd = openSync(file, 'w');
  const dfd = openSync(dir, 'r');
  const nul = openSync('/dev/null', 'r');
  t.equal(native.fdKind(efd), 'eventfd');
  t.equal(native.fdKind(sem), 'eventfd-semaphore', 'EFD_SEMAPHORE is told apart (Linux >= 6.5)');
  t.equal(native.fdKind(mfd), 'regular', 'a memfd is a regular file');
  t.equal(native.fdKind(r), 'fifo');
  t.equal(native.fdKind(w), 'fifo');
  t.equal(native.fdKind(p.a), 'socket');
  t.equal(native.fdKind(ffd), 'regular');
  t.equal(native.fdKind(dfd), 'directory');
  t.equal(native.fdKind(nul), 'character');
  t.equal(native.fdKind(native.guardWakeFd()), 'eventfd');
  for (const fd of [efd, sem, mfd, r, w]) native.close(fd);
  for (const fd of [ffd, dfd, nul]) closeSync(fd);
  p.closeAll();
  t.throws(() => native.fdKind(efd), { code: 'EBADF' });
});

t.test('memfd sealing and sealShrink', async (t) => {
  const sealed = native.memfdCreate('sealed', 8192);
  t.equal(native.sealShrink(sealed), 0, "QEMU's default: sealed already");
  t.throws(() => ftruncateSync(sealed, 4096), { code: 'EPERM' }, 'cannot shrink');
  t.throws(() => ftruncateSync(sealed, 16384), { code: 'EPERM' }, 'cannot grow');

  const sealable = native.memfdCreate('sealable', 8192, 'sealable');
  ftruncateSync(sealable, 12288);
  t.equal(native.sealShrink(sealable), 0, 'sealed now');
  t.equal(native.sealShrink(sealable), 0, 'and again: already sealed');
  t.throws(() => ftruncateSync(sealable, 4096), { code: 'EPERM' }, 'cannot shrink once sealed');
  ftruncateSync(sealable, 16384); // growing is harmless and stays allowed

  const unsealable = native.memfdCreate('unsealable', 8192, 'unsealable');
  t.equal(native.sealShrink(unsealable), -1, '-EPERM without MFD_ALLOW_SEALING');
  ftruncateSync(unsealable, 4096);

  const ffd = openSync(join(dir, 'plain'), 'w+');
  t.ok(native.sealShrink(ffd) < 0, 'a file on a filesystem without seals cannot be sealed');
  closeSync(ffd);
  t.throws(() => native.memfdCreate('x', 4096, 'maybe' as 'sealed'), RangeError);
  for (const fd of [sealed, sealable, unsealable]) native.close(fd);
});

t.test('SIGBUS guard: a truncated mapping reads zeros and reports the fault', async (t) => {
  const base = native.liveMappings();
  const fd = native.memfdCreate('truncated', 64 * KiB, 'unsealable');
  const m = native.mmap(fd, 0, 64 * KiB, 64 * KiB);
  const other = native.mmap(fd, 0, 8 * KiB, 8 * KiB);
  t.ok(native.mappingGuarded(m), 'guarded');
  const bytes = new Uint8Array(chunk(m, 0));
  bytes[100] = 1;
  bytes[40 * KiB] = 2;
  const wakes: number[] = [];
  const poller = new native.Poller(native.guardWakeFd(), (_s, _e, v) => wakes.push(v), true);
  poller.start(native.POLL_READABLE);

  ftruncateSync(fd, 16 * KiB);
  t.equal(bytes[100], 1, 'below the new end of file: still the file');
  t.equal(bytes[40 * KiB], 0, 'past it: a zero page instead of SIGBUS');
  bytes[40 * KiB + 1] = 7;
  t.equal(bytes[40 * KiB + 1], 7, 'the zero page is writable (private): same page, no new fault');
  t.equal(new DataView(chunk(m, 0)).getUint32(60 * KiB, true), 0, 'another page');
  t.equal(native.mappingFaults(m), 2, 'two pages faulted');
  t.equal(native.mappingFaults(m), 0, 'counts are taken');
  t.equal(native.mappingFaults(other), 0, 'counted on the mapping that faulted');
  await until(() => wakes.length > 0, 'wake-up');
  t.equal(
    wakes.reduce((a, b) => a + b, 0),
    2,
    'the guard eventfd was written once per fault',
  );

  poller.close();
  native.munmap(m);
  native.munmap(other);
  t.equal(native.mappingGuarded(m), false, 'not guarded once unmapped');
  t.equal(native.liveMappings(), base);
  native.close(fd);
});

/** ES module source that binds `n` to the addon. */
const PRELUDE = `import { createRequire } from 'node:module'; const n = createRequire(import.meta.url)(${JSON.stringify(ADDON)});\n`;

/** Runs an ES module in a fresh node with `n` bound to the addon. */
function runChild(code: string): { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', PRELUDE + code], { encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

t.test('SIGBUS guard: a signal that is not a fault in our mappings keeps its default action', async (t) => {
  const r = runChild(`
    const fd = n.memfdCreate('guarded', 4096, 'unsealable');
    n.mmap(fd, 0, 4096, 4096); // installs the handler
    process.kill(process.pid, 'SIGBUS');
    setTimeout(() => console.log('survived'), 200);
  `);
  t.equal(r.signal, 'SIGBUS', 'killed by SIGBUS as without the guard');
  t.equal(r.stdout, '');
});

t.test('exceptions from a Poller callback are uncaught exceptions', async (t) => {
  const handled = runChild(`
    const e = n.eventfd(1);
    let count = 0;
    const p = new n.Poller(e, () => { throw new Error('boom ' + ++count); }, false);
    process.on('uncaughtException', (err) => {
      console.log('caught ' + err.message);
      if (count === 2) { p.close(); n.close(e); }
    });
    p.start(n.POLL_READABLE);
  `);
  t.equal(handled.status, 0, handled.stderr);
  t.equal(handled.stdout, 'caught boom 1\ncaught boom 2\n', 'delivered to uncaughtException, loop goes on');

  const unhandled = runChild(`
    const e = n.eventfd(1);
    new n.Poller(e, () => { throw new Error('unhandled boom'); }, false).start(n.POLL_READABLE);
  `);
  t.equal(unhandled.status, 1);
  t.match(unhandled.stderr, /unhandled boom/);
});

t.test('process and worker exit with open pollers and mappings', async (t) => {
  const body = `
    const e = n.eventfd(0);
    const fd = n.memfdCreate('exit', 65536);
    const m = n.mmap(fd, 0, 65536, 4096);
    globalThis.keep = [m, new Uint8Array(m.chunks[3]), n.mmap(fd, 0, 8192, 4096).chunks[1]];
    new n.Poller(e, () => {}, true).start(n.POLL_READABLE);
    new n.Poller(fd === 0 ? 1 : n.eventfd(0), () => {}, false);
    n.eventfdWrite(e, 1);
  `;
  const main = runChild(`${body}; setTimeout(() => process.exit(0), 50);`);
  t.equal(main.status, 0, main.stderr);
  t.equal(main.stderr, '');

  const worker = runChild(`
    import { Worker } from 'node:worker_threads';
    const code = ${JSON.stringify(`${PRELUDE}${body}; setTimeout(() => process.exit(0), 50);`)};
    const w = new Worker(code, { eval: true });
    w.on('exit', (c) => { console.log('worker exit ' + c); n.eventfd(0); });
  `);
  t.equal(worker.status, 0, worker.stderr);
  t.equal(worker.stdout, 'worker exit 0\n');
  t.equal(worker.stderr, '');
});

t.test('copy: a memmove between Uint8Arrays, ranges checked', async (t) => {
  const src = Uint8Array.from({ length: 300 }, (_, i) => i & 0xff);
  const dst = new Uint8Array(300);
  native.copy(src, 10, 200, dst, 50);
  t.same(dst.subarray(50, 250), src.subarray(10, 210), 'the bytes');
  t.equal(dst[49], 0, 'nothing before');
  t.equal(dst[250], 0, 'nothing after');
  const view = src.subarray(100);
  native.copy(view, 0, 10, dst, 0);
  t.same(dst.subarray(0, 10), src.subarray(100, 110), 'a view is copied from its own offset');
  const same = Uint8Array.from({ length: 100 }, (_, i) => i);
  native.copy(same, 0, 90, same, 10);
  t.same(
    same.subarray(10, 100),
    Uint8Array.from({ length: 90 }, (_, i) => i),
    'overlapping ranges (memmove)',
  );
  t.throws(() => native.copy(src, 250, 100, dst, 0), RangeError, 'past the source');
  t.throws(() => native.copy(src, 0, 100, dst, 250), RangeError, 'past the destination');
  t.throws(() => native.copy(src, -1, 10, dst, 0), RangeError, 'a negative offset');
  t.throws(() => native.copy([1, 2] as unknown as Uint8Array, 0, 1, dst, 0), TypeError, 'not a Uint8Array');
  t.throws(() => native.copy(src, 0, 1, new Uint16Array(4) as unknown as Uint8Array, 0), TypeError, 'not a Uint8Array destination');
});

t.test('prefetch: a hint that never fails on a range, and a chain asks for its readable bytes', async (t) => {
  const buf = new Uint8Array(10_000);
  for (const [off, len] of [
    [0, 100],
    [9_990, 100], // past the end: clipped
    [20_000, 10], // outside: nothing
    [5, 0],
    [-1, 10],
    [0, 1e9], // at most 4 KiB
  ]) {
    t.doesNotThrow(() => native.prefetch(buf, off!, len!), `offset ${off}, length ${len}`);
  }
  t.same([...buf.subarray(0, 4)], [0, 0, 0, 0], 'nothing written');
  t.throws(() => native.prefetch([1] as unknown as Uint8Array, 0, 1), TypeError, 'not a Uint8Array');
  const chain = new DescriptorChain(4);
  chain.reset(0);
  chain.push(buf, 0, 3000, false);
  chain.push(buf, 5000, 3000, false);
  chain.push(buf, 9000, 1000, true);
  t.doesNotThrow(() => chain.prefetchReadable(4096), 'over the readable segments');
});

t.test('nothing leaked', async (t) => {
  await collect();
  t.equal(native.liveMappings(), mappingsAtStart, 'no live mappings');
  // At most as many as at the start: one the module loader or tap held open then (a file being
  // read, a pipe) may have closed since, which is no leak.
  const fds = fdCount();
  t.ok(fds <= fdsAtStart, `no fds left open (${fds} now, ${fdsAtStart} at the start)`);
});
