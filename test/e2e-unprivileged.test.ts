// End to end: QEMU run as an unprivileged user, as libvirt runs it. vunet, started as root, makes
// its socket with --socket-group G --socket-mode 0660 (and becomes nobody); QEMU runs as a user
// of no account on this machine whose only supplementary group is G, connects, and the guest gets
// its DHCP lease. The same user without G is refused the socket: the group is what lets it in.
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startGuest } from '../scripts/qemu.js';
import { until } from './support/wait.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'vunet.js');
/** Ids no account here uses (setpriv needs none): QEMU's user and group, and the socket's group. */
const QEMU_UID = 4243;
const QEMU_GID = 4243;
const SOCKET_GID = 4244;

const script = `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 10 -T 3 2>&1
`;

t.test('QEMU as an unprivileged user in the socket group: the guest gets its lease', { skip: process.getuid?.() === 0 ? false : 'needs root' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-e2e-unpriv-'));
  chmodSync(dir, 0o1777); // like /tmp: QEMU's user may reach the socket, nobody may remove it
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sock = join(dir, 'vunet.sock');
  const vunet = spawn(process.execPath, [BIN, '--socket', sock, '--socket-group', String(SOCKET_GID), '--socket-mode', '0660', '--log-level', 'warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  vunet.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => vunet.on('exit', (code) => r(code)));
  t.teardown(() => void vunet.kill('SIGKILL'));
  await until(() => stderr.includes('Start QEMU with'), `vunet did not start: ${stderr}`, 15_000);
  const st = statSync(sock);
  t.equal(st.mode & 0o777, 0o660, 'socket mode 0660');
  t.equal(st.gid, SOCKET_GID, 'socket group G');
  t.not(st.uid, QEMU_UID, "not QEMU's user's own socket");

  // Without the group: QEMU cannot connect and stops at once.
  const refused = await startGuest({ socketPath: sock, script, user: { uid: QEMU_UID, gid: QEMU_GID, groups: [] }, timeoutMs: 60_000 });
  const refusedExit = await refused.exited;
  t.not(refusedExit.code, 0, 'QEMU without the group fails');
  t.match(refused.stderr, /Permission denied/, `refused the socket (${refused.stderr.trim().split('\n')[0] ?? ''})`);

  const guest = await startGuest({
    socketPath: sock,
    script,
    user: { uid: QEMU_UID, gid: QEMU_GID, groups: [SOCKET_GID] },
    timeoutMs: 180_000,
    guestTimeoutSec: 150,
  });
  const uidOf = (pid: number | undefined): string | undefined => {
    try {
      return /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    } catch {
      return undefined;
    }
  };
  await until(() => uidOf(guest.pid) === String(QEMU_UID) || guest.output !== '', 'QEMU did not change user', 10_000);
  t.equal(uidOf(guest.pid), String(QEMU_UID), 'QEMU runs as the unprivileged user (its /proc/PID/status)');
  const exit = await guest.exited;
  t.equal(exit.guestStatus, 0, 'guest script ran to its end');
  t.match(guest.output, /udhcpc: lease of 10\.0\.2\.15 obtained/, 'DHCP lease through vunet');
  vunet.kill('SIGTERM');
  t.equal(await exited, 0, 'vunet stops cleanly');
});
