// The neighbour cache (RFC 4861 §7.2, §7.3, Appendix C) with an injected clock and random source:
// every edge with its exact timing, the NA flag table, queues, bounds, both key types, hooks that
// call back in, and random operation sequences that must keep the bounds.
import fc from 'fast-check';
import t from 'tap';
import { MemoryBudget } from '../../src/iface/memory-budget.js';
import { NeighborCache, NeighborState, ipv6Key, ipv6KeyBytes } from '../../src/iface/neighbor.js';
import type { NeighborHooks, NeighborOptions, QueuedPacket } from '../../src/iface/neighbor.js';

const { INCOMPLETE, REACHABLE, STALE, DELAY, PROBE } = NeighborState;
const MAC1 = Uint8Array.of(2, 0, 0, 0, 0, 1);
const MAC2 = Uint8Array.of(2, 0, 0, 0, 0, 2);
const S1O1 = { solicited: true, override: true };
const S0O0 = { solicited: false, override: false };
const STALE_TIMEOUT = 600_000;

/** A packet of `len` bytes whose first byte names it. */
const pkt = (n: number, len = 4) => new Uint8Array(len).fill(n);
/** "@1" for MAC1: the hooks' arguments, short enough to compare whole logs. */
const mac = (m: Uint8Array | undefined) => (m ? `@${m[5]}` : '');
const packets = (q: readonly QueuedPacket[]) => q.map((p) => `${p.bytes[0]}${p.tag === undefined ? '' : `:${String(p.tag as string | number)}`}`);

/** A cache whose hook calls land in a log; take() returns and clears it. */
function rig<K extends number | string = number>(opts: NeighborOptions = {}, extra: Partial<NeighborHooks<K>> = {}) {
  let log: string[] = [];
  const line = (...parts: string[]) => log.push(parts.filter((p) => p !== '').join(' '));
  const cache: NeighborCache<K> = new NeighborCache<K>(
    {
      solicit: (key, to) => {
        line('solicit', String(key), mac(to));
        extra.solicit?.(key, to);
      },
      resolved: (key, m, q) => {
        line('resolved', String(key), mac(m), ...packets(q));
        extra.resolved?.(key, m, q);
      },
      failed: (key, q) => {
        line('failed', String(key), ...packets(q));
        extra.failed?.(key, q);
      },
    },
    { random: () => 0.5, ...opts },
  );
  const take = () => {
    const l = log;
    log = [];
    return l;
  };
  const info = (key: K) => cache.list().find((e) => e.key === key);
  return { cache, take, info };
}

/** Entries in each resolved state with MAC1, for table-driven tests (default random: RT = 30 s). */
function enter(cache: NeighborCache<number>, key: number, state: NeighborState): void {
  switch (state) {
    case INCOMPLETE:
      cache.resolve(key, 0);
      return;
    case REACHABLE:
      cache.resolve(key, 0);
      cache.confirm(key, MAC1, 0, S1O1);
      return;
    case STALE:
      cache.learn(key, MAC1, 0);
      return;
    case DELAY:
      cache.learn(key, MAC1, 0);
      cache.resolve(key, 0);
      return;
    case PROBE:
      cache.learn(key, MAC1, 0);
      cache.resolve(key, 0);
      cache.poll(5000);
      return;
  }
}

// --- INCOMPLETE ---------------------------------------------------------------------------------

t.test('INCOMPLETE: a multicast solicitation every RetransTimer, failure after the third (§7.2.2)', async (t) => {
  const { cache, take } = rig();
  t.equal(cache.pollAt(), Infinity, 'nothing to do when empty');
  t.equal(cache.resolve(7, 0, pkt(1), 'a'), undefined, 'no MAC yet');
  t.same(take(), ['solicit 7'], 'first solicitation at once, multicast');
  t.equal(cache.state(7), INCOMPLETE);
  t.equal(cache.pollAt(), 1000);
  t.equal(cache.resolve(7, 400, pkt(2), 'b'), undefined);
  t.same(take(), [], 'more packets do not solicit again: one per RetransTimer');
  cache.poll(999);
  t.same(take(), []);
  cache.poll(1000);
  t.same(take(), ['solicit 7'], 'second at 1 s');
  t.equal(cache.pollAt(), 2000);
  cache.poll(2000);
  t.same(take(), ['solicit 7'], 'third at 2 s');
  t.equal(cache.pollAt(), 3000);
  cache.poll(2999);
  t.same(take(), [], 'MAX_MULTICAST_SOLICIT reached: no fourth');
  cache.poll(3000);
  t.same(take(), ['failed 7 1:a 2:b'], 'RetransTimer after the third, the queue comes back in order with its tags');
  t.equal(cache.state(7), undefined, 'entry deleted');
  t.equal(cache.pollAt(), Infinity);
  t.equal(cache.queuedBytes, 0);
  t.match(cache.stats, { solicits: 3, failed: 1, resolved: 0 });
  cache.resolve(7, 3500, pkt(3));
  t.same(take(), ['solicit 7'], 'new traffic starts over');
});

