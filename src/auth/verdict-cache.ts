// A token verified once is not verified again until it expires: a bounded LRU of verdicts.
// A cached verdict is used only while its key is still in the key set and before `exp`
// (plus tolerance); rejections are never cached, so a fixed clock or key set cannot turn a
// refusal into an acceptance.

import type { KeySource } from './keyset.js';
import type { Verdict, Verify } from './verify.js';

export interface VerdictCacheOptions {
  maxEntries: number;
  keys: Pick<KeySource, 'has'>;
  now: () => number;
  onLookup?: (hit: boolean) => void;
}

export function withVerdictCache(verify: Verify, { maxEntries, keys, now, onLookup }: VerdictCacheOptions): Verify {
  if (maxEntries <= 0) return verify;
  // A Map iterates in insertion order: re-inserting on a hit keeps the oldest entry first.
  const verdicts = new Map<string, Verdict>();

  const remember = (token: string, verdict: Verdict): Verdict => {
    if (verdicts.size >= maxEntries) verdicts.delete(verdicts.keys().next().value!);
    verdicts.set(token, verdict);
    return verdict;
  };

  return function cachedVerify(token: string) {
    const cached = verdicts.get(token);
    if (cached !== undefined) {
      verdicts.delete(token);
      if (cached.validUntilMs > now() && keys.has(cached.key)) {
        verdicts.set(token, cached);
        onLookup?.(true);
        return cached;
      }
    }
    onLookup?.(false);
    const result = verify(token);
    return result instanceof Promise ? result.then((verdict) => remember(token, verdict)) : remember(token, result);
  };
}
