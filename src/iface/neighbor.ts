// The neighbour cache for addresses on the guest link, one machine for ARP and NDP. Read RFC 4861
// §7.2 (address resolution), §7.3 (neighbour unreachability detection) and Appendix C (the state
// table) before editing; ARP (RFC 826, RFC 1122 §2.3.2) runs the same machine, an ARP reply to our
// request being a solicited, overriding confirmation.
//
// States (RFC 4861 §7.3.2):
//   INCOMPLETE  resolution in progress: solicitations multicast every RetransTimer, packets queued
//   REACHABLE   confirmed within ReachableTime: use the MAC
//   STALE       not confirmed lately: use it, and verify when it is used
//   DELAY       used while STALE: wait DELAY_FIRST_PROBE_TIME for an upper-layer confirmation
//   PROBE       unicast solicitations every RetransTimer until confirmed or given up
//
// Every edge is taken in transition(); inputs (resolve, confirm, learn, poll) only decide the
// event. No timers inside: the owner calls poll(now) at pollAt(). The table, each entry's queue and
// all queues together are bounded.

export enum NeighborState {
  Incomplete = 'INCOMPLETE',
  Reachable = 'REACHABLE',
  Stale = 'STALE',
  Delay = 'DELAY',
  Probe = 'PROBE',
}

export interface QueuedPacket {
  /** A copy the cache owns until it hands it back. */
  bytes: Uint8Array;
  tag: unknown;
}

export interface NeighborHooks<K> {
  /** Send a solicitation: broadcast/multicast when `unicastTo` is undefined, else to that MAC. */
  solicit(key: K, unicastTo: Uint8Array | undefined): void;
  /** Resolution succeeded: send the queued packets, in order, to `mac`. */
  resolved(key: K, mac: Uint8Array, queued: readonly QueuedPacket[]): void;
  /** Resolution failed (or a probed neighbour went away): answer each queued packet as a router
   *  would (host unreachable unless we are its source) and tell the flows. */
  failed(key: K, queued: readonly QueuedPacket[]): void;
}

export interface NeighborOptions {
  maxEntries?: number;
  /** Packets queued per unresolved neighbour. RFC 4861 §7.2.2 asks for at least one; Linux keeps
   *  a few (unres_qlen_bytes); 8 lets a burst of the flows that wait on one address through. */
  maxQueuedPerEntry?: number;
  /** Bytes queued across all entries. */
  maxQueuedBytes?: number;
  baseReachableTimeMs?: number;
  retransTimerMs?: number;
  maxMulticastSolicit?: number;
  maxUnicastSolicit?: number;
  delayFirstProbeTimeMs?: number;
  /** STALE entries unused for this long are forgotten (garbage collection). */
  staleTimeoutMs?: number;
  random?: () => number;
}

interface Entry<K> {
  key: K;
  state: NeighborState;
  mac: Uint8Array | undefined;
  /** When the current state's timer fires (Infinity: none). */
  deadline: number;
  /** Solicitations sent in INCOMPLETE or PROBE. */
  sent: number;
  queue: QueuedPacket[];
  lastUsed: number;
}

/** What happened to an entry; transition() maps (state, event) to the next state. */
type NeighborEvent =
  | { kind: 'use' }
  | { kind: 'timeout' }
  | { kind: 'confirm'; mac: Uint8Array; solicited: boolean; override: boolean }
  | { kind: 'learn'; mac: Uint8Array };

export interface NeighborStats {
  resolved: number;
  failed: number;
  queuedDropped: number;
  evicted: number;
}

export class NeighborCache<K extends number | string> {
  readonly stats: NeighborStats = { resolved: 0, failed: 0, queuedDropped: 0, evicted: 0 };
  private readonly entries = new Map<K, Entry<K>>();
  private queuedBytes = 0;
  private reachableTime: number;
  private readonly o: Required<NeighborOptions>;

