// ESLint: typescript-eslint's type-checked rules over the TypeScript of the whole tree (src, test,
// scripts and the vhost-user-ts library), with strict-boolean-expressions; ESLint's and
// typescript-eslint's recommended rules over its JavaScript (bin/vunet.js, scripts/*.mjs, the
// test helpers run as child processes, this file), which no tsconfig covers, so without type
// information. Formatting is Prettier's (.prettierrc).
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/build/**', '**/node_modules/**', 'vm-images/out/**', '**/*.d.mts'] },
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
  {
    // JavaScript: no type information (no tsconfig includes it), so the recommended rules of
    // ESLint and typescript-eslint without the type-checked ones. It runs on Node.
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [js.configs.recommended, tseslint.configs.disableTypeChecked],
    languageOptions: { globals: globals.node },
    // Unused names are typescript-eslint's rule's, with the options above (ESLint's would say it twice).
    rules: { 'no-unused-vars': 'off' },
  },
);
