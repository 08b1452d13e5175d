// Protocol tests: the library's backend against its own test frontend over a real unix socket and
// memfd guest memory.
import t from 'tap';
import { Feature, FLAG_NEED_REPLY, HEADER_SIZE, ProtocolFeature, Request, VERSION, bit, encodeHeader } from '../src/protocol.js';
import { TestFrontend } from '../src/testing/frontend.js';
import { DescriptorChain, VIRTQ_AVAIL_F_NO_INTERRUPT } from '../src/virtqueue.js';
import type { VirtQueue } from '../src/virtqueue.js';
import { existsSync } from 'node:fs';
import { native } from '../src/native.js';
import { VhostUserServer } from '../src/server.js';
import { pollerKicks } from '../src/kicks.js';
import type { KickSource } from '../src/kicks.js';
import { CaptureLogger, LoopbackDevice, liveMappings, openFds, settle, startServer, tempSocket, until } from './helpers.js';

const frame = (n: number, len = 64): Uint8Array => Uint8Array.from({ length: len }, (_, i) => (n * 7 + i) & 0xff);

t.test('feature and protocol negotiation', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const features = await fe.getFeatures();
  for (const f of [Feature.VERSION_1, Feature.PROTOCOL_FEATURES, Feature.RING_EVENT_IDX, Feature.RING_INDIRECT_DESC]) {
    t.ok(features & bit(f), `offers feature bit ${f}`);
  }
  t.notOk(features & bit(Feature.RING_PACKED), 'packed rings are not offered');
  const proto = await fe.getProtocolFeatures();
  t.ok(proto & bit(ProtocolFeature.REPLY_ACK), 'REPLY_ACK offered');
  t.ok(proto & bit(ProtocolFeature.CONFIGURE_MEM_SLOTS), 'CONFIGURE_MEM_SLOTS offered');
  t.ok(proto & bit(ProtocolFeature.STATUS), 'STATUS offered');
  t.notOk(proto & bit(ProtocolFeature.MQ), 'MQ not offered for a single queue pair');
  await fe.setProtocolFeatures(proto);
  t.equal(await fe.getQueueNum(), 2n);
  t.equal(await fe.getMaxMemSlots(), 32n);
  await fe.setStatus(0x0f);
  t.equal(await fe.getStatus(), 0x0fn);
  t.equal(server.connections, 1);
});

t.test('frames flow both ways (QEMU 7.2 sequence, REPLY_ACK, EVENT_IDX)', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake();
  t.same([...dev.running].sort(), [0, 1], 'both queues handed to the device');
  t.ok(server.backend!.ackedProtocolFeatures & bit(ProtocolFeature.REPLY_ACK), 'REPLY_ACK negotiated (every set was acked)');
  const rxBufs: number[] = [];
  for (let i = 0; i < 8; i++) {
    const gpa = fe.memory.alloc(2048);
    rxBufs.push(gpa);
    rxq!.add([{ gpa, len: 2048, writable: true }]);
  }
  rxq!.kick();
  for (let i = 0; i < 4; i++) txq!.add([{ data: frame(i, 100 + i) }]);
  txq!.kick();
  const txUsed = await txq!.waitUsed(4);
  t.equal(txUsed.length, 4, 'all TX chains returned');
  const rxUsed = await rxq!.waitUsed(4);
  t.same(
    rxUsed.map((u) => u.len),
    [100, 101, 102, 103],
    'RX lengths are the frame lengths',
  );
  for (let i = 0; i < 4; i++) {
    const u = rxUsed[i]!;
    t.same(fe.memory.read(rxBufs[u.id]!, u.len), frame(i, 100 + i), `frame ${i} content`);
  }
  // (waitUsed may have found the entries by polling before the call fds were read.)
  await until(() => txq!.calls >= 1 && rxq!.calls >= 1, 2000, 'the calls').catch(() => undefined);
  t.ok(txq!.calls >= 1 && rxq!.calls >= 1, 'guest was signalled');
  t.equal(txq!.availEvent, 4, 'avail_event asks for a kick at the next buffer');
});

