// IP reassembly (RFC 791 §3.2 and RFC 815 for IPv4, RFC 8200 §4.5 for IPv6), bounded and driven by
// an injected clock. Read first: RFC 8200 §4.5 (what the reassembled IPv6 packet is made of), RFC
// 5722 (overlaps drop the datagram), RFC 6946 (atomic fragments), and gVisor's
// pkg/tcpip/network/fragmentation (whose later versions, like Linux's inet_frag_queue_insert, also
// abandon an IPv4 datagram on any overlap other than an exact duplicate: we do the same for both
// families, so a fragment can never rewrite bytes a transport checksum has not yet seen).
//
// Theory of operation. A datagram in progress is a sorted list of non-overlapping segments, each a
// copy of one fragment (the whole IP packet, so the offset-0 one can be quoted in ICMP time
// exceeded). A new fragment finds its place by binary search and is checked against its two
// neighbours only: equal range = duplicate (ignored, first copy kept), any other intersection =
// overlap (datagram dropped). The datagram is complete when the last fragment fixed its length and
// the segments cover exactly that many bytes (no overlaps, so a byte count suffices). The final
// packet is allocated once and filled from the segments.
//
// Bounds: bytes held (packet copies plus a per-fragment and per-datagram overhead) and the number
// of datagrams. When a fragment would cross either, the oldest datagrams go first. Every datagram
// has the same lifetime and starts its timer at its first fragment, so creation order is deadline
// order (the clock never goes backwards): the insertion-ordered set is both the eviction queue and
// the timer queue, so pollAt() and each expiry or eviction are O(1).

import type { MemoryAccount } from './memory-budget.js';
import { get16, get8, set16, set8 } from '../wire/bytes.js';
import { internetChecksum } from '../wire/checksum.js';
import { IpProtocol } from '../wire/ip.js';

export interface ReassemblyOptions {
  /** Lifetime of a datagram from its first fragment: IPv4 30000 (gVisor, Linux), IPv6 60000 (RFC 8200). */
  timeoutMs: number;
  /** Ceiling for everything held by all datagrams in progress. Default 4 MiB. */
  maxBytes?: number;
  /**
   * Largest reassembled packet, header included. Default and ceiling: 65535 for IPv4, 40 + 65535
   * for IPv6 (the payload length field is 16 bits; no jumbograms).
   */
  maxDatagramBytes?: number;
  /** Datagrams in progress at once. Default 256. */
  maxDatagrams?: number;
  /** The memory budget fragments are held in (besides maxBytes): refused, the oldest go. */
  memory?: MemoryAccount;
  /**
   * Bytes left free in front of every packet add() returns (the packet is a view starting at this
   * offset of its buffer), so the caller can put a link header there without copying. Default 0.
   */
  headroom?: number;
}

export interface Expired {
  /**
   * The first fragment (offset 0) as received, when it had arrived: the caller sends ICMP time
   * exceeded code 1 / ICMPv6 time exceeded code 1 quoting it. Undefined when it never arrived: then
   * no error is sent (RFC 792, RFC 8200 §4.5).
   */
  firstFragment: Uint8Array | undefined;
}

export interface ReassemblyStats {
  /** Fragments handed to add() (atomic IPv6 fragments and IPv4 non-fragments included). */
  fragments: number;
  /** Datagrams completed. */
  reassembled: number;
  /** IPv6 atomic fragments (RFC 6946) returned as whole packets. */
  atomic: number;
  /** Datagrams dropped because two fragments overlapped without being exact duplicates. */
  overlaps: number;
  /** Fragments ignored because the same range had already arrived. */
  duplicates: number;
  /** Datagrams expired by poll(). */
  timeouts: number;
  /** Datagrams dropped to make room (byte or datagram-count ceiling). */
  evictedForMemory: number;
  /** Fragments (and their datagrams) dropped because the result would exceed the size limit. */
  tooBig: number;
  /**
   * Fragments dropped as malformed: truncated headers, empty or misaligned non-last fragments, a
   * last fragment disagreeing with the known length or with data beyond it (the datagram is
   * dropped too in these last cases).
   */
  malformed: number;
}

/** Bookkeeping cost charged per fragment and per datagram, beyond the bytes copied. */
const FRAGMENT_OVERHEAD = 64;
const DATAGRAM_OVERHEAD = 128;

