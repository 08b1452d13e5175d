// Router Advertisements for the guest link: what the guest needs for SLAAC (RFC 4862) and DNS
// (RFC 8106), sent on a schedule and in answer to Router Solicitations.
//
// Read before editing: RFC 4861 sections 4.1 / 4.2 (RS and RA formats), 6.1.1 and 6.1.2 (validity
// checks, applied here the way gVisor's netstack does in pkg/tcpip/network/ipv6/icmp.go),
// 6.2.1 (router variables and their defaults), 6.2.4 (unsolicited RAs), 6.2.6 (answering RSs),
// 6.2.7 (checking other routers' RAs), 10 (protocol constants); RFC 6980 section 5 (no fragmented
// NDP); RFC 4862 section 5.5.3 (what the guest does with our prefix); RFC 8106 sections 5.1-5.2
// (RDNSS and DNSSL lifetimes).
//
// Theory of operation. Nothing here keeps time or owns a timer: the owner calls linkUp(now) when the
// guest link comes up, feeds every RS / RA from the guest to handleRouterSolicitation /
// handleRouterAdvertisement, and calls poll(now, emit) whenever now >= pollAt(). There are two
// deadlines, and an RA goes out when the earlier one passes:
//
//   nextUnsolicited  after linkUp: now (the first RA goes out at once); after every RA we send:
//                    a random interval in [MinRtrAdvInterval, MaxRtrAdvInterval], capped at
//                    MAX_INITIAL_RTR_ADVERT_INTERVAL for the first MAX_INITIAL_RTR_ADVERTISEMENTS
//                    (6.2.4: "the interface's interval timer is reset ... as if an unsolicited
//                    advertisement had just been sent" also after a solicited multicast RA).
//   pendingSolicited set by a valid RS when none is pending: now + random [0, MAX_RA_DELAY_TIME],
//                    or, when our last multicast RA went out less than MIN_DELAY_BETWEEN_RAS ago,
//                    last + MIN_DELAY_BETWEEN_RAS + that random delay (6.2.6). Further RSs while one
//                    is pending share its answer ("the delay is relative to the first
//                    solicitation"). When nextUnsolicited comes first it answers the RS too.
//
// Every RA is multicast to ff02::1. RFC 4861 section 6.2.6 lets a router unicast its answer to a
// solicitor with a specified source, but "the usual case is to multicast the response"; radvd and
// gVisor do so, and with a single guest on the link nothing is gained by unicasting.
// writeAdvertisement() can still build a unicast RA for a caller that wants one.
//
// RAs from the guest are validated, counted and checked against ours (6.2.7), never obeyed: we are
// the only router on this link, whatever the guest runs.

import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import { copyBytes } from '../wire/bytes.js';
import { Icmpv6Packet, Icmpv6Type } from '../wire/icmpv6.js';
import { IpProtocol } from '../wire/ip.js';
import {
  emitIpv6Header,
  formatIpv6,
  IPV6_ADDR_LEN,
  IPV6_ALL_NODES,
  IPV6_HEADER_LEN,
  IPV6_MIN_MTU,
  Ipv6ChainResult,
  Ipv6HeaderChain,
  Ipv6Packet,
  ipv6IsLinkLocal,
  ipv6IsMulticast,
  ipv6IsUnspecified,
  ipv6PrefixEqual,
  walkIpv6Headers,
} from '../wire/ipv6.js';
import type { Ipv6Repr } from '../wire/ipv6.js';
import { emitNdpDnsslOption, emitNdpRouterAdvert, NDP_RA_LEN, NdpOptionIterator, NdpOptionType, NdpRouterAdvert, NdpRouterSolicit } from '../wire/ndp.js';
import type { NdpRouterAdvertRepr } from '../wire/ndp.js';
import type { StackConfig } from '../iface/config.js';

// RFC 4861 section 10, "Router constants", in milliseconds.
export const MAX_INITIAL_RTR_ADVERT_INTERVAL_MS = 16_000;
export const MAX_INITIAL_RTR_ADVERTISEMENTS = 3;
export const MIN_DELAY_BETWEEN_RAS_MS = 3_000;
export const MAX_RA_DELAY_TIME_MS = 500;

