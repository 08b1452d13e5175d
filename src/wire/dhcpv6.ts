// DHCPv6.
//
// Read before editing: RFC 8415 sections 8 (client/server message format), 9 (relay messages),
// 11 (DUIDs), 16 (message validation: which options each message must and must not carry),
// 21 (option formats: 21.2 client id, 21.3 server id, 21.4 IA_NA, 21.6 IA address, 21.7 ORO,
// 21.8 preference, 21.9 elapsed time, 21.13 status code, 21.14 rapid commit), RFC 3646 (DNS servers
// option 23, domain list option 24 in uncompressed DNS wire format).

import { OptionCursor, copyBytes, get16, get24, get32, get8, rangeOk, set16, set24, set32, set8, WireView } from './bytes.js';
import { MAC_LEN } from './ethernet.js';
import { IPV6_ADDR_LEN } from './ipv6.js';
import { dnsNameLength, encodeDnsName } from './names.js';

// Client/server message (RFC 8415 section 8):
//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |    msg-type   |               transaction-id                  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// .                            options                            .
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// Relay agent/server message (section 9):
// |    msg-type   |   hop-count   |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// |                       link-address (16)                       |
// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                               |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// |                       peer-address (16)                       |
// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                               |                               .
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               .
// .                  options (variable number and length)         .
const F = {
  MSG_TYPE: 0,
  XID: 1,
  OPTIONS: 4,
  HOP_COUNT: 1,
  LINK_ADDRESS: 2,
  PEER_ADDRESS: 18,
  RELAY_OPTIONS: 34,
} as const;

// Option (section 21.1):
// |          option-code          |           option-len          |
// |                          option-data                          |
//
// IA_NA data (21.4):      IAID (4) | T1 (4) | T2 (4) | IA_NA-options
// IA address data (21.6): IPv6-address (16) | preferred-lifetime (4) | valid-lifetime (4) | IAaddr-options
// Status code data (21.13): status-code (2) | status-message (UTF-8)
const OPT_HEADER_LEN = 4;

export const DHCPV6_HEADER_LEN = 4;
export const DHCPV6_RELAY_HEADER_LEN = 34;
export const DHCPV6_CLIENT_PORT = 546;
export const DHCPV6_SERVER_PORT = 547;

export const Dhcpv6MessageType = {
  SOLICIT: 1,
  ADVERTISE: 2,
  REQUEST: 3,
  CONFIRM: 4,
  RENEW: 5,
  REBIND: 6,
  REPLY: 7,
  RELEASE: 8,
  DECLINE: 9,
  RECONFIGURE: 10,
  INFORMATION_REQUEST: 11,
  RELAY_FORW: 12,
  RELAY_REPL: 13,
} as const;

export const Dhcpv6Option = {
  CLIENTID: 1,
  SERVERID: 2,
  IA_NA: 3,
  IA_TA: 4,
  IAADDR: 5,
  ORO: 6,
  PREFERENCE: 7,
  ELAPSED_TIME: 8,
  RELAY_MSG: 9,
  AUTH: 11,
  UNICAST: 12,
  STATUS_CODE: 13,
  RAPID_COMMIT: 14,
  USER_CLASS: 15,
  VENDOR_CLASS: 16,
  VENDOR_OPTS: 17,
  INTERFACE_ID: 18,
  RECONF_MSG: 19,
  RECONF_ACCEPT: 20,
  DNS_SERVERS: 23,
  DOMAIN_LIST: 24,
  IA_PD: 25,
  IAPREFIX: 26,
  INFORMATION_REFRESH_TIME: 32,
  CLIENT_FQDN: 39,
  SOL_MAX_RT: 82,
  INF_MAX_RT: 83,
} as const;

export const Dhcpv6Status = {
  SUCCESS: 0,
  UNSPEC_FAIL: 1,
  NO_ADDRS_AVAIL: 2,
  NO_BINDING: 3,
  NOT_ON_LINK: 4,
  USE_MULTICAST: 5,
  NO_PREFIX_AVAIL: 6,
} as const;

