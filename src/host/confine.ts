// The confinement call of the vunet_hostnet addon (addon/confine.cc): drops the process's
// credentials and installs the sandbox, once every socket and file vunet needs is open. The policy
// (which user, which capability, which paths) lives in src/main/privileges.ts.
//
// How the kernel behaves here (Linux 6.x, checked by test/host/confine.test.ts):
// - set*uid / set*gid / setgroups are per thread in the kernel; glibc's wrappers apply them to
//   every thread. capset is per thread and is NOT broadcast: threads that existed before the call
//   lose every capability with the uid change (no KEEPCAPS on them), the calling thread keeps the
//   kept set, threads created later inherit the caller's. Without a user switch the other threads
//   keep what they had.
// - Switching user makes the process non-dumpable: its /proc/PID files belong to root, and other
//   processes of the new user cannot ptrace it or read its memory.
// - landlock_restrict_self binds the calling thread and the threads it creates afterwards; only
//   LANDLOCK_RESTRICT_SELF_TSYNC (ABI 8) binds the threads that already exist (libuv's pool, V8's
//   workers). The report's landlockAllThreads says which happened.
// - seccomp with SECCOMP_FILTER_FLAG_TSYNC binds every thread, and sets no_new_privs on all.
// - After it: execve and fork fail with EPERM (child_process reports EPERM from the fork), an
//   open for writing fails with EPERM, threads (worker_threads, the libuv pool) still start.
//   With CAP_NET_RAW kept, only raw ICMP / ICMPv6 sockets can be made with it (no packet
//   sockets, no IP_HDRINCL).
import { hostnet } from './native.js';

export interface ConfineSpec {
  /** Switch to this user and group (needs euid 0); supplementary groups are cleared. */
  user?: { uid: number; gid: number };
  /** Capabilities left in the permitted and effective sets: CAP_NET_RAW at most. Everything
   *  else, the inheritable and ambient sets, and (with CAP_SETPCAP) the bounding set are cleared. */
  keepCapabilities: number[];
  /** no_new_privs, Landlock (best effort) and the seccomp filter; false keeps only the drop. */
  sandbox: boolean;
  /** Files Landlock still lets the process open for writing (the pcap file). */
  writableFiles?: string[];
  /** Directories in which Landlock still lets the process remove files (the socket's). */
  removableDirs?: string[];
}

export interface ConfineReport {
  /** Real user and group ids after the call. */
  uid: number;
  gid: number;
  /** Capability numbers left in the permitted (= effective) set. */
  capabilities: number[];
  /** Whether the bounding set was reduced too (needs CAP_SETPCAP at the call). */
  boundingSetDropped: boolean;
  noNewPrivs: boolean;
  /** The Landlock ABI the ruleset was built for; 0 when Landlock was not applied. */
  landlockAbi: number;
  /** Landlock binds every thread (TSYNC, or the process had one thread). */
  landlockAllThreads: boolean;
  /** Why Landlock was not applied ('sandbox off', 'not available in this kernel', ...). */
  landlockError?: string;
  /** Threads the process had when the sandbox went on. */
  threads: number;
  /** The seccomp filter is installed on every thread. */
  seccomp: boolean;
}

interface ConfineBinding {
  readonly CAP_NET_RAW: number;
  confine(spec: ConfineSpec): ConfineReport;
  tryExecve(path: string): number;
  seccompProgram(): Uint8Array;
}

const binding = hostnet as unknown as Partial<ConfineBinding>;

function loaded(): ConfineBinding {
  if (typeof binding.confine !== 'function' || typeof binding.seccompProgram !== 'function') {
    throw new Error('vunet: the host-socket addon has no confine() (run `npx node-gyp rebuild`)');
  }
  return binding as ConfineBinding;
}

/** CAP_NET_RAW's number (13): raw ICMP sockets when ping sockets are not permitted. */
export const CAP_NET_RAW = 13;

/**
 * Drops credentials and installs the sandbox (see addon/confine.cc for the order). Throws when a
 * step fails — the process is then partly confined and should exit. Landlock is best effort: its
 * absence is in the report, not an error. Linux x86_64 only.
 */
export function confine(spec: ConfineSpec): ConfineReport {
  return loaded().confine(spec);
}

/** For tests: execve(path) straight from this thread; -errno when refused (-EPERM under the
 *  filter). On success the process is replaced. */
export function tryExecve(path: string): number {
  return loaded().tryExecve(path);
}

/** The seccomp filter confine() installs, as struct sock_filter instructions (8 bytes each:
 *  u16 code, u8 jt, u8 jf, u32 k, host order), for tests and audits. */
export function seccompProgram(): Uint8Array {
  return loaded().seccompProgram();
}

/** Linux capability names by number (capability.h), for logs. */
const CAP_NAMES = [
  'chown',
  'dac_override',
  'dac_read_search',
  'fowner',
  'fsetid',
  'kill',
  'setgid',
  'setuid',
  'setpcap',
  'linux_immutable',
  'net_bind_service',
  'net_broadcast',
  'net_admin',
  'net_raw',
  'ipc_lock',
  'ipc_owner',
  'sys_module',
  'sys_rawio',
  'sys_chroot',
  'sys_ptrace',
  'sys_pacct',
  'sys_admin',
  'sys_boot',
  'sys_nice',
  'sys_resource',
  'sys_time',
  'sys_tty_config',
  'mknod',
  'lease',
  'audit_write',
  'audit_control',
  'setfcap',
  'mac_override',
  'mac_admin',
  'syslog',
  'wake_alarm',
  'block_suspend',
  'audit_read',
  'perfmon',
  'bpf',
  'checkpoint_restore',
] as const;

export function capabilityName(cap: number): string {
  return `CAP_${(CAP_NAMES[cap] ?? String(cap)).toUpperCase()}`;
}
