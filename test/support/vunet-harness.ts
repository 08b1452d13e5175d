// The whole vunet runtime (vhost-user server, virtio-net, stack, services) driven by the library's
// test frontend instead of QEMU: frames go in through the TX ring and come out of the RX ring.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { TestFrontend } from 'vhost-user-ts/testing';
import type { DriverQueue } from 'vhost-user-ts/testing';
import type { StackConfig } from '../../src/iface/config.js';
import { defaultConfig } from '../../src/iface/config.js';
import { Vunet } from '../../src/main/vunet.js';
import type { VunetStartOptions } from '../../src/main/vunet.js';
import { NET_HDR_LEN } from '../../src/virtio/net-device.js';

const TX_BUFFERS = 256;
const TX_BUFFER_LEN = 16384;

/** A guest on a vunet's vhost-user socket: the library's test frontend, its RX ring kept full. */
export interface Guest {
  fe: TestFrontend;
  /** Sends a frame as the guest (behind `netHeader`, the 12-byte virtio-net header: zeros when
   *  absent). */
  /** Sends a frame in one buffer behind its virtio-net header; with `split`, its first `split`
   *  bytes there and the rest in a buffer of their own (a Linux guest's headers and payload). */
  send(frame: Uint8Array, netHeader?: Uint8Array, split?: number): void;
  /** Frames vunet delivered to the guest since the last call, waiting up to `ms` for at least `min`. */
  receive(min?: number, ms?: number): Promise<Uint8Array[]>;
}

export interface Harness extends Guest {
  vunet: Vunet;
  close(): Promise<void>;
}

/** Connects a guest to the vhost-user socket at `sock` (8 MiB of memory, two queues of 256, 64 RX
 *  buffers of 2 KiB posted). */
export async function connectGuest(sock: string): Promise<Guest> {
  const fe = TestFrontend.connect(sock, { memorySize: 8 << 20 });
  let queues: DriverQueue[];
  try {
    queues = await fe.handshake({ queues: [256, 256] });
  } catch (err) {
    fe.close();
    throw err;
  }
  const [rxq, txq] = queues as [DriverQueue, DriverQueue];
  const rxBufs = new Map<number, number>();
  /** RX buffers read and free to post again. */
  const rxFree: number[] = [];
  const post = (): void => {
    while (rxBufs.size < 64) {
      const gpa = rxFree.pop() ?? fe.memory.alloc(2048);
      rxBufs.set(rxq.add([{ gpa, len: 2048, writable: true }]), gpa);
    }
    rxq.kick();
  };
  post();
  // As many TX buffers as the queue has descriptors (a frame larger than one is refused).
  const txGpa = fe.memory.alloc(TX_BUFFERS * TX_BUFFER_LEN);
  let txNext = 0;
  const pending: Uint8Array[] = [];
  const collect = (): void => {
    for (const u of rxq.used()) {
      const gpa = rxBufs.get(u.id)!;
      rxBufs.delete(u.id);
      // Frames here fit one 2 KiB buffer (num_buffers 1).
      pending.push(fe.memory.read(gpa + NET_HDR_LEN, u.len - NET_HDR_LEN));
      rxFree.push(gpa);
    }
    post();
  };
  return {
    fe,
    send(frame, netHeader, split) {
      if (NET_HDR_LEN + frame.length > TX_BUFFER_LEN) throw new Error(`a test frame of ${frame.length} bytes: at most ${TX_BUFFER_LEN - NET_HDR_LEN}`);
      const data = new Uint8Array(NET_HDR_LEN + frame.length);
      if (netHeader) data.set(netHeader.subarray(0, NET_HDR_LEN));
      data.set(frame, NET_HDR_LEN);
      // The chains vunet has finished with come back to the free list first; the frame goes in
      // the next of the TX buffers, each reused once the queue has gone round.
      for (const u of txq.used()) void u;
      const slot = txNext++ % TX_BUFFERS;
      const gpa = txGpa + slot * TX_BUFFER_LEN;
      if (split === undefined) txq.add([{ data, gpa }]);
      else
        txq.add([
          { data: data.subarray(0, NET_HDR_LEN + split), gpa },
          { data: data.subarray(NET_HDR_LEN + split), gpa: gpa + NET_HDR_LEN + split },
        ]);
      txq.kick();
    },
    async receive(min = 1, ms = 2000) {
      const deadline = Date.now() + ms;
      for (;;) {
        collect();
        if (pending.length >= min || Date.now() > deadline) return pending.splice(0, pending.length);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

export async function startHarness(config: Partial<StackConfig> = {}, pcapFile?: string, extra: Partial<VunetStartOptions> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-harness-'));
  const sock = join(dir, 'vunet.sock');
  const vunet = await Vunet.start({
    socketPath: sock,
    config: { ...defaultConfig(), ...config },
    logger: pino({ level: 'silent' }),
    ...(pcapFile ? { pcapFile } : {}),
    ...extra,
  });
  const guest = await connectGuest(sock);
  return {
    ...guest,
    vunet,
    async close() {
      guest.fe.close();
      await vunet.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