const IPV4_MAX_PACKET = 65535;
const IPV6_HEADER_LEN = 40;
const IPV6_MAX_PACKET = IPV6_HEADER_LEN + 65535;
const IPV6_FRAG_LEN = 8;

interface Segment {
  /** Payload range in the datagram, [start, end). */
  start: number;
  end: number;
  /** A copy of the whole fragment packet. */
  packet: Uint8Array;
  /** Where the fragment's payload starts in `packet`. */
  dataOffset: number;
}

interface Datagram {
  key: Uint8Array;
  hash: number;
  deadline: number;
  segments: Segment[];
  /** Payload bytes held (segments never overlap). */
  received: number;
  /** Payload length once the last fragment arrived, else -1. */
  total: number;
  /** Bytes charged against maxBytes. */
  cost: number;
}

/** What add() learned about one fragment. */
interface Fragment {
  start: number;
  end: number;
  more: boolean;
  dataOffset: number;
  /** Bytes before the fragmentable part: IPv4 header, or IPv6 header through the fragment header. */
  headerBytes: number;
}

export class Reassembler {
  readonly stats: ReassemblyStats = {
    fragments: 0,
    reassembled: 0,
    atomic: 0,
    overlaps: 0,
    duplicates: 0,
    timeouts: 0,
    evictedForMemory: 0,
    tooBig: 0,
    malformed: 0,
  };

  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly maxPacket: number;
  private readonly maxDatagrams: number;
  private readonly headroom: number;
  private readonly memory: MemoryAccount | undefined;
  private readonly buckets = new Map<number, Datagram[]>();
  /** Insertion order = creation order = deadline order. */
  private readonly order = new Set<Datagram>();
  private bytesHeld = 0;
  private readonly keyScratch: Uint8Array;
  private readonly frag: Fragment = { start: 0, end: 0, more: false, dataOffset: 0, headerBytes: 0 };

  constructor(
    private readonly family: 4 | 6,
    opts: ReassemblyOptions,
  ) {
    this.timeoutMs = opts.timeoutMs;
    this.maxBytes = opts.maxBytes ?? 4 * 1024 * 1024;
    const ceiling = family === 4 ? IPV4_MAX_PACKET : IPV6_MAX_PACKET;
    this.maxPacket = Math.min(opts.maxDatagramBytes ?? ceiling, ceiling);
    this.maxDatagrams = Math.max(1, opts.maxDatagrams ?? 256);
    this.headroom = Math.max(0, opts.headroom ?? 0);
    this.memory = opts.memory;
    // IPv4: src, dst, protocol, pad, identification (RFC 791 §2.3). IPv6: src, dst, identification.
    this.keyScratch = new Uint8Array(family === 4 ? 12 : 36);
  }

  /** Datagrams in progress. */
  get size(): number {
    return this.order.size;
  }
  /** Bytes charged against maxBytes. */
  get bytes(): number {
    return this.bytesHeld;
  }

