// IPv6 header, extension headers and addresses.
//
// Read before editing: RFC 8200 sections 3 (header), 4 (extension headers: order, "Hop-by-Hop
// Options header ... restricted to appear immediately after an IPv6 header", option type action
// bits in 4.2, routing header rules in 4.4, fragment header in 4.5), RFC 4291 section 2 (address
// architecture, multicast scopes, solicited-node groups in 2.7.1), RFC 5952 (text form for logs),
// RFC 2711 (router alert option), RFC 4443 section 3.4 (parameter problem codes and pointers).
// Addresses stay as 16 bytes in place: compare and copy with the helpers at the end of this file.
// Error pointers are offsets from the start of the IPv6 header, ready for an ICMPv6 parameter problem.

import { bytesEqual, copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';
import { IpProtocol } from './ip.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |Version| Traffic Class |           Flow Label                  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Payload Length        |  Next Header  |   Hop Limit   |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// +                                                               +
// |                         Source Address                        |
// +                                                               +
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                                                               |
// +                                                               +
// |                      Destination Address                      |
// +                                                               +
// |                                                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const F = {
  VER_TC_FL: 0,
  PAYLOAD_LENGTH: 4,
  NEXT_HEADER: 6,
  HOP_LIMIT: 7,
  SRC: 8,
  DST: 24,
} as const;

export const IPV6_HEADER_LEN = 40;
export const IPV6_ADDR_LEN = 16;
/** Every IPv6 link carries at least this (RFC 8200 section 5). */
export const IPV6_MIN_MTU = 1280;

export const Ipv6Error = {
  OK: 0,
  /** Shorter than 40 bytes. */
  TRUNCATED: 1,
  /** Version is not 6. */
  VERSION: 2,
  /** 40 + payload length exceeds the bytes we have. */
  PAYLOAD_LENGTH: 3,
} as const;
export type Ipv6Error = (typeof Ipv6Error)[keyof typeof Ipv6Error];

/** A view of an IPv6 packet. `length` is what the link delivered (it may include padding). */
export class Ipv6Packet extends WireView {
  /** Well-formed (see problem()). */
  check(): boolean {
    return this.problem() === Ipv6Error.OK;
  }

  /** The first thing wrong with it, or OK (0): for a counter or a test that names the fault. */
  problem(): Ipv6Error {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < IPV6_HEADER_LEN) return Ipv6Error.TRUNCATED;
    if (this.version !== 6) return Ipv6Error.VERSION;
    if (IPV6_HEADER_LEN + this.payloadLength > this.length) return Ipv6Error.PAYLOAD_LENGTH;
    return Ipv6Error.OK;
  }

  get version(): number {
    return get8(this.bytes, this.offset + F.VER_TC_FL) >>> 4;
  }
  get trafficClass(): number {
    return (get16(this.bytes, this.offset + F.VER_TC_FL) >>> 4) & 0xff;
  }
  set trafficClass(v: number) {
    const o = this.offset + F.VER_TC_FL;
    set16(this.bytes, o, (get16(this.bytes, o) & 0xf00f) | ((v & 0xff) << 4));
  }
  get flowLabel(): number {
    return get32(this.bytes, this.offset + F.VER_TC_FL) & 0xfffff;
  }
  set flowLabel(v: number) {
    const o = this.offset + F.VER_TC_FL;
    set32(this.bytes, o, ((get32(this.bytes, o) & 0xfff00000) | (v & 0xfffff)) >>> 0);
  }
  get payloadLength(): number {
    return get16(this.bytes, this.offset + F.PAYLOAD_LENGTH);
  }
  set payloadLength(v: number) {
    set16(this.bytes, this.offset + F.PAYLOAD_LENGTH, v);
  }
  get nextHeader(): number {
    return get8(this.bytes, this.offset + F.NEXT_HEADER);
  }
  set nextHeader(v: number) {
    set8(this.bytes, this.offset + F.NEXT_HEADER, v);
  }
  get hopLimit(): number {
    return get8(this.bytes, this.offset + F.HOP_LIMIT);
  }
  set hopLimit(v: number) {
    set8(this.bytes, this.offset + F.HOP_LIMIT, v);
  }
  /** Absolute offset of the source address in `bytes`. */
  get srcOffset(): number {
    return this.offset + F.SRC;
  }
  /** Absolute offset of the destination address in `bytes`. */
  get dstOffset(): number {
    return this.offset + F.DST;
  }
  get payloadOffset(): number {
    return this.offset + IPV6_HEADER_LEN;
  }
  /** Offset just past the packet as the payload length field defines it. */
  get end(): number {
    return this.offset + IPV6_HEADER_LEN + this.payloadLength;
  }
  setSrc(addr: Uint8Array, addrOff = 0): void {
    copyBytes(this.bytes, this.offset + F.SRC, addr, addrOff, IPV6_ADDR_LEN);
  }
  setDst(addr: Uint8Array, addrOff = 0): void {
    copyBytes(this.bytes, this.offset + F.DST, addr, addrOff, IPV6_ADDR_LEN);
  }
}

