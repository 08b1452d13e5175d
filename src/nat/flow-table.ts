// The NAT's one flow table, in the manner of passt's flow.c: every flow of every NAT part (TCP
// connections, UDP mappings, ICMP echo sessions, UDP forward sessions) is an entry here, found by a
// keyed numeric hash of one of its sides' tuples and bounded in total.
//
// A flow has sides (passt's INISIDE/TGTSIDE): the guest side — the guest's address and port, and
// the address and port it talks to, as it sees them — and, where the host's events must find the
// flow by a tuple rather than by the socket that reported them, a host side (a UDP forward's
// listener, client address and port). Each side is indexed under its own hash; addresses are Inany,
// so one entry shape serves both families. Lookups read the tuple in place from the packet: nothing
// is made per packet.
//
// Lifecycle of an entry (`Flow.live`):
//
//   new ──insert()──▶ live ──remove()──▶ gone
//
// - new: constructed by its NAT part, not findable, not counted.
// - live: findable by each of its indexed sides; counted in the total and in its kind's count.
// - gone: removed from every index; never found again. A socket that reports after its flow went
//   sees `live === false` and does nothing.
// The table only indexes and counts: each part decides when its flows start and end, and closes
// their sockets. Parts whose flows end when idle keep them in an IdleFlows list (below), least
// recently used first, which makes expiry and eviction O(1) each.
import type { Inany } from '../wire/index.js';
import { bytesEqual, INANY_V4_OFFSET, inanyFamily, inanyOffset, ipFamily } from '../wire/index.js';

/** What a flow is; the tuple's ports mean what the kind says. */
export const FlowKind = {
  /** A TCP connection: guest and remote ports. */
  TCP: 0,
  /** A UDP mapping made by the guest's datagram: guest and destination ports. */
  UDP: 1,
  /** An ICMP echo session: the guest's identifier as its port, remote port 0. */
  ECHO: 2,
  /** A session of an inbound UDP forward: guest side as UDP; host side the listener's index, the
   *  client's address and port. */
  UDP_FORWARD: 3,
} as const;
export type FlowKind = (typeof FlowKind)[keyof typeof FlowKind];

/** Which of a flow's tuples an index entry holds. */
export const FlowSideName = { GUEST: 0, HOST: 1 } as const;
export type FlowSideName = (typeof FlowSideName)[keyof typeof FlowSideName];

/** One indexed tuple of a flow: (kind, side, a:aPort, b:bPort), and its hash chain. */
export class FlowSide<F extends Flow = Flow> {
  /** The next side in this hash bucket. */
  next: FlowSide | undefined;
  hash = 0;
  /** The family of its addresses, and where their bytes start in the Inany (set when indexed). */
  family: 4 | 6 = 4;
  off = 12;
  constructor(
    readonly flow: F,
    readonly side: FlowSideName,
    readonly a: Inany,
    readonly aPort: number,
    readonly b: Inany,
    readonly bPort: number,
  ) {}
}

/** What every flow has. Each NAT part extends it with its own state. */
export class Flow {
  /** In the table: findable (see the lifecycle above). */
  live = false;
  /** When it was made (the stack's clock, ms). */
  readonly createdAt: number;
  /** Last traffic either way (ms); IdleFlows orders by it. */
  lastUse: number;
  /** The indexed guest side, and the host side where there is one. */
  readonly guestSide: FlowSide;
  hostSide: FlowSide | undefined;
  /** IdleFlows' list links. */
  idlePrev: Flow | undefined;
  idleNext: Flow | undefined;
  idleList: IdleFlows<Flow> | undefined;

  constructor(
    readonly kind: FlowKind,
    /** The guest side's family (the host side's may differ: a forward from an IPv4 client to an
     *  IPv6-only guest). */
    readonly family: 4 | 6,
    /** The guest's address and port (for echo: the identifier). */
    readonly guest: Inany,
    readonly guestPort: number,
    /** The address and port the guest talks to: the source of what the guest receives. */
    readonly remote: Inany,
    readonly remotePort: number,
    now: number,
  ) {
    this.createdAt = now;
    this.lastUse = now;
    this.guestSide = new FlowSide(this, FlowSideName.GUEST, guest, guestPort, remote, remotePort);
  }
}

/** Every NAT flow, hashed by its sides' tuples; bounded in total. */
export class FlowTable {
  private readonly buckets = new Map<number, FlowSide>();
  private readonly counts = [0, 0, 0, 0];
  /** The side each (kind, side) lookup found last: a bulk transfer's segments belong to one flow,
   *  whose tuple is then compared without hashing it (cleared when that side goes). */
  private readonly recent: (FlowSide | undefined)[] = new Array<FlowSide | undefined>(8).fill(undefined);
  private total = 0;

  constructor(
    /** Bound on live flows of every kind together: insert() refuses beyond it. Each part bounds
     *  its own kind too. */
    readonly maxFlows = 16384,
    /** The hash key: makes the buckets unpredictable to a guest choosing its tuples. */
    private readonly secret: number = (Math.random() * 0x1_0000_0000) >>> 0,
  ) {}

