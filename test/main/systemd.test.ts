// The systemd units shipped in contrib/systemd pass `systemd-analyze verify` (with ExecStart
// pointed at this checkout); socket activation itself is tested in test/cli.test.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const analyze = spawnSync('which', ['systemd-analyze'], { encoding: 'utf8' }).stdout.trim();

t.test('contrib/systemd: vunet.socket and vunet.service verify', { skip: analyze === '' ? 'systemd-analyze is not installed' : false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-units-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const service = readFileSync(join(ROOT, 'contrib/systemd/vunet.service'), 'utf8');
  t.match(service, /^ExecStart=\/usr\/local\/bin\/vunet /m, 'the service runs the installed vunet');
  writeFileSync(join(dir, 'vunet.service'), service.replace('/usr/local/bin/vunet', `${process.execPath} ${join(ROOT, 'bin/vunet.js')}`));
  copyFileSync(join(ROOT, 'contrib/systemd/vunet.socket'), join(dir, 'vunet.socket'));
  let out = '';
  try {
    out = execFileSync(analyze, ['verify', join(dir, 'vunet.socket'), join(dir, 'vunet.service')], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    t.fail(`systemd-analyze verify: ${String((err as { stderr?: string }).stderr ?? err)}`);
  }
  t.equal(out.trim(), '', 'no complaint');
});
