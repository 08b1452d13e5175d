// The neighbour cache: guest-link addresses to MACs for the packets we send to the guest, one
// machine for IPv4 (ARP) and IPv6 (NDP). Heads up! Before editing read RFC 4861 §7.2 (address
// resolution), §7.3 (neighbour unreachability detection) and Appendix C (the state table), and
// RFC 1122 §2.3.2 for ARP, which runs the same machine: an ARP reply is a solicited, overriding
// confirmation, the guest's ARP request an unsolicited hint, and PROBE is RFC 1122 §2.3.2.1's
// "unicast poll".
//
// Keys: IPv4 addresses as uint32, IPv6 addresses as ipv6Key() strings. Time comes in as
// milliseconds and nothing runs by itself: the owner calls poll(now) at pollAt(). The table, the
// INCOMPLETE entries, each entry's queue and all queues together are bounded.
//
// The NUD states (RFC 4861 §7.3.2) and their timers, one line each:
//   INCOMPLETE  resolving: multicast solicitation every RetransTimer, packets queued
//   REACHABLE   confirmed within ReachableTime: send to the MAC
//   STALE       not confirmed lately: send to the MAC, verify on first use; forgotten if unused
//   DELAY       used while STALE: wait DELAY_FIRST_PROBE_TIME for an upper-layer confirmation
//   PROBE       unicast solicitation every RetransTimer until confirmed, else deleted
//
// Every state change happens in setState(), where the edge table sits with the RFC section that
// decides each edge; each input (resolve, confirm, learn, upperLayerConfirm, poll) is a switch on
// the current state that picks the edge. Hooks run once the cache has settled, in order, so a
// hook sees a consistent cache and may call back into it.
import type { MemoryAccount } from './memory-budget.js';
import { get16, set16 } from '../wire/bytes.js';

/** RFC 4861 §7.3.2. The values are the RFC's names (status output, logs). */
export enum NeighborState {
  INCOMPLETE = 'INCOMPLETE',
  REACHABLE = 'REACHABLE',
  STALE = 'STALE',
  DELAY = 'DELAY',
  PROBE = 'PROBE',
}

export interface QueuedPacket {
  /** A copy of the packet, owned by the cache until handed back, then by the hook. */
  readonly bytes: Uint8Array;
  /** What the owner passed to resolve() with it (the flow, for onUnreachable). */
  readonly tag: unknown;
}

/** What the cache asks of its owner, one method per action. Called after the cache has settled. */
export interface NeighborHooks<K> {
  /** Send a solicitation for `key`: broadcast ARP request / NS to the solicited-node group when
   *  `unicastTo` is undefined (INCOMPLETE), else unicast to that MAC (PROBE). */
  solicit(key: K, unicastTo: Uint8Array | undefined): void;
  /** Resolution succeeded: send the queued packets, in order, to `mac` (read-only). */
  resolved(key: K, mac: Uint8Array, queued: readonly QueuedPacket[]): void;
  /** The neighbour is unreachable: resolution failed or was abandoned (`queued` in order, to be
   *  answered as a router would — ICMP host / ICMPv6 address unreachable unless we are the
   *  source — and their flows told), or a probed neighbour stopped answering (`queued` empty). */
  failed(key: K, queued: readonly QueuedPacket[]): void;
}

