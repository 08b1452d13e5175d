// The DHCPv4 server on the guest link: hands the guest its address, router, DNS and search list,
// with slirp's defaults (server and router 10.0.2.2, DNS 10.0.2.3, leases from 10.0.2.15).
//
// Read before editing: RFC 2131 sections 3.1 (the exchange), 3.4 (DHCPINFORM), 4.1 (how replies are
// addressed; Tables 2 and 3: the reply's fields and options), 4.3 (what a server does with each
// message: 4.3.1 DISCOVER, 4.3.2 REQUEST in its four client states, 4.3.3 DECLINE, 4.3.4 RELEASE,
// 4.3.5 INFORM); RFC 2132 (options; 9.10 maximum message size); RFC 3397 (domain search); RFC 6842
// (a server echoes the client identifier).
//
// handle() takes the UDP payload of a datagram the guest sent to port 67, writes the answer (to
// port 68) into `out` and says where the stack must send it; undefined means no answer. Malformed
// messages are counted and dropped, never thrown. Time is passed in (`now`, milliseconds); nothing
// here owns a timer: expiry is applied lazily at the start of each handle().
//
// Authority. We are the only DHCP server on a virtual link, so we behave as an authoritative one
// (dnsmasq's --dhcp-authoritative): a REQUEST for an address we have no record of (the guest kept
// its lease across a vunet restart) is ACKed when the address is free, NAKed otherwise. RFC 2131
// section 4.3.2's "MUST remain silent" for unknown INIT-REBOOT clients exists so non-communicating
// servers can share a wire; there is no other server here, and silence would leave a rebooted guest
// waiting for its timeouts.
//
// Relays. giaddr is never set on a one-guest virtual link; a message with giaddr != 0 is ignored.
//
// The lease table is control-path state (a handful of messages per lease), keyed by strings: the
// client identifier (option 61) when present, else chaddr (RFC 2131 section 4.2). See `transition`
// for the states of a binding.

import type { Log } from '../iface/log.js';
import { silentLog } from '../iface/log.js';
import { copyBytes, toHex } from '../wire/bytes.js';
import {
  DHCP_FIXED_LEN,
  DHCP_MIN_LEN,
  DhcpError,
  DhcpMessageType,
  DhcpOp,
  DhcpOption,
  DhcpOptions,
  DhcpPacket,
  dhcpPadToMinimum,
  dhcpPutBytes,
  dhcpPutDomainSearch,
  dhcpPutEnd,
  dhcpPutIp,
  dhcpPutIps,
  dhcpPutString,
  dhcpPutU16,
  dhcpPutU32,
  dhcpPutU8,
  emitDhcpHeader,
} from '../wire/dhcpv4.js';
import type { DhcpRepr } from '../wire/dhcpv4.js';
import { formatMac, MAC_LEN, macIsUnicast } from '../wire/ethernet.js';
import { formatIpv4, IPV4_BROADCAST, ipv4InSubnet, ipv4PrefixMask, ipv4SubnetBroadcast } from '../wire/ipv4.js';
import type { StackConfig } from '../iface/config.js';

/** IPv4 (20) and UDP (8) headers around the DHCP message. */
const IP_UDP_HEADERS = 28;
/**
 * What a client accepts without saying otherwise: "A DHCP client must be prepared to receive DHCP
 * messages with an 'options' field of at least length 312 octets" (RFC 2131 section 2), i.e. a
 * 576-byte IP datagram. Option 57 cannot go below it either (RFC 2132 section 9.10).
 */
const MIN_MAX_MESSAGE = 576;
/** How long an OFFER holds its address for the client's REQUEST. */
const OFFER_HOLD_MS = 60_000;
/** How long a DECLINEd address stays out of the pool (RFC 2131 section 4.3.3: "MUST mark the
 *  network address as not available"; a while, not forever: the conflicting host may go away). */
export const DECLINE_QUARANTINE_MS = 10 * 60_000;
const DEFAULT_MAX_LEASES = 256;
const INFINITE_LEASE = 0xffffffff;
/** Option 56 text in a NAK (RFC 2131 Table 3: "Message: SHOULD"). */
const NAK_MESSAGE = 'requested address not available';

