// The DHCPv6 server on the guest link: DNS information always (stateless, RFC 8415 section 6.1),
// addresses too when `stateful` (section 6.2). It matches the RA's M and O flags (see
// ../ra/router-advertiser.ts): stateless is M=0 O=1, stateful M=1 O=1.
//
// Read before editing: RFC 8415 sections 11 (DUIDs: at most 130 bytes), 16 (which messages a server
// must discard), 18.3 (server behaviour for each message: 18.3.1 Solicit and Rapid Commit, 18.3.2
// Request, 18.3.3 Confirm, 18.3.4 Renew, 18.3.5 Rebind, 18.3.6 Information-request, 18.3.7 Release,
// 18.3.8 Decline, 18.3.9 Advertise contents), 21 (option formats; 21.4 T1 = 0.5 and T2 = 0.8 times
// the shortest preferred lifetime), RFC 3646 (DNS options 23 and 24).
//
// handle() takes the UDP payload of a datagram the guest sent to port 547 and writes the answer
// (to the client's address, port 546) into `out`, returning its length, or 0 for no answer.
// Malformed messages and those RFC 8415 section 16 says to discard are counted and dropped.
//
// Addresses. A client's IA (DUID + IAID) gets prefix::100 + n, where n is a hash of DUID and IAID
// (linear probing past addresses in use), so a client gets the same address after a restart of
// either side. The lease table is bounded (maxLeases): an Advertise holds its address briefly, a
// Reply binds it for the valid lifetime; expired leases, then held offers, make room for new ones.
// Renew and Rebind for an IA without a binding create one (RFC 8415 section 18.3.4: the server may
// be "configured to create new bindings as a result of processing Renew messages"), so clients keep
// their address across a vunet restart. The lease table is control-path state, keyed by strings.

import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import { bytesEqual, copyBytes, get32, set16 } from '../wire/bytes.js';
import {
  DHCPV6_HEADER_LEN,
  DHCPV6_IA_NA_LEN,
  DHCPV6_IAADDR_LEN,
  dhcpv6BeginOption,
  dhcpv6EndOption,
  Dhcpv6Message,
  Dhcpv6MessageType,
  Dhcpv6Option,
  Dhcpv6OptionIterator,
  Dhcpv6Options,
  dhcpv6PutAddresses,
  dhcpv6PutBytes,
  dhcpv6PutDomainList,
  dhcpv6PutDuidLl,
  dhcpv6PutEmpty,
  dhcpv6PutIaNa,
  dhcpv6PutStatus,
  dhcpv6PutU32,
  dhcpv6PutU8,
  dhcpv6Requests,
  Dhcpv6Status,
  emitDhcpv6Header,
} from '../wire/dhcpv6.js';
import type { Dhcpv6IaAddrRepr } from '../wire/dhcpv6.js';
import { formatIpv6, IPV6_ADDR_LEN, ipv6IsMulticast, ipv6IsUnspecified, ipv6PrefixEqual } from '../wire/ipv6.js';
import type { StackConfig } from '../iface/config.js';

/** RFC 8415 section 11.1: "A DUID can be no more than 130 octets long (including the type code)." */
const MAX_DUID_LEN = 130;
/** First host number handed out: prefix::100, clear of the gateway (::2) and DNS (::3). */
const FIRST_HOST = 0x100;
/** Host numbers ::100 .. ::ffff. */
const POOL_SIZE = 0x10000 - FIRST_HOST;
/** How long an address offered in an Advertise stays held for the client's Request. */
const OFFER_HOLD_MS = 60_000;
/** Information Refresh Time sent when asked for (RFC 8415 section 7.6, IRT_DEFAULT). */
const INFORMATION_REFRESH_TIME_S = 86_400;
/** Preference 255: the client takes this Advertise at once (RFC 8415 section 18.2.1). */
const MAX_PREFERENCE = 255;
/** At most this many of a client's own stale addresses are echoed back with lifetime 0, per IA. */
const MAX_ECHOED_ADDRESSES = 8;

