// vunet --pid-file: the file appears once the socket listens (a supervisor waiting for it can
// connect at once), holds the process id, is removed at a clean exit (by the user vunet has become
// when started as root), and is refused while a running vunet holds it; a stale one is replaced.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { TestFrontend } from 'vhost-user-ts/testing';
import { until } from './support/wait.js';

const BIN = join(import.meta.dirname, '..', 'bin', 'vunet.js');
const run = (...args: string[]) => spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000 });

/** A directory like /tmp (sticky, open to all), as test/cli.test.ts makes: vunet started as root
 *  is nobody by the time it removes its files. */
function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-pid-'));
  chmodSync(dir, 0o1777);
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function start(sock: string, pidFile: string) {
  const child = spawn(process.execPath, [BIN, '--socket', sock, '--pid-file', pidFile, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, stderr: () => stderr };
}

t.test('written once the socket listens, refused to a second vunet, removed at exit', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'vunet.sock');
  const pidFile = join(dir, 'vunet.pid');
  const v = start(sock, pidFile);
  t.teardown(() => void v.child.kill('SIGKILL'));
  await until(() => existsSync(pidFile), `no pid file: ${v.stderr()}`, 15_000);
  // What a supervisor does: connect as soon as the file is there.
  const fe = TestFrontend.connect(sock);
  t.ok((await fe.getFeatures()) > 0n, 'the socket serves as soon as the pid file exists');
  fe.close();
  t.equal(readFileSync(pidFile, 'utf8'), `${v.child.pid}\n`, 'the file holds the process id');
  t.equal(statSync(pidFile).mode & 0o777, 0o644, 'mode 0644');

  const sock2 = join(dir, 'other.sock');
  const second = run('--socket', sock2, '--pid-file', pidFile);
  t.equal(second.status, 1, 'a second vunet with the same pid file is refused');
  t.equal(second.stderr, `vunet: --pid-file ${pidFile} is held by a running vunet (pid ${v.child.pid}): stop it or choose another path\n`, 'in one line');
  t.notOk(existsSync(sock2), 'before it made its socket');
  t.equal(readFileSync(pidFile, 'utf8'), `${v.child.pid}\n`, 'the file still names the first');

  v.child.kill('SIGTERM');
  t.equal(await v.exited, 0, 'exit 0 on SIGTERM');
  t.notOk(existsSync(pidFile), 'pid file removed at exit');
  t.notOk(existsSync(sock), 'socket removed');
});

t.test('a stale pid file (a dead process, another program, garbage) is replaced', async (t) => {
  const dir = tempDir(t);
  const pidFile = join(dir, 'vunet.pid');
  const dead = spawnSync('true').pid;
  const sleeper = spawn('sleep', ['60'], { stdio: 'ignore' });
  t.teardown(() => void sleeper.kill('SIGKILL'));
  for (const [what, content] of [
    ['a dead process', `${dead}\n`],
    ['a live process that is not vunet', `${sleeper.pid}\n`],
    ['garbage', 'not a pid\n'],
  ] as const) {
    writeFileSync(pidFile, content);
    const v = start(join(dir, 'vunet.sock'), pidFile);
    await until(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8') === `${v.child.pid}\n`, `${what}: not replaced: ${v.stderr()}`, 15_000);
    t.pass(`${what}: replaced`);
    v.child.kill('SIGINT');
    t.equal(await v.exited, 0);
    t.notOk(existsSync(pidFile), `${what}: removed at exit`);
  }
});

t.test('a pid file that cannot be written: one line, and the socket is not left behind', async (t) => {
  const dir = tempDir(t);
  const sock = join(dir, 'vunet.sock');
  const r = run('--socket', sock, '--pid-file', join(dir, 'no-such-dir', 'vunet.pid'));
  t.equal(r.status, 1);
  t.match(r.stderr, /^vunet: cannot write --pid-file .*no-such-dir\/vunet\.pid: ENOENT \(check the directory exists and is writable\)\n$/);
  t.notOk(existsSync(sock), 'socket removed');
  t.equal(run('--socket', sock, '--pid-file', '').status, 2, 'an empty name is a usage error');
});