  /**
   * A fragment: the whole IP packet, its header already validated by the caller (bytes past the
   * IPv4 total length / IPv6 payload length are ignored). Returns the completed datagram (a new
   * buffer owned by the caller) when this fragment completes one, else undefined. An IPv4 packet
   * that is no fragment, or an IPv6 atomic fragment, comes back at once as a whole packet. Never
   * throws.
   */
  add(packet: Uint8Array, now: number): Uint8Array | undefined {
    this.stats.fragments++;
    const f = this.frag;
    if (this.family === 4) {
      const r = this.parseIpv4(packet, f);
      if (r === PARSE_BAD) return void this.stats.malformed++;
      if (r === PARSE_WHOLE) {
        const len = get16(packet, 2);
        const out = new Uint8Array(this.headroom + len).subarray(this.headroom);
        out.set(packet.subarray(0, len));
        return out;
      }
    } else {
      const r = this.parseIpv6(packet, f);
      if (r === PARSE_BAD) return void this.stats.malformed++;
      if (r === PARSE_WHOLE) {
        this.stats.atomic++;
        return rebuildIpv6(packet, f.headerBytes - IPV6_FRAG_LEN, packet, f.dataOffset, f.end, undefined, this.headroom);
      }
    }
    // A non-last fragment must carry a multiple of 8 bytes (RFC 791 §3.2; RFC 8200 §4.5 "must be
    // discarded"), and an empty fragment carries nothing to place (gVisor drops it as malformed).
    if (f.end === f.start || (f.more && (f.end - f.start) % 8 !== 0)) return void this.stats.malformed++;
    // RFC 8200 §4.5: a fragment whose offset and length would make the reassembled payload exceed
    // 65535 bytes must be discarded; IPv4 likewise bounds the datagram at 65535 (gVisor checks
    // start + length against the maximum payload).
    if (this.reassembledSize(f.headerBytes, f.end) > this.maxPacket) return void this.stats.tooBig++;

    const key = this.keyOf(packet, f);
    const hash = hashKey(key);
    let d = this.find(key, hash);
    const copyLength = f.dataOffset + (f.end - f.start);
    const cost = copyLength + FRAGMENT_OVERHEAD;

    if (d === undefined) {
      if (this.order.size >= this.maxDatagrams) this.evictOldest();
      if (!this.charge(DATAGRAM_OVERHEAD)) return void this.stats.evictedForMemory++;
      d = {
        key: key.slice(),
        hash,
        deadline: now + this.timeoutMs,
        segments: [],
        received: 0,
        total: -1,
        cost: DATAGRAM_OVERHEAD,
      };
      this.insert(d);
    }

    // Where it goes: the first segment starting at or after f.start.
    const segs = d.segments;
    let lo = 0;
    let hi = segs.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (segs[mid]!.start < f.start) lo = mid + 1;
      else hi = mid;
    }
    const next = segs[lo];
    if (next !== undefined && next.start === f.start && next.end === f.end) {
      // An exact duplicate (a retransmission, or a path duplicating packets): keep the first copy.
      this.stats.duplicates++;
      return undefined;
    }
    const prev = lo > 0 ? segs[lo - 1] : undefined;
    if ((prev !== undefined && prev.end > f.start) || (next !== undefined && next.start < f.end)) {
      // RFC 5722: "the entire datagram (and any constituent fragments, including those not yet
      // received) MUST be silently discarded." Linux and gVisor do the same for IPv4.
      this.stats.overlaps++;
      return void this.remove(d);
    }
    if (!f.more) {
      // The last fragment fixes the length; a second one must agree, and nothing may lie beyond it.
      const last = segs[segs.length - 1];
      if ((d.total >= 0 && d.total !== f.end) || (last !== undefined && last.end > f.end)) {
        this.stats.malformed++;
        return void this.remove(d);
      }
      d.total = f.end;
    } else if (d.total >= 0 && f.end > d.total) {
      this.stats.malformed++;
      return void this.remove(d);
    }

    // Room for it, under maxBytes and in the memory budget: the oldest datagrams go first, this
    // one last of all.
    for (;;) {
      if (this.bytesHeld + cost <= this.maxBytes && this.charge(cost)) break;
      const oldest = this.oldest();
      this.stats.evictedForMemory++;
      if (oldest === undefined) return undefined;
      this.remove(oldest);
      if (oldest === d) return undefined;
    }

    const copy = packet.slice(0, copyLength);
    segs.splice(lo, 0, { start: f.start, end: f.end, packet: copy, dataOffset: f.dataOffset });
    d.received += f.end - f.start;
    d.cost += cost;