/** Protocol constants are RFC 4861 §10's defaults; every count must be a positive integer. */
export interface NeighborOptions {
  /** Entries in the table (default 256). When full, the least recently used resolved entry goes. */
  maxEntries?: number;
  /** INCOMPLETE entries (default a quarter of maxEntries). Traffic towards many unused addresses
   *  (the cache exhaustion of RFC 6583) then pushes out at most this many entries in use: further
   *  resolutions displace the oldest INCOMPLETE entry instead. */
  maxIncomplete?: number;
  /** Packets queued per INCOMPLETE entry (default 8). RFC 4861 §7.2.2 asks for at least one and
   *  "some small value", RFC 1122 §2.3.2.2 for at least the latest; Linux kept 3 (now a byte
   *  budget), FreeBSD keeps 16. 8 carries the first packets of a few flows that start together,
   *  and bounds the ICMP errors a dead neighbour costs. */
  maxQueuedPerEntry?: number;
  /** Bytes queued across all entries (default 1 MiB). */
  maxQueuedBytes?: number;
  /** The memory budget queued packets are held in (besides maxQueuedBytes): refused, the oldest
   *  queued packet anywhere goes, and at last the new one. */
  memory?: MemoryAccount;
  /** BaseReachableTime (REACHABLE_TIME, 30 s). */
  baseReachableTimeMs?: number;
  /** RetransTimer (RETRANS_TIMER, 1 s): spacing of solicitations, at most one per neighbour. */
  retransTimerMs?: number;
  /** MAX_MULTICAST_SOLICIT (3): solicitations in INCOMPLETE before resolution fails. */
  maxMulticastSolicit?: number;
  /** MAX_UNICAST_SOLICIT (3): probes in PROBE before the entry is deleted. */
  maxUnicastSolicit?: number;
  /** DELAY_FIRST_PROBE_TIME (5 s). */
  delayFirstProbeTimeMs?: number;
  /** A STALE entry unused this long is forgotten (default 10 minutes, RFC 4861 §5.3). */
  staleTimeoutMs?: number;
  /** Uniform in [0, 1); Math.random by default. Tests inject their own. */
  random?: () => number;
}

export interface NeighborStats {
  /** Solicitations asked of solicit(), multicast and unicast. */
  solicits: number;
  /** INCOMPLETE entries that learnt their MAC. */
  resolved: number;
  /** INCOMPLETE entries given up after MAX_MULTICAST_SOLICIT. */
  failed: number;
  /** Entries deleted after MAX_UNICAST_SOLICIT unanswered probes. */
  unreachable: number;
  /** STALE entries forgotten after staleTimeoutMs unused. */
  collected: number;
  /** Entries pushed out by maxEntries or maxIncomplete. */
  evicted: number;
  /** Packets dropped by the queue bounds, or forgotten by remove() and clear(). */
  queuedDropped: number;
}

export interface NeighborInfo<K> {
  key: K;
  state: NeighborState;
  /** A copy; undefined only while INCOMPLETE. */
  mac: Uint8Array | undefined;
  /** When the state's timer fires (ms). */
  deadline: number;
}

/** RFC 4861 §6.3.2: recompute ReachableTime "at least every few hours". */
const RECOMPUTE_REACHABLE_TIME_MS = 2 * 60 * 60_000;

/** How an entry leaves the table. */
type Removal =
  | 'failed' // INCOMPLETE, MAX_MULTICAST_SOLICIT unanswered
  | 'unreachable' // PROBE, MAX_UNICAST_SOLICIT unanswered
  | 'collected' // STALE, unused for staleTimeoutMs
  | 'evicted' // a table bound made room
  | 'removed'; // remove() or clear()

interface Queued extends QueuedPacket {
  /** Arrival order across all queues: the byte bound drops the oldest anywhere. */
  readonly seq: number;
}

interface Entry<K> {
  readonly key: K;
  state: NeighborState;
  /** Undefined only in INCOMPLETE. Replaced, never written in place: references handed out stay
   *  valid. */
  mac: Uint8Array | undefined;
  /** When the current state's timer fires. */
  deadline: number;
  /** Solicitations sent in the current INCOMPLETE or PROBE state. */
  solicits: number;
  /** Packets waiting for resolution (INCOMPLETE only), oldest first. */
  queue: Queued[];
  /** Last resolve() for the key: the LRU order of eviction. */
  lastUsed: number;
}

type Effect<K> =
  | { kind: 'solicit'; key: K; to: Uint8Array | undefined }
  | { kind: 'resolved'; key: K; mac: Uint8Array; queued: Queued[] }
  | { kind: 'failed'; key: K; queued: Queued[] };

