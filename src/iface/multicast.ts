// Multicast group management on the guest link, one machine for both families: IGMP (RFC 1112,
// RFC 2236, RFC 3376) and MLD (RFC 2710, RFC 3810) differ in their wire formats, not in their
// timers. Read RFC 3376 §5 (host reports), §6 (router state), §7 (older versions) and §8 (the
// timer defaults), and RFC 3810 §6, §7, §8 and §9 (the same for MLD) before editing. Message
// validation (TTL / hop limit 1, router alert, link-local source for MLD) is the layers' job,
// done as gVisor's igmp.go isPacketValid and ipv6/icmp.go isMLDValid do.
//
// Two roles, each fed messages and `now`, with no timers of its own (pollAt()/poll()):
// - MembershipReporter: vunet as a member of its own groups (all-routers and the like). Reports at
//   link-up; answers queries after the random delays of RFC 3376 §5.2 / RFC 2236 §3, in the
//   version the querier speaks (host compatibility mode, RFC 3376 §7.2.1, RFC 3810 §8.2.1).
// - Querier: vunet as the multicast router of the guest link: general queries (startup ones ¼
//   interval apart, then every Query Interval), querier election (RFC 3376 §6.6.2), and the guest's
//   memberships learnt from its reports and expired after the Group Membership Interval, with
//   last-member queries after a leave. State is kept per group, not per source: a group is joined
//   when any report says the guest listens to it (EXCLUDE mode, or INCLUDE with sources), left on a
//   leave / done / TO_IN({}) confirmed by silence. Source lists are not tracked (BLOCK changes
//   nothing), so filtering by membership is at the group level.
//
// Groups are byte arrays (4 bytes for IPv4, 16 for IPv6), compared in place; tables are bounded.
// A "level" names the protocol generation both families share: 1 = IGMPv1, 2 = IGMPv2 or MLDv1,
// 3 = IGMPv3 or MLDv2.
import { IgmpRecordType, bytesEqual } from '../wire/index.js';

export type McastLevel = 1 | 2 | 3;

// RFC 3376 §8 / RFC 3810 §9 defaults, ms.
export const ROBUSTNESS = 2;
export const QUERY_INTERVAL = 125_000;
export const QUERY_RESPONSE_INTERVAL = 10_000;
/** Robustness × Query Interval + Query Response Interval (§8.4). */
export const GROUP_MEMBERSHIP_INTERVAL = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL;
/** Robustness × Query Interval + ½ Query Response Interval (§8.5). */
export const OTHER_QUERIER_PRESENT_INTERVAL = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL / 2;
/** ¼ Query Interval (§8.6), Robustness times (§8.7). */
export const STARTUP_QUERY_INTERVAL = QUERY_INTERVAL / 4;
export const STARTUP_QUERY_COUNT = ROBUSTNESS;
/** §8.8, §8.9: queries after a leave, 1 s apart, Robustness of them. */
export const LAST_MEMBER_QUERY_INTERVAL = 1_000;
export const LAST_MEMBER_QUERY_COUNT = ROBUSTNESS;
export const LAST_MEMBER_QUERY_TIME = LAST_MEMBER_QUERY_COUNT * LAST_MEMBER_QUERY_INTERVAL;
/** §8.13: an IGMPv1 host was heard for the group this recently (router compatibility). */
export const OLDER_HOST_PRESENT_INTERVAL = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL;
/** §8.12: an older querier was heard this recently (host compatibility mode). */
export const OLDER_QUERIER_PRESENT_TIMEOUT = ROBUSTNESS * QUERY_INTERVAL + QUERY_RESPONSE_INTERVAL;
/** §8.11 (v3: 1 s), RFC 2236 §8.10 (v2: 10 s): between unsolicited reports. */
export const UNSOLICITED_REPORT_INTERVAL_V3 = 1_000;
export const UNSOLICITED_REPORT_INTERVAL_V2 = 10_000;
/** RFC 2236 §4: an IGMPv1 query means "answer within 10 s". */
export const V1_MAX_RESPONSE = 10_000;
/** Groups learnt from the guest at most. */
export const MAX_GUEST_GROUPS = 256;

