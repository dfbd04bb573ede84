// The one Redis connection of a sidecar, set up so that Redis being slow or gone never holds a
// request: no offline queue (a command while disconnected fails at once), no retries of a
// command, and a timeout on connecting and on every command. ioredis reconnects by itself, so
// counting in Redis resumes when it returns, without a restart.

import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import type { Config, RedisUrl } from '../../config/config.js';

// Increments a user's in-flight count unless it is at the limit; the expiry is renewed on every
// change, so the count of a replica that died mid-call is dropped once nobody touches it.
const ACQUIRE = `local n = redis.call('incr', KEYS[1])
if n > tonumber(ARGV[1]) then redis.call('decr', KEYS[1]) end
redis.call('expire', KEYS[1], ARGV[2])
return n`;
// Decrements it; at zero (or a count that expired meanwhile) the key goes.
const RELEASE = `local n = redis.call('decr', KEYS[1])
if n <= 0 then redis.call('del', KEYS[1]) return 0 end
redis.call('expire', KEYS[1], ARGV[1])
return n`;

export interface LimitsRedis extends Redis {
  inFlightAcquire(key: string, limit: number, expirySeconds: number): Promise<number>;
  inFlightRelease(key: string, expirySeconds: number): Promise<number>;
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
