// A network-namespace topology for end-to-end NAT tests, all on this machine:
//
//   [vunet ns] --veth-- [router 1] --veth-- [router 2] --veth-- [target]
//   10.201.1.2/24    .1 | 10.201.2.1/24   .2 | 10.201.3.1/24    .2
//   fd00:201:1::2/64 ::1| fd00:201:2::1   ::2| fd00:201:3::1     ::2
//
// vunet runs inside the first namespace (spawned under `ip netns exec`); QEMU stays outside: the
// vhost-user socket is a file, not a network address. 10.201.1.99 / fd00:201:1::99 sit on vunet's
// host link and belong to no one.
import { execFileSync, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { until } from './wait.js';

export interface Topology {
  vunetNs: string;
  /** The first router's namespace (between vunet's and the second router's). */
  router1Ns: string;
  targetNs: string;
  target4: string;
  target6: string;
  router1: [string, string];
  router2: [string, string];
  nobody4: string;
  nobody6: string;
  /** Runs a command inside a namespace of the topology. */
  exec(ns: string, cmd: string[]): string;
  destroy(): void;
}

const ip = (...args: string[]): string => execFileSync('ip', args, { encoding: 'utf8' });

export function canUseNetns(): string | undefined {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    ip('netns', 'list');
    return undefined;
  } catch (err) {
    return `ip netns unusable: ${(err as Error).message}`;
  }
}

/**
 * The routed topology, in namespaces named after this process and `tag` (which tells apart the
 * topologies one test file makes). The pid keeps test files that run at once apart: tags made
 * from pid arithmetic collided between files whose pids were one apart, and one file's setup
 * deleted the other's namespaces mid-run.
 */