export class NeighborCache<K extends number | string> {
  readonly stats: NeighborStats = { solicits: 0, resolved: 0, failed: 0, unreachable: 0, collected: 0, evicted: 0, queuedDropped: 0 };
  private readonly table = new Map<K, Entry<K>>();
  private readonly o: Required<Omit<NeighborOptions, 'memory'>>;
  private readonly memory: MemoryAccount | undefined;
  private incomplete = 0;
  private queuedTotal = 0;
  private seq = 0;
  private reachableTime = 0;
  private reachableTimeUntil = -Infinity;
  /** pollAt() recomputes after any deadline changed. */
  private earliest = Infinity;
  private earliestStale = false;
  /** Hook calls waiting for the cache to settle. */
  private readonly effects: Effect<K>[] = [];
  private settling = false;

  constructor(
    private readonly hooks: NeighborHooks<K>,
    opts: NeighborOptions = {},
  ) {
    const maxEntries = opts.maxEntries ?? 256;
    this.o = {
      maxEntries,
      maxIncomplete: opts.maxIncomplete ?? Math.max(1, Math.floor(maxEntries / 4)),
      maxQueuedPerEntry: opts.maxQueuedPerEntry ?? 8,
      maxQueuedBytes: opts.maxQueuedBytes ?? 1 << 20,
      baseReachableTimeMs: opts.baseReachableTimeMs ?? 30_000,
      retransTimerMs: opts.retransTimerMs ?? 1_000,
      maxMulticastSolicit: opts.maxMulticastSolicit ?? 3,
      maxUnicastSolicit: opts.maxUnicastSolicit ?? 3,
      delayFirstProbeTimeMs: opts.delayFirstProbeTimeMs ?? 5_000,
      staleTimeoutMs: opts.staleTimeoutMs ?? 10 * 60_000,
      random: opts.random ?? Math.random,
    };
    this.memory = opts.memory;
    for (const k of ['maxEntries', 'maxIncomplete', 'maxQueuedPerEntry', 'maxQueuedBytes', 'maxMulticastSolicit', 'maxUnicastSolicit'] as const) {
      if (!Number.isInteger(this.o[k]) || this.o[k] < 1) throw new RangeError(`NeighborCache: ${k} must be a positive integer`);
    }
  }

  // --- inputs ---------------------------------------------------------------------------------

  /**
   * The output path: the MAC to send to now (read-only), or undefined once `packet` (copied) is
   * queued while resolution runs. Sending to a STALE entry starts its verification (DELAY).
   */
  resolve(key: K, now: number, packet?: Uint8Array, tag?: unknown): Uint8Array | undefined {
    const e = this.table.get(key);
    if (e === undefined) {
      // §7.2.2: "creating an entry in the INCOMPLETE state and transmitting a Neighbor
      // Solicitation". The packet is copied here, before any hook can write to the buffer it
      // was built in.
      const fresh = this.create(key, NeighborState.INCOMPLETE, undefined, now);
      if (packet) this.enqueue(fresh, packet, tag);
      this.setState(fresh, NeighborState.INCOMPLETE, now);
      this.settle();
      return undefined;
    }
    e.lastUsed = now;
    switch (e.state) {
      case NeighborState.INCOMPLETE:
        // §7.2.2: queue it; solicitations stay "at most one ... per neighbor every RetransTimer".
        if (packet) this.enqueue(e, packet, tag);
        return undefined;
      case NeighborState.STALE:
        this.setState(e, NeighborState.DELAY, now);
        return e.mac;
      case NeighborState.REACHABLE:
      case NeighborState.DELAY:
      case NeighborState.PROBE: // §7.3.3: probing still sends to the cached address
        return e.mac;
    }
  }

