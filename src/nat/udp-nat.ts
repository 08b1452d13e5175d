// UDP NAT: each guest flow (family, guest address and port, destination and port) gets one
// connected host socket. Datagrams leave with the guest's TTL minus one (classic traceroute's
// probes die at the right hop); answers come back from the destination to the guest's port;
// error-queue entries become ICMP errors quoting the guest's datagram, from the reporting hop.
// Flows expire after `idleMs` without traffic in either direction; the table is bounded (the
// least recently used flow goes). Only unicast reaches here: the stack keeps the guest's broadcast
// and multicast on the link.
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import { EndOfTurn } from '../iface/end-of-turn.js';
import type { Stack } from '../iface/stack.js';
import {
  emitIpv4Header,
  emitIpv6Header,
  emitUdpV4,
  emitUdpV6,
  inanyBytes,
  inanyOf,
  inanyV4,
  ipFamily,
  IpProtocol,
  IPV6_HEADER_LEN,
  UDP_CHECKSUM_OFFSET,
  UDP_HEADER_LEN,
} from '../wire/index.js';
import type { Inany, Ipv4Repr, Ipv6Repr, UdpRepr } from '../wire/index.js';
import { ViewCache, copyBytes, doubleFields } from '../wire/bytes.js';
import { loopback, serviceAddress } from './addresses.js';
import type { HostUdp, UdpSocket } from './host.js';
import { SEND_MANY_MAX } from './host.js';
import type { Fence } from './fence.js';
import { fenced, sendGuestError } from './flows.js';
import { Flow, FlowKind, FlowTable, IdleSocketFlows } from './flow-table.js';
import { refusedSend, translateError } from './icmp-errors.js';
import type { HostError } from './icmp-errors.js';
import type { FlowInfo } from './flow-info.js';

export interface UdpNatOptions {
  maxFlows?: number;
  idleMs?: number;
  /** Datagrams to the gateway addresses reach the host's loopback (slirp's behaviour). */
  mapGateway?: boolean;
  /** Destinations the guest may not reach (answered with admin prohibited). */
  fence?: Fence;
  log?: Log;
  /** The NAT's flow table, shared with the other NAT parts (default: one of its own). */
  flows?: FlowTable;
  /** True while the owner runs a batch at whose end it calls flushSends(): datagrams queued then
   *  need no flush of their own (scheduling one allocates). Absent: each turn schedules one. */
  inBatch?: () => boolean;
}

/** A guest's UDP mapping: its guest side is (guest:port, destination:port), its host socket is
 *  connected to the destination (or to loopback, for the gateway). */
class UdpFlow extends Flow {
  socket: UdpSocket | undefined;
  constructor(family: 4 | 6, guest: Inany, guestPort: number, dst: Inany, dstPort: number, now: number) {
    super(FlowKind.UDP, family, guest, guestPort, dst, dstPort, now);
  }
}

/** The queue of guest datagrams a batch holds back for sendmmsg: at most this many, and bytes. */
const PEND_MAX = 128;
const PEND_BYTES = 256 * 1024;

export class UdpNat extends IdleSocketFlows<UdpFlow> {
  readonly stats = { datagramsOut: 0, datagramsIn: 0, errors: 0, openFailed: 0, tooBig: 0, flows: 0, sendBatches: 0 };
  private readonly maxFlows: number;
  private readonly idleMs: number;
  private readonly mapGateway: boolean;
  private readonly log: Log;
  private readonly buf: Uint8Array;
  private readonly landing4: Uint8Array;
  private readonly landing6: Uint8Array;

  constructor(
    private readonly stack: Stack,
    private readonly host: HostUdp,
    private readonly opts: UdpNatOptions = {},
  ) {
    super(opts.flows ?? new FlowTable(opts.maxFlows ?? 4096), opts.idleMs ?? 120_000);
    this.maxFlows = opts.maxFlows ?? 4096;
    this.idleMs = opts.idleMs ?? 120_000;
    this.mapGateway = opts.mapGateway ?? true;
    this.log = opts.log ?? silentLog;
    this.sendLater = new EndOfTurn(() => this.flushSends(), opts.inBatch);
    // Whole datagrams are built here; the stack fragments what exceeds the guest MTU.
    this.buf = new Uint8Array(IPV6_HEADER_LEN + 0x10000);
    // Where answers are received: straight into the frame, after its IP and UDP headers.
    this.landing4 = this.buf.subarray(20 + UDP_HEADER_LEN);
    this.landing6 = this.buf.subarray(IPV6_HEADER_LEN + UDP_HEADER_LEN);
  }