t.test('buffers straddling regions and indirect chains', async (t) => {
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path, { regions: 3, memorySize: 3 << 20 });
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake({ queues: [64, 64] });
  // An RX buffer whose guest-physical range crosses from region 0 into... the gap: invalid. Use
  // two descriptors, one ending exactly at region 0's end and one starting region 1.
  const end0 = fe.memory.regionEnd(0);
  const start1 = fe.memory.regions[1]!.guestPhysAddr;
  rxq!.add([
    { gpa: end0 - 30, len: 30, writable: true },
    { gpa: start1, len: 2000, writable: true },
  ]);
  rxq!.kick();
  const data = frame(9, 300);
  txq!.add([{ data: data.subarray(0, 100) }, { data: data.subarray(100) }], { indirect: true });
  txq!.kick();
  const [u] = await rxq!.waitUsed(1);
  t.equal(u!.len, 300);
  const got = new Uint8Array(300);
  got.set(fe.memory.read(end0 - 30, 30), 0);
  got.set(fe.memory.read(start1, 270), 30);
  t.same(got, data, 'scatter across regions and gather through an indirect table');
});

t.test('EVENT_IDX and NO_INTERRUPT suppress calls', async (t) => {
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev);
  t.teardown(stop);

  const fe = TestFrontend.connect(path);
  const [, txq] = await fe.handshake();
  // The first completion always signals (no previous signal to compare with, as in libvhost-user).
  txq!.add([{ data: frame(0) }]);
  txq!.kick();
  await txq!.waitCall();
  t.equal(txq!.calls, 1, 'first completion signalled');
  txq!.used();
  txq!.setUsedEvent(2); // interrupt only once used.idx moves past 2
  txq!.add([{ data: frame(1) }]);
  txq!.kick();
  await until(() => txq!.usedIdx === 2, 2000, 'tx used');
  await settle();
  t.equal(txq!.calls, 1, 'no call while used.idx has not passed used_event');
  txq!.add([{ data: frame(2) }]);
  txq!.kick();
  await txq!.waitCall();
  t.equal(txq!.calls, 2, 'one call when used.idx passes used_event');
  fe.close();
  await until(() => dev.running.size === 0, 2000, 'disconnect');

  const fe2 = TestFrontend.connect(path);
  t.teardown(() => fe2.close());
  const [, tx2] = await fe2.handshake({ features: (f) => f & ~bit(Feature.RING_EVENT_IDX) });
  tx2!.setAvailFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
  tx2!.add([{ data: frame(1) }]);
  tx2!.kick();
  await until(() => tx2!.usedIdx === 1, 2000, 'tx used');
  await settle();
  t.equal(tx2!.calls, 0, 'NO_INTERRUPT respected');
  tx2!.setAvailFlags(0);
  tx2!.add([{ data: frame(2) }]);
  tx2!.kick();
  await tx2!.waitCall();
  t.equal(tx2!.calls, 1, 'signalled once NO_INTERRUPT is cleared');
});

t.test('publish() shows completions without a call; the next flush() decides on one for everything published', async (t) => {
  /** Completes each TX batch with publish(), notes what the ring shows, then flush(). */
  class Publishing extends LoopbackDevice {
    readonly seen: { used: number; calls: number }[] = [];
    private readonly chain = new DescriptorChain(8);
    shown: () => number = () => -1;
    override queueKicked(q: VirtQueue): void {
      if (q.index % 2 === 0) return;
      do {
        let n = 0;
        for (; q.pop(this.chain); n++) q.pushUsed(this.chain.head, 0);
        q.publish();
        if (n > 0) this.seen.push({ used: this.shown(), calls: q.stats.calls });
        q.flush();
      } while (q.enableNotification());
    }
  }
  const dev = new Publishing();
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [, txq] = await fe.handshake();
  dev.shown = () => txq!.usedIdx;
  txq!.add([{ data: frame(0) }]);
  txq!.add([{ data: frame(1) }]);
  txq!.kick();
  await txq!.waitCall();
  t.same(dev.seen[0], { used: 2, calls: 0 }, 'published: the driver sees both, and no call yet');
  t.equal(txq!.calls, 1, 'then one call for them');
  txq!.used();
  txq!.setUsedEvent(2); // a call once used.idx moves past 2
  txq!.add([{ data: frame(2) }]);
  txq!.kick();
  await txq!.waitCall();
  t.same(dev.seen.at(-1), { used: 3, calls: 1 }, 'the third, published without a call');
  t.equal(txq!.calls, 2, 'flush() calls for an entry publish() had shown (used_event 2 passed)');
});

