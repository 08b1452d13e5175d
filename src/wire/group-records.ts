// The group records of an IGMPv3 report (RFC 3376 §4.2) and of an MLDv2 report (RFC 3810 §5.2):
// the same layout in both, but for the size of an address (4 or 16 bytes). After the 8-byte
// header (the number of records at byte 6), each record is: type, auxiliary data length (in 32-bit
// words), number of sources, the group address, the sources, the auxiliary data.
import { get16, get8, set16, set8 } from './bytes.js';

const NUM_RECORDS = 6;
const RECORDS = 8;
const R = {
  TYPE: 0,
  AUX_LEN: 1,
  NUM_SOURCES: 2,
  ADDRESS: 4,
} as const;

/** Group record types, the same numbers in IGMPv3 (RFC 3376 §4.2.12) and MLDv2 (RFC 3810 §5.2.12). */
export const GroupRecordType = {
  MODE_IS_INCLUDE: 1,
  MODE_IS_EXCLUDE: 2,
  CHANGE_TO_INCLUDE: 3,
  CHANGE_TO_EXCLUDE: 4,
  ALLOW_NEW_SOURCES: 5,
  BLOCK_OLD_SOURCES: 6,
} as const;

/** What a report's writer needs to know of a record: its type and how many sources it has. */
export interface GroupRecordShape {
  type: number;
  sources: readonly unknown[];
}

/** The length of a report carrying `records` (no auxiliary data), its 8-byte header included. */
export function groupReportLength(records: readonly GroupRecordShape[], addressLength: 4 | 16): number {
  let len = RECORDS;
  for (const r of records) len += R.ADDRESS + addressLength * (1 + r.sources.length);
  return len;
}

/**
 * Writes the records part of the report at buf[off] (the caller checked its room with
 * groupReportLength and writes the type and checksum): the reserved bytes 4-5, the record count,
 * then each record's type, no auxiliary data, its number of sources, and `putAddresses` writing
 * its group address and sources at `at`.
 */
export function emitGroupRecords<T extends GroupRecordShape>(
  buf: Uint8Array,
  off: number,
  records: readonly T[],
  addressLength: 4 | 16,
  putAddresses: (buf: Uint8Array, at: number, record: T) => void,
): void {
  set16(buf, off + 4, 0);
  set16(buf, off + NUM_RECORDS, records.length);
  let p = off + RECORDS;
  for (const r of records) {
    set8(buf, p + R.TYPE, r.type);
    set8(buf, p + R.AUX_LEN, 0);
    set16(buf, p + R.NUM_SOURCES, r.sources.length);
    putAddresses(buf, p + R.ADDRESS, r);
    p += R.ADDRESS + addressLength * (1 + r.sources.length);
  }
}

/**
 * Walks the group records of a report. next() positions on the next record; false at the end
 * (after the report's record count) or when a record overruns the message (`error` set).
 */
export class GroupRecordIterator {
  bytes: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private end = 0;
  private remaining = 0;
  /** Absolute offset and total length of the current record. */
  offset = 0;
  length = 0;
  error = false;

  /** `addressLength`: 4 (IGMPv3) or 16 (MLDv2). */
  constructor(private readonly addressLength: 4 | 16) {}

  /** The smallest record: its header and group address. */
  get minRecordLength(): number {
    return R.ADDRESS + this.addressLength;
  }

  /** Iterates the records of the report at `reportOffset` (`reportLength` bytes, header included). */
  at(bytes: Uint8Array, reportOffset: number, reportLength: number): this {
    this.bytes = bytes;
    this.end = Math.min(reportOffset + reportLength, bytes.length);
    this.pos = reportOffset + RECORDS;
    this.error = this.pos > this.end;
    this.remaining = this.error ? 0 : get16(bytes, reportOffset + NUM_RECORDS);
    return this;
  }

  next(): boolean {
    if (this.error || this.remaining === 0) return false;
    if (this.pos + this.minRecordLength > this.end) return this.fail();
    const len = this.minRecordLength + this.addressLength * get16(this.bytes, this.pos + R.NUM_SOURCES) + 4 * get8(this.bytes, this.pos + R.AUX_LEN);
    if (this.pos + len > this.end) return this.fail();
    this.offset = this.pos;
    this.length = len;
    this.pos += len;
    this.remaining--;
    return true;
  }

  /** Every record fits (the iterator is left at the end). */
  validate(): boolean {
    while (this.next()) {
      // next() checks each record
    }
    return !this.error;
  }

  get recordType(): number {
    return get8(this.bytes, this.offset + R.TYPE);
  }
  /** Auxiliary data length in bytes. */
  get auxDataLength(): number {
    return 4 * get8(this.bytes, this.offset + R.AUX_LEN);
  }
  get sourceCount(): number {
    return get16(this.bytes, this.offset + R.NUM_SOURCES);
  }
  /** Absolute offset of the record's group address. */
  get addressOffset(): number {
    return this.offset + R.ADDRESS;
  }
  /** Absolute offset of source `i`. */
  sourceOffset(i: number): number {
    return this.offset + R.ADDRESS + this.addressLength * (1 + i);
  }

  private fail(): boolean {
    this.error = true;
    return false;
  }
}
