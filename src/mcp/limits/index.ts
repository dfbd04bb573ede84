// Rate limits: the guard, built only when some limit is configured, so a sidecar
// without limits pays nothing.

import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../observability/metrics.js';
import { LimitsGuard } from './guard.js';
import { anyLimit, rulesFromConfig, withLimitsSection } from './rules.js';

export { LimitsGuard } from './guard.js';
export { LimitsFileError, anyLimit, withLimitsSection, rulesFromConfig, type LimitRules } from './rules.js';

/** The start-up line's `rateLimits` (the limits in force, the file's over the variables) and `redis`. */
export function limitsSummary(config: Config, guard: LimitsGuard | undefined): Record<string, unknown> {
  if (guard !== undefined) return guard.summary();
  return {
    rateLimits: { userPerMinute: 0, toolPerMinute: 0, concurrentToolCalls: 0, tools: {}, counting: 'off' },
    ...(config.redisUrl !== undefined
      ? {
          redis: {
            url: config.redisUrl.toString(),
            mode: config.redisUrl.mode,
            state: 'unused',
            reason: 'no rate limit is set, so no connection',
          },
        }
      : {}),
  };
}

/** `section`: the policy file's `limits:` value as parsed, if any. Throws LimitsFileError. */
export function createLimits(config: Config, metrics: Metrics, logger: Logger, section?: unknown): LimitsGuard | undefined {
  const rules = withLimitsSection(rulesFromConfig(config), section);
  return anyLimit(rules) ? new LimitsGuard(rules, config, metrics, logger) : undefined;
}
