// A token verified once is not verified again until it expires: a bounded LRU of verdicts.
// A cached verdict is used only while its key is still in the key set and before `exp`
// (plus tolerance). A rejection is kept only when it was reached with a key and cannot change
// while that key stays (a bad signature, an expired token, a wrong audience...; never "not yet
// valid", never an unknown key), in a smaller LRU of its own, so that a client retrying a bad
// token costs one signature check and a flood of distinct bad tokens cannot evict good verdicts.

import { Rejection } from '../errors.js';
import type { KeySource } from './keyset.js';
import type { Verdict, Verify } from './verify.js';

export interface VerdictCacheOptions {
  maxEntries: number;
  keys: Pick<KeySource, 'has'>;
  now: () => number;
  onLookup?: (hit: boolean) => void;
}

/** Rejections remembered at most (fewer when maxEntries is smaller). */
const MAX_REJECTIONS = 1000;

/** A bounded map that forgets the least recently used entry first. */
export class Lru<V> {
  private readonly entries = new Map<string, V>();
  // Map iterators visit live entries in insertion order. A new iterator per eviction would walk
  // over every deleted slot at the head of the map (4 µs an eviction at 10,000 entries); this one
  // never goes back, and entries are only ever added behind it, so its next is the oldest.
  private readonly oldest = this.entries.keys();

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.entries.size;
  }

  get(key: string): V | undefined {
    const value = this.entries.get(key);
    if (value !== undefined) {
      this.entries.delete(key);
      this.entries.set(key, value);
    }
    return value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.oldest.next().value!);
    this.entries.set(key, value);
  }

  delete(key: string): void {
    this.entries.delete(key);
  }
}

export function withVerdictCache(verify: Verify, { maxEntries, keys, now, onLookup }: VerdictCacheOptions): Verify {
  if (maxEntries <= 0) return verify;
  const verdicts = new Lru<Verdict>(maxEntries);
  const rejections = new Lru<Rejection>(Math.min(maxEntries, MAX_REJECTIONS));

  const accepted = (token: string, verdict: Verdict): Verdict => {
    verdicts.set(token, verdict);
    return verdict;
  };
  const rejected = (token: string, error: unknown): unknown => {
    if (error instanceof Rejection && error.key !== undefined) rejections.set(token, error);
    return error;
  };

  return function cachedVerify(token: string) {
    const verdict = verdicts.get(token);
    if (verdict !== undefined) {
      if (verdict.validUntilMs > now() && keys.has(verdict.key)) {
        onLookup?.(true);
        return verdict;
      }
      verdicts.delete(token);
    }
    const rejection = rejections.get(token);
    if (rejection !== undefined) {
      if (keys.has(rejection.key!)) {
        onLookup?.(true);
        throw rejection;
      }
      rejections.delete(token);
    }
    onLookup?.(false);
    let result;
    try {
      result = verify(token);
    } catch (error) {
      throw rejected(token, error);
    }
    return result instanceof Promise
      ? result.then((v) => accepted(token, v), (error: unknown) => Promise.reject(rejected(token, error)))
      : accepted(token, result);
  };
}
