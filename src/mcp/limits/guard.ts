// The rate limits as a Guard: per user, per user and tool, and tool calls in flight per user.
// Windows are rate-limiter-flexible's fixed windows (RateLimiterRedis, one Lua call each, or
// RateLimiterMemory); the in-flight count is a set of leased slots in Redis (redis.ts) or a
// per-process map. Every check of one message is issued in the same tick, so with Redis an
// allowed tool call is one auto-pipelined round trip.
//
// Redis failing (down, slow past REDIS_TIMEOUT_MS, refusing): counted, then
// RATE_LIMIT_ON_REDIS_ERROR decides: `allow` judges the message by the same limits kept in this
// process (nothing refused because of Redis, a runaway loop still held per replica); `deny`
// refuses it as limited, Retry-After 1.
//
// A new version of the policy file's limits (replace) swaps the limiters, not the counts.

import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../observability/metrics.js';
import type { Caller, ClientMessage, Decision, DecisionAttributes, Guard } from '../guard.js';
import type { LimitRules } from './rules.js';
import { AUDIT_BOUNDS, cutUtf8 } from '../audit.js';
import { closeRedis, connectRedis, type LimitsRedis } from './redis.js';
import { RedisState, type RedisSummary } from './redis-state.js';

type Scope = 'user' | 'tool' | 'concurrency';
const ALLOW: Decision = { effect: 'allow' };
const WINDOW_SECONDS = 60;
const STARTUP_WAIT_MS = 2000;

/** A slot a tool call holds while it runs: given back exactly once, by settle. */
interface Slot {
  readonly user: string;
  /** The call's id in Redis. */
  readonly id?: string;
}

interface InFlight {
  /** Changed by new rules; the counts stay, so calls in flight keep their slots. */
  limit: number;
  /** A slot for one more call of the user, or undefined when the user has `limit` in flight. */
  acquire(user: string): Promise<Slot | undefined>;
  release(slot: Slot): Promise<void>;
  close(): void;
}

class MemoryInFlight implements InFlight {
  readonly #counts = new Map<string, number>();
  constructor(public limit: number) {}
  acquire(user: string): Promise<Slot | undefined> {
    const n = this.#counts.get(user) ?? 0;
    if (n >= this.limit) return Promise.resolve(undefined);
    this.#counts.set(user, n + 1);
    return Promise.resolve({ user });
  }
  release(slot: Slot): Promise<void> {
    const n = (this.#counts.get(slot.user) ?? 1) - 1;
    if (n <= 0) this.#counts.delete(slot.user);
    else this.#counts.set(slot.user, n);
    return Promise.resolve();
  }
  close(): void {}
}

/** This process's calls, told apart from every other replica's in the same sets. */
const PROCESS = randomUUID();
let calls = 0;

/**
 * Slots leased in Redis (redis.ts): each held call renews its lease every third of it, so a
 * slot whose holder is gone, or that Redis took only after its answer had timed out, lapses
 * within one lease (RATE_LIMIT_IN_FLIGHT_EXPIRY_SECONDS) instead of counting until a key expires.
 */
class RedisInFlight implements InFlight {
  /** Held slots by call id, renewed until released. */
  readonly #held = new Map<string, Slot & { readonly key: string }>();
  readonly #renewal: NodeJS.Timeout;

  constructor(
    private readonly client: LimitsRedis,
    private readonly prefix: string,
    public limit: number,
    private readonly leaseMs: number,
    private readonly onError: (error: unknown) => void,
  ) {
    this.#renewal = setInterval(() => this.#renew(), Math.max(1000, Math.floor(leaseMs / 3)));
    this.#renewal.unref();
  }

  async acquire(user: string): Promise<Slot | undefined> {
    const key = `${this.prefix}:inflight:${user}`;
    const id = `${PROCESS}:${++calls}`;
    let taken: number;
    try {
      taken = await this.client.inFlightAcquire(key, this.limit, this.leaseMs, id);
    } catch (error) {
      // Redis may still run the acquire once it answers again: the release goes behind it on the
      // same connection (in order), and if it cannot, the unrenewed slot lapses after one lease.
      this.client.inFlightRelease(key, id).catch(() => {});
      throw error;
    }
    if (taken !== 1) return undefined;
    const slot = { user, id, key };
    this.#held.set(id, slot);
    return slot;
  }

