// The verdicts of verified tokens, by the token's SHA-256, least recently used first out, in
// typed arrays rather than one JS object per entry. Under never-seen tokens every verification
// adds an entry and evicts one, and as objects each entry (a list node, its key string, the
// verdict and its number) was promoted to V8's old generation and then collected there: the
// cache cost 4 to 8 µs a never-seen token, measured by turning it off, more of it in keeping
// entries than in looking them up (bench/RESULTS.md). Here an entry is numbers in preallocated
// arrays plus references to the identity and key it shares with other entries: about 2 µs less.
//
// Layout: slot i holds a digest (8 int32 words), its verdict's fields and its LRU links; an
// open-addressed hash table (linear probing, at least twice as many buckets as slots, deletion by
// backward shift so that no tombstones build up) maps a digest to its slot.

import type { VerificationKey } from './keyset.js';
import type { Identity, Verdict } from './verify.js';

const NONE = -1;
const WORDS = 8;
/** A SHA-256 digest as a Latin-1 string: one character per byte. */
export const DIGEST_LENGTH = 32;

export class VerdictTable {
  private readonly buckets: Int32Array;
  private readonly mask: number;
  private readonly digests: Int32Array;
  private readonly validUntilMs: Float64Array;
  private readonly identities: (Identity | undefined)[];
  private readonly keys: (VerificationKey | undefined)[];
  private readonly newer: Int32Array;
  private readonly older: Int32Array;
  /** Slots not in use, as a stack: all of them at first. */
  private readonly freeSlots: Int32Array;
  private freeCount: number;
  private newest = NONE;
  private oldest = NONE;
  /** The digest being looked up, as words. */
  private readonly wanted = new Int32Array(WORDS);

  constructor(private readonly capacity: number) {
    let buckets = 2;
    while (buckets < capacity * 2) buckets *= 2;
    this.buckets = new Int32Array(buckets).fill(NONE);
    this.mask = buckets - 1;
    this.digests = new Int32Array(capacity * WORDS);
    this.validUntilMs = new Float64Array(capacity);
    this.identities = new Array<Identity | undefined>(capacity).fill(undefined);
    this.keys = new Array<VerificationKey | undefined>(capacity).fill(undefined);
    this.newer = new Int32Array(capacity);
    this.older = new Int32Array(capacity);
    this.freeSlots = Int32Array.from({ length: capacity }, (_, i) => capacity - 1 - i);
    this.freeCount = capacity;
  }

  get size(): number {
    return this.capacity - this.freeCount;
  }

  /** The verdict remembered for a digest (a fresh object each time), now the most recently used. */
  get(digest: string): Verdict | undefined {
    const bucket = this.find(digest);
    if (bucket < 0) return undefined;
    const slot = this.buckets[bucket]!;
    this.touch(slot);
    return { identity: this.identities[slot]!, key: this.keys[slot]!, validUntilMs: this.validUntilMs[slot]! };
  }

  set(digest: string, verdict: Verdict): void {
    let bucket = this.find(digest);
    let slot: number;
    if (bucket >= 0) {
      slot = this.buckets[bucket]!;
      this.touch(slot);
    } else {
      if (this.freeCount === 0) {
        this.remove(this.bucketOf(this.oldest));
        // Removing shifts entries back: where the new digest goes must be found again.
        bucket = this.find(digest);
      }
      slot = this.freeSlots[--this.freeCount]!;
      this.digests.set(this.wanted, slot * WORDS);
      this.buckets[~bucket] = slot;
      this.pushNewest(slot);
    }
    this.validUntilMs[slot] = verdict.validUntilMs;
    this.identities[slot] = verdict.identity;
    this.keys[slot] = verdict.key;
  }

  delete(digest: string): void {
    const bucket = this.find(digest);
    if (bucket >= 0) this.remove(bucket);
  }

  /** The bucket holding `digest`, or, as its complement (a negative number), the empty bucket where it would go. */
  private find(digest: string): number {
    if (digest.length !== DIGEST_LENGTH) throw new Error(`a digest is ${DIGEST_LENGTH} Latin-1 characters`);
    const wanted = this.wanted;
    for (let word = 0, char = 0; word < WORDS; word++, char += 4) {
      wanted[word] =
        digest.charCodeAt(char) |
        (digest.charCodeAt(char + 1) << 8) |
        (digest.charCodeAt(char + 2) << 16) |
        (digest.charCodeAt(char + 3) << 24);
    }
    // The digest's bits are uniform: its first word is as good a hash as any.
    for (let bucket = wanted[0]! & this.mask; ; bucket = (bucket + 1) & this.mask) {
      const slot = this.buckets[bucket]!;
      if (slot === NONE) return ~bucket;
      if (this.holds(slot, wanted)) return bucket;
    }
  }

  private holds(slot: number, wanted: Int32Array): boolean {
    const at = slot * WORDS;
    for (let word = 0; word < WORDS; word++) if (this.digests[at + word] !== wanted[word]) return false;
    return true;
  }

  private home(slot: number): number {
    return this.digests[slot * WORDS]! & this.mask;
  }

  private bucketOf(slot: number): number {
    let bucket = this.home(slot);
    while (this.buckets[bucket] !== slot) bucket = (bucket + 1) & this.mask;
    return bucket;
  }

  /** Empties a bucket and its slot; later entries of the probe run move back into the gap. */
  private remove(bucket: number): void {
    const slot = this.buckets[bucket]!;
    let gap = bucket;
    for (let next = (bucket + 1) & this.mask; this.buckets[next] !== NONE; next = (next + 1) & this.mask) {
      const moving = this.buckets[next]!;
      // An entry may fill the gap when the gap lies between its home bucket and where it is.
      if (((next - this.home(moving)) & this.mask) >= ((next - gap) & this.mask)) {
        this.buckets[gap] = moving;
        gap = next;
      }
    }
    this.buckets[gap] = NONE;
    this.unlink(slot);
    this.identities[slot] = undefined;
    this.keys[slot] = undefined;
    this.freeSlots[this.freeCount++] = slot;
  }

  private touch(slot: number): void {
    if (slot === this.newest) return;
    this.unlink(slot);
    this.pushNewest(slot);
  }

  private unlink(slot: number): void {
    const newer = this.newer[slot]!;
    const older = this.older[slot]!;
    if (newer === NONE) this.newest = older;
    else this.older[newer] = older;
    if (older === NONE) this.oldest = newer;
    else this.newer[older] = newer;
  }

  private pushNewest(slot: number): void {
    this.newer[slot] = NONE;
    this.older[slot] = this.newest;
    if (this.newest === NONE) this.oldest = slot;
    else this.newer[this.newest] = slot;
    this.newest = slot;
  }
}