export interface Ipv6Repr {
  src: Uint8Array; // 16 bytes
  dst: Uint8Array; // 16 bytes
  nextHeader: number;
  hopLimit: number;
  payloadLength: number;
  trafficClass?: number;
  flowLabel?: number;
}

/** Writes a 40-byte IPv6 header; returns 40, or -1 when the buffer is too small. */
export function emitIpv6Header(buf: Uint8Array, off: number, repr: Ipv6Repr): number {
  if (!rangeOk(buf, off, IPV6_HEADER_LEN)) return -1;
  const tc = repr.trafficClass ?? 0;
  const fl = repr.flowLabel ?? 0;
  set32(buf, off + F.VER_TC_FL, ((6 << 28) | ((tc & 0xff) << 20) | (fl & 0xfffff)) >>> 0);
  set16(buf, off + F.PAYLOAD_LENGTH, repr.payloadLength);
  set8(buf, off + F.NEXT_HEADER, repr.nextHeader);
  set8(buf, off + F.HOP_LIMIT, repr.hopLimit);
  copyBytes(buf, off + F.SRC, repr.src, 0, IPV6_ADDR_LEN);
  copyBytes(buf, off + F.DST, repr.dst, 0, IPV6_ADDR_LEN);
  return IPV6_HEADER_LEN;
}

// ---- Extension headers (RFC 8200 section 4) ----

// Hop-by-Hop and Destination Options headers (RFC 8200 sections 4.3, 4.6):
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Next Header  |  Hdr Ext Len  |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// .                            Options                            .
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Routing header (section 4.4):
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Next Header  |  Hdr Ext Len  |  Routing Type | Segments Left |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// .                       type-specific data                      .
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Fragment header (section 4.5):
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                         Identification                        |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const EXT = {
  NEXT_HEADER: 0,
  HDR_EXT_LEN: 1,
  OPTIONS: 2,
  ROUTING_TYPE: 2,
  SEGMENTS_LEFT: 3,
  FRAG_OFF_M: 2,
  FRAG_IDENT: 4,
} as const;

export const IPV6_FRAGMENT_HEADER_LEN = 8;

/** Option types inside Hop-by-Hop and Destination Options headers. */
export const Ipv6OptionType = {
  PAD1: 0,
  PADN: 1,
  ROUTER_ALERT: 5,
  JUMBO: 0xc2,
} as const;

/** RFC 2711 router alert values. */
export const Ipv6RouterAlert = {
  MLD: 0,
  RSVP: 1,
  ACTIVE_NETWORKS: 2,
} as const;

/** ICMPv6 parameter problem codes (RFC 4443 section 3.4). */
export const Ipv6ProblemCode = {
  ERRONEOUS_HEADER_FIELD: 0,
  UNRECOGNIZED_NEXT_HEADER: 1,
  UNRECOGNIZED_OPTION: 2,
} as const;

