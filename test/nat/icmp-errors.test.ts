// The error translation table: every origin, type and code the kernel reports, both families.
import t from 'tap';
import { ErrOrigin, Errno, translateError } from '../../src/nat/icmp-errors.js';
import type { HostError } from '../../src/nat/icmp-errors.js';

const err = (e: Partial<HostError>): HostError => ({ origin: 0, type: 0, code: 0, errno: 0, info: 0, offender: new Uint8Array(16), offenderValid: true, ...e });

t.test('IPv4, from the network: type and code pass through, from the reporting hop', async (t) => {
  for (let code = 0; code <= 15; code++) {
    const g = translateError(4, err({ origin: ErrOrigin.ICMP, type: 3, code, info: 1400 }));
    t.same(g, { type: 3, code, rest: code === 4 ? 1400 : 0, from: 'offender' }, `3/${code}`);
  }
  t.same(translateError(4, err({ origin: ErrOrigin.ICMP, type: 11, code: 0 })), { type: 11, code: 0, rest: 0, from: 'offender' }, 'TTL exceeded');
  t.same(translateError(4, err({ origin: ErrOrigin.ICMP, type: 11, code: 1 })), { type: 11, code: 1, rest: 0, from: 'offender' }, 'reassembly time exceeded');
  t.same(
    translateError(4, err({ origin: ErrOrigin.ICMP, type: 12, code: 0, info: 9 })),
    { type: 12, code: 0, rest: 9 << 24, from: 'offender' },
    'parameter problem keeps its pointer',
  );
  t.same(
    translateError(4, err({ origin: ErrOrigin.ICMP, type: 11, code: 0, offenderValid: false })),
    { type: 11, code: 0, rest: 0, from: 'gateway' },
    'no offender: from the gateway',
  );
  t.equal(translateError(4, err({ origin: ErrOrigin.ICMP, type: 0 })), undefined, 'not an error type');
  t.equal(translateError(4, err({ origin: ErrOrigin.ICMP6, type: 1 })), undefined, 'ICMPv6 origin on IPv4');
});

t.test('IPv6, from the network', async (t) => {
  for (let code = 0; code <= 6; code++) {
    t.same(translateError(6, err({ origin: ErrOrigin.ICMP6, type: 1, code })), { type: 1, code, rest: 0, from: 'offender' }, `1/${code}`);
  }
  t.same(
    translateError(6, err({ origin: ErrOrigin.ICMP6, type: 2, info: 1280 })),
    { type: 2, code: 0, rest: 1280, from: 'offender' },
    'packet too big with the MTU',
  );
  t.same(translateError(6, err({ origin: ErrOrigin.ICMP6, type: 3, code: 0 })), { type: 3, code: 0, rest: 0, from: 'offender' }, 'hop limit exceeded');
  t.same(
    translateError(6, err({ origin: ErrOrigin.ICMP6, type: 4, code: 1, info: 40 })),
    { type: 4, code: 1, rest: 40, from: 'offender' },
    'parameter problem',
  );
  t.equal(translateError(6, err({ origin: ErrOrigin.ICMP6, type: 129 })), undefined);
});

t.test('local failures become the router errors a real network gives, from the gateway', async (t) => {
  const cases: [number, [number, number], [number, number]][] = [
    [Errno.EHOSTUNREACH, [3, 1], [1, 3]],
    [Errno.ENETUNREACH, [3, 0], [1, 0]],
    [Errno.ECONNREFUSED, [3, 3], [1, 4]],
    [Errno.EACCES, [3, 13], [1, 1]],
    [Errno.EPERM, [3, 13], [1, 1]],
  ];
  for (const [errno, v4, v6] of cases) {
    t.same(translateError(4, err({ origin: ErrOrigin.LOCAL, errno })), { type: v4[0], code: v4[1], rest: 0, from: 'gateway' }, `IPv4 errno ${errno}`);
    t.same(translateError(6, err({ origin: ErrOrigin.LOCAL, errno })), { type: v6[0], code: v6[1], rest: 0, from: 'gateway' }, `IPv6 errno ${errno}`);
  }
  t.same(
    translateError(4, err({ origin: ErrOrigin.LOCAL, errno: Errno.EMSGSIZE, info: 1500 })),
    { type: 3, code: 4, rest: 1500, from: 'gateway' },
    'EMSGSIZE: fragmentation needed',
  );
  t.same(
    translateError(6, err({ origin: ErrOrigin.LOCAL, errno: Errno.EMSGSIZE, info: 1400 })),
    { type: 2, code: 0, rest: 1400, from: 'gateway' },
    'EMSGSIZE: packet too big',
  );
  t.equal(translateError(4, err({ origin: ErrOrigin.LOCAL, errno: 5 })), undefined, 'other errnos have no ICMP equivalent');
  t.equal(translateError(4, err({ origin: ErrOrigin.NONE })), undefined);
});
