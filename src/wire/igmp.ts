// IGMP versions 1, 2 and 3.
//
// Read before editing: RFC 1112 appendix I (v1), RFC 2236 section 2 (v2 format, leave), RFC 3376
// sections 4 (v3 query and report formats; 4.1.1 the max resp code encoding), 7.1 (telling query
// versions apart by length: 8 bytes with max resp 0 is v1, 8 bytes is v2, 12 or more is v3, others
// are ignored), RFC 2113 (reports carry the router alert option). Addresses are uint32 numbers.

import { get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';
import { GroupRecordIterator, GroupRecordType, emitGroupRecords, groupReportLength } from './group-records.js';
import { internetChecksum, verifyChecksum } from './checksum.js';

// IGMPv1/v2 messages (RFC 2236 section 2):
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |      Type     | Max Resp Time |           Checksum            |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                         Group Address                         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// IGMPv3 query (RFC 3376 section 4.1) continues with:
// | Resv  |S| QRV |     QQIC      |     Number of Sources (N)     |
// |                       Source Address [1..N]                   |
// IGMPv3 report (section 4.2):
// |  Type = 0x22  |    Reserved   |           Checksum            |
// |           Reserved            |  Number of Group Records (M)  |
// |                        Group Record [1..M]                    |
const F = {
  TYPE: 0,
  MAX_RESP: 1,
  CHECKSUM: 2,
  GROUP: 4,
  S_QRV: 8,
  QQIC: 9,
  NUM_SOURCES: 10,
  SOURCES: 12,
  NUM_RECORDS: 6,
  RECORDS: 8,
} as const;

export const IGMP_HEADER_LEN = 8;
export const IGMPV3_QUERY_MIN_LEN = 12;
export const IGMPV3_RECORD_MIN_LEN = 8;

export const IgmpType = {
  MEMBERSHIP_QUERY: 0x11,
  V1_MEMBERSHIP_REPORT: 0x12,
  V2_MEMBERSHIP_REPORT: 0x16,
  V2_LEAVE_GROUP: 0x17,
  V3_MEMBERSHIP_REPORT: 0x22,
} as const;

/** Group record types (RFC 3376 section 4.2.12). */
export const IgmpRecordType = GroupRecordType;

/** 224.0.0.1, 224.0.0.2, 224.0.0.22 (where v3 reports go). */
export const IGMP_ALL_SYSTEMS = 0xe0000001;
export const IGMP_ALL_ROUTERS = 0xe0000002;
export const IGMPV3_ALL_ROUTERS = 0xe0000016;

/**
 * Decodes an IGMPv3 Max Resp Code or QQIC (RFC 3376 sections 4.1.1 and 4.1.7): below 128 the value
 * itself, else a float with 3-bit exponent and 4-bit mantissa.
 */
export function igmpv3DecodeCode(code: number): number {
  if (code < 128) return code;
  const mant = code & 0x0f;
  const exp = (code >>> 4) & 0x07;
  return (mant | 0x10) << (exp + 3);
}

/** The code whose decoded value is the largest not above `value` (values above 31744 saturate). */
export function igmpv3EncodeCode(value: number): number {
  if (value < 128) return Math.max(0, Math.floor(value));
  for (let exp = 7; exp >= 0; exp--) {
    const mant = Math.floor(value / (1 << (exp + 3))) - 0x10;
    if (mant >= 0) return 0x80 | (exp << 4) | Math.min(mant, 0x0f);
  }
  return 127;
}

/** A view of an IGMP message (the whole IP payload). */
export class IgmpPacket extends WireView {
  /**
   * Long enough for its type: 8 bytes; a query of 9-11 bytes is invalid (RFC 3376 section 7.1), a v3
   * query must hold its sources, a v3 report all its group records.
   */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < IGMP_HEADER_LEN) return false;
    switch (this.type) {
      case IgmpType.MEMBERSHIP_QUERY:
        if (this.length === IGMP_HEADER_LEN) return true;
        return this.length >= IGMPV3_QUERY_MIN_LEN && IGMPV3_QUERY_MIN_LEN + 4 * this.sourceCount <= this.length;
      case IgmpType.V3_MEMBERSHIP_REPORT:
        return recordValidator.at(this.bytes, this.offset, this.length).validate();
      default:
        return true;
    }
  }

  get type(): number {
    return get8(this.bytes, this.offset + F.TYPE);
  }
  set type(v: number) {
    set8(this.bytes, this.offset + F.TYPE, v);
  }
  /** v1: 0 (unused); v2: tenths of a second; v3: a code, see maxResponseTime. */
  get maxRespCode(): number {
    return get8(this.bytes, this.offset + F.MAX_RESP);
  }
  set maxRespCode(v: number) {
    set8(this.bytes, this.offset + F.MAX_RESP, v);
  }
  get checksum(): number {
    return get16(this.bytes, this.offset + F.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.bytes, this.offset + F.CHECKSUM, v);
  }
  /** Group address (0 in general queries and v3 reports). */
  get group(): number {
    return get32(this.bytes, this.offset + F.GROUP);
  }
  set group(v: number) {
    set32(this.bytes, this.offset + F.GROUP, v);
  }

  /** For a checked query: 1, 2 or 3 (RFC 3376 section 7.1). */
  get queryVersion(): number {
    if (this.length >= IGMPV3_QUERY_MIN_LEN) return 3;
    return this.maxRespCode === 0 ? 1 : 2;
  }
  /** Maximum response time of a query in tenths of a second (v1 queries: 100, RFC 2236 section 4). */
  get maxResponseTime(): number {
    switch (this.queryVersion) {
      case 1:
        return 100;
      case 2:
        return this.maxRespCode;
      default:
        return igmpv3DecodeCode(this.maxRespCode);
    }
  }

  // IGMPv3 query fields; they read as 0 on shorter (v1/v2) messages.
  get suppressRouterProcessing(): boolean {
    return this.length >= IGMPV3_QUERY_MIN_LEN && (get8(this.bytes, this.offset + F.S_QRV) & 0x08) !== 0;
  }
  get qrv(): number {
    return this.length >= IGMPV3_QUERY_MIN_LEN ? get8(this.bytes, this.offset + F.S_QRV) & 0x07 : 0;
  }
  get qqic(): number {
    return this.length >= IGMPV3_QUERY_MIN_LEN ? get8(this.bytes, this.offset + F.QQIC) : 0;
  }
  /** Querier's query interval in seconds. */
  get queryInterval(): number {
    return igmpv3DecodeCode(this.qqic);
  }
  get sourceCount(): number {
    return this.length >= IGMPV3_QUERY_MIN_LEN ? get16(this.bytes, this.offset + F.NUM_SOURCES) : 0;
  }
  /** Source `i` of a v3 query, i < sourceCount. */
  source(i: number): number {
    return get32(this.bytes, this.offset + F.SOURCES + 4 * i);
  }

  // IGMPv3 report fields.
  get recordCount(): number {
    return get16(this.bytes, this.offset + F.NUM_RECORDS);
  }

  verifyChecksum(): boolean {
    return verifyChecksum(this.bytes, this.offset, this.length);
  }
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.bytes, this.offset, this.length);
  }
}

