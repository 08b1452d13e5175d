// `npm run bench [-- --seconds N --mtu BYTES --only slirp|vunet]`: TCP throughput of the test
// guest through vunet and through QEMU's own user-mode network (slirp), in one run, both ways;
// with `--passt PATH`, also through passt in vhost-user mode, the C backend vunet measures itself by.
//
// An iperf3 server listens on the host's loopback (127.0.0.1 only: no traffic leaves the machine).
// For each backend the test guest boots once (same kernel and initramfs as the tests), takes its
// address by DHCP, and runs `iperf3 -c 10.0.2.2` twice: guest→host, then host→guest (-R). Both
// backends map the gateway 10.0.2.2 to the host's loopback. The guest prints iperf3's JSON on its
// console between markers; this script reads it, with the CPU time QEMU and vunet used meanwhile
// (from /proc), and prints a table and the vunet/slirp ratio per direction.
//
// vunet runs as its own process (`bin/vunet.js`, the compiled build: run `npx tsc -b` first) with
// `--trace-gc`, so the report gives its CPU seconds and garbage collections per GB moved. With
// `--baseline DIR` a second vunet (another checkout, built) runs the same test in the same run:
// before/after figures of a change. passt's CPU seconds are read from /proc the same way (it runs
// in the foreground, as one process). Under TCG the guest is the bottleneck: compare backends of the
// same run, not numbers from different machines.
import { spawn, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT, ensureGuestImage, startGuest } from './qemu.js';
import type { GuestHandle } from './qemu.js';

type Backend = 'slirp' | 'vunet' | 'baseline' | 'passt';
/** The backends that serve a vhost-user socket (all but QEMU's own slirp). */
const isVhostUser = (b: Backend): boolean => b !== 'slirp';
/** The backends that are a vunet (and so report garbage collections). */
const isVunet = (b: Backend): boolean => b === 'vunet' || b === 'baseline';
type Direction = 'up' | 'down';

const BACKENDS: readonly Backend[] = ['slirp', 'vunet'];
/** The directions measured (--direction narrows it to one, for profiling). */
let DIRECTIONS: readonly Direction[] = ['up', 'down'];
const DIRECTION_LABEL: Record<Direction, string> = { up: 'guest→host', down: 'host→guest' };
/** The guest's address for the host under both backends (slirp's and vunet's gateway). */
const GATEWAY = '10.0.2.2';
/** Milliseconds the guest's iperf3 waits for the control connection. */
const CONNECT_TIMEOUT_MS = 10_000;

interface BenchOptions {
  seconds: number;
  /** An unmeasured iperf3 run of this many seconds before each measured one (0: none). */
  warmup: number;
  mtu: number;
  streams: number;
  /** Runs of the whole backend list, every other one in reverse order. */
  rounds: number;
  backends: Backend[];
  /** A vunet checkout (built) to run as the 'baseline' backend. */
  baseline: string | undefined;
  /** A passt binary with vhost-user support (2024-11 or later) to run as the 'passt' backend. */
  passt: string | undefined;
  /** No QEMU: dpdk-testpmd's virtio-user drives the queues, a TAP in a namespace is the guest. */
  guestless: boolean;
  /** Guest-less: the frontend connects and leaves once before the measured one connects (a
   *  guest that rebooted: vunet has unmapped guest memory once). */
  reconnect: boolean;
  /** (guestless) testpmd's virtio-user negotiates GUEST_CSUM, as a Linux guest's driver does. */
  guestCsum: boolean;
  /** Extra virtio-net-pci options for the vunet guests (feature experiments: guest_tso4=off). */
  device: string[];
  stats: boolean;
  profile: string | undefined;
  /** Record each measured run's backend with perf into this directory (vunet with V8's
   *  --perf-prof, its JIT code then named by perf inject). */
  perf: string | undefined;
  /** Run vunet with V8's --trace-opt and --trace-deopt, and report its JIT work in each run. */
  jit: boolean;
}

/** Host CPU used during a run, percent of one core (utime + stime over wall time), and vunet's
 *  CPU seconds and garbage collections meanwhile. */
interface CpuUse {
  qemuCpu: number | undefined;
  backendCpu: number | undefined;
  backendCpuSeconds: number | undefined;
  /** Of backendCpuSeconds, the part in user mode: the backend's own code (the kernel's share,
   *  loopback delivery included, moves more from run to run). */
  backendUserSeconds: number | undefined;
  scavenges: number | undefined;
  markCompacts: number | undefined;
  /** (--jit) V8's optimizing compiles of vunet's functions during the run, their compiler time,
   *  and its deoptimizations ("function: reason"). */
  jit: JitWork | undefined;
}

interface JitWork {
  compiles: number;
  compileMs: number;
  deopts: string[];
}

/** One iperf3 run as seen by the guest's client. */
type RunResult =
  | ({
      ok: true;
      /** Receiver's goodput, bits per second. */
      bitsPerSecond: number;
      /** Bytes the receiver got. */
      bytes: number;
      retransmits: number | undefined;
    } & CpuUse)
  | { ok: false; reason: string };

interface BackendResult {
  backend: Backend;
  /** The guest's eth0 MTU after DHCP. */
  guestMtu: number | undefined;
  runs: Partial<Record<Direction, RunResult>>;
  /** Why the backend produced no runs at all (vunet did not start, the guest did not boot, ...). */
  failure?: string;
}

// ------------------------------------------------------------------------------------------------
// Command line
// ------------------------------------------------------------------------------------------------

const USAGE = `usage: npm run bench -- [options]

TCP throughput of the test guest through vunet and through QEMU's slirp (-netdev user), both
directions, with iperf3 against a server on the host's loopback.

  --seconds N           length of each iperf3 run (default 10)
  --warmup N            unmeasured iperf3 runs before each measured one, of 1 then N seconds
                        (default 3; 0: none): V8 compiles vunet's hot paths in its first
                        seconds of traffic, and a connection's close and the next one's open
                        deoptimize what it compiled without those paths, all of which a
                        long-running vunet has long behind it
  --mtu BYTES           vunet's (and passt's) link MTU (default 65520; slirp keeps its own, 1500)
  --streams N           parallel TCP streams (iperf3 -P, default 1)
  --only slirp|vunet|passt
                        run one backend only (with --baseline or --passt: and those)
  --baseline DIR        also run the vunet built in DIR (before/after a change, same run)
  --passt PATH          also run passt (the binary at PATH, built with vhost-user: 2024-11 or
                        later) with slirp's addresses, its gateway mapped to the host's loopback.
                        With --guestless, dpdk-testpmd then forwards with csum (it computes
                        checksums: passt sends frames without them) for every backend of the run
  --profile DIR         write vunet's CPU and allocation profiles (node --cpu-prof, --heap-prof)
                        into DIR, one pair per vunet run; runs vunet without its sandbox
  --perf DIR            record each backend's measured run with perf (cpu-clock, call graphs) into
                        DIR, one file per run, and print its busiest functions. vunet runs with
                        V8's --perf-prof and without its sandbox; its JIT code is named by
                        perf inject (the .jit.data file). Needs perf (linux-perf) and root
  --direction up|down   measure one direction only (up: guest→host; for profiling it alone)
  --rounds N            run the backends N times, in reverse order every other round (the one
                        run second measures a few % cheaper on a small machine: alternating
                        cancels it), and end with each comparison's ratios per round, their
                        geometric mean and median, and the rounds in which a backend stalled
                        (under a quarter of the other's throughput) (default 1)
  --stats               after each vunet run, print vunet's counters (its SIGUSR1 status)
  --jit                 run vunet with V8's --trace-opt and --trace-deopt, and say after the
                        table how much optimizing (functions, compiler ms, share of vunet's CPU)
                        and which deoptimizations each measured run held
  --device OPTS         extra virtio-net-pci options for the vunet guests, comma-separated
                        (feature experiments, e.g. guest_tso4=off,guest_csum=off)
  --guestless           no QEMU: the Linux kernel plays a native-speed guest. dpdk-testpmd
                        (Debian's dpdk-dev) drives vunet's queues as a virtio-user frontend and
                        forwards to a TAP in a network namespace, where iperf3's client runs; no
                        offloads, MTU 1500 at most. It busy-polls one core. No slirp.
  --guest-csum          (--guestless) dpdk-testpmd's virtio-user negotiates GUEST_CSUM, as a Linux
                        guest does: frames to it may leave the TCP checksum to it, and testpmd
                        forwards with csum, computing them on its core. passt (2025-05) does not
                        offer GUEST_CSUM (it leaves the checksums to the frontend regardless)
  --reconnect           (--guestless) dpdk-testpmd connects and quits once before the measured
                        one connects, as a guest that rebooted (vunet has unmapped guest memory)
  -h, --help            this text

VUNET_GUEST_ECHO=1 shows the guest consoles.`;

