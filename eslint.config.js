// ESLint for the TypeScript and JavaScript sources; Prettier owns formatting (.prettierrc.json).
// typescript-eslint reads the TypeScript 6 API (the `typescript` package is the @typescript/typescript6
// alias: TypeScript 7, which `tsc` runs, has no JS API yet), so type-aware rules work.
import js from '@eslint/js';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {ignores: ['dist/', 'native/', 'bench/.work/', 'bench/results/', '.rbee-test/']},
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: {globals: globals.node},
    rules: {
      eqeqeq: ['error', 'always', {null: 'ignore'}],
      // A closure defined before the single assignment may run first (a callback fired synchronously): `let` is right there.
      'prefer-const': ['error', {ignoreReadBeforeAssign: true}],
      '@typescript-eslint/no-unused-vars': [
        'error',
        {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true},
      ],
    },
  },
  {
    files: ['**/*.ts', '**/*.tsx'],
    languageOptions: {parserOptions: {project: ['./tsconfig.test.json', './adapters/tsconfig.json'], tsconfigRootDir: import.meta.dirname}},
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
    },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: {
      // Tests and benchmarks read HTTP answers as loose JSON and assert their shape at run time.
      '@typescript-eslint/no-explicit-any': 'off',
    },
  },
);
