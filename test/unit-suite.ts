// Runs the test files that share one process (scripts/test-plan.mjs says which), one after the
// other, each as a subtest named by its path: `npm test` hands tap this file instead of each of
// them (a process per file cost ~2 s of CPU each, more than most files take). Each file's
// `import t from 'tap'` gets the subtest of that file (support/suite/tap-hooks.mjs), so its
// tests, teardowns, counts and failures are what they are when it runs alone, as
// `npm test -- test/wire/arp.test.ts` still does. VUNET_SUITE_FILES=a,b,… runs those files only
// (to look for an interaction between two).
//
// A shared file must leave the process as it found it. The state files are known to touch is
// checked between files: the addon helpers src/wire uses once src/host/native.ts has loaded
// (useNativeCopy, useNativeSum, useNativeSumFrames, useNativeCopySum, useNativeCopyJob,
// useNativeJoinRun). (Process listeners cannot be: tap adds and removes its own as tests run.)
import { register } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import t from 'tap';
import { ROOT, sharedFiles } from '../scripts/test-plan.mjs';
import { useNativeCopy } from '../src/wire/bytes.js';
import { useNativeCopyJob, useNativeCopySum, useNativeSum, useNativeSumFrames } from '../src/wire/checksum.js';
import { useNativeJoinRun } from '../src/wire/join-run.js';
import { runningFile } from './support/suite/tap-stand-in.js';

register('./support/suite/tap-hooks.mjs', import.meta.url);

/** The addon helpers installed in src/wire; none in a fresh process that did not load the addon. */
function nativeHelpers(): string[] {
  const installed: string[] = [];
  const copy = useNativeCopy(undefined);
  if (copy !== undefined) installed.push('useNativeCopy');
  const sum = useNativeSum(undefined);
  if (sum !== undefined) installed.push('useNativeSum');
  const frames = useNativeSumFrames(undefined);
  if (frames !== undefined) installed.push('useNativeSumFrames');
  const copySum = useNativeCopySum(undefined);
  if (copySum !== undefined) installed.push('useNativeCopySum');
  const copyJob = useNativeCopyJob(undefined);
  if (copyJob !== undefined) installed.push('useNativeCopyJob');
  const joinRun = useNativeJoinRun(undefined);
  if (joinRun !== undefined) installed.push('useNativeJoinRun');
  return installed; // and all six removed, as in a fresh process
}

const only = process.env.VUNET_SUITE_FILES;
const files = only ? only.split(',').filter((f) => f !== '') : sharedFiles();
let previous = 'test/unit-suite.ts';

for (const file of files) {
  t.test(file, async (t) => {
    // What the file before left behind shows here, as a failure naming it. (Not sooner: its
    // subtests start as it registers them, and end after its import.)
    const left = nativeHelpers();
    if (left.length > 0) {
      t.fail(
        `${previous} left ${left.join(', ')} installed: a test that swaps one must put back what was there; ` +
          'a file that loads src/host/native.ts (which installs them) needs a process of its own (scripts/test-plan.mjs)',
      );
    }
    previous = file;
    runningFile(t);
    await import(pathToFileURL(join(ROOT, file)).href);
  });
}