/** Where the stack sends a reply (RFC 2131 section 4.1). */
export interface Dhcpv4Reply {
  /** Bytes written at the start of `out` (the UDP payload, source port 67, destination port 68). */
  length: number;
  /** IP destination. */
  dstIp: number;
  /**
   * Ethernet destination: ff:ff:ff:ff:ff:ff, or the client's hardware address (chaddr), found at
   * `out[DHCPV4_CHADDR_OFFSET .. +6]`. For 'client' the stack must not ARP: a client being offered
   * an address does not answer ARP for it yet (RFC 2131 section 4.1).
   */
  dstMac: 'broadcast' | 'client';
}

/** Offset of chaddr in a DHCP message (and so in `out` after a reply). */
export const DHCPV4_CHADDR_OFFSET = 28;

export interface Dhcpv4ServerOptions {
  /** Bound of the lease table, bindings of every state (default 256). */
  maxLeases?: number;
  logger?: Log;
}

/** Counters, plain fields (read them, never write). */
export class Dhcpv4ServerStats {
  /** Every call of handle(). */
  received = 0;
  /** Truncated, bad cookie, bad options, not BOOTREQUEST/Ethernet, option 53 missing or invalid. */
  malformed = 0;
  /** Valid but not for us to answer: giaddr set, REQUEST/DECLINE/RELEASE naming another server,
   *  inconsistent fields, a RELEASE/DECLINE for an address the client does not hold. */
  ignored = 0;
  offers = 0;
  acks = 0;
  naks = 0;
  /** RELEASE / DECLINE / INFORM messages addressed to us. */
  releases = 0;
  declines = 0;
  informs = 0;
  /** DISCOVERs left unanswered for want of an address (or of room in the lease table). */
  poolExhausted = 0;
  /** Replies whose essential options did not fit (cannot happen with a buffer of 548+ bytes). */
  replyTooLarge = 0;
}

/** One lease as leases() reports it. */
export interface Dhcpv4LeaseInfo {
  /** chaddr, "52:54:00:12:34:56". */
  mac: string;
  ip: number;
  /** ms (the clock handle() is given): end of the lease, or of the offer's hold. */
  expires: number;
  hostname?: string;
  state: 'offered' | 'bound';
}

type BindingState = 'offered' | 'bound' | 'free';

interface Binding {
  key: string;
  mac: string;
  /** The address held (offered, bound) or remembered (free). */
  ip: number;
  state: BindingState;
  /** offered: end of the hold; bound: end of the lease; free: when it became free (eviction age). */
  expires: number;
  hostname: string | undefined;
}

/** Options we always supply, in the order sent when nothing asks otherwise. The MTU is among them
 *  (as passt does): the link is ours, a large MTU is what makes the guest fast, and clients that
 *  do not list option 26 (busybox udhcpc by default) would otherwise stay at 1500. */
const ESSENTIAL = [DhcpOption.SUBNET_MASK, DhcpOption.ROUTER, DhcpOption.DNS_SERVERS, DhcpOption.BROADCAST_ADDRESS, DhcpOption.INTERFACE_MTU];
/** Which options go first when a reply is too big for the client (least important first). */
const DROP_ORDER = [
  DhcpOption.DOMAIN_SEARCH,
  DhcpOption.DOMAIN_NAME,
  DhcpOption.INTERFACE_MTU,
  DhcpOption.BROADCAST_ADDRESS,
  DhcpOption.MESSAGE,
  DhcpOption.REBINDING_TIME,
  DhcpOption.RENEWAL_TIME,
];

const ReplyKind = {
  OFFER: 0,
  ACK: 1,
  /** ACK to an INFORM: no yiaddr, no lease times (RFC 2131 section 3.4, Table 3). */
  INFORM_ACK: 2,
  NAK: 3,
} as const;
type ReplyKind = (typeof ReplyKind)[keyof typeof ReplyKind];

export class Dhcpv4Server {
  readonly stats = new Dhcpv4ServerStats();

  private readonly log: Log;
  private readonly maxLeases: number;
  private readonly serverId: number;
  private readonly mask: number;
  private readonly subnetBroadcast: number;
  private readonly leaseSeconds: number;
  private readonly leaseMs: number;
  /** Configuration options, encoded once: code -> option bytes (code, length, value; option 119
   *  may be several options in a row, RFC 3396). */
  private readonly blobs = new Map<number, Uint8Array>();

