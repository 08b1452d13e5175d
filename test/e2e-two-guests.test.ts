// End to end: two real guests on one vunet (`--socket` twice, examples/topologies/two-guests.yaml),
// booted together. Each gets its own DHCP and SLAAC address; they reach each other directly on
// both families (ARP and NDP between them, no NAT): ping, a TCP connection and a UDP exchange;
// both reach the simulated target; and once guest 2 has stopped, guest 1's pings to it end in
// Destination Host Unreachable (its own ARP gets no answer any more).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { spawnVunet } from './support/netns.js';

const TOPOLOGY = join(import.meta.dirname, '..', 'examples', 'topologies', 'two-guests.yaml');
// Fixed MACs, so each guest knows the other's SLAAC address (EUI-64).
const MAC = ['52:54:00:00:00:01', '52:54:00:00:00:02'] as const;
const SIX = ['fec0::5054:ff:fe00:1', 'fec0::5054:ff:fe00:2'] as const;

/** What both guests do first: addresses, then the other's IPv4 address (10.0.2.15 or .16: DHCP
 *  hands them out in the order asked), printed as OTHER4. */
const common = (other6: string): string => `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 2 >/dev/null 2>&1
i=0; while [ $i -lt 80 ]; do ip -6 addr show dev eth0 | grep 'inet6 fec0' | grep -qv tentative && break; sleep 0.25; i=$((i+1)); done
me=$(ip -4 -o addr show dev eth0 | sed -n 's/.*inet \\(10\\.0\\.2\\.[0-9]*\\).*/\\1/p')
echo "== me $me"
other=10.0.2.15; [ "$me" = 10.0.2.15 ] && other=10.0.2.16
# Wait for the other guest (it boots at the same time).
i=0; while [ $i -lt 120 ]; do ping -c 1 -W 1 $other >/dev/null 2>&1 && break; i=$((i+1)); done
i=0; while [ $i -lt 40 ]; do ping6 -c 1 -W 1 ${other6} >/dev/null 2>&1 && break; i=$((i+1)); done
`;