export interface Dhcpv6ServerOptions {
  /** Assign addresses (IA_NA). Default false: DNS information only. Match the RA's `stateful`. */
  stateful?: boolean;
  /** Answer a Solicit carrying Rapid Commit with a committing Reply (default true). */
  rapidCommit?: boolean;
  /** Bound of the lease table (default 256, at most 65280). */
  maxLeases?: number;
  /** Address lifetimes, seconds: valid defaults to config.leaseTime, preferred to the valid one. */
  validLifetime?: number;
  preferredLifetime?: number;
  logger?: Log;
}

/** Counters, plain fields (read them, never write). */
export class Dhcpv6ServerStats {
  received = 0;
  /** Malformed, or discarded by the rules of RFC 8415 section 16. */
  invalid = 0;
  /** Valid, but naming another server in its Server Identifier. */
  notForUs = 0;
  /** Types a server does not take from a client (Advertise, Reply, Reconfigure, relay messages). */
  unexpectedType = 0;
  solicit = 0;
  request = 0;
  confirm = 0;
  renew = 0;
  rebind = 0;
  release = 0;
  decline = 0;
  informationRequest = 0;
  advertiseSent = 0;
  replySent = 0;
  /** Valid messages we chose not to answer (RFC 8415 says MUST NOT, or stateless Rebind). */
  unanswered = 0;
  /** IAs answered with NoAddrsAvail. */
  noAddrsAvail = 0;
  /** Answers that did not fit in `out`. */
  replyTooLarge = 0;
}

/**
 * A lease's states:
 *   held      offered in an Advertise, kept OFFER_HOLD_MS for the client's Request
 *   bound     the client's, for the valid lifetime (Reply, or a Solicit with Rapid Commit)
 *   declined  the client said another node uses the address: kept out of the pool for the valid
 *             lifetime, under a key of its own (RFC 8415 §18.3.8)
 * Edges, all taken in transition(): (new) → held; held → held (a new Advertise extends the hold);
 * held, bound → bound (Request, Renew, Rebind: the lifetime starts again); bound → declined
 * (Decline). A Release, the end of `expires` or eviction removes the lease, whatever its state.
 */
type LeaseState = 'held' | 'bound' | 'declined';

interface Lease {
  key: string;
  slot: number;
  address: Uint8Array;
  state: LeaseState;
  /** ms; the lease is reusable by its client after this, and evictable. */
  expires: number;
}

/** What to do with each IA of a message. */
const IaAction = {
  /** Solicit: hold (Advertise) or bind (Rapid Commit) an address. */
  OFFER: 0,
  BIND: 1,
  /** Renew / Rebind: extend the binding, or create one. */
  EXTEND: 2,
  RELEASE: 3,
  DECLINE: 4,
} as const;
type IaAction = (typeof IaAction)[keyof typeof IaAction];

export class Dhcpv6Server {
  readonly stats = new Dhcpv6ServerStats();

  private readonly stateful: boolean;
  private readonly rapidCommit: boolean;
  private readonly maxLeases: number;
  private readonly validLifetime: number;
  private readonly preferredLifetime: number;
  private readonly log: Log;
  private readonly mac: Uint8Array;
  /** Our DUID-LL (RFC 8415 section 11.4), as it appears in a Server Identifier. */
  private readonly duid: Uint8Array;
  private readonly prefix: Uint8Array;
  private readonly prefixLength: number;
  private readonly dns: Uint8Array[];
  private readonly domains: string[];

  private readonly byKey = new Map<string, Lease>();
  private readonly bySlot = new Map<number, Lease>();

  // Scratch, re-pointed per message.
  private readonly msg = new Dhcpv6Message();
  private readonly opts = new Dhcpv6Options();
  private readonly top = new Dhcpv6OptionIterator();
  private readonly inner = new Dhcpv6OptionIterator();
  private readonly addrs: Dhcpv6IaAddrRepr[] = [];