  /**
   * A Neighbor Advertisement for `key` (or an ARP reply: solicited and override). `mac` is its
   * Target Link-Layer Address option, undefined when it had none.
   */
  confirm(key: K, mac: Uint8Array | undefined, now: number, flags: { solicited: boolean; override: boolean }): void {
    const e = this.table.get(key);
    // §7.2.5: "If no entry exists, the advertisement SHOULD be silently discarded."
    if (e === undefined) return;
    switch (e.state) {
      case NeighborState.INCOMPLETE:
        // §7.2.5: without a target link-layer address "the receiving node SHOULD silently discard
        // the received advertisement"; with one, REACHABLE if solicited, else STALE. "Note that
        // the Override flag is ignored if the entry is in the INCOMPLETE state."
        if (mac === undefined) return;
        this.setState(e, flags.solicited ? NeighborState.REACHABLE : NeighborState.STALE, now, mac);
        break;
      case NeighborState.REACHABLE:
      case NeighborState.STALE:
      case NeighborState.DELAY:
      case NeighborState.PROBE: {
        const differs = mac !== undefined && !sameMac(e.mac!, mac);
        if (differs && !flags.override) {
          // §7.2.5 (a)/(b): REACHABLE becomes STALE, keeping its address; otherwise ignored.
          if (e.state === NeighborState.REACHABLE) this.setState(e, NeighborState.STALE, now);
        } else if (flags.solicited) {
          this.setState(e, NeighborState.REACHABLE, now, mac);
        } else if (differs) {
          this.setState(e, NeighborState.STALE, now, mac);
        }
        break;
      }
    }
    this.settle();
  }

  /**
   * Unsolicited link-layer information from the guest: its ARP request, an NS, RS or RA with a
   * source link-layer address option (RFC 4861 §7.2.3, §6.2.6, RFC 826's merge).
   */
  learn(key: K, mac: Uint8Array, now: number): void {
    const e = this.table.get(key);
    if (e === undefined) {
      this.setState(this.create(key, NeighborState.STALE, mac, now), NeighborState.STALE, now);
    } else {
      switch (e.state) {
        case NeighborState.INCOMPLETE:
          this.setState(e, NeighborState.STALE, now, mac);
          break;
        case NeighborState.REACHABLE:
        case NeighborState.STALE:
        case NeighborState.DELAY:
        case NeighborState.PROBE:
          if (!sameMac(e.mac!, mac)) this.setState(e, NeighborState.STALE, now, mac);
          break;
      }
    }
    this.settle();
  }

  /** Forward progress seen by an upper layer (TCP acknowledging new data, RFC 4861 §7.3.1). */
  upperLayerConfirm(key: K, now: number): void {
    const e = this.table.get(key);
    if (e === undefined) return;
    switch (e.state) {
      case NeighborState.INCOMPLETE:
        return; // nothing to confirm without an address
      case NeighborState.REACHABLE:
      case NeighborState.STALE:
      case NeighborState.DELAY:
      case NeighborState.PROBE:
        this.setState(e, NeighborState.REACHABLE, now);
    }
  }

  /** Runs every timer due at `now`. A late call takes one step per entry, timed from `now`. */
  poll(now: number): void {
    // setState() only deletes during the loop, which Map iteration tolerates; hooks run after.
    for (const e of this.table.values()) {
      if (e.deadline > now) continue;
      switch (e.state) {
        case NeighborState.INCOMPLETE:
          this.setState(e, e.solicits < this.o.maxMulticastSolicit ? NeighborState.INCOMPLETE : 'failed', now);
          break;
        case NeighborState.REACHABLE:
          this.setState(e, NeighborState.STALE, now);
          break;
        case NeighborState.STALE:
          this.setState(e, 'collected', now);
          break;
        case NeighborState.DELAY:
          this.setState(e, NeighborState.PROBE, now);
          break;
        case NeighborState.PROBE:
          this.setState(e, e.solicits < this.o.maxUnicastSolicit ? NeighborState.PROBE : 'unreachable', now);
          break;
      }
    }
    this.settle();
  }

  /** The earliest deadline (ms), Infinity when the table is empty. */
  pollAt(): number {
    if (this.earliestStale) {
      this.earliest = Infinity;
      for (const e of this.table.values()) if (e.deadline < this.earliest) this.earliest = e.deadline;
      this.earliestStale = false;
    }
    return this.earliest;
  }

  /** Forgets `key`; packets still queued are dropped (counted), not answered. */
  remove(key: K): void {
    const e = this.table.get(key);
    if (e !== undefined) this.setState(e, 'removed', 0);
  }

  /** Forgets everything (link down); queued packets are dropped (counted), not answered. */
  clear(): void {
    for (const e of this.table.values()) this.setState(e, 'removed', 0);
  }

  // --- status ---------------------------------------------------------------------------------

  get size(): number {
    return this.table.size;
  }

