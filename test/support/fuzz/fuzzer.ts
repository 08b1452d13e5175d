// The fuzz harness: runs one mode's inputs against a vunet target in a child process and checks,
// after every batch, what must hold whatever the guest or the frontend does:
//
//  - the target is alive (a crash is the child exiting; its stack is on its stderr) and answers
//    within 5 s (else: hang, the event loop is stuck);
//  - the batch completed (every chain came back, the message sequence was answered or the
//    connection closed) within 5 s (else: hang);
//  - no batch of work in the target took more than 50 ms: the target's own `loop.batchesOver50ms`
//    and, as a second opinion, the harness's wall-clock time from kick to completion (which also
//    covers the TX slice itself: vunet times the work after a slice, not the slice). Either one
//    over 50 ms has the batch replayed twice; only a long batch that comes back both times is a
//    stall (saved), the others (scheduling on a loaded machine, GC) are counted. The target's event-loop delay is reported too;
//  - RSS stays under baseline + the memory budget + slack (baseline: right after the first
//    connection), and no internal error (`failures.count`, an exception caught at a batch
//    boundary) or server exception that is not a protocol error happens;
//  - the used rings hold only heads the device was given, each once, with lengths that fit
//    (TX: length 0; RX in frames mode: no more than the buffer);
//  - every few seconds a well-behaved guest still gets an ARP answer.
//
// A finding is saved with its context (the last batches, the seed, the iteration) as a JSON file
// in the regression directory; test/fuzz-regressions.test.ts replays every saved file.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ChainsRunner } from './chains-mode.js';
import { FramesRunner } from './frames-mode.js';
import { MessagesRunner } from './messages-mode.js';
import { Rng } from './rng.js';
import type { BatchJson, Mode, Runner } from './runner.js';
import type { Probe } from './target-protocol.js';
import { DEFAULT_TARGET_MEMORY, TargetProcess } from './target-process.js';
import type { Isolation } from './target-process.js';

export const LONG_BATCH_MS = 50;
/** RSS may grow this far beyond baseline + the memory budget (V8 heap, code, allocator slack). */
export const RSS_SLACK = 128 << 20;
/** Batches kept as the context of a finding. */
const CONTEXT_BATCHES = 32;
const SERVED_EVERY_MS = 5000;

export const REGRESSION_DIR = new URL('../../fuzz/regressions/', import.meta.url).pathname;

export type FindingKind = 'crash' | 'hang' | 'stall' | 'internal-error' | 'server-exception' | 'memory' | 'not-served' | 'bad-used';

/** What was found and when: what a finding and its regression file both say. */
export interface FindingFacts {
  kind: FindingKind;
  mode: Mode;
  seed: number;
  iteration: number;
  detail: string;
  /** Lines of the target's stderr that carry a stack, when there are some. */
  stack?: string;
}

export interface Finding extends FindingFacts {
  /** Where it was saved. */
  file?: string;
  /** Times the same finding (same kind and message) came up in the run. */
  count: number;
}

export interface ModeSummary {
  mode: Mode;
  seed: number;
  isolation: Isolation;
  seconds: number;
  /** Frames, chains or messages sent. */
  inputs: number;
  batches: number;
  crashes: number;
  hangs: number;
  /** Confirmed long batches (> 50 ms, reproduced by a replay). */
  stalls: number;
  /** Long batches the replay did not reproduce (the machine, GC, or accumulated state). */
  unconfirmedLong: number;
  maxBatchMsChild: number;
  maxBatchMsHarness: number;
  harnessOver50ms: number;
  /** The target's event-loop delay (monitorEventLoopDelay, 10 ms resolution): the longest time
   *  its loop was held, whatever held it (a TX slice is not in its batch times, only in this). */
  maxLoopDelayMs: number;
  rssMin: number;
  rssMax: number;
  rssBound: number;
  fdsMax: number;
  internalErrors: number;
  internalErrorMessages: string[];
  serverExceptions: number;
  /** Used-ring entries no device may write (see RunOutcome.violation). */
  usedViolations: number;
  servedChecks: number;
  servedFailures: number;
  /** Mode-specific counts. */
  notes: string[];
  findings: Finding[];
}