  constructor(config: StackConfig, opts: Dhcpv6ServerOptions = {}) {
    const v6 = config.ipv6;
    if (v6 === undefined) throw new RangeError('Dhcpv6Server needs an IPv6 configuration');
    this.stateful = opts.stateful ?? false;
    this.rapidCommit = opts.rapidCommit ?? true;
    this.maxLeases = opts.maxLeases ?? 256;
    if (!(this.maxLeases >= 1 && this.maxLeases <= POOL_SIZE)) throw new RangeError('maxLeases must be within 1..65280');
    this.validLifetime = opts.validLifetime ?? config.leaseTime;
    this.preferredLifetime = Math.min(opts.preferredLifetime ?? this.validLifetime, this.validLifetime);
    this.log = opts.logger ?? silentLog;
    this.mac = config.mac.slice(0, 6);
    this.duid = Uint8Array.of(0, 3, 0, 1, ...this.mac);
    this.prefix = v6.prefix.slice(0, IPV6_ADDR_LEN);
    this.prefixLength = v6.prefixLength;
    this.dns = [v6.dns.slice(0, IPV6_ADDR_LEN)];
    // Names the option writer refuses would make every answer fail: leave them out here.
    const scratch = new Uint8Array(4 + 256);
    this.domains = config.searchDomains.filter((d) => {
      const ok = d.length > 0 && d !== '.' && dhcpv6PutDomainList(scratch, 0, scratch.length, [d]) > 0;
      if (!ok) this.log.warn({ domain: d }, 'search domain not valid in DHCPv6 option 24; left out');
      return ok;
    });
  }

  /** Leases in the table (bound, held or declined, expired or not). */
  get leaseCount(): number {
    return this.byKey.size;
  }

  /** The address bound or held for a client's IA, if any (tests and status output). */
  leaseFor(duid: Uint8Array, iaid: number): Uint8Array | undefined {
    return this.byKey.get(leaseKey(duid, 0, duid.length, iaid))?.address;
  }

  /**
   * Handles one DHCPv6 message from the guest (`payload` is the whole UDP payload, `src` the 16-byte
   * source address) and writes the answer into `out` from offset 0. Returns the answer's length, or
   * 0 when there is none. Never throws on any input.
   */
  handle(payload: Uint8Array, src: Uint8Array, out: Uint8Array, now: number): number {
    this.stats.received++;
    const m = this.msg.at(payload, 0, payload.length);
    const o = this.opts;
    // Clients send from a unicast (link-local) address; the answer goes back to it.
    if (src.length < IPV6_ADDR_LEN || ipv6IsUnspecified(src, 0) || ipv6IsMulticast(src, 0)) return this.invalid('bad source');
    if (payload.length < DHCPV6_HEADER_LEN) return this.invalid('truncated');
    if (!isClientMessage(m.msgType)) {
      // Advertise, Reply, Reconfigure (sections 16.3, 16.10, 16.11), relay messages (we are on the
      // client's link, no relay sits between), unknown types.
      this.stats.unexpectedType++;
      return 0;
    }
    if (!m.check() || !m.parseOptions(o)) return this.invalid('malformed');
    if (o.clientIdOffset >= 0 && o.clientIdLength > MAX_DUID_LEN) return this.invalid('client DUID too long');
    const type = m.msgType;
    const hasClient = o.clientIdOffset >= 0;
    const hasServer = o.serverIdOffset >= 0;
    const forUs = hasServer && o.serverIdLength === this.duid.length && bytesEqual(payload, o.serverIdOffset, this.duid, 0, this.duid.length);
    this.log.debug({ type, xid: m.transactionId, src: formatIpv6(src, 0) }, 'dhcpv6 message');

    switch (type) {
      case Dhcpv6MessageType.SOLICIT:
        this.stats.solicit++;
        // Section 16.2: discard without a Client Identifier or with a Server Identifier.
        if (!hasClient || hasServer) return this.invalid('solicit: client id missing or server id present');
        return this.solicit(payload, out, now);
      case Dhcpv6MessageType.REQUEST:
      case Dhcpv6MessageType.RENEW:
      case Dhcpv6MessageType.RELEASE:
      case Dhcpv6MessageType.DECLINE: {
        if (type === Dhcpv6MessageType.REQUEST) this.stats.request++;
        else if (type === Dhcpv6MessageType.RENEW) this.stats.renew++;
        else if (type === Dhcpv6MessageType.RELEASE) this.stats.release++;
        else this.stats.decline++;
        // Sections 16.4, 16.6, 16.8, 16.9: discard without a Server Identifier, with another
        // server's, or without a Client Identifier.
        if (!hasClient || !hasServer) return this.invalid('client or server id missing');
        if (!forUs) return this.notForUs();
        return this.stateful ? this.bindingMessage(type, payload, out, now) : this.statelessBindingMessage(type, payload, out);
      }
      case Dhcpv6MessageType.REBIND:
        this.stats.rebind++;
        // Section 16.7: discard without a Client Identifier or with a Server Identifier.
        if (!hasClient || hasServer) return this.invalid('rebind: client id missing or server id present');
        // Stateless, we know of no binding and cannot vouch for the client's addresses: section
        // 18.3.5 then forbids answering.
        if (!this.stateful) return this.unanswered();
        return this.bindingMessage(type, payload, out, now);
      case Dhcpv6MessageType.CONFIRM:
        this.stats.confirm++;
        // Section 16.5: discard without a Client Identifier or with a Server Identifier.
        if (!hasClient || hasServer) return this.invalid('confirm: client id missing or server id present');
        return this.confirm(payload, out);
      case Dhcpv6MessageType.INFORMATION_REQUEST:
        this.stats.informationRequest++;
        // Section 16.12: discard with another server's Server Identifier or with any IA option.
        if (hasServer && !forUs) return this.notForUs();
        if (this.countIas(payload) > 0) return this.invalid('information-request with an IA');
        return this.informationRequest(payload, out);
      default:
        return 0; // not reached: isClientMessage() let it through
    }
  }

