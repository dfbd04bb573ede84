// The Redis connection's state as the operator reads it: the start-up line's `redis` field, one
// warn line when an outage begins (and one more for each new kind of problem in it), one info
// line when Redis answers again or a Sentinel failover moved the master. Every problem is said
// in the sidecar's words (redis-problems.ts); the client's own events are never logged raw.

import type { Logger } from 'pino';
import type { Config } from '../../config/config.js';
import type { Metrics } from '../../observability/metrics.js';
import { connectedTo, type LimitsRedis } from './redis.js';
import { redisProblem, type RedisProblem } from './redis-problems.js';

const NOT_CONNECTED: RedisProblem = { code: 'not_connected', message: 'not connected to Redis (reconnecting)' };
const CLOSED: RedisProblem = {
  code: 'connection_closed',
  message: 'the connection to Redis closed (a restart, a failover, or the network): reconnecting',
};

/** The start-up line's `redis` field. */
export interface RedisSummary {
  readonly url: string;
  readonly mode: string;
  /** `unused`: REDIS_URL is set but no limit is, so no connection is made. */
  readonly state: 'connected' | 'not connected' | 'unused';
  /** Sentinel: the master connected to. */
  readonly master?: string;
  /** Cluster: its masters. */
  readonly masters?: string[];
  readonly problem?: string;
  readonly reason?: string;
}

export class RedisState {
  /** The latest connection-level problem; cleared when Redis is ready. */
  #problem: RedisProblem | undefined;
  /** Problems logged in this outage; undefined while Redis answers. */
  #logged: Set<string> | undefined;
  #started = false;
  #closing = false;
  #master: string | undefined;

  constructor(
    private readonly client: LimitsRedis,
    private readonly config: Config,
    private readonly metrics: Pick<Metrics, 'rateLimitBackendErrors'>,
    private readonly logger: Logger,
  ) {
    client.on('error', (error: unknown) => {
      const problem = this.#read(error);
      if (problem !== undefined) this.#failed(problem);
    });
    client.on('close', () => {
      if (!this.#closing && this.#problem === undefined) this.#failed(CLOSED);
    });
    client.on('ready', () => this.#ready());
  }

  /** A check failed in Redis: counted; said once per outage and kind of problem. */
  checkFailed(error: unknown): void {
    this.metrics.rateLimitBackendErrors.inc();
    let problem = this.#read(error) ?? NOT_CONNECTED;
    // A command refused while disconnected: the connection's own problem says why.
    if (problem.code === NOT_CONNECTED.code && this.#problem !== undefined) problem = this.#problem;
    this.#failed(problem);
  }

  /** Waits (bounded) for the first connection, so the first requests count in Redis; never fails start-up. */
  async connected(maxWaitMs: number): Promise<void> {
    const client = this.client;
    if (client.status !== 'ready') {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise((resolve) => client.once('ready', resolve)),
        new Promise((resolve) => (timer = setTimeout(resolve, maxWaitMs))),
      ]);
      clearTimeout(timer);
    }
    this.#started = true;
    if (client.status !== 'ready') {
      const problem = this.#problem ?? { code: 'connecting', message: `no answer from Redis within ${maxWaitMs} ms of start-up` };
      this.#logged = new Set([problem.code]);
      this.logger.warn(
        { waitedMs: maxWaitMs, ...fields(problem), onRedisError: this.config.rateLimitOnRedisError },
        'rate limits: Redis not reachable at start-up; RATE_LIMIT_ON_REDIS_ERROR decides until it is',
      );
    }
  }

  summary(): RedisSummary {
    const url = this.config.redisUrl!;
    const ready = this.client.status === 'ready';
    const where = ready && url.mode !== 'single' ? connectedTo(this.client) : {};
    return {
      url: url.toString(),
      mode: url.mode,
      state: ready ? 'connected' : 'not connected',
      ...where,
      ...(!ready && this.#problem !== undefined ? fields(this.#problem) : {}),
    };
  }

  closing(): void {
    this.#closing = true;
  }

  #read(error: unknown): RedisProblem | undefined {
    return redisProblem(error, {
      url: this.config.redisUrl!,
      timeoutMs: this.config.redisTimeoutMs,
      secrets: [this.config.redisUrl!.password, this.config.redisSentinelPassword?.reveal()],
    });
  }

  #failed(problem: RedisProblem): void {
    if (this.#closing) return;
    this.#problem = problem;
    // Before start-up has waited for Redis, its line says what went wrong.
    if (!this.#started) return;
    this.#logged ??= new Set();
    if (this.#logged.has(problem.code)) return;
    this.#logged.add(problem.code);
    this.logger.warn(
      { ...fields(problem), onRedisError: this.config.rateLimitOnRedisError },
      'rate limits: Redis does not answer; RATE_LIMIT_ON_REDIS_ERROR decides until it does',
    );
  }

  #ready(): void {
    const previous = this.#master;
    this.#master = this.config.redisUrl!.mode === 'sentinel' ? connectedTo(this.client).master : undefined;
    const wasFailing = this.#logged !== undefined;
    this.#problem = undefined;
    this.#logged = undefined;
    if (!this.#started) return;
    if (previous !== undefined && this.#master !== previous) {
      this.logger.info(
        { master: this.#master, previousMaster: previous },
        'rate limits: Redis Sentinel named a new master; counting goes on there, shared across replicas',
      );
    } else if (wasFailing) {
      this.logger.info(
        this.#master !== undefined ? { master: this.#master } : {},
        'rate limits: Redis answers again, counting shared across replicas',
      );
    }
  }
}

const fields = (problem: RedisProblem) => ({
  problem: problem.code,
  reason: problem.message,
  ...(problem.detail !== undefined ? { detail: problem.detail } : {}),
});
