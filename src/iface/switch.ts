// One Ethernet segment for several guests: a learning switch between their devices (the ports)
// and the stack (vunet's own MAC). Guests reach each other directly, at layer 2 — ARP and NDP
// between them, no NAT — and the stack sees every guest as a host on its one link.
//
// - A frame from a port: its source MAC is learnt for that port; to the stack's MAC it goes to the
//   stack; to a group address (broadcast, multicast) to the stack and every other port; to a guest
//   MAC learnt on another port, to that port; to an unknown unicast MAC, to every other port
//   (flooded, as a bridge does before it has learnt).
// - A frame from the stack: to the port its destination MAC was learnt on; group or unknown: to
//   every port.
// - A frame a guest left with a partial checksum (NEEDS_CSUM) goes on partial to a port that takes
//   partial checksums, else completed (in a copy). The switch never sees segmentation-offload
//   frames from a guest: with several guests the devices do not offer it (see vunet.ts).
// - The MAC table is bounded (MAX_MACS; a full table forgets its oldest entry) and entries age out
//   after AGEING_MS without a frame (Linux bridges' default); a port that goes away takes its
//   entries with it.
//
// The stack asks its link what the guest takes (partial checksums, segmentation offload): with
// several ports, what every port takes. It is told there is always room: each device bounds its
// own backlog, and a full one drops (TCP retransmits), so a slow guest never stalls the others.
import { completeChecksum } from '../wire/index.js';
import type { FrameLink, FrameSink, PartialChecksum, RxMeta } from './link.js';

export const MAX_MACS = 1024;
export const AGEING_MS = 300_000;

/** One guest's device on the switch. */
export class SwitchPort implements FrameSink {
  readonly stats = { framesIn: 0, framesOut: 0 };
  /** Still attached. */
  attached = true;
  constructor(
    private readonly sw: Switch,
    /** A name for logs and status (the guest's). */
    readonly name: string,
    /** Where frames for this guest go (its device). */
    readonly link: FrameLink,
  ) {}

  /** FrameSink: a frame from this guest. */
  receive(frame: Uint8Array, meta: RxMeta): void {
    this.stats.framesIn++;
    this.sw.fromPort(this, frame, meta);
  }
}

interface MacEntry {
  port: SwitchPort;
  seen: number;
}

export class Switch implements FrameLink {
  readonly stats = { toStack: 0, forwarded: 0, flooded: 0, completed: 0, dropped: 0 };
  private readonly ports: SwitchPort[] = [];
  /** MAC (as a 48-bit number) → where it was last seen. Insertion order is age order: an entry
   *  seen again moves to the end. */
  private readonly macs = new Map<number, MacEntry>();
  private readonly scratch = new Uint8Array(65536 + 14);

  constructor(
    /** The stack's MAC: frames to it go to the stack. */
    private readonly stackMac: Uint8Array,
    /** The stack's input. */
    private readonly stack: FrameSink,
    private readonly now: () => number,
  ) {}

  /** Adds a guest's device; frames from it go to the returned port's receive(). */
  attach(name: string, link: FrameLink): SwitchPort {
    const p = new SwitchPort(this, name, link);
    this.ports.push(p);
    return p;
  }

  /** The guest went away: its port and what was learnt on it. */
  detach(port: SwitchPort): void {
    port.attached = false;
    const i = this.ports.indexOf(port);
    if (i >= 0) this.ports.splice(i, 1);
    this.forget(port);
  }

  /** The guest on a port went away (it may come back on it): what was learnt there is forgotten. */
  forget(port: SwitchPort): void {
    for (const [mac, e] of [...this.macs]) if (e.port === port) this.macs.delete(mac);
  }

  /** The port a MAC was learnt on (status, forwards naming a guest). */
  portOf(mac: Uint8Array): SwitchPort | undefined {
    const e = this.macs.get(macNumber(mac, 0));
    return e && this.now() - e.seen < AGEING_MS ? e.port : undefined;
  }

  /** The MACs learnt on a port. */
  macsOf(port: SwitchPort): number[] {
    const out: number[] = [];
    for (const [mac, e] of this.macs) if (e.port === port) out.push(mac);
    return out;
  }

  // ---- FrameLink, toward the guests ----

  get partialChecksums(): boolean {
    return this.ports.length > 0 && this.ports.every((p) => p.link.partialChecksums === true);
  }

