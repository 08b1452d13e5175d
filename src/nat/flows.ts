// What the NAT's flow kinds share: a bounded table of flows that each own a host socket, expired
// when idle (least recently used first when full), and the ICMP errors sent to the guest about a
// flow's datagrams.
import type { Stack } from '../iface/stack.js';
import { IPV6_HEADER_LEN, IpProtocol, emitIcmpv4Error, emitIcmpv6Error, emitIpv4Header, emitIpv6Header, ipv4Read } from '../wire/index.js';
import type { Fence } from './fence.js';
import { Errno, refusedSend, translateError } from './icmp-errors.js';
import type { GuestError, HostError } from './icmp-errors.js';

export interface FlowBase {
  readonly key: string;
  lastUse: number;
  readonly socket: { close(): void };
}

export class FlowTable<F extends FlowBase> {
  /** In least-recently-used order (a Map keeps insertion order; touch() re-inserts): the first
   *  flow is the one to expire or evict next, so neither needs a walk over the table. */
  private readonly flows = new Map<string, F>();

  constructor(
    private readonly maxFlows: number,
    private readonly idleMs: number,
  ) {}

  get size(): number {
    return this.flows.size;
  }

  get(key: string): F | undefined {
    return this.flows.get(key);
  }

  /** Whether `f` is still in the table (its socket may report after it was closed). */
  has(f: F): boolean {
    return this.flows.get(f.key) === f;
  }

  /** Marks `f` used at `now`: it moves to the end of the expiry order. */
  touch(f: F, now: number): void {
    f.lastUse = now;
    if (this.flows.get(f.key) !== f) return;
    this.flows.delete(f.key);
    this.flows.set(f.key, f);
  }

  /** Makes room for one more flow (closing the least recently used when full). */
  reserve(): void {
    if (this.flows.size < this.maxFlows) return;
    const oldest = this.flows.values().next().value;
    if (oldest) this.close(oldest);
  }

  add(f: F): void {
    this.flows.set(f.key, f);
  }

  close(f: F): void {
    f.socket.close();
    this.flows.delete(f.key);
  }

  /** Closes flows idle for idleMs (the oldest first; a bounded number per call). */
  poll(now: number): void {
    for (let n = 0; n < 1024; n++) {
      const f = this.flows.values().next().value;
      if (!f || now - f.lastUse < this.idleMs) return;
      this.close(f);
    }
  }

  pollAt(): number {
    const f = this.flows.values().next().value;
    return f ? f.lastUse + this.idleMs : Infinity;
  }

  closeAll(): void {
    for (const f of [...this.flows.values()]) this.close(f);
  }

  /** The flows, least recently used first (status output). */
  values(): IterableIterator<F> {
    return this.flows.values();
  }
}

/** An ICMPv4 error quotes at most this much (RFC 1812 §4.3.2.3: the error fits 576 bytes). */
export const QUOTE4_MAX = 576 - 20;
export const QUOTE6_MAX = 1280 - IPV6_HEADER_LEN;

/**
 * Sends the guest the ICMP error `g` about its datagram `quote` (rebuilt as it left the guest),
 * from the reporting hop or from our gateway, built in `buf`.
 */
export function sendGuestError(stack: Stack, family: 4 | 6, g: GuestError, e: HostError, guest: Uint8Array, quote: Uint8Array, buf: Uint8Array): void {
  const c = stack.config;
  if (family === 4) {
    const from = g.from === 'offender' ? ipv4Read(e.offender, 0) : c.ipv4.gateway;
    const n = emitIcmpv4Error(buf, 20, g.type, g.code, g.rest, quote, 0, quote.length, QUOTE4_MAX);
    emitIpv4Header(buf, 0, { src: from, dst: ipv4Read(guest, 0), proto: IpProtocol.ICMP, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: n, tos: 0 });
    stack.ipv4.sendToGuest(buf.subarray(0, 20 + n));
  } else if (c.ipv6 && stack.ipv6) {
    const from = g.from === 'offender' ? e.offender.subarray(0, 16) : c.ipv6.gateway;
    const n = emitIcmpv6Error(buf, IPV6_HEADER_LEN, g.type, g.code, g.rest, quote, 0, quote.length, QUOTE6_MAX, from, guest);
    emitIpv6Header(buf, 0, { src: from, dst: guest, nextHeader: IpProtocol.ICMPV6, hopLimit: 64, payloadLength: n });
    stack.ipv6.sendToGuest(buf.subarray(0, IPV6_HEADER_LEN + n));
  }
}

/**
 * Whether the guest's datagram to `dst` (at `dstOff` of `packet`) is fenced; if so it is answered
 * with "communication administratively prohibited" from the gateway (what a host firewall's EACCES
 * becomes), quoting `packet`, within the fence's error rate.
 */
export function fenced(stack: Stack, fence: Fence | undefined, family: 4 | 6, packet: Uint8Array, srcOff: number, dstOff: number, buf: Uint8Array): boolean {
  if (fence?.check(family, packet, dstOff) === undefined) return false;
  if (!fence.mayAnswer()) return true;
  const e = refusedSend(Errno.EACCES);
  const g = translateError(family, e)!;
  const guest = packet.subarray(srcOff, srcOff + (family === 4 ? 4 : 16));
  sendGuestError(stack, family, g, e, guest, packet.subarray(0, family === 4 ? QUOTE4_MAX : QUOTE6_MAX), buf);
  return true;
}
