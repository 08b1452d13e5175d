// `npm run demo`: boots the test guest under QEMU against a vhost-user backend in this process and
// shows, step by step, frames crossing the virtio-net queues both ways. Until the guest-facing stack
// lands (issue 3) the backend is the foundation's minimal ARP-answering device.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { VhostUserServer } from 'vhost-user-ts';
import { ArpResponder } from '../test/support/arp-responder.js';
import { ensureGuestImage, startGuest } from './qemu.js';

const say = (s: string): void => void process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  say('vunet demo: a Linux guest attached over vhost-user to a device running in this Node process\n');
  say('1. guest image (Debian cloud kernel + busybox; built once, then cached)');
  const t0 = Date.now();
  const image = await ensureGuestImage({ log: (l) => say(`   ${l}`) });
  say(`   ready in ${Date.now() - t0} ms: ${image.kernel}`);

  const dir = mkdtempSync(join(tmpdir(), 'vunet-demo-'));
  const sock = join(dir, 'vhost.sock');
  const device = new ArpResponder({ ip: [10, 0, 2, 2], mac: Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02) });
  const server = new VhostUserServer(device);
  server.listen(sock);
  server.on('connect', () => say('   QEMU connected to the vhost-user socket'));
  say(`2. backend listening on ${sock}`);

  say('3. booting the guest (QEMU, software emulation unless KVM really works here)');
  const script = [
    'ip link set eth0 up',
    'ip addr add 10.0.2.15/24 dev eth0',
    'echo "guest: eth0 is $(cat /sys/class/net/eth0/address), 10.0.2.15/24; resolving 10.0.2.2"',
    'ping -c 1 -W 1 10.0.2.2 >/dev/null 2>&1',
    'echo "guest: neighbour table: $(ip neigh show dev eth0)"',
  ].join('\n');
  const t1 = Date.now();
  const guest = await startGuest({ socketPath: sock, script, timeoutMs: 180_000, guestTimeoutSec: 150 });
  await guest.waitFor(/VUNET-GUEST: booted/, 150_000);
  say(`   booted in ${Date.now() - t1} ms (${guest.accel})`);
  const exit = await guest.exited;
  for (const line of guest.output.split('\n')) if (line.startsWith('guest:')) say(`   ${line}`);
  say('4. what the device saw');
  say(`   frames from the guest: ${device.received.length}, ARP requests for 10.0.2.2: ${device.arpRequests}, replies delivered: ${device.arpReplies}`);
  server.close();
  rmSync(dir, { recursive: true, force: true });
  const ok = exit.guestStatus === 0 && device.arpReplies > 0 && /lladdr 52:55:0a:00:02:02/.test(guest.output);
  say(ok ? '\nframes crossed both ways: the guest learnt the device\'s MAC from a frame the device wrote into its RX queue' : '\ndemo failed: see the output above');
  process.exitCode = ok ? 0 : 1;
}

main().catch((err: unknown) => {
  process.stderr.write(`vunet demo: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 1;
});
