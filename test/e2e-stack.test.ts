// End to end: an unmodified Linux guest configures itself against vunet as it would under slirp
// (DHCPv4, SLAAC), reaches its gateway on both families, and keeps working after sending
// malformed frames, which vunet counts and drops.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { Vunet } from '../src/main/vunet.js';
import { defaultConfig } from '../src/iface/config.js';

/** Bytes as a busybox printf string of octal escapes. */
const octal = (bytes: number[]): string => bytes.map((b) => `\\${b.toString(8).padStart(3, '0')}`).join('');
const ETH = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02, 0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x08, 0x00];
// A truncated IPv4 header, and a whole echo request whose header checksum is wrong.
const truncated = [...ETH, 0x45, 0x00, 0x00];
const badChecksum = [...ETH, 0x45, 0, 0, 28, 0, 1, 0x40, 0, 64, 1, 0xde, 0xad, 10, 0, 2, 15, 10, 0, 2, 2, 8, 0, 0xf7, 0xff, 0, 0, 0, 0];

const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 2>&1
echo "mtu=$(cat /sys/class/net/eth0/mtu)"
ip -4 route
cat /etc/resolv.conf
i=0
while [ $i -lt 60 ]; do
  ip -6 addr show dev eth0 | grep -q 'inet6 fec0' && break
  sleep 0.25; i=$((i+1))
done
ip -6 addr show dev eth0 | grep inet6
ip -6 route show default
ping -c 3 -W 3 10.0.2.2 2>&1
ping6 -c 3 -W 3 fec0::2 2>&1
ping6 -c 2 -W 3 -I eth0 fe80::2 2>&1
printf '${octal(truncated)}' | socat -u STDIN INTERFACE:eth0
printf '${octal(badChecksum)}' | socat -u STDIN INTERFACE:eth0
sleep 0.5
ping -c 1 -W 3 10.0.2.2 2>&1 | sed 's/^/after-malformed: /'
`;

t.test('guest autoconfigures and reaches the gateway on both families', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-e2e-stack-'));
  const sock = join(dir, 'vunet.sock');
  // Errors (an exception caught while releasing the frontend, say) go to stderr, for whoever reads
  // a failed run.
  const vunet = await Vunet.start({ socketPath: sock, config: defaultConfig(), logger: pino({ level: 'error' }, pino.destination(2)) });
  t.teardown(async () => {
    await vunet.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 240_000, guestTimeoutSec: 200 });
  const exit = await guest.exited;
  const out = guest.output;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(out, /udhcpc: eth0 10\.0\.2\.15\/24 router 10\.0\.2\.2 dns 10\.0\.2\.3/, 'DHCP lease of 10.0.2.15 with router and DNS');
  t.match(out, /mtu=65520/, 'MTU from DHCP option 26');
  t.match(out, /default via 10\.0\.2\.2 dev eth0/, 'default route via the gateway');
  t.match(out, /nameserver 10\.0\.2\.3/, 'resolver set');
  t.match(out, /inet6 fec0::[0-9a-f:]+\/64 scope (global|site)/, 'SLAAC address in the advertised prefix');
  t.match(out, /default via fe80::2 dev eth0/, 'IPv6 default route via our link-local address');
  t.match(out, /3 packets transmitted, 3 packets received/, 'ping 10.0.2.2 answered');
  t.match(out, /--- fec0::2 ping statistics ---\n3 packets transmitted, 3 packets received/, 'ping6 fec0::2 answered');
  t.match(out, /--- fe80::2 ping statistics ---\n2 packets transmitted, 2 packets received/, 'ping6 fe80::2 answered');
  t.match(out, /after-malformed: 1 packets transmitted, 1 packets received/, 'guest keeps working after malformed frames');
  const c = vunet.stack.counters;
  t.ok(c.get('ipv4.truncated') >= 1, 'truncated IPv4 header counted and dropped');
  t.ok(c.get('ipv4.badChecksum') >= 1, 'bad IPv4 checksum counted and dropped');
  t.ok(vunet.dhcpv4.stats.acks >= 1, 'DHCP ACK sent');
  t.ok(vunet.routerAdvertiser!.stats.raSent >= 1, 'router advertisements sent');
  t.ok(c.get('ndp.dadProbe') >= 3, 'DAD probes for our addresses');
  t.ok(c.get('mld.out.143') >= 1, 'MLD reports for our groups');
  t.ok(c.get('mld.out.130') >= 1, 'MLD queries from fe80::2 (vunet is the querier)');
  t.ok(c.get('igmp.out.34') >= 1 && c.get('igmp.out.17') >= 1, 'IGMPv3 reports for our groups and IGMP queries');
  t.ok(c.get('mld.in.143') >= 1, "the guest's MLDv2 reports heard");
  t.ok(vunet.stack.ipv6!.mld.querier.guestGroups().length >= 1, "the guest's groups learnt from its answer to our query");
});
