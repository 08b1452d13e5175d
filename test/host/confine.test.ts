// The addon's confine() (src/host/addon/confine.cc, src/host/confine.ts), run in child processes so that
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
import { capabilityName, confine, seccompProgram } from '../../src/host/confine.js';

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

// ---------- the seccomp filter, run on chosen calls ----------

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_I386 = 0x40000003;
/** x86_64 syscall numbers used below. */
const NR = {
  read: 0,
  write: 1,
  open: 2,
  close: 3,
  mmap: 9,
  mprotect: 10,
  ioctl: 16,
  socket: 41,
  sendmsg: 46,
  recvmsg: 47,
  setsockopt: 54,
  clone: 56,
  fork: 57,
  vfork: 58,
  execve: 59,
  creat: 85,
  unlink: 87,
  ptrace: 101,
  setuid: 105,
  capset: 126,
  mknod: 133,
  prctl: 157,
  mount: 165,
  futex: 202,
  epoll_wait: 232,
  openat: 257,
  unshare: 272,
  process_vm_readv: 310,
  execveat: 322,
  bpf: 321,
  io_uring_setup: 425,
  clone3: 435,
  openat2: 437,
  mkdir: 83,
  rename: 82,
  chmod: 90,
} as const;
type Verdict = 'allow' | 'kill' | `errno ${number}`;

/** A classic-BPF interpreter for the instructions the filter uses, on one struct seccomp_data. */
function runFilter(prog: Uint8Array, nr: number, args: readonly bigint[] = [], arch = AUDIT_ARCH_X86_64): Verdict {
  const data = Buffer.alloc(64);
  data.writeInt32LE(nr | 0, 0);
  data.writeUInt32LE(arch, 4);
  args.forEach((a, i) => data.writeBigUInt64LE(BigInt.asUintN(64, a), 16 + 8 * i));
  const p = Buffer.from(prog.buffer, prog.byteOffset, prog.byteLength);
  let acc = 0;
  for (let pc = 0; pc < p.length / 8;) {
    const code = p.readUInt16LE(pc * 8);
    const jt = p[pc * 8 + 2]!;
    const jf = p[pc * 8 + 3]!;
    const k = p.readUInt32LE(pc * 8 + 4);
    if (code === 0x20)
      acc = data.readUInt32LE(k); // LD W ABS
    else if (code === 0x54)
      acc = (acc & k) >>> 0; // ALU AND K
    else if (code === 0x06) {
      // RET K
      const action = (k & 0xffff0000) >>> 0;
      if (action === 0x7fff0000) return 'allow';
      if (action === 0x80000000 || action === 0) return 'kill';
      if (action === 0x00050000) return `errno ${k & 0xffff}`;
      throw new Error(`unexpected action ${k.toString(16)}`);
    } else if ((code & 0x07) === 0x05 && (code & 0x08) === 0) {
      const op = code & 0xf0;
      const taken = op === 0x10 ? acc === k : op === 0x20 ? acc > k : op === 0x30 ? acc >= k : op === 0x40 ? (acc & k) !== 0 : undefined;
      if (taken === undefined) throw new Error(`unexpected jump ${code.toString(16)}`);
      pc += 1 + (taken ? jt : jf);
      continue;
    } else throw new Error(`unexpected instruction ${code.toString(16)} at ${pc}`);
    pc++;
  }
  throw new Error('ran off the end of the program');
}

