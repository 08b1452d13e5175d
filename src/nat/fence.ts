// What the guest may reach through the NAT. RFC 1812 §5.3.7 / §4.2.2.11: a router never forwards
// to or from 0/8 and 127/8; the host's loopback (127/8, ::1) and the unspecified addresses
// (0.0.0.0/8, ::) are ours to fence, since a host socket would turn them into this very host. They
// are reached only through the gateway address's mapping, which --no-map-gw turns off. IPv4-mapped
// and -compatible IPv6 destinations (::ffff:0:0/96, ::/96) are not valid on the wire (RFC 4291
// §2.5.5) and would reach IPv4 destinations around these rules: fenced too.
//
// The host's other addresses stay reachable, as under slirp, unless fenced: `denyHost` fences every
// address the host holds (slirp's restrict=on keeps the guest off the host and everything beyond;
// this keeps it off the host only), and `deny` any prefixes. A fenced datagram gets ICMP
// "communication administratively prohibited" from the gateway (RFC 1812 §5.2.7.1: type 3 code 13;
// RFC 4443 §3.1: type 1 code 1), a fenced SYN a RST, and each a counter.
import { TokenBucket } from '../iface/rate-limit.js';

export interface Cidr {
  family: 4 | 6;
  /** 4 or 16 bytes. */
  addr: Uint8Array;
  prefixLength: number;
}

export interface FenceOptions {
  /** Fence every address of this host (not only loopback). */
  denyHost?: boolean;
  /** The host's addresses (4 or 16 bytes each), asked when denyHost is on; the caller caches. */
  hostAddresses?: () => readonly Uint8Array[];
  /** Prefixes the guest may not reach. */
  deny?: readonly Cidr[];
  /** Milliseconds, for the rate of ICMP errors about fenced datagrams. */
  now?: () => number;
}

/** Why an address is fenced, or undefined when it is not. */
export type FenceReason = 'loopback' | 'unspecified' | 'mapped' | 'host' | 'denied';

export class Fence {
  readonly stats = { loopback: 0, unspecified: 0, mapped: 0, host: 0, denied: 0, errorsRateLimited: 0 };
  private readonly deny4: Cidr[];
  private readonly deny6: Cidr[];
  private readonly errors: TokenBucket;
  private readonly now: () => number;

  constructor(private readonly opts: FenceOptions = {}) {
    this.deny4 = (opts.deny ?? []).filter((c) => c.family === 4);
    this.deny6 = (opts.deny ?? []).filter((c) => c.family === 6);
    this.now = opts.now ?? (() => 0);
    // As the stack's own ICMP errors (gVisor's default: 1000/s, burst 50).
    this.errors = new TokenBucket(1000, 50, this.now());
  }

  /** Whether the guest may reach `addr` (bytes at `off`: 4 for IPv4, 16 for IPv6); counts. */
  check(family: 4 | 6, addr: Uint8Array, off = 0): FenceReason | undefined {
    const why = family === 4 ? this.check4(addr, off) : this.check6(addr, off);
    if (why !== undefined) this.stats[why]++;
    return why;
  }

  /** Whether an ICMP error about a fenced datagram may go now (rate limit). */
  mayAnswer(): boolean {
    if (this.errors.take(this.now())) return true;
    this.stats.errorsRateLimited++;
    return false;
  }

  private check4(a: Uint8Array, off: number): FenceReason | undefined {
    const first = a[off]!;
    if (first === 127) return 'loopback';
    if (first === 0) return 'unspecified';
    return this.listed(4, a, off);
  }

  private check6(a: Uint8Array, off: number): FenceReason | undefined {
    let zeros = 0;
    while (zeros < 10 && a[off + zeros] === 0) zeros++;
    if (zeros === 10) {
      const w5 = (a[off + 10]! << 8) | a[off + 11]!;
      if (w5 === 0xffff) return 'mapped';
      if (w5 === 0) {
        let rest = 0;
        for (let i = 12; i < 15; i++) rest |= a[off + i]!;
        const last = a[off + 15]!;
        if (rest === 0 && last === 1) return 'loopback';
        if (rest === 0 && last === 0) return 'unspecified';
        return 'mapped'; // IPv4-compatible (deprecated)
      }
    }
    return this.listed(6, a, off);
  }

  private listed(family: 4 | 6, a: Uint8Array, off: number): FenceReason | undefined {
    for (const c of family === 4 ? this.deny4 : this.deny6) if (inPrefix(a, off, c)) return 'denied';
    if (this.opts.denyHost && this.opts.hostAddresses) {
      const len = family === 4 ? 4 : 16;
      for (const h of this.opts.hostAddresses()) {
        if (h.length !== len) continue;
        let same = true;
        for (let i = 0; i < len && same; i++) same = h[i] === a[off + i];
        if (same) return 'host';
      }
    }
    return undefined;
  }
}

/** Whether the address at a[off] lies in prefix `c`. */
export function inPrefix(a: Uint8Array, off: number, c: Cidr): boolean {
  let bits = c.prefixLength;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((a[off + i]! & mask) !== (c.addr[i]! & mask)) return false;
  }
  return true;
}
