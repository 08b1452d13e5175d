// End to end through network namespaces: a real guest's pings reach a target two routers away and
// come back; traceroute -I, traceroute6 -I and classic UDP traceroute list the gateway, both
// routers and the target, and so does mtr's report (ICMP and UDP, both families); a protocol the
// NAT cannot carry (UDP-Lite, GRE) is administratively prohibited by the gateway at once; UDP echo works on both families; a ping to an address on vunet's host
// link that no one holds gets host unreachable, not silence. At MTU 1500: pings of 4000
// bytes and 4000-byte UDP datagrams both ways in fragments, IPv4 record route and timestamp options
// answered, and a --pcap capture showing our MLD reports at start, our MLD and IGMP queries, the
// guest answering them, and the echoed datagrams reaching the guest in fragments.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { readPcap } from './support/pcap-read.js';
import { canUseNetns, createTopology, spawnVunet } from './support/netns.js';

const why = canUseNetns();

t.test('ICMP and UDP through the NAT: ping, traceroute, UDP echo, host unreachable', { skip: why ?? false }, async (t) => {
  const topo = createTopology('nat');
  // UDP echo on the target, both families (socat, port 7).
  const echoes = ['UDP4-RECVFROM:7,fork', 'UDP6-RECVFROM:7,fork,ipv6only=1'].map((a) =>
    spawn('ip', ['netns', 'exec', topo.targetNs, 'socat', a, 'PIPE'], { stdio: 'ignore' }),
  );
  // A DNS responder on the target, the resolver vunet forwards to.
  echoes.push(spawn('ip', ['netns', 'exec', topo.targetNs, process.execPath, join(import.meta.dirname, 'support', 'dns-responder.mjs')], { stdio: 'ignore' }));
  const dir = mkdtempSync(join(tmpdir(), 'vunet-nat-'));
  const sock = join(dir, 'vunet.sock');
  const pcapFile = join(dir, 'capture.pcap');
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    for (const e of echoes) e.kill('SIGTERM');
    vunet?.kill('SIGTERM');
    topo.destroy();
    rmSync(dir, { recursive: true, force: true });
  });
  const v = await spawnVunet(topo.vunetNs, ['--socket', sock, '--log-level', 'info', '--dns', topo.target4, '--mtu', '1500', '--pcap', pcapFile]);
  vunet = v.proc;
  t.match(v.log(), /ping sockets|raw ICMP sockets/, 'vunet says which ICMP sockets it uses');

  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
