// The rate limits as a Guard: per user, per user and tool, and tool calls in flight per user.
// Windows are rate-limiter-flexible's fixed windows (RateLimiterRedis, one Lua call each, or
// RateLimiterMemory); the in-flight count is a Redis counter with an expiry (redis.ts) or a
// per-process map. Every check of one message is issued in the same tick, so with Redis an
// allowed tool call is one auto-pipelined round trip.
//
// Redis failing (down, slow past REDIS_TIMEOUT_MS, refusing): counted, then
// RATE_LIMIT_ON_REDIS_ERROR decides: `allow` judges the message by the same limits kept in this
// process (nothing refused because of Redis, a runaway loop still held per replica); `deny`
// refuses it as limited, Retry-After 1.
//
// A new version of the policy file's limits (replace) swaps the limiters, not the counts.

import type { Logger } from 'pino';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Caller, ClientMessage, Decision, Guard } from '../guard.js';
import type { LimitRules } from './rules.js';
import { closeRedis, connectRedis, redisReady, type LimitsRedis } from './redis.js';

type Scope = 'user' | 'tool' | 'concurrency';
const ALLOW: Decision = { effect: 'allow' };
const WINDOW_SECONDS = 60;
const STARTUP_WAIT_MS = 2000;

interface InFlight {
  /** Changed by new rules; the counts stay, so calls in flight keep their slots. */
  limit: number;
  /** Whether the user had room; when true the call holds a slot until release. */
  acquire(user: string): Promise<boolean>;
  release(user: string): Promise<void>;
}

class MemoryInFlight implements InFlight {
  readonly #counts = new Map<string, number>();
  constructor(public limit: number) {}
  acquire(user: string): Promise<boolean> {
    const n = this.#counts.get(user) ?? 0;
    if (n >= this.limit) return Promise.resolve(false);
    this.#counts.set(user, n + 1);
    return Promise.resolve(true);
  }
  release(user: string): Promise<void> {
    const n = (this.#counts.get(user) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(user);
    else this.#counts.set(user, n);
    return Promise.resolve();
  }
}

class RedisInFlight implements InFlight {
  constructor(
    private readonly client: LimitsRedis,
    private readonly prefix: string,
    public limit: number,
    private readonly expirySeconds: number,
  ) {}
  async acquire(user: string): Promise<boolean> {
    return (await this.client.inFlightAcquire(`${this.prefix}:inflight:${user}`, this.limit, this.expirySeconds)) <= this.limit;
  }
  async release(user: string): Promise<void> {
    await this.client.inFlightRelease(`${this.prefix}:inflight:${user}`, this.expirySeconds);
  }
}

/** The limiters of one store (Redis, or this process). */
interface Store {
  readonly user: RateLimiterAbstract | undefined;
  readonly toolDefault: RateLimiterAbstract | undefined;
  readonly tools: ReadonlyMap<string, RateLimiterAbstract | undefined>;
  readonly inFlight: InFlight | undefined;
}

function buildStore(rules: LimitRules, make: (name: string, points: number) => RateLimiterAbstract, inFlight: InFlight | undefined): Store {
  const tools = new Map<string, RateLimiterAbstract | undefined>();
  for (const [tool, points] of rules.tools) tools.set(tool, points > 0 ? make(`tool-${points}`, points) : undefined);
  return {
    user: rules.userPerMinute > 0 ? make('user', rules.userPerMinute) : undefined,
    toolDefault: rules.toolPerMinute > 0 ? make(`tool-${rules.toolPerMinute}`, rules.toolPerMinute) : undefined,
    tools,
    inFlight,
  };
}

/**
 * A store for each version of the rules. A limiter is kept by name from one version to the
 * next, so a limit that stays keeps its window in this process too (in Redis the counts are
 * keyed by name anyway); the in-flight counter is one for all versions, only its limit changes.
 */
function storeFor(make: (name: string, points: number) => RateLimiterAbstract, inFlight: InFlight): (rules: LimitRules) => Store {
  let kept = new Map<string, RateLimiterAbstract>();
  return (rules) => {
    const previous = kept;
    kept = new Map();
    const limiter = (name: string, points: number) => {
      const found = kept.get(name) ?? previous.get(name) ?? make(name, points);
      found.points = points; // a `tool-N` name fixes its points; only `user` changes them
      kept.set(name, found);
      return found;
    };
    inFlight.limit = rules.concurrentToolCalls;
    return buildStore(rules, limiter, rules.concurrentToolCalls > 0 ? inFlight : undefined);
  };
}

class BackendError extends Error {}

const retryAfter = (res: RateLimiterRes) => Math.max(1, Math.ceil(res.msBeforeNext / 1000));
// Colons would let a subject and a tool name run into each other.
const part = (s: string) => encodeURIComponent(s);
/** Counted per `sub`; a token without one by its user claim, kept apart from every subject. */
const userKey = (caller: Caller) => {
  const { subject, user } = caller.identity;
  return subject !== undefined ? `s.${part(subject)}` : `u.${part(user)}`;
};

export class LimitsGuard implements Guard {
  readonly #redis: LimitsRedis | undefined;
  /** Whether the connection is this guard's own (else the app's, shared, closed by the app). */
  readonly #ownsRedis: boolean = false;
  readonly #localFor: (rules: LimitRules) => Store;
  readonly #primaryFor: ((rules: LimitRules) => Store) | undefined;
  /** In Redis (REDIS_URL set), else the same as #local. */
  #primary: Store;
  #local: Store;
  /** Where each allowed tool call took its in-flight slot, so settle gives it back there. */
  readonly #slots = new WeakMap<ClientMessage, Store>();
  #redisFailing = false;

