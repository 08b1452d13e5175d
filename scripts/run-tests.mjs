#!/usr/bin/env node
// Runs every test with tap and ends with one line "N passed, N failed, N skipped" taken from tap's
// own final count (the `# { total, pass, fail, skip }` comment of its TAP stream).
// Extra arguments are passed to tap (for example a subset of test files).
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
const lines = createInterface({ input: child.stdout });
lines.on('line', (line) => {
  process.stdout.write(line + '\n');
  const m = /^# \{ (.*) \}$/.exec(line);
  if (m) summary = m[1];
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
  process.stdout.write(`\n${counts.pass} passed, ${counts.fail} failed${skipped ? `, ${skipped} skipped` : ''}\n`);
  process.exit(code ?? (signal ? 1 : 0));
});
