// A minimal virtio-net device on vhost-user-ts, for the foundation's end-to-end test and the
// interim demo: it records every frame the guest sends and answers ARP requests for one address
// with a fixed MAC, so the guest's neighbour table shows a frame that came from the device.
// (The real stack lives in src/; this stays deliberately tiny.)
import type { VhostUserDevice, VirtQueue } from 'vhost-user-ts';
import { DescriptorChain } from 'vhost-user-ts';

/** virtio_net_hdr_v1 with VERSION_1 (virtio 1.2 §5.1.6): 12 bytes, num_buffers last. */
const NET_HDR = 12;

export interface ArpResponderOptions {
  /** IPv4 address answered, as four bytes. */
  ip: [number, number, number, number];
  mac: Uint8Array;
}

export class ArpResponder implements VhostUserDevice {
  readonly features = 0n;
  readonly queueCount = 2;
  /** Frames received from the guest (without the virtio-net header). */
  readonly received: Uint8Array[] = [];
  arpRequests = 0;
  arpReplies = 0;
  private rx: VirtQueue | undefined;
  private tx: VirtQueue | undefined;
  private readonly txChain = new DescriptorChain(1024);
  private readonly rxChain = new DescriptorChain(1024);
  private readonly frame = new Uint8Array(65536 + NET_HDR);
  private pendingReplies: Uint8Array[] = [];

  constructor(private readonly opts: ArpResponderOptions) {}

  queueStarted(q: VirtQueue): void {
    if (q.index === 0) this.rx = q;
    else this.tx = q;
  }

  queueStopped(q: VirtQueue): void {
    if (q === this.rx) this.rx = undefined;
    if (q === this.tx) this.tx = undefined;
  }

  disconnected(): void {
    this.pendingReplies = [];
  }

  queueKicked(q: VirtQueue): void {
    if (q === this.rx) return this.deliver();
    do {
      while (q.pop(this.txChain)) {
        const len = this.txChain.read(0, this.frame, 0, Math.min(this.txChain.readableLength, this.frame.length));
        if (len > NET_HDR) this.onFrame(this.frame.subarray(NET_HDR, len));
        q.pushUsed(this.txChain.head, 0);
      }
      q.flush();
    } while (q.enableNotification());
    this.deliver();
  }

  private onFrame(f: Uint8Array): void {
    this.received.push(f.slice());
    // Ethernet + ARP request for our address (RFC 826): htype 1, ptype 0x0800, op 1.
    if (f.length < 42 || f[12] !== 0x08 || f[13] !== 0x06 || f[21] !== 1) return;
    const tpa = f.subarray(38, 42);
    if (!this.opts.ip.every((b, i) => tpa[i] === b)) return;
    this.arpRequests++;
    const r = new Uint8Array(NET_HDR + 42);
    r[NET_HDR - 2] = 1; // num_buffers
    const e = r.subarray(NET_HDR);
    e.set(f.subarray(6, 12), 0); // to the asker
    e.set(this.opts.mac, 6);
    e.set([0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 2], 12);
    e.set(this.opts.mac, 22); // sender: us
    e.set(this.opts.ip, 28);
    e.set(f.subarray(22, 32), 32); // target: the asker's MAC and IP
    this.pendingReplies.push(r);
  }

  /** Writes pending replies into RX buffers; what does not fit waits for the next RX kick. */
  private deliver(): void {
    const rx = this.rx;
    if (!rx) return;
    while (this.pendingReplies.length > 0 && rx.pop(this.rxChain)) {
      const r = this.pendingReplies.shift()!;
      const n = this.rxChain.write(0, r, 0, r.length);
      rx.pushUsed(this.rxChain.head, n);
      if (n === r.length) this.arpReplies++;
    }
    rx.flush();
    if (this.pendingReplies.length > 0) rx.enableNotification();
  }
}
