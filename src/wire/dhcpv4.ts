// DHCPv4: the BOOTP message and its options.
//
// Read before editing: RFC 2131 sections 2 (message format, the broadcast flag), 3 (client-server
// exchanges) and 4.1 (options after the magic cookie; the "file" and "sname" fields may carry options
// when option 52 says so), RFC 2132 (the options: 3.3 subnet mask, 3.5 router, 3.8 DNS, 3.14 host
// name, 3.17 domain name, 5.1 MTU, 5.3 broadcast, 9.1-9.14 DHCP extensions), RFC 3397 (domain
// search, compressed names), RFC 3396 (a long option split into several with the same code), RFC
// 4361 / 6842 (client identifier). Addresses are uint32 numbers.

import { OptionCursor, bytesEqual, copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';
import { MAC_LEN } from './ethernet.js';
import { encodeDnsNamesCompressed } from './names.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +---------------+---------------+---------------+---------------+
// |     op (1)    |   htype (1)   |   hlen (1)    |   hops (1)    |
// +---------------+---------------+---------------+---------------+
// |                            xid (4)                            |
// +-------------------------------+-------------------------------+
// |           secs (2)            |           flags (2)           |
// +-------------------------------+-------------------------------+
// |                          ciaddr  (4)                          |
// +---------------------------------------------------------------+
// |                          yiaddr  (4)                          |
// +---------------------------------------------------------------+
// |                          siaddr  (4)                          |
// +---------------------------------------------------------------+
// |                          giaddr  (4)                          |
// +---------------------------------------------------------------+
// |                          chaddr  (16)                         |
// +---------------------------------------------------------------+
// |                          sname   (64)                         |
// +---------------------------------------------------------------+
// |                          file    (128)                        |
// +---------------------------------------------------------------+
// |                 magic cookie 99.130.83.99 (4)                 |
// +---------------------------------------------------------------+
// |                          options (variable)                   |
// +---------------------------------------------------------------+
const F = {
  OP: 0,
  HTYPE: 1,
  HLEN: 2,
  HOPS: 3,
  XID: 4,
  SECS: 8,
  FLAGS: 10,
  CIADDR: 12,
  YIADDR: 16,
  SIADDR: 20,
  GIADDR: 24,
  CHADDR: 28,
  SNAME: 44,
  FILE: 108,
  COOKIE: 236,
  OPTIONS: 240,
} as const;

const SNAME_LEN = 64;
const FILE_LEN = 128;

export const DHCP_MAGIC_COOKIE = 0x63825363;
/** Header plus cookie; options follow. */
export const DHCP_FIXED_LEN = 240;
/** BOOTP's minimum message (RFC 1542 section 2.1); some clients drop shorter replies. */
export const DHCP_MIN_LEN = 300;
export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
/** The broadcast bit of the flags field (RFC 2131 section 2, figure 2). */
export const DHCP_FLAG_BROADCAST = 0x8000;

export const DhcpOp = {
  BOOTREQUEST: 1,
  BOOTREPLY: 2,
} as const;

export const DhcpMessageType = {
  DISCOVER: 1,
  OFFER: 2,
  REQUEST: 3,
  DECLINE: 4,
  ACK: 5,
  NAK: 6,
  RELEASE: 7,
  INFORM: 8,
} as const;

export const DhcpOption = {
  PAD: 0,
  SUBNET_MASK: 1,
  ROUTER: 3,
  DNS_SERVERS: 6,
  HOSTNAME: 12,
  DOMAIN_NAME: 15,
  INTERFACE_MTU: 26,
  BROADCAST_ADDRESS: 28,
  REQUESTED_IP: 50,
  LEASE_TIME: 51,
  OVERLOAD: 52,
  MESSAGE_TYPE: 53,
  SERVER_ID: 54,
  PARAMETER_REQUEST_LIST: 55,
  MESSAGE: 56,
  MAX_MESSAGE_SIZE: 57,
  RENEWAL_TIME: 58,
  REBINDING_TIME: 59,
  VENDOR_CLASS_ID: 60,
  CLIENT_ID: 61,
  RAPID_COMMIT: 80,
  CLIENT_FQDN: 81,
  DOMAIN_SEARCH: 119,
  CLASSLESS_STATIC_ROUTE: 121,
  END: 255,
} as const;

export const DhcpError = {
  OK: 0,
  /** Shorter than the 240-byte fixed part. */
  TRUNCATED: 1,
  /** Not the DHCP magic cookie (a plain BOOTP message, or garbage). */
  COOKIE: 2,
  /** An option runs past its area. */
  OPTIONS: 3,
} as const;
export type DhcpError = (typeof DhcpError)[keyof typeof DhcpError];

/** A view of a DHCP message (the UDP payload). */
export class DhcpPacket extends WireView {
  /** Well-formed: the fixed part and cookie are there, and every option area parses. */
  check(): boolean {
    return this.problem() === DhcpError.OK;
  }

  /** The first thing wrong with it, or OK (0): for a counter or a test that names the fault. */
  problem(): DhcpError {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < DHCP_FIXED_LEN) return DhcpError.TRUNCATED;
    if (this.cookie !== DHCP_MAGIC_COOKIE) return DhcpError.COOKIE;
    return validator.at(this.bytes, this.offset, this.length).validate() ? DhcpError.OK : DhcpError.OPTIONS;
  }

  get op(): number {
    return get8(this.bytes, this.offset + F.OP);
  }
  set op(v: number) {
    set8(this.bytes, this.offset + F.OP, v);
  }
  get htype(): number {
    return get8(this.bytes, this.offset + F.HTYPE);
  }
  set htype(v: number) {
    set8(this.bytes, this.offset + F.HTYPE, v);
  }
  get hlen(): number {
    return get8(this.bytes, this.offset + F.HLEN);
  }
  set hlen(v: number) {
    set8(this.bytes, this.offset + F.HLEN, v);
  }
  get hops(): number {
    return get8(this.bytes, this.offset + F.HOPS);
  }
  set hops(v: number) {
    set8(this.bytes, this.offset + F.HOPS, v);
  }
  get xid(): number {
    return get32(this.bytes, this.offset + F.XID);
  }
  set xid(v: number) {
    set32(this.bytes, this.offset + F.XID, v);
  }
  get secs(): number {
    return get16(this.bytes, this.offset + F.SECS);
  }
  set secs(v: number) {
    set16(this.bytes, this.offset + F.SECS, v);
  }
  get flags(): number {
    return get16(this.bytes, this.offset + F.FLAGS);
  }
  set flags(v: number) {
    set16(this.bytes, this.offset + F.FLAGS, v);
  }
  get broadcast(): boolean {
    return (this.flags & DHCP_FLAG_BROADCAST) !== 0;
  }
  get ciaddr(): number {
    return get32(this.bytes, this.offset + F.CIADDR);
  }
  set ciaddr(v: number) {
    set32(this.bytes, this.offset + F.CIADDR, v);
  }
  get yiaddr(): number {
    return get32(this.bytes, this.offset + F.YIADDR);
  }
  set yiaddr(v: number) {
    set32(this.bytes, this.offset + F.YIADDR, v);
  }
  get siaddr(): number {
    return get32(this.bytes, this.offset + F.SIADDR);
  }
  set siaddr(v: number) {
    set32(this.bytes, this.offset + F.SIADDR, v);
  }
  get giaddr(): number {
    return get32(this.bytes, this.offset + F.GIADDR);
  }
  set giaddr(v: number) {
    set32(this.bytes, this.offset + F.GIADDR, v);
  }
  /** Absolute offset of chaddr (16 bytes; the first hlen are the client's MAC). */
  get chaddrOffset(): number {
    return this.offset + F.CHADDR;
  }
  get snameOffset(): number {
    return this.offset + F.SNAME;
  }
  get fileOffset(): number {
    return this.offset + F.FILE;
  }
  get cookie(): number {
    return get32(this.bytes, this.offset + F.COOKIE);
  }
  get optionsOffset(): number {
    return this.offset + F.OPTIONS;
  }
  get optionsLength(): number {
    return this.length - F.OPTIONS;
  }
  /** chaddr holds an Ethernet MAC (htype 1, hlen 6). */
  hasEthernetChaddr(): boolean {
    return this.htype === 1 && this.hlen === MAC_LEN;
  }

  /** Parses the options a server uses into `out`; see parseDhcpOptions. */
  parseOptions(out: DhcpOptions): boolean {
    return parseDhcpOptions(this.bytes, this.offset, this.length, out);
  }
}

