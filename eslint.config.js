// ESLint: typescript-eslint's type-checked rules over the whole tree (src, test, scripts and the
// vhost-user-ts library), with strict-boolean-expressions. Formatting is Prettier's (.prettierrc).
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/build/**', '**/node_modules/**', 'vm-images/out/**', '**/*.js', '**/*.mjs', '**/*.cjs', '**/*.d.mts'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      // A number, a string or a nullable string is never a condition: say what is meant (!== 0,
      // !== '', !== undefined). Optional booleans and objects may be (their absence is false).
      // A parameter or variable named _x is unused on purpose (an interface's shape).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // A variable that closures read before its one assignment stays `let`.
      'prefer-const': ['error', { ignoreReadBeforeAssign: true }],
      '@typescript-eslint/strict-boolean-expressions': [
        'error',
        { allowNumber: false, allowString: false, allowNullableObject: true, allowNullableBoolean: true },
      ],
    },
  },
  {
    // tap's idiom: `t.test(name, async (t) => ...)` returns a promise tap itself awaits, and a
    // subtest is an async function whether or not it awaits anything.
    files: ['test/**/*.ts', 'libs/vhost-user-ts/test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  {
    // Tests and scripts: text (a child's output, an option, a stack) may stand as a condition.
    // Numbers still may not.
    files: ['test/**/*.ts', 'libs/vhost-user-ts/test/**/*.ts', 'scripts/**/*.ts'],
    rules: {
      '@typescript-eslint/strict-boolean-expressions': [
        'error',
        { allowNumber: false, allowString: true, allowNullableString: true, allowAny: true, allowNullableObject: true, allowNullableBoolean: true },
      ],
    },
  },
  {
    // The fuzzers build vhost-user messages with raw request numbers on purpose.
    files: ['test/support/fuzz/**/*.ts'],
    rules: { '@typescript-eslint/no-unsafe-enum-comparison': 'off' },
  },
);