  /**
   * A UDP datagram from the guest (`packet` is the whole IP packet, its UDP header at `udpOff`,
   * both checked by the stack) to a destination beyond us, or to the gateway.
   */
  output(family: 4 | 6, packet: Uint8Array, udpOff: number, ttl: number): void {
    const udpLen = (packet[udpOff + 4]! << 8) | packet[udpOff + 5]!;
    const guestPort = (packet[udpOff]! << 8) | packet[udpOff + 1]!;
    const dstPort = (packet[udpOff + 2]! << 8) | packet[udpOff + 3]!;
    const flow = this.flowFor(family, packet, guestPort, dstPort);
    if (!flow) return;
    this.idle.touch(flow, this.stack.now());
    this.stats.datagramsOut++;
    const payload = this.views.payload.of(packet, udpOff + UDP_HEADER_LEN, udpOff + udpLen);
    const hops = Math.max(1, ttl - 1);
    if (flow.socket!.sendMany && this.queue(flow, payload, hops)) return;
    this.sendOne(flow, payload, hops);
  }

  /** One datagram now. The host refusing at once (no route, neighbour known to be unreachable,
   *  too big, firewall) is a local error like those of the error queue: the guest gets the
   *  matching ICMP error. */
  private sendOne(flow: UdpFlow, payload: Uint8Array, hops: number): void {
    const rc = flow.socket!.send(payload, hops);
    if (rc < 0) this.error(flow, refusedSend(-rc), payload);
  }

  /**
   * Holds a datagram for the end of the batch (flushSends, which the runtime calls when the batch
   * of guest frames ends; outside a batch a microtask), when each socket's datagrams leave with
   * one sendmmsg. False when it cannot wait (then it is
   * sent at once): the queue is full even after a flush. The payload is copied: its frame's buffer
   * holds the next frame by then.
   */
  private queue(flow: UdpFlow, payload: Uint8Array, hops: number): boolean {
    if (this.pendCount === PEND_MAX || this.pendBytes + payload.length > this.pendBuf.length) this.flushSends();
    if (this.pendBytes + payload.length > this.pendBuf.length) return false;
    const i = this.pendCount++;
    this.pendFlow[i] = flow;
    this.pendOff[i] = this.pendBytes;
    this.pendLen[i] = payload.length;
    this.pendTtl[i] = hops;
    copyBytes(this.pendBuf, this.pendBytes, payload, 0, payload.length);
    this.pendBytes += payload.length;
    this.sendLater.request();
    return true;
  }

  /** Sends what the batch queued: per socket, its datagrams in order, SEND_MANY_MAX per call. */
  flushSends(): void {
    const n = this.pendCount;
    if (n === 0) return;
    const done = this.pendDone;
    done.fill(0, 0, n);
    try {
      for (let i = 0; i < n; i++) {
        if (done[i] === 1) continue;
        const flow = this.pendFlow[i]!;
        // This socket's datagrams, in order, gathered into the batch arrays.
        let k = 0;
        for (let j = i; j < n; j++) {
          if (done[j] === 1 || this.pendFlow[j] !== flow) continue;
          done[j] = 1;
          this.batchOff[k] = this.pendOff[j]!;
          this.batchLen[k] = this.pendLen[j]!;
          this.batchTtl[k] = this.pendTtl[j]!;
          k++;
        }
        if (flow.live) this.sendBatch(flow, k);
      }
    } finally {
      // Whatever happened, the queue is spent: nothing is sent twice.
      this.pendFlow.fill(undefined, 0, n);
      this.pendCount = 0;
      this.pendBytes = 0;
    }
  }

  /** The first `k` entries of the batch arrays to one socket; a datagram the socket refuses is
   *  sent alone to learn why, and answered as sendOne answers. */
  private sendBatch(flow: UdpFlow, k: number): void {
    const sendMany = flow.socket!.sendMany!;
    for (let from = 0; from < k;) {
      const count = Math.min(k - from, SEND_MANY_MAX);
      const sent = sendMany(this.pendBuf, this.batchOff, this.batchLen, this.batchTtl, from, count);
      this.stats.sendBatches++;
      if (sent === count) {
        from += count;
        continue;
      }
      // Entry `from + max(sent, 0)` did not go: alone, to learn why (an error the guest hears of,
      // or EAGAIN: dropped, as a full queue drops on a real link); then the rest.
      const bad = from + Math.max(sent, 0);
      const off = this.batchOff[bad]!;
      this.sendOne(flow, this.pendBuf.subarray(off, off + this.batchLen[bad]!), this.batchTtl[bad]!);
      from = bad + 1;
    }
  }