  segmentationOffload(family: 4 | 6): boolean {
    return this.ports.length > 0 && this.ports.every((p) => p.link.segmentationOffload?.(family) === true);
  }

  hasRoom(): boolean {
    return true;
  }

  /** A frame from the stack. */
  send(frame: Uint8Array, partial?: PartialChecksum): boolean {
    const to = this.lookup(frame, 0);
    if (to) return this.out(to, frame, partial);
    let sent = false;
    for (const p of this.ports) sent = this.out(p, frame, partial) || sent;
    if (this.ports.length > 1) this.stats.flooded++;
    return sent;
  }

  // ---- from the guests ----

  fromPort(from: SwitchPort, frame: Uint8Array, meta: RxMeta): void {
    if (frame.length < 14) {
      this.stats.dropped++;
      return;
    }
    // Learn the source (a group source is malformed: the stack drops it, nothing is learnt).
    if ((frame[6]! & 1) === 0) this.learn(frame, from);
    const group = (frame[0]! & 1) !== 0;
    if (!group && bytesAt(frame, 0, this.stackMac)) {
      this.stats.toStack++;
      return this.stack.receive(frame, meta);
    }
    const to = group ? undefined : this.lookup(frame, 0);
    if (to === from) return; // for its own port: nothing to do
    const partial = meta.checksumPartial ? { start: meta.checksumStart ?? 0, offset: meta.checksumOffset ?? 0 } : undefined;
    if (to || this.ports.length > 1) meta.payload?.load();
    if (to) {
      this.stats.forwarded++;
      this.out(to, frame, partial);
      return;
    }
    for (const p of this.ports) if (p !== from) this.out(p, frame, partial);
    if (!group) {
      this.stats.flooded++;
      return;
    }
    this.stats.toStack++;
    this.stack.receive(frame, meta);
  }

  /** A frame out of one port: a partial checksum stays partial where the guest takes it. */
  private out(p: SwitchPort, frame: Uint8Array, partial: PartialChecksum | undefined): boolean {
    p.stats.framesOut++;
    if (!partial || p.link.partialChecksums === true) return p.link.send(frame, partial);
    if ((partial.segmentSize ?? 0) > 0 || frame.length > this.scratch.length) {
      this.stats.dropped++;
      return false;
    }
    // Completed in a copy: the frame may be another guest's memory, or the stack's to reuse.
    const c = this.scratch.subarray(0, frame.length);
    c.set(frame);
    completeChecksum(c, partial.start, c.length, partial.offset, isUdp(c, partial.start));
    this.stats.completed++;
    return p.link.send(c);
  }

  private learn(frame: Uint8Array, port: SwitchPort): void {
    const key = macNumber(frame, 6);
    const e = this.macs.get(key);
    const now = this.now();
    if (e) {
      this.macs.delete(key);
      e.port = port;
      e.seen = now;
      this.macs.set(key, e);
      return;
    }
    if (this.macs.size >= MAX_MACS) this.macs.delete(this.macs.keys().next().value!);
    this.macs.set(key, { port, seen: now });
  }

  /** The port of the unicast destination at frame[off], when learnt and not aged out. */
  private lookup(frame: Uint8Array, off: number): SwitchPort | undefined {
    if ((frame[off]! & 1) !== 0) return undefined;
    const e = this.macs.get(macNumber(frame, off));
    if (!e) return undefined;
    if (this.now() - e.seen >= AGEING_MS) {
      this.macs.delete(macNumber(frame, off));
      return undefined;
    }
    return e.port;
  }
}

/** A MAC as a number (48 bits fit a double exactly): a Map key made without allocating. */
export function macNumber(b: Uint8Array, off: number): number {
  return ((b[off]! << 8) | b[off + 1]!) * 0x1_0000_0000 + (((b[off + 2]! << 24) | (b[off + 3]! << 16) | (b[off + 4]! << 8) | b[off + 5]!) >>> 0);
}

function bytesAt(frame: Uint8Array, off: number, mac: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (frame[off + i] !== mac[i]) return false;
  return true;
}

/** Whether the transport whose checksum starts at `start` is UDP (a zero sum is written 0xffff). */
function isUdp(frame: Uint8Array, start: number): boolean {
  const ethType = (frame[12]! << 8) | frame[13]!;
  if (ethType === 0x0800) return frame[14 + 9] === 17;
  if (ethType === 0x86dd) return frame[14 + 6] === 17 && start === 14 + 40;
  return false;
}
