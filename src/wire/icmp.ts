// The header ICMPv4 (RFC 792) and ICMPv6 (RFC 4443 §2.1) share: type, code, checksum, and four
// type-specific bytes (identifier and sequence number for echo messages).
import { get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';

/** Type, code, checksum and the four type-specific bytes: what every ICMP message has. */
export const ICMP_HEADER_LEN = 8;

const F = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  REST: 4,
  IDENT: 4,
  SEQ: 6,
} as const;

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