/** Walks the group records of an IGMPv3 report (see GroupRecordIterator): the group and the
 *  sources as IPv4 addresses. */
export class IgmpGroupRecordIterator extends GroupRecordIterator {
  constructor() {
    super(4);
  }

  get group(): number {
    return get32(this.bytes, this.addressOffset);
  }
  source(i: number): number {
    return get32(this.bytes, this.sourceOffset(i));
  }
}

const recordValidator = new IgmpGroupRecordIterator();

export interface IgmpRepr {
  type: number;
  /** v2: tenths of a second; 0 for reports, leaves and v1 queries. */
  maxRespTime: number;
  group: number;
}

/** Writes an 8-byte IGMPv1/v2 message with checksum; returns 8 or -1. */
export function emitIgmp(buf: Uint8Array, off: number, repr: IgmpRepr): number {
  if (!rangeOk(buf, off, IGMP_HEADER_LEN)) return -1;
  set8(buf, off + F.TYPE, repr.type);
  set8(buf, off + F.MAX_RESP, repr.maxRespTime);
  set16(buf, off + F.CHECKSUM, 0);
  set32(buf, off + F.GROUP, repr.group);
  set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, IGMP_HEADER_LEN));
  return IGMP_HEADER_LEN;
}

export interface IgmpV3QueryRepr {
  /** Encoded code (see igmpv3EncodeCode). */
  maxRespCode: number;
  group: number;
  suppressRouterProcessing: boolean;
  qrv: number;
  qqic: number;
  sources: number[];
}

/** Writes an IGMPv3 query with checksum; returns its length or -1. */
export function emitIgmpV3Query(buf: Uint8Array, off: number, repr: IgmpV3QueryRepr): number {
  const len = IGMPV3_QUERY_MIN_LEN + 4 * repr.sources.length;
  if (!rangeOk(buf, off, len)) return -1;
  set8(buf, off + F.TYPE, IgmpType.MEMBERSHIP_QUERY);
  set8(buf, off + F.MAX_RESP, repr.maxRespCode);
  set16(buf, off + F.CHECKSUM, 0);
  set32(buf, off + F.GROUP, repr.group);
  set8(buf, off + F.S_QRV, (repr.suppressRouterProcessing ? 0x08 : 0) | (repr.qrv & 0x07));
  set8(buf, off + F.QQIC, repr.qqic);
  set16(buf, off + F.NUM_SOURCES, repr.sources.length);
  for (let i = 0; i < repr.sources.length; i++) set32(buf, off + F.SOURCES + 4 * i, repr.sources[i]!);
  set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, len));
  return len;
}

export interface IgmpGroupRecordRepr {
  type: number;
  group: number;
  sources: number[];
}

/** Writes an IGMPv3 report (no auxiliary data) with checksum; returns its length or -1. */
export function emitIgmpV3Report(buf: Uint8Array, off: number, records: IgmpGroupRecordRepr[]): number {
  const len = groupReportLength(records, 4);
  if (!rangeOk(buf, off, len)) return -1;
  set8(buf, off + F.TYPE, IgmpType.V3_MEMBERSHIP_REPORT);
  set8(buf, off + 1, 0);
  set16(buf, off + F.CHECKSUM, 0);
  emitGroupRecords(buf, off, records, 4, putIgmpRecordAddresses);
  set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, len));
  return len;
}

/** A record's group, then its sources. */
function putIgmpRecordAddresses(buf: Uint8Array, at: number, r: IgmpGroupRecordRepr): void {
  set32(buf, at, r.group);
  for (let i = 0; i < r.sources.length; i++) set32(buf, at + 4 * (1 + i), r.sources[i]!);
}