# The SLAAC address, out of DAD (a tentative source cannot send yet).
i=0; while [ $i -lt 80 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
echo "== ping4"; ping -c 3 -W 3 ${topo.target4} 2>&1
echo "== ping6"; ping6 -c 3 -W 3 ${topo.target6} 2>&1
echo "== trace4"; traceroute -I -n -q 1 -w 2 -m 8 ${topo.target4} 2>&1
echo "== trace6"; traceroute -6 -I -n -q 1 -w 2 -m 8 ${topo.target6} 2>&1
echo "== trace4udp"; traceroute -n -q 1 -w 2 -m 8 ${topo.target4} 2>&1
echo "== trace6udp"; traceroute -6 -n -q 1 -w 2 -m 8 ${topo.target6} 2>&1
echo "== mtricmp4"; mtr -r -n -c 3 -i 0.2 ${topo.target4} 2>&1
echo "== mtricmp6"; mtr -6 -r -n -c 3 -i 0.2 ${topo.target6} 2>&1
echo "== mtrudp4"; mtr -r -n -u -c 3 -i 0.2 ${topo.target4} 2>&1
echo "== mtrudp6"; mtr -6 -r -n -u -c 3 -i 0.2 ${topo.target6} 2>&1
echo "== prohibited4"; traceroute -UL -n -q 1 -w 2 -m 4 ${topo.target4} 2>&1
echo "== prohibited6"; traceroute -6 -P 47 -n -q 1 -w 2 -m 4 ${topo.target6} 2>&1
echo "== udp4"; echo hello-udp4 | socat -t 3 - UDP4:${topo.target4}:7 2>&1
echo "== udp6"; echo hello-udp6 | socat -t 3 - UDP6:[${topo.target6}]:7 2>&1
echo "== mtu"; cat /sys/class/net/eth0/mtu
echo "== big4"; head -c 4000 /dev/zero | tr '\\0' a | socat -t 3 - UDP4:${topo.target4}:7 | wc -c
echo "== big6"; head -c 4000 /dev/zero | tr '\\0' b | socat -t 3 - UDP6:[${topo.target6}]:7 | wc -c
echo "== bigping"; ping -c 2 -W 3 -s 4000 ${topo.target4} 2>&1
echo "== bigping6"; ping6 -c 2 -W 3 -s 4000 ${topo.target6} 2>&1
for a in 10.0.2.2 10.0.2.3; do echo "== bigping-$a"; ping -c 2 -W 3 -s 4000 $a 2>&1; done
for a in fec0::2 fec0::3; do echo "== bigping6-$a"; ping6 -c 2 -W 3 -s 4000 $a 2>&1; done
echo "== rr"; ping-iputils -n -R -c 1 -W 3 10.0.2.3 2>&1
echo "== ts"; ping-iputils -n -T tsandaddr -c 1 -W 3 10.0.2.3 2>&1
echo "== dns4"; nslookup vunet.test 10.0.2.3 2>&1
echo "== dns6"; nslookup -type=AAAA vunet.test fec0::3 2>&1
echo "== unreach4"; ping-iputils -n -c 1 -W 6 ${topo.nobody4} 2>&1
echo "== unreach4udp"; traceroute -n -q 1 -w 6 -m 3 ${topo.nobody4} 2>&1
echo "== netunreach4"; ping-iputils -n -c 1 -W 4 10.99.99.99 2>&1
echo "== end"
`;
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 240_000, guestTimeoutSec: 200 });
  const exit = await guest.exited;
  const out = guest.output;
  const section = (name: string): string => out.split(`== ${name}`)[1]?.split('== ')[0] ?? '';
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(section('ping4'), /3 packets transmitted, 3 packets received/, 'ping to the target answered');
  t.match(section('ping6'), /3 packets transmitted, 3 packets received/, 'ping6 to the target answered');
  const hops4 = [...section('trace4').matchAll(/^\s*(\d+)\s+([0-9.]+)/gm)].map((m) => m[2]);
  t.same(hops4, ['10.0.2.2', topo.router1[0], topo.router2[0], topo.target4], 'traceroute -I: gateway, router 1, router 2, target');
  const hops6 = [...section('trace6').matchAll(/^\s*(\d+)\s+([0-9a-f:]+)/gm)].map((m) => m[2]);
  t.same(hops6, ['fec0::2', topo.router1[1], topo.router2[1], topo.target6], 'traceroute6 -I: gateway, router 1, router 2, target');
  const hopsUdp = [...section('trace4udp').matchAll(/^\s*(\d+)\s+([0-9.]+)/gm)].map((m) => m[2]);
  t.same(hopsUdp, ['10.0.2.2', topo.router1[0], topo.router2[0], topo.target4], 'UDP traceroute: gateway, router 1, router 2, target');
  const hopsUdp6 = [...section('trace6udp').matchAll(/^\s*(\d+)\s+([0-9a-f:]+)/gm)].map((m) => m[2]);
  t.same(hopsUdp6, ['fec0::2', topo.router1[1], topo.router2[1], topo.target6], 'UDP traceroute6: gateway, router 1, router 2, target');
  // mtr's report through the real routers: a line per hop ("  1.|-- 10.0.2.2   0.0%   3 ..."),
  // each answering (its probes are ICMP echo or UDP, as the NAT relays them from host sockets).
  for (const [name, want] of [
    ['mtricmp4', ['10.0.2.2', topo.router1[0], topo.router2[0], topo.target4]],
    ['mtricmp6', ['fec0::2', topo.router1[1], topo.router2[1], topo.target6]],
    ['mtrudp4', ['10.0.2.2', topo.router1[0], topo.router2[0], topo.target4]],
    ['mtrudp6', ['fec0::2', topo.router1[1], topo.router2[1], topo.target6]],
  ] as const) {
    const hops = [...section(name).matchAll(/^\s*\d+\.\|--\s+(\S+)\s+([0-9.]+)%/gm)];
    t.same(
      hops.map((m) => m[1]),
      want,
      `${name}: gateway, router 1, router 2, target`,
    );
    t.ok(hops.length > 0 && hops.every((m) => Number(m[2]) < 100), `${name}: every hop answered (loss ${hops.map((m) => m[2]).join(', ')} %)`);
  }
  // A protocol the NAT cannot carry (UDP-Lite, GRE): the gateway says so at once ("!X").
  t.match(section('prohibited4'), /^\s*2\s+10\.0\.2\.2\s+[0-9.]+ ms !X/m, 'UDP-Lite beyond the gateway: administratively prohibited from the gateway');
  t.match(section('prohibited6'), /^\s*2\s+fec0::2\s+[0-9.]+ ms !X/m, 'GRE over IPv6: administratively prohibited from the gateway');
  t.match(section('udp4'), /hello-udp4/, 'UDP echo over IPv4');
  t.match(section('udp6'), /hello-udp6/, 'UDP echo over IPv6');
  t.match(section('mtu'), /^\s*1500\s*$/m, 'guest MTU 1500 (DHCP option 26 from --mtu 1500)');
  t.match(section('big4'), /^\s*4000\s*$/m, '4000-byte UDP datagram echoed over IPv4 (fragmented both ways)');
  t.match(section('big6'), /^\s*4000\s*$/m, '4000-byte UDP datagram echoed over IPv6 (fragmented both ways)');
  t.match(section('bigping'), /2 packets transmitted, 2 packets received/, 'ping -s 4000 to the target');
  t.match(section('bigping6'), /2 packets transmitted, 2 packets received/, 'ping6 -s 4000 to the target');
  for (const a of ['10.0.2.2', '10.0.2.3', 'fec0::2', 'fec0::3']) {
    const name = a.includes(':') ? `bigping6-${a}` : `bigping-${a}`;
    t.match(section(name), /2 packets transmitted, 2 packets received/, `ping -s 4000 to ${a} (reassembled, answered in fragments)`);
  }
  t.match(section('dns4'), /Address:? 192\.0\.2\.123/, 'DNS lookup through 10.0.2.3 answered by the target');
  t.match(section('dns6'), /2001:db8::123/, 'DNS lookup through fec0::3 answered by the target');
  t.match(
    section('unreach4'),
    /From 10\.0\.2\.2 icmp_seq=1 Destination Host Unreachable/,
    'ping to an unheld address on the host link: host unreachable from the gateway',
  );
  // UDP sockets without IP_RECVERR ignore host unreachable (a soft error in Linux), so the check
  // uses traceroute's UDP probes, which report it: !H from the gateway.
  t.match(section('unreach4udp'), /10\.0\.2\.2 .*!H/, 'UDP to it: host unreachable from the gateway (!H), not a timeout');
  t.match(
    section('netunreach4'),
    new RegExp(`From ${topo.router1[0].replace(/\./g, '\\.')} icmp_seq=1 Destination Net Unreachable`),
    "unroutable address: the router's net unreachable",
  );
  // IPv4 options (vunet's own echo reply: 10.0.2.3 is not mapped to the host): record route and
  // timestamp come back with 10.0.2.3 in them.
  t.match(section('rr'), /1 packets transmitted, 1 received/, 'ping -R to 10.0.2.3 answered');
  t.match(section('rr'), /RR:[\s\S]*10\.0\.2\.3/, 'the record route holds 10.0.2.3');
  t.match(section('ts'), /TS:[\s\S]*10\.0\.2\.3\s+-?\d+/, 'the timestamp option holds 10.0.2.3 and its time');

  // The capture (--pcap), complete once vunet has stopped.
  v.proc.kill('SIGTERM');
  await v.exited;
  if (process.env.VUNET_E2E_DEBUG) t.comment(out + '\n--- vunet log ---\n' + v.log());
  const status = v
    .log()
    .split('\n')
    .filter((l) => l.includes('"vunet stopped"'))
    .map((l) => JSON.parse(l) as { stack: Record<string, number> })[0];
  t.ok(status, 'final status logged');
  t.same(v.errors(), [], 'vunet logged no error');
  const frames = readPcap(pcapFile);
  const ours = frames.filter((f) => f.subarray(6, 12).every((b, i) => b === OUR_MAC[i]));
  const guestFrames = frames.filter((f) => !f.subarray(6, 12).every((b, i) => b === OUR_MAC[i]));
  const firstV6 = ours.find((f) => etherType(f) === 0x86dd);
  t.ok(firstV6 && mldType(firstV6) === 143, 'the first IPv6 frame vunet sends is its MLDv2 report (link-up, before DAD)');
  const reports = ours.filter((f) => mldType(f) === 143);
  t.ok(reports.length >= 2, `our MLDv2 reports (${reports.length}), Robustness of them at start`);
  const queryAt = ours.findIndex((f) => mldType(f) === 130);
  const mldQueries = ours.filter((f) => mldType(f) === 130);
  t.ok(mldQueries.length >= 1, `our MLD queries on the link (${mldQueries.length})`);
  t.ok(
    mldQueries.every((f) => f[22 + 15] === 2 && f[38] === 0xff && f[39] === 0x02 && f[38 + 15] === 1 && f[21] === 1),
    'from fe80::2 to ff02::1, hop limit 1',
  );
  const igmpQueries = ours.filter((f) => etherType(f) === 0x0800 && f[23] === 2 && f[14 + (f[14]! & 0x0f) * 4] === 0x11);
  t.ok(igmpQueries.length >= 1, `our IGMP queries to 224.0.0.1 (${igmpQueries.length})`);
  const firstQuery = frames.indexOf(ours[queryAt]!);
  t.ok(
    frames.slice(firstQuery).some((f) => !f.subarray(6, 12).every((b, i) => b === OUR_MAC[i]) && mldType(f) === 143),
    'the guest answers our query with an MLDv2 report',
  );
  t.ok((status?.stack['mld.guestJoined'] ?? 0) >= 1, "vunet learnt the guest's groups from it");
  // The 4000-byte datagrams echoed by the target reached the guest in fragments.
  const frag4 = ours.filter((f) => etherType(f) === 0x0800 && f[23] === 17 && ((f[20]! & 0x3f) | f[21]!) !== 0);
  const frag6 = ours.filter((f) => etherType(f) === 0x86dd && f[20] === 44);
  t.ok(frag4.length >= 3, `IPv4 fragments to the guest (${frag4.length})`);
  t.ok(frag6.length >= 3, `IPv6 fragments to the guest (${frag6.length})`);
  t.ok(
    guestFrames.some((f) => etherType(f) === 0x0800 && (f[20]! & 0x20) !== 0),
    'and the guest sent its own in fragments',
  );
});

const OUR_MAC = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
const etherType = (f: Uint8Array): number => (f[12]! << 8) | f[13]!;
/** The ICMPv6 type of an MLD-shaped frame (IPv6, hop-by-hop first, ICMPv6 after it), else -1. */
const mldType = (f: Uint8Array): number => (etherType(f) === 0x86dd && f[20] === 0 && f[54] === 58 ? f[62]! : -1);