t.test('one call per batch', async (t) => {
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [, txq] = await fe.handshake({ features: (f) => f & ~bit(Feature.RING_EVENT_IDX) });
  for (let i = 0; i < 32; i++) txq!.add([{ data: frame(i) }]);
  txq!.kick();
  await txq!.waitUsed(32);
  await settle();
  t.equal(txq!.calls, 1, '32 chains completed with a single call');
});

t.test('GET_VRING_BASE stops the ring and returns last_avail_idx; SET_VRING_BASE resumes', async (t) => {
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [, txq] = await fe.handshake();
  for (let i = 0; i < 5; i++) txq!.add([{ data: frame(i) }]);
  txq!.kick();
  await txq!.waitUsed(5);
  t.equal(await fe.getVringBase(1), 5);
  t.notOk(dev.running.has(1), 'device told the queue stopped');
  // The guest keeps posting; a stopped ring processes nothing.
  txq!.add([{ data: frame(6) }]);
  txq!.kick();
  await settle();
  t.equal(txq!.usedIdx, 5, 'stopped ring untouched');
  await fe.setVringBase(1, 5);
  await fe.setVringFd(Request.SET_VRING_KICK, 1, txq!.kickFd);
  await txq!.waitUsed(1);
  t.ok(dev.running.has(1), 'restarted by SET_VRING_KICK');
});

t.test('ADD_MEM_REG / REM_MEM_REG (CONFIGURE_MEM_SLOTS)', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path, { regions: 2, memorySize: 2 << 20 });
  t.teardown(() => fe.close());
  await fe.getFeatures();
  await fe.setProtocolFeatures(await fe.getProtocolFeatures());
  const before = liveMappings();
  for (const r of fe.memory.regions) await fe.addMemReg(r);
  t.equal(server.backend!.memory.regionCount, 2);
  t.equal(liveMappings(), before + 2);
  await fe.remMemReg(fe.memory.regions[1]!);
  t.equal(server.backend!.memory.regionCount, 1);
  t.equal(liveMappings(), before + 1, 'removed region unmapped');
  // Overlapping region is refused and the connection closed.
  await fe.request(
    Request.ADD_MEM_REG,
    (() => {
      const p = new Uint8Array(40);
      const v = new DataView(p.buffer);
      v.setBigUint64(8, BigInt(fe.memory.regions[0]!.guestPhysAddr), true);
      v.setBigUint64(16, 4096n, true);
      v.setBigUint64(24, 0x1000n, true);
      return p;
    })(),
    [fe.memory.fd],
    { needReply: true },
  );
  await fe.closed;
  t.pass('overlapping region closes the connection');
});

t.test('reconnect leaves no fd or mapping behind', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fds0 = openFds();
  const maps0 = liveMappings();
  for (let round = 0; round < 5; round++) {
    const fe = TestFrontend.connect(path, { regions: 2, memorySize: 2 << 20 });
    const [rxq, txq] = await fe.handshake();
    rxq!.add([{ len: 2048, writable: true }]);
    txq!.add([{ data: frame(round) }]);
    txq!.kick();
    await rxq!.waitUsed(1);
    fe.close();
    await until(() => !server.connected, 2000, 'disconnect');
  }
  t.equal(server.connections, 5, 'five connections served by one server');
  t.equal(openFds(), fds0, 'no fd left over');
  t.equal(liveMappings(), maps0, 'no mapping left over');
  t.same(dev.events.filter((e) => e === 'connected' || e === 'disconnected').length, 10);
});

t.test('a device that throws while its queues stop still leaves no fd or mapping behind', async (t) => {
  class ThrowingDevice extends LoopbackDevice {
    override queueStopped(q: Parameters<LoopbackDevice['queueStopped']>[0]): void {
      super.queueStopped(q);
      throw new Error('device bug while stopping');
    }
  }
  const dev = new ThrowingDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fds0 = openFds();
  const maps0 = liveMappings();
  for (let round = 0; round < 3; round++) {
    const fe = TestFrontend.connect(path, { regions: 2, memorySize: 2 << 20 });
    await fe.handshake();
    fe.close();
    await until(() => !server.connected, 2000, 'disconnect');
  }
  t.equal(openFds(), fds0, 'kick, call and err fds closed for every queue');
  t.equal(liveMappings(), maps0, 'guest memory unmapped (and its fault watch gone)');
  t.ok(server.stats.errors >= 3, `the exceptions were counted (${server.stats.errors})`);
});