/** Group record types of IGMPv3 and MLDv2 (the same numbers in both, RFC 3810 §5.2.12). */
const RecordType = IgmpRecordType;

/** What a group record means for group-level state (see the file comment). */
export function recordEffect(recordType: number, sourceCount: number): 'join' | 'leave' | 'none' {
  switch (recordType) {
    case RecordType.MODE_IS_EXCLUDE:
    case RecordType.CHANGE_TO_EXCLUDE:
      return 'join';
    case RecordType.MODE_IS_INCLUDE:
    case RecordType.ALLOW_NEW_SOURCES:
      return sourceCount > 0 ? 'join' : 'none';
    case RecordType.CHANGE_TO_INCLUDE:
      // TO_IN({}) is a leave (RFC 3376 §6.4.2: Q(G) follows); TO_IN(B) keeps listening to B.
      return sourceCount > 0 ? 'join' : 'leave';
    default:
      // BLOCK changes source lists only; unknown record types are ignored (RFC 3376 §4.2.12).
      return 'none';
  }
}

/** Counts and logs an event (the layer prefixes `igmp.` or `mld.` and writes the debug log). */
export type McastEvent = (name: string, detail?: object) => void;

// ---------------------------------------------------------------------------------------------
// Host side: our own memberships.

export interface ReporterPort {
  /** The groups to report now (all-systems / all-nodes are never reported). */
  groups(): Uint8Array[];
  /** A level-3 report (IGMPv3, MLDv2) with one record of `recordType`, no sources, per group. */
  sendReport3(groups: readonly Uint8Array[], recordType: number): void;
  /** A level-1 or level-2 report for one group (IGMPv1/v2 report, MLDv1 report). */
  sendReportOld(group: Uint8Array, level: 1 | 2): void;
}

interface PendingResponse {
  group: Uint8Array;
  at: number;
}

/**
 * Reports for our own groups. State: host compatibility mode (the querier's version, from the
 * last older query heard, RFC 3376 §7.2.1), unsolicited reports left after link-up, one pending
 * answer to a general query (level 3) and per-group pending answers.
 */
export class MembershipReporter {
  private v1QuerierUntil = -Infinity;
  private v2QuerierUntil = -Infinity;
  private unsolicitedLeft = 0;
  private nextUnsolicited = Infinity;
  private generalAt = Infinity;
  private readonly pending: PendingResponse[] = [];

  constructor(
    private readonly port: ReporterPort,
    private readonly random: () => number,
  ) {}

  /** Host compatibility mode at `now`: the oldest querier version heard recently. */
  level(now: number): McastLevel {
    if (this.v1QuerierUntil > now) return 1;
    if (this.v2QuerierUntil > now) return 2;
    return 3;
  }

  /**
   * The link came up (or our groups changed): RFC 3376 §5.1 / RFC 3810 §6.1 — a state-change
   * report at once, repeated Robustness − 1 times at random intervals up to the Unsolicited Report
   * Interval. `delay` postpones the first one.
   */
  start(now: number, delay = 0): void {
    this.unsolicitedLeft = ROBUSTNESS;
    this.nextUnsolicited = now + delay;
    this.generalAt = Infinity;
    this.pending.length = 0;
  }

