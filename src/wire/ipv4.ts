// IPv4 header, options and addresses.
//
// Read before editing: RFC 791 section 3.1 (header format; options on pages 15-23: record route,
// timestamp, "each option must appear at most once"), RFC 1122 section 3.2.1 (what a host must
// check on receive: version, header length, checksum; silently discard failures), RFC 1812 section
// 5.2.4 (option processing when forwarding), RFC 2113 (router alert), RFC 6864 (the ID field).
// Error pointers returned here are offsets from the start of the IP header, ready for an ICMP
// parameter problem (RFC 792). Addresses are uint32 numbers (always >>> 0).

import { internetChecksum, checksumUpdate16, verifyChecksum } from './checksum.js';
import { copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version|  IHL  |Type of Service|          Total Length         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Identification        |Flags|      Fragment Offset    |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Time to Live |    Protocol   |         Header Checksum       |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                       Source Address                          |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Destination Address                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Options                    |    Padding    |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const F = {
  VER_IHL: 0,
  TOS: 1,
  LENGTH: 2,
  IDENT: 4,
  FLG_OFF: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
  OPTIONS: 20,
} as const;

export const IPV4_MIN_HEADER_LEN = 20;
export const IPV4_MAX_HEADER_LEN = 60;

/** The 3-bit flags field: bit 0 reserved, DF, MF. */
export const Ipv4Flags = {
  MF: 0x1,
  DF: 0x2,
} as const;

/** Why check() refused a packet. All are silent discards (RFC 1122 section 3.2.1.1-3.2.1.2). */
export const Ipv4Error = {
  OK: 0,
  /** Shorter than 20 bytes. */
  TRUNCATED: 1,
  /** Version is not 4. */
  VERSION: 2,
  /** IHL below 5, or beyond the bytes we have. */
  HEADER_LENGTH: 3,
  /** Total length below the header length, or beyond the bytes we have. */
  TOTAL_LENGTH: 4,
} as const;
export type Ipv4Error = (typeof Ipv4Error)[keyof typeof Ipv4Error];

/**
 * A view of an IPv4 packet. `length` is what the link delivered; the packet itself is totalLength
 * bytes (Ethernet may pad short frames). check() does not verify the checksum: call verifyChecksum().
 */
export class Ipv4Packet extends WireView {
  /** Well-formed (see problem()). */
  check(): boolean {
    return this.problem() === Ipv4Error.OK;
  }

  /** The first thing wrong with it, or OK (0): for a counter or a test that names the fault. */
  problem(): Ipv4Error {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < IPV4_MIN_HEADER_LEN) {
      return Ipv4Error.TRUNCATED;
    }
    if (this.version !== 4) return Ipv4Error.VERSION;
    const hl = this.headerLength;
    if (hl < IPV4_MIN_HEADER_LEN || hl > this.length) return Ipv4Error.HEADER_LENGTH;
    const tl = this.totalLength;
    if (tl < hl || tl > this.length) return Ipv4Error.TOTAL_LENGTH;
    return Ipv4Error.OK;
  }

  get version(): number {
    return get8(this.bytes, this.offset + F.VER_IHL) >>> 4;
  }
  /** Header length in bytes (IHL * 4). */
  get headerLength(): number {
    return (get8(this.bytes, this.offset + F.VER_IHL) & 0x0f) * 4;
  }
  /** Sets version 4 and the header length in bytes (a multiple of 4, 20..60). */
  set headerLength(bytes: number) {
    set8(this.bytes, this.offset + F.VER_IHL, 0x40 | (bytes >>> 2));
  }
  get tos(): number {
    return get8(this.bytes, this.offset + F.TOS);
  }
  set tos(v: number) {
    set8(this.bytes, this.offset + F.TOS, v);
  }
  get dscp(): number {
    return this.tos >>> 2;
  }
  get ecn(): number {
    return this.tos & 0x03;
  }
  get totalLength(): number {
    return get16(this.bytes, this.offset + F.LENGTH);
  }
  set totalLength(v: number) {
    set16(this.bytes, this.offset + F.LENGTH, v);
  }
  get ident(): number {
    return get16(this.bytes, this.offset + F.IDENT);
  }
  set ident(v: number) {
    set16(this.bytes, this.offset + F.IDENT, v);
  }
  /** The 3-bit flags field (see Ipv4Flags). */
  get flags(): number {
    return get8(this.bytes, this.offset + F.FLG_OFF) >>> 5;
  }
  set flags(v: number) {
    const o = this.offset + F.FLG_OFF;
    set8(this.bytes, o, ((v & 0x7) << 5) | (get8(this.bytes, o) & 0x1f));
  }
  get dontFragment(): boolean {
    return (this.flags & Ipv4Flags.DF) !== 0;
  }
  get moreFragments(): boolean {
    return (this.flags & Ipv4Flags.MF) !== 0;
  }
  /** Fragment offset in bytes (the field counts 8-byte units). */
  get fragOffset(): number {
    return (get16(this.bytes, this.offset + F.FLG_OFF) & 0x1fff) * 8;
  }
  set fragOffset(bytes: number) {
    const o = this.offset + F.FLG_OFF;
    set16(this.bytes, o, (get16(this.bytes, o) & 0xe000) | ((bytes >>> 3) & 0x1fff));
  }
  /** Part of a fragmented datagram (MF set or a non-zero offset). */
  isFragment(): boolean {
    return (get16(this.bytes, this.offset + F.FLG_OFF) & 0x3fff) !== 0;
  }
  get ttl(): number {
    return get8(this.bytes, this.offset + F.TTL);
  }
  set ttl(v: number) {
    set8(this.bytes, this.offset + F.TTL, v);
  }
  get protocol(): number {
    return get8(this.bytes, this.offset + F.PROTOCOL);
  }
  set protocol(v: number) {
    set8(this.bytes, this.offset + F.PROTOCOL, v);
  }
  get checksum(): number {
    return get16(this.bytes, this.offset + F.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.bytes, this.offset + F.CHECKSUM, v);
  }
  get src(): number {
    return get32(this.bytes, this.offset + F.SRC);
  }
  set src(v: number) {
    set32(this.bytes, this.offset + F.SRC, v);
  }
  get dst(): number {
    return get32(this.bytes, this.offset + F.DST);
  }
  set dst(v: number) {
    set32(this.bytes, this.offset + F.DST, v);
  }
  /** Absolute offset of the options (there are headerLength - 20 bytes of them). */
  get optionsOffset(): number {
    return this.offset + F.OPTIONS;
  }
  get optionsLength(): number {
    return this.headerLength - IPV4_MIN_HEADER_LEN;
  }
  get payloadOffset(): number {
    return this.offset + this.headerLength;
  }
  /** Payload bytes per the total length field (link padding excluded). */
  get payloadLength(): number {
    return this.totalLength - this.headerLength;
  }

  verifyChecksum(): boolean {
    return verifyChecksum(this.bytes, this.offset, this.headerLength);
  }
  fillChecksum(): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.bytes, this.offset, this.headerLength);
  }

  /**
   * Decrements the TTL and patches the checksum incrementally (RFC 1624 section 4, the forwarding
   * case). The caller has checked ttl > 1 (RFC 1812 section 5.3.1).
   */
  decrementTtl(): void {
    const o = this.offset + F.TTL;
    const oldWord = get16(this.bytes, o);
    set8(this.bytes, o, get8(this.bytes, o) - 1);
    this.checksum = checksumUpdate16(this.checksum, oldWord, get16(this.bytes, o));
  }
}