export function createTopology(tag: string): Topology {
  const ns = (n: string): string => `vn${process.pid}-${tag}-${n}`;
  const names = [ns('v'), ns('r1'), ns('r2'), ns('t')];
  const run = (n: string, ...cmd: string[]): string => execFileSync('ip', ['netns', 'exec', n, ...cmd], { encoding: 'utf8' });
  const destroy = (): void => {
    for (const n of names) {
      try {
        execFileSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  destroy();
  try {
    for (const n of names) {
      ip('netns', 'add', n);
      ip('-n', n, 'link', 'set', 'lo', 'up');
      run(n, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0');
    }
    const link = (a: string, b: string, i: number): void => {
      const ea = `e${i}a`;
      const eb = `e${i}b`;
      ip('link', 'add', ea, 'netns', a, 'type', 'veth', 'peer', 'name', eb, 'netns', b);
      ip('-n', a, 'link', 'set', ea, 'up');
      ip('-n', b, 'link', 'set', eb, 'up');
    };
    const [v, r1, r2, t] = names as [string, string, string, string];
    link(v, r1, 1);
    link(r1, r2, 2);
    link(r2, t, 3);
    const addr = (n: string, dev: string, a4: string, a6: string): void => {
      ip('-n', n, 'addr', 'add', a4, 'dev', dev);
      ip('-n', n, '-6', 'addr', 'add', a6, 'dev', dev, 'nodad');
    };
    addr(v, 'e1a', '10.201.1.2/24', 'fd00:201:1::2/64');
    addr(r1, 'e1b', '10.201.1.1/24', 'fd00:201:1::1/64');
    addr(r1, 'e2a', '10.201.2.1/24', 'fd00:201:2::1/64');
    addr(r2, 'e2b', '10.201.2.2/24', 'fd00:201:2::2/64');
    addr(r2, 'e3a', '10.201.3.1/24', 'fd00:201:3::1/64');
    addr(t, 'e3b', '10.201.3.2/24', 'fd00:201:3::2/64');
    ip('-n', v, 'route', 'add', 'default', 'via', '10.201.1.1');
    ip('-n', v, '-6', 'route', 'add', 'default', 'via', 'fd00:201:1::1');
    ip('-n', r1, 'route', 'add', '10.201.3.0/24', 'via', '10.201.2.2');
    ip('-n', r1, '-6', 'route', 'add', 'fd00:201:3::/64', 'via', 'fd00:201:2::2');
    ip('-n', r2, 'route', 'add', 'default', 'via', '10.201.2.1');
    ip('-n', r2, '-6', 'route', 'add', 'default', 'via', 'fd00:201:2::1');
    ip('-n', t, 'route', 'add', 'default', 'via', '10.201.3.1');
    ip('-n', t, '-6', 'route', 'add', 'default', 'via', 'fd00:201:3::1');
    for (const r of [r1, r2]) run(r, 'sysctl', '-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1');
    // Unprivileged ping sockets inside vunet's namespace (the kernel default is off).
    run(v, 'sysctl', '-qw', 'net.ipv4.ping_group_range=0 2147483647');
  } catch (err) {
    destroy();
    throw err;
  }
  return {
    vunetNs: names[0]!,
    router1Ns: names[1]!,
    targetNs: names[3]!,
    target4: '10.201.3.2',
    target6: 'fd00:201:3::2',
    router1: ['10.201.1.1', 'fd00:201:1::1'],
    router2: ['10.201.2.2', 'fd00:201:2::2'],
    nobody4: '10.201.1.99',
    nobody6: 'fd00:201:1::99',
    exec: (n, cmd) => run(n, ...cmd),
    destroy,
  };
}

export interface VunetProcess {
  readonly proc: ChildProcess;
  /** Everything vunet wrote so far (its pino lines). */
  log(): string;
  /** Settles with the exit code (null: killed by a signal) when the process has exited. */
  readonly exited: Promise<number | null>;
  /** Asks for vunet's status (SIGUSR1) and resolves with the line it logs (pino JSON). */
  status(): Promise<string>;
  /** The lines logged at error level or above so far: a bug caught at a batch boundary (or one
   *  that dropped the guest's connection) shows there. */
  errors(): string[];
}

export interface SpawnVunetOptions {
  /** Variables added to this process's environment for vunet. */
  env?: NodeJS.ProcessEnv;
  /** Fail at once, with the exit code, when vunet exits before it listens (else the start fails
   *  after the 15 s timeout). */
  failOnExit?: boolean;
}

const VUNET_BIN = new URL('../../bin/vunet.js', import.meta.url).pathname;

/** Starts `vunet ARGS` inside namespace `ns` (null: in this process's namespace, not under
 *  `ip netns exec`) and waits until it listens (its QEMU hint). */
export async function spawnVunet(ns: string | null, args: string[], opts: SpawnVunetOptions = {}): Promise<VunetProcess> {
  const prefix = ns === null ? [] : ['ip', 'netns', 'exec', ns];
  const [cmd, ...rest] = [...prefix, process.execPath, VUNET_BIN, ...args] as [string, ...string[]];
  const proc = spawn(cmd, rest, { stdio: ['ignore', 'pipe', 'pipe'], ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let log = '';
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`vunet did not start: ${log}`)), 15_000);
    const take = (d: Buffer): void => {
      log += d.toString();
      if (!log.includes('Start QEMU with')) return;
      clearTimeout(timer);
      resolve();
    };
    proc.stdout.on('data', take);
    proc.stderr.on('data', take);
    if (opts.failOnExit) proc.once('exit', (code) => reject(new Error(`vunet exited (${code}): ${log}`)));
  });
  await ready;
  /** Whole status lines so far (the last piece of the log may be a line still coming). */
  const statusLines = (): string[] =>
    log
      .split('\n')
      .slice(0, -1)
      .filter((l) => l.includes('"msg":"status"'));
  const status = async (): Promise<string> => {
    const before = statusLines().length;
    proc.kill('SIGUSR1');
    await until(() => statusLines().length > before, 'the status line', 10_000);
    return statusLines().at(-1)!;
  };
  const errors = (): string[] => log.split('\n').filter((l) => /"level":(50|60)/.test(l));
  return { proc, log: () => log, exited, status, errors };
}