/**
 * Walks the TLV options of one Hop-by-Hop or Destination Options header. next() positions on each
 * option other than Pad1/PadN and returns true; false at the end or on an option that overruns the
 * header, in which case `error` is true and `offset` points at the offending option.
 */
export class Ipv6OptionIterator {
  bytes: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private end = 0;
  /** Current option: type, absolute offset of the type byte, data length. */
  type = 0;
  offset = 0;
  dataLength = 0;
  error = false;

  /** Iterates the options of the extension header at `headerOffset` (which is `headerLength` bytes long). */
  at(bytes: Uint8Array, headerOffset: number, headerLength: number): this {
    this.bytes = bytes;
    this.pos = headerOffset + EXT.OPTIONS;
    this.end = Math.min(headerOffset + headerLength, bytes.length);
    this.error = false;
    return this;
  }

  next(): boolean {
    while (this.pos < this.end) {
      const t = this.bytes[this.pos]!;
      if (t === Ipv6OptionType.PAD1) {
        this.pos++;
        continue;
      }
      this.offset = this.pos;
      if (this.pos + 2 > this.end) return this.fail();
      const len = this.bytes[this.pos + 1]!;
      if (this.pos + 2 + len > this.end) return this.fail();
      this.pos += 2 + len;
      if (t === Ipv6OptionType.PADN) continue;
      this.type = t;
      this.dataLength = len;
      return true;
    }
    return false;
  }

  /** RFC 8200 section 4.2: the two high bits of the type say what to do with an unknown option. */
  get unknownAction(): number {
    return this.type >>> 6;
  }

  private fail(): boolean {
    this.error = true;
    this.pos = this.end;
    return false;
  }
}

/** What walkIpv6Headers decided. */
export const Ipv6ChainResult = {
  /** upperProtocol / upperOffset are valid. */
  OK: 0,
  /** A header runs past the packet: drop silently. */
  TRUNCATED: 1,
  /** An unrecognized option with action 01: drop silently. */
  DISCARD: 2,
  /** Drop and send an ICMPv6 parameter problem with problemCode / problemPointer. */
  PARAM_PROBLEM: 3,
  /** Like PARAM_PROBLEM, but only when the destination is not multicast (option action 11). */
  PARAM_PROBLEM_UNLESS_MULTICAST: 4,
} as const;
export type Ipv6ChainResult = (typeof Ipv6ChainResult)[keyof typeof Ipv6ChainResult];

/** The outcome of walking an extension header chain; preallocate one and reuse it. */
export class Ipv6HeaderChain {
  result: Ipv6ChainResult = Ipv6ChainResult.OK;
  /** The first header that is not an extension header we walk (TCP, UDP, ICMPv6, 59, ESP, AH...). */
  upperProtocol = 0;
  /** Absolute offset where that header starts. */
  upperOffset = 0;
  /**
   * Offset from the IPv6 header of the Next Header field that named upperProtocol: the pointer for
   * "unrecognized Next Header type" (code 1) when the caller has no handler for it.
   */
  nextHeaderPointer = 0;
  /** Absolute offsets of the headers met, -1 when absent. */
  hopByHopOffset = -1;
  routingOffset = -1;
  destOptionsOffset = -1;
  /**
   * The fragment header, if any. The walk stops there: what follows belongs to the reassembled
   * payload (upperProtocol is the fragment header's Next Header).
   */
  fragmentOffset = -1;
  /** Router alert value from the Hop-by-Hop header, or -1. */
  routerAlert = -1;
  problemCode = 0;
  problemPointer = 0;

  reset(): void {
    this.result = Ipv6ChainResult.OK;
    this.upperProtocol = 0;
    this.upperOffset = 0;
    this.nextHeaderPointer = 0;
    this.hopByHopOffset = -1;
    this.routingOffset = -1;
    this.destOptionsOffset = -1;
    this.fragmentOffset = -1;
    this.routerAlert = -1;
    this.problemCode = 0;
    this.problemPointer = 0;
  }
}