/**
 * Walks the options of a DHCP message: the options field, then "file" and "sname" when option 52
 * (overload) says they hold options (RFC 2131 section 4.1). PAD is skipped; END closes an area.
 * next() positions on the next option and returns true; false at the end, or with `error` set when
 * an option runs past its area.
 */
export class DhcpOptionIterator extends OptionCursor {
  private packet = 0;
  /** 0 options field, 1 file, 2 sname, 3 done. */
  private area = 0;
  private overload = 0;

  /** Iterates the options of the DHCP message at `packetOffset` (whole message, `packetLength` bytes). */
  at(bytes: Uint8Array, packetOffset: number, packetLength: number): this {
    this.bytes = bytes;
    this.packet = packetOffset;
    this.pos = packetOffset + F.OPTIONS;
    this.end = Math.min(packetOffset + packetLength, bytes.length);
    this.area = 0;
    this.overload = 0;
    this.error = this.end < packetOffset + F.OPTIONS;
    return this;
  }

  next(): boolean {
    while (!this.error) {
      if (this.pos >= this.end) {
        if (!this.nextArea()) return false;
        continue;
      }
      const code = this.bytes[this.pos]!;
      if (code === DhcpOption.PAD) {
        this.pos++;
        continue;
      }
      if (code === DhcpOption.END) {
        if (!this.nextArea()) return false;
        continue;
      }
      if (this.pos + 2 > this.end) return this.fail();
      const len = this.bytes[this.pos + 1]!;
      if (this.pos + 2 + len > this.end) return this.fail();
      this.code = code;
      this.offset = this.pos + 2;
      this.length = len;
      this.pos += 2 + len;
      if (code === DhcpOption.OVERLOAD && len === 1 && this.area === 0) this.overload = this.bytes[this.offset]! & 3;
      return true;
    }
    return false;
  }