export interface FuzzOptions {
  mode: Mode;
  seed: number;
  /** Stop after this long... */
  seconds: number;
  /** ...or after this many inputs. */
  maxInputs?: number;
  isolation?: Isolation | 'auto';
  /** The target's memory budget (default 64 MiB). */
  maxMemory?: number;
  /** Where findings are written; null: nowhere. */
  regressionDir?: string | null;
  log?: (line: string) => void;
  /** Log vunet's whole status() at the end (its counters show how deep the inputs got). */
  statusAtEnd?: boolean;
}

export function makeRunner(mode: Mode, rng: Rng): Runner<unknown> {
  switch (mode) {
    case 'frames':
      return new FramesRunner(rng);
    case 'chains':
      return new ChainsRunner(rng);
    default:
      return new MessagesRunner(rng);
  }
}

/** The stack lines of the target's stderr (pino JSON with err.stack, or Node's crash output). */
export function stackFrom(stderr: string): string | undefined {
  const lines = stderr.split('\n');
  const out: string[] = [];
  for (const line of lines) {
    if (line.startsWith('{')) {
      try {
        const j = JSON.parse(line) as { msg?: string; err?: { stack?: string }; during?: string };
        if (j.err?.stack) out.push(`${j.msg ?? ''}${j.during ? ` (during ${j.during})` : ''}\n${j.err.stack}`);
      } catch {
        // not JSON
      }
    } else if (/^\s+at |Error|^node:|Uncaught|FATAL|Aborted|Segmentation/.test(line)) {
      out.push(line);
    }
  }
  return out.length > 0 ? out.slice(-60).join('\n') : undefined;
}

export interface RegressionFile extends FindingFacts {
  version: 1;
  found: string;
  isolation: Isolation;
  maxMemory: number;
  /** The batches that led to it, in order; the last is the one during which it was seen. */
  batches: BatchJson[];
}

function normalise(s: string): string {
  return s.replace(/0x[0-9a-f]+|\d+/gi, '#').slice(0, 200);
}