export interface Ipv4Repr {
  src: number;
  dst: number;
  proto: number;
  ttl: number;
  /** Identification field. */
  id: number;
  /** See Ipv4Flags. */
  flags: number;
  /** In bytes; a multiple of 8. */
  fragOffset: number;
  payloadLength: number;
  tos: number;
  /** Raw option bytes, padded with EOL to a multiple of 4 when emitted (at most 40). */
  options?: Uint8Array;
}

/** Header length emitRepr will write: 20 plus the options rounded up to 4. */
export function ipv4HeaderLength(repr: Ipv4Repr): number {
  const optLen = repr.options ? repr.options.length : 0;
  return IPV4_MIN_HEADER_LEN + ((optLen + 3) & ~3);
}

/**
 * Writes an IPv4 header with its checksum. Returns the header length, or -1 when the buffer is too
 * small or the options exceed 40 bytes.
 */
export function emitIpv4Header(buf: Uint8Array, off: number, repr: Ipv4Repr): number {
  const hl = ipv4HeaderLength(repr);
  if (hl > IPV4_MAX_HEADER_LEN || !rangeOk(buf, off, hl)) return -1;
  set8(buf, off + F.VER_IHL, 0x40 | (hl >>> 2));
  set8(buf, off + F.TOS, repr.tos);
  set16(buf, off + F.LENGTH, hl + repr.payloadLength);
  set16(buf, off + F.IDENT, repr.id);
  set16(buf, off + F.FLG_OFF, ((repr.flags & 0x7) << 13) | ((repr.fragOffset >>> 3) & 0x1fff));
  set8(buf, off + F.TTL, repr.ttl);
  set8(buf, off + F.PROTOCOL, repr.proto);
  set16(buf, off + F.CHECKSUM, 0);
  set32(buf, off + F.SRC, repr.src);
  set32(buf, off + F.DST, repr.dst);
  if (repr.options) {
    const n = repr.options.length;
    copyBytes(buf, off + F.OPTIONS, repr.options, 0, n);
    buf.fill(Ipv4OptionType.EOL, off + F.OPTIONS + n, off + hl);
  }
  set16(buf, off + F.CHECKSUM, internetChecksum(buf, off, hl));
  return hl;
}

