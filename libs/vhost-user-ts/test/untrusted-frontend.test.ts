// A hostile or buggy frontend: every fd, size and message it sends is checked, and whatever it does
// costs at most its own connection — never a crash, a spinning core or unbounded memory — and is
// logged, rate-limited. After each misdeed a well-behaved frontend must be served and loop a frame.
import { ftruncateSync, openSync, closeSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { VhostUserDevice } from '../src/device.js';
import { native } from '../src/native.js';
import { Feature, HEADER_SIZE, PayloadSize, Request, VERSION, bit, encodeHeader, writeRegion, writeU32 } from '../src/protocol.js';
import type { ServerOptions } from '../src/server.js';
import { TestFrontend } from '../src/testing/frontend.js';
import type { DriverQueue, FrontendOptions } from '../src/testing/frontend.js';
import type { VirtQueue } from '../src/virtqueue.js';
import { CaptureLogger, LoopbackDevice, liveMappings, openFds, settle, startServer, tick, until } from './helpers.js';

const frame = (n: number, len = 64): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (n * 13 + i) & 0xff);

function serve(t: Test, opts: ServerOptions = {}, device: VhostUserDevice = new LoopbackDevice()) {
  const log = new CaptureLogger();
  const { server, path, stop } = startServer(device, { logger: log, ...opts });
  t.teardown(stop);
  return { server, path, log, device };
}

function connect(t: Test, path: string, opts: FrontendOptions = {}): TestFrontend {
  const fe = TestFrontend.connect(path, opts);
  t.teardown(() => fe.close());
  return fe;
}

/** A frame sent on `txq` comes back in a buffer posted on `rxq`. */
async function loops(t: Test, fe: TestFrontend, rxq: DriverQueue, txq: DriverQueue, what: string): Promise<void> {
  const gpa = fe.memory.alloc(256);
  rxq.add([{ gpa, len: 256, writable: true }]);
  const data = frame(rxq.availIndex);
  txq.add([{ data }]);
  txq.kick();
  const [u] = await rxq.waitUsed(1);
  t.same(fe.memory.read(gpa, u!.len), data, what);
}

/** A new, well-behaved frontend is served and loops a frame. */
async function servesNext(t: Test, path: string, what: string): Promise<void> {
  const fe = connect(t, path);
  const [rxq, txq] = await fe.handshake();
  await loops(t, fe, rxq!, txq!, `${what}: the next frontend is served`);
  fe.close();
}

/** Makes fdKind call pipes eventfds, to simulate a notifier fd that passes the check and fails
 *  later (an eventfd itself never hangs up). */
function passPipesAsEventfds(t: Test): void {
  const real = native.fdKind.bind(native);
  native.fdKind = (fd) => {
    const kind = real(fd);
    return kind === 'fifo' ? 'eventfd' : kind;
  };
  t.teardown(() => {
    native.fdKind = real;
  });
}

/** Counts the callbacks of every draining poller (the kick fds' pollers) made from now on. */
function countKickCallbacks(t: Test): { n: number } {
  const counts = { n: 0 };
  const Real = native.Poller;
  native.Poller = class extends Real {
    constructor(fd: number, callback: (status: number, events: number, value: number) => void, drainEventfd: boolean) {
      super(
        fd,
        (status, events, value) => {
          if (drainEventfd) counts.n++;
          callback(status, events, value);
        },
        drainEventfd,
      );
    }
  };
  t.teardown(() => {
    native.Poller = Real;
  });
  return counts;
}

t.test('a kick fd that hangs up costs no CPU; the connection keeps working', async (t) => {
  passPipesAsEventfds(t);
  const callbacks = countKickCallbacks(t);
  const { server, path, log } = serve(t);
  const fe = connect(t, path);
  const [rxq, txq] = await fe.handshake();
  const [r, w] = native.pipe();
  await fe.setVringFd(Request.SET_VRING_KICK, 0, r);
  native.close(r);
  native.close(w); // no writer left: the backend's read end is at end of file for good
  await until(() => log.matching(/hung up/).length > 0, 2000, 'hang-up logged');
  const before = callbacks.n;
  await tick(500); // a poller left polling an fd at end of file would call back thousands of times meanwhile
  t.equal(callbacks.n - before, 0, 'no kick callback after the hang-up: the fd is no longer polled');
  t.same(
    log.matching(/hung up/).map((l) => l.msg),
    ['kick fd of queue 0 hung up: queue no longer kicked'],
    'logged once',
  );
  t.equal(server.connected, true, 'still connected');
  await loops(t, fe, rxq!, txq!, 'frames still flow');
});

