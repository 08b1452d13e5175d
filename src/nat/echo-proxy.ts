// The ICMP echo proxy: the guest's pings leave through host echo sockets and real answers come
// back. Pings are never faked: when the host grants no echo socket, requests go unanswered and one
// warning says how to fix it.
//
// Each guest flow (family, guest address, destination, identifier) gets its own host socket, sent
// with the guest's TTL minus one (we are the first hop; a TTL of 1 never reaches us here: the stack
// answered time exceeded). Replies go back with the guest's identifier and sequence, from the
// address the guest pinged; error-queue entries become ICMP errors from the reporting hop, quoting
// the request as the guest sent it, so ping and traceroute -I see what a real network shows.
// Flows expire after `idleMs` without traffic; the table is bounded.
import type { EchoHandler, EchoRequest } from '../iface/echo.js';
import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import type { Stack } from '../iface/stack.js';
import {
  emitIcmpv4,
  emitIcmpv6,
  emitIpv4Header,
  emitIpv6Header,
  ICMPV4_HEADER_LEN,
  icmpv4EchoRest,
  ICMPV6_HEADER_LEN,
  icmpv6EchoRest,
  inanyBytes,
  inanyOf,
  inanyV4,
  ipFamily,
  IpProtocol,
  IPV6_HEADER_LEN,
} from '../wire/index.js';
import type { Icmpv4Repr, Inany, Ipv4Repr, Ipv6Repr } from '../wire/index.js';
import { ViewCache, doubleFields } from '../wire/bytes.js';
import { loopback, serviceAddress } from './addresses.js';
import type { EchoSocket, HostNet } from './host.js';
import type { Fence } from './fence.js';
import { fenced, sendGuestError } from './flows.js';
import { Flow, FlowKind, FlowTable, IdleSocketFlows } from './flow-table.js';
import { refusedSend, translateError } from './icmp-errors.js';
import type { HostError } from './icmp-errors.js';
import type { FlowInfo } from './flow-info.js';

export interface EchoProxyOptions {
  maxFlows?: number;
  idleMs?: number;
  /** Pings to the gateway addresses reach the host's loopback (slirp's behaviour); default true. */
  mapGateway?: boolean;
  /** Destinations the guest may not ping (answered with admin prohibited). */
  fence?: Fence;
  log?: Log;
  /** The NAT's flow table, shared with the other NAT parts (default: one of its own). */
  flows?: FlowTable;
}

/** A guest's echo session: its guest side is (guest, identifier as the port, the address pinged,
 *  port 0); the address pinged is the source of what comes back. */
class EchoFlow extends Flow {
  socket: EchoSocket | undefined;
  constructor(
    family: 4 | 6,
    guest: Inany,
    readonly ident: number,
    dst: Inany,
    /** Where the host socket sends (the address pinged, or loopback for the gateway). */
    readonly target: Uint8Array,
    now: number,
  ) {
    super(FlowKind.ECHO, family, guest, ident, dst, 0, now);
  }
}

export class EchoProxy extends IdleSocketFlows<EchoFlow> {
  readonly stats = { requests: 0, replies: 0, errors: 0, unanswerable: 0, flows: 0 };
  private readonly maxFlows: number;
  private readonly idleMs: number;
  private readonly mapGateway: boolean;
  private readonly fence: Fence | undefined;
  private readonly log: Log;
  private warned = false;
  /** Packets for the guest are built here whole, then copied (and fragmented) by the stack. */
  private readonly buf = new Uint8Array(IPV6_HEADER_LEN + 0x10000);
  /** Where replies are received: past the IP header's room in `buf` (EchoSocketEvents.landing). */
  private readonly landing4 = this.buf.subarray(20);
  private readonly landing6 = this.buf.subarray(IPV6_HEADER_LEN);

  constructor(
    private readonly stack: Stack,
    private readonly host: HostNet,
    opts: EchoProxyOptions = {},
  ) {
    super(opts.flows ?? new FlowTable(opts.maxFlows ?? 1024), opts.idleMs ?? 60_000);
    this.maxFlows = opts.maxFlows ?? 1024;
    this.idleMs = opts.idleMs ?? 60_000;
    this.mapGateway = opts.mapGateway ?? true;
    this.fence = opts.fence;
    this.log = opts.log ?? silentLog;
  }

