// `npm run demo`: starts vunet in this process, boots the test guest under QEMU against it, and
// shows what a user of slirp would look for: the guest configures itself (DHCP, SLAAC) and its
// gateway answers on both families.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { defaultConfig } from '../src/iface/config.js';
import { Vunet } from '../src/main/vunet.js';
import { ensureGuestImage, startGuest } from './qemu.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);

const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 2 >/dev/null 2>&1
echo "demo: DHCPv4: $(ip -4 -o addr show dev eth0 | awk '{print $4}'), router $(ip -4 route show default | awk '{print $3}'), DNS $(awk '/nameserver/{print $2}' /etc/resolv.conf), MTU $(cat /sys/class/net/eth0/mtu)"
i=0
while [ $i -lt 60 ]; do ip -6 addr show dev eth0 | grep -q 'inet6 fec0' && break; sleep 0.25; i=$((i+1)); done
echo "demo: SLAAC: $(ip -6 -o addr show dev eth0 | awk '/fec0/{print $4}'), router $(ip -6 route show default | awk '{print $3}')"
for target in 10.0.2.2 fec0::2; do
  ping -c 3 -W 3 $target 2>&1 | awk -v t=$target '/packets transmitted/{r=$0} /min\\/avg\\/max/{split($4,a,"/"); avg=a[2]} END{print "demo: ping " t ": " r ", avg " avg " ms"}'
done
`;

async function main(): Promise<void> {
  say('vunet demo: a Linux guest on vunet over vhost-user, configured as it would be under slirp\n');
  const t0 = Date.now();
  say('1. guest image (Debian cloud kernel + busybox; built once, then cached)');
  await ensureGuestImage({ log: (l) => say(`   ${l}`) });
  say(`   ready in ${Date.now() - t0} ms`);

  const dir = mkdtempSync(join(tmpdir(), 'vunet-demo-'));
  const sock = join(dir, 'vunet.sock');
  const vunet = await Vunet.start({ socketPath: sock, config: defaultConfig(), logger: pino({ level: 'silent' }) });
  say(`2. vunet listening on ${sock} (gateway 10.0.2.2 / fec0::2, DNS 10.0.2.3 / fec0::3, MTU 65520)`);

  say('3. booting the guest under QEMU');
  const t1 = Date.now();
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 240_000, guestTimeoutSec: 200 });
  await guest.waitFor(/VUNET-GUEST: booted/, 200_000);
  say(`   booted in ${Date.now() - t1} ms (${guest.accel === 'kvm' ? 'KVM' : 'software emulation, TCG'})`);
  const exit = await guest.exited;
  say('4. what the guest saw');
  for (const line of guest.output.split('\n')) if (line.startsWith('demo: ')) say(`   ${line.slice(6)}`);
  say('5. what vunet counted');
  const d = vunet.device.stats;
  say(
    `   frames from the guest ${d.txFrames}, to the guest ${d.rxFrames}; DHCP leases ${vunet.dhcpv4.leases().length}; router advertisements ${vunet.routerAdvertiser?.stats.raSent ?? 0}`,
  );
  await vunet.close();
  rmSync(dir, { recursive: true, force: true });
  const ok =
    exit.guestStatus === 0 &&
    /ping 10\.0\.2\.2: 3 packets transmitted, 3 packets received/.test(guest.output) &&
    /ping fec0::2: 3 packets transmitted, 3 packets received/.test(guest.output);
  say(ok ? '\nthe guest configured itself and reached its gateway on both families' : '\ndemo failed: see above (VUNET_GUEST_ECHO=1 shows the guest console)');
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`vunet demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