export const DuidType = {
  LLT: 1,
  EN: 2,
  LL: 3,
  UUID: 4,
} as const;

export const DHCPV6_IA_NA_LEN = 12;
export const DHCPV6_IAADDR_LEN = 24;

/** A view of a DHCPv6 message (the UDP payload), client/server or relay. */
export class Dhcpv6Message extends WireView {
  /** The header fits (34 bytes for relay messages) and the top-level options parse. */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < DHCPV6_HEADER_LEN) return false;
    if (this.isRelay() && this.length < DHCPV6_RELAY_HEADER_LEN) return false;
    return validator.at(this.bytes, this.optionsOffset, this.optionsLength).validate();
  }

  get msgType(): number {
    return get8(this.bytes, this.offset + F.MSG_TYPE);
  }
  set msgType(v: number) {
    set8(this.bytes, this.offset + F.MSG_TYPE, v);
  }
  /** 24-bit transaction id (client/server messages). */
  get transactionId(): number {
    return get24(this.bytes, this.offset + F.XID);
  }
  set transactionId(v: number) {
    set24(this.bytes, this.offset + F.XID, v);
  }
  isRelay(): boolean {
    const t = this.msgType;
    return t === Dhcpv6MessageType.RELAY_FORW || t === Dhcpv6MessageType.RELAY_REPL;
  }
  get hopCount(): number {
    return get8(this.bytes, this.offset + F.HOP_COUNT);
  }
  /** Relay messages: absolute offsets of the link and peer addresses. */
  get linkAddressOffset(): number {
    return this.offset + F.LINK_ADDRESS;
  }
  get peerAddressOffset(): number {
    return this.offset + F.PEER_ADDRESS;
  }
  get optionsOffset(): number {
    return this.offset + (this.isRelay() ? F.RELAY_OPTIONS : F.OPTIONS);
  }
  get optionsLength(): number {
    return this.length - (this.isRelay() ? F.RELAY_OPTIONS : F.OPTIONS);
  }

  parseOptions(out: Dhcpv6Options): boolean {
    return parseDhcpv6Options(this.bytes, this.optionsOffset, this.optionsLength, out);
  }
}

/**
 * Walks one level of DHCPv6 options (a message's, or those inside an IA_NA / IA address: use
 * `at(bytes, it.offset + 12, it.length - 12)` on the IA_NA's value). next() positions on the next
 * option; false at the end, or with `error` set when an option runs past the area.
 */
export class Dhcpv6OptionIterator extends OptionCursor {
  at(bytes: Uint8Array, offset: number, length: number): this {
    this.bytes = bytes;
    this.pos = offset;
    this.end = Math.min(offset + length, bytes.length);
    this.error = length < 0;
    return this;
  }

  next(): boolean {
    if (this.error || this.pos >= this.end) return false;
    if (this.pos + OPT_HEADER_LEN > this.end) return this.fail();
    const len = get16(this.bytes, this.pos + 2);
    if (this.pos + OPT_HEADER_LEN + len > this.end) return this.fail();
    this.code = get16(this.bytes, this.pos);
    this.offset = this.pos + OPT_HEADER_LEN;
    this.length = len;
    this.pos += OPT_HEADER_LEN + len;
    return true;
  }

  /** IA_NA (length >= 12): IAID, T1, T2 and where its own options are. */
  get iaid(): number {
    return get32(this.bytes, this.offset);
  }
  get t1(): number {
    return get32(this.bytes, this.offset + 4);
  }
  get t2(): number {
    return get32(this.bytes, this.offset + 8);
  }
  get iaOptionsOffset(): number {
    return this.offset + DHCPV6_IA_NA_LEN;
  }
  get iaOptionsLength(): number {
    return this.length - DHCPV6_IA_NA_LEN;
  }
  /** IA address (length >= 24): the address (absolute offset) and its lifetimes. */
  get addressOffset(): number {
    return this.offset;
  }
  get preferredLifetime(): number {
    return get32(this.bytes, this.offset + 16);
  }
  get validLifetime(): number {
    return get32(this.bytes, this.offset + 20);
  }
  get iaAddrOptionsOffset(): number {
    return this.offset + DHCPV6_IAADDR_LEN;
  }
  get iaAddrOptionsLength(): number {
    return this.length - DHCPV6_IAADDR_LEN;
  }
}

