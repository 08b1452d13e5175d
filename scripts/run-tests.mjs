#!/usr/bin/env node
// Runs every test with tap and ends with one line "N passed, N failed, N skipped" taken from tap's
// own final count (the `# { total, pass, fail, skip }` comment of its TAP stream).
//
// Without arguments: the files scripts/test-plan.mjs gives a process of their own, and
// test/unit-suite.ts for all the others (one process; each file a subtest named by its path).
// They go to tap in two runs at once (lanes), whose counts are added: test/e2e-pause.test.ts
// (which mostly waits: a guest stopped, frozen, silent to ARP, for minutes) and then
// test/e2e-two-guests.test.ts (two guests at once) one after the other in the second lane, and
// everything else with the jobs of .taprc in the first. The second lane's log follows the
// first's.
//
// Extra arguments are passed to one tap run as they are (for example a subset of test files: each
// then runs in its own process).
//
// Failed assertions are listed again just above the last line, with their subtest path (for a
// shared file: test/unit-suite.ts > the file > …) and the first lines of their diagnostics, so the
// tail of a long log says what failed.
import { spawn, spawnSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import { SUITE, ownProcess, testFiles } from './test-plan.mjs';

/** Files run one after the other in a lane of their own beside the others: e2e-pause is long and
 *  mostly idle; e2e-two-guests boots two guests at once, which beside two more files' guests would
 *  put four TCG guests on the machine's two CPUs. */
const SIDE_LANE = ['test/e2e-pause.test.ts', 'test/e2e-two-guests.test.ts'];

/**
 * Runs `npx tap run -R tap ARGS`, its TAP stream checked line by line (and printed at once when
 * `live`, else kept). Resolves to its summary, exit status, failures and, unless live, its lines.
 */
function runTap(args, live) {
  const child = spawn('npx', ['tap', 'run', '-R', 'tap', ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } });
  const kept = [];
  let summary = null;
  /** Subtest names by nesting depth (4 spaces a level). */
  const path = [];
  /** Depths whose closing "not ok" only repeats a failure already listed from inside them. */
  const failedInside = [];
  /** Failed assertions: where, and the first lines of their YAML diagnostics (what was found,
   *  wanted, the stack). */
  const failures = [];
  let diag = null;
  const lines = createInterface({ input: child.stdout });
  lines.on('line', (line) => {
    if (live) process.stdout.write(line + '\n');
    else kept.push(line);
    const m = /^# \{ (.*) \}$/.exec(line);
    if (m) summary = m[1];
    const indent = line.length - line.trimStart().length;
    const depth = Math.floor(indent / 4);
    const text = line.trim();
    if (diag) {
      if (text === '...' || indent < diag.indent) diag = null;
      else if (text !== '---') {
        // Keys at the block's own indent: skip where-in-source (the path says it) and the source.
        if (indent === diag.indent) diag.skip = /^(at|source|compare):/.test(text);
        if (!diag.skip && diag.lines.length < 12) diag.lines.push(line.slice(diag.indent));
      }
    }
    const sub = /^# Subtest: (.*)$/.exec(text);
    if (sub) path.splice(depth, path.length, sub[1]);
    const bad = /^not ok \d+ - (.*?)(?: # time=.*)?$/.exec(text);
    if (!bad) return;
    if (failedInside[depth]) {
      failedInside[depth] = false;
      return;
    }
    for (let d = 0; d < depth; d++) failedInside[d] = true;
    if (failures.length < 50) {
      diag = { indent: indent + 2, lines: [], skip: false };
      failures.push({ at: [...path.slice(0, depth), bad[1]].join(' > '), lines: diag.lines });
    }
  });
  return new Promise((resolve) => {
    child.on('close', (code, signal) => resolve({ summary, code, signal, failures, kept }));
  });
}

const extra = process.argv.slice(2);
let lanes;
if (extra.length > 0) {
  lanes = [extra];
} else {
  const own = testFiles().filter((f) => ownProcess(f) !== undefined);
  const side = own.filter((f) => SIDE_LANE.includes(f));
  lanes = [[...own.filter((f) => !side.includes(f)), SUITE], ...(side.length > 0 ? [['--jobs', '1', ...side]] : [])];
}
// tap rebuilds its test class for the plugins .taprc names on its first run after an install; two
// tap runs starting at once would both rebuild it, each deleting what the other wrote. Built once
// here first, the lanes find it ready.
if (lanes.length > 1) {
  const built = spawnSync('npx', ['tap', 'build'], { stdio: ['ignore', 'ignore', 'inherit'] });
  if (built.status !== 0) {
    process.stdout.write(`\n0 passed, 1 failed\n`);
    process.exit(1);
  }
}
const results = await Promise.all(lanes.map((args, i) => runTap(args, i === 0)));

const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
let status = 0;
for (const r of results) {
  for (const line of r.kept) process.stdout.write(line + '\n');
  const lane = { pass: 0, fail: 0, skip: 0, todo: 0 };
  if (r.summary) {
    for (const part of r.summary.split(',')) {
      const [k, v] = part.split(':').map((s) => s.trim());
      if (k in lane) lane[k] = Number(v);
    }
  }
  // A runner that died without its summary is a failure, never a silent pass.
  if (!r.summary || r.code !== 0) lane.fail = Math.max(lane.fail, 1);
  for (const k of Object.keys(counts)) counts[k] += lane[k];
  if (status === 0) status = r.code ?? (r.signal ? 1 : 0);
}
const failures = results.flatMap((r) => r.failures);
const skipped = counts.skip + counts.todo;
if (failures.length > 0) {
  process.stdout.write('\nfailed:\n');
  for (const f of failures.slice(0, 50)) process.stdout.write(`  ${f.at}\n${f.lines.map((l) => `      ${l}\n`).join('')}`);
}
process.stdout.write(`\n${counts.pass} passed, ${counts.fail} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
process.exit(status);
