// The translation table for what the interop tests cannot provoke on demand (a MOVED storm, a
// Redis loading or out of memory, certificates out of date): errors shaped as ioredis and Node
// report them (message, code), read into the sidecar's words. The real ones (refused, NOAUTH,
// WRONGPASS, READONLY, CLUSTERDOWN, MOVED, TLS, Sentinel mistakes) are in
// test/interop/redis-problems.test.ts, redis-sentinel.test.ts and redis-cluster.test.ts.

import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { redisProblem } from '../../src/mcp/limits/redis-problems.js';

const minimal = { OIDC_ISSUER: 'https://auth.example.com/realms/coder', OIDC_ALLOWED_AZP: 'coder' };
const context = (url: string) => ({ url: loadConfig({ ...minimal, REDIS_URL: url }).redisUrl!, timeoutMs: 250, secrets: ['s3cret'] });
const single = context('redis://:s3cret@cache:6379');
const error = (message: string, fields: Record<string, unknown> = {}) => Object.assign(new Error(message), fields);

describe('Redis problems in the sidecar words', () => {
  it.each([
    ['Too many Cluster redirections. Last error: MOVED 3999 127.0.0.1:7001', {}, 'cluster_redirections', /keeps redirecting/],
    ['CLUSTERDOWN The cluster is down', {}, 'cluster_down', /hash slots have no node/],
    ['LOADING Redis is loading the dataset in memory', {}, 'loading', /loading its data/],
    ["OOM command not allowed when used memory > 'maxmemory'.", {}, 'out_of_memory', /raise maxmemory/],
    ["NOPERM User limits has no permissions to run the 'evalsha' command", {}, 'acl', /allow EVAL, EVALSHA/],
    ['Command timed out', {}, 'command_timeout', /within REDIS_TIMEOUT_MS \(250 ms\)/],
    ['connect ETIMEDOUT', { code: 'ETIMEDOUT' }, 'connect_timeout', /NetworkPolicy/],
    ['getaddrinfo ENOTFOUND cache', { code: 'ENOTFOUND', hostname: 'cache' }, 'dns', /the Redis host cache does not resolve/],
    ['certificate has expired', { code: 'CERT_HAS_EXPIRED' }, 'tls_certificate_dates', /renew it/],
    [
      "Hostname/IP does not match certificate's altnames",
      { code: 'ERR_TLS_CERT_ALTNAME_INVALID' },
      'tls_certificate_name',
      /does not name the host/,
    ],
    ["Stream isn't writeable and enableOfflineQueue options is false", {}, 'not_connected', /reconnecting/],
    ["Cluster isn't ready and enableOfflineQueue options is false", {}, 'not_connected', /reconnecting/],
    ["CROSSSLOT Keys in request don't hash to the same slot", {}, 'cross_slot', /span two slots/],
  ])('%s', (message, fields, code, reason) => {
    const problem = redisProblem(error(message, fields), single)!;
    expect(problem).toEqual({ code, message: expect.stringMatching(reason) });
  });

  it('reads the last node error of a Cluster that could not tell its slots', () => {
    const cluster = context('redis+cluster://a:7000,b:7000');
    const failed = error('Failed to refresh slots cache.', {
      lastNodeError: error('connect ECONNREFUSED 10.0.0.1:7000', { code: 'ECONNREFUSED', address: '10.0.0.1', port: 7000 }),
    });
    expect(redisProblem(failed, cluster)).toMatchObject({
      code: 'connection_refused',
      message: expect.stringContaining('at 10.0.0.1:7000'),
    });
    expect(redisProblem(error('Failed to refresh slots cache.'), cluster)).toMatchObject({
      code: 'cluster_unreachable',
      message: expect.stringContaining('a:7000, b:7000'),
    });
  });

  it('reads a round of the Sentinels by its last error; a round with none says nothing', () => {
    const sentinel = context('redis+sentinel://s1,s2/mymaster');
    expect(redisProblem(error('All sentinels are unreachable. Retrying from scratch after 10ms.'), sentinel)).toBeUndefined();
    expect(
      redisProblem(error('All sentinels are unreachable. Retrying from scratch after 10ms. Last error: Connection is closed.'), sentinel),
    ).toMatchObject({ code: 'sentinels_unreachable', message: expect.stringContaining('s1:26379, s2:26379') });
  });

  it('keeps the text of an error it does not know, cut short, never a password', () => {
    const problem = redisProblem(error(`WEIRD something about s3cret ${'x'.repeat(500)}\nsecond line`), single)!;
    expect(problem.code).toBe('unknown');
    expect(problem.detail).toMatch(/^WEIRD something about \*\*\* x+…$/);
    expect(problem.detail!.length).toBeLessThanOrEqual(201);
  });
});
