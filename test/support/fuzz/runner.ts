// What every fuzz mode provides to the harness (fuzzer.ts): inputs generated from a seeded
// generator, run against the target through the rings or the socket, and written to / read from a
// regression file.
import type { TargetProcess } from './target-process.js';

export type Mode = 'frames' | 'chains' | 'messages';
export const MODES: readonly Mode[] = ['frames', 'chains', 'messages'];

/** A batch in a regression file (mode-specific fields, JSON only). */
export type BatchJson = Record<string, unknown>;

export interface RunOutcome {
  /** Inputs the batch held: frames, chains or messages. */
  inputs: number;
  /** The harness's own time from the kick (or first message) until everything came back. */
  ms: number;
  /** Everything came back (every chain used, the sequence answered or the connection closed). */
  completed: boolean;
  /** Why not, when it did not. */
  note?: string;
  /** The used ring returned something no device may return (a head it did not hold, one head
   *  twice, more bytes than the buffer holds). */
  violation?: string;
}

export interface Runner<B> {
  readonly mode: Mode;
  /** Connects to a target (a new one after a crash). */
  attach(target: TargetProcess): Promise<void>;
  generate(iteration: number): B;
  run(batch: B): Promise<RunOutcome>;
  toJson(batch: B): BatchJson;
  fromJson(json: BatchJson): B;
  /** A well-behaved guest still gets an ARP answer. */
  served(): Promise<boolean>;
  /** Mode-specific counts for the summary. */
  notes(): string[];
  close(): Promise<void>;
}

/** Polls the target until the server holds no frontend (so a new connection is not refused). */
export async function waitDisconnected(target: TargetProcess, timeoutMs = 3000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const p = await target.probe();
    if (!p.connected) return;
    await new Promise((r) => setTimeout(r, 1));
  }
}
