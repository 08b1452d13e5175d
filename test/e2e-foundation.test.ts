// End to end: a real Linux guest under QEMU attaches over vhost-user to a minimal device built on
// vhost-user-ts. The guest's ARP request reaches the device through the TX queue; the device's ARP
// reply reaches the guest through the RX queue and shows up in its neighbour table. Then QEMU is
// killed and a new QEMU attaches to the same backend process, with no fd or mapping left over.
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { VhostUserServer } from 'vhost-user-ts';
import { native } from 'vhost-user-ts/testing';
import { startGuest } from '../scripts/qemu.js';
import { ArpResponder } from './support/arp-responder.js';

const DEVICE_MAC = Uint8Array.of(0x52, 0x55, 0x0a, 0x00, 0x02, 0x02);
const GUEST_MAC = '52:54:00:12:34:56';

const script = `
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
# No echo reply will come (the device only answers ARP): the ping is there to trigger resolution.
ping -c 2 -W 1 10.0.2.2 >/dev/null 2>&1
ip neigh show dev eth0
cat /sys/class/net/eth0/statistics/rx_packets | sed 's/^/rx_packets=/'
`;

/** The process's fds of the kinds a vhost-user connection holds: the connection (a unix socket),
 *  kick, call and err eventfds, guest memory (memfd). Not every fd: others (pipes, files the
 *  runtime and tap open for a moment) come and go on their own and made the count flaky. */
const heldFds = (): number =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return /^(socket:|anon_inode:\[eventfd\]|\/memfd:)/.test(readlinkSync(`/proc/self/fd/${fd}`));
    } catch {
      return false; // closed meanwhile (the directory's own fd, among others)
    }
  }).length;

t.test('guest frames reach the device and device frames reach the guest', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-e2e-'));
  const sock = join(dir, 'vhost.sock');
  const dev = new ArpResponder({ ip: [10, 0, 2, 2], mac: DEVICE_MAC });
  const server = new VhostUserServer(dev);
  server.listen(sock);
  t.teardown(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const fds0 = heldFds();
  const maps0 = native.liveMappings();

  // First guest: ARP through both queues.
  const guest = await startGuest({ socketPath: sock, script, mac: GUEST_MAC, timeoutMs: 180_000, guestTimeoutSec: 150 });
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(guest.output, /10\.0\.2\.2 lladdr 52:55:0a:00:02:02 .*(REACHABLE|STALE|DELAY)/, 'guest neighbour table holds the device reply');
  t.ok(dev.arpRequests >= 1, `device saw the guest's ARP request (${dev.arpRequests})`);
  t.ok(dev.arpReplies >= 1, 'device reply was written into an RX buffer');
  const echo = dev.received.find((f) => f[12] === 0x08 && f[13] === 0x00 && f[23] === 1 && f[34] === 8);
  t.ok(echo, 'the ICMP echo request that followed resolution reached the device');
  const rx = /rx_packets=(\d+)/.exec(guest.output);
  t.ok(rx && Number(rx[1]) >= 1, 'guest counted received packets');
  await waitFor(() => !server.connected, 5000);

  // Second guest, killed mid-run: the backend must let go of everything it held.
  const guest2 = await startGuest({ socketPath: sock, script: `${script}\nsleep 600\n`, mac: GUEST_MAC, timeoutMs: 180_000 });
  await guest2.waitFor(/rx_packets=\d+/, 150_000);
  t.ok(server.connected, 'second QEMU attached to the same backend process');
  t.ok(native.liveMappings() > maps0, 'guest memory mapped while attached');
  t.ok(heldFds() > fds0, 'its socket, eventfds and memfds held while attached');
  guest2.kill('SIGKILL');
  await guest2.exited;
  await waitFor(() => !server.connected, 5000);
  t.equal(heldFds(), fds0, 'no socket, eventfd or memfd left over after QEMU was killed');
  t.equal(native.liveMappings(), maps0, 'no mapping left over after QEMU was killed');
  t.equal(server.connections, 2, 'one backend process served both QEMUs');
});

async function waitFor(cond: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}