  /** Whether a datagram to one of our addresses is the NAT's: to the gateway, when mapped. */
  takesGateway(family: 4 | 6, packet: Uint8Array): boolean {
    return this.mapGateway && serviceAddress(this.stack.config, family, packet, ipFamily(family).dstOff) === 'gateway';
  }

  /** The address the host socket talks to: the destination (`family` bytes at packet[dstOff]), or
   *  loopback for the gateway; undefined for the gateway when it is not mapped. */
  private target(family: 4 | 6, packet: Uint8Array, dstOff: number): Uint8Array | undefined {
    if (serviceAddress(this.stack.config, family, packet, dstOff) !== 'gateway') return packet.slice(dstOff, dstOff + ipFamily(family).alen);
    return this.mapGateway ? loopback(family) : undefined;
  }

  private flowFor(family: 4 | 6, packet: Uint8Array, guestPort: number, dstPort: number): UdpFlow | undefined {
    const { srcOff, dstOff } = ipFamily(family);
    const known = this.table.find(FlowKind.UDP, family, packet, srcOff, guestPort, packet, dstOff, dstPort);
    return known ? (known as UdpFlow) : this.openFlow(family, packet, guestPort, dstPort);
  }

  /** A new flow and its host socket. Apart from flowFor(): the socket's callbacks capture the
   *  flow, and a function whose variables closures capture allocates their context on every
   *  call, the lookups of known flows included. */
  private openFlow(family: 4 | 6, packet: Uint8Array, guestPort: number, dstPort: number): UdpFlow | undefined {
    const { srcOff, dstOff } = ipFamily(family);
    const target = this.target(family, packet, dstOff);
    if (!target) return undefined;
    // The gateway's mapping to loopback is ours to make; any other destination passes the fence.
    if (target !== loopback(family) && fenced(this.stack, this.opts.fence, family, packet, srcOff, dstOff, this.buf)) return undefined;
    // Room: this part's least recently used flow goes when the part or the whole table is full.
    this.idle.makeRoom(this.maxFlows, this.table, (f) => this.close(f));
    const flow = new UdpFlow(family, inanyOf(family, packet, srcOff), guestPort, inanyOf(family, packet, dstOff), dstPort, this.stack.now());
    if (!this.table.insert(flow)) {
      this.stats.openFailed++;
      return undefined;
    }
    try {
      flow.socket = this.host.openUdp(family, target, dstPort, {
        datagram: (data) => this.input(flow, data),
        error: (e, data) => this.error(flow, e, data),
        landing: family === 4 ? this.landing4 : this.landing6,
      });
    } catch (err) {
      this.table.remove(flow);
      this.stats.openFailed++;
      this.log.warn({ code: (err as { code?: string }).code }, 'cannot open a host UDP socket for a guest flow');
      return undefined;
    }
    this.stats.flows++;
    this.idle.add(flow);
    return flow;
  }

