// What the NAT's flow kinds share besides the flow table (flow-table.ts): the ICMP errors sent to
// the guest about a flow's datagrams, and the fence's answer.
import type { Stack } from '../iface/stack.js';
import {
  emitIcmpv4Error,
  emitIcmpv6Error,
  emitIpv4Header,
  emitIpv6Header,
  inanyOf,
  inanyV4,
  ipFamily,
  IpProtocol,
  ipv4Read,
  IPV6_HEADER_LEN,
} from '../wire/index.js';
import type { Inany } from '../wire/index.js';
import type { Fence } from './fence.js';
import { Errno, refusedSend, translateError } from './icmp-errors.js';
import type { GuestError, HostError } from './icmp-errors.js';

/**
 * Sends the guest the ICMP error `g` about its datagram `quote` (rebuilt as it left the guest),
 * from the reporting hop or from our gateway, built in `buf`.
 */
export function sendGuestError(stack: Stack, family: 4 | 6, g: GuestError, e: HostError, guest: Inany, quote: Uint8Array, buf: Uint8Array): void {
  const c = stack.config;
  if (family === 4) {
    const from = g.from === 'offender' ? ipv4Read(e.offender, 0) : c.ipv4.gateway;
    const n = emitIcmpv4Error(buf, 20, g.type, g.code, g.rest, quote, 0, quote.length, ipFamily(4).errorMax);
    emitIpv4Header(buf, 0, { src: from, dst: inanyV4(guest), proto: IpProtocol.ICMP, ttl: 64, id: 0, flags: 0, fragOffset: 0, payloadLength: n, tos: 0 });
    stack.ipv4.sendToGuest(buf.subarray(0, 20 + n));
  } else if (c.ipv6 && stack.ipv6) {
    const from = g.from === 'offender' ? e.offender.subarray(0, 16) : c.ipv6.gateway;
    const n = emitIcmpv6Error(buf, IPV6_HEADER_LEN, g.type, g.code, g.rest, quote, 0, quote.length, ipFamily(6).errorMax, from, guest);
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
  sendGuestError(stack, family, g, e, inanyOf(family, packet, srcOff), packet.subarray(0, ipFamily(family).errorMax), buf);
  return true;
}