// ---- Options (RFC 791 pages 15-23) ----

export const Ipv4OptionType = {
  EOL: 0,
  NOP: 1,
  RECORD_ROUTE: 7,
  TIMESTAMP: 68,
  SECURITY: 130,
  LSRR: 131,
  SSRR: 137,
  ROUTER_ALERT: 148,
} as const;

/** Timestamp option flag values (the low nibble of its fourth byte). */
export const Ipv4TimestampFlag = {
  TS_ONLY: 0,
  TS_AND_ADDR: 1,
  TS_PRESPECIFIED: 3,
} as const;

// Offsets inside an option: type, length, pointer (1-based, RR/TS), overflow+flags (TS).
const OPT = { TYPE: 0, LENGTH: 1, POINTER: 2, OFLW_FLG: 3, RA_VALUE: 2 } as const;

/** The router alert option (RFC 2113): type 148, length 4, value 0. IGMP reports carry it. */
export const IPV4_ROUTER_ALERT_OPTION: Uint8Array = new Uint8Array([0x94, 0x04, 0x00, 0x00]);

/**
 * Walks the options of one IPv4 header. next() positions on the next option (NOP included) and
 * returns true; it returns false at the end of the list (EOL or end of header) or on a malformed
 * option, in which case errorPointer (offset from the IP header start) is >= 0.
 */
export class Ipv4OptionIterator {
  bytes: Uint8Array = new Uint8Array(0);
  /** Absolute offset of the IP header; pointers are relative to it. */
  headerOffset = 0;
  private pos = 0;
  private end = 0;
  /** Current option: its type, absolute offset and total length (1 for NOP). */
  type = 0;
  offset = 0;
  length = 0;
  errorPointer = -1;

  /** Iterates the options of the header at `headerOffset` whose length is `headerLength` bytes. */
  at(bytes: Uint8Array, headerOffset: number, headerLength: number): this {
    this.bytes = bytes;
    this.headerOffset = headerOffset;
    this.pos = headerOffset + IPV4_MIN_HEADER_LEN;
    this.end = Math.min(headerOffset + headerLength, bytes.length);
    this.errorPointer = -1;
    return this;
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    const t = this.bytes[this.pos]!;
    if (t === Ipv4OptionType.EOL) {
      this.pos = this.end;
      return false;
    }
    this.type = t;
    this.offset = this.pos;
    if (t === Ipv4OptionType.NOP) {
      this.length = 1;
      this.pos += 1;
      return true;
    }
    // Every other option has a length byte, which counts type and length too. A bad length is
    // blamed on the option's first byte, as Linux's ip_options_compile and gVisor do.
    if (this.pos + 1 >= this.end) return this.fail(this.pos);
    const len = this.bytes[this.pos + 1]!;
    if (len < 2 || this.pos + len > this.end) return this.fail(this.pos);
    this.length = len;
    this.pos += len;
    return true;
  }

