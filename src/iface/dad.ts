// Duplicate address detection for our own IPv6 addresses (RFC 4862 §5.4): when the link comes up
// each address waits a random delay, is probed once (DupAddrDetectTransmits = 1: one Neighbor
// Solicitation from ::), and is used only if no other node claimed it by RetransTimer later.
// Before editing read RFC 4862 §5.4.2 (sending the probe), §5.4.3 (a probe received), §5.4.4 (an
// advertisement received) and §5.4.5 (when DAD fails).
//
// The states, one line each (AddressState is what the rest of the stack sees):
//   DELAY      tentative: the random delay before the probe (RFC 4862 §5.4.2)
//   PROBE      tentative: the probe is out, RetransTimer running
//   PREFERRED  DAD passed: the address is in use
//   DUPLICATE  another node uses it: never used, until vunet restarts (§5.4.5)
//
// Every state change happens in transition(), with the edge table and the section deciding each
// edge. Inputs: linkUp(), poll() (the timers) and conflict() (what the guest sent). Actions (the
// probe, the log lines) go through the hooks, after the state changed.
import { ipv6Equal, ipv6SolicitedNode } from '../wire/index.js';

/** RFC 4862 §5.4 address states, as the stack uses them. */
export enum AddressState {
  /** DAD in progress: not used as a source, NS for it not answered. */
  Tentative = 'tentative',
  Preferred = 'preferred',
  /** DAD found another node using it: never used. */
  Duplicate = 'duplicate',
}

enum DadState {
  DELAY,
  PROBE,
  PREFERRED,
  DUPLICATE,
}

/** One of our addresses, and where its DAD stands. */
export interface OwnAddress {
  readonly addr: Uint8Array;
  /** Its solicited-node multicast group (RFC 4291 §2.7.1): where probes for it go. */
  readonly group: Uint8Array;
  readonly state: AddressState;
}

class Address implements OwnAddress {
  readonly group = new Uint8Array(16);
  dad = DadState.DELAY;
  /** When the timer of DELAY or PROBE fires. */
  next = Infinity;

  constructor(readonly addr: Uint8Array) {
    ipv6SolicitedNode(this.group, 0, addr, 0);
  }

  get state(): AddressState {
    if (this.dad === DadState.PREFERRED) return AddressState.Preferred;
    return this.dad === DadState.DUPLICATE ? AddressState.Duplicate : AddressState.Tentative;
  }
}

/** What DAD asks of the stack. */
export interface DadHooks {
  /** Send the probe: an NS for the address from :: to its solicited-node group. */
  probe(a: OwnAddress): void;
  /** DAD passed. */
  ready(a: OwnAddress): void;
  /** DAD failed: `why` says what the guest sent. */
  duplicate(a: OwnAddress, why: string): void;
  /** The guest advertised an address we already use: ours stays (counted, logged). */
  contested(a: OwnAddress): void;
}

/** How the guest claimed one of our addresses. */
export type Claim = 'probe' | 'advert';

type DadEvent = { kind: 'linkUp'; now: number } | { kind: 'timer'; now: number } | { kind: 'claim'; claim: Claim };

// RFC 4861 §10 / RFC 4862 §5.1 constants (ms).
const RETRANS_TIMER = 1000;
const MAX_RTR_SOLICITATION_DELAY = 1000;

export class AddressDad {
  private readonly list: Address[];

  constructor(
    addresses: readonly Uint8Array[],
    private readonly hooks: DadHooks,
    private readonly random: () => number,
  ) {
    // Until the link comes up nothing can conflict: DAD starts at linkUp.
    this.list = addresses.map((a) => new Address(a));
  }

  /** Our addresses, in the order given. */
  get addresses(): readonly OwnAddress[] {
    return this.list;
  }

  /** Our address equal to the 16 bytes at b[off], whatever its state. */
  own(b: Uint8Array, off: number): OwnAddress | undefined {
    for (const a of this.list) if (ipv6Equal(a.addr, 0, b, off)) return a;
    return undefined;
  }

  /** RFC 4862 §5.4.2: the link came up (again): every address not found duplicate starts over. */
  linkUp(now: number): void {
    for (const a of this.list) this.transition(a, { kind: 'linkUp', now });
  }

  pollAt(): number {
    let at = Infinity;
    // (Indexed loops in the pollAt()s: asked at the end of every batch, they allocate no iterator
    // in any tier.)
    for (let i = 0; i < this.list.length; i++) {
      const a = this.list[i]!;
      if (a.dad === DadState.DELAY || a.dad === DadState.PROBE) at = Math.min(at, a.next);
    }
    return at;
  }

  poll(now: number): void {
    for (const a of this.list) if (now >= a.next) this.transition(a, { kind: 'timer', now });
  }

  /** The guest probed (an NS from ::) or advertised (an NA) one of our addresses. */
  conflict(a: OwnAddress, claim: Claim): void {
    const own = this.list.find((x) => x === a);
    if (own) this.transition(own, { kind: 'claim', claim });
  }

  /**
   * The edge table:
   *   any but DUPLICATE --linkUp--> DELAY (timer: a random delay up to MAX_RTR_SOLICITATION_DELAY)
   *                                       §5.4.2, and §5.4 "whenever an interface is (re)initialized"
   *   DELAY     --timer-->  PROBE      probe sent, timer: RetransTimer                    §5.4.2
   *   PROBE     --timer-->  PREFERRED  no claim within RetransTimer                       §5.4
   *   DELAY, PROBE --claim--> DUPLICATE  a probe for it (§5.4.3) or an advert of it (§5.4.4)
   *   PREFERRED --claim(advert)--> PREFERRED  contested, kept (§5.4.4 applies to tentative only)
   *   PREFERRED --claim(probe)-->  PREFERRED  the NS is answered: we defend it (RFC 4861 §7.2.4)
   *   DUPLICATE --any--> DUPLICATE  final (§5.4.5)
   */
  private transition(a: Address, e: DadEvent): void {
    if (a.dad === DadState.DUPLICATE) return;
    switch (e.kind) {
      case 'linkUp':
        a.dad = DadState.DELAY;
        a.next = e.now + this.random() * MAX_RTR_SOLICITATION_DELAY;
        return;
      case 'timer':
        if (a.dad === DadState.DELAY) {
          a.dad = DadState.PROBE;
          a.next = e.now + RETRANS_TIMER;
          this.hooks.probe(a);
        } else if (a.dad === DadState.PROBE) {
          a.dad = DadState.PREFERRED;
          a.next = Infinity;
          this.hooks.ready(a);
        }
        return;
      case 'claim':
        if (a.dad === DadState.PREFERRED) {
          if (e.claim === 'advert') this.hooks.contested(a);
          return;
        }
        a.dad = DadState.DUPLICATE;
        a.next = Infinity;
        this.hooks.duplicate(a, e.claim === 'probe' ? 'the guest probed it during our DAD' : 'the guest advertised it during our DAD');
        return;
    }
  }
}