t.test('a late poll takes one step, timed from now', async (t) => {
  const { cache, take } = rig();
  cache.resolve(7, 0);
  take();
  cache.poll(10_000);
  t.same(take(), ['solicit 7'], 'one retransmission, not a burst');
  t.equal(cache.pollAt(), 11_000);
});

t.test('INCOMPLETE → REACHABLE on a solicited answer; the queue goes out in order', async (t) => {
  const { cache, take, info } = rig();
  cache.resolve(7, 0, pkt(1), 'a');
  cache.resolve(7, 10, pkt(2), 'b');
  cache.resolve(7, 20, pkt(3));
  take();
  cache.confirm(7, MAC1, 500, S1O1);
  t.same(take(), ['resolved 7 @1 1:a 2:b 3'], 'sent to the new MAC');
  t.equal(cache.state(7), REACHABLE);
  t.equal(info(7)?.deadline, 500 + 30_000, 'ReachableTime = 30 s × (0.5 + 0.5)');
  t.same(cache.resolve(7, 600, pkt(4)), MAC1, 'now the MAC comes back directly');
  t.equal(cache.queuedBytes, 0, 'nothing queued any more');
  t.match(cache.stats, { resolved: 1, solicits: 1 });
  cache.poll(1000);
  t.same(take(), [], 'no retransmission after resolution');
});

t.test('INCOMPLETE → STALE on an unsolicited NA or a hint; NA without TLLA ignored', async (t) => {
  for (const [what, act] of [
    ['NA S=0 O=0', (c: NeighborCache<number>) => c.confirm(7, MAC1, 5, S0O0)],
    ['NA S=0 O=1', (c: NeighborCache<number>) => c.confirm(7, MAC1, 5, { solicited: false, override: true })],
    ['NS/ARP request (learn)', (c: NeighborCache<number>) => c.learn(7, MAC1, 5)],
  ] as const) {
    const { cache, take, info } = rig();
    cache.resolve(7, 0, pkt(1));
    take();
    act(cache);
    t.same(take(), ['resolved 7 @1 1'], `${what}: queue sent`);
    t.equal(cache.state(7), STALE, `${what}: STALE`);
    t.equal(info(7)?.deadline, 5 + STALE_TIMEOUT);
  }
  const { cache, take } = rig();
  cache.resolve(7, 0, pkt(1));
  take();
  cache.confirm(7, undefined, 5, S1O1);
  t.same(take(), [], '§7.2.5: no target link-layer address while INCOMPLETE: discarded');
  t.equal(cache.state(7), INCOMPLETE);
});

t.test("queued packets are copies: the solicitation may reuse the caller's buffer", async (t) => {
  const shared = pkt(1, 64);
  const { cache, take } = rig({}, { solicit: () => shared.fill(0xee) });
  cache.resolve(7, 0, shared);
  cache.confirm(7, MAC1, 1, S1O1);
  t.same(take(), ['solicit 7', 'resolved 7 @1 1']);
});

// --- REACHABLE, STALE, DELAY, PROBE ---------------------------------------------------------

