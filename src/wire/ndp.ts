// Neighbor Discovery messages and options.
//
// Read before editing: RFC 4861 sections 4 (message formats; 4.6 options: "Nodes MUST silently
// discard an ND packet that contains an option with length zero"), 6.1.1 / 6.1.2 / 7.1.1 / 7.1.2 /
// 8.1 (validity checks: hop limit 255, code 0, length, no SLLA with an unspecified source...; those
// that need the IP header are the caller's), RFC 4191 section 2.2 (RA preference bits), RFC 8106
// section 5 (RDNSS and DNSSL). Views here cover the whole ICMPv6 message, from its Type byte.

import { copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';
import { MAC_LEN } from './ethernet.js';
import { fillIcmpv6Checksum, Icmpv6Type } from './icmpv6.js';
import { IPV6_ADDR_LEN } from './ipv6.js';
import { dnsNameLength, encodeDnsName } from './names.js';

// Router Solicitation (RFC 4861 section 4.1):
// |     Type      |     Code      |          Checksum             |
// |                            Reserved                           |
// |   Options ...
//
// Router Advertisement (section 4.2, RFC 4191 section 2.2 for Prf):
// |     Type      |     Code      |          Checksum             |
// | Cur Hop Limit |M|O|H|Prf|Resvd|       Router Lifetime         |
// |                         Reachable Time                        |
// |                          Retrans Timer                        |
// |   Options ...
//
// Neighbor Solicitation (section 4.3) / Advertisement (4.4):
// |     Type      |     Code      |          Checksum             |
// |R|S|O|                     Reserved (NS: all reserved)         |
// +                       Target Address (16)                     +
// |   Options ...
//
// Redirect (section 4.5):
// |     Type      |     Code      |          Checksum             |
// |                           Reserved                            |
// +                       Target Address (16)                     +
// +                     Destination Address (16)                  +
// |   Options ...
const F = {
  TYPE: 0,
  CODE: 1,
  RESERVED: 4,
  CUR_HOP_LIMIT: 4,
  RA_FLAGS: 5,
  ROUTER_LIFETIME: 6,
  REACHABLE_TIME: 8,
  RETRANS_TIMER: 12,
  NA_FLAGS: 4,
  TARGET: 8,
  DESTINATION: 24,
} as const;

export const NDP_RS_LEN = 8;
export const NDP_RA_LEN = 16;
export const NDP_NS_LEN = 24;
export const NDP_NA_LEN = 24;
export const NDP_REDIRECT_LEN = 40;

/** Flag bits of the RA byte after Cur Hop Limit. */
export const NdpRaFlags = {
  MANAGED: 0x80,
  OTHER: 0x40,
  HOME_AGENT: 0x20,
} as const;

/** Default router preference (RFC 4191 section 2.1); 2 (10) is reserved and treated as medium. */
export const NdpRouterPreference = {
  MEDIUM: 0,
  HIGH: 1,
  LOW: 3,
} as const;

/** Flag bits of the NA byte after the checksum. */
export const NdpNaFlags = {
  ROUTER: 0x80,
  SOLICITED: 0x40,
  OVERRIDE: 0x20,
} as const;

export const NdpOptionType = {
  SOURCE_LL_ADDR: 1,
  TARGET_LL_ADDR: 2,
  PREFIX_INFO: 3,
  REDIRECTED_HEADER: 4,
  MTU: 5,
  ROUTE_INFO: 24,
  RDNSS: 25,
  DNSSL: 31,
} as const;

/** Flag bits of the prefix information option. */
export const NdpPrefixFlags = {
  ON_LINK: 0x80,
  AUTONOMOUS: 0x40,
} as const;

export const NdpOptionError = {
  OK: 0,
  /** The option runs past the message, or fewer than 2 bytes are left. */
  TRUNCATED: 1,
  /** Length field 0: "silently discard" the whole packet (RFC 4861 section 4.6). */
  ZERO_LENGTH: 2,
  /** A type we understand with a length its format does not allow. */
  BAD_LENGTH: 3,
} as const;
export type NdpOptionError = (typeof NdpOptionError)[keyof typeof NdpOptionError];

// Option layout (RFC 4861 section 4.6): Type, Length in units of 8 bytes, then type-specific data.
//
// Prefix information (4.6.2), 32 bytes:
// |     Type      |    Length     | Prefix Length |L|A| Reserved1 |
// |                         Valid Lifetime                        |
// |                       Preferred Lifetime                      |
// |                           Reserved2                           |
// +                            Prefix (16)                        +
//
// MTU (4.6.4), 8 bytes:          | Type | Length | Reserved (16) | MTU (32) |
// RDNSS (RFC 8106 5.1):          | Type | Length | Reserved (16) | Lifetime (32) | Addresses (16 each) |
// DNSSL (RFC 8106 5.2):          | Type | Length | Reserved (16) | Lifetime (32) | Domain names, padded |
// Link-layer address (4.6.1):    | Type | Length | Address (6 for Ethernet) |
// Redirected header (4.6.3):     | Type | Length | Reserved (48) | IP header + data |
const O = {
  TYPE: 0,
  LENGTH: 1,
  LL_ADDR: 2,
  PREFIX_LENGTH: 2,
  PREFIX_FLAGS: 3,
  VALID_LIFETIME: 4,
  PREFERRED_LIFETIME: 8,
  PREFIX: 16,
  MTU: 4,
  LIFETIME: 4,
  DATA: 8,
} as const;

/**
 * Walks NDP options. next() positions on the next option and returns true; false at the end or on
 * an invalid option, when `error` is set (any error means: drop the whole message). Unknown types
 * are returned too; RFC 4861 says to ignore them.
 */
export class NdpOptionIterator {
  bytes: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private end = 0;
  /** Current option: type, absolute offset of its Type byte, total length in bytes. */
  type = 0;
  offset = 0;
  length = 0;
  error: NdpOptionError = NdpOptionError.OK;

  /** Iterates the `length` bytes of options at `offset`. */
  at(bytes: Uint8Array, offset: number, length: number): this {
    this.bytes = bytes;
    this.pos = offset;
    this.end = Math.min(offset + length, bytes.length);
    this.error = NdpOptionError.OK;
    return this;
  }

  next(): boolean {
    if (this.pos >= this.end) return false;
    if (this.pos + 2 > this.end) return this.fail(NdpOptionError.TRUNCATED);
    const units = this.bytes[this.pos + O.LENGTH]!;
    if (units === 0) return this.fail(NdpOptionError.ZERO_LENGTH);
    const len = units * 8;
    if (this.pos + len > this.end) return this.fail(NdpOptionError.TRUNCATED);
    this.type = this.bytes[this.pos]!;
    this.offset = this.pos;
    this.length = len;
    if (!lengthFits(this.type, units)) return this.fail(NdpOptionError.BAD_LENGTH);
    this.pos += len;
    return true;
  }

  /** Walks all remaining options; true when none is invalid. */
  validate(): boolean {
    while (this.next()) {
      // nothing: next() does the checking
    }
    return this.error === NdpOptionError.OK;
  }

  // Accessors for the current option; valid only for the matching type.

  /** Link-layer address options: absolute offset of the 6-byte MAC. */
  get linkAddressOffset(): number {
    return this.offset + O.LL_ADDR;
  }
  get prefixLength(): number {
    return get8(this.bytes, this.offset + O.PREFIX_LENGTH);
  }
  get prefixFlags(): number {
    return get8(this.bytes, this.offset + O.PREFIX_FLAGS);
  }
  get onLink(): boolean {
    return (this.prefixFlags & NdpPrefixFlags.ON_LINK) !== 0;
  }
  get autonomous(): boolean {
    return (this.prefixFlags & NdpPrefixFlags.AUTONOMOUS) !== 0;
  }
  get validLifetime(): number {
    return get32(this.bytes, this.offset + O.VALID_LIFETIME);
  }
  get preferredLifetime(): number {
    return get32(this.bytes, this.offset + O.PREFERRED_LIFETIME);
  }
  /** Prefix information: absolute offset of the 16-byte prefix. */
  get prefixOffset(): number {
    return this.offset + O.PREFIX;
  }
  get mtu(): number {
    return get32(this.bytes, this.offset + O.MTU);
  }
  /** RDNSS and DNSSL lifetime in seconds (0xffffffff: infinity). */
  get lifetime(): number {
    return get32(this.bytes, this.offset + O.LIFETIME);
  }
  /** RDNSS: number of server addresses. */
  get serverCount(): number {
    return (this.length - O.DATA) / IPV6_ADDR_LEN;
  }
  /** RDNSS: absolute offset of server address `i`. */
  serverOffset(i: number): number {
    return this.offset + O.DATA + i * IPV6_ADDR_LEN;
  }
  /** DNSSL and redirected header: the data after the 8-byte option header. */
  get dataOffset(): number {
    return this.offset + O.DATA;
  }
  get dataLength(): number {
    return this.length - O.DATA;
  }

  private fail(e: NdpOptionError): boolean {
    this.error = e;
    this.pos = this.end;
    return false;
  }
}

/** Lengths (in 8-byte units) each understood option allows. */
function lengthFits(type: number, units: number): boolean {
  switch (type) {
    case NdpOptionType.PREFIX_INFO:
      return units === 4;
    case NdpOptionType.MTU:
      return units === 1;
    case NdpOptionType.RDNSS:
      // "The length ... is 1 + 2 * (number of addresses)", at least one address.
      return units >= 3 && (units & 1) === 1;
    case NdpOptionType.DNSSL:
      return units >= 2;
    default:
      // Link-layer options: one unit holds a MAC. Unknown types: any non-zero length.
      return true;
  }
}

const validator = new NdpOptionIterator();

/** Fields and checks every NDP message view shares. */
export abstract class NdpMessage extends WireView {
  protected abstract readonly fixedLength: number;

  /**
   * The fixed part fits, the code is 0, and every option is well formed (RFC 4861 validity checks
   * that do not need the IP header). The type is the dispatcher's business.
   */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < this.fixedLength) return false;
    if (this.code !== 0) return false;
    return validator.at(this.bytes, this.optionsOffset, this.optionsLength).validate();
  }

  get type(): number {
    return get8(this.bytes, this.offset + F.TYPE);
  }
  get code(): number {
    return get8(this.bytes, this.offset + F.CODE);
  }
  get optionsOffset(): number {
    return this.offset + this.fixedLength;
  }
  get optionsLength(): number {
    return this.length - this.fixedLength;
  }
  /** Absolute offset of the MAC in the first option of `type` (source/target link-layer), or -1. */
  findLinkAddress(type: number): number {
    const it = validator.at(this.bytes, this.optionsOffset, this.optionsLength);
    while (it.next()) if (it.type === type) return it.linkAddressOffset;
    return -1;
  }
}

