// Replays a saved regression file against a fresh target: the batches in order, then a
// well-behaved guest. The caller decides what must hold (test/fuzz-regressions.test.ts).
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REGRESSION_DIR, makeRunner, stackFrom } from './fuzzer.js';
import type { RegressionFile } from './fuzzer.js';
import { Rng } from './rng.js';
import { TargetProcess } from './target-process.js';
import type { Isolation } from './target-process.js';

export interface ReplayResult {
  file: string;
  saved: RegressionFile;
  alive: boolean;
  exit: string;
  /** Every batch came back (chains used, sequences answered). */
  completed: boolean;
  /** Used-ring entries no device may write. */
  violations: string[];
  internalErrors: number;
  lastInternalError: string;
  serverExceptions: number;
  /** Batches over 50 ms in the target during the replay. */
  longBatches: number;
  maxBatchMs: number;
  served: boolean;
  stack: string | undefined;
}

export function regressionFiles(dir = REGRESSION_DIR): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  return names
    .filter((n) => n.endsWith('.json'))
    .sort()
    .map((n) => join(dir, n));
}

export async function replayFile(file: string, isolation: Isolation | 'auto' = 'auto'): Promise<ReplayResult> {
  const saved = JSON.parse(readFileSync(file, 'utf8')) as RegressionFile;
  if (saved.version !== 1) throw new Error(`${file}: unknown version ${String(saved.version)}`);
  const target = await TargetProcess.start({ isolation, maxMemory: saved.maxMemory });
  const runner = makeRunner(saved.mode, new Rng(saved.seed));
  let completed = true;
  let served = false;
  const violations: string[] = [];
  try {
    await runner.attach(target);
    for (const b of saved.batches) {
      if (!target.alive) break;
      try {
        const out = await runner.run(runner.fromJson(b));
        completed &&= out.completed;
        if (out.violation) violations.push(out.violation);
      } catch {
        completed = false;
        break;
      }
    }
    if (target.alive) {
      try {
        served = await runner.served();
      } catch {
        served = false;
      }
    }
    let p;
    try {
      p = await target.probe();
    } catch {
      p = undefined;
    }
    return {
      file,
      saved,
      alive: p !== undefined && target.alive,
      exit: target.exitText(),
      completed,
      violations,
      internalErrors: p?.failures.count ?? -1,
      lastInternalError: p?.failures.last ?? '',
      serverExceptions: p ? p.server.errors - p.server.protocolErrors : -1,
      longBatches: p?.loop.batchesOver50ms ?? -1,
      maxBatchMs: p?.loop.maxBatchMs ?? -1,
      served,
      stack: stackFrom(target.stderr()),
    };
  } finally {
    await runner.close();
    await target.stop();
  }
}