  /**
   * A valid query of `level`: for `group` (bytes at `off`) or general (group undefined), asking for
   * answers within `maxRespMs`. RFC 3376 §5.2 (level 3) and RFC 2236 §3 / RFC 2710 §4 (older).
   */
  queryHeard(now: number, level: McastLevel, group: Uint8Array | undefined, off: number, maxRespMs: number): void {
    const before = this.level(now);
    if (level === 1) this.v1QuerierUntil = now + OLDER_QUERIER_PRESENT_TIMEOUT;
    else if (level === 2) this.v2QuerierUntil = now + OLDER_QUERIER_PRESENT_TIMEOUT;
    const mode = this.level(now);
    if (mode < before) {
      // §7.2.1: entering an older mode cancels pending responses and retransmissions.
      this.generalAt = Infinity;
      this.pending.length = 0;
      this.unsolicitedLeft = 0;
    }
    const ours = this.port.groups();
    const delay = this.random() * (level === 1 ? V1_MAX_RESPONSE : maxRespMs);
    if (mode === 3) {
      // §5.2 rules 1-3: an earlier pending general answer covers everything.
      if (this.generalAt <= now + delay) return;
      if (!group) {
        this.generalAt = now + delay;
        return;
      }
      const g = ours.find((x) => bytesEqual(x, 0, group, off, x.length));
      if (!g) return;
      const p = this.pending.find((x) => sameGroup(x.group, g));
      if (p) p.at = Math.min(p.at, now + delay);
      else this.pending.push({ group: g, at: now + delay });
      return;
    }
    // Older modes: one timer per group; a running one is reset only if the query asks for a
    // quicker answer than it would give (RFC 2236 §3).
    const maxResp = level === 1 ? V1_MAX_RESPONSE : maxRespMs;
    for (const g of ours) {
      if (group && !bytesEqual(g, 0, group, off, g.length)) continue;
      const d = this.random() * maxResp;
      const p = this.pending.find((x) => sameGroup(x.group, g));
      if (!p) this.pending.push({ group: g, at: now + d });
      else if (p.at - now > maxResp) p.at = now + d;
    }
  }

  /** Another member reported `group` (level 1/2 only): RFC 2236 §3 suppression, ours is not sent. */
  reportHeard(now: number, group: Uint8Array, off: number): void {
    if (this.level(now) === 3) return;
    const i = this.pending.findIndex((x) => bytesEqual(x.group, 0, group, off, x.group.length));
    if (i >= 0) this.pending.splice(i, 1);
  }

  pollAt(): number {
    let at = Math.min(this.unsolicitedLeft > 0 ? this.nextUnsolicited : Infinity, this.generalAt);
    for (let i = 0; i < this.pending.length; i++) at = Math.min(at, this.pending[i]!.at);
    return at;
  }