export class NdpRouterSolicit extends NdpMessage {
  protected readonly fixedLength = NDP_RS_LEN;
}

export class NdpRouterAdvert extends NdpMessage {
  protected readonly fixedLength = NDP_RA_LEN;

  get curHopLimit(): number {
    return get8(this.bytes, this.offset + F.CUR_HOP_LIMIT);
  }
  set curHopLimit(v: number) {
    set8(this.bytes, this.offset + F.CUR_HOP_LIMIT, v);
  }
  get flags(): number {
    return get8(this.bytes, this.offset + F.RA_FLAGS);
  }
  set flags(v: number) {
    set8(this.bytes, this.offset + F.RA_FLAGS, v);
  }
  get managed(): boolean {
    return (this.flags & NdpRaFlags.MANAGED) !== 0;
  }
  get other(): boolean {
    return (this.flags & NdpRaFlags.OTHER) !== 0;
  }
  /** Default router preference, see NdpRouterPreference. */
  get preference(): number {
    return (this.flags >>> 3) & 0x3;
  }
  /** Seconds; 0 means "not a default router". */
  get routerLifetime(): number {
    return get16(this.bytes, this.offset + F.ROUTER_LIFETIME);
  }
  set routerLifetime(v: number) {
    set16(this.bytes, this.offset + F.ROUTER_LIFETIME, v);
  }
  /** Milliseconds; 0 means unspecified. */
  get reachableTime(): number {
    return get32(this.bytes, this.offset + F.REACHABLE_TIME);
  }
  set reachableTime(v: number) {
    set32(this.bytes, this.offset + F.REACHABLE_TIME, v);
  }
  /** Milliseconds; 0 means unspecified. */
  get retransTimer(): number {
    return get32(this.bytes, this.offset + F.RETRANS_TIMER);
  }
  set retransTimer(v: number) {
    set32(this.bytes, this.offset + F.RETRANS_TIMER, v);
  }
}