/** Runs one mode until its time or input count is used up; returns its summary. */
export async function fuzzMode(opts: FuzzOptions): Promise<ModeSummary> {
  const log = opts.log ?? (() => undefined);
  const rng = new Rng(opts.seed);
  const maxMemory = opts.maxMemory ?? DEFAULT_TARGET_MEMORY;
  const runner = makeRunner(opts.mode, rng);
  let target = await TargetProcess.start({ isolation: opts.isolation ?? 'auto', maxMemory });
  const s: ModeSummary = {
    mode: opts.mode,
    seed: opts.seed,
    isolation: target.isolation,
    seconds: 0,
    inputs: 0,
    batches: 0,
    crashes: 0,
    hangs: 0,
    stalls: 0,
    unconfirmedLong: 0,
    maxBatchMsChild: 0,
    maxBatchMsHarness: 0,
    harnessOver50ms: 0,
    maxLoopDelayMs: 0,
    rssMin: Infinity,
    rssMax: 0,
    rssBound: 0,
    fdsMax: 0,
    internalErrors: 0,
    internalErrorMessages: [],
    serverExceptions: 0,
    usedViolations: 0,
    servedChecks: 0,
    servedFailures: 0,
    notes: [],
    findings: [],
  };
  const context: unknown[] = [];
  const started = performance.now();
  const deadline = started + opts.seconds * 1000;
  let iteration = 0;
  let last: Probe;
  let lastServed = performance.now();
  let memoryReported = false;

  const byKey = new Map<string, Finding>();
  const save = (found: Omit<Finding, 'count'>, batches: readonly unknown[], key: string): void => {
    // One entry, one line and one file per distinct finding; repeats are counted.
    const known = byKey.get(key);
    if (known) {
      known.count++;
      return;
    }
    const f: Finding = { ...found, count: 1 };
    byKey.set(key, f);
    s.findings.push(f);
    log(`FINDING ${f.kind} (${f.mode}, seed ${f.seed}, iteration ${f.iteration}): ${f.detail}${f.stack ? `\n${f.stack}` : ''}`);
    if (opts.regressionDir === null) return;
    const dir = opts.regressionDir ?? REGRESSION_DIR;
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `${f.mode}-${f.kind}-seed${f.seed}-it${f.iteration}.json`);
    const body: RegressionFile = {
      version: 1,
      kind: f.kind,
      mode: f.mode,
      seed: f.seed,
      iteration: f.iteration,
      detail: f.detail,
      ...(f.stack ? { stack: f.stack } : {}),
      found: new Date().toISOString(),
      isolation: target.isolation,
      maxMemory,
      batches: batches.map((b) => runner.toJson(b)),
    };
    writeFileSync(file, JSON.stringify(body, null, 1) + '\n');
    f.file = file;
    log(`  saved ${file}`);
  };

  const restart = async (): Promise<void> => {
    await target.stop();
    target = await TargetProcess.start({ isolation: opts.isolation ?? 'auto', maxMemory });
    await runner.attach(target);
    last = await target.probe();
  };

  const observe = (p: Probe): void => {
    s.rssMin = Math.min(s.rssMin, p.rss);
    s.rssMax = Math.max(s.rssMax, p.rss);
    s.fdsMax = Math.max(s.fdsMax, p.fds);
    s.maxBatchMsChild = Math.max(s.maxBatchMsChild, p.loop.maxBatchMs);
    s.maxLoopDelayMs = Math.max(s.maxLoopDelayMs, p.loop.delayMaxMs);
  };

  /** Does a well-behaved guest still get an ARP answer? Counted; a finding (`when`: after what)
   *  when it does not. */
  const checkServed = async (when: string): Promise<void> => {
    s.servedChecks++;
    let ok = false;
    try {
      ok = await runner.served();
    } catch {
      ok = false;
    }
    if (!ok) {
      s.servedFailures++;
      save(
        { kind: 'not-served', mode: opts.mode, seed: opts.seed, iteration, detail: `a well-behaved guest got no ARP answer ${when}` },
        context,
        `served:${iteration}`,
      );
    }
  };

  try {
    await runner.attach(target);
    last = await target.probe();
    // Baseline once the first connection and its guest memory are up.
    const warm = runner.generate(0);
    await runner.run(warm);
    const base = await target.probe();
    last = base;
    s.rssBound = base.rss + maxMemory + RSS_SLACK;
    observe(base);
    let lastProgress = performance.now();

    while (performance.now() < deadline && (opts.maxInputs === undefined || s.inputs < opts.maxInputs)) {
      iteration++;
      const batch = runner.generate(iteration);
      context.push(batch);
      if (context.length > CONTEXT_BATCHES) context.shift();
      let completed = true;
      let note: string | undefined;
      let harnessMs = 0;
      let violation: string | undefined;
      let failure: unknown;
      try {
        const out = await runner.run(batch);
        s.inputs += out.inputs;
        s.batches++;
        completed = out.completed;
        note = out.note;
        violation = out.violation;
        harnessMs = completed ? out.ms : 0;
        s.maxBatchMsHarness = Math.max(s.maxBatchMsHarness, harnessMs);
        if (harnessMs > LONG_BATCH_MS) s.harnessOver50ms++;
      } catch (err) {
        failure = err;
      }
      let p: Probe | undefined;
      try {
        p = await target.probe();
      } catch {
        p = undefined;
      }
      if (!p) {
        // Dead, or alive and not answering: either way this target is done.
        const dead = !target.alive || (await Promise.race([target.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 500))]));
        const kind: FindingKind = dead ? 'crash' : 'hang';
        if (dead) s.crashes++;
        else s.hangs++;
        const use = dead ? undefined : await target.cpuUse();
        const detail = dead ? `target exited (${target.exitText()})` : `target did not answer a probe within 5 s${use ? ` (${use})` : ''}`;
        const stack = stackFrom(target.stderr());
        save(
          { kind, mode: opts.mode, seed: opts.seed, iteration, detail, ...(stack ? { stack } : {}) },
          context,
          `${kind}:${normalise(stack ?? detail).slice(0, 120)}`,
        );
        context.length = 0;
        await restart();
        continue;
      }
      if (failure !== undefined || !completed) {
        s.hangs++;
        const detail = failure !== undefined ? `harness error: ${(failure as Error).message}` : `the batch did not complete: ${note ?? 'no reason given'}`;
        save({ kind: 'hang', mode: opts.mode, seed: opts.seed, iteration, detail }, context, `hang:${normalise(detail)}`);
      }
      observe(p);
      if (violation) {
        s.usedViolations++;
        save({ kind: 'bad-used', mode: opts.mode, seed: opts.seed, iteration, detail: violation }, context, `used:${normalise(violation)}`);
      }
      const childLong = p.loop.batchesOver50ms > last.loop.batchesOver50ms;
      if (childLong || harnessMs > LONG_BATCH_MS) {
        // Replay the batch twice: a long batch that comes back every time is the input's doing.
        // Both clocks also see scheduling and GC (tests run in parallel with TCG guests on few
        // cores), hence the replays before anything is saved.
        let confirmed = true;
        const again: string[] = [];
        for (let i = 0; i < 2 && confirmed; i++) {
          const before = p.loop.batchesOver50ms;
          try {
            const out = await runner.run(batch);
            const q = await target.probe();
            observe(q);
            if (q.loop.batchesOver50ms > before) again.push(`the target counted a batch over ${LONG_BATCH_MS} ms (max ${q.loop.maxBatchMs} ms)`);
            else if (out.ms > LONG_BATCH_MS) again.push(`kick to completion took ${out.ms.toFixed(1)} ms`);
            else confirmed = false;
            p = q;
          } catch {
            confirmed = false;
          }
        }
        const first = childLong
          ? `the target counted a batch over ${LONG_BATCH_MS} ms (max ${p.loop.maxBatchMs} ms)`
          : `kick to completion took ${harnessMs.toFixed(1)} ms`;
        if (confirmed) {
          s.stalls++;
          save(
            { kind: 'stall', mode: opts.mode, seed: opts.seed, iteration, detail: `${first}; replayed: ${again.join('; ')}` },
            context,
            `stall:${iteration}`,
          );
        } else {
          s.unconfirmedLong++;
          log(`long batch at iteration ${iteration} (${first}), not reproduced by a replay`);
        }
      }
      if (p.failures.count > last.failures.count) {
        const n = p.failures.count - last.failures.count;
        s.internalErrors += n;
        const msg = p.failures.last;
        if (!s.internalErrorMessages.includes(msg) && s.internalErrorMessages.length < 50) s.internalErrorMessages.push(msg);
        const stack = stackFrom(target.stderr());
        save(
          { kind: 'internal-error', mode: opts.mode, seed: opts.seed, iteration, detail: `${n} internal error(s); last: ${msg}`, ...(stack ? { stack } : {}) },
          context,
          `internal:${normalise(msg)}`,
        );
      }
      const serverBugs = (q: Probe): number => q.server.errors - q.server.protocolErrors;
      if (serverBugs(p) > serverBugs(last)) {
        s.serverExceptions += serverBugs(p) - serverBugs(last);
        const stack = stackFrom(target.stderr());
        save(
          {
            kind: 'server-exception',
            mode: opts.mode,
            seed: opts.seed,
            iteration,
            detail: 'the vhost-user server caught an exception that is not a protocol error',
            ...(stack ? { stack } : {}),
          },
          context,
          `server:${normalise(stack ?? '')}`,
        );
      }
      if (p.rss > s.rssBound && !memoryReported) {
        memoryReported = true;
        save(
          {
            kind: 'memory',
            mode: opts.mode,
            seed: opts.seed,
            iteration,
            detail: `RSS ${(p.rss / 2 ** 20).toFixed(1)} MiB over the bound ${(s.rssBound / 2 ** 20).toFixed(1)} MiB (budget ${maxMemory / 2 ** 20} MiB in use: ${(p.memory.used / 2 ** 20).toFixed(1)} MiB)`,
          },
          context,
          'memory',
        );
      }
      last = p;
      if (performance.now() - lastServed > SERVED_EVERY_MS) {
        lastServed = performance.now();
        await checkServed('after these inputs');
        try {
          last = await target.probe();
        } catch {
          // noticed on the next iteration
        }
      }
      if (performance.now() - lastProgress > 10_000) {
        lastProgress = performance.now();
        const secs = (performance.now() - started) / 1000;
        log(
          `${opts.mode}: ${s.inputs} inputs in ${secs.toFixed(0)} s (${(s.inputs / secs).toFixed(0)}/s), batch max child ${s.maxBatchMsChild} ms / harness ${s.maxBatchMsHarness.toFixed(1)} ms, RSS ${(p.rss / 2 ** 20).toFixed(0)} MiB, fds ${p.fds}, internal errors ${s.internalErrors}, crashes ${s.crashes}`,
        );
      }
    }
    // However short the run, it ends with a well-behaved guest served.
    if (target.alive) await checkServed('at the end of the run');
    if (opts.statusAtEnd && target.alive) log(JSON.stringify(await target.status(), null, 1));
  } finally {
    s.notes = runner.notes();
    await runner.close();
    await target.stop();
  }
  s.seconds = (performance.now() - started) / 1000;
  if (s.rssMin === Infinity) s.rssMin = 0;
  return s;
}

