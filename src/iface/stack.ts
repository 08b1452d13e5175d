// The guest-facing stack: Ethernet in, Ethernet out. The Stack owns what the layers share (the
// configuration, one preallocated output frame, the link, the clock, counters, the log) and
// dispatches each frame from the guest by EtherType to the IPv4 layer (ARP, IPv4) or the IPv6
// layer. Anything malformed is counted and dropped, never thrown.
//
// Time is injected: the owner calls poll(now) at pollAt() (timers of DAD, ARP probes, router
// advertisements), and linkUp(now) when the guest's driver brings its queues up.
import type { Log } from './log.js';
import { silentLog } from './log.js';
import type { StackConfig } from './config.js';
import { Counters } from './counters.js';
import { MemoryBudget } from './memory-budget.js';
import type { LayerContext, Router } from './layer.js';
import { Ipv4Layer } from './ipv4.js';
import type { UdpV4Handler } from './ipv4.js';
import { Ipv6Layer } from './ipv6.js';
import type { UdpV6Handler } from './ipv6.js';
import type { FrameLink, FrameSink, FramePayload, PartialChecksum, PayloadFill, PayloadSend, RxMeta } from './link.js';
import { ETHERNET_HEADER_LEN, EtherType, EthernetFrame, emitEthernetHeader, formatMac, macIsUnicast } from '../wire/index.js';
import { ViewCache } from '../wire/bytes.js';
import type { EthernetRepr } from '../wire/ethernet.js';

export type { EchoHandler, EchoRequest } from './echo.js';
export type { UdpV4Handler, UdpV4Input } from './ipv4.js';
export type { UdpV6Handler, UdpV6Input } from './ipv6.js';
export type { Router } from './layer.js';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
}

/** The global, read once: Node defines globalThis.performance as a getter, which every use of the
 *  name would call. */
const PERFORMANCE = performance;

export const systemClock: Clock = { now: () => PERFORMANCE.now() };

export interface StackOptions {
  clock?: Clock;
  logger?: Log;
  /** Uniform [0, 1): timer jitter (DAD, ARP probes, MLD reports). Injected for tests. */
  random?: () => number;
  /** ICMP errors per second, and burst (gVisor's defaults: 1000/s, burst 50). */
  icmpRate?: number;
  icmpBurst?: number;
  /** Wall-clock milliseconds since the Unix epoch (IPv4 timestamp options). Default Date.now. */
  wallClock?: () => number;
  /** The memory budget fragments and packets waiting for ARP/NDP are held in (accounts
   *  'reassembly' and 'neighbors'). Default: none (each keeps only its own bound). */
  memory?: MemoryBudget;
}

export class Stack implements FrameSink, LayerContext {
  readonly counters = new Counters();
  /** The guest's MAC: from config, else learnt from its first frame. */
  guestMac: Uint8Array | undefined;
  readonly ipv4: Ipv4Layer;
  /** What lies beyond the guest link (the NAT): set once with route(). */
  readonly router: Router = {};
  readonly ipv6: Ipv6Layer | undefined;
  readonly log: Log;
  readonly random: () => number;
  /** Wall-clock ms since the epoch (see StackOptions.wallClock). */
  readonly wallClock: () => number;
  /** The output frame under construction: layers build a frame here, then transmit(length). */
  readonly out: Uint8Array;
  /** Views of `out` by frame length (transmit makes no view per frame). */
  private readonly outViews = new ViewCache();
  /** The whole buffer segmentation-offload packets are built in, and frames' views of it. */
  private segmentBase: Uint8Array | undefined;
  private readonly segmentViews = new ViewCache();
  /** The Ethernet header of frames sent through sendSegmented (no literal per frame). */
  private readonly ethRepr: EthernetRepr;
  readonly memory: MemoryBudget;
  private readonly clock: Clock;
  private readonly eth = new EthernetFrame();
  private readonly partial: PartialChecksum = { start: 0, offset: 0, segmentSize: 0 };

  constructor(
    readonly config: StackConfig,
    private readonly link: FrameLink,
    opts: StackOptions = {},
  ) {
    this.clock = opts.clock ?? systemClock;
    this.log = opts.logger ?? silentLog;
    this.random = opts.random ?? Math.random;
    this.wallClock = opts.wallClock ?? Date.now;
    this.guestMac = config.guestMac;
    this.memory = opts.memory ?? new MemoryBudget(Number.MAX_SAFE_INTEGER);
    this.out = new Uint8Array(ETHERNET_HEADER_LEN + config.mtu);
    this.ethRepr = { dst: config.mac, src: config.mac, etherType: 0 };
    const rate = opts.icmpRate ?? 1000;
    const burst = opts.icmpBurst ?? 50;
    this.ipv4 = new Ipv4Layer(this, rate, burst);
    this.ipv6 = config.ipv6 ? new Ipv6Layer(this, config.ipv6, rate, burst) : undefined;
  }