t.test('two guests on one segment: each other directly, the target, and host unreachable when one stops', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-two-'));
  const socks = [join(dir, 'g1.sock'), join(dir, 'g2.sock')];
  let vunet: ChildProcess | undefined;
  t.teardown(() => {
    vunet?.kill('SIGTERM');
    rmSync(dir, { recursive: true, force: true });
  });
  // Forwards naming guest 2: its TCP service, and the UDP port it waits on for "done".
  const tcpPort = 20000 + Math.floor(Math.random() * 20000);
  const udpPort = tcpPort + 1;
  const v = await spawnVunet(null, [
    ...['--socket', socks[0]!, '--socket', socks[1]!, '--log-level', 'info', '--topology', TOPOLOGY],
    ...['-t', `127.0.0.1:${tcpPort}:5000@guest2`, '-u', `127.0.0.1:${udpPort}:5002@guest2`],
  ]);
  vunet = v.proc;
  // From the host, while the guests run: the TCP forward reaches guest 2's service; then the UDP
  // forward tells guest 2 the host is done with it.
  const fromHost = (async (): Promise<string> => {
    const deadline = Date.now() + 240_000;
    while (Date.now() < deadline) {
      const got = await new Promise<string>((resolve) => {
        const c = connect(tcpPort, '127.0.0.1');
        let data = '';
        c.on('data', (d: Buffer) => (data += d.toString()));
        c.on('close', () => resolve(data));
        c.on('error', () => resolve(''));
        c.setTimeout(20_000, () => c.destroy());
      });
      if (got.includes('tcp-from-guest2')) {
        const u = createSocket('udp4');
        for (let i = 0; i < 3; i++) u.send('host\n', udpPort, '127.0.0.1');
        setTimeout(() => u.close(), 500);
        return got;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
    return '';
  })();

  // Guest 2 serves TCP and UDP on its address, and stops when guest 1 says it is done.
  const script2 = `${common(SIX[0])}
# (what guest 1 sends when it is done with us: listened for before anything guest 1 waits for)
socat -u UDP-RECV:5002 OPEN:/tmp/done,creat,append &
# (and what the host sends through its UDP forward when done: the lines "done" and "host")
socat TCP-LISTEN:5000,reuseaddr,fork SYSTEM:'echo tcp-from-guest2' &
socat UDP-LISTEN:5001,fork PIPE &
echo "== ready"
echo "== ping-other4"; ping -c 2 -W 3 $other 2>&1
echo "== target"; ping -c 2 -W 3 198.51.100.10 2>&1
i=0; while [ $i -lt 360 ] && ! { grep -q done /tmp/done && grep -q host /tmp/done; } 2>/dev/null; do sleep 0.5; i=$((i+1)); done
echo "== end"
`;
  const script1 = `${common(SIX[1])}
echo "== ping4"; ping -c 3 -W 3 $other 2>&1
echo "== ping6"; ping6 -c 3 -W 3 ${SIX[1]} 2>&1
echo "== neigh"; ip neigh show dev eth0 2>&1
i=0; while [ $i -lt 40 ]; do echo | socat -T 2 - TCP:$other:5000 >/dev/null 2>&1 && break; sleep 0.5; i=$((i+1)); done
echo "== tcp"; socat -T 5 - TCP:$other:5000 </dev/null 2>&1
echo "== udp"; echo udp-hello | socat -t 3 - UDP:$other:5001 2>&1
echo "== target"; ping -c 2 -W 3 198.51.100.10 2>&1; wget -q -O - http://[2001:db8:100::10]/ 2>&1
echo done | socat -u - UDP:$other:5002
# Guest 2 powers off. Its ARP entry here stays reachable for up to reachable_time (~30 s) after
# the last traffic, then its probes get no answer: iputils ping reports host unreachable.
echo "== gone"; timeout 90 ping-iputils -n -i 1 $other 2>&1 | grep -m 1 'Destination Host Unreachable'
echo "== end"
`;
  const [g1, g2] = await Promise.all([
    startGuest({ socketPath: socks[0]!, script: script1, mac: MAC[0], timeoutMs: 420_000, guestTimeoutSec: 380 }),
    startGuest({ socketPath: socks[1]!, script: script2, mac: MAC[1], timeoutMs: 420_000, guestTimeoutSec: 380 }),
  ]);
  const [e1, e2] = await Promise.all([g1.exited, g2.exited]);
  t.match(await fromHost, /tcp-from-guest2/, 'a forward naming guest2 (-t ...@guest2) reaches guest 2');
  const out1 = g1.output;
  const out2 = g2.output;
  // Everything each side said, when asked or when the guests did not both end well.
  if (process.env.VUNET_E2E_DEBUG || e1.guestStatus !== 0 || e2.guestStatus !== 0)
    t.comment(`--- guest 1\n${out1}\n--- guest 2\n${out2}\n--- vunet\n${v.log()}`);
  const section = (out: string, name: string): string => out.split(`== ${name}`)[1]?.split('\n== ')[0] ?? '';
  t.equal(e1.guestStatus, 0, 'guest 1 ran its script to the end');
  t.equal(e2.guestStatus, 0, 'guest 2 ran its script to the end');
  const me1 = section(out1, 'me').trim();
  const me2 = section(out2, 'me').trim();
  t.same([me1, me2].sort(), ['10.0.2.15', '10.0.2.16'], 'each its own DHCP address');
  t.match(section(out1, 'ping4'), /3 packets transmitted, 3 (packets )?received/, 'guest 1 pings guest 2 (IPv4)');
  t.match(section(out1, 'ping6'), /3 packets transmitted, 3 (packets )?received/, 'guest 1 pings guest 2 (IPv6)');
  t.match(section(out2, 'ping-other4'), /2 packets transmitted, 2 (packets )?received/, 'guest 2 pings guest 1');
  t.match(section(out1, 'neigh'), new RegExp(`${me2.replace(/\./g, '\\.')} lladdr ${MAC[1]}`), "guest 1 knows guest 2's own MAC: ARP between them, no NAT");
  t.match(section(out1, 'tcp'), /tcp-from-guest2/, 'a TCP connection from guest 1 to guest 2');
  t.match(section(out1, 'udp'), /udp-hello/, 'a UDP exchange between them');
  t.match(section(out1, 'target'), /2 packets transmitted, 2 (packets )?received/, 'guest 1 reaches the target');
  t.match(section(out1, 'target'), /hello from target/, '... and its web server over IPv6');
  t.match(section(out2, 'target'), /2 packets transmitted, 2 (packets )?received/, 'guest 2 reaches the target');
  t.match(section(out1, 'gone'), /Destination Host Unreachable/, 'guest 2 stopped: its address is unreachable for guest 1');
});