t.test('the seccomp filter on chosen calls', async (t) => {
  const prog = seccompProgram();
  t.ok(prog.length % 8 === 0 && prog.length / 8 < 4096, `${prog.length / 8} instructions`);
  const run = (nr: number, ...args: Array<number | bigint>): Verdict => runFilter(prog, nr, args.map(BigInt));
  const EPERM = 'errno 1';
  const ENOSYS = 'errno 38';

  t.equal(runFilter(prog, 11, [], AUDIT_ARCH_I386), 'kill', 'another architecture (i386 execve): killed');
  t.equal(runFilter(prog, NR.read, [], AUDIT_ARCH_I386), 'kill', 'even a harmless call');
  t.equal(run(0x40000000 | NR.execve), ENOSYS, 'x32 execve: refused');
  t.equal(run(0x40000000 | NR.read), ENOSYS, 'x32 read: refused');
  for (const name of [
    'execve',
    'execveat',
    'fork',
    'vfork',
    'ptrace',
    'process_vm_readv',
    'mount',
    'unshare',
    'bpf',
    'setuid',
    'capset',
    'mknod',
    'creat',
    'mkdir',
    'rename',
    'chmod',
  ] as const) {
    t.equal(run(NR[name]), EPERM, `${name}: EPERM`);
  }
  for (const name of ['clone3', 'openat2', 'io_uring_setup'] as const) t.equal(run(NR[name]), ENOSYS, `${name}: ENOSYS`);
  for (const name of ['read', 'write', 'close', 'mmap', 'mprotect', 'ioctl', 'sendmsg', 'recvmsg', 'prctl', 'futex', 'epoll_wait', 'unlink'] as const) {
    t.equal(run(NR[name], 1, 2, 3), 'allow', `${name}: allowed`);
  }

  const O = { RDONLY: 0, WRONLY: 1, RDWR: 2, CREAT: 0o100, TRUNC: 0o1000, APPEND: 0o2000, CLOEXEC: 0o2000000, PATH: 0o10000000, TMPFILE: 0o20200000 };
  t.equal(run(NR.open, 0, O.RDONLY | O.CLOEXEC), 'allow', 'open O_RDONLY');
  t.equal(run(NR.open, 0, O.PATH | O.CLOEXEC), 'allow', 'open O_PATH');
  t.equal(run(NR.open, 0, 0xffffffff00000000n), 'allow', 'high half of the flags ignored (as the kernel does)');
  for (const [what, flags] of [
    ['O_WRONLY', O.WRONLY],
    ['O_RDWR', O.RDWR],
    ['O_CREAT', O.CREAT],
    ['O_TRUNC', O.TRUNC],
    ['O_APPEND|O_WRONLY', O.APPEND | O.WRONLY],
    ['O_TMPFILE|O_RDWR', O.TMPFILE | O.RDWR],
  ] as const) {
    t.equal(run(NR.open, 0, flags), EPERM, `open ${what}: EPERM`);
    t.equal(run(NR.openat, -100, 0, flags), EPERM, `openat ${what}: EPERM`);
  }
  t.equal(run(NR.openat, -100, 0, O.RDONLY | O.CLOEXEC), 'allow', 'openat O_RDONLY');
  t.equal(run(NR.openat, -100, O.WRONLY, O.RDONLY), 'allow', 'openat reads its flags from the third argument');

  const THREAD = 0x3d0f00; // glibc's pthread_create: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|*TID
  t.equal(run(NR.clone, THREAD), 'allow', 'clone of a thread');
  t.equal(run(NR.clone, 17), EPERM, 'clone(SIGCHLD) (fork): EPERM');
  t.equal(run(NR.clone, 0x4111), EPERM, 'clone(VM|VFORK|SIGCHLD) (posix_spawn): EPERM');
  t.equal(run(NR.clone, THREAD | 0x10000000), EPERM, 'a thread in a new user namespace: EPERM');
  t.equal(run(NR.clone, THREAD | 0x40000000), EPERM, 'a thread in a new network namespace: EPERM');

  const AF = { UNIX: 1, INET: 2, NETLINK: 16, PACKET: 17, INET6: 10 };
  const SOCK = { STREAM: 1, DGRAM: 2, RAW: 3, PACKET: 10, NONBLOCK: 0o4000, CLOEXEC: 0o2000000 };
  const flags = SOCK.NONBLOCK | SOCK.CLOEXEC;
  t.equal(run(NR.socket, AF.INET, SOCK.STREAM | flags, 0), 'allow', 'TCP socket');
  t.equal(run(NR.socket, AF.INET6, SOCK.DGRAM | flags, 17), 'allow', 'UDP socket');
  t.equal(run(NR.socket, AF.INET, SOCK.DGRAM | flags, 1), 'allow', 'ICMP ping socket');
  t.equal(run(NR.socket, AF.INET, SOCK.RAW | flags, 1), 'allow', 'raw ICMP socket');
  t.equal(run(NR.socket, AF.INET6, SOCK.RAW | flags, 58), 'allow', 'raw ICMPv6 socket');
  t.equal(run(NR.socket, AF.UNIX, SOCK.STREAM | flags, 0), 'allow', 'unix socket');
  t.equal(run(NR.socket, AF.NETLINK, SOCK.RAW | SOCK.CLOEXEC, 0), 'allow', "getifaddrs' netlink socket");
  t.equal(run(NR.socket, AF.INET, SOCK.RAW, 17), EPERM, 'raw UDP socket: EPERM');
  t.equal(run(NR.socket, AF.INET, SOCK.RAW, 255), EPERM, 'IPPROTO_RAW: EPERM');
  t.equal(run(NR.socket, AF.INET6, SOCK.RAW | flags, 6), EPERM, 'raw TCP over IPv6: EPERM');
  t.equal(run(NR.socket, AF.PACKET, SOCK.RAW, 0x0300), EPERM, 'AF_PACKET: EPERM');
  t.equal(run(NR.socket, AF.INET, SOCK.PACKET, 0x0300), EPERM, 'SOCK_PACKET: EPERM');

  t.equal(run(NR.setsockopt, 3, 0, 3), EPERM, 'IP_HDRINCL: EPERM');
  t.equal(run(NR.setsockopt, 3, 41, 36), EPERM, 'IPV6_HDRINCL: EPERM');
  for (const [what, level, name] of [
    ['IP_TTL', 0, 2],
    ['IP_RECVERR', 0, 11],
    ['IPV6_RECVERR', 41, 25],
    ['SO_REUSEADDR', 1, 2],
    ['TCP_NODELAY', 6, 1],
    ['IPv6 option 3', 41, 3],
    ['SOL_SOCKET 36', 1, 36],
  ] as const) {
    t.equal(run(NR.setsockopt, 3, level, name), 'allow', `${what}: allowed`);
  }
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