t.test('invalid messages close the connection; the server keeps listening', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fds0 = openFds();
  const bad: { name: string; send: (fe: TestFrontend) => void }[] = [
    { name: 'unknown request', send: (fe) => fe.sendRaw(msg(99, 0)) },
    { name: 'bad payload size', send: (fe) => fe.sendRaw(msg(Request.SET_FEATURES, 4)) },
    { name: 'bad version', send: (fe) => fe.sendRaw(msg(Request.GET_FEATURES, 0, 0x2)) },
    { name: 'huge size', send: (fe) => fe.sendRaw(msg(Request.SET_MEM_TABLE, 1 << 20, VERSION, 0)) },
    { name: 'unexpected fd', send: (fe) => fe.sendRaw(msg(Request.GET_FEATURES, 0), [fe.memory.fd]) },
    { name: 'queue out of range', send: (fe) => fe.sendRaw(msg(Request.SET_VRING_NUM, 8, VERSION, 8, [7, 256])) },
    { name: 'queue size not a power of 2', send: (fe) => fe.sendRaw(msg(Request.SET_VRING_NUM, 8, VERSION, 8, [0, 100])) },
    { name: 'features never offered', send: (fe) => fe.sendRaw(msg(Request.SET_FEATURES, 8, VERSION, 8, [0, 0x8000_0000])) },
    { name: 'mem table region count disagrees with fds', send: (fe) => fe.sendRaw(msg(Request.SET_MEM_TABLE, 40, VERSION, 40, [2, 0]), [fe.memory.fd]) },
  ];
  for (const b of bad) {
    const fe = TestFrontend.connect(path);
    b.send(fe);
    await fe.closed;
    t.pass(`${b.name}: connection closed`);
    fe.close();
    await until(() => !server.connected, 2000, 'detach');
  }
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  t.ok(await fe.getFeatures(), 'a good frontend is served afterwards');
  fe.close();
  await until(() => !server.connected, 2000, 'detach');
  t.equal(openFds(), fds0, 'no fd leaked by refused messages');
});

t.test('a second frontend is refused while one is attached', async (t) => {
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  await fe.getFeatures();
  const fe2 = TestFrontend.connect(path);
  await fe2.closed;
  fe2.close();
  t.ok(await fe.getQueueNum(), 'the first frontend is unaffected');
});

t.test('multiqueue: four queue pairs', async (t) => {
  const dev = new LoopbackDevice(8);
  const { path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path, { memorySize: 8 << 20 });
  t.teardown(() => fe.close());
  t.ok((await fe.getFeatures()) & bit(Feature.PROTOCOL_FEATURES));
  t.ok((await fe.getProtocolFeatures()) & bit(ProtocolFeature.MQ), 'MQ offered');
  const qs = await fe.handshake({ queues: Array(8).fill(64) as number[] });
  t.equal(await fe.getQueueNum(), 8n);
  for (let pair = 0; pair < 4; pair++) {
    const rx = qs[2 * pair]!;
    const tx = qs[2 * pair + 1]!;
    const gpa = fe.memory.alloc(512);
    rx.add([{ gpa, len: 512, writable: true }]);
    tx.add([{ data: frame(pair, 50 + pair) }]);
    tx.kick();
    const [u] = await rx.waitUsed(1);
    t.same(fe.memory.read(gpa, u!.len), frame(pair, 50 + pair), `pair ${pair} loops back`);
  }
});