export class NdpNeighborSolicit extends NdpMessage {
  protected readonly fixedLength = NDP_NS_LEN;

  /** Absolute offset of the target address. */
  get targetOffset(): number {
    return this.offset + F.TARGET;
  }
}

export class NdpNeighborAdvert extends NdpMessage {
  protected readonly fixedLength = NDP_NA_LEN;

  get flags(): number {
    return get8(this.bytes, this.offset + F.NA_FLAGS);
  }
  set flags(v: number) {
    set8(this.bytes, this.offset + F.NA_FLAGS, v);
  }
  get router(): boolean {
    return (this.flags & NdpNaFlags.ROUTER) !== 0;
  }
  get solicited(): boolean {
    return (this.flags & NdpNaFlags.SOLICITED) !== 0;
  }
  get override(): boolean {
    return (this.flags & NdpNaFlags.OVERRIDE) !== 0;
  }
  /** Absolute offset of the target address. */
  get targetOffset(): number {
    return this.offset + F.TARGET;
  }
}

export class NdpRedirect extends NdpMessage {
  protected readonly fixedLength = NDP_REDIRECT_LEN;

  /** Absolute offset of the better first hop. */
  get targetOffset(): number {
    return this.offset + F.TARGET;
  }
  /** Absolute offset of the destination being redirected. */
  get destinationOffset(): number {
    return this.offset + F.DESTINATION;
  }
}