/** "MUST be no less than 4 seconds and no greater than 1800 seconds" (RFC 4861 section 6.2.1). */
const MAX_RTR_ADV_INTERVAL_RANGE = [4, 1800] as const;
/** "MUST be no less than 3 seconds and no greater than .75 * MaxRtrAdvInterval". */
const MIN_RTR_ADV_INTERVAL_FLOOR = 3;

/** AdvDefaultLifetime: 3 * MaxRtrAdvInterval with the default interval, the RFC's default. */
export const ROUTER_LIFETIME_S = 1800;
/** AdvCurHopLimit: what Linux uses for its own packets. */
export const CUR_HOP_LIMIT = 64;
/** Prefix lifetimes (seconds): a day valid, four hours preferred. */
export const PREFIX_VALID_LIFETIME_S = 86_400;
export const PREFIX_PREFERRED_LIFETIME_S = 14_400;
/** RFC 4861 sections 6.1.1 and 6.1.2: NDP messages arrive with hop limit 255 or not at all. */
const NDP_HOP_LIMIT = 255;
/** Interface identifiers for SLAAC on Ethernet are 64 bits (RFC 4862 section 5.5.3 (d)). */
const SLAAC_PREFIX_LENGTH = 64;

export interface RouterAdvertiserOptions {
  /** Our link-local address (16 bytes): every RA's source (RFC 4861 section 4.2). */
  linkLocal: Uint8Array;
  /**
   * Whether the DHCPv6 server assigns addresses. true: M=1, O=1 (addresses and DNS from DHCPv6,
   * SLAAC still on); false (default): M=0, O=1 (stateless DHCPv6 for DNS only). Must agree with
   * the Dhcpv6Server's `stateful`.
   */
  stateful?: boolean;
  /** MinRtrAdvInterval, seconds (default 200). */
  minRtrAdvInterval?: number;
  /** MaxRtrAdvInterval, seconds (default 600). */
  maxRtrAdvInterval?: number;
  /** Uniform in [0, 1), as Math.random (the default). */
  random?: () => number;
  logger?: Log;
}

/** Counters, plain fields (read them, never write). */
export class RouterAdvertiserStats {
  /** RSs from the guest, valid or not. */
  rsReceived = 0;
  rsInvalid = 0;
  /** Valid RSs received before linkUp(): not answered. */
  rsIgnored = 0;
  /** Valid RSs that arrived while an answer was already pending: they share it. */
  rsCoalesced = 0;
  /** RAs we sent, and how many of them answered a pending RS. */
  raSent = 0;
  raSolicited = 0;
  /** RAs from the guest (RFC 4861 section 6.2.7 calls it "another router"), valid or not. */
  guestRaReceived = 0;
  guestRaInvalid = 0;
  /** Valid guest RAs that disagree with ours on a field section 6.2.7 lists. */
  guestRaInconsistent = 0;
}

export class RouterAdvertiser {
  readonly stats = new RouterAdvertiserStats();

  private readonly linkLocal = new Uint8Array(IPV6_ADDR_LEN);
  private readonly minIntervalMs: number;
  private readonly maxIntervalMs: number;
  private readonly random: () => number;
  private readonly log: Log;
  private readonly ra: NdpRouterAdvertRepr;
  private readonly ipRepr: Ipv6Repr;
  /** Our prefix, for comparing with guest RAs. */
  private readonly prefix: Uint8Array;
  private readonly prefixLength: number;
  /** The RA under construction, sized for the largest one we build. */
  private readonly buf: Uint8Array;

  // Schedule (milliseconds); see the theory of operation above.
  private up = false;
  private nextUnsolicited = Infinity;
  private pendingSolicited = Infinity;
  private lastMulticast = -Infinity;
  /** RAs sent since linkUp(), to cap the first MAX_INITIAL_RTR_ADVERTISEMENTS intervals. */
  private sentSinceUp = 0;
  private warnedGuestRa = false;