const validator = new Dhcpv6OptionIterator();
const parser = new Dhcpv6OptionIterator();

/**
 * The top-level options a server acts on. Absent numbers are -1; byte strings are (offset, length)
 * into the message, offset -1 when absent. The first IA_NA is recorded (value offset, at its IAID);
 * `iaNaCount` says how many there were.
 */
export class Dhcpv6Options {
  clientIdOffset = -1;
  clientIdLength = 0;
  serverIdOffset = -1;
  serverIdLength = 0;
  iaNaOffset = -1;
  iaNaLength = 0;
  iaNaCount = 0;
  oroOffset = -1;
  oroLength = 0;
  elapsedTime = -1;
  preference = -1;
  rapidCommit = false;
  reconfigureAccept = false;
  /** A status code option at top level (replies), or -1. */
  statusCode = -1;

  reset(): this {
    this.clientIdOffset = -1;
    this.clientIdLength = 0;
    this.serverIdOffset = -1;
    this.serverIdLength = 0;
    this.iaNaOffset = -1;
    this.iaNaLength = 0;
    this.iaNaCount = 0;
    this.oroOffset = -1;
    this.oroLength = 0;
    this.elapsedTime = -1;
    this.preference = -1;
    this.rapidCommit = false;
    this.reconfigureAccept = false;
    this.statusCode = -1;
    return this;
  }
}

/**
 * Parses top-level options at [offset, offset + length) into `out`. Options whose length their
 * format forbids are ignored (RFC 8415 section 16: such a message may be discarded by the caller).
 * Returns false when the option list is malformed.
 */
export function parseDhcpv6Options(bytes: Uint8Array, offset: number, length: number, out: Dhcpv6Options): boolean {
  out.reset();
  const it = parser.at(bytes, offset, length);
  while (it.next()) {
    const l = it.length;
    switch (it.code) {
      case Dhcpv6Option.CLIENTID:
        if (l >= 2 && out.clientIdOffset < 0) {
          out.clientIdOffset = it.offset;
          out.clientIdLength = l;
        }
        break;
      case Dhcpv6Option.SERVERID:
        if (l >= 2 && out.serverIdOffset < 0) {
          out.serverIdOffset = it.offset;
          out.serverIdLength = l;
        }
        break;
      case Dhcpv6Option.IA_NA:
        if (l >= DHCPV6_IA_NA_LEN) {
          if (out.iaNaOffset < 0) {
            out.iaNaOffset = it.offset;
            out.iaNaLength = l;
          }
          out.iaNaCount++;
        }
        break;
      case Dhcpv6Option.ORO:
        if ((l & 1) === 0 && out.oroOffset < 0) {
          out.oroOffset = it.offset;
          out.oroLength = l;
        }
        break;
      case Dhcpv6Option.ELAPSED_TIME:
        if (l === 2) out.elapsedTime = it.u16;
        break;
      case Dhcpv6Option.PREFERENCE:
        if (l === 1) out.preference = it.u8;
        break;
      case Dhcpv6Option.RAPID_COMMIT:
        if (l === 0) out.rapidCommit = true;
        break;
      case Dhcpv6Option.RECONF_ACCEPT:
        if (l === 0) out.reconfigureAccept = true;
        break;
      case Dhcpv6Option.STATUS_CODE:
        if (l >= 2) out.statusCode = it.u16;
        break;
    }
  }
  return !it.error;
}

/** True when the option request option (as parsed into `opts`) asks for `code`. */
export function dhcpv6Requests(bytes: Uint8Array, opts: Dhcpv6Options, code: number): boolean {
  for (let i = 0; i < opts.oroLength; i += 2) if (get16(bytes, opts.oroOffset + i) === code) return true;
  return false;
}