const optionIterator = new Ipv6OptionIterator();

/** Walks the header chain of a checked IPv6 packet at `ipOffset` (see walkIpv6HeadersFrom). */
export function walkIpv6Headers(bytes: Uint8Array, ipOffset: number, out: Ipv6HeaderChain): Ipv6ChainResult {
  const end = ipOffset + IPV6_HEADER_LEN + get16(bytes, ipOffset + F.PAYLOAD_LENGTH);
  return walkIpv6HeadersFrom(bytes, ipOffset, ipOffset + IPV6_HEADER_LEN, end, get8(bytes, ipOffset + F.NEXT_HEADER), ipOffset + F.NEXT_HEADER, out);
}

/**
 * Walks extension headers from `start` (where a header of type `nextHeader` begins, named by the
 * field at absolute offset `nextHeaderField`) up to `end`, processing Hop-by-Hop and Destination
 * options and the routing header as a host must (RFC 8200 section 4), and stops at the fragment
 * header or the first upper-layer header. Pointers are relative to `ipOffset`.
 */
export function walkIpv6HeadersFrom(
  bytes: Uint8Array,
  ipOffset: number,
  start: number,
  end: number,
  nextHeader: number,
  nextHeaderField: number,
  out: Ipv6HeaderChain,
): Ipv6ChainResult {
  out.reset();
  end = Math.min(end, bytes.length);
  let pos = start;
  let nh = nextHeader;
  let field = nextHeaderField;
  for (;;) {
    switch (nh) {
      case IpProtocol.HOPOPTS:
      case IpProtocol.IPV6_OPTS: {
        if (nh === IpProtocol.HOPOPTS && pos !== ipOffset + IPV6_HEADER_LEN) {
          return problem(out, Ipv6ProblemCode.UNRECOGNIZED_NEXT_HEADER, field - ipOffset);
        }
        if (pos + 2 > end) return (out.result = Ipv6ChainResult.TRUNCATED);
        const len = (bytes[pos + EXT.HDR_EXT_LEN]! + 1) * 8;
        if (pos + len > end) return (out.result = Ipv6ChainResult.TRUNCATED);
        const r = processOptions(bytes, ipOffset, pos, len, nh === IpProtocol.HOPOPTS, out);
        if (r !== Ipv6ChainResult.OK) return r;
        if (nh === IpProtocol.HOPOPTS) out.hopByHopOffset = pos;
        else out.destOptionsOffset = pos;
        field = pos + EXT.NEXT_HEADER;
        nh = bytes[field]!;
        pos += len;
        break;
      }
      case IpProtocol.IPV6_ROUTE: {
        if (pos + 4 > end) return (out.result = Ipv6ChainResult.TRUNCATED);
        const len = (bytes[pos + EXT.HDR_EXT_LEN]! + 1) * 8;
        if (pos + len > end) return (out.result = Ipv6ChainResult.TRUNCATED);
        // We implement no routing type. "If Segments Left is zero, the node must ignore the Routing
        // header and proceed"; otherwise "send an ICMP Parameter Problem, Code 0 ... pointing to the
        // unrecognized Routing Type" (RFC 8200 section 4.4).
        if (bytes[pos + EXT.SEGMENTS_LEFT] !== 0) {
          return problem(out, Ipv6ProblemCode.ERRONEOUS_HEADER_FIELD, pos + EXT.ROUTING_TYPE - ipOffset);
        }
        out.routingOffset = pos;
        field = pos + EXT.NEXT_HEADER;
        nh = bytes[field]!;
        pos += len;
        break;
      }
      case IpProtocol.IPV6_FRAG: {
        if (pos + IPV6_FRAGMENT_HEADER_LEN > end) return (out.result = Ipv6ChainResult.TRUNCATED);
        out.fragmentOffset = pos;
        out.upperProtocol = bytes[pos + EXT.NEXT_HEADER]!;
        out.upperOffset = pos + IPV6_FRAGMENT_HEADER_LEN;
        out.nextHeaderPointer = pos + EXT.NEXT_HEADER - ipOffset;
        return (out.result = Ipv6ChainResult.OK);
      }
      default:
        // Upper layer, No Next Header (59), or a header we do not walk (AH, ESP).
        out.upperProtocol = nh;
        out.upperOffset = pos;
        out.nextHeaderPointer = field - ipOffset;
        return (out.result = Ipv6ChainResult.OK);
    }
  }
}

