// Guest RAM not shared with the backend: the frontend passes no memory (QEMU without a memory
// backend), an empty table, or a memfd the guest's writes never reach (QEMU's share=off). The
// server says so once per connection, with the QEMU options that fix it; a frontend with shared
// memory never hears of it, even when it kicks a queue with nothing on it.
import t from 'tap';
import { MEMORY_NOT_SHARED_DELAY_MS, sharedMemoryOptions } from '../src/backend.js';
import type { GuestMemoryNotShared } from '../src/backend.js';
import { TestFrontend } from '../src/testing/frontend.js';
import type { HandshakeOptions } from '../src/testing/frontend.js';
import { CaptureLogger, LoopbackDevice, startServer, tick, until } from './helpers.js';

/** A frontend handshaking with `memory`, then posting RX buffers and sending two frames with a
 *  kick each, as a guest driver does once the device starts. */
async function drive(memory: HandshakeOptions['memory']): Promise<{ problems: GuestMemoryNotShared[]; fe: TestFrontend; stop: () => void }> {
  const { server, path, stop } = startServer(new LoopbackDevice());
  const problems: GuestMemoryNotShared[] = [];
  server.on('memoryNotShared', (p) => problems.push(p));
  const fe = TestFrontend.connect(path, { memorySize: 4 << 20 });
  const [rxq, txq] = await fe.handshake({ memory });
  for (let i = 0; i < 4; i++) rxq!.add([{ gpa: fe.memory.alloc(2048), len: 2048, writable: true }]);
  rxq!.kick();
  for (let i = 0; i < 2; i++) {
    txq!.add([{ data: new Uint8Array(60).fill(i + 1) }]);
    txq!.kick();
  }
  return {
    problems,
    fe,
    stop: () => {
      fe.close();
      stop();
    },
  };
}

t.test('a memfd the guest never writes (share=off): one not-shared event, with the size', async (t) => {
  const started = Date.now();
  const { problems, fe, stop } = await drive('private');
  t.teardown(stop);
  await until(() => problems.length > 0, 5000);
  t.ok(Date.now() - started < 5000, 'reported within 5 s of the rings starting');
  t.equal(problems[0]!.kind, 'not-shared');
  t.equal(problems[0]!.memoryBytes, 4 << 20, 'the size of the memory passed');
  t.match(problems[0]!.message, 'guest RAM must be a shared memory backend');
  t.match(problems[0]!.message, '-object memory-backend-memfd,id=mem,size=4M,share=on -numa node,memdev=mem');
  // More kicks, past another verdict's delay: nothing more is said on this connection.
  fe.queues[1]!.add([{ data: new Uint8Array(60) }]);
  fe.queues[1]!.kick();
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5);
  t.equal(problems.length, 1, 'said once');
});

t.test('no memory passed at all (no memory backend): one no-memory event', async (t) => {
  const { problems, stop } = await drive('none');
  t.teardown(stop);
  await until(() => problems.length > 0, 5000);
  t.equal(problems[0]!.kind, 'no-memory');
  t.equal(problems[0]!.memoryBytes, 0);
  t.match(problems[0]!.message, 'size=<as -m>,share=on');
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5);
  t.equal(problems.length, 1, 'said once');
});

t.test('an empty SET_MEM_TABLE is accepted, and is no memory', async (t) => {
  const { problems, fe, stop } = await drive('empty');
  t.teardown(stop);
  await until(() => problems.length > 0, 5000);
  t.equal(problems[0]!.kind, 'no-memory');
  t.ok(fe.isConnected, 'the connection stays (the frontend can still pass memory)');
});

t.test('shared memory: frames flow and nothing is said, even after a kick that brings nothing', async (t) => {
  const { problems, fe, stop } = await drive('shared');
  t.teardown(stop);
  const used = await fe.queues[1]!.waitUsed(2);
  t.equal(used.length, 2, 'both frames went through');
  fe.queues[1]!.kick(); // nothing new on the ring
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5);
  t.same(problems, [], 'no event');
});

t.test('shared memory, RX buffers posted and an empty kick on TX (as the first kick QEMU gives): not taken for private memory', async (t) => {
  const { server, path, stop } = startServer(new LoopbackDevice());
  t.teardown(stop);
  const problems: GuestMemoryNotShared[] = [];
  server.on('memoryNotShared', (p) => problems.push(p));
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [rxq] = await fe.handshake();
  rxq!.add([{ gpa: fe.memory.alloc(2048), len: 2048, writable: true }]);
  rxq!.kick();
  fe.queues[1]!.kick(); // an empty kick on TX, as QEMU's first one
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5);
  t.same(problems, []);
});

t.test('memory passed after the rings started: nothing is said', async (t) => {
  const { server, path, stop } = startServer(new LoopbackDevice());
  t.teardown(stop);
  const problems: GuestMemoryNotShared[] = [];
  server.on('memoryNotShared', (p) => problems.push(p));
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [, txq] = await fe.handshake({ memory: 'none' });
  await fe.setMemTable(); // memory arrives late, within the verdict's delay
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5); // and the driver posts nothing meanwhile
  t.same(problems, [], 'rings with nothing on them are no sign of private memory');
  txq!.add([{ data: new Uint8Array(60) }]);
  txq!.kick();
  t.equal((await txq!.waitUsed(1)).length, 1, 'the frame went through');
  t.same(problems, []);
});

t.test('without a listener the server logs the message as one error line', async (t) => {
  const log = new CaptureLogger();
  const { server, path, stop } = startServer(new LoopbackDevice(), { logger: log });
  t.teardown(stop);
  t.equal(server.listenerCount('memoryNotShared'), 0);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  await fe.handshake({ memory: 'none' });
  await until(() => log.matching(/shared memory backend/).length > 0, 5000);
  await tick(MEMORY_NOT_SHARED_DELAY_MS * 1.5);
  t.same(
    log.matching(/shared memory backend/).map((l) => l.level),
    ['error'],
    'one error line',
  );
});

t.test('sharedMemoryOptions: the size in MiB when known, a placeholder otherwise', async (t) => {
  t.equal(sharedMemoryOptions(512 * 2 ** 20), '-object memory-backend-memfd,id=mem,size=512M,share=on -numa node,memdev=mem');
  t.equal(sharedMemoryOptions(0), '-object memory-backend-memfd,id=mem,size=<as -m>,share=on -numa node,memdev=mem');
  t.equal(sharedMemoryOptions(1000), '-object memory-backend-memfd,id=mem,size=<as -m>,share=on -numa node,memdev=mem');
});