t.test('kick, call and err fds must be eventfds; region fds regular files', async (t) => {
  const { server, path, log } = serve(t);
  const fds0 = openFds();
  const dir = mkdtempSync(join(tmpdir(), 'vhu-fds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = openSync(join(dir, 'not-an-eventfd'), 'w+');
  const [r, w] = native.pipe();
  const sem = native.eventfd(0, true);
  const efd = native.eventfd(0);
  const sock = native.unixListen(join(dir, 'sock'), 1);
  const bad: { name: string; send: (fe: TestFrontend) => Promise<unknown>; reason: RegExp }[] = [
    { name: 'a pipe as kick fd', send: (fe) => fe.setVringFd(Request.SET_VRING_KICK, 0, r), reason: /KICK: the fd is a fifo/ },
    { name: 'a regular file as call fd', send: (fe) => fe.setVringFd(Request.SET_VRING_CALL, 0, file), reason: /CALL: the fd is a regular/ },
    { name: 'a socket as err fd', send: (fe) => fe.setVringFd(Request.SET_VRING_ERR, 1, sock), reason: /ERR: the fd is a socket/ },
    { name: 'a semaphore eventfd as kick fd', send: (fe) => fe.setVringFd(Request.SET_VRING_KICK, 1, sem), reason: /eventfd-semaphore/ },
    { name: 'an eventfd as memory', send: (fe) => setMemTableWith(fe, efd), reason: /region fd is a eventfd/ },
    { name: 'a pipe as memory', send: (fe) => setMemTableWith(fe, w), reason: /region fd is a fifo/ },
  ];
  for (const b of bad) {
    const fe = connect(t, path);
    await fe.getFeatures();
    await fe.setProtocolFeatures(await fe.getProtocolFeatures());
    await b.send(fe).catch(() => undefined);
    await fe.closed;
    fe.close();
    await until(() => !server.connected, 2000, 'detach');
    const drop = log.matching(/frontend dropped/).at(-1);
    t.match(drop?.obj.reason, b.reason, `${b.name}: refused, and the reason logged`);
  }
  closeSync(file);
  for (const fd of [r, w, sem, efd, sock]) native.close(fd);
  t.equal(server.stats.protocolErrors, bad.length, 'counted as protocol errors');
  t.equal(openFds(), fds0, 'no fd kept');
  await servesNext(t, path, 'after refused fds');
});

function setMemTableWith(fe: TestFrontend, fd: number): Promise<unknown> {
  const p = new Uint8Array(PayloadSize.MEM_TABLE_HEADER + PayloadSize.MEM_REGION);
  writeU32(p, 0, 1);
  writeRegion(p, PayloadSize.MEM_TABLE_HEADER, fe.memory.regions[0]!);
  return fe.request(Request.SET_MEM_TABLE, p, [fd], { needReply: true });
}

t.test('a call fd that cannot be written is dropped, logged once', async (t) => {
  passPipesAsEventfds(t);
  const { server, path, log } = serve(t);
  const fe = connect(t, path);
  const [rxq, txq] = await fe.handshake({ features: (f) => f & ~bit(Feature.RING_EVENT_IDX) }); // a call per flush
  const [r, w] = native.pipe();
  await fe.setVringFd(Request.SET_VRING_CALL, 1, r); // the read end: every write fails with EBADF
  native.close(r);
  native.close(w);
  for (let i = 0; i < 3; i++) await loops(t, fe, rxq!, txq!, `frame ${i} flows`);
  await until(() => txq!.usedIdx === 3, 2000, 'tx used');
  t.same(
    log.matching(/call fd/).map((l) => [l.msg, l.obj.queue, l.obj.error]),
    [['call fd cannot be written: the guest is no longer signalled', 1, 'EBADF']],
    'logged once',
  );
  t.equal(server.backend!.queues[1]!.callFd, -1, 'no longer signalled');
  t.equal(server.connected, true);
});

t.test('a frontend that does not read its replies is dropped, with bounded memory', async (t) => {
  const { server, path, log } = serve(t);
  let reason: string | undefined;
  server.once('disconnect', (err) => (reason = err?.message));
  const fd = native.unixConnect(path);
  const msg = new Uint8Array(HEADER_SIZE);
  encodeHeader(msg, Request.GET_FEATURES, VERSION, 0);
  let sent = 0;
  let off = 0;
  while (sent < 65536 && reason === undefined) {
    const n = native.sendMsg(fd, msg, off, HEADER_SIZE - off, []);
    if (n === -native.EAGAIN) {
      await tick(1); // the backend reads when it can: try again shortly
      continue;
    }
    if (n < 0) break; // the backend closed
    off += n;
    if (off === HEADER_SIZE) {
      sent++;
      off = 0;
    }
  }
  await until(() => reason !== undefined, 2000, 'dropped');
  native.close(fd);
  t.match(reason, /^frontend does not read its replies \(64 messages, 1280 bytes queued\)$/);
  t.ok(sent < 5000, `dropped after ${sent} requests, not 65536`);
  t.match(log.matching(/frontend dropped/)[0]?.obj.reason, /does not read its replies/, 'logged');
  await servesNext(t, path, 'after an unread flood');
});

t.test('a connection that says nothing is dropped', async (t) => {
  const { server, path } = serve(t, { firstMessageTimeoutMs: 100 });
  let reason: string | undefined;
  server.once('disconnect', (err) => (reason = err?.message));
  const fd = native.unixConnect(path);
  await until(() => server.connected, 2000, 'accepted');
  await until(() => reason !== undefined, 2000, 'dropped');
  t.equal(reason, 'no request within 100 ms of connecting');
  t.equal(server.stats.silent, 1);
  native.close(fd);
  await servesNext(t, path, 'after a silent connection');
});

t.test('an idle frontend gives way to a new one; a busy or recently active one does not', async (t) => {
  let now = 0;
  const { server, path, log } = serve(t, { clock: () => now, idleTakeoverMs: 2000 });

  const idle = connect(t, path);
  await idle.getFeatures();
  now += 500;
  const early = connect(t, path);
  await early.closed;
  t.ok(idle.isConnected, 'active 500 ms ago: the newcomer is refused');
  t.equal(server.stats.refused, 1);

  now += 2000;
  const next = connect(t, path);
  t.ok(await next.getFeatures(), 'silent for 2.5 s with no running queue: the newcomer is served');
  await idle.closed;
  t.equal(server.stats.idleReplaced, 1);
  t.match(log.matching(/frontend dropped/).at(-1)?.obj.reason, /idle for 2500 ms with no running queue/);

  // Running queues: never replaced, however silent.
  next.close();
  await until(() => !server.connected, 2000, 'detach');
  const busy = connect(t, path);
  const [rxq, txq] = await busy.handshake();
  now += 60_000;
  for (let i = 0; i < 50; i++) {
    const other = connect(t, path);
    await other.closed;
    other.close();
  }
  t.equal(server.stats.refused, 51);
  t.same(
    log.matching(/second frontend connected/).map((l) => l.obj.idleMs),
    [500, 60000],
    '51 refusals, a line for the first and one for the 50 a minute later (rate-limited)',
  );
  await loops(t, busy, rxq!, txq!, 'the busy frontend is unaffected');
});

t.test('a peer that only probes the socket does not knock an idle frontend off', async (t) => {
  let now = 0;
  const { server, path } = serve(t, { clock: () => now, idleTakeoverMs: 2000 });
  const qemu = connect(t, path);
  await qemu.getFeatures();
  now += 10_000; // the guest has not started its driver yet: no running queue, silent
  // What prepareSocketPath() in a second vunet does: connect, see the socket is live, close.
  const probe = native.unixConnect(path);
  await settle(); // accepted
  native.close(probe);
  await settle(); // its end of file seen
  t.ok(qemu.isConnected, 'the attached frontend stays');
  t.equal(server.stats.idleReplaced, 0);
  t.ok(await qemu.getFeatures(), 'and is still served');
  now += 10_000;
  const next = connect(t, path);
  t.ok(await next.getFeatures(), 'a newcomer that sends a request still takes over an idle one');
  await qemu.closed;
  t.equal(server.stats.idleReplaced, 1);
});

t.test('retrying on a busy socket: one line per interval, with the count', async (t) => {
  let now = 0;
  const { path, log } = serve(t, { clock: () => now, logIntervalMs: 1000 });
  const fe = connect(t, path);
  await fe.handshake();
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 20; i++) {
      const other = connect(t, path);
      await other.closed;
      other.close();
    }
    now += 1000;
  }
  const other = connect(t, path);
  await other.closed;
  const lines = log.matching(/second frontend/);
  t.same(
    lines.slice(0, 2).map((l) => l.msg),
    ['a second frontend connected while one is attached: refused', 'a second frontend connected while one is attached: refused (19 more like this)'],
  );
  // The summary timer runs on real time: it may have summed up a window early; nothing is lost.
  t.ok(lines.length <= 5, `${lines.length} lines for 61 refusals`);
  t.equal(
    lines.reduce((n, l) => n + 1 + ((l.obj.suppressed as number | undefined) ?? 0), 0),
    61,
    'every refusal counted',
  );
});

