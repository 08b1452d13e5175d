// The map in ARCHITECTURE.md against the code: every folder of src/ is in its table, each folder
// imports only what the table's "imports" column allows, neither folders nor files form a cycle,
// and only host/ and main/ reach Node (node:*) or the npm packages of the process side.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SRC = join(ROOT, 'src');

/** What each part of src/ may import: other parts, 'node:*', or package names. */
const ALLOWED: Record<string, readonly string[]> = {
  wire: [],
  iface: ['wire'],
  dhcp: ['wire', 'iface'],
  ra: ['wire', 'iface'],
  tcp: ['wire', 'iface'],
  nat: ['wire', 'iface', 'tcp'],
  virtio: ['wire', 'iface', 'vhost-user-ts'],
  sim: ['wire', 'iface', 'tcp', 'nat', 'ipaddr.js', 'yaml'],
  host: ['wire', 'iface', 'nat', 'node:*'],
  main: ['wire', 'iface', 'dhcp', 'ra', 'tcp', 'nat', 'sim', 'virtio', 'host', 'node:*', 'vhost-user-ts', 'commander', 'pino', 'pino-pretty', 'ipaddr.js'],
  cli: ['main', 'wire', 'vhost-user-ts'],
};

/** The part of src/ a file belongs to: its top folder, or its name for a file at the top. */
function partOf(file: string): string {
  const rel = relative(SRC, file);
  return rel.includes('/') ? rel.split('/')[0]! : rel.replace(/\.ts$/, '');
}

/** Every import and re-export of every source file: (part, file, what it names). */
function imports(): { from: string; file: string; to: string }[] {
  const out: { from: string; file: string; to: string }[] = [];
  for (const f of readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts')) continue;
    const file = join(SRC, f);
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(/^(?:import|export)\b[^;]*?\bfrom '([^']+)';/gms)) {
      const spec = m[1]!;
      let to: string;
      if (spec.startsWith('.')) to = partOf(resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
      else if (spec.startsWith('node:')) to = 'node:*';
      else to = spec.split('/')[0]!.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!;
      out.push({ from: partOf(file), file: relative(ROOT, file), to });
    }
  }
  return out;
}

/** The import cycles of a graph (depth first), each written with `name`. */
function cycles(graph: ReadonlyMap<string, Iterable<string>>, name: (node: string) => string): string[] {
  const state = new Map<string, 'visiting' | 'done'>();
  const found: string[] = [];
  const visit = (n: string, path: string[]): void => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'visiting') {
      found.push([...path.slice(path.indexOf(n)), n].map(name).join(' → '));
      return;
    }
    state.set(n, 'visiting');
    for (const m of graph.get(n) ?? []) visit(m, [...path, n]);
    state.set(n, 'done');
  };
  for (const n of graph.keys()) visit(n, []);
  return found;
}

t.test('each part of src/ imports only what ARCHITECTURE.md allows it', async (t) => {
  const all = imports();
  t.ok(all.length > 100, 'the imports were read');
  const bad = all.filter((i) => i.to !== i.from && !(ALLOWED[i.from] ?? []).includes(i.to)).map((i) => `${i.file} imports ${i.to}`);
  t.same(bad, [], 'no import outside the rules');
  const node = [...new Set(all.filter((i) => i.to === 'node:*').map((i) => i.from))].sort();
  t.same(node, ['host', 'main'], 'only host/ and main/ import node:*');
});

t.test('the parts of src/ form no cycle', async (t) => {
  const graph = new Map<string, Set<string>>();
  for (const i of imports()) {
    if (i.to === i.from || !(i.to in ALLOWED)) continue;
    if (!graph.has(i.from)) graph.set(i.from, new Set());
    graph.get(i.from)!.add(i.to);
  }
  t.same(
    cycles(graph, (n) => n),
    [],
  );
});

t.test('no source file imports itself back through others (type imports included)', async (t) => {
  const graph = new Map<string, string[]>();
  for (const f of readdirSync(SRC, { recursive: true, encoding: 'utf8' })) {
    if (!f.endsWith('.ts')) continue;
    const file = join(SRC, f);
    const deps: string[] = [];
    for (const m of readFileSync(file, 'utf8').matchAll(/^(?:import|export)\b[^;]*?\bfrom '(\.[^']+)';/gms))
      deps.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    graph.set(file, deps);
  }
  t.ok(graph.size > 50, 'the files were read');
  t.same(
    cycles(graph, (x) => relative(SRC, x)),
    [],
  );
});

t.test("ARCHITECTURE.md's folder table names every part of src/, and no part that is gone", async (t) => {
  const doc = readFileSync(join(ROOT, 'ARCHITECTURE.md'), 'utf8');
  const named = new Set<string>();
  for (const row of doc.split('\n').filter((l) => l.startsWith('| `'))) {
    const first = row.split('|')[1]!;
    for (const m of first.matchAll(/`src\/([a-z-]+)(?:\/|\.ts)`/g)) named.add(m[1]!);
  }
  const parts = new Set(readdirSync(SRC).map((f) => f.replace(/\.ts$/, '')));
  t.same([...parts].filter((p) => !named.has(p)).sort(), [], 'every part is in the table');
  t.same([...named].filter((p) => !parts.has(p)).sort(), [], 'every row names a part that exists');
  t.same([...parts].filter((p) => !(p in ALLOWED)).sort(), [], 'and every part has import rules here');
});