function problem(out: Ipv6HeaderChain, code: number, pointer: number): Ipv6ChainResult {
  out.problemCode = code;
  out.problemPointer = pointer;
  return (out.result = Ipv6ChainResult.PARAM_PROBLEM);
}

function processOptions(bytes: Uint8Array, ipOffset: number, hdr: number, len: number, hopByHop: boolean, out: Ipv6HeaderChain): Ipv6ChainResult {
  const it = optionIterator.at(bytes, hdr, len);
  while (it.next()) {
    if (hopByHop && it.type === Ipv6OptionType.ROUTER_ALERT) {
      if (it.dataLength !== 2) {
        return problem(out, Ipv6ProblemCode.ERRONEOUS_HEADER_FIELD, it.offset + 1 - ipOffset);
      }
      out.routerAlert = get16(bytes, it.offset + 2);
      continue;
    }
    switch (it.unknownAction) {
      case 0: // skip over this option
        break;
      case 1: // discard the packet
        return (out.result = Ipv6ChainResult.DISCARD);
      case 2: // discard and send a parameter problem, code 2, pointing at the option type
        return problem(out, Ipv6ProblemCode.UNRECOGNIZED_OPTION, it.offset - ipOffset);
      default: // same, but only if the destination is not multicast
        problem(out, Ipv6ProblemCode.UNRECOGNIZED_OPTION, it.offset - ipOffset);
        return (out.result = Ipv6ChainResult.PARAM_PROBLEM_UNLESS_MULTICAST);
    }
  }
  if (it.error) {
    // An option overruns its header: the header's own length is wrong.
    return problem(out, Ipv6ProblemCode.ERRONEOUS_HEADER_FIELD, it.offset - ipOffset);
  }
  return Ipv6ChainResult.OK;
}

/** A view of a fragment header (8 bytes). */
export class Ipv6FragmentHeader extends WireView {
  check(): boolean {
    return rangeOk(this.bytes, this.offset, this.length) && this.length >= IPV6_FRAGMENT_HEADER_LEN;
  }
  get nextHeader(): number {
    return get8(this.bytes, this.offset + EXT.NEXT_HEADER);
  }
  set nextHeader(v: number) {
    set8(this.bytes, this.offset + EXT.NEXT_HEADER, v);
  }
  /** Offset of this fragment's data in bytes (the field counts 8-byte units). */
  get fragOffset(): number {
    return get16(this.bytes, this.offset + EXT.FRAG_OFF_M) & 0xfff8;
  }
  set fragOffset(bytes: number) {
    const o = this.offset + EXT.FRAG_OFF_M;
    set16(this.bytes, o, (bytes & 0xfff8) | (get16(this.bytes, o) & 0x7));
  }
  get moreFragments(): boolean {
    return (get8(this.bytes, this.offset + EXT.FRAG_OFF_M + 1) & 1) !== 0;
  }
  set moreFragments(v: boolean) {
    const o = this.offset + EXT.FRAG_OFF_M + 1;
    set8(this.bytes, o, (get8(this.bytes, o) & 0xfe) | (v ? 1 : 0));
  }
  get ident(): number {
    return get32(this.bytes, this.offset + EXT.FRAG_IDENT);
  }
  set ident(v: number) {
    set32(this.bytes, this.offset + EXT.FRAG_IDENT, v);
  }
  /** An atomic fragment (offset 0, no more fragments, RFC 6946): process as if unfragmented. */
  isAtomic(): boolean {
    return (get16(this.bytes, this.offset + EXT.FRAG_OFF_M) & 0xfff9) === 0;
  }
}

