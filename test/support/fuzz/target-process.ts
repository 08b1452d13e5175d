// Starts and watches a fuzz target (target.ts) in a child process.
//
// Fuzzed frames addressed beyond the gateway make vunet's NAT send real packets from host sockets.
// They must never leave this machine, so as root the child runs in a network namespace made for it
// here with nothing but `lo` up: every destination is loopback (the gateway is mapped to the host's
// loopback, which inside the namespace is the namespace's own) or unreachable. Ping sockets are
// allowed inside it (net.ipv4.ping_group_range) so the echo proxy takes its real path. Without root
// no namespace can be made; the child then gets fake host sockets (fake-host.ts) and
// `isolation` says 'fake'. Namespaces and children are removed on stop() and when this process
// exits.
import { execFileSync, fork, spawnSync } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Probe, TargetConfig, TargetReply, TargetRequest } from './target-protocol.js';

export type Isolation = 'netns' | 'fake';

export interface TargetOptions {
  /** 'auto' (default): a network namespace when root, else fake host sockets. */
  isolation?: Isolation | 'auto';
  /** vunet's memory budget in bytes (default 64 MiB). */
  maxMemory?: number;
  mtu?: number;
}

export class TargetError extends Error {}

const REPO_ROOT = new URL('../../../', import.meta.url).pathname;
const TARGET_PATH = new URL('./target.ts', import.meta.url).pathname;
const STDERR_KEEP = 256 * 1024;
export const DEFAULT_TARGET_MEMORY = 64 << 20;

const live = new Set<TargetProcess>();
let exitHookInstalled = false;
let namespaceCounter = 0;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort: whatever is still running when the harness exits goes with it.
  process.on('exit', () => {
    for (const t of live) t.killNow();
  });
}

let setprivOk: boolean | undefined;
/** `setpriv --pdeathsig KILL` makes the target die with the harness even if it is SIGKILLed. */
function deathSignal(): string[] {
  setprivOk ??= spawnSync('setpriv', ['--pdeathsig', 'KILL', '--', 'true'], { stdio: 'ignore' }).status === 0;
  return setprivOk ? ['setpriv', '--pdeathsig', 'KILL', '--'] : [];
}

export function canUseNamespaces(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' }).status === 0;
}

function makeNamespace(name: string): void {
  const ip = (...args: string[]): void => void execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', name);
  try {
    ip('-n', name, 'link', 'set', 'lo', 'up');
    ip('netns', 'exec', name, 'sysctl', '-qw', 'net.ipv4.ping_group_range=0 2147483647');
  } catch (err) {
    deleteNamespace(name);
    throw err;
  }
}

function deleteNamespace(name: string): void {
  try {
    execFileSync('ip', ['netns', 'del', name], { stdio: 'ignore' });
  } catch {
    // already gone
  }
}

