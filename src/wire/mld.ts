// Multicast Listener Discovery, versions 1 and 2 (ICMPv6 types 130, 131, 132, 143).
//
// Read before editing: RFC 2710 section 3 (MLDv1 format), RFC 3810 sections 5.1 (v2 query; 5.1.3
// the Maximum Response Code encoding, 5.1.9 QQIC), 5.2 (v2 report and its multicast address
// records), 8.1 (query versions by length: 24 bytes is v1, 28 or more is v2, others are invalid),
// and 5.1.14 / 5.2.13 (the IP-level validity rules: link-local source, hop limit 1, router alert;
// those are the caller's, gVisor's isMLDValid shows them). Views cover the whole ICMPv6 message.

import { copyBytes, get16, get8, rangeOk, set16, set8, WireView } from './bytes.js';
import { GroupRecordIterator, GroupRecordType, emitGroupRecords, groupReportLength } from './group-records.js';
import { fillIcmpv6Checksum, Icmpv6Type } from './icmpv6.js';
import { IPV6_ADDR_LEN } from './ipv6.js';
import { igmpv3DecodeCode } from './igmp.js';

// MLDv1 query, report and done (RFC 2710 section 3), and the start of an MLDv2 query:
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Type      |     Code      |          Checksum             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |     Maximum Response Delay    |          Reserved             |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// +                       Multicast Address (16)                  +
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// MLDv2 query continues (RFC 3810 section 5.1):
// | Resv  |S| QRV |     QQIC      |     Number of Sources (N)     |
// +                       Source Address [1..N] (16 each)         +
// MLDv2 report (section 5.2):
// |  Type = 143   |    Reserved   |           Checksum            |
// |           Reserved            |Nr of Mcast Address Records (M)|
// |                  Multicast Address Record [1..M]              |
const F = {
  TYPE: 0,
  CODE: 1,
  CHECKSUM: 2,
  MAX_RESP: 4,
  RESERVED: 6,
  ADDRESS: 8,
  S_QRV: 24,
  QQIC: 25,
  NUM_SOURCES: 26,
  SOURCES: 28,
  NUM_RECORDS: 6,
  RECORDS: 8,
} as const;

export const MLDV1_LEN = 24;
export const MLDV2_QUERY_MIN_LEN = 28;
export const MLDV2_RECORD_MIN_LEN = 20;

/** Record types: same numbers as IgmpRecordType (RFC 3810 section 5.2.12). */
export const MldRecordType = GroupRecordType;

/**
 * Decodes an MLDv2 Maximum Response Code to milliseconds (RFC 3810 section 5.1.3): below 32768 the
 * value itself, else a float with 3-bit exponent and 12-bit mantissa.
 */
export function mldv2DecodeMaxResponse(code: number): number {
  if (code < 32768) return code;
  const mant = code & 0x0fff;
  const exp = (code >>> 12) & 0x07;
  return (mant | 0x1000) * 2 ** (exp + 3);
}

/** The code whose decoded value is the largest not above `ms` (saturating at 8387584). */
export function mldv2EncodeMaxResponse(ms: number): number {
  if (ms < 32768) return Math.max(0, Math.floor(ms));
  for (let exp = 7; exp >= 0; exp--) {
    const mant = Math.floor(ms / 2 ** (exp + 3)) - 0x1000;
    if (mant >= 0) return 0x8000 | (exp << 12) | Math.min(mant, 0x0fff);
  }
  return 32767;
}

/** A view of an MLD message: v1 query/report/done, v2 query (type 130, 28+ bytes). */
export class MldMessage extends WireView {
  /** 24 bytes, or a v2 query holding all its sources. */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < MLDV1_LEN) return false;
    if (this.length === MLDV1_LEN) return true;
    if (this.type !== Icmpv6Type.MLD_QUERY) return true; // v1 reports may carry trailing bytes
    return this.length >= MLDV2_QUERY_MIN_LEN && MLDV2_QUERY_MIN_LEN + IPV6_ADDR_LEN * this.sourceCount <= this.length;
  }

  get type(): number {
    return get8(this.bytes, this.offset + F.TYPE);
  }
  get code(): number {
    return get8(this.bytes, this.offset + F.CODE);
  }
  /** For a checked query: 1 or 2 (RFC 3810 section 8.1). */
  get queryVersion(): number {
    return this.length >= MLDV2_QUERY_MIN_LEN ? 2 : 1;
  }
  /** The raw field: v1 milliseconds, v2 a code (see maxResponseDelay). */
  get maxRespCode(): number {
    return get16(this.bytes, this.offset + F.MAX_RESP);
  }
  set maxRespCode(v: number) {
    set16(this.bytes, this.offset + F.MAX_RESP, v);
  }
  /** Maximum response delay in milliseconds. */
  get maxResponseDelay(): number {
    return this.queryVersion === 2 ? mldv2DecodeMaxResponse(this.maxRespCode) : this.maxRespCode;
  }
  /** Absolute offset of the multicast address (:: in general queries). */
  get addressOffset(): number {
    return this.offset + F.ADDRESS;
  }

  // MLDv2 query fields; they read as 0 on 24-byte (v1) messages.
  get suppressRouterProcessing(): boolean {
    return this.length >= MLDV2_QUERY_MIN_LEN && (get8(this.bytes, this.offset + F.S_QRV) & 0x08) !== 0;
  }
  get qrv(): number {
    return this.length >= MLDV2_QUERY_MIN_LEN ? get8(this.bytes, this.offset + F.S_QRV) & 0x07 : 0;
  }
  get qqic(): number {
    return this.length >= MLDV2_QUERY_MIN_LEN ? get8(this.bytes, this.offset + F.QQIC) : 0;
  }
  /** Querier's query interval in seconds (same encoding as IGMPv3's QQIC). */
  get queryInterval(): number {
    return igmpv3DecodeCode(this.qqic);
  }
  get sourceCount(): number {
    return this.length >= MLDV2_QUERY_MIN_LEN ? get16(this.bytes, this.offset + F.NUM_SOURCES) : 0;
  }
  /** Absolute offset of source `i`, i < sourceCount. */
  sourceOffset(i: number): number {
    return this.offset + F.SOURCES + IPV6_ADDR_LEN * i;
  }
}

