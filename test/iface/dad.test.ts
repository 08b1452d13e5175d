// Duplicate address detection on its own (RFC 4862 §5.4): each edge of the machine in dad.ts.
import t from 'tap';
import { AddressDad, AddressState } from '../../src/iface/dad.js';
import type { OwnAddress } from '../../src/iface/dad.js';
import { parseIpv6 } from '../../src/wire/index.js';

const A = parseIpv6('fe80::2')!;
const B = parseIpv6('fec0::2')!;

function setup(random = 0.5) {
  const seen: string[] = [];
  const name = (a: OwnAddress): string => (a.addr[0] === 0xfe && a.addr[1] === 0x80 ? 'A' : 'B');
  const dad = new AddressDad(
    [A, B],
    {
      probe: (a) => seen.push(`probe ${name(a)}`),
      ready: (a) => seen.push(`ready ${name(a)}`),
      duplicate: (a, why) => seen.push(`duplicate ${name(a)}: ${why}`),
      contested: (a) => seen.push(`contested ${name(a)}`),
    },
    () => random,
  );
  const [a, b] = dad.addresses as [OwnAddress, OwnAddress];
  return { dad, seen, a, b };
}

t.test('tentative until the link comes up; then a random delay, one probe, RetransTimer, preferred', async (t) => {
  const { dad, seen, a, b } = setup(0.25);
  t.equal(a.state, AddressState.Tentative);
  t.equal(dad.pollAt(), Infinity, 'nothing runs before linkUp');
  dad.linkUp(10_000);
  t.equal(dad.pollAt(), 10_250, 'the delay: random × MAX_RTR_SOLICITATION_DELAY');
  dad.poll(10_249);
  t.same(seen, []);
  dad.poll(10_250);
  t.same(seen, ['probe A', 'probe B'], 'one probe each (DupAddrDetectTransmits = 1)');
  t.equal(a.state, AddressState.Tentative, 'still tentative while the probe is out');
  t.equal(dad.pollAt(), 11_250, 'RetransTimer');
  dad.poll(11_250);
  t.same(seen.slice(2), ['ready A', 'ready B']);
  t.equal(a.state, AddressState.Preferred);
  t.equal(b.state, AddressState.Preferred);
  t.equal(dad.pollAt(), Infinity, 'no timer once decided');
  t.equal(dad.own(B, 0), b, 'found by its bytes');
  t.equal(dad.own(parseIpv6('fec0::3')!, 0), undefined);
});

t.test('a claim while tentative makes the address duplicate, for good', async (t) => {
  const { dad, seen, a, b } = setup();
  dad.linkUp(0);
  dad.conflict(a, 'probe'); // during the delay
  dad.poll(500);
  dad.conflict(b, 'advert'); // while the probe is out
  t.same(seen, ['duplicate A: the guest probed it during our DAD', 'probe B', 'duplicate B: the guest advertised it during our DAD']);
  t.equal(a.state, AddressState.Duplicate);
  t.equal(b.state, AddressState.Duplicate);
  dad.poll(5000);
  dad.linkUp(6000);
  dad.poll(9000);
  dad.conflict(a, 'advert');
  t.equal(seen.length, 3, 'final: no probe, no log after linkUp, timers or claims');
  t.equal(a.state, AddressState.Duplicate);
});

t.test('a preferred address is kept: an advert of it is contested, a probe answered elsewhere', async (t) => {
  const { dad, seen, a } = setup();
  dad.linkUp(0);
  dad.poll(500);
  dad.poll(1500);
  seen.length = 0;
  dad.conflict(a, 'advert');
  dad.conflict(a, 'probe');
  t.same(seen, ['contested A']);
  t.equal(a.state, AddressState.Preferred);
});

t.test('the link coming up again starts DAD over for addresses not duplicate', async (t) => {
  const { dad, seen, a } = setup();
  dad.linkUp(0);
  dad.poll(500);
  dad.poll(1500);
  dad.linkUp(60_000);
  t.equal(a.state, AddressState.Tentative, 'tentative again');
  dad.poll(60_500);
  dad.poll(61_500);
  t.same(
    seen.filter((s) => s.endsWith('A')),
    ['probe A', 'ready A', 'probe A', 'ready A'],
  );
});
