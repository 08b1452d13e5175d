// `npm run bench-rx [-- --layout gso|cut|small --rounds N --baseline DIR]`: what the virtio-net
// device's RX path costs per frame to the guest, without the TCP NAT and the host socket in front
// of it (those `npm run bench` measures whole, with the noise of a guest and the kernel).
//
// A VirtioNetDevice serves the test frontend of vhost-user-ts over a unix socket and a memfd, in
// this process. Each round the device is handed TCP segments as the NAT hands them over on its
// in-place path (sendHeaders: headers now, then completePayloads() with a filler that writes
// nothing, where vunet peeks from the host socket), publishes them, and the frontend posts the same
// receive chains again (not timed). Layouts, as guests post their receive buffers:
// - gso: a Linux guest (GUEST_TSO4, GUEST_CSUM, MRG_RXBUF): buffers of 4 KiB, 8 segments of
//   64 KiB a round, each a GSO frame across 16 chains;
// - cut: dpdk's virtio-user (no GUEST_TSO4 nor GUEST_CSUM): buffers of 2 KiB, 4 segments of 64 KiB
//   a round, each cut into 45 frames of one MSS, checksums summed here;
// - small: 64 frames of 66 bytes a round, each copied into a chain of its own (pure ACKs: `send`).
// Printed: nanoseconds per frame (a GSO frame or a cut segment counts once per frame handed
// over, i.e. per sendHeaders or send), the best of blocks of 100 rounds after a warm-up, best of
// three processes (scripts/device-bench.ts). With --baseline DIR (another checkout, built; copy
// this script and device-bench.ts there when it predates them) each layout runs there too,
// alternating, and the ratio is printed.
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BLOCK, BlockTimer, runDeviceBench, withDevice } from './device-bench.js';

const LAYOUTS = ['gso', 'cut', 'small'] as const;
type Layout = (typeof LAYOUTS)[number];
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
const MSS = 1448;
const SEGMENT = 45 * MSS;

/** One layout, measured in this process: the best block's ns per frame handed over. */
async function measure(layout: Layout, rounds: number): Promise<number> {
  // Imported here: the parent process (which only runs children) loads none of it.
  const { NetFeature } = await import('../src/virtio/net-device.js');
  const { TcpOptions } = await import('../src/wire/index.js');
  const { GUEST_IP, GW_IP, tcpFrame } = await import('../test/support/packets.js');
  return withDevice('bench-rx', { payloadsInPlace: true }, 32 << 20, async (dev, fe) => {
    const off = (f: bigint): bigint => 1n << f;
    const q = (
      await fe.handshake({
        queues: [256, 256],
        features: (offered) => (layout === 'cut' ? offered & ~(off(NetFeature.GUEST_TSO4) | off(NetFeature.GUEST_TSO6) | off(NetFeature.GUEST_CSUM)) : offered),
      })
    )[0]!;
    const [chains, chainLen, frames] = layout === 'gso' ? [8 * 16, 4096, 8] : layout === 'cut' ? [4 * 45, 2048, 4] : [64, 2048, 64];
    const heads: number[] = [];
    for (let i = 0; i < chains; i++) heads.push(q.add([{ gpa: fe.memory.alloc(chainLen), len: chainLen, writable: true }]));
    q.kick();
    await new Promise((r) => setTimeout(r, 200)); // (the backend takes the last messages)
    if (!dev.hasRoom()) throw new Error('the device sees no receive buffers');
    const options = new TcpOptions();
    options.timestamp = true;
    options.tsVal = 1;
    options.tsEcr = 2;
    // The headers the TCP NAT builds: its checksum field holds the pseudo-header sum (not needed
    // to be right here: nothing verifies it).
    const payloadLength = layout === 'small' ? 0 : SEGMENT;
    const frame = tcpFrame(5201, 40000, 1000, 77, 0x10, new Uint8Array(payloadLength), { options, src: GW_IP, dst: GUEST_IP });
    const headers = frame.slice(0, 66);
    const partial = { start: 34, offset: 16, segmentSize: MSS };
    const filler = {
      fill(_views: readonly Uint8Array[], _offsets: Float64Array, lengths: Uint32Array, count: number): number {
        let n = 0;
        for (let i = 0; i < count; i++) n += lengths[i]!;
        return n;
      },
    };
    const expectUsed = layout === 'gso' ? frames * Math.ceil((12 + 66 + SEGMENT) / chainLen) : layout === 'cut' ? frames * 45 : frames;
    const timer = new BlockTimer(frames);
    for (let round = 0; round < rounds; round++) {
      if (round > 0) for (const head of heads) q.pushAvail(head);
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < frames; i++) {
        if (layout === 'small') {
          if (!dev.send(headers)) throw new Error('a frame did not go');
        } else {
          if (layout === 'cut' && dev.cutBudget(4) < 45) throw new Error('no room to cut a segment');
          const r = dev.sendHeaders(headers, payloadLength, partial);
          if (r !== 'sent') throw new Error(`sendHeaders: ${r}`);
        }
      }
      if (layout !== 'small' && !dev.completePayloads(filler)) throw new Error('completePayloads fell short');
      dev.flush();
      timer.add(Number(process.hrtime.bigint() - t0));
      const used = q.used().length;
      if (used !== expectUsed) throw new Error(`the device used ${used} chains, not ${expectUsed}`);
    }
    return timer.best();
  });
}

runDeviceBench(
  {
    name: 'bench-rx',
    layouts: LAYOUTS,
    rounds: () => 3000,
    title: (rounds) => `RX device path, ns per frame handed over (best block of ${BLOCK} rounds, ${rounds} rounds)`,
    measure,
  },
  ROOT,
).catch((err: unknown) => {
  console.error(`bench-rx: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
