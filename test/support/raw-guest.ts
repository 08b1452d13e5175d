// A guest made of frames: the library's test frontend drives a vunet's queues directly, sending
// the frames it is given and handing back those vunet sends, with fixed, recycled buffers so it can
// run for millions of frames. It answers ARP for its address (so vunet can reach it) and nothing
// else: what a hostile or broken guest does is up to its user. For attack measurements and tests.
import { TestFrontend } from 'vhost-user-ts/testing';
import type { DriverQueue } from 'vhost-user-ts/testing';
import { NET_HDR_LEN } from '../../src/virtio/net-device.js';
import { ArpOp, ArpPacket, EtherType, emitArp, emitEthernetHeader } from '../../src/wire/index.js';
import { GUEST_IP, GUEST_MAC } from './packets.js';

export interface RawGuestOptions {
  /** Guest memory (default 32 MiB). */
  memoryMiB?: number;
  /** Queue size (default 256). */
  queueSize?: number;
  /** Size of each receive buffer (default 4096). */
  rxBufferSize?: number;
}

export class RawGuest {
  /** Frames vunet sent (ARP requests for the guest's address are answered before this sees them). */
  onFrame: (frame: Uint8Array) => void = () => undefined;
  received = 0;
  sent = 0;
  private readonly rxBufs = new Map<number, number>();
  private readonly txFree: number[] = [];
  private readonly txBusy = new Map<number, number>();
  private readonly queued: Uint8Array[] = [];
  private readonly arp = new ArpPacket();
  private readonly txSlot: number;

  private constructor(
    readonly fe: TestFrontend,
    private readonly rxq: DriverQueue,
    private readonly txq: DriverQueue,
    private readonly rxSize: number,
    size: number,
  ) {
    this.txSlot = NET_HDR_LEN + 1600;
    for (let i = 0; i < size; i++) this.txFree.push(fe.memory.alloc(this.txSlot, 16));
    for (let i = 0; i < size; i++) {
      const gpa = fe.memory.alloc(rxSize, 16);
      this.rxBufs.set(rxq.add([{ gpa, len: rxSize, writable: true }]), gpa);
    }
    rxq.kick();
  }

  static async attach(socketPath: string, opts: RawGuestOptions = {}): Promise<RawGuest> {
    const fe = TestFrontend.connect(socketPath, { memorySize: (opts.memoryMiB ?? 32) << 20 });
    const size = opts.queueSize ?? 256;
    const [rxq, txq] = (await fe.handshake({ queues: [size, size] })) as [DriverQueue, DriverQueue];
    return new RawGuest(fe, rxq, txq, opts.rxBufferSize ?? 4096, size);
  }

  /** Queues a frame (at most 1600 bytes) for vunet; it goes as soon as a TX buffer is free. */
  send(frame: Uint8Array): void {
    if (frame.length > this.txSlot - NET_HDR_LEN) throw new RangeError('frame too long for a raw guest buffer');
    this.queued.push(frame);
    this.flushTx();
  }

  /** Frames still waiting for a TX buffer. */
  get backlog(): number {
    return this.queued.length;
  }

  /** Collects what vunet returned and sent, reposts buffers, sends what waits. Call it often. */
  pump(): void {
    for (const u of this.txq.used()) {
      const gpa = this.txBusy.get(u.id);
      this.txBusy.delete(u.id);
      if (gpa !== undefined) this.txFree.push(gpa);
    }
    this.flushTx();
    const used = this.rxq.used();
    if (used.length === 0) return;
    for (let i = 0; i < used.length;) {
      const first = used[i]!;
      const gpa = this.rxBufs.get(first.id)!;
      const hdr = this.fe.memory.read(gpa, NET_HDR_LEN);
      const n = Math.max(1, hdr[10]! | (hdr[11]! << 8));
      const parts: Uint8Array[] = [];
      for (let k = 0; k < n && i < used.length; k++, i++) {
        const u = used[i]!;
        const g = this.rxBufs.get(u.id)!;
        parts.push(this.fe.memory.read(g, u.len));
        this.rxBufs.delete(u.id);
        this.rxBufs.set(this.rxq.add([{ gpa: g, len: this.rxSize, writable: true }]), g);
      }
      const total = parts.reduce((s, p) => s + p.length, 0);
      const whole = new Uint8Array(total);
      let at = 0;
      for (const p of parts) {
        whole.set(p, at);
        at += p.length;
      }
      this.received++;
      this.deliver(whole.subarray(NET_HDR_LEN));
    }
    this.rxq.kick();
  }

  close(): void {
    this.fe.close();
  }

  private flushTx(): void {
    let any = false;
    while (this.queued.length > 0 && this.txFree.length > 0) {
      const frame = this.queued.shift()!;
      const gpa = this.txFree.pop()!;
      const data = new Uint8Array(NET_HDR_LEN + frame.length);
      data.set(frame, NET_HDR_LEN);
      this.fe.memory.write(gpa, data);
      this.txBusy.set(this.txq.add([{ gpa, len: data.length }]), gpa);
      this.sent++;
      any = true;
    }
    if (any) this.txq.kick();
  }

  private deliver(frame: Uint8Array): void {
    if (((frame[12]! << 8) | frame[13]!) === EtherType.ARP) {
      const a = this.arp.at(frame, 14, frame.length - 14);
      if (a.check() && a.operation === ArpOp.REQUEST && a.targetIp === GUEST_IP) {
        const r = new Uint8Array(42);
        const sha = frame.slice(a.senderMacOffset, a.senderMacOffset + 6);
        emitEthernetHeader(r, 0, { dst: sha, src: GUEST_MAC, etherType: EtherType.ARP });
        emitArp(r, 14, { operation: ArpOp.REPLY, senderMac: GUEST_MAC, senderIp: GUEST_IP, targetMac: sha, targetIp: a.senderIp });
        this.send(r);
        return;
      }
    }
    this.onFrame(frame);
  }
}
