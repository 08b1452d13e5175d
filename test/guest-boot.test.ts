// Boots the vunet test guest (vm-images/, scripts/qemu.ts) without a NIC and checks that the
// image has what the network tests need, and that a guest always ends QEMU by itself: after its
// script, on a kernel panic, and on a hung script (guest watchdog); and that timeoutMs kills QEMU.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BOOTED_MARKER, ensureGuestImage, scriptCpio, startGuest } from '../scripts/qemu.js';

t.test('script archive is a newc cpio that GNU cpio reads', async (t) => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'vunet-cpio-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'a.cpio');
  writeFileSync(file, scriptCpio('echo hi\n', { '/etc/x.conf': 'x=1\n', 'opt/tool/run': { data: 'true\n', mode: 0o755 } }));
  const r = spawnSync('cpio', ['-itv', '--quiet', '-F', file], { encoding: 'utf8' });
  t.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  const names = lines.map((l) => l.split(/\s+/).at(-1));
  t.same(names, ['opt', 'opt/tool', 'etc/x.conf', 'opt/tool/run', 'test.sh']);
  t.match(lines[4] ?? '', /^-rwxr-xr-x .* 8 .* test\.sh$/);
  t.match(lines[2] ?? '', /^-rw-r--r-- /);
  t.throws(() => scriptCpio('', { '/tmp/x': 'hidden' }), /mount point/);
});

const image = await ensureGuestImage();

t.test('guest boots without a NIC and has the tools', async (t) => {
  const started = Date.now();
  const g = await startGuest({
    image,
    timeoutMs: 120_000,
    script: [
      'echo "kernel=$(uname -r)"',
      'lsmod',
      'grep -q "^virtio_net " /proc/modules && echo "virtio_net: loaded"',
      'ping -V || true',
      'ping-iputils -V',
      'traceroute --version',
      'iperf3 --version',
      'socat -V | head -1',
      'tracepath -V',
      'ip -o link show lo',
      'ip -o addr show lo',
      'cat /etc/vunet-test.conf',
      'exit 0',
      '',
    ].join('\n'),
    extraFiles: { '/etc/vunet-test.conf': 'extra file: ok\n' },
  });
  t.teardown(() => g.kill('SIGKILL'));
  await g.waitFor(new RegExp(BOOTED_MARKER), 90_000);
  const bootMs = Date.now() - started;
  const r = await g.exited;
  t.comment(`accel ${g.accel}, booted in ${bootMs} ms, QEMU done in ${Date.now() - started} ms`);
  const out = g.output;
  t.equal(r.timedOut, false, 'QEMU ended by itself');
  t.equal(r.code, 0, `QEMU exit code (stderr: ${g.stderr.trim()})`);
  t.equal(r.guestStatus, 0, 'guest script exit status');
  t.match(out, /^kernel=\d+\.\d+\.\d+-\d+-cloud-amd64$/m);
  for (const m of ['virtio_ring', 'virtio', 'virtio_pci', 'net_failover', 'virtio_net']) {
    t.match(out, new RegExp(`^${m}\\s+\\d+`, 'm'), `lsmod lists ${m}`);
  }
  t.match(out, /^virtio_net: loaded$/m);
  t.match(out, /^ping from iputils \d+/m, 'iputils ping as ping-iputils');
  t.match(out, /BusyBox v1\.\d+/, 'busybox ping as ping');
  t.match(out, /^Modern traceroute for Linux, version \d/m, "traceroute is Debian's");
  t.match(out, /^iperf 3\.\d+/m);
  t.match(out, /^socat by Gerhard Rieger/m);
  t.match(out, /^tracepath from iputils \d+/m);
  t.match(out, /^1: lo: <LOOPBACK,UP,LOWER_UP>/m, 'lo is up');
  t.match(out, /inet6 ::1\/128/, 'IPv6 on lo');
  t.match(out, /^extra file: ok$/m);
  t.match(out, /^VUNET-GUEST: exit 0$/m);
  t.notMatch(out, /insmod .* failed|not found|Kernel panic/);
});

t.test('QEMU always ends: panic, hung script, host timeout', async (t) => {
  const panic = await startGuest({ image, timeoutMs: 120_000, script: 'echo c > /proc/sysrq-trigger\nsleep 600\n' });
  const hung = await startGuest({ image, timeoutMs: 120_000, guestTimeoutSec: 2, script: 'sleep 600\n' });
  const killed = await startGuest({ image, timeoutMs: 1500, script: 'sleep 600\n' });
  t.teardown(() => {
    for (const g of [panic, hung, killed]) g.kill('SIGKILL');
  });
  const [p, h, k] = await Promise.all([panic.exited, hung.exited, killed.exited]);

  t.equal(p.timedOut, false, 'panic: QEMU ended by itself (panic=-1, -no-reboot)');
  t.match(panic.output, /Kernel panic/);
  t.equal(p.guestStatus, undefined);

  t.equal(h.timedOut, false, 'hung script: QEMU ended by itself (vunet.timeout)');
  t.match(hung.output, /^VUNET-GUEST: timeout after 2s$/m);
  t.equal(h.code, 0);

  t.equal(k.timedOut, true, 'timeoutMs kills QEMU');
  t.notOk(killed.output.includes('VUNET-GUEST: exit'), 'the killed guest did not finish');
});