export interface Ipv6FragmentRepr {
  nextHeader: number;
  /** In bytes; a multiple of 8. */
  fragOffset: number;
  moreFragments: boolean;
  ident: number;
}

/** Writes an 8-byte fragment header; returns 8, or -1 when the buffer is too small. */
export function emitIpv6FragmentHeader(buf: Uint8Array, off: number, repr: Ipv6FragmentRepr): number {
  if (!rangeOk(buf, off, IPV6_FRAGMENT_HEADER_LEN)) return -1;
  set8(buf, off + EXT.NEXT_HEADER, repr.nextHeader);
  set8(buf, off + 1, 0);
  set16(buf, off + EXT.FRAG_OFF_M, (repr.fragOffset & 0xfff8) | (repr.moreFragments ? 1 : 0));
  set32(buf, off + EXT.FRAG_IDENT, repr.ident);
  return IPV6_FRAGMENT_HEADER_LEN;
}

/**
 * Writes an 8-byte Hop-by-Hop header holding a router alert option (RFC 2711) and a PadN, as MLD
 * messages carry (RFC 3810 section 5); returns 8, or -1 when the buffer is too small.
 */
export function emitIpv6RouterAlertHopByHop(buf: Uint8Array, off: number, nextHeader: number, value: number = Ipv6RouterAlert.MLD): number {
  if (!rangeOk(buf, off, 8)) return -1;
  set8(buf, off, nextHeader);
  set8(buf, off + 1, 0);
  set8(buf, off + 2, Ipv6OptionType.ROUTER_ALERT);
  set8(buf, off + 3, 2);
  set16(buf, off + 4, value);
  set8(buf, off + 6, Ipv6OptionType.PADN);
  set8(buf, off + 7, 0);
  return 8;
}

// ---- Address helpers (16 bytes in place) ----

export const IPV6_UNSPECIFIED: Uint8Array = new Uint8Array(16);
export const IPV6_LOOPBACK: Uint8Array = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
/** ff02::1 */
export const IPV6_ALL_NODES: Uint8Array = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
/** ff02::2 */
export const IPV6_ALL_ROUTERS: Uint8Array = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2);
/** ff02::16, where MLDv2 reports go (RFC 3810 section 5.2.14). */
export const IPV6_ALL_MLDV2_ROUTERS: Uint8Array = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16);
/** ff02::1:2, DHCPv6 servers and relay agents (RFC 8415 section 7.1). */
export const IPV6_ALL_DHCP_AGENTS: Uint8Array = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2);

export function ipv6Equal(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  return bytesEqual(a, aOff, b, bOff, IPV6_ADDR_LEN);
}
export function ipv6Copy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number): void {
  copyBytes(dst, dstOff, src, srcOff, IPV6_ADDR_LEN);
}
export function ipv6IsUnspecified(b: Uint8Array, off: number): boolean {
  let x = 0;
  for (let i = 0; i < 16; i++) x |= b[off + i]!;
  return x === 0;
}
export function ipv6IsLoopback(b: Uint8Array, off: number): boolean {
  return bytesEqual(b, off, IPV6_LOOPBACK, 0, IPV6_ADDR_LEN);
}
/** ff00::/8 */
export function ipv6IsMulticast(b: Uint8Array, off: number): boolean {
  return b[off] === 0xff;
}
/** The 4-bit scope of a multicast address (2 = link-local, 5 = site, 0xe = global). */
export function ipv6MulticastScope(b: Uint8Array, off: number): number {
  return b[off + 1]! & 0x0f;
}
/** fe80::/10 */
export function ipv6IsLinkLocal(b: Uint8Array, off: number): boolean {
  return b[off] === 0xfe && (b[off + 1]! & 0xc0) === 0x80;
}
/** ff02::1:ff00:0/104 */
export function ipv6IsSolicitedNode(b: Uint8Array, off: number): boolean {
  return bytesEqual(b, off, SOLICITED_NODE_PREFIX, 0, 13);
}
/** ::ffff:0:0/96 */
export function ipv6IsV4Mapped(b: Uint8Array, off: number): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

