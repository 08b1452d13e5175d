// End to end on a simulated network: a real guest against the vunet command given
// examples/topologies/three-hops.yaml, in this machine's own network namespace (vunet drops root
// to nobody as usual; the topology needs no privilege and no namespace). The guest sees the
// routers and the target the file describes, with their delays: ping on both families;
// traceroute in ICMP, UDP and TCP modes on both families lists the gateway, r1, r2 and the target
// in order with RTTs that follow the 5 ms links, the same in 20 runs; so does mtr's report (ICMP,
// UDP and TCP over IPv4, ICMP over IPv6), every hop answering; tracepath finds pmtu 1400;
// a DF ping too big for the last link gets fragmentation needed from r2; HTTP from the target on
// both families; port 81 refused; UDP and TCP echo; and with `nat: off` nothing else answers but
// the gateway's net unreachable.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { spawnVunet } from './support/netns.js';

const TOPOLOGY = join(import.meta.dirname, '..', 'examples', 'topologies', 'three-hops.yaml');
const T4 = '198.51.100.10';
const T6 = '2001:db8:100::10';

t.test('a guest on three-hops.yaml: ping, traceroute in every mode, tracepath, PMTU, HTTP, refusals', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-sim-'));
  const sock = join(dir, 'vunet.sock');
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    vunet?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  const v = await spawnVunet(null, ['--socket', sock, '--log-level', 'info', '--topology', TOPOLOGY]);
  vunet = v.proc;
  t.match(v.log(), /"topology":\{"nodes":3,"nat":false\}/, 'the start line names the topology');

  const trace = (name: string, args: string, target: string): string => `echo "== ${name}"; traceroute ${args} -n -q 1 -w 2 -m 8 ${target} 2>&1`;
  const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 >/dev/null 2>&1
i=0; while [ $i -lt 80 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
i=0; while [ $i -lt 40 ]; do ip -6 route show default | grep -q fe80::2 && break; sleep 0.25; i=$((i+1)); done
echo "== ping4"; ping -c 3 -W 3 ${T4} 2>&1
echo "== ping6"; ping6 -c 3 -W 3 ${T6} 2>&1
${trace('trace4icmp', '-I', T4)}
${trace('trace4udp', '', T4)}
${trace('trace4tcp', '-T -p 80', T4)}
${trace('trace6icmp', '-6 -I', T6)}
${trace('trace6udp', '-6', T6)}
${trace('trace6tcp', '-6 -T -p 80', T6)}
echo "== mtr4icmp"; mtr -r -n -c 3 -i 0.2 ${T4} 2>&1
echo "== mtr4udp"; mtr -r -n -u -c 3 -i 0.2 ${T4} 2>&1
echo "== mtr4tcp"; mtr -r -n -T -P 80 -c 3 -i 0.2 ${T4} 2>&1
echo "== mtr6icmp"; mtr -6 -r -n -c 3 -i 0.2 ${T6} 2>&1
echo "== repeat"; n=0; while [ $n -lt 20 ]; do traceroute -I -n -q 1 -w 2 -m 8 ${T4} 2>&1 | awk 'NR>1{printf "%s ", $2} END{print ""}'; n=$((n+1)); done
# (Before tracepath, which teaches the guest the path MTU: its kernel then refuses the ping itself.)
echo "== bigdf"; ping-iputils -n -c 1 -W 3 -M do -s 3972 ${T4} 2>&1
echo "== tracepath"; tracepath -n ${T4} 2>&1
echo "== http4"; wget -q -O - http://${T4}/ 2>&1
echo "== http6"; wget -q -O - http://[${T6}]/ 2>&1
echo "== closed"; wget -q -O - http://${T4}:81/ 2>&1
echo "== udpecho"; echo hello-udp | socat -t 3 - UDP4:${T4}:7 2>&1
echo "== tcpecho"; echo hello-tcp | socat -t 3 - TCP4:${T4}:7 2>&1
echo "== natoff"; ping-iputils -n -c 1 -W 3 192.0.2.99 2>&1
echo "== end"
`;
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 300_000, guestTimeoutSec: 260 });
  const exit = await guest.exited;
  const out = guest.output;
  if (process.env.VUNET_E2E_DEBUG) t.comment(out);
  const section = (name: string): string => out.split(`== ${name}\n`)[1]?.split('\n== ')[0] ?? '';
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(section('ping4'), /3 packets transmitted, 3 packets received/, 'ping to the target answered');
  t.match(section('ping6'), /3 packets transmitted, 3 packets received/, 'ping6 to the target answered');
  const rtt = section('ping4').match(/min\/avg\/max = ([0-9.]+)\//);
  t.ok(rtt && Number(rtt[1]) >= 29.5, `the ping's RTT holds the three links' 30 ms (${rtt?.[1]} ms)`);
  const want4 = ['10.0.2.2', '203.0.113.1', '203.0.113.2', T4];
  const want6 = ['fec0::2', '2001:db8:1::1', '2001:db8:2::1', T6];
  for (const [name, want] of [
    ['trace4icmp', want4],
    ['trace4udp', want4],
    ['trace4tcp', want4],
    ['trace6icmp', want6],
    ['trace6udp', want6],
    ['trace6tcp', want6],
  ] as const) {
    const hops = [...section(name).matchAll(/^\s*(\d+)\s+([0-9a-f.:]+)\s+([0-9.]+) ms/gm)];
    t.same(
      hops.map((m) => m[2]),
      want,
      `${name}: gateway, r1, r2, target`,
    );
    const ms = hops.map((m) => Number(m[3]));
    t.ok(ms[1]! >= 9.5 && ms[2]! >= 19.5 && ms[3]! >= 29.5, `${name}: RTTs follow the 5 ms links (${ms.join(', ')})`);
  }
  // mtr's report: a line per hop, "  1.|-- 10.0.2.2   0.0%   3 ...", each hop answering.
  for (const [name, want] of [
    ['mtr4icmp', want4],
    ['mtr4udp', want4],
    ['mtr4tcp', want4],
    ['mtr6icmp', want6],
  ] as const) {
    const hops = [...section(name).matchAll(/^\s*\d+\.\|--\s+(\S+)\s+([0-9.]+)%/gm)];
    t.same(
      hops.map((m) => m[1]),
      want,
      `${name}: gateway, r1, r2, target`,
    );
    t.ok(hops.length > 0 && hops.every((m) => Number(m[2]) < 100), `${name}: every hop answered (loss ${hops.map((m) => m[2]).join(', ')} %)`);
  }
  const runs = section('repeat').trim().split('\n');
  t.equal(runs.length, 20, 'twenty traceroutes');
  t.same([...new Set(runs.map((r) => r.trim()))], [want4.join(' ')], 'the same hops in every run');
  t.match(section('tracepath'), /pmtu 1400/, 'tracepath finds the 1400-byte link');
  t.match(section('bigdf'), /From 203\.0\.113\.2 icmp_seq=1 Frag needed and DF set \(mtu = 1400\)/, 'DF ping too big: fragmentation needed from r2');
  t.match(section('http4'), /^hello from target$/m, 'HTTP from the target');
  t.match(section('http6'), /^hello from target$/m, 'HTTP from the target over IPv6');
  t.match(section('closed'), /Connection refused/, 'port 81 refused');
  t.match(section('udpecho'), /hello-udp/, 'UDP echo');
  t.match(section('tcpecho'), /hello-tcp/, 'TCP echo');
  t.match(section('natoff'), /From 10\.0\.2\.2 icmp_seq=1 Destination Net Unreachable/, 'nat: off — anything else is net unreachable from the gateway');
  t.same(v.errors(), [], 'vunet logged no error');
});