  // ---- Messages ----

  /** Section 18.3.1 (and 18.3.9 for the Advertise). */
  private solicit(payload: Uint8Array, out: Uint8Array, now: number): number {
    const o = this.opts;
    const commit = o.rapidCommit && this.rapidCommit;
    if (!this.stateful || o.iaNaCount === 0 || !this.canAssignAny(payload, now)) {
      // "If the server will not assign any addresses or delegated prefixes to any IAs in a
      // subsequent Request from the client, the server MUST send an Advertise message to the client
      // that includes only a Status Code option with code NoAddrsAvail ..., a Server Identifier
      // option with the server's DUID, and a Client Identifier option with the client's DUID."
      let p = this.header(out, Dhcpv6MessageType.ADVERTISE, payload);
      p = dhcpv6PutStatus(out, p, out.length, Dhcpv6Status.NO_ADDRS_AVAIL, 'no addresses: use SLAAC');
      this.stats.noAddrsAvail++;
      return this.finish(p, Dhcpv6MessageType.ADVERTISE);
    }
    const type = commit ? Dhcpv6MessageType.REPLY : Dhcpv6MessageType.ADVERTISE;
    let p = this.header(out, type, payload);
    if (commit) p = dhcpv6PutEmpty(out, p, out.length, Dhcpv6Option.RAPID_COMMIT);
    else p = dhcpv6PutU8(out, p, out.length, Dhcpv6Option.PREFERENCE, MAX_PREFERENCE);
    p = this.ias(payload, out, p, commit ? IaAction.BIND : IaAction.OFFER, now);
    p = this.information(payload, out, p, false);
    return this.finish(p, type);
  }

  /** Request (18.3.2), Renew (18.3.4), Rebind (18.3.5), Release (18.3.7), Decline (18.3.8). */
  private bindingMessage(type: number, payload: Uint8Array, out: Uint8Array, now: number): number {
    let p = this.header(out, Dhcpv6MessageType.REPLY, payload);
    if (type === Dhcpv6MessageType.RELEASE || type === Dhcpv6MessageType.DECLINE) {
      p = dhcpv6PutStatus(out, p, out.length, Dhcpv6Status.SUCCESS, type === Dhcpv6MessageType.RELEASE ? 'released' : 'declined');
      p = this.ias(payload, out, p, type === Dhcpv6MessageType.RELEASE ? IaAction.RELEASE : IaAction.DECLINE, now);
    } else {
      p = this.ias(payload, out, p, type === Dhcpv6MessageType.REQUEST ? IaAction.BIND : IaAction.EXTEND, now);
      p = this.information(payload, out, p, false);
    }
    return this.finish(p, Dhcpv6MessageType.REPLY);
  }