const SOLICITED_NODE_PREFIX = Uint8Array.of(0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff);

/** Writes the solicited-node multicast group of `addr`: ff02::1:ff + its low 24 bits (RFC 4291 2.7.1). */
export function ipv6SolicitedNode(dst: Uint8Array, dstOff: number, addr: Uint8Array, addrOff: number): void {
  copyBytes(dst, dstOff + 13, addr, addrOff + 13, 3);
  copyBytes(dst, dstOff, SOLICITED_NODE_PREFIX, 0, 13);
}

/** The first `prefixLength` bits of a and b are equal. */
export function ipv6PrefixEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, prefixLength: number): boolean {
  const whole = prefixLength >>> 3;
  if (!bytesEqual(a, aOff, b, bOff, whole)) return false;
  const bits = prefixLength & 7;
  if (bits === 0) return true;
  const mask = (0xff00 >>> bits) & 0xff;
  return ((a[aOff + whole]! ^ b[bOff + whole]!) & mask) === 0;
}

/** Writes fe80::/64 with the modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A). */
export function ipv6LinkLocalFromMac(dst: Uint8Array, dstOff: number, mac: Uint8Array, macOff: number): void {
  dst.fill(0, dstOff, dstOff + 8);
  dst[dstOff] = 0xfe;
  dst[dstOff + 1] = 0x80;
  dst[dstOff + 8] = mac[macOff]! ^ 0x02;
  dst[dstOff + 9] = mac[macOff + 1]!;
  dst[dstOff + 10] = mac[macOff + 2]!;
  dst[dstOff + 11] = 0xff;
  dst[dstOff + 12] = 0xfe;
  dst[dstOff + 13] = mac[macOff + 3]!;
  dst[dstOff + 14] = mac[macOff + 4]!;
  dst[dstOff + 15] = mac[macOff + 5]!;
}

/** RFC 5952 text ("fe80::5054:ff:fe12:3456"), for logs. */
export function formatIpv6(b: Uint8Array, off = 0): string {
  // Find the longest run (length >= 2) of zero words; the first wins a tie.
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (get16(b, off + 2 * i) !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && get16(b, off + 2 * j) === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (ipv6IsV4Mapped(b, off)) {
    return `::ffff:${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  }
  let s = '';
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      s += '::';
      i += bestLen - 1;
      continue;
    }
    if (s.length > 0 && !s.endsWith(':')) s += ':';
    s += get16(b, off + 2 * i).toString(16);
  }
  return s;
}

/** Parses IPv6 text (with "::" and an optional trailing dotted quad); null when malformed. */
export function parseIpv6(text: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const words: number[][] = [];
  for (const half of halves) {
    const ws: number[] = [];
    if (half.length > 0) {
      const parts = half.split(':');
      for (let i = 0; i < parts.length; i++) {
        const p = parts[i]!;
        if (i === parts.length - 1 && p.includes('.')) {
          const v4 = parseDottedQuad(p);
          if (v4 === null) return null;
          ws.push(v4 >>> 16, v4 & 0xffff);
        } else if (/^[0-9a-fA-F]{1,4}$/.test(p)) {
          ws.push(parseInt(p, 16));
        } else {
          return null;
        }
      }
    }
    words.push(ws);
  }
  const head = words[0]!;
  const tail = words[1];
  if (tail === undefined) {
    if (head.length !== 8) return null;
  } else if (head.length + tail.length > 7) {
    return null;
  }
  head.forEach((w, i) => set16(out, 2 * i, w));
  if (tail !== undefined) tail.forEach((w, i) => set16(out, 2 * (8 - tail.length + i), w));
  return out;
}

function parseDottedQuad(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    v = v * 256 + Number(p);
  }
  return v;
}
