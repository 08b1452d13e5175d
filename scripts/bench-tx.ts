// `npm run bench-tx [-- --layout one|split|linux|partial --rounds N --cold --baseline DIR]`: what the
// virtio-net device's TX path costs per guest frame, without the stack, the NAT or the host
// sockets behind it (those `npm run bench` measures whole, with the noise of a guest and the
// kernel).
//
// A VirtioNetDevice (payload kept in place, as vunet runs it) serves the test frontend of
// vhost-user-ts over a unix socket and a memfd, in this process; its sink takes each frame and
// reads nothing. A batch is 120 MTU-sized segments of one TCP connection (with timestamps), which
// the device joins as it does a guest's; the frontend re-publishes the same chains each round
// (their descriptors and bytes written once), and the device's processTx is timed alone. Layouts:
// - one: the virtio-net header and the frame in one buffer (dpdk's virtio-user);
// - split: the header in a buffer of its own, the frame in the next;
// - linux: header and frame headers in one buffer, the payload in the next, through an indirect
//   table, NEEDS_CSUM (a Linux guest with checksum offload and without TSO);
// - partial: as `one`, with NEEDS_CSUM.
// With --cold, the guest's memory (frames, descriptors, rings) is evicted from every cache before
// each round (the addon's evictLines, clflush; not timed), so the device reads it from memory, as
// it reads what a guest's CPU just wrote: the misses of the descriptor walk and of each frame's
// first touch show (warm, they do not).
// Printed: nanoseconds per frame, the best of blocks of 100 rounds after a warm-up, best of three
// processes: the blocks the rest of the machine left alone (a shared host has slowed one process
// here 1.5-1.8x for tens of milliseconds to a second at a time, which a mean would count). With
// --baseline DIR (another checkout, built; copy this script and device-bench.ts there when it
// predates them) each layout runs there too, alternating, and the ratio is printed.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BLOCK, BlockTimer, runDeviceBench, withDevice } from './device-bench.js';

const LAYOUTS = ['one', 'split', 'linux', 'partial'] as const;
type Layout = (typeof LAYOUTS)[number];
/** Frames per batch (one kick). */
const FRAMES = 120;
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** One layout, measured in this process: the best block's ns per frame. */
async function measure(layout: Layout, rounds: number, cold: boolean): Promise<number> {
  // Imported here: the parent process (which only runs children) loads none of it.
  const { NET_HDR_LEN } = await import('../src/virtio/net-device.js');
  const { TcpOptions } = await import('../src/wire/index.js');
  const { tcpFrame } = await import('../test/support/packets.js');
  const { hostnet } = await import('../src/host/native.js');
  if (cold && typeof hostnet.evictLines !== 'function') throw new Error("this checkout's addon has no evictLines: --cold needs one that has");
  return withDevice('bench-tx', { payloadsInPlace: true, txSliceMs: 1000, txSliceFrames: 4096, txPollMs: 0 }, undefined, async (dev, fe) => {
    const q = (await fe.handshake())[1]!;
    await new Promise((r) => setTimeout(r, 200)); // (the backend takes the last messages)
    const options = new TcpOptions();
    options.timestamp = true;
    options.tsVal = 1;
    options.tsEcr = 2;
    const payload = Uint8Array.from({ length: 1448 }, (_, i) => (i * 7) & 0xff);
    const heads: number[] = [];
    for (let i = 0; i < FRAMES; i++) {
      const f = tcpFrame(40000, 5201, 1000 + i * 1448, 77, 0x10, payload, { options });
      const h = new Uint8Array(NET_HDR_LEN);
      if (layout === 'linux' || layout === 'partial') {
        h[0] = 1; // NEEDS_CSUM over the TCP checksum
        h[6] = 34;
        h[8] = 16;
      }
      const withHeader = (bytes: Uint8Array): Uint8Array => Uint8Array.from([...h, ...bytes]);
      if (layout === 'one' || layout === 'partial') heads.push(q.add([{ data: withHeader(f) }]));
      else if (layout === 'split') heads.push(q.add([{ data: h }, { data: f }]));
      else heads.push(q.add([{ data: withHeader(f.subarray(0, 66)) }, { data: f.subarray(66) }], { indirect: true }));
    }
    // (Private: the device's batch handler, called as a kick would, timed alone.)
    const d = dev as unknown as { processTx(q: unknown): void; tx: unknown };
    const timer = new BlockTimer(FRAMES);
    for (let round = 0; round < rounds; round++) {
      if (round > 0) for (const head of heads) q.pushAvail(head);
      if (cold) hostnet.evictLines(fe.memory.bytes, 0, fe.memory.bytes.length);
      const t0 = process.hrtime.bigint();
      d.processTx(d.tx);
      timer.add(Number(process.hrtime.bigint() - t0));
      const used = q.used().length;
      if (used !== FRAMES) throw new Error(`the device returned ${used} of ${FRAMES} chains`);
    }
    return timer.best();
  });
}

runDeviceBench(
  {
    name: 'bench-tx',
    layouts: LAYOUTS,
    flags: ['cold'],
    // (Cold rounds cost a sweep of the guest's memory each: fewer by default.)
    rounds: (f) => (f.cold === true ? 1500 : 3000),
    title: (rounds, f) =>
      `TX device path, ns per frame (best block of ${BLOCK} rounds of ${FRAMES} frames, ${rounds} rounds${f.cold === true ? ', guest memory cold' : ''})`,
    measure: (layout, rounds, f) => measure(layout, rounds, f.cold === true),
  },
  ROOT,
).catch((err: unknown) => {
  console.error(`bench-tx: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