// ---- Option emitters: each returns the option length, or -1 when it does not fit ----

/** Source (1) or target (2) link-layer address option for Ethernet: 8 bytes. */
export function emitNdpLinkLayerOption(buf: Uint8Array, off: number, type: number, mac: Uint8Array): number {
  if (!rangeOk(buf, off, 8)) return -1;
  set8(buf, off + O.TYPE, type);
  set8(buf, off + O.LENGTH, 1);
  copyBytes(buf, off + O.LL_ADDR, mac, 0, MAC_LEN);
  return 8;
}

export interface NdpPrefixRepr {
  prefix: Uint8Array; // 16 bytes
  prefixLength: number;
  onLink: boolean;
  autonomous: boolean;
  /** Seconds; 0xffffffff is infinity. */
  validLifetime: number;
  preferredLifetime: number;
}

/** Prefix information option: 32 bytes. */
export function emitNdpPrefixOption(buf: Uint8Array, off: number, p: NdpPrefixRepr): number {
  if (!rangeOk(buf, off, 32)) return -1;
  set8(buf, off + O.TYPE, NdpOptionType.PREFIX_INFO);
  set8(buf, off + O.LENGTH, 4);
  set8(buf, off + O.PREFIX_LENGTH, p.prefixLength);
  set8(buf, off + O.PREFIX_FLAGS, (p.onLink ? NdpPrefixFlags.ON_LINK : 0) | (p.autonomous ? NdpPrefixFlags.AUTONOMOUS : 0));
  set32(buf, off + O.VALID_LIFETIME, p.validLifetime);
  set32(buf, off + O.PREFERRED_LIFETIME, p.preferredLifetime);
  set32(buf, off + 12, 0);
  copyBytes(buf, off + O.PREFIX, p.prefix, 0, IPV6_ADDR_LEN);
  return 32;
}

/** MTU option: 8 bytes. */
export function emitNdpMtuOption(buf: Uint8Array, off: number, mtu: number): number {
  if (!rangeOk(buf, off, 8)) return -1;
  set8(buf, off + O.TYPE, NdpOptionType.MTU);
  set8(buf, off + O.LENGTH, 1);
  set16(buf, off + 2, 0);
  set32(buf, off + O.MTU, mtu);
  return 8;
}

/** RDNSS option (RFC 8106 section 5.1): 8 + 16 per server; at least one server. */
export function emitNdpRdnssOption(buf: Uint8Array, off: number, lifetime: number, servers: Uint8Array[]): number {
  const len = O.DATA + IPV6_ADDR_LEN * servers.length;
  if (servers.length === 0 || len > 255 * 8 || !rangeOk(buf, off, len)) return -1;
  set8(buf, off + O.TYPE, NdpOptionType.RDNSS);
  set8(buf, off + O.LENGTH, len / 8);
  set16(buf, off + 2, 0);
  set32(buf, off + O.LIFETIME, lifetime);
  for (let i = 0; i < servers.length; i++) copyBytes(buf, off + O.DATA + i * IPV6_ADDR_LEN, servers[i]!, 0, IPV6_ADDR_LEN);
  return len;
}

/** DNSSL option (RFC 8106 section 5.2): names uncompressed, zero-padded to a multiple of 8. */
export function emitNdpDnsslOption(buf: Uint8Array, off: number, lifetime: number, domains: string[]): number {
  let names = 0;
  for (const d of domains) {
    const n = dnsNameLength(d);
    if (n < 0) return -1;
    names += n;
  }
  const len = (O.DATA + names + 7) & ~7;
  if (domains.length === 0 || len > 255 * 8 || !rangeOk(buf, off, len)) return -1;
  set8(buf, off + O.TYPE, NdpOptionType.DNSSL);
  set8(buf, off + O.LENGTH, len / 8);
  set16(buf, off + 2, 0);
  set32(buf, off + O.LIFETIME, lifetime);
  let p = off + O.DATA;
  for (const d of domains) p = encodeDnsName(buf, p, off + len, d);
  buf.fill(0, p, off + len);
  return len;
}