  // Scratch views, re-pointed per packet.
  private readonly ip = new Ipv6Packet();
  private readonly chain = new Ipv6HeaderChain();
  private readonly icmp = new Icmpv6Packet();
  private readonly rs = new NdpRouterSolicit();
  private readonly guestRa = new NdpRouterAdvert();
  private readonly opt = new NdpOptionIterator();

  constructor(config: StackConfig, opts: RouterAdvertiserOptions) {
    const v6 = config.ipv6;
    if (v6 === undefined) throw new RangeError('RouterAdvertiser needs an IPv6 configuration');
    if (opts.linkLocal.length < IPV6_ADDR_LEN || !ipv6IsLinkLocal(opts.linkLocal, 0)) {
      // "Source Address MUST be the link-local address assigned to the interface" (section 4.2).
      throw new RangeError('RouterAdvertiser: linkLocal must be a link-local address');
    }
    const maxS = opts.maxRtrAdvInterval ?? 600;
    const minS = opts.minRtrAdvInterval ?? 200;
    if (!(maxS >= MAX_RTR_ADV_INTERVAL_RANGE[0] && maxS <= MAX_RTR_ADV_INTERVAL_RANGE[1])) {
      throw new RangeError('MaxRtrAdvInterval must be within 4..1800 s (RFC 4861 section 6.2.1)');
    }
    if (!(minS >= MIN_RTR_ADV_INTERVAL_FLOOR && minS <= 0.75 * maxS)) {
      throw new RangeError('MinRtrAdvInterval must be within 3 s..0.75 * MaxRtrAdvInterval (RFC 4861 section 6.2.1)');
    }
    copyBytes(this.linkLocal, 0, opts.linkLocal, 0, IPV6_ADDR_LEN);
    this.minIntervalMs = minS * 1000;
    this.maxIntervalMs = maxS * 1000;
    this.random = opts.random ?? Math.random;
    this.log = opts.logger ?? silentLog;
    this.prefix = v6.prefix.slice(0, IPV6_ADDR_LEN);
    this.prefixLength = v6.prefixLength;

    // RFC 8106 section 5.1: Lifetime "SHOULD by default be at least 3 * MaxRtrAdvInterval".
    const dnsLifetime = 3 * maxS;
    const fixed = IPV6_HEADER_LEN + NDP_RA_LEN + 32 /* prefix */ + 8 /* MTU */ + 8 /* source link-layer */ + 8 + IPV6_ADDR_LEN; // RDNSS
    this.ra = {
      curHopLimit: CUR_HOP_LIMIT,
      managed: opts.stateful ?? false,
      other: true,
      routerLifetime: ROUTER_LIFETIME_S,
      reachableTime: 0,
      retransTimer: 0,
      sourceMac: config.mac.slice(0, 6),
      mtu: config.mtu,
      prefixes: [
        {
          prefix: this.prefix,
          prefixLength: this.prefixLength,
          onLink: true,
          // A prefix that cannot make a 128-bit address with a 64-bit interface id is useless for
          // SLAAC (RFC 4862 section 5.5.3 (d)): advertise it on-link only.
          autonomous: this.prefixLength === SLAAC_PREFIX_LENGTH,
          validLifetime: PREFIX_VALID_LIFETIME_S,
          preferredLifetime: PREFIX_PREFERRED_LIFETIME_S,
        },
      ],
      rdnss: { lifetime: dnsLifetime, servers: [v6.dns.slice(0, IPV6_ADDR_LEN)] },
    };
    const domains = this.fitDomains(config.searchDomains, IPV6_MIN_MTU - fixed);
    if (domains.length > 0) this.ra.dnssl = { lifetime: dnsLifetime, domains };
    // Sized for the RA as configured; it never exceeds the minimum IPv6 MTU.
    this.buf = new Uint8Array(IPV6_MIN_MTU);
    this.ipRepr = {
      src: this.linkLocal,
      dst: IPV6_ALL_NODES,
      nextHeader: IpProtocol.ICMPV6,
      hopLimit: NDP_HOP_LIMIT,
      payloadLength: 0,
    };
  }