  /** Bytes queued across all entries. */
  get queuedBytes(): number {
    return this.queuedTotal;
  }

  state(key: K): NeighborState | undefined {
    return this.table.get(key)?.state;
  }

  /** The MAC known for `key` (read-only), without counting as a use. */
  lookup(key: K): Uint8Array | undefined {
    return this.table.get(key)?.mac;
  }

  list(): NeighborInfo<K>[] {
    return [...this.table.values()].map((e) => ({ key: e.key, state: e.state, mac: e.mac?.slice(), deadline: e.deadline }));
  }

  // --- the state machine ----------------------------------------------------------------------

  /**
   * The only place an entry changes state, arms its timer, records a MAC or leaves the table.
   * RFC 4861 Appendix C, with the section that decides each edge (ARP takes the same edges):
   *
   *   from         event                          RFC 4861  to            action
   *   (none)       packet to send                 §7.2.2    INCOMPLETE    queue it, multicast solicit
   *   INCOMPLETE   RetransTimer, < MAX_MULTICAST  §7.2.2    INCOMPLETE    multicast solicit again
   *   INCOMPLETE   RetransTimer, MAX_MULTICAST    §7.2.2    (failed)      queue to failed()
   *   INCOMPLETE   NA S=1 with TLLA               §7.2.5    REACHABLE     record MAC, send queue
   *   INCOMPLETE   NA S=0 with TLLA               §7.2.5    STALE         record MAC, send queue
   *   INCOMPLETE   NS/RS/RA/ARP request w/ SLLA   §7.2.3    STALE         record MAC, send queue
   *   (none)       NS/RS/RA/ARP request w/ SLLA   §7.2.3    STALE         record MAC
   *   !INCOMPLETE  NS/RS/RA/ARP request, new MAC  §7.2.3    STALE         record MAC
   *   !INCOMPLETE  NA S=1, O=1 or same/no MAC     §7.2.5    REACHABLE     record MAC if O
   *   !INCOMPLETE  NA S=0, O=1, new MAC           §7.2.5    STALE         record MAC
   *   REACHABLE    NA O=0, new MAC                §7.2.5    STALE         keep the MAC
   *   !INCOMPLETE  upper-layer confirmation       §7.3.1    REACHABLE
   *   REACHABLE    ReachableTime passed           §7.3.3    STALE
   *   STALE        packet sent                    §7.3.3    DELAY
   *   DELAY        DELAY_FIRST_PROBE_TIME passed  §7.3.3    PROBE         unicast solicit
   *   PROBE        RetransTimer, < MAX_UNICAST    §7.3.3    PROBE         unicast solicit again
   *   PROBE        RetransTimer, MAX_UNICAST      §7.3.3    (unreachable) failed() with no packets
   *   STALE        staleTimeoutMs unused          §5.3      (collected)
   *   any          table bound                    §5.3      (evicted)     INCOMPLETE: queue to failed()
   *   any          remove(), clear()                        (removed)     queue dropped
   *
   * Every other NA or hint changes nothing (Appendix C "unchanged"): STALE/DELAY/PROBE with O=0
   * and a new MAC, S=0 with the same MAC or none. Appendix C lists NA S=0 O=0 as "unchanged"
   * everywhere; §7.2.5's text, which sends a REACHABLE entry with a new MAC to STALE whatever S,
   * decides (Linux and gVisor agree). Entering INCOMPLETE or PROBE sends one solicitation, so a
   * retransmission is the state entered again; a new entry enters its first state the same way.
   */
  private setState(e: Entry<K>, next: NeighborState | Removal, now: number, mac?: Uint8Array): void {
    const o = this.o;
    const from = e.state;
    if (mac !== undefined && (e.mac === undefined || !sameMac(e.mac, mac))) e.mac = mac.slice(0, 6);
    if (next !== from) e.solicits = 0;
    if (from === NeighborState.INCOMPLETE && next !== NeighborState.INCOMPLETE) this.incomplete--;
    this.earliestStale = true;
    switch (next) {
      case NeighborState.INCOMPLETE:
      case NeighborState.PROBE:
        // §7.2.2 / §7.3.3: one solicitation now, the next after RetransTimer. §7.3.3 "Upon
        // entering the PROBE state, a node sends a unicast Neighbor Solicitation message to the
        // neighbor using the cached link-layer address".
        e.state = next;
        e.solicits++;
        e.deadline = now + o.retransTimerMs;
        this.stats.solicits++;
        this.effects.push({ kind: 'solicit', key: e.key, to: next === NeighborState.PROBE ? e.mac : undefined });
        return;
      case NeighborState.REACHABLE:
      case NeighborState.STALE:
        e.state = next;
        e.deadline = now + (next === NeighborState.REACHABLE ? this.currentReachableTime(now) : o.staleTimeoutMs);
        if (from === NeighborState.INCOMPLETE) {
          // §7.2.5: "Once address resolution completes, the node transmits any queued packets."
          this.stats.resolved++;
          this.effects.push({ kind: 'resolved', key: e.key, mac: e.mac!, queued: this.takeQueue(e) });
        }
        return;
      case NeighborState.DELAY:
        e.state = next;
        e.deadline = now + o.delayFirstProbeTimeMs;
        return;
      case 'failed':
        // §7.2.2: "The sender MUST return ICMP destination unreachable indications with code 3
        // (Address Unreachable) for each packet queued awaiting address resolution."
        this.stats.failed++;
        this.table.delete(e.key);
        this.effects.push({ kind: 'failed', key: e.key, queued: this.takeQueue(e) });
        return;
      case 'unreachable':
        // §7.3.3: "retransmissions cease and the entry SHOULD be deleted. Subsequent traffic to
        // that neighbor will recreate the entry and perform address resolution again."
        this.stats.unreachable++;
        this.table.delete(e.key);
        this.effects.push({ kind: 'failed', key: e.key, queued: this.takeQueue(e) });
        return;
      case 'evicted':
        this.stats.evicted++;
        this.table.delete(e.key);
        if (from === NeighborState.INCOMPLETE) this.effects.push({ kind: 'failed', key: e.key, queued: this.takeQueue(e) });
        return;
      case 'collected':
      case 'removed':
        if (next === 'collected') this.stats.collected++;
        this.stats.queuedDropped += e.queue.length;
        this.takeQueue(e);
        this.table.delete(e.key);
        return;
    }
  }

