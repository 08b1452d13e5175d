// The vunet command: errors for people (one line, non-zero exit), a stale socket replaced, a live
// one refused, the QEMU arguments printed, and a clean exit on SIGTERM/SIGINT with the socket gone.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { TestFrontend, native } from 'vhost-user-ts/testing';
import { until } from './support/wait.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'vunet.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

/** A socket directory like /tmp (sticky, open to all): a vunet started as root runs as nobody by
 *  the time it stops, and must still be able to remove its socket there. */
function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-cli-'));
  chmodSync(dir, 0o1777);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

t.test('--help and bad flags', async (t) => {
  const help = run('--help');
  t.equal(help.status, 0);
  t.match(help.stdout, /--socket <path>/);
  for (const args of [
    ['--socket', '/tmp/x', '--mtu', '70000'],
    ['--socket', '/tmp/x', '--bogus'],
    ['--bogus'],
    ['--mtu', '1500'],
    ['--socket', '/tmp/x', '--ipv4', '300.1.1.0/24'],
  ]) {
    const r = run(...args);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, /^vunet: .+\n$/, `${args.join(' ')}: one line (${r.stderr.trim()})`);
  }
});

/** Starts vunet and resolves once it listens. */
function start(sock: string, ...extra: string[]) {
  const child = spawn(process.execPath, [BIN, '--socket', sock, '--log-level', 'warn', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vunet did not start: ${stderr}`)), 15_000);
    child.stderr.on('data', () => {
      if (stderr.includes('Start QEMU with')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', () => reject(new Error(`vunet exited: ${stderr}`)));
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, ready, exited, stderr: () => stderr };
}

t.test('prints the QEMU arguments, refuses a live socket, stops cleanly', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'vunet.sock');
  const v = start(sock);
  await v.ready;
  t.match(v.stderr(), new RegExp(`-chardev socket,id=vunet0,path=${sock},reconnect=1`), 'QEMU chardev argument');
  t.match(v.stderr(), /-device virtio-net-pci,netdev=net0,vectors=0/);
  const second = run('--socket', sock);
  t.equal(second.status, 1, 'second instance refused');
  t.match(second.stderr, /^vunet: .* is in use by a running process: stop it or choose another --socket path\n$/);
  t.equal(second.stdout, '', 'a failed start prints nothing but its error (no log lines)');
  v.child.kill('SIGTERM');
  t.equal(await v.exited, 0, 'exit 0 on SIGTERM');
  t.notOk(existsSync(sock), 'socket removed');
});

t.test('a stale socket is replaced; a non-socket file is not', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'stale.sock');
  // A socket file nobody listens on any more: bound, then closed without unlinking.
  native.close(native.unixListen(sock, 1));
  writeFileSync(join(dir, 'placeholder'), '');
  t.ok(existsSync(sock), 'stale socket present');
  const v = start(sock);
  await v.ready;
  t.pass('started over the stale socket');
  v.child.kill('SIGINT');
  t.equal(await v.exited, 0, 'exit 0 on SIGINT');
  const file = join(dir, 'placeholder');
  const r = run('--socket', file);
  t.equal(r.status, 1);
  t.match(r.stderr, /exists and is not a socket/);
  t.equal(r.stdout, '', 'nothing but the error');
});

const asRoot = process.getuid?.() === 0;

t.test(
  '--socket-mode and --socket-group: a client of that group (not the owner) may connect, others may not',
  { skip: asRoot ? false : 'needs root (to run clients as other users)' },
  async (t) => {
    const dir = tempDir(t);
    const sock = join(dir, 'shared.sock');
    const v = start(sock, '--socket-mode', '0660', '--socket-group', 'users');
    await v.ready;
    const st = statSync(sock);
    t.equal(st.mode & 0o777, 0o660, 'mode 0660');
    t.equal(st.gid, 100, "group 'users'");
    // A user that is neither the socket's owner (nobody, after the drop) nor root.
    const connect = (gid: number) =>
      spawnSync('setpriv', ['--reuid=4242', `--regid=${gid}`, '--clear-groups', 'socat', '-u', 'OPEN:/dev/null', `UNIX-CONNECT:${sock}`], {
        encoding: 'utf8',
        timeout: 10_000,
      });
    t.equal(connect(100).status, 0, "a member of 'users' connects (as QEMU run by libvirt's qemu user would)");
    const other = connect(4242);
    t.not(other.status, 0, 'anyone else is refused');
    t.match(other.stderr, /Permission denied/);
    v.child.kill('SIGTERM');
    t.equal(await v.exited, 0);
    const bad = run('--socket', join(dir, 'x.sock'), '--socket-group', 'no-such-group-here');
    t.equal(bad.status, 2);
    t.match(bad.stderr, /^vunet: --socket-group: no group 'no-such-group-here' in \/etc\/group/);
    t.match(run('--socket', join(dir, 'x.sock'), '--socket-mode', '888').stderr, /--socket-mode must be octal permission bits/);
  },
);

t.test('--fd: a listening socket given by the parent is served, and its file left to its maker', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'given.sock');
  const fd = native.unixListen(sock, 4);
  const child = spawn(process.execPath, [BIN, '--fd', '3', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe', fd] });
  native.close(fd); // the child has its own copy
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await until(() => /Start QEMU with/.test(stderr), 'vunet did not start', 15_000);
  t.match(stderr, new RegExp(`path=${sock},`), 'the QEMU arguments name the given socket');
  const fe = TestFrontend.connect(sock);
  t.ok((await fe.getFeatures()) > 0n, 'a frontend is served');
  fe.close();
  child.kill('SIGTERM');
  t.equal(await exited, 0);
  t.ok(existsSync(sock), 'the socket file stays: its maker removes it');
  const notSocket = spawnSync(process.execPath, [BIN, '--fd', '0'], { encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
  t.equal(notSocket.status, 1);
  t.match(notSocket.stderr, /^vunet: cannot listen on fd 0: .*not a (listening unix stream )?socket.*\(give a listening unix socket\)\n$/);
  t.match(run('--fd', '3', '--socket', sock).stderr, /--fd and --socket both name the vhost-user socket/);
});

const socketActivate = spawnSync('which', ['systemd-socket-activate'], { encoding: 'utf8' }).stdout.trim();

t.test(
  "systemd's socket activation: started on the first connection, vunet serves the socket it is passed",
  { skip: socketActivate === '' ? 'systemd-socket-activate is not installed' : false },
  async (t) => {
    const dir = tempDir(t);
    const sock = join(dir, 'activated.sock');
    const child = spawn(socketActivate, ['-l', sock, process.execPath, BIN, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await until(() => /Listening on/.test(stderr), 'systemd-socket-activate did not listen', 15_000);
    const fe = TestFrontend.connect(sock); // the first connection starts vunet, which accepts it
    t.ok((await fe.getFeatures()) > 0n, 'served by the vunet it started');
    t.match(stderr, /Start QEMU with/);
    fe.close();
    child.kill('SIGTERM');
    await exited;
  },
);

t.test('each port forward says where it listens, one line each', async (t) => {
  const dir = tempDir(t);
  const port = 20000 + (process.pid % 20000);
  const child = spawn(process.execPath, [BIN, '--socket', join(dir, 'fw.sock'), '-t', `127.0.0.1:${port}:80`, '-u', `${port}:53`], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await until(() => /"msg":"vunet listening"/.test(stdout), 'vunet did not start', 15_000);
  const lines = stdout
    .split('\n')
    .filter((l) => l.includes('port forward listening'))
    .map((l) => (JSON.parse(l) as { msg: string }).msg);
  t.ok(lines.includes(`port forward listening: TCP 127.0.0.1:${port} → guest port 80`), 'the TCP forward, on its address');
  t.ok(lines.includes(`port forward listening: UDP 0.0.0.0:${port} → guest port 53`), 'the UDP forward, on every IPv4 address');
  // (and on every IPv6 address where the host has IPv6: [::]:port)
  t.ok(lines.length <= 3 && lines.every((l) => /^port forward listening: (TCP|UDP) \S+:\d+ → guest port \d+$/.test(l)), 'one line per listener');
  child.kill('SIGTERM');
  t.equal(await exited, 0);
});
