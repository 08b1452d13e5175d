// Ethernet II frames and MAC addresses.
//
// Read before editing: IEEE 802.3 clause 3.2 (frame format; we see frames without preamble and FCS,
// as virtio-net delivers them), RFC 894 (IPv4 over Ethernet), RFC 2464 sections 4 and 7 (IPv6 over
// Ethernet, multicast mapping 33:33:xx:xx:xx:xx), RFC 1112 section 6.4 (IPv4 multicast mapping
// 01:00:5e + low 23 bits). MAC addresses stay as 6 bytes in place; nothing here allocates except the
// string helpers, which are for logs and configuration.

import { bytesEqual, copyBytes, get16, rangeOk, set16, WireView } from './bytes.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                 Destination MAC address (6 octets)            |
// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                               |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// |                    Source MAC address (6 octets)              |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |           EtherType           |   Payload ...
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const F = {
  DST: 0,
  SRC: 6,
  ETHERTYPE: 12,
} as const;

export const ETHERNET_HEADER_LEN = 14;
export const MAC_LEN = 6;

export const EtherType = {
  IPV4: 0x0800,
  ARP: 0x0806,
  VLAN: 0x8100,
  IPV6: 0x86dd,
} as const;

/** A view of an Ethernet II frame. Call check() before trusting any getter. */
export class EthernetFrame extends WireView {
  /** The frame holds a full header (and the range lies inside the buffer). */
  check(): boolean {
    return rangeOk(this.bytes, this.offset, this.length) && this.length >= ETHERNET_HEADER_LEN;
  }

  /** Absolute offset of the destination MAC in `bytes`. */
  get dstOffset(): number {
    return this.offset + F.DST;
  }
  /** Absolute offset of the source MAC in `bytes`. */
  get srcOffset(): number {
    return this.offset + F.SRC;
  }
  get etherType(): number {
    return get16(this.bytes, this.offset + F.ETHERTYPE);
  }
  set etherType(v: number) {
    set16(this.bytes, this.offset + F.ETHERTYPE, v);
  }
  get payloadOffset(): number {
    return this.offset + ETHERNET_HEADER_LEN;
  }
  get payloadLength(): number {
    return this.length - ETHERNET_HEADER_LEN;
  }

  setDst(mac: Uint8Array, macOff = 0): void {
    copyBytes(this.bytes, this.offset + F.DST, mac, macOff, MAC_LEN);
  }
  setSrc(mac: Uint8Array, macOff = 0): void {
    copyBytes(this.bytes, this.offset + F.SRC, mac, macOff, MAC_LEN);
  }
  dstIs(mac: Uint8Array, macOff = 0): boolean {
    return bytesEqual(this.bytes, this.offset + F.DST, mac, macOff, MAC_LEN);
  }
  isBroadcast(): boolean {
    return macIsBroadcast(this.bytes, this.offset + F.DST);
  }
  /** Group address (multicast or broadcast): I/G bit of the first octet. */
  isMulticast(): boolean {
    return macIsMulticast(this.bytes, this.offset + F.DST);
  }
}

export interface EthernetRepr {
  dst: Uint8Array; // 6 bytes
  src: Uint8Array; // 6 bytes
  etherType: number;
}

/** Writes a 14-byte Ethernet header; returns 14, or -1 when the buffer is too small. */
export function emitEthernetHeader(buf: Uint8Array, off: number, repr: EthernetRepr): number {
  if (off < 0 || off + ETHERNET_HEADER_LEN > buf.length) return -1;
  copyBytes(buf, off + F.DST, repr.dst, 0, MAC_LEN);
  copyBytes(buf, off + F.SRC, repr.src, 0, MAC_LEN);
  set16(buf, off + F.ETHERTYPE, repr.etherType);
  return ETHERNET_HEADER_LEN;
}

// ---- MAC address helpers (6 bytes in place) ----

export const MAC_BROADCAST: Uint8Array = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);

export function macEqual(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number): boolean {
  return bytesEqual(a, aOff, b, bOff, MAC_LEN);
}

export function macCopy(dst: Uint8Array, dstOff: number, src: Uint8Array, srcOff: number): void {
  copyBytes(dst, dstOff, src, srcOff, MAC_LEN);
}

export function macIsBroadcast(b: Uint8Array, off: number): boolean {
  return (b[off]! & b[off + 1]! & b[off + 2]! & b[off + 3]! & b[off + 4]! & b[off + 5]!) === 0xff;
}

/** True for group addresses, broadcast included (I/G bit set). */
export function macIsMulticast(b: Uint8Array, off: number): boolean {
  return (b[off]! & 0x01) !== 0;
}

/** A MAC usable as a station address: not a group address and not all zeros. */
export function macIsUnicast(b: Uint8Array, off: number): boolean {
  return (b[off]! & 0x01) === 0 && (b[off]! | b[off + 1]! | b[off + 2]! | b[off + 3]! | b[off + 4]! | b[off + 5]!) !== 0;
}

/** Locally administered (U/L bit set), as generated MACs should be. */
export function macIsLocal(b: Uint8Array, off: number): boolean {
  return (b[off]! & 0x02) !== 0;
}

/** Writes the Ethernet group address for an IPv4 multicast group (RFC 1112 section 6.4). */
export function macFromIpv4Multicast(dst: Uint8Array, dstOff: number, group: number): void {
  dst[dstOff] = 0x01;
  dst[dstOff + 1] = 0x00;
  dst[dstOff + 2] = 0x5e;
  dst[dstOff + 3] = (group >>> 16) & 0x7f;
  dst[dstOff + 4] = group >>> 8;
  dst[dstOff + 5] = group;
}

/** Writes the Ethernet group address for an IPv6 multicast address (RFC 2464 section 7). */
export function macFromIpv6Multicast(dst: Uint8Array, dstOff: number, addr: Uint8Array, addrOff: number): void {
  dst[dstOff] = 0x33;
  dst[dstOff + 1] = 0x33;
  copyBytes(dst, dstOff + 2, addr, addrOff + 12, 4);
}

/** "52:54:00:12:34:56", for logs. */
export function formatMac(b: Uint8Array, off = 0): string {
  let s = '';
  for (let i = 0; i < MAC_LEN; i++) {
    if (i > 0) s += ':';
    s += b[off + i]!.toString(16).padStart(2, '0');
  }
  return s;
}

/** Parses "52:54:00:12:34:56" (or with dashes); returns null when malformed. */
export function parseMac(text: string): Uint8Array | null {
  const parts = text.split(/[:-]/);
  if (parts.length !== MAC_LEN) return null;
  const out = new Uint8Array(MAC_LEN);
  for (let i = 0; i < MAC_LEN; i++) {
    const p = parts[i]!;
    if (!/^[0-9a-fA-F]{1,2}$/.test(p)) return null;
    out[i] = parseInt(p, 16);
  }
  return out;
}
