// The header ICMPv4 (RFC 792) and ICMPv6 (RFC 4443 §2.1) share: type, code, checksum, and four
// type-specific bytes (identifier and sequence number for echo messages).
import { copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';

/** Type, code, checksum and the four type-specific bytes: what every ICMP message has. */
export const ICMP_HEADER_LEN = 8;

/** Where the shared fields sit (each family's file adds its own). */
export const ICMP_FIELDS = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  REST: 4,
  IDENT: 4,
  SEQ: 6,
} as const;
const F = ICMP_FIELDS;

/** A view of an ICMP message of either family (the fields both have). */
export class IcmpHeaderView extends WireView {
  /** Holds the 8-byte header every message has. */
  check(): boolean {
    return rangeOk(this.bytes, this.offset, this.length) && this.length >= ICMP_HEADER_LEN;
  }

  get type(): number {
    return get8(this.bytes, this.offset + F.TYPE);
  }
  set type(v: number) {
    set8(this.bytes, this.offset + F.TYPE, v);
  }
  get code(): number {
    return get8(this.bytes, this.offset + F.CODE);
  }
  set code(v: number) {
    set8(this.bytes, this.offset + F.CODE, v);
  }
  get checksum(): number {
    return get16(this.bytes, this.offset + F.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.bytes, this.offset + F.CHECKSUM, v);
  }
  /** The four type-specific bytes after the checksum, as one number. */
  get rest(): number {
    return get32(this.bytes, this.offset + F.REST);
  }
  set rest(v: number) {
    set32(this.bytes, this.offset + F.REST, v);
  }
  /** Echo messages: the identifier and the sequence number. */
  get ident(): number {
    return get16(this.bytes, this.offset + F.IDENT);
  }
  set ident(v: number) {
    set16(this.bytes, this.offset + F.IDENT, v);
  }
  get seq(): number {
    return get16(this.bytes, this.offset + F.SEQ);
  }
  set seq(v: number) {
    set16(this.bytes, this.offset + F.SEQ, v);
  }
}

/** `rest` for echo messages: the identifier, then the sequence number. */
export function icmpEchoRest(ident: number, seq: number): number {
  return (((ident & 0xffff) << 16) | (seq & 0xffff)) >>> 0;
}

/**
 * Writes an ICMP error of either family but its checksum (left 0): the header, then as much of
 * the invoking packet (`orig[origOff, +origLen)`) as fits in `maxLength` bytes of message and in
 * `buf`. Returns the message length, or -1 when not even the header fits.
 */
export function emitIcmpErrorUnsummed(
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
  if (!rangeOk(buf, off, ICMP_HEADER_LEN)) return -1;
  const quoted = Math.max(0, Math.min(origLen, maxLength - ICMP_HEADER_LEN, buf.length - off - ICMP_HEADER_LEN));
  copyBytes(buf, off + ICMP_HEADER_LEN, orig, origOff, quoted);
  set8(buf, off + F.TYPE, type);
  set8(buf, off + F.CODE, code);
  set16(buf, off + F.CHECKSUM, 0);
  set32(buf, off + F.REST, rest);
  return ICMP_HEADER_LEN + quoted;
}
