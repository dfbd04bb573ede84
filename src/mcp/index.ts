// MCP in the sidecar: the request interceptor the proxy calls, built from the configuration,
// the guards (tool policy, rate limits) and the audit writer.

import type { Logger } from 'pino';
import type { Config } from '../config/config.js';
import type { Metrics } from '../observability/metrics.js';
import type { Interceptor } from '../http/proxy.js';
import type { Guard } from './guard.js';
import { createAuditWriter } from './audit.js';
import { McpContext } from './context.js';
import { createInterceptor } from './intercept.js';

export function createMcpInterceptor(config: Config, metrics: Metrics, logger: Logger, guards: readonly Guard[]): Interceptor {
  const audit = createAuditWriter(logger, config, () => metrics.auditFailures.inc());
  return createInterceptor(new McpContext(config, guards, metrics, audit));
}