  private readonly clients = new Map<string, Binding>();
  /** Address -> the binding holding or remembering it. */
  private readonly byIp = new Map<number, Binding>();
  /** Declined address -> when it may be leased again (ms). */
  private readonly quarantine = new Map<number, number>();

  // Scratch, reused per message.
  private readonly msg = new DhcpPacket();
  private readonly opts = new DhcpOptions();
  private readonly chaddr = new Uint8Array(MAC_LEN);
  private readonly repr: DhcpRepr = { op: DhcpOp.BOOTREPLY, xid: 0, secs: 0, flags: 0, ciaddr: 0, yiaddr: 0, siaddr: 0, giaddr: 0, chaddr: this.chaddr };
  private readonly plan: number[] = [];

  constructor(
    private readonly config: StackConfig,
    opts: Dhcpv4ServerOptions = {},
  ) {
    this.log = opts.logger ?? silentLog;
    this.maxLeases = Math.max(1, Math.floor(opts.maxLeases ?? DEFAULT_MAX_LEASES));
    const v4 = config.ipv4;
    this.serverId = v4.gateway;
    this.mask = ipv4PrefixMask(v4.prefixLength);
    this.subnetBroadcast = ipv4SubnetBroadcast(v4.network, v4.prefixLength);
    this.leaseSeconds = Math.min(Math.max(0, Math.floor(config.leaseTime)), INFINITE_LEASE);
    this.leaseMs = this.leaseSeconds === INFINITE_LEASE ? Infinity : this.leaseSeconds * 1000;
    this.encodeConfigOptions();
  }

  /**
   * Handles one message (the UDP payload of a datagram to port 67 from `srcIp`). Writes the reply
   * at the start of `out` (which must not overlap `payload`; 576 bytes or more, up to
   * config.mtu - 28 are used) and says where to send it; undefined when no reply is due.
   */
  handle(payload: Uint8Array, srcIp: number, out: Uint8Array, now: number): Dhcpv4Reply | undefined {
    this.stats.received++;
    const msg = this.msg.at(payload, 0, payload.length);
    const err = msg.problem();
    if (err !== DhcpError.OK) return this.malformed(err === DhcpError.TRUNCATED ? 'truncated' : err === DhcpError.COOKIE ? 'bad magic cookie' : 'bad options');
    if (msg.op !== DhcpOp.BOOTREQUEST) return this.malformed('not a BOOTREQUEST');
    if (!msg.hasEthernetChaddr()) return this.malformed('not an Ethernet chaddr');
    const o = this.opts;
    if (!msg.parseOptions(o)) return this.malformed('bad options');
    const type = o.messageType;
    if (
      type !== DhcpMessageType.DISCOVER &&
      type !== DhcpMessageType.REQUEST &&
      type !== DhcpMessageType.DECLINE &&
      type !== DhcpMessageType.RELEASE &&
      type !== DhcpMessageType.INFORM
    ) {
      return this.malformed(type < 0 ? 'no message type' : `message type ${type} is not a client's`);
    }
    if (msg.giaddr !== 0) return this.ignore('giaddr set: relays are not expected on this link', msg);
    if (!macIsUnicast(payload, msg.chaddrOffset)) return this.ignore('chaddr is not a unicast MAC', msg);
    copyBytes(this.chaddr, 0, payload, msg.chaddrOffset, MAC_LEN);

    this.expire(now);
    const key = o.clientIdOffset >= 0 ? 'id:' + toHex(payload, o.clientIdOffset, o.clientIdLength) : 'hw:' + toHex(this.chaddr);
    switch (type) {
      case DhcpMessageType.DISCOVER:
        return this.discover(key, out, now);
      case DhcpMessageType.REQUEST:
        return this.request(key, out, now);
      case DhcpMessageType.DECLINE:
        return this.decline(key, now);
      case DhcpMessageType.RELEASE:
        return this.release(key, now);
      default:
        return this.inform(srcIp, out);
    }
  }

  /** Bindings holding an address (offered or bound), for status and logs. */
  leases(): readonly Dhcpv4LeaseInfo[] {
    const list: Dhcpv4LeaseInfo[] = [];
    for (const b of this.clients.values()) {
      if (b.state === 'free') continue;
      const info: Dhcpv4LeaseInfo = { mac: b.mac, ip: b.ip, expires: b.expires, state: b.state };
      if (b.hostname !== undefined) info.hostname = b.hostname;
      list.push(info);
    }
    return list;
  }

