// A short fixed-seed run of each fuzz mode (test/support/fuzz/) against vunet in a child process:
// no crash, no hang, no confirmed long batch, RSS under its bound. `npm run fuzz` runs the same
// harness for as long as asked; this keeps it working and catches what a few thousand inputs find.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { formatSummary, fuzzMode } from './support/fuzz/fuzzer.js';
import { MODES } from './support/fuzz/runner.js';

const SECONDS = 5;
const SEED = 20261201;

for (const mode of MODES) {
  t.test(`fuzz ${mode} for ${SECONDS} s (seed ${SEED})`, async (t) => {
    // Findings of this run go to a temporary directory, named in the output; `npm run fuzz`
    // saves into test/fuzz/regressions/.
    const dir = mkdtempSync(join(tmpdir(), 'vunet-fuzz-findings-'));
    const s = await fuzzMode({ mode, seed: SEED, seconds: SECONDS, regressionDir: dir, log: (line) => t.comment(line) });
    t.comment(formatSummary(s));
    t.ok(s.inputs > 0, `${s.inputs} ${mode} run`);
    t.equal(s.crashes, 0, 'no crash');
    t.equal(s.hangs, 0, 'no hang');
    t.equal(s.stalls, 0, 'no confirmed batch over 50 ms');
    t.ok(s.rssMax <= s.rssBound, `RSS ≤ ${(s.rssBound / 2 ** 20).toFixed(0)} MiB (max ${(s.rssMax / 2 ** 20).toFixed(0)} MiB)`);
    t.equal(s.servedFailures, 0, 'a well-behaved guest is still served');
    t.equal(s.usedViolations, 0, 'the used rings hold only heads the device was given, each once');
    if (s.findings.length === 0) rmSync(dir, { recursive: true, force: true });
  });
}