  /** The guest link came up: advertise now, then at the initial pace (RFC 4861 section 6.2.4). */
  linkUp(now: number): void {
    this.up = true;
    this.sentSinceUp = 0;
    // At once, unless that would break the multicast rate limit (section 6.2.6).
    this.nextUnsolicited = Math.max(now, this.lastMulticast + MIN_DELAY_BETWEEN_RAS_MS);
    this.pendingSolicited = Infinity;
  }

  /** The guest link went away: stop advertising until the next linkUp(). */
  linkDown(): void {
    this.up = false;
    this.nextUnsolicited = Infinity;
    this.pendingSolicited = Infinity;
  }

  /** The next time poll() has something to send, or Infinity. */
  pollAt(): number {
    return Math.min(this.nextUnsolicited, this.pendingSolicited);
  }

  /**
   * Sends the RA that is due at `now`, if any, through `emit`: a view of a whole IPv6 packet in an
   * internal buffer, valid only during the call. At most one RA per call: a pending answer and a
   * scheduled RA that are both due are the same multicast RA.
   */
  poll(now: number, emit: (packet: Uint8Array) => void): void {
    if (!this.up || now < this.pollAt()) return;
    const len = this.writeAdvertisement(this.buf, 0, IPV6_ALL_NODES);
    if (len < 0) {
      // Cannot happen with a configuration the constructor accepted; do not spin on it.
      this.log.warn({}, 'router advertisement does not fit its buffer');
      this.scheduleNext(now);
      return;
    }
    // A pending answer goes out with this RA, whichever deadline fired.
    if (this.pendingSolicited !== Infinity) this.stats.raSolicited++;
    this.stats.raSent++;
    this.lastMulticast = now;
    this.sentSinceUp++;
    this.pendingSolicited = Infinity;
    this.scheduleNext(now);
    emit(this.buf.subarray(0, len));
  }

  /**
   * Writes a complete RA (IPv6 header, ICMPv6 message with its checksum) to `dst` at buf[off];
   * returns its length, or -1 when it does not fit.
   */
  writeAdvertisement(buf: Uint8Array, off: number, dst: Uint8Array): number {
    this.ipRepr.dst = dst;
    const icmpLen = emitNdpRouterAdvert(buf, off + IPV6_HEADER_LEN, this.ra, this.linkLocal, dst);
    if (icmpLen < 0) return -1;
    this.ipRepr.payloadLength = icmpLen;
    if (emitIpv6Header(buf, off, this.ipRepr) < 0) return -1;
    return IPV6_HEADER_LEN + icmpLen;
  }

  /**
   * A Router Solicitation from the guest: the IPv6 packet at pkt[off, off + len). Validates it
   * (RFC 4861 section 6.1.1) and, when valid and the link is up, schedules an answer (6.2.6).
   * Returns whether it was valid. Never throws.
   */
  handleRouterSolicitation(pkt: Uint8Array, off: number, len: number, now: number): boolean {
    this.stats.rsReceived++;
    if (!this.validRouterSolicitation(pkt, off, len)) {
      this.stats.rsInvalid++;
      this.log.debug({ src: this.srcText() }, 'invalid router solicitation dropped');
      return false;
    }
    if (!this.up) {
      this.stats.rsIgnored++;
      return true;
    }
    if (this.pendingSolicited !== Infinity) {
      // "If a single advertisement is sent in response to multiple solicitations, the delay is
      // relative to the first solicitation" (section 6.2.6).
      this.stats.rsCoalesced++;
      return true;
    }
    const delay = this.random() * MAX_RA_DELAY_TIME_MS;
    // "If the router sent a multicast Router Advertisement (solicited or unsolicited) within the
    // last MIN_DELAY_BETWEEN_RAS seconds, schedule the advertisement to be sent at a time
    // corresponding to MIN_DELAY_BETWEEN_RAS plus the random value after the previous
    // advertisement was sent" (section 6.2.6). When the computed time is later than the next
    // scheduled RA, that RA answers: pollAt() takes the earlier of the two.
    this.pendingSolicited = now - this.lastMulticast < MIN_DELAY_BETWEEN_RAS_MS ? this.lastMulticast + MIN_DELAY_BETWEEN_RAS_MS + delay : now + delay;
    this.log.debug({ src: this.srcText(), at: this.pendingSolicited }, 'router solicitation: advertisement scheduled');
    return true;
  }