  // ---- Messages ----

  /** RFC 2131 section 4.3.1: choose an address, hold it, OFFER it. */
  private discover(key: string, out: Uint8Array, now: number): Dhcpv4Reply | undefined {
    let b = this.clients.get(key);
    let ip = -1;
    // "The client's current address as recorded in the client's current binding, ELSE the client's
    // previous address as recorded in the client's (now expired or released) binding, if that
    // address is in the server's pool of available addresses and not already allocated, ELSE the
    // address requested in the 'Requested IP Address' option, if that address is valid and not
    // already allocated, ELSE a new address allocated from the server's pool".
    if (b !== undefined && this.assignable(b.ip, b)) ip = b.ip;
    else if (this.opts.requestedIp >= 0 && this.assignable(this.opts.requestedIp, b)) ip = this.opts.requestedIp;
    else ip = this.freshAddress();
    if (ip < 0) {
      this.stats.poolExhausted++;
      this.log.warn({ mac: formatMac(this.chaddr), pool: this.config.ipv4.dhcpCount }, 'dhcp: address pool exhausted, no offer');
      return undefined;
    }
    if (b === undefined) {
      b = this.newBinding(key, now);
      if (b === undefined) {
        this.stats.poolExhausted++;
        this.log.warn({ mac: formatMac(this.chaddr), leases: this.clients.size }, 'dhcp: lease table full, no offer');
        return undefined;
      }
    }
    // A client with a current lease that rediscovers keeps it bound; anything else is held.
    const keep = b.state === 'bound' && b.ip === ip;
    this.noteClient(b);
    this.assign(b, ip);
    if (!keep) this.transition(b, 'offered', now);
    const reply = this.reply(out, ReplyKind.OFFER, ip);
    if (reply !== undefined) {
      this.stats.offers++;
      this.log.debug({ mac: b.mac, ip: formatIpv4(ip), xid: this.msg.xid }, 'dhcp: offer');
    }
    return reply;
  }

  /**
   * RFC 2131 section 4.3.2. The client's state tells itself apart:
   *   SELECTING    server id set, requested IP set, ciaddr 0
   *   INIT-REBOOT  no server id, requested IP set, ciaddr 0
   *   RENEWING     no server id, no requested IP, ciaddr set (unicast)
   *   REBINDING    as RENEWING, but broadcast
   * All come down to one question: may this client have address `want`? Yes → ACK; no → NAK.
   */
  private request(key: string, out: Uint8Array, now: number): Dhcpv4Reply | undefined {
    const o = this.opts;
    const msg = this.msg;
    let b = this.clients.get(key);
    let want: number;
    if (o.serverId >= 0) {
      if (o.serverId !== this.serverId) {
        // "Servers not selected by the DHCPREQUEST message use the message as notification that
        // the client has declined that server's offer."
        if (b !== undefined && b.state === 'offered') this.transition(b, 'free', now);
        return this.ignore('REQUEST for another server', msg);
      }
      want = o.requestedIp >= 0 ? o.requestedIp : msg.ciaddr;
    } else if (o.requestedIp >= 0) {
      want = o.requestedIp;
    } else {
      want = msg.ciaddr;
    }
    if (want <= 0) return this.ignore('REQUEST names no address', msg);

    // NAK: "if the 'requested IP address' is incorrect, or is on the wrong network".
    let why: string | undefined;
    if (!ipv4InSubnet(want, this.config.ipv4.network, this.config.ipv4.prefixLength)) why = 'wrong network';
    else if (b !== undefined && b.state !== 'free' && b.ip !== want) why = `client holds ${formatIpv4(b.ip)}`;
    else if (!this.assignable(want, b)) why = 'address not available';
    if (why !== undefined) {
      const reply = this.reply(out, ReplyKind.NAK, 0);
      if (reply !== undefined) {
        this.stats.naks++;
        this.log.info({ mac: formatMac(this.chaddr), ip: formatIpv4(want), reason: why }, 'dhcp: nak');
      }
      return reply;
    }

    if (b === undefined) {
      b = this.newBinding(key, now);
      if (b === undefined) {
        this.stats.poolExhausted++;
        this.log.warn({ mac: formatMac(this.chaddr), leases: this.clients.size }, 'dhcp: lease table full, request ignored');
        return undefined;
      }
    }
    const renewal = b.state === 'bound' && b.ip === want;
    this.noteClient(b);
    this.assign(b, want);
    this.transition(b, 'bound', now);
    const reply = this.reply(out, ReplyKind.ACK, want);
    if (reply !== undefined) {
      this.stats.acks++;
      // One line per lease bound or renewed, with its length in seconds (`expires` is on the
      // server's own clock, which means nothing to a reader).
      const fields = { mac: b.mac, ip: formatIpv4(want), hostname: b.hostname, leaseSeconds: Math.round((b.expires - now) / 1000) };
      this.log.info(fields, renewal ? 'dhcp: lease renewed' : 'dhcp: lease bound');
    }
    return reply;
  }

