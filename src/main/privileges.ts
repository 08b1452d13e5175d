// Least privilege for the running vunet: once Vunet.start has opened everything the process needs
// (the vhost-user listening socket, the pcap file, the port-forward listeners, the first echo
// socket probe), the process gives up what it no longer needs. Guest input is parsed from then on.
//
// Policy:
// - Started as root (euid 0): become --runas (default nobody). Before that, the vhost-user socket
//   file (and the pid file) is chowned to that user so that it can remove the socket at exit — which also needs a
//   directory the user may write (sticky /tmp works: the file is its own); otherwise a warning
//   says the socket will stay (the next vunet replaces a stale socket).
// - Capabilities: none, except CAP_NET_RAW when the guest's pings need it: ICMP ping sockets will
//   not work for the groups the process has afterwards (net.ipv4.ping_group_range, read from
//   /proc for this network namespace) and the process has CAP_NET_RAW now. The NAT then opens raw
//   ICMP sockets instead (NodeHostNet.reprobe() checks the choice after the drop).
// - Whatever the user: no_new_privs, Landlock (best effort) and the seccomp filter of
//   src/host/addon/confine.cc, unless --no-sandbox. Landlock allows writing only the pcap file and
//   removing files only in the directories of the socket and the pid file.
// - One info line says what was done, one warning per thing that could not be applied — child
//   processes started before (tsx's esbuild service) keep their credentials, for one.
// - VUNET_TEST_EXEC_PROBE=1 (tests): after confinement, try to run /bin/true and log the outcome.
import { spawnSync } from 'node:child_process';
import { chmodSync, lchownSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Logger } from 'pino';
import { CAP_NET_RAW, capabilityName, confine } from '../host/confine.js';
import type { ConfineReport } from '../host/confine.js';
import { NodeHostNet } from '../host/host-net.js';
import type { RunAsSpec } from './options.js';

export type EchoMode = 'ping' | 'raw' | 'none';

/** The configuration cannot be applied (unknown user...): one line for `vunet: <message>`. */
export class PrivilegeError extends Error {
  override readonly name = 'PrivilegeError';
}

/** A resolved user to switch to. */
export interface RunAsUser {
  name: string;
  uid: number;
  gid: number;
}

/** What the process can read about itself and the system; tests pass their own. */
export interface SystemView {
  euid(): number;
  /** The effective gid and supplementary groups. */
  groups(): number[];
  readFile(path: string): string | undefined;
}

const liveSystem: SystemView = {
  euid: () => process.geteuid?.() ?? -1,
  groups: () => [...new Set([process.getegid?.() ?? -1, ...(process.getgroups?.() ?? [])])],
  readFile: (path) => {
    try {
      return readFileSync(path, 'utf8');
    } catch {
      return undefined;
    }
  },
};

export interface PrivilegePlan {
  /** Who to become (only when started as root). */
  user: RunAsUser | undefined;
  sandbox: boolean;
  /** --runas was given but vunet does not run as root: nothing to switch. */
  runAsIgnored: boolean;
}

export const DEFAULT_RUNAS = 'nobody';

// ---------- decisions (pure) ----------

/** The entries of /etc/passwd (`name:x:uid:gid:...`) or /etc/group (`name:x:gid:members`). */
function accounts(text: string): Array<{ name: string; id: number; gid: number }> {
  const out: Array<{ name: string; id: number; gid: number }> = [];
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || !/^[0-9]+$/.test(f[2] ?? '')) continue;
    out.push({ name: f[0] ?? '', id: Number(f[2]), gid: /^[0-9]+$/.test(f[3] ?? '') ? Number(f[3]) : -1 });
  }
  return out;
}

/**
 * Resolves --runas against /etc/passwd and /etc/group (their text). A numeric UID alone takes its
 * primary group from /etc/passwd when listed, else the same number as GID. Root (uid or gid 0) is
 * refused: the point is to leave it.
 */
