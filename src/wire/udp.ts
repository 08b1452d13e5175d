// UDP.
//
// Read before editing: RFC 768 (format; "If the computed checksum is zero, it is transmitted as all
// ones"; an all-zero field means no checksum over IPv4), RFC 1122 section 4.1.3.4 (a received zero
// checksum over IPv4 is accepted), RFC 8200 section 8.1 (over IPv6 the checksum is mandatory: drop
// packets whose checksum is zero). RFC 8085 for how a UDP endpoint should behave.

import { get16, rangeOk, set16 } from './bytes.js';
import { internetChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6, verifyFromSum, verifyTransportV4, verifyTransportV6 } from './checksum.js';
import { IpProtocol, PortsView } from './ip.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          Source Port          |       Destination Port        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |            Length             |           Checksum            |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |          data octets ...
// +-+-+-+-+-+-+-+-
const F = {
  SRC_PORT: 0,
  DST_PORT: 2,
  LENGTH: 4,
  CHECKSUM: 6,
} as const;

export const UDP_HEADER_LEN = 8;

/**
 * A view of a UDP datagram. `length` is the IP payload length; the datagram is `udpLength` bytes
 * (check() ensures 8 <= udpLength <= length).
 */
export class UdpDatagram extends PortsView {
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < UDP_HEADER_LEN) return false;
    const l = this.udpLength;
    return l >= UDP_HEADER_LEN && l <= this.length;
  }

  /** The Length field: header plus data. */
  get udpLength(): number {
    return get16(this.bytes, this.offset + F.LENGTH);
  }
  set udpLength(v: number) {
    set16(this.bytes, this.offset + F.LENGTH, v);
  }
  get checksum(): number {
    return get16(this.bytes, this.offset + F.CHECKSUM);
  }
  set checksum(v: number) {
    set16(this.bytes, this.offset + F.CHECKSUM, v);
  }
  get payloadOffset(): number {
    return this.offset + UDP_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.udpLength - UDP_HEADER_LEN;
  }

  /** IPv4: zero means the sender computed none, which is accepted. With `sum` (≥ 0): the sum16 of this.bytes[from, the datagram's
   *  end), computed as the frame was copied (RxMeta.frameSum); only [from, offset) is read. */
  verifyChecksumV4(src: number, dst: number, sum = -1, from = 0): boolean {
    if (this.checksum === 0) return true;
    if (sum >= 0) return verifyFromSum(sum, this.bytes, from, this.offset, pseudoHeaderSumV4(src, dst, IpProtocol.UDP, this.udpLength));
    return verifyTransportV4(this.bytes, this.offset, this.udpLength, src, dst, IpProtocol.UDP);
  }
  /** IPv6: the checksum is mandatory, so zero fails. `sum` and `from` as for IPv4. */
  verifyChecksumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number, sum = -1, from = 0): boolean {
    if (this.checksum === 0) return false;
    if (sum >= 0) {
      return verifyFromSum(sum, this.bytes, from, this.offset, pseudoHeaderSumV6(src, srcOff, dst, dstOff, IpProtocol.UDP, this.udpLength));
    }
    return verifyTransportV6(this.bytes, this.offset, this.udpLength, src, srcOff, dst, dstOff, IpProtocol.UDP);
  }
  fillChecksumV4(src: number, dst: number): void {
    this.checksum = 0;
    this.checksum = udpChecksum(this.bytes, this.offset, this.udpLength, pseudoHeaderSumV4(src, dst, IpProtocol.UDP, this.udpLength));
  }
  fillChecksumV6(src: Uint8Array, srcOff: number, dst: Uint8Array, dstOff: number): void {
    this.checksum = 0;
    const ph = pseudoHeaderSumV6(src, srcOff, dst, dstOff, IpProtocol.UDP, this.udpLength);
    this.checksum = udpChecksum(this.bytes, this.offset, this.udpLength, ph);
  }
}

/** The checksum as transmitted: 0 is sent as 0xffff (RFC 768). */
function udpChecksum(b: Uint8Array, off: number, len: number, pseudo: number): number {
  const c = internetChecksum(b, off, len, pseudo);
  return c === 0 ? 0xffff : c;
}

export interface UdpRepr {
  srcPort: number;
  dstPort: number;
  /** Bytes already in place after the 8-byte header. */
  payloadLength: number;
}

function writeHeader(buf: Uint8Array, off: number, repr: UdpRepr): void {
  set16(buf, off + F.SRC_PORT, repr.srcPort);
  set16(buf, off + F.DST_PORT, repr.dstPort);
  set16(buf, off + F.LENGTH, UDP_HEADER_LEN + repr.payloadLength);
  set16(buf, off + F.CHECKSUM, 0);
}

/**
 * Writes a UDP header in front of a payload already at off + 8, with the checksum over the IPv4
 * pseudo-header. Returns 8, or -1 when header and payload do not fit (or exceed 65535 bytes).
 */
export function emitUdpV4(buf: Uint8Array, off: number, repr: UdpRepr, src: number, dst: number, partial = false): number {
  const len = UDP_HEADER_LEN + repr.payloadLength;
  if (len > 0xffff || !rangeOk(buf, off, len)) return -1;
  writeHeader(buf, off, repr);
  const pseudo = pseudoHeaderSumV4(src, dst, IpProtocol.UDP, len);
  set16(buf, off + F.CHECKSUM, partial ? pseudo : udpChecksum(buf, off, len, pseudo));
  return UDP_HEADER_LEN;
}

/** As emitUdpV4, over the IPv6 pseudo-header of the 16-byte addresses `src` and `dst`. */
export function emitUdpV6(buf: Uint8Array, off: number, repr: UdpRepr, src: Uint8Array, dst: Uint8Array, partial = false): number {
  const len = UDP_HEADER_LEN + repr.payloadLength;
  if (len > 0xffff || !rangeOk(buf, off, len)) return -1;
  writeHeader(buf, off, repr);
  const pseudo = pseudoHeaderSumV6(src, 0, dst, 0, IpProtocol.UDP, len);
  set16(buf, off + F.CHECKSUM, partial ? pseudo : udpChecksum(buf, off, len, pseudo));
  return UDP_HEADER_LEN;
}

/** Where the checksum field sits in a UDP header (for a partial checksum, see PartialChecksum). */
export const UDP_CHECKSUM_OFFSET = F.CHECKSUM;