  async release(slot: Slot): Promise<void> {
    const held = this.#held.get(slot.id!);
    if (held === undefined) return;
    this.#held.delete(slot.id!);
    await this.client.inFlightRelease(held.key, held.id!);
  }

  close(): void {
    clearInterval(this.#renewal);
  }

  #renew(): void {
    const byKey = new Map<string, string[]>();
    for (const { key, id } of this.#held.values()) {
      const ids = byKey.get(key);
      if (ids === undefined) byKey.set(key, [id!]);
      else ids.push(id!);
    }
    for (const [key, ids] of byKey) this.client.inFlightRenew(key, this.leaseMs, ...ids).catch(this.onError);
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
// Colons would let a subject and a tool name run into each other; braces a hash tag end early.
const part = (s: string) => encodeURIComponent(s);
/**
 * Counted per `sub`; a token without one by its user claim, kept apart from every subject. In
 * braces: the Redis Cluster hash tag, so every key of one user (window, tool windows, in flight)
 * is in one slot and the checks of one message go to one node in one round trip.
 */
const userKey = (caller: Caller) => {
  const { subject, user } = caller.identity;
  return subject !== undefined ? `{s.${part(subject)}}` : `{u.${part(user)}}`;
};

export class LimitsGuard implements Guard {
  readonly name = 'rate limits';
  readonly #redis: LimitsRedis | undefined;
  /** Whether the connection is this guard's own (else the app's, shared, closed by the app). */
  readonly #ownsRedis: boolean = false;
  readonly #localFor: (rules: LimitRules) => Store;
  readonly #primaryFor: ((rules: LimitRules) => Store) | undefined;
  /** In Redis (REDIS_URL set), else the same as #local. */
  #primary: Store;
  #local: Store;
  /** Where each allowed tool call took its in-flight slot, so settle gives it back there. */
  readonly #slots = new WeakMap<ClientMessage, { store: Store; slot: Slot }>();
  readonly #inFlights: InFlight[] = [];
  readonly #redisState: RedisState | undefined;
  #rules: LimitRules;

  constructor(
    rules: LimitRules,
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    /** The sidecar's Redis connection (REDIS_URL); by default the guard opens its own. */
    sharedRedis?: () => LimitsRedis,
  ) {
    this.#rules = rules;
    const memory = (name: string, points: number) => new RateLimiterMemory({ keyPrefix: name, points, duration: WINDOW_SECONDS });
    const local = new MemoryInFlight(rules.concurrentToolCalls);
    this.#inFlights.push(local);
    this.#localFor = storeFor(memory, local);
    this.#local = this.#localFor(rules);
    if (config.redisUrl === undefined) {
      this.#primary = this.#local;
      return;
    }
    this.#ownsRedis = sharedRedis === undefined;
    const client = sharedRedis?.() ?? connectRedis(config.redisUrl, config);
    this.#redis = client;
    // Every event of the client, said once per outage in the sidecar's words.
    this.#redisState = new RedisState(client, config, metrics, logger);
    const prefix = config.redisKeyPrefix;
    const redis = (name: string, points: number) =>
      new RateLimiterRedis({ storeClient: client, keyPrefix: `${prefix}:${name}`, points, duration: WINDOW_SECONDS });
    const leased = new RedisInFlight(client, prefix, rules.concurrentToolCalls, config.rateLimitInFlightExpirySeconds * 1000, (error) =>
      this.#backendFailed(error),
    );
    this.#inFlights.push(leased);
    this.#primaryFor = storeFor(redis, leased);
    this.#primary = this.#primaryFor(rules);
  }

  /** A new version of the policy file's limits: takes effect for the next message; counts stay. */
  replace(rules: LimitRules): void {
    this.#rules = rules;
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
          backendError: true,
        };
      }
      const decided = await this.#check(this.#local, message, user);
      return decided.effect === 'deny' ? decided : { ...decided, backendError: true };
    }
  }

