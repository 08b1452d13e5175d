// ICMPv6 common header, echo and error messages. NDP lives in ndp.ts, MLD in mld.ts.
//
// Read before editing: RFC 4443 sections 2 (format, checksum with the IPv6 pseudo-header, 2.4 the
// rules deciding when not to send an error: never about an error, a multicast destination except
// packet too big and parameter problem code 2, ...), 3 (error messages), 4 (echo); RFC 8200 section 8.1
// (pseudo-header). An error quotes "as much of invoking packet as possible without the ICMPv6
// packet exceeding the minimum IPv6 MTU".

import { get32, rangeOk, set16, set32, set8 } from './bytes.js';
import { ICMP_FIELDS, IcmpHeaderView, emitIcmpErrorUnsummed, icmpEchoRest } from './icmp.js';
import { pseudoHeaderSumV6, internetChecksum, verifyTransportV6 } from './checksum.js';
import { IpProtocol } from './ip.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Type      |     Code      |          Checksum             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           Identifier          |        Sequence Number        |  echo
// |                              MTU                              |  packet too big
// |                            Pointer                            |  parameter problem
// |                            Unused                             |  unreachable, time exceeded
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |    Data: echo payload, or as much of the invoking packet as fits in 1280 bytes
// +-+-+-+-+-
const F = { ...ICMP_FIELDS, MTU: 4, POINTER: 4 } as const;

export const ICMPV6_HEADER_LEN = 8;

export const Icmpv6Type = {
  DEST_UNREACHABLE: 1,
  PACKET_TOO_BIG: 2,
  TIME_EXCEEDED: 3,
  PARAM_PROBLEM: 4,
  ECHO_REQUEST: 128,
  ECHO_REPLY: 129,
  MLD_QUERY: 130,
  MLD_REPORT: 131,
  MLD_DONE: 132,
  ROUTER_SOLICIT: 133,
  ROUTER_ADVERT: 134,
  NEIGHBOR_SOLICIT: 135,
  NEIGHBOR_ADVERT: 136,
  REDIRECT: 137,
  MLDV2_REPORT: 143,
} as const;

export const Icmpv6UnreachableCode = {
  NO_ROUTE: 0,
  ADMIN_PROHIBITED: 1,
  BEYOND_SCOPE: 2,
  ADDRESS: 3,
  PORT: 4,
  SOURCE_POLICY: 5,
  REJECT_ROUTE: 6,
} as const;

export const Icmpv6TimeExceededCode = {
  HOP_LIMIT: 0,
  REASSEMBLY: 1,
} as const;

/** Same numbers as Ipv6ProblemCode in ipv6.ts. */
export const Icmpv6ParamProblemCode = {
  ERRONEOUS_HEADER_FIELD: 0,
  UNRECOGNIZED_NEXT_HEADER: 1,
  UNRECOGNIZED_OPTION: 2,
} as const;

/** Types below 128 are errors (RFC 4443 section 2.1). */
export function icmpv6IsError(type: number): boolean {
  return type < 128;
}

/** A view of an ICMPv6 message (the upper-layer payload of an IPv6 packet). */
export class Icmpv6Packet extends IcmpHeaderView {
  get mtu(): number {
    return get32(this.bytes, this.offset + F.MTU);
  }
  set mtu(v: number) {
    set32(this.bytes, this.offset + F.MTU, v);
  }
  get pointer(): number {
    return get32(this.bytes, this.offset + F.POINTER);
  }
  set pointer(v: number) {
    set32(this.bytes, this.offset + F.POINTER, v);
  }
  get payloadOffset(): number {
    return this.offset + ICMPV6_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.length - ICMPV6_HEADER_LEN;
  }
  isError(): boolean {
    return icmpv6IsError(this.type);
  }

  /** Verifies the checksum against the pseudo-header of addresses read in place. */
  verifyChecksum(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): boolean {
    return verifyTransportV6(this.bytes, this.offset, this.length, src, srcOff, dst, dstOff, IpProtocol.ICMPV6);
  }
  fillChecksum(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
    this.checksum = 0;
    this.checksum = icmpv6Checksum(this.bytes, this.offset, this.length, src, srcOff, dst, dstOff);
  }
}

/** The checksum of an ICMPv6 message whose checksum field is zero. */
export function icmpv6Checksum(b: Uint8Array, off: number, len: number, src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): number {
  return internetChecksum(b, off, len, pseudoHeaderSumV6(src, srcOff, dst, dstOff, IpProtocol.ICMPV6, len));
}

/** Sets the checksum field of the `len`-byte ICMPv6 message at `off` (NDP and MLD emitters use it). */
export function fillIcmpv6Checksum(b: Uint8Array, off: number, len: number, src: Uint8Array, dst: Uint8Array): void {
  set16(b, off + F.CHECKSUM, 0);
  set16(b, off + F.CHECKSUM, icmpv6Checksum(b, off, len, src, 0, dst, 0));
}

export interface Icmpv6Repr {
  type: number;
  code: number;
  /** The four bytes after the checksum: (ident << 16 | seq), mtu, pointer, 0. */
  rest: number;
  /** Bytes already in place after the 8-byte header, covered by the checksum. */
  payloadLength: number;
}

/**
 * Writes an ICMPv6 header in front of a payload already at off + 8 and fills the checksum, with the
 * pseudo-header of `src` and `dst` (16-byte addresses). Returns 8, or -1 when it does not fit.
 */
export function emitIcmpv6(buf: Uint8Array, off: number, repr: Icmpv6Repr, src: Uint8Array, dst: Uint8Array): number {
  const total = ICMPV6_HEADER_LEN + repr.payloadLength;
  if (!rangeOk(buf, off, total)) return -1;
  set8(buf, off + F.TYPE, repr.type);
  set8(buf, off + F.CODE, repr.code);
  set32(buf, off + F.REST, repr.rest);
  fillIcmpv6Checksum(buf, off, total, src, dst);
  return ICMPV6_HEADER_LEN;
}

/** `rest` for echo messages. */
export const icmpv6EchoRest = icmpEchoRest;

/**
 * Writes a whole ICMPv6 error quoting as much of the invoking packet (`orig` from its IPv6 header)
 * as fits in `maxLength` bytes of message (1280 - 40 - extension headers, per RFC 4443 section
 * 2.4 (c)). Returns the message length, or -1 when not even the header fits.
 */
export function emitIcmpv6Error(
  buf: Uint8Array,
  off: number,
  type: number,
  code: number,
  rest: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  maxLength: number,
  src: Uint8Array,
  dst: Uint8Array,
): number {
  const len = emitIcmpErrorUnsummed(buf, off, type, code, rest, orig, origOff, origLen, maxLength);
  if (len > 0) fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}