  private fail(absolute: number): boolean {
    this.errorPointer = absolute - this.headerOffset;
    this.pos = this.end;
    return false;
  }
}

/** What parseIpv4Options found: absolute offsets of the options the stack acts on, -1 if absent. */
export class Ipv4OptionsInfo {
  recordRoute = -1;
  timestamp = -1;
  routerAlert = -1;
  /** Options of other types (copied or dropped by the caller, never interpreted). */
  unknown = 0;

  reset(): void {
    this.recordRoute = -1;
    this.timestamp = -1;
    this.routerAlert = -1;
    this.unknown = 0;
  }
}

// Scratch for duplicate detection and the iterator parseIpv4Options reuses (no per-packet allocation).
const seenOptionTypes = new Uint8Array(256);
const optionIterator = new Ipv4OptionIterator();

/**
 * Validates the options of the header at `headerOffset` and records where the known ones are.
 * Returns -1 when they are acceptable, else the parameter problem pointer (from the header start).
 *
 * Checks, following gVisor's processIPOptions (itself matching Linux's ip_options_compile): the TLV
 * structure, "each option must appear at most once" except NOP (RFC 791), record route and
 * timestamp lengths, pointers and flags, router alert value 0 (RFC 2113 section 2.1).
 */
export function parseIpv4Options(bytes: Uint8Array, headerOffset: number, headerLength: number, out: Ipv4OptionsInfo): number {
  out.reset();
  const it = optionIterator.at(bytes, headerOffset, headerLength);
  seenOptionTypes.fill(0);
  let problem = -1;
  while (it.next()) {
    if (it.type === Ipv4OptionType.NOP) continue;
    // The lengths the known types need are checked before duplicates, as gVisor's iterator does.
    if (knownLengthBad(it.type, it.length)) {
      problem = it.offset - headerOffset + OPT.LENGTH;
      break;
    }
    if (seenOptionTypes[it.type] !== 0) {
      problem = it.offset - headerOffset;
      break;
    }
    seenOptionTypes[it.type] = 1;
    let bad = -1;
    switch (it.type) {
      case Ipv4OptionType.RECORD_ROUTE:
        bad = checkRecordRoute(bytes, it.offset, it.length);
        out.recordRoute = it.offset;
        break;
      case Ipv4OptionType.TIMESTAMP:
        bad = checkTimestamp(bytes, it.offset, it.length);
        out.timestamp = it.offset;
        break;
      case Ipv4OptionType.ROUTER_ALERT:
        bad = checkRouterAlert(bytes, it.offset, it.length);
        out.routerAlert = it.offset;
        break;
      default:
        out.unknown++;
    }
    if (bad >= 0) {
      problem = it.offset - headerOffset + bad;
      break;
    }
  }
  if (problem < 0) problem = it.errorPointer;
  if (problem >= 0) out.reset();
  return problem;
}

/** The minimum lengths gVisor's option iterator enforces per known type (pointer: the length). */
function knownLengthBad(type: number, len: number): boolean {
  switch (type) {
    case Ipv4OptionType.TIMESTAMP:
      return len < 4;
    case Ipv4OptionType.RECORD_ROUTE:
      return len < 3;
    case Ipv4OptionType.ROUTER_ALERT:
      return len !== 4;
    default:
      return false;
  }
}

/**
 * What processing does with the options of a datagram, after gVisor's optionUsage* types (its
 * pkg/tcpip/network/ipv4/ipv4.go). Record route and timestamp are checked always and updated with our
 * address and time when processed; router alert is checked and kept; unknown options are kept or
 * dropped.
 */