  poll(now: number): void {
    const mode = this.level(now);
    if (this.unsolicitedLeft > 0 && now >= this.nextUnsolicited) {
      const groups = this.port.groups();
      if (mode === 3) this.port.sendReport3(groups, RecordType.CHANGE_TO_EXCLUDE);
      else for (const g of groups) this.port.sendReportOld(g, mode);
      this.unsolicitedLeft--;
      this.nextUnsolicited = now + this.random() * (mode === 3 ? UNSOLICITED_REPORT_INTERVAL_V3 : UNSOLICITED_REPORT_INTERVAL_V2);
    }
    if (now >= this.generalAt) {
      this.generalAt = Infinity;
      this.port.sendReport3(this.port.groups(), RecordType.MODE_IS_EXCLUDE);
    }
    for (let i = 0; i < this.pending.length;) {
      const p = this.pending[i]!;
      if (now < p.at) {
        i++;
        continue;
      }
      this.pending.splice(i, 1);
      // A group we have since left (an address found duplicate) is not reported.
      if (!this.port.groups().some((g) => sameGroup(g, p.group))) continue;
      if (mode === 3) this.port.sendReport3([p.group], RecordType.MODE_IS_EXCLUDE);
      else this.port.sendReportOld(p.group, mode);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Router side: the querier and the guest's memberships.

export interface QuerierPort {
  /** Sends a general query (`group` undefined) or a group-specific one, answers due within
   *  `maxRespMs`. */
  sendQuery(group: Uint8Array | undefined, maxRespMs: number): void;
}

/** RFC 3376 §6.6.2 / RFC 3810 §7.6.2 querier states. */
export enum QuerierState {
  /** Link down: nothing sent. */
  Idle = 'idle',
  /** We query: general queries, last-member queries after leaves. */
  Querier = 'querier',
  /** A querier with a lower address was heard: we only listen, until it falls silent. */
  NonQuerier = 'non-querier',
}

/** One group the guest listens to. */
export interface GuestGroup {
  readonly addr: Uint8Array;
  /** Listeners are known until then (Group Membership Interval after the last report). */
  expires: number;
  /** An IGMPv1 member was heard until then: leaves are ignored (RFC 3376 §7.3.2). */
  v1HostUntil: number;
  /** Last-member queries still to send after a leave, and when the next is due. */
  queriesLeft: number;
  nextQuery: number;
}

export class Querier {
  state = QuerierState.Idle;
  /** Startup queries still to send at the Startup Query Interval. */
  private startupLeft = 0;
  /** Querier: the next general query. NonQuerier: when the other querier is presumed gone. */
  private next = Infinity;
  private readonly groups: GuestGroup[] = [];

  constructor(
    private readonly port: QuerierPort,
    /** Our address for the election (4 bytes, or fe80::2 for MLD). */
    private readonly ourAddress: Uint8Array,
    private readonly event: McastEvent,
    private readonly maxGroups = MAX_GUEST_GROUPS,
  ) {}

  /**
   * The one place the querier changes state. Edges:
   *   Idle → Querier            link up: a general query at once, then Startup Query Count − 1
   *                             more at the Startup Query Interval (§6.6.2, §8.6, §8.7)
   *   Querier → NonQuerier      a query from a lower address (§6.6.2): its own election
   *   NonQuerier → Querier      Other Querier Present Interval without its queries: query at once
   *   any → Idle                link reset (linkUp restarts from Idle)
   */
  private setState(to: QuerierState, now: number): void {
    const from = this.state;
    this.state = to;
    if (from !== to) this.event('querier', { from, to });
    switch (to) {
      case QuerierState.Querier:
        this.port.sendQuery(undefined, QUERY_RESPONSE_INTERVAL);
        if (from === QuerierState.Idle) {
          this.startupLeft = STARTUP_QUERY_COUNT - 1;
          this.next = now + STARTUP_QUERY_INTERVAL;
        } else {
          this.startupLeft = 0;
          this.next = now + QUERY_INTERVAL;
        }
        break;
      case QuerierState.NonQuerier:
        this.startupLeft = 0;
        this.next = now + OTHER_QUERIER_PRESENT_INTERVAL;
        // Non-queriers do not send last-member queries (RFC 2236 §3).
        for (const g of this.groups) g.queriesLeft = 0;
        break;
      case QuerierState.Idle:
        this.next = Infinity;
        break;
    }
  }

  /** The link came up: start querying (and forget what the last link taught). */
  start(now: number): void {
    this.groups.length = 0;
    this.state = QuerierState.Idle;
    this.setState(QuerierState.Querier, now);
  }

  /** A valid query from `src` (address bytes at `srcOff`), general or for `group`. */
  queryHeard(now: number, src: Uint8Array, srcOff: number, group: Uint8Array | undefined, groupOff: number): void {
    if (this.state === QuerierState.Idle) return;
    if (compareBytes(src, srcOff, this.ourAddress, 0, this.ourAddress.length) < 0) {
      if (this.state === QuerierState.Querier) this.setState(QuerierState.NonQuerier, now);
      else this.next = now + OTHER_QUERIER_PRESENT_INTERVAL;
      // §6.6.1: a non-querier lowers a group's timer to the Last Member Query Time on the
      // querier's group-specific query.
      const g = group ? this.find(group, groupOff) : undefined;
      if (g) g.expires = Math.min(g.expires, now + LAST_MEMBER_QUERY_TIME);
    }
  }

  /** The guest reported listening to `group` (bytes at `off`) at `level`. */
  join(now: number, group: Uint8Array, off: number, level: McastLevel): void {
    let g = this.find(group, off);
    if (!g) {
      if (this.groups.length >= this.maxGroups) return this.event('tableFull');
      g = { addr: group.slice(off, off + this.ourAddress.length), expires: 0, v1HostUntil: -Infinity, queriesLeft: 0, nextQuery: Infinity };
      this.groups.push(g);
      this.event('guestJoined', { group: Array.from(g.addr) });
    }
    g.expires = now + GROUP_MEMBERSHIP_INTERVAL;
    g.queriesLeft = 0;
    if (level === 1) g.v1HostUntil = now + OLDER_HOST_PRESENT_INTERVAL;
  }

  /**
   * The guest left `group` (IGMPv2 leave, MLD done, TO_IN({})): as querier, last-member queries
   * (Last Member Query Count, 1 s apart) and the group timer lowered to the Last Member Query
   * Time; a report meanwhile keeps the group (RFC 3376 §6.6.3.1, RFC 2236 §3).
   */
  leave(now: number, group: Uint8Array, off: number): void {
    const g = this.find(group, off);
    if (!g) return;
    if (g.v1HostUntil > now) return this.event('leaveIgnoredV1Host');
    if (this.state !== QuerierState.Querier) return;
    if (g.queriesLeft > 0) return; // already querying it
    g.expires = Math.min(g.expires, now + LAST_MEMBER_QUERY_TIME);
    g.queriesLeft = LAST_MEMBER_QUERY_COUNT;
    g.nextQuery = now;
  }

  /** Whether the guest listens to `group` (bytes at `off`) at `now`. */
  joined(group: Uint8Array, off: number, now: number): boolean {
    const g = this.find(group, off);
    return g !== undefined && g.expires > now;
  }

  /** The groups the guest listens to (diagnostics and tests). */
  guestGroups(): readonly GuestGroup[] {
    return this.groups;
  }

  pollAt(): number {
    let at = this.next;
    for (let i = 0; i < this.groups.length; i++) {
      const g = this.groups[i]!;
      at = Math.min(at, g.expires, g.queriesLeft > 0 ? g.nextQuery : Infinity);
    }
    return at;
  }

  poll(now: number): void {
    if (this.state === QuerierState.Querier && now >= this.next) {
      this.port.sendQuery(undefined, QUERY_RESPONSE_INTERVAL);
      if (this.startupLeft > 0) this.startupLeft--;
      this.next = now + (this.startupLeft > 0 ? STARTUP_QUERY_INTERVAL : QUERY_INTERVAL);
    } else if (this.state === QuerierState.NonQuerier && now >= this.next) {
      this.setState(QuerierState.Querier, now);
    }
    for (let i = 0; i < this.groups.length;) {
      const g = this.groups[i]!;
      if (g.queriesLeft > 0 && now >= g.nextQuery) {
        this.port.sendQuery(g.addr, LAST_MEMBER_QUERY_INTERVAL);
        g.queriesLeft--;
        g.nextQuery = now + LAST_MEMBER_QUERY_INTERVAL;
      }
      if (now >= g.expires) {
        this.groups.splice(i, 1);
        this.event('guestLeft', { group: Array.from(g.addr) });
        continue;
      }
      i++;
    }
  }

  private find(group: Uint8Array, off: number): GuestGroup | undefined {
    const n = this.ourAddress.length;
    for (const g of this.groups) if (bytesEqual(g.addr, 0, group, off, n)) return g;
    return undefined;
  }
}

function sameGroup(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && bytesEqual(a, 0, b, 0, a.length);
}

/** Unsigned byte-wise comparison of two addresses: < 0, 0, > 0. */
export function compareBytes(a: Uint8Array, aOff: number, b: Uint8Array, bOff: number, len: number): number {
  for (let i = 0; i < len; i++) {
    const d = a[aOff + i]! - b[bOff + i]!;
    if (d !== 0) return d;
  }
  return 0;
}