t.test('REACHABLE → STALE at the randomized ReachableTime (§6.3.2, §7.3.3)', async (t) => {
  for (const [r, rt] of [
    [0, 15_000],
    [0.25, 22_500],
    [0.999, 44_970],
  ] as const) {
    const { cache, info } = rig({ random: () => r });
    enter(cache, 7, REACHABLE);
    t.equal(info(7)?.deadline, rt, `random ${r}: ReachableTime ${rt} ms`);
    t.equal(cache.pollAt(), rt);
    cache.poll(rt - 1);
    t.equal(cache.state(7), REACHABLE);
    cache.poll(rt);
    t.equal(cache.state(7), STALE, 'STALE once ReachableTime has passed');
    t.equal(cache.pollAt(), rt + STALE_TIMEOUT, 'then only the garbage-collection timer');
  }
});

t.test('ReachableTime is one value for the link, drawn again every two hours', async (t) => {
  const draws = [0, 0.5];
  let calls = 0;
  const { cache, info } = rig({ random: () => draws[calls++] ?? 0.5 });
  enter(cache, 7, REACHABLE);
  t.equal(info(7)?.deadline, 15_000);
  cache.confirm(7, MAC1, 3_600_000, S1O1);
  t.equal(info(7)?.deadline, 3_600_000 + 15_000, 'same value an hour later');
  cache.resolve(8, 3_600_000);
  cache.confirm(8, MAC2, 3_600_000, S1O1);
  t.equal(info(8)?.deadline, 3_600_000 + 15_000, 'and for another neighbour');
  t.equal(calls, 1);
  cache.confirm(7, MAC1, 7_200_000, S1O1);
  t.equal(info(7)?.deadline, 7_200_000 + 30_000, 'redrawn after two hours');
  t.equal(calls, 2);
});

t.test('STALE → DELAY on use; DELAY → PROBE → deleted, with exact timings (§7.3.3)', async (t) => {
  const { cache, take, info } = rig();
  cache.learn(7, MAC1, 0);
  t.equal(cache.state(7), STALE, 'unsolicited information creates a STALE entry');
  t.same(take(), [], 'and sends nothing');
  t.same(cache.resolve(7, 1000, pkt(1)), MAC1, 'a STALE MAC is used');
  t.equal(cache.state(7), DELAY, 'STALE → DELAY on first use');
  t.equal(cache.pollAt(), 6000, 'DELAY_FIRST_PROBE_TIME = 5 s');
  cache.resolve(7, 3000);
  t.equal(info(7)?.deadline, 6000, 'later uses do not restart the delay');
  cache.poll(5999);
  t.same(take(), []);
  cache.poll(6000);
  t.equal(cache.state(7), PROBE, 'DELAY → PROBE');
  t.same(take(), ['solicit 7 @1'], 'the first probe at once, unicast to the cached MAC');
  t.same(cache.resolve(7, 6500, pkt(2)), MAC1, 'PROBE still sends to the cached MAC');
  t.equal(cache.queuedBytes, 0, 'nothing is queued outside INCOMPLETE');
  t.equal(cache.pollAt(), 7000);
  cache.poll(7000);
  t.same(take(), ['solicit 7 @1'], 'second probe at +1 s');
  cache.poll(8000);
  t.same(take(), ['solicit 7 @1'], 'third at +2 s');
  cache.poll(8999);
  t.same(take(), [], 'MAX_UNICAST_SOLICIT = 3');
  t.equal(cache.state(7), PROBE);
  cache.poll(9000);
  t.same(take(), ['failed 7'], 'RetransTimer after the last probe: the neighbour is unreachable');
  t.equal(cache.state(7), undefined, 'entry deleted');
  t.match(cache.stats, { unreachable: 1, solicits: 3, failed: 0 });
  t.equal(cache.resolve(7, 9001, pkt(3)), undefined, 'subsequent traffic resolves again');
  t.same(take(), ['solicit 7']);
});

t.test('DELAY and PROBE → REACHABLE on confirmation', async (t) => {
  for (const from of [DELAY, PROBE]) {
    for (const [what, act] of [
      ['NA S=1 O=0, same MAC', (c: NeighborCache<number>) => c.confirm(7, MAC1, 5100, { solicited: true, override: false })],
      ['ARP reply (S=1 O=1)', (c: NeighborCache<number>) => c.confirm(7, MAC1, 5100, S1O1)],
      ['NA S=1 without TLLA', (c: NeighborCache<number>) => c.confirm(7, undefined, 5100, { solicited: true, override: false })],
      ['upper-layer confirmation', (c: NeighborCache<number>) => c.upperLayerConfirm(7, 5100)],
    ] as const) {
      const { cache, take, info } = rig();
      enter(cache, 7, from);
      take();
      act(cache);
      t.equal(cache.state(7), REACHABLE, `${from}: ${what}`);
      t.equal(info(7)?.deadline, 5100 + 30_000);
      cache.poll(8000);
      t.same(take(), [], 'no more probes');
    }
  }
});

