import { defineConfig } from 'vitest/config';

// CI sets VITEST_JSON to collect a JSON report beside the usual output.
const json = process.env.VITEST_JSON;

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Keycloak and Jaeger (each started once, only when a file that needs it runs) and the Go test programs.
    globalSetup: ['./test/helpers/stack-setup.ts', './test/helpers/jaeger-setup.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
    // Two cores: real servers and child processes per test file.
    maxWorkers: 2,
    // The skip reporter ends the run with one line naming every absent tool (test/helpers/tools.ts).
    reporters: json ? ['default', './test/helpers/skip-reporter.ts', 'json'] : ['default', './test/helpers/skip-reporter.ts'],
    ...(json ? { outputFile: { json } } : {}),
  },
});