/**
 * Redirected header option: 8 + as much of the invoking packet as fits in `maxLength` bytes of
 * option, rounded down to a multiple of 8 (RFC 4861 section 4.6.3).
 */
export function emitNdpRedirectedHeaderOption(buf: Uint8Array, off: number, orig: Uint8Array, origOff: number, origLen: number, maxLength: number): number {
  const room = Math.min(maxLength, buf.length - off, 255 * 8);
  // Whole option is a multiple of 8; pad the quoted bytes with zeros up to it.
  const quoted = Math.max(0, Math.min(origLen, (room - O.DATA) & ~7));
  const len = (O.DATA + quoted + 7) & ~7;
  if (len > room || !rangeOk(buf, off, len)) return -1;
  set8(buf, off + O.TYPE, NdpOptionType.REDIRECTED_HEADER);
  set8(buf, off + O.LENGTH, len / 8);
  buf.fill(0, off + 2, off + O.DATA);
  copyBytes(buf, off + O.DATA, orig, origOff, quoted);
  buf.fill(0, off + O.DATA + quoted, off + len);
  return len;
}

// ---- Message emitters: each writes the whole ICMPv6 message with its checksum ----
// `src` and `dst` are the 16-byte addresses of the IPv6 header that will carry the message.
// Each returns the message length, or -1 when it does not fit.

export interface NdpNeighborSolicitRepr {
  target: Uint8Array; // 16 bytes
  /** Omitted for DAD probes (source ::), which must not carry one (RFC 4861 section 7.1.1). */
  sourceMac?: Uint8Array;
}

