// Claiming our IPv4 addresses on the guest link (RFC 5227): when the link comes up each address
// is probed (ARP requests from 0.0.0.0) and then announced (ARP requests from the address itself),
// so a guest that already uses it is found before we answer for it. Before editing read RFC 5227
// §1.1 (constants), §2.1 (probing), §2.3 (announcing) and §2.4 (conflicts afterwards).
//
// The states, one line each:
//   IDLE      the link is down: nothing to do
//   WAIT      the random wait before the first probe (up to PROBE_WAIT)
//   PROBE     probes sent (`sent` of PROBE_NUM), PROBE_MIN..PROBE_MAX apart; after the last,
//             ANNOUNCE_WAIT, during which a conflict still counts as found while probing (§2.1.1)
//   ANNOUNCE  announcements sent (`sent` of ANNOUNCE_NUM), ANNOUNCE_INTERVAL apart
//   CLAIMED   all sent: the address is ours, answered for as usual
//   CONFLICT  the guest used or probed it while we probed: no more probes or announcements
//             (vunet keeps routing: the address is the guest's gateway by configuration)
//
// Every state change happens in transition(), with the edge table. Inputs: linkUp(), poll() (the
// timers) and heard() (an ARP packet from the guest). Actions go through the hooks.

/** What claiming asks of the stack. */
export interface ClaimHooks {
  /** Send an ARP probe (§2.1.1: sender IP 0, target the address). */
  probe(addr: number): void;
  /** Send an ARP announcement (§2.3: sender and target IP the address). */
  announce(addr: number): void;
  /** The guest uses (or probes for) the address: `whileProbing` is a conflict that ends the
   *  claim (§2.1.1); otherwise one seen afterwards (§2.4), logged each time. */
  conflict(addr: number, whileProbing: boolean): void;
}

enum ClaimState {
  IDLE,
  WAIT,
  PROBE,
  ANNOUNCE,
  CLAIMED,
  CONFLICT,
}

// RFC 5227 §1.1 constants (ms).
const PROBE_WAIT = 1000;
const PROBE_NUM = 3;
const PROBE_MIN = 1000;
const PROBE_MAX = 2000;
const ANNOUNCE_WAIT = 2000;
const ANNOUNCE_NUM = 2;
const ANNOUNCE_INTERVAL = 2000;

class Claim {
  state = ClaimState.IDLE;
  /** Probes or announcements sent in the current state. */
  sent = 0;
  /** When the timer of WAIT, PROBE or ANNOUNCE fires. */
  next = Infinity;

  constructor(readonly addr: number) {}
}

type ClaimEvent = { kind: 'linkUp'; now: number } | { kind: 'timer'; now: number } | { kind: 'conflict' };

export class AddressClaims {
  private readonly claims: Claim[];

  constructor(
    addresses: readonly number[],
    private readonly hooks: ClaimHooks,
    private readonly random: () => number,
  ) {
    this.claims = addresses.map((a) => new Claim(a));
  }

  /** The link came up: every address is claimed again. */
  linkUp(now: number): void {
    for (const c of this.claims) this.transition(c, { kind: 'linkUp', now });
  }

  pollAt(): number {
    let at = Infinity;
    for (let i = 0; i < this.claims.length; i++) at = Math.min(at, this.claims[i]!.next);
    return at;
  }

  poll(now: number): void {
    for (const c of this.claims) if (now >= c.next) this.transition(c, { kind: 'timer', now });
  }

  /** Probing of the address at `index` is over (announcing, claimed, or given up): it may be a
   *  source now (§2.1.1). */
  probed(index: number): boolean {
    const s = this.claims[index]?.state;
    return s === ClaimState.ANNOUNCE || s === ClaimState.CLAIMED || s === ClaimState.CONFLICT;
  }

  /** An ARP packet from the guest: sender and target IP, and whether it is a request. A packet
   *  from one of our addresses, or a probe for one while we probe it, is a conflict. */
  heard(senderIp: number, targetIp: number, request: boolean): void {
    for (const c of this.claims) {
      if (c.state === ClaimState.IDLE) continue;
      const probing = c.state === ClaimState.WAIT || c.state === ClaimState.PROBE;
      if (senderIp === c.addr || (probing && senderIp === 0 && targetIp === c.addr && request)) this.transition(c, { kind: 'conflict' });
    }
  }

  /**
   * The edge table:
   *   any       --linkUp-->   WAIT       timer: random up to PROBE_WAIT              §2.1.1
   *   WAIT      --timer-->    PROBE      probe 1; timer PROBE_MIN..PROBE_MAX          §2.1.1
   *   PROBE     --timer-->    PROBE      probe 2, 3; after the last, ANNOUNCE_WAIT    §2.1.1
   *   PROBE     --timer-->    ANNOUNCE   (all probes out) announcement 1; ANNOUNCE_INTERVAL §2.3
   *   ANNOUNCE  --timer-->    CLAIMED    (announcement 2 sent)                        §2.3
   *   WAIT, PROBE --conflict--> CONFLICT  told once                                    §2.1.1
   *   ANNOUNCE, CLAIMED --conflict--> same  told each time (the log rate-limits)        §2.4
   *   CONFLICT  --conflict--> CONFLICT  (already told)
   */
  private transition(c: Claim, e: ClaimEvent): void {
    switch (e.kind) {
      case 'linkUp':
        c.state = ClaimState.WAIT;
        c.sent = 0;
        c.next = e.now + this.random() * PROBE_WAIT;
        return;
      case 'timer':
        if (c.state === ClaimState.WAIT || (c.state === ClaimState.PROBE && c.sent < PROBE_NUM)) {
          c.state = ClaimState.PROBE;
          c.sent++;
          c.next = e.now + (c.sent < PROBE_NUM ? PROBE_MIN + this.random() * (PROBE_MAX - PROBE_MIN) : ANNOUNCE_WAIT);
          this.hooks.probe(c.addr);
        } else if (c.state === ClaimState.PROBE || c.state === ClaimState.ANNOUNCE) {
          if (c.state === ClaimState.PROBE) c.sent = 0;
          c.state = ClaimState.ANNOUNCE;
          c.sent++;
          c.next = e.now + ANNOUNCE_INTERVAL;
          this.hooks.announce(c.addr);
          if (c.sent === ANNOUNCE_NUM) {
            c.state = ClaimState.CLAIMED;
            c.next = Infinity;
          }
        }
        return;
      case 'conflict': {
        if (c.state === ClaimState.CONFLICT) return; // told once
        const probing = c.state === ClaimState.WAIT || c.state === ClaimState.PROBE;
        if (probing) {
          c.state = ClaimState.CONFLICT;
          c.next = Infinity;
        }
        this.hooks.conflict(c.addr, probing);
        return;
      }
    }
  }
}
