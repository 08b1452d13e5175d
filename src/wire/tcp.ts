// TCP header and options.
//
// Read before editing: RFC 9293 sections 3.1 (header format, options; "a TCP implementation MUST be
// able to receive a TCP option in any segment" and MUST ignore unknown ones) and 3.7.1 (MSS),
// RFC 7323 sections 2 (window scale) and 3 (timestamps), RFC 2018 section 3 (SACK-permitted and
// SACK blocks), RFC 3168 section 6.1 (ECE and CWR). Checksum: RFC 9293 section 3.1 with the
// pseudo-headers of checksum.ts.

import { doubleFields, get16, get32, get8, rangeOk, set16, set32, set8 } from './bytes.js';
import { internetChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6, verifyFromSum, verifyTransportV4, verifyTransportV6 } from './checksum.js';
import { IpProtocol, PortsView } from './ip.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          Source Port          |       Destination Port        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                        Sequence Number                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                    Acknowledgment Number                      |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Data |       |C|E|U|A|P|R|S|F|                               |
// | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
// |       |       |R|E|G|K|H|T|N|N|                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           Checksum            |         Urgent Pointer        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                           [Options]                           |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const F = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFFSET: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
  OPTIONS: 20,
} as const;

export const TCP_MIN_HEADER_LEN = 20;
export const TCP_MAX_HEADER_LEN = 60;

export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

export const TcpError = {
  OK: 0,
  /** Shorter than 20 bytes. */
  TRUNCATED: 1,
  /** Data offset below 5, or beyond the segment. */
  HEADER_LENGTH: 2,
} as const;
export type TcpError = (typeof TcpError)[keyof typeof TcpError];

/** A view of a TCP segment; `length` is the IP payload length. */
export class TcpSegment extends PortsView {
  /** Well-formed (see problem()). */
  check(): boolean {
    return this.problem() === TcpError.OK;
  }

  /** The first thing wrong with it, or OK (0): for a counter or a test that names the fault. */
  problem(): TcpError {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < TCP_MIN_HEADER_LEN) return TcpError.TRUNCATED;
    const hl = this.headerLength;
    if (hl < TCP_MIN_HEADER_LEN || hl > this.length) return TcpError.HEADER_LENGTH;
    return TcpError.OK;
  }

  get seq(): number {
    return get32(this.bytes, this.offset + F.SEQ);
  }
  set seq(v: number) {
    set32(this.bytes, this.offset + F.SEQ, v);
  }
  get ack(): number {
    return get32(this.bytes, this.offset + F.ACK);
  }
  set ack(v: number) {
    set32(this.bytes, this.offset + F.ACK, v);
  }
  /** The sequence and acknowledgment numbers as signed 32-bit integers, the form the TCP endpoint's
   *  sequence arithmetic works in. A number of 2^31 or more is a heap number in V8: each
   *  read of `seq` or `ack` past a call boundary would allocate one, for half the sequence space. */
  get seqI32(): number {
    return get32(this.bytes, this.offset + F.SEQ) | 0;
  }
  get ackI32(): number {
    return get32(this.bytes, this.offset + F.ACK) | 0;
  }
  /** Header length in bytes (data offset * 4). */
  get headerLength(): number {
    return (get8(this.bytes, this.offset + F.DATA_OFFSET) >>> 4) * 4;
  }
  set headerLength(bytes: number) {
    set8(this.bytes, this.offset + F.DATA_OFFSET, (bytes >>> 2) << 4);
  }
  /** The eight flag bits (see TcpFlags). */
  get flags(): number {
    return get8(this.bytes, this.offset + F.FLAGS);
  }
  set flags(v: number) {
    set8(this.bytes, this.offset + F.FLAGS, v);
  }
  get fin(): boolean {
    return (this.flags & TcpFlags.FIN) !== 0;
  }
  get syn(): boolean {
    return (this.flags & TcpFlags.SYN) !== 0;
  }
  get rst(): boolean {
    return (this.flags & TcpFlags.RST) !== 0;
  }
  get psh(): boolean {
    return (this.flags & TcpFlags.PSH) !== 0;
  }
  get hasAck(): boolean {
    return (this.flags & TcpFlags.ACK) !== 0;
  }
  get urg(): boolean {
    return (this.flags & TcpFlags.URG) !== 0;
  }
  get ece(): boolean {
    return (this.flags & TcpFlags.ECE) !== 0;
  }
  get cwr(): boolean {
    return (this.flags & TcpFlags.CWR) !== 0;
  }
  get window(): number {
    return get16(this.bytes, this.offset + F.WINDOW);
  }
  set window(v: number) {
    set16(this.bytes, this.offset + F.WINDOW, v);
  }
  get checksum(): number {
    return get16(this.bytes, this.offset + F.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.bytes, this.offset + F.CHECKSUM, v);
  }
  get urgentPointer(): number {
    return get16(this.bytes, this.offset + F.URGENT);
  }
  set urgentPointer(v: number) {
    set16(this.bytes, this.offset + F.URGENT, v);
  }
  get optionsOffset(): number {
    return this.offset + F.OPTIONS;
  }
  get optionsLength(): number {
    return this.headerLength - TCP_MIN_HEADER_LEN;
  }
  get payloadOffset(): number {
    return this.offset + this.headerLength;
  }
  get payloadLength(): number {
    return this.length - this.headerLength;
  }
  /** Sequence space the segment occupies: payload plus one each for SYN and FIN. */
  get segmentLength(): number {
    const f = this.flags;
    return this.payloadLength + ((f & TcpFlags.SYN) !== 0 ? 1 : 0) + ((f & TcpFlags.FIN) !== 0 ? 1 : 0);
  }

  /** Parses the options into `out`; see parseTcpOptions. */
  parseOptions(out: TcpOptions): boolean {
    return parseTcpOptions(this.bytes, this.optionsOffset, this.optionsLength, out);
  }

  /** With `sum` (≥ 0): the sum16 of this.bytes[from, the segment's end), computed as the frame
   *  was copied (RxMeta.frameSum; `from` even, before the segment); only [from, offset) is read. */
  verifyChecksumV4(src: number, dst: number, sum = -1, from = 0): boolean {
    if (sum >= 0) return verifyFromSum(sum, this.bytes, from, this.offset, pseudoHeaderSumV4(src, dst, IpProtocol.TCP, this.length));
    return verifyTransportV4(this.bytes, this.offset, this.length, src, dst, IpProtocol.TCP);
  }
  verifyChecksumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, sum = -1, from = 0): boolean {
    if (sum >= 0) {
      return verifyFromSum(sum, this.bytes, from, this.offset, pseudoHeaderSumV6(src, srcOff, dst, dstOff, IpProtocol.TCP, this.length));
    }
    return verifyTransportV6(this.bytes, this.offset, this.length, src, srcOff, dst, dstOff, IpProtocol.TCP);
  }
  fillChecksumV4(src: number, dst: number): void {
    this.checksum = 0;
    this.checksum = internetChecksum(this.bytes, this.offset, this.length, pseudoHeaderSumV4(src, dst, IpProtocol.TCP, this.length));
  }
  fillChecksumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
    this.checksum = 0;
    const ph = pseudoHeaderSumV6(src, srcOff, dst, dstOff, IpProtocol.TCP, this.length);
    this.checksum = internetChecksum(this.bytes, this.offset, this.length, ph);
  }
}

