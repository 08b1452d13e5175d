// `npm run bench-path [-- --layout linux|one|down-gso|down-cut --without-io --rounds N --baseline DIR]`:
// what vunet's whole TCP path costs, both ways: wider than bench-tx and bench-rx (the device
// alone) and far steadier than `npm run bench` (a guest's and the scheduler's noise there hides
// any step under ~10 %; here a change to the device, the stack or the NAT shows within ~3-5 %).
//
// A Vunet runtime (device, stack, TCP NAT, as `vunet` runs them) serves the test frontend of
// vhost-user-ts over a unix socket and a memfd, in this process, and the frontend plays a guest
// with one TCP connection to a peer on the host's loopback (python3 in a child process). The
// device's processTx is timed alone, as a poll or kick calls it; what the guest does between
// rounds (reading what vunet sent, posting its buffers again, answering vunet's ARP requests,
// waiting for the window, writing its next frames in place, allocating nothing) is not.
// Guest→host, per guest frame: the guest sends batches of FRAMES MTU-sized segments (with
// timestamps) to a sink; the device joins them, the stack and the NAT take the joined segment,
// the NAT writes it to the host socket (one writev) and answers with an ACK.
// - linux: headers and payload in buffers of their own, through an indirect table, NEEDS_CSUM
//   (a Linux guest with checksum offload and without TSO): the payload stays in guest memory;
// - one: the virtio-net header and the frame in one buffer, complete checksums (dpdk's
//   virtio-user): each is verified as the payload is copied out.
// Host→guest, per MSS (1448 bytes) of payload delivered: see measureDown (down-gso, a Linux
// guest's; down-cut, a DPDK one's).
//
// What makes it steady:
// - Time is the thread's CPU time (the addon's threadCpuNs), not the clock: the loopback
//   peer, woken by our writes, may run on this CPU meanwhile.
// - The warm-up is long. Functions run once per round (the NAT's flush, the connection's output,
//   the ACK) reach V8's optimizing tier only after thousands of rounds: per-frame cost falls
//   ~5x over the first ~8000, at a pace that differs from process to process.
// - The best of seven processes: one process in four or so settles in a slower state (its JIT's
//   choices) for good.
// - With --without-io the calls into the host socket (writev one way, peek and discard the other:
//   the kernel's loopback TCP, about half the path) are left out: what remains is vunet's own
//   code, steady within ~3 % between runs of one checkout (down-cut ~5 %); whole, within ~10 %.
// Printed as bench-tx's: nanoseconds per item, the best block of 100 rounds; with --baseline DIR
// (another checkout, built, with this script, device-bench.ts and an addon with threadCpuNs)
// alternating, and the ratio.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DriverQueue, TestFrontend } from 'vhost-user-ts/testing';
import type { Vunet } from '../src/main/vunet.js';
import { checksumUpdate32 } from '../src/wire/checksum.js';
import { BLOCK, BlockTimer, runDeviceBench } from './device-bench.js';

const LAYOUTS = ['linux', 'one', 'down-gso', 'down-cut'] as const;
type Layout = (typeof LAYOUTS)[number];
type DownLayout = Extract<Layout, `down-${string}`>;
/** Segments per batch (58 kB: within the 64 KiB window vunet opens a new connection with; a 1 ms
 *  poll of a guest sending ~500 Mbit/s finds about as much). */
const FRAMES = 40;
const MSS = 1448;
/** The virtio-net header's length (as net-device.ts's NET_HDR_LEN, which the parent process does
 *  not load). */
const VNET = 12;
const ROOT = resolve(fileURLToPath(new URL('..', import.meta.url)));
/** The sink (guest→host): listens on loopback, prints its port, reads and discards; woken only
 *  once 256 KiB is there (SO_RCVLOWAT), not for every write: the wake-ups of another process are
 *  no part of the path measured, and vary. */
