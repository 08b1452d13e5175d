// Replays every input the fuzzer saved (test/fuzz/regressions/*.json, format in the README there)
// against a fresh vunet target, and checks the target survives it and what the finding was about
// no longer happens: a crash or hang leaves it alive and answering, a long batch stays under
// 50 ms, an internal error or server exception is not counted again, a guest is still served.
import { basename } from 'node:path';
import t from 'tap';
import { regressionFiles, replayFile } from './support/fuzz/replay.js';

const files = regressionFiles();
if (files.length === 0) t.pass('no saved regressions');

for (const file of files) {
  t.test(basename(file), async (t) => {
    const r = await replayFile(file);
    t.comment(`${r.saved.kind} found in ${r.saved.mode} mode (seed ${r.saved.seed}, iteration ${r.saved.iteration}): ${r.saved.detail}`);
    t.ok(r.alive, `the target survives (${r.exit})${r.alive || !r.stack ? '' : `\n${r.stack}`}`);
    if (!r.alive) return;
    t.ok(r.completed, 'every batch came back');
    t.same(r.violations, [], 'the used rings hold only heads the device was given, each once');
    t.equal(r.longBatches, 0, `no batch over 50 ms (max ${r.maxBatchMs} ms)`);
    t.equal(r.internalErrors, 0, `no internal error${r.internalErrors !== 0 ? ` (last: ${r.lastInternalError})` : ''}`);
    t.equal(r.serverExceptions, 0, 'no exception in the vhost-user server beyond protocol errors');
    t.ok(r.served, 'a well-behaved guest is served afterwards');
  });
}