  /** Connects what lies beyond the guest link (the NAT's parts; see Router). Parts not given
   *  stay as they were. */
  route(parts: Router): void {
    Object.assign(this.router, parts);
  }

  now(): number {
    return this.clock.now();
  }

  /** Registers the handler for UDP datagrams to `port` on our IPv4 addresses. */
  onUdpV4(port: number, handler: UdpV4Handler): void {
    this.ipv4.onUdp(port, handler);
  }

  /** Registers the handler for UDP datagrams to `port` on our IPv6 addresses. */
  onUdpV6(port: number, handler: UdpV6Handler): void {
    this.ipv6?.onUdp(port, handler);
  }

  /** Whether `addr` is one of our IPv4 addresses on the guest link. */
  isOurIpv4(addr: number): boolean {
    return this.ipv4.isOurs(addr);
  }

  /** The MAC learnt for an IPv4 address on the guest link. */
  lookupMac(addr: number): Uint8Array | undefined {
    return this.ipv4.lookupMac(addr);
  }

  /** The guest's driver brought the link up: claim our addresses (ARP probes, DAD), announce. */
  linkUp(): void {
    const now = this.now();
    this.ipv4.linkUp(now);
    this.ipv6?.linkUp(now);
  }

  /** The earliest time poll() has work, or Infinity. */
  pollAt(): number {
    return Math.min(this.ipv4.pollAt(), this.ipv6?.pollAt() ?? Infinity);
  }

  /** Runs timers that are due. */
  poll(): void {
    const now = this.now();
    this.ipv4.poll(now);
    this.ipv6?.poll(now);
  }

  receive(frame: Uint8Array, meta: RxMeta): void {
    this.rxPayload = meta.payload;
    this.dispatch(frame, meta);
    this.rxPayload = undefined;
  }

  /** The payload of the guest frame being received when it may be kept by reference (see
   *  FramePayload): the TCP NAT keeps it or loads it; the rest loads it. */
  rxPayload: FramePayload | undefined;

  /** Copies the payload of the frame being received into it, if it is not there yet (it then
   *  may no longer be kept by reference: the frame is the device's scratch copy). */
  loadRxPayload(): void {
    const p = this.rxPayload;
    if (p !== undefined && !p.loaded) {
      p.load();
      this.rxPayload = undefined;
    }
  }

  private dispatch(frame: Uint8Array, meta: RxMeta): void {
    const eth = this.eth.at(frame, 0, frame.length);
    if (!eth.check()) return this.drop('eth.short');
    if (!macIsUnicast(frame, eth.srcOffset)) return this.drop('eth.groupSource');
    if (!eth.isMulticast() && !eth.dstIs(this.config.mac)) return this.drop('eth.notOurs');
    if (!this.guestMac) {
      this.guestMac = frame.slice(eth.srcOffset, eth.srcOffset + 6);
      this.log.info({ mac: formatMac(this.guestMac) }, 'guest MAC learnt');
    }
    switch (eth.etherType) {
      case EtherType.ARP:
        return this.ipv4.arp.input(frame, eth);
      case EtherType.IPV4:
        return this.ipv4.ipv4Input(frame, eth, meta);
      case EtherType.IPV6:
        if (this.ipv6) return this.ipv6.ipv6Input(frame, eth, meta);
        return this.drop('ipv6.disabled');
      default:
        return this.drop('eth.unknownType');
    }
  }

  /** Whether the link takes a frame now without queueing it (see FrameLink.hasRoom). */
  linkHasRoom(): boolean {
    return this.link.hasRoom?.() ?? true;
  }

  /** Whether frames to the guest may leave their transport checksum partial (FrameLink). */
  get partialChecksums(): boolean {
    return this.link.partialChecksums === true;
  }

  /** Whether frames may go with their payload filled in place later (FrameLink.sendHeaders). */
  get payloadsInPlace(): boolean {
    return this.link.sendHeaders !== undefined;
  }

