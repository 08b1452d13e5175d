// Fragmentation on output, for datagrams larger than the guest link's MTU. Read RFC 791 §2.3 and
// §3.2 (fragmentation, which options are copied into every fragment) and RFC 8200 §4.5 (the
// fragment header; only the source fragments in IPv6 — here we are the source of what we build,
// and the router that re-originates the NAT's datagrams).
import { emitIpv6FragmentHeader, internetChecksum } from '../wire/index.js';

/**
 * Cuts the IPv4 `packet` (header first, checksums done) into fragments of at most `mtu` bytes and
 * hands each to `emit` (a view into `scratch`, valid during the call). Returns false when it may
 * not be fragmented (DF set) or cannot be (an MTU too small for the header).
 */
export function fragmentIpv4(packet: Uint8Array, mtu: number, scratch: Uint8Array, emit: (fragment: Uint8Array) => void): boolean {
  const hl = (packet[0]! & 0x0f) * 4;
  if ((packet[6]! & 0x40) !== 0) return false; // DF
  // The options of non-first fragments: those with the copy bit (RFC 791 §3.1), EOL-padded.
  const copied = copiedOptions(packet, hl);
  const hl2 = 20 + copied.length;
  const total = packet.length;
  const payload = total - hl;
  const origOffset = ((packet[6]! & 0x1f) << 8) | packet[7]!; // in 8-byte units (a fragment of a fragment)
  const origMf = (packet[6]! & 0x20) !== 0;
  let off = 0;
  let first = true;
  while (off < payload) {
    const h = first ? hl : hl2;
    const room = Math.floor((mtu - h) / 8) * 8;
    if (room <= 0) return false;
    const n = Math.min(room, payload - off);
    const last = off + n === payload;
    const f = scratch;
    if (first) f.set(packet.subarray(0, hl), 0);
    else {
      f.set(packet.subarray(0, 20), 0);
      f.set(copied, 20);
      f[0] = 0x40 | (hl2 >>> 2);
    }
    f.set(packet.subarray(hl + off, hl + off + n), h);
    const len = h + n;
    f[2] = len >> 8;
    f[3] = len & 0xff;
    const fo = origOffset + off / 8;
    const mf = !last || origMf;
    f[6] = (mf ? 0x20 : 0) | ((fo >> 8) & 0x1f);
    f[7] = fo & 0xff;
    f[10] = f[11] = 0;
    const c = internetChecksum(f, 0, h);
    f[10] = c >> 8;
    f[11] = c & 0xff;
    emit(f.subarray(0, len));
    off += n;
    first = false;
  }
  return true;
}

function copiedOptions(packet: Uint8Array, hl: number): Uint8Array {
  const out: number[] = [];
  for (let i = 20; i < hl;) {
    const type = packet[i]!;
    if (type === 0) break; // EOL
    if (type === 1) {
      i++; // NOP: not copied
      continue;
    }
    const len = packet[i + 1] ?? 0;
    if (len < 2 || i + len > hl) break;
    if ((type & 0x80) !== 0) for (let k = 0; k < len; k++) out.push(packet[i + k]!);
    i += len;
  }
  while (out.length % 4 !== 0) out.push(0);
  return Uint8Array.from(out);
}

/**
 * Cuts the IPv6 `packet` (a 40-byte header then the payload, no extension headers: what we build)
 * into fragments of at most `mtu` bytes with a fragment header of identification `ident`, and hands
 * each to `emit`. Returns false when the MTU leaves no room.
 */
export function fragmentIpv6(packet: Uint8Array, mtu: number, ident: number, scratch: Uint8Array, emit: (fragment: Uint8Array) => void): boolean {
  const next = packet[6]!;
  const payload = packet.length - 40;
  const room = Math.floor((mtu - 48) / 8) * 8;
  if (room <= 0) return false;
  for (let off = 0; off < payload; off += room) {
    const n = Math.min(room, payload - off);
    const f = scratch;
    f.set(packet.subarray(0, 40), 0);
    f[6] = 44; // Fragment
    const plen = 8 + n;
    f[4] = plen >> 8;
    f[5] = plen & 0xff;
    emitIpv6FragmentHeader(f, 40, { nextHeader: next, fragOffset: off, moreFragments: off + n < payload, ident });
    f.set(packet.subarray(40 + off, 40 + off + n), 48);
    emit(f.subarray(0, 48 + n));
  }
  return true;
}