class CliError extends Error {}

function parseCli(argv: string[]): BenchOptions | undefined {
  let values: {
    seconds?: string;
    warmup?: string;
    mtu?: string;
    streams?: string;
    only?: string;
    baseline?: string;
    passt?: string;
    guestless?: boolean;
    reconnect?: boolean;
    'guest-csum'?: boolean;
    device?: string;
    stats?: boolean;
    jit?: boolean;
    profile?: string;
    perf?: string;
    direction?: string;
    rounds?: string;
    help?: boolean;
  };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        seconds: { type: 'string' },
        warmup: { type: 'string' },
        mtu: { type: 'string' },
        streams: { type: 'string' },
        only: { type: 'string' },
        baseline: { type: 'string' },
        passt: { type: 'string' },
        guestless: { type: 'boolean' },
        reconnect: { type: 'boolean' },
        'guest-csum': { type: 'boolean' },
        device: { type: 'string' },
        stats: { type: 'boolean' },
        jit: { type: 'boolean' },
        direction: { type: 'string' },
        rounds: { type: 'string' },
        profile: { type: 'string' },
        perf: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new CliError(`${(err as Error).message.split('\n')[0] ?? ''}\n${USAGE}`);
  }
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return undefined;
  }
  const int = (flag: string, raw: string | undefined, fallback: number, min: number, max: number): number => {
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!/^[0-9]+$/.test(raw) || n < min || n > max) throw new CliError(`--${flag} must be a whole number from ${min} to ${max} (got ${raw})`);
    return n;
  };
  let backends: Backend[] = [...BACKENDS];
  if (values.only !== undefined) {
    const only = values.only;
    if (only !== 'slirp' && only !== 'vunet' && only !== 'passt') throw new CliError(`--only must be slirp, vunet or passt (got ${only})`);
    if (only === 'passt' && values.passt === undefined) throw new CliError('--only passt needs --passt PATH');
    backends = only === 'passt' ? [] : [only]; // --passt adds it
  }
  if (values.direction !== undefined) {
    if (values.direction !== 'up' && values.direction !== 'down') throw new CliError(`--direction must be up or down (got ${values.direction})`);
    DIRECTIONS = [values.direction];
  }
  const guestless = values.guestless === true;
  if (guestless) {
    if (spawnSync('dpdk-testpmd', ['--version'], { stdio: 'ignore' }).error !== undefined)
      throw new CliError('--guestless needs dpdk-testpmd: apt-get install dpdk-dev');
    if (process.getuid?.() !== 0) throw new CliError('--guestless needs root (a network namespace and a TAP device)');
    backends = backends.filter((b) => b !== 'slirp');
  }
  if (values.reconnect === true && !guestless) throw new CliError('--reconnect needs --guestless');
  if (values['guest-csum'] === true && !guestless) throw new CliError('--guest-csum needs --guestless (a QEMU guest negotiates it already)');
  if (values.perf !== undefined) {
    if (spawnSync('perf', ['--version'], { stdio: 'ignore' }).status !== 0) throw new CliError('--perf needs perf: apt-get install linux-perf');
    if (process.getuid?.() !== 0) throw new CliError('--perf needs root (perf attaches to the backend)');
  }
  if (values.baseline !== undefined) {
    if (!existsSync(join(values.baseline, 'bin', 'vunet.js'))) throw new CliError(`--baseline: no bin/vunet.js in ${values.baseline}`);
    backends.push('baseline');
  }
  if (values.passt !== undefined) {
    const help = spawnSync(values.passt, ['--help'], { encoding: 'utf8' });
    if (help.error !== undefined) throw new CliError(`--passt: cannot run ${values.passt}: ${help.error.message}`);
    if (!`${help.stdout}${help.stderr}`.includes('--vhost-user'))
      throw new CliError(`--passt: ${values.passt} has no --vhost-user (passt 2024-11 or later has)`);
    backends.push('passt');
  }
  return {
    seconds: int('seconds', values.seconds, 10, 1, 3600),
    warmup: int('warmup', values.warmup, 3, 0, 600),
    mtu: int('mtu', values.mtu, guestless ? 1500 : 65520, 1280, guestless ? 1500 : 65520),
    streams: int('streams', values.streams, 1, 1, 16),
    rounds: int('rounds', values.rounds, 1, 1, 50),
    backends,
    baseline: values.baseline,
    passt: values.passt,
    guestless,
    reconnect: values.reconnect === true,
    guestCsum: values['guest-csum'] === true,
    device: values.device ? values.device.split(',').filter((o) => o !== '') : [],
    stats: values.stats === true,
    profile: values.profile === undefined ? undefined : resolve(values.profile),
    perf: values.perf === undefined ? undefined : resolve(values.perf),
    jit: values.jit === true,
  };
}

// ------------------------------------------------------------------------------------------------
// Child processes (iperf3 server, vunet): killed on every way out
// ------------------------------------------------------------------------------------------------

const children = new Set<ChildProcess>();

