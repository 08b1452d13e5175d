// The neighbour state machine (RFC 4861 §7.3, Appendix C) with an injected clock.
import fc from 'fast-check';
import t from 'tap';
import { NeighborCache, NeighborState } from '../../src/iface/neighbor.js';
import type { QueuedPacket } from '../../src/iface/neighbor.js';

const MAC1 = Uint8Array.of(2, 0, 0, 0, 0, 1);
const MAC2 = Uint8Array.of(2, 0, 0, 0, 0, 2);

function rig(opts: ConstructorParameters<typeof NeighborCache<number>>[1] = {}) {
  const log: string[] = [];
  const resolved: { key: number; packets: number[] }[] = [];
  const failed: { key: number; packets: number[] }[] = [];
  const first = (q: readonly QueuedPacket[]) => q.map((p) => p.bytes[0]!);
  const cache = new NeighborCache<number>(
    {
      solicit: (key, mac) => log.push(`${key}:${mac ? 'unicast' : 'multicast'}`),
      resolved: (key, _mac, q) => resolved.push({ key, packets: first(q) }),
      failed: (key, q) => failed.push({ key, packets: first(q) }),
    },
    { random: () => 0.5, ...opts },
  );
  return { cache, log, resolved, failed };
}

const pkt = (n: number) => Uint8Array.of(n, 0, 0, 0);

t.test('INCOMPLETE: three multicast solicitations a second apart, then failure with the queue', async (t) => {
  const { cache, log, failed } = rig();
  t.equal(cache.resolve(7, 0, pkt(1)), undefined, 'no MAC yet');
  t.equal(cache.resolve(7, 10, pkt(2)), undefined);
  t.equal(cache.state(7), NeighborState.Incomplete);
  t.same(log, ['7:multicast'], 'one solicitation at once');
  t.equal(cache.pollAt(), 1000);
  cache.poll(1000);
  cache.poll(2000);
  t.same(log, ['7:multicast', '7:multicast', '7:multicast'], 'MAX_MULTICAST_SOLICIT = 3');
  cache.poll(2999);
  t.same(failed, [], 'not before RetransTimer after the last');
  cache.poll(3000);
  t.same(failed, [{ key: 7, packets: [1, 2] }], 'queued packets handed back in order');
  t.equal(cache.state(7), undefined, 'entry removed');
  t.equal(cache.stats.failed, 1);
});

t.test('INCOMPLETE → REACHABLE on a solicited answer; the queue goes out', async (t) => {
  const { cache, resolved } = rig();
  cache.resolve(7, 0, pkt(1));
  cache.confirm(7, MAC1, 500, { solicited: true, override: true });
  t.equal(cache.state(7), NeighborState.Reachable);
  t.same(resolved, [{ key: 7, packets: [1] }]);
  t.same(cache.resolve(7, 600), MAC1, 'MAC returned directly now');
});

t.test('REACHABLE → STALE → DELAY → PROBE → gone, with the randomized ReachableTime', async (t) => {
  const { cache, log, failed } = rig({ random: () => 0.25 });
  cache.resolve(7, 0);
  cache.confirm(7, MAC1, 0, { solicited: true, override: true });
  // ReachableTime = 30 s × (0.5 + 0.25) = 22.5 s.
  cache.poll(22_499);
  t.equal(cache.state(7), NeighborState.Reachable);
  cache.poll(22_500);
  t.equal(cache.state(7), NeighborState.Stale, 'REACHABLE → STALE after ReachableTime');
  t.same(cache.resolve(7, 30_000), MAC1, 'a STALE entry is still used');
  t.equal(cache.state(7), NeighborState.Delay, 'STALE → DELAY on use');
  cache.poll(34_999);
  t.equal(cache.state(7), NeighborState.Delay);
  cache.poll(35_000);
  t.equal(cache.state(7), NeighborState.Probe, 'DELAY → PROBE after DELAY_FIRST_PROBE_TIME');
  t.equal(log.at(-1), '7:unicast', 'probes are unicast');
  cache.poll(36_000);
  cache.poll(37_000);
  t.equal(log.filter((l) => l === '7:unicast').length, 3, 'MAX_UNICAST_SOLICIT = 3');
  cache.poll(38_000);
  t.equal(cache.state(7), undefined, 'unanswered probes remove the entry');
  t.same(failed, [{ key: 7, packets: [] }]);
});

