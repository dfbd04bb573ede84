// The one Redis connection of a sidecar, set up so that Redis being slow or gone never holds a
// request: no offline queue (a command while disconnected fails at once), no retries of a
// command, and a timeout on connecting and on every command. ioredis reconnects by itself, so
// counting in Redis resumes when it returns, without a restart.

import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { Config, RedisUrl } from '../../config/config.js';

// Tool calls in flight per user: a sorted set of call ids, each scored with the end of its lease
// (Redis's own clock, so replicas' clocks do not matter). A running call renews its lease; a
// call whose lease ends without renewal (a replica that died mid-call, or an acquire that Redis
// ran only after its answer had timed out, during a stall) stops counting: nothing leaks longer
// than one lease, whatever Redis did meanwhile.
const ACQUIRE = `local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;
// Idempotent: a call released twice, or never acquired, changes nothing. An empty set is deleted by Redis.
const RELEASE = `return redis.call('ZREM', KEYS[1], ARGV[1])`;
// Renews the leases of the calls named (ARGV[2..]) that are still held.
const RENEW = `local t = redis.call('TIME')
local until_ = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 0`;

export interface LimitsRedis extends Redis {
  /** 1: the call holds a slot for `leaseMs`; 0: the user had `limit` calls in flight. */
  inFlightAcquire(key: string, limit: number, leaseMs: number, call: string): Promise<number>;
  inFlightRelease(key: string, call: string): Promise<number>;
  inFlightRenew(key: string, leaseMs: number, ...calls: string[]): Promise<number>;
}

export function connectRedis(url: RedisUrl, config: Pick<Config, 'redisTimeoutMs' | 'redisCaFile'>): LimitsRedis {
  const tls = config.redisCaFile !== undefined ? { ca: readFileSync(config.redisCaFile) } : undefined;
  const client = new Redis(url.href, {
    ...(tls !== undefined && url.href.startsWith('rediss://') ? { tls } : {}),
    connectTimeout: config.redisTimeoutMs,
    commandTimeout: config.redisTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Checks issued in the same tick leave in one write: an allowed tool call is one round trip.
    enableAutoPipelining: true,
    // Reconnect quickly at first, then every 2 s at most, for ever.
    retryStrategy: (attempt) => Math.min(attempt * 100, 2000),
  });
  client.defineCommand('inFlightAcquire', { numberOfKeys: 1, lua: ACQUIRE });
  client.defineCommand('inFlightRelease', { numberOfKeys: 1, lua: RELEASE });
  client.defineCommand('inFlightRenew', { numberOfKeys: 1, lua: RENEW });
  return client as LimitsRedis;
}

/** Waits (bounded) for the first connection; false when Redis did not answer in time. Never throws. */
export async function redisReady(client: Redis, maxWaitMs: number): Promise<boolean> {
  if (client.status === 'ready') return true;
  let timer: NodeJS.Timeout | undefined;
  let onReady: (() => void) | undefined;
  const ready = await Promise.race([
    new Promise<boolean>((resolve) => client.once('ready', (onReady = () => resolve(true)))),
    new Promise<boolean>((resolve) => (timer = setTimeout(resolve, maxWaitMs, false))),
  ]);
  clearTimeout(timer);
  client.off('ready', onReady!);
  return ready;
}

/** Closes a connection: quit waits for pending replies, but with Redis gone it would wait for a reconnect, so at most `timeoutMs`. */
export async function closeRedis(client: Redis, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
  client.disconnect();
}