  /** Address `i` of an address-list option. */
  ip(i = 0): number {
    return get32(this.bytes, this.offset + 4 * i);
  }

  private nextArea(): boolean {
    // Order from RFC 2131 section 4.1: options, then file, then sname.
    if (this.area === 0 && (this.overload & 1) !== 0) {
      this.area = 1;
      this.pos = this.packet + F.FILE;
      this.end = this.packet + F.FILE + FILE_LEN;
      return true;
    }
    if (this.area <= 1 && (this.overload & 2) !== 0) {
      this.area = 2;
      this.pos = this.packet + F.SNAME;
      this.end = this.packet + F.SNAME + SNAME_LEN;
      return true;
    }
    this.area = 3;
    this.pos = this.end;
    return false;
  }
}

const validator = new DhcpOptionIterator();

/**
 * The options a server acts on, parsed into one preallocated object. Absent numbers are -1; byte
 * strings are (offset, length) into the message, offset -1 when absent. A repeated option keeps its
 * first occurrence (the RFC 3396 concatenation of split options is not done).
 */
export class DhcpOptions {
  messageType = -1;
  requestedIp = -1;
  serverId = -1;
  leaseTime = -1;
  maxMessageSize = -1;
  clientIdOffset = -1;
  clientIdLength = 0;
  hostnameOffset = -1;
  hostnameLength = 0;
  paramRequestOffset = -1;
  paramRequestLength = 0;
  vendorClassOffset = -1;
  vendorClassLength = 0;
  rapidCommit = false;

  reset(): this {
    this.messageType = -1;
    this.requestedIp = -1;
    this.serverId = -1;
    this.leaseTime = -1;
    this.maxMessageSize = -1;
    this.clientIdOffset = -1;
    this.clientIdLength = 0;
    this.hostnameOffset = -1;
    this.hostnameLength = 0;
    this.paramRequestOffset = -1;
    this.paramRequestLength = 0;
    this.vendorClassOffset = -1;
    this.vendorClassLength = 0;
    this.rapidCommit = false;
    return this;
  }
}

/**
 * Parses the server-relevant options of the message at `packetOffset` into `out`. Options with a
 * length their format forbids are ignored. Returns false when the option list is malformed.
 */
