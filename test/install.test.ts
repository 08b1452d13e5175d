// vunet runs outside its checkout: `npm pack` gives a tarball holding the compiled JavaScript, the
// addon sources and every runtime dependency (vhost-user-ts, a workspace package that no registry
// has, among them: package.json's bundleDependencies), and `npm install -g` of that tarball, with
// no network (--offline), builds both addons and gives a `vunet` that works from anywhere.
import { spawn, spawnSync } from 'node:child_process';
import type { SpawnSyncReturns } from 'node:child_process';
import { lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TestFrontend } from 'vhost-user-ts/testing';
import { until } from './support/wait.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** The environment without the npm_* variables of an `npm test` run (its prefix, workspace...). */
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));

function npm(cwd: string, ...args: string[]): SpawnSyncReturns<string> {
  return spawnSync('npm', [...args, '--no-audit', '--no-fund'], { cwd, env, encoding: 'utf8', timeout: 300_000 });
}

t.test('npm pack, then npm install -g of the tarball offline: a vunet that runs outside the checkout', { timeout: 400_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vunet-install-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));

  // dist/ is built already (npm test runs tsc -b first): no prepare run here.
  const pack = npm(ROOT, 'pack', '--ignore-scripts', '--pack-destination', dir);
  if (!t.equal(pack.status, 0, 'npm pack')) t.comment(pack.stderr.slice(-2000));
  const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  if (tarball === undefined) return t.fail('no tarball');
  const list = spawnSync('tar', ['tzf', join(dir, tarball)], { encoding: 'utf8' }).stdout.split('\n');
  for (const f of [
    'package/bin/vunet.js',
    'package/dist/src/cli.js',
    'package/binding.gyp',
    'package/node_modules/vhost-user-ts/dist/src/index.js',
    'package/node_modules/pino/package.json',
    'package/node_modules/yaml/package.json',
    'package/examples/topologies/three-hops.yaml',
  ]) {
    t.ok(list.includes(f), `the tarball holds ${f}`);
  }
  t.notOk(
    list.some((f) => /^package\/(test|vm-images|scripts|dist\/test|build)\//.test(f) || f.endsWith('.node')),
    'and no tests, guest image, scripts or built addons',
  );

  const prefix = join(dir, 'prefix');
  const work = join(dir, 'elsewhere'); // not the checkout, not under it
  spawnSync('mkdir', ['-p', work]);
  const install = npm(work, 'install', '-g', '--offline', '--prefix', prefix, join(dir, tarball));
  if (!t.equal(install.status, 0, 'npm install -g --offline')) t.comment(install.stderr.slice(-2000));
  const pkg = join(prefix, 'lib', 'node_modules', 'vunet');
  t.notOk(lstatSync(pkg).isSymbolicLink(), 'installed as files, not a link to the checkout');
  t.notOk(lstatSync(join(pkg, 'node_modules', 'vhost-user-ts')).isSymbolicLink(), 'vhost-user-ts likewise');
  for (const addon of ['build/Release/vunet_hostnet.node', 'node_modules/vhost-user-ts/build/Release/vhost_user_native.node']) {
    t.ok(lstatSync(join(pkg, addon)).isFile(), `${addon} built at install`);
  }

  const vunet = join(prefix, 'bin', 'vunet');
  const run = (...args: string[]) => spawnSync(vunet, args, { cwd: work, env, encoding: 'utf8', timeout: 20_000 });
  const version = run('--version');
  t.equal(version.status, 0);
  t.equal(version.stdout, `${VERSION}\n`, 'vunet --version');
  const caps = run('--print-capabilities');
  t.equal(caps.status, 0);
  t.same(JSON.parse(caps.stdout), { type: 'net' }, 'vunet --print-capabilities');

  // And it serves: both addons load (the socket, guest memory, host sockets).
  const sock = join(dir, 'vunet.sock');
  // (With the packaged example topology: the YAML parser is bundled too.)
  const topology = join(pkg, 'examples', 'topologies', 'three-hops.yaml');
  const child = spawn(vunet, ['--socket', sock, '--log-level', 'error', '--topology', topology], { cwd: work, env, stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  await until(() => stderr.includes('Start QEMU with'), `the installed vunet did not start: ${stderr}`, 20_000);
  const fe = TestFrontend.connect(sock);
  t.ok((await fe.getFeatures()) > 0n, 'the installed vunet serves its socket');
  fe.close();
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and stops cleanly');
});