const SINK = [
  'import socket',
  's=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1)',
  'print(s.getsockname()[1], flush=True)',
  'c,_=s.accept(); c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 256<<10)',
  'try:\n  while c.recv(4<<20): pass\nexcept OSError: pass',
].join('\n');
/** The source (host→guest): listens on loopback, prints its port, writes to whoever connects as
 *  fast as the socket takes it. */
const SOURCE = [
  'import socket',
  's=socket.socket(); s.bind(("127.0.0.1",0)); s.listen(1)',
  'print(s.getsockname()[1], flush=True)',
  'c,_=s.accept(); b=bytes(range(256))*4096',
  'try:\n  while True: c.sendall(b)\nexcept OSError: pass',
].join('\n');

/**
 * The thread's CPU clock, and the CPU time spent in the calls into host sockets (the kernel's
 * loopback TCP: writes one way, peeks and discards the other; about half the path's time and most
 * of its variation between processes), summed into `ns` by wrapping the addon's calls (left out
 * with --without-io).
 */
async function hostIoTimer(): Promise<{ threadCpuNs: () => number; ns: number }> {
  const { hostnet } = await import('../src/host/native.js');
  const { threadCpuNs } = hostnet;
  if (typeof threadCpuNs !== 'function') throw new Error("this checkout's addon has no threadCpuNs: bench-path needs one");
  const io = { threadCpuNs, ns: 0 };
  const timed = <A extends unknown[]>(call: (...args: A) => number): ((...args: A) => number) => {
    return (...args: A): number => {
      const t0 = threadCpuNs();
      const n = call(...args);
      io.ns += threadCpuNs() - t0;
      return n;
    };
  };
  const h = hostnet as Pick<typeof hostnet, 'write' | 'writev' | 'peek' | 'peekv' | 'discard'>;
  h.write = timed(hostnet.write.bind(hostnet));
  h.writev = timed(hostnet.writev.bind(hostnet));
  h.peek = timed(hostnet.peek.bind(hostnet));
  h.peekv = timed(hostnet.peekv.bind(hostnet));
  h.discard = timed(hostnet.discard.bind(hostnet));
  return io;
}

/** A guest of a Vunet runtime in this process, with the host peer it talks to. */
interface Guest {
  vunet: Vunet;
  fe: TestFrontend;
  txq: DriverQueue;
  /** The peer's port on the host's loopback. */
  port: number;
  /** Guest memory, and a DataView over it (big-endian reads of headers in place). */
  mem: Uint8Array;
  mv: DataView;
  /** Hands each frame vunet delivered since the last call to the session's onFrame (its first
   *  buffer's offset in `mem` and used length; a mergeable frame's other buffers skipped), posts
   *  the buffers again and notes ARP requests. */
  read: () => void;
  /** Sends a frame (behind a zero virtio-net header) on a kick. */
  send: (frame: Uint8Array) => void;
  /** Waits up to ~2 s for `done` (asked once a turn: it may consume what it looks at), reading
   *  meanwhile; throws naming `what`. */
  until: (done: () => boolean, what: string) => Promise<void>;
  /** Between rounds: lets the loop's own events run every 16th round (timers, the peer) and
   *  answers vunet's ARP requests (its entry for the guest is verified every few seconds:
   *  unanswered, its frames would wait for resolution). */
  between: (round: number) => Promise<void>;
  /** The device's batch handler (private), called as a poll or kick would. */
  processTx: () => void;
}

interface GuestOptions {
  /** The host peer (python3 source). */
  peer: string;
  features?: (offered: bigint) => bigint;
  /** Receive buffers kept posted, and their size. */
  posted: number;
  bufSize: number;
  onFrame(at: number, len: number): void;
  /** What to add to a timeout's message. */
  describe(): string;
}