export function parseDhcpOptions(bytes: Uint8Array, packetOffset: number, packetLength: number, out: DhcpOptions): boolean {
  out.reset();
  const it = parser.at(bytes, packetOffset, packetLength);
  while (it.next()) {
    const l = it.length;
    switch (it.code) {
      case DhcpOption.MESSAGE_TYPE:
        if (l === 1 && out.messageType < 0) out.messageType = it.u8;
        break;
      case DhcpOption.REQUESTED_IP:
        if (l === 4 && out.requestedIp < 0) out.requestedIp = it.u32;
        break;
      case DhcpOption.SERVER_ID:
        if (l === 4 && out.serverId < 0) out.serverId = it.u32;
        break;
      case DhcpOption.LEASE_TIME:
        if (l === 4 && out.leaseTime < 0) out.leaseTime = it.u32;
        break;
      case DhcpOption.MAX_MESSAGE_SIZE:
        if (l === 2 && out.maxMessageSize < 0) out.maxMessageSize = it.u16;
        break;
      case DhcpOption.CLIENT_ID:
        // "The minimum length is 2" (RFC 2132 section 9.14): a type byte and at least one more.
        if (l >= 2 && out.clientIdOffset < 0) {
          out.clientIdOffset = it.offset;
          out.clientIdLength = l;
        }
        break;
      case DhcpOption.HOSTNAME:
        if (l >= 1 && out.hostnameOffset < 0) {
          out.hostnameOffset = it.offset;
          out.hostnameLength = l;
        }
        break;
      case DhcpOption.PARAMETER_REQUEST_LIST:
        if (l >= 1 && out.paramRequestOffset < 0) {
          out.paramRequestOffset = it.offset;
          out.paramRequestLength = l;
        }
        break;
      case DhcpOption.VENDOR_CLASS_ID:
        if (l >= 1 && out.vendorClassOffset < 0) {
          out.vendorClassOffset = it.offset;
          out.vendorClassLength = l;
        }
        break;
      case DhcpOption.RAPID_COMMIT:
        if (l === 0) out.rapidCommit = true;
        break;
    }
  }
  return !it.error;
}
const parser = new DhcpOptionIterator();

/** True when the parameter request list (as parsed into `opts`) asks for `code`. */
export function dhcpRequests(bytes: Uint8Array, opts: DhcpOptions, code: number): boolean {
  for (let i = 0; i < opts.paramRequestLength; i++) if (bytes[opts.paramRequestOffset + i] === code) return true;
  return false;
}

export interface DhcpRepr {
  op: number;
  xid: number;
  secs: number;
  flags: number;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  /** The client's MAC (6 bytes); htype 1, hlen 6 are written. */
  chaddr: Uint8Array;
  hops?: number;
}

/** Writes the 240-byte fixed part with a zeroed sname/file and the cookie; returns 240 or -1. */
export function emitDhcpHeader(buf: Uint8Array, off: number, repr: DhcpRepr): number {
  if (!rangeOk(buf, off, DHCP_FIXED_LEN)) return -1;
  buf.fill(0, off, off + DHCP_FIXED_LEN);
  set8(buf, off + F.OP, repr.op);
  set8(buf, off + F.HTYPE, 1);
  set8(buf, off + F.HLEN, MAC_LEN);
  set8(buf, off + F.HOPS, repr.hops ?? 0);
  set32(buf, off + F.XID, repr.xid);
  set16(buf, off + F.SECS, repr.secs);
  set16(buf, off + F.FLAGS, repr.flags);
  set32(buf, off + F.CIADDR, repr.ciaddr);
  set32(buf, off + F.YIADDR, repr.yiaddr);
  set32(buf, off + F.SIADDR, repr.siaddr);
  set32(buf, off + F.GIADDR, repr.giaddr);
  copyBytes(buf, off + F.CHADDR, repr.chaddr, 0, MAC_LEN);
  set32(buf, off + F.COOKIE, DHCP_MAGIC_COOKIE);
  return DHCP_FIXED_LEN;
}

// ---- Options writer ----
// Each function appends one option at `off`, never writing at or past `end`, and returns the offset
// after it, or -1 when it does not fit. A -1 `off` passes through, so calls chain:
//   o = dhcpPutU8(buf, o, end, DhcpOption.MESSAGE_TYPE, DhcpMessageType.OFFER);
//   o = dhcpPutIp(buf, o, end, DhcpOption.SERVER_ID, server);
//   o = dhcpPutEnd(buf, o, end);
//   if (o < 0) ... // did not fit

function room(buf: Uint8Array, off: number, end: number, n: number): boolean {
  return off >= 0 && off + n <= Math.min(end, buf.length);
}