export const Ipv4OptionsUsage = {
  /** A fragment before reassembly: check only (unknown options dropped from the output). */
  VERIFY: 0,
  /** A datagram delivered to us: record route and timestamp processed, unknown options kept. */
  RECEIVE: 1,
  /** A datagram routed on: as RECEIVE (RFC 1812 §5.2.4). */
  FORWARD: 2,
  /** An echo request: record route and timestamp processed for the reply, unknown options
   *  dropped (RFC 1122 §3.2.2.6). */
  ECHO: 3,
} as const;
export type Ipv4OptionsUsage = (typeof Ipv4OptionsUsage)[keyof typeof Ipv4OptionsUsage];

/** What processIpv4Options found and built. */
export class Ipv4OptionsResult {
  /** Parameter problem pointer (from the IP header start), or -1 when the options are fine. */
  problem = -1;
  /** Length of the rebuilt option list written to `out`, EOL-padded to a multiple of 4. */
  length = 0;
  recordRoute = false;
  timestamp = false;
  routerAlert = false;

  reset(): void {
    this.problem = -1;
    this.length = 0;
    this.recordRoute = false;
    this.timestamp = false;
    this.routerAlert = false;
  }
}

/**
 * Checks and processes the options of the header at `headerOffset` as gVisor's processIPOptions
 * does for `usage`, building the resulting option list in `out` (at least 40 bytes; the packet
 * itself is never written). Record route stores `localAddr`; timestamp stores `timestamp` (ms since
 * midnight UT, RFC 791 page 22) and, per its flags, `localAddr`, or counts an overflow when full.
 * Returns false with `result.problem` set on a malformed option: the pointer for the ICMP parameter
 * problem (Linux's choices, which gVisor copies: the option's first byte for a bad length or a
 * duplicate, its length byte for a known type's minimum, then the field at fault).
 */
export function processIpv4Options(
  bytes: Uint8Array,
  headerOffset: number,
  headerLength: number,
  usage: Ipv4OptionsUsage,
  localAddr: number,
  timestamp: number,
  out: Uint8Array,
  result: Ipv4OptionsResult,
): boolean {
  result.reset();
  seenOptionTypes.fill(0);
  const end = Math.min(headerOffset + headerLength, bytes.length);
  const process = usage !== Ipv4OptionsUsage.VERIFY;
  const keepUnknown = usage === Ipv4OptionsUsage.RECEIVE || usage === Ipv4OptionsUsage.FORWARD;
  const fail = (absolute: number): boolean => {
    result.problem = absolute - headerOffset;
    result.length = 0;
    return false;
  };
  let w = 0;
  let pos = headerOffset + IPV4_MIN_HEADER_LEN;
  while (pos < end) {
    const type = bytes[pos]!;
    if (type === Ipv4OptionType.NOP) {
      out[w++] = type;
      pos++;
      continue;
    }
    if (type === Ipv4OptionType.EOL) break;
    if (pos + 1 >= end) return fail(pos);
    const len = bytes[pos + 1]!;
    if (len < 2 || pos + len > end) return fail(pos);
    if (knownLengthBad(type, len)) return fail(pos + OPT.LENGTH);
    // "Each option must appear at most once" (NOP excepted).
    if (seenOptionTypes[type] !== 0) return fail(pos);
    seenOptionTypes[type] = 1;
    const known = type === Ipv4OptionType.RECORD_ROUTE || type === Ipv4OptionType.TIMESTAMP || type === Ipv4OptionType.ROUTER_ALERT;
    if (known || keepUnknown) {
      // Worked on a copy in `out`: the datagram as received stays intact for ICMP quotes.
      copyBytes(out, w, bytes, pos, len);
      let bad = -1;
      switch (type) {
        case Ipv4OptionType.RECORD_ROUTE:
          result.recordRoute = true;
          bad = checkRecordRoute(out, w, len);
          if (bad < 0 && process) recordRouteStore(out, w, localAddr);
          break;
        case Ipv4OptionType.TIMESTAMP:
          result.timestamp = true;
          bad = checkTimestamp(out, w, len);
          if (bad < 0 && process) timestampStore(out, w, localAddr, timestamp);
          break;
        case Ipv4OptionType.ROUTER_ALERT:
          result.routerAlert = true;
          bad = checkRouterAlert(out, w, len);
          break;
      }
      if (bad >= 0) return fail(pos + bad);
      w += len;
    }
    pos += len;
  }
  // RFC 791 page 31: the list is padded to a 32-bit boundary with zeros (EOL).
  const padded = (w + 3) & ~3;
  out.fill(Ipv4OptionType.EOL, w, padded);
  result.length = padded;
  return true;
}

