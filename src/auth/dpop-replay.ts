// DPoP proofs seen (RFC 9449 section 11.1): a proof's `jti` is remembered for as long as the proof
// could still be accepted, so a proof replayed within its window is refused. In this process a Map
// whose insertion order is expiry order (every entry lives the same time), so the expired ones are
// dropped from its front; with REDIS_URL also in Redis (SET NX PX), so a proof replayed against
// another replica is refused too.
//
// Redis failing (down, slower than REDIS_TIMEOUT_MS): the proof is judged by this replica's
// memory alone, counted and logged once per outage. A replay then needs a captured proof, another
// replica and a Redis outage inside the proof's window; refusing every DPoP request instead would
// turn a Redis outage into an outage of the MCP server.

import type { Redis } from 'ioredis';

/** Proofs remembered per process at most: about 12 MB. A full memory refuses new proofs (fail closed) until entries expire. */
export const MAX_REMEMBERED_PROOFS = 100_000;

export interface ReplayCheck {
  /** true the first time `key` is presented within `ttlMs`, false for a replay. Throws ReplayMemoryFull. */
  firstUse(key: string, ttlMs: number): boolean | Promise<boolean>;
}

export class ReplayMemoryFull extends Error {
  constructor() {
    super('too many recent DPoP proofs to remember');
    this.name = 'ReplayMemoryFull';
  }
}

export class ProofMemory implements ReplayCheck {
  readonly #until = new Map<string, number>();

  constructor(
    private readonly now: () => number,
    private readonly maxEntries = MAX_REMEMBERED_PROOFS,
  ) {}

  get size(): number {
    return this.#until.size;
  }

  firstUse(key: string, ttlMs: number): boolean {
    const now = this.now();
    // The front holds the oldest entries; the loop's iterator ends with it.
    for (const [oldKey, until] of this.#until) {
      if (until > now) break;
      this.#until.delete(oldKey);
    }
    const until = this.#until.get(key);
    if (until !== undefined && until > now) return false;
    if (this.#until.size >= this.maxEntries) throw new ReplayMemoryFull();
    this.#until.set(key, now + ttlMs);
    return true;
  }
}

export interface SharedReplayOptions {
  keyPrefix: string;
  /** Redis did not answer a check (the proof was judged by this replica's memory). */
  onError: (error: unknown) => void;
}

/** This process's memory first (a replay to the same replica costs no round trip), then Redis. */
export class SharedProofMemory implements ReplayCheck {
  constructor(
    private readonly memory: ProofMemory,
    private readonly redis: Pick<Redis, 'set'>,
    private readonly options: SharedReplayOptions,
  ) {}

  async firstUse(key: string, ttlMs: number): Promise<boolean> {
    if (!this.memory.firstUse(key, ttlMs)) return false;
    try {
      return (await this.redis.set(`${this.options.keyPrefix}:dpop-jti:${key}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
    } catch (error) {
      this.options.onError(error);
      return true;
    }
  }
}
