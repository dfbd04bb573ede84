// Which limits apply: the RATE_LIMIT_* variables, and the policy file's `limits:` section
// (the policy loader hands it over as parsed YAML; its shape is checked here). A key set in the
// file wins over the variable of the same meaning.

import type { Config } from '../../config/config.js';

export interface LimitRules {
  /** MCP requests per user a minute; 0: none. */
  readonly userPerMinute: number;
  /** tools/call per user and tool a minute, for tools not named in `tools`; 0: none. */
  readonly toolPerMinute: number;
  /** Per user and tool a minute for the tools named (0: that tool unlimited). */
  readonly tools: ReadonlyMap<string, number>;
  /** tools/call in flight per user; 0: none. */
  readonly concurrentToolCalls: number;
}

const KEYS = ['userPerMinute', 'toolPerMinute', 'concurrentToolCalls', 'tools'] as const;
const MAX = 1_000_000;

export class LimitsFileError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`policy file limits: ${problems.join('; ')}`);
    this.name = 'LimitsFileError';
  }
}

export function rulesFromConfig(config: Config): LimitRules {
  return {
    userPerMinute: config.rateLimitUserPerMinute,
    toolPerMinute: config.rateLimitToolPerMinute,
    tools: new Map(),
    concurrentToolCalls: config.rateLimitConcurrentToolCalls,
  };
}

/**
 * The `limits:` section over the variables' rules; undefined section: the variables alone.
 * Throws one LimitsFileError naming every problem.
 */
export function withLimitsSection(base: LimitRules, section: unknown): LimitRules {
  if (section === undefined || section === null) return base;
  const problems: string[] = [];
  if (typeof section !== 'object' || Array.isArray(section))
    throw new LimitsFileError(['limits must be a mapping (userPerMinute, toolPerMinute, concurrentToolCalls, tools)']);
  const given = section as Record<string, unknown>;
  for (const key of Object.keys(given)) {
    if (!(KEYS as readonly string[]).includes(key)) problems.push(`unknown key ${JSON.stringify(key)}: expected one of ${KEYS.join(', ')}`);
  }
  const count = (where: string, value: unknown, fallback: number): number => {
    if (value === undefined) return fallback;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX) {
      problems.push(`${where}: expected a whole number from 0 to ${MAX} (0: no limit), got ${JSON.stringify(value)}`);
      return fallback;
    }
    return value;
  };
  const tools = new Map(base.tools);
  if (given.tools !== undefined) {
    if (given.tools === null || typeof given.tools !== 'object' || Array.isArray(given.tools)) {
      problems.push('tools: expected a mapping of tool name to { perMinute: N }');
    } else {
      for (const [name, limit] of Object.entries(given.tools as Record<string, unknown>)) {
        if (limit === null || typeof limit !== 'object' || Array.isArray(limit) || Object.keys(limit).some((k) => k !== 'perMinute')) {
          problems.push(`tools.${name}: expected { perMinute: N }`);
          continue;
        }
        const perMinute = (limit as { perMinute?: unknown }).perMinute;
        if (perMinute === undefined) {
          problems.push(`tools.${name}: perMinute is required`);
          continue;
        }
        tools.set(name, count(`tools.${name}.perMinute`, perMinute, 0));
      }
    }
  }
  const rules: LimitRules = {
    userPerMinute: count('userPerMinute', given.userPerMinute, base.userPerMinute),
    toolPerMinute: count('toolPerMinute', given.toolPerMinute, base.toolPerMinute),
    concurrentToolCalls: count('concurrentToolCalls', given.concurrentToolCalls, base.concurrentToolCalls),
    tools,
  };
  if (problems.length > 0) throw new LimitsFileError(problems);
  return rules;
}

/** Whether any limit is set: none means no guard at all (no cost). */
export function anyLimit(rules: LimitRules): boolean {
  return (
    rules.userPerMinute > 0 || rules.toolPerMinute > 0 || rules.concurrentToolCalls > 0 || [...rules.tools.values()].some((n) => n > 0)
  );
}

/** The start-up line's `rateLimits` and `redis` when no limit is set (the guard says them otherwise). */
export function limitsOffSummary(config: Config): Record<string, unknown> {
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