// Record route (RFC 791 page 20):
// +--------+--------+--------+---------//--------+
// |00000111| length | pointer|     route data    |
// +--------+--------+--------+---------//--------+

/** Validates a record route option; -1 if fine, else the offending offset inside the option. */
export function checkRecordRoute(bytes: Uint8Array, optOff: number, optLen: number): number {
  if (optLen < 3 + 4) return OPT.LENGTH;
  const pointer = bytes[optOff + OPT.POINTER]!;
  // "The pointer is relative to this option, and the smallest legal value for the pointer is 4."
  if (pointer < 4) return OPT.POINTER;
  // Full: "the datagram is forwarded without inserting the address".
  if (pointer > optLen) return -1;
  // "If there is some room but not enough room for a full address to be inserted, the original
  // datagram is considered to be in error" (Linux blames the pointer, whichever is wrong).
  if (pointer + 4 > optLen + 1) return OPT.POINTER;
  return -1;
}

/** Records `addr` in a validated record route option if there is room; returns whether it did. */
export function recordRouteStore(bytes: Uint8Array, optOff: number, addr: number): boolean {
  const optLen = bytes[optOff + OPT.LENGTH]!;
  const pointer = bytes[optOff + OPT.POINTER]!;
  if (pointer + 3 > optLen) return false;
  set32(bytes, optOff + pointer - 1, addr);
  bytes[optOff + OPT.POINTER] = pointer + 4;
  return true;
}

// Internet timestamp (RFC 791 page 22):
// +--------+--------+--------+--------+
// |01000100| length | pointer|oflw|flg|
// +--------+--------+--------+--------+
// |         internet address          |
// +--------+--------+--------+--------+
// |             timestamp             |
// +--------+--------+--------+--------+

function timestampEntrySize(flags: number): number {
  switch (flags) {
    case Ipv4TimestampFlag.TS_ONLY:
      return 4;
    case Ipv4TimestampFlag.TS_AND_ADDR:
    case Ipv4TimestampFlag.TS_PRESPECIFIED:
      return 8;
    default:
      return 0;
  }
}

/** Validates a timestamp option; -1 if fine, else the offending offset inside the option. */
export function checkTimestamp(bytes: Uint8Array, optOff: number, optLen: number): number {
  if (optLen < 4) return OPT.LENGTH;
  const oflwFlg = bytes[optOff + OPT.OFLW_FLG]!;
  const flags = oflwFlg & 0x0f;
  const entry = timestampEntrySize(flags);
  if (entry === 0) return OPT.OFLW_FLG;
  const pointer = bytes[optOff + OPT.POINTER]!;
  // "The smallest legal value is 5."
  if (pointer < 5) return OPT.POINTER;
  if (pointer > optLen) {
    // Full: the overflow count is incremented, and overflowing it is an error (RFC 791 page 22).
    if (flags !== Ipv4TimestampFlag.TS_PRESPECIFIED && oflwFlg >>> 4 === 15) return OPT.OFLW_FLG;
    return -1;
  }
  if (pointer - 5 + entry > optLen - 4) return OPT.POINTER;
  return -1;
}

/**
 * Processes a validated timestamp option in place: stores the timestamp (milliseconds since midnight
 * UT) and, per the flags, our address; or bumps the overflow count when the option is full.
 */