let setprivOk: boolean | undefined;
/** `setpriv --pdeathsig KILL` makes a child die with us even when we are SIGKILLed. */
function deathSignalPrefix(): string[] {
  setprivOk ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return setprivOk ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

interface Child {
  proc: ChildProcess;
  /** stdout and stderr so far (the last 64 KiB). */
  readonly text: string;
  /** Lines of --trace-gc output so far: scavenges and mark-compacts; and of --trace-opt and
   *  --trace-deopt (--jit): optimizing compiles, their compiler time, deoptimizations. */
  readonly gc: { scavenges: number; markCompacts: number; compiles: number; compileMs: number; deopts: number };
  /** (--jit) Each deoptimization so far, as "function: reason". */
  readonly deoptLog: string[];
  /** vunet's status lines (its answer to SIGUSR1) so far. */
  readonly statusLines: string[];
  /** Resolves with the first match of `re` in the output; rejects when the child exits first or after `ms`. */
  waitFor(re: RegExp, ms: number): Promise<void>;
  stop(): Promise<void>;
}

function startChild(name: string, command: string, args: string[], cwd = REPO_ROOT, stdin = false): Child {
  const argv = [...deathSignalPrefix(), command, ...args];
  const proc = spawn(argv[0] ?? command, argv.slice(1), { cwd, stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let text = '';
  let partial = '';
  const gc = { scavenges: 0, markCompacts: 0, compiles: 0, compileMs: 0, deopts: 0 };
  const deoptLog: string[] = [];
  const statusLines: string[] = [];
  let exited: string | undefined;
  const listeners = new Set<() => void>();
  const notify = (): void => {
    for (const l of [...listeners]) l();
  };
  const onData = (chunk: Buffer): void => {
    const s = chunk.toString('utf8');
    const lines = (partial + s).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (l.includes(': Scavenge')) gc.scavenges++;
      else if (l.includes(': Mark-Compact') || l.includes(': Mark-sweep')) gc.markCompacts++;
      else if (l.startsWith('[completed compiling ')) {
        // "... (target TURBOFAN) - took 0.021, 4.512, 0.103 ms]": preparing, compiling (on a
        // background thread), finishing.
        const took = /took ([\d.]+), ([\d.]+), ([\d.]+) ms/.exec(l);
        if (took !== null) {
          gc.compiles++;
          gc.compileMs += Number(took[1]) + Number(took[2]) + Number(took[3]);
        }
      } else if (l.startsWith('[bailout ')) {
        const d = /reason: (.*?)\): begin\. deoptimizing \S+ <JSFunction (\S*)/.exec(l);
        if (d !== null) {
          gc.deopts++;
          deoptLog.push(`${d[2] || '(anonymous)'}: ${d[1]}`);
        }
      } else if (l.includes('"msg":"status"')) statusLines.push(l);
    }
    text += s;
    if (text.length > 65536) text = text.slice(-65536);
    notify();
  };
  proc.stdout?.on('data', onData);
  proc.stderr?.on('data', onData);
  proc.on('error', (err) => {
    exited ??= `cannot run ${command}: ${err.message}`;
    notify();
  });
  const closed = new Promise<void>((resolve) => {
    proc.on('close', (code, signal) => {
      children.delete(proc);
      exited ??= `exited with ${signal ?? `status ${code}`}`;
      notify();
      resolve();
    });
  });
  return {
    proc,
    get text() {
      return text;
    },
    gc,
    deoptLog,
    statusLines,
    waitFor(re, ms) {
      return new Promise<void>((resolve, reject) => {
        const done = (err?: Error): void => {
          listeners.delete(check);
          clearTimeout(timer);
          if (err === undefined) resolve();
          else reject(err);
        };
        const why = (what: string): Error => new Error(`${name} ${what}${lastLines(text)}`);
        const check = (): void => {
          if (re.test(text)) done();
          else if (exited !== undefined) done(why(exited));
        };
        const timer = setTimeout(() => done(why(`not ready after ${ms} ms`)), ms);
        listeners.add(check);
        check();
      });
    },
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const force = setTimeout(() => proc.kill('SIGKILL'), 3000);
        await closed;
        clearTimeout(force);
      }
    },
  };
}

function killChildren(): void {
  for (const c of children) c.kill('SIGKILL');
}

/** After a run that failed, what vunet logged (warnings and errors; --stats: everything) ends
 *  up on stderr: a connection it closed, a queue it stopped. */
function noteFailedRuns(result: BackendResult, vunet: Child | undefined): void {
  if (!vunet || !isVunet(result.backend) || !Object.values(result.runs).some((r) => r?.ok === false)) return;
  const lines = vunet.text
    .split('\n')
    .filter((l) => /"level":(40|50|60)/.test(l))
    .slice(-10);
  for (const l of lines) console.error(`  vunet (${result.backend}): ${l.trim()}`);
}

/** What a child said last, for an error message: its first error line, else its last line. */
function lastLines(text: string): string {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const line = lines.find((l) => /^(?:\w*Error\b|\w+: )/.test(l)) ?? lines.at(-1);
  return line === undefined ? '' : `: ${line}`;
}

/** A TCP port free on 127.0.0.1 right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (addr !== null && typeof addr === 'object' ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** A process's CPU seconds so far: utime + stime, and utime alone. */
interface CpuTimes {
  total: number;
  user: number;
}

/** utime and stime of a process, from /proc (undefined once it is gone). */
function cpuTimes(pid: number | undefined): CpuTimes | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const user = Number(fields[11]) / 100; // utime (14), in USER_HZ (100 on Linux)
    return { total: user + Number(fields[12]) / 100, user }; // + stime (15)
  } catch {
    return undefined;
  }
}

/** utime + stime of a process in seconds (undefined once it is gone). */
const cpuSeconds = (pid: number | undefined): number | undefined => cpuTimes(pid)?.total;

/** The backend's share of a run of `wall` seconds: from its CPU seconds before (v0) and after
 *  (v1), and, for a vunet, the collections it logged since `gc0`. */
function backendUse(
  backend: Backend,
  proc: Child | undefined,
  v0: CpuTimes | undefined,
  v1: CpuTimes | undefined,
  gc0: Child['gc'] | undefined,
  wall: number,
  jit = false,
): Omit<CpuUse, 'qemuCpu'> {
  const seconds = v0 !== undefined && v1 !== undefined ? v1.total - v0.total : undefined;
  const gc = isVunet(backend) ? proc?.gc : undefined;
  return {
    jit:
      jit && proc && gc && gc0
        ? { compiles: gc.compiles - gc0.compiles, compileMs: gc.compileMs - gc0.compileMs, deopts: proc.deoptLog.slice(gc0.deopts, gc.deopts) }
        : undefined,
    backendCpu: seconds !== undefined && wall > 0 ? (100 * seconds) / wall : undefined,
    backendCpuSeconds: seconds,
    backendUserSeconds: v0 !== undefined && v1 !== undefined ? v1.user - v0.user : undefined,
    scavenges: gc && gc0 ? gc.scavenges - gc0.scavenges : undefined,
    markCompacts: gc && gc0 ? gc.markCompacts - gc0.markCompacts : undefined,
  };
}

// ------------------------------------------------------------------------------------------------
// The guest's side
// ------------------------------------------------------------------------------------------------

/** The guest script: DHCP, then one iperf3 run per direction, JSON between markers. */
function guestScript(port: number, seconds: number, warmup: number, streams: number, stats: boolean): string {
  // busybox timeout: a run that hangs (no answer at all) still ends, and the other one runs.
  const limit = seconds + Math.ceil(CONNECT_TIMEOUT_MS / 1000) + 20;
  const warmLimit = warmup + Math.ceil(CONNECT_TIMEOUT_MS / 1000) + 20;
  return `
ip link set eth0 up
udhcpc -i eth0 -n -q -t 5 -T 2 >/dev/null 2>&1 || echo "BENCH-DHCP-FAILED"
echo "BENCH-MTU $(cat /sys/class/net/eth0/mtu)"
run() {
  name=$1; shift${
    warmup > 0
      ? `
  timeout ${warmLimit} iperf3 -c ${GATEWAY} -p ${port} -t 1 -P ${streams} -i 0 --connect-timeout ${CONNECT_TIMEOUT_MS} "$@" >/dev/null 2>&1
  timeout ${warmLimit} iperf3 -c ${GATEWAY} -p ${port} -t ${warmup} -P ${streams} -i 0 --connect-timeout ${CONNECT_TIMEOUT_MS} "$@" >/dev/null 2>&1`
      : ''
  }
  echo "BENCH-START $name"
  timeout ${limit} iperf3 -c ${GATEWAY} -p ${port} -t ${seconds} -P ${streams} -i 0 -J --connect-timeout ${CONNECT_TIMEOUT_MS} "$@" >/tmp/$name.json 2>&1
  echo "BENCH-RC $name $?"
  echo "BENCH-JSON-BEGIN $name"
  cat /tmp/$name.json
  echo "BENCH-JSON-END $name"${
    stats
      ? `
  # --stats: the guest's own nonzero TCP/IP counters so far (drops, checksum errors, pruning)
  ${guestCounters('eth0')}`
      : ''
  }
}
${DIRECTIONS.includes('up') ? 'run up' : ''}
${DIRECTIONS.includes('down') ? 'run down -R' : ''}
`;
}

