// The addon's confine() (native/confine.cc, src/host/confine.ts), run in child processes so that
// this test runner stays unconfined: test/host/fixtures/confine-child.ts confines itself and
// prints what it could still do. Needs root (the user switch, and a sandbox that refuses what
// file permissions would allow).
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import type { Test } from 'tap';
import type { ConfineReport } from '../../src/host/confine.js';
import { capabilityName, confine } from '../../src/host/confine.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/confine-child.ts', import.meta.url));
const EPERM = -1;

interface ChildResult {
  report: ConfineReport;
  status: Record<string, string>;
  [key: string]: unknown;
}

function runChild(mode: 'sandbox' | 'user', dir: string): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', CHILD, mode, dir], { cwd: ROOT, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${mode} child failed: ${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ChildResult);
    });
  });
}

/** DIR with the files the child expects; open to everyone in 'user' mode (file permissions then
 *  allow what the sandbox must refuse). */
function makeDir(t: Test, open: boolean): string {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-confine-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'gone'));
  for (const f of ['allowed', 'kept', 'kept2', 'gone/a', 'gone/b']) writeFileSync(join(dir, f), '');
  if (open) for (const p of [dir, join(dir, 'gone'), join(dir, 'allowed'), join(dir, 'kept'), join(dir, 'kept2')]) chmodSync(p, 0o777);
  return dir;
}

t.test('argument checks (no confinement happens)', async (t) => {
  t.throws(() => confine({ keepCapabilities: [0], sandbox: false }), /CAP_NET_RAW/, 'only CAP_NET_RAW may be kept');
  t.throws(() => confine({ user: { uid: -1, gid: 0 }, keepCapabilities: [], sandbox: false }), /uid/);
  t.throws(() => confine({ user: { uid: 4294967295, gid: 1 }, keepCapabilities: [], sandbox: false }), /uid/, '(uid_t)-1 refused');
  t.throws(() => confine({ keepCapabilities: [], sandbox: false, writableFiles: [''] }), /non-empty/);
  t.equal(capabilityName(13), 'CAP_NET_RAW');
  t.equal(capabilityName(99), 'CAP_99');
});

t.test('the sandbox without a user switch', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const dir = makeDir(t, false);
  const r = await runChild('sandbox', dir);
  t.equal(r.report.uid, 0, 'still uid 0');
  t.same(r.report.capabilities, [], 'no capability left');
  t.equal(r.status.CapEff, '0000000000000000');
  t.equal(r.status.CapBnd, '0000000000000000', 'bounding set emptied');
  t.equal(r.status.NoNewPrivs, '1');
  t.equal(r.status.Seccomp, '2', 'seccomp filter mode');
  t.equal(r.report.seccomp, true);
  t.equal(r.execve, EPERM, 'execve: EPERM');
  t.equal(r.spawn, 'EPERM', 'child_process: the fork is refused');
  t.equal(r.openWrite, 'EPERM', "open(O_WRONLY|O_CREAT|O_TRUNC): EPERM, though root's DAC would allow it");
  t.equal(r.openAppend, 'EPERM', 'open for appending: EPERM');
  t.equal(r.openReadWrite, 'EPERM', 'O_RDWR, even on the Landlock-writable file: EPERM');
  t.equal(r.openCreate, 'EPERM', 'O_CREAT|O_EXCL: EPERM');
  t.equal(r.openRead, 'ok', 'O_RDONLY works');
  t.equal(r.writeOpenedBefore, 'ok', 'a file opened for writing before stays writable');
  t.equal(r.mkdir, 'EPERM', 'mkdir: EPERM');
  t.equal(r.asyncOpenWrite, 'EPERM', 'open for writing on a pool thread: EPERM (the filter binds every thread)');
  t.equal(r.asyncReadFile, 'ok', 'fs.readFile on the libuv pool works');
  t.equal(r.worker, '42', 'a worker thread starts and answers');
  t.equal(r.tcp, 'pong', 'TCP on loopback works');
  t.equal(r.rawIcmp, 'EPERM', 'raw socket without CAP_NET_RAW: EPERM');
  t.equal(r.setuid, 'EPERM', 'setuid: EPERM');
  t.ok(readFileSync(join(dir, 'before'), 'utf8').includes('still writable'));

  if (r.report.landlockAbi === 0) {
    t.comment(`Landlock not applied: ${r.report.landlockError ?? '?'}`);
    return;
  }
  t.equal(r.unlinkOutside, 'EACCES', 'Landlock: no removal outside the allowed directory');
  t.equal(r.unlinkInside, 'ok', 'Landlock: removal inside it works');
  t.equal(r.asyncUnlinkInside, 'ok');
  t.notOk(existsSync(join(dir, 'gone', 'a')));
  if (r.report.landlockAllThreads) {
    t.equal(r.asyncUnlinkOutside, 'EACCES', 'Landlock binds the pool threads too (TSYNC)');
  } else {
    // The known limit without LANDLOCK_RESTRICT_SELF_TSYNC: threads that existed before the call
    // (the libuv pool here) are outside the domain. The seccomp filter still binds them.
    t.equal(r.asyncUnlinkOutside, 'ok', `Landlock ABI ${r.report.landlockAbi} without TSYNC: a pool thread can still unlink`);
  }
});

t.test('switching to nobody, keeping CAP_NET_RAW', { skip: process.getuid?.() !== 0 ? 'needs root' : false }, async (t) => {
  const dir = makeDir(t, true);
  const r = await runChild('user', dir);
  t.equal(r.status.Uid, '65534\t65534\t65534\t65534', 'real, effective, saved and fs uid');
  t.equal(r.status.Gid, '65534\t65534\t65534\t65534');
  t.same(r.report.capabilities, [13]);
  t.equal(r.status.CapEff, '0000000000002000', 'CapEff: CAP_NET_RAW only');
  t.equal(r.status.CapPrm, '0000000000002000', 'CapPrm: CAP_NET_RAW only');
  t.equal(r.status.CapBnd, '0000000000002000', 'bounding set: CAP_NET_RAW only');
  t.equal(r.status.NoNewPrivs, '1');
  t.equal(r.status.Seccomp, '2');
  t.equal(r.rawIcmp, 'ok', 'raw ICMP socket opens (CAP_NET_RAW kept)');
  t.equal(r.execve, EPERM);
  t.equal(r.openWrite, 'EPERM', 'open for writing a world-writable file: EPERM');
  t.equal(r.setuid, 'EPERM', 'no way back to root');
  t.equal(r.worker, '42');
  t.equal(r.tcp, 'pong');
  if (r.report.landlockAbi > 0) t.equal(r.unlinkOutside, 'EACCES', 'Landlock: no removal in a world-writable directory');
});