  constructor(
    rules: LimitRules,
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** The sidecar's Redis connection (REDIS_URL); by default the guard opens its own. */
    sharedRedis?: () => LimitsRedis,
  ) {
    const memory = (name: string, points: number) => new RateLimiterMemory({ keyPrefix: name, points, duration: WINDOW_SECONDS });
    this.#localFor = storeFor(memory, new MemoryInFlight(rules.concurrentToolCalls));
    this.#local = this.#localFor(rules);
    if (config.redisUrl === undefined) {
      this.#primary = this.#local;
      return;
    }
    this.#ownsRedis = sharedRedis === undefined;
    const client = sharedRedis?.() ?? connectRedis(config.redisUrl, config);
    this.#redis = client;
    // ioredis reports every failed connection attempt: the counter and one warn line per outage say it.
    client.on('error', () => {});
    client.on('ready', () => {
      if (this.#redisFailing) logger.info('rate limits: Redis answers again, counting shared across replicas');
      this.#redisFailing = false;
    });
    const prefix = config.redisKeyPrefix;
    const redis = (name: string, points: number) =>
      new RateLimiterRedis({ storeClient: client, keyPrefix: `${prefix}:${name}`, points, duration: WINDOW_SECONDS });
    this.#primaryFor = storeFor(redis, new RedisInFlight(client, prefix, rules.concurrentToolCalls, config.rateLimitInFlightExpirySeconds));
    this.#primary = this.#primaryFor(rules);
  }

  /** A new version of the policy file's limits: takes effect for the next message; counts stay. */
  replace(rules: LimitRules): void {
    this.#local = this.#localFor(rules);
    this.#primary = this.#primaryFor?.(rules) ?? this.#local;
  }

  async judge(message: ClientMessage, caller: Caller): Promise<Decision> {
    // Notifications (cancellations among them) are never limited: they have nowhere to get an answer.
    if (message.id === undefined) return ALLOW;
    const user = userKey(caller);
    if (this.#redis === undefined) return this.#check(this.#local, message, user);
    try {
      return await this.#check(this.#primary, message, user);
    } catch (error) {
      if (!(error instanceof BackendError)) throw error;
      this.#backendFailed(error);
      if (this.config.rateLimitOnRedisError === 'deny') {
        return {
          effect: 'limit',
          scope: 'user',
          retryAfterSeconds: 1,
          message: 'rate limit unavailable (the limit store does not answer): try again shortly',
        };
      }
      return this.#check(this.#local, message, user);
    }
  }

  settle(message: ClientMessage, caller: Caller): void {
    const store = this.#slots.get(message);
    if (store === undefined) return;
    this.#slots.delete(message);
    store.inFlight!.release(userKey(caller)).catch((error: unknown) => this.#backendFailed(error));
  }

  /** Waits (bounded) for the first connection, so the first requests count in Redis; never fails start-up. */
  async connected(maxWaitMs = STARTUP_WAIT_MS): Promise<void> {
    if (this.#redis === undefined) return;
    if (!(await redisReady(this.#redis, maxWaitMs)))
      this.logger.warn(
        { waitedMs: maxWaitMs },
        'rate limits: Redis not reachable at start-up; RATE_LIMIT_ON_REDIS_ERROR decides until it is',
      );
  }

  async close(): Promise<void> {
    if (this.#redis !== undefined && this.#ownsRedis) await closeRedis(this.#redis, this.config.redisTimeoutMs);
  }

  #backendFailed(error: unknown): void {
    this.metrics.rateLimitBackendErrors.inc();
    if (!this.#redisFailing) {
      this.#redisFailing = true;
      const reason = error instanceof Error ? (error.cause instanceof Error ? error.cause.message : error.message) : String(error);
      this.logger.warn(
        { reason, onRedisError: this.config.rateLimitOnRedisError },
        'rate limits: Redis does not answer; RATE_LIMIT_ON_REDIS_ERROR decides until it does',
      );
    }
  }

  async #check(store: Store, message: ClientMessage, user: string): Promise<Decision> {
    const call = message.method === 'tools/call';
    const toolLimiter =
      call && message.tool !== undefined ? (store.tools.has(message.tool) ? store.tools.get(message.tool) : store.toolDefault) : undefined;
    // Started together: one round trip to Redis for all of them.
    const [byUser, byTool, slot] = await Promise.allSettled([
      store.user?.consume(user),
      toolLimiter?.consume(`${user}:${part(message.tool!)}`),
      call ? store.inFlight?.acquire(user) : undefined,
    ]);
    const acquired = slot.status === 'fulfilled' && slot.value === true;
    const failure = [byUser, byTool, slot].find((r) => r.status === 'rejected' && !(r.reason instanceof RateLimiterRes));
    let refusal: { scope: Scope; retryAfterSeconds: number } | undefined;
    if (failure === undefined) {
      if (byUser.status === 'rejected') refusal = { scope: 'user', retryAfterSeconds: retryAfter(byUser.reason as RateLimiterRes) };
      else if (byTool.status === 'rejected') refusal = { scope: 'tool', retryAfterSeconds: retryAfter(byTool.reason as RateLimiterRes) };
      else if (slot.status === 'fulfilled' && slot.value === false) refusal = { scope: 'concurrency', retryAfterSeconds: 1 };
    }
    if (failure !== undefined || refusal !== undefined) {
      if (acquired) store.inFlight!.release(user).catch((error: unknown) => this.#backendFailed(error));
    }
    if (failure !== undefined) throw new BackendError('rate limit store failed', { cause: (failure as PromiseRejectedResult).reason });
    if (refusal !== undefined) {
      this.metrics.rateLimited.inc({ scope: refusal.scope });
      return { effect: 'limit', ...refusal, message: MESSAGES[refusal.scope](message.tool, refusal.retryAfterSeconds) };
    }
    if (acquired) this.#slots.set(message, store);
    return ALLOW;
  }
}

const MESSAGES: Record<Scope, (tool: string | undefined, seconds: number) => string> = {
  user: (_tool, s) => `rate limit exceeded: too many requests from this user; retry in ${s} s`,
  tool: (tool, s) => `rate limit exceeded: too many calls of tool ${JSON.stringify(tool)} from this user; retry in ${s} s`,
  concurrency: () => 'rate limit exceeded: too many tool calls of this user in flight; retry when one has finished',
};