/** Shell that prints the guest's nonzero TCP/IP counters and its interface's, a line each
 *  ("BENCH-GUEST <group> name=value ..."): drops, checksum errors, pruning. */
function guestCounters(dev: string): string {
  return `awk '{ if (!($1 in h)) h[$1] = $0; else { n = split(h[$1], k, " "); s = ""; for (i = 2; i <= NF; i++) if ($i != 0) s = s " " k[i] "=" $i; print "BENCH-GUEST " $1 s } }' /proc/net/netstat /proc/net/snmp
  echo "BENCH-GUEST ${dev} $(cd /sys/class/net/${dev}/statistics && for f in *; do v=$(cat $f); [ "$v" != 0 ] && printf '%s=%s ' $f $v; done)"`;
}

interface IperfSummary {
  error?: unknown;
  end?: {
    sum_received?: { bits_per_second?: unknown; bytes?: unknown };
    sum_sent?: { retransmits?: unknown };
  };
}

/** The result of one run from the console text between its markers and its exit status. */
function parseRun(output: string, name: Direction, cpu: CpuUse): RunResult {
  const rc = new RegExp(`^BENCH-RC ${name} (\\d+)$`, 'm').exec(output)?.[1];
  const body = new RegExp(`^BENCH-JSON-BEGIN ${name}\\n([\\s\\S]*?)^BENCH-JSON-END ${name}$`, 'm').exec(output)?.[1] ?? '';
  if (rc === undefined) return { ok: false, reason: 'the guest never finished the run' };
  let json: IperfSummary | undefined;
  try {
    json = JSON.parse(body) as IperfSummary;
  } catch {
    // not JSON: iperf3 was killed, or could not start
  }
  if (json === undefined || typeof json !== 'object' || json === null) {
    if (rc === '124' || rc === '143') return { ok: false, reason: 'timed out (no answer from the host)' };
    const text = body.trim().split('\n').at(-1) ?? '';
    return { ok: false, reason: `exit ${rc}${text !== '' ? `: ${text}` : ', no output'}` };
  }
  if (typeof json.error === 'string') return { ok: false, reason: json.error };
  const bps = json.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') return { ok: false, reason: `exit ${rc}, no throughput in iperf3's JSON` };
  const retr = json.end?.sum_sent?.retransmits;
  const bytes = json.end?.sum_received?.bytes;
  return { ok: true, bitsPerSecond: bps, bytes: typeof bytes === 'number' ? bytes : 0, retransmits: typeof retr === 'number' ? retr : undefined, ...cpu };
}

// ------------------------------------------------------------------------------------------------
// One backend
// ------------------------------------------------------------------------------------------------

async function startVunet(
  dir: string,
  mtu: number,
  root: string,
  stats: boolean,
  profile: string | undefined,
  jit: boolean,
  perf: string | undefined,
): Promise<{ child: Child; socketPath: string }> {
  const socketPath = join(dir, 'vunet.sock');
  // stdbuf: V8 prints --trace-gc with stdio, block-buffered into a pipe; line-buffered, each
  // collection is counted when it happens (the process stays the same: stdbuf execs node).
  const child = startChild(
    'vunet',
    'stdbuf',
    [
      '-oL',
      process.execPath,
      '--trace-gc',
      ...(jit ? ['--trace-opt', '--trace-deopt'] : []),
      ...(profile !== undefined ? ['--cpu-prof', '--cpu-prof-dir', profile, '--heap-prof', '--heap-prof-dir', profile] : []),
      // --perf: V8 describes its JIT code in jit-PID.dump, in the working directory (perf's).
      ...(perf !== undefined ? ['--perf-prof'] : []),
      join(root, 'bin', 'vunet.js'),
      // The sandbox keeps vunet from writing anywhere, profiles included.
      ...(profile !== undefined || perf !== undefined ? ['--no-sandbox'] : []),
      '--socket',
      socketPath,
      '--mtu',
      String(mtu),
      '--log-level',
      stats ? 'info' : 'warn',
    ],
    perf ?? root, // (--perf: where V8 writes its jit-PID.dump)
  );
  try {
    await child.waitFor(/Start QEMU with/, 30_000); // printed once the socket listens
  } catch (err) {
    await child.stop();
    throw new Error(`did not start (${(err as Error).message.replace(/^vunet /, '')})`);
  }
  return { child, socketPath };
}

/**
 * passt in vhost-user mode, in the foreground (its pid is the one measured), with slirp's
 * addresses: the guest 10.0.2.15/24 by DHCP, the gateway 10.0.2.2, which passt maps to the host's
 * loopback by default, as vunet does.
 */
async function startPasst(dir: string, mtu: number, binary: string): Promise<{ child: Child; socketPath: string }> {
  const socketPath = join(dir, 'passt.sock');
  const child = startChild('passt', binary, [
    '--vhost-user',
    '--foreground',
    '--socket',
    socketPath,
    '--address',
    '10.0.2.15',
    '--netmask',
    '24',
    '--gateway',
    GATEWAY,
    '--mtu',
    String(mtu),
  ]);
  try {
    await child.waitFor(/You can start qemu with/, 30_000); // printed once the socket listens
  } catch (err) {
    await child.stop();
    throw new Error(`did not start (${(err as Error).message.replace(/^passt /, '')})`);
  }
  return { child, socketPath };
}

/** The backend's process serving its vhost-user socket: vunet, the baseline vunet or passt. */
function startBackend(backend: Backend, dir: string, opts: BenchOptions): Promise<{ child: Child; socketPath: string }> {
  if (backend === 'passt') return startPasst(dir, opts.mtu, opts.passt!);
  return startVunet(dir, opts.mtu, backend === 'baseline' ? opts.baseline! : REPO_ROOT, opts.stats, opts.profile, opts.jit, opts.perf);
}

/** The guest-less TAP's MAC, fixed so that testpmd's csum forwarding can address it. */
const TAP_MAC = '02:00:00:00:00:15';

/** Whether testpmd forwards with csum: passt is in the run, or the frontend takes partial
 *  checksums (--guest-csum; the TAP's kernel takes none). */
function csumForwarded(opts: BenchOptions): boolean {
  return opts.passt !== undefined || opts.guestCsum;
}

/**
 * testpmd's csum forwarding (see csumForwarded). passt (2025-05) sends every TCP frame with
 * DATA_VALID and no checksum, whether or not the frontend negotiated GUEST_CSUM; a frontend
 * with GUEST_CSUM gets frames whose checksum is left to it (NEEDS_CSUM). The TAP's kernel would
 * drop either. csum forwarding computes the checksums (on testpmd's core, not the backend's); it
 * also rewrites both MACs, so each port is given its peer's. Every backend of such a run gets
 * this forwarding, so all run the same harness.
 */
function csumForwarding(backend: Backend): string {
  const backendMac = backend === 'passt' ? '9a:55:9a:55:9a:55' : '52:55:0a:00:02:02'; // passt's, vunet's default
  return `set eth-peer 0 ${backendMac}\nset eth-peer 1 ${TAP_MAC}\nset fwd csum retry\nstart\n`;
}

/**
 * The guest-less harness: the backend's queues driven by dpdk-testpmd (virtio-user, io forwarding
 * with retry; csum forwarding when passt is in the run or with --guest-csum, see csumForwarded)
 * to a TAP whose kernel side, in its own network namespace, holds the guest's address and runs
 * the iperf3 client. The kernel sends and receives at native speed, so the backend's own cost
 * sets the pace. The iperf3 server listens on the host's loopback, reached through the gateway
 * map.
 */
async function runGuestless(backend: Backend, opts: BenchOptions): Promise<BackendResult> {
  const result: BackendResult = { backend, guestMtu: opts.mtu, runs: {} };
  const dir = mkdtempSync(join(tmpdir(), 'vunet-bench-'));
  const ns = `vunet-gl-${process.pid}`;
  const tap = 'gltap0';
  const inNs = (...cmd: string[]): string[] => ['ip', 'netns', 'exec', ns, ...cmd];
  let server: Child | undefined;
  let backendProc: Child | undefined;
  let pmd: Child | undefined;
  try {
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    if (spawnSync('ip', ['netns', 'add', ns]).status !== 0) throw new Error(`cannot create network namespace ${ns}`);
    spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
    const port = await freePort();
    server = startChild('iperf3 server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush']);
    await server.waitFor(/Server listening/, 10_000);
    const started = await startBackend(backend, dir, opts);
    backendProc = started.child;
    const testpmd = inNs(
      'dpdk-testpmd',
      '--no-huge',
      '--no-shconf',
      '-m',
      '512',
      '-l',
      '0,1',
      '--no-pci',
      '--log-level',
      'lib.eal:error',
      '--vdev',
      `net_virtio_user0,path=${started.socketPath},queues=1,queue_size=1024`,
      '--vdev',
      `net_tap0,iface=${tap}`,
      '--',
      '-i',
      '--total-num-mbufs=32768',
    );
    const startPmd = async (): Promise<Child> => {
      const [cmd, ...args] = testpmd;
      const child = startChild('dpdk-testpmd', cmd!, args, REPO_ROOT, true);
      // Forwarding retries a full ring instead of dropping the burst, as a real driver would.
      // (testpmd reads these once its prompt is up; its output to a pipe is block-buffered, so
      // readiness is the TAP device appearing.)
      // TCP and UDP checksum offload on the virtio-user port: it renegotiates, with GUEST_CSUM.
      // passt (2025-05) does not offer it (nor take the renegotiation): it goes without.
      if (opts.guestCsum && backend !== 'passt')
        child.proc.stdin?.write('port stop 0\nport config 0 rx_offload tcp_cksum on\nport config 0 rx_offload udp_cksum on\nport start 0\n');
      child.proc.stdin?.write(csumForwarded(opts) ? csumForwarding(backend) : 'set fwd io retry\nstart\n');
      for (let i = 0; ; i++) {
        if (spawnSync('ip', ['-n', ns, 'link', 'show', tap], { stdio: 'ignore' }).status === 0) break;
        if (i === 300 || child.proc.exitCode !== null) throw new Error(`dpdk-testpmd did not make ${tap}${lastLines(child.text)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 1000));
      return child;
    };
    if (opts.reconnect) {
      // Connects, then leaves (the backend unmaps guest memory); the TAP goes with it.
      const first = await startPmd();
      first.proc.stdin?.end('stop\nquit\n');
      await first.stop();
      for (let i = 0; spawnSync('ip', ['-n', ns, 'link', 'show', tap], { stdio: 'ignore' }).status === 0; i++) {
        if (i === 100) throw new Error(`${tap} outlived dpdk-testpmd`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    pmd = await startPmd();
    const sh = (line: string): void => {
      const r = spawnSync('ip', ['-n', ns, ...line.split(' ')], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`ip -n ${ns} ${line}: ${r.stderr.trim()}`);
    };
    sh(`link set ${tap} mtu ${opts.mtu}`);
    sh(`link set ${tap} address ${TAP_MAC}`);
    sh(`addr add 10.0.2.15/24 dev ${tap}`);
    sh(`link set ${tap} up`);
    sh(`route add default via ${GATEWAY}`);
    // The port's renegotiation (GUEST_CSUM) may still be under way: iperf3's first connect would
    // then fail on an unresolved gateway (No route to host). A ping resolves it (passt, without
    // ping sockets, answers the ARP request but not the echo): the path is up once it has.
    const resolved = (): boolean => {
      const echo = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-c', '1', '-W', '1', GATEWAY], { stdio: 'ignore' }).status === 0;
      return echo || /lladdr/.test(spawnSync('ip', ['-n', ns, 'neigh', 'show', GATEWAY], { encoding: 'utf8' }).stdout ?? '');
    };
    for (let i = 0; !resolved(); i++) {
      if (i < 30) continue;
      // Rare, and not understood yet: what each side saw, for the next one that meets it.
      const run = (cmd: string, args: string[]): string => {
        const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10_000 });
        return `$ ${cmd} ${args.join(' ')}\n${r.stdout ?? ''}${r.stderr ?? ''}`;
      };
      console.error(
        [
          `bench: ${backend}: the gateway was not resolved; what each side saw:`,
          run('ip', ['-n', ns, '-s', 'link', 'show', tap]),
          run('ip', ['-n', ns, 'neigh', 'show']),
          ...(isVunet(backend) ? [run(process.execPath, [join(REPO_ROOT, 'bin', 'vunet.js'), 'ctl', '--socket', started.socketPath, 'status', '--json'])] : []),
          `dpdk-testpmd's last lines:\n${pmd.text.split('\n').slice(-20).join('\n')}`,
        ].join('\n'),
      );
      throw new Error(`the gateway ${GATEWAY} was not resolved in 30 s`);
    }
    const iperf = (d: Direction, seconds: number): string[] =>
      inNs('iperf3', '-c', GATEWAY, '-p', String(port), '-t', String(seconds), '-P', String(opts.streams), '-i', '0', '-J', ...(d === 'down' ? ['-R'] : []));
    for (const d of DIRECTIONS) {
      // (See --warmup: a short run, whose close and the next open V8 then sees, and the warm-up.)
      for (const seconds of opts.warmup > 0 ? [1, opts.warmup] : []) {
        const [wc, ...wa] = iperf(d, seconds);
        await runToEnd(wc!, wa, (seconds + 30) * 1000);
      }
      const v0 = cpuTimes(backendProc.proc.pid);
      const gc0 = { ...backendProc.gc };
      const t0 = Date.now();
      const recording = opts.perf !== undefined ? recordPerf(opts.perf, backend, backendProc, d) : undefined;
      const [c, ...a] = iperf(d, opts.seconds);
      // Not spawnSync: vunet's --trace-gc lines must be read while the run goes on.
      const r = await runToEnd(c!, a, (opts.seconds + 30) * 1000);
      const wall = (Date.now() - t0) / 1000;
      const v1 = cpuTimes(backendProc.proc.pid);
      await recording?.stop();
      await new Promise((resolve) => setTimeout(resolve, 200)); // the last GC lines in the pipe
      const cpu: CpuUse = { qemuCpu: undefined, ...backendUse(backend, backendProc, v0, v1, gc0, wall, opts.jit) };
      if (opts.stats && isVunet(backend)) await printStatus(backendProc, `${backend} ${d}`);
      if (opts.stats) {
        // The namespace's own counters, as a guest's (its kernel is the guest here).
        const counters = spawnSync('ip', ['netns', 'exec', ns, 'sh', '-c', guestCounters(tap)], { encoding: 'utf8' }).stdout ?? '';
        for (const c of counters.match(/^BENCH-GUEST .*$/gm) ?? []) console.error(`  guest ${c.slice('BENCH-GUEST '.length)}`);
      }
      result.runs[d] = parseRun(`BENCH-RC ${d} ${r.status ?? 124}\nBENCH-JSON-BEGIN ${d}\n${r.stdout}\nBENCH-JSON-END ${d}\n`, d, cpu);
    }
    noteFailedRuns(result, backendProc);
  } catch (err) {
    const why = (err as Error).message.split('\n')[0] ?? '';
    const exitSays = backendProc !== undefined && backendProc.proc.exitCode !== null ? ` (${backend} exited${lastLines(backendProc.text)})` : '';
    result.failure = `${why}${exitSays}`;
  } finally {
    pmd?.proc.stdin?.end('stop\nquit\n');
    await pmd?.stop();
    await backendProc?.stop();
    await server?.stop();
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

/** Runs a command to its end without blocking the event loop: its status and standard output. */
function runToEnd(command: string, args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const proc = spawn(command, args, { stdio: ['ignore', 'pipe', 'ignore'] });
    children.add(proc);
    let stdout = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (s: string) => void (stdout += s));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', () => undefined);
    proc.on('close', (status) => {
      clearTimeout(timer);
      children.delete(proc);
      resolve({ status, stdout });
    });
  });
}

