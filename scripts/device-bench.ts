// What bench-tx and bench-rx share: the best block of rounds, each layout in child processes of
// this checkout and, alternating, of a baseline's, and the table of their ratios.
//
// A machine shared with others slows one process now and then (here 1.5-1.8x for tens of
// milliseconds to a second at a time), which a mean would count: each measurement is the best
// block of BLOCK rounds after WARMUP_ROUNDS, the best of three processes (or a script's own
// number).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { TestFrontend } from 'vhost-user-ts/testing';
import type { NetDeviceOptions, VirtioNetDevice } from '../src/virtio/net-device.js';

export const BLOCK = 100;
export const WARMUP_ROUNDS = 500;

/** The rounds of one measurement: add() each round's time (and its items, when they vary);
 *  best() the fastest block after the warm-up, in ns per item (frame). */
export class BlockTimer {
  private round = 0;
  private block = 0;
  private items = 0;
  private bestNs = Infinity;

  constructor(private readonly itemsPerRound: number) {}

  add(ns: number, items = this.itemsPerRound): void {
    this.block += ns;
    this.items += items;
    if (++this.round % BLOCK === 0) {
      if (this.round > WARMUP_ROUNDS && this.items > 0) this.bestNs = Math.min(this.bestNs, this.block / this.items);
      this.block = 0;
      this.items = 0;
    }
  }

  best(): number {
    return this.bestNs;
  }
}

/**
 * Runs `fn` with a VirtioNetDevice (its sink taking frames and reading nothing) serving the test
 * frontend of vhost-user-ts over a unix socket and a memfd, in this process; closes both after.
 * (Imported here: the parent process, which only runs children, loads none of it.)
 */
export async function withDevice<T>(
  name: string,
  opts: NetDeviceOptions,
  memorySize: number | undefined,
  fn: (dev: VirtioNetDevice, fe: TestFrontend) => Promise<T>,
): Promise<T> {
  const { VhostUserServer } = await import('vhost-user-ts');
  const { TestFrontend } = await import('vhost-user-ts/testing');
  const { VirtioNetDevice } = await import('../src/virtio/net-device.js');
  await import('../src/host/native.js'); // the addon's helpers, as vunet runs
  const dev = new VirtioNetDevice(opts);
  dev.sink = { receive: () => undefined };
  const dir = mkdtempSync(join(tmpdir(), `vunet-${name}-`));
  const server = new VhostUserServer(dev);
  server.listen(join(dir, 'sock'));
  const fe = TestFrontend.connect(join(dir, 'sock'), memorySize !== undefined ? { memorySize } : {});
  try {
    return await fn(dev, fe);
  } finally {
    fe.close();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface DeviceBench<L extends string> {
  /** The script's name (`bench-tx`), its file under scripts/ the same with `.ts`. */
  name: string;
  layouts: readonly L[];
  /** Extra boolean flags it takes (passed on to its children). */
  flags?: readonly string[];
  /** Its rounds unless --rounds, given its flags. */
  rounds(flags: Record<string, boolean>): number;
  /** The table's title. */
  title(rounds: number, flags: Record<string, boolean>): string;
  /** One layout measured in this process: ns per item. */
  measure(layout: L, rounds: number, flags: Record<string, boolean>): Promise<number>;
  /** Processes per layout and checkout, the best of which counts (default 3). */
  processes?: number;
}

/** A layout measured in a child process of the checkout at `root`. */
function child(root: string, name: string, args: string[]): number {
  const script = join(root, `scripts/${name}.ts`);
  if (!existsSync(script) || !existsSync(join(root, 'scripts/device-bench.ts'))) {
    throw new Error(`${root} has no scripts/${name}.ts or scripts/device-bench.ts: copy this checkout's there`);
  }
  const r = spawnSync(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, encoding: 'utf8' });
  const ns = Number(/^ns (\S+)$/m.exec(r.stdout)?.[1]);
  if (r.status !== 0 || !Number.isFinite(ns)) throw new Error(`${name} in ${root} failed: ${r.stderr.trim().split('\n').pop() ?? r.status}`);
  return ns;
}

/** The script's main: `--child LAYOUT` measures in this process; else each layout (or
 *  `--layout`) in `processes` children (three by default), alternating with `--baseline DIR`'s,
 *  the best of each. */
export async function runDeviceBench<L extends string>(b: DeviceBench<L>, root: string): Promise<void> {
  const extra = b.flags ?? [];
  const { values } = parseArgs({
    options: {
      layout: { type: 'string' },
      rounds: { type: 'string' },
      baseline: { type: 'string' },
      child: { type: 'string' },
      ...Object.fromEntries(extra.map((f) => [f, { type: 'boolean' as const }])),
    },
  });
  const given = values as Record<string, string | boolean | undefined>;
  const flags = Object.fromEntries(extra.map((f) => [f, given[f] === true]));
  const rounds = Number(values.rounds ?? b.rounds(flags));
  if (!Number.isInteger(rounds) || rounds < WARMUP_ROUNDS + BLOCK) throw new Error(`--rounds must be a whole number of at least ${WARMUP_ROUNDS + BLOCK}`);
  const pick = values.child ?? values.layout;
  if (pick !== undefined && !(b.layouts as readonly string[]).includes(pick)) throw new Error(`--layout must be one of ${b.layouts.join(', ')}`);
  if (values.child !== undefined) {
    console.log(`ns ${(await b.measure(values.child as L, rounds, flags)).toFixed(1)}`);
    return;
  }
  const layouts = pick !== undefined ? [pick as L] : b.layouts;
  const baseline = values.baseline !== undefined ? resolve(values.baseline) : undefined;
  const args = (layout: L): string[] => ['--child', layout, '--rounds', String(rounds), ...extra.filter((f) => flags[f]).map((f) => `--${f}`)];
  console.log(b.title(rounds, flags));
  for (const layout of layouts) {
    let ours = Infinity;
    let theirs = Infinity;
    for (let i = 0; i < (b.processes ?? 3); i++) {
      ours = Math.min(ours, child(root, b.name, args(layout)));
      if (baseline !== undefined) theirs = Math.min(theirs, child(baseline, b.name, args(layout)));
    }
    const ratio = baseline !== undefined ? `  baseline ${theirs.toFixed(0)}  ratio ${(ours / theirs).toFixed(2)}×` : '';
    console.log(`${layout.padEnd(8)} ${ours.toFixed(0)}${ratio}`);
  }
}
