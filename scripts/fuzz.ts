// `npm run fuzz -- [--seconds N] [--seed S] [--mode frames|chains|messages|all]`: runs the fuzz
// harness (test/support/fuzz/) against vunet in a child process for N seconds (default 60; with
// `all`, split evenly between the modes) and prints one summary per mode. Findings are saved
// under test/fuzz/regressions/ (test/fuzz-regressions.test.ts replays them).
//
// As root the target runs in a network namespace made for it (only `lo`): nothing the NAT sends
// leaves this machine. Otherwise it runs with fake host sockets, and the summary says so.
import { parseArgs } from 'node:util';
import { MODES } from '../test/support/fuzz/runner.js';
import type { Mode } from '../test/support/fuzz/runner.js';
import { formatSummary, fuzzMode } from '../test/support/fuzz/fuzzer.js';
import type { ModeSummary } from '../test/support/fuzz/fuzzer.js';

const USAGE = `usage: npm run fuzz -- [--seconds N] [--seed S] [--mode frames|chains|messages|all]
                      [--inputs N] [--fake-host] [--no-save] [--status]

  --seconds N    how long to run (default 60; with --mode all, split between the modes)
  --seed S       the generator's seed (default: from the clock; printed)
  --mode M       frames, chains, messages, or all (default)
  --inputs N     stop a mode after N inputs (frames, chains or messages) even if time is left
  --fake-host    fake host sockets even as root (no network namespace)
  --no-save      do not write regression files
  --status       print vunet's whole status at the end of each mode (how deep the inputs got)`;

function main(): Promise<number> | number {
  let values: { seconds?: string; seed?: string; mode?: string; inputs?: string; 'fake-host'?: boolean; 'no-save'?: boolean; status?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: process.argv.slice(2),
      options: {
        seconds: { type: 'string' },
        seed: { type: 'string' },
        mode: { type: 'string' },
        inputs: { type: 'string' },
        'fake-host': { type: 'boolean' },
        'no-save': { type: 'boolean' },
        status: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const num = (name: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback;
    if (!/^\d+$/.test(raw)) throw new Error(`--${name} must be a whole number (got ${raw})`);
    return Number(raw);
  };
  let seconds: number;
  let seed: number;
  let inputs: number | undefined;
  try {
    seconds = num('seconds', values.seconds, 60);
    seed = num('seed', values.seed, Date.now() % 0x1_0000_0000) >>> 0;
    inputs = values.inputs === undefined ? undefined : num('inputs', values.inputs, 0);
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    return 2;
  }
  const modeArg = values.mode ?? 'all';
  if (modeArg !== 'all' && !MODES.includes(modeArg as Mode)) {
    process.stderr.write(`--mode must be frames, chains, messages or all (got ${modeArg})\n`);
    return 2;
  }
  const modes: Mode[] = modeArg === 'all' ? [...MODES] : [modeArg as Mode];
  return run(modes, seconds, seed, inputs, values['fake-host'] === true, values['no-save'] === true, values.status === true);
}

async function run(
  modes: Mode[],
  seconds: number,
  seed: number,
  inputs: number | undefined,
  fakeHost: boolean,
  noSave: boolean,
  status: boolean,
): Promise<number> {
  const log = (line: string): void => void process.stdout.write(`${line}\n`);
  log(`fuzzing ${modes.join(', ')} for ${seconds} s with seed ${seed}`);
  const summaries: ModeSummary[] = [];
  // Ctrl-C: the target and its namespace go away with us (target-process.ts's exit hook).
  process.once('SIGINT', () => process.exit(130));
  process.once('SIGTERM', () => process.exit(143));
  for (const mode of modes) {
    const s = await fuzzMode({
      mode,
      seed,
      seconds: seconds / modes.length,
      ...(inputs !== undefined ? { maxInputs: inputs } : {}),
      isolation: fakeHost ? 'fake' : 'auto',
      ...(noSave ? { regressionDir: null } : {}),
      statusAtEnd: status,
      log,
    });
    summaries.push(s);
    log(formatSummary(s));
  }
  log('\n== summary');
  for (const s of summaries) log(formatSummary(s));
  const bad = summaries.some((s) => s.findings.length > 0);
  return bad ? 1 : 0;
}

const code = await main();
process.exitCode = code;