/** A view of an MLDv2 report (type 143). */
export class Mldv2Report extends WireView {
  /** Holds its header and all the records it announces. */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < F.RECORDS) return false;
    return recordValidator.at(this.bytes, this.offset, this.length).validate();
  }

  get type(): number {
    return get8(this.bytes, this.offset + F.TYPE);
  }
  get recordCount(): number {
    return get16(this.bytes, this.offset + F.NUM_RECORDS);
  }
}

/** Walks the multicast address records of an MLDv2 report (see GroupRecordIterator). */
export class MldRecordIterator extends GroupRecordIterator {
  constructor() {
    super(16);
  }
}

const recordValidator = new MldRecordIterator();

// ---- Emitters: whole ICMPv6 messages with checksum; `src`/`dst` are the IPv6 addresses ----

export interface Mldv1Repr {
  /** MLD_QUERY, MLD_REPORT or MLD_DONE. */
  type: number;
  /** Milliseconds (queries), 0 otherwise. */
  maxResponseDelay: number;
  address: Uint8Array; // 16 bytes
}

/** Writes a 24-byte MLDv1 message; returns 24 or -1. */
export function emitMldv1(buf: Uint8Array, off: number, repr: Mldv1Repr, src: Uint8Array, dst: Uint8Array): number {
  if (!rangeOk(buf, off, MLDV1_LEN)) return -1;
  emitMldv1Fields(buf, off, repr.type, repr.maxResponseDelay, repr.address);
  fillIcmpv6Checksum(buf, off, MLDV1_LEN, src, dst);
  return MLDV1_LEN;
}

/** The fields of an MLDv1 message, which an MLDv2 query begins with (RFC 3810 §5.1): type, code
 *  0, maximum response, reserved, multicast address. */
function emitMldv1Fields(buf: Uint8Array, off: number, type: number, maxResponse: number, address: Uint8Array): void {
  set8(buf, off + F.TYPE, type);
  set8(buf, off + F.CODE, 0);
  set16(buf, off + F.MAX_RESP, maxResponse);
  set16(buf, off + F.RESERVED, 0);
  copyBytes(buf, off + F.ADDRESS, address, 0, IPV6_ADDR_LEN);
}

export interface Mldv2QueryRepr {
  /** Encoded (see mldv2EncodeMaxResponse). */
  maxRespCode: number;
  address: Uint8Array; // 16 bytes; :: for a general query
  suppressRouterProcessing: boolean;
  qrv: number;
  qqic: number;
  sources: Uint8Array[];
}

export function emitMldv2Query(buf: Uint8Array, off: number, repr: Mldv2QueryRepr, src: Uint8Array, dst: Uint8Array): number {
  const len = MLDV2_QUERY_MIN_LEN + IPV6_ADDR_LEN * repr.sources.length;
  if (!rangeOk(buf, off, len)) return -1;
  emitMldv1Fields(buf, off, Icmpv6Type.MLD_QUERY, repr.maxRespCode, repr.address);
  set8(buf, off + F.S_QRV, (repr.suppressRouterProcessing ? 0x08 : 0) | (repr.qrv & 0x07));
  set8(buf, off + F.QQIC, repr.qqic);
  set16(buf, off + F.NUM_SOURCES, repr.sources.length);
  for (let i = 0; i < repr.sources.length; i++) {
    copyBytes(buf, off + F.SOURCES + IPV6_ADDR_LEN * i, repr.sources[i]!, 0, IPV6_ADDR_LEN);
  }
  fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

export interface MldRecordRepr {
  type: number;
  address: Uint8Array; // 16 bytes
  sources: Uint8Array[];
}

/** Writes an MLDv2 report (no auxiliary data); returns its length or -1. */
export function emitMldv2Report(buf: Uint8Array, off: number, records: MldRecordRepr[], src: Uint8Array, dst: Uint8Array): number {
  const len = groupReportLength(records, IPV6_ADDR_LEN);
  if (!rangeOk(buf, off, len)) return -1;
  set8(buf, off + F.TYPE, Icmpv6Type.MLDV2_REPORT);
  set8(buf, off + F.CODE, 0);
  emitGroupRecords(buf, off, records, IPV6_ADDR_LEN, putMldRecordAddresses);
  fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

/** A record's multicast address, then its sources. */
function putMldRecordAddresses(buf: Uint8Array, at: number, r: MldRecordRepr): void {
  copyBytes(buf, at, r.address, 0, IPV6_ADDR_LEN);
  for (let i = 0; i < r.sources.length; i++) copyBytes(buf, at + IPV6_ADDR_LEN * (1 + i), r.sources[i]!, 0, IPV6_ADDR_LEN);
}