/** Runs `fn` with a guest (see Guest) on a fresh Vunet and host peer; tears all down after. */
async function withGuest<T>(o: GuestOptions, fn: (g: Guest) => Promise<T>): Promise<T> {
  // Imported here: the parent process (which only runs children) loads none of it.
  const { pino } = await import('pino');
  const { TestFrontend } = await import('vhost-user-ts/testing');
  const { Vunet } = await import('../src/main/vunet.js');
  const { defaultConfig } = await import('../src/iface/config.js');
  const { arpReply } = await import('../test/support/packets.js');
  const peer = spawn('python3', ['-c', o.peer], { stdio: ['ignore', 'pipe', 'inherit'] });
  const dir = mkdtempSync(join(tmpdir(), 'vunet-bench-path-'));
  try {
    const port = await new Promise<number>((resolvePort, reject) => {
      peer.once('error', reject);
      peer.stdout.once('data', (d: Buffer) => resolvePort(Number(d.toString().trim())));
    });
    const sock = join(dir, 'sock');
    const vunet = await Vunet.start({ socketPath: sock, config: defaultConfig(), logger: pino({ level: 'silent' }) });
    const fe = TestFrontend.connect(sock, { memorySize: 32 << 20 });
    try {
      const [rxq, txq] = (await fe.handshake({ queues: [256, 256], ...(o.features ? { features: o.features } : {}) })) as [DriverQueue, DriverQueue];
      const mem = fe.memory.bytes;
      const mv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
      const rxBufs = new Map<number, number>();
      const rxFree: number[] = [];
      const post = (): void => {
        for (let i = rxBufs.size; i < o.posted; i++) {
          const gpa = rxFree.pop() ?? fe.memory.alloc(o.bufSize, 64);
          rxBufs.set(rxq.add([{ gpa, len: o.bufSize, writable: true }]), gpa);
        }
        rxq.kick();
      };
      post();
      /** Buffers of the frame being read still to come (mergeable: num_buffers). */
      let more = 0;
      let arpAsked = 0;
      const read = (): void => {
        for (const u of rxq.used()) {
          const gpa = rxBufs.get(u.id)!;
          rxBufs.delete(u.id);
          rxFree.push(gpa);
          if (more > 0) {
            more--;
            continue;
          }
          const at = fe.memory.offsetOf(gpa);
          more = Math.max(1, mv.getUint16(at + 10, true)) - 1;
          if (mv.getUint16(at + VNET + 12) === 0x0806 && mv.getUint16(at + VNET + 20) === 1) arpAsked++;
          o.onFrame(at, u.len);
        }
        post();
      };
      const send = (frame: Uint8Array): void => {
        const data = new Uint8Array(VNET + frame.length);
        data.set(frame, VNET);
        txq.add([{ data }]);
        txq.kick();
      };
      const until = async (done: () => boolean, what: string): Promise<void> => {
        for (let i = 0; i < 2000; i++) {
          if (done()) return;
          await new Promise((r) => setTimeout(r, 1));
          read();
        }
        throw new Error(`no ${what} (${o.describe()}; ${JSON.stringify(vunet.status().tcp)})`);
      };
      const d = vunet.devices[0]! as unknown as { processTx(q: unknown): void; tx: unknown };
      const between = async (round: number): Promise<void> => {
        if (round % 16 === 15) await new Promise((r) => setImmediate(r));
        if (arpAsked === 0) return;
        arpAsked = 0;
        send(arpReply());
        await until(() => txq.used().length > 0, 'completion of the ARP reply');
      };
      return await fn({ vunet, fe, txq, port, mem, mv, read, send, until, between, processTx: () => d.processTx(d.tx) });
    } finally {
      fe.close();
      await vunet.close();
    }
  } finally {
    peer.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The 32-bit field at tcp + `field` becoming `next` (written there), the TCP checksum at `tcp`
 *  updated for it (checksumUpdate32, RFC 1624). */
function rewrite32(mv: DataView, tcp: number, field: number, next: number): void {
  const old = mv.getUint32(tcp + field);
  mv.setUint32(tcp + field, next);
  mv.setUint16(tcp + 16, checksumUpdate32(mv.getUint16(tcp + 16), old, next));
}

/** One layout, measured in this process: the best block's ns per item. */
async function measure(layout: Layout, rounds: number, withoutIo: boolean): Promise<number> {
  return layout === 'down-gso' || layout === 'down-cut' ? measureDown(layout, rounds, withoutIo) : measureUp(layout, rounds, withoutIo);
}

/** Guest→host (see the top): per guest frame. */
async function measureUp(layout: 'linux' | 'one', rounds: number, withoutIo: boolean): Promise<number> {
  const { TcpOptions } = await import('../src/wire/index.js');
  const { GW_IP, arpRequest, tcpFrame, tcpOptions, parseIpv4Frame } = await import('../test/support/packets.js');
  const io = await hostIoTimer();
  const { threadCpuNs } = io;
  let ours = -1;
  let acked = 0;
  let seq = 0;
  /** The window vunet last offered, and its scale. */
  let window = 0;
  let scale = 0;
  let mem: Uint8Array = new Uint8Array(0);
  const onFrame = (at: number, len: number): void => {
    const f = mem.subarray(at + VNET, at + len);
    if (f[12] !== 0x08 || f[13] !== 0x00 || f[23] !== 6) return;
    const { tcp } = parseIpv4Frame(f);
    if (tcp.syn) {
      ours = tcp.seq;
      const o = new TcpOptions();
      tcp.parseOptions(o);
      scale = Math.max(0, o.windowScale);
    }
    acked = tcp.ack;
    window = tcp.window * 2 ** scale;
  };
  const describe = (): string => `acked ${acked}, sent to ${seq}`;
  return withGuest({ peer: SINK, posted: 128, bufSize: 2048, onFrame, describe }, async (g) => {
    const { txq, port, mv, until } = g;
    mem = g.mem;
    const options = () => tcpOptions({ timestamp: true, tsVal: 1000, tsEcr: 1 });
    const syn = tcpOptions({ mss: 1460, timestamp: true, tsVal: 999, sackPermitted: true, windowScale: 7 });
    const iss = 7000;
    g.send(arpRequest(GW_IP)); // (vunet learns the guest's link address)
    g.send(tcpFrame(41000, port, iss, 0, 0x02, undefined, { options: syn }));
    await until(() => ours >= 0, "SYN-ACK from vunet (is the sink's loopback reachable?)");
    const peer = (ours + 1) >>> 0;
    g.send(tcpFrame(41000, port, iss + 1, peer, 0x10, undefined, { options: options(), window: 2000 }));

    // The batch's chains, made once; each batch writes its segments over the same buffers.
    const payload = Uint8Array.from({ length: MSS }, (_, i) => (i * 7) & 0xff);
    const header = new Uint8Array(VNET);
    if (layout === 'linux') {
      header[0] = 1; // NEEDS_CSUM over the TCP checksum
      header[6] = 34;
      header[8] = 16;
    }
    const slots: number[] = [];
    /** Where each segment's TCP header lies in guest memory (a byte offset in mem). */
    const tcpAt: number[] = [];
    seq = (iss + 1) >>> 0;
    for (let k = 0; k < FRAMES; k++) {
      const f = tcpFrame(41000, port, seq + k * MSS, peer, 0x10, payload, { options: options(), window: 2000 });
      const bytes = new Uint8Array(VNET + f.length);
      bytes.set(header);
      bytes.set(f, VNET);
      const gpa = g.fe.memory.alloc(bytes.length, 64);
      const head =
        layout === 'linux'
          ? txq.add(
              [
                { data: bytes.subarray(0, VNET + 66), gpa },
                { data: bytes.subarray(VNET + 66), gpa: gpa + VNET + 66 },
              ],
              { indirect: true, publish: false },
            )
          : txq.add([{ data: bytes, gpa }], { publish: false });
      slots.push(head);
      tcpAt.push(g.fe.memory.offsetOf(gpa) + VNET + 34);
    }
    /** The next batch: each segment's sequence number FRAMES segments on, written in place (with
     *  complete checksums, the checksum updated for it), so that making a batch allocates nothing
     *  (garbage of this loop's own would be collected in the timed part). */
    const advance = (): void => {
      for (let k = 0; k < FRAMES; k++) {
        const at = tcpAt[k]!;
        const next = (mv.getUint32(at + 4) + FRAMES * MSS) >>> 0;
        if (layout === 'one') rewrite32(mv, at, 4, next);
        else mv.setUint32(at + 4, next);
      }
    };
    let handshakeUsed = 0;
    await until(() => (handshakeUsed += txq.used().length) === 3, 'completions for the handshake (ARP, SYN, ACK)');
    const timer = new BlockTimer(FRAMES);
    for (let round = 0; round < rounds; round++) {
      if (round > 0) advance();
      // As a guest's TCP: a batch only into the window vunet offers (the host socket's room).
      if (window < FRAMES * MSS) await until(() => window >= FRAMES * MSS, `window for batch ${round}`);
      for (let k = 0; k < FRAMES; k++) txq.pushAvail(slots[k]!);
      io.ns = 0;
      const t0 = threadCpuNs();
      g.processTx();
      timer.add(threadCpuNs() - t0 - (withoutIo ? io.ns : 0));
      // Chains whose payload the host socket could not take yet come back once it has.
      let used = txq.used().length;
      if (used < FRAMES) await until(() => (used += txq.used().length) === FRAMES, `return of all ${FRAMES} chains (${used})`);
      if (used !== FRAMES) throw new Error(`the device returned ${used} of ${FRAMES} chains`);
      seq = (seq + FRAMES * MSS) >>> 0;
      // The next batch only once this one is acknowledged (the host socket took it all).
      g.read();
      if (acked !== seq) await until(() => acked === seq, `ACK for batch ${round}`);
      await g.between(round);
    }
    return timer.best();
  });
}

/**
 * Host→guest: the guest connects to a source on the host's loopback that writes without pause,
 * offers a 256 KiB window, and each round acknowledges everything it got; the timed part is the
 * device's processTx of that ACK, as a kick from a guest receiving in bulk calls it: the stack and
 * the NAT take the ACK, the NAT lets go of what it acknowledged in the host socket and sends the
 * window's worth of new data, peeked from the socket into the guest's receive buffers (one kernel
 * copy), and publishes it. Per MSS (1448 bytes) of payload delivered:
 * - down-gso: a Linux guest's (GUEST_TSO4, GUEST_CSUM, 4 KiB mergeable buffers): 64 KiB frames;
 * - down-cut: a DPDK guest's with checksum offload (no GUEST_TSO, 2 KiB buffers): the NAT's 64 KiB
 *   segments cut into MSS-sized frames.
 */
async function measureDown(layout: DownLayout, rounds: number, withoutIo: boolean): Promise<number> {
  const { NetFeature } = await import('../src/virtio/net-device.js');
  const { GW_IP, arpRequest, tcpFrame, tcpOptions } = await import('../test/support/packets.js');
  const io = await hostIoTimer();
  const { threadCpuNs } = io;
  const gso = layout === 'down-gso';
  const tso = (1n << NetFeature.GUEST_TSO4) | (1n << NetFeature.GUEST_TSO6);
  let ours = -1;
  let rcvNxt = 0;
  let got = 0;
  let mem: Uint8Array = new Uint8Array(0);
  let mv = new DataView(mem.buffer);
  /** A frame vunet delivered: its TCP payload counted when in order (its headers in its first
   *  buffer). */
  const onFrame = (at: number): void => {
    const f = at + VNET;
    if (mv.getUint16(f + 12) !== 0x0800 || mem[f + 23] !== 6) return;
    const tcp = f + 14 + (mem[f + 14]! & 0x0f) * 4;
    const seq = mv.getUint32(tcp + 4);
    if ((mem[tcp + 13]! & 0x02) !== 0) {
      ours = seq;
      rcvNxt = (seq + 1) >>> 0;
      return;
    }
    const len = mv.getUint16(f + 16) - (tcp - f - 14) - (mem[tcp + 12]! >> 4) * 4;
    if (len > 0 && seq === rcvNxt) {
      rcvNxt = (rcvNxt + len) >>> 0;
      got += len;
    }
  };
  const options = {
    peer: SOURCE,
    features: (f: bigint) => (gso ? f : f & ~tso),
    posted: 240,
    bufSize: gso ? 4096 : 2048,
    onFrame,
    describe: () => `received to ${rcvNxt}`,
  };
  return withGuest(options, async (g) => {
    const { txq, port, until } = g;
    mem = g.mem;
    mv = g.mv;
    const syn = tcpOptions({ mss: 1460, windowScale: 2 });
    const iss = 9000;
    g.send(arpRequest(GW_IP));
    g.send(tcpFrame(41001, port, iss, 0, 0x02, undefined, { options: syn, window: 65535 }));
    await until(() => ours >= 0, "SYN-ACK from vunet (is the source's loopback reachable?)");
    let handshakeUsed = 0;
    await until(() => (handshakeUsed += txq.used().length) === 2, 'completions for the ARP request and the SYN');

    // The guest's ACK: one chain, its acknowledgment number (and checksum) rewritten in place each
    // round.
    const ack = tcpFrame(41001, port, iss + 1, rcvNxt, 0x10, undefined, { window: 65535 });
    const ackBytes = new Uint8Array(VNET + ack.length);
    ackBytes.set(ack, VNET);
    const ackGpa = g.fe.memory.alloc(ackBytes.length, 64);
    const ackHead = txq.add([{ data: ackBytes, gpa: ackGpa }], { publish: false });
    const ackTcp = g.fe.memory.offsetOf(ackGpa) + VNET + 34;
    txq.pushAvail(ackHead); // (the handshake's ACK: data follows)
    g.processTx();
    await until(() => txq.used().length > 0, 'completion of the ACK');
    const timer = new BlockTimer(1);
    /** The last round's time, counted once what it delivered is read. */
    let lastNs = -1;
    for (let round = 0; round <= rounds; round++) {
      // What the last round delivered (some of it maybe read while waiting for its ACK's
      // completion), read and the buffers posted again, before the next ACK.
      g.read();
      if (got === 0) await until(() => got > 0, `data in round ${round}`);
      if (lastNs >= 0) timer.add(lastNs, got / MSS);
      got = 0;
      if (round === rounds) break;
      rewrite32(mv, ackTcp, 8, rcvNxt);
      txq.pushAvail(ackHead);
      io.ns = 0;
      const t0 = threadCpuNs();
      g.processTx();
      lastNs = threadCpuNs() - t0 - (withoutIo ? io.ns : 0);
      let used = txq.used().length;
      if (used === 0) await until(() => (used = txq.used().length) > 0, `completion of the ACK in round ${round}`);
      await g.between(round);
    }
    return timer.best();
  });
}

runDeviceBench(
  {
    name: 'bench-path',
    layouts: LAYOUTS,
    flags: ['without-io'],
    rounds: () => 20000,
    processes: 7,
    title: (rounds, f) =>
      `TCP through device, stack, NAT and a loopback socket${f['without-io'] === true ? ' (host socket calls left out)' : ''}, ns per guest frame (linux, one: batches of ${FRAMES}) or per MSS delivered (down-*: a 256 KiB window a round); best block of ${BLOCK} of ${rounds} rounds`,
    measure: (layout, rounds, f) => measure(layout, rounds, f['without-io'] === true),
  },
  ROOT,
).catch((err: unknown) => {
  console.error(`bench-path: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
