// Redundant pure ACKs in a guest's TX batch, passed over before the stack sees them: CAKE's ACK
// filter (net/sched/sch_cake.c, cake_ack_filter) does this to a router's queue.
//
// A guest that receives in bulk sends an ACK every few segments, and queues several before it
// kicks: a batch holds runs of them, one connection's, each acknowledging more than the one
// before. TCP's ACKs are cumulative: once the last of a run is in, each earlier one has told
// nothing it does not say again (its acknowledgment number is below the last one's, its window
// is replaced by the later one's, RFC 9293 §3.10.7.4, and its timestamp is older). Each would still
// cost the whole way up the stack (IP, TCP, the NAT's flow, the endpoint). So a pure ACK the frame
// right after it supersedes is returned to the guest unread by the stack, and counted
// (`txAcksFiltered`).
//
// "Supersedes" is narrow, so that nothing TCP reads from an ACK is lost:
// - both frames are pure ACKs (no payload, the ACK flag alone: no SYN, FIN, RST, URG, PSH, ECE,
//   CWR) without IPv4 options or fragments, TTL or hop limit above 1, no segmentation offload,
//   and TCP options only NOP, NOP, timestamps (no SACK blocks, which the later ACK may not repeat);
// - of the same connection (MACs, addresses, ports) and the same shape (lengths, sequence number);
// - the later one acknowledges strictly more. Equal acknowledgment numbers are duplicate ACKs
//   (fast retransmit counts them) or window updates: both are left alone.
// The endpoint grows its congestion window by the bytes an ACK covers, not by the number of ACKs
// (tcp/endpoint.ts, RFC 3465), so fewer ACKs for the same bytes change nothing there.
//
// The frames are copied out of guest memory before they are read (the guest may rewrite them
// meanwhile); the later frame is read again, as any, when its turn comes. Only the device's
// single-guest path without a capture filters (as it joins segments: the capture shows what the
// guest sent).
import type { DescriptorChain } from 'vhost-user-ts';
import { ETHERNET_HEADER_LEN as ETH } from '../wire/ethernet.js';
import { IPV4_MIN_HEADER_LEN as IPV4 } from '../wire/ipv4.js';
import { IPV6_HEADER_LEN as IPV6 } from '../wire/ipv6.js';
import { TCP_MIN_HEADER_LEN, TcpFlags } from '../wire/tcp.js';

/** A TCP header with NOP, NOP and the timestamp option. */
const TCP_TS = TCP_MIN_HEADER_LEN + 12;
/** Offsets in a TCP header: the acknowledgment number, the data offset, the flags. */
const TCP_ACK = 8;
const TCP_DOFF = 12;
const TCP_FLAGS = 13;

export class AckFilter {
  /** The longest frame (after the virtio-net header) that can be a pure ACK here. */
  static readonly MAX_FRAME = ETH + IPV6 + TCP_TS;
  private readonly a: Uint8Array;
  private readonly b: Uint8Array;

  /** `netHdrLen`: the virtio-net header in front of each frame. */
  constructor(private readonly netHdrLen: number) {
    this.a = new Uint8Array(netHdrLen + AckFilter.MAX_FRAME);
    this.b = new Uint8Array(netHdrLen + AckFilter.MAX_FRAME);
  }

  /** Whether a chain of `length` readable bytes can be a pure ACK (a look before reading). */
  private fits(length: number): boolean {
    return length >= this.netHdrLen + ETH + IPV4 + TCP_MIN_HEADER_LEN && length <= this.netHdrLen + AckFilter.MAX_FRAME;
  }

  /** Whether `earlier` is a pure ACK that `later`, the frame right after it, supersedes (see the
   *  top of this file). Both are TX chains: virtio-net header, then the frame. */
  supersedes(earlier: DescriptorChain, later: DescriptorChain): boolean {
    const n = earlier.readableLength;
    if (n !== later.readableLength || !this.fits(n)) return false;
    const a = this.a;
    const b = this.b;
    if (earlier.read(0, a, 0, n) !== n || later.read(0, b, 0, n) !== n) return false;
    const tcp = this.pureAck(a, n);
    if (tcp < 0 || this.pureAck(b, n) !== tcp) return false;
    // One connection, one shape: the virtio-net header's GSO type, the Ethernet header, the IP
    // header's lengths, protocol and addresses, the ports and sequence number. (What may differ:
    // IPv4's TOS, identification and checksum, IPv6's traffic class and flow label, the ACK
    // number, the window, the checksum, the timestamps.)
    const e = this.netHdrLen;
    if (!same(a, b, e, e + ETH)) return false;
    const ip = e + ETH;
    if (tcp === ip + IPV4) {
      if (!same(a, b, ip + 2, ip + 4) || !same(a, b, ip + 9, ip + 10) || !same(a, b, ip + 12, ip + 20)) return false;
    } else if (!same(a, b, ip + 4, ip + 6) || !same(a, b, ip + 8, ip + 40)) return false;
    if (!same(a, b, tcp, tcp + TCP_ACK)) return false;
    const advance = (readU32(b, tcp + TCP_ACK) - readU32(a, tcp + TCP_ACK)) >>> 0;
    return advance > 0 && advance < 0x80000000;
  }

  /** The TCP header's offset in `f` (n bytes) when it is a pure ACK we may pass over, else -1. */
  private pureAck(f: Uint8Array, n: number): number {
    const e = this.netHdrLen;
    if (f[1] !== 0) return -1; // the virtio-net header's GSO type
    const ip = e + ETH;
    const type = (f[e + 12]! << 8) | f[e + 13]!;
    let tcp: number;
    let tcpLength: number;
    if (type === 0x0800) {
      if (f[ip] !== 0x45 || f[ip + 9] !== 6 || f[ip + 8]! <= 1) return -1; // no options, TCP, TTL
      if ((((f[ip + 6]! << 8) | f[ip + 7]!) & 0x3fff) !== 0) return -1; // a fragment
      tcp = ip + IPV4;
      tcpLength = ((f[ip + 2]! << 8) | f[ip + 3]!) - IPV4;
    } else if (type === 0x86dd) {
      if (f[ip]! >> 4 !== 6 || f[ip + 6] !== 6 || f[ip + 7]! <= 1) return -1; // TCP right after, hop limit
      tcp = ip + IPV6;
      tcpLength = (f[ip + 4]! << 8) | f[ip + 5]!;
    } else {
      return -1;
    }
    const doff = f[tcp + TCP_DOFF]!;
    const headerLength = (doff >> 4) * 4;
    if (headerLength !== tcpLength || tcp + tcpLength > n) return -1; // payload, or cut short
    if ((doff & 0x0f) !== 0 || f[tcp + TCP_FLAGS] !== TcpFlags.ACK) return -1;
    if (headerLength === TCP_MIN_HEADER_LEN) return tcp;
    // NOP, NOP, timestamps: what Linux sends on every ACK of a connection with timestamps.
    if (headerLength === TCP_TS && f[tcp + 20] === 1 && f[tcp + 21] === 1 && f[tcp + 22] === 8 && f[tcp + 23] === 10) return tcp;
    return -1;
  }
}

function same(a: Uint8Array, b: Uint8Array, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (a[i] !== b[i]) return false;
  return true;
}

function readU32(f: Uint8Array, at: number): number {
  return ((f[at]! << 24) | (f[at + 1]! << 16) | (f[at + 2]! << 8) | f[at + 3]!) >>> 0;
}
