#!/usr/bin/env node
// Runs every test with tap and ends with one line "N passed, N failed, N skipped" taken from tap's
// own final count (the `# { total, pass, fail, skip }` comment of its TAP stream).
// Extra arguments are passed to tap (for example a subset of test files). Failed assertions are
// listed again just above that line, with their subtest path and the first lines of their
// diagnostics, so the tail of a long log says what failed.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const TEST_DIRS = ['libs/vhost-user-ts/test', 'test'];
const findTests = (dir) =>
  readdirSync(dir, { recursive: true })
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => join(dir, f))
    .sort();

const files = process.argv.slice(2);
const args = ['tap', 'run', '-R', 'tap', ...(files.length > 0 ? files : TEST_DIRS.flatMap(findTests))];
const child = spawn('npx', args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, FORCE_COLOR: '0' } });

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
  process.stdout.write(line + '\n');
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

child.on('close', (code, signal) => {
  const counts = { pass: 0, fail: 0, skip: 0, todo: 0 };
  if (summary) {
    for (const part of summary.split(',')) {
      const [k, v] = part.split(':').map((s) => s.trim());
      if (k in counts) counts[k] = Number(v);
    }
  }
  // A runner that died without its summary is a failure, never a silent pass.
  if (!summary || code !== 0) counts.fail = Math.max(counts.fail, 1);
  const skipped = counts.skip + counts.todo;
  if (failures.length > 0) {
    process.stdout.write('\nfailed:\n');
    for (const f of failures) process.stdout.write(`  ${f.at}\n${f.lines.map((l) => `      ${l}\n`).join('')}`);
  }
  process.stdout.write(`\n${counts.pass} passed, ${counts.fail} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