t.test('STALE entries unused for staleTimeout are forgotten (§5.3)', async (t) => {
  const { cache, take } = rig();
  cache.learn(7, MAC1, 0);
  cache.poll(STALE_TIMEOUT - 1);
  t.equal(cache.state(7), STALE);
  cache.poll(STALE_TIMEOUT);
  t.equal(cache.state(7), undefined);
  t.same(take(), [], 'silently');
  t.equal(cache.stats.collected, 1);
  t.equal(cache.pollAt(), Infinity);
});

t.test('upper-layer confirmation: STALE and REACHABLE → REACHABLE; nothing for INCOMPLETE or unknown keys', async (t) => {
  const { cache, info } = rig();
  cache.learn(7, MAC1, 0);
  cache.upperLayerConfirm(7, 10);
  t.equal(cache.state(7), REACHABLE);
  cache.upperLayerConfirm(7, 20);
  t.equal(info(7)?.deadline, 20 + 30_000, 'refreshes ReachableTime');
  cache.resolve(8, 0);
  cache.upperLayerConfirm(8, 30);
  t.equal(cache.state(8), INCOMPLETE);
  cache.upperLayerConfirm(9, 30);
  t.equal(cache.size, 2);
});

// --- The NA flag table (§7.2.5, Appendix C) ---------------------------------------------------

t.test('NA flag table for every state past INCOMPLETE', async (t) => {
  type Row = [s: boolean, o: boolean, tlla: 'same' | 'new' | 'none', r: string, st: string, d: string, p: string, mac: Uint8Array];
  // Expected next state from REACHABLE, STALE, DELAY, PROBE ('-': unchanged, timer included), and
  // the MAC afterwards.
  const rows: Row[] = [
    [false, false, 'same', '-', '-', '-', '-', MAC1],
    [false, false, 'new', STALE, '-', '-', '-', MAC1],
    [false, true, 'same', '-', '-', '-', '-', MAC1],
    [false, true, 'new', STALE, STALE, STALE, STALE, MAC2],
    [true, false, 'same', REACHABLE, REACHABLE, REACHABLE, REACHABLE, MAC1],
    [true, false, 'new', STALE, '-', '-', '-', MAC1],
    [true, true, 'same', REACHABLE, REACHABLE, REACHABLE, REACHABLE, MAC1],
    [true, true, 'new', REACHABLE, REACHABLE, REACHABLE, REACHABLE, MAC2],
    [false, true, 'none', '-', '-', '-', '-', MAC1],
    [true, false, 'none', REACHABLE, REACHABLE, REACHABLE, REACHABLE, MAC1],
  ];
  const now = 5100;
  for (const [s, o, tlla, ...rest] of rows) {
    const want = rest.slice(0, 4) as string[];
    const wantMac = rest[4];
    [REACHABLE, STALE, DELAY, PROBE].forEach((from, i) => {
      const { cache, take, info } = rig();
      enter(cache, 7, from);
      take();
      const before = info(7)!;
      cache.confirm(7, tlla === 'none' ? undefined : tlla === 'same' ? MAC1 : MAC2, now, { solicited: s, override: o });
      const after = info(7)!;
      const name = `${from} + NA S=${+s} O=${+o} ${tlla} MAC`;
      const to = want[i]!;
      if (to === '-') {
        t.same(after, before, `${name}: unchanged`);
      } else {
        t.equal(after.state, to, `${name} → ${to}`);
        t.equal(after.deadline, now + (to === (REACHABLE as string) ? 30_000 : STALE_TIMEOUT), `${name}: timer restarted`);
      }
      t.same(after.mac, wantMac, `${name}: MAC ${mac(wantMac)}`);
      t.same(take(), [], `${name}: no hook call`);
    });
  }
});

