// Module hooks of test/unit-suite.ts: a test file's `import ... from 'tap'` resolves to
// tap-stand-in.ts (the subtest of that file) instead of tap's root. Other imports are left alone.
const STAND_IN = new URL('./tap-stand-in.ts', import.meta.url).href;

export async function resolve(specifier, context, nextResolve) {
  if (specifier === 'tap' && context.parentURL?.endsWith('.test.ts')) return { url: STAND_IN, shortCircuit: true };
  return nextResolve(specifier, context);
}