  /** The stack's echo hook: proxies what is not ours (and the gateway, mapped to loopback). */
  readonly handle: EchoHandler = (r) => {
    const dst = this.dstViews.of(r.packet, r.dstOffset, r.dstOffset + ipFamily(r.family).alen);
    const target = this.targetFor(r, dst);
    if (!target) return false; // ours and not mapped: the stack's own reply
    this.stats.requests++;
    if (!r.toUs && fenced(this.stack, this.fence, r.family, r.packet, r.srcOffset, r.dstOffset, this.buf)) return true;
    const flow = this.flowFor(r, target);
    if (!flow) return true; // no echo socket: unanswered, never faked
    this.idle.touch(flow, this.stack.now());
    const rc = flow.socket!.send(target, r.seq, r.data, Math.max(1, r.ttl - 1));
    // Refused at once by the host: the same ICMP error an error-queue entry would give.
    if (rc < 0) this.onError(flow, refusedSend(-rc), r.seq, r.data);
    return true;
  };

  private targetFor(r: EchoRequest, dst: Uint8Array): Uint8Array | undefined {
    if (!r.toUs) return dst;
    // Our own addresses: the gateway maps to the host's loopback when the host lets us ping it;
    // otherwise (and for the other addresses) the stack answers, as the address is ours.
    if (!this.mapGateway || this.host.echoMode === 'none') return undefined;
    return serviceAddress(this.stack.config, r.family, dst) === 'gateway' ? loopback(r.family) : undefined;
  }

  private flowFor(r: EchoRequest, target: Uint8Array): EchoFlow | undefined {
    const known = this.table.find(FlowKind.ECHO, r.family, r.packet, r.srcOffset, r.ident, r.packet, r.dstOffset, 0);
    return known ? (known as EchoFlow) : this.openFlow(r, target);
  }

  /** A new flow and its echo socket. Apart from flowFor(): the socket's callbacks capture the
   *  flow, and a function whose variables closures capture allocates their context on every
   *  call, the lookups of known flows included. */
  private openFlow(r: EchoRequest, target: Uint8Array): EchoFlow | undefined {
    // Room: this part's least recently used flow goes when the part or the whole table is full.
    this.idle.makeRoom(this.maxFlows, this.table, (f) => this.close(f));
    const flow = new EchoFlow(
      r.family,
      inanyOf(r.family, r.packet, r.srcOffset),
      r.ident,
      inanyOf(r.family, r.packet, r.dstOffset),
      target.slice(),
      this.stack.now(),
    );
    if (!this.table.insert(flow)) return undefined;
    try {
      flow.socket = this.host.openEcho(r.family, {
        reply: (from, seq, data, ttl) => this.onReply(flow, from, seq, data, ttl),
        landing: r.family === 4 ? this.landing4 : this.landing6,
        error: (e, seq, data) => this.onError(flow, e, seq, data),
      });
    } catch (err) {
      this.table.remove(flow);
      this.stats.unanswerable++;
      if (!this.warned) {
        this.warned = true;
        this.log.warn(
          { code: (err as { code?: string }).code },
          'no ICMP echo socket: guest pings beyond the gateway go unanswered. Allow ping sockets with `sysctl -w net.ipv4.ping_group_range="0 2147483647"` or run vunet with CAP_NET_RAW',
        );
      }
      return undefined;
    }
    this.stats.flows++;
    this.idle.add(flow);
    return flow;
  }

  private ipId = 0;
  /** IPv4 identification for replies we may fragment (RFC 6864: unique while in flight). */
  private nextId(): number {
    this.ipId = (this.ipId + 1) & 0xffff;
    return this.ipId;
  }

  /** A real reply: back to the guest from the address it pinged, one hop older. */
  private onReply(f: EchoFlow, _from: Uint8Array, seq: number, data: Uint8Array, ttl: number): void {
    if (!f.live) return;
    this.idle.touch(f, this.stack.now());
    this.stats.replies++;
    const hops = ttl > 1 ? ttl - 1 : 64;
    const b = this.buf;
    // Headers from preallocated reprs, the packet a cached view: nothing allocated per reply.
    const icmp = this.icmpRepr;
    icmp.rest = icmpv4EchoRest(f.ident, seq);
    icmp.payloadLength = data.length;
    if (f.family === 4) {
      const n = 20 + ICMPV4_HEADER_LEN + data.length;
      if (n > b.length) return;
      if (!landed(data, b, 20 + ICMPV4_HEADER_LEN)) b.set(data, 20 + ICMPV4_HEADER_LEN);
      icmp.type = 0;
      emitIcmpv4(b, 20, icmp);
      const ip = this.ip4Repr;
      ip.src = inanyV4(f.remote);
      ip.dst = inanyV4(f.guest);
      ip.ttl = hops;
      ip.id = this.nextId();
      ip.payloadLength = ICMPV4_HEADER_LEN + data.length;
      emitIpv4Header(b, 0, ip);
      this.stack.ipv4.sendToGuest(this.outViews.of(b, 0, n));
    } else {
      const n = IPV6_HEADER_LEN + ICMPV6_HEADER_LEN + data.length;
      if (n > b.length || !this.stack.ipv6) return;
      if (!landed(data, b, IPV6_HEADER_LEN + ICMPV6_HEADER_LEN)) b.set(data, IPV6_HEADER_LEN + ICMPV6_HEADER_LEN);
      icmp.type = 129;
      emitIcmpv6(b, IPV6_HEADER_LEN, icmp, f.remote, f.guest);
      const ip = this.ip6Repr;
      ip.src = f.remote;
      ip.dst = f.guest;
      ip.hopLimit = hops;
      ip.payloadLength = ICMPV6_HEADER_LEN + data.length;
      emitIpv6Header(b, 0, ip);
      this.stack.ipv6.sendToGuest(this.outViews.of(b, 0, n));
    }
  }