t.test('an NA or ARP reply for an unknown address creates nothing (§7.2.5)', async (t) => {
  const { cache, take } = rig();
  cache.confirm(99, MAC1, 0, S1O1);
  cache.confirm(99, MAC1, 0, { solicited: false, override: true });
  t.equal(cache.size, 0);
  t.same(take(), []);
});

t.test('hints (NS, RS, ARP request) per §7.2.3', async (t) => {
  for (const from of [REACHABLE, STALE, DELAY, PROBE]) {
    const { cache, take, info } = rig();
    enter(cache, 7, from);
    take();
    const before = info(7)!;
    cache.learn(7, MAC1, 5100);
    t.same(info(7), before, `${from}: same MAC: unchanged`);
    cache.learn(7, MAC2, 5200);
    t.same(info(7), { key: 7, state: STALE, mac: MAC2, deadline: 5200 + STALE_TIMEOUT }, `${from}: new MAC: STALE with it`);
    t.same(take(), []);
  }
});

// --- Queues ---------------------------------------------------------------------------------

t.test('per-entry queue: the new arrival replaces the oldest (§7.2.2)', async (t) => {
  const { cache, take } = rig({ maxQueuedPerEntry: 3 });
  for (let i = 1; i <= 5; i++) cache.resolve(7, i, pkt(i));
  t.equal(cache.stats.queuedDropped, 2);
  t.equal(cache.queuedBytes, 12);
  take();
  cache.confirm(7, MAC1, 10, S1O1);
  t.same(take(), ['resolved 7 @1 3 4 5'], 'the three newest, in order');
  t.equal(cache.queuedBytes, 0);
});

t.test('the default per-entry queue holds 8 packets', async (t) => {
  const { cache, take } = rig();
  for (let i = 1; i <= 9; i++) cache.resolve(7, 0, pkt(i));
  take();
  cache.poll(1000);
  cache.poll(2000);
  cache.poll(3000);
  t.same(take().at(-1), 'failed 7 2 3 4 5 6 7 8 9');
  t.equal(cache.stats.queuedDropped, 1);
});

t.test('total byte bound: the oldest packet anywhere goes first', async (t) => {
  const { cache, take } = rig({ maxQueuedBytes: 100 });
  cache.resolve(1, 0, pkt(1, 40));
  cache.resolve(2, 1, pkt(2, 40));
  t.equal(cache.queuedBytes, 80);
  cache.resolve(1, 2, pkt(3, 40));
  t.equal(cache.queuedBytes, 80, 'packet 1 made room');
  cache.resolve(2, 3, pkt(4, 40));
  t.equal(cache.stats.queuedDropped, 2, 'then packet 2');
  cache.resolve(3, 4, pkt(5, 101));
  t.equal(cache.stats.queuedDropped, 3, 'a packet larger than the whole budget is dropped alone');
  t.equal(cache.queuedBytes, 80);
  take();
  cache.learn(1, MAC1, 5);
  cache.learn(2, MAC2, 5);
  t.same(take(), ['resolved 1 @1 3', 'resolved 2 @2 4']);
  t.equal(cache.queuedBytes, 0, 'budget free again');
  cache.resolve(4, 6, pkt(6, 100));
  t.equal(cache.queuedBytes, 100, 'a packet of exactly the budget fits');
});

t.test('remove() and clear() drop queued packets without answering them', async (t) => {
  const { cache, take } = rig();
  cache.resolve(1, 0, pkt(1));
  cache.resolve(1, 0, pkt(2));
  cache.resolve(2, 0, pkt(3));
  cache.learn(3, MAC1, 0);
  take();
  cache.remove(1);
  t.equal(cache.state(1), undefined);
  t.equal(cache.stats.queuedDropped, 2);
  cache.remove(42);
  cache.clear();
  t.equal(cache.size, 0);
  t.equal(cache.stats.queuedDropped, 3);
  t.equal(cache.queuedBytes, 0);
  t.equal(cache.pollAt(), Infinity);
  t.same(take(), []);
  cache.poll(10_000);
  t.same(take(), [], 'no timer left behind');
});

// --- Table bounds ---------------------------------------------------------------------------