  /**
   * A Router Advertisement from the guest. Validated (RFC 4861 section 6.1.2), compared with ours
   * (6.2.7), logged and counted; it never changes what we advertise. Returns whether it was valid.
   */
  handleRouterAdvertisement(pkt: Uint8Array, off: number, len: number, now: number): boolean {
    this.stats.guestRaReceived++;
    if (!this.validRouterAdvertisement(pkt, off, len)) {
      this.stats.guestRaInvalid++;
      this.log.debug({ src: this.srcText() }, 'invalid router advertisement from the guest dropped');
      return false;
    }
    const inconsistent = this.inconsistencies();
    if (inconsistent.length > 0) this.stats.guestRaInconsistent++;
    const fields = { src: this.srcText(), lifetime: this.guestRa.routerLifetime, inconsistent, now };
    if (!this.warnedGuestRa) {
      this.warnedGuestRa = true;
      this.log.warn(fields, 'the guest sends router advertisements (is a router daemon running in it?); ignored');
    } else {
      this.log.debug(fields, 'router advertisement from the guest ignored');
    }
    return true;
  }

  // ---- Validation ----

  /**
   * Checks shared by RS and RA: a well-formed IPv6 packet with hop limit 255, not fragmented
   * (RFC 6980 section 5), carrying an ICMPv6 message of `type` with a valid checksum, from a
   * source that is not multicast. Leaves this.ip and this.icmp on the packet.
   */
  private ndpMessage(pkt: Uint8Array, off: number, len: number, type: number): boolean {
    const ip = this.ip.at(pkt, off, len);
    if (!ip.check()) return false;
    // "The IP Hop Limit field has a value of 255, i.e., the packet could not possibly have been
    // forwarded by a router" (sections 6.1.1, 6.1.2).
    if (ip.hopLimit !== NDP_HOP_LIMIT) return false;
    if (ipv6IsMulticast(pkt, ip.srcOffset)) return false;
    if (walkIpv6Headers(pkt, off, this.chain) !== Ipv6ChainResult.OK) return false;
    if (this.chain.fragmentOffset >= 0 || this.chain.upperProtocol !== IpProtocol.ICMPV6) return false;
    const icmp = this.icmp.at(pkt, this.chain.upperOffset, ip.end - this.chain.upperOffset);
    if (!icmp.check() || icmp.type !== type) return false;
    return icmp.verifyChecksum(pkt, ip.srcOffset, pkt, ip.dstOffset);
  }

  private validRouterSolicitation(pkt: Uint8Array, off: number, len: number): boolean {
    if (!this.ndpMessage(pkt, off, len, Icmpv6Type.ROUTER_SOLICIT)) return false;
    // Length >= 8, code 0, every option with a non-zero length that fits (NdpMessage.check()).
    const rs = this.rs.at(pkt, this.icmp.offset, this.icmp.length);
    if (!rs.check()) return false;
    const slla = this.countSourceLinkLayer(rs.optionsOffset, rs.optionsLength);
    // gVisor: "Since no interface can have multiple link-layer addresses, we consider such
    // messages invalid."
    if (slla > 1) return false;
    // "If the IP source address is the unspecified address, there is no source link-layer address
    // option in the message" (section 6.1.1).
    if (slla === 1 && ipv6IsUnspecified(pkt, this.ip.srcOffset)) return false;
    return true;
  }

  private validRouterAdvertisement(pkt: Uint8Array, off: number, len: number): boolean {
    if (!this.ndpMessage(pkt, off, len, Icmpv6Type.ROUTER_ADVERT)) return false;
    // "IP Source Address is a link-local address" (section 6.1.2).
    if (!ipv6IsLinkLocal(pkt, this.ip.srcOffset)) return false;
    const ra = this.guestRa.at(pkt, this.icmp.offset, this.icmp.length);
    if (!ra.check()) return false;
    return this.countSourceLinkLayer(ra.optionsOffset, ra.optionsLength) <= 1;
  }