  private readonly outViews = new ViewCache();
  /** The request's destination address (no view per request). */
  private readonly dstViews = new ViewCache();
  private readonly icmpRepr: Icmpv4Repr = { type: 0, code: 0, rest: 0, payloadLength: 0 };
  private readonly ip4Repr: Ipv4Repr = doubleFields(
    { src: 0, dst: 0, proto: IpProtocol.ICMP, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: 0, tos: 0 },
    'src',
    'dst',
  );
  private readonly ip6Repr: Ipv6Repr = { src: new Uint8Array(16), dst: new Uint8Array(16), nextHeader: IpProtocol.ICMPV6, hopLimit: 64, payloadLength: 0 };

  /** An error about one of our requests: the matching ICMP error, quoting the guest's request. */
  private onError(f: EchoFlow, e: HostError, seq: number, data: Uint8Array): void {
    if (!f.live) return;
    const g = translateError(f.family, e);
    if (!g) return;
    this.stats.errors++;
    // The request as the guest sent it (its identifier; TTL 1, as it arrived where it died).
    sendGuestError(this.stack, f.family, g, e, f.guest, this.quoteBuf(f, seq, data), this.buf);
  }

  /** Rebuilds the guest's echo request (IP header + ICMP), as much as an error quotes. */
  private quoteBuf(f: EchoFlow, seq: number, data: Uint8Array): Uint8Array {
    const v4 = f.family === 4;
    const ipLen = v4 ? 20 : IPV6_HEADER_LEN;
    const max = ipFamily(f.family).errorMax;
    const dataLen = Math.min(data.length, max - ipLen - 8);
    const q = new Uint8Array(ipLen + 8 + dataLen);
    q.set(data.subarray(0, dataLen), ipLen + 8);
    if (v4) {
      // The checksum covers the whole original message, as the guest computed it.
      const full = new Uint8Array(8 + data.length);
      full.set(data, 8);
      emitIcmpv4(full, 0, { type: 8, code: 0, rest: icmpv4EchoRest(f.ident, seq), payloadLength: data.length });
      q.set(full.subarray(0, 8), ipLen);
      emitIpv4Header(q, 0, {
        src: inanyV4(f.guest),
        dst: inanyV4(f.remote),
        proto: IpProtocol.ICMP,
        ttl: 1,
        id: 0,
        flags: 2,
        fragOffset: 0,
        payloadLength: 8 + data.length,
        tos: 0,
      });
    } else {
      const full = new Uint8Array(8 + data.length);
      full.set(data, 8);
      emitIcmpv6(full, 0, { type: 128, code: 0, rest: icmpv6EchoRest(f.ident, seq), payloadLength: data.length }, f.guest, f.remote);
      q.set(full.subarray(0, 8), ipLen);
      emitIpv6Header(q, 0, { src: f.guest, dst: f.remote, nextHeader: IpProtocol.ICMPV6, hopLimit: 1, payloadLength: 8 + data.length });
    }
    return q;
  }

  /** The flows (one per guest address, destination and identifier), for `vunet ctl flows`. */
  describeFlows(now: number): FlowInfo[] {
    const out: FlowInfo[] = [];
    for (const f of this.idle.all()) {
      out.push({
        proto: 'icmp',
        family: f.family,
        direction: 'outbound',
        guest: inanyBytes(f.guest).slice(),
        guestPort: f.ident,
        remote: inanyBytes(f.remote).slice(),
        remotePort: 0,
        host: f.target.slice(),
        hostPort: 0,
        state: 'active',
        ageMs: Math.max(0, now - f.createdAt),
        idleMs: Math.max(0, now - f.lastUse),
      });
    }
    return out;
  }
}

/** Whether `data` already lies at `off` in `b` (a reply received in place). */
function landed(data: Uint8Array, b: Uint8Array, off: number): boolean {
  return data.buffer === b.buffer && data.byteOffset === b.byteOffset + off;
}