  /** Live flows of every kind. */
  get size(): number {
    return this.total;
  }

  /** Live flows of one kind. */
  count(kind: FlowKind): number {
    return this.counts[kind]!;
  }

  /** Whether there is room for one more flow (of any kind). */
  hasRoom(): boolean {
    return this.total < this.maxFlows;
  }

  /** Makes `f` live under its guest side (and host side, when set). False when the table is full
   *  or a flow with the same tuple is live: then `f` stays new. */
  insert(f: Flow): boolean {
    if (f.live || this.total >= this.maxFlows) return false;
    const g = f.guestSide;
    if (this.findSide(f.kind, g.side, f.family, g.a, inanyOffset(g.a), g.aPort, g.b, inanyOffset(g.b), g.bPort)) return false;
    this.link(g, f.kind, f.family);
    if (f.hostSide) this.link(f.hostSide, f.kind, inanyFamily(f.hostSide.a));
    f.live = true;
    this.counts[f.kind]!++;
    this.total++;
    return true;
  }

  /** Makes `f` gone: unindexed, uncounted. Removing a flow that is not live does nothing. */
  remove(f: Flow): void {
    if (!f.live) return;
    f.live = false;
    this.unlink(f.guestSide);
    if (f.hostSide) this.unlink(f.hostSide);
    this.counts[f.kind]!--;
    this.total--;
  }

  /**
   * The live flow of `kind` whose guest side is (a:aPort, b:bPort), the addresses read in place
   * as `family` addresses at a[aOff] and b[bOff] (4 or 16 bytes: a packet's header, or an Inany's
   * own bytes via inanyOffset).
   */
  find(kind: FlowKind, family: 4 | 6, a: Uint8Array, aOff: number, aPort: number, b: Uint8Array, bOff: number, bPort: number): Flow | undefined {
    return this.findSide(kind, FlowSideName.GUEST, family, a, aOff, aPort, b, bOff, bPort)?.flow;
  }

  /** As find(), for a host side. */
  findHost(kind: FlowKind, family: 4 | 6, a: Uint8Array, aOff: number, aPort: number, b: Uint8Array, bOff: number, bPort: number): Flow | undefined {
    return this.findSide(kind, FlowSideName.HOST, family, a, aOff, aPort, b, bOff, bPort)?.flow;
  }

  /** Every live flow (for listing; not on a hot path). */
  *flows(): IterableIterator<Flow> {
    for (const head of this.buckets.values()) {
      for (let s: FlowSide | undefined = head; s; s = s.next) if (s.side === FlowSideName.GUEST) yield s.flow;
    }
  }

  private findSide(
    kind: FlowKind,
    side: FlowSideName,
    family: 4 | 6,
    a: Uint8Array,
    aOff: number,
    aPort: number,
    b: Uint8Array,
    bOff: number,
    bPort: number,
  ): FlowSide | undefined {
    const alen = ipFamily(family).alen;
    const slot = side * 4 + kind;
    const r = this.recent[slot];
    if (r && r.aPort === aPort && r.bPort === bPort && r.family === family && bytesEqual(r.a, r.off, a, aOff, alen) && bytesEqual(r.b, r.off, b, bOff, alen))
      return r;
    const hash = this.hash(kind, side, family, a, aOff, aPort, b, bOff, bPort);
    for (let s = this.buckets.get(hash); s; s = s.next) {
      if (s.hash !== hash || s.aPort !== aPort || s.bPort !== bPort || s.family !== family || s.side !== side || s.flow.kind !== kind) continue;
      if (bytesEqual(s.a, s.off, a, aOff, alen) && bytesEqual(s.b, s.off, b, bOff, alen)) {
        this.recent[slot] = s;
        return s;
      }
    }
    return undefined;
  }

  private link(s: FlowSide, kind: FlowKind, family: 4 | 6): void {
    s.family = family;
    s.off = family === 4 ? INANY_V4_OFFSET : 0;
    s.hash = this.hash(kind, s.side, family, s.a, inanyOffset(s.a), s.aPort, s.b, inanyOffset(s.b), s.bPort);
    s.next = this.buckets.get(s.hash);
    this.buckets.set(s.hash, s);
  }

  private unlink(s: FlowSide): void {
    const slot = s.side * 4 + s.flow.kind;
    if (this.recent[slot] === s) this.recent[slot] = undefined;
    let prev: FlowSide | undefined;
    for (let t = this.buckets.get(s.hash); t; prev = t, t = t.next) {
      if (t !== s) continue;
      if (prev) prev.next = t.next;
      else if (t.next) this.buckets.set(s.hash, t.next);
      else this.buckets.delete(s.hash);
      s.next = undefined;
      return;
    }
  }

