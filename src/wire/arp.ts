// ARP for IPv4 over Ethernet.
//
// Read before editing: RFC 826 (packet format and the reception algorithm), RFC 1122 section 2.3.2
// (ARP cache rules: flood protection, "the link layer SHOULD save (rather than discard) at least one
// ... packet"), RFC 5227 sections 1.1 and 2.1 (ARP probes with sender IP 0.0.0.0, gratuitous ARP).
// Only hardware type Ethernet (1) with protocol IPv4 (0x0800) is understood; check() rejects others.

import { copyBytes, get16, get32, get8, rangeOk, set16, set32, set8, WireView } from './bytes.js';
import { MAC_LEN } from './ethernet.js';

//  0                   1                   2                   3
//  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |         Hardware Type         |         Protocol Type         |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |  HW Addr Len  | Proto Addr Len|           Operation           |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                 Sender hardware address (6)                   |
// +                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                               |  Sender protocol address (4)  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                               |                               |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
// |                 Target hardware address (6)                   |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
// |                  Target protocol address (4)                  |
// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const F = {
  HTYPE: 0,
  PTYPE: 2,
  HLEN: 4,
  PLEN: 5,
  OPER: 6,
  SHA: 8,
  SPA: 14,
  THA: 18,
  TPA: 24,
} as const;

export const ARP_LEN = 28;
export const ARP_HTYPE_ETHERNET = 1;
export const ARP_PTYPE_IPV4 = 0x0800;

export const ArpOp = {
  REQUEST: 1,
  REPLY: 2,
} as const;

/** A view of an Ethernet/IPv4 ARP packet. */
export class ArpPacket extends WireView {
  /** Long enough, and Ethernet/IPv4 with 6-byte and 4-byte addresses (RFC 826 "?Do I have the hardware type"). */
  check(): boolean {
    if (!rangeOk(this.bytes, this.offset, this.length) || this.length < ARP_LEN) return false;
    return this.hardwareType === ARP_HTYPE_ETHERNET && this.protocolType === ARP_PTYPE_IPV4 && this.hardwareLength === MAC_LEN && this.protocolLength === 4;
  }

  get hardwareType(): number {
    return get16(this.bytes, this.offset + F.HTYPE);
  }
  set hardwareType(v: number) {
    set16(this.bytes, this.offset + F.HTYPE, v);
  }
  get protocolType(): number {
    return get16(this.bytes, this.offset + F.PTYPE);
  }
  set protocolType(v: number) {
    set16(this.bytes, this.offset + F.PTYPE, v);
  }
  get hardwareLength(): number {
    return get8(this.bytes, this.offset + F.HLEN);
  }
  set hardwareLength(v: number) {
    set8(this.bytes, this.offset + F.HLEN, v);
  }
  get protocolLength(): number {
    return get8(this.bytes, this.offset + F.PLEN);
  }
  set protocolLength(v: number) {
    set8(this.bytes, this.offset + F.PLEN, v);
  }
  get operation(): number {
    return get16(this.bytes, this.offset + F.OPER);
  }
  set operation(v: number) {
    set16(this.bytes, this.offset + F.OPER, v);
  }
  /** Absolute offset of the sender hardware address. */
  get senderMacOffset(): number {
    return this.offset + F.SHA;
  }
  get senderIp(): number {
    return get32(this.bytes, this.offset + F.SPA);
  }
  set senderIp(v: number) {
    set32(this.bytes, this.offset + F.SPA, v);
  }
  /** Absolute offset of the target hardware address. */
  get targetMacOffset(): number {
    return this.offset + F.THA;
  }
  get targetIp(): number {
    return get32(this.bytes, this.offset + F.TPA);
  }
  set targetIp(v: number) {
    set32(this.bytes, this.offset + F.TPA, v);
  }
  setSenderMac(mac: Uint8Array, macOff = 0): void {
    copyBytes(this.bytes, this.offset + F.SHA, mac, macOff, MAC_LEN);
  }
  setTargetMac(mac: Uint8Array, macOff = 0): void {
    copyBytes(this.bytes, this.offset + F.THA, mac, macOff, MAC_LEN);
  }

  /** RFC 5227 probe: a request with sender IP 0.0.0.0. */
  isProbe(): boolean {
    return this.operation === ArpOp.REQUEST && this.senderIp === 0;
  }
  /** Gratuitous ARP / announcement: sender and target IP are the same. */
  isGratuitous(): boolean {
    return this.senderIp === this.targetIp;
  }
}

export interface ArpRepr {
  operation: number;
  senderMac: Uint8Array; // 6 bytes
  senderIp: number;
  targetMac: Uint8Array; // 6 bytes; zeros in a request
  targetIp: number;
}

/** Writes a 28-byte Ethernet/IPv4 ARP packet; returns 28, or -1 when the buffer is too small. */
export function emitArp(buf: Uint8Array, off: number, repr: ArpRepr): number {
  if (!rangeOk(buf, off, ARP_LEN)) return -1;
  set16(buf, off + F.HTYPE, ARP_HTYPE_ETHERNET);
  set16(buf, off + F.PTYPE, ARP_PTYPE_IPV4);
  set8(buf, off + F.HLEN, MAC_LEN);
  set8(buf, off + F.PLEN, 4);
  set16(buf, off + F.OPER, repr.operation);
  copyBytes(buf, off + F.SHA, repr.senderMac, 0, MAC_LEN);
  set32(buf, off + F.SPA, repr.senderIp);
  copyBytes(buf, off + F.THA, repr.targetMac, 0, MAC_LEN);
  set32(buf, off + F.TPA, repr.targetIp);
  return ARP_LEN;
}
