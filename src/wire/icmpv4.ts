// ICMP for IPv4.
//
// Read before editing: RFC 792 (message formats), RFC 1122 section 3.2.2 (what a host sends and
// must not send: never an error about an ICMP error, a broadcast/multicast, a non-first fragment or
// a non-unicast source), RFC 1812 section 4.3.2.3 (quote as much of the original as fits in 576
// bytes), RFC 1191 (next-hop MTU in "fragmentation needed"), RFC 4884 (length field; not emitted).

import { get16, get32, get8, rangeOk, set16, set32, set8 } from './bytes.js';
import { ICMP_FIELDS, IcmpHeaderView, emitIcmpErrorUnsummed, icmpEchoRest } from './icmp.js';
import { internetChecksum, verifyChecksum } from './checksum.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Type      |     Code      |          Checksum             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           Identifier          |        Sequence Number        |  echo, timestamp
// |             unused            |         Next-Hop MTU          |  unreachable code 4
// |    Pointer    |                    unused                     |  parameter problem
// |                 Gateway Internet Address                      |  redirect
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Data: echo payload, or the invoking IP header + leading data
// +-+-+-+-+-
const F = { ...ICMP_FIELDS, MTU: 6, POINTER: 4, GATEWAY: 4 } as const;

export const ICMPV4_HEADER_LEN = 8;

export const Icmpv4Type = {
  ECHO_REPLY: 0,
  DEST_UNREACHABLE: 3,
  SOURCE_QUENCH: 4,
  REDIRECT: 5,
  ECHO_REQUEST: 8,
  ROUTER_ADVERT: 9,
  ROUTER_SOLICIT: 10,
  TIME_EXCEEDED: 11,
  PARAM_PROBLEM: 12,
  TIMESTAMP: 13,
  TIMESTAMP_REPLY: 14,
} as const;

/** Codes of destination unreachable (RFC 792, RFC 1812 section 5.2.7.1). */
export const Icmpv4UnreachableCode = {
  NET: 0,
  HOST: 1,
  PROTOCOL: 2,
  PORT: 3,
  FRAG_NEEDED: 4,
  SOURCE_ROUTE_FAILED: 5,
  NET_UNKNOWN: 6,
  HOST_UNKNOWN: 7,
  NET_PROHIBITED: 9,
  HOST_PROHIBITED: 10,
  ADMIN_PROHIBITED: 13,
} as const;

export const Icmpv4TimeExceededCode = {
  TTL: 0,
  REASSEMBLY: 1,
} as const;

/** Parameter problem codes: 0 pointer indicates the error, 2 bad length (RFC 1812 section 5.2.7.4). */
export const Icmpv4ParamProblemCode = {
  POINTER: 0,
  MISSING_OPTION: 1,
  BAD_LENGTH: 2,
} as const;

/** The error types that must never provoke another error (RFC 1122 section 3.2.2). */
export function icmpv4IsError(type: number): boolean {
  return (
    type === Icmpv4Type.DEST_UNREACHABLE ||
    type === Icmpv4Type.SOURCE_QUENCH ||
    type === Icmpv4Type.REDIRECT ||
    type === Icmpv4Type.TIME_EXCEEDED ||
    type === Icmpv4Type.PARAM_PROBLEM
  );
}

/** A view of an ICMPv4 message (the whole IP payload). */
export class Icmpv4Packet extends IcmpHeaderView {
  /** Next-hop MTU of "fragmentation needed" (RFC 1191); 0 from old routers. */
  get mtu(): number {
    return get16(this.bytes, this.offset + F.MTU);
  }
  set mtu(v: number) {
    set16(this.bytes, this.offset + F.MTU, v);
  }
  /** Parameter problem pointer: the offending octet of the invoking IP header. */
  get pointer(): number {
    return get8(this.bytes, this.offset + F.POINTER);
  }
  set pointer(v: number) {
    set8(this.bytes, this.offset + F.POINTER, v);
  }
  get gateway(): number {
    return get32(this.bytes, this.offset + F.GATEWAY);
  }
  set gateway(v: number) {
    set32(this.bytes, this.offset + F.GATEWAY, v);
  }
  /** Echo data, or the invoking packet for errors. */
  get payloadOffset(): number {
    return this.offset + ICMPV4_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.length - ICMPV4_HEADER_LEN;
  }
  isError(): boolean {
    return icmpv4IsError(this.type);
  }

  verifyChecksum(): boolean {
    return verifyChecksum(this.bytes, this.offset, this.length);
  }
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.bytes, this.offset, this.length);
  }
}

export interface Icmpv4Repr {
  type: number;
  code: number;
  /** The four bytes after the checksum: (ident << 16 | seq), mtu, pointer << 24, gateway. */
  rest: number;
  /** Bytes already in place after the 8-byte header, covered by the checksum. */
  payloadLength: number;
}

/**
 * Writes an ICMPv4 header in front of a payload already at off + 8 and fills the checksum over
 * both. Returns 8, or -1 when header and payload do not fit the buffer.
 */
export function emitIcmpv4(buf: Uint8Array, off: number, repr: Icmpv4Repr): number {
  const total = ICMPV4_HEADER_LEN + repr.payloadLength;
  if (!rangeOk(buf, off, total)) return -1;
  set8(buf, off + F.TYPE, repr.type);
  set8(buf, off + F.CODE, repr.code);
  set16(buf, off + F.CHECKSUM, 0);
  set32(buf, off + F.REST, repr.rest);
  set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, total));
  return ICMPV4_HEADER_LEN;
}

/** `rest` for echo messages. */
export const icmpv4EchoRest = icmpEchoRest;

/**
 * Writes a whole ICMPv4 error: header, then as much of the invoking packet (`orig`, from its IP
 * header) as fits in `maxLength` bytes of message. RFC 792 asks for the IP header and 8 bytes of
 * data; RFC 1812 section 4.3.2.3 lets a router quote more, as long as the ICMP datagram stays
 * within 576 bytes (so pass 576 - 20 here). Returns the message length, or -1 when not even the
 * header fits.
 */
export function emitIcmpv4Error(
  buf: Uint8Array,
  off: number,
  type: number,
  code: number,
  rest: number,
  orig: Uint8Array,
  origOff: number,
  origLen: number,
  maxLength: number,
): number {
  const len = emitIcmpErrorUnsummed(buf, off, type, code, rest, orig, origOff, origLen, maxLength);
  if (len > 0) set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, len));
  return len;
}