// ---- Options ----

export const TcpOptionKind = {
  EOL: 0,
  NOP: 1,
  MSS: 2,
  WINDOW_SCALE: 3,
  SACK_PERMITTED: 4,
  SACK: 5,
  TIMESTAMP: 8,
} as const;

/** At most 4 SACK blocks fit in 40 bytes of options (RFC 2018 section 3). */
export const TCP_MAX_SACK_BLOCKS = 4;

/**
 * The options the stack uses, parsed into (or emitted from) one preallocated object. Absent values:
 * mss and windowScale -1, flags false, sackCount 0.
 */
export class TcpOptions {
  mss = -1;
  windowScale = -1;
  sackPermitted = false;
  timestamp = false;
  tsVal = 0;
  tsEcr = 0;
  sackCount = 0;
  /** Left and right edges: block i is [sackBlocks[2i], sackBlocks[2i + 1]). */
  readonly sackBlocks = new Uint32Array(2 * TCP_MAX_SACK_BLOCKS);

  constructor() {
    doubleFields(this, 'tsVal', 'tsEcr'); // unsigned 32-bit
  }

  reset(): this {
    this.mss = -1;
    this.windowScale = -1;
    this.sackPermitted = false;
    this.timestamp = false;
    this.tsVal = 0;
    this.tsEcr = 0;
    this.sackCount = 0;
    return this;
  }

  /** Appends a SACK block; returns false when four are already there. */
  addSackBlock(left: number, right: number): boolean {
    if (this.sackCount >= TCP_MAX_SACK_BLOCKS) return false;
    this.sackBlocks[2 * this.sackCount] = left;
    this.sackBlocks[2 * this.sackCount + 1] = right;
    this.sackCount++;
    return true;
  }
}

/**
 * Parses TCP options into `out` (reset first). Unknown options and known ones with a wrong length
 * are skipped, as RFC 9293 and Linux do. Returns false when the list is malformed (a length below 2
 * or past the end); what was parsed before that point stays in `out`, as in Linux, which then stops.
 */
