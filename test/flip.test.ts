// The second writer: while vunet (in a child process, see test/support/fuzz/target-process.ts)
// parses the frames queued in the TX ring, a worker thread that maps the same guest memory keeps
// rewriting their header fields — IPv4 total length, IHL, protocol, fragment fields, TTL; IPv6
// payload length, next header, extension headers; UDP length, TCP data offset and flags, ICMP
// types; ARP op; EtherType — as another vCPU of a hostile guest could. vunet copies each frame
// before parsing it, so a flip can at worst make the copy inconsistent with what the guest meant;
// it must never make vunet crash, stall or lose count. 10^6 frames of every protocol vunet parses
// go through; the ring is kept full (4096 chains) so vunet processes large batches.
import t from 'tap';
import { TestFrontend } from 'vhost-user-ts/testing';
import { NET_HDR_LEN } from '../src/virtio/net-device.js';
import { buildCorpus } from './support/fuzz/corpus.js';
import { flipFields, startFlipWorker } from './support/fuzz/flip.js';
import type { FlipField } from './support/fuzz/flip.js';
import { Ring } from './support/fuzz/ring.js';
import { TargetProcess } from './support/fuzz/target-process.js';

const FRAMES = 1_000_000;
const TX_SIZE = 4096;
const RX_SIZE = 1024;
const SLOT = 4096;
const RX_LEN = 2048;
const MEMORY = 64 << 20;
const WRITE = 2;

t.test(`a second writer flips header fields while vunet handles ${FRAMES} frames`, async (t) => {
  const target = await TargetProcess.start();
  t.teardown(() => target.stop());
  t.comment(
    target.isolation === 'netns' ? 'target in its own network namespace (real host sockets, nothing leaves it)' : 'not root: target with fake host sockets',
  );

  const fe = TestFrontend.connect(target.socketPath, { memorySize: MEMORY });
  t.teardown(() => fe.close());
  const [rxq, txq] = await fe.handshake({ queues: [RX_SIZE, TX_SIZE] });
  const mem = fe.memory;
  const rx = new Ring(mem, rxq!);
  const tx = new Ring(mem, txq!);

  // Every protocol of the corpus that fits a slot, round robin over the TX chains.
  const corpus = buildCorpus().filter((e) => NET_HDR_LEN + e.frame.length <= SLOT);
  const fields: FlipField[] = [];
  for (let k = 0; k < TX_SIZE; k++) {
    const frame = corpus[k % corpus.length]!.frame;
    const gpa = mem.alloc(SLOT, 16);
    const off = mem.offsetOf(gpa);
    mem.bytes.fill(0, off, off + NET_HDR_LEN);
    mem.bytes.set(frame, off + NET_HDR_LEN);
    tx.writeDesc(k, gpa, NET_HDR_LEN + frame.length, 0, 0);
    fields.push(...flipFields(frame, off + NET_HDR_LEN));
  }
  for (let i = 0; i < RX_SIZE; i++) rx.writeDesc(i, mem.alloc(RX_LEN, 16), RX_LEN, WRITE, 0);
  t.comment(`${corpus.length} kinds of frames, ${fields.length} fields flipped`);

  const worker = startFlipWorker(mem.fd, MEMORY, fields, 0x5eed);
  let workerStopped = false;
  t.teardown(async () => {
    if (!workerStopped) await worker.stop();
  });

  for (let i = 0; i < RX_SIZE; i++) rx.put(i);
  rx.publish();
  rx.kick();
  const start = performance.now();
  for (let k = 0; k < TX_SIZE; k++) tx.put(k);
  tx.publish();
  tx.kick();

  let done = 0;
  let stalled = false;
  while (done < FRAMES) {
    // Be told after a few hundred completions; poll as well (until() does).
    tx.setUsedEvent(tx.lastUsed + 256);
    if (!(await tx.until(() => tx.pendingUsed > 0, 5000))) {
      stalled = true;
      break;
    }
    done += tx.takeUsed((id) => tx.put(id));
    tx.publish();
    tx.kick();
    if (rx.takeUsed((id) => rx.put(id)) > 0) {
      rx.publish();
      rx.kick();
    }
  }
  const seconds = (performance.now() - start) / 1000;
  const writes = await worker.stop();
  workerStopped = true;
  t.notOk(stalled, 'vunet kept taking frames (no 5 s without a completion)');
  t.ok(target.alive, `the target is alive (${target.exitText()})`);
  const p = await target.probe();
  t.ok(p.device.txFrames >= FRAMES, `vunet handled ${p.device.txFrames} frames (device.txFrames ≥ ${FRAMES})`);
  t.comment(`${Math.round(done / seconds)} frames/s (${done} frames in ${seconds.toFixed(1)} s), ${writes} flips by the second writer`);
  t.comment(
    `target: max batch ${p.loop.maxBatchMs} ms, ${p.loop.batchesOver50ms} batches over 50 ms, RSS ${(p.rss / 2 ** 20).toFixed(0)} MiB, ${p.device.rxFrames} frames to the guest`,
  );
  t.equal(p.failures.count, 0, `no internal error${p.failures.count !== 0 ? ` (last: ${p.failures.last})` : ''}`);
  // How deep the frames got: what the stack counted, by protocol.
  const status = await target.status();
  const counters = (status.stack ?? {}) as Record<string, number>;
  const sum = (prefix: string): number => Object.entries(counters).reduce((a, [k, v]) => (k.startsWith(prefix) ? a + v : a), 0);
  t.comment(
    `stack: ${sum('icmp4.in.')} ICMPv4 and ${sum('icmp6.in.')} ICMPv6 messages in, ${sum('igmp.in.')} IGMP, ${sum('mld.in.')} MLD, ${sum('arp.')} ARP events; ` +
      `${counters['icmp4.out.0.0'] ?? 0} + ${counters['icmp6.out.129.0'] ?? 0} echo replies; TCP ${JSON.stringify(status.tcp && (status.tcp as Record<string, unknown>).states)}`,
  );
});
