// The sidecar as a process: configuration → app → listen → signals → graceful shutdown, and
// every way out. Log lines are written in batches (observability/log.ts), so each exit writes the ones still
// gathered first; a failed start or a crash adds one JSON line naming what to fix, then exit 1.

import type { Logger } from 'pino';
import { ConfigError, loadConfig, type Config } from './config/config.js';
import { buildApp, type App } from './app.js';
import { createLogger } from './observability/log.js';
import { StartupError } from './lib/errors.js';
import { VERSION } from './lib/version.js';

type Env = Record<string, string | undefined>;

export async function serve(env: Env): Promise<void> {
  let config: Readonly<Config>;
  try {
    config = loadConfig(env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`mcp-auth-sidecar: ${error.message}\nRun with --help for every variable.\n`);
    const logger = createLogger('info');
    logger.fatal({ cause: 'configuration', problems: error.problems }, 'invalid configuration');
    return exit(logger, 1);
  }

  const logger = createLogger(config.logLevel);
  process.on('uncaughtException', (error) => fail(logger, error, 'uncaught exception'));
  process.on('unhandledRejection', (error) => fail(logger, error, 'unhandled promise rejection'));

  let app: App;
  let urls: { proxyUrl: string; adminUrl: string };
  try {
    app = await buildApp(config, { logger });
    urls = await app.listen();
  } catch (error) {
    return fail(logger, error, 'start-up failed');
  }
  // Handlers first: whoever reads the line below may signal at once.
  handleSignals(app, logger, config.shutdownGraceSeconds);
  // The RATE_LIMIT_* counts are shown as in force (`rateLimits`: the policy file's over them), not as set.
  const { rateLimitUserPerMinute: _u, rateLimitToolPerMinute: _t, rateLimitConcurrentToolCalls: _c, ...shown } = config;
  logger.info({ version: VERSION, node: process.versions.node, config: shown, ...urls, ...app.summary() }, 'mcp-auth-sidecar started');
  logger.flush();
}

function handleSignals(app: App, logger: Logger, graceSeconds: number): void {
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping) {
        logger.warn({ signal }, 'second signal: exiting without waiting');
        return exit(logger, 1);
      }
      stopping = true;
      logger.info({ signal, graceSeconds }, 'draining');
      logger.flush();
      app.close().then(
        () => {
          logger.info('stopped');
          exit(logger, 0);
        },
        (error: unknown) => fail(logger, error, 'shutdown failed'),
      );
    });
  }
  // Node's default for SIGHUP is to die without draining. There is nothing to reload by signal:
  // configuration is the environment, which a process cannot re-read, and the files that
  // change (TLS certificate, policy) are watched and picked up on their own.
  process.on('SIGHUP', () => {
    logger.info(
      { signal: 'SIGHUP' },
      'SIGHUP ignored: configuration comes from the environment (restart to change it); watched files reload on their own',
    );
    logger.flush();
  });
}

/** One fatal line naming the cause (the variable to change, when it is one), then exit 1. */
function fail(logger: Logger, error: unknown, what: string): void {
  // Even LOG_LEVEL=silent gets the one line saying why the process ends.
  if (!logger.isLevelEnabled('fatal')) logger.level = 'fatal';
  if (error instanceof StartupError) {
    logger.fatal({ cause: error.variable, value: error.value, code: error.code, ...error.fields }, error.message);
  } else {
    logger.fatal({ cause: 'internal', err: error }, what);
  }
  exit(logger, 1);
}

function exit(logger: Logger, code: number): void {
  logger.flush(() => process.exit(code));
}