    if (d.total < 0 || d.received !== d.total) return undefined;
    // Complete: segments are disjoint, within [0, total) and sum to total, so they tile it.
    this.remove(d);
    const first = segs[0]!;
    let out: Uint8Array | undefined;
    if (this.family === 4) {
      out = rebuildIpv4(first.packet, first.dataOffset, d.total, segs, this.headroom);
    } else {
      const fragHeader = findIpv6FragmentHeader(first.packet, first.packet.length);
      out = fragHeader < 0 ? undefined : rebuildIpv6(first.packet, fragHeader, first.packet, first.dataOffset, d.total, segs, this.headroom);
    }
    // The first fragment decides the header; with its options it may be longer than the header the
    // other fragments were checked against.
    if (out === undefined || out.length > this.maxPacket) {
      if (out === undefined) this.stats.malformed++;
      else this.stats.tooBig++;
      return undefined;
    }
    this.stats.reassembled++;
    return out;
  }

  /** When poll() next has work: the earliest deadline, or Infinity. */
  pollAt(): number {
    const d = this.oldest();
    return d === undefined ? Infinity : d.deadline;
  }

  /** Expires the datagrams whose timer ran out, oldest first, calling onExpired for each. */
  poll(now: number, onExpired: (e: Expired) => void): void {
    for (;;) {
      const d = this.oldest();
      if (d === undefined || d.deadline > now) return;
      this.remove(d);
      this.stats.timeouts++;
      const first = d.segments[0];
      onExpired({ firstFragment: first !== undefined && first.start === 0 ? first.packet : undefined });
    }
  }

  /** Drops everything in progress (no callbacks). */
  clear(): void {
    for (const d of [...this.order]) this.remove(d);
  }

  // ---- parsing ----

  /** Fills f for an IPv4 packet. */
  private parseIpv4(p: Uint8Array, f: Fragment): ParseResult {
    if (p.length < 20 || get8(p, 0) >>> 4 !== 4) return PARSE_BAD;
    const hl = (get8(p, 0) & 0x0f) * 4;
    const tl = get16(p, 2);
    if (hl < 20 || tl < hl || tl > p.length) return PARSE_BAD;
    const flagsOffset = get16(p, 6);
    const more = (flagsOffset & 0x2000) !== 0;
    const start = (flagsOffset & 0x1fff) * 8;
    if (!more && start === 0) return PARSE_WHOLE;
    f.start = start;
    f.end = start + (tl - hl);
    f.more = more;
    f.dataOffset = hl;
    f.headerBytes = hl;
    return PARSE_FRAGMENT;
  }

  /** Fills f for an IPv6 packet; headerBytes runs through the fragment header. */
  private parseIpv6(p: Uint8Array, f: Fragment): ParseResult {
    if (p.length < IPV6_HEADER_LEN || get8(p, 0) >>> 4 !== 6) return PARSE_BAD;
    const end = IPV6_HEADER_LEN + get16(p, 4);
    if (end > p.length) return PARSE_BAD;
    const fh = findIpv6FragmentHeader(p, end);
    if (fh < 0) return PARSE_BAD;
    const offM = get16(p, fh + 2);
    const dataOffset = fh + IPV6_FRAG_LEN;
    f.start = offM & 0xfff8;
    f.end = f.start + (end - dataOffset);
    f.more = (offM & 1) !== 0;
    f.dataOffset = dataOffset;
    f.headerBytes = dataOffset;
    // RFC 6946 §4: an atomic fragment is processed as a whole packet, outside any reassembly state.
    return !f.more && f.start === 0 ? PARSE_WHOLE : PARSE_FRAGMENT;
  }

  private reassembledSize(headerBytes: number, end: number): number {
    // IPv6: the fragment header itself disappears from the result.
    return this.family === 4 ? headerBytes + end : headerBytes - IPV6_FRAG_LEN + end;
  }

  private keyOf(p: Uint8Array, f: Fragment): Uint8Array {
    const k = this.keyScratch;
    if (this.family === 4) {
      k.set(p.subarray(12, 20), 0); // src, dst
      k[8] = p[9]!; // protocol
      k[9] = 0;
      k[10] = p[4]!; // identification
      k[11] = p[5]!;
    } else {
      k.set(p.subarray(8, 40), 0); // src, dst
      k.set(p.subarray(f.dataOffset - 4, f.dataOffset), 32); // identification, in the fragment header
    }
    return k;
  }

  // ---- the table ----

  private find(key: Uint8Array, hash: number): Datagram | undefined {
    const bucket = this.buckets.get(hash);
    if (bucket === undefined) return undefined;
    for (const d of bucket) if (sameKey(d.key, key)) return d;
    return undefined;
  }

  private insert(d: Datagram): void {
    const bucket = this.buckets.get(d.hash);
    if (bucket === undefined) this.buckets.set(d.hash, [d]);
    else bucket.push(d);
    this.order.add(d);
  }

  /** Counts `n` more bytes held (charged to the budget); false when the budget refuses. */
  private charge(n: number): boolean {
    if (this.memory && !this.memory.take(n)) return false;
    this.bytesHeld += n;
    return true;
  }

  private remove(d: Datagram): void {
    if (!this.order.delete(d)) return;
    const bucket = this.buckets.get(d.hash);
    if (bucket !== undefined) {
      const i = bucket.indexOf(d);
      if (i >= 0) bucket.splice(i, 1);
      if (bucket.length === 0) this.buckets.delete(d.hash);
    }
    this.bytesHeld -= d.cost;
    this.memory?.give(d.cost);
  }

  private oldest(): Datagram | undefined {
    return this.order.size === 0 ? undefined : this.order.values().next().value;
  }

  private evictOldest(): void {
    const d = this.oldest();
    if (d === undefined) return;
    this.stats.evictedForMemory++;
    this.remove(d);
  }
}

