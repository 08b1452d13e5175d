// What the NAT's flow kinds share: a bounded table of flows that each own a host socket, expired
// when idle (least recently used first when full), and the ICMP errors sent to the guest about a
// flow's datagrams.
import type { Stack } from '../iface/stack.js';
import { IPV6_HEADER_LEN, IpProtocol, emitIcmpv4Error, emitIcmpv6Error, emitIpv4Header, emitIpv6Header, ipv4Read } from '../wire/index.js';
import type { GuestError, HostError } from './icmp-errors.js';

export interface FlowBase {
  readonly key: string;
  lastUse: number;
  readonly socket: { close(): void };
}

export class FlowTable<F extends FlowBase> {
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

  /** Makes room for one more flow (closing the least recently used when full). */
  reserve(): void {
    if (this.flows.size < this.maxFlows) return;
    let oldest: F | undefined;
    for (const f of this.flows.values()) if (!oldest || f.lastUse < oldest.lastUse) oldest = f;
    if (oldest) this.close(oldest);
  }

  add(f: F): void {
    this.flows.set(f.key, f);
  }

  close(f: F): void {
    f.socket.close();
    this.flows.delete(f.key);
  }

  /** Closes flows idle for idleMs. */
  poll(now: number): void {
    for (const f of [...this.flows.values()]) if (now - f.lastUse >= this.idleMs) this.close(f);
  }

  pollAt(): number {
    let at = Infinity;
    for (const f of this.flows.values()) at = Math.min(at, f.lastUse + this.idleMs);
    return at;
  }

  closeAll(): void {
    for (const f of [...this.flows.values()]) this.close(f);
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
