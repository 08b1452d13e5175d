// Address rules the NAT's parts share: who a host client appears to be on the guest link.
import type { StackConfig } from '../iface/config.js';
import { LINK_LOCAL_ADDRESS } from '../iface/ipv6.js';
import { bytesEqual, INANY_LOOPBACK4, INANY_LOOPBACK6, inanyBytes, inanyFrom, inanyIsLoopback, ipv4Read } from '../wire/index.js';

const LOOPBACK4 = inanyBytes(INANY_LOOPBACK4);

/** The host's loopback address of a family, as its 4 or 16 bytes: where the gateway maps (as
 *  under slirp). Shared: never to be written. */
export function loopback(family: 4 | 6): Uint8Array {
  return family === 4 ? LOOPBACK4 : INANY_LOOPBACK6;
}

/**
 * Which of our service addresses the `family` address at addr[off] is: the gateway (for IPv6 also
 * our link-local fe80::2, the router the guest learns from our advertisements) or the DNS
 * address; undefined for any other address.
 */
export function serviceAddress(c: StackConfig, family: 4 | 6, addr: Uint8Array, off = 0): 'gateway' | 'dns' | undefined {
  if (family === 4) {
    const a = ipv4Read(addr, off);
    return a === c.ipv4.gateway ? 'gateway' : a === c.ipv4.dns ? 'dns' : undefined;
  }
  if (!c.ipv6) return undefined;
  if (bytesEqual(c.ipv6.gateway, 0, addr, off, 16) || bytesEqual(LINK_LOCAL_ADDRESS, 0, addr, off, 16)) return 'gateway';
  return bytesEqual(c.ipv6.dns, 0, addr, off, 16) ? 'dns' : undefined;
}

/** Our gateway address of a family, as bytes (a fresh copy). */
export function gatewayBytes(c: StackConfig, family: 4 | 6): Uint8Array {
  if (family === 6 && c.ipv6) return c.ipv6.gateway.slice();
  const g = c.ipv4.gateway;
  return Uint8Array.of(g >>> 24, (g >>> 16) & 0xff, (g >>> 8) & 0xff, g & 0xff);
}

/** Loopback: 127/8, ::1, or IPv4-mapped 127/8 (4 or 16 bytes). */
export function isLoopback(a: Uint8Array): boolean {
  return inanyIsLoopback(inanyFrom(a));
}

/** Whether `addr` lies on the guest's link (its subnet, or link-local): the guest would not route
 *  answers to it through us. */
export function onGuestLink(c: StackConfig, family: 4 | 6, addr: Uint8Array): boolean {
  if (family === 4) {
    const mask = c.ipv4.prefixLength === 0 ? 0 : (0xffffffff << (32 - c.ipv4.prefixLength)) >>> 0;
    return (ipv4Read(addr, 0) & mask) >>> 0 === c.ipv4.network;
  }
  if (addr[0] === 0xfe && (addr[1]! & 0xc0) === 0x80) return true;
  return c.ipv6 !== undefined && c.ipv6.prefix.subarray(0, 8).every((b, i) => b === addr[i]);
}

/**
 * Who a forwarded host client appears to be to the guest (whose side uses `family`): the client
 * itself when answers to it come back through us — same family, not loopback, not on the guest's
 * link — else our gateway (as slirp shows every forwarded client).
 */
export function clientAsSeen(c: StackConfig, family: 4 | 6, client: Uint8Array): Uint8Array {
  const sameFamily = (client.length === 4) === (family === 4);
  return sameFamily && !isLoopback(client) && !onGuestLink(c, family, client) ? client.slice() : gatewayBytes(c, family);
}