  describe(decision: Decision): DecisionAttributes {
    const described: Record<string, string | boolean> = {
      'mcp_auth.rate_limit.store': this.#redis === undefined ? 'memory' : 'redis',
      'mcp_auth.rate_limit.limited': decision.effect === 'limit',
    };
    if (decision.effect === 'limit') described['mcp_auth.rate_limit.scope'] = decision.scope;
    if (decision.effect !== 'deny' && decision.backendError === true) {
      described['mcp_auth.rate_limit.backend_error'] = true;
      described['error.type'] = 'backend_error';
    }
    return described;
  }

  settle(message: ClientMessage, _caller?: Caller): void {
    const held = this.#slots.get(message);
    if (held === undefined) return;
    this.#slots.delete(message);
    held.store.inFlight!.release(held.slot).catch((error: unknown) => this.#backendFailed(error));
  }

  /** Waits (bounded) for the first connection, so the first requests count in Redis; never fails start-up. */
  async connected(maxWaitMs = STARTUP_WAIT_MS): Promise<void> {
    await this.#redisState?.connected(maxWaitMs);
  }

  /** The limits in force and where they are counted, for the start-up line. */
  summary(): { rateLimits: Record<string, unknown>; redis?: RedisSummary } {
    const { tools, ...counts } = this.#rules;
    return {
      rateLimits: { ...counts, tools: Object.fromEntries(tools), counting: this.#redis === undefined ? 'process' : 'redis' },
      ...(this.#redisState !== undefined ? { redis: this.#redisState.summary() } : {}),
    };
  }

  async close(): Promise<void> {
    for (const inFlight of this.#inFlights) inFlight.close();
    if (this.#redis === undefined) return;
    this.#redisState!.closing();
    // The app's shared connection is closed by the app.
    if (this.#ownsRedis) await closeRedis(this.#redis, this.config.redisTimeoutMs);
  }

  #backendFailed(error: unknown): void {
    this.#redisState?.checkFailed(error instanceof BackendError ? error.cause : error);
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
    const acquired = slot.status === 'fulfilled' ? slot.value : undefined;
    const failure = [byUser, byTool, slot].find((r) => r.status === 'rejected' && !(r.reason instanceof RateLimiterRes));
    let refusal: { scope: Scope; retryAfterSeconds: number } | undefined;
    if (failure === undefined) {
      if (byUser.status === 'rejected') refusal = { scope: 'user', retryAfterSeconds: retryAfter(byUser.reason as RateLimiterRes) };
      else if (byTool.status === 'rejected') refusal = { scope: 'tool', retryAfterSeconds: retryAfter(byTool.reason as RateLimiterRes) };
      else if (call && store.inFlight !== undefined && acquired === undefined) refusal = { scope: 'concurrency', retryAfterSeconds: 1 };
    }
    if (failure !== undefined || refusal !== undefined) {
      if (acquired !== undefined) store.inFlight!.release(acquired).catch((error: unknown) => this.#backendFailed(error));
    }
    if (failure !== undefined) throw new BackendError('rate limit store failed', { cause: (failure as PromiseRejectedResult).reason });
    if (refusal !== undefined) {
      this.metrics.rateLimited.inc({ scope: refusal.scope });
      return { effect: 'limit', ...refusal, message: MESSAGES[refusal.scope](message.tool, refusal.retryAfterSeconds) };
    }
    if (acquired !== undefined) this.#slots.set(message, { store, slot: acquired });
    return ALLOW;
  }
}

const MESSAGES: Record<Scope, (tool: string | undefined, seconds: number) => string> = {
  user: (_tool, s) => `rate limit exceeded: too many requests from this user; retry in ${s} s`,
  tool: (tool, s) =>
    `rate limit exceeded: too many calls of tool ${JSON.stringify(cutUtf8(tool ?? '', AUDIT_BOUNDS.name))} from this user; retry in ${s} s`,
  concurrency: () => 'rate limit exceeded: too many tool calls of this user in flight; retry when one has finished',
};
