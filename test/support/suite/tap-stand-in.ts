// What `import t from 'tap'` gives a test file that test/unit-suite.ts imports (see
// tap-hooks.mjs): not tap's root but the subtest the suite opened for that file, so the file's
// tests nest under its path and its top-level teardowns run when it is done, as they would in a
// process of its own. The binding is live: a file sees the subtest of whichever file is running
// (files run one after the other).
import type { Test } from 'tap';

let current: Test | undefined;

/** Makes `t` the root of the file about to be imported. */
export function runningFile(t: Test): void {
  current = t;
}

export { current as default };