t.test('a flood of hints keeps the table bounded and the entry in use', async (t) => {
  const { cache } = rig({ maxEntries: 8 });
  cache.learn(1, MAC1, 0);
  for (let k = 100; k < 1100; k++) {
    cache.resolve(1, k); // the guest's address keeps being used
    cache.learn(k, MAC2, k);
    if (cache.size > 8) t.fail(`size ${cache.size}`);
  }
  t.equal(cache.size, 8);
  t.ok(cache.state(1) !== undefined, 'the entry in use survives');
  t.equal(cache.stats.evicted, 1000 - 7);
  t.same(
    cache
      .list()
      .map((e) => e.key)
      .filter((k) => k !== 1)
      .sort((a, b) => a - b),
    [1093, 1094, 1095, 1096, 1097, 1098, 1099],
    'the least recently used went first',
  );
});

t.test('a flood of lookups for distinct addresses: INCOMPLETE entries are capped (RFC 6583)', async (t) => {
  const { cache, take } = rig({ maxEntries: 8, maxIncomplete: 2 });
  for (let k = 1; k <= 5; k++) enter(cache, k, REACHABLE);
  take();
  const failed: string[] = [];
  for (let k = 100; k < 200; k++) {
    cache.resolve(k, 10, pkt(k % 256));
    if (cache.list().filter((e) => e.state === INCOMPLETE).length > 2) t.fail('too many INCOMPLETE');
    failed.push(...take().filter((l) => l.startsWith('failed')));
  }
  t.same(
    [1, 2, 3, 4, 5].map((k) => cache.state(k)),
    [REACHABLE, REACHABLE, REACHABLE, REACHABLE, REACHABLE],
    'resolved entries untouched',
  );
  t.equal(cache.size, 7);
  t.equal(failed.length, 98, 'each displaced lookup hands its packet back');
  t.equal(failed[0], 'failed 100 100');
  t.equal(cache.stats.evicted, 98);
});

t.test('a new INCOMPLETE entry in a full table displaces the least recently used resolved one', async (t) => {
  const { cache, take } = rig({ maxEntries: 4 });
  for (let k = 1; k <= 4; k++) cache.learn(k, MAC1, k);
  cache.resolve(1, 10); // 1 is now the most recently used
  cache.resolve(9, 11, pkt(9));
  t.same(
    cache.list().map((e) => e.key),
    [1, 3, 4, 9],
    '2 went',
  );
  t.same(take(), ['solicit 9'], 'silently: a resolved entry has nothing queued');
});

t.test('a table of INCOMPLETE entries gives up the oldest', async (t) => {
  const { cache, take } = rig({ maxEntries: 2, maxIncomplete: 2 });
  cache.resolve(1, 0, pkt(1));
  cache.resolve(2, 1, pkt(2));
  take();
  cache.resolve(3, 2, pkt(3));
  t.same(take(), ['failed 1 1', 'solicit 3']);
  t.same(
    cache.list().map((e) => e.key),
    [2, 3],
  );
});

t.test('options are checked', async (t) => {
  const hooks = { solicit() {}, resolved() {}, failed() {} };
  for (const bad of [{ maxEntries: 0 }, { maxIncomplete: 1.5 }, { maxQueuedPerEntry: 0 }, { maxMulticastSolicit: -1 }]) {
    t.throws(() => new NeighborCache<number>(hooks, bad), RangeError, JSON.stringify(bad));
  }
});

// --- Hooks that call back in ------------------------------------------------------------------

t.test('hooks run on a settled cache and may call back in', async (t) => {
  {
    // The owner answers a failure by sending again (an RST to the guest, say): a new resolution.
    let cache!: NeighborCache<number>;
    const r = rig({}, { failed: (key) => void cache.resolve(key, 3000, pkt(9)) });
    cache = r.cache;
    cache.resolve(7, 0, pkt(1));
    cache.poll(1000);
    cache.poll(2000);
    r.take();
    cache.poll(3000);
    t.same(r.take(), ['failed 7 1', 'solicit 7'], 'the failure, then a new resolution');
    t.equal(cache.state(7), INCOMPLETE);
    t.equal(cache.pollAt(), 4000);
    t.equal(cache.queuedBytes, 4);
  }
  {
    let cache!: NeighborCache<number>;
    const seen: unknown[] = [];
    const r = rig(
      { maxEntries: 1 },
      {
        solicit: (key) => seen.push(`solicit ${key}: ${cache.state(key)}`),
        failed: (key) => seen.push(`failed ${key}: ${cache.state(key)}, 2 is ${cache.state(2)}`),
        resolved: (key) => seen.push(`resolved ${key}: ${mac(cache.resolve(key, 5))}`),
      },
    );
    cache = r.cache;
    cache.resolve(1, 0, pkt(1));
    cache.resolve(2, 1, pkt(2));
    cache.confirm(2, MAC1, 2, S1O1);
    t.same(seen, ['solicit 1: INCOMPLETE', 'failed 1: undefined, 2 is INCOMPLETE', 'solicit 2: INCOMPLETE', 'resolved 2: @1']);
  }
});