export function emitNdpNeighborSolicit(buf: Uint8Array, off: number, repr: NdpNeighborSolicitRepr, src: Uint8Array, dst: Uint8Array): number {
  const len = NDP_NS_LEN + (repr.sourceMac ? 8 : 0);
  if (!rangeOk(buf, off, len)) return -1;
  header(buf, off, Icmpv6Type.NEIGHBOR_SOLICIT);
  set32(buf, off + F.RESERVED, 0);
  copyBytes(buf, off + F.TARGET, repr.target, 0, IPV6_ADDR_LEN);
  if (repr.sourceMac) emitNdpLinkLayerOption(buf, off + NDP_NS_LEN, NdpOptionType.SOURCE_LL_ADDR, repr.sourceMac);
  fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

export interface NdpNeighborAdvertRepr {
  target: Uint8Array; // 16 bytes
  router: boolean;
  solicited: boolean;
  override: boolean;
  targetMac?: Uint8Array;
}

export function emitNdpNeighborAdvert(buf: Uint8Array, off: number, repr: NdpNeighborAdvertRepr, src: Uint8Array, dst: Uint8Array): number {
  const len = NDP_NA_LEN + (repr.targetMac ? 8 : 0);
  if (!rangeOk(buf, off, len)) return -1;
  header(buf, off, Icmpv6Type.NEIGHBOR_ADVERT);
  const flags = (repr.router ? NdpNaFlags.ROUTER : 0) | (repr.solicited ? NdpNaFlags.SOLICITED : 0) | (repr.override ? NdpNaFlags.OVERRIDE : 0);
  set32(buf, off + F.NA_FLAGS, (flags << 24) >>> 0);
  copyBytes(buf, off + F.TARGET, repr.target, 0, IPV6_ADDR_LEN);
  if (repr.targetMac) emitNdpLinkLayerOption(buf, off + NDP_NA_LEN, NdpOptionType.TARGET_LL_ADDR, repr.targetMac);
  fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

export interface NdpRouterSolicitRepr {
  sourceMac?: Uint8Array;
}

export function emitNdpRouterSolicit(buf: Uint8Array, off: number, repr: NdpRouterSolicitRepr, src: Uint8Array, dst: Uint8Array): number {
  const len = NDP_RS_LEN + (repr.sourceMac ? 8 : 0);
  if (!rangeOk(buf, off, len)) return -1;
  header(buf, off, Icmpv6Type.ROUTER_SOLICIT);
  set32(buf, off + F.RESERVED, 0);
  if (repr.sourceMac) emitNdpLinkLayerOption(buf, off + NDP_RS_LEN, NdpOptionType.SOURCE_LL_ADDR, repr.sourceMac);
  fillIcmpv6Checksum(buf, off, len, src, dst);
  return len;
}

export interface NdpRouterAdvertRepr {
  curHopLimit: number;
  managed: boolean;
  other: boolean;
  /** NdpRouterPreference; default medium. */
  preference?: number;
  routerLifetime: number;
  reachableTime: number;
  retransTimer: number;
  sourceMac?: Uint8Array;
  mtu?: number;
  prefixes?: NdpPrefixRepr[];
  rdnss?: { lifetime: number; servers: Uint8Array[] };
  dnssl?: { lifetime: number; domains: string[] };
}

/** Options are written in a fixed order: prefixes, MTU, source link-layer, RDNSS, DNSSL. */
export function emitNdpRouterAdvert(buf: Uint8Array, off: number, repr: NdpRouterAdvertRepr, src: Uint8Array, dst: Uint8Array): number {
  if (!rangeOk(buf, off, NDP_RA_LEN)) return -1;
  header(buf, off, Icmpv6Type.ROUTER_ADVERT);
  set8(buf, off + F.CUR_HOP_LIMIT, repr.curHopLimit);
  set8(buf, off + F.RA_FLAGS, (repr.managed ? NdpRaFlags.MANAGED : 0) | (repr.other ? NdpRaFlags.OTHER : 0) | (((repr.preference ?? 0) & 3) << 3));
  set16(buf, off + F.ROUTER_LIFETIME, repr.routerLifetime);
  set32(buf, off + F.REACHABLE_TIME, repr.reachableTime);
  set32(buf, off + F.RETRANS_TIMER, repr.retransTimer);
  let p = off + NDP_RA_LEN;
  for (const prefix of repr.prefixes ?? []) p = advance(p, emitNdpPrefixOption(buf, p, prefix));
  if (p >= 0 && repr.mtu !== undefined) p = advance(p, emitNdpMtuOption(buf, p, repr.mtu));
  if (p >= 0 && repr.sourceMac) p = advance(p, emitNdpLinkLayerOption(buf, p, NdpOptionType.SOURCE_LL_ADDR, repr.sourceMac));
  if (p >= 0 && repr.rdnss) p = advance(p, emitNdpRdnssOption(buf, p, repr.rdnss.lifetime, repr.rdnss.servers));
  if (p >= 0 && repr.dnssl) p = advance(p, emitNdpDnsslOption(buf, p, repr.dnssl.lifetime, repr.dnssl.domains));
  if (p < 0) return -1;
  fillIcmpv6Checksum(buf, off, p - off, src, dst);
  return p - off;
}

export interface NdpRedirectRepr {
  target: Uint8Array; // 16 bytes
  destination: Uint8Array; // 16 bytes
  targetMac?: Uint8Array;
  /** The invoking packet to quote in a redirected header option, from its IPv6 header. */
  redirected?: { bytes: Uint8Array; offset: number; length: number };
}

/** `maxLength` bounds the message (1280 - 40 so the packet stays within the minimum MTU). */
export function emitNdpRedirect(buf: Uint8Array, off: number, repr: NdpRedirectRepr, src: Uint8Array, dst: Uint8Array, maxLength = 1240): number {
  if (!rangeOk(buf, off, NDP_REDIRECT_LEN)) return -1;
  header(buf, off, Icmpv6Type.REDIRECT);
  set32(buf, off + F.RESERVED, 0);
  copyBytes(buf, off + F.TARGET, repr.target, 0, IPV6_ADDR_LEN);
  copyBytes(buf, off + F.DESTINATION, repr.destination, 0, IPV6_ADDR_LEN);
  let p = off + NDP_REDIRECT_LEN;
  if (repr.targetMac) p = advance(p, emitNdpLinkLayerOption(buf, p, NdpOptionType.TARGET_LL_ADDR, repr.targetMac));
  const r = repr.redirected;
  if (p >= 0 && r) {
    p = advance(p, emitNdpRedirectedHeaderOption(buf, p, r.bytes, r.offset, r.length, maxLength - (p - off)));
  }
  if (p < 0) return -1;
  fillIcmpv6Checksum(buf, off, p - off, src, dst);
  return p - off;
}

function header(buf: Uint8Array, off: number, type: number): void {
  set8(buf, off + F.TYPE, type);
  set8(buf, off + F.CODE, 0);
  set16(buf, off + 2, 0);
}

function advance(p: number, written: number): number {
  return p < 0 || written < 0 ? -1 : p + written;
}