export function timestampStore(bytes: Uint8Array, optOff: number, addr: number, timestamp: number): void {
  const optLen = bytes[optOff + OPT.LENGTH]!;
  const pointer = bytes[optOff + OPT.POINTER]!;
  const oflwFlg = bytes[optOff + OPT.OFLW_FLG]!;
  const flags = oflwFlg & 0x0f;
  if (pointer > optLen) {
    if (flags !== Ipv4TimestampFlag.TS_PRESPECIFIED) {
      bytes[optOff + OPT.OFLW_FLG] = (((oflwFlg >>> 4) + 1) << 4) | flags;
    }
    return;
  }
  const slot = optOff + pointer - 1;
  switch (flags) {
    case Ipv4TimestampFlag.TS_ONLY:
      set32(bytes, slot, timestamp);
      bytes[optOff + OPT.POINTER] = pointer + 4;
      break;
    case Ipv4TimestampFlag.TS_AND_ADDR:
      set32(bytes, slot, addr);
      set32(bytes, slot + 4, timestamp);
      bytes[optOff + OPT.POINTER] = pointer + 8;
      break;
    case Ipv4TimestampFlag.TS_PRESPECIFIED:
      // Only the named address fills in its slot.
      if (get32(bytes, slot) === addr >>> 0) {
        set32(bytes, slot + 4, timestamp);
        bytes[optOff + OPT.POINTER] = pointer + 8;
      }
      break;
  }
}

/** Validates a router alert option; -1 if fine, else the offending offset inside the option. */
export function checkRouterAlert(bytes: Uint8Array, optOff: number, optLen: number): number {
  if (optLen !== 4) return OPT.LENGTH;
  // "0 - Router shall examine packet; 1-65535 - Reserved" (RFC 2113 section 2.1).
  if (get16(bytes, optOff + OPT.RA_VALUE) !== 0) return OPT.RA_VALUE;
  return -1;
}

// ---- Address helpers ----

export const IPV4_BROADCAST = 0xffffffff;
export const IPV4_UNSPECIFIED = 0;

export function ipv4Read(b: Uint8Array, off: number): number {
  return get32(b, off);
}
export function ipv4Write(b: Uint8Array, off: number, addr: number): void {
  set32(b, off, addr);
}
/** Builds an address from four octets: ipv4(10, 0, 2, 2). */
export function ipv4(a: number, b: number, c: number, d: number): number {
  return (((a & 0xff) << 24) | ((b & 0xff) << 16) | ((c & 0xff) << 8) | (d & 0xff)) >>> 0;
}
export function ipv4IsUnspecified(addr: number): boolean {
  return addr === 0;
}
export function ipv4IsBroadcast(addr: number): boolean {
  return addr >>> 0 === IPV4_BROADCAST;
}
/** 224.0.0.0/4 (RFC 5771). */
export function ipv4IsMulticast(addr: number): boolean {
  return addr >>> 28 === 0xe;
}
/** 224.0.0.0/24, never forwarded (RFC 5771 section 4). */
export function ipv4IsLinkLocalMulticast(addr: number): boolean {
  return addr >>> 8 === 0xe00000;
}
/** 127.0.0.0/8. */
export function ipv4IsLoopback(addr: number): boolean {
  return addr >>> 24 === 127;
}
/** 169.254.0.0/16 (RFC 3927). */
export function ipv4IsLinkLocal(addr: number): boolean {
  return addr >>> 16 === 0xa9fe;
}
/** Netmask for a prefix length: 24 -> 255.255.255.0. */
export function ipv4PrefixMask(prefixLength: number): number {
  return maskBits(prefixLength) >>> 0;
}
/** The netmask as the bitwise operators give it, signed: the per-frame subnet checks use it, as
 *  V8 boxes an unsigned mask from 2^31 up (any prefix) wherever the call is not inlined. */
function maskBits(prefixLength: number): number {
  return prefixLength <= 0 ? 0 : 0xffffffff << (32 - Math.min(prefixLength, 32));
}
export function ipv4InSubnet(addr: number, network: number, prefixLength: number): boolean {
  const mask = maskBits(prefixLength);
  return (addr & mask) === (network & mask);
}
/** The directed broadcast address of a subnet. */
export function ipv4SubnetBroadcast(network: number, prefixLength: number): number {
  return (network | ~maskBits(prefixLength)) >>> 0;
}

/** "10.0.2.15", for logs. */
export function formatIpv4(addr: number): string {
  return `${addr >>> 24}.${(addr >>> 16) & 0xff}.${(addr >>> 8) & 0xff}.${addr & 0xff}`;
}

/** Parses dotted-quad text; returns null when malformed. For configuration and tests. */
export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v >>> 0;
}