// --- IPv6 keys --------------------------------------------------------------------------------

t.test('ipv6Key: RFC 4291 text without compression, and back', async (t) => {
  const hdr = new Uint8Array(40);
  hdr.set([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56], 24);
  t.equal(ipv6Key(hdr, 24), 'fe80:0:0:0:5054:ff:fe12:3456', 'read in place, e.g. the destination of a header');
  t.same(ipv6KeyBytes('fe80:0:0:0:5054:ff:fe12:3456'), hdr.subarray(24, 40));
  const out = new Uint8Array(20);
  ipv6KeyBytes('2001:db8:0:0:0:0:0:1', out, 4);
  t.same(out.subarray(4), Uint8Array.of(0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1));
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.uint8Array({ minLength: 16, maxLength: 16 }), (a, b) => {
      const ka = ipv6Key(a, 0);
      if (!ipv6KeyBytes(ka).every((x, i) => x === a[i])) return false;
      return (ka === ipv6Key(b, 0)) === a.every((x, i) => x === b[i]);
    }),
  );
});

t.test('IPv6: the same machine with string keys', async (t) => {
  const { cache, take } = rig<string>();
  const guest = Uint8Array.of(0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15);
  const key = ipv6Key(guest, 0);
  t.equal(cache.resolve(key, 0, pkt(1)), undefined);
  cache.poll(1000);
  t.same(take(), ['solicit 2001:db8:0:0:0:0:0:15', 'solicit 2001:db8:0:0:0:0:0:15']);
  cache.confirm(key, MAC1, 1500, { solicited: true, override: true });
  t.same(take(), ['resolved 2001:db8:0:0:0:0:0:15 @1 1']);
  t.same(cache.resolve(ipv6Key(Uint8Array.from(guest), 0), 1600), MAC1, 'a key made again from other bytes finds it');
  cache.learn(ipv6Key(new Uint8Array(16).fill(0xfe), 0), MAC2, 1700);
  t.same(
    cache.list().map((e) => [e.key, e.state]),
    [
      [key, REACHABLE],
      ['fefe:fefe:fefe:fefe:fefe:fefe:fefe:fefe', STALE],
    ],
  );
});

// --- Properties -------------------------------------------------------------------------------