  /**
   * Stateless: a Request (after another server's Advertise) gets NoAddrsAvail in each IA, Renew,
   * Release and Decline get NoBinding (sections 18.3.2, 18.3.4, 18.3.7, 18.3.8).
   */
  private statelessBindingMessage(type: number, payload: Uint8Array, out: Uint8Array): number {
    let p = this.header(out, Dhcpv6MessageType.REPLY, payload);
    if (type === Dhcpv6MessageType.RELEASE || type === Dhcpv6MessageType.DECLINE) {
      p = dhcpv6PutStatus(out, p, out.length, Dhcpv6Status.SUCCESS, 'nothing bound');
    }
    const request = type === Dhcpv6MessageType.REQUEST;
    const it = this.top.at(payload, this.msg.optionsOffset, this.msg.optionsLength);
    while (p >= 0 && it.next()) p = this.refuseIa(out, p, it, request ? refusal(it.code) : Dhcpv6Status.NO_BINDING);
    if (type === Dhcpv6MessageType.REQUEST || type === Dhcpv6MessageType.RENEW) p = this.information(payload, out, p, false);
    return this.finish(p, Dhcpv6MessageType.REPLY);
  }

  /** Section 18.3.3. */
  private confirm(payload: Uint8Array, out: Uint8Array): number {
    let seen = 0;
    let offLink = 0;
    const it = this.top.at(payload, this.msg.optionsOffset, this.msg.optionsLength);
    while (it.next()) {
      const fixed = iaFixedLength(it.code);
      if (fixed < 0 || it.length < fixed) continue;
      const a = this.inner.at(payload, it.offset + fixed, it.length - fixed);
      while (a.next()) {
        if (a.code !== Dhcpv6Option.IAADDR || a.length < DHCPV6_IAADDR_LEN) continue;
        seen++;
        if (!this.onLink(payload, a.offset)) offLink++;
      }
    }
    // "If ... there were no addresses in any of the IAs sent by the client, the server MUST NOT
    // send a reply to the client."
    if (seen === 0) return this.unanswered();
    let p = this.header(out, Dhcpv6MessageType.REPLY, payload);
    p =
      offLink === 0
        ? dhcpv6PutStatus(out, p, out.length, Dhcpv6Status.SUCCESS, 'all addresses on link')
        : dhcpv6PutStatus(out, p, out.length, Dhcpv6Status.NOT_ON_LINK, 'address not on link');
    return this.finish(p, Dhcpv6MessageType.REPLY);
  }

  /** Section 18.3.6. */
  private informationRequest(payload: Uint8Array, out: Uint8Array): number {
    let p = this.header(out, Dhcpv6MessageType.REPLY, payload);
    p = this.information(payload, out, p, true);
    return this.finish(p, Dhcpv6MessageType.REPLY);
  }

  // ---- IAs ----