/** Writes a client/server message header; returns 4 or -1. */
export function emitDhcpv6Header(buf: Uint8Array, off: number, msgType: number, transactionId: number): number {
  if (!rangeOk(buf, off, DHCPV6_HEADER_LEN)) return -1;
  set8(buf, off + F.MSG_TYPE, msgType);
  set24(buf, off + F.XID, transactionId);
  return DHCPV6_HEADER_LEN;
}

// ---- Options writer ----
// Each function appends one option at `off`, never at or past `end`, and returns the offset after
// it, or -1 when it does not fit; a -1 `off` passes through so calls chain (see dhcpv4.ts).

function room(buf: Uint8Array, off: number, end: number, n: number): boolean {
  return off >= 0 && off + n <= Math.min(end, buf.length);
}

function optHeader(buf: Uint8Array, off: number, code: number, len: number): void {
  set16(buf, off, code);
  set16(buf, off + 2, len);
}

/** An option with no value (rapid commit, reconfigure accept). */
export function dhcpv6PutEmpty(buf: Uint8Array, off: number, end: number, code: number): number {
  if (!room(buf, off, end, OPT_HEADER_LEN)) return -1;
  optHeader(buf, off, code, 0);
  return off + OPT_HEADER_LEN;
}

export function dhcpv6PutU8(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, OPT_HEADER_LEN + 1)) return -1;
  optHeader(buf, off, code, 1);
  set8(buf, off + 4, value);
  return off + 5;
}

export function dhcpv6PutU16(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, OPT_HEADER_LEN + 2)) return -1;
  optHeader(buf, off, code, 2);
  set16(buf, off + 4, value);
  return off + 6;
}

export function dhcpv6PutU32(buf: Uint8Array, off: number, end: number, code: number, value: number): number {
  if (!room(buf, off, end, OPT_HEADER_LEN + 4)) return -1;
  optHeader(buf, off, code, 4);
  set32(buf, off + 4, value);
  return off + 8;
}

/** An option whose value is copied from `src` (echoing the client id). */
export function dhcpv6PutBytes(buf: Uint8Array, off: number, end: number, code: number, src: Uint8Array, srcOff: number, len: number): number {
  if (len > 0xffff || !room(buf, off, end, OPT_HEADER_LEN + len)) return -1;
  optHeader(buf, off, code, len);
  copyBytes(buf, off + 4, src, srcOff, len);
  return off + OPT_HEADER_LEN + len;
}

/** A DUID-LL (type 3, hardware type 1) for an Ethernet MAC, as client or server id (RFC 8415 11.4). */
export function dhcpv6PutDuidLl(buf: Uint8Array, off: number, end: number, code: number, mac: Uint8Array): number {
  const len = 4 + MAC_LEN;
  if (!room(buf, off, end, OPT_HEADER_LEN + len)) return -1;
  optHeader(buf, off, code, len);
  set16(buf, off + 4, DuidType.LL);
  set16(buf, off + 6, 1);
  copyBytes(buf, off + 8, mac, 0, MAC_LEN);
  return off + OPT_HEADER_LEN + len;
}

/** A list of 16-byte addresses (DNS servers, option 23). */
export function dhcpv6PutAddresses(buf: Uint8Array, off: number, end: number, code: number, addrs: readonly Uint8Array[]): number {
  const len = IPV6_ADDR_LEN * addrs.length;
  if (!room(buf, off, end, OPT_HEADER_LEN + len)) return -1;
  optHeader(buf, off, code, len);
  for (let i = 0; i < addrs.length; i++) copyBytes(buf, off + 4 + IPV6_ADDR_LEN * i, addrs[i]!, 0, IPV6_ADDR_LEN);
  return off + OPT_HEADER_LEN + len;
}