  /**
   * Adds an entry that setState() then enters. When a bound is reached something goes first
   * (RFC 4861 §5.3: "Any LRU-based policy that only reclaims entries that have not been used in
   * some time ... should be adequate"): for a new INCOMPLETE entry beyond maxIncomplete, the
   * oldest INCOMPLETE one; otherwise the least recently used resolved entry, or the oldest
   * INCOMPLETE one if there is none.
   */
  private create(key: K, state: NeighborState, mac: Uint8Array | undefined, now: number): Entry<K> {
    const o = this.o;
    for (;;) {
      const tooManyIncomplete = state === NeighborState.INCOMPLETE && this.incomplete >= o.maxIncomplete;
      if (!tooManyIncomplete && this.table.size < o.maxEntries) break;
      const victim = tooManyIncomplete ? this.oldestIncomplete() : (this.leastRecentlyUsed() ?? this.oldestIncomplete());
      if (victim === undefined) break; // unreachable: a bound reached means entries exist
      this.setState(victim, 'evicted', now);
    }
    const e: Entry<K> = { key, state, mac: mac?.slice(0, 6), deadline: Infinity, solicits: 0, queue: [], lastUsed: now };
    if (state === NeighborState.INCOMPLETE) this.incomplete++;
    this.table.set(key, e);
    return e;
  }

  /** INCOMPLETE is only ever the first state, so the table's insertion order is their age. */
  private oldestIncomplete(): Entry<K> | undefined {
    for (const e of this.table.values()) if (e.state === NeighborState.INCOMPLETE) return e;
    return undefined;
  }

  private leastRecentlyUsed(): Entry<K> | undefined {
    let lru: Entry<K> | undefined;
    for (const e of this.table.values()) {
      if (e.state !== NeighborState.INCOMPLETE && (lru === undefined || e.lastUsed < lru.lastUsed)) lru = e;
    }
    return lru;
  }