  /** Source link-layer address options among options already validated by check(). */
  private countSourceLinkLayer(off: number, len: number): number {
    let n = 0;
    const it = this.opt.at(this.ip.bytes, off, len);
    while (it.next()) if (it.type === NdpOptionType.SOURCE_LL_ADDR) n++;
    return n;
  }

  /**
   * The fields RFC 4861 section 6.2.7 says to compare with another router's RA: cur hop limit,
   * M and O flags, reachable time and retrans timer (when both are specified), MTU, and the
   * lifetimes of a prefix we also advertise. Not on the per-packet path: returns names.
   */
  private inconsistencies(): string[] {
    const ra = this.guestRa;
    const ours = this.ra;
    const out: string[] = [];
    if (ra.curHopLimit !== 0 && ra.curHopLimit !== ours.curHopLimit) out.push('curHopLimit');
    if (ra.managed !== ours.managed) out.push('managed');
    if (ra.other !== ours.other) out.push('other');
    if (ra.reachableTime !== 0 && ours.reachableTime !== 0 && ra.reachableTime !== ours.reachableTime) {
      out.push('reachableTime');
    }
    if (ra.retransTimer !== 0 && ours.retransTimer !== 0 && ra.retransTimer !== ours.retransTimer) {
      out.push('retransTimer');
    }
    const it = this.opt.at(ra.bytes, ra.optionsOffset, ra.optionsLength);
    while (it.next()) {
      if (it.type === NdpOptionType.MTU) {
        if (it.mtu !== ours.mtu) out.push('mtu');
      } else if (it.type === NdpOptionType.PREFIX_INFO) {
        if (
          it.prefixLength === this.prefixLength &&
          ipv6PrefixEqual(ra.bytes, it.prefixOffset, this.prefix, 0, this.prefixLength) &&
          (it.validLifetime !== PREFIX_VALID_LIFETIME_S || it.preferredLifetime !== PREFIX_PREFERRED_LIFETIME_S)
        ) {
          out.push('prefixLifetimes');
        }
      }
    }
    return out;
  }

  // ---- Helpers ----

  /** Section 6.2.4: a random interval, capped for the first few RAs after linkUp(). */
  private scheduleNext(now: number): void {
    let interval = this.minIntervalMs + this.random() * (this.maxIntervalMs - this.minIntervalMs);
    if (this.sentSinceUp < MAX_INITIAL_RTR_ADVERTISEMENTS) interval = Math.min(interval, MAX_INITIAL_RTR_ADVERT_INTERVAL_MS);
    this.nextUnsolicited = now + interval;
  }

  /**
   * The search domains that make a valid DNSSL within `room` bytes, in order: invalid names are
   * skipped and the list is cut where the RA would outgrow the minimum IPv6 MTU (the guest's real
   * MTU may be lower than config.mtu until it reads our MTU option). The wire emitter judges names.
   */
  private fitDomains(domains: readonly string[], room: number): string[] {
    const scratch = new Uint8Array(room);
    const kept: string[] = [];
    for (const d of domains) {
      if (d.length === 0 || d === '.' || emitNdpDnsslOption(scratch, 0, 0, [d]) < 0) {
        this.log.warn({ domain: d }, 'search domain not valid in a DNSSL option; left out');
        continue;
      }
      if (emitNdpDnsslOption(scratch, 0, 0, [...kept, d]) < 0) {
        this.log.warn({ domain: d }, 'search domain does not fit in the router advertisement; left out');
        continue;
      }
      kept.push(d);
    }
    return kept;
  }

  private srcText(): string {
    const ip = this.ip;
    return ip.offset >= 0 && ip.length >= IPV6_HEADER_LEN && ip.offset + IPV6_HEADER_LEN <= ip.bytes.length
      ? formatIpv6(this.ip.bytes, this.ip.srcOffset)
      : '?';
  }
}