export function resolveRunAs(spec: RunAsSpec | undefined, passwd: string, group: string): RunAsUser {
  const users = accounts(passwd);
  const what = spec === undefined ? DEFAULT_RUNAS : `${spec.user}${spec.group !== undefined ? `:${spec.group}` : ''}`;
  const hint = 'pass --runas with an existing user, or numeric ids such as --runas 65534:65534';
  const userSpec = spec?.user ?? DEFAULT_RUNAS;
  let name: string;
  let uid: number;
  let gid: number;
  if (typeof userSpec === 'number') {
    const entry = users.find((u) => u.id === userSpec);
    name = entry?.name ?? String(userSpec);
    uid = userSpec;
    gid = entry && entry.gid >= 0 ? entry.gid : userSpec;
  } else {
    const entry = users.find((u) => u.name === userSpec);
    if (!entry || entry.gid < 0) {
      throw new PrivilegeError(
        spec === undefined
          ? `vunet runs as root and switches to user ${DEFAULT_RUNAS}, which does not exist here: ${hint}`
          : `--runas: no user '${userSpec}' in /etc/passwd: ${hint}`,
      );
    }
    name = entry.name;
    uid = entry.id;
    gid = entry.gid;
  }
  if (spec?.group !== undefined) gid = groupId(spec.group, group, `--runas: no group '${spec.group}' in /etc/group: ${hint}`);
  if (uid === 0 || gid === 0) throw new PrivilegeError(`--runas ${what} is root (${uid === 0 ? 'uid' : 'gid'} 0): name an unprivileged user`);
  return { name, uid, gid };
}

/** A group given by name or GID: the GID, a name looked up in /etc/group (its text); `missing`
 *  is the error's message when no group has that name. */
function groupId(spec: string | number, group: string, missing: string): number {
  if (typeof spec === 'number') return spec;
  const g = accounts(group).find((e) => e.name === spec);
  if (!g) throw new PrivilegeError(missing);
  return g.id;
}

/** --socket-group resolved against this system's /etc/group: the GID. */
export function resolveGroup(spec: string | number, sys: SystemView = liveSystem): number {
  return groupId(spec, sys.readFile('/etc/group') ?? '', `--socket-group: no group '${spec}' in /etc/group: name an existing group, or give its GID`);
}

/**
 * Gives the socket file the permission bits and group asked for (--socket-mode, --socket-group),
 * after checking it is still our socket (in a directory others may write it could have been
 * swapped for a symlink since it was bound). Throws an errno error.
 */
export function setSocketAccess(path: string, mode: number | undefined, gid: number | undefined): void {
  if (!lstatSync(path).isSocket()) throw Object.assign(new Error(`${path} is not a socket any more`), { code: 'ENOTSOCK' });
  if (gid !== undefined) lchownSync(path, -1, gid);
  if (mode !== undefined) chmodSync(path, mode);
}

