import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { MINIMAL_ENV, problems } from '../helpers/config.js';
import { LimitsFileError, rulesFromConfig, withLimitsSection } from '../../src/mcp/limits/index.js';

describe('rate limit variables', () => {
  it('parses limits, the failure mode and a Redis URL whose password never shows when logged', () => {
    const config = loadConfig({
      ...MINIMAL_ENV,
      RATE_LIMIT_USER_PER_MINUTE: '600',
      RATE_LIMIT_TOOL_PER_MINUTE: '60',
      RATE_LIMIT_CONCURRENT_TOOL_CALLS: '4',
      RATE_LIMIT_ON_REDIS_ERROR: 'DENY',
      REDIS_URL: 'rediss://:s3cret@redis.example:6380/2',
      REDIS_TIMEOUT_MS: '100',
    });
    expect(config).toMatchObject({
      rateLimitUserPerMinute: 600,
      rateLimitToolPerMinute: 60,
      rateLimitConcurrentToolCalls: 4,
      rateLimitOnRedisError: 'deny',
      redisTimeoutMs: 100,
    });
    expect(config.redisUrl).toMatchObject({ mode: 'single', tls: true, nodes: [{ host: 'redis.example', port: 6380 }], db: 2 });
    expect(config.redisUrl!.password).toBe('s3cret');
    expect(JSON.stringify(config)).not.toContain('s3cret');
    expect(JSON.stringify(config)).toContain('"redisUrl":"rediss://:***@redis.example:6380/2"');
    expect(String(config.redisUrl)).not.toContain('s3cret');
  });

  it('lists every bad rate limit variable at once, never echoing a Redis URL', () => {
    const found = problems({
      RATE_LIMIT_USER_PER_MINUTE: '-1',
      RATE_LIMIT_TOOL_PER_MINUTE: 'many',
      RATE_LIMIT_CONCURRENT_TOOL_CALLS: '1.5',
      RATE_LIMIT_ON_REDIS_ERROR: 'maybe',
      REDIS_URL: 'http://:s3cret@redis:6379',
      REDIS_TIMEOUT_MS: '0',
    });
    expect(found).toEqual(
      [
        'RATE_LIMIT_ON_REDIS_ERROR="maybe": expected one of allow, deny',
        'REDIS_URL: expected redis://[:password@]host:port[/db], redis+sentinel://[:password@]host:26379[,host:26379…]/master-name[/db] or redis+cluster://[:password@]host:port[,host:port…] (rediss… for TLS) (value not shown: it may hold a password)',
        'RATE_LIMIT_USER_PER_MINUTE="-1": expected a whole number from 0 to 1000000',
        'RATE_LIMIT_TOOL_PER_MINUTE="many": expected a whole number from 0 to 1000000',
        'RATE_LIMIT_CONCURRENT_TOOL_CALLS="1.5": expected a whole number from 0 to 100000',
        'REDIS_TIMEOUT_MS="0": expected a whole number from 10 to 60000',
      ].sort((a, b) => found.indexOf(a) - found.indexOf(b)),
    );
    expect(found).toHaveLength(6);
    expect(found.join('\n')).not.toContain('s3cret');
    expect(problems({ REDIS_URL: 'redis://redis:6379/cache' })).toEqual([
      'REDIS_URL: the path "/cache" is not a database number such as /0',
    ]);
  });
});

describe('the policy file limits: section', () => {
  const base = rulesFromConfig(loadConfig({ ...MINIMAL_ENV, RATE_LIMIT_USER_PER_MINUTE: '100', RATE_LIMIT_TOOL_PER_MINUTE: '10' }));

  it('overrides the variables key by key and sets limits per tool', () => {
    const rules = withLimitsSection(base, {
      toolPerMinute: 20,
      concurrentToolCalls: 2,
      tools: { query: { perMinute: 5 }, ping_db: { perMinute: 0 } },
    });
    expect(rules.userPerMinute).toBe(100);
    expect(rules.toolPerMinute).toBe(20);
    expect(rules.concurrentToolCalls).toBe(2);
    expect([...rules.tools]).toEqual([
      ['query', 5],
      ['ping_db', 0],
    ]);
    expect(withLimitsSection(base, undefined)).toBe(base);
  });

  it('names every problem of the section at once', () => {
    const error = (() => {
      try {
        withLimitsSection(base, { userPerMinute: 'lots', perHour: 5, tools: { query: { perMinute: -1 }, drop: 3, list: {} } });
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(LimitsFileError);
    expect((error as LimitsFileError).problems).toEqual([
      'unknown key "perHour": expected one of userPerMinute, toolPerMinute, concurrentToolCalls, tools',
      'tools.query.perMinute: expected a whole number from 0 to 1000000 (0: no limit), got -1',
      'tools.drop: expected { perMinute: N }',
      'tools.list: perMinute is required',
      'userPerMinute: expected a whole number from 0 to 1000000 (0: no limit), got "lots"',
    ]);
    expect(() => withLimitsSection(base, [1])).toThrow(LimitsFileError);
  });
});
