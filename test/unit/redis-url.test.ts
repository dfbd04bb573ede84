import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { MINIMAL_ENV, problems } from '../helpers/config.js';

const url = (value: string) => loadConfig({ ...MINIMAL_ENV, REDIS_URL: value }).redisUrl!;

describe('REDIS_URL', () => {
  it('reads one Redis as before: host, port (6379 by default), database, user and password percent-decoded', () => {
    expect(url('redis://cache:6380/2')).toMatchObject({ mode: 'single', tls: false, nodes: [{ host: 'cache', port: 6380 }], db: 2 });
    const parsed = url('rediss://limits:p%40ss%2Fw@Cache.Example');
    expect(parsed).toMatchObject({ mode: 'single', tls: true, nodes: [{ host: 'cache.example', port: 6379 }], db: 0, username: 'limits' });
    expect(parsed.password).toBe('p@ss/w');
    expect(String(parsed)).toBe('rediss://limits:***@cache.example:6379');
    expect(url('redis://[::1]:7000').nodes).toEqual([{ host: '::1', port: 7000 }]);
  });

  it("reads a Sentinel group: the Sentinels (26379 by default), the master name, the database; the password is the data nodes'", () => {
    const parsed = url('redis+sentinel://:s3cret@s1,s2:26380,[fd00::1]/mymaster/3');
    expect(parsed).toMatchObject({
      scheme: 'redis+sentinel',
      mode: 'sentinel',
      tls: false,
      masterName: 'mymaster',
      db: 3,
      nodes: [
        { host: 's1', port: 26379 },
        { host: 's2', port: 26380 },
        { host: 'fd00::1', port: 26379 },
      ],
    });
    expect(parsed.password).toBe('s3cret');
    expect(JSON.stringify({ parsed })).toBe('{"parsed":"redis+sentinel://:***@s1:26379,s2:26380,[fd00::1]:26379/mymaster/3"}');
    expect(url('rediss+sentinel://s1/mymaster')).toMatchObject({ mode: 'sentinel', tls: true, db: 0 });
  });

  it('reads a Redis Cluster: its seed nodes, database 0 only', () => {
    const parsed = url('rediss+cluster://:pw@node-a:7000,node-b:7001');
    expect(parsed).toMatchObject({
      mode: 'cluster',
      tls: true,
      db: 0,
      nodes: [
        { host: 'node-a', port: 7000 },
        { host: 'node-b', port: 7001 },
      ],
    });
    expect(String(parsed)).toBe('rediss+cluster://:***@node-a:7000,node-b:7001');
    expect(url('redis+cluster://node-a/').db).toBe(0);
    // A comma in the password is the password's: the host list starts after the last "@".
    expect(url('redis+cluster://:a,b@node-a').password).toBe('a,b');
  });

  it('names each mistake without showing any part that could be a password', () => {
    expect(problems({ REDIS_URL: 'redis-sentinel://s1/mymaster' })).toEqual([
      'REDIS_URL: the scheme "redis-sentinel://" is spelled "redis+sentinel://" here',
    ]);
    expect(problems({ REDIS_URL: 'redis://a:6379,b:6379' })).toEqual([
      'REDIS_URL: 2 hosts for one Redis: a Sentinel group is redis+sentinel://…, a Cluster redis+cluster://…',
    ]);
    expect(problems({ REDIS_URL: 'redis+sentinel://s1:26379,s2:26379' })).toEqual([
      'REDIS_URL: a Sentinel URL names the master group after the hosts: redis+sentinel://host:26379,…/mymaster[/db]',
    ]);
    expect(problems({ REDIS_URL: 'redis+cluster://a:7000/1' })).toEqual(['REDIS_URL: the path "/1": a Redis Cluster has only database 0']);
    expect(problems({ REDIS_URL: 'redis://cache/0?enableOfflineQueue=true' })).toEqual([
      'REDIS_URL: options after "?" (or a "#") are not read: give only the forms shown in the reference',
    ]);
    // A password with an unencoded "/" ends the authority early: neither piece is echoed.
    const leaked = [
      ...problems({ REDIS_URL: 'redis://:s3cr/et@cache:6379' }),
      ...problems({ REDIS_URL: 'redis+cluster://:s3cr/et@a:7000,b:7000' }),
      ...problems({ REDIS_URL: 'redis://:s3cret' }),
      ...problems({ REDIS_URL: 'redis://:%zzs3cret@cache' }),
      ...problems({ REDIS_URL: 'http://:s3cret@cache' }),
    ];
    expect(leaked).toHaveLength(5);
    for (const message of leaked) {
      expect(message).toMatch(/^REDIS_URL/);
      expect(message).not.toMatch(/s3cr|et@/);
    }
    expect(leaked[3]).toBe(
      'REDIS_URL: the user name or password is not valid percent-encoding (write "%40" for "@", "%25" for "%"; value not shown)',
    );
  });
});

describe('REDIS_SENTINEL_PASSWORD and REDIS_KEY_PREFIX', () => {
  it('keeps the Sentinel password out of every log and message', () => {
    const config = loadConfig({ ...MINIMAL_ENV, REDIS_URL: 'redis+sentinel://s1/mymaster', REDIS_SENTINEL_PASSWORD: 's3cret' });
    expect(config.redisSentinelPassword!.reveal()).toBe('s3cret');
    expect(JSON.stringify(config)).not.toContain('s3cret');
    expect(JSON.stringify(config)).toContain('"redisSentinelPassword":"***"');
    expect(`${String(config.redisSentinelPassword)}`).toBe('***');
  });

  it('refuses a Sentinel password without a Sentinel URL, and a prefix with braces', () => {
    expect(problems({ REDIS_URL: 'redis://cache', REDIS_SENTINEL_PASSWORD: 's3cret', REDIS_KEY_PREFIX: 'team-{a}' })).toEqual([
      'REDIS_KEY_PREFIX="team-{a}": expected a prefix without { or } (the sidecar sets the hash tags)',
      "REDIS_SENTINEL_PASSWORD is set but REDIS_URL is not a redis+sentinel:// URL: the data nodes' password goes in REDIS_URL (value not shown)",
    ]);
  });
});