/** net.ipv4.ping_group_range ("LOW\tHIGH"); undefined when unreadable or malformed. */
export function parsePingGroupRange(text: string | undefined): [number, number] | undefined {
  const m = /^\s*([0-9]+)\s+([0-9]+)\s*$/.exec(text ?? '');
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/** Whether ping sockets work for a process with these groups: the kernel lets a process open one
 *  when its effective gid or a supplementary group lies in the range ("1 0", the default, is off). */
export function pingSocketsAllowed(range: [number, number] | undefined, groups: readonly number[]): boolean {
  if (!range) return false;
  const [low, high] = range;
  return groups.some((g) => g >= low && g <= high);
}

/**
 * Which echo sockets the guest's pings will use after the drop, and so whether CAP_NET_RAW is
 * kept: only when ping sockets will not work for `groups` and the process has CAP_NET_RAW now.
 */
export function decideEcho(range: [number, number] | undefined, groups: readonly number[], hasNetRaw: boolean): { echoMode: EchoMode; keepNetRaw: boolean } {
  if (pingSocketsAllowed(range, groups)) return { echoMode: 'ping', keepNetRaw: false };
  if (hasNetRaw) return { echoMode: 'raw', keepNetRaw: true };
  return { echoMode: 'none', keepNetRaw: false };
}

/** The effective capability set from /proc/self/status (CapEff, hex), as a bigint. */
export function effectiveCapabilities(status: string | undefined): bigint {
  const m = /^CapEff:\s*([0-9a-f]+)\s*$/m.exec(status ?? '');
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Mode-bit check (ACLs aside) of `want` (r=4, w=2, x=1) on a file for uid / gid. */
function permits(st: { uid: number; gid: number; mode: number }, uid: number, gid: number, want: number): boolean {
  const bits = st.uid === uid ? (st.mode >> 6) & 7 : st.gid === gid ? (st.mode >> 3) & 7 : st.mode & 7;
  return (bits & want) === want;
}

/** Why `user` could not unlink `file` (once it owns it), or undefined when it can. */
export function whyCannotRemove(
  file: string,
  user: { uid: number; gid: number },
  stat: (p: string) => { uid: number; gid: number; mode: number } = statSync,
): string | undefined {
  const dir = dirname(resolve(file));
  try {
    for (let d = dir; ; d = dirname(d)) {
      if (!permits(stat(d), user.uid, user.gid, 1)) return `${d} is not searchable for it`;
      if (d === '/') break;
    }
    const st = stat(dir);
    if (!permits(st, user.uid, user.gid, 3)) return `${dir} is not writable for it`;
    return undefined; // a sticky directory also wants the file to be the user's: the chown did that
  } catch (err) {
    return `cannot check ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`;
  }
}

/** This process's children (tsx's esbuild service, say): they keep the credentials they had. */
function childProcesses(sys: SystemView): Array<{ pid: number; name: string }> {
  let tasks: string[];
  try {
    tasks = readdirSync('/proc/self/task');
  } catch {
    return [];
  }
  const pids = tasks.flatMap((t) => (sys.readFile(`/proc/self/task/${t}/children`) ?? '').split(/\s+/).filter((p) => p !== ''));
  return pids.map((p) => ({ pid: Number(p), name: (sys.readFile(`/proc/${p}/comm`) ?? '?').trim() }));
}

// ---------- before start ----------

/** Resolves the user to become (when root). Throws PrivilegeError with a one-line message. */
export function planPrivileges(opts: { runAs?: RunAsSpec; sandbox: boolean }, sys: SystemView = liveSystem): PrivilegePlan {
  if (sys.euid() !== 0) return { user: undefined, sandbox: opts.sandbox, runAsIgnored: opts.runAs !== undefined };
  const user = resolveRunAs(opts.runAs, sys.readFile('/etc/passwd') ?? '', sys.readFile('/etc/group') ?? '');
  return { user, sandbox: opts.sandbox, runAsIgnored: false };
}

// ---------- after start ----------

export interface PrivilegeOutcome {
  report: ConfineReport;
  /** The echo sockets the NAT uses from now on (probed again after the drop). */
  echoMode: EchoMode;
  /** What could not be applied, one sentence each (also logged as warnings). */
  warnings: string[];
}

export interface ApplyContext {
  /** The socket file vunet made (undefined for a socket it was given: its maker owns the file). */
  socketPath?: string;
  /** The control socket (--control), handed over and removable as the vhost-user socket is. */
  controlPath?: string;
  /** More guests' sockets (--socket given more than once), likewise. */
  moreSockets?: string[];
  /** The socket's group (--socket-group), kept when the socket is handed to the --runas user. */
  socketGid?: number;
  pcapFile?: string;
  /** The pid file (--pid-file): handed to the --runas user, who removes it at exit. */
  pidFile?: string;
  logger: Logger;
}

/**
 * Drops the credentials and confines the process (see the policy at the top). Throws when the
 * native call fails: the process is then partly confined and should exit.
 */
export function applyPrivileges(plan: PrivilegePlan, ctx: ApplyContext, sys: SystemView = liveSystem): PrivilegeOutcome {
  const { logger } = ctx;
  const warnings: string[] = [];
  const warn = (message: string): void => {
    warnings.push(message);
    logger.warn(message);
  };
  const user = plan.user;
  if (plan.runAsIgnored) warn('--runas is ignored: vunet is not running as root, so it keeps its own user');

  const groups = user ? [user.gid] : sys.groups();
  const range = parsePingGroupRange(sys.readFile('/proc/sys/net/ipv4/ping_group_range'));
  const hasNetRaw = (effectiveCapabilities(sys.readFile('/proc/self/status')) & (1n << BigInt(CAP_NET_RAW))) !== 0n;
  const decision = decideEcho(range, groups, hasNetRaw);

  const sockets: Array<[string, string]> = [];
  if (ctx.socketPath !== undefined) sockets.push([ctx.socketPath, 'vhost-user']);
  for (const more of ctx.moreSockets ?? []) sockets.push([more, 'vhost-user']);
  if (ctx.controlPath !== undefined) sockets.push([ctx.controlPath, 'control']);
  for (const [path, what] of sockets) {
    if (!user) break;
    // lchown, after checking it is still a socket: in a directory others may write, the path
    // could have been swapped for a symlink to a file root owns since we bound it.
    let problem: string | undefined;
    try {
      if (lstatSync(path).isSocket()) lchownSync(path, user.uid, ctx.socketGid ?? user.gid);
      else problem = 'it is not a socket any more';
    } catch (err) {
      problem = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    const why = problem === undefined ? whyCannotRemove(path, user) : `cannot hand it over (${problem})`;
    if (why !== undefined) warn(`${user.name} cannot remove the ${what} socket at exit: ${why} (the socket file stays; the next vunet replaces it)`);
  }

  if (user && ctx.pidFile !== undefined) {
    let problem: string | undefined;
    try {
      if (lstatSync(ctx.pidFile).isFile()) lchownSync(ctx.pidFile, user.uid, user.gid);
      else problem = 'it is not a regular file any more';
    } catch (err) {
      problem = (err as NodeJS.ErrnoException).code ?? String(err);
    }
    const why = problem === undefined ? whyCannotRemove(ctx.pidFile, user) : `cannot hand it over (${problem})`;
    if (why !== undefined) warn(`${user.name} cannot remove the pid file at exit: ${why} (the file stays; the next vunet replaces it)`);
  }

  for (const child of childProcesses(sys)) {
    warn(
      `child process ${child.pid} (${child.name}) was started before the drop and keeps its credentials` +
        (child.name === 'esbuild' ? ': run vunet from its build (bin/vunet.js), not through tsx' : ''),
    );
  }

  const report = confine({
    ...(user ? { user: { uid: user.uid, gid: user.gid } } : {}),
    keepCapabilities: decision.keepNetRaw ? [CAP_NET_RAW] : [],
    sandbox: plan.sandbox,
    writableFiles: ctx.pcapFile !== undefined ? [resolve(ctx.pcapFile)] : [],
    removableDirs: [...new Set([...sockets.map(([path]) => path), ctx.pidFile].filter((f) => f !== undefined).map((f) => dirname(resolve(f))))],
  });

  const echoMode = NodeHostNet.reprobe();
  if (echoMode !== decision.echoMode) warn(`guest pings: expected ${decision.echoMode} sockets after the drop, the probe found ${echoMode}`);
  if (echoMode === 'none') {
    warn(
      'no ICMP socket available: guest pings beyond the gateway go unanswered. Fix: sysctl -w net.ipv4.ping_group_range="0 2147483647" (or start vunet with CAP_NET_RAW)',
    );
  }
  if (!plan.sandbox) {
    warn('sandbox off (--no-sandbox): no seccomp filter, no Landlock, no no_new_privs');
  } else if (report.landlockAbi === 0) {
    warn(`Landlock not applied (${report.landlockError ?? 'unknown reason'}): only the seccomp filter limits file writes`);
  } else if (!report.landlockAllThreads) {
    warn(
      `Landlock binds the main thread and the threads it starts, not the ${report.threads - 1} threads that existed before ` +
        `(the kernel's Landlock ABI ${report.landlockAbi} has no LANDLOCK_RESTRICT_SELF_TSYNC, ABI 8); the seccomp filter binds all`,
    );
  }

  const landlock = report.landlockAbi === 0 ? 'off' : `abi ${report.landlockAbi}, ${report.landlockAllThreads ? 'all threads' : 'main thread'}`;
  logger.info(
    {
      user: user ? user.name : 'unchanged',
      uid: report.uid,
      gid: report.gid,
      capabilities: report.capabilities.map(capabilityName),
      echo: echoMode,
      noNewPrivs: report.noNewPrivs,
      landlock,
      seccomp: report.seccomp,
    },
    `privileges: ${user ? `running as ${user.name} (${report.uid}:${report.gid})` : `kept uid ${report.uid}`}, ` +
      `capabilities ${report.capabilities.length > 0 ? report.capabilities.map(capabilityName).join(',') : 'none'}, ` +
      `landlock ${landlock}, seccomp ${report.seccomp ? 'on' : 'off'}`,
  );

  if (process.env.VUNET_TEST_EXEC_PROBE === '1') {
    const r = spawnSync('/bin/true', { stdio: 'ignore' });
    const err: NodeJS.ErrnoException | undefined = r.error;
    const code = err?.code;
    logger.info({ probe: '/bin/true', result: code ?? `exit ${r.status ?? r.signal ?? '?'}` }, 'exec probe');
  }
  return { report, echoMode, warnings };
}