/** --stats: vunet's counters so far (SIGUSR1 makes it log its status), the busy parts only. */
async function printStatus(vunet: Child, label: string): Promise<void> {
  const seen = vunet.statusLines.length;
  vunet.proc.kill('SIGUSR1');
  for (let i = 0; i < 50 && vunet.statusLines.length === seen; i++) await new Promise((r) => setTimeout(r, 100));
  const line = vunet.statusLines[seen];
  if (line === undefined) {
    console.error(`bench: ${label}: vunet gave no status`);
    return;
  }
  // Zero counters say nothing here: keep the rest, one line per section.
  const nonzero = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v === 0 || v === false ? undefined : v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const kept = nonzero(x);
      if (kept !== undefined && !(typeof kept === 'object' && kept !== null && Object.keys(kept).length === 0)) out[k] = kept;
    }
    return out;
  };
  const status = nonzero(JSON.parse(line)) as Record<string, unknown>;
  console.error(`bench: ${label}: vunet status so far`);
  for (const key of ['device', 'loop', 'failures', 'stack', 'tcp', 'memory']) {
    if (status[key] !== undefined) console.error(`  ${key}: ${JSON.stringify(status[key])}`);
  }
  const gc = vunet.text.match(/^.*: (Scavenge|Mark-Compact|Mark-sweep).*$/gm) ?? [];
  for (const l of gc.slice(-3)) console.error(`  gc: ${l.trim()}`);
}

