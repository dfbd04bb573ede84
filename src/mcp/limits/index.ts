// Rate limits: the guard, built only when some limit is configured, so a sidecar
// without limits pays nothing.

import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../observability/metrics.js';
import { LimitsGuard } from './guard.js';
import { anyLimit, rulesFromConfig, withLimitsSection } from './rules.js';
import type { LimitsRedis } from './redis.js';

export { LimitsGuard } from './guard.js';
export { closeRedis, connectRedis, redisReady, type LimitsRedis } from './redis.js';
export { LimitsFileError, anyLimit, withLimitsSection, rulesFromConfig, type LimitRules } from './rules.js';

/**
 * `section`: the policy file's `limits:` value as parsed, if any; `redis`: the sidecar's shared
 * connection, taken only when a limit needs it (by default the guard opens its own). Throws LimitsFileError.
 */
export function createLimits(
  config: Config,
  metrics: Metrics,
  logger: Logger,
  section?: unknown,
  redis?: () => LimitsRedis,
): LimitsGuard | undefined {
  const rules = withLimitsSection(rulesFromConfig(config), section);
  return anyLimit(rules) ? new LimitsGuard(rules, config, metrics, logger, redis) : undefined;
}