  /** RFC 2131 section 4.3.3: the address is in use by someone else; keep it out of the pool. */
  private decline(key: string, now: number): undefined {
    const o = this.opts;
    if (o.serverId >= 0 && o.serverId !== this.serverId) return this.ignore('DECLINE for another server', this.msg);
    this.stats.declines++;
    const b = this.clients.get(key);
    const ip = o.requestedIp;
    if (b === undefined || b.state === 'free' || ip < 0 || b.ip !== ip) return this.ignore('DECLINE for an address the client does not hold', this.msg);
    this.quarantine.set(ip, now + DECLINE_QUARANTINE_MS);
    this.forget(b);
    // "SHOULD notify the local system administrator of a possible configuration problem".
    this.log.warn(
      { mac: b.mac, ip: formatIpv4(ip), minutes: DECLINE_QUARANTINE_MS / 60_000 },
      'dhcp: guest declined an address (in use on the link?), quarantined',
    );
    return undefined;
  }

  /** RFC 2131 section 4.3.4: free the address, remember the binding for the client's return. */
  private release(key: string, now: number): undefined {
    const o = this.opts;
    if (o.serverId >= 0 && o.serverId !== this.serverId) return this.ignore('RELEASE for another server', this.msg);
    this.stats.releases++;
    const b = this.clients.get(key);
    if (b === undefined || b.state === 'free' || b.ip !== this.msg.ciaddr) return this.ignore('RELEASE for an address the client does not hold', this.msg);
    this.transition(b, 'free', now);
    this.log.info({ mac: b.mac, ip: formatIpv4(b.ip) }, 'dhcp: lease released');
    return undefined;
  }

  /** RFC 2131 section 4.3.5: configuration only, to a client that has its address. */
  private inform(srcIp: number, out: Uint8Array): Dhcpv4Reply | undefined {
    this.stats.informs++;
    const addr = this.msg.ciaddr !== 0 ? this.msg.ciaddr : srcIp >>> 0;
    if (addr === 0 || !ipv4InSubnet(addr, this.config.ipv4.network, this.config.ipv4.prefixLength)) {
      return this.ignore('INFORM from an address not on our network', this.msg);
    }
    const reply = this.reply(out, ReplyKind.INFORM_ACK, 0, addr);
    if (reply !== undefined) {
      this.stats.acks++;
      this.log.debug({ mac: formatMac(this.chaddr), ip: formatIpv4(addr) }, 'dhcp: inform answered');
    }
    return reply;
  }

  // ---- Bindings ----

  /**
   * The one place a binding changes state:
   *
   *   (none) --DISCOVER--> offered --REQUEST (ours, same address)--> bound
   *   offered --hold ends / REQUEST for another server--> free
   *   bound --lease ends / RELEASE--> free
   *   free --DISCOVER--> offered, --REQUEST--> bound (same address if nobody took it: sticky)
   *   bound --DISCOVER--> bound (the OFFER repeats the current lease)
   *
   * Leaving the table (`forget`): DECLINE (the address goes to quarantine), eviction when the table
   * is full (oldest free first), or another client taking the remembered address of a free binding
   * once the pool has no never-used address left.
   */
  private transition(b: Binding, to: BindingState, now: number): void {
    b.state = to;
    if (to === 'offered') b.expires = now + OFFER_HOLD_MS;
    else if (to === 'bound') b.expires = now + this.leaseMs;
    else b.expires = Math.min(b.expires, now);
  }