/** --perf: the files recorded so far, by backend and direction (a round's number in the name). */
const perfRuns = new Map<string, number>();
/** --perf: the recordings to name and summarize once every run is over (reportPerf). */
const perfRecorded: { file: string; jit: boolean }[] = [];

/**
 * --perf: records the backend's process (all its threads, cpu-clock every 100 µs, call graphs)
 * into `dir` until stop(). Its figures then carry perf's own cost in the backend (the sampling
 * interrupts and the unwinding).
 */
function recordPerf(dir: string, backend: Backend, proc: Child, d: Direction): { stop(): Promise<void> } {
  const key = `${backend}-${d}`;
  const n = (perfRuns.get(key) ?? 0) + 1;
  perfRuns.set(key, n);
  const file = join(dir, `${key}-${n}.data`);
  const args = ['record', '-q', '-k', 'mono', '-e', 'cpu-clock', '-c', '100000', '-g', '-p', String(proc.proc.pid), '-o', file];
  const perf = spawn('perf', args, { stdio: 'ignore' });
  children.add(perf);
  const done = new Promise<void>((resolve) => {
    perf.on('close', () => resolve());
    perf.on('error', () => resolve()); // (perf could not start: nothing recorded, the run goes on)
  });
  return {
    async stop() {
      perf.kill('SIGINT');
      await done;
      children.delete(perf);
      perfRecorded.push({ file, jit: isVunet(backend) });
    },
  };
}

/**
 * --perf, after every run (perf inject and report take seconds, which a QEMU guest would not wait
 * for): names vunet's JIT code (perf inject with V8's jit-PID.dump; perf's own view of a JIT
 * process names code V8 freed and reused by what it first held there, so callers come out wrong)
 * and prints each recording's busiest functions, self time.
 */
function reportPerf(dir: string): void {
  for (const { file, jit } of perfRecorded) {
    let report = file;
    if (jit) {
      const injected = file.replace(/\.data$/, '.jit.data');
      if (spawnSync('perf', ['inject', '-j', '-i', file, '-o', injected], { cwd: dir, stdio: 'ignore' }).status === 0) report = injected;
    }
    const args = ['report', '-i', report, '--stdio', '--no-children', '--sort', 'dso,sym', '--percent-limit', '1.5', '-q', '-g', 'none'];
    const top = spawnSync('perf', args, { cwd: dir, encoding: 'utf8' });
    console.error(`bench: perf: ${report} (perf report -i ${report}); functions over 1.5 % self:`);
    for (const line of (top.stdout ?? '')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .slice(0, 25))
      console.error(`  ${line.trim().replace(/\s+/g, ' ')}`);
  }
}