  /** FrameLink.sendHeaders for a frame built elsewhere (the TCP NAT's: link header included). Its
   *  transport checksum is partial from `checksumStart`, the field `checksumOffset` further;
   *  `segmentSize` > 0: a GSO frame. */
  sendHeaders(frame: Uint8Array, payloadLength: number, checksumStart: number, checksumOffset: number, segmentSize: number): PayloadSend {
    const p = this.partial;
    p.start = checksumStart;
    p.offset = checksumOffset;
    p.segmentSize = segmentSize;
    const r = this.link.sendHeaders ? this.link.sendHeaders(frame, payloadLength, p) : 'noRoom';
    if (r === 'noRoom') this.counters.add('link.noRoom');
    return r;
  }

  /** FrameLink.completePayloads. */
  completePayloads(fill: PayloadFill): boolean {
    const ok = this.link.completePayloads ? this.link.completePayloads(fill) : true;
    if (!ok) this.counters.add('link.payloadShort');
    return ok;
  }

  /** Whether the guest takes TCP segments larger than the MTU (FrameLink.segmentationOffload). */
  segmentationOffload(family: 4 | 6): boolean {
    return this.link.segmentationOffload?.(family) === true;
  }

  /** How many frames the link would cut a large TCP segment into now (FrameLink.cutBudget). */
  cutBudget(family: 4 | 6): number {
    return this.link.cutBudget?.(family) ?? 0;
  }

  /** Sends out[0, len) to the guest; with `checksumStart` > 0 its transport checksum is partial
   *  (see PartialChecksum: the range starts there, the field is `checksumOffset` further). */
  transmit(len: number, checksumStart = 0, checksumOffset = 0): boolean {
    return this.transmitFrame(this.outViews.of(this.out, 0, len), checksumStart, checksumOffset);
  }

  /**
   * Sends a TCP segment larger than the MTU (segmentation offload) to `mac`: `packet` has the link
   * header's room before it, its transport header `transportOff` in, a partial checksum `partial`
   * into that. Without a MAC (the neighbour is not resolved) or a partial checksum it is dropped
   * and counted: such a segment is never queued or fragmented (TCP sends it again).
   */
  sendSegmented(packet: Uint8Array, mac: Uint8Array | undefined, etherType: number, transportOff: number, partial: number, segmentSize: number): boolean {
    if (!mac || partial === 0 || packet.byteOffset < ETHERNET_HEADER_LEN) {
      this.drop('link.segmentedUnsent');
      return false;
    }
    // The frame: the packet with the link header's room before it, in the packet's buffer.
    if (this.segmentBase?.buffer !== packet.buffer) this.segmentBase = new Uint8Array(packet.buffer);
    const start = packet.byteOffset - ETHERNET_HEADER_LEN;
    const frame = this.segmentViews.of(this.segmentBase, start, start + ETHERNET_HEADER_LEN + packet.length);
    this.ethRepr.dst = mac;
    this.ethRepr.etherType = etherType;
    emitEthernetHeader(frame, 0, this.ethRepr);
    return this.transmitFrame(frame, ETHERNET_HEADER_LEN + transportOff, partial, segmentSize);
  }

  /** As transmit(), for a frame built elsewhere (a segmentation-offload frame larger than `out`);
   *  `segmentSize` > 0: the guest cuts it into TCP segments of that payload. */
  transmitFrame(frame: Uint8Array, checksumStart = 0, checksumOffset = 0, segmentSize = 0): boolean {
    let ok: boolean;
    if (checksumStart > 0) {
      this.partial.start = checksumStart;
      this.partial.offset = checksumOffset;
      this.partial.segmentSize = segmentSize;
      ok = this.link.send(frame, this.partial);
    } else {
      ok = this.link.send(frame);
    }
    if (!ok) this.counters.add('link.dropped');
    return ok;
  }

  /** Whether debug lines are written: a per-packet event's detail is made only then (see note). */
  get debugging(): boolean {
    return this.log.isLevelEnabled?.('debug') ?? true;
  }

  /** Counts a control-plane event (an ICMP, IGMP or MLD message in or out, a state change) and
   *  writes it to the debug log. Per-packet callers pass `detail` only when debugging. */
  note(name: string, detail?: object): void {
    this.counters.add(name);
    if (this.debugging) this.log.debug(detail ? { event: name, ...detail } : { event: name }, 'stack event');
  }

  /** Counts a dropped frame by reason (debug log for the per-packet detail). */
  drop(reason: string): void {
    this.counters.add(reason);
    if (this.debugging) this.log.debug({ reason }, 'frame dropped');
  }
}
