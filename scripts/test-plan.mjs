// Which test files run where. Most share one process: test/unit-suite.ts imports them in turn,
// each as a subtest named by its path (a process per file costs ~2 s of CPU, more than most of
// them take). The files below keep a process of their own, as tap gives any file it runs. Used by
// scripts/run-tests.mjs (what to hand tap) and test/unit-suite.ts (what to import).
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The checkout. */
export const ROOT = fileURLToPath(new URL('..', import.meta.url));

/** Where the test files are. */
export const TEST_DIRS = ['libs/vhost-user-ts/test', 'test'];

/** The file that runs the shared ones. */
export const SUITE = 'test/unit-suite.ts';

/**
 * Files (or patterns) that need a process of their own, and why. Whatever boots QEMU, makes
 * network namespaces or starts vunet processes stays apart; so does whatever changes the process
 * for good or for a while (src/host/native.ts installs the addon's checksum and copy into src/wire
 * when it loads: test/unit-suite.ts fails a shared file that does so, since every file after it
 * would then test something else than it does alone).
 * @type {ReadonlyArray<readonly [string | RegExp, string]>}
 */
const OWN_PROCESS = [
  [/^test\/e2e-[^/]*\.test\.ts$/, 'boots a guest under QEMU'],
  ['test/guest-boot.test.ts', 'boots a guest under QEMU'],
  ['test/cli.test.ts', 'starts the vunet CLI'],
  ['test/cli-pid-file.test.ts', 'starts the vunet CLI'],
  ['test/install.test.ts', 'packs and installs vunet, building both addons (half a minute of compiling)'],
  ['test/main/privileges.test.ts', 'starts vunet as root, in a network namespace'],
  ['test/main/pcap.test.ts', 'switches its effective user to nobody for a moment'],
  ['test/flip.test.ts', 'a vunet target process and a worker writing into its guest memory'],
  ['test/fuzz.test.ts', 'vunet target processes'],
  ['test/fuzz-regressions.test.ts', 'vunet target processes'],
  ['test/host/native.test.ts', 'network namespaces, an exit handler; loads src/host/native.ts'],
  ['test/host/tcp.test.ts', 'network namespaces; loads src/host/native.ts'],
  ['test/host/confine.test.ts', 'children confining themselves; loads src/host/native.ts'],
  ['test/host/checksum-native.test.ts', 'loads src/host/native.ts'],
  ['test/host/edge-kicks.test.ts', 'loads src/host/native.ts'],
  ['test/virtio/tcp-coalescer-native.test.ts', 'loads src/host/native.ts (the addon joins runs)'],
  ['test/nat/tcp-nat-host.test.ts', 'loads src/host/native.ts (real host sockets)'],
  ['test/runtime.test.ts', 'loads src/host/native.ts (the runtime on real host sockets)'],
  ['test/runtime-two-guests.test.ts', 'loads src/host/native.ts (the runtime on real host sockets)'],
  ['test/runtime-coalesce.test.ts', 'loads src/host/native.ts (the runtime on real host sockets)'],
  ['test/sim-library.test.ts', 'loads src/host/native.ts (the runtime on real host sockets)'],
  ['test/lint.test.ts', 'runs ESLint and Prettier over the tree (half a minute): beside the others, not in their way'],
  ['libs/vhost-user-ts/test/native.test.ts', 'V8 flags (--expose-gc), counts every mapping of the process, children killed by signals'],
];

/** Why `file` (a path relative to ROOT, with /) needs its own process, or undefined. */
export function ownProcess(file) {
  for (const [which, why] of OWN_PROCESS) if (typeof which === 'string' ? which === file : which.test(file)) return why;
  return undefined;
}

/** Every test file, relative to ROOT, sorted. */
export function testFiles() {
  return TEST_DIRS.flatMap((dir) =>
    readdirSync(join(ROOT, dir), { recursive: true })
      .filter((f) => f.endsWith('.test.ts'))
      .map((f) => `${dir}/${f.split('\\').join('/')}`),
  ).sort();
}

/** The files test/unit-suite.ts runs. */
export function sharedFiles() {
  return testFiles().filter((f) => ownProcess(f) === undefined);
}