export function parseTcpOptions(bytes: Uint8Array, off: number, len: number, out: TcpOptions): boolean {
  out.reset();
  const end = Math.min(off + len, bytes.length);
  let p = off;
  while (p < end) {
    const kind = bytes[p]!;
    if (kind === TcpOptionKind.EOL) break;
    if (kind === TcpOptionKind.NOP) {
      p++;
      continue;
    }
    if (p + 1 >= end) return false;
    const l = bytes[p + 1]!;
    if (l < 2 || p + l > end) return false;
    switch (kind) {
      case TcpOptionKind.MSS:
        if (l === 4) out.mss = get16(bytes, p + 2);
        break;
      case TcpOptionKind.WINDOW_SCALE:
        // "If a Window Scale option is received with a shift.cnt value larger than 14, the TCP
        // SHOULD log the error but MUST use 14 instead" (RFC 7323 section 2.3).
        if (l === 3) out.windowScale = Math.min(bytes[p + 2]!, 14);
        break;
      case TcpOptionKind.SACK_PERMITTED:
        if (l === 2) out.sackPermitted = true;
        break;
      case TcpOptionKind.SACK:
        if (l >= 10 && (l - 2) % 8 === 0) {
          out.sackCount = 0;
          for (let q = p + 2; q < p + l && out.sackCount < TCP_MAX_SACK_BLOCKS; q += 8) {
            out.addSackBlock(get32(bytes, q), get32(bytes, q + 4));
          }
        }
        break;
      case TcpOptionKind.TIMESTAMP:
        if (l === 10) {
          out.timestamp = true;
          out.tsVal = get32(bytes, p + 2);
          out.tsEcr = get32(bytes, p + 6);
        }
        break;
    }
    p += l;
  }
  return true;
}

/** Bytes emitTcpOptions writes for `opts` (a multiple of 4). */
export function tcpOptionsLength(opts: TcpOptions): number {
  let n = 0;
  if (opts.mss >= 0) n += 4;
  if (opts.timestamp)
    n += 12; // sack-permitted rides in the timestamp's padding
  else if (opts.sackPermitted) n += 4;
  if (opts.windowScale >= 0) n += 4;
  if (opts.sackCount > 0) n += 4 + 8 * opts.sackCount;
  return n;
}

/**
 * Writes options in Linux's layout (word-aligned with NOPs): MSS; SACK-permitted + timestamp
 * (or NOP NOP + one of them); NOP + window scale; NOP NOP + SACK blocks. Returns the length written
 * (a multiple of 4), or -1 when they do not fit in the buffer or in 40 bytes.
 */
export function emitTcpOptions(buf: Uint8Array, off: number, opts: TcpOptions): number {
  const n = tcpOptionsLength(opts);
  if (n > TCP_MAX_HEADER_LEN - TCP_MIN_HEADER_LEN || !rangeOk(buf, off, n)) return -1;
  let p = off;
  if (opts.mss >= 0) {
    set8(buf, p, TcpOptionKind.MSS);
    set8(buf, p + 1, 4);
    set16(buf, p + 2, opts.mss);
    p += 4;
  }
  if (opts.timestamp) {
    if (opts.sackPermitted) {
      set8(buf, p, TcpOptionKind.SACK_PERMITTED);
      set8(buf, p + 1, 2);
    } else {
      set8(buf, p, TcpOptionKind.NOP);
      set8(buf, p + 1, TcpOptionKind.NOP);
    }
    set8(buf, p + 2, TcpOptionKind.TIMESTAMP);
    set8(buf, p + 3, 10);
    set32(buf, p + 4, opts.tsVal);
    set32(buf, p + 8, opts.tsEcr);
    p += 12;
  } else if (opts.sackPermitted) {
    set8(buf, p, TcpOptionKind.NOP);
    set8(buf, p + 1, TcpOptionKind.NOP);
    set8(buf, p + 2, TcpOptionKind.SACK_PERMITTED);
    set8(buf, p + 3, 2);
    p += 4;
  }
  if (opts.windowScale >= 0) {
    set8(buf, p, TcpOptionKind.NOP);
    set8(buf, p + 1, TcpOptionKind.WINDOW_SCALE);
    set8(buf, p + 2, 3);
    set8(buf, p + 3, opts.windowScale);
    p += 4;
  }
  if (opts.sackCount > 0) {
    set8(buf, p, TcpOptionKind.NOP);
    set8(buf, p + 1, TcpOptionKind.NOP);
    set8(buf, p + 2, TcpOptionKind.SACK);
    set8(buf, p + 3, 2 + 8 * opts.sackCount);
    p += 4;
    for (let i = 0; i < 2 * opts.sackCount; i++, p += 4) set32(buf, p, opts.sackBlocks[i]!);
  }
  return p - off;
}

