// The one Redis connection of a sidecar (one Redis, a Sentinel group's master, or a Redis
// Cluster, all through ioredis), set up so that Redis being slow or gone never holds a request:
// no offline queue (a command while disconnected fails at once), no command sent twice, and a
// timeout on connecting and on every command. ioredis reconnects by itself (asking the
// Sentinels again, or refreshing the Cluster's slots), so counting in Redis resumes when it
// returns, without a restart.
//
// Cluster: every key of one user carries the user as its hash tag (guard.ts), so the checks of
// one message go to one node in one auto-pipelined write, and a script never spans two slots.

import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
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

interface InFlightCommands {
  /** 1: the call holds a slot for `leaseMs`; 0: the user had `limit` calls in flight. */
  inFlightAcquire(key: string, limit: number, leaseMs: number, call: string): Promise<number>;
  inFlightRelease(key: string, call: string): Promise<number>;
  inFlightRenew(key: string, leaseMs: number, ...calls: string[]): Promise<number>;
}

export type LimitsRedis = (Redis | Cluster) & InFlightCommands;

type RedisConfig = Pick<Config, 'redisTimeoutMs' | 'redisCaFile' | 'redisSentinelPassword'>;

/** Reconnect quickly at first, then every 2 s at most, for ever. */
const retry = (attempt: number) => Math.min(attempt * 100, 2000);

export function connectRedis(url: RedisUrl, config: RedisConfig): LimitsRedis {
  const tls = url.tls ? (config.redisCaFile !== undefined ? { ca: readFileSync(config.redisCaFile) } : {}) : undefined;
  const timeout = config.redisTimeoutMs;
  // Every connection, whatever the mode: nothing waits longer than REDIS_TIMEOUT_MS, nothing is sent twice.
  const node: RedisOptions = {
    username: url.username,
    password: url.password,
    db: url.db,
    ...(tls !== undefined ? { tls } : {}),
    connectTimeout: timeout,
    commandTimeout: timeout,
    maxRetriesPerRequest: 0,
    // Checks issued in the same tick leave in one write: an allowed tool call is one round trip.
    enableAutoPipelining: true,
    // A primary demoted under a live connection (a failover after a partition) refuses writes
    // with READONLY: reconnect, which asks the Sentinels for the new one. The command is not resent.
    reconnectOnError: (error) => (error.message.startsWith('READONLY') ? 1 : false),
  };
  let client: Redis | Cluster;
  if (url.mode === 'cluster') {
    const options: ClusterOptions = {
      redisOptions: node,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      clusterRetryStrategy: retry,
      // A command refused for a closed connection or CLUSTERDOWN is not sent again (it may have
      // run); MOVED and ASK are followed (the node did not run it), within the command timeout.
      retryDelayOnFailover: 0,
      retryDelayOnClusterDown: 0,
      slotsRefreshTimeout: timeout,
      // With TLS the certificate names the host: connect by name, not by the address it resolves to.
      ...(url.tls ? { dnsLookup: (address: string, callback: (error: null, address: string) => void) => callback(null, address) } : {}),
    };
    client = new Cluster(
      url.nodes.map(({ host, port }) => ({ host, port })),
      options,
    );
  } else if (url.mode === 'sentinel') {
    client = new Redis({
      ...node,
      enableOfflineQueue: false,
      retryStrategy: retry,
      sentinels: url.nodes.map(({ host, port }) => ({ host, port })),
      name: url.masterName,
      sentinelPassword: config.redisSentinelPassword?.reveal(),
      ...(tls !== undefined ? { sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
      sentinelCommandTimeout: timeout,
      // Told of a new master by the Sentinels (+switch-master), reconnect at once: a primary that
      // is still up (a planned failover, a partition) keeps taking counts that its demotion throws
      // away, until the sidecar leaves it. (A sidecar already on the new master reconnects too.)
      failoverDetector: true,
    });
  } else {
    const [{ host, port }] = url.nodes as [{ host: string; port: number }];
    client = new Redis({ ...node, host, port, enableOfflineQueue: false, retryStrategy: retry });
  }
  if (url.mode === 'sentinel') {
    // ioredis can give up on a Sentinel connection for good ('end'): its failover detector may
    // disconnect while the Sentinels are being asked for the new master. Start again then.
    client.on('end', () => {
      if (!closed.has(client)) setTimeout(() => void (client as Redis).connect().catch(() => {}), retry(1)).unref();
    });
  }
  client.defineCommand('inFlightAcquire', { numberOfKeys: 1, lua: ACQUIRE });
  client.defineCommand('inFlightRelease', { numberOfKeys: 1, lua: RELEASE });
  client.defineCommand('inFlightRenew', { numberOfKeys: 1, lua: RENEW });
  return client as LimitsRedis;
}

/** Waits (bounded) for the first connection; false when Redis did not answer in time. Never throws. */
export async function redisReady(client: LimitsRedis, maxWaitMs: number): Promise<boolean> {
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

const closed = new WeakSet<Redis | Cluster>();

/** Closes the connection: pending replies get `timeoutMs` (with Redis gone, quit would wait for a reconnect). */
export async function closeRedis(client: LimitsRedis, timeoutMs: number): Promise<void> {
  closed.add(client);
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([client.quit().catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
  clearTimeout(timer);
  client.disconnect();
}

/** Where the connection goes now, for the start-up line: a Sentinel group's master, a Cluster's masters. */
export function connectedTo(client: LimitsRedis): { master?: string; masters?: string[] } {
  if (client instanceof Cluster) {
    return { masters: client.nodes('master').map((n) => `${n.options.host}:${n.options.port}`) };
  }
  const { remoteAddress, remotePort } = client.stream ?? {};
  return remoteAddress !== undefined
    ? { master: `${remoteAddress.includes(':') ? `[${remoteAddress}]` : remoteAddress}:${remotePort}` }
    : {};
}