async function runBackend(backend: Backend, opts: BenchOptions): Promise<BackendResult> {
  if (opts.guestless) return runGuestless(backend, opts);
  const result: BackendResult = { backend, guestMtu: undefined, runs: {} };
  const dir = mkdtempSync(join(tmpdir(), 'vunet-bench-'));
  let server: Child | undefined;
  let backendProc: Child | undefined;
  let guest: GuestHandle | undefined;
  try {
    const port = await freePort();
    server = startChild('iperf3 server', 'iperf3', ['-s', '-B', '127.0.0.1', '-p', String(port), '--forceflush']);
    await server.waitFor(/Server listening/, 10_000);

    let socketPath: string | undefined;
    if (isVhostUser(backend)) {
      try {
        ({ child: backendProc, socketPath } = await startBackend(backend, dir, opts));
      } catch (err) {
        result.failure = (err as Error).message;
        return result;
      }
    }
    const runMs = (1 + opts.warmup + opts.seconds + 3 * (CONNECT_TIMEOUT_MS / 1000) + 45) * 1000;
    guest = await startGuest({
      ...(socketPath !== undefined ? { socketPath } : { qemuNetdev: 'user' as const }),
      script: guestScript(port, opts.seconds, opts.warmup, opts.streams, opts.stats),
      ...(socketPath !== undefined && opts.device.length > 0 ? { deviceOptions: opts.device } : {}),
      timeoutMs: 180_000 + 2 * runMs,
      guestTimeoutSec: 150 + (2 * runMs) / 1000,
    });
    await guest.waitFor(/VUNET-GUEST: booted/, 120_000);
    // The line's end, not the output's: a chunk of console output can end inside the number.
    result.guestMtu = Number((await guest.waitFor(/^BENCH-MTU (\d+)\r?\n/m, 60_000))[1]);
    if (/^BENCH-DHCP-FAILED$/m.test(guest.output)) {
      result.failure = 'the guest got no DHCP lease';
      return result;
    }
    for (const d of DIRECTIONS) {
      await guest.waitFor(new RegExp(`^BENCH-START ${d}$`, 'm'), runMs);
      const t0 = Date.now();
      const q0 = cpuSeconds(guest.pid);
      const v0 = cpuTimes(backendProc?.proc.pid);
      const gc0 = backendProc ? { ...backendProc.gc } : undefined;
      const recording = opts.perf !== undefined && backendProc !== undefined ? recordPerf(opts.perf, backend, backendProc, d) : undefined;
      await guest.waitFor(new RegExp(`^BENCH-RC ${d} \\d+$`, 'm'), runMs);
      const wall = (Date.now() - t0) / 1000;
      const pct = (a: number | undefined, b: number | undefined): number | undefined =>
        a !== undefined && b !== undefined && wall > 0 ? (100 * (b - a)) / wall : undefined;
      const v1 = cpuTimes(backendProc?.proc.pid);
      const q1 = cpuSeconds(guest.pid); // (before perf's stop, which QEMU may not outlive)
      await recording?.stop();
      const cpu: CpuUse = { qemuCpu: pct(q0, q1), ...backendUse(backend, backendProc, v0, v1, gc0, wall, opts.jit) };
      await guest.waitFor(new RegExp(`^BENCH-JSON-END ${d}$`, 'm'), 30_000);
      result.runs[d] = parseRun(guest.output, d, cpu);
      if (opts.stats && backendProc && isVunet(backend)) {
        await printStatus(backendProc, `${backend} ${d}`);
        await guest.waitFor(new RegExp(`^BENCH-GUEST eth0.*$`, 'm'), 10_000).catch(() => undefined);
        const counters = guest.output.slice(guest.output.lastIndexOf(`BENCH-JSON-END ${d}`)).match(/^BENCH-GUEST .*$/gm) ?? [];
        for (const c of counters) console.error(`  guest ${c.slice('BENCH-GUEST '.length)}`);
      }
    }
    noteFailedRuns(result, backendProc);
    await guest.exited;
  } catch (err) {
    const why = (err as Error).message.split('\n')[0] ?? '';
    const exitSays = backendProc !== undefined && backendProc.proc.exitCode !== null ? ` (${backend} exited${lastLines(backendProc.text)})` : '';
    result.failure = `${why}${exitSays}`;
  } finally {
    guest?.kill('SIGKILL');
    await guest?.exited;
    await backendProc?.stop();
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  return result;
}

// ------------------------------------------------------------------------------------------------
// Report
// ------------------------------------------------------------------------------------------------

const mbit = (r: RunResult | undefined): number | undefined => (r?.ok === true ? r.bitsPerSecond / 1e6 : undefined);
/** `n` per GB the receiver of run `r` got. */
const perGb = (r: (RunResult & { ok: true }) | undefined, n: number | undefined): number | undefined =>
  r !== undefined && n !== undefined && r.bytes > 0 ? n / (r.bytes / 1e9) : undefined;
const fmt = (n: number | undefined, digits = 1): string => (n === undefined ? '—' : n.toFixed(digits));

function report(results: BackendResult[], opts: BenchOptions): string {
  const rows: string[][] = [
    ['backend', 'direction', 'Mbit/s', 'retransmits', 'QEMU CPU %', 'backend CPU %', 'backend CPU s/GB', 'of it user', 'scavenges/GB', 'guest MTU'],
  ];
  const notes: string[] = [];
  for (const r of results) {
    if (r.failure !== undefined) notes.push(`${r.backend}: ${r.failure}`);
    for (const d of DIRECTIONS) {
      const run = r.runs[d];
      if (run !== undefined && !run.ok) notes.push(`${r.backend} ${DIRECTION_LABEL[d]}: iperf3 failed: ${run.reason}`);
      const ok = run?.ok === true ? run : undefined;
      rows.push([
        r.backend,
        DIRECTION_LABEL[d],
        run === undefined ? 'not run' : ok === undefined ? 'failed' : fmt(mbit(ok)),
        ok?.retransmits === undefined ? '—' : String(ok.retransmits),
        fmt(ok?.qemuCpu, 0),
        isVhostUser(r.backend) ? fmt(ok?.backendCpu, 0) : '—',
        isVhostUser(r.backend) ? fmt(perGb(ok, ok?.backendCpuSeconds), 2) : '—',
        isVhostUser(r.backend) ? fmt(perGb(ok, ok?.backendUserSeconds), 2) : '—',
        isVunet(r.backend) ? fmt(perGb(ok, ok?.scavenges), 0) : '—',
        r.guestMtu === undefined ? '—' : String(r.guestMtu),
      ]);
    }
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((row) => [...(row[i] ?? '')].length)));
  const line = (row: string[]): string =>
    row
      .map((cell, i) => (i >= 2 ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const out = [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)];

  const vunet = results.find((r) => r.backend === 'vunet');
  for (const other of ['slirp', 'baseline', 'passt'] as const) {
    const o = results.find((r) => r.backend === other);
    if (o === undefined || vunet === undefined) continue;
    out.push('');
    for (const d of DIRECTIONS) {
      const r = ratios(results, other, d);
      const perGbOf = (b: BackendResult, seconds: (run: RunResult & { ok: true }) => number | undefined): string => {
        const run = b.runs[d];
        return fmt(run?.ok === true ? perGb(run, seconds(run)) : undefined, 2);
      };
      const total = (run: RunResult & { ok: true }): number | undefined => run.backendCpuSeconds;
      const user = (run: RunResult & { ok: true }): number | undefined => run.backendUserSeconds;
      const cpu =
        r.cpu !== undefined
          ? `, CPU s/GB ${other} ${perGbOf(o, total)}, vunet ${perGbOf(vunet, total)} (${r.cpu.toFixed(2)}×)` +
            (r.user !== undefined ? `; user ${perGbOf(o, user)}, ${perGbOf(vunet, user)} (${r.user.toFixed(2)}×)` : '')
          : '';
      out.push(`vunet/${other} ${DIRECTION_LABEL[d]}: ${r.speed !== undefined ? `${r.speed.toFixed(2)}×` : '—'}${cpu}`);
    }
  }
  if (opts.jit) out.push('', ...jitLines(results));
  if (notes.length > 0) out.push('', ...notes);
  out.push(
    '',
    `iperf3, ${opts.seconds} s per run${opts.warmup > 0 ? ` after 1 s and ${opts.warmup} s unmeasured` : ''}, ${opts.streams} TCP stream${opts.streams > 1 ? 's' : ''}; ${opts.passt ? 'vunet and passt' : 'vunet'} MTU ${opts.mtu}${opts.baseline ? `; baseline: ${opts.baseline}` : ''}${opts.guestless ? `; guest-less (dpdk-testpmd ${csumForwarded(opts) ? 'csum' : 'io'} forwarding + TAP${opts.guestCsum ? ', GUEST_CSUM' : ''})` : ''}.`,
    "CPU %: of one core during the run. CPU s/GB: the backend process's (vunet, passt; slirp runs in QEMU), per GB the receiver got; of it user: in user mode (the backend's own code; the kernel's share, loopback delivery included, varies more); scavenges/GB: vunet's.",
  );
  return out.join('\n');
}

/** (--jit) What V8 optimized and deoptimized in each vunet run, and its share of vunet's CPU. */
function jitLines(results: BackendResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    for (const d of DIRECTIONS) {
      const run = r.runs[d];
      if (run?.ok !== true || run.jit === undefined) continue;
      const { compiles, compileMs, deopts } = run.jit;
      const share =
        run.backendCpuSeconds !== undefined && run.backendCpuSeconds > 0
          ? ` (${((100 * compileMs) / 1000 / run.backendCpuSeconds).toFixed(1)} % of its CPU)`
          : '';
      const byCause = new Map<string, number>();
      for (const x of deopts) byCause.set(x, (byCause.get(x) ?? 0) + 1);
      const causes = [...byCause].map(([x, n]) => (n > 1 ? `${x} ×${n}` : x)).join('; ');
      out.push(
        `${r.backend} ${DIRECTION_LABEL[d]}: V8 optimized ${compiles} functions in ${compileMs.toFixed(0)} ms of compiler time${share}; ${deopts.length} deoptimizations${causes ? `: ${causes}` : ''}`,
      );
    }
  }
  return out;
}