t.test('broken queues and malformed chains are logged', async (t) => {
  const { server, path, log } = serve(t);
  const fe = connect(t, path);
  const [, txq] = await fe.handshake({ queues: [16, 16] });
  txq!.writeDesc(3, 0x10, 64, 0, 0); // outside guest memory
  txq!.pushAvail(3);
  txq!.kick();
  await txq!.waitUsed(1);
  t.same(
    log.matching(/malformed/).map((l) => [l.msg, l.obj.queue, l.obj.reason]),
    [['malformed chain returned to the guest', 1, 'buffer outside guest memory']],
  );
  txq!.setAvailIdx(1000);
  txq!.kick();
  await until(() => server.backend!.queues[1]!.broken !== undefined, 2000, 'broken');
  txq!.kick();
  await settle();
  t.same(
    log.matching(/broken/).map((l) => [l.msg, l.obj.reason]),
    [['queue marked broken: it stops until the frontend sets it up again', 'avail index moved by 999 on a queue of 16']],
    'once per breakage',
  );
});

t.test('guest memory the backend can seal is sealed', async (t) => {
  const { path, log } = serve(t);
  const fe = connect(t, path, { sealing: 'sealable' });
  const [rxq, txq] = await fe.handshake();
  t.throws(() => ftruncateSync(fe.memory.fd, 4096), { code: 'EPERM' }, 'the frontend can no longer shrink it');
  t.equal(log.matching(/cannot be sealed/).length, 0, 'nothing to warn about');
  await loops(t, fe, rxq!, txq!, 'works');
});