t.test('random operations never throw, keep every bound, and account for every packet', async (t) => {
  const MAX = { maxEntries: 6, maxIncomplete: 3, maxQueuedPerEntry: 3, maxQueuedBytes: 300 };
  const key = fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 1000 }));
  const op = fc.oneof(
    fc.record({ op: fc.constant('resolve' as const), key, len: fc.option(fc.integer({ min: 0, max: 200 })) }),
    fc.record({ op: fc.constant('confirm' as const), key, mac: fc.constantFrom(MAC1, MAC2, undefined), s: fc.boolean(), o: fc.boolean() }),
    fc.record({ op: fc.constant('learn' as const), key, mac: fc.constantFrom(MAC1, MAC2) }),
    fc.record({ op: fc.constant('upper' as const), key }),
    fc.record({ op: fc.constant('poll' as const), dt: fc.integer({ min: 0, max: 8000 }) }),
    fc.record({ op: fc.constant('remove' as const), key }),
    fc.record({ op: fc.constant('clear' as const) }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 150 }), fc.double({ min: 0, max: 0.999, noNaN: true }), (ops, r) => {
      let now = 0;
      let queuedIn = 0;
      let handedBack = 0;
      let hookCalls = 0;
      const check = (ok: boolean, what: string) => {
        if (!ok) throw new Error(what);
      };
      const cache: NeighborCache<number> = new NeighborCache<number>(
        {
          solicit: (k, to) => {
            hookCalls++;
            const st = cache.state(k);
            check(to === undefined ? st === INCOMPLETE : st === PROBE, `solicit in ${st}`);
          },
          resolved: (k, m, q) => {
            hookCalls++;
            handedBack += q.length;
            check(q.length <= MAX.maxQueuedPerEntry, 'queue bound');
            check(cache.state(k) === REACHABLE || cache.state(k) === STALE, 'resolved state');
            check(cache.lookup(k) === m, 'resolved MAC');
          },
          failed: (k, q) => {
            hookCalls++;
            handedBack += q.length;
            check(q.length <= MAX.maxQueuedPerEntry, 'queue bound');
            check(cache.state(k) === undefined, 'failed entry gone');
          },
        },
        { ...MAX, random: () => r },
      );
      for (const x of ops) {
        switch (x.op) {
          case 'resolve': {
            const m = cache.resolve(x.key, now, x.len === null ? undefined : pkt(1, x.len));
            if (x.len !== null && m === undefined) queuedIn++; // else the caller sends it
            check((m === undefined) === (cache.state(x.key) === INCOMPLETE), 'a MAC unless INCOMPLETE');
            break;
          }
          case 'confirm':
            cache.confirm(x.key, x.mac, now, { solicited: x.s, override: x.o });
            break;
          case 'learn':
            cache.learn(x.key, x.mac, now);
            break;
          case 'upper':
            cache.upperLayerConfirm(x.key, now);
            break;
          case 'poll': {
            // Nothing happens before pollAt(); everything due is done after poll(now).
            const at = cache.pollAt();
            if (at - 1 >= now && at - 1 <= now + x.dt) {
              const before = JSON.stringify(cache.list());
              const calls = hookCalls;
              cache.poll(at - 1);
              check(JSON.stringify(cache.list()) === before && hookCalls === calls, 'poll before pollAt changed something');
            }
            now += x.dt;
            cache.poll(now);
            check(cache.pollAt() > now, 'poll left work due');
            break;
          }
          case 'remove':
            cache.remove(x.key);
            break;
          case 'clear':
            cache.clear();
            break;
        }
        const list = cache.list();
        check(list.length <= MAX.maxEntries, 'table bound');
        check(list.filter((e) => e.state === INCOMPLETE).length <= MAX.maxIncomplete, 'INCOMPLETE bound');
        check(cache.queuedBytes >= 0 && cache.queuedBytes <= MAX.maxQueuedBytes, 'byte bound');
        check(
          list.every((e) => (e.state === INCOMPLETE) === (e.mac === undefined)),
          'MAC iff resolved',
        );
        check(
          list.every((e) => e.deadline >= now && Number.isFinite(e.deadline)),
          'every entry has a timer ahead',
        );
      }
      cache.clear();
      check(cache.queuedBytes === 0, 'nothing left queued');
      check(queuedIn === handedBack + cache.stats.queuedDropped, `packets: ${queuedIn} in, ${handedBack} back, ${cache.stats.queuedDropped} dropped`);
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass('bounds kept, packets accounted for');
});

t.test('queued packets are held in the memory budget: refused, the oldest anywhere goes, then the new one', async (t) => {
  const budget = new MemoryBudget(100);
  const memory = budget.account('neighbors');
  const { cache, take } = rig({ memory });
  t.equal(cache.resolve(1, 0, pkt(1, 40)), undefined);
  t.equal(cache.resolve(2, 0, pkt(2, 40)), undefined);
  t.equal(memory.used, 80);
  cache.resolve(1, 0, pkt(3, 40));
  t.equal(cache.stats.queuedDropped, 1, 'the oldest packet gave way');
  t.equal(memory.used, 80);
  cache.resolve(2, 0, pkt(4, 200));
  t.equal(cache.stats.queuedDropped, 4, 'one that can never fit empties the queues and is dropped too');
  t.equal(memory.used, 0);
  take();
  cache.resolve(1, 0, pkt(5, 10));
  cache.confirm(1, MAC1, 1, { solicited: true, override: true });
  t.equal(memory.used, 0, 'sent once resolved: given back');
});
