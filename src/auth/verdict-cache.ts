// A token verified once is not verified again until it expires: a bounded LRU of verdicts.
// A cached verdict is used only while its key is still in the key set and before `exp`
// (plus tolerance). A rejection is kept only when it says how long it stands (`Rejection.stands`:
// a malformed token or a refused header for good; a bad signature, an expired token, a wrong
// audience... while their key stays; an unknown key until the key set changes or may be fetched
// again; never "not yet valid"), in a smaller LRU of its own, so that a client retrying a bad
// token costs no second check and a flood of distinct bad tokens cannot evict good verdicts.
// Rejections are returned, not thrown: a throw cost more than the lookup.
// Entries are keyed by the token's SHA-256, not the token: the cache keeps no bearer token alive,
// and with SHA extensions the digest costs no more than V8 hashing the 1 KB string for a lookup
// would. Verdicts live in typed arrays (verdict-table.ts), rejections, fewer, in the Lru below.

import { hash } from 'node:crypto';
import { Rejection } from '../lib/errors.js';
import type { KeySource } from './keyset.js';
import { Lru } from '../lib/lru.js';
import { VerdictTable } from './verdict-table.js';
import type { Verdict, Verify, VerifyToResult } from './verify.js';

export interface VerdictCacheOptions {
  maxEntries: number;
  keys: Pick<KeySource, 'has'>;
  now: () => number;
  onLookup?: (hit: boolean) => void;
}

/** Rejections remembered at most (fewer when maxEntries is smaller). */
const MAX_REJECTIONS = 1000;

/** A Rejection thrown by verification, as a value; anything else thrown again (a bug). */
function asRejection(error: unknown): Rejection {
  if (error instanceof Rejection) return error;
  throw error;
}

/** Verification with its rejections returned rather than thrown, remembered unless maxEntries is 0. */
export function withVerdictCache(verify: Verify, { maxEntries, keys, now, onLookup }: VerdictCacheOptions): VerifyToResult {
  if (maxEntries <= 0) {
    return function uncachedVerify(token) {
      try {
        const result = verify(token);
        return result instanceof Promise ? result.catch(asRejection) : result;
      } catch (error) {
        return asRejection(error);
      }
    };
  }
  const verdicts = new VerdictTable(maxEntries);
  const rejections = new Lru<Rejection>(Math.min(maxEntries, MAX_REJECTIONS));

  const accepted = (id: string, verdict: Verdict): Verdict => {
    verdicts.set(id, verdict);
    return verdict;
  };
  const rejected = (id: string, error: unknown): Rejection => {
    const rejection = asRejection(error);
    if (rejection.stands !== undefined) rejections.set(id, rejection);
    return rejection;
  };

  return function cachedVerify(token) {
    // 'binary' is Latin-1: one character per byte, the form VerdictTable takes.
    const id = hash('sha256', token, 'binary');
    const verdict = verdicts.get(id);
    if (verdict !== undefined) {
      if (verdict.validUntilMs > now() && (verdict.key === undefined || keys.has(verdict.key))) {
        onLookup?.(true);
        return verdict;
      }
      verdicts.delete(id);
    }
    const rejection = rejections.get(id);
    if (rejection !== undefined) {
      if (rejection.stands!()) {
        onLookup?.(true);
        return rejection;
      }
      rejections.delete(id);
    }
    onLookup?.(false);
    let result;
    try {
      result = verify(token);
    } catch (error) {
      return rejected(id, error);
    }
    return result instanceof Promise
      ? result.then(
          (v) => accepted(id, v),
          (error: unknown) => rejected(id, error),
        )
      : accepted(id, result);
  };
}