  // Guest datagrams waiting for the end of the batch (queue, flushSends): payloads in pendBuf.
  private readonly pendBuf = new Uint8Array(PEND_BYTES);
  private readonly pendFlow: (UdpFlow | undefined)[] = new Array<UdpFlow | undefined>(PEND_MAX).fill(undefined);
  private readonly pendOff = new Int32Array(PEND_MAX);
  private readonly pendLen = new Int32Array(PEND_MAX);
  private readonly pendTtl = new Int32Array(PEND_MAX);
  private readonly pendDone = new Uint8Array(PEND_MAX);
  private pendCount = 0;
  private pendBytes = 0;
  private readonly sendLater: EndOfTurn;
  /** One socket's share of the queue, in order, as sendMany takes it. */
  private readonly batchOff = new Int32Array(PEND_MAX);
  private readonly batchLen = new Int32Array(PEND_MAX);
  private readonly batchTtl = new Int32Array(PEND_MAX);
  private readonly views = { payload: new ViewCache(), out: new ViewCache() };
  private readonly udpRepr: UdpRepr = { srcPort: 0, dstPort: 0, payloadLength: 0 };
  private readonly ip4Repr: Ipv4Repr = doubleFields(
    { src: 0, dst: 0, proto: IpProtocol.UDP, ttl: 63, id: 0, flags: 0, fragOffset: 0, payloadLength: 0, tos: 0 },
    'src',
    'dst',
  );
  private readonly ip6Repr: Ipv6Repr = { src: new Uint8Array(16), dst: new Uint8Array(16), nextHeader: IpProtocol.UDP, hopLimit: 63, payloadLength: 0 };
  private ipId = 0;
  /** IPv4 identification for datagrams we may fragment (RFC 6864: unique while in flight). */
  private nextId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  /** An answer from the peer: a datagram from dst:dstPort to the guest's port. */
  private input(f: UdpFlow, data: Uint8Array): void {
    if (!f.live) return;
    this.idle.touch(f, this.stack.now());
    const b = this.buf;
    const ipLen = ipFamily(f.family).headerLen;
    const n = ipLen + UDP_HEADER_LEN + data.length;
    if (UDP_HEADER_LEN + data.length > 0xffff) {
      this.stats.tooBig++;
      return;
    }
    this.stats.datagramsIn++;
    // Received in place (see landing), or copied there.
    if (data.buffer !== b.buffer || data.byteOffset !== b.byteOffset + ipLen + UDP_HEADER_LEN) b.set(data, ipLen + UDP_HEADER_LEN);
    // Partial checksum for a guest that completes it (see TcpNat.transmit).
    const partial = this.stack.partialChecksums;
    const csum = partial ? UDP_CHECKSUM_OFFSET : 0;
    // Headers from preallocated reprs, the packet a cached view: nothing allocated per datagram.
    const u = this.udpRepr;
    u.srcPort = f.remotePort;
    u.dstPort = f.guestPort;
    u.payloadLength = data.length;
    if (f.family === 4) {
      const ip = this.ip4Repr;
      ip.src = inanyV4(f.remote);
      ip.dst = inanyV4(f.guest);
      ip.id = this.nextId();
      ip.payloadLength = UDP_HEADER_LEN + data.length;
      emitUdpV4(b, ipLen, u, ip.src, ip.dst, partial);
      emitIpv4Header(b, 0, ip);
      this.stack.ipv4.sendToGuest(this.views.out.of(b, 0, n), undefined, csum);
    } else if (this.stack.ipv6) {
      const ip = this.ip6Repr;
      ip.src = f.remote;
      ip.dst = f.guest;
      ip.payloadLength = UDP_HEADER_LEN + data.length;
      emitUdpV6(b, ipLen, u, f.remote, f.guest, partial);
      emitIpv6Header(b, 0, ip);
      this.stack.ipv6.sendToGuest(this.views.out.of(b, 0, n), undefined, false, csum);
    }
  }

  /** An error about one of the flow's datagrams: the ICMP error, quoting it as the guest sent it. */
  private error(f: UdpFlow, e: HostError, data: Uint8Array): void {
    if (!f.live) return;
    const g = translateError(f.family, e);
    if (!g) return;
    this.stats.errors++;
    sendGuestError(this.stack, f.family, g, e, f.guest, this.quote(f, data), this.buf);
  }

  /** The guest's datagram rebuilt (IP header as it left the guest, UDP header, payload). */
  private quote(f: UdpFlow, data: Uint8Array): Uint8Array {
    const v4 = f.family === 4;
    const ipLen = v4 ? 20 : IPV6_HEADER_LEN;
    const full = new Uint8Array(ipLen + UDP_HEADER_LEN + data.length);
    full.set(data, ipLen + UDP_HEADER_LEN);
    if (v4) {
      emitUdpV4(full, ipLen, { srcPort: f.guestPort, dstPort: f.remotePort, payloadLength: data.length }, inanyV4(f.guest), inanyV4(f.remote));
      emitIpv4Header(full, 0, {
        src: inanyV4(f.guest),
        dst: inanyV4(f.remote),
        proto: IpProtocol.UDP,
        ttl: 1,
        id: 0,
        flags: 0,
        fragOffset: 0,
        payloadLength: UDP_HEADER_LEN + data.length,
        tos: 0,
      });
    } else {
      emitUdpV6(full, ipLen, { srcPort: f.guestPort, dstPort: f.remotePort, payloadLength: data.length }, f.guest, f.remote);
      emitIpv6Header(full, 0, { src: f.guest, dst: f.remote, nextHeader: IpProtocol.UDP, hopLimit: 1, payloadLength: UDP_HEADER_LEN + data.length });
    }
    return full;
  }

  /** The flows, for `vunet ctl flows` (on request only). */
  describeFlows(now: number): FlowInfo[] {
    const out: FlowInfo[] = [];
    for (const f of this.idle.all()) {
      const remote = inanyBytes(f.remote);
      const host = this.target(f.family, remote, 0);
      out.push({
        proto: 'udp',
        family: f.family,
        direction: 'outbound',
        guest: inanyBytes(f.guest).slice(),
        guestPort: f.guestPort,
        remote: remote.slice(),
        remotePort: f.remotePort,
        ...(host ? { host: host.slice(), hostPort: f.remotePort } : {}),
        state: 'active',
        ageMs: Math.max(0, now - f.createdAt),
        idleMs: Math.max(0, now - f.lastUse),
      });
    }
    return out;
  }
}