  /** Lazy timers: ends holds and leases due by `now`, and quarantines. */
  private expire(now: number): void {
    for (const b of this.clients.values()) {
      if (b.state !== 'free' && now >= b.expires) {
        if (b.state === 'bound') this.log.info({ mac: b.mac, ip: formatIpv4(b.ip) }, 'dhcp: lease expired');
        this.transition(b, 'free', b.expires);
      }
    }
    for (const [ip, until] of this.quarantine) if (now >= until) this.quarantine.delete(ip);
  }

  /** A pool address (never ours, never the network or broadcast address). */
  private inPool(ip: number): boolean {
    const v4 = this.config.ipv4;
    const off = ip - v4.dhcpFirst;
    return (
      off >= 0 &&
      off < v4.dhcpCount &&
      (ip & this.mask) >>> 0 === v4.network &&
      ip !== v4.network &&
      ip !== this.subnetBroadcast &&
      ip !== v4.gateway &&
      ip !== v4.dns
    );
  }

  /** `ip` may go to the client whose binding is `b` (undefined: a client we do not know). */
  private assignable(ip: number, b: Binding | undefined): boolean {
    if (ip < 0 || !this.inPool(ip) || this.quarantine.has(ip)) return false;
    const owner = this.byIp.get(ip);
    return owner === undefined || owner === b || owner.state === 'free';
  }

  /** A never-used pool address, else the one remembered longest by a free binding; -1 if none. */
  private freshAddress(): number {
    const v4 = this.config.ipv4;
    for (let i = 0; i < v4.dhcpCount; i++) {
      const ip = (v4.dhcpFirst + i) >>> 0;
      if (this.inPool(ip) && !this.byIp.has(ip) && !this.quarantine.has(ip)) return ip;
    }
    let oldest: Binding | undefined;
    for (const b of this.byIp.values()) {
      if (b.state === 'free' && !this.quarantine.has(b.ip) && (oldest === undefined || b.expires < oldest.expires)) oldest = b;
    }
    return oldest !== undefined ? oldest.ip : -1;
  }

  /** Gives `ip` to `b`, taking it from a free binding that remembered it. */
  private assign(b: Binding, ip: number): void {
    if (b.ip === ip) return;
    const owner = this.byIp.get(ip);
    if (owner !== undefined && owner !== b) this.forget(owner);
    if (b.ip >= 0 && this.byIp.get(b.ip) === b) this.byIp.delete(b.ip);
    b.ip = ip;
    this.byIp.set(ip, b);
  }

  /** A new binding (state free, no address), making room by evicting the oldest free binding, else
   *  the oldest offer; undefined when every entry is a bound lease. */
  private newBinding(key: string, now: number): Binding | undefined {
    if (this.clients.size >= this.maxLeases) {
      let victim: Binding | undefined;
      for (const b of this.clients.values()) {
        if (b.state === 'bound') continue;
        if (victim === undefined || rank(b) < rank(victim) || (rank(b) === rank(victim) && b.expires < victim.expires)) victim = b;
      }
      if (victim === undefined) return undefined;
      this.log.debug({ mac: victim.mac, ip: formatIpv4(victim.ip), state: victim.state }, 'dhcp: lease table full, evicted');
      this.forget(victim);
    }
    const b: Binding = { key, mac: '', ip: -1, state: 'free', expires: now, hostname: undefined };
    this.clients.set(key, b);
    return b;
  }

  private forget(b: Binding): void {
    this.clients.delete(b.key);
    if (b.ip >= 0 && this.byIp.get(b.ip) === b) this.byIp.delete(b.ip);
    b.ip = -1;
  }

  /** Records the client's MAC and host name (option 12) from the current message. */
  private noteClient(b: Binding): void {
    b.mac = formatMac(this.chaddr);
    const o = this.opts;
    if (o.hostnameOffset >= 0) b.hostname = printable(this.msg.bytes, o.hostnameOffset, o.hostnameLength);
  }

  // ---- Replies ----