export function dhcpPutU8(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, 3)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, 1);
  set8(buf, off + 2, value);
  return off + 3;
}

export function dhcpPutU16(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, 4)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, 2);
  set16(buf, off + 2, value);
  return off + 4;
}

export function dhcpPutU32(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, 6)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, 4);
  set32(buf, off + 2, value);
  return off + 6;
}

/** One address (subnet mask, server id, requested IP, broadcast). */
export function dhcpPutIp(buf: Uint8Array, off: number, end: number, code: number, addr: number): number {
  return dhcpPutU32(buf, off, end, code, addr);
}

/** A list of addresses (router, DNS servers); at least one, at most 63. */
export function dhcpPutIps(buf: Uint8Array, off: number, end: number, code: number, addrs: readonly number[]): number {
  const n = addrs.length;
  if (n === 0 || n > 63 || !room(buf, off, end, 2 + 4 * n)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, 4 * n);
  for (let i = 0; i < n; i++) set32(buf, off + 2 + 4 * i, addrs[i]!);
  return off + 2 + 4 * n;
}

/** An option whose value is `len` bytes copied from `src` (client id echo, opaque data). */
export function dhcpPutBytes(buf: Uint8Array, off: number, end: number, code: number, src: Uint8Array, srcOff: number, len: number): number {
  if (len > 255 || !room(buf, off, end, 2 + len)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, len);
  copyBytes(buf, off + 2, src, srcOff, len);
  return off + 2 + len;
}

/** An option with no value (rapid commit). */
export function dhcpPutEmpty(buf: Uint8Array, off: number, end: number, code: number): number {
  if (!room(buf, off, end, 2)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, 0);
  return off + 2;
}

/** A text option (host name, domain name, message), as single-byte characters; 1..255 of them. */
export function dhcpPutString(buf: Uint8Array, off: number, end: number, code: number, text: string): number {
  const n = text.length;
  if (n === 0 || n > 255 || !room(buf, off, end, 2 + n)) return -1;
  set8(buf, off, code);
  set8(buf, off + 1, n);
  for (let i = 0; i < n; i++) buf[off + 2 + i] = text.charCodeAt(i) & 0xff;
  return off + 2 + n;
}

/**
 * Domain search (option 119, RFC 3397): the names, compressed with pointers relative to the start
 * of the list, split into consecutive options of at most 255 bytes when longer (RFC 3396).
 */
export function dhcpPutDomainSearch(buf: Uint8Array, off: number, end: number, domains: readonly string[]): number {
  if (off < 0 || domains.length === 0) return -1;
  end = Math.min(end, buf.length);
  const data = off + 2;
  const stop = encodeDnsNamesCompressed(buf, data, end, [...domains]);
  if (stop < 0) return -1;
  const total = stop - data;
  const chunks = Math.ceil(total / 255);
  const after = off + total + 2 * chunks;
  if (after > end) return -1;
  // Move the chunks right to open a 2-byte header before each, last chunk first.
  for (let i = chunks - 1; i >= 0; i--) {
    const len = Math.min(255, total - 255 * i);
    const from = data + 255 * i;
    const to = off + 257 * i + 2;
    if (to !== from) buf.copyWithin(to, from, from + len);
    set8(buf, to - 2, DhcpOption.DOMAIN_SEARCH);
    set8(buf, to - 1, len);
  }
  return after;
}

/** The END option. */
export function dhcpPutEnd(buf: Uint8Array, off: number, end: number): number {
  if (!room(buf, off, end, 1)) return -1;
  set8(buf, off, DhcpOption.END);
  return off + 1;
}

/** Zero-fills from `off` so the message starting at `packetOffset` is at least DHCP_MIN_LEN long. */
export function dhcpPadToMinimum(buf: Uint8Array, packetOffset: number, off: number, end: number): number {
  if (off < 0) return -1;
  const target = packetOffset + DHCP_MIN_LEN;
  if (off >= target) return off;
  if (target > Math.min(end, buf.length)) return -1;
  buf.fill(0, off, target);
  return target;
}

/** chaddr of the message at `packetOffset` equals `mac`. */
export function dhcpChaddrIs(bytes: Uint8Array, packetOffset: number, mac: Uint8Array): boolean {
  return bytesEqual(bytes, packetOffset + F.CHADDR, mac, 0, MAC_LEN);
}