  /** Handles every IA of the message for `action`, appending the IA options of the answer. */
  private ias(payload: Uint8Array, out: Uint8Array, p: number, action: IaAction, now: number): number {
    const duidOff = this.opts.clientIdOffset;
    const duidLen = this.opts.clientIdLength;
    const it = this.top.at(payload, this.msg.optionsOffset, this.msg.optionsLength);
    while (p >= 0 && it.next()) {
      if (it.code !== Dhcpv6Option.IA_NA) {
        // IA_TA and IA_PD are not served.
        const assigning = action === IaAction.OFFER || action === IaAction.BIND;
        p = this.refuseIa(out, p, it, assigning ? refusal(it.code) : Dhcpv6Status.NO_BINDING);
        continue;
      }
      if (it.length < DHCPV6_IA_NA_LEN) continue;
      const iaid = it.iaid;
      const key = leaseKey(payload, duidOff, duidLen, iaid);
      const iaOff = it.iaOptionsOffset;
      const iaLen = it.iaOptionsLength;

      if (action === IaAction.RELEASE || action === IaAction.DECLINE) {
        const lease = this.byKey.get(key);
        if (lease === undefined || lease.state !== 'bound') {
          // "For each IA ... for which the server has no binding information, the server adds an IA
          // option using the IAID from the [message] and includes a Status Code option with the
          // value NoBinding in the IA option" (sections 18.3.7, 18.3.8).
          p = this.emptyIaNa(out, p, iaid, Dhcpv6Status.NO_BINDING, 'no binding');
          continue;
        }
        if (!this.iaListsAddress(payload, iaOff, iaLen, lease.address)) continue;
        this.removeLease(lease);
        if (action === IaAction.DECLINE) {
          // "marks the addresses as 'declined'": someone else uses it; keep it out of the pool.
          lease.key = `declined/${lease.slot}`;
          this.transition(lease, 'declined', now);
          this.insertLease(lease);
        }
        continue;
      }

      const lease = this.assign(key, payload, iaOff, iaLen, now);
      if (lease === undefined) {
        // Sections 18.3.2, 18.3.4: an IA we cannot serve comes back with NoAddrsAvail.
        this.stats.noAddrsAvail++;
        p = this.emptyIaNa(out, p, iaid, Dhcpv6Status.NO_ADDRS_AVAIL, 'no addresses available');
        continue;
      }
      // An Advertise leaves a binding as it is; anything else binds.
      if (action !== IaAction.OFFER) this.transition(lease, 'bound', now);
      else if (lease.state === 'held') this.transition(lease, 'held', now);
      const addrs = this.addrs;
      addrs.length = 0;
      addrs.push({ address: lease.address, preferredLifetime: this.preferredLifetime, validLifetime: this.validLifetime });
      // Addresses the client lists that are not its lease: "the server ... sends back the address
      // with lifetimes of 0" so the client stops using them (section 18.3.4).
      const a = this.inner.at(payload, iaOff, iaLen);
      while (a.next() && addrs.length <= MAX_ECHOED_ADDRESSES) {
        if (a.code !== Dhcpv6Option.IAADDR || a.length < DHCPV6_IAADDR_LEN) continue;
        if (bytesEqual(payload, a.offset, lease.address, 0, IPV6_ADDR_LEN)) continue;
        addrs.push({ address: payload.subarray(a.offset, a.offset + IPV6_ADDR_LEN), preferredLifetime: 0, validLifetime: 0 });
      }
      // Section 21.4: T1 = 0.5 and T2 = 0.8 times the shortest preferred lifetime.
      const t1 = Math.floor(this.preferredLifetime * 0.5);
      const t2 = Math.floor(this.preferredLifetime * 0.8);
      p = dhcpv6PutIaNa(out, p, out.length, { iaid, t1, t2, addresses: addrs });
    }
    return p;
  }

  /** An IA_NA with no address and a status code. */
  private emptyIaNa(out: Uint8Array, p: number, iaid: number, code: number, message: string): number {
    return dhcpv6PutIaNa(out, p, out.length, { iaid, t1: 0, t2: 0, addresses: [], status: { code, message } });
  }

  /** An IA_NA, IA_TA or IA_PD echoed with only a status code in it; other options pass through. */
  private refuseIa(out: Uint8Array, p: number, it: Dhcpv6OptionIterator, status: number): number {
    const fixed = iaFixedLength(it.code);
    if (fixed < 0 || it.length < fixed) return p;
    const start = p;
    p = dhcpv6BeginOption(out, p, out.length, it.code);
    if (p < 0 || p + fixed > out.length) return -1;
    // IAID, then T1 = T2 = 0 for IA_NA and IA_PD (IA_TA has only the IAID).
    copyBytes(out, p, it.bytes, it.offset, 4);
    out.fill(0, p + 4, p + fixed);
    p = dhcpv6PutStatus(out, p + fixed, out.length, status, status === Dhcpv6Status.NO_BINDING ? 'no binding' : 'not served');
    if (status === Dhcpv6Status.NO_ADDRS_AVAIL) this.stats.noAddrsAvail++;
    return dhcpv6EndOption(out, start, p);
  }

  /** True when at least one IA_NA of the Solicit would get an address (nothing is changed). */
  private canAssignAny(payload: Uint8Array, now: number): boolean {
    const it = this.top.at(payload, this.msg.optionsOffset, this.msg.optionsLength);
    while (it.next()) {
      if (it.code !== Dhcpv6Option.IA_NA || it.length < DHCPV6_IA_NA_LEN) continue;
      const key = leaseKey(payload, this.opts.clientIdOffset, this.opts.clientIdLength, it.iaid);
      if (this.byKey.has(key) || this.byKey.size < this.maxLeases || this.evictable(now) !== undefined) return true;
    }
    return false;
  }

