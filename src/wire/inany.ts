// One address type for both families, as passt's `union inany_addr`: 16 bytes, an IPv4 address
// held IPv4-mapped (::ffff:a.b.c.d, RFC 4291 §2.5.5.2). Code that keeps, compares, hashes or prints
// addresses of either family does it one way; only code that reads or writes a packet header
// asks which family an address is.
//
// Per family, where the addresses sit in the IP header and how long they are: IP_FAMILY, so that
// code reading a packet of either family takes its offsets from one table instead of branching.
import { bytesEqual } from './bytes.js';
import { formatIpv4 } from './ipv4.js';
import { IPV6_LOOPBACK, formatIpv6 } from './ipv6.js';

/** An address of either family: 16 bytes, IPv4 as ::ffff:a.b.c.d. */
export type Inany = Uint8Array & { readonly inany: unique symbol };

/** The layout of one family's IP header, as far as code that handles both needs it. */
export interface IpFamily {
  readonly family: 4 | 6;
  /** Address length, bytes. */
  readonly alen: 4 | 16;
  /** Offsets of the source and destination addresses in the fixed header. */
  readonly srcOff: number;
  readonly dstOff: number;
  /** Length of the fixed header (no options or extension headers). */
  readonly headerLen: number;
  /** The longest ICMP error message (its header and the quote), so that the error fits the
   *  family's minimum MTU: 576 bytes for IPv4 (RFC 1812 §4.3.2.3), 1280 for IPv6 (RFC 4443 §2.4
   *  (c)), less the error's IP header. */
  readonly errorMax: number;
}

const V4: IpFamily = { family: 4, alen: 4, srcOff: 12, dstOff: 16, headerLen: 20, errorMax: 576 - 20 };
const V6: IpFamily = { family: 6, alen: 16, srcOff: 8, dstOff: 24, headerLen: 40, errorMax: 1280 - 40 };

/** The header layout of a family. */
export function ipFamily(family: 4 | 6): IpFamily {
  return family === 4 ? V4 : V6;
}

/** The unspecified address of no family (all zero): what a fresh Inany holds. */
export function inany(): Inany {
  return new Uint8Array(16) as Inany;
}

/** Sets `to` to the `family` address at addr[off] (4 or 16 bytes) and returns it. */
export function inanySet(to: Inany, family: 4 | 6, addr: Uint8Array, off = 0): Inany {
  if (family === 6) {
    for (let i = 0; i < 16; i++) to[i] = addr[off + i]!;
    return to;
  }
  to.fill(0, 0, 10);
  to[10] = 0xff;
  to[11] = 0xff;
  for (let i = 0; i < 4; i++) to[12 + i] = addr[off + i]!;
  return to;
}

/** A new Inany holding the `family` address at addr[off]. */
export function inanyOf(family: 4 | 6, addr: Uint8Array, off = 0): Inany {
  return inanySet(inany(), family, addr, off);
}

/** A new Inany holding an address given as its 4 or 16 bytes. */
export function inanyFrom(addr: Uint8Array): Inany {
  return inanyOf(addr.length === 4 ? 4 : 6, addr, 0);
}

/** A new Inany holding the IPv4 address `v4` (a 32-bit number). */
export function inanyOfIpv4(v4: number): Inany {
  const a = inany();
  a[10] = a[11] = 0xff;
  a[12] = v4 >>> 24;
  a[13] = (v4 >>> 16) & 0xff;
  a[14] = (v4 >>> 8) & 0xff;
  a[15] = v4 & 0xff;
  return a;
}

/** Whether `a` is an IPv4 address (IPv4-mapped). */
export function inanyIsV4(a: Uint8Array): boolean {
  return (
    a[0] === 0 &&
    a[1] === 0 &&
    a[2] === 0 &&
    a[3] === 0 &&
    a[4] === 0 &&
    a[5] === 0 &&
    a[6] === 0 &&
    a[7] === 0 &&
    a[8] === 0 &&
    a[9] === 0 &&
    a[10] === 0xff &&
    a[11] === 0xff
  );
}

export function inanyFamily(a: Inany): 4 | 6 {
  return inanyIsV4(a) ? 4 : 6;
}

/** The IPv4 address of an IPv4 `a`, as a 32-bit number. */
export function inanyV4(a: Inany): number {
  return ((a[12]! << 24) | (a[13]! << 16) | (a[14]! << 8) | a[15]!) >>> 0;
}

/** Where an IPv4 address sits in an Inany (behind the ::ffff: prefix). */
export const INANY_V4_OFFSET = 12;

/** Where an Inany's family bytes start (12 for IPv4, 0 for IPv6): for reading it as a header
 *  would hold it. */
export function inanyOffset(a: Inany): number {
  return inanyIsV4(a) ? INANY_V4_OFFSET : 0;
}

/** Writes `a` into a packet header as its family's 4 or 16 bytes at buf[off]. */
export function inanyWrite(a: Inany, buf: Uint8Array, off: number): void {
  const from = inanyOffset(a);
  for (let i = from; i < 16; i++) buf[off + i - from] = a[i]!;
}

/** The family's bytes of `a` (4 or 16), as a view: no copy. */
export function inanyBytes(a: Inany): Uint8Array {
  return inanyIsV4(a) ? a.subarray(INANY_V4_OFFSET) : a;
}

/** Whether `a` equals the `family` address at addr[off], read in place. */
export function inanyMatches(a: Inany, family: 4 | 6, addr: Uint8Array, off: number): boolean {
  if (family === 6) return bytesEqual(a, 0, addr, off, 16);
  return inanyIsV4(a) && bytesEqual(a, INANY_V4_OFFSET, addr, off, 4);
}

export function inanyEqual(a: Inany, b: Inany): boolean {
  return bytesEqual(a, 0, b, 0, 16);
}

export const INANY_LOOPBACK4: Inany = inanyOfIpv4(0x7f000001);
export const INANY_LOOPBACK6: Inany = IPV6_LOOPBACK as Inany;

/** The host's loopback address of a family (127.0.0.1 or ::1). Shared: never to be written. */
export function inanyLoopback(family: 4 | 6): Inany {
  return family === 4 ? INANY_LOOPBACK4 : INANY_LOOPBACK6;
}

/** Loopback: 127/8 (also as IPv4-mapped) or ::1. */
export function inanyIsLoopback(a: Inany): boolean {
  return inanyIsV4(a) ? a[12] === 127 : bytesEqual(a, 0, INANY_LOOPBACK6, 0, 16);
}

/** The address in its usual text form (dotted quad, or RFC 5952). */
export function formatInany(a: Inany): string {
  return inanyIsV4(a) ? formatIpv4(inanyV4(a)) : formatIpv6(a, 0);
}