  /** A 32-bit hash of a tuple (FNV-1a, keyed), the addresses read in place. Signed: a small
   *  integer, never a boxed number (nothing allocated per lookup). */
  private hash(
    kind: FlowKind,
    side: FlowSideName,
    family: 4 | 6,
    a: Uint8Array,
    aOff: number,
    aPort: number,
    b: Uint8Array,
    bOff: number,
    bPort: number,
  ): number {
    let h = Math.imul((0x811c9dc5 ^ this.secret ^ (kind << 8) ^ (side << 12) ^ family) >>> 0, 0x01000193);
    const alen = ipFamily(family).alen;
    for (let i = 0; i < alen; i++) h = Math.imul(h ^ a[aOff + i]!, 0x01000193);
    for (let i = 0; i < alen; i++) h = Math.imul(h ^ b[bOff + i]!, 0x01000193);
    h = Math.imul(h ^ aPort, 0x01000193);
    h = Math.imul(h ^ bPort, 0x01000193);
    return h | 0;
  }
}

/** A flow that owns one host socket (closed when the flow ends). */
export interface SocketFlow extends Flow {
  socket: { close(): void } | undefined;
}

/**
 * What the NAT parts whose flows each own a host socket and end when idle (the UDP NAT, the echo
 * proxy) share: their flows live in the table and in an idle list; a flow ends with its socket.
 */
export abstract class IdleSocketFlows<F extends SocketFlow> {
  protected readonly idle: IdleFlows<F>;

  constructor(
    protected readonly table: FlowTable,
    idleMs: number,
  ) {
    this.idle = new IdleFlows<F>(idleMs);
  }

  /** Ends a flow: out of the table and the idle list, its socket closed. */
  protected close(f: F): void {
    this.table.remove(f);
    this.idle.delete(f);
    f.socket?.close();
    f.socket = undefined;
  }

  /** Expires idle flows. */
  poll(now: number): void {
    this.idle.expire(now, (f) => this.close(f));
  }

  pollAt(): number {
    return this.idle.pollAt();
  }

  closeAll(): void {
    for (const f of this.idle.all()) this.close(f);
  }

  /** Closes the flows whose guest address `owns` says is a departed guest's; returns how many. */
  closeGuest(owns: (guest: Inany) => boolean): number {
    return this.idle.endWhere(
      (f) => owns(f.guest),
      (f) => this.close(f),
    );
  }

  get flowCount(): number {
    return this.idle.size;
  }
}

/**
 * Flows of one part that end when idle: least recently used first (an intrusive list), so that
 * expiry takes only the due ones and a full part evicts its oldest without a walk.
 */
export class IdleFlows<F extends Flow> {
  private head: F | undefined;
  private tail: F | undefined;
  private n = 0;

  constructor(
    /** Idle time after which a flow ends, ms. */
    readonly idleMs: number,
  ) {}

  get size(): number {
    return this.n;
  }

  /** The least recently used flow. */
  get oldest(): F | undefined {
    return this.head;
  }

  /** Adds `f` as the most recently used. */
  add(f: F): void {
    f.idleList = this;
    f.idlePrev = this.tail;
    f.idleNext = undefined;
    if (this.tail) this.tail.idleNext = f;
    else this.head = f;
    this.tail = f;
    this.n++;
  }

  delete(f: F): void {
    if (f.idleList !== (this as IdleFlows<Flow>)) return;
    if (f.idlePrev) f.idlePrev.idleNext = f.idleNext;
    else this.head = f.idleNext as F | undefined;
    if (f.idleNext) f.idleNext.idlePrev = f.idlePrev;
    else this.tail = f.idlePrev as F | undefined;
    f.idleList = f.idlePrev = f.idleNext = undefined;
    this.n--;
  }

  /** Makes room for one more flow of a part bounded at `max` in `table`: when the part or the
   *  table is full, the part's least recently used flow is ended (by `end`). */
  makeRoom(max: number, table: FlowTable, end: (f: F) => void): void {
    if (this.n < max && table.hasRoom()) return;
    const oldest = this.head;
    if (oldest) end(oldest);
  }

  /** Marks `f` used at `now`: it becomes the most recently used. */
  touch(f: F, now: number): void {
    f.lastUse = now;
    if (this.tail === f || f.idleList !== (this as IdleFlows<Flow>)) return;
    this.delete(f);
    this.add(f);
  }

  /** The flows idle for idleMs at `now`, oldest first, at most `max` (each is ended by `end`,
   *  which must delete it from this list). */
  expire(now: number, end: (f: F) => void, max = 1024): void {
    for (let i = 0; i < max; i++) {
      const f = this.head;
      if (!f || now - f.lastUse < this.idleMs) return;
      end(f);
      if (this.head === f) this.delete(f); // (an `end` that forgot)
    }
  }

  /** When the oldest flow falls due. */
  pollAt(): number {
    return this.head ? this.head.lastUse + this.idleMs : Infinity;
  }

  /** Ends (`end`) every flow `which` picks; returns how many. */
  endWhere(which: (f: F) => boolean, end: (f: F) => void): number {
    let n = 0;
    for (const f of this.all()) {
      if (!which(f)) continue;
      end(f);
      n++;
    }
    return n;
  }

  /** Every flow in the list, oldest first (a copy: `end` may delete). */
  all(): F[] {
    const out: F[] = [];
    for (let f = this.head; f; f = f.idleNext as F | undefined) out.push(f);
    return out;
  }
}