  /** RFC 4861 §6.3.2: ReachableTime is uniform in [MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR) =
   *  [0.5, 1.5) × BaseReachableTime, one value for the link, drawn again every few hours. */
  private currentReachableTime(now: number): number {
    if (now >= this.reachableTimeUntil) {
      this.reachableTime = this.o.baseReachableTimeMs * (0.5 + this.o.random());
      this.reachableTimeUntil = now + RECOMPUTE_REACHABLE_TIME_MS;
    }
    return this.reachableTime;
  }

  // --- queues ---------------------------------------------------------------------------------

  /** §7.2.2: "When a queue overflows, the new arrival SHOULD replace the oldest entry"; the byte
   *  bound across queues drops the oldest packet anywhere. */
  private enqueue(e: Entry<K>, packet: Uint8Array, tag: unknown): void {
    const n = packet.length;
    if (n > this.o.maxQueuedBytes) {
      this.stats.queuedDropped++;
      return;
    }
    if (e.queue.length >= this.o.maxQueuedPerEntry) this.dropOldest(e);
    for (;;) {
      if (this.queuedTotal + n <= this.o.maxQueuedBytes && (!this.memory || this.memory.take(n))) break;
      const from = this.oldestQueue();
      if (from === undefined) {
        this.stats.queuedDropped++;
        return;
      }
      this.dropOldest(from);
    }
    e.queue.push({ bytes: packet.slice(), tag, seq: this.seq++ });
    this.queuedTotal += n;
  }

  private unqueued(n: number): void {
    this.queuedTotal -= n;
    this.memory?.give(n);
  }

  private dropOldest(e: Entry<K>): void {
    const p = e.queue.shift();
    if (p === undefined) return;
    this.unqueued(p.bytes.length);
    this.stats.queuedDropped++;
  }

  /** The entry holding the oldest queued packet. */
  private oldestQueue(): Entry<K> | undefined {
    let oldest: Entry<K> | undefined;
    for (const e of this.table.values()) {
      const head = e.queue[0];
      if (head !== undefined && (oldest === undefined || head.seq < oldest.queue[0]!.seq)) oldest = e;
    }
    return oldest;
  }

  private takeQueue(e: Entry<K>): Queued[] {
    const q = e.queue;
    e.queue = [];
    for (const p of q) this.unqueued(p.bytes.length);
    return q;
  }

  /** Runs the hook calls, in order, once the cache is consistent; a hook may call back in (its
   *  own hook calls then run after the ones already waiting). */
  private settle(): void {
    if (this.settling) return;
    this.settling = true;
    try {
      for (let fx = this.effects.shift(); fx !== undefined; fx = this.effects.shift()) {
        switch (fx.kind) {
          case 'solicit':
            this.hooks.solicit(fx.key, fx.to);
            break;
          case 'resolved':
            this.hooks.resolved(fx.key, fx.mac, fx.queued);
            break;
          case 'failed':
            this.hooks.failed(fx.key, fx.queued);
            break;
        }
      }
    } finally {
      this.settling = false;
    }
  }
}

function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * The cache key of the IPv6 address at b[off]: its eight groups in hex, without leading zeros and
 * without "::" compression — RFC 4291 §2.2's first text form ("fe80:0:0:0:0:0:0:2"), so one
 * spelling per address, readable in status output, and eight short toString() calls to make.
 */
export function ipv6Key(b: Uint8Array, off: number): string {
  let s = get16(b, off).toString(16);
  for (let i = 2; i < 16; i += 2) s += ':' + get16(b, off + i).toString(16);
  return s;
}

/** Writes the address of an ipv6Key() key to out[off..off+16) and returns `out`. */
export function ipv6KeyBytes(key: string, out: Uint8Array = new Uint8Array(16), off = 0): Uint8Array {
  let at = 0;
  for (let i = 0; i < 8; i++) {
    const end = i === 7 ? key.length : key.indexOf(':', at);
    const word = parseInt(key.slice(at, end), 16);
    set16(out, off + 2 * i, Number.isNaN(word) ? 0 : word);
    at = end + 1;
  }
  return out;
}
