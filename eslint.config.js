// typescript-eslint's type-checked rules over src/, test/, bench/ and demo/; Prettier owns layout.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'bench/out/', '.ci/', 'node_modules/', 'test/go/', '**/*.mjs', 'eslint.config.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      // A Rejection is thrown and rejected on purpose without being an Error: no stack is
      // captured for a bad token, the commonest answer under a flood (lib/errors.ts).
      '@typescript-eslint/only-throw-error': ['error', { allow: [{ from: 'file', name: 'Rejection', path: 'src/lib/errors.ts' }] }],
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      // Fastify and the SDKs take async handlers whether or not they await.
      '@typescript-eslint/require-await': 'off',
      // Reports casts that tsc needs here (pino and Fastify's logger types); its fix breaks the build.
      '@typescript-eslint/no-unnecessary-type-assertion': 'off',
      'no-fallthrough': ['error', { allowEmptyCase: true }],
    },
  },
  {
    // Tests and benches read JSON bodies, logs and manifests whose shape the assertions check.
    files: ['test/**', 'bench/**', 'demo/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      'no-control-regex': 'off',
    },
  },
);