  /**
   * Writes a reply to the current message (RFC 2131 Tables 2 and 3) and addresses it (section 4.1).
   * Options: 53, 54, 61 echoed (RFC 6842), lease times (OFFER/ACK), then what the parameter request
   * list asks for in its order, then the essentials it did not ask for. What does not fit in the
   * client's maximum message size is dropped, least important first (DROP_ORDER).
   */
  private reply(out: Uint8Array, kind: ReplyKind, yiaddr: number, informAddr = 0): Dhcpv4Reply | undefined {
    const msg = this.msg;
    const o = this.opts;
    const clientMax = o.maxMessageSize >= MIN_MAX_MESSAGE ? o.maxMessageSize : MIN_MAX_MESSAGE;
    const limit = Math.min(out.length, this.config.mtu - IP_UDP_HEADERS, clientMax - IP_UDP_HEADERS);

    // Plan the options after 53 / 54 / 61, then trim to the limit.
    const plan = this.plan;
    plan.length = 0;
    if (kind === ReplyKind.NAK) {
      plan.push(DhcpOption.MESSAGE);
    } else {
      if (kind !== ReplyKind.INFORM_ACK) plan.push(DhcpOption.LEASE_TIME, DhcpOption.RENEWAL_TIME, DhcpOption.REBINDING_TIME);
      for (let i = 0; i < o.paramRequestLength; i++) {
        const code = msg.bytes[o.paramRequestOffset + i]!;
        if (this.blobs.has(code) && !plan.includes(code)) plan.push(code);
      }
      for (const code of ESSENTIAL) if (this.blobs.has(code) && !plan.includes(code)) plan.push(code);
    }
    const clientIdLen = o.clientIdOffset >= 0 ? 2 + o.clientIdLength : 0;
    let size = DHCP_FIXED_LEN + 3 + 6 + clientIdLen + 1;
    for (const code of plan) size += this.optionSize(code);
    for (let i = 0; i < DROP_ORDER.length && size > limit; i++) {
      const at = plan.indexOf(DROP_ORDER[i]!);
      if (at < 0) continue;
      size -= this.optionSize(plan[at]!);
      plan.splice(at, 1);
    }
    if (size > limit) {
      this.stats.replyTooLarge++;
      this.log.warn({ mac: formatMac(this.chaddr), size, limit }, 'dhcp: reply does not fit, not sent');
      return undefined;
    }

    // Table 2: hops, secs, siaddr 0; xid, flags, giaddr (0), chaddr from the client; ciaddr echoed
    // in an ACK (a RENEWING client's own address), 0 in OFFER and NAK.
    const r = this.repr;
    r.xid = msg.xid;
    r.flags = msg.flags;
    r.ciaddr = kind === ReplyKind.ACK || kind === ReplyKind.INFORM_ACK ? msg.ciaddr : 0;
    r.yiaddr = yiaddr;
    let p = emitDhcpHeader(out, 0, r);
    const type = kind === ReplyKind.OFFER ? DhcpMessageType.OFFER : kind === ReplyKind.NAK ? DhcpMessageType.NAK : DhcpMessageType.ACK;
    p = dhcpPutU8(out, p, limit, DhcpOption.MESSAGE_TYPE, type);
    p = dhcpPutIp(out, p, limit, DhcpOption.SERVER_ID, this.serverId);
    if (clientIdLen > 0) p = dhcpPutBytes(out, p, limit, DhcpOption.CLIENT_ID, msg.bytes, o.clientIdOffset, o.clientIdLength);
    for (const code of plan) p = this.putOption(out, p, limit, code);
    p = dhcpPutEnd(out, p, limit);
    // BOOTP's 300-byte minimum, for the clients that still want it (RFC 1542 section 2.1).
    if (limit >= DHCP_MIN_LEN) p = dhcpPadToMinimum(out, 0, p, limit);
    if (p < 0) {
      // The sizes above are exact; this is a bug, not an input.
      this.stats.replyTooLarge++;
      this.log.warn({ size, limit }, 'dhcp: reply did not fit as planned');
      return undefined;
    }

    // Section 4.1, giaddr being 0: NAK broadcast; ciaddr set → unicast to it; broadcast bit →
    // broadcast; else unicast to yiaddr at chaddr.
    if (kind === ReplyKind.NAK) return { length: p, dstIp: IPV4_BROADCAST, dstMac: 'broadcast' };
    if (kind === ReplyKind.INFORM_ACK) return { length: p, dstIp: informAddr, dstMac: 'client' };
    if (msg.ciaddr !== 0) return { length: p, dstIp: msg.ciaddr, dstMac: 'client' };
    if (msg.broadcast) return { length: p, dstIp: IPV4_BROADCAST, dstMac: 'broadcast' };
    return { length: p, dstIp: yiaddr, dstMac: 'client' };
  }

