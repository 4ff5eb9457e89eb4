// Lint: typescript-eslint recommended rules, plus the few that keep the core honest.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'build/**', 'data/**', 'wire/generated/**', 'test-artifacts/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-explicit-any': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      eqeqeq: ['error', 'always'],
    },
  },
  {
    // The dax layer's state is private: server code reads it through Dax.stats() and the
    // other copies, never through the tests' white-box accessor.
    files: ['server/**/*.ts'],
    rules: {
      'no-restricted-syntax': ['error', {
        selector: "MemberExpression[property.name='contextForTests']",
        message: 'Dax.contextForTests is for tests: use Dax.stats(), spaceStats(), pinsSnapshot(), heldLocks() or inspect().',
      }],
    },
  },
  {
    // The dashboard runs in the browser (served by server/http/dashboard-plugin.ts).
    files: ['server/http/dashboard/*.js'],
    languageOptions: {
      sourceType: 'script',
      globals: { window: 'readonly', document: 'readonly', location: 'readonly', fetch: 'readonly', performance: 'readonly', setTimeout: 'readonly', URLSearchParams: 'readonly' },
    },
  },
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    languageOptions: { globals: { require: 'readonly', module: 'writable', process: 'readonly', console: 'readonly', __dirname: 'readonly' } },
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
);