  /**
   * The client's lease for `key`, or a new one: the client's own hint when it is in our pool and
   * free, else the hashed slot or the next free one after it. undefined when the table is full.
   */
  private assign(key: string, payload: Uint8Array, iaOff: number, iaLen: number, now: number): Lease | undefined {
    const existing = this.byKey.get(key);
    if (existing !== undefined) return existing;
    if (this.byKey.size >= this.maxLeases) {
      const victim = this.evictable(now);
      if (victim === undefined) return undefined;
      this.removeLease(victim);
    }
    let slot = -1;
    const a = this.inner.at(payload, iaOff, iaLen);
    while (a.next()) {
      if (a.code !== Dhcpv6Option.IAADDR || a.length < DHCPV6_IAADDR_LEN) continue;
      const hint = this.slotOf(payload, a.offset);
      if (hint >= 0 && this.slotFree(hint, now)) {
        slot = hint;
        break;
      }
    }
    if (slot < 0) {
      // At most maxLeases slots are taken, so a free one is at most that many steps away.
      slot = hashKey(key) % POOL_SIZE;
      while (!this.slotFree(slot, now)) slot = (slot + 1) % POOL_SIZE;
    }
    const address = this.prefix.slice();
    // Host number in the low 64 bits; FIRST_HOST + slot < 0x10000 fits in the last two bytes.
    address.fill(0, 8);
    set16(address, 14, FIRST_HOST + slot);
    const lease: Lease = { key, slot, address, state: 'held', expires: now };
    this.transition(lease, 'held', now);
    this.insertLease(lease);
    return lease;
  }

  /** The one place a lease changes state (see LeaseState), and its timer with it. */
  private transition(l: Lease, to: LeaseState, now: number): void {
    l.state = to;
    if (to === 'held') l.expires = Math.max(l.expires, now + OFFER_HOLD_MS);
    else l.expires = now + this.validLifetime * 1000;
  }

  /** A slot is free when no lease holds it, or the one holding it has expired (and goes). */
  private slotFree(slot: number, now: number): boolean {
    const l = this.bySlot.get(slot);
    if (l === undefined) return true;
    if (l.expires > now) return false;
    this.removeLease(l);
    return true;
  }

  /** An expired lease, else the oldest held offer; undefined when every lease is live and bound. */
  private evictable(now: number): Lease | undefined {
    let offer: Lease | undefined;
    for (const l of this.byKey.values()) {
      if (l.expires <= now) return l;
      if (l.state === 'held' && (offer === undefined || l.expires < offer.expires)) offer = l;
    }
    return offer;
  }

  private insertLease(l: Lease): void {
    const old = this.byKey.get(l.key);
    if (old !== undefined) this.removeLease(old);
    this.byKey.set(l.key, l);
    this.bySlot.set(l.slot, l);
  }

  private removeLease(l: Lease): void {
    if (this.byKey.get(l.key) === l) this.byKey.delete(l.key);
    if (this.bySlot.get(l.slot) === l) this.bySlot.delete(l.slot);
  }

  /** The pool slot of the address at b[off], or -1 when it is not one of ours. */
  private slotOf(b: Uint8Array, off: number): number {
    if (!ipv6PrefixEqual(b, off, this.prefix, 0, 64)) return -1;
    if (get32(b, off + 8) !== 0 || b[off + 12] !== 0 || b[off + 13] !== 0) return -1;
    const host = (b[off + 14]! << 8) | b[off + 15]!;
    return host >= FIRST_HOST ? host - FIRST_HOST : -1;
  }

  private iaListsAddress(b: Uint8Array, off: number, len: number, address: Uint8Array): boolean {
    const a = this.inner.at(b, off, len);
    while (a.next()) {
      if (a.code !== Dhcpv6Option.IAADDR || a.length < DHCPV6_IAADDR_LEN) continue;
      if (bytesEqual(b, a.offset, address, 0, IPV6_ADDR_LEN)) return true;
    }
    return false;
  }

  private onLink(b: Uint8Array, off: number): boolean {
    return ipv6PrefixEqual(b, off, this.prefix, 0, this.prefixLength);
  }