  private optionSize(code: number): number {
    switch (code) {
      case DhcpOption.LEASE_TIME:
      case DhcpOption.RENEWAL_TIME:
      case DhcpOption.REBINDING_TIME:
        return 6;
      case DhcpOption.MESSAGE:
        return 2 + NAK_MESSAGE.length;
      default:
        return this.blobs.get(code)?.length ?? 0;
    }
  }

  private putOption(out: Uint8Array, p: number, end: number, code: number): number {
    switch (code) {
      case DhcpOption.LEASE_TIME:
        return dhcpPutU32(out, p, end, code, this.leaseSeconds);
      // T1 0.5 and T2 0.875 times the lease (RFC 2131 section 4.4.5).
      case DhcpOption.RENEWAL_TIME:
        return dhcpPutU32(out, p, end, code, Math.floor(this.leaseSeconds / 2));
      case DhcpOption.REBINDING_TIME:
        return dhcpPutU32(out, p, end, code, Math.floor((this.leaseSeconds * 7) / 8));
      case DhcpOption.MESSAGE:
        return dhcpPutString(out, p, end, code, NAK_MESSAGE);
      default: {
        const blob = this.blobs.get(code);
        if (blob === undefined || p < 0 || p + blob.length > Math.min(end, out.length)) return -1;
        out.set(blob, p);
        return p + blob.length;
      }
    }
  }

  /** Encodes the options that only depend on the configuration. */
  private encodeConfigOptions(): void {
    const c = this.config;
    const v4 = c.ipv4;
    const put = (code: number, write: (buf: Uint8Array, end: number) => number): void => {
      const buf = new Uint8Array(4096);
      const n = write(buf, buf.length);
      if (n > 0) this.blobs.set(code, buf.slice(0, n));
      else this.log.warn({ option: code }, 'dhcp: option cannot be encoded from the configuration, not sent');
    };
    put(DhcpOption.SUBNET_MASK, (b, e) => dhcpPutIp(b, 0, e, DhcpOption.SUBNET_MASK, this.mask));
    put(DhcpOption.ROUTER, (b, e) => dhcpPutIps(b, 0, e, DhcpOption.ROUTER, [v4.gateway]));
    put(DhcpOption.DNS_SERVERS, (b, e) => dhcpPutIps(b, 0, e, DhcpOption.DNS_SERVERS, [v4.dns]));
    put(DhcpOption.INTERFACE_MTU, (b, e) => dhcpPutU16(b, 0, e, DhcpOption.INTERFACE_MTU, Math.min(c.mtu, 0xffff)));
    put(DhcpOption.BROADCAST_ADDRESS, (b, e) => dhcpPutIp(b, 0, e, DhcpOption.BROADCAST_ADDRESS, this.subnetBroadcast));
    const domains = c.searchDomains.map((d) => (d.endsWith('.') ? d.slice(0, -1) : d)).filter((d) => d.length > 0);
    const first = domains[0];
    if (first !== undefined) {
      put(DhcpOption.DOMAIN_NAME, (b, e) => dhcpPutString(b, 0, e, DhcpOption.DOMAIN_NAME, first));
      const room = domains.reduce((n, d) => n + d.length + 2, 0);
      const buf = new Uint8Array(room + 2 * Math.ceil(room / 255) + 2);
      const n = dhcpPutDomainSearch(buf, 0, buf.length, domains);
      if (n > 0) this.blobs.set(DhcpOption.DOMAIN_SEARCH, buf.slice(0, n));
      else this.log.warn({ domains }, 'dhcp: search domains cannot be encoded (option 119), not sent');
    }
  }

  private malformed(reason: string): undefined {
    this.stats.malformed++;
    this.log.debug({ reason }, 'dhcp: malformed message dropped');
    return undefined;
  }

  private ignore(reason: string, msg: DhcpPacket): undefined {
    this.stats.ignored++;
    this.log.debug({ reason, xid: msg.xid }, 'dhcp: message ignored');
    return undefined;
  }
}

/** Eviction order: free bindings, then offers (bound leases are never evicted). */
function rank(b: Binding): number {
  return b.state === 'free' ? 0 : 1;
}

/** A client-supplied string made safe for logs: printable ASCII, at most 63 characters. */
function printable(bytes: Uint8Array, off: number, len: number): string {
  let s = '';
  for (let i = 0; i < Math.min(len, 63); i++) {
    const c = bytes[off + i]!;
    s += c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : '?';
  }
  return s;
}
