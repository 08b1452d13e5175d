// The vunet command: errors for people (one line, non-zero exit), a stale socket replaced, a live
// one refused, the QEMU arguments printed, and a clean exit on SIGTERM/SIGINT with the socket gone.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
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
    const ctlSt = statSync(`${sock}.ctl`);
    t.same([ctlSt.mode & 0o777, ctlSt.gid], [0o660, 100], 'the control socket: the same mode and group');
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

t.test('vunet ctl: status, forwards added and removed at run time, the lists; errors one line', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'ctl.sock');
  const ctlPath = `${sock}.ctl`;
  const port = 21000 + (process.pid % 20000);
  const v = start(sock, '--log-level', 'info', '-t', `127.0.0.1:${port}:80`);
  let stdout = '';
  v.child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  await v.ready;
  t.equal(statSync(ctlPath).mode & 0o777, 0o600, 'the control socket is 0600 without --socket-mode');
  const ctl = (...args: string[]) => run('ctl', '--socket', sock, ...args);

  const status = ctl('status');
  t.equal(status.status, 0, status.stderr);
  t.match(status.stdout, /^vunet \S+, up \d+s\nguest: not attached\n  MAC not seen yet\nICMP: .+\nforwards:\n  TCP 127\.0\.0\.1:\d+ → guest port 80\n/);
  t.match(status.stdout, /flows: TCP 0, UDP 0, ICMP 0, forwarded UDP sessions 0\ndrops: none\n$/);
  const json = JSON.parse(ctl('status', '--json').stdout) as { forwards: string[]; attached: boolean };
  t.same(json.forwards, [`TCP 127.0.0.1:${port} → guest port 80`]);

  const added = ctl('add', '-t', `127.0.0.1:${port + 1}:22`);
  t.equal(added.status, 0, added.stderr);
  t.match(JSON.parse(added.stdout), [{ proto: 'tcp', spec: `127.0.0.1:${port + 1}:22`, listen: [`127.0.0.1:${port + 1}`] }]);
  await until(() => stdout.includes(`port forward listening: TCP 127.0.0.1:${port + 1} → guest port 22`), 'the log line of the forward added');
  const listening = spawnSync('socat', ['-u', 'OPEN:/dev/null', `TCP:127.0.0.1:${port + 1}`], { encoding: 'utf8', timeout: 10_000 });
  t.equal(listening.status, 0, 'the forward added listens');
  t.match(JSON.parse(ctl('forwards').stdout), [{ hostPort: port }, { hostPort: port + 1 }]);

  // Errors: the same as the flags', one line, exit 1.
  for (const [args, msg] of [
    [['add', '-t', `${port}`], new RegExp(`^vunet ctl: --tcp-forward: host port ${port} is forwarded already \\(127\\.0\\.0\\.1:${port}:80\\)\n$`)],
    [['add', '-t', '70000'], /^vunet ctl: --tcp-forward must be \[ADDR:\]HOSTPORT\[:GUESTPORT\]\[@GUEST\] .*port 70000 is not in 1\.\.65535\)\n$/],
    [['add', '-u', '[::1'], /^vunet ctl: --udp-forward must be .*no \] after the IPv6 address\)\n$/],
    [['remove', '-t', `${port + 5}`], new RegExp(`^vunet ctl: --tcp-forward: host port ${port + 5} is not forwarded \\(see vunet ctl forwards\\)\n$`)],
  ] as const) {
    const r = ctl(...args);
    t.equal(r.status, 1, `${args.join(' ')}: exit 1`);
    t.match(r.stderr, msg, `${args.join(' ')}: ${r.stderr.trim()}`);
    t.equal(r.stdout, '');
  }
  // A host port another program holds: refused with the start's message, and all or nothing (the
  // range's free first port is not left listening).
  const holder = createServer();
  await new Promise<void>((r) => holder.listen(port + 3, '127.0.0.1', r));
  const inUse = ctl('add', '-t', `127.0.0.1:${port + 2}-${port + 3}`);
  holder.close();
  t.equal(inUse.status, 1);
  t.equal(inUse.stderr, `vunet ctl: cannot listen on TCP port ${port + 3} for -t: EADDRINUSE (another program uses it; pick another port)\n`);
  t.equal((JSON.parse(ctl('forwards').stdout) as unknown[]).length, 2, 'nothing of that range added');
  const free = spawnSync('socat', ['-u', 'OPEN:/dev/null', `TCP:127.0.0.1:${port + 2}`], { encoding: 'utf8', timeout: 10_000 });
  t.not(free.status, 0, 'its first port not left listening');

  const removed = ctl('remove', '-t', `127.0.0.1:${port + 1}`);
  t.equal(removed.status, 0, removed.stderr);
  const refused = spawnSync('socat', ['-u', 'OPEN:/dev/null', `TCP:127.0.0.1:${port + 1}`], { encoding: 'utf8', timeout: 10_000 });
  t.not(refused.status, 0, 'the forward removed no longer listens');
  t.match(refused.stderr, /Connection refused/);
  for (const cmd of ['leases', 'neighbours', 'flows']) t.same(JSON.parse(ctl(cmd).stdout), [], `${cmd}: none yet (no guest)`);
  t.match(JSON.parse(ctl('counters').stdout), { connected: false, tcp: { flows: 0 } });

  // SIGUSR1: the counters and the same summary, one log line.
  v.child.kill('SIGUSR1');
  await until(() => stdout.includes('"msg":"status"'), 'the status line');
  const line = JSON.parse(stdout.split('\n').find((l) => l.includes('"msg":"status"'))!) as {
    summary: { forwards: string[]; drops: unknown[] };
    tcp: { acceptsRefused: number };
  };
  t.equal(line.tcp.acceptsRefused, 1, 'every counter, as before');
  t.same(line.summary.forwards, [`TCP 127.0.0.1:${port} → guest port 80`]);
  // The connection made through the forward added found no guest: refused, and said so.
  t.same(line.summary.drops, [{ name: 'tcp.acceptsRefused', count: 1, meaning: 'forwarded connections refused (rate, table share, guest address unknown)' }]);
  t.match(ctl('status').stdout, /\ndrops:\n  tcp\.acceptsRefused 1  forwarded connections refused \(rate, table share, guest address unknown\)\n$/);

  // A second vunet may not take the control socket over.
  const second = run('--socket', join(dir, 'other.sock'), '--control', ctlPath);
  t.equal(second.status, 1);
  t.match(
    second.stderr,
    /^vunet: control socket .*ctl\.sock\.ctl is in use by a running vunet: stop it, or give this one another --control path \(or --no-control\)\n$/,
  );
  t.notOk(existsSync(join(dir, 'other.sock')), 'its vhost-user socket removed again');

  v.child.kill('SIGTERM');
  t.equal(await v.exited, 0);
  t.notOk(existsSync(ctlPath), 'the control socket removed at exit');
  const gone = ctl('status');
  t.equal(gone.status, 1);
  t.match(
    gone.stderr,
    /^vunet ctl: cannot reach the control socket .*ctl\.sock\.ctl: no vunet is running there \(start vunet, or name its socket with --socket or --control\)\n$/,
  );
  for (const args of [['status'], ['ctl', '--socket', sock, 'bogus'], ['ctl', '--socket', sock, 'add'], ['ctl', '--socket', sock, 'status', '-t', '80']]) {
    const r = args[0] === 'ctl' ? run(...args) : run('ctl', ...args);
    t.equal(r.status, 2, `${args.join(' ')}: exit 2`);
    t.match(r.stderr, /^vunet ctl: .+\n$/, r.stderr.trim());
  }
});

t.test('--fd: no control socket unless --control names one', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'given.sock');
  const ctlPath = join(dir, 'given.ctl');
  const fd = native.unixListen(sock, 4);
  const child = spawn(process.execPath, [BIN, '--fd', '3', '--control', ctlPath, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe', fd] });
  native.close(fd);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await until(() => /Start QEMU with/.test(stderr), 'vunet did not start', 15_000);
  t.equal(run('ctl', '--control', ctlPath, 'forwards').stdout, '[]\n', 'served on the --control path');
  t.notOk(existsSync(`${sock}.ctl`), 'nothing beside the given socket');
  child.kill('SIGTERM');
  t.equal(await exited, 0);
  t.notOk(existsSync(ctlPath), 'removed at exit');
});
