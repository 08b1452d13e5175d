// Helpers shared by the wire tests: hex literals, a bounds-checking buffer proxy, every-prefix
// truncation runs, and fast-check properties counted as one assertion.
import fc from 'fast-check';
import { fromHex } from '../../src/wire/index.js';

export function hex(s: string): Uint8Array {
  const b = fromHex(s);
  if (!b) throw new Error('bad hex');
  return b;
}

/** A view of `b` that throws on any read outside [0, length): proves getters stay in bounds. */
export function strict(b: Uint8Array): Uint8Array {
  return new Proxy(b, {
    get(target, prop) {
      if (typeof prop === 'string' && /^-?\d+$/.test(prop)) {
        const i = Number(prop);
        if (i < 0 || i >= target.length) throw new RangeError(`read at ${i} of ${target.length}`);
        return target[i];
      }
      const v: unknown = Reflect.get(target, prop, target);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** Runs a fast-check property and records it as one passing assertion. */
export function property(t: { pass(m: string): unknown }, name: string, p: Parameters<typeof fc.assert>[0], runs = 200): void {
  fc.assert(p, { numRuns: runs });
  t.pass(name);
}

/** Calls `f` with every proper prefix of `pkt`, each in its own bounds-checked buffer. */
export function everyPrefix(pkt: Uint8Array, f: (b: Uint8Array, len: number) => void): void {
  for (let len = 0; len < pkt.length; len++) f(strict(pkt.slice(0, len)), len);
}