export interface TcpRepr {
  srcPort: number;
  dstPort: number;
  seq: number;
  ack: number;
  /** See TcpFlags. */
  flags: number;
  window: number;
  urgentPointer?: number;
  options?: TcpOptions;
  /** Bytes already in place after the header (at off + tcpHeaderLength(repr)). */
  payloadLength: number;
}

/** Header length emitTcp* will write: 20 plus the options. */
export function tcpHeaderLength(repr: TcpRepr): number {
  return TCP_MIN_HEADER_LEN + (repr.options ? tcpOptionsLength(repr.options) : 0);
}

/** The header of `repr` at `off`; the payload after it must fit in `buf` too unless it is not
 *  there (a partial checksum over payload that goes elsewhere: see FrameLink.sendHeaders). */
function writeHeader(buf: Uint8Array, off: number, repr: TcpRepr, payloadInBuf: boolean): number {
  const hl = tcpHeaderLength(repr);
  if (hl > TCP_MAX_HEADER_LEN || !rangeOk(buf, off, hl + (payloadInBuf ? repr.payloadLength : 0))) return -1;
  set16(buf, off + F.SRC_PORT, repr.srcPort);
  set16(buf, off + F.DST_PORT, repr.dstPort);
  set32(buf, off + F.SEQ, repr.seq);
  set32(buf, off + F.ACK, repr.ack);
  set8(buf, off + F.DATA_OFFSET, (hl >>> 2) << 4);
  set8(buf, off + F.FLAGS, repr.flags);
  set16(buf, off + F.WINDOW, repr.window);
  set16(buf, off + F.CHECKSUM, 0);
  set16(buf, off + F.URGENT, repr.urgentPointer ?? 0);
  if (repr.options) emitTcpOptions(buf, off + F.OPTIONS, repr.options);
  return hl;
}

/** Where the checksum field sits in a TCP header (for a partial checksum, see PartialChecksum). */
export const TCP_CHECKSUM_OFFSET = F.CHECKSUM;

/** Rewrites the sequence number of the TCP header at `off`: headers built once for a run of
 *  segments that differ only there. A partial checksum (pseudo-header only) stays valid. */
export function setTcpSeq(buf: Uint8Array, off: number, seq: number): void {
  set32(buf, off + F.SEQ, seq);
}

/**
 * Writes a TCP header (with options) in front of a payload already in place, with the checksum over
 * the IPv4 pseudo-header. Returns the header length, or -1 when it does not fit. `partial`: the
 * checksum field gets only the pseudo-header sum, for whoever completes it (virtio NEEDS_CSUM), and
 * the payload is not read.
 */
export function emitTcpV4(buf: Uint8Array, off: number, repr: TcpRepr, src: number, dst: number, partial = false): number {
  const hl = writeHeader(buf, off, repr, !partial);
  if (hl < 0) return -1;
  const len = hl + repr.payloadLength;
  const pseudo = pseudoHeaderSumV4(src, dst, IpProtocol.TCP, len);
  set16(buf, off + F.CHECKSUM, partial ? pseudo : internetChecksum(buf, off, len, pseudo));
  return hl;
}

/** As emitTcpV4, over the IPv6 pseudo-header of the 16-byte addresses `src` and `dst`. */
export function emitTcpV6(buf: Uint8Array, off: number, repr: TcpRepr, src: Uint8Array, dst: Uint8Array, partial = false): number {
  const hl = writeHeader(buf, off, repr, !partial);
  if (hl < 0) return -1;
  const len = hl + repr.payloadLength;
  const pseudo = pseudoHeaderSumV6(src, 0, dst, 0, IpProtocol.TCP, len);
  set16(buf, off + F.CHECKSUM, partial ? pseudo : internetChecksum(buf, off, len, pseudo));
  return hl;
}

/** "S.", "P.", "F." style flag string as tcpdump prints it, for logs. */
export function formatTcpFlags(flags: number): string {
  let s = '';
  if ((flags & TcpFlags.SYN) !== 0) s += 'S';
  if ((flags & TcpFlags.FIN) !== 0) s += 'F';
  if ((flags & TcpFlags.RST) !== 0) s += 'R';
  if ((flags & TcpFlags.PSH) !== 0) s += 'P';
  if ((flags & TcpFlags.URG) !== 0) s += 'U';
  if ((flags & TcpFlags.ECE) !== 0) s += 'E';
  if ((flags & TcpFlags.CWR) !== 0) s += 'W';
  if ((flags & TcpFlags.ACK) !== 0) s += '.';
  return s.length > 0 ? s : 'none';
}