t.test('SET_MEM_TABLE again remaps and the rings keep working', async (t) => {
  const dev = new LoopbackDevice();
  const { server, path, stop } = startServer(dev);
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake();
  const maps = liveMappings();
  const gen = server.backend!.memory.generation;
  await fe.setMemTable();
  t.ok(server.backend!.memory.generation > gen, 'memory remapped');
  t.equal(liveMappings(), maps, 'old mapping released');
  t.same([...dev.running].sort(), [0, 1], 'queues running again');
  rxq!.add([{ len: 256, writable: true }]);
  txq!.add([{ data: frame(1) }]);
  txq!.kick();
  t.equal((await rxq!.waitUsed(1))[0]!.len, 64);
});

/** A raw message: header + `size` payload bytes (u32 words from `words`). */
function msg(request: number, size: number, flags = VERSION, bytes = size, words: number[] = []): Uint8Array {
  const buf = new Uint8Array(HEADER_SIZE + bytes);
  encodeHeader(buf, request, flags | (request === (Request.GET_FEATURES as number) ? 0 : FLAG_NEED_REPLY), size);
  const v = new DataView(buf.buffer);
  words.forEach((w, i) => v.setUint32(HEADER_SIZE + 4 * i, w, true));
  return buf;
}

t.test('a socket given already listening (socket activation): served, its path told, its file left at close', async (t) => {
  const { path, cleanup } = tempSocket();
  t.teardown(cleanup);
  const fd = native.unixListen(path, 4); // as systemd would make it
  const server = new VhostUserServer(new LoopbackDevice());
  t.equal(server.listenOn(fd), path, 'the path it is bound to');
  const fe = TestFrontend.connect(path);
  await fe.handshake();
  t.equal(server.connections, 1, 'a frontend connects and negotiates');
  fe.close();
  server.close();
  t.ok(existsSync(path), 'the socket file stays: whoever made it removes it');
  // What is not a listening unix stream socket is refused.
  const efd = native.eventfd(0);
  t.throws(() => new VhostUserServer(new LoopbackDevice()).listenOn(efd), { code: 'ENOTSOCK' }, 'an eventfd');
  native.close(efd);
  const c = native.unixListen(`${path}.2`, 1);
  const conn = native.unixConnect(`${path}.2`);
  t.throws(() => new VhostUserServer(new LoopbackDevice()).listenOn(conn), { code: 'EINVAL' }, 'a connected socket');
  native.close(conn);
  native.close(c);
});

t.test("an application's kick source hears the kicks; each watch ends before its fd is closed", async (t) => {
  // A source that hears kicks through the default poller and records what the backend asks of it.
  const watched: number[] = [];
  const closedOpen: boolean[] = [];
  let kicks = 0;
  const source: KickSource = {
    watch(fd, kicked, lost) {
      watched.push(fd);
      const inner = pollerKicks.watch(
        fd,
        () => {
          kicks++;
          kicked();
        },
        lost,
      );
      return {
        close() {
          closedOpen.push(native.fdKind(fd) === 'eventfd');
          inner.close();
        },
      };
    },
  };
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev, { kicks: source });
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake();
  t.equal(watched.length, 2, 'both kick fds watched by the source');
  rxq!.add([{ len: 2048, writable: true }]);
  rxq!.kick();
  txq!.add([{ data: frame(1) }]);
  txq!.kick();
  t.equal((await rxq!.waitUsed(1)).length, 1, 'a frame looped back: both queues heard their kicks');
  t.ok(kicks >= 2, `the kicks came through the source (${kicks})`);
  t.equal(await fe.getVringBase(1), 1);
  t.same(closedOpen, [true], 'GET_VRING_BASE ended the watch while its fd was still open');
});

t.test('a kick source that cannot watch a fd: the queue gets a poller of its own, and the log says so', async (t) => {
  const logger = new CaptureLogger();
  const source: KickSource = {
    watch() {
      throw new Error('no room');
    },
  };
  const dev = new LoopbackDevice();
  const { path, stop } = startServer(dev, { kicks: source, logger });
  t.teardown(stop);
  const fe = TestFrontend.connect(path);
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake();
  rxq!.add([{ len: 2048, writable: true }]);
  rxq!.kick();
  txq!.add([{ data: frame(2) }]);
  txq!.kick();
  t.equal((await rxq!.waitUsed(1)).length, 1, 'frames flow on kicks heard by the fallback poller');
  t.ok(
    logger.lines.some((l) => l.level === 'warn' && /kick source cannot watch/.test(l.msg)),
    'one warning line',
  );
});
