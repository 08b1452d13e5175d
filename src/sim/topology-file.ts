// A topology from YAML text (`--topology FILE`): parsed by the `yaml` package, checked by
// buildTopology, every error reported with the line it is about.
import { LineCounter, parseDocument } from 'yaml';
import type { ReadBodyFile, Topology } from './topology.js';
import { TopologyError, buildTopology } from './topology.js';

/** A topology file that cannot be used: `line` (1-based) is where the problem is, when known. */
export class TopologyFileError extends Error {
  constructor(
    message: string,
    readonly line: number | undefined,
  ) {
    super(message);
    this.name = 'TopologyFileError';
  }
}

/** The file's own keys are written kebab-case or camelCase alike (icmp-ratelimit, icmpRatelimit). */
function camel(key: string): string {
  return key.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
}

function camelKeys(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(camelKeys);
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[camel(k)] = camelKeys(x);
  return out;
}

/** Parses and checks a topology; `name` (the file's name) starts each error message. */
export function parseTopology(text: string, name = 'topology', readFile?: ReadBodyFile): Topology {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: false });
  const first = doc.errors[0];
  if (first) {
    const line = lines.linePos(first.pos[0]).line;
    throw new TopologyFileError(`${name}:${line}: ${first.message.split('\n')[0]!}`, line);
  }
  try {
    return buildTopology(camelKeys(doc.toJS({ maxAliasCount: 100 })), readFile ? { readFile } : {});
  } catch (err) {
    if (!(err instanceof TopologyError)) throw err;
    const line = lineOf(doc, lines, err.path);
    throw new TopologyFileError(`${name}:${line ?? '?'}: ${err.message}`, line);
  }
}

/** The line of the node at `path`, or of its nearest ancestor the file has (keys written
 *  kebab-case are tried as such). */
function lineOf(doc: ReturnType<typeof parseDocument>, lines: LineCounter, path: readonly (string | number)[]): number | undefined {
  for (let n = path.length; n >= 0; n--) {
    const p = path.slice(0, n);
    for (const variant of [p, p.map((k) => (typeof k === 'string' ? k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`) : k))]) {
      const node = doc.getIn(variant, true) as { range?: [number, number, number] } | undefined;
      if (node?.range) return lines.linePos(node.range[0]).line;
      // A key whose value is missing: the pair's key.
    }
  }
  return undefined;
}
