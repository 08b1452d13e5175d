// Where the headers of a (possibly malformed) frame sit, found without trusting any length more
// than the bytes present: the mutator aims at header fields with it and recomputes checksums so
// mutated frames get past checksum checks. Nothing here throws on any input.
import { internetChecksum, pseudoHeaderSumV4, pseudoHeaderSumV6 } from '../../../src/wire/index.js';

export const ETH = 14;

export interface FrameLayout {
  /** EtherType as read (after one 802.1Q tag if present). */
  etherType: number;
  /** Offset of the network header, or -1. */
  l3: number;
  family: 0 | 4 | 6;
  /** IPv4 header length (IHL * 4) as stated, or 40 for IPv6. */
  ipHeaderLen: number;
  /** IPv4 options [start, end) within the frame (empty when none). */
  ipv4Options: [number, number];
  /** IPv6 extension headers: offset of each (next header byte first). */
  ext: number[];
  /** Offset of an IPv6 fragment header, or -1. */
  ipv6Frag: number;
  /** The transport protocol number and its offset, or -1. */
  proto: number;
  l4: number;
  /** End of the IP datagram as its header states it, clamped to the frame. */
  end: number;
  /** IPv4 fragment: MF set or an offset; IPv6: a fragment header with offset or M. */
  fragmented: boolean;
}

const EXT_HEADERS = new Set([0, 43, 60]);

export function layoutOf(f: Uint8Array): FrameLayout {
  const out: FrameLayout = {
    etherType: -1,
    l3: -1,
    family: 0,
    ipHeaderLen: 0,
    ipv4Options: [0, 0],
    ext: [],
    ipv6Frag: -1,
    proto: -1,
    l4: -1,
    end: f.length,
    fragmented: false,
  };
  if (f.length < ETH) return out;
  let et = (f[12]! << 8) | f[13]!;
  let l3 = ETH;
  if (et === 0x8100 && f.length >= 18) {
    et = (f[16]! << 8) | f[17]!;
    l3 = 18;
  }
  out.etherType = et;
  out.l3 = l3;
  if (et === 0x0800 && f.length >= l3 + 20) {
    out.family = 4;
    const ihl = (f[l3]! & 0x0f) * 4;
    out.ipHeaderLen = ihl;
    const total = (f[l3 + 2]! << 8) | f[l3 + 3]!;
    out.end = Math.min(f.length, total >= ihl ? l3 + total : f.length);
    out.fragmented = (f[l3 + 6]! & 0x3f) !== 0 || f[l3 + 7] !== 0;
    if (ihl > 20 && l3 + ihl <= f.length) out.ipv4Options = [l3 + 20, l3 + ihl];
    if (ihl >= 20 && l3 + ihl <= out.end) {
      out.proto = f[l3 + 9]!;
      out.l4 = l3 + ihl;
    }
  } else if (et === 0x86dd && f.length >= l3 + 40) {
    out.family = 6;
    out.ipHeaderLen = 40;
    const plen = (f[l3 + 4]! << 8) | f[l3 + 5]!;
    out.end = Math.min(f.length, l3 + 40 + plen);
    let nh = f[l3 + 6]!;
    let off = l3 + 40;
    for (let i = 0; i < 8 && off + 8 <= out.end; i++) {
      if (EXT_HEADERS.has(nh)) {
        out.ext.push(off);
        const len = (f[off + 1]! + 1) * 8;
        nh = f[off]!;
        off += len;
      } else if (nh === 44) {
        out.ext.push(off);
        out.ipv6Frag = off;
        out.fragmented = ((f[off + 2]! << 8) | f[off + 3]!) !== 0;
        nh = f[off]!;
        off += 8;
      } else {
        break;
      }
    }
    if (off <= out.end) {
      out.proto = nh;
      out.l4 = off;
    }
  }
  return out;
}

/** Checksum field offset within the transport header, or -1 for protocols without one we know. */
export function checksumOffset(proto: number): number {
  switch (proto) {
    case 6:
      return 16; // TCP
    case 17:
      return 6; // UDP
    case 1: // ICMP
    case 2: // IGMP
    case 58: // ICMPv6
      return 2;
    default:
      return -1;
  }
}

/** Recomputes the IPv4 header checksum and the transport checksum where the frame allows it
 *  (whole, unfragmented datagrams), in place. Returns the frame. */
export function fixChecksums(f: Uint8Array, l: FrameLayout = layoutOf(f)): Uint8Array {
  if (l.family === 4 && l.ipHeaderLen >= 20 && l.l3 + l.ipHeaderLen <= f.length) {
    f[l.l3 + 10] = 0;
    f[l.l3 + 11] = 0;
    const c = internetChecksum(f, l.l3, l.ipHeaderLen);
    f[l.l3 + 10] = c >> 8;
    f[l.l3 + 11] = c & 0xff;
  }
  if (l.l4 < 0 || l.fragmented) return f;
  const co = checksumOffset(l.proto);
  const len = l.end - l.l4;
  if (co < 0 || len < co + 2) return f;
  f[l.l4 + co] = 0;
  f[l.l4 + co + 1] = 0;
  let initial = 0;
  if (l.family === 4 && (l.proto === 6 || l.proto === 17)) {
    const src = ((f[l.l3 + 12]! << 24) | (f[l.l3 + 13]! << 16) | (f[l.l3 + 14]! << 8) | f[l.l3 + 15]!) >>> 0;
    const dst = ((f[l.l3 + 16]! << 24) | (f[l.l3 + 17]! << 16) | (f[l.l3 + 18]! << 8) | f[l.l3 + 19]!) >>> 0;
    initial = pseudoHeaderSumV4(src, dst, l.proto, len);
  } else if (l.family === 6) {
    initial = pseudoHeaderSumV6(f, l.l3 + 8, f, l.l3 + 24, l.proto, len);
  }
  let c = internetChecksum(f, l.l4, len, initial);
  if (c === 0 && l.proto === 17) c = 0xffff; // UDP: 0 means "no checksum"
  f[l.l4 + co] = c >> 8;
  f[l.l4 + co + 1] = c & 0xff;
  return f;
}

/** Makes the IP length fields agree with the frame (after a truncation or an extension). */
export function fixLengths(f: Uint8Array, l: FrameLayout = layoutOf(f)): void {
  if (l.family === 4) {
    const total = Math.min(0xffff, f.length - l.l3);
    f[l.l3 + 2] = total >> 8;
    f[l.l3 + 3] = total & 0xff;
  } else if (l.family === 6) {
    const plen = Math.min(0xffff, f.length - l.l3 - 40);
    f[l.l3 + 4] = plen >> 8;
    f[l.l3 + 5] = plen & 0xff;
  }
  const nl = layoutOf(f);
  if (nl.proto === 17 && nl.l4 >= 0 && nl.l4 + 8 <= f.length) {
    const ulen = Math.min(0xffff, nl.end - nl.l4);
    f[nl.l4 + 4] = ulen >> 8;
    f[nl.l4 + 5] = ulen & 0xff;
  }
}