const mib = (n: number): string => `${(n / 2 ** 20).toFixed(1)} MiB`;

/** The summary lines for one mode. */
export function formatSummary(s: ModeSummary): string {
  const lines = [
    `== ${s.mode} (seed ${s.seed}, ${s.seconds.toFixed(0)} s, target isolated by ${s.isolation === 'netns' ? 'a network namespace' : 'fake host sockets'})`,
    `  inputs run        ${s.inputs} ${s.mode} in ${s.batches} batches (${(s.inputs / Math.max(1, s.seconds)).toFixed(0)}/s)`,
    `  crashes           ${s.crashes}`,
    `  stalls            ${s.stalls} confirmed long batches, ${s.hangs} hangs, ${s.unconfirmedLong} unconfirmed long batches`,
    `  max batch ms      child ${s.maxBatchMsChild}, harness ${s.maxBatchMsHarness.toFixed(1)} (harness over ${LONG_BATCH_MS} ms: ${s.harnessOver50ms}); child event-loop delay max ${s.maxLoopDelayMs} ms`,
    `  RSS               min ${mib(s.rssMin)}, max ${mib(s.rssMax)} (bound ${mib(s.rssBound)})`,
    `  fds (max)         ${s.fdsMax}`,
    `  internal errors   ${s.internalErrors}${s.internalErrorMessages.length !== 0 ? `: ${s.internalErrorMessages.join(' | ')}` : ''}`,
    `  server exceptions ${s.serverExceptions}`,
    `  used-ring errors  ${s.usedViolations}`,
    `  served checks     ${s.servedChecks - s.servedFailures}/${s.servedChecks} answered`,
    ...s.notes.map((n) => `  ${n}`),
  ];
  for (const f of s.findings)
    lines.push(`  finding: ${f.kind} at iteration ${f.iteration}${f.count > 1 ? ` (${f.count} times)` : ''}: ${f.detail}${f.file ? ` → ${f.file}` : ''}`);
  return lines.join('\n');
}
