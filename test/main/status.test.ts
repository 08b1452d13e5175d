// The summary for a person: only the drop counters that are not zero, each with its meaning
// (message counters are not drops); the text `vunet ctl status` prints.
import t from 'tap';
import { formatSummary, nonZeroDrops } from '../../src/main/status.js';
import type { StatusSummary } from '../../src/main/status.js';

t.test('nonZeroDrops: drops that are not zero, with their meaning, sorted', async (t) => {
  const drops = nonZeroDrops({
    'tcp4.badChecksum': 3,
    'udp4.noPort': 0,
    'arp.replyOut': 12, // a message counted, not a drop
    'ndp.nsOut': 4,
    'ipv4.someNewReason': 1, // not in the table, not shaped like a drop
    'igmp.badSomethingNew': 2, // not in the table, shaped like one
    'device.txDropped': 1,
    failures: 1,
  });
  t.same(drops, [
    { name: 'device.txDropped', count: 1, meaning: 'guest frames refused by the device (bad header, GSO not offered, bad length)' },
    { name: 'failures', count: 1, meaning: 'internal errors caught at a batch boundary (each cost one event; see the log)' },
    { name: 'igmp.badSomethingNew', count: 2, meaning: 'dropped: igmp.badSomethingNew' },
    { name: 'tcp4.badChecksum', count: 3, meaning: 'TCP segments over IPv4 with a bad checksum' },
  ]);
  t.same(nonZeroDrops({ 'tcp4.badChecksum': 0 }), []);
});

const summary: StatusSummary = {
  version: '1.2.3',
  uptimeSec: 3725,
  attached: true,
  linkUp: true,
  guest: { mac: '52:54:00:12:34:56', ipv4: ['10.0.2.15'], ipv6: ['fec0::5054:ff:fe12:3456'] },
  icmp: 'ping',
  forwards: ['TCP 127.0.0.1:8080 → guest port 80'],
  flows: { tcp: 2, udp: 1, icmp: 0, udpForward: 0, tcpStates: { ESTABLISHED: 1, TIME_WAIT: 1 } },
  drops: [
    { name: 'tcp4.badChecksum', count: 3, meaning: 'TCP segments over IPv4 with a bad checksum' },
    { name: 'udp4.noPort', count: 12, meaning: 'UDP datagrams to a port of ours nothing serves (port unreachable)' },
  ],
};

t.test('formatSummary: the text, drops aligned', async (t) => {
  t.equal(
    formatSummary(summary),
    `vunet 1.2.3, up 1h 2m
guest: attached, link up
  MAC 52:54:00:12:34:56
  IPv4 10.0.2.15
  IPv6 fec0::5054:ff:fe12:3456
ICMP: ping sockets
forwards:
  TCP 127.0.0.1:8080 → guest port 80
flows: TCP 2 (ESTABLISHED 1, TIME_WAIT 1), UDP 1, ICMP 0, forwarded UDP sessions 0
drops:
  tcp4.badChecksum 3  TCP segments over IPv4 with a bad checksum
  udp4.noPort 12      UDP datagrams to a port of ours nothing serves (port unreachable)
`,
  );
  const idle = formatSummary({
    ...summary,
    uptimeSec: 42,
    attached: false,
    guest: { mac: null, ipv4: [], ipv6: [] },
    icmp: 'none',
    forwards: [],
    flows: { tcp: 0, udp: 0, icmp: 0, udpForward: 0, tcpStates: {} },
    drops: [],
  });
  t.equal(
    idle,
    `vunet 1.2.3, up 42s
guest: not attached
  MAC not seen yet
ICMP: none: pings beyond the gateway go unanswered
forwards: none
flows: TCP 0, UDP 0, ICMP 0, forwarded UDP sessions 0
drops: none
`,
  );
  t.match(formatSummary({ ...summary, uptimeSec: 2 * 86400 + 3 * 3600 + 60 }), /^vunet 1\.2\.3, up 2d 3h 1m\n/);
});
