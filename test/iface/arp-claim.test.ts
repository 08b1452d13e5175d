// RFC 5227 claims of our IPv4 addresses on their own: each edge of the machine in arp-claim.ts.
import t from 'tap';
import { AddressClaims } from '../../src/iface/arp-claim.js';
import { ipv4 } from '../../src/wire/index.js';

const GW = ipv4(10, 0, 2, 2);
const DNS = ipv4(10, 0, 2, 3);
const GUEST = ipv4(10, 0, 2, 15);

function setup() {
  const seen: string[] = [];
  const name = (a: number): string => (a === GW ? 'gw' : 'dns');
  const claims = new AddressClaims(
    [GW, DNS],
    {
      probe: (a) => seen.push(`probe ${name(a)}`),
      announce: (a) => seen.push(`announce ${name(a)}`),
      conflict: (a, whileProbing) => seen.push(`conflict ${name(a)}${whileProbing ? ' while probing' : ''}`),
    },
    () => 0.5,
  );
  /** Runs the timers until `until`, returning what was sent with the time of each. */
  const run = (until: number): string[] => {
    const out: string[] = [];
    for (let at = claims.pollAt(); at <= until; at = claims.pollAt()) {
      const before = seen.length;
      claims.poll(at);
      for (const s of seen.slice(before)) out.push(`${at} ${s}`);
    }
    return out;
  };
  return { claims, seen, run };
}

t.test('idle until the link comes up; then wait, three probes, ANNOUNCE_WAIT, two announcements', async (t) => {
  const { claims, run } = setup();
  t.equal(claims.pollAt(), Infinity, 'nothing before linkUp');
  t.notOk(claims.probed(0));
  claims.linkUp(0);
  const sent = run(100_000).filter((s) => s.endsWith('gw'));
  // random() = 0.5: PROBE_WAIT 500, probes 1.5 s apart, ANNOUNCE_WAIT 2 s, ANNOUNCE_INTERVAL 2 s.
  t.same(sent, ['500 probe gw', '2000 probe gw', '3500 probe gw', '5500 announce gw', '7500 announce gw']);
  t.ok(claims.probed(0), 'probed: the gateway may be a source');
  t.equal(claims.pollAt(), Infinity, 'claimed: no timer left');
});

t.test('a conflict while probing (ANNOUNCE_WAIT included) ends the claim, told once', async (t) => {
  const { claims, seen, run } = setup();
  claims.linkUp(0);
  run(3500); // three probes each
  claims.heard(GW, GUEST, false); // the guest replies as the gateway's owner, during ANNOUNCE_WAIT
  claims.heard(0, DNS, true); // the guest probes for the DNS address: a conflict while we probe it
  t.same(
    seen.filter((s) => s.startsWith('conflict')),
    ['conflict gw while probing', 'conflict dns while probing'],
    'ANNOUNCE_WAIT still counts as probing (RFC 5227 §2.1.1)',
  );
  t.ok(claims.probed(0), 'given up: the stack goes on');
  claims.heard(GW, GUEST, false);
  t.equal(seen.filter((s) => s.startsWith('conflict')).length, 2, 'told once');
  t.same(run(100_000), [], 'no more probes or announcements');
});

t.test('afterwards, the guest using our address is told each time; a probe for it is not a conflict', async (t) => {
  const { claims, seen, run } = setup();
  claims.linkUp(0);
  run(100_000);
  seen.length = 0;
  claims.heard(0, GW, true); // a probe after we claimed it: we answer it as the owner
  claims.heard(GW, GUEST, true);
  claims.heard(GW, GUEST, true);
  t.same(seen, ['conflict gw', 'conflict gw']);
});

t.test('the link coming up again claims every address over', async (t) => {
  const { claims, run } = setup();
  claims.linkUp(0);
  run(100_000);
  claims.linkUp(200_000);
  t.notOk(claims.probed(0));
  t.equal(run(300_000).filter((s) => s.includes('probe gw')).length, 3);
});