t.test('DELAY → REACHABLE on confirmation; PROBE → REACHABLE too', async (t) => {
  const { cache } = rig();
  cache.learn(7, MAC1, 0);
  t.equal(cache.state(7), NeighborState.Stale, 'unsolicited information creates STALE');
  cache.resolve(7, 1);
  t.equal(cache.state(7), NeighborState.Delay);
  cache.confirm(7, MAC1, 2, { solicited: true, override: false });
  t.equal(cache.state(7), NeighborState.Reachable);
  cache.learn(8, MAC1, 0);
  cache.resolve(8, 0);
  cache.poll(5000);
  t.equal(cache.state(8), NeighborState.Probe);
  cache.confirm(8, MAC1, 5100, { solicited: true, override: true });
  t.equal(cache.state(8), NeighborState.Reachable);
});

t.test('NA flag table (RFC 4861 §7.2.5)', async (t) => {
  const { cache } = rig();
  const reachable = (k: number) => {
    cache.resolve(k, 0);
    cache.confirm(k, MAC1, 0, { solicited: true, override: true });
  };
  reachable(1);
  cache.confirm(1, MAC2, 1, { solicited: false, override: false });
  t.equal(cache.state(1), NeighborState.Stale, 'O=0, different MAC: REACHABLE → STALE');
  t.same(cache.resolve(1, 2), MAC1, '...and the MAC is kept');
  reachable(2);
  cache.confirm(2, MAC2, 1, { solicited: false, override: true });
  t.equal(cache.state(2), NeighborState.Stale, 'O=1, S=0, different MAC: STALE with the new MAC');
  t.same(cache.list().find((e) => e.key === 2)?.mac, MAC2);
  reachable(3);
  cache.confirm(3, MAC2, 1, { solicited: true, override: true });
  t.equal(cache.state(3), NeighborState.Reachable, 'O=1, S=1: REACHABLE with the new MAC');
  t.same(cache.list().find((e) => e.key === 3)?.mac, MAC2);
  cache.confirm(99, MAC1, 1, { solicited: false, override: true });
  t.equal(cache.state(99), undefined, 'an unsolicited NA creates no entry');
  cache.learn(3, MAC1, 5);
  t.equal(cache.state(3), NeighborState.Stale, 'a solicitation with a new MAC makes it STALE');
});

t.test('bounds: queue per entry, bytes overall, entries', async (t) => {
  const { cache } = rig({ maxQueuedPerEntry: 3, maxQueuedBytes: 64, maxEntries: 4 });
  for (let i = 1; i <= 5; i++) cache.resolve(7, 0, pkt(i));
  t.equal(cache.stats.queuedDropped, 2, 'oldest two dropped');
  cache.resolve(8, 0, new Uint8Array(60).fill(9));
  t.ok(cache.stats.queuedDropped >= 3, 'byte bound evicts queued packets');
  for (let k = 100; k < 120; k++) cache.learn(k, MAC1, k);
  t.ok(cache.size <= 4, `table bounded (${cache.size})`);
  t.ok(cache.stats.evicted > 0);
});

t.test('random operations keep the bounds and never throw', async (t) => {
  fc.assert(
    fc.property(
      fc.array(
        fc.record({ op: fc.integer({ min: 0, max: 4 }), key: fc.integer({ min: 0, max: 20 }), dt: fc.integer({ min: 0, max: 3000 }), s: fc.boolean(), o: fc.boolean() }),
        { maxLength: 200 },
      ),
      (ops) => {
        const { cache } = rig({ maxEntries: 8, maxQueuedPerEntry: 2, maxQueuedBytes: 32 });
        let now = 0;
        for (const x of ops) {
          now += x.dt;
          if (x.op === 0) cache.resolve(x.key, now, pkt(x.key));
          else if (x.op === 1) cache.confirm(x.key, x.s ? MAC1 : MAC2, now, { solicited: x.s, override: x.o });
          else if (x.op === 2) cache.learn(x.key, x.o ? MAC1 : MAC2, now);
          else if (x.op === 3) cache.poll(now);
          else cache.remove(x.key);
          if (cache.size > 8) return false;
          if (cache.pollAt() < now && cache.size > 0) cache.poll(now);
        }
        return true;
      },
    ),
    { numRuns: 300 },
  );
  t.pass('bounded and no exceptions');
});
