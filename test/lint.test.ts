// The lint and format check of the whole tree, as part of `npm test`: ESLint with typescript-eslint's
// type-checked rules on the TypeScript and the recommended rules on the JavaScript (eslint.config.js)
// and Prettier's check (.prettierrc.json, .prettierignore).
// A failure names the files and the first problems.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../', import.meta.url));

function run(cmd: string, args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    child.on('close', (code) => resolve({ code, out }));
  });
}

const bin = (name: string): string => fileURLToPath(new URL(`../node_modules/.bin/${name}`, import.meta.url));

t.test('ESLint finds nothing in the tree', async (t) => {
  const r = await run(bin('eslint'), ['--max-warnings', '0', '.']);
  t.equal(r.code, 0, r.code === 0 ? 'clean' : r.out.split('\n').slice(0, 40).join('\n'));
});

t.test('the tree is formatted as Prettier formats it', async (t) => {
  const r = await run(bin('prettier'), ['--check', '.']);
  t.equal(r.code, 0, r.code === 0 ? 'formatted' : `run \`npx prettier --write .\`:\n${r.out.split('\n').slice(0, 30).join('\n')}`);
});
