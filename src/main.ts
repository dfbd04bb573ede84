#!/usr/bin/env node
// Process entry: config → app → listen → graceful shutdown.

import { ConfigError, helpText, loadConfig } from './config.js';
import { buildApp } from './app.js';

if (process.argv.includes('--help') || process.argv.includes('-h')) {
  process.stdout.write(`${helpText()}\n`);
  process.exit(0);
}

let config;
try {
  config = loadConfig(process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`mcp-auth-sidecar: ${error.message}\nRun with --help for every variable.\n`);
  process.exit(1);
}

const app = await buildApp(config);
const { proxyUrl, adminUrl } = await app.listen();
app.logger.info({ config, proxyUrl, adminUrl }, 'mcp-auth-sidecar started');
app.logger.flush();

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) {
      app.logger.warn({ signal }, 'second signal: exiting without waiting');
      process.exit(1);
    }
    stopping = true;
    app.logger.info({ signal, graceSeconds: config.shutdownGraceSeconds }, 'draining');
    app.logger.flush();
    app.close().then(
      () => {
        app.logger.info('stopped');
        app.logger.flush(() => process.exit(0));
      },
      (error: unknown) => {
        app.logger.error({ err: error }, 'shutdown failed');
        app.logger.flush(() => process.exit(1));
      },
    );
  });
}