/** Domain search list (option 24): uncompressed DNS names (RFC 3646 section 4). */
export function dhcpv6PutDomainList(buf: Uint8Array, off: number, end: number, domains: readonly string[]): number {
  let len = 0;
  for (const d of domains) {
    const n = dnsNameLength(d);
    if (n < 0) return -1;
    len += n;
  }
  if (len > 0xffff || !room(buf, off, end, OPT_HEADER_LEN + len)) return -1;
  optHeader(buf, off, Dhcpv6Option.DOMAIN_LIST, len);
  let p = off + OPT_HEADER_LEN;
  for (const d of domains) p = encodeDnsName(buf, p, end, d);
  return p;
}

/** Status code option; `message` is written as single-byte characters (ASCII). */
export function dhcpv6PutStatus(buf: Uint8Array, off: number, end: number, status: number, message: string): number {
  const len = 2 + message.length;
  if (!room(buf, off, end, OPT_HEADER_LEN + len)) return -1;
  optHeader(buf, off, Dhcpv6Option.STATUS_CODE, len);
  set16(buf, off + 4, status);
  for (let i = 0; i < message.length; i++) buf[off + 6 + i] = message.charCodeAt(i) & 0xff;
  return off + OPT_HEADER_LEN + len;
}

/**
 * Starts an option whose length is known only after its contents are written (IA_NA, IA address):
 * writes the code and returns the offset of its value. Close it with dhcpv6EndOption.
 */
export function dhcpv6BeginOption(buf: Uint8Array, off: number, end: number, code: number): number {
  if (!room(buf, off, end, OPT_HEADER_LEN)) return -1;
  optHeader(buf, off, code, 0);
  return off + OPT_HEADER_LEN;
}

/** Patches the length of the option begun at `optionStart`, whose value ends at `off`. */
export function dhcpv6EndOption(buf: Uint8Array, optionStart: number, off: number): number {
  if (off < 0 || optionStart < 0) return -1;
  set16(buf, optionStart + 2, off - optionStart - OPT_HEADER_LEN);
  return off;
}

export interface Dhcpv6IaAddrRepr {
  address: Uint8Array; // 16 bytes
  preferredLifetime: number;
  validLifetime: number;
}

export interface Dhcpv6IaNaRepr {
  iaid: number;
  t1: number;
  t2: number;
  addresses: readonly Dhcpv6IaAddrRepr[];
  /** A status code option inside the IA (e.g. NoAddrsAvail), when given. */
  status?: { code: number; message: string };
}

/** An IA_NA option with its IA address options (and optional status code). */
export function dhcpv6PutIaNa(buf: Uint8Array, off: number, end: number, ia: Dhcpv6IaNaRepr): number {
  const start = off;
  let p = dhcpv6BeginOption(buf, off, end, Dhcpv6Option.IA_NA);
  if (!room(buf, p, end, DHCPV6_IA_NA_LEN)) return -1;
  set32(buf, p, ia.iaid);
  set32(buf, p + 4, ia.t1);
  set32(buf, p + 8, ia.t2);
  p += DHCPV6_IA_NA_LEN;
  for (const a of ia.addresses) p = dhcpv6PutIaAddr(buf, p, end, a);
  if (ia.status) p = dhcpv6PutStatus(buf, p, end, ia.status.code, ia.status.message);
  return dhcpv6EndOption(buf, start, p);
}

/** An IA address option (no nested options). */
export function dhcpv6PutIaAddr(buf: Uint8Array, off: number, end: number, a: Dhcpv6IaAddrRepr): number {
  if (!room(buf, off, end, OPT_HEADER_LEN + DHCPV6_IAADDR_LEN)) return -1;
  optHeader(buf, off, Dhcpv6Option.IAADDR, DHCPV6_IAADDR_LEN);
  copyBytes(buf, off + 4, a.address, 0, IPV6_ADDR_LEN);
  set32(buf, off + 20, a.preferredLifetime);
  set32(buf, off + 24, a.validLifetime);
  return off + OPT_HEADER_LEN + DHCPV6_IAADDR_LEN;
}