t.test('guest memory truncated under the backend: it survives, logs and drops the frontend', async (t) => {
  const { server, path, log } = serve(t);
  const maps0 = liveMappings();
  const fe = connect(t, path, { sealing: 'unsealable' });
  const [, txq] = await fe.handshake();
  t.match(log.matching(/cannot be sealed/)[0]?.obj, { error: 'EPERM' }, 'one warning for the unsealable region');
  // Everything the frontend writes is written before the truncation: its own mapping of the
  // truncated pages is guarded too, but a test frontend should not rely on that.
  txq!.add([{ data: frame(1) }]);
  ftruncateSync(fe.memory.fd, 0);
  txq!.kick(); // an eventfd write: touches no memory
  await fe.closed;
  t.ok(log.matching(/^the frontend truncated guest memory: disconnected$/).length === 1, 'logged');
  t.equal(server.stats.memoryFaults, 1, 'counted');
  fe.close();
  await until(() => !server.connected, 2000, 'detach');
  t.equal(liveMappings(), maps0, 'its mappings released');
  await servesNext(t, path, 'after a truncation');
});

class ThrowingDevice extends LoopbackDevice {
  throwOn: 'connected' | 'started' | 'kicked' | undefined;
  override connected(): void {
    super.connected();
    if (this.throwOn === 'connected') this.fail();
  }
  override queueStarted(q: VirtQueue): void {
    super.queueStarted(q);
    if (this.throwOn === 'started') this.fail();
  }
  override queueKicked(q: VirtQueue): void {
    // Only on a real kick with a frame waiting (the backend also calls this when a queue starts).
    if (this.throwOn === 'kicked' && q.index === 1 && q.availableCount() > 0) this.fail();
    super.queueKicked(q);
  }
  private fail(): never {
    this.throwOn = undefined;
    throw new Error('device bug');
  }
}

t.test('an exception anywhere costs only its connection', async (t) => {
  const device = new ThrowingDevice();
  const { server, path, log } = serve(t, {}, device);
  let errors = 0;
  for (const where of ['connected', 'started', 'kicked'] as const) {
    device.throwOn = where;
    const fe = connect(t, path);
    const setup = fe.handshake().then(async ([, txq]) => {
      txq!.add([{ data: frame(2) }]);
      txq!.kick(); // from the kick poller's callback
    });
    await setup.catch(() => undefined);
    await fe.closed;
    fe.close();
    await until(() => !server.connected, 2000, 'detach');
    errors++;
    t.equal(server.stats.errors, errors, `${where}: counted`);
    t.match(log.matching(/exception while serving/).at(-1)?.obj, { err: { message: 'device bug' } }, `${where}: logged with the error`);
  }
  await servesNext(t, path, 'after device exceptions');
});