/** vunet's throughput and backend CPU per GB over another backend's, in one direction of one
 *  round (undefined where either run failed or has no CPU figure). */
function ratios(results: BackendResult[], other: Backend, d: Direction): { speed: number | undefined; cpu: number | undefined; user: number | undefined } {
  const run = (b: Backend): (RunResult & { ok: true }) | undefined => {
    const r = results.find((x) => x.backend === b)?.runs[d];
    return r?.ok === true ? r : undefined;
  };
  const o = run(other);
  const v = run('vunet');
  const ratio = (a: number | undefined, b: number | undefined): number | undefined => (a !== undefined && b !== undefined && b > 0 ? a / b : undefined);
  const cpu = (seconds: (r: RunResult & { ok: true }) => number | undefined): number | undefined =>
    isVhostUser(other) ? ratio(perGb(v, v && seconds(v)), perGb(o, o && seconds(o))) : undefined;
  return { speed: ratio(mbit(v), mbit(o)), cpu: cpu((r) => r.backendCpuSeconds), user: cpu((r) => r.backendUserSeconds) };
}

/** After several rounds: each comparison's ratios, round by round, their geometric mean and median. */
function roundsSummary(rounds: BackendResult[][]): string {
  const out = [`over ${rounds.length} rounds (vunet / other; geometric mean, median, then each round):`];
  const gmean = (xs: number[]): string => (xs.length === 0 ? '—' : `${Math.exp(xs.reduce((a, x) => a + Math.log(x), 0) / xs.length).toFixed(3)}×`);
  // The median as well: one disturbed run (another process on the machine) moves the mean.
  const median = (xs: number[]): string => {
    if (xs.length === 0) return '—';
    const v = [...xs].sort((a, b) => a - b);
    const m = v.length >> 1;
    return `${(v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2).toFixed(3)}×`;
  };
  for (const other of ['slirp', 'baseline', 'passt'] as const) {
    if (!rounds.some((results) => results.some((r) => r.backend === other))) continue;
    for (const d of DIRECTIONS) {
      const each = rounds.map((results) => ratios(results, other, d));
      const line = (what: string, pick: (r: ReturnType<typeof ratios>) => number | undefined): void => {
        const xs = each.map(pick);
        const known = xs.filter((x): x is number => x !== undefined);
        out.push(
          `  vunet/${other} ${DIRECTION_LABEL[d]}: ${what} ${gmean(known)}, median ${median(known)} (${xs.map((x) => (x === undefined ? '—' : x.toFixed(2))).join(' ')})`,
        );
      };
      line('throughput', (r) => r.speed);
      if (isVhostUser(other)) {
        line('CPU s/GB', (r) => r.cpu);
        line('user CPU s/GB', (r) => r.user);
      }
      // A backend that stops keeping up (passt guest-less guest→host, at times) makes the means
      // above say little: name the rounds, whose CPU per GB is then that of an idling backend.
      // (Not slirp's: it is slower by design.)
      if (!isVhostUser(other)) continue;
      const stalled = (who: string, than: string, slow: (speed: number) => boolean): void => {
        const at = each.flatMap((r, i) => (r.speed !== undefined && slow(r.speed) ? [i + 1] : []));
        if (at.length > 0)
          out.push(`    ${who} stalled in round${at.length > 1 ? 's' : ''} ${at.join(', ')}: under ${STALLED * 100} % of ${than}'s throughput`);
      };
      stalled(other, 'vunet', (x) => x >= 1 / STALLED);
      stalled('vunet', other, (x) => x <= STALLED);
    }
  }
  return out.join('\n');
}

/** A run at under this fraction of the other backend's throughput stalled (see roundsSummary). */
const STALLED = 0.25;

// ------------------------------------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const opts = parseCli(argv);
  if (opts === undefined) return 0;
  if (spawnSync('iperf3', ['--version'], { stdio: 'ignore' }).status !== 0) {
    throw new CliError('iperf3 is not installed on the host: apt-get install iperf3');
  }
  const say = (s: string): void => void process.stderr.write(`bench: ${s}\n`);
  // vunet drops root before it writes its profiles (and V8 its --perf-prof dump) there.
  for (const dir of [opts.perf, opts.profile]) {
    if (dir === undefined) continue;
    mkdirSync(dir, { recursive: true });
    chmodSync(dir, 0o777);
  }
  await ensureGuestImage({ log: (l) => say(l) });
  const rounds: BackendResult[][] = [];
  for (let round = 0; round < opts.rounds; round++) {
    const results: BackendResult[] = [];
    const order = round % 2 === 0 ? opts.backends : [...opts.backends].reverse();
    const label = opts.rounds > 1 ? `round ${round + 1}/${opts.rounds}: ` : '';
    for (const backend of order) {
      const start = opts.guestless ? 'starting dpdk-testpmd and the namespace' : 'booting the guest';
      const ways = DIRECTIONS.length > 1 ? 'each way' : DIRECTION_LABEL[DIRECTIONS[0]!];
      say(`${label}${backend}: ${start}, then iperf3 for ${opts.seconds} s ${ways} (${opts.streams} stream${opts.streams > 1 ? 's' : ''})`);
      const r = await runBackend(backend, opts);
      for (const d of DIRECTIONS) {
        const run = r.runs[d];
        if (run?.ok === true) say(`${backend} ${DIRECTION_LABEL[d]}: ${fmt(mbit(run))} Mbit/s`);
        else if (run !== undefined) say(`${backend} ${DIRECTION_LABEL[d]}: iperf3 failed: ${run.reason}`);
      }
      if (r.failure !== undefined) say(`${backend}: ${r.failure}`);
      results.push(r);
    }
    // Listed in the order given, whichever ran first.
    results.sort((a, b) => opts.backends.indexOf(a.backend) - opts.backends.indexOf(b.backend));
    if (opts.rounds > 1) process.stdout.write(`\nround ${round + 1} (${order.join(', then ')})`);
    process.stdout.write(`\n${report(results, opts)}\n`);
    rounds.push(results);
  }
  if (opts.rounds > 1) process.stdout.write(`\n${roundsSummary(rounds)}\n`);
  if (opts.perf !== undefined) reportPerf(opts.perf);
  const anyOk = rounds.some((results) => results.some((r) => DIRECTIONS.some((d) => r.runs[d]?.ok === true)));
  return anyOk ? 0 : 1;
}

process.on('exit', killChildren);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    killChildren();
    process.exit(130); // runs the exit hooks, which also stop QEMU (scripts/qemu.ts)
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = err instanceof CliError ? 2 : 1;
  },
);