  /** IA_NA, IA_TA and IA_PD options at the top level of the message. */
  private countIas(payload: Uint8Array): number {
    let n = 0;
    const it = this.top.at(payload, this.msg.optionsOffset, this.msg.optionsLength);
    while (it.next()) if (iaFixedLength(it.code) >= 0) n++;
    return n;
  }

  // ---- Writing ----

  /** Header with the client's transaction id, our Server Identifier, the client's Identifier. */
  private header(out: Uint8Array, type: number, payload: Uint8Array): number {
    const o = this.opts;
    let p = emitDhcpv6Header(out, 0, type, this.msg.transactionId);
    p = dhcpv6PutDuidLl(out, p, out.length, Dhcpv6Option.SERVERID, this.mac);
    if (o.clientIdOffset >= 0) {
      p = dhcpv6PutBytes(out, p, out.length, Dhcpv6Option.CLIENTID, payload, o.clientIdOffset, o.clientIdLength);
    }
    return p;
  }

  /**
   * DNS servers (23) and the domain list (24, when configured): sent whether or not the ORO asks,
   * which RFC 8415 section 18.3 allows ("The server MAY include options not requested") and some
   * clients need (they omit the ORO). The Information Refresh Time (32) only when asked for.
   */
  private information(payload: Uint8Array, out: Uint8Array, p: number, refresh: boolean): number {
    p = dhcpv6PutAddresses(out, p, out.length, Dhcpv6Option.DNS_SERVERS, this.dns);
    if (this.domains.length > 0) p = dhcpv6PutDomainList(out, p, out.length, this.domains);
    if (refresh && dhcpv6Requests(payload, this.opts, Dhcpv6Option.INFORMATION_REFRESH_TIME)) {
      p = dhcpv6PutU32(out, p, out.length, Dhcpv6Option.INFORMATION_REFRESH_TIME, INFORMATION_REFRESH_TIME_S);
    }
    return p;
  }

  private finish(p: number, type: number): number {
    if (p < 0) {
      this.stats.replyTooLarge++;
      this.log.debug({ type }, 'dhcpv6 answer does not fit the buffer; dropped');
      return 0;
    }
    if (type === Dhcpv6MessageType.ADVERTISE) this.stats.advertiseSent++;
    else this.stats.replySent++;
    return p;
  }

  private invalid(why: string): number {
    this.stats.invalid++;
    this.log.debug({ why }, 'dhcpv6 message dropped');
    return 0;
  }

  private notForUs(): number {
    this.stats.notForUs++;
    return 0;
  }

  private unanswered(): number {
    this.stats.unanswered++;
    return 0;
  }
}

/** Messages a client sends to a server (RFC 8415 section 7.3). */
function isClientMessage(type: number): boolean {
  switch (type) {
    case Dhcpv6MessageType.SOLICIT:
    case Dhcpv6MessageType.REQUEST:
    case Dhcpv6MessageType.CONFIRM:
    case Dhcpv6MessageType.RENEW:
    case Dhcpv6MessageType.REBIND:
    case Dhcpv6MessageType.RELEASE:
    case Dhcpv6MessageType.DECLINE:
    case Dhcpv6MessageType.INFORMATION_REQUEST:
      return true;
    default:
      return false;
  }
}

/** Length of the fixed part of an IA option (IAID, and T1/T2 for IA_NA and IA_PD), or -1. */
function iaFixedLength(code: number): number {
  switch (code) {
    case Dhcpv6Option.IA_NA:
    case Dhcpv6Option.IA_PD:
      return 12;
    case Dhcpv6Option.IA_TA:
      return 4;
    default:
      return -1;
  }
}

/** The status for an IA we will not assign to: NoPrefixAvail for IA_PD, else NoAddrsAvail. */
function refusal(code: number): number {
  return code === Dhcpv6Option.IA_PD ? Dhcpv6Status.NO_PREFIX_AVAIL : Dhcpv6Status.NO_ADDRS_AVAIL;
}

/** DUID and IAID as a map key (control path: a string is fine). */
function leaseKey(b: Uint8Array, off: number, len: number, iaid: number): string {
  let s = '';
  for (let i = 0; i < len; i++) s += b[off + i]!.toString(16).padStart(2, '0');
  return `${s}/${iaid >>> 0}`;
}

/** FNV-1a, 32 bits: a stable spread of keys over the pool. */
function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