const PARSE_BAD = 0;
const PARSE_WHOLE = 1;
const PARSE_FRAGMENT = 2;
type ParseResult = typeof PARSE_BAD | typeof PARSE_WHOLE | typeof PARSE_FRAGMENT;

/**
 * Offset of the fragment header in an IPv6 packet, walking only the headers that may precede it
 * (RFC 8200 §4.1: Hop-by-Hop, Destination Options, Routing), or -1.
 */
function findIpv6FragmentHeader(p: Uint8Array, end: number): number {
  let nh = get8(p, 6);
  let pos = IPV6_HEADER_LEN;
  for (;;) {
    if (nh === IpProtocol.IPV6_FRAG) return pos + IPV6_FRAG_LEN <= end ? pos : -1;
    if (nh !== IpProtocol.HOPOPTS && nh !== IpProtocol.IPV6_OPTS && nh !== IpProtocol.IPV6_ROUTE) return -1;
    if (pos + 2 > end) return -1;
    const next = get8(p, pos);
    pos += (get8(p, pos + 1) + 1) * 8;
    nh = next;
  }
}

/** Offset of the Next Header field that names the header at `target` (6 for the first). */
function ipv6NextHeaderField(p: Uint8Array, target: number): number {
  let field = 6;
  let pos = IPV6_HEADER_LEN;
  while (pos < target) {
    field = pos;
    pos += (get8(p, pos + 1) + 1) * 8;
  }
  return field;
}

/**
 * The IPv4 datagram: the first fragment's header (RFC 791 §3.2: "the header of the first fragment
 * becomes the header of the reassembled datagram") with MF and the offset cleared, the total length
 * set and the checksum recomputed, then the payload.
 */
function rebuildIpv4(first: Uint8Array, hl: number, total: number, segs: readonly Segment[], headroom: number): Uint8Array {
  const out = new Uint8Array(headroom + hl + total).subarray(headroom);
  out.set(first.subarray(0, hl), 0);
  set16(out, 2, hl + total);
  set16(out, 6, get16(out, 6) & 0xc000); // keep reserved and DF, clear MF and the offset
  set16(out, 10, 0);
  set16(out, 10, internetChecksum(out, 0, hl));
  for (const s of segs) out.set(s.packet.subarray(s.dataOffset, s.dataOffset + (s.end - s.start)), hl + s.start);
  return out;
}

/**
 * The IPv6 packet (RFC 8200 §4.5): the first fragment's Unfragmentable Part (everything before its
 * fragment header at `fragHeader`), whose last Next Header takes the fragment header's, with the
 * payload length fixed, then the fragmentable parts in order. With `segs` undefined the payload is
 * `total` bytes of `data` at `dataOffset` (an atomic fragment).
 */
function rebuildIpv6(
  first: Uint8Array,
  fragHeader: number,
  data: Uint8Array,
  dataOffset: number,
  total: number,
  segs: readonly Segment[] | undefined,
  headroom: number,
): Uint8Array {
  const out = new Uint8Array(headroom + fragHeader + total).subarray(headroom);
  out.set(first.subarray(0, fragHeader), 0);
  set16(out, 4, fragHeader - IPV6_HEADER_LEN + total);
  set8(out, ipv6NextHeaderField(first, fragHeader), get8(first, fragHeader));
  if (segs === undefined) out.set(data.subarray(dataOffset, dataOffset + total), fragHeader);
  else for (const s of segs) out.set(s.packet.subarray(s.dataOffset, s.dataOffset + (s.end - s.start)), fragHeader + s.start);
  return out;
}

function hashKey(k: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < k.length; i++) h = Math.imul(h ^ k[i]!, 0x01000193);
  return h >>> 0;
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