export class TargetProcess {
  private readonly pending = new Map<number, { resolve: (r: TargetReply) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private nextId = 1;
  private errText = '';
  private stopped = false;
  /** How the child ended, once it has. */
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<void>;

  private constructor(
    private readonly child: ChildProcess,
    readonly socketPath: string,
    private readonly dir: string,
    readonly isolation: Isolation,
    readonly netns: string | undefined,
    readonly config: TargetConfig,
  ) {
    live.add(this);
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(new TargetError(`target exited (${this.exitText()})`));
        }
        this.pending.clear();
        resolve();
      });
    });
    const keep = (d: Buffer): void => {
      this.errText += d.toString();
      if (this.errText.length > STDERR_KEEP) this.errText = this.errText.slice(-STDERR_KEEP / 2);
    };
    child.stderr?.on('data', keep);
    child.stdout?.on('data', keep);
    child.on('message', (raw: unknown) => {
      const m = raw as TargetReply;
      if (m.type === 'ready') return;
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m);
    });
    child.on('error', () => undefined);
  }

  static async start(opts: TargetOptions = {}): Promise<TargetProcess> {
    installExitHook();
    const want = opts.isolation ?? 'auto';
    const isolation: Isolation = want === 'auto' ? (canUseNamespaces() ? 'netns' : 'fake') : want;
    const dir = mkdtempSync(join(tmpdir(), 'vunet-fuzz-'));
    const socketPath = join(dir, 'vunet.sock');
    const config: TargetConfig = {
      socketPath,
      fakeHost: isolation === 'fake',
      maxMemory: opts.maxMemory ?? DEFAULT_TARGET_MEMORY,
      ...(opts.mtu !== undefined ? { mtu: opts.mtu } : {}),
    };
    let netns: string | undefined;
    let execPath: string;
    let execArgv: string[];
    const node = [process.execPath, '--import', 'tsx'];
    if (isolation === 'netns') {
      netns = `vnfuzz${process.pid}n${namespaceCounter++}`;
      makeNamespace(netns);
      execPath = 'ip';
      execArgv = ['netns', 'exec', netns, ...deathSignal(), ...node];
    } else {
      const ds = deathSignal();
      execPath = ds.length > 0 ? ds[0]! : process.execPath;
      execArgv = ds.length > 0 ? [...ds.slice(1), ...node] : node.slice(1);
    }
    let child: ChildProcess;
    try {
      child = fork(TARGET_PATH, [], {
        cwd: REPO_ROOT,
        execPath,
        execArgv,
        env: { ...process.env, FUZZ_TARGET: JSON.stringify(config) },
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      });
    } catch (err) {
      if (netns) deleteNamespace(netns);
      rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const t = new TargetProcess(child, socketPath, dir, isolation, netns, config);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new TargetError(`target did not start: ${t.stderr()}`)), 30_000);
      child.on('message', (m: unknown) => {
        if ((m as TargetReply).type === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      });
      void t.exited.then(() => {
        clearTimeout(timer);
        reject(new TargetError(`target exited while starting (${t.exitText()}): ${t.stderr()}`));
      });
    }).catch(async (err: unknown) => {
      await t.stop();
      throw err;
    });
    return t;
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  get alive(): boolean {
    return this.exit === undefined;
  }

  exitText(): string {
    if (!this.exit) return 'running';
    return this.exit.signal ? `signal ${this.exit.signal}` : `code ${this.exit.code}`;
  }

  /**
   * What a target that does not answer is doing: the CPU its process uses over the next `ms`
   * (from /proc: utime + stime, in clock ticks of 10 ms), as "spinning" (its event loop busy for
   * good: a loop that never yields) or "idle" (waiting: a lost reply, a deadlock). Undefined
   * without /proc.
   */
  async cpuUse(ms = 1000): Promise<string | undefined> {
    const ticks = (): number | undefined => {
      try {
        // The fields after the command name (which may hold spaces and parentheses, hence the
        // last ") "): state is the 3rd field, utime the 14th, stime the 15th.
        const stat = readFileSync(`/proc/${this.pid}/stat`, 'utf8');
        const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
        return Number(f[11]) + Number(f[12]);
      } catch {
        return undefined;
      }
    };
    const a = ticks();
    await new Promise((r) => setTimeout(r, ms));
    const b = ticks();
    if (a === undefined || b === undefined) return undefined;
    const share = ((b - a) * 10) / ms; // (USER_HZ is 100 on Linux)
    return `${share > 0.5 ? 'spinning' : 'idle'}: ${share.toFixed(2)} s of CPU a second`;
  }

  /** The child's stderr and stdout (the last 128-256 KiB). */
  stderr(): string {
    return this.errText;
  }

  private request(req: TargetRequest & { id: number }, timeoutMs: number): Promise<TargetReply> {
    if (!this.alive) return Promise.reject(new TargetError(`target exited (${this.exitText()})`));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(req.id);
        reject(new TargetError(`target did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(req.id, { resolve, reject, timer });
      this.child.send(req, (err) => {
        if (!err) return;
        const p = this.pending.get(req.id);
        if (!p) return;
        this.pending.delete(req.id);
        clearTimeout(p.timer);
        reject(err);
      });
    });
  }

  /** The target's counters, RSS and queue states. Rejects when it is dead or does not answer. */
  async probe(timeoutMs = 5000): Promise<Probe> {
    const r = await this.request({ id: this.nextId++, cmd: 'probe' }, timeoutMs);
    if (r.type !== 'probe') throw new TargetError('unexpected reply');
    return r.probe;
  }

  /** vunet's whole status(). */
  async status(timeoutMs = 5000): Promise<Record<string, unknown>> {
    const r = await this.request({ id: this.nextId++, cmd: 'status' }, timeoutMs);
    if (r.type !== 'status') throw new TargetError('unexpected reply');
    return r.status;
  }

  /** Ends the child (politely, then SIGKILL), removes its namespace and socket directory. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.alive) {
      try {
        this.child.send({ cmd: 'exit' } satisfies TargetRequest);
      } catch {
        // channel already closed
      }
      const t = setTimeout(() => this.child.kill('SIGKILL'), 2000);
      await this.exited;
      clearTimeout(t);
    }
    this.cleanup();
  }

  /** Synchronous teardown for the exit hook. */
  killNow(): void {
    if (this.alive) this.child.kill('SIGKILL');
    this.cleanup();
  }

  private cleanup(): void {
    live.delete(this);
    if (this.netns) deleteNamespace(this.netns);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