  constructor(
    private readonly hooks: NeighborHooks<K>,
    opts: NeighborOptions = {},
  ) {
    this.o = {
      maxEntries: opts.maxEntries ?? 256,
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
    this.reachableTime = this.randomReachableTime();
  }

  /** RFC 4861 §6.3.2: ReachableTime is uniform in [0.5, 1.5) × BaseReachableTime. */
  private randomReachableTime(): number {
    return this.o.baseReachableTimeMs * (0.5 + this.o.random());
  }

  get size(): number {
    return this.entries.size;
  }

  state(key: K): NeighborState | undefined {
    return this.entries.get(key)?.state;
  }

  list(): { key: K; state: NeighborState; mac: Uint8Array | undefined }[] {
    return [...this.entries.values()].map(({ key, state, mac }) => ({ key, state, mac }));
  }

  /**
   * The output path: the MAC to send to now, or undefined after queueing `packet` (copied) while
   * resolution runs. Using an entry is what moves STALE to DELAY.
   */
  resolve(key: K, now: number, packet?: Uint8Array, tag?: unknown): Uint8Array | undefined {
    let e = this.entries.get(key);
    if (!e) {
      // The packet is copied before the first solicitation goes out: the caller may have built it
      // in the very buffer the solicitation is written to.
      e = this.create(key, NeighborState.Incomplete, undefined, now);
      if (packet) this.enqueue(e, packet, tag);
      e.sent = 1;
      e.deadline = now + this.o.retransTimerMs;
      e.lastUsed = now;
      this.hooks.solicit(key, undefined);
      return undefined;
    }
    e.lastUsed = now;
    if (e.state === NeighborState.Incomplete) {
      if (packet) this.enqueue(e, packet, tag);
      return undefined;
    }
    this.transition(e, { kind: 'use' }, now);
    return e.mac;
  }

  /** A solicited and/or overriding confirmation: an NA for the key, an ARP reply (S and O). */
  confirm(key: K, mac: Uint8Array, now: number, flags: { solicited: boolean; override: boolean }): void {
    const e = this.entries.get(key);
    if (!e) return; // RFC 4861 §7.2.5: an unsolicited NA creates no entry
    this.transition(e, { kind: 'confirm', mac, ...flags }, now);
  }

  /** Unsolicited information (the guest's ARP request, NS or RS with a link-layer option). */
  learn(key: K, mac: Uint8Array, now: number): void {
    const e = this.entries.get(key);
    if (!e) {
      // RFC 4861 §7.2.3: create the entry STALE.
      this.create(key, NeighborState.Stale, mac, now).deadline = now + this.o.staleTimeoutMs;
      return;
    }
    this.transition(e, { kind: 'learn', mac }, now);
  }

  remove(key: K): void {
    const e = this.entries.get(key);
    if (e) this.drop(e);
  }

  clear(): void {
    for (const e of [...this.entries.values()]) this.drop(e);
  }

  pollAt(): number {
    let at = Infinity;
    for (const e of this.entries.values()) if (e.deadline < at) at = e.deadline;
    return at;
  }

  poll(now: number): void {
    for (const e of [...this.entries.values()]) if (e.deadline <= now) this.transition(e, { kind: 'timeout' }, now);
  }

  /**
   * The state machine (RFC 4861 Appendix C). Each arm names the section that decides it.
   */
  private transition(e: Entry<K>, ev: NeighborEvent, now: number): void {
    const o = this.o;
    switch (e.state) {
      case NeighborState.Incomplete:
        if (ev.kind === 'timeout') {
          // §7.2.2: retransmit up to MAX_MULTICAST_SOLICIT, then fail every queued packet.
          if (e.sent < o.maxMulticastSolicit) {
            e.sent++;
            e.deadline = now + o.retransTimerMs;
            this.hooks.solicit(e.key, undefined);
          } else {
            this.stats.failed++;
            this.fail(e);
          }
        } else if (ev.kind === 'confirm' || ev.kind === 'learn') {
          // §7.2.5: record the address; REACHABLE if solicited, else STALE; send the queue.
          // §7.2.3: a solicitation with a link-layer address also completes it, as STALE.
          e.mac = ev.mac.slice();
          this.enter(e, ev.kind === 'confirm' && ev.solicited ? NeighborState.Reachable : NeighborState.Stale, now);
          this.stats.resolved++;
          const queued = e.queue;
          e.queue = [];
          this.queuedBytes -= queued.reduce((n, p) => n + p.bytes.length, 0);
          this.hooks.resolved(e.key, e.mac, queued);
        }
        return;
      case NeighborState.Reachable:
      case NeighborState.Stale:
      case NeighborState.Delay:
      case NeighborState.Probe:
        break;
    }
    switch (ev.kind) {
      case 'use':
        // §7.3.3: the first use of a STALE entry starts DELAY.
        if (e.state === NeighborState.Stale) this.enter(e, NeighborState.Delay, now);
        return;
      case 'timeout':
        switch (e.state) {
          case NeighborState.Reachable: // §7.3.3: ReachableTime passed without confirmation
            return this.enter(e, NeighborState.Stale, now);
          case NeighborState.Stale: // unused for staleTimeout: garbage-collect
            return this.drop(e);
          case NeighborState.Delay: // §7.3.3: no upper-layer confirmation: start probing
            this.enter(e, NeighborState.Probe, now);
            e.sent = 1;
            this.hooks.solicit(e.key, e.mac);
            return;
          case NeighborState.Probe:
            if (e.sent < o.maxUnicastSolicit) {
              e.sent++;
              e.deadline = now + o.retransTimerMs;
              this.hooks.solicit(e.key, e.mac);
            } else {
              // §7.3.3: the neighbour is unreachable: forget it (queued packets, if any, fail).
              this.stats.failed++;
              this.fail(e);
            }
            return;
          default:
            return;
        }
      case 'learn': {
        // §7.2.3: a different link-layer address makes the entry STALE with the new address.
        if (e.mac && !sameMac(e.mac, ev.mac)) {
          e.mac = ev.mac.slice();
          this.enter(e, NeighborState.Stale, now);
        }
        return;
      }
      case 'confirm': {
        // §7.2.5, the table for entries not INCOMPLETE:
        const differs = e.mac !== undefined && !sameMac(e.mac, ev.mac);
        if (!ev.override && differs) {
          // O clear and a different address: REACHABLE becomes STALE, otherwise nothing.
          if (e.state === NeighborState.Reachable) this.enter(e, NeighborState.Stale, now);
          return;
        }
        if (ev.override || !differs) {
          if (ev.override && differs) e.mac = ev.mac.slice();
          if (ev.solicited) this.enter(e, NeighborState.Reachable, now);
          else if (differs) this.enter(e, NeighborState.Stale, now);
        }
        return;
      }
    }
  }

  /** Sets the state and its timer. */
  private enter(e: Entry<K>, state: NeighborState, now: number): void {
    e.state = state;
    e.sent = 0;
    switch (state) {
      case NeighborState.Reachable:
        e.deadline = now + this.reachableTime;
        this.reachableTime = this.randomReachableTime();
        return;
      case NeighborState.Stale:
        e.deadline = now + this.o.staleTimeoutMs;
        return;
      case NeighborState.Delay:
        e.deadline = now + this.o.delayFirstProbeTimeMs;
        return;
      case NeighborState.Probe:
        e.deadline = now + this.o.retransTimerMs;
        return;
      case NeighborState.Incomplete:
        e.deadline = now + this.o.retransTimerMs;
        return;
    }
  }

  private create(key: K, state: NeighborState, mac: Uint8Array | undefined, now: number): Entry<K> {
    if (this.entries.size >= this.o.maxEntries) this.evict();
    const e: Entry<K> = { key, state, mac: mac?.slice(), deadline: Infinity, sent: 0, queue: [], lastUsed: now };
    this.entries.set(key, e);
    return e;
  }

  /** Makes room: the least recently used resolved entry goes first, else the oldest lookup. */
  private evict(): void {
    let victim: Entry<K> | undefined;
    for (const e of this.entries.values()) {
      if (e.state === NeighborState.Incomplete) continue;
      if (!victim || e.lastUsed < victim.lastUsed) victim = e;
    }
    victim ??= this.entries.values().next().value;
    if (!victim) return;
    this.stats.evicted++;
    if (victim.state === NeighborState.Incomplete) this.fail(victim);
    else this.drop(victim);
  }

  private enqueue(e: Entry<K>, packet: Uint8Array, tag: unknown): void {
    if (packet.length > this.o.maxQueuedBytes) {
      this.stats.queuedDropped++;
      return;
    }
    // Bounded per entry and in total: the oldest queued packets make room.
    while (e.queue.length >= this.o.maxQueuedPerEntry || this.queuedBytes + packet.length > this.o.maxQueuedBytes) {
      if (!this.dropOldestQueued(e)) break;
    }
    e.queue.push({ bytes: packet.slice(), tag });
    this.queuedBytes += packet.length;
  }

  /** Drops the oldest queued packet of `prefer`, or of any entry. */
  private dropOldestQueued(prefer: Entry<K>): boolean {
    const from = prefer.queue.length > 0 && prefer.queue.length >= this.o.maxQueuedPerEntry ? prefer : [...this.entries.values()].find((x) => x.queue.length > 0);
    const p = from?.queue.shift();
    if (!p) return false;
    this.queuedBytes -= p.bytes.length;
    this.stats.queuedDropped++;
    return true;
  }

  private fail(e: Entry<K>): void {
    const queued = e.queue;
    this.drop(e);
    this.hooks.failed(e.key, queued);
  }

  private drop(e: Entry<K>): void {
    for (const p of e.queue) this.queuedBytes -= p.bytes.length;
    e.queue = [];
    this.entries.delete(e.key);
  }
}

function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 6; i++) if (a[i] !== b[i]) return false;
  return true;
}
